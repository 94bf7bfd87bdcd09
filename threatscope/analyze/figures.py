"""Figure definitions (data) and the one function that evaluates them in DuckDB.

Every number in the metrics document comes from a :class:`Figure`: a named relation, a filter,
grouping columns and one aggregate, evaluated for the period and its baseline by
:func:`evaluate`. Because definitions are data, the rows behind any figure can be listed again::

    from threatscope.analyze import Period, figures
    rows = figures.figure_rows(ws, "campaigns", Period.parse("2018Q2"), key={"campaign": "gpon"})

The named relations (:data:`RELATIONS`) are built by :func:`prepare` on a connection: ``det``
(detections with day, event key, source geo and sector), ``det_cve`` and ``det_technique`` (one
row per detection and CVE / technique), ``det_exec`` (one row per endpoint detection and ATT&CK
execution technique, see :mod:`threatscope.attack`), ``events`` (all ingested events) and
``orgs`` (every organisation: registered or seen in detections).

Two units are counted. A *rule match* (a detection) is one row of the detection table: one event
matched by one rule. A *detected event* is one logged event (request or alert, keyed by file and
line as ``ev``) matched by at least one rule. Per-rule figures and ``totals.detections`` count
rule matches; everything that describes attacks (campaigns, CVEs, products, families, sources,
sectors, hosting shares) counts detected events, so a request that fires two rules counts once
for its source IP and its sector and twice in ``totals.detections``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb

from threatscope import attack, schema, sqlfn
from threatscope.analyze.period import Period
from threatscope.enrich import hosts
from threatscope.workspace import Workspace, relations

# Detected events (several rules can match one event): campaigns, CVEs, products, families,
# sources, sectors, hosting shares.
EVENTS = "count(DISTINCT ev)"
# Rule matches (detection rows): totals.detections and per-rule figures; row counts of inputs.
MATCHES = "count(*)"
# Share of detected events sent from hosting networks (an event has one source IP, hence one
# network type; NULL when there is no event).
HOSTING_EVENTS = ("count(DISTINCT ev) FILTER (WHERE network_type = 'hosting') "
                  "/ nullif(count(DISTINCT ev), 0)")
TOP = 10


@dataclass(frozen=True)
class Figure:
    """``measure`` over ``table`` rows matching ``where``, grouped ``by``, per time window.

    windows: ``compare`` (period and baseline columns), ``period`` (period only), ``span``
    (period and baseline rows pooled into ``period``: for metadata) or ``all`` (no time filter).
    ``extra`` aggregates are computed over the period rows (``span``/``all``: all rows).
    ``partition``/``top`` keep the first ``top`` groups of each partition; ``share`` is the
    group's fraction of its partition's period value (``baseline_share``: of its baseline
    value). ``rollup`` aggregates the grouped result.
    """

    table: str
    measure: str
    by: tuple[str, ...] = ()
    where: str = "true"
    windows: str = "compare"
    extra: dict[str, str] = field(default_factory=dict)
    partition: tuple[str, ...] = ()
    top: int | None = None
    rollup: str | None = None
    zero: bool = True  # missing window value means 0 (counts); False keeps NULL (ratios)

    def definition(self) -> dict:
        """The compact, JSON-ready definition written next to a figure's value."""
        d = {k: list(v) if isinstance(v, tuple) else v
             for k, v in asdict(self).items() if v not in ((), {}, None)}
        d.pop("zero", None)
        if d.get("where") == "true":
            d.pop("where")
        return d


CAMPAIGN = "campaign IS NOT NULL"
# attacking addresses (infrastructure figures count addresses, not events)
IPS = "count(DISTINCT ip)"
RECORDED = "host_record_ts IS NOT NULL"
PROFILE_EXTRA = {
    "windows": "count(DISTINCT ip) FILTER (WHERE os_family LIKE 'Windows%')",
    "compromised_servers": "count(DISTINCT ip) FILTER (WHERE host_kind = 'compromised-server')",
    "home_routers": "count(DISTINCT ip) FILTER (WHERE host_kind = 'home-router')",
    "cloud_instances": "count(DISTINCT ip) FILTER (WHERE host_kind = 'cloud-instance')",
}
INDICATOR_EXTRA = {
    "campaigns": "any_value(campaigns)", "cves": "any_value(cves)",
    "malware_families": "any_value(malware_families)", "ioc_feeds": "any_value(ioc_feeds)",
    "first_seen": "any_value(first_seen)", "last_seen": "any_value(last_seen)",
    "orgs": "any_value(orgs)", "country_code": "any_value(country_code)",
    "as_org": "any_value(as_org)", "classification": "any_value(classification)",
}
# Endpoint telemetry: any event that is not a web request or a network sensor's alert (a web
# rule tagged T1059 for command injection describes an attempt on a server, not an execution).
ENDPOINT = "event_kind NOT IN ('http', 'alert')"

FIGURES: dict[str, Figure] = {
    "totals.events": Figure("events", MATCHES),
    "totals.detections": Figure("det", MATCHES),
    "totals.detected_events": Figure("det", EVENTS),
    "totals.source_ips": Figure("det", "count(DISTINCT src_ip)"),
    "totals.orgs_hit": Figure("det", "count(DISTINCT org_id)"),
    "campaigns": Figure(
        "det", EVENTS, ("campaign",), CAMPAIGN,
        extra={"source_ips": "count(DISTINCT src_ip)", "hosting_share": HOSTING_EVENTS},
    ),
    "campaigns.meta": Figure(
        "det", MATCHES, ("campaign",), CAMPAIGN, windows="span",
        extra={
            "title": "mode(title ORDER BY title)",  # ties: the first by name
            "product": "mode(product ORDER BY product)",
            "cves": "list_sort(list_distinct(flatten(list(coalesce(cves, [])))))",
            "techniques": "list_sort(list_distinct(flatten(list(coalesce(attack_techniques, [])))))",
        },
    ),
    "campaigns.timeline": Figure("det", EVENTS, ("campaign", "day"), CAMPAIGN, windows="period"),
    "campaigns.as_orgs": Figure(
        "det", EVENTS, ("campaign", "as_org", "asn"), CAMPAIGN, windows="period",
        partition=("campaign",), top=5,
    ),
    "campaigns.countries": Figure(
        "det", EVENTS, ("campaign", "country_code"), CAMPAIGN, windows="period",
        partition=("campaign",), top=5,
    ),
    "products": Figure(
        "det", EVENTS, ("product",), "product IS NOT NULL",
        extra={"source_ips": "count(DISTINCT src_ip)", "hosting_share": HOSTING_EVENTS},
    ),
    "products.as_orgs": Figure(
        "det", EVENTS, ("product", "as_org", "asn", "network_type"), "product IS NOT NULL", windows="period",
        partition=("product",), top=3,
    ),
    # (product: the rules' name for what the CVE is in, the first in order when several)
    "cves": Figure("det_cve", EVENTS, ("cve",), "cve IS NOT NULL",
                   extra={"product": "min(product)", "first_seen": "min(ts)",
                          "last_seen": "max(ts)"}),
    "families": Figure("det", EVENTS, ("family",), "family IS NOT NULL"),
    "malware": Figure("det", EVENTS, ("malware_family",), "malware_family IS NOT NULL"),
    "rules": Figure("det", MATCHES, ("rule_id", "title", "severity")),
    "sources.hosting_share": Figure("det", HOSTING_EVENTS, windows="period", zero=False),
    "sources.countries": Figure(
        "det", EVENTS, ("country_code", "country_name"), windows="period", top=TOP,
        extra={"source_ips": "count(DISTINCT src_ip)"},
    ),
    "sources.as_orgs": Figure(
        "det", EVENTS, ("asn", "as_org", "network_type"), windows="period", top=TOP,
        extra={"source_ips": "count(DISTINCT src_ip)"},
    ),
    # every country (the report's map)
    "sources.country_map": Figure(
        "det", EVENTS, ("country_code", "country_name"), "country_code IS NOT NULL",
        windows="period", extra={"source_ips": "count(DISTINCT src_ip)"},
    ),
    # the AS organisations of each country's sources (the key findings' "mostly hosting
    # ranges of ...")
    "sources.country_as_orgs": Figure(
        "det", EVENTS, ("country_code", "asn", "as_org", "network_type"), windows="period",
        partition=("country_code",), top=3, extra={"source_ips": "count(DISTINCT src_ip)"},
    ),
    "sources.ips": Figure(
        "det", EVENTS, ("src_ip", "country_code", "as_org", "network_type"), windows="period",
        top=20,
        extra={
            "rules": "count(DISTINCT rule_id)",
            "rule_matches": "count(*)",
            "campaigns": "list_sort(list(DISTINCT campaign) FILTER (WHERE campaign IS NOT NULL))",
            "first_seen": "min(ts)",
            "last_seen": "max(ts)",
        },
    ),
    "sources.per_ip": Figure(
        "det", EVENTS, ("src_ip",), windows="period",
        rollup="quantile_cont(period, 0.5) AS p50, quantile_cont(period, 0.9) AS p90, "
        "quantile_cont(period, 0.99) AS p99, max(period) AS max",
    ),
    "inputs.manifest": Figure(
        "manifest", MATCHES, windows="all",
        extra={
            "lines_read": "coalesce(sum(lines_read), 0)",
            "rows_written": "coalesce(sum(rows_written), 0)",
            "rows_quarantined": "coalesce(sum(rows_quarantined), 0)",
            "comment_lines": "coalesce(sum(comment_lines), 0)",
        },
    ),
    "inputs.quarantine_reasons": Figure("quarantined", MATCHES, ("reason",), windows="all"),
    "inputs.formats": Figure(
        "manifest", MATCHES, ("format",), windows="all",
        extra={"rows": "coalesce(sum(rows_written), 0)"},
    ),
    "inputs.orgs": Figure("orgs", MATCHES, windows="all"),
    # share of each ATT&CK execution technique (a technique whose tactics include execution,
    # revoked ids mapped to their replacements) among the technique events (event, technique)
    # of endpoint detections (det_exec): an event counts once per technique however many rules
    # named it
    "endpoint.execution_techniques": Figure(
        "det_exec", EVENTS, ("technique", "technique_name", "parent_name")),
    "endpoint.technique_events": Figure("det_exec", "count(DISTINCT (ev, technique))"),
    "endpoint.detected_events": Figure("det_exec", EVENTS),
    # PowerShell attack events (T1059.001) and those the PowerShell analyzer found obfuscated
    "endpoint.powershell_events": Figure("ps_exec", EVENTS),
    "endpoint.powershell_obfuscated": Figure("ps_exec", EVENTS, where="obfuscated"),
    # PowerShell events by the malware family a rule over its (recovered) text named
    "endpoint.powershell_families": Figure("ps_family", EVENTS, ("family",)),
    # attacking addresses (with their host record nearest their first attack in each window:
    # src_host) and what they are; an address has one OS family and host kind, but may run
    # services of several classes
    "infrastructure.source_ips": Figure("src_host", IPS),
    "infrastructure.with_host_record": Figure("src_host", IPS, where=RECORDED),
    "infrastructure.os_families": Figure("src_host", IPS, ("os_family",), "os_family IS NOT NULL"),
    "infrastructure.host_kinds": Figure("src_host", IPS, ("host_kind",), "host_kind IS NOT NULL"),
    "infrastructure.service_classes": Figure("src_service", IPS, ("service_class",)),
    "infrastructure.services": Figure("src_service", IPS, ("service_class", "service"),
                                      partition=("service_class",)),
    "infrastructure.products": Figure("src_product", IPS, ("product",), top=20),
    "infrastructure.as_orgs": Figure(
        "src_host", IPS, ("as_org", "asn", "network_type"), RECORDED, windows="period", top=TOP,
        extra=PROFILE_EXTRA),
    "infrastructure.countries": Figure(
        "src_host", IPS, ("country_code",), RECORDED, windows="period", top=TOP,
        extra=PROFILE_EXTRA),
    # attacks by what their source is (enrich/classify.py): background noise or aimed
    "sources.classification": Figure(
        "det", EVENTS, ("classification",), "classification IS NOT NULL",
        extra={"source_ips": "count(DISTINCT src_ip)"}),
    "sources.targeted": Figure(
        "det", EVENTS, ("src_ip", "country_code", "as_org", "network_type"),
        "classification = 'targeted'", windows="period", top=20,
        extra={"orgs_hit": "count(DISTINCT org_id)",
               "campaigns": "list_sort(list(DISTINCT campaign) FILTER (WHERE campaign IS NOT NULL))",
               "first_seen": "min(ts)", "last_seen": "max(ts)"}),
    # attacks from addresses an IOC list names, per list
    "indicators.listed_sources": Figure(
        "det_listed", EVENTS, ("feed",),
        extra={"source_ips": "count(DISTINCT src_ip)",
               "malware_families": "list_sort(list_distinct(flatten(list(source_families))))",
               "first_seen": "min(ts)", "last_seen": "max(ts)"}),
    # indicators seen in the period: payload URLs/domains the IOC lists name, and the appendix
    "indicators.payload_matches": Figure(
        "ind", "sum(sightings)", ("indicator_type", "value"),
        "role = 'payload' AND len(ioc_feeds) > 0", windows="all", top=50, extra=INDICATOR_EXTRA),
    "indicators.appendix": Figure(
        "ind", "sum(sightings)", ("role", "indicator_type", "value"), windows="all", top=100,
        extra=INDICATOR_EXTRA),
    "indicators.count": Figure("ind", MATCHES, ("role",), windows="all"),
    "sectors.events": Figure("det", EVENTS, ("sector",)),
    # detected events per organisation (with its sector): they add up to the total
    "orgs.events": Figure("det", EVENTS, ("org_id", "sector")),
    "sectors.orgs": Figure(
        "orgs", MATCHES, ("sector",), windows="all",
        # a sector's sensors are known only when every one of its organisations states them
        extra={"sensors": "CASE WHEN count(sensors) = count(*) THEN sum(sensors) END"},
    ),
}

SECTOR = "coalesce(nullif(trim(o.sector), ''), 'unknown')"
# what det_exec keeps of a detection: enough to list the rows behind a technique's count
EXEC_COLUMNS = ("org_id", "ts", "day", "ev", "event_kind", "file_id", "source_file",
                "source_line", "rule_id", "title", "severity", "evidence", "sector")


# a detection that names no event (no file or line); usually none: the lookup of their
# addresses is then skipped (an empty build side), not a second hash table of every address
_UNKEYED = "(d.file_id IS NULL OR d.source_line IS NULL)"


def _det_branch(ev: str, join: str, where: str, source: str = "s") -> str:
    """The SELECT of det's rows matching ``where``, ``ev`` their event key; ``source``: the
    rows of ``source`` their addresses are looked up in."""
    return f"""
        SELECT d.*, CAST(d.ts AS DATE) AS day, {ev} AS ev,
               s.country_code, s.country_name, s.asn, s.as_org, s.network_type,
               s.classification, s.ioc_matches, s.malware_families AS source_families,
               {SECTOR} AS sector
        FROM {{detection}} d {join}
        LEFT JOIN {source} s ON s.ip = d.src_ip
        LEFT JOIN org o ON o.org_id = d.org_id
        WHERE d.ts >= {{start}} AND d.ts < {{end}} AND {where}"""


# The named relations figures read. {detection}/{source} are the catalog tables or typed empty
# stand-ins; det is materialised for the days [start, end) only.
RELATIONS: dict[str, str] = {
    "det": f"""
        WITH f AS (SELECT file_id, row_number() OVER (ORDER BY file_id) AS fno
                   FROM (SELECT DISTINCT file_id FROM {{detection}} WHERE file_id IS NOT NULL)),
             -- source has one row per address (enrich writes it so)
             s AS (SELECT ip, country_code, country_name, asn, as_org, network_type,
                          classification, ioc_matches, malware_families FROM {{source}})
        -- the event (file, line) as one exact integer: distinct counts stay cheap; a detection
        -- without file or line is its own event (negative keys never collide). Two branches:
        -- numbering rows (a window over all of them) would cost more than the rest of det.
        {_det_branch("f.fno * 68719476736 + d.source_line",
                     "JOIN f ON f.file_id = d.file_id", "d.source_line IS NOT NULL")}
        UNION ALL
        {_det_branch("-row_number() OVER ()", "", _UNKEYED,
                     f"(SELECT * FROM s WHERE ip IN (SELECT src_ip FROM {{detection}} d "
                     f"WHERE {_UNKEYED}))")}""",
    "det_cve": "SELECT *, unnest(list_distinct(cves)) AS cve FROM det",
    "det_technique": "SELECT *, unnest(list_distinct(attack_techniques)) AS technique FROM det",
    # one row per endpoint detection and execution technique its rule names, mapped once per
    # distinct list of rule tags (attack_technique: every ATT&CK id with the technique it stands
    # for now); a parent technique (T1059) is left out of an event where a sub-technique of it
    # (T1059.001) was named: the more exact one counts
    "det_exec": f"""
        WITH lists AS (SELECT DISTINCT attack_techniques AS tags FROM det WHERE {ENDPOINT}),
        exec AS (SELECT l.tags, a.technique, a.name AS technique_name, a.parent AS parent_name
                 FROM (SELECT tags, unnest(list_distinct(tags)) AS tag FROM lists) l
                 JOIN attack_technique a ON a.tag = upper(l.tag)
                 WHERE a.execution),
        x AS (SELECT {", ".join(f"d.{c}" for c in EXEC_COLUMNS)}, e.technique, e.technique_name,
                     e.parent_name
              FROM det d JOIN exec e ON e.tags = d.attack_techniques
              WHERE {ENDPOINT}),
        named AS (SELECT DISTINCT ev, split_part(technique, '.', 1) AS parent FROM x
                  WHERE contains(technique, '.'))
        SELECT x.* FROM x ANTI JOIN named n ON n.ev = x.ev AND n.parent = x.technique""",
    # the events of det_exec counted as PowerShell, with the PowerShell analyzer's verdict on
    # their command line or script block (detect/powershell.py; not obfuscated when it did not
    # see the event)
    "ps_exec": """
        SELECT DISTINCT x.ev, x.day, x.org_id, x.file_id, x.source_line,
               coalesce(p.obfuscated, false) AS obfuscated
        FROM det_exec x
        LEFT JOIN powershell p ON p.org_id = x.org_id AND p.file_id = x.file_id
                              AND p.source_line = x.source_line
        WHERE x.technique = 'T1059.001'""",
    "ps_family": """
        SELECT DISTINCT p.ev, p.day, p.org_id, p.file_id, p.source_line, p.obfuscated,
               d.malware_family AS family
        FROM ps_exec p JOIN det d ON d.ev = p.ev
        WHERE d.malware_family IS NOT NULL""",
    # each attacking address once per window (the period, the baseline), at its first attack
    # there, and its host record nearest that moment (enrich/hosts.py)
    "src_first": """
        SELECT src_ip AS ip, min(ts) AS ref_ts, CAST(min(ts) AS DATE) AS day,
               any_value(network_type) AS network_type, any_value(country_code) AS country_code,
               any_value(asn) AS asn, any_value(as_org) AS as_org
        FROM det WHERE src_ip IS NOT NULL AND src_ip <> ''
        GROUP BY src_ip, ts >= {split}""",
    "src_host": f"""
        WITH sf AS MATERIALIZED (SELECT * FROM src_first)  -- read twice: grouped once
        SELECT f.*, h.host_record_ts, h.os, h.os_family, h.products, h.services,
               h.service_classes, h.host_kind
        FROM sf f LEFT JOIN ({hosts.profile_sql("sf")}) h
             ON h.ip = f.ip AND h.ref_ts = f.ref_ts""",
    "src_service": """
        SELECT ip, day, split_part(svc, ':', 1) AS service_class,
               split_part(svc, ':', 2) AS service
        FROM (SELECT ip, day, unnest(services) AS svc FROM src_host)""",
    "src_product": "SELECT ip, day, unnest(products) AS product FROM src_host",
    # detections from addresses that IOC lists name, once per list
    "det_listed": """
        SELECT * EXCLUDE (feed), split_part(feed, ':', 1) AS feed
        FROM (SELECT * EXCLUDE (ioc_matches), unnest(ioc_matches) AS feed
              FROM det WHERE len(ioc_matches) > 0)""",
    # indicators (enrich's table) seen in the period
    "ind": """
        SELECT *, CAST(first_seen AS DATE) AS day FROM {indicator}
        WHERE last_seen >= {split} AND first_seen < {end}""",
    # the ingested files and their quarantined lines (relations, so that a scope can narrow them)
    "manifest": "SELECT * FROM ingest_manifest",
    "quarantined": "SELECT * FROM quarantine",
    "events": """
        SELECT org_id, ts, event_date AS day, event_kind, file_id, source_file, source_line
        FROM http
        UNION ALL SELECT org_id, ts, event_date AS day, event_kind, file_id, source_file,
                         source_line FROM alert""",
    "orgs": f"""
        SELECT o.org_id, {SECTOR} AS sector, o.sensors FROM org o
        UNION ALL
        SELECT DISTINCT org_id, 'unknown', CAST(NULL AS INTEGER) FROM {{detection}}
        WHERE org_id IS NOT NULL AND org_id NOT IN (SELECT org_id FROM org)""",
}


# A report's scope (some organisations: analyze/scope.py) narrows these relations, and every
# relation built on them, once: no figure filters on its own ({body}: the unscoped relation).
_IN_SCOPE = "SELECT * FROM ({body}) WHERE org_id IN (SELECT org_id FROM scope_org)"
# what the scope's own detections say of an indicator, in place of the workspace's (columns
# named, not i.* REPLACE: the Spark engine runs this SQL too)
_SCOPE_SAYS = ("sightings", "orgs", "first_seen", "last_seen", "campaigns", "cves")
# an attacking address as its indicator value (as schema.INDICATOR_SELECT writes it)
_ADDRESS = r"lower(regexp_replace(src_ip, '^::ffff:([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)$', '\1', 'i'))"
SCOPED: dict[str, str] = {
    "det": _IN_SCOPE, "events": _IN_SCOPE, "orgs": _IN_SCOPE, "manifest": _IN_SCOPE,
    "quarantined": "SELECT * FROM ({body}) WHERE file_id IN (SELECT file_id FROM manifest)",
    # indicators are not attributed to organisations: the scope's are the addresses that
    # attacked it in the period, with what its own detections say of them (the workspace's
    # sightings, organisations and campaigns would tell of the others)
    "ind": f"""
        SELECT {", ".join(f"s.{c}" if c in _SCOPE_SAYS else f"i.{c}"
                          for c in [*(n for n, _ in schema.INDICATOR), "day"])}
        FROM ({{body}}) i JOIN (
            SELECT {_ADDRESS} AS value, count(DISTINCT ev) AS sightings,
                   CAST(count(DISTINCT org_id) AS INTEGER) AS orgs, min(ts) AS first_seen,
                   max(ts) AS last_seen,
                   list_sort(list(DISTINCT campaign) FILTER (WHERE campaign IS NOT NULL))
                       AS campaigns,
                   list_sort(list_distinct(flatten(list(coalesce(cves, []))))) AS cves
            FROM det WHERE ts >= {{split}} GROUP BY 1) s ON s.value = i.value
        WHERE i.role = 'attacker'""",
}
# relations also kept unscoped as <name>_all: what the peer comparison reads (analyze/peers.py)
UNSCOPED_TWINS = ("det", "orgs")
MATERIALISED = {"det", "det_exec", "src_host"}  # read by several figures: computed once


def prepare(con: duckdb.DuckDBPyConnection, start: date, end: date,
            split: date | None = None, scope_orgs: Sequence[str] | None = None,
            temp: bool = True) -> dict[str, bool]:
    """Create the named relations on ``con`` for the days ``[start, end)``; ``split`` is the
    first day of the period (the baseline is ``[start, split)``; default: ``end``).
    ``scope_orgs``: the organisations the relations keep (None: every one); ``det_all`` and
    ``orgs_all`` keep every organisation either way. ``temp=False`` creates them in the
    database, not the connection, so that its other cursors read them too (the dashboard's
    snapshot; the inputs must then be database tables and views too).

    Returns which optional inputs were present: ``{"detection", "source", "indicator"}``.
    """
    tables = relations(con)
    have = {t: t in tables for t in ("detection", "source", "indicator")}
    subst = {
        "detection": "detection" if have["detection"] else f"({schema.empty_select(schema.DETECTION)})",
        "source": "source" if have["source"] else f"({schema.empty_select(schema.SOURCE)})",
        "indicator": "indicator" if have["indicator"]
        else f"({schema.empty_select(schema.INDICATOR)})",
        "start": f"TIMESTAMP '{start.isoformat()}'",
        "end": f"TIMESTAMP '{end.isoformat()}'",
        "split": f"TIMESTAMP '{(split or end).isoformat()}'",
    }
    tmp = "TEMP " if temp else ""
    sqlfn.install(con)
    # every figure orders its own rows: materialising the relations need not keep row order
    con.execute("SET preserve_insertion_order = false")
    con.register("_attack_technique", attack.technique_table())
    con.execute(f"CREATE OR REPLACE {tmp}TABLE attack_technique AS SELECT * FROM _attack_technique")
    con.unregister("_attack_technique")
    scoped = scope_orgs is not None
    if scoped:
        con.execute(f"CREATE OR REPLACE {tmp}TABLE scope_org AS "
                    "SELECT unnest(CAST(? AS VARCHAR[])) AS org_id", [list(scope_orgs)])
    for name, sql in RELATIONS.items():
        body = sql.format(**subst)
        kind = "TABLE" if name in MATERIALISED else "VIEW"
        if scoped and name in UNSCOPED_TWINS:
            con.execute(f"CREATE OR REPLACE {tmp}{kind} {name}_all AS {body}")
            body = f"SELECT * FROM {name}_all"
        if scoped and name in SCOPED:
            body = SCOPED[name].format(body=body, **subst)
        con.execute(f"CREATE OR REPLACE {tmp}{kind} {name} AS {body}")
        if not scoped and name in UNSCOPED_TWINS:
            con.execute(f"CREATE OR REPLACE {tmp}VIEW {name}_all AS SELECT * FROM {name}")
    return have


def _window(day: str, p: Period) -> str:
    return f"({day} >= DATE '{p.start.isoformat()}' AND {day} < DATE '{p.end.isoformat()}')"


def figure_sql(fig: Figure, period: Period, baseline: Period) -> str:
    """The SQL that evaluates ``fig``: columns ``by..., period, baseline, extra..., share, rank``
    (or the ``rollup`` columns)."""
    by = list(fig.by)
    by_sel = "".join(f"{c}, " for c in by)
    if fig.windows == "compare":
        w = f"CASE WHEN {_window('day', period)} THEN 'period' WHEN {_window('day', baseline)} THEN 'baseline' END"
        span = f"({_window('day', period)} OR {_window('day', baseline)})"
    elif fig.windows == "period":
        w, span = "'period'", _window("day", period)
    elif fig.windows == "span":
        w, span = "'period'", f"({_window('day', period)} OR {_window('day', baseline)})"
    elif fig.windows == "all":
        w, span = "'period'", "true"
    else:
        raise ValueError(f"unknown windows {fig.windows!r}")
    # a ranked list of addresses or indicators computes its extras for the groups it keeps
    # only (distinct counts and lists of 100,000 groups cost more than the rest; a list of
    # countries keeps the groups of most rows: there a second pass would cost more)
    late = bool(fig.top and fig.extra and {"src_ip", "ip", "value"} & set(by))
    extras = "" if late else "".join(f", {expr} AS {name}" for name, expr in fig.extra.items())
    grouped = (
        f"SELECT {w} AS _w, {by_sel}{fig.measure} AS _v{extras} FROM {fig.table} "
        f"WHERE ({fig.where}) AND {span} GROUP BY ALL"
    )

    def win(name: str) -> str:
        v = f"max(_v) FILTER (WHERE _w = '{name}')"
        return f"coalesce({v}, 0)" if fig.zero else v

    # one row per group: the period value, the baseline value (a constant outside "compare")
    baseline_col = {"compare": win("baseline"), "all": win("period")}.get(fig.windows, "0")
    pivot_extra = "" if late else "".join(
        f", any_value({n}) FILTER (WHERE _w = 'period') AS {n}" for n in fig.extra)
    group_by = f" GROUP BY {', '.join(by)}" if by else ""
    pivot = (f"SELECT {by_sel}{win('period')} AS period, {baseline_col} AS baseline{pivot_extra} "
             f"FROM g{group_by}")
    if fig.windows != "compare" and by:
        # one window: g has one row per group already (no second grouping of every group)
        v = "coalesce(_v, 0)" if fig.zero else "_v"
        pivot = (f"SELECT {by_sel}{v} AS period, {v if fig.windows == 'all' else '0'} AS "
                 f"baseline{''.join(f', {n}' for n in fig.extra if not late)} FROM g")
    part = f"PARTITION BY {', '.join(fig.partition)} " if fig.partition else ""
    # lists run by period value descending, then name (the grouping columns)
    order = ", ".join(["period DESC NULLS LAST"] + [f"{c} ASC NULLS LAST" for c in by])
    ranked = (
        f"SELECT *, period / nullif(sum(period) OVER ({part}), 0) AS share, "
        f"baseline / nullif(sum(baseline) OVER ({part}), 0) AS baseline_share, "
        f"row_number() OVER ({part}ORDER BY {order}) AS rank FROM p"
    )
    keep = f" WHERE rank <= {int(fig.top)}" if fig.top else ""
    outer_order = ", ".join([*fig.partition, "rank"])
    sql = (
        f"WITH g AS ({grouped}), p AS ({pivot}), r AS ({ranked}) "
        f"SELECT * FROM r{keep} ORDER BY {outer_order}"
    )
    if late:
        # the extras of the period's rows ('period' windows of grouped) of the kept groups
        rows = {"span": span, "all": "true"}.get(fig.windows, _window("day", period))
        keys = ", ".join(f"{c} AS _k{i}" for i, c in enumerate(by))
        on = " AND ".join(f"{c} IS NOT DISTINCT FROM k._k{i}" for i, c in enumerate(by))
        ex = (f"SELECT {by_sel}{', '.join(f'{e} AS {n}' for n, e in fig.extra.items())} "
              f"FROM {fig.table} SEMI JOIN (SELECT {keys} FROM kept) k ON {on} "
              f"WHERE ({fig.where}) AND {rows} GROUP BY ALL")
        cols = ", ".join([*(f"k.{c}" for c in by), "k.period", "k.baseline",
                          *(f"e.{n}" for n in fig.extra), "k.share", "k.baseline_share",
                          "k.rank"])
        join = " AND ".join(f"k.{c} IS NOT DISTINCT FROM e.{c}" for c in by)
        sql = (
            f"WITH g AS ({grouped}), p AS ({pivot}), r AS ({ranked}), "
            f"kept AS (SELECT * FROM r{keep}), e AS ({ex}) "
            f"SELECT {cols} FROM kept k LEFT JOIN e ON {join} "
            f"ORDER BY {', '.join(f'k.{c}' for c in [*fig.partition, 'rank'])}"
        )
    if fig.rollup and not fig.top:
        # a rollup of every group reads the groups' values (no shares or ranks to sort for)
        sql = f"WITH g AS ({grouped}), p AS ({pivot}) SELECT {fig.rollup} FROM p"
    elif fig.rollup:
        sql = f"SELECT {fig.rollup} FROM ({sql})"
    return sql


def evaluate(
    con: duckdb.DuckDBPyConnection, fig: Figure | str, period: Period, baseline: Period
) -> list[dict[str, Any]]:
    """Evaluate one figure (a :class:`Figure` or an id in :data:`FIGURES`) on a prepared
    connection; one dict per row."""
    if isinstance(fig, str):
        fig = FIGURES[fig]
    cur = con.execute(figure_sql(fig, period, baseline))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@contextmanager
def ahead(con: Any, period: Period, baseline: Period,
          figures: Sequence[str] | None = None) -> Iterator[dict[str, Future]]:
    """The figures (default: all of :data:`FIGURES`) evaluated ahead and together, as futures,
    on a connection that gains from it: one with ``concurrent_queries`` above 1 (Spark, where
    each query pays for planning and scheduling a job, and queries in flight together share
    that wait). Empty on DuckDB, whose one query already uses every core. A figure whose query
    fails raises when its result is asked for; on exit what has not started is cancelled."""
    workers = int(getattr(con, "concurrent_queries", 1))
    if workers <= 1:
        yield {}
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="figure") as pool:
        futures = {fid: pool.submit(evaluate, con, FIGURES[fid], period, baseline)
                   for fid in (figures or FIGURES)}
        try:
            yield futures
        finally:
            for f in futures.values():
                f.cancel()


def figure_id(figure: str, key: dict[str, Any] | None = None) -> str:
    """The stable id of a figure's value, the figure and its group's key::

        >>> figure_id("campaigns", {"campaign": "gpon"})
        'campaigns[campaign=gpon]'
        >>> figure_id("sources.as_orgs", {"asn": None})   # NULL: the column without a value
        'sources.as_orgs[asn]'

    In a value, ``\\`` and ``]`` are escaped with a backslash (values come from logs)."""
    def part(col: str, v: Any) -> str:
        if v is None:
            return f"[{col}]"
        text = v.isoformat() if isinstance(v, date) else str(v)
        return f"[{col}={text.replace(chr(92), chr(92) * 2).replace(']', chr(92) + ']')}]"
    return figure + "".join(part(c, v) for c, v in (key or {}).items())


def parse_id(text: str) -> tuple[str, dict[str, str | None]]:
    """The figure and key of an id :func:`figure_id` wrote (values as text).

        >>> parse_id("campaigns.timeline[campaign=gpon][day=2018-05-12]")
        ('campaigns.timeline', {'campaign': 'gpon', 'day': '2018-05-12'})
    """
    from threatscope.errors import UserError

    figure, _, rest = text.partition("[")
    key: dict[str, str | None] = {}
    i = len(figure)
    while i < len(text):
        if text[i] != "[":
            raise UserError(f"figure id {text!r}: expected '[' at character {i + 1}")
        j, buf, col, escaped = i + 1, [], None, False
        while j < len(text):
            c = text[j]
            if escaped:
                buf.append(c)
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == "=" and col is None:
                col, buf = "".join(buf), []
            elif c == "]":
                break
            else:
                buf.append(c)
            j += 1
        else:
            raise UserError(f"figure id {text!r}: a '[' is not closed")
        name = col if col is not None else "".join(buf)
        if not name.isidentifier():
            raise UserError(f"figure id {text!r}: {name!r} is not a column name")
        key[name] = "".join(buf) if col is not None else None
        i = j + 1
    return figure, key


def rows_sql(
    fig: Figure, period: Period, key: dict[str, Any] | None = None
) -> tuple[str, list[Any]]:
    """SQL (and parameters) listing the rows behind ``fig`` for ``key`` in ``period``."""
    key = key or {}
    unknown = set(key) - set(fig.by)
    if unknown:
        raise ValueError(f"not grouping columns of this figure: {sorted(unknown)}")
    conds = [f"({fig.where})"]
    if fig.windows != "all":
        conds.append(_window("day", period))
    params: list[Any] = []
    for col, val in key.items():
        # a key parsed from an id is text: compared as text with columns of any type
        conds.append(f"{f'CAST({col} AS VARCHAR)' if isinstance(val, str) else col} "
                     "IS NOT DISTINCT FROM ?")
        params.append(val)
    return f"SELECT * FROM {fig.table} WHERE {' AND '.join(conds)}", params


def figure_rows(
    ws: Workspace,
    figure_id: str,
    period: Period,
    key: dict[str, Any] | None = None,
    baseline: bool = False,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The rows behind figure ``figure_id`` (optionally one group ``key``) in ``period``, or in
    its baseline with ``baseline=True``. What `threatscope explain` lists."""
    from threatscope.errors import UserError

    if figure_id not in FIGURES:
        raise UserError(f"unknown figure {figure_id!r}; known: {', '.join(sorted(FIGURES))}")
    base = period.baseline()
    window = base if baseline else period
    fig = FIGURES[figure_id]
    with ws.connect() as con:
        prepare(con, base.start, period.end, period.start)
        try:
            sql, params = rows_sql(fig, window, key)
        except ValueError as e:
            raise UserError(f"{figure_id}: {e}") from None
        cur = con.execute(f"{sql} ORDER BY ALL LIMIT {int(limit)}", params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
