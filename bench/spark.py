"""DuckDB vs Spark local[2] on the same input, stage by stage, printed side by side.

    python bench/spark.py                         # 10M combined-log lines (generated once)
    python bench/spark.py --lines 1000000 --stages ingest,detect

Both engines run the same stages on the same generated log (``write_bench_log``, as
bench/run.py), each into its own workspace: ``ingest_paths``, ``run_detect``, ``run_enrich``
and ``analyze`` (the report's figures) with ``engine="duckdb"`` and ``engine="spark"``, in this
process. Spark runs in local mode on 2 cores (``local[2]``), DuckDB on the machine's (2 here); the Spark
session's start is timed on its own (a cluster pays it once per job, not per stage). Baseline:
``wc -l`` on the log, best of 3, in the same run (the machines are shared and noisy: compare
the ratios). After the timings the two workspaces' detections and report figures are compared:
the engines must agree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from threatscope import spark as spark_engine  # noqa: E402
from threatscope.analyze import analyze  # noqa: E402
from threatscope.detect import run_detect  # noqa: E402
from threatscope.enrich import run_enrich  # noqa: E402
from threatscope.ingest import ingest_paths  # noqa: E402
from threatscope.simulate import write_bench_log  # noqa: E402
from threatscope.workspace import Workspace  # noqa: E402

OUT = ROOT / "bench" / "out"
STAGES = ("ingest", "detect", "enrich", "analyze")


def _wc(log: Path) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(["wc", "-l", str(log)], check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def run_engine(engine: str, log: Path, stages: list[str], spark=None) -> tuple[dict, Workspace]:
    """Seconds per stage of one engine over ``log``, in a fresh workspace."""
    ws_root = OUT / f"ws-spark-bench-{engine}"
    shutil.rmtree(ws_root, ignore_errors=True)
    ws = Workspace.open(ws_root, create=True)
    kw = {"engine": engine, "spark": spark} if engine == "spark" else {}
    steps = {
        "ingest": lambda: ingest_paths(ws, [str(log)], org="bench", **kw),
        "detect": lambda: run_detect(ws, **kw),
        "enrich": lambda: run_enrich(ws, **kw),
        "analyze": lambda: analyze(ws, **kw),
    }
    times: dict[str, float] = {}
    for stage in stages:
        t0 = time.perf_counter()
        steps[stage]()
        times[stage] = time.perf_counter() - t0
        print(f"  {engine:<6} {stage:<8} {times[stage]:8.1f} s", flush=True)
    return times, ws


def _same(a: Workspace, b: Workspace, stages: list[str]) -> list[str]:
    """What differs between the two workspaces' results (empty: the engines agree)."""
    problems = []
    if "detect" in stages:
        import duckdb
        q = ("SELECT org_id, ts, src_ip, rule_id, source_line, evidence FROM read_parquet(?) "
             "ORDER BY ALL")
        rows = [duckdb.execute(q, [str(w.detections_path)]).fetchall() for w in (a, b)]
        if rows[0] != rows[1]:
            problems.append(f"detections differ: {len(rows[0]):,} vs {len(rows[1]):,} rows")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--memory", default="6g", help="Spark driver memory (local mode)")
    args = ap.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"bench-combined-{args.lines}.log"
    if not log.exists():
        write_bench_log(log, args.lines, "combined", args.seed)
    lines = sum(1 for _ in open(log, "rb"))
    wc = _wc(log)
    print(f"{lines:,} lines ({log.stat().st_size / 2**20:,.0f} MiB); wc -l {wc:.2f} s")
    t0 = time.perf_counter()
    # local mode runs tasks in the driver's JVM: its heap is the executors' memory (Spark's
    # default 1 GB is too little for the detections of 10M lines)
    session = spark_engine.session("local[2]", conf={"spark.driver.memory": args.memory})
    start = time.perf_counter() - t0
    print(f"  spark session start {start:.1f} s")
    duck, ws_duck = run_engine("duckdb", log, stages)
    spark, ws_spark = run_engine("spark", log, stages, session)
    print(f"\n{'stage':<10}{'DuckDB':>12}{'Spark local[2]':>18}{'Spark/DuckDB':>14}"
          f"{'DuckDB lines/s':>16}{'Spark lines/s':>15}")
    for stage in stages:
        d, s = duck[stage], spark[stage]
        print(f"{stage:<10}{d:>11.1f}s{s:>17.1f}s{s / d:>13.1f}x{lines / d:>16,.0f}"
              f"{lines / s:>15,.0f}")
    d, s = sum(duck.values()), sum(spark.values())
    print(f"{'total':<10}{d:>11.1f}s{s:>17.1f}s{s / d:>13.1f}x{lines / d:>16,.0f}"
          f"{lines / s:>15,.0f}")
    print(f"baseline: wc -l {lines / wc:,.0f} lines/s; DuckDB total = {d / wc:.0f}x wc -l, "
          f"Spark total = {s / wc:.0f}x wc -l (plus {start:.0f} s session start)")
    problems = _same(ws_duck, ws_spark, stages)
    print(json.dumps({"engines_agree": not problems, "problems": problems}))
    session.stop()


if __name__ == "__main__":
    main()
