"""Zeek (Bro) ``http.log``: TSV with ``#separator``/``#fields`` headers, or JSON lines."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from threatscope.ingest.formats import ParseResult, Part, register
from threatscope.ingest.formats._directive import DirectiveFormat
from threatscope.ingest.formats._json import sniff_json, struct_sql, ts_sql
from threatscope.sqlfn import sql_str


@dataclass(frozen=True)
class _Schema:
    fields: tuple[str, ...]
    sep: str
    empty: str
    unset: str
    path: str | None


# Zeek field -> (column, SQL over the value v)
_MAP = {
    "id.orig_h": ("source_ip", "{v}"),
    "id.orig_p": ("source_port", "try_cast({v} AS INTEGER)"),
    "id.resp_h": ("destination_ip", "{v}"),
    "id.resp_p": ("destination_port", "try_cast({v} AS INTEGER)"),
    "method": ("http_request_method", "{v}"),
    "host": ("url_domain", "{v}"),
    "uri": ("url_original", "{v}"),
    "referrer": ("http_request_referrer", "{v}"),
    "version": ("http_version", "CASE WHEN {v} IS NULL THEN NULL ELSE 'HTTP/' || {v} END"),
    "user_agent": ("user_agent_original", "{v}"),
    "status_code": ("http_response_status_code", "try_cast({v} AS INTEGER)"),
    "response_body_len": ("http_response_body_bytes", "try_cast({v} AS BIGINT)"),
    "username": ("user_name", "{v}"),
}


def _unescape(s: str) -> str:
    # Header values are written as \x09 etc.
    try:
        return s.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:  # a bad escape ('\', '\x'): as written, not a failed file
        return s


@register
class Zeek(DirectiveFormat):
    """Zeek ``http.log``, TSV (``#separator``, ``#set_separator``, ``#empty_field``,
    ``#unset_field``, ``#path``, ``#fields``, ``#types``, ``#open``/``#close`` headers) or JSON.

    Source fields -> columns: ts (epoch seconds, or ISO text in JSON) -> ts; id.orig_h ->
    source_ip; id.orig_p -> source_port; id.resp_h -> destination_ip; id.resp_p ->
    destination_port; method -> http_request_method; host -> url_domain; uri -> url_original;
    referrer -> http_request_referrer; version (``1.1``) -> http_version (``HTTP/1.1``);
    user_agent -> user_agent_original; status_code -> http_response_status_code;
    response_body_len -> http_response_body_bytes; username -> user_name. The unset field
    (``-``) is NULL, the empty field (``(empty)``) is ''.

    Header lines are comment lines. A TSV log whose ``#path`` is not ``http`` (conn, dns...) and
    JSON records without method/uri/status_code are counted as ignored, not quarantined.
    """

    name = "zeek"

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        if lines and lines[0].startswith("#separator"):
            return 1.0
        objs = sniff_json(lines)
        hits = sum("id.orig_h" in o and "ts" in o for o in objs)
        return hits / max(1, len(lines))

    def __init__(self) -> None:
        super().__init__()
        self._hdr = {"sep": "\t", "empty": "(empty)", "unset": "-", "path": None}
        self._json: bool | None = None

    def directive(self, text: str) -> _Schema | None:
        if text.startswith("#separator"):
            self._hdr["sep"] = _unescape(text[len("#separator"):].strip()) or "\t"
            return None
        key, _, value = text.partition(self._hdr["sep"])
        key = key.strip()
        if key == "#empty_field":
            self._hdr["empty"] = value
        elif key == "#unset_field":
            self._hdr["unset"] = value
        elif key == "#path":
            self._hdr["path"] = value
        elif key == "#fields":
            return _Schema(tuple(value.split(self._hdr["sep"])), self._hdr["sep"],
                           self._hdr["empty"], self._hdr["unset"], self._hdr["path"])
        return None

    def prepare(self, table: pa.Table):
        if self._json is None and table.num_rows:
            self._json = table.column("line")[0].as_py().lstrip().startswith("{")
        return None if self._json else super().prepare(table)

    def parse(self, con, batch, prepared) -> ParseResult:
        if prepared is not None:
            return super().parse(con, batch, prepared)
        return self._parse_json(con)

    def schema_part(self, con, schema: _Schema | None, src: str) -> Part | int:
        if schema is None:
            return Part("http", f"""SELECT n AS source_line, line AS raw, NULL::TIMESTAMP AS ts,
                'Zeek data line before any #fields header' AS _reason FROM {src}""")
        if schema.path not in (None, "http"):
            return con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0]
        pos = {f: i + 1 for i, f in enumerate(schema.fields)}
        unset, empty = sql_str(schema.unset), sql_str(schema.empty)

        def v(i: int) -> str:
            return f"(CASE WHEN f[{i}] = {unset} THEN NULL WHEN f[{i}] = {empty} THEN '' ELSE f[{i}] END)"

        cols = {}
        for f, i in pos.items():
            if f in _MAP:
                col, expr = _MAP[f]
                cols[col] = expr.format(v=v(i))
        ts = f"ts_epoch_ts(try_cast(f[{pos['ts']}] AS DOUBLE))" if "ts" in pos else "NULL::TIMESTAMP"
        k = len(schema.fields)
        select = "".join(f", {e} AS {c}" for c, e in cols.items())
        return Part("http", f"""
            SELECT n AS source_line, line AS raw, ts,
                CASE WHEN len(f) <> {k} THEN 'Zeek: ' || len(f) || ' fields, #fields declares {k}'
                     WHEN ts IS NULL THEN 'invalid timestamp' END AS _reason {select}
            FROM (SELECT *, {ts} AS ts
                  FROM (SELECT n, line, string_split(line, {sql_str(schema.sep)}) AS f FROM {src}))""")

    def _parse_json(self, con) -> ParseResult:
        shape = {k: "VARCHAR" for k in _MAP} | {"ts": "JSON"}
        con.execute(f"CREATE OR REPLACE TEMP TABLE _zj AS {struct_sql('_batch', shape)}")
        fields = "".join(
            ", " + expr.format(v='j."' + k + '"') + f" AS {col}" for k, (col, expr) in _MAP.items()
        )
        is_http = "(j.method IS NOT NULL OR j.uri IS NOT NULL OR j.status_code IS NOT NULL)"
        ignored = con.execute(
            f"SELECT count(*) FROM _zj WHERE j IS NOT NULL AND NOT {is_http}"
        ).fetchall()[0][0]
        sql = f"""
            SELECT n AS source_line, line AS raw, ts,
                CASE WHEN j IS NULL THEN 'invalid JSON'
                     WHEN ts IS NULL THEN 'invalid timestamp' END AS _reason {fields}
            FROM (SELECT *, {ts_sql('j.ts')} AS ts FROM _zj)
            WHERE j IS NULL OR {is_http}"""
        return ParseResult([Part("http", sql)], ignored=ignored)
