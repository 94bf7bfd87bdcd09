"""EVTX benchmark: the EVTX-ATTACK-SAMPLES replicated to 1M+ events, with the SigmaHQ Windows
rules: events/s for ingest (parse) alone and for ingest+detect, as a ratio to the `evtx`
package reading the same files (the floor of any EVTX tool in Python), measured in the same run.

    python bench/windows.py                         # 1M events in 8 files, best of 2 runs
    python bench/windows.py --events 200000 --runs 1

The samples are small files whose chunks are mostly empty; the replicas are made the way a big
Security.evtx is laid out: the samples' chunks (64 KiB each, self-contained, checksummed) one
after another behind one file header, whose counts and checksum are rewritten, with each file's
number in the header's unused bytes so that no two files are the same (ingest skips a file it
has already read). Skipped cleanly when ../shared/data is absent. Peak memory (max RSS) of each
stage is printed: it must follow the batch size, not the input size.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
SAMPLES = ROOT.parent / "shared" / "data" / "evtx" / "EVTX-ATTACK-SAMPLES"
SIGMA = ROOT.parent / "shared" / "data" / "sigma" / "rules" / "windows"
BIN = Path(sys.executable).parent / "threatscope"
HEADER, CHUNK = 4096, 65536
READ_ALL = """
import sys, evtx
n = 0
for path in sys.argv[1:]:
    for _ in evtx.PyEvtxParser(path).records_json():
        n += 1
print(n)
"""


def sample_chunks() -> tuple[list[bytes], int]:
    """Every chunk of every sample file, and the events they hold."""
    import evtx

    chunks, events = [], 0
    for f in sorted(SAMPLES.rglob("*.evtx")):
        data = f.read_bytes()
        if data[:8] != b"ElfFile\x00":
            continue
        got = [data[o:o + CHUNK] for o in range(HEADER, len(data) - CHUNK + 1, CHUNK)
               if data[o:o + 8] == b"ElfChnk\x00"]
        if got:
            chunks += got
            events += sum(1 for _ in evtx.PyEvtxParser(str(f)).records_json())
    return chunks, events


def write_evtx(path: Path, chunks: list[bytes], number: int) -> None:
    """One EVTX file of ``chunks`` behind a valid header (see the module doc)."""
    with open(path, "wb") as f:
        head = bytearray(HEADER)
        head[:8] = b"ElfFile\x00"
        struct.pack_into("<QQQIHHHH", head, 8, 0, len(chunks) - 1, 1, 128, 1, 3, HEADER,
                         len(chunks))
        struct.pack_into("<Q", head, 44, number)  # unused bytes: makes each file unique
        struct.pack_into("<I", head, 124, zlib.crc32(bytes(head[:120])))
        f.write(head)
        for c in chunks:
            f.write(c)


def make_input(events: int, files: int) -> tuple[Path, int]:
    folder = OUT / f"evtx-{events}-{files}"
    marker = folder / "events.txt"
    if marker.exists():
        return folder, int(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    chunks, per_copy = sample_chunks()
    copies = math.ceil(events / per_copy)
    per_file = math.ceil(copies / files)
    total = 0
    for i in range(files):
        n = min(per_file, copies - i * per_file)
        if n <= 0:
            break
        write_evtx(folder / f"replica-{i:02d}.evtx", chunks * n, i)
        total += n * per_copy
    marker.write_text(str(total))
    return folder, total


def run(cmd: list[str]) -> tuple[float, int, str]:
    """Run cmd; (wall seconds, peak RSS MiB, first line of its output)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline().decode().strip() if proc.stdout else ""
    proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return wall, usage.ru_maxrss // 1024, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    if not SAMPLES.is_dir() or not SIGMA.is_dir():
        print(f"skipped: {SAMPLES} or {SIGMA} not found")
        return
    folder, _ = make_input(args.events, args.files)
    paths = [str(p) for p in sorted(folder.glob("*.evtx"))]
    size = sum(os.path.getsize(p) for p in paths)
    # the compiled SigmaHQ rules are cached per user: compile them once, untimed
    run([str(BIN), "rules", "check", "--rules", str(SIGMA), "--json"])
    ws = OUT / "evtx-ws"
    events = 0
    rows = []
    for r in range(args.runs):
        base, _, counted = run([sys.executable, "-c", READ_ALL, *paths])
        events = int(counted)  # what the evtx package reads: the events of the run
        if r == 0:
            print(f"input: {events:,} events in {len(paths)} EVTX files, {size / 1e9:.2f} GB")
        shutil.rmtree(ws, ignore_errors=True)
        ingest, ingest_rss, _ = run([str(BIN), "ingest", "-w", str(ws), "--org", "bench", *paths])
        detect, detect_rss, _ = run([str(BIN), "detect", "-w", str(ws), "--rules", str(SIGMA)])
        rows.append((base, ingest, detect, ingest_rss, detect_rss))
        print(f"run {r + 1}: evtx package {events / base:,.0f} events/s; ingest "
              f"{events / ingest:,.0f} ({base / ingest:.2f}x the package); ingest+detect "
              f"{events / (ingest + detect):,.0f} ({base / (ingest + detect):.2f}x); detect "
              f"alone {events / detect:,.0f} events/s, {detect / ingest:.2f} of the ingest time; "
              f"peak RSS ingest {ingest_rss} MiB, detect {detect_rss} MiB")
    best = min(rows, key=lambda x: x[1] + x[2])
    base, ingest, detect, ingest_rss, detect_rss = best
    print()
    print("| | events/s | vs the evtx package (same run) |")
    print("|---|---|---|")
    print(f"| evtx package, records as JSON | {events / base:,.0f} | 1.00 |")
    print(f"| ingest (parse into the lake) | {events / ingest:,.0f} | {base / ingest:.2f} |")
    print(f"| ingest + detect ({_rule_count()} Windows rules) | {events / (ingest + detect):,.0f} "
          f"| {base / (ingest + detect):.2f} |")
    print(f"\ndetect adds {detect / ingest:.2f} of the ingest time; peak RSS ingest "
          f"{ingest_rss} MiB, detect {detect_rss} MiB")


def _rule_count() -> str:
    out = subprocess.run([str(BIN), "rules", "check", "--rules", str(SIGMA), "--json"],
                         capture_output=True, text=True, check=True).stdout
    import json

    return f"{json.loads(out)['compiled']:,}"


if __name__ == "__main__":
    main()
