"""Who an attacking address is, without asking the network: breadth and known scanners.

    con.sql(breadth_sql("detection"))          # ip, orgs_hit, sensors_hit, exploits, ...
    classification_sql("b", "scanner")         # SQL of the class of each row

Classes (first that holds):

1. ``research-scanner``: its host records carry a research scanner's reverse DNS name, or it
   sent a research scanner's user agent (``data/research_scanners.csv``);
2. ``mass-scanner``: it hit at least ``mass_orgs`` organisations or ``mass_sensors`` sensors,
   or used at least ``mass_exploits`` distinct exploits;
3. ``opportunistic``: it hit few, but one of its exploits (a campaign or a CVE: generic rules
   fire everywhere by nature) is a widespread campaign (seen at
   ``campaign_orgs`` organisations or more, from ``campaign_sources`` addresses or more): one
   of many sources spraying the same exploit (a botnet member, say);
4. ``targeted``: everything it did was seen at few organisations: aimed, not sprayed.

The first three are *background noise*; the report keeps them apart from ``targeted``.
Thresholds: :data:`DEFAULTS`, overridden by the workspace's ``[enrich.classification]``.

An *exploit* is a detection's campaign, else its first CVE, else its rule. A *sensor* is the
log a detection came from without its date or rotation number (``web01-u_ex1805.log`` and
``web01-u_ex1806.log`` are one sensor, ``web02-...`` another), within its organisation.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

from threatscope.errors import UserError
from threatscope.sqlfn import sql_str

CLASSES = ("research-scanner", "mass-scanner", "opportunistic", "targeted")
NOISE = ("research-scanner", "mass-scanner", "opportunistic")
DEFAULTS = {"mass_orgs": 3, "mass_sensors": 5, "mass_exploits": 5, "campaign_orgs": 3,
            "campaign_sources": 10}

# the first CVE in order (sorting a list of one costs as much as the rest of the row)
EXPLOIT = "coalesce(campaign, CASE WHEN len(cves) > 1 THEN list_sort(cves)[1] ELSE cves[1] END, rule_id)"
# dates (2018-05, 20180512, 1805 after u_ex) and rotation numbers (.1, .2.gz) out of the name
SENSOR = (r"org_id || '/' || regexp_replace(regexp_replace(regexp_replace(source_file, "
          r"'(u_ex|u_in|ex|in)[0-9]{4,8}', '\1', 'g'), '[0-9]{4}-?[0-9]{2}(-?[0-9]{2})?', '', 'g'), "
          r"'\.[0-9]+(\.(gz|bz2|zst))?$', '\1')")


@cache
def research_scanners() -> list[dict[str, str]]:
    """The rows of ``data/research_scanners.csv``: name, hostname, user_agent patterns."""
    text = resources.files("threatscope.enrich").joinpath(
        "data/research_scanners.csv").read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [{k: (v or "").strip() for k, v in r.items()} for r in csv.DictReader(lines)]


def thresholds(config: dict | None = None) -> dict[str, int]:
    """:data:`DEFAULTS` with the workspace's ``[enrich.classification]`` values."""
    table = ((config or {}).get("enrich") or {}).get("classification") or {}
    if not isinstance(table, dict):
        raise UserError("config.toml: [enrich.classification] must be a table")
    out = dict(DEFAULTS)
    for k, v in table.items():
        if k not in DEFAULTS:
            raise UserError(f"config.toml: [enrich.classification] {k}: unknown setting "
                            f"(known: {', '.join(DEFAULTS)})")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(f"config.toml: [enrich.classification] {k} must be an integer >= 1")
        out[k] = v
    return out


def _any(col: str, key: str) -> str:
    pats = [r[key] for r in research_scanners() if r[key]]
    return f"regexp_matches({col}, {sql_str('(?i)(' + '|'.join(pats) + ')')})"


def hostname_scanner_sql(hostname: str) -> str:
    """SQL: whether a host name is a research scanner's."""
    return _any(hostname, "hostname")


def user_agent_scanner_sql(ua: str) -> str:
    """SQL: whether a user agent is a research scanner's."""
    return _any(ua, "user_agent")


def breadth_sql(detection: str, t: dict[str, int]) -> str:
    """Per source address of ``detection``: first_seen, last_seen, detections (detected events),
    orgs_hit, sensors_hit, exploits, campaigns, cves, malware_families, attack_techniques, and
    ``widespread``: whether one of its exploits is a widespread campaign (thresholds ``t``).

    Most addresses of internet-wide traffic are seen once: their row is their detection's, with
    no aggregation (at a million addresses, the per-address distinct counts and lists are most
    of the cost); the others are aggregated. Only the addresses seen more than once are kept
    (``nm``): the rest is read again without them, so no wide intermediate of every detection is
    materialised. An exploit's sources are counted without a distinct over (exploit, address):
    its detections, less those of addresses seen more than once, plus those addresses."""
    lists = {
        "campaigns": ("list(campaign) FILTER (WHERE campaign IS NOT NULL)", "campaign"),
        "cves": ("flatten(list(coalesce(cves, [])))", "cves"),
        "malware_families": ("list(malware_family) FILTER (WHERE malware_family IS NOT NULL)",
                             "malware_family"),
        "attack_techniques": ("flatten(list(coalesce(attack_techniques, [])))",
                              "attack_techniques"),
    }
    many = ", ".join(f"list_sort(list_distinct({agg})) AS {k}" for k, (agg, _) in lists.items())
    # one row: a value as a list of one; a list sorted only when it has two items or more
    one = ", ".join(
        (f"CASE WHEN {c} IS NULL THEN [] ELSE [{c}] END" if k in ("campaigns", "malware_families")
         else f"CASE WHEN len({c}) > 1 THEN list_sort(list_distinct({c})) "
              f"ELSE coalesce({c}, []) END") + f" AS {k}"
        for k, (_, c) in lists.items())
    valid = "src_ip IS NOT NULL AND src_ip <> ''"
    flag = "campaign IS NOT NULL OR len(coalesce(cves, [])) > 0"
    # sensors only for addresses seen more than once: a single detection has one if it has an
    # organisation and a file (the expression is NULL only then)
    return f"""
    WITH nm AS MATERIALIZED (SELECT src_ip AS ip FROM {detection} WHERE {valid}
                             GROUP BY src_ip HAVING count(*) > 1),
    m AS MATERIALIZED (
        SELECT x.src_ip AS ip, x.org_id, x.ts, x.file_id, x.source_line, x.campaign, x.cves,
               x.malware_family, x.attack_techniques, {EXPLOIT} AS exploit, x.source_file
        FROM {detection} x SEMI JOIN nm ON nm.ip = x.src_ip),
    files AS (SELECT org_id, source_file, {SENSOR} AS sensor
              FROM (SELECT DISTINCT org_id, source_file FROM m)),
    e AS (SELECT exploit, bool_or(f) AND count(DISTINCT org_id) >= {int(t['campaign_orgs'])}
                          AND sum(ips) >= {int(t['campaign_sources'])} AS wide FROM (
              SELECT exploit, org_id, bool_or(f) AS f, count(*) AS ips
              FROM (SELECT {EXPLOIT} AS exploit, org_id, {flag} AS f FROM {detection}
                    WHERE {valid}) GROUP BY ALL
              UNION ALL  -- sources = detections - multi_detections + multi_sources
              SELECT exploit, NULL, NULL, count(DISTINCT ip) - count(*) FROM m GROUP BY ALL)
          GROUP BY exploit),
    s AS (SELECT src_ip AS ip, ts, org_id, source_file, campaign, cves, malware_family,
                 attack_techniques, {EXPLOIT} AS exploit
          FROM {detection} ANTI JOIN nm ON nm.ip = src_ip WHERE {valid})
    SELECT s.ip, ts AS first_seen, ts AS last_seen, 1::BIGINT AS detections,
           (org_id IS NOT NULL)::INTEGER AS orgs_hit,
           (org_id IS NOT NULL AND source_file IS NOT NULL)::INTEGER AS sensors_hit,
           (exploit IS NOT NULL)::INTEGER AS exploits, {one}, coalesce(e.wide, false) AS widespread
    FROM s LEFT JOIN e USING (exploit)
    UNION ALL
    SELECT m.ip, min(ts), max(ts), count(DISTINCT (file_id, source_line)),
           count(DISTINCT m.org_id)::INTEGER, count(DISTINCT sensor)::INTEGER,
           count(DISTINCT exploit)::INTEGER, {many}, coalesce(bool_or(e.wide), false)
    FROM m LEFT JOIN files f ON f.org_id IS NOT DISTINCT FROM m.org_id
                            AND f.source_file IS NOT DISTINCT FROM m.source_file
    LEFT JOIN e USING (exploit)
    GROUP BY m.ip"""


def classification_sql(b: str, scanner: str, t: dict[str, int]) -> str:
    """SQL: the class of a row of ``b`` (columns of :func:`breadth_sql`); ``scanner`` is a
    boolean SQL expression (a research scanner's sign)."""
    return f"""CASE
        WHEN {scanner} THEN 'research-scanner'
        WHEN {b}.orgs_hit >= {int(t['mass_orgs'])} OR {b}.sensors_hit >= {int(t['mass_sensors'])}
             OR {b}.exploits >= {int(t['mass_exploits'])} THEN 'mass-scanner'
        WHEN {b}.widespread THEN 'opportunistic'
        ELSE 'targeted' END"""
