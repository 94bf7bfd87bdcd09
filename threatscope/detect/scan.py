"""Read the lake for detection: groups of lake files as Arrow tables of the columns rules read.

    for group in groups(con, ws, "http", engine.read):
        rows, rules = engine.match(con, group.table, group.column)
        raw = group.column("raw", rows)           # the raw lines of those rows

Text columns come as dictionaries (as ingest wrote them), which the engine evaluates once per
value; field columns (``event_data.Image``) are taken out of their JSON object once per row and
dictionary-encoded too. ``raw``, the widest column, is not read with the others: the engine
asks for it (``Group.column``) for the rows a rule must test it on, the stage for the rows
whose evidence shows it. Files are taken in groups of at most ``GROUP_ROWS`` rows,
``GROUP_CELLS`` values and ``GROUP_BYTES`` bytes (uncompressed), which bounds memory on a large
lake.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from threatscope import schema
from threatscope.arrowutil import constant
from threatscope.sqlfn import field_column

GROUP_ROWS = 4_000_000
GROUP_BYTES = 1 << 30  # of the columns read, uncompressed
GROUP_CELLS = 80_000_000  # rows x columns read
# Columns the detection rows are made of (see stage._sigma), besides the rules' own.
KEEP = ("org_id", "ts", "source_ip", "event_kind", "file_id", "source_file", "source_line",
        "http_request_method", "url_original")
_DICT = pa.dictionary(pa.int32(), pa.string())


def lake_files(ws, kind: str) -> list[Path]:
    root = ws.lake / kind
    return sorted(root.rglob("*.parquet")) if root.exists() else []


@dataclass
class Group:
    """Some lake files of one kind, read: ``table`` has their rows in file order. Hits on
    rows ``exclude`` marks are not detections (another group holds those events whole)."""

    files: list[tuple[Path, int]]  # (file, rows)
    table: pa.Table
    exclude: pa.Array | None = None

    def column(self, name: str, rows: pa.Array) -> pa.Array:
        """Column ``name`` of ``rows`` (int64 indexes into ``table``), from ``table`` when it
        has the column, else read only from the files those rows are in (``raw``, the widest
        column, is read this way: for the rows a rule or the evidence needs)."""
        if name in self.table.column_names:
            return self.table.column(name).take(rows).combine_chunks()
        parts = []
        order = pc.sort_indices(rows)
        ordered = rows.take(order)
        start = 0
        for f, n in self.files:
            inside = pc.and_(pc.greater_equal(ordered, start), pc.less(ordered, start + n))
            local = pc.subtract(ordered.filter(inside), start)
            if len(local):
                col = pq.read_table(f, columns=[name]).column(name)
                parts.append(col.take(local).combine_chunks())
            start += n
        got = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
        return got.take(pc.sort_indices(order))  # back in the order of ``rows``


def groups(con: duckdb.DuckDBPyConnection, ws, kind: str, read: set[str]) -> Iterator[Group]:
    """The lake files of ``kind`` in groups, with the columns ``read`` (see the module doc)
    and those of KEEP; for ``ps_script``, then the script blocks logged in parts, whole
    (script_blocks), their parts' own hits excluded."""
    if kind != "ps_script":
        yield from _lake_groups(ws, kind, read)
        return
    for g in _lake_groups(ws, kind, set(read) | {"message_total", "script_block_id"}):
        part = pc.and_(pc.greater(g.table.column("message_total"), 1),
                       pc.is_valid(g.table.column("script_block_id")))
        yield Group(g.files, g.table, pc.fill_null(part, False).combine_chunks())
    if (blocks := script_blocks(con, read)) is not None:
        yield blocks


def _lake_groups(ws, kind: str, read: set[str]) -> Iterator[Group]:
    types = dict(schema.KINDS[kind])
    read = set(read) | {c for c in KEEP if c in types}
    stored = {c for c in read if c in types and c != "raw"} | \
        {f[0] for c in read if (f := field_column(c)) is not None}
    max_rows = max(1, min(GROUP_ROWS, GROUP_CELLS // max(1, len(stored))))
    group: list[tuple[Path, int]] = []
    rows = size = 0
    for f in lake_files(ws, kind):
        meta = pq.ParquetFile(f).metadata
        names = [meta.schema.column(j).name for j in range(meta.num_columns)]
        n = meta.num_rows
        b = sum(meta.row_group(i).column(j).total_uncompressed_size
                for i in range(meta.num_row_groups) for j, c in enumerate(names) if c in stored)
        if group and (rows + n > max_rows or size + b > GROUP_BYTES):
            yield _group(kind, group, read)
            group, rows, size = [], 0, 0
        group.append((f, n))
        rows += n
        size += b
    if group:
        yield _group(kind, group, read)


def _group(kind: str, files: list[tuple[Path, int]], read: set[str]) -> Group:
    types = dict(schema.KINDS[kind])
    fields = sorted(c for c in read if field_column(c))
    parents = {field_column(c)[0] for c in fields}
    cols = [c for c, _ in schema.KINDS[kind] if (c in read or c in parents) and c != "raw"]
    return Group(files, _read(files, cols, types))


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
    # one batch per row group: few chunks, each with one dictionary
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


def script_blocks(con: duckdb.DuckDBPyConnection, read: set[str]) -> Group | None:
    """PowerShell splits a long script block over several 4104 events (MessageNumber of
    MessageTotal, one ScriptBlockId): one row per such block (per organisation and host), its
    parts' text joined in order, so that a rule sees text that spans two parts. The row is the
    first part's event (its file, line, time and fields); ``raw`` is the parts' records, one a
    line. None when the lake has no such block."""
    types = dict(schema.KINDS["ps_script"])
    read = set(read) | {c for c in KEEP if c in types} | {"raw"}
    parents = {f[0] for c in read if (f := field_column(c)) is not None}
    cols = [c for c, _ in schema.KINDS["ps_script"] if c in read or c in parents]
    blocks = con.sql(f"SELECT * FROM ({joined_blocks_sql(cols)}) "
                     "ORDER BY org_id, ts, file_id, source_line").to_arrow_table()
    if not blocks.num_rows:
        return None
    out = {c: (pc.dictionary_encode(blocks.column(c)) if types.get(c) == "VARCHAR" and c != "raw"
               else blocks.column(c)) for c in blocks.column_names}
    return Group([], pa.table(out))


# a ps_script row that is one part of a block logged in several
IN_PARTS = "message_total > 1 AND script_block_id IS NOT NULL"


def joined_blocks_sql(cols: list[str]) -> str:
    """The ps_script blocks logged in parts, one row each (per organisation, host and block
    id) with ``cols``: the text and the raw records joined in part order, every other column
    the first part's."""
    joined = {"script_block_text": "string_agg(script_block_text, '' ORDER BY message_number)",
              "raw": "string_agg(raw, chr(10) ORDER BY message_number)"}
    select = ", ".join(f'{joined[c]} AS "{c}"' if c in joined
                       else f'arg_min("{c}", (message_number, ts)) AS "{c}"' for c in cols)
    return (f"SELECT {select} FROM ps_script WHERE {IN_PARTS} "
            "GROUP BY org_id, computer, script_block_id")


def _org_of(path: Path) -> str:
    return next((p.partition("=")[2] for p in path.parts if p.startswith("org_id=")), "")
