"""The ingest driver: paths -> files -> batches of lines -> parsed in parallel -> staged Parquet
-> commit.

Per file, one thread reads the (decompressed) input, hashes it as it goes and splits it into
batches of lines (``reader``); the format's ``prepare`` runs on each batch in file order and its
``parse`` then runs on a pool of worker threads (one DuckDB connection each), followed by the
projection to the lake columns (Arrow) and the Parquet writes. pyarrow and DuckDB release the
GIL, so the batches of one big file use every core.

A file is recognised as already ingested by its content hash (``file_id``); a file that grew
since it was ingested (a live log) is read from where the earlier ingest stopped.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from threatscope import schema, sqlfn
from threatscope.arrowutil import constant
from threatscope.errors import UserError, storage_error
from threatscope.ingest import formats, lake, reader
from threatscope.ingest.arrowfn import ip_numbers, per_distinct, url_parts
from threatscope.ingest.formats import Format, ParseResult, Part
from threatscope.spark import check_engine
from threatscope.sqlfn import sql_str
from threatscope.workspace import Workspace, abort

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SNIFF_BYTES = 64 << 10
INFLIGHT = 3  # batches of one file queued or being parsed (bounds memory)
_ORG_OK = re.compile(r"[^A-Za-z0-9._-]")
_GLOB = re.compile(r"[*?\[]")

Progress = Callable[[int, int | None, str], None]


@dataclass
class IngestSummary:
    """What one ``ingest_paths`` call did. Counts are over newly ingested files only."""

    files: int = 0
    lines_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    comment_lines: int = 0
    lines_ignored: int = 0
    skipped_files: int = 0  # already ingested (same content)
    errors: list[str] = field(default_factory=list)  # one line per file that had a problem
    unrecognised: list[str] = field(default_factory=list)  # folder files of no known format
    per_file: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Input:
    path: str  # to open
    display: str  # source_file
    folder_org: str | None
    explicit: bool  # named on the command line (not found by walking a folder)


@dataclass
class _Known:
    """A manifest row, as needed to recognise a file seen before."""

    file_id: str
    size: int
    sha256: str
    first_line: int
    lines_read: int


@dataclass
class _FileResult:
    inp: _Input
    status: str  # ingested | skipped | failed | unrecognised
    file_id: str | None = None
    sha256: str | None = None
    size: int = 0
    fmt: str | None = None
    lines_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    comment_lines: int = 0
    lines_ignored: int = 0
    first_line: int = 1
    continues: str | None = None  # file_id of the ingest of this file's first part
    rows_by_kind: dict = field(default_factory=dict)
    derived_by_kind: dict = field(default_factory=dict)  # rows of derived parts (not counted)
    orgs: set = field(default_factory=set)
    error: str | None = None
    staged: Path | None = None
    quarantine_files: list = field(default_factory=list)
    quarantine: pa.Table | None = None  # (source_line, reason, raw), as a Spark task returns it
    started_at: datetime | None = None

    def per_file(self) -> dict:
        return {
            "path": self.inp.display, "status": self.status, "file_id": self.file_id,
            "format": self.fmt, "orgs": sorted(self.orgs), "lines_read": self.lines_read,
            "rows_written": self.rows_written, "rows_by_kind": self.rows_by_kind,
            "derived_rows_by_kind": self.derived_by_kind,
            "rows_quarantined": self.rows_quarantined, "comment_lines": self.comment_lines,
            "lines_ignored": self.lines_ignored, "first_line": self.first_line,
            "error": self.error,
        }


class _Unrecognised(Format):
    """Pseudo-format of a file named on the command line that no plug-in recognises."""

    name = "unknown"

    def parse(self, con, batch, prepared) -> ParseResult:
        return ParseResult([Part("http", "SELECT n AS source_line, line AS raw, "
                                 "NULL::TIMESTAMP AS ts, 'format not recognised' AS _reason "
                                 "FROM _batch")])


def clean_org(org: str | None) -> str | None:
    """An organisation id safe as a partition folder name ([A-Za-z0-9._-], at most 100)."""
    if org is None:
        return None
    org = _ORG_OK.sub("_", org.strip())[:100]
    return org or None


# -- public API -----------------------------------------------------------------------------
def ingest_paths(
    ws: Workspace,
    paths: Sequence[str],
    org: str | None = None,
    fmt: str = "auto",
    progress: Progress | None = None,
    only: Sequence[str] | None = None,
    fallback: str | None = None,
    engine: str = "duckdb",
    spark: SparkSession | None = None,
) -> IngestSummary:
    """Ingest files, folders (recursively), globs and ``-`` (stdin) into the workspace.

        summary = ingest_paths(ws, ["logs/", "eve.json.gz"], fmt="auto")
        summary.rows_written, summary.errors, summary.to_dict()

    Organisation of a row: ``org`` > the record's ``org_id`` (JSON formats) > the first folder
    below a folder given here (``<root>/<org_id>/...``) > ``default``. ``progress(advance,
    total, description)`` advances in bytes of the input files as stored (compressed size for
    compressed files); it may be called from worker threads (calls are serialised).
    A path that does not exist is an error line in the summary; if no path names any file,
    UserError. An uncompressed file that was ingested before and has grown since (same bytes,
    more at the end) is read from the line after the last one ingested. ``only``: with
    ``fmt="auto"``, the format names the sniffer may choose from (``threatscope intel add``);
    ``fallback``: the format of a file none of them recognises (else that file is an error).

    ``engine="spark"``: the files are parsed by Spark tasks (``spark``, default
    ``threatscope.spark.session()``), same lake files and catalog rows; see
    :mod:`threatscope.ingest.spark` (no stdin there).
    """
    check_engine(engine)
    if fmt != "auto":
        formats.get(fmt)
    for name in [*(only or ()), *([fallback] if fallback else [])]:
        formats.get(name)
    if org is not None:
        if not org.strip() or clean_org(org) != org.strip():
            raise UserError(f"invalid organisation id {org!r} (use letters, digits, . _ -)")
        org = org.strip()
    if engine == "spark":
        from threatscope.ingest import spark as on_spark  # pyspark only when asked for

        return on_spark.ingest_paths(ws, paths, org=org, fmt=fmt, progress=progress,
                                     only=only, fallback=fallback, spark=spark)
    _keep_freed_memory()
    summary = IngestSummary()
    inputs, errors = _resolve(paths)
    summary.errors.extend(errors)
    if not inputs:
        raise UserError("no input files found in " + ", ".join(paths) if paths
                        else "no input paths given")
    with ws.connect() as con:
        lake.rollback(ws, con)
        stage_root = lake.staging_root(ws)
        stage_root.mkdir(parents=True, exist_ok=True)
        stdin_tmp = _spool_stdin(inputs, stage_root)
        total = sum(_size(i.path) for i in inputs)
        lock = threading.Lock()

        def report(n: int, desc: str) -> None:
            if progress is not None and n:
                with lock:
                    progress(n, total, desc)

        known = _known_files(con)
        tmpdir = ws.root / ".tmp"
        cpus = os.cpu_count() or 1
        with _Workers(cpus, tmpdir) as workers, \
                ThreadPoolExecutor(max_workers=max(1, min(2, len(inputs), cpus))) as files:
            futures = [
                files.submit(_process, inp, fmt, org, stage_root, known, report, workers, only,
                             fallback)
                for inp in inputs
            ]
            for fut in futures:
                _commit(ws, con, fut.result(), summary)
        # once, not per file: binding a view lists the lake's files (a view per commit made
        # ingesting many small files quadratic)
        ws.refresh_views(con)
        if stdin_tmp:
            Path(stdin_tmp).unlink(missing_ok=True)
        shutil.rmtree(stage_root, ignore_errors=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return summary


def _keep_freed_memory() -> None:
    """By default glibc maps each big buffer (a read block, 32 MiB) afresh and unmaps it when
    freed, so every block page-faults its memory in again: a third of the CPU time in a VM.
    Have it keep freed memory for reuse instead (a no-op where there is no glibc)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD: serve up to 256 MiB from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap
        libc.mallopt(-8, 1)  # M_ARENA_MAX: thread arenas would map big buffers anyway
    except (OSError, AttributeError):
        pass


def _known_files(con: duckdb.DuckDBPyConnection) -> dict[str, list[_Known]]:
    """Manifest rows by path, largest first (the latest ingest of a growing file first)."""
    known: dict[str, list[_Known]] = {}
    for path, *row in con.execute(
            "SELECT path, file_id, size, sha256, coalesce(first_line, 1), lines_read "
            "FROM ingest_manifest ORDER BY size DESC").fetchall():
        known.setdefault(path, []).append(_Known(*row))
    return known


# -- resolving inputs ----------------------------------------------------------------------
def _resolve(paths: Sequence[str]) -> tuple[list[_Input], list[str]]:
    inputs: list[_Input] = []
    errors: list[str] = []
    seen: set[str] = set()

    def add(inp: _Input) -> None:
        key = inp.path if inp.path == "-" else os.path.realpath(inp.path)
        if key not in seen:
            seen.add(key)
            inputs.append(inp)

    for p in paths:
        if p == "-":
            add(_Input("-", "<stdin>", None, True))
            continue
        if os.path.isdir(p):
            _walk(p, add)
        elif os.path.lexists(p):
            add(_Input(p, p, None, True))
        elif _GLOB.search(p):
            hits = sorted(glob.glob(p, recursive=True))
            if not hits:
                errors.append(f"{p}: no file matches this pattern")
            for h in hits:
                if os.path.isdir(h):
                    _walk(h, add)
                else:
                    add(_Input(h, h, None, True))
        else:
            errors.append(f"{p}: no such file or directory")
    return inputs, errors


def _walk(root: str, add: Callable[[_Input], None]) -> None:
    """Files below ``root`` (hidden files and folders skipped), org from the first folder."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            rel = Path(os.path.relpath(full, root)).parts
            add(_Input(full, full, clean_org(rel[0]) if len(rel) > 1 else None, False))


def _spool_stdin(inputs: list[_Input], stage_root: Path) -> str | None:
    for inp in inputs:
        if inp.path == "-":
            fd, tmp = tempfile.mkstemp(prefix="stdin-", dir=stage_root.parent)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            inp.path = tmp
            return tmp
    return None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# -- one file --------------------------------------------------------------------------------
class _Workers:
    """The pool that parses batches, with one DuckDB connection per worker thread."""

    def __init__(self, n: int, tmpdir: Path):
        self.pool = ThreadPoolExecutor(max_workers=n)
        self.tmpdir = tmpdir
        self._local = threading.local()
        self._cons: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()

    def con(self) -> duckdb.DuckDBPyConnection:
        con = getattr(self._local, "con", None)
        if con is None:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
            # Insertion order is kept: arrowfn.per_distinct relies on it.
            # One thread: the pool runs one batch per core already.
            con = duckdb.connect(config={"threads": 1, "memory_limit": "1GB",
                                         "temp_directory": str(self.tmpdir)})
            sqlfn.install(con)
            self._local.con = con
            with self._lock:
                self._cons.append(con)
        return con

    def submit(self, fn: Callable, *args) -> Future:
        return self.pool.submit(fn, *args)

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True)
        for con in self._cons:
            con.close()


class _BatchCon:
    """The worker's DuckDB connection as a parser sees it, with the batch's lines registered as
    ``_batch``; made on first use, as the C fast paths need no SQL at all."""

    def __init__(self, workers: _Workers, table: pa.Table):
        self._workers, self._table = workers, table
        self._con: duckdb.DuckDBPyConnection | None = None
        self.views: list[str] = []  # registered by the parser, unregistered by release()

    def __getattr__(self, name: str) -> Any:
        if self._con is None:
            self._con = self._workers.con()
            self._con.register("_batch", self._table)
        return getattr(self._con, name)

    def release(self) -> None:
        if self._con is not None:
            for view in ["_batch", *self.views]:
                self._con.unregister(view)


def _hash(path: str) -> str:
    h = hashlib.sha256()
    with reader.open_source(path, h) as src:
        while src.read_block(reader.BLOCK):
            pass
    return h.hexdigest()


def _sniff(path: str, only: Sequence[str] | None = None) -> tuple[str | None, bool]:
    """(format name (of ``only`` when given) or None, whether the head had any non-blank
    line)."""
    with open(path, "rb") as f:  # a binary format, by its first bytes
        if name := formats.sniff_magic(f.read(16), path, only):
            return name, True
    with reader.open_source(path) as src:
        head = src.read_block(SNIFF_BYTES)
    text = head.decode("utf-8", "replace")
    lines = [x.rstrip("\r") for x in text.split("\n")[:-1] or text.split("\n")]
    lines = [x for x in lines if x.strip()][:50]
    return formats.sniff(lines, only=only), bool(lines)


def _process(inp: _Input, fmt: str, org: str | None, stage_root: Path,
             known: dict[str, list[_Known]], report: Callable[[int, str], None],
             workers: _Workers, only: Sequence[str] | None = None,
             fallback: str | None = None) -> _FileResult:
    res = _FileResult(inp, "failed", started_at=_now())
    try:
        if os.path.isdir(inp.path):
            raise IsADirectoryError("is a directory")
        res.size = os.path.getsize(inp.path)
        if fmt == "auto":
            name, nonblank = _sniff(inp.path, only)
            name = name or fallback
            if name is None and only:
                raise _NotOfKind(f"not a {' or '.join(sorted(only))} file")
            if name is None and nonblank and not inp.explicit:
                res.status = "unrecognised"
                report(res.size, inp.display)
                return res
            res.fmt = name or "unknown"
        else:
            res.fmt = fmt
        earlier = known.get(inp.display, []) if inp.path != "-" else []
        if any(k.size == res.size for k in earlier):
            # Probably unchanged: hash first rather than parse for nothing.
            res.sha256 = _hash(inp.path)
            res.file_id = res.sha256[:32]
            if any(k.file_id == res.file_id for k in earlier):
                res.status = "skipped"
                report(res.size, inp.display)
                return res
        res.staged = stage_root / uuid.uuid4().hex
        res.staged.mkdir(parents=True)
        parser = formats.FORMATS[res.fmt]() if res.fmt in formats.FORMATS else _Unrecognised()
        _parse_file(inp, parser, org, res, report, workers,
                    [k for k in earlier if k.size < res.size])
        res.status = "ingested"
    except _NotOfKind as e:
        res.error = f"{inp.display}: {e}"
    except Exception as e:
        if storage_error(e) is not None:  # the disk, not this file: the other files would fail
            raise
        if isinstance(e, OSError):
            res.error = f"{inp.display}: cannot read: {e.strerror or e}"
        else:  # a bug must not lose the other files' work
            res.error = f"{inp.display}: ingest failed: {type(e).__name__}: {e}"
    return res


class _NotOfKind(Exception):
    """The file is none of the formats the caller restricted the sniffer to."""


def _prefetch(it: Iterator, depth: int = 1) -> Iterator:
    """Run an iterator in a thread, ``depth`` items ahead (reading overlaps parsing)."""
    q: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def run() -> None:
        try:
            for x in it:
                if stop.is_set():
                    return
                q.put(x)
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is done:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def _resume(src: reader.Source, earlier: list[_Known]) -> tuple[_Known, bytes] | None:
    """If the (uncompressed) file starts with the whole content of the latest earlier ingest
    of the same path, consume and hash that prefix; returns that ingest and the prefix's
    unfinished last line (b"" when it ended with a newline), which is read again whole."""
    if src.compression or not earlier or not earlier[0].size:
        return None
    prev = earlier[0]  # the largest: the latest ingest of a growing file
    with open(src.path, "rb") as f:
        f.seek(max(0, prev.size - reader.MAX_LINE))
        head = f.read(prev.size - f.tell())
    cut = head.rfind(b"\n")
    if cut < 0 and len(head) == reader.MAX_LINE:
        return None
    left = prev.size
    while left and (data := src.read_block(min(left, reader.BLOCK))):
        left -= len(data)
    if left or src.hasher.copy().hexdigest() != prev.sha256:
        return None
    return prev, head[cut + 1:]


def _parse_file(inp: _Input, parser: Format, org: str | None, res: _FileResult,
                report: Callable[[int, str], None], workers: _Workers,
                earlier: list[_Known]) -> None:
    ctx = _Ctx(parser, res, org, inp)
    if (records := parser.read_batches(inp.path)) is not None:
        res.sha256 = res.sha256 or _hash(inp.path)
        res.file_id = res.sha256[:32]
        _parse_batches(records, parser, ctx, res, workers)
        report(res.size, inp.display)
        _check_accounting(res)
        return
    hasher = hashlib.sha256() if res.sha256 is None else None
    src = reader.open_source(inp.path, hasher)
    carry = b""
    if hasher is not None and (resumed := _resume(src, earlier)) is not None:
        prev, carry = resumed
        res.first_line = prev.first_line + prev.lines_read - (1 if carry else 0)
        res.continues = prev.file_id
    elif src.raw_position():  # not a continuation after all: start over
        src.close()
        hasher = hashlib.sha256()
        src = reader.open_source(inp.path, hasher)
    pos = 0

    def progress() -> None:
        nonlocal pos
        new = src.raw_position()
        report(new - pos, inp.display)
        pos = new

    with src:
        _parse_batches(reader.iter_batches(src, first=res.first_line, carry=carry), parser, ctx,
                       res, workers, progress)
        report(res.size - pos, inp.display)
        if src.error:
            res.error = f"{inp.display}: {src.error} (kept {res.lines_read} lines read before)"
    if hasher is not None:
        res.sha256 = hasher.hexdigest()
        res.file_id = res.sha256[:32]
    _check_accounting(res)


def _parse_batches(batches: Iterator[reader.Batch], parser: Format, ctx: _Ctx,
                   res: _FileResult, workers: _Workers,
                   progress: Callable[[], None] | None = None) -> None:
    """Parse a file's batches on the workers (read one ahead on a thread), in order."""
    pending: deque[Future] = deque()
    try:
        for k, batch in enumerate(_prefetch(batches)):
            res.lines_read += batch.lines
            res.comment_lines += batch.blank
            prepared = parser.prepare(batch.table) if batch.table.num_rows else None
            pending.append(workers.submit(ctx.chunk, workers, batch, prepared, k))
            while len(pending) > INFLIGHT:
                ctx.collect(pending.popleft().result())
            if progress is not None:
                progress()
        while pending:
            ctx.collect(pending.popleft().result())
    finally:
        for fut in pending:  # an error: let the queued work finish before the caller cleans up
            fut.cancel()
            if not fut.cancelled():
                fut.exception()


def _check_accounting(res: _FileResult) -> None:
    accounted = res.rows_written + res.rows_quarantined + res.comment_lines + res.lines_ignored
    if accounted != res.lines_read:
        raise RuntimeError(f"line accounting mismatch: {res.lines_read} read, {accounted} "
                           "accounted for")


@dataclass
class _ChunkOut:
    comments: int = 0
    ignored: int = 0
    quarantined: int = 0
    rows_by_kind: dict = field(default_factory=dict)
    derived_by_kind: dict = field(default_factory=dict)
    orgs: set = field(default_factory=set)
    quarantine_file: Path | None = None


class _Ctx:
    """Per-file parse state: turns batches into staged Parquet and quarantine files."""

    def __init__(self, parser: Format, res: _FileResult, org: str | None, inp: _Input):
        self.parser, self.res, self.inp, self.org = parser, res, inp, org
        self.fallback_org = inp.folder_org or "default"

    def collect(self, out: _ChunkOut) -> None:
        res = self.res
        res.comment_lines += out.comments
        res.lines_ignored += out.ignored
        res.rows_quarantined += out.quarantined
        for kind, n in out.derived_by_kind.items():
            res.derived_by_kind[kind] = res.derived_by_kind.get(kind, 0) + n
        for kind, n in out.rows_by_kind.items():
            res.rows_by_kind[kind] = res.rows_by_kind.get(kind, 0) + n
            res.rows_written += n
        res.orgs |= out.orgs
        if out.quarantine_file:
            res.quarantine_files.append(out.quarantine_file)

    def chunk(self, workers: _Workers, batch: reader.Batch, prepared: Any, k: int) -> _ChunkOut:
        """Parse one batch and write its rows (runs on a worker thread)."""
        con = _BatchCon(workers, batch.table)
        try:
            return self._chunk(con, batch, prepared, k)
        finally:
            con.release()

    def _chunk(self, con: _BatchCon, batch: reader.Batch, prepared: Any, k: int) -> _ChunkOut:
        out = _ChunkOut()
        parts: list[tuple[str, pa.Table, bool]] = []
        if batch.table.num_rows:
            result = self.parser.parse(con, batch, prepared)
            con.views += result.views
            for part in result.parts:
                table = part.table if part.table is not None else \
                    con.sql(part.sql).to_arrow_table().combine_chunks()
                parts.append((part.kind, table, part.derived))
            out.comments, out.ignored = result.comments, result.ignored
        quarantine = []
        if batch.bad:
            quarantine.append(pa.table({
                "source_line": pa.array([b[0] for b in batch.bad], pa.int64()),
                "reason": pa.array([b[1] for b in batch.bad], pa.string()),
                "raw": pa.array([b[2] for b in batch.bad], pa.string())}))
        for i, (kind, table, derived) in enumerate(parts):
            rows, bad = self._project(con, kind, table)
            if bad is not None and not derived:  # (a derived row's line is its base row's)
                quarantine.append(bad)
            if rows is not None and rows.num_rows:
                count = out.derived_by_kind if derived else out.rows_by_kind
                count[kind] = count.get(kind, 0) + rows.num_rows
                out.orgs |= _write_partitions(rows, self.res.staged / kind / f"c{k}p{i}")
        if quarantine:
            q = pa.concat_tables(quarantine)
            out.quarantined = q.num_rows
            out.quarantine_file = self.res.staged / f"quarantine_{k}.parquet"
            pq.write_table(q, out.quarantine_file)
        return out

    def _project(self, con, kind: str, t: pa.Table) -> tuple[pa.Table | None, pa.Table | None]:
        """(the kind's lake columns of the good rows, with org_id and event_date; the
        quarantine rows (source_line, reason, raw))."""
        bad = None
        if "_reason" in t.column_names:
            reason = t.column("_reason")
            if reason.null_count < len(reason):
                is_bad = pc.is_valid(reason)
                q = t.filter(is_bad)
                bad = pa.table({
                    "source_line": q.column("source_line").cast(pa.int64()),
                    "reason": q.column("_reason").cast(pa.string()),
                    "raw": pc.utf8_slice_codeunits(q.column("raw").cast(pa.string()), 0,
                                                   reader.RAW_KEEP)})
                t = t.filter(pc.invert(is_bad))
        n = t.num_rows
        if not n:
            return None, bad
        have = set(t.column_names)
        if kind in schema.INTEL_KINDS:  # intel belongs to no organisation
            org = constant(schema.NO_ORG, n)
        elif self.org:
            org = constant(self.org, n)
        elif "_org" in have:
            (org,) = per_distinct(con, t.column("_org"), [
                "nullif(left(regexp_replace(v, '[^A-Za-z0-9._-]', '_', 'g'), 100), '')"])
            org = pc.fill_null(org.cast(pa.string()), self.fallback_org)
        else:
            org = constant(self.fallback_org, n)
        cols: dict[str, Any] = {"org_id": org}
        derived: dict[str, Any] = {}
        for name, typ in schema.KINDS[kind]:
            # an IP's number (`source_ip` -> `source_ip_num`, `ip` -> `ip_num`). Parquet has no
            # 128-bit integer: DECIMAL(38,0) is exact for IPv4 and all of 2000::/3; the view
            # reads it back as UHUGEINT.
            base = name.removesuffix("_num")
            if typ == "UHUGEINT" and name not in have and base != name and base in have:
                derived[name] = ip_numbers(con, t.column(base))
        urls = ("url_path", "url_query", "url_decoded")
        if "url_original" in have and not set(urls) <= have:
            parts = dict(zip(urls, url_parts(con, t.column("url_original")), strict=True))
            derived.update((c, parts[c]) for c in urls if c not in have)
        fixed = {"event_kind": constant(kind, n), "source_file": constant(self.inp.display, n)}
        for name, typ in schema.KINDS[kind]:
            if name in ("org_id", "file_id"):  # file_id: from the file name (workspace view)
                continue
            if name == "event_date":
                cols[name] = pc.cast(cols["ts"], pa.date32())
                continue
            col = fixed.get(name)
            if col is None:
                col = t.column(name) if name in have else derived.get(name)
            cols[name] = _as_type(col, schema.ARROW_TYPES[typ], n)
        return pa.table(cols), bad


def _as_type(col, typ: pa.DataType, n: int):
    if col is None:
        return pa.nulls(n, typ)
    if isinstance(col, pa.ChunkedArray):  # (combine_chunks copies even a single chunk)
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if col.type == typ or (isinstance(col, pa.DictionaryArray) and col.type.value_type == typ):
        return col
    return col.cast(typ)


def _write_partitions(table: pa.Table, out: Path) -> set[str]:
    """Write ``out/org_id=<o>/part_<i>.parquet`` (hive layout by organisation; ``event_date``
    and ``ts`` stay columns whose row-group statistics prune periods); returns the
    organisations written. One file per organisation and batch, not per day: a month-long log
    must not become thirty small files that every later scan pays for."""
    org = table.column("org_id").combine_chunks()
    one_org = isinstance(org, pa.DictionaryArray) and len(org.dictionary) == 1
    if one_org:
        groups = [(org.dictionary[0].as_py(), table)]
    else:
        key = org.cast(pa.string())
        groups = [(o, table.filter(pc.equal(key, o))) for o in pc.unique(key).to_pylist()]
    orgs: set[str] = set()
    for i, (o, part) in enumerate(groups):
        data = part.drop_columns(["org_id"])
        dict_cols = [c for c in data.column_names if c not in ("raw", "source_line")]
        orgs.add(o)
        folder = out / f"org_id={o}"
        folder.mkdir(parents=True, exist_ok=True)
        # line numbers count up: delta-encoded they take a few bytes per page, not 8 a row
        pq.write_table(data, folder / f"part_{i}.parquet",
                       compression="snappy", use_dictionary=dict_cols,
                       column_encoding={"source_line": "DELTA_BINARY_PACKED"},
                       write_statistics=["ts", "event_date", "source_line"])
    return orgs


# -- commit ----------------------------------------------------------------------------------
def _commit(ws: Workspace, con: duckdb.DuckDBPyConnection, res: _FileResult,
            summary: IngestSummary) -> None:
    inp = res.inp
    if res.status == "unrecognised":
        summary.unrecognised.append(inp.display)
    elif res.status == "skipped":
        summary.skipped_files += 1
    elif res.status == "failed":
        summary.errors.append(res.error or f"{inp.display}: failed")
    if res.status != "ingested":
        if res.staged:
            shutil.rmtree(res.staged, ignore_errors=True)
        summary.per_file.append(res.per_file())
        return
    if con.execute("SELECT 1 FROM ingest_manifest WHERE file_id = ?",
                   [res.file_id]).fetchall():
        # Same content seen earlier in this run (e.g. a copy in another folder).
        shutil.rmtree(res.staged, ignore_errors=True)
        res.status = "skipped"
        summary.skipped_files += 1
        summary.per_file.append(res.per_file())
        return
    lake.move_into_lake(ws, res.staged, res.file_id)
    intel = res.fmt in formats.FORMATS and formats.FORMATS[res.fmt].intel
    orgs = [] if intel else sorted(res.orgs - {schema.NO_ORG}) or [inp.folder_org or "default"]
    con.execute("BEGIN TRANSACTION")
    try:
        if res.quarantine_files:
            files = "[" + ", ".join(sql_str(str(f)) for f in res.quarantine_files) + "]"
            con.execute(
                "INSERT INTO quarantine (file_id, source_file, source_line, format, reason, raw) "
                f"SELECT ?, ?, source_line, ?, reason, raw FROM read_parquet({files})",
                [res.file_id, inp.display, res.fmt])
        if res.quarantine is not None and res.quarantine.num_rows:
            con.register("_quarantine", res.quarantine)
            try:
                con.execute(
                    "INSERT INTO quarantine (file_id, source_file, source_line, format, reason, "
                    "raw) SELECT ?, ?, source_line, ?, reason, raw FROM _quarantine",
                    [res.file_id, inp.display, res.fmt])
            finally:
                con.unregister("_quarantine")
        con.execute(
            "INSERT INTO ingest_manifest (file_id, path, size, sha256, format, org_id, "
            "lines_read, rows_written, rows_quarantined, comment_lines, lines_ignored, error, "
            "started_at, finished_at, first_line, continues) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [res.file_id, inp.display, res.size, res.sha256, res.fmt, ",".join(orgs) or None,
             res.lines_read, res.rows_written, res.rows_quarantined, res.comment_lines,
             res.lines_ignored, res.error, res.started_at, _now(), res.first_line,
             res.continues])
        for o in orgs:
            ws.ensure_org(con, o)
        con.execute("COMMIT")
    except BaseException:
        abort(con)
        raise
    shutil.rmtree(res.staged, ignore_errors=True)
    summary.files += 1
    summary.lines_read += res.lines_read
    summary.rows_written += res.rows_written
    summary.rows_quarantined += res.rows_quarantined
    summary.comment_lines += res.comment_lines
    summary.lines_ignored += res.lines_ignored
    if res.error:
        summary.errors.append(res.error)
    summary.per_file.append(res.per_file())


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
