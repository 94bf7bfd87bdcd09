"""Ingest on Spark gives the DuckDB engine's lake files, rows, manifest and quarantine."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import pytest

from tests.ingest.test_eve import EVE
from tests.ingest.test_zeek import TSV
from threatscope.errors import UserError
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

# each stage compared in depth between the engines: `make test-spark` (minutes of Spark)
pytestmark = pytest.mark.spark_stages

ACCESS = [
    '203.0.113.9 - - [12/May/2018:10:00:01 +0000] "GET /GponForm/diag_Form?images/ HTTP/1.1" '
    '200 512 "-" "Mozilla/5.0"',
    '2001:db8::7 - - [12/May/2018:10:00:02 +0000] "POST /login HTTP/1.1" 302 0 "-" "curl/8"',
    'not a log line',  # malformed: quarantined
]
MANIFEST = ("file_id, path, size, sha256, format, org_id, lines_read, rows_written, "
            "rows_quarantined, comment_lines, lines_ignored, error, first_line, continues")


def _logs(root: Path) -> Path:
    logs = root / "logs"
    (logs / "acme").mkdir(parents=True)
    (logs / "globex").mkdir()
    (logs / "acme" / "access.log").write_text("\n".join(ACCESS) + "\n", encoding="utf-8")
    with gzip.open(logs / "acme" / "access.log.1.gz", "wt") as f:
        f.write(ACCESS[1] + "\n" + ACCESS[0] + "\n")
    (logs / "globex" / "eve.json").write_text(
        "".join(json.dumps(r) + "\n" for r in EVE) + "garbage\n", encoding="utf-8")
    (logs / "globex" / "http.log").write_text(TSV, encoding="utf-8")
    return logs


def _state(ws: Workspace) -> dict:
    """Everything an ingest leaves: lake file names, every row of every kind, the catalog."""
    files = sorted(str(p.relative_to(ws.lake)) for p in ws.lake.rglob("*.parquet"))
    with ws.connect() as con:
        kinds = {}
        for kind in ("http", "alert"):
            cur = con.execute(f"SELECT * EXCLUDE (source_file) FROM {kind} "
                              "ORDER BY file_id, source_line")
            kinds[kind] = cur.fetchall()
        man = con.execute(f"SELECT {MANIFEST} FROM ingest_manifest ORDER BY file_id").fetchall()
        quar = con.execute("SELECT file_id, source_line, format, reason, raw FROM quarantine "
                           "ORDER BY file_id, source_line").fetchall()
        orgs = con.execute("SELECT org_id FROM org ORDER BY 1").fetchall()
    return {"files": files, "kinds": kinds, "manifest": man, "quarantine": quar, "orgs": orgs}


def _relative(ws: Workspace, logs: Path, **kw):
    """Ingest with paths relative to the logs' parent, so both workspaces record equal paths."""
    cwd = os.getcwd()
    os.chdir(logs.parent)
    try:
        return ingest_paths(ws, [logs.name], **kw)
    finally:
        os.chdir(cwd)


def test_spark_ingest_equals_duckdb(spark_session, tmp_path):
    logs = _logs(tmp_path)
    ws_duck = Workspace.open(tmp_path / "duck", create=True)
    ws_spark = Workspace.open(tmp_path / "spark", create=True)
    want = _relative(ws_duck, logs)
    calls: list[tuple[int, int | None]] = []
    got = _relative(ws_spark, logs, engine="spark", spark=spark_session,
                    progress=lambda n, total, desc: calls.append((n, total)))
    total = sum(f.stat().st_size for f in logs.rglob("*") if f.is_file())
    assert sum(n for n, _ in calls) == total and {t for _, t in calls} == {total}
    assert (got.files, got.rows_written, got.rows_quarantined, got.lines_read) == \
        (want.files, want.rows_written, want.rows_quarantined, want.lines_read) == \
        (4, 9, 5, 25)
    assert not got.errors
    duck, spark = _state(ws_duck), _state(ws_spark)
    assert spark == duck
    assert duck["quarantine"] and duck["kinds"]["http"] and duck["kinds"]["alert"]
    assert not (ws_spark.lake / ".staging").exists()

    # a rerun finds everything in the manifest: nothing new, the same workspace
    again = _relative(ws_spark, logs, engine="spark", spark=spark_session)
    assert (again.files, again.skipped_files, again.rows_written) == (0, 4, 0)
    assert _state(ws_spark) == duck


def test_spark_ingest_grown_file_and_crash_leftovers(spark_session, tmp_path):
    log = tmp_path / "live" / "access.log"
    log.parent.mkdir()
    log.write_text(ACCESS[0] + "\n", encoding="utf-8")
    ws = Workspace.open(tmp_path / "ws", create=True)
    ingest_paths(ws, [str(log)], engine="spark", spark=spark_session)
    # an interrupted run's leftovers: a staged file and a lake file no manifest row knows
    (done,) = (ws.lake / "http").rglob("*.parquet")
    stray = done.with_name("f" * 32 + "_0.parquet")
    stray.write_bytes(done.read_bytes())
    (ws.lake / ".staging" / "x").mkdir(parents=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(ACCESS[1] + "\n")
    s = ingest_paths(ws, [str(log)], engine="spark", spark=spark_session)
    assert (s.files, s.lines_read, s.rows_written) == (1, 1, 1)
    assert s.per_file[0]["first_line"] == 2
    assert not stray.exists() and not (ws.lake / ".staging").exists()
    with ws.connect() as con:
        assert con.execute("SELECT source_line, source_ip FROM http ORDER BY 1").fetchall() == \
            [(1, "203.0.113.9"), (2, "2001:db8::7")]


def test_spark_ingest_refuses_stdin(tmp_path, monkeypatch):
    ws = Workspace.open(tmp_path / "ws", create=True)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"x\n")))
    with pytest.raises(UserError, match="standard input"):
        ingest_paths(ws, ["-"], engine="spark")
    with pytest.raises(UserError, match="unknown engine"):
        ingest_paths(ws, ["-"], engine="flink")
