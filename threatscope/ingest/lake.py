"""Where ingested data goes, and how an interrupted ingest is undone.

Commit protocol for one input file (``file_id`` = first 32 hex of the sha256 of its
decompressed content, computed while the file is read, so known only at its end):

1. Parquet and quarantine rows are written under ``lake/.staging/<run>/`` only (the Parquet
   files have no file_id column: the workspace view takes it from the lake file name);
2. the Parquet files are moved (renamed) into
   ``lake/<kind>/org_id=<org>/<file_id>_<n>.parquet`` (``event_date`` and ``ts`` are columns,
   their row-group statistics prune periods);
3. one catalog transaction inserts the file's quarantine rows and its ``ingest_manifest`` row:
   that insert is the commit point.

``rollback`` (run at the start of every ingest) deletes ``lake/.staging``, lake files whose
``file_id`` is not in the manifest and quarantine rows of such file ids, so that a ``kill -9`` at
any moment followed by a rerun gives the same totals and no duplicates. Rows without a
timestamp keep ``ts`` and ``event_date`` NULL.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from threatscope import schema
from threatscope.workspace import Workspace

STAGING = ".staging"


def staging_root(ws: Workspace) -> Path:
    return ws.lake / STAGING


def committed_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT file_id FROM ingest_manifest").fetchall()}


def rollback(ws: Workspace, con: duckdb.DuckDBPyConnection) -> int:
    """Undo every trace of uncommitted ingests; returns the number of lake files removed."""
    shutil.rmtree(staging_root(ws), ignore_errors=True)
    ids = committed_ids(con)
    removed = 0
    for kind in schema.KINDS:
        root = ws.lake / kind
        if not root.exists():
            continue
        for f in root.rglob("*.parquet"):
            if f.name.split("_", 1)[0] not in ids:
                f.unlink(missing_ok=True)
                removed += 1
    con.execute(
        "DELETE FROM quarantine WHERE file_id NOT IN (SELECT file_id FROM ingest_manifest)"
    )
    return removed


def move_into_lake(ws: Workspace, staged: Path, file_id: str) -> list[Path]:
    """Move ``staged/<kind>/<chunk>/org_id=../*.parquet`` into the lake."""
    moved: list[Path] = []
    if not staged.exists():
        return moved
    k = 0
    for kind_dir in sorted(p for p in staged.iterdir() if p.is_dir() and p.name in schema.KINDS):
        for f in sorted(kind_dir.rglob("*.parquet")):
            rel = f.relative_to(kind_dir).parts  # (chunk, org_id=.., name)
            target = ws.lake / kind_dir.name / rel[1]
            target.mkdir(parents=True, exist_ok=True)
            dest = target / f"{file_id}_{k}.parquet"
            os.replace(f, dest)
            moved.append(dest)
            k += 1
    return moved
