import bz2
import gzip

import pytest
import zstandard

from tests.ingest.conftest import rows, run, write
from tests.ingest.test_bad_input import lines


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
