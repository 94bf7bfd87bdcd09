"""Read a (possibly compressed) log as Arrow batches of lines, without a per-line Python loop.

    with open_source("access.log.gz", hasher=hashlib.sha256()) as src:
        for batch in iter_batches(src):
            batch.table            # pa.Table: n BIGINT (1-based line number), line VARCHAR
            batch.bad              # [(n, reason, raw)] lines that cannot be parsed at all
            batch.lines, batch.blank, batch.nbytes
        src.hasher.hexdigest()     # of all the decompressed bytes read

One batch holds the whole lines of one ``BLOCK`` of input (the unit of parallel work).

Blocks of ``BLOCK`` bytes are split into lines and validated as UTF-8 in one C pass
(``_native.split_lines``; Arrow's ``split_pattern`` and a cast without the C extension). Only a
block that fails validation is walked line by line in Python, to quarantine just its invalid
lines. Lines longer than ``MAX_LINE`` are quarantined without ever holding more
than ``MAX_LINE`` bytes of them in memory. Empty lines are counted (``blank``), not returned.
Compression is recognised by magic bytes (gzip, zstd, bzip2), not by the file name.
"""

from __future__ import annotations

import bz2
import io
import itertools
import mmap
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from threatscope.native import native

BLOCK = 32 << 20
MIN_BLOCK = 4 << 20  # the first block, and the least near the end of a file (see _block_size)
MAX_LINE = 1 << 20  # longer lines are quarantined ("line too long")
RAW_KEEP = 4096
COMPRESSED_STEP = 256 << 10  # bytes decompressed per step (what a damaged stream may lose)
# A compressed file that decompresses to more than MAX_RATIO times the compressed bytes read so
# far (past RATIO_FLOOR, so small files are never cut) is a decompression bomb, or as good as
# one: its reading stops there, with an error in the manifest. Logs compress 5-50:1; gzip can
# reach 1032:1, zstd and bzip2 far more. $THREATSCOPE_MAX_COMPRESSION_RATIO raises the limit.
MAX_RATIO = 200
RATIO_FLOOR = 64 << 20
RAW_STEP = 64 << 10  # compressed bytes fed to a decompressor at a time

_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2"}


def compression_of(head: bytes) -> str | None:
    """'gzip' | 'zstd' | 'bzip2' | None from the first bytes of a file."""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


class Source(io.RawIOBase):
    """A decompressed byte stream over a file; errors from damaged streams end it (see .error).

    With a ``hasher`` (hashlib object), every byte returned by ``read_block`` is fed to it."""

    def __init__(self, path: str, hasher=None):
        self.path = path
        self.hasher = hasher
        self.error: str | None = None
        self._out = 0  # decompressed bytes returned
        self._max_ratio = max_ratio()
        self._raw = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.compression = compression_of(self._raw.peek(4)[:4])
        if self.compression == "gzip":
            self._f = _Members(self._raw, lambda: zlib.decompressobj(31))
        elif self.compression == "bzip2":
            self._f = _Members(self._raw, bz2.BZ2Decompressor)
        elif self.compression == "zstd":
            import zstandard

            self._f = zstandard.ZstdDecompressor().stream_reader(
                self._raw, read_across_frames=True
            )
        else:
            self._f = self._raw

    def read_block(self, n: int) -> bytes:
        """Up to n bytes; b'' at the end or after a decompression error (kept in .error).

        Compressed streams are read in small steps so that a damaged stream loses at most one
        step of the data before the damage."""
        data = self._read(n)
        if self.hasher is not None and data:
            self.hasher.update(data)  # releases the GIL: overlaps the parsing threads
        return data

    def read_into(self, buf: bytearray | mmap.mmap, start: int, n: int) -> int:
        """Read up to ``n`` bytes into ``buf[start:]`` (hashed like read_block); the count."""
        if self._f is not self._raw:
            data = self.read_block(n)
            buf[start:start + len(data)] = data
            return len(data)
        view = memoryview(buf)[start:start + n]
        got = 0
        while got < n and (k := self._raw.readinto(view[got:])):
            got += k
        if self.hasher is not None and got:
            self.hasher.update(view[:got])
        return got

    def remaining(self) -> int | None:
        """Bytes left to read, when known (an uncompressed file)."""
        if self._f is not self._raw:
            return None
        return max(0, os.fstat(self._raw.fileno()).st_size - self._raw.tell())

    def raw_position(self) -> int:
        """Bytes of the file as stored (compressed size for compressed files) consumed so far."""
        return self._raw.tell()

    def _read(self, n: int) -> bytes:
        if self.error:
            return b""
        if self._f is self._raw:
            return self._raw.read(n)
        parts: list[bytes] = []
        got = 0
        while got < n:
            try:
                piece = self._f.read(min(n - got, COMPRESSED_STEP))
            except Exception as e:  # EOFError, OSError, zlib.error, zstandard.ZstdError...
                self.error = f"{self.compression} error: {e}"
                break
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
            self._out += len(piece)
            if self._out > RATIO_FLOOR and self._out > self._max_ratio * self._raw.tell():
                self.error = (
                    f"{self.compression} stream decompresses to more than {self._max_ratio} "
                    f"times its size ({self._out >> 20} MiB from {self._raw.tell() >> 10} KiB): "
                    "cut off as a likely decompression bomb (THREATSCOPE_MAX_COMPRESSION_RATIO "
                    "raises the limit)")
                break
        return b"".join(parts)

    def close(self) -> None:
        try:
            if self._f is not self._raw:
                self._f.close()
        except Exception:
            pass
        self._raw.close()
        super().close()


class _Members:
    """Multi-member gzip/bzip2 stream over decompressor objects. Unlike GzipFile, everything
    decompressed before a damaged or truncated spot is returned before the error is raised,
    and no call makes more than it was asked for (a bomb's megabyte of zeros would otherwise
    become a gigabyte in one ``decompress``)."""

    def __init__(self, raw, factory):
        self._raw, self._factory = raw, factory
        self._d = factory()
        self._pending = b""  # compressed bytes read, not yet given to a decompressor
        self._buf = bytearray()
        self._error: Exception | None = None
        self._done = False

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and not self._done:
            try:
                self._step(n - len(self._buf))
            except Exception as e:  # zlib.error, OSError: damaged data
                self._error, self._done = e, True
        if not self._buf and self._error is not None:
            err, self._error = self._error, None
            raise err
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _step(self, limit: int) -> None:
        if self._d is None:  # between members: another one, or the end
            if not self._pending and not (chunk := self._raw.read(RAW_STEP)):
                self._done = True
                return
            self._pending = self._pending or chunk
            self._d = self._factory()
        out = self._d.decompress(self._pending, limit)
        # zlib hands back the input it did not reach; bz2 keeps it and asks for b"" next
        self._pending = getattr(self._d, "unconsumed_tail", b"")
        self._buf += out
        if self._d.eof:
            self._pending, self._d = self._d.unused_data, None
        elif not out and not self._pending:
            chunk = self._raw.read(RAW_STEP)
            if not chunk:
                self._done = True
                self._error = EOFError("compressed stream ended before its end marker")
            self._pending = chunk

    def close(self) -> None:
        pass


def open_source(path: str, hasher=None) -> Source:
    return Source(path, hasher)


def max_ratio() -> int:
    """MAX_RATIO, or $THREATSCOPE_MAX_COMPRESSION_RATIO when set to a number."""
    try:
        return max(1, int(os.environ.get("THREATSCOPE_MAX_COMPRESSION_RATIO", MAX_RATIO)))
    except ValueError:
        return MAX_RATIO


@dataclass
class Batch:
    table: pa.Table  # n BIGINT, line VARCHAR (non-empty lines that decoded)
    lines: int  # lines in this batch, including blank and bad ones
    blank: int = 0
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    nbytes: int = 0


def _empty_table() -> pa.Table:
    return pa.table({"n": pa.array([], pa.int64()), "line": pa.array([], pa.string())})


def _numbers(first: int, count: int) -> pa.Array:
    """first, first+1, ... (count of them), without a Python loop."""
    return pc.add(_index(count), first)


_counting: list[pa.Array] = [pa.array([], pa.int64())]


def _index(count: int) -> pa.Array:
    """0..count-1: a slice of one cached array (grown as needed; a cache per count would keep
    an array for every file's last batch)."""
    have = _counting[0]
    if len(have) < count:
        # a cumulative sum of ones: no Python loop
        have = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count)), 1)
        _counting[0] = have
    return have.slice(0, count)


def lines_to_batch(block: bytes | memoryview, first: int) -> Batch:
    """Split a block of whole lines (no trailing newline) into a Batch numbered from ``first``.
    ``block`` may be a memoryview of a read buffer: the batch holds a copy of its lines, so the
    buffer may be reused as soon as this returns."""
    parts, blank, longest, utf8 = _split(block)
    count = len(parts)
    nums = _numbers(first, count)
    bad: list[tuple[int, str, str]] = []
    keep = None
    if longest > MAX_LINE:
        too_long = pc.greater(pc.binary_length(parts), MAX_LINE)
        for i in pc.indices_nonzero(too_long).to_pylist():
            raw = parts[i].as_py()[:RAW_KEEP]
            bad.append((first + i, "line too long", raw.decode("utf-8", "replace")))
        keep = pc.invert(too_long)
    if keep is None and utf8:
        lines = parts.view(pa.string())
    else:
        # Rare path: some line is invalid UTF-8 (or too long): walk this block in Python.
        good_n: list[int] = []
        good_l: list[str] = []
        skip = set(pc.indices_nonzero(pc.invert(keep)).to_pylist()) if keep is not None else ()
        for i, b in enumerate(parts.to_pylist()):
            if i in skip:
                continue
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError:
                bad.append((first + i, "invalid UTF-8", b[:RAW_KEEP].decode("utf-8", "replace")))
                continue
            good_n.append(first + i)
            good_l.append(s)
        nums = pa.array(good_n, pa.int64())
        lines = pa.array(good_l, pa.string())
        blank = pc.sum(pc.equal(pc.binary_length(lines), 0)).as_py() or 0
    table = pa.table({"n": nums, "line": lines})
    if blank:
        table = table.filter(pc.not_equal(pc.binary_length(lines), 0))
    return Batch(table=table, lines=count, blank=blank, bad=bad, nbytes=len(block) + count)


def _split(block: bytes | memoryview) -> tuple[pa.Array, int, int, bool]:
    """(the lines of ``block`` as a binary array over a copy of it, one trailing CR dropped;
    how many are empty; the longest's length; whether all of ``block`` is UTF-8)."""
    if (c := native()) is not None:
        n, offsets, data, blank, longest, utf8 = c.split_lines(block)
        parts = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets),
                                                       pa.py_buffer(data)])
        return parts, blank, longest, bool(utf8)
    buf = pa.py_buffer(bytes(block))  # (a copy: the caller reuses a read buffer)
    # The whole block as a one-element binary array, split at newlines.
    offsets = pa.array([0, buf.size], pa.int64()).buffers()[1]
    arr = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, buf])
    parts = pc.split_pattern(arr, b"\n").values.cast(pa.binary())
    if _count(block, b"\r"):
        parts = _rstrip_cr(parts)
    lengths = pc.binary_length(parts)
    try:
        parts.cast(pa.string())
        utf8 = True
    except pa.ArrowInvalid:
        utf8 = False
    return parts, pc.sum(pc.equal(lengths, 0)).as_py() or 0, pc.max(lengths).as_py() or 0, utf8


def _count(block: bytes | memoryview, sub: bytes) -> int:
    """Occurrences of ``sub`` in ``block``."""
    return bytes(block).count(sub) if isinstance(block, memoryview) else block.count(sub)


def _rstrip_cr(parts: pa.Array) -> pa.Array:
    # Drop one trailing '\r' (CRLF files) without touching a '\r' inside a line.
    ends_cr = pc.ends_with(parts, b"\r")
    if not pc.any(ends_cr).as_py():
        return parts
    return pc.if_else(ends_cr, pc.binary_slice(parts, 0, -1), parts)


def _buffer(size: int) -> mmap.mmap:
    """An anonymous map to read blocks into: private (a shared one is shmem, dearer to fault
    in), where the platform has the flag."""
    if not hasattr(mmap, "MAP_PRIVATE"):  # (Windows)
        return mmap.mmap(-1, size)
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _block_size(k: int, remaining: int | None, block: int) -> int:
    """Bytes to read for the k-th block: 4, 8, 16 MiB then ``block``, so that the parsing
    threads start at once; and, where the size of the rest is known, at most half of it, so
    that the last blocks get smaller and the threads finish together."""
    size = min(block, MIN_BLOCK << min(k, 16))
    if remaining is not None:
        size = min(size, max(MIN_BLOCK, remaining // 2))
    return max(1, size)


def iter_batches(src: Source, block: int | None = None, first: int = 1, carry: bytes = b""
                 ) -> Iterator[Batch]:
    """Batches of whole lines from a Source, numbered from ``first``, bounded memory per line.
    ``carry``: bytes that come before the source's (the start of line ``first``)."""
    block = block or BLOCK
    skipping: tuple[int, bytes] | None = None  # (line number, kept head) of a too-long line
    # One read buffer for the whole file: a batch copies its lines out of it. An anonymous map,
    # not a bytearray: a bytearray is zeroed while the GIL is held (stalling the parsing
    # threads); a map's pages are faulted in by the first read into them, outside the GIL.
    buf = _buffer(block + MAX_LINE + 1)
    for k in itertools.count():
        # The unfinished line first, then the block read straight into the buffer: no
        # concatenation or slicing copies.
        buf[:len(carry)] = carry
        got = src.read_into(buf, len(carry), _block_size(k, src.remaining(), block))
        if not got:
            break
        size = len(carry) + got
        start = 0
        if skipping is not None:
            cut = buf.find(b"\n", 0, size)
            if cut < 0:
                carry = b""
                continue
            n, head = skipping
            yield Batch(_empty_table(), 1, bad=[(n, "line too long",
                                                 head.decode("utf-8", "replace"))],
                        nbytes=MAX_LINE)
            first = n + 1
            skipping = None
            start = cut + 1
        cut = buf.rfind(b"\n", start, size)
        if cut < 0:
            carry = bytes(buf[start:size])
            if len(carry) > MAX_LINE:
                skipping = (first, carry[:RAW_KEEP])
                carry = b""
            continue
        carry = bytes(buf[cut + 1:size])
        with memoryview(buf) as view:
            batch = lines_to_batch(view[start:cut], first)
        first += batch.lines
        yield batch
    if skipping is not None:
        n, head = skipping
        yield Batch(_empty_table(), 1, bad=[(n, "line too long", head.decode("utf-8", "replace"))])
    elif carry:
        yield lines_to_batch(carry, first)
