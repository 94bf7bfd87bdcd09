r"""PowerShell analysis throughput: scripts/s for the classifier alone and for what detect runs
per text (deobfuscation + classification), on N processes, beside a baseline measured in the
same run on the same texts (one Python regex pass over each: `\w+` words), and the
deobfuscation time per script (median, p99, max).

    python bench/powershell.py              # 2 processes, best of 3
    python bench/powershell.py --procs 1
    valgrind --tool=callgrind python bench/powershell.py --sample 15   # instructions (below)

``--calibrate`` checks the deobfuscator's work budget against the clock: per text, the work it
counts (powershell/deobfuscate.py STEP_S and the rest, in seconds of the reference machine)
beside its wall time (best of 3, nothing cut), and the ratio's spread over the texts that take
over a millisecond. Over 1 the count is short of the work: a busy machine nears the wall-clock
backstop sooner.

``--sample K`` only analyses every K-th text of the mix, in this process, with no time budget:
the same work on every run, to count its instructions under callgrind (less a run with
``--sample 0``, which loads everything and analyses nothing), as the machine's speed drifts.

Inputs, from ../shared/data/powershell (skipped cleanly when absent): the benign scripts (mean
12 k chars), the Unit42 command lines (mean 5 k) and their decoded payloads (mean 1.8 k), each set
measured alone, plus the mix. Every process handles its share of the set; the time is wall clock.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "powershell"
WORD = re.compile(r"\w+")


def _score(texts: list[str]) -> int:
    """The classifier alone: features and model, the deobfuscator's techniques given (none)."""
    from threatscope.powershell.classify import classify_many

    return sum(r["obfuscated"] for r in classify_many(texts, [()] * len(texts)))


def _analyse(texts: list[str]) -> int:
    """What detect runs per text: deobfuscation, then classification."""
    from threatscope.powershell.analysis import analyse

    return sum(analyse(t)["obfuscated"] for t in texts)


def _deobfuscation_ms(texts: list[str]) -> list[float]:
    from threatscope.powershell.deobfuscate import deobfuscate

    ms = []
    for t in texts:
        t0 = time.perf_counter()
        deobfuscate(t)
        ms.append(1000 * (time.perf_counter() - t0))
    return ms


def _rate(ex: ProcessPoolExecutor, fn, chunks: list[list[str]], runs: int) -> float:
    """Best texts/s of ``runs`` passes of ``fn`` over every chunk."""
    n, best = sum(map(len, chunks)), 0.0
    for _ in range(runs):
        t = time.perf_counter()
        list(ex.map(fn, chunks))
        best = max(best, n / (time.perf_counter() - t))
    return best


def _baseline(texts: list[str]) -> int:
    return sum(len(WORD.findall(t)) for t in texts)


def _warm() -> int:
    from threatscope.powershell.classify import classify

    return int(classify("iex 'x'")["obfuscated"])


def _sample(texts: list[str], k: int) -> int:
    from threatscope.powershell.analysis import analyse

    _warm()
    part = texts[::k] if k > 0 else []
    for t in part:
        analyse(t, budget_ms=1e9)  # the whole work, whatever the clock says
    print(f"analysed {len(part)} texts")
    return 0


def _calibrate(texts: list[str]) -> int:
    import importlib

    d = importlib.import_module("threatscope.powershell.deobfuscate")
    made: list = []

    class Counted(d._Ctx):  # the deobfuscation's own context, kept to read its count
        __slots__ = ()

        def __init__(self, *a) -> None:
            super().__init__(*a)
            made.append(self)

    d._Ctx = Counted
    rows = []
    for t in texts:
        wall = float("inf")
        for _ in range(3):
            made.clear()
            t0 = time.perf_counter()
            d.deobfuscate(t, budget_ms=1e9)
            wall = min(wall, time.perf_counter() - t0)
        rows.append((wall, made[0].spent))
    timed = sorted(w / max(s, 1e-9) for w, s in rows if w > 1e-3)
    q = lambda f: timed[int(f * (len(timed) - 1))]  # noqa: E731
    print(f"{len(texts)} texts: wall {sum(w for w, _ in rows):.2f} s, counted "
          f"{sum(s for _, s in rows):.2f} s; wall/counted over the {len(timed)} texts over 1 ms: "
          f"p10 {q(0.1):.2f}, median {q(0.5):.2f}, p90 {q(0.9):.2f}, max {timed[-1]:.2f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=None)
    ap.add_argument("--calibrate", action="store_true")
    a = ap.parse_args()
    if not (DATA / "manifest.csv").exists():
        print(f"skipped: {DATA} absent")
        return 0
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as fh:
        benign = [(DATA / r["file"]).read_text(encoding="utf-8", errors="replace")
                  for r in csv.DictReader(fh)]
    recs = [json.loads(x) for x in (DATA / "unit42_psencmds.jsonl").open(encoding="utf-8")]
    sets = {"benign scripts": benign, "unit42 command lines": [r["commandline"] for r in recs],
            "unit42 decoded payloads": [r["decoded"] for r in recs]}
    sets["all"] = [t for v in list(sets.values()) for t in v]
    if a.sample is not None:
        return _sample(sets["all"], a.sample)
    if a.calibrate:
        return _calibrate(sets["all"])
    with ProcessPoolExecutor(a.procs) as ex:
        for f in [ex.submit(_warm) for _ in range(a.procs)]:  # imports and model load
            f.result()
        for name, texts in sets.items():
            chunks = [texts[i :: a.procs * 8] for i in range(a.procs * 8)]
            base = _rate(ex, _baseline, chunks, a.runs)
            cls = _rate(ex, _score, chunks, a.runs)
            full = _rate(ex, _analyse, chunks, a.runs)
            ms = sorted(m for part in ex.map(_deobfuscation_ms, chunks) for m in part)
            mean = sum(map(len, texts)) / len(texts)
            print(f"{name:24} {len(texts):5} texts, mean {mean:6.0f} chars | regex baseline "
                  f"{base:8.0f}/s | classify {cls:6.0f}/s ({cls / base:.3f}) | deobfuscate+"
                  f"classify {full:6.0f}/s ({full / base:.3f}) | deobfuscate ms median "
                  f"{statistics.median(ms):.1f}, p99 {ms[int(0.99 * (len(ms) - 1))]:.1f}, "
                  f"max {ms[-1]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
