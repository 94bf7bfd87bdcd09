"""Suricata EVE JSON (``eve.json``)."""

from __future__ import annotations

from threatscope.ingest.formats import Format, ParseResult, Part, register
from threatscope.ingest.formats._json import sniff_json, struct_sql

_SHAPE = {
    "timestamp": "VARCHAR", "event_type": "VARCHAR", "org_id": "VARCHAR",
    "src_ip": "VARCHAR", "src_port": "VARCHAR", "dest_ip": "VARCHAR", "dest_port": "VARCHAR",
    "http": {
        "hostname": "VARCHAR", "url": "VARCHAR", "http_user_agent": "VARCHAR",
        "http_method": "VARCHAR", "protocol": "VARCHAR", "status": "VARCHAR",
        "length": "VARCHAR", "http_refer": "VARCHAR", "request_headers": "JSON",
    },
    "alert": {
        "signature_id": "VARCHAR", "signature": "VARCHAR", "category": "VARCHAR",
        "severity": "VARCHAR", "metadata": "JSON", "references": "JSON",
    },
}

_COMMON = """n AS source_line, line AS raw, ts, j.org_id AS _org,
    j.src_ip AS source_ip, j.dest_ip AS destination_ip,
    try_cast(j.dest_port AS INTEGER) AS destination_port"""

_HEADERS = """CASE WHEN json_type(j.http.request_headers) = 'ARRAY' THEN '{' || array_to_string(
    list_transform(try_cast(j.http.request_headers AS STRUCT(name VARCHAR, value VARCHAR)[]),
                   lambda e: to_json(lower(e.name)) || ':' || to_json(e.value)), ',') || '}' END"""

# CVEs: alert.metadata.cve values ("CVE_2017_5638", "2017-5638", "2017_5638"), plus any
# CVE-YYYY-NNNN written in the metadata, the references or the signature text.
_CVES = """list_sort(list_distinct(list_concat(
    list_transform(regexp_extract_all(coalesce(CAST(j.alert.metadata -> '$.cve' AS VARCHAR), ''),
                                      '\\d{4}[-_]\\d{4,7}'),
                   lambda x: 'CVE-' || replace(x, '_', '-')),
    ts_cves(concat_ws(' ', j.alert.signature, CAST(j.alert.metadata AS VARCHAR),
                      CAST(j.alert.references AS VARCHAR))))))"""


@register
class Eve(Format):
    """Suricata EVE JSON lines.

    ``event_type: http`` -> an ``http`` row: timestamp (with offset, to UTC) -> ts; src_ip,
    src_port, dest_ip, dest_port -> source_ip/port, destination_ip/port; http.hostname ->
    url_domain; http.url -> url_original; http.http_method -> http_request_method;
    http.protocol -> http_version; http.status -> http_response_status_code; http.length ->
    http_response_body_bytes; http.http_refer -> http_request_referrer; http.http_user_agent ->
    user_agent_original; http.request_headers ([{name, value}], when logged) ->
    http_request_headers (names lower-cased).

    ``event_type: alert`` -> an ``alert`` row: alert.signature_id, signature, category,
    severity; cves from alert.metadata.cve (``CVE_2017_5638`` / ``2017-5638`` forms), the
    metadata, references or signature text, normalised to ``CVE-YYYY-NNNN``; http.url,
    http.hostname, http.http_method when present. An ``org_id`` key names the organisation.

    Other event types (flow, dns, tls, stats, ...) are counted as ignored lines. Lines that are
    not JSON objects, objects without event_type and bad timestamps are quarantined.
    """

    name = "eve"

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        objs = sniff_json(lines)
        return sum("event_type" in o for o in objs) / max(1, len(lines))

    def parse(self, con, batch, prepared) -> ParseResult:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _eve AS SELECT *, ts_iso_ts(j.timestamp) AS ts "
            f"FROM ({struct_sql('_batch', _SHAPE)})"
        )
        ignored = con.execute(
            "SELECT count(*) FROM _eve WHERE j IS NOT NULL AND j.event_type IS NOT NULL "
            "AND j.event_type NOT IN ('http', 'alert')"
        ).fetchall()[0][0]
        reason = """CASE WHEN j IS NULL THEN 'invalid JSON'
                         WHEN j.event_type IS NULL THEN 'not an EVE record (no event_type)'
                         WHEN ts IS NULL THEN 'invalid timestamp' END AS _reason"""
        http = f"""SELECT {_COMMON}, {reason},
            try_cast(j.src_port AS INTEGER) AS source_port,
            j.http.hostname AS url_domain, j.http.url AS url_original,
            j.http.http_method AS http_request_method, j.http.protocol AS http_version,
            try_cast(j.http.status AS INTEGER) AS http_response_status_code,
            try_cast(j.http.length AS BIGINT) AS http_response_body_bytes,
            j.http.http_refer AS http_request_referrer,
            j.http.http_user_agent AS user_agent_original,
            {_HEADERS} AS http_request_headers
            FROM _eve WHERE j IS NULL OR j.event_type IS NULL OR j.event_type = 'http'"""
        alert = f"""SELECT {_COMMON}, {reason},
            try_cast(j.alert.signature_id AS BIGINT) AS signature_id,
            j.alert.signature AS signature, j.alert.category AS category,
            try_cast(j.alert.severity AS INTEGER) AS severity, {_CVES} AS cves,
            j.http.url AS url_original, j.http.hostname AS url_domain,
            j.http.http_method AS http_request_method
            FROM _eve WHERE j.event_type = 'alert'"""
        return ParseResult([Part("http", http), Part("alert", alert)], ignored=ignored)
