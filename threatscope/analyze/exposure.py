"""Exposure: exploit attempts that a server answered with success (2xx) or an unusual size.

An *exploit attempt* is a detected web request (a detection of an ``http`` event) whose rule
names a campaign or a CVE; generic probes (SQL injection, scanners) are left out. It is
grouped by organisation, server and *threat*: its campaign, else each CVE its rules name.

The *server* is what answered the request, as the server logged it: the destination address
(W3C ``s-ip``), else the virtual host (``url_domain``: the Host header, which a client sets and
which is shown escaped), else the log (its file name without dates, rotation numbers, compression
suffix and trailing separators: ``edge01-access.log-201804.gz`` is ``edge01-access.log``,
``waf01-2018-04.jsonl`` is ``waf01.jsonl``), so
that a server keeps one name across monthly files.

A response size is *unusual* when the body is larger than both 10 times the median and the 99th
percentile of the body sizes of the same server's other responses (requests no rule matched,
with a body: 304s and HEADs are not a size) in the same window (period or baseline), and at
least ``MIN_REFERENCE`` such responses were logged; a response without a logged size, or from
a server with fewer references, is never unusual. A data dump, a web shell's output or a
directory listing sent back to an exploit stands out this way; the small error pages of a
server that refused it do not.

The relation ``exposure`` and its figures are registered in :mod:`threatscope.analyze.figures`
(so that ``threatscope explain`` lists their rows); :func:`exposure_section` shapes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threatscope.analyze import figures as F
from threatscope.analyze.knowledge import campaign_info, cve_info

MIN_REFERENCE = 20  # responses of a server needed before a size can be called unusual
SIZE_MEDIAN_FACTOR = 10
URI_CHARS = 200  # an example URI is cut to this many characters (it is attacker text)

# the log a request came from, without the parts that change from file to file
# (braces doubled: the relation goes through str.format)
_LOG_NAME = (r"regexp_replace(regexp_replace(regexp_replace(regexp_extract(h.source_file, "
             r"'[^/\\!]+$'), '\.(gz|bz2|xz|zst|zip)$', ''), '[-_.]?[0-9]{{4,}}([-_.][0-9]{{1,2}})*|\.[0-9]+$', '', 'g'), "
             r"'[-_.]+$', '')")
SERVER = (f"coalesce(nullif(trim(h.destination_ip), ''), nullif(trim(h.url_domain), ''), "
          f"{_LOG_NAME})")

# One pass over the window's requests: each is looked up once among the detected ones (an
# integer group per event: ``mark``), reference sizes are aggregated per server, and the
# attempts' responses ride along in a list, so the 10M-row lake is scanned and probed once.
REF = "m.source_line IS NULL AND h.http_response_body_bytes > 0"
RELATION = f"""
    WITH att AS (
        SELECT DISTINCT d.ev, d.day, d.ts, d.org_id, d.src_ip, d.file_id, d.source_line,
               CASE WHEN d.campaign IS NOT NULL THEN 'campaign' ELSE 'cve' END AS threat_kind,
               coalesce(d.campaign, c.cve) AS threat, d.product
        FROM det d
        LEFT JOIN (SELECT DISTINCT ev, unnest(list_distinct(cves)) AS cve FROM det
                   WHERE campaign IS NULL) c ON c.ev = d.ev AND d.campaign IS NULL
        WHERE d.event_kind = 'http' AND (d.campaign IS NOT NULL OR c.cve IS NOT NULL)),
    -- every detected request; ev only where it is an exploit attempt (as att says)
    mark AS (
        SELECT any_value(org_id) AS org_id, any_value(file_id) AS file_id,
               any_value(source_line) AS source_line,
               CASE WHEN bool_or(campaign IS NOT NULL OR len(cves) > 0) THEN ev END AS ev
        FROM det WHERE event_kind = 'http' GROUP BY ev),
    per_server AS (  -- REF: a reference response (no rule matched the request; it has a body)
        SELECT h.org_id, {SERVER} AS server, h.ts >= {{split}} AS in_period,
               count(*) FILTER (WHERE {REF}) AS reference_responses,
               quantile_cont(h.http_response_body_bytes, 0.5) FILTER (WHERE {REF}) AS median_bytes,
               quantile_cont(h.http_response_body_bytes, 0.99) FILTER (WHERE {REF}) AS p99_bytes,
               list({{{{'ev': m.ev, 'url_original': h.url_original,
                      'status': h.http_response_status_code,
                      'bytes': h.http_response_body_bytes}}}}) FILTER (WHERE m.ev IS NOT NULL)
                   AS attempts
        FROM http h
        LEFT JOIN mark m ON m.org_id = h.org_id AND m.file_id = h.file_id
                        AND m.source_line = h.source_line
        WHERE h.ts >= {{start}} AND h.ts < {{end}}
        GROUP BY ALL),
    -- (each attempt's fields by name, not unnest(recursive := true): Spark reads this too)
    x AS (SELECT * EXCLUDE (attempts, _att), _att.ev AS ev, _att.url_original AS url_original,
                 _att.status AS status, _att.bytes AS bytes
          FROM (SELECT *, unnest(attempts) AS _att FROM per_server))
    SELECT a.*, x.server, x.url_original, x.status, x.bytes,
           coalesce(x.status BETWEEN 200 AND 299, false) AS success,
           coalesce(x.reference_responses >= {MIN_REFERENCE}
                    AND x.bytes > greatest({SIZE_MEDIAN_FACTOR} * x.median_bytes, x.p99_bytes),
                    false) AS unusual_size,
           x.reference_responses, x.median_bytes, x.p99_bytes
    FROM att a JOIN x USING (ev)"""

ATTEMPTS = "count(DISTINCT ev)"
SUCCESSES = "count(DISTINCT ev) FILTER (WHERE success)"
UNUSUAL = "count(DISTINCT ev) FILTER (WHERE unusual_size)"
FIGURES: dict[str, F.Figure] = {
    # per organisation, server and campaign (or CVE): attempts, and those answered 2xx or large
    "exposure": F.Figure(
        "exposure", ATTEMPTS, ("org_id", "server", "threat_kind", "threat"), windows="period",
        extra={
            "successes": SUCCESSES,
            "unusual_size": UNUSUAL,
            "source_ips": "count(DISTINCT src_ip)",
            "first_seen": "min(ts)",
            "last_seen": "max(ts)",
            "product": "mode(product ORDER BY product)",
            # an answered attempt's URI first (large, then 2xx), then the earliest
            "example_uri": f"left(arg_min(url_original, (NOT unusual_size, NOT success, ts, ev)),"
                           f" {URI_CHARS})",
        }),
    "exposure.attempts": F.Figure("exposure", ATTEMPTS),
    "exposure.successes": F.Figure("exposure", ATTEMPTS, where="success"),
    "exposure.unusual_size": F.Figure("exposure", ATTEMPTS, where="unusual_size"),
}


def register() -> None:
    """Add the relation and figures to :mod:`figures` (idempotent): prepare() builds it after
    ``det``, materialised because four figures read it."""
    F.RELATIONS.setdefault("exposure", RELATION)
    F.MATERIALISED.add("exposure")
    for fid, fig in FIGURES.items():
        F.FIGURES.setdefault(fid, fig)


register()


def _advice(kind: str, threat: str) -> str | None:
    return campaign_info(threat)["advice"] if kind == "campaign" else cve_info(threat)["advice"]


def exposure_section(ev: Callable[[str], list[dict[str, Any]]], change: Callable,
                     record: Callable, iso: Callable) -> dict[str, Any]:
    """``{"attempts", "successes", "unusual_size"}`` (change objects: the baseline is counted
    the same way) and ``rows``: the (organisation, server, threat) groups of the period with at
    least one success or unusual size, most exposed first, with the knowledge base's advice."""
    out: dict[str, Any] = {}
    for name in ("attempts", "successes", "unusual_size"):
        row = ev(f"exposure.{name}")[0]
        out[name] = change(row["period"], row["baseline"])
        record(f"exposure.{name}", row)
    rows = []
    for r in ev("exposure"):
        if not (r["successes"] or r["unusual_size"]):
            continue
        kb = campaign_info(r["threat"]) if r["threat_kind"] == "campaign" else {}
        rows.append({
            "org_id": r["org_id"], "server": r["server"], "threat_kind": r["threat_kind"],
            "threat": r["threat"],
            "product": kb.get("product") or r["product"] or cve_info(r["threat"])["product"],
            "cves": kb.get("cves", []) if kb else [r["threat"]],
            "attempts": r["period"], "successes": r["successes"],
            "unusual_size": r["unusual_size"], "source_ips": r["source_ips"],
            "first_seen": iso(r["first_seen"]), "last_seen": iso(r["last_seen"]),
            "example_uri": r["example_uri"],
            "advice": _advice(r["threat_kind"], r["threat"]),
        })
        record("exposure", r, ("org_id", "server", "threat_kind", "threat"))
    rows.sort(key=lambda x: (-x["successes"] - x["unusual_size"], -x["unusual_size"],
                             -x["attempts"], x["org_id"] or "", x["server"] or "", x["threat"]))
    out["rows"] = rows
    return out
