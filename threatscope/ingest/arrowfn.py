"""Vectorised column helpers shared by the format parsers and the ingest driver.

    fields, valid = split_fields(batch.block, 10, quote='"')  # pyarrow.csv split of the lines
    (ts,) = per_distinct(con, fields["f3"], ["try_strptime(v, '[%d/%b/%Y:%H:%M:%S')"])

``split_fields`` splits the lines of a clean batch (``reader.Batch.block``) into a fixed number of
fields with pyarrow's multithreaded-C++ CSV tokenizer; rows with another number of fields are
only flagged. ``per_distinct`` evaluates DuckDB SQL expressions (the same macros as the SQL
parsers, so the same semantics) once per distinct value of a column: log columns repeat a lot
(timestamps, clients, requests, user agents), so this is much cheaper than once per row, and a
string result comes back dictionary-encoded, which the Parquet writer stores as it is.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv


def split_fields(block: bytes, count: int, delimiter: str = " ", quote: str | None = None,
                 lines: int | None = None) -> tuple[pa.Table, pa.Array | None] | None:
    """Split newline-separated lines into ``count`` string fields ``f0..``; ``quote`` enables
    CSV quoting (no escape character, no doubled quotes). ``lines``: the number of lines in
    ``block`` when the caller knows it (``batch.table.num_rows`` of a clean batch); counting
    them here scans the whole block while holding the GIL, which stalls the other workers.

    Returns (fields of the lines that have ``count`` fields, in order; a boolean mask over all
    lines of which those are, or None when all are), or None when the rows cannot be aligned
    with the lines (a quoted value running past its line end).
    """
    invalid: list[int | None] = []

    def flag(row) -> str:
        invalid.append(row.number)
        return "skip"

    names = [f"f{i}" for i in range(count)]
    table = pcsv.read_csv(
        pa.py_buffer(block),
        pcsv.ReadOptions(column_names=names, use_threads=False, block_size=len(block) + 1),
        pcsv.ParseOptions(delimiter=delimiter, quote_char=quote or False, escape_char=False,
                          double_quote=False, newlines_in_values=False,
                          ignore_empty_lines=False, invalid_row_handler=flag),
        pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), check_utf8=False,
                            strings_can_be_null=False, quoted_strings_can_be_null=False),
    ).combine_chunks()
    # A quote left open swallows the next line: then the row count is short. (A lone CR would
    # add a row, but clean blocks have none, so an equal count means aligned rows.)
    if lines is None:
        lines = block.count(b"\n") + 1 if block else 0
    if table.num_rows + len(invalid) != lines or None in invalid:
        return None
    if not invalid:
        return table, None
    bad = pa.array([n - 1 for n in invalid], pa.int64())
    valid = pc.invert(pc.is_in(pa.array(range(lines), pa.int64()), value_set=bad))
    return table, valid


def expand(valid: pa.Array | None, values: pa.Array) -> pa.Array:
    """A boolean over all lines from one over the valid lines (False where not valid)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if valid is None:
        return values
    return pc.replace_with_mask(valid, valid, values)


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
            indices = enc.indices
            if values.null_count:
                indices = pc.if_else(pc.take(pc.is_null(values), indices), None, indices)
                values = pc.fill_null(values, "")
            out.append(pa.DictionaryArray.from_arrays(indices, values.cast(pa.string())))
        else:
            out.append(pc.take(values, enc.indices))
    return out


def encode(arr: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    """``arr`` as one dictionary array (unchanged if it is one)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if isinstance(arr, pa.DictionaryArray) else pc.dictionary_encode(arr)


def constant(value: str, n: int) -> pa.DictionaryArray:
    """``n`` times the same string, dictionary-encoded (no per-row copy)."""
    return pa.DictionaryArray.from_arrays(pa.repeat(pa.scalar(0, pa.int32()), n),
                                          pa.array([value], pa.string()))
