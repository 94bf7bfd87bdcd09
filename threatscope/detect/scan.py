"""Read the lake for detection: the candidate rows of each group of files, as Arrow tables.

    for cand, pre, scanned in candidate_groups(con, ws, "http", rules):
        source = matcher.arrow_source(con, "__ts_cand", cand)
        con.sql(pre.query(source, "source_line"))      # (source_line, hits) of the matches

Only the columns the rules and the detection rows read are loaded, text columns as
dictionaries (as ingest wrote them): the prefilter (``matcher.candidates``) evaluates the rules'
one-column parts once per dictionary value and flags rows by dictionary index, so the full
match runs on the few candidate rows only. ``raw``, the widest column, is read only when a rule
reads it, or for the candidate rows whose evidence needs it. Files are taken in groups of at
most ``GROUP_ROWS`` rows, which bounds memory on a large lake.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from threatscope import schema
from threatscope.arrowutil import constant
from threatscope.detect.matcher import Prefilter, candidates, value_columns
from threatscope.detect.ruleset import CompiledRule
from threatscope.detect.sqltext import read_columns
from threatscope.sqlfn import field_column, with_fields

GROUP_ROWS = 4_000_000
# Columns the detection rows are made of (see stage._sigma), besides the rules' own.
KEEP = ("org_id", "ts", "source_ip", "event_kind", "file_id", "source_file", "source_line",
        "http_request_method", "url_original")
_DICT = pa.dictionary(pa.int32(), pa.string())


def rule_columns(rules: Sequence[CompiledRule], kind: str) -> set[str]:
    """The columns of ``kind`` that the rules' SQL reads (the compiler quotes every name),
    field columns (sqltext.field_column: ``event_data.Image``) included."""
    return read_columns("\n".join(r.sql for r in rules), (n for n, _ in schema.KINDS[kind]))


def lake_files(ws, kind: str) -> list[Path]:
    root = ws.lake / kind
    return sorted(root.rglob("*.parquet")) if root.exists() else []


def candidate_groups(con: duckdb.DuckDBPyConnection, ws, kind: str,
                     rules: Sequence[CompiledRule]) -> Iterator[tuple[pa.Table, Prefilter, int]]:
    """(candidate rows, their matcher.Prefilter, rows scanned) per group of lake files of
    ``kind``; run the Prefilter's query before taking the next group."""
    types = dict(schema.KINDS[kind])
    read = rule_columns(rules, kind) | {c for c in KEEP if c in types}
    group: list[tuple[Path, int]] = []
    rows = 0
    for f in lake_files(ws, kind):
        n = pq.ParquetFile(f).metadata.num_rows
        if group and rows + n > GROUP_ROWS:
            yield _group(con, kind, rules, group, read)
            group, rows = [], 0
        group.append((f, n))
        rows += n
    if group:
        yield _group(con, kind, rules, group, read)


def _group(con, kind: str, rules, files: list[tuple[Path, int]], read: set[str]
           ) -> tuple[pa.Table, Prefilter, int]:
    types = dict(schema.KINDS[kind])
    fields = sorted(c for c in read if field_column(c))
    parents = {field_column(c)[0] for c in fields}
    cols = [c for c, _ in schema.KINDS[kind] if c in read or c in parents]
    table = _read(files, cols, types)
    if fields:
        table = _with_fields(con, table, fields)
    pre = candidates(con, rules, table, value_columns(table, rules), types)
    cand = table.filter(pre.mask)
    if "raw" not in read:
        cand = cand.append_column("raw", _raw_for_evidence(files, table, pre.mask))
    return cand, pre, table.num_rows


def _read(files: list[tuple[Path, int]], cols: list[str], types: dict[str, str]) -> pa.Table:
    """``cols`` of ``files``, in file order. One dataset scan reads the files in parallel (a
    read per file costs more in set-up than in data here); a column missing from an older file
    comes back NULL. ``org_id`` and ``file_id`` are not stored: the partition folder and the
    file name (``<file_id>_<n>.parquet``) give them."""
    as_dict = {c for c in cols if types[c] == "VARCHAR" and c != "raw"}  # raw: unique per row
    stored = [c for c in cols if c not in ("org_id", "file_id")]
    fields = [pa.field(c, _DICT if c in as_dict else schema.ARROW_TYPES[types[c]]) for c in stored]
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
        dictionary_columns=[c for c in stored if c in as_dict]))
    # one batch per row group, so that each chunk has one dictionary (value_columns sums them)
    data = ds.dataset([str(f) for f, _ in files], schema=pa.schema(fields), format=fmt
                      ).to_table(columns=stored, batch_size=max(1, *(n for _, n in files)))
    out = {}
    for c in cols:
        if c == "org_id":
            out[c] = pa.chunked_array([constant(_org_of(f), n) for f, n in files])
        elif c == "file_id":
            out[c] = pa.chunked_array([constant(f.name.split("_", 1)[0], n) for f, n in files])
        else:
            out[c] = data.column(c)
    return pa.table(out)


def _with_fields(con: duckdb.DuckDBPyConnection, table: pa.Table, fields: list[str]
                 ) -> pa.Table:
    """``table`` with the field columns (sqltext.field_column) the rules read, taken out of
    their JSON object columns (one parse per row), dictionary-encoded like the stored text
    columns so that they are evaluated once per distinct value."""
    parents = sorted({field_column(c)[0] for c in fields})
    con.register("__ts_objects", table.select(parents))
    try:
        got = con.sql(with_fields("SELECT * FROM __ts_objects", fields)).to_arrow_table()
    finally:
        con.unregister("__ts_objects")
    for c in fields:
        table = table.append_column(c, pc.dictionary_encode(got.column(c)))
    return table


def _org_of(path: Path) -> str:
    return next((p.partition("=")[2] for p in path.parts if p.startswith("org_id=")), "")


def _raw_for_evidence(files: list[tuple[Path, int]], table: pa.Table, mask: pa.Array
                      ) -> pa.Array:
    """``raw`` of the candidate rows that have no URL to show (NULL for the others): read only
    from the files that have such rows."""
    if "url_original" in table.column_names:
        need = pc.and_(mask, pc.is_null(table.column("url_original").combine_chunks()))
    else:
        need = mask
    parts = []
    start = 0
    for f, n in files:
        m = mask.slice(start, n)
        k = pc.sum(m).as_py() or 0
        if k and pc.any(need.slice(start, n)).as_py():
            raw = pq.read_table(f, columns=["raw"]).column("raw").combine_chunks()
            parts.append(raw.filter(m))
        elif k:
            parts.append(pa.nulls(k, pa.string()))
        start += n
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())
