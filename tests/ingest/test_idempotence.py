import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.ingest.conftest import manifest, rows, run, write
from tests.ingest.test_bad_input import lines
from threatscope.workspace import Workspace


def _totals(ws: Workspace) -> tuple:
    with ws.connect() as con:
        return con.execute(
            "SELECT (SELECT count(*) FROM http), (SELECT count(DISTINCT (file_id, source_line)) "
            "FROM http), (SELECT count(*) FROM quarantine), (SELECT count(*) FROM ingest_manifest),"
            " (SELECT sum(rows_written) FROM ingest_manifest)").fetchall()[0]


def test_reingest_adds_nothing(ws, tmp_path):
    log = write(tmp_path / "a.log", lines(50) + "bad line\n")
    first = run(ws, log)
    before = _totals(ws)
    again = run(ws, log)
    assert (again.files, again.skipped_files, again.rows_written) == (0, 1, 0)
    assert _totals(ws) == before == (50, 50, 1, 1, 50)
    assert first.per_file[0]["file_id"] == manifest(ws)[0]["file_id"]


def test_rollback_removes_uncommitted_leftovers(ws, tmp_path):
    run(ws, write(tmp_path / "a.log", lines(5)))
    committed = next((ws.lake / "http").rglob("*.parquet"))
    stray = committed.with_name("f" * 32 + "_0.parquet")
    stray.write_bytes(committed.read_bytes())  # as if a crash came before the manifest insert
    (ws.lake / ".staging" / "x").mkdir(parents=True)
    with ws.connect() as con:
        con.execute("INSERT INTO quarantine VALUES ('deadbeef', 'x', 1, 'w3c', 'r', 'raw')")
    run(ws, write(tmp_path / "b.log", lines(5, 5)))
    assert not stray.exists() and not (ws.lake / ".staging").exists()
    assert _totals(ws) == (10, 10, 0, 2, 10)


_CHILD = """
import sys
from threatscope.ingest import pipeline, reader
from threatscope.workspace import Workspace
reader.BLOCK = 64 << 10
pipeline.ingest_paths(Workspace.open(sys.argv[1], create=True), [sys.argv[2]])
"""


def test_kill_9_then_rerun_gives_clean_totals(tmp_path):
    root = tmp_path / "in"
    for k in range(4):
        write(root / f"org{k}" / "access.log", lines(40_000, k * 40_000))
    clean = Workspace.open(tmp_path / "clean", create=True)
    run(clean, root)
    expected = _totals(clean)
    assert expected[0] == 160_000

    killed_ws = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(killed_ws), str(root)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        lake = killed_ws / "lake"
        if lake.exists() and any(lake.rglob("*.parquet")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "ingest finished before it could be killed: make the input bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ws = Workspace.open(killed_ws)
    run(ws, root)
    assert _totals(ws) == expected
    assert len(rows(ws, cols="file_id, source_line", where="source_line = 1")) == 4


def test_grown_file_ingests_only_its_new_lines(ws, tmp_path):
    log = write(tmp_path / "live.log", lines(30))
    first = run(ws, log)
    with log.open("a") as f:
        f.write(lines(20, 30))
    grown = run(ws, log)
    assert (grown.files, grown.lines_read, grown.rows_written) == (1, 20, 20)
    assert grown.per_file[0]["first_line"] == 31
    assert run(ws, log).skipped_files == 1  # unchanged since
    with log.open("a") as f:  # a writer caught mid-line: the line is read again, whole
        f.write(lines(1, 50).rstrip("\n"))
    assert run(ws, log).per_file[0]["first_line"] == 51
    with log.open("a") as f:
        f.write("\n" + lines(2, 51))
    last = run(ws, log)
    assert (last.per_file[0]["first_line"], last.lines_read) == (51, 3)
    got = rows(ws, cols="source_line, raw")
    assert [r["source_line"] for r in got] == [*range(1, 52), *range(51, 54)]
    assert got[-3]["raw"] == lines(1, 50).rstrip("\n")
    m = {r["file_id"]: r for r in manifest(ws)}
    assert m[grown.per_file[0]["file_id"]]["continues"] == first.per_file[0]["file_id"]
    with ws.connect() as con:  # every row's file is the manifest row that counted it
        assert con.execute("SELECT count(*) FROM http JOIN ingest_manifest USING (file_id)"
                           ).fetchall()[0][0] == 54


def test_replaced_file_is_ingested_whole(ws, tmp_path):
    log = write(tmp_path / "a.log", lines(10))
    run(ws, log)
    write(log, lines(12, 100))  # same path, longer, different start
    s = run(ws, log)
    assert (s.rows_written, s.per_file[0]["first_line"]) == (12, 1)
