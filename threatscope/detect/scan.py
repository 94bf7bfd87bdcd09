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

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from threatscope import schema
from threatscope.arrowutil import constant
from threatscope.detect.matcher import Prefilter, candidates, value_columns
from threatscope.detect.ruleset import CompiledRule

GROUP_ROWS = 4_000_000
# Columns the detection rows are made of (see stage._sigma), besides the rules' own.
KEEP = ("org_id", "ts", "source_ip", "event_kind", "file_id", "source_file", "source_line",
        "http_request_method", "url_original")
_DICT = pa.dictionary(pa.int32(), pa.string())


def rule_columns(rules: Sequence[CompiledRule], kind: str) -> set[str]:
    """The columns of ``kind`` that the rules' SQL reads (the compiler quotes every name)."""
    names = {n for n, _ in schema.KINDS[kind]}
    text = "\n".join(r.sql for r in rules)
    return {m for m in re.findall(r'"([a-z_]+)"', text) if m in names}


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
    cols = [c for c, _ in schema.KINDS[kind] if c in read]
    table = pa.concat_tables([_read(f, n, cols, types) for f, n in files])
    pre = candidates(con, rules, table, value_columns(table, rules), types)
    cand = table.filter(pre.mask)
    if "raw" not in read:
        cand = cand.append_column("raw", _raw_for_evidence(files, table, pre.mask))
    return cand, pre, table.num_rows


def _read(path: Path, n: int, cols: list[str], types: dict[str, str]) -> pa.Table:
    stored = set(pq.read_schema(path).names)
    as_dict = {c for c in cols if types[c] == "VARCHAR" and c != "raw"}  # raw: unique per row
    t = pq.read_table(path, columns=[c for c in cols if c in stored],
                      read_dictionary=[c for c in cols if c in stored and c in as_dict])
    out = {}
    for c in cols:
        if c == "org_id":  # the partition folder
            org = next((p.partition("=")[2] for p in path.parts if p.startswith("org_id=")), "")
            out[c] = constant(org, n)
        elif c == "file_id":  # <file_id>_<n>.parquet
            out[c] = constant(path.name.split("_", 1)[0], n)
        elif c in stored:
            out[c] = t.column(c)
        else:  # a column added to the schema after this file was written
            out[c] = pa.nulls(n, _DICT if c in as_dict else schema.ARROW_TYPES[types[c]])
    return pa.table(out)


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
