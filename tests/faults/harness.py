"""The fault harness: `threatscope ingest`, `detect`, `enrich` and `report` killed with
SIGKILL at random points, or stopped by a full disk, then run again; after each rerun that
completes, the workspace (totals, detections, enrichment) and the report must equal an
uninterrupted run's.

    from tests.faults.harness import Harness
    h = Harness(tmp_path, seed=1)
    h.prepare(lambda folder: simulate(folder, seed=3, scale=0.005))  # the reference run
    h.run("ingest", kills=100)  # kill / rerun cycles of one stage; h.killed counts the kills
    h.fill("detect", limit)     # a run that may write no file beyond `limit` bytes, then a rerun

A full disk is the process's file size limit (RLIMIT_FSIZE, SIGXFSZ ignored): the write that
would cross it fails with EFBIG, as one on a full disk fails with ENOSPC, wherever it is
(lake Parquet, the catalog's WAL, detections, enrichment, report files).

Each process is a real `threatscope` command (the CLI's own entry point) started from a fork
server that has imported threatscope already (so a process starts in milliseconds rather than
the second of imports), and killed with SIGKILL after a delay drawn uniformly over the
stage's uninterrupted duration. A cycle kills up to three runs in a row (each rerun may be
killed again), then runs the stage to the end and compares.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from threatscope.workspace import Workspace, relations

STAGES = ("ingest", "detect", "enrich", "report")
_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["threatscope.cli", "duckdb", "pyarrow", "pyarrow.parquet"])
_VOLATILE = {"generated_at", "seconds", "timings", "workspace", "started_at", "finished_at"}


def _noop() -> None:
    pass


def _command(args: list[str], log: str = "/dev/null", fsize: int | None = None) -> None:
    """The body of a child process: one threatscope command, its exit status the process's,
    its output into ``log``; ``fsize``: no file may grow beyond this many bytes."""
    import resource
    import sys

    if fsize is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))
    sys.stdout = sys.stderr = open(log, "w")  # noqa: SIM115 (the process ends here)
    from threatscope.cli import main

    main(args, prog_name="threatscope")


class Harness:
    def __init__(self, root: Path, seed: int = 0):
        self.root, self.rng = root, random.Random(seed)
        self.data = root / "data"
        self.reference: dict[str, object] = {}
        self.duration: dict[str, float] = {}
        # the sizes of the files each stage wrote (new or changed), smallest first: a size
        # limit just below one stops a run at that write
        self.written: dict[str, list[int]] = {}
        self.killed = 0  # processes killed before they ended
        self.finished_early = 0  # runs that ended before their kill came
        self.compared = 0  # reruns to the end compared with the reference
        self.disk_full = 0  # runs stopped by a full disk

    # -- the commands --------------------------------------------------------------------
    def args(self, stage: str, ws: Path) -> list[str]:
        if stage == "ingest":
            return ["ingest", "-w", str(ws), "--orgs", str(self.data / "orgs.csv"),
                    str(self.data)]
        if stage == "report":
            return ["report", "-w", str(ws), "-o", str(ws.parent / f"{ws.name}-report")]
        return [stage, "-w", str(ws)]

    def start(self, stage: str, ws: Path, log: str = "/dev/null", fsize: int | None = None
              ) -> multiprocessing.Process:
        p = _CTX.Process(target=_command, args=(self.args(stage, ws), log, fsize))
        p.start()
        return p

    def complete(self, stage: str, ws: Path) -> float:
        t0 = time.perf_counter()
        p = self.start(stage, ws)
        p.join(600)
        assert p.exitcode == 0, f"{stage} on {ws} ended with {p.exitcode}"
        return time.perf_counter() - t0

    # -- the reference -------------------------------------------------------------------
    def prepare(self, simulate: Callable[[Path], Path]) -> None:
        """The input (``simulate(folder)``) and the uninterrupted run, stage by stage, each
        stage's workspace kept as the starting point of its kill cycles."""
        simulate(self.data)
        warm = _CTX.Process(target=_noop)  # the fork server's start is no stage's duration
        warm.start()
        warm.join()
        ws = self.root / "reference"
        Workspace.open(ws, create=True)
        for stage in STAGES:
            before = _sizes(ws)
            shutil.copytree(ws, self.root / f"before-{stage}")
            self.duration[stage] = self.complete(stage, ws)
            self.reference[stage] = state(stage, ws)
            after = _sizes(ws) | _sizes(ws.parent / f"{ws.name}-report")
            self.written[stage] = sorted({n for p, n in after.items() if before.get(p) != n})

    # -- the kill cycles -----------------------------------------------------------------
    def run(self, stage: str, kills: int) -> None:
        """Kill ``stage`` ``kills`` times (in cycles of 1-3 kills, each followed by a
        complete rerun that must give the reference's state)."""
        done = tries = 0
        while done < kills:
            tries += 1
            assert tries <= 3 * kills, f"{stage} kept ending before its kill"
            ws = self.root / f"{stage}-{self.compared}"
            shutil.copytree(self.root / f"before-{stage}", ws)
            for _ in range(min(self.rng.randint(1, 3), kills - done)):
                if self.kill(stage, ws):
                    done += 1
            self.complete(stage, ws)
            got = state(stage, ws)
            assert got == self.reference[stage], _difference(stage, self.reference[stage], got)
            self.compared += 1
            shutil.rmtree(ws)
            shutil.rmtree(ws.parent / f"{ws.name}-report", ignore_errors=True)

    def fill(self, stage: str, limit: int) -> str | None:
        """One run of ``stage`` that may write no file beyond ``limit`` bytes, then a complete
        rerun, compared. What the stopped run said (None if it did not stop)."""
        ws = self.root / f"{stage}-full-{limit}"
        shutil.copytree(self.root / f"before-{stage}", ws)
        log = ws.parent / f"{ws.name}.log"
        p = self.start(stage, ws, str(log), fsize=limit)
        p.join(600)
        said = log.read_text(encoding="utf-8", errors="replace")
        if p.exitcode != 0:
            assert p.exitcode == 1 and "could not write" in said and "Traceback" not in said, \
                f"{stage} at {limit} bytes: exit {p.exitcode}\n{said[-3000:]}"
            self.disk_full += 1
        self.complete(stage, ws)
        got = state(stage, ws)
        assert got == self.reference[stage], _difference(stage, self.reference[stage], got)
        self.compared += 1
        shutil.rmtree(ws)
        shutil.rmtree(ws.parent / f"{ws.name}-report", ignore_errors=True)
        return said if p.exitcode else None

    def kill(self, stage: str, ws: Path) -> bool:
        """One run of ``stage`` killed after a random delay; whether the kill came first."""
        p = self.start(stage, ws)
        p.join(self.rng.uniform(0.0, self.duration[stage]))
        if p.exitcode is not None:
            assert p.exitcode == 0, f"{stage} failed after a kill: exit {p.exitcode}"
            self.finished_early += 1
            return False
        p.kill()  # SIGKILL
        p.join()
        if p.exitcode == 0:  # it ended between the wait and the kill
            self.finished_early += 1
            return False
        assert p.exitcode == -signal.SIGKILL, f"{stage} ended with {p.exitcode}"
        self.killed += 1
        return True


# -- what is compared --------------------------------------------------------------------------
def state(stage: str, ws_root: Path) -> object:
    """What a stage leaves behind, in a form two runs can be compared by: row counts and an
    order-independent fingerprint of every row of each table it writes (the report: its JSON
    without times, and that every file is there)."""
    if stage == "report":
        out = ws_root.parent / f"{ws_root.name}-report"
        doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
        files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        return {"files": files, "report": _strip(doc)}
    ws = Workspace.open(ws_root)
    with ws.connect() as con:
        if stage == "ingest":
            names = sorted(relations(con) - {"run_history", "detection", "powershell_analysis"})
            return {n: _fingerprint(con, n, _columns(con, n) - {"started_at", "finished_at"})
                    for n in names if n not in ("source", "payload_indicator", "host_profile",
                                                "place")}
        if stage == "detect":
            # whole: the PowerShell analysis's budget counts work, not time, so a rerun on a
            # loaded machine analyses each script as far as the uninterrupted run did
            return {p.name: _fingerprint(con, f"read_parquet('{p}')")
                    for p in (ws.detections_path, ws.powershell_path)}
        folder = ws.enriched()
        assert folder is not None, "no enrich run is current"
        return {p.name: _fingerprint(con, f"read_parquet('{p}')")
                for p in sorted(folder.glob("*.parquet"))}


def _sizes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> set[str]:
    return {r[0] for r in con.execute(f'DESCRIBE "{relation}"').fetchall()}


def _fingerprint(con: duckdb.DuckDBPyConnection, relation: str,
                 columns: set[str] | None = None) -> tuple[int, int]:
    rel = relation if "(" in relation else f'"{relation}"'
    cols = ", ".join(f'"{c}"' for c in sorted(columns)) if columns else "*"
    n, h = con.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) "
                       f"FROM (SELECT {cols} FROM {rel}) t").fetchone()
    return int(n), int(h)


def _strip(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in _VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _difference(stage: str, want: object, got: object) -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        keys = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
        return f"{stage}: differs in {keys[:10]}"
    return f"{stage}: {want!r} != {got!r}"
