"""Apache / nginx access logs: NCSA combined and common.

Both plug-ins share one parser, so a file that mixes the two layouts is read either way.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pyarrow as pa

from threatscope.ingest.arrowfn import read_and_rest, typed_fields
from threatscope.ingest.formats import Format, ParseResult, Part, register

# Fallback for lines the quote split cannot handle (escaped \" inside a field, extra nginx
# fields, missing time zone). RE2 syntax.
# Greedy request group: old Apache versions logged quotes inside the request unescaped.
_RX = (
    r'^(\S+) (\S+) (\S+) \[([^\]]*)\] "(.*)" (\d{3}|-) (\d+|-)'
    r'(?: "((?:[^"\\]|\\.)*)" "(.*)")?.*$'
)
_RX_FIELDS = "['ip', 'ident', 'usr', 'dt', 'req', 'status', 'bytes', 'ref', 'ua']"
# Request lines other than "METHOD TARGET HTTP/x": "-", HTTP/0.9 "GET /", targets with spaces.
_REQ_RX = r"^([A-Za-z][A-Za-z0-9_.-]*) (.*?)(?: (HTTP/[0-9.]+))?$"

_SQL = rf"""
WITH s AS (SELECT n, line, string_split(line, '"') AS q FROM {{src}}),
p AS (
    SELECT n, line, q, len(q) AS nq, string_split(q[1], ' ') AS h,
           string_split(trim(q[3]), ' ') AS st
    FROM s),
f AS (
    SELECT *, ((nq = 7 AND q[5] = ' ' AND q[7] = '') OR nq = 3)
              AND len(h) = 6 AND h[6] = '' AND starts_with(h[4], '[') AND len(st) = 2
              AND ends_with(h[5], ']') AS fast
    FROM p),
f2 AS (
    SELECT *, CASE WHEN fast THEN NULL ELSE regexp_extract(line, '{_RX.replace("'", "''")}',
                                                           {_RX_FIELDS}) END AS rx
    FROM f),
x AS (
    SELECT n, line, fast, rx,
           CASE WHEN fast THEN h[1] ELSE rx.ip END AS ip,
           CASE WHEN fast THEN h[3] ELSE rx.usr END AS usr,
           CASE WHEN fast THEN substr(h[4], 2) ELSE split_part(rx.dt, ' ', 1) END AS dpart,
           CASE WHEN fast THEN rtrim(h[5], ']') ELSE split_part(rx.dt, ' ', 2) END AS zpart,
           CASE WHEN fast THEN q[2] ELSE rx.req END AS req,
           CASE WHEN fast THEN st[1] ELSE rx.status END AS status,
           CASE WHEN fast THEN st[2] ELSE rx.bytes END AS bytes,
           CASE WHEN fast THEN (CASE WHEN nq = 7 THEN q[4] END) ELSE rx.ref END AS ref,
           CASE WHEN fast THEN (CASE WHEN nq = 7 THEN q[6] END) ELSE rx.ua END AS ua
    FROM f2),
y AS (
    SELECT *, string_split(req, ' ') AS r,
           try_strptime(dpart, '%d/%b/%Y:%H:%M:%S') - to_minutes(_ts_tzmin(zpart)) AS ts,
           try_cast(status AS INTEGER) AS status_i
    FROM x),
z AS (
    SELECT *, len(r) = 3 AND starts_with(r[3], 'HTTP/') AS simple_req,
           CASE WHEN NOT (len(r) = 3 AND starts_with(r[3], 'HTTP/'))
                THEN regexp_extract(req, '{_REQ_RX}', ['m', 'u', 'v']) END AS rq
    FROM y)
SELECT n AS source_line, line AS raw, ts,
    CASE WHEN NOT fast AND rx.ip = '' THEN 'not an access log line (combined/common)'
         WHEN ts IS NULL THEN 'invalid timestamp'
         WHEN status_i IS NULL AND status <> '-' THEN 'invalid status code'
    END AS _reason,
    ip AS source_ip,
    ts_dash(usr) AS user_name,
    CASE WHEN simple_req THEN r[1] ELSE nullif(rq.m, '') END AS http_request_method,
    CASE WHEN simple_req THEN r[2] WHEN rq.m <> '' THEN rq.u END AS url_original,
    CASE WHEN simple_req THEN r[3] ELSE nullif(rq.v, '') END AS http_version,
    status_i AS http_response_status_code,
    try_cast(bytes AS BIGINT) AS http_response_body_bytes,
    ts_dash(ref) AS http_request_referrer,
    ts_dash(ua) AS user_agent_original
FROM z
"""

_HEAD = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "')
_STATUS = re.compile(r'" \S+ \S+ "')  # request's end, status, bytes, referer's start


def _is_combined(line: str) -> bool:
    """Whether ``line`` matches ``^\\S+ \\S+ \\S+ \\[[^\\]]+\\] ".*" \\S+ \\S+ ".*" ".*"``, in
    linear time: as a regex it back-tracks quadratically on a line of many quotes (seconds for
    one 64 KiB line at auto-detection). The earliest status match leaves the most room after."""
    head = _HEAD.match(line)
    if head is None:
        return False
    status = _STATUS.search(line, head.end())
    if status is None:
        return False
    ua = line.find('" "', status.end())
    return ua >= 0 and line.find('"', ua + 3) >= 0


# The columns of the C splitter's fields, in order (the time comes last, as "ts").
_COLUMNS = ("source_ip", "user_name", "http_request_method", "url_original", "http_version",
            "http_response_status_code", "http_response_body_bytes", "http_request_referrer",
            "user_agent_original")


class _Access(Format):
    spec: ClassVar[str]  # the fields of a well-formed line, as arrowfn.typed_fields codes
    columns: ClassVar[int]  # how many of _COLUMNS they give

    def parse(self, con, batch, prepared) -> ParseResult:
        result = ParseResult()
        fast = self._fast(batch)
        rest = batch.table
        if fast is not None:
            part, rest = fast
            if part.num_rows:
                result.parts.append(Part("http", table=part))
        if rest.num_rows:
            con.register("_rest", rest)
            result.views.append("_rest")
            result.parts.append(Part("http", _SQL.replace("{src}", "_rest")))
        return result

    def _fast(self, batch) -> tuple[pa.Table, pa.Table] | None:
        """(rows read by the C splitter, the (n, line) rows left to _SQL), or None."""
        lines = batch.table
        split = typed_fields(lines.column("line"), self.spec, [*_COLUMNS[:self.columns], "ts"])
        if split is None:
            return None
        part, read = split
        kept, rest = read_and_rest(lines, read)
        return _with_lines(part, kept), rest


def _with_lines(part: pa.Table, lines: pa.Table) -> pa.Table:
    return part.append_column("source_line", lines.column("n")).append_column(
        "raw", lines.column("line"))


@register
class Combined(_Access):
    """NCSA combined log (Apache ``%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"``,
    nginx ``combined``).

    Source fields -> columns: remote host -> source_ip; remote user -> user_name;
    ``[dd/Mon/yyyy:HH:MM:SS +zzzz]`` -> ts (converted to UTC); request line
    ``METHOD TARGET PROTO`` -> http_request_method, url_original (url_path/url_query/url_decoded
    derived), http_version; status -> http_response_status_code; bytes (``-`` = NULL) ->
    http_response_body_bytes; Referer -> http_request_referrer; User-Agent -> user_agent_original.

    Fast path: the C splitter reads the lines of exactly this layout; the others (escaped
    quotes, extra nginx fields, no time zone, odd request lines) go through the SQL parser, which splits on ``"`` and falls back to a regular expression. A request
    line that is not ``METHOD TARGET [HTTP/x]`` (``-``, TLS bytes logged as ``\\x16\\x03...``)
    keeps the row with method/url NULL (the raw line stays searchable). Lines that match neither
    path, impossible timestamps and non-numeric status codes are quarantined.
    """

    name = "combined"
    spec, columns = "SxsARilqq", 9

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        return sum(_is_combined(x) for x in lines) / max(1, len(lines))


@register
class Common(_Access):
    """NCSA common log (``%h %l %u %t "%r" %>s %b``): the combined layout without Referer and
    User-Agent (those columns are NULL). Same fields and rules as ``combined``."""

    name = "common"
    spec, columns = "SxsARil", 7

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        n = sum(bool(_HEAD.match(x)) and not _is_combined(x) for x in lines)
        return n / max(1, len(lines))
