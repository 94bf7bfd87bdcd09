"""Memory is bounded by the batch (reader.BLOCK), not by the input: a generated stream, many
times larger than the process's peak memory, ingested through stdin (`ingest -`).

Each run streams a size and a quarter of it: the peak must not grow with the input. `make test`
streams 1 GiB with 8 MiB blocks; `make stress` 10 GiB with the default block
(THREATSCOPE_STRESS_GIB, THREATSCOPE_STRESS_BLOCK_MIB) and prints the figures docs/reliability.md
quotes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from threatscope.simulate import write_bench_log

ROOT = Path(__file__).resolve().parents[2]
GIB = float(os.environ.get("THREATSCOPE_STRESS_GIB", "1"))
BLOCK_MIB = int(os.environ.get("THREATSCOPE_STRESS_BLOCK_MIB", "8"))

# the ingesting process: its resident peak (VmHWM) after imports, and at the end
_CHILD = """
import json, sys
from threatscope.ingest import ingest_paths, reader
from threatscope.workspace import Workspace

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10

reader.BLOCK = int(sys.argv[2]) << 20
ws = Workspace.open(sys.argv[1], create=True)
before = hwm()
s = ingest_paths(ws, ["-"], org="stress")
print(json.dumps({"baseline": before, "peak": hwm(), "lines": s.lines_read,
                  "rows": s.rows_written, "errors": s.errors}))
"""

# the stream: a sample of generated lines, repeated to the size asked for
_SOURCE = """
import sys
sample = open(sys.argv[1], "rb").read()
left = int(sys.argv[2])
out = sys.stdout.buffer
while left > 0:
    piece = sample[:left] if left < len(sample) else sample
    out.write(piece)
    left -= len(piece)
"""


def _stream(tmp_path: Path, sample: Path, size: int) -> dict:
    """Ingest ``size`` bytes of ``sample`` repeated, through stdin; the child's figures."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    source = subprocess.Popen([sys.executable, "-c", _SOURCE, str(sample), str(size)],
                              stdout=subprocess.PIPE, env=env)
    ingest = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / f"ws{size}"),
                             str(BLOCK_MIB)], stdin=source.stdout, capture_output=True, text=True,
                            env=env, timeout=3600)
    source.stdout.close()
    assert source.wait() == 0 and ingest.returncode == 0, ingest.stderr[-3000:]
    got = json.loads(ingest.stdout.strip().splitlines()[-1])
    lines = size // sample.stat().st_size * 100_000
    assert (got["lines"], got["rows"], got["errors"]) == (lines, lines, [])
    print(f"\nstreamed {size / (1 << 30):.2f} GiB ({lines:,} lines) with {BLOCK_MIB} MiB blocks: "
          f"peak resident {got['peak'] >> 20} MiB ({got['baseline'] >> 20} MiB after imports)")
    return got


def test_memory_is_bounded_by_the_block_not_the_input(tmp_path):
    sample = write_bench_log(tmp_path / "sample.log", 100_000)  # ~20 MB of varied lines
    whole = sample.stat().st_size
    size = max(int(GIB * (1 << 30)) // whole, 4) * whole  # whole lines only
    small = _stream(tmp_path, sample, size // 4 // whole * whole)
    large = _stream(tmp_path, sample, size)
    # four times the input, the same peak (give or take a block on each worker and allocator
    # slack): what grows with the input would show here
    assert large["peak"] - small["peak"] < 4 * (BLOCK_MIB << 20) + (32 << 20)
    # and what ingest added to the process is a few dozen blocks at most (a block's lines, its
    # parsed columns and Parquet pages, on each worker), well under the input
    grown = large["peak"] - large["baseline"]
    assert grown < 48 * (BLOCK_MIB << 20) + (64 << 20) < size
