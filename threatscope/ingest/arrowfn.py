"""Vectorised column helpers shared by the format parsers and the ingest driver.

    table, read = typed_fields(batch.table["line"], "SxsAR", ["ip", "user", "m", "u", "v", "ts"])
    (num,) = per_distinct(con, table["ip"], ["ts_ip_num(v)"])

``typed_fields`` splits lines (a batch's ``line`` column) into typed columns in one C pass
(``_native.c``), reading only the lines of exactly the expected shape; the format's SQL parser
reads the others. ``per_distinct`` evaluates DuckDB SQL expressions (the same macros as the SQL
parsers, so the same semantics) once per distinct value of a column: log columns repeat a lot
(timestamps, clients, requests, user agents), so this is much cheaper than once per row, and a
string result comes back dictionary-encoded, which the Parquet writer stores as it is.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from threatscope.arrowutil import indexed
from threatscope.native import native


def typed_fields(lines: pa.Array | pa.ChunkedArray, spec: str, names: list[str],
                 date_days: int | None = None) -> tuple[pa.Table, pa.Array] | None:
    """Split ``lines`` (text, one line each) into typed columns with the C splitter
    (``_native.c`` documents the ``spec`` codes: one per space-separated field).

    Returns (a table of the lines it could read, columns ``names`` in spec order, text columns
    dictionary-encoded; a boolean mask over all lines of which those are), or None when the
    C extension is not built (or ``THREATSCOPE_NATIVE=0``): the caller's SQL parser then reads
    every line. The splitter is strict: a line it does not read is one for the SQL parser."""
    if (c := native()) is None or len(spec) > c.MAX_FIELDS:
        return None
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks() if lines.num_chunks != 1 else lines.chunk(0)
    args = (to_native(lines), spec) if date_days is None else \
        (to_native(lines), spec, date_days)
    nlines, ok, nrows, cols = c.fields(*args)
    arrays = []
    for col in cols:
        arrays.append(_from_native(nrows, col))
    mask = pa.Array.from_buffers(pa.bool_(), nlines, [None, pa.py_buffer(ok)])
    return pa.table(dict(zip(names, arrays, strict=True))), mask


def read_and_rest(lines: pa.Table, read: pa.Array) -> tuple[pa.Table, pa.Table]:
    """(the rows of ``lines`` that ``read`` flags, the others): without a copy when all are
    read, the common case (a filter would copy every line)."""
    if read.null_count == 0 and pc.all(read).as_py() is not False:
        return lines, lines.slice(0, 0)
    return lines.filter(read), lines.filter(pc.invert(read))


_NATIVE_TYPES = {"str": pa.string(), "i32": pa.int32(), "i64": pa.int64(),
                 "ts": pa.timestamp("us"), "d128": pa.decimal128(38, 0)}


def _from_native(n: int, col: tuple) -> pa.Array:
    kind, valid, *bufs = col
    validity = None if valid is None else pa.py_buffer(valid)
    if kind == "dict":
        idx, offsets, data = map(pa.py_buffer, bufs)
        values = pa.Array.from_buffers(pa.string(), len(offsets) // 4 - 1, [None, offsets, data])
        return pa.DictionaryArray.from_arrays(
            pa.Array.from_buffers(pa.int32(), n, [validity, idx]), values)
    return pa.Array.from_buffers(_NATIVE_TYPES[kind], n, [validity, *map(pa.py_buffer, bufs)])


def to_native(arr: pa.Array) -> tuple:
    """The (n, offset, validity, offsets, data) of a string array, for _native's functions."""
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    validity, offsets, data = arr.buffers()
    if offsets is None:  # (an empty array may have none)
        offsets = bytes(4 * (arr.offset + len(arr) + 1))
    return len(arr), arr.offset, validity, offsets, data if data is not None else b""


def ip_numbers(con, arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``ts_ip_num`` of each value as DECIMAL(38,0) (the lake's storage type): NULL when the
    value is no address or its number has 39 digits (fe80::/10 and above)."""
    if (c := native()) is None:
        return per_distinct(con, arr, ["TRY_CAST(ts_ip_num(v) AS DECIMAL(38,0))"])[0]
    enc = encode(arr)
    values = _from_native(len(enc.dictionary), c.ip_numbers(*to_native(enc.dictionary)))
    return indexed(enc.indices, values)  # (as a dictionary: Parquet writes it as it is)


def url_parts(con, arr: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    """``[ts_url_path(v), ts_url_query(v), ts_url_decode(v)]`` of each value (sqlfn),
    dictionary-encoded."""
    if (c := native()) is None:
        return per_distinct(con, arr, ["ts_url_path(v)", "ts_url_query(v)", "ts_url_decode(v)"])
    enc = encode(arr)
    parts = [_from_native(len(enc.dictionary), col)
             for col in c.url_parts(*to_native(enc.dictionary))]
    # each part is a dictionary over the distinct URLs: index it by the rows' URL indexes
    return [pa.DictionaryArray.from_arrays(pc.take(d.indices, enc.indices), d.dictionary)
            for d in parts]


def per_distinct(con, arr: pa.Array | pa.ChunkedArray, exprs: list[str], let: str = ""
                 ) -> list[pa.Array]:
    """Evaluate SQL expressions of ``v`` (each value of ``arr``) once per distinct value;
    ``let`` names more terms for them (``"string_split(v, ' ') AS r"``).

    Returns one array per expression, aligned with ``arr`` (NULL where ``arr`` is NULL).
    VARCHAR results come back as dictionary arrays."""
    enc = encode(arr)
    con.register("_ts_distinct", pa.table({"v": enc.dictionary}))
    try:
        src = f"(SELECT v, {let} FROM _ts_distinct)" if let else "_ts_distinct"
        res = con.sql("SELECT " + ", ".join(f"({e}) AS c{i}" for i, e in enumerate(exprs))
                      + f" FROM {src}").to_arrow_table()
    finally:
        con.unregister("_ts_distinct")
    out = []
    for col in res.columns:
        values = col.combine_chunks()
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            out.append(indexed(enc.indices, values))
        else:
            out.append(pc.take(values, enc.indices))
    return out


def encode(arr: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """``arr`` as one dictionary array (unchanged if it is one)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if isinstance(arr, pa.DictionaryArray) else pc.dictionary_encode(arr)
