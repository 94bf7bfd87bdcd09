"""IIS / W3C extended log format."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from threatscope.arrowutil import indexed
from threatscope.ingest.arrowfn import read_and_rest, typed_fields
from threatscope.ingest.formats import Part, register
from threatscope.ingest.formats._directive import DirectiveFormat
from threatscope.sqlfn import sql_str


@dataclass(frozen=True)
class _Schema:
    fields: tuple[str, ...]
    date: str | None  # from '#Date:', used when there is no date field


# W3C field (lower case) -> (column, SQL over the value v). '-' is already NULL in v.
_MAP = {
    "c-ip": ("source_ip", "{v}"),
    "c-port": ("source_port", "try_cast({v} AS INTEGER)"),
    "s-ip": ("destination_ip", "{v}"),
    "s-port": ("destination_port", "try_cast({v} AS INTEGER)"),
    "cs-method": ("http_request_method", "{v}"),
    "cs-uri-stem": ("url_path", "{v}"),
    "cs-uri-query": ("url_query", "{v}"),
    "cs-uri": ("url_original", "{v}"),
    "cs-version": ("http_version", "{v}"),
    "sc-status": ("http_response_status_code", "try_cast({v} AS INTEGER)"),
    "sc-bytes": ("http_response_body_bytes", "try_cast({v} AS BIGINT)"),
    "cs(user-agent)": ("user_agent_original", "replace({v}, '+', ' ')"),
    "cs(referer)": ("http_request_referrer", "{v}"),
    "cs-host": ("url_domain", "{v}"),
    "cs(host)": ("url_domain", "{v}"),
    "cs-username": ("user_name", "{v}"),
}

_DATA = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S")


@register
class W3C(DirectiveFormat):
    """IIS W3C extended log (``#Software/#Version/#Date/#Fields`` headers, space-separated).

    Source fields -> columns: date + time (UTC) -> ts; c-ip -> source_ip; c-port -> source_port;
    s-ip -> destination_ip; s-port -> destination_port; cs-method -> http_request_method;
    cs-uri-stem -> url_path; cs-uri-query -> url_query (url_original = stem ?query, or cs-uri);
    cs-version -> http_version; sc-status -> http_response_status_code; sc-bytes ->
    http_response_body_bytes; cs(User-Agent) (``+`` = space) -> user_agent_original;
    cs(Referer) -> http_request_referrer; cs-host -> url_domain; cs-username -> user_name.
    Other fields stay in ``raw``. ``-`` means empty (NULL).

    ``#Fields:`` may change anywhere (header blocks repeat after restarts); every ``#`` line is
    a comment line. Data lines before any ``#Fields:``, lines whose field count differs from
    ``#Fields:`` and impossible dates are quarantined with the reason.
    """

    name = "w3c"

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        if any(x.startswith(("#Fields:", "#Software:", "#Version:")) for x in lines[:20]):
            return 1.0
        # A header-less IIS file: recognised, so that its lines are quarantined with the reason.
        return 0.9 * sum(bool(_DATA.match(x)) for x in lines) / max(1, len(lines))

    def __init__(self) -> None:
        super().__init__()
        self._fields: tuple[str, ...] | None = None
        self._date: str | None = None

    def directive(self, text: str) -> _Schema | None:
        key, _, value = text.partition(":")
        key = key.strip().lower()
        if key == "#fields":
            self._fields = tuple(f.lower() for f in value.split())
        elif key == "#date":
            self._date = value.strip().split(" ")[0]
        else:
            return None
        if self._fields is None:
            return None
        # '#Date:' matters only without a date field (IIS repeats it on every restart).
        return _Schema(self._fields, None if "date" in self._fields else self._date)

    def schema_part(self, con, schema: _Schema | None, src: str) -> Part:
        if schema is None:
            return Part("http", f"""SELECT n AS source_line, line AS raw, NULL::TIMESTAMP AS ts,
                'W3C data line before any #Fields: header' AS _reason FROM {src}""")
        cols, ts = _columns(schema)
        k = len(schema.fields)
        bad_ts = "WHEN ts IS NULL THEN 'invalid timestamp'" if ts else ""
        select = "".join(f", {e} AS {c}" for c, e in cols.items())
        return Part("http", f"""
            SELECT n AS source_line, line AS raw, ts,
                CASE WHEN len(f) <> {k} THEN 'W3C: ' || len(f) || ' fields, #Fields declares {k}'
                     {bad_ts} END AS _reason {select}
            FROM (SELECT *, {ts or 'NULL::TIMESTAMP'} AS ts
                  FROM (SELECT n, line, string_split(line, ' ') AS f FROM {src}))""")

    def fast(self, con, batch, schema: _Schema | None, data) -> tuple[pa.Table, pa.Table] | None:
        """The same columns as ``schema_part``, from the C splitter. Lines with another field
        count or an invalid timestamp are left to ``schema_part`` (which gives the reason)."""
        plan = _native_plan(schema) if schema is not None else None
        if plan is None:
            return None
        spec, names, date_days = plan
        split = typed_fields(batch.table.column("line"), spec, names, date_days)
        if split is None:
            return None
        part, read = split
        lines = batch.table
        if data is not None:  # comment lines: neither read nor left to the SQL parser
            part = part.filter(data.filter(read))
            read = pc.and_(read, data)
            lines = lines.filter(data)
            read = read.filter(data)
        if "url_original" not in names and "url_path" in names:
            query = part.column("url_query") if "url_query" in names else None
            part = part.append_column("url_original", _url_original(part.column("url_path"),
                                                                    query))
        kept, rest = read_and_rest(lines, read)
        part = part.append_column("source_line", kept.column("n")).append_column(
            "raw", kept.column("line"))
        return part, rest


def _url_original(path: pa.ChunkedArray, query: pa.ChunkedArray | None) -> pa.Array:
    """stem + '?' + query (the stem alone without a query), as schema_part's SQL gives it,
    joined once per distinct (stem, query) pair: both are dictionary-encoded columns."""
    path = _dict(path)
    if query is None:
        return path
    query = _dict(query)
    nq = len(query.dictionary) + 1  # (the last code: no query)
    key = pc.add(pc.multiply(path.indices.cast(pa.int64()), nq),
                 query.indices.cast(pa.int64()).fill_null(nq - 1))
    pairs = pc.dictionary_encode(key)
    p_code = pc.divide(pairs.dictionary, nq)
    q_code = pc.subtract(pairs.dictionary, pc.multiply(p_code, nq))
    stems = path.dictionary.take(p_code)
    queries = query.dictionary.take(
        pc.if_else(pc.equal(q_code, nq - 1), pa.scalar(None, pa.int64()), q_code))
    urls = pc.if_else(pc.is_null(queries), stems, pc.binary_join_element_wise(stems, queries, "?"))
    return indexed(pairs.indices, urls)


def _dict(col: pa.ChunkedArray) -> pa.DictionaryArray:
    col = col.combine_chunks()
    return col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)


# typed_fields codes of the mapped columns that are not plain text ('-' -> NULL)
_CODES = {"source_port": "i", "destination_port": "i", "http_response_status_code": "i",
          "http_response_body_bytes": "l", "user_agent_original": "p"}


def _native_plan(schema: _Schema) -> tuple[str, list[str], int | None] | None:
    """(typed_fields spec, column names, the ``#Date:`` day) of a schema with a timestamp."""
    codes, names = [], []
    for f in schema.fields:
        col = _MAP[f][0] if f in _MAP else None
        if f in ("date", "time"):
            codes.append(f[0].upper())
        elif col is not None and col not in names:
            codes.append(_CODES.get(col, "s"))
            names.append(col)
        else:
            codes.append("x")
    if "time" not in schema.fields:
        return None
    date_days = None
    if "date" not in schema.fields:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", schema.date or ""):
            return None
        try:
            date_days = (date.fromisoformat(schema.date) - date(1970, 1, 1)).days
        except ValueError:
            return None
    return "".join(codes), [*names, "ts"], date_days


def _columns(schema: _Schema) -> tuple[dict[str, str], str | None]:
    """(column -> SQL over the split fields ``f``, the timestamp SQL or None)."""
    pos = {f: i + 1 for i, f in enumerate(schema.fields)}
    cols: dict[str, str] = {}
    for f, i in pos.items():
        if f in _MAP:
            col, expr = _MAP[f]
            cols.setdefault(col, expr.format(v=f"ts_dash(f[{i}])"))
    if "url_original" not in cols and "url_path" in cols:
        q = cols.get("url_query", "NULL")
        cols["url_original"] = f"{cols['url_path']} || coalesce('?' || {q}, '')"
    if "date" in pos and "time" in pos:
        ts = f"try_cast(f[{pos['date']}] || ' ' || f[{pos['time']}] AS TIMESTAMP)"
    elif "time" in pos and schema.date:
        ts = f"try_cast({sql_str(schema.date)} || ' ' || f[{pos['time']}] AS TIMESTAMP)"
    else:
        ts = None
    return cols, ts
