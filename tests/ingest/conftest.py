"""Helpers for the ingest tests: write small inputs, ingest them, read rows back."""

from __future__ import annotations

from pathlib import Path

import pytest

from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws", create=True)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def run(ws: Workspace, *paths, **kw):
    return ingest_paths(ws, [str(p) for p in paths], **kw)


def rows(ws: Workspace, kind: str = "http", cols: str = "*", where: str = "true") -> list[dict]:
    with ws.connect() as con:
        cur = con.execute(f"SELECT {cols} FROM {kind} WHERE {where} ORDER BY source_file, "
                          "source_line")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def quarantine(ws: Workspace) -> list[tuple]:
    with ws.connect() as con:
        return con.execute("SELECT source_line, reason FROM quarantine "
                           "ORDER BY source_file, source_line").fetchall()


def manifest(ws: Workspace) -> list[dict]:
    with ws.connect() as con:
        cur = con.execute("SELECT * FROM ingest_manifest ORDER BY path")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def assert_invariant(summary) -> None:
    for f in summary.per_file:
        if f["status"] == "ingested":
            assert f["lines_read"] == (f["rows_written"] + f["rows_quarantined"]
                                       + f["comment_lines"] + f["lines_ignored"]), f
