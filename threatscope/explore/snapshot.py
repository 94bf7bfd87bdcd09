"""A consistent, read-only snapshot of a workspace: what the dashboard reads.

    snap = Snapshot.take(ws)            # raises WorkspaceBusy while a writer holds the catalog
    with snap.cursor() as con:          # one cursor per request thread
        con.execute("SELECT count(*) FROM det").fetchone()

A snapshot copies into a database of its own (a DuckDB file in a temporary folder, so that
DuckDB keeps in memory only what it works on, removed with the snapshot) what the stages
replace as a whole (the
organisations, ingest manifest and quarantine of the catalog; the detections, the PowerShell
analysis and the enriched sources), and pins the lake files of the ingests committed at that
moment (lake files are never rewritten, and files of an ingest still running are not yet in the
manifest). The figures' relations (analyze.figures.prepare) are then built once, over every day
with data, in the database so that every cursor reads them. An ingest, detect or enrich that
runs meanwhile changes none of it: the dashboard takes a new snapshot when they are done
(:class:`Snapshots`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from threatscope import schema
from threatscope.analyze import figures as F
from threatscope.analyze.period import Period
from threatscope.workspace import Workspace, WorkspaceBusy, open_catalog, relations

CATALOG_TABLES = ("org", "ingest_manifest", "quarantine")
_SERIALS = itertools.count(1)
RETIRE_S = 120.0  # a replaced snapshot stays open this long for the requests still on it


def signature(ws: Workspace) -> tuple:
    """What changes when a stage commits: the catalog (and its write-ahead log), the
    detections, the PowerShell analysis and the current enrich run."""
    def stat(p: Path) -> tuple:
        try:
            st = p.stat()
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return ()
    try:
        current = (ws.enriched_root / "CURRENT").read_text(encoding="utf-8").strip()
    except OSError:
        current = ""
    wal = ws.catalog_path.with_name(ws.catalog_path.name + ".wal")
    return (stat(ws.catalog_path), stat(wal), stat(ws.detections_path),
            stat(ws.powershell_path), current)


@dataclass
class Snapshot:
    """A database with the workspace's tables as they were at ``taken_at``."""

    ws: Workspace
    db: duckdb.DuckDBPyConnection
    taken_at: datetime
    signature: tuple
    default_period: Period | None = None
    catalog_read: bool = True  # False: the catalog was busy, its tables are empty
    indexed: set[str] = field(default_factory=set)  # kinds with a table event_<kind>
    # which snapshot this is, for caches (an id() may be reused once one is freed)
    serial: int = field(default_factory=lambda: next(_SERIALS))
    folder: Path | None = None  # where its database file is
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _finalizer: Callable[[], object] = field(default=lambda: None, repr=False)

    @classmethod
    def take(cls, ws: Workspace, catalog_wait_s: float = 2.0,
             require_catalog: bool = True) -> Snapshot:
        """Copy the workspace's state. While another process writes the catalog (an ingest),
        raise :class:`WorkspaceBusy`, or with ``require_catalog=False`` go on without the
        catalog: no organisations or quarantine, the lake files the detections name."""
        sig = signature(ws)
        folder = Path(tempfile.mkdtemp(prefix="threatscope-snapshot-"))
        db = duckdb.connect(str(folder / "snapshot.duckdb"), config={
            "threads": max(1, min(4, os.cpu_count() or 1)),
            "temp_directory": str(folder / "spill")})
        try:
            snap = cls._fill(ws, db, sig, catalog_wait_s, require_catalog)
        except BaseException:
            _discard(db, folder)
            raise
        # the file goes with the snapshot: when it is closed, or else when it is freed
        snap.folder = folder
        snap._finalizer = weakref.finalize(snap, _discard, db, folder)
        return snap

    @classmethod
    def _fill(cls, ws: Workspace, db: duckdb.DuckDBPyConnection, sig: tuple,
              catalog_wait_s: float, require_catalog: bool) -> Snapshot:
        db.execute("SET preserve_insertion_order = false")
        db.execute(schema.CATALOG_DDL)
        catalog_read = False
        if ws.catalog_path.exists():
            try:
                _copy_catalog(db, ws.catalog_path, catalog_wait_s)
                catalog_read = True
            except WorkspaceBusy:
                if require_catalog:
                    raise
        for name, sql in ws.stage_outputs().items():
            # a table, not a view: the next detect or enrich replaces the files
            kind = "VIEW" if name == "indicator" else "TABLE"
            db.execute(f"CREATE OR REPLACE {kind} {name} AS {sql}")
        committed = (None if not catalog_read else
                     {r[0] for r in db.execute("SELECT file_id FROM ingest_manifest").fetchall()})
        if committed is None:
            committed = ({r[0] for r in db.execute(
                "SELECT DISTINCT file_id FROM detection WHERE file_id IS NOT NULL").fetchall()}
                if "detection" in relations(db) else set())
        for kind in schema.KINDS:
            ws.lake_view(db, kind, files=_pinned(ws, kind, committed), temp=False)
        snap = cls(ws, db, datetime.now(UTC), sig, catalog_read=catalog_read)
        snap._prepare()
        snap._index_events()
        return snap

    def _index_events(self) -> None:
        """The lake rows of the detected events, per kind (``event_<kind>``): a drill-down
        lists 50 events of maybe 50 files, whose rows the lake stores in row groups of
        thousands; read here once, they are found in milliseconds."""
        if "detection" not in relations(self.db):
            return
        kinds = [r[0] for r in self.db.execute(
            "SELECT DISTINCT event_kind FROM detection").fetchall() if r[0] in schema.KINDS]
        for kind in kinds:
            self.db.execute(
                f'CREATE OR REPLACE TABLE event_{kind} AS SELECT k.* FROM "{kind}" k SEMI JOIN '
                f"(SELECT DISTINCT org_id, file_id, source_line FROM detection "
                f"WHERE event_kind = '{kind}') d USING (org_id, file_id, source_line) "
                f"ORDER BY org_id, file_id, source_line")
            self.indexed.add(kind)

    def _prepare(self) -> None:
        """The figures' relations over every day up to the last with data (none without
        data: the pages that need them say there is nothing yet)."""
        from threatscope.analyze.metrics import latest_day

        last = latest_day(self.db)
        if last is None:
            return
        self.default_period = Period.containing(last, "quarter")
        F.prepare(self.db, date(1970, 1, 1), last + timedelta(days=1),
                  self.default_period.start, temp=False)
        # the relations the analysis leaves as views are computed once here too (the snapshot
        # is read many times, never written), but `events`: every logged request
        for name in F.RELATIONS:
            if name not in F.MATERIALISED and name != "events":
                self.db.execute(f"CREATE TABLE _m AS SELECT * FROM {name}")
                self.db.execute(f"DROP VIEW {name}")
                self.db.execute(f"ALTER TABLE _m RENAME TO {name}")

    def new_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of the snapshot's database, for the caller to close (cursors run in
        parallel; each has its own temp relations)."""
        with self._lock:  # cursor() itself is not safe to call from two threads at once
            return self.db.cursor()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the snapshot's database for one request."""
        cur = self.new_cursor()
        try:
            yield cur
        finally:
            cur.close()

    def close(self) -> None:
        """Close the database and remove its file (requests still on it fail)."""
        self._finalizer()


def _discard(db: duckdb.DuckDBPyConnection, folder: Path) -> None:
    try:
        db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy_catalog(db: duckdb.DuckDBPyConnection, path: Path, wait_s: float) -> None:
    # opened (waiting for a writer to finish) and copied in one go: it is held for milliseconds
    src = open_catalog(path, read_only=True, wait_s=wait_s)
    try:
        for t in CATALOG_TABLES:
            try:
                arrow = src.sql(f"SELECT * FROM {t}").to_arrow_table()
            except duckdb.CatalogException:
                continue  # an older catalog without it: the empty table stays
            db.register("_copy", arrow)
            db.execute(f"INSERT INTO {t} BY NAME SELECT * FROM _copy")
            db.unregister("_copy")
    finally:
        src.close()


def _pinned(ws: Workspace, kind: str, committed: set[str]) -> list[str]:
    """The lake files of ``kind`` written by committed ingests (named ``<file_id>_<n>``)."""
    root = ws.lake / kind
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.glob("org_id=*/*.parquet")
                  if p.name.split("_", 1)[0] in committed)


class Snapshots:
    """The current snapshot of a workspace, renewed in the background when a stage has
    committed and the workspace has then been still for one poll (``poll_s``). Requests read
    :attr:`current`; one in flight keeps the snapshot it started with."""

    def __init__(self, ws: Workspace, poll_s: float = 1.0):
        self.ws, self.poll_s = ws, poll_s
        self.current = Snapshot.take(ws, require_catalog=False)
        self.error: str | None = None  # why the last renewal failed (shown on pages)
        self.busy_since: datetime | None = None
        self._retired: list[tuple[float, Snapshot]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapshot", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and close every snapshot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close_retired(0)
        self.current.close()

    def _run(self) -> None:
        seen = self.current.signature
        while not self._stop.wait(self.poll_s):
            self._close_retired(RETIRE_S)
            sig = signature(self.ws)
            if sig == self.current.signature and self.current.catalog_read:
                self.busy_since, seen = None, sig
                continue
            if sig != seen:  # still changing: wait until it has been still one poll
                seen = sig
                continue
            self.renew()

    def renew(self) -> bool:
        """Take a new snapshot now; False (and the old one kept) while a writer is busy."""
        try:
            snap = Snapshot.take(self.ws, catalog_wait_s=0.2)
        except WorkspaceBusy:
            self.busy_since = self.busy_since or datetime.now(UTC)
            return False
        except Exception as e:  # keep answering from the last snapshot; say why on pages
            self.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()  # the pages say it failed; the console says why
            time.sleep(self.poll_s)
            return False
        # the one before serves the requests that started on it: closed a while later
        self._retired.append((time.monotonic(), self.current))
        self.current, self.error, self.busy_since = snap, None, None
        return True

    def _close_retired(self, older_than_s: float) -> None:
        now = time.monotonic()
        keep = []
        for at, snap in self._retired:
            if now - at >= older_than_s:
                snap.close()
            else:
                keep.append((at, snap))
        self._retired = keep
