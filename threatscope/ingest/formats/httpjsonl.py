"""JSON lines of whole HTTP requests (WAF / honeypot exports, OWASP CRS test requests)."""

from __future__ import annotations

from threatscope.ingest.formats import Format, ParseResult, Part, register
from threatscope.ingest.formats._json import headers_sql, sniff_json, struct_sql, ts_sql

_SHAPE = {
    "ts": "JSON", "src_ip": "VARCHAR", "method": "VARCHAR", "uri": "VARCHAR",
    "version": "VARCHAR", "headers": "JSON", "body": "JSON", "status": "VARCHAR",
    "org_id": "VARCHAR",
}


@register
class HttpJsonl(Format):
    """One JSON object per line, one whole HTTP request each.

    Source fields -> columns: ts (ISO text with or without offset, or epoch seconds) -> ts
    (absent -> NULL: the row is kept but falls in no period); src_ip -> source_ip; method ->
    http_request_method; uri -> url_original; version -> http_version; headers (object) ->
    http_request_headers (JSON text, names lower-cased), and from it host -> url_domain,
    user-agent -> user_agent_original, referer -> http_request_referrer; body (text, or JSON
    text of any other value) -> http_request_body_content; status -> http_response_status_code;
    org_id -> the organisation. Other keys are kept in ``raw`` only.

    method and uri are required: a line without them, a line that is not a JSON object and a
    ts that is present but unreadable are quarantined.
    """

    name = "http-jsonl"

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        objs = sniff_json(lines)
        hits = sum("uri" in o and "method" in o and "event_type" not in o for o in objs)
        return hits / max(1, len(lines))

    def parse(self, con, batch, prepared) -> ParseResult:
        sql = f"""
        SELECT n AS source_line, line AS raw, ts, j.org_id AS _org,
            CASE WHEN j IS NULL THEN 'invalid JSON'
                 WHEN j.method IS NULL OR j.uri IS NULL THEN 'missing method or uri'
                 WHEN ts IS NULL AND j.ts IS NOT NULL AND json_type(j.ts) <> 'NULL'
                 THEN 'invalid timestamp' END AS _reason,
            j.src_ip AS source_ip, j.method AS http_request_method, j.uri AS url_original,
            j.version AS http_version, try_cast(j.status AS INTEGER) AS http_response_status_code,
            hdr AS http_request_headers,
            hdr ->> '$.host' AS url_domain,
            hdr ->> '$."user-agent"' AS user_agent_original,
            hdr ->> '$.referer' AS http_request_referrer,
            CASE WHEN json_type(j.body) = 'VARCHAR' THEN j.body ->> '$'
                 WHEN json_type(j.body) = 'NULL' THEN NULL
                 ELSE CAST(j.body AS VARCHAR) END AS http_request_body_content
        FROM (SELECT *, {ts_sql('j.ts')} AS ts, {headers_sql('j.headers')} AS hdr
              FROM ({struct_sql('_batch', _SHAPE)}))"""
        return ParseResult([Part("http", sql)])
