import bz2
import gzip
import zlib

import pytest
import zstandard

from tests.ingest.conftest import manifest, rows, run, write
from tests.ingest.test_bad_input import lines
from threatscope.ingest import reader


@pytest.mark.parametrize("name,compress", [
    ("a.log.gz", gzip.compress), ("a.log.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
    ("a.log.bz2", bz2.compress), ("no_extension", gzip.compress),
])
def test_compressed_inputs(ws, tmp_path, name, compress):
    s = run(ws, write(tmp_path / name, compress(lines(300).encode())))
    assert (s.rows_written, s.errors) == (300, [])
    assert rows(ws, cols="source_line")[-1] == {"source_line": 300}


def test_same_content_compressed_or_not_is_one_file(ws, tmp_path):
    plain = write(tmp_path / "a.log", lines(10))
    packed = write(tmp_path / "b.log.gz", gzip.compress(lines(10).encode()))
    s = run(ws, plain, packed)
    assert (s.files, s.skipped_files, s.rows_written) == (1, 1, 10)


LINE = b'203.0.113.9 - - [01/Jan/2020:00:00:00 +0000] "GET /index.html HTTP/1.1" 200 512 "-" "-"\n'


def _bomb(compressor, size: int, line: bytes = LINE) -> bytes:
    """``size`` bytes of one repeated log line, compressed in 8 MiB steps."""
    block = line * ((8 << 20) // len(line))
    out = [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join([*out, compressor.flush()])


def test_a_decompression_bomb_is_cut_off_and_reported(ws, tmp_path):
    # 1 GiB of lines in ~100 KiB of zstd (ratio ~10,000): read until the ratio limit, no further
    bomb = write(tmp_path / "bomb.log.zst",
                 _bomb(zstandard.ZstdCompressor(level=3).compressobj(), 1 << 30))
    s = run(ws, bomb)
    read = s.rows_written * len(LINE)
    assert reader.RATIO_FLOOR <= read < reader.RATIO_FLOOR + 2 * reader.BLOCK
    assert len(s.errors) == 1 and "decompression bomb" in s.errors[0]
    (m,) = manifest(ws)
    assert "decompression bomb" in m["error"] and s.rows_quarantined <= 1  # the cut line
    assert m["lines_read"] == s.rows_written + s.rows_quarantined
    again = run(ws, bomb)  # the same cut, so the same file: nothing twice
    assert (again.skipped_files, again.rows_written) == (1, 0)


@pytest.mark.parametrize("make", [lambda: zlib.compressobj(9, zlib.DEFLATED, 31),
                                  lambda: bz2.BZ2Compressor(9)], ids=["gzip", "bzip2"])
def test_gzip_and_bzip2_bombs_are_cut_off_without_inflating_whole_chunks(ws, tmp_path, make,
                                                                        monkeypatch):
    monkeypatch.setattr(reader, "RATIO_FLOOR", 1 << 20)  # a small bomb suffices
    # blank lines: bzip2 takes seconds a megabyte over repeated log lines, and the reader's
    # blocks are all this test reads
    bomb = write(tmp_path / "bomb.log", _bomb(make(), 48 << 20, b"\n"))
    with reader.open_source(str(bomb)) as src:
        sizes = []
        while data := src.read_block(reader.COMPRESSED_STEP):
            sizes.append(len(data))
        assert "decompression bomb" in src.error
    assert max(sizes) <= reader.COMPRESSED_STEP
    assert (1 << 20) < sum(sizes) < (16 << 20)  # of 48 MiB


def test_a_high_but_plausible_ratio_is_read_whole(ws, tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "RATIO_FLOOR", 1 << 20)
    monkeypatch.setenv("THREATSCOPE_MAX_COMPRESSION_RATIO", "100000")
    bomb = write(tmp_path / "big.log.gz", _bomb(zlib.compressobj(9, zlib.DEFLATED, 31), 16 << 20))
    s = run(ws, bomb)
    assert (s.errors, s.rows_written) == ([], (16 << 20) // (8 << 20) * ((8 << 20) // len(LINE)))
