"""The ingest driver: paths -> files -> parsed Arrow/DuckDB batches -> staged Parquet -> commit."""

from __future__ import annotations

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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from threatscope import schema
from threatscope.errors import UserError
from threatscope.ingest import formats, lake, reader, sqlfn
from threatscope.ingest.formats import Format, ParseResult, Part, sql_str
from threatscope.workspace import Workspace

CHUNK_BYTES = 64 << 20  # text parsed and written per step (bounds memory per worker)
SNIFF_BYTES = 64 << 10
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
    rows_by_kind: dict = field(default_factory=dict)
    orgs: set = field(default_factory=set)
    error: str | None = None
    staged: Path | None = None
    quarantine_files: list = field(default_factory=list)
    started_at: datetime | None = None

    def per_file(self) -> dict:
        return {
            "path": self.inp.display, "status": self.status, "file_id": self.file_id,
            "format": self.fmt, "orgs": sorted(self.orgs), "lines_read": self.lines_read,
            "rows_written": self.rows_written, "rows_by_kind": self.rows_by_kind,
            "rows_quarantined": self.rows_quarantined, "comment_lines": self.comment_lines,
            "lines_ignored": self.lines_ignored, "error": self.error,
        }


class _Unrecognised(Format):
    """Pseudo-format of a file named on the command line that no plug-in recognises."""

    name = "unknown"

    def parse(self, con, table) -> ParseResult:
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
) -> IngestSummary:
    """Ingest files, folders (recursively), globs and ``-`` (stdin) into the workspace.

        summary = ingest_paths(ws, ["logs/", "eve.json.gz"], fmt="auto")
        summary.rows_written, summary.errors, summary.to_dict()

    Organisation of a row: ``org`` > the record's ``org_id`` (JSON formats) > the first folder
    below a folder given here (``<root>/<org_id>/...``) > ``default``. ``progress(advance,
    total, description)`` advances in bytes of the input files as stored (compressed size for
    compressed files); it may be called from worker threads (calls are serialised).
    A path that does not exist is an error line in the summary; if no path names any file,
    UserError.
    """
    if fmt != "auto":
        formats.get(fmt)
    if org is not None:
        if not org.strip() or clean_org(org) != org.strip():
            raise UserError(f"invalid organisation id {org!r} (use letters, digits, . _ -)")
        org = org.strip()
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

        known = lake.committed_ids(con)
        workers = max(1, min(2, len(inputs), os.cpu_count() or 1))
        tmpdir = ws.root / ".tmp"
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(_process, inp, fmt, org, stage_root, known, report, tmpdir)
                for inp in inputs
            ]
            for fut in futures:
                res = fut.result()
                _commit(ws, con, res, summary)
                ws.refresh_views(con)
        if stdin_tmp:
            Path(stdin_tmp).unlink(missing_ok=True)
        shutil.rmtree(stage_root, ignore_errors=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    return summary


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
def _hash(path: str) -> tuple[str, str | None]:
    h = hashlib.sha256()
    with reader.open_source(path) as src:
        while block := src.read_block(reader.BLOCK):
            h.update(block)
        return h.hexdigest(), src.error


def _sniff(path: str) -> tuple[str | None, bool]:
    """(format name or None, whether the head had any non-blank line)."""
    with reader.open_source(path) as src:
        head = src.read_block(SNIFF_BYTES)
    text = head.decode("utf-8", "replace")
    lines = [x.rstrip("\r") for x in text.split("\n")[:-1] or text.split("\n")]
    lines = [x for x in lines if x.strip()][:50]
    return formats.sniff(lines), bool(lines)


def _process(inp: _Input, fmt: str, org: str | None, stage_root: Path, known: set[str],
             report: Callable[[int, str], None], tmpdir: Path) -> _FileResult:
    res = _FileResult(inp, "failed", started_at=_now())
    try:
        if os.path.isdir(inp.path):
            raise IsADirectoryError("is a directory")
        res.size = os.path.getsize(inp.path)
        if fmt == "auto":
            name, nonblank = _sniff(inp.path)
            if name is None and nonblank and not inp.explicit:
                res.status = "unrecognised"
                report(res.size, inp.display)
                return res
            res.fmt = name or "unknown"
        else:
            res.fmt = fmt
        res.sha256, _ = _hash(inp.path)
        res.file_id = res.sha256[:32]
        if res.file_id in known:
            res.status = "skipped"
            report(res.size, inp.display)
            return res
        res.staged = stage_root / uuid.uuid4().hex
        res.staged.mkdir(parents=True)
        parser = formats.FORMATS[res.fmt]() if res.fmt in formats.FORMATS else _Unrecognised()
        _parse_file(inp, parser, org, res, report, tmpdir)
        res.status = "ingested"
    except OSError as e:
        res.error = f"{inp.display}: cannot read: {e.strerror or e}"
    except Exception as e:  # a bug must not lose the other files' work
        res.error = f"{inp.display}: ingest failed: {type(e).__name__}: {e}"
    return res


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
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


def _parse_file(inp: _Input, parser: Format, org: str | None, res: _FileResult,
                report: Callable[[int, str], None], tmpdir: Path) -> None:
    tmpdir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": os.cpu_count() or 1, "memory_limit": "1GB",
                                 "temp_directory": str(tmpdir),
                                 "preserve_insertion_order": False})
    try:
        sqlfn.install(con)
        ctx = _Ctx(con, parser, res, org, inp)
        with reader.open_source(inp.path) as src:
            pending: list[reader.Batch] = []
            size = 0
            pos = 0
            for batch in _prefetch(reader.iter_batches(src)):
                pending.append(batch)
                size += batch.nbytes
                if size >= CHUNK_BYTES:
                    ctx.chunk(pending)
                    pending, size = [], 0
                    new = src._raw.tell()
                    report(new - pos, inp.display)
                    pos = new
            ctx.chunk(pending)
            report(res.size - pos, inp.display)
            if src.error:
                res.error = f"{inp.display}: {src.error} (kept {res.lines_read} lines read before)"
    finally:
        con.close()
    accounted = res.rows_written + res.rows_quarantined + res.comment_lines + res.lines_ignored
    if accounted != res.lines_read:
        raise RuntimeError(f"line accounting mismatch: {res.lines_read} read, {accounted} "
                           "accounted for")


class _Ctx:
    """Per-file parse state: turns batches into staged Parquet and quarantine files."""

    def __init__(self, con, parser: Format, res: _FileResult, org: str | None, inp: _Input):
        self.con, self.parser, self.res, self.inp = con, parser, res, inp
        self.org_sql = sql_str(org) if org else None
        self.fallback_org = inp.folder_org or "default"
        self.n = 0

    def chunk(self, batches: list[reader.Batch]) -> None:
        res, con = self.res, self.con
        bad = [b for batch in batches for b in batch.bad]
        res.lines_read += sum(b.lines for b in batches)
        res.comment_lines += sum(b.blank for b in batches)
        tables = [b.table for b in batches if b.table.num_rows]
        parts: list[tuple[str, str]] = []  # (kind, temp table)
        if tables:
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            con.register("_batch", table)
            result = self.parser.parse(con, table)
            res.comment_lines += result.comments
            res.lines_ignored += result.ignored
            for i, part in enumerate(result.parts):
                name = f"_part{i}"
                con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {part.sql}")
                parts.append((part.kind, name))
            con.unregister("_batch")
        self._write(parts, bad)
        for _, name in parts:
            con.execute(f"DROP TABLE IF EXISTS {name}")

    def _write(self, parts: list[tuple[str, str]], bad: list[tuple[int, str, str]]) -> None:
        res, con = self.res, self.con
        chunk = self.n
        self.n += 1
        for kind in schema.KINDS:
            names = [t for k, t in parts if k == kind]
            if not names:
                continue
            projections = [self._project(kind, t) for t in names]
            rows = 0
            for t, (_, org) in zip(names, projections, strict=True):
                for o, c in con.execute(f"SELECT {org}, count(*) FROM {t} "
                                        "WHERE _reason IS NULL GROUP BY ALL").fetchall():
                    res.orgs.add(o)
                    rows += c
            if not rows:
                continue
            sel = " UNION ALL ".join(p for p, _ in projections)
            res.rows_written += rows
            res.rows_by_kind[kind] = res.rows_by_kind.get(kind, 0) + rows
            _write_partitions(con.sql(sel).to_arrow_table(), res.staged / kind / f"c{chunk}")
        qsel = [f"SELECT source_line, _reason AS reason, left(raw, {reader.RAW_KEEP}) AS raw "
                f"FROM {t} WHERE _reason IS NOT NULL" for _, t in parts]
        if bad:
            con.register("_bad", pa.table({
                "source_line": pa.array([b[0] for b in bad], pa.int64()),
                "reason": [b[1] for b in bad], "raw": [b[2] for b in bad]}))
            qsel.append("SELECT * FROM _bad")
        if qsel:
            con.execute("CREATE OR REPLACE TEMP TABLE _q AS " + " UNION ALL ".join(qsel))
            nq = con.execute("SELECT count(*) FROM _q").fetchall()[0][0]
            if nq:
                res.rows_quarantined += nq
                qf = res.staged / f"quarantine_{chunk}.parquet"
                con.execute(f"COPY _q TO {sql_str(str(qf))} (FORMAT parquet)")
                res.quarantine_files.append(qf)
            con.execute("DROP TABLE _q")
        if bad:
            con.unregister("_bad")

    def _project(self, kind: str, table: str) -> tuple[str, str]:
        """(SELECT of the kind's columns from a part table, the org_id expression)."""
        have = {r[0] for r in self.con.execute(f"DESCRIBE {table}").fetchall()}
        org = self.org_sql or (
            f"coalesce(nullif(left(regexp_replace(_org, '[^A-Za-z0-9._-]', '_', 'g'), 100), ''), "
            f"{sql_str(self.fallback_org)})" if "_org" in have else sql_str(self.fallback_org))
        fixed = {
            "org_id": org, "ts": "ts", "event_date": "CAST(ts AS DATE)",
            "event_kind": sql_str(kind), "file_id": sql_str(self.res.file_id),
            "source_file": sql_str(self.inp.display), "source_line": "source_line", "raw": "raw",
        }
        derived = {}
        if "source_ip" in have:
            # The IPv6 expression is costly even where unused: only when the chunk has one.
            v6 = self.con.execute(
                f"SELECT bool_or(strpos(source_ip, ':') > 0) FROM {table}").fetchall()[0][0]
            derived["source_ip_num"] = "ts_ip_num(source_ip)" if v6 else "_ts_v4num(source_ip)"
        if "url_original" in have:
            derived["url_path"] = "ts_url_path(url_original)"
            derived["url_query"] = "ts_url_query(url_original)"
            derived["url_decoded"] = "ts_url_decode(url_original)"
        cols = []
        for name, typ in schema.KINDS[kind]:
            if name in fixed:
                expr = fixed[name]
            elif name in have:
                expr = f'"{name}"'
            elif name in derived:
                expr = derived[name]
            else:
                expr = "NULL"
            if typ == "UHUGEINT":
                # Parquet has no 128-bit integer (DuckDB would write DOUBLE): DECIMAL(38,0) is
                # exact for IPv4 and all of 2000::/3; read it back with CAST(.. AS UHUGEINT).
                cols.append(f'TRY_CAST({expr} AS DECIMAL(38,0)) AS "{name}"')
            else:
                cols.append(f'CAST({expr} AS {typ}) AS "{name}"')
        return f"SELECT {', '.join(cols)} FROM {table} WHERE _reason IS NULL", org


# Columns with few distinct values: dictionary-encoded in Parquet (the others are not, which
# saves the writer a dictionary attempt on every long string).
_DICT_COLUMNS = ["event_kind", "file_id", "source_file", "http_request_method", "http_version",
                 "url_domain", "destination_ip", "user_agent_original", "http_request_referrer",
                 "category", "signature"]


def _write_partitions(table: pa.Table, out: Path) -> None:
    """Write ``out/org_id=<o>/event_date=<d>/part_<i>.parquet`` (hive layout, NULL date as
    ``__HIVE_DEFAULT_PARTITION__``). DuckDB's PARTITION_BY costs about twice a plain write;
    logs are mostly in time order, so partitions are usually contiguous runs: slice them."""
    if not table.num_rows:
        return
    dates = pc.fill_null(pc.cast(table.column("event_date"), pa.string()),
                         "__HIVE_DEFAULT_PARTITION__")
    key = pc.binary_join_element_wise(table.column("org_id"), dates, "\x00")
    runs = pc.run_end_encode(key).combine_chunks() if isinstance(key, pa.ChunkedArray) else \
        pc.run_end_encode(key)
    if len(runs.values) != len(pc.unique(key)):  # not grouped: sort once
        order = pc.sort_indices(key)
        table, key = table.take(order), pc.take(key, order)
        runs = pc.run_end_encode(key)
        if isinstance(runs, pa.ChunkedArray):
            runs = runs.combine_chunks()
    data = table.drop_columns(["org_id", "event_date"])
    dict_cols = [c for c in _DICT_COLUMNS if c in data.column_names]
    start = 0
    for i, (end, k) in enumerate(zip(runs.run_ends.to_pylist(), runs.values.to_pylist(),
                                     strict=True)):
        org, date = k.split("\x00")
        folder = out / f"org_id={org}" / f"event_date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(data.slice(start, end - start), folder / f"part_{i}.parquet",
                       compression="snappy", use_dictionary=dict_cols)
        start = end


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
    orgs = sorted(res.orgs) or [inp.folder_org or "default"]
    con.execute("BEGIN TRANSACTION")
    try:
        if res.quarantine_files:
            files = "[" + ", ".join(sql_str(str(f)) for f in res.quarantine_files) + "]"
            con.execute(
                "INSERT INTO quarantine (file_id, source_file, source_line, format, reason, raw) "
                f"SELECT ?, ?, source_line, ?, reason, raw FROM read_parquet({files})",
                [res.file_id, inp.display, res.fmt])
        con.execute(
            "INSERT INTO ingest_manifest (file_id, path, size, sha256, format, org_id, "
            "lines_read, rows_written, rows_quarantined, comment_lines, lines_ignored, error, "
            "started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [res.file_id, inp.display, res.size, res.sha256, res.fmt, ",".join(orgs),
             res.lines_read, res.rows_written, res.rows_quarantined, res.comment_lines,
             res.lines_ignored, res.error, res.started_at, _now()])
        for o in orgs:
            ws.ensure_org(con, o)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
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
