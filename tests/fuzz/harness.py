"""The parser fuzz tests' harness: hostile inputs built from valid seed records, their ingest
(forced format and auto-detected) and the properties every ingested file must have.

    lab = Lab("w3c")                       # two workspaces: fmt="w3c" and fmt="auto"
    lab.check([Input.text(b"#Fields: ...\\n...")], "w3c")

An example is a list of files (one ``ingest_paths`` call per workspace: that call's fixed
cost, not the files, dominates). Properties of every file (see ``_check_file``):

* it is ingested (or skipped as a copy of one ingested before): a parser exception would make
  it "failed", with no manifest row;
* its manifest row: lines_read = rows_written + rows_quarantined + comment_lines +
  lines_ignored, and lines_read is the number of lines written (newline-separated, blank ones
  included, one more for a last line without a newline), or of records for a record format;
* every quarantine row has a reason, a line within 1..lines_read (none twice), and the line's
  text as ``raw`` (at most reader.RAW_KEEP characters);
* the lake rows of its counted parts are rows_written distinct lines within range, none of
  them quarantined, each with its line as ``raw``; derived rows are on those lines.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import settings
from hypothesis import strategies as st

from threatscope.ingest import FORMATS, ingest_paths, reader
from threatscope.ingest.formats import Format, ioc, winevent
from threatscope.workspace import Workspace

# formats that read their files as records (read_batches), not lines
RECORD_FORMATS = {n for n, c in FORMATS.items() if c.read_batches is not Format.read_batches}
_ORG_DIR = re.compile(r"org_id=[A-Za-z0-9._-]{1,100}")


# -- inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Input:
    stored: bytes  # the file's bytes
    content: bytes | None  # what the reader gets out of it, when known (None: damaged stream)
    note: str = "plain"  # how it was made (shown on failure)
    records: int | None = None  # records of an intact file of a record format (evtx, office)

    @classmethod
    def text(cls, data: bytes, note: str = "plain") -> Input:
        # bytes that start like a compressed stream are decompressed by the reader: unknown
        return cls(data, None if reader.compression_of(data[:4]) else data, note)

    def __repr__(self) -> str:
        more = "..." if len(self.stored) > 3000 else ""
        return f"Input({self.note}, {self.stored[:3000]!r}{more})"


def compress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if kind == "bzip2":
        return bz2.compress(data, 1)
    return zstandard.ZstdCompressor(level=1).compress(data)


@st.composite
def wrapped(draw, data: bytes) -> Input:
    """``data`` as a file: mostly as is, else compressed (gzip, bzip2, zstd), possibly cut short
    or with a byte changed (a damaged stream: what comes out is not known exactly)."""
    how = draw(st.sampled_from(["plain"] * 6 + ["gzip", "bzip2", "zstd", "damaged"]))
    if how == "plain":
        return Input.text(data)
    if how != "damaged":
        return Input(compress(how, data), data, how)
    kind = draw(st.sampled_from(["gzip", "bzip2", "zstd"]))
    packed = bytearray(compress(kind, data))
    at = draw(st.integers(0, len(packed)))
    if draw(st.booleans()):
        return Input(bytes(packed[:at]), None, f"{kind} cut at {at}")
    if at < len(packed):
        packed[at] ^= draw(st.integers(1, 255))
    return Input(bytes(packed), None, f"{kind} byte {at} changed")


def line_count(data: bytes) -> int:
    """Lines as reader.py counts them: newline-separated, blank ones included, and a last line
    without a newline."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _lines(data: bytes) -> list[bytes]:
    if not data:
        return []
    parts = data.split(b"\n")
    if data.endswith(b"\n"):
        parts.pop()
    return [p[:-1] if p.endswith(b"\r") else p for p in parts]


def _quarantined_raw(line: bytes) -> str:
    """The ``raw`` of a quarantined line: its text, cut at RAW_KEEP characters (bytes for a
    line the reader could not take: not UTF-8, or too long)."""
    if len(line) <= reader.MAX_LINE:
        try:
            return line.decode("utf-8")[:reader.RAW_KEEP]
        except UnicodeDecodeError:
            pass
    return line[:reader.RAW_KEEP].decode("utf-8", "replace")


def feodo_json_records(content: bytes) -> int:
    """Records of an ioc-feodo-json document: its array's elements, else one (the document,
    quarantined)."""
    try:
        doc = json.loads(content.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return 1
    return len(doc) if isinstance(doc, list) else 1


# -- the lab -------------------------------------------------------------------------------
# Every example costs two ingest_paths calls, ~0.25 s each whatever the files' size (worker
# connections, catalog, views): the brief profile's 25 examples for each of the 14 parsers
# would add minutes to make test, so it runs this many; make fuzz runs the profile's count.
BRIEF_EXAMPLES = 3


def examples(brief: int = BRIEF_EXAMPLES) -> settings:
    """The settings of a parser fuzz test: the active profile, with fewer examples in brief."""
    if os.environ.get("THREATSCOPE_FUZZ", "brief") == "brief":
        return settings(max_examples=min(brief, settings().max_examples))
    return settings()


def labs_fixture():
    """A module-scoped fixture ``labs(name) -> Lab``, one Lab per name, removed at the end."""

    @pytest.fixture(scope="module")
    def labs():
        made: dict[str, Lab] = {}

        def get(name: str) -> Lab:
            if name not in made:
                made[name] = Lab(name)
            return made[name]

        yield get
        for lab in made.values():
            lab.close()

    return labs


class Lab:
    """One test function's workspaces (``fmt=<format>`` and ``fmt=auto``) and input folder.
    Hypothesis runs many examples per test: the workspaces are reused (a workspace per example
    would double the time); every file gets a new name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.root = Path(tempfile.mkdtemp(prefix=f"threatscope-fuzz-{name}-"))
        self.forced = Workspace.open(self.root / "forced", create=True)
        self.auto = Workspace.open(self.root / "auto", create=True)
        self.count = 0

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def check(self, inputs: list[Input], fmt: str, suffix: str = ".log",
              block: int | None = None) -> None:
        """Ingest ``inputs`` with ``fmt`` forced, then auto-detected, and check every file;
        ``block``: see ``small_batches``."""
        for ws, mode in ((self.forced, fmt), (self.auto, "auto")):
            paths = []
            for inp in inputs:
                self.count += 1
                path = self.root / "in" / f"{self.count:06d}{suffix}"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(inp.stored)
                paths.append(path)
            with small_batches(block):
                summary = ingest_paths(ws, [str(p) for p in paths], fmt=mode)
            per = {f["path"]: f for f in summary.per_file}
            with duckdb.connect(str(ws.catalog_path), read_only=True) as con:
                for path, inp in zip(paths, inputs, strict=True):
                    _check_file(ws, con, per[str(path)], inp, mode)
            for p in paths:
                p.unlink()


def files(inputs: st.SearchStrategy[Input], most: int = 3) -> st.SearchStrategy[list[Input]]:
    """An example's files (ingested together)."""
    return st.lists(inputs, min_size=1, max_size=most)


# an example's block size: the real one (None), or small ones (see small_batches)
blocks = st.sampled_from([None, None, 512, 1500])


@contextmanager
def small_batches(block: int | None) -> Iterator[None]:
    """Read files in blocks of ``block`` bytes and records in batches of ``block // 500``:
    a small file is then many batches parsed in parallel (header state across batches,
    lines carried from one block to the next)."""
    if block is None:
        yield
        return
    saved = (reader.BLOCK, reader.MIN_BLOCK, ioc.JSON_RECORDS_PER_BATCH,
             winevent.RECORDS_PER_BATCH)
    reader.BLOCK, reader.MIN_BLOCK = block, block // 2
    ioc.JSON_RECORDS_PER_BATCH = winevent.RECORDS_PER_BATCH = max(1, block // 500)
    try:
        yield
    finally:
        (reader.BLOCK, reader.MIN_BLOCK, ioc.JSON_RECORDS_PER_BATCH,
         winevent.RECORDS_PER_BATCH) = saved


def _check_file(ws: Workspace, con, per: dict, inp: Input, mode: str) -> None:
    where = f"{mode} ingest of {inp!r}: {per}"
    assert per["status"] in ("ingested", "skipped"), where
    if per["status"] == "skipped":  # the same content as a file ingested before
        assert con.execute("SELECT count(*) FROM ingest_manifest WHERE file_id = ?",
                           [per["file_id"]]).fetchone()[0] == 1, where
        return
    cur = con.execute("SELECT * FROM ingest_manifest WHERE path = ?", [per["path"]])
    names = [d[0] for d in cur.description]
    (row,) = cur.fetchall()
    m = dict(zip(names, row, strict=True))
    where += f"\nmanifest: {m}"
    fmt = m["format"]
    assert mode == "auto" or fmt == mode, where
    n = m["lines_read"]
    assert n == (m["rows_written"] + m["rows_quarantined"] + m["comment_lines"]
                 + m["lines_ignored"]), where
    lines = _expected_lines(fmt, inp, n, m, where)
    if fmt in FORMATS and FORMATS[fmt].intel:
        assert m["org_id"] is None, where

    quarantine = con.execute("SELECT source_line, reason, raw FROM quarantine WHERE file_id = ?",
                             [m["file_id"]]).fetchall()
    assert len(quarantine) == m["rows_quarantined"], where
    q_lines = Counter(q[0] for q in quarantine)
    assert all(c == 1 for c in q_lines.values()), f"a line quarantined twice: {where}"
    for line_no, reason, raw in quarantine:
        assert reason and reason.strip(), where
        assert 1 <= line_no <= n, where
        assert raw is not None and len(raw) <= reader.RAW_KEEP, where
        if lines is not None:
            assert raw == _quarantined_raw(lines[line_no - 1]), (line_no, raw, where)

    counted: Counter = Counter()
    derived_lines: set[int] = set()
    rows_by_kind: Counter = Counter()
    for f in ws.lake.glob(f"*/*/{m['file_id']}_*.parquet"):
        kind = f.parent.parent.name
        assert _ORG_DIR.fullmatch(f.parent.name), f
        t = pq.read_table(f, columns=["source_line", "raw"])
        rows_by_kind[kind] += t.num_rows
        got = list(zip(t.column("source_line").to_pylist(), t.column("raw").to_pylist(),
                       strict=True))
        if kind in per["rows_by_kind"]:
            counted.update(x for x, _ in got)
        else:
            derived_lines.update(x for x, _ in got)
        for line_no, raw in got:
            assert line_no is not None and 1 <= line_no <= n, where
            if lines is not None:
                assert raw == lines[line_no - 1].decode("utf-8"), (line_no, where)
    expected = Counter(per["rows_by_kind"]) + Counter(per["derived_rows_by_kind"])
    assert rows_by_kind == expected, where
    assert len(counted) == m["rows_written"], f"lines written twice: {where}"
    extra = sum(per["derived_rows_by_kind"].get(k, 0) for k in per["rows_by_kind"])
    assert sum(counted.values()) == m["rows_written"] + extra, where
    assert derived_lines <= set(counted), where
    assert not set(counted) & set(q_lines), f"a line both written and quarantined: {where}"


def _expected_lines(fmt: str, inp: Input, n: int, m: dict, where: str) -> list[bytes] | None:
    """Check lines_read against the input; the lines (to compare ``raw``) of a line format
    whose content is known."""
    if fmt in RECORD_FORMATS:
        if inp.records is not None:
            assert n == inp.records, where
        if fmt == "office":
            assert n == 1, where
        elif fmt == "ioc-feodo-json" and inp.content is not None:
            assert n == feodo_json_records(inp.content), where
        return None
    if inp.content is None:
        return None
    assert m["error"] is None, where
    lines = _lines(inp.content)
    assert n == line_count(inp.content) == len(lines), where
    return lines


# -- hostile values and line mutations ------------------------------------------------------
ODD_TIMESTAMPS = [
    "0000-00-00 00:00:00", "9999-12-31 23:59:59", "2018-02-30 10:00:00", "2018-13-01T00:00:00Z",
    "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "2018-05-01T10:00:00+25:00",
    "2018-05-01T24:00:00", "294247-01-10T04:00:54Z", "-2018-05-01",
    "2018-05-01T10:00:00.1234567891Z",
    "01/May/2018:10:00:00 +9999", "32/Foo/2018:99:99:99 +0000", "1e308", "-1", "nan", "inf",
    "18446744073709551616", "1525168800.123456789", "9223372036854775807", "T", "Z", "",
]
BAD_IPS = ["999.1.1.1", "1.2.3", "1.2.3.4.5", "::g", "1.2.3.4/33", "[::1]", "fe80::1%eth0",
           "0x7f.1", "01.02.03.004", "::ffff:999.1.1.1", "1:2:3:4:5:6:7:8:9", "-", " ", ""]
SPECIALS = ["-", '"', "'", "\\", '\\"', "#", "#Fields:", "%00", "%", "\t", " ", "  ", "null",
            "None", "{}", "[]", "(empty)", "?", "&", "=", "/", ",", '""', ";", "\u2028",
            "\ufeff", "\u202e", "é", "\U0001d518", "\x00", "\r", "\x1b[31m", "<script>"]
BAD_UTF8 = [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80",
            b"\x80", b"\xfe\xff"]


def long_values() -> st.SearchStrategy[str]:
    chars = ["A", "é", '"', "%", " ", "\\", "\U0001d518", "-", "1"]
    return st.builds(lambda c, k: c * k, st.sampled_from(chars),
                     st.sampled_from([300, 4095, 4097, 20_000]))


def nasty() -> st.SearchStrategy[str]:
    """A hostile field value."""
    return st.one_of(
        st.sampled_from(ODD_TIMESTAMPS + BAD_IPS + SPECIALS),
        st.text(max_size=12),
        st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co"]),
                min_size=1, max_size=6),
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.floats().map(repr),
        long_values(),
    )


def _split(line: bytes, sep: bytes) -> list[bytes]:
    return line.split(sep) if sep else [line]


@st.composite
def mutate_lines(draw, lines: list[bytes], sep: bytes = b" ", extra: list[bytes] | None = None,
                 max_ops: int = 4) -> list[bytes]:
    """Line-level damage: fields (split on ``sep``) replaced, dropped or repeated, lines cut,
    repeated, dropped or mixed with ``extra`` lines (other formats, headers), invalid UTF-8,
    NUL, CR, blank lines, long repeats."""
    lines = list(lines)
    pool = (extra or []) + [b"", b" ", b"\t", b"#", b"\r"]
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["field", "field", "field", "drop_field", "dup_field", "cut",
                                   "insert", "delete", "dup_line", "bytes", "amplify"]))
        if not lines:
            lines.append(b"")
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if op in ("field", "drop_field", "dup_field"):
            fields = _split(line, sep)
            j = draw(st.integers(0, len(fields) - 1))
            if op == "field":
                fields[j] = draw(nasty()).encode("utf-8", "surrogatepass")
            elif op == "drop_field":
                del fields[j]
            else:
                fields.insert(j, fields[j])
            lines[i] = sep.join(fields)
        elif op == "cut":
            lines[i] = line[:draw(st.integers(0, len(line)))]
        elif op == "insert":
            new = draw(st.one_of(st.sampled_from(pool), st.binary(max_size=40),
                                 nasty().map(lambda s: s.encode("utf-8", "surrogatepass"))))
            lines.insert(i, new)
        elif op == "delete":
            del lines[i]
        elif op == "dup_line":
            lines.insert(i, line)
        elif op == "bytes":
            at = draw(st.integers(0, len(line)))
            odd = draw(st.sampled_from([*BAD_UTF8, b"\x00", b"\r", b"\x1a"]))
            lines[i] = line[:at] + odd + line[at:]
        else:  # amplify: a piece of the line repeated (regex back-tracking, long lines)
            a = draw(st.integers(0, len(line)))
            b = draw(st.integers(a, min(len(line), a + 20)))
            lines[i] = line[:a] + line[a:b] * draw(st.sampled_from([50, 1000, 5000])) + line[b:]
    return lines


@st.composite
def join_lines(draw, lines: list[bytes]) -> bytes:
    """Lines joined with LF or CRLF, with or without a final newline."""
    eol = draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    data = eol.join(lines)
    if lines and draw(st.integers(0, 3)):
        data += eol
    return data


def text_inputs(seeds: st.SearchStrategy[list[bytes]], sep: bytes = b" ",
                extra: list[bytes] | None = None) -> st.SearchStrategy[Input]:
    """Files of lines: seed lines, damaged, joined, maybe compressed."""
    return (seeds.flatmap(lambda ls: mutate_lines(ls, sep, extra))
            .flatmap(join_lines).flatmap(wrapped))


# -- JSON -----------------------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), nasty())
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12)


def deep(depth: int, kind: str) -> str:
    """JSON nested ``depth`` levels deep (a parser's recursion limit)."""
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


def _paths(obj, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for k, v in enumerate(obj):
            out += _paths(v, (*prefix, k))
    return out


def _set(obj, path: tuple, value):
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


@st.composite
def mutate_json(draw, obj, max_ops: int = 3) -> str:
    """A JSON record damaged: values replaced by hostile or wrong-typed ones, keys dropped or
    added, then written (maybe with a key repeated, or a value nested very deep)."""
    obj = json.loads(json.dumps(obj))
    marker = "\x00DEEP\x00"
    for _ in range(draw(st.integers(0, max_ops))):
        paths = _paths(obj)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["value", "value", "type", "drop", "add", "deep"]))
        if op == "value":
            obj = _set(obj, path, draw(json_values))
        elif op == "type":
            old = _get(obj, path)
            new = (str(old) if not isinstance(old, str) else
                   draw(st.sampled_from([[old], {"v": old}, 0, -1, 1e300, True])))
            obj = _set(obj, path, new)
        elif op == "drop" and path:
            parent = _get(obj, path[:-1])
            del parent[path[-1]]
        elif op == "add":
            target = _get(obj, path)
            if isinstance(target, dict):
                target[draw(st.text(max_size=10))] = draw(json_values)
            elif isinstance(target, list):
                target.append(draw(json_values))
        elif op == "deep":
            obj = _set(obj, path, marker)
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    if marker in text or "\\u0000DEEP\\u0000" in text:
        nested = deep(draw(st.sampled_from([64, 1000, 5000, 100_000])),
                      draw(st.sampled_from(["object", "array"])))
        text = text.replace(json.dumps(marker), nested, 1)
        text = text.replace(json.dumps(marker, ensure_ascii=False), nested, 1)
    if text.startswith("{") and len(text) > 2 and draw(st.integers(0, 5)) == 0:
        # a key twice: json.dumps never writes one
        m = re.match(r'\{("[^"\\]*"):', text)
        if m:
            text = "{" + m.group(1) + ": " + json.dumps(draw(json_values)) + ", " + text[1:]
    return text


def _get(obj, path: tuple):
    for k in path:
        obj = obj[k]
    return obj


def json_line_inputs(seeds: list[dict], extra: list[bytes] | None = None
                     ) -> st.SearchStrategy[Input]:
    """Files of JSON lines: seed records damaged record by record, non-object JSON lines, then
    line-level damage (cut lines, invalid UTF-8, other formats' lines), maybe compressed."""
    record = st.sampled_from(seeds).flatmap(mutate_json).map(
        lambda s: s.encode("utf-8", "surrogatepass"))
    other = st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                      st.sampled_from([b"NaN", b"[1,2", b'{"a":1}{"b":2}', b"{}", b"null",
                                       b'"text"', b"{'single': 'quotes'}"]))
    lines = st.lists(st.one_of(record, record, record, other), min_size=1, max_size=6)
    return lines.flatmap(lambda ls: mutate_lines(ls, b",", extra, max_ops=2)) \
        .flatmap(join_lines).flatmap(wrapped)
