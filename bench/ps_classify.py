"""Obfuscation classifier throughput: scripts/s including feature extraction, on N processes.

    python bench/ps_classify.py              # 2 processes, best of 3
    python bench/ps_classify.py --procs 1

Inputs, from ../shared/data/powershell (skipped cleanly when absent): the benign scripts (mean
12 k chars), the Unit42 command lines (mean 5 k) and their decoded payloads (mean 1.8 k), each set
measured alone, plus the mix. Every process scores its share of the set; the time is wall clock.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "powershell"


def _score(texts: list[str]) -> int:
    from threatscope.powershell.classify import classify_many

    return sum(r["obfuscated"] for r in classify_many(texts))


def _warm() -> int:
    from threatscope.powershell.classify import classify

    return int(classify("iex 'x'")["obfuscated"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
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
    with ProcessPoolExecutor(a.procs) as ex:
        for f in [ex.submit(_warm) for _ in range(a.procs)]:  # imports and model load
            f.result()
        for name, texts in sets.items():
            chunks = [texts[i :: a.procs * 8] for i in range(a.procs * 8)]
            best = 0.0
            for _ in range(a.runs):
                t = time.perf_counter()
                list(ex.map(_score, chunks))
                best = max(best, len(texts) / (time.perf_counter() - t))
            mean = sum(map(len, texts)) / len(texts)
            print(f"{name:26} {len(texts):6} texts, mean {mean:7.0f} chars: "
                  f"{best:7.0f} /s on {a.procs} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
