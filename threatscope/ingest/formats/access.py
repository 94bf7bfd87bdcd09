"""Apache / nginx access logs: NCSA combined and common.

Both plug-ins share one parser, so a file that mixes the two layouts is read either way.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from threatscope.ingest.arrowfn import expand, per_distinct, split_fields
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
_COMBINED = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] ".*" \S+ \S+ ".*" ".*"')


# Fast path: the fields split by pyarrow.csv (space separated, '"' quoting), then the same
# expressions as _SQL's split path, evaluated per distinct value (arrowfn.per_distinct).
_TS = ("CASE WHEN starts_with(v, '[') AND ends_with(v, ']') THEN "
       "try_strptime(substr(split_part(v, ' ', 1), 2), '%d/%b/%Y:%H:%M:%S') "
       "- to_minutes(_ts_tzmin(rtrim(split_part(v, ' ', 2), ']'))) END")
_NO_QUOTE = "strpos(v, '\"') = 0"
_SIMPLE = f"len(r) = 3 AND regexp_full_match(r[3], 'HTTP/[0-9](\\.[0-9])?') AND {_NO_QUOTE}"
_REQUEST = [f"CASE WHEN {_SIMPLE} THEN r[{i}] END" for i in (1, 2, 3)] + [_SIMPLE]
_STATUS = ["try_cast(v AS INTEGER)", "v = '-' OR try_cast(v AS INTEGER) IS NOT NULL"]


class _Access(Format):
    fields: ClassVar[int]  # space-separated fields of a well-formed line
    quoted: ClassVar[tuple[int, ...]]  # which of them are quoted

    def parse(self, con, batch, prepared) -> ParseResult:
        result = ParseResult()
        fast = self._fast(con, batch) if batch.block is not None else None
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

    def _fast(self, con, batch) -> tuple[pa.Table, pa.Table] | None:
        """(rows read on the fast path, the (n, line) rows left to _SQL), or None."""
        split = split_fields(batch.block, self.fields, quote='"',
                             lines=batch.table.num_rows)
        if split is None:
            return None
        f, valid = split
        table = batch.table if valid is None else batch.table.filter(valid)
        # The CSV reader is lenient (a quote inside a quoted value ends it early and the text
        # after it is kept): the fields are what _SQL's split gives when exactly the quoted
        # fields lost their two quotes, their values hold no quote and the line ends with one.
        size = pc.add(pc.binary_length(f.column(0)), self.fields - 1 + 2 * len(self.quoted))
        for i in range(1, self.fields):
            size = pc.add(size, pc.binary_length(f.column(i)))
        good = pc.equal(size, pc.binary_length(table.column("line")))
        if self.quoted[-1] == self.fields - 1:
            good = pc.and_(good, pc.ends_with(table.column("line"), '"'))
        (ts,) = per_distinct(con, pc.binary_join_element_wise(f.column(3), f.column(4), " "),
                             [_TS])
        good = pc.and_(good, pc.is_valid(ts))
        method, url, version, simple = per_distinct(con, f.column(5), _REQUEST,
                                                    let="string_split(v, ' ') AS r")
        status, status_ok = per_distinct(con, f.column(6), _STATUS)
        good = pc.and_(good, pc.and_(simple, status_ok))
        texts = {}
        for i in self.quoted[1:]:  # referer, user agent
            texts[i], ok = per_distinct(con, f.column(i), ["ts_dash(v)", _NO_QUOTE])
            good = pc.and_(good, ok)
        cols = {
            "source_line": table.column("n"), "raw": table.column("line"), "ts": ts,
            "source_ip": pc.dictionary_encode(f.column(0)),
            "user_name": per_distinct(con, f.column(2), ["ts_dash(v)"])[0],
            "http_request_method": method, "url_original": url, "http_version": version,
            "http_response_status_code": status,
            "http_response_body_bytes": per_distinct(con, f.column(7),
                                                     ["try_cast(v AS BIGINT)"])[0],
        }
        if texts:
            cols["http_request_referrer"], cols["user_agent_original"] = texts[8], texts[9]
        part = pa.table(cols)
        left = pc.invert(expand(valid, good))
        if pc.all(good).as_py():
            return part, batch.table.filter(left)
        return part.filter(good), batch.table.filter(left)


@register
class Combined(_Access):
    """NCSA combined log (Apache ``%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"``,
    nginx ``combined``).

    Source fields -> columns: remote host -> source_ip; remote user -> user_name;
    ``[dd/Mon/yyyy:HH:MM:SS +zzzz]`` -> ts (converted to UTC); request line
    ``METHOD TARGET PROTO`` -> http_request_method, url_original (url_path/url_query/url_decoded
    derived), http_version; status -> http_response_status_code; bytes (``-`` = NULL) ->
    http_response_body_bytes; Referer -> http_request_referrer; User-Agent -> user_agent_original.

    Fast path: fields split by pyarrow.csv (space separated, ``"`` quoted); lines that do not
    split into the expected shape (escaped quotes, extra nginx fields, no time zone) go through
    the SQL parser, which splits on ``"`` and falls back to a regular expression. A request
    line that is not ``METHOD TARGET [HTTP/x]`` (``-``, TLS bytes logged as ``\\x16\\x03...``)
    keeps the row with method/url NULL (the raw line stays searchable). Lines that match neither
    path, impossible timestamps and non-numeric status codes are quarantined.
    """

    name = "combined"
    fields, quoted = 10, (5, 8, 9)

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        return sum(bool(_COMBINED.match(x)) for x in lines) / max(1, len(lines))


@register
class Common(_Access):
    """NCSA common log (``%h %l %u %t "%r" %>s %b``): the combined layout without Referer and
    User-Agent (those columns are NULL). Same fields and rules as ``combined``."""

    name = "common"
    fields, quoted = 8, (5,)

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        n = sum(bool(_HEAD.match(x)) and not _COMBINED.match(x) for x in lines)
        return n / max(1, len(lines))
