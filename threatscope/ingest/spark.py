"""Ingest on Spark: one Spark task per input file, running the DuckDB engine's own per-file code.

    from threatscope.ingest import ingest_paths
    summary = ingest_paths(ws, ["logs/"], engine="spark")            # threatscope.spark.session()
    summary = ingest_paths(ws, ["logs/"], engine="spark", spark=s)   # a session of your own

The driver resolves the inputs, undoes any interrupted ingest (``lake.rollback``) and reads the
manifest; a DataFrame of input numbers (one row and one partition per file) is mapped with
``mapInArrow`` to ``pipeline._process``: sniff, skip a file already in the manifest, parse and
write the staged Parquet files under ``lake/.staging``, exactly as the DuckDB engine does. Each
task returns its file's manifest figures and quarantine rows; the driver then commits the files
in input order with ``pipeline._commit`` (move into the lake, one catalog transaction per file),
so the lake file names, rows, manifest and quarantine are those of the DuckDB engine and a kill
at any moment is undone by the next run's rollback. Staged files become visible only at commit.

The workspace must be at the same path on the driver and the executors (a shared file system on
a cluster). Standard input cannot be handed to tasks: ``-`` is a UserError here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from threatscope import spark as ts_spark
from threatscope.errors import UserError
from threatscope.ingest import lake, pipeline
from threatscope.ingest.pipeline import IngestSummary, Progress, _FileResult, _Input, _Known
from threatscope.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MAX_TASKS = 4096  # beyond this many files a task takes a contiguous run of them

QUARANTINE = pa.struct([("source_line", pa.int64()), ("reason", pa.string()),
                        ("raw", pa.string())])
# One row per input file: what pipeline._commit needs of its _FileResult.
RESULT = pa.schema([
    ("idx", pa.int64()), ("status", pa.string()), ("file_id", pa.string()),
    ("sha256", pa.string()), ("size", pa.int64()), ("fmt", pa.string()),
    ("lines_read", pa.int64()), ("rows_written", pa.int64()), ("rows_quarantined", pa.int64()),
    ("comment_lines", pa.int64()), ("lines_ignored", pa.int64()), ("first_line", pa.int64()),
    ("continues", pa.string()), ("rows_by_kind", pa.string()), ("derived_by_kind", pa.string()),
    ("orgs", pa.list_(pa.string())), ("error", pa.string()), ("staged", pa.string()),
    ("started_at", pa.string()), ("quarantine", pa.list_(QUARANTINE)),
])
RESULT_DDL = (
    "idx BIGINT, status STRING, file_id STRING, sha256 STRING, size BIGINT, fmt STRING, "
    "lines_read BIGINT, rows_written BIGINT, rows_quarantined BIGINT, comment_lines BIGINT, "
    "lines_ignored BIGINT, first_line BIGINT, continues STRING, rows_by_kind STRING, "
    "derived_by_kind STRING, orgs ARRAY<STRING>, error STRING, staged STRING, "
    "started_at STRING, quarantine ARRAY<STRUCT<source_line: BIGINT, reason: STRING, "
    "raw: STRING>>"
)


def ingest_paths(
    ws: Workspace,
    paths: Sequence[str],
    org: str | None = None,
    fmt: str = "auto",
    progress: Progress | None = None,
    only: Sequence[str] | None = None,
    fallback: str | None = None,
    spark: SparkSession | None = None,
) -> IngestSummary:
    """:func:`threatscope.ingest.pipeline.ingest_paths` on Spark (arguments checked there).

        summary = ingest_paths(ws, ["logs/", "eve.json.gz"], spark=ts_spark.session())

    ``progress(advance, total, description)`` advances by a file's size as it is committed.
    """
    if "-" in paths:
        raise UserError("the Spark engine cannot read standard input ('-'): save it to a file "
                        "first, or ingest it with --engine duckdb")
    summary = IngestSummary()
    inputs, errors = pipeline._resolve(paths)
    summary.errors.extend(errors)
    if not inputs:
        raise UserError("no input files found in " + ", ".join(paths) if paths
                        else "no input paths given")
    for inp in inputs:  # executors run in folders of their own; source_file stays as given
        inp.path = os.path.abspath(inp.path)
    spark = spark or ts_spark.session()  # before any file is written: its errors are UserErrors
    with ws.connect() as con:
        lake.rollback(ws, con)
        stage_root = lake.staging_root(ws)
        stage_root.mkdir(parents=True, exist_ok=True)
        known = pipeline._known_files(con)
        total = sum(pipeline._size(i.path) for i in inputs)
        task = _Task(inputs, fmt, org, str(stage_root), known, str(ws.root / ".tmp"), only,
                     fallback)
        n = len(inputs)
        # one row and one partition per file: a big file does not wait behind small ones
        table = (spark.range(0, n, 1, min(n, MAX_TASKS))
                 .mapInArrow(task, RESULT_DDL).toArrow())
        try:
            for row in sorted(table.to_pylist(), key=lambda r: r["idx"]):
                res = _result(inputs[row["idx"]], row)
                pipeline._commit(ws, con, res, summary)
                ws.refresh_views(con)
                if progress is not None and res.size:
                    progress(res.size, total, res.inp.display)
        finally:
            shutil.rmtree(stage_root, ignore_errors=True)
            shutil.rmtree(ws.root / ".tmp", ignore_errors=True)
    return summary


class _Task:
    """The mapInArrow function: ingest the files whose input numbers arrive (on an executor).
    A class rather than a closure so that what is shipped to the executors is explicit."""

    def __init__(self, inputs: list[_Input], fmt: str, org: str | None, stage_root: str,
                 known: dict[str, list[_Known]], tmpdir: str, only: Sequence[str] | None,
                 fallback: str | None):
        self.inputs, self.fmt, self.org, self.stage_root = inputs, fmt, org, stage_root
        self.known, self.tmpdir, self.only, self.fallback = known, tmpdir, only, fallback

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pipeline._keep_freed_memory()
        # one parse thread: Spark already runs a task per core
        with pipeline._Workers(1, Path(self.tmpdir)) as workers:
            for batch in batches:
                for idx in batch.column(0).to_pylist():
                    res = pipeline._process(self.inputs[idx], self.fmt, self.org,
                                            Path(self.stage_root), self.known, _no_report,
                                            workers, self.only, self.fallback)
                    yield _row(idx, res)


def _no_report(n: int, desc: str) -> None:
    """Progress inside a task goes nowhere: the driver reports files as it commits them."""


def _row(idx: int, res: _FileResult) -> pa.RecordBatch:
    quarantine: list[dict] = []
    if res.status == "ingested" and res.quarantine_files:
        # the rows travel back with the result: the driver records them, not the executor
        q = pa.concat_tables([pq.read_table(f) for f in res.quarantine_files])
        quarantine = q.select(["source_line", "reason", "raw"]).to_pylist()
    return pa.RecordBatch.from_pylist([{
        "idx": idx, "status": res.status, "file_id": res.file_id, "sha256": res.sha256,
        "size": res.size, "fmt": res.fmt, "lines_read": res.lines_read,
        "rows_written": res.rows_written, "rows_quarantined": res.rows_quarantined,
        "comment_lines": res.comment_lines, "lines_ignored": res.lines_ignored,
        "first_line": res.first_line, "continues": res.continues,
        "rows_by_kind": json.dumps(res.rows_by_kind),
        "derived_by_kind": json.dumps(res.derived_by_kind), "orgs": sorted(res.orgs),
        "error": res.error, "staged": str(res.staged) if res.staged else None,
        "started_at": res.started_at.isoformat() if res.started_at else None,
        "quarantine": quarantine,
    }], schema=RESULT)


def _result(inp: _Input, row: dict) -> _FileResult:
    """The task's row as the _FileResult pipeline._commit takes."""
    q = row["quarantine"] or []
    return _FileResult(
        inp, row["status"], file_id=row["file_id"], sha256=row["sha256"], size=row["size"],
        fmt=row["fmt"], lines_read=row["lines_read"], rows_written=row["rows_written"],
        rows_quarantined=row["rows_quarantined"], comment_lines=row["comment_lines"],
        lines_ignored=row["lines_ignored"], first_line=row["first_line"],
        continues=row["continues"], rows_by_kind=json.loads(row["rows_by_kind"]),
        derived_by_kind=json.loads(row["derived_by_kind"]), orgs=set(row["orgs"] or ()),
        error=row["error"], staged=Path(row["staged"]) if row["staged"] else None,
        quarantine=pa.Table.from_pylist(q, schema=pa.schema(list(QUARANTINE))) if q else None,
        started_at=datetime.fromisoformat(row["started_at"]) if row["started_at"] else None,
    )
