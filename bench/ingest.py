"""Ingest throughput on simulated combined and W3C logs (not a test; run by hand).

    .venv/bin/python bench/ingest.py [LINES] [combined|w3c ...]

Logs come from ``threatscope.simulate.write_bench_log`` and are kept in ``$TS_BENCH_DIR``
(default ``/tmp/threatscope-bench``) between runs. Prints, per format, wall and CPU (user+sys)
seconds of ingest alone, lines/s, page faults and context switches, the ratio to ``wc -l`` on
the same file (best of 3, measured in the same run), then the process's peak RSS. The machine
may be shared: compare CPU seconds as well as wall time, against a baseline run alongside.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from threatscope.ingest import ingest_paths
from threatscope.simulate import write_bench_log
from threatscope.workspace import Workspace


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000_000
    kinds = sys.argv[2:] or ["combined", "w3c"]
    out = Path(os.environ.get("TS_BENCH_DIR", "/tmp/threatscope-bench"))
    out.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        log = out / f"{kind}-{n}.log"
        if not log.exists():
            write_bench_log(log, n, kind, seed=1)
        wc = []
        for _ in range(3):
            t = time.perf_counter()
            lines = int(subprocess.run(["wc", "-l", str(log)], capture_output=True, text=True,
                                       check=True).stdout.split()[0])
            wc.append(time.perf_counter() - t)
        ws_dir = out / f"ws-{kind}"
        shutil.rmtree(ws_dir, ignore_errors=True)
        ws = Workspace.open(ws_dir, create=True)
        t = time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        s = ingest_paths(ws, [str(log)])
        dt = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        user, sys_ = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        cpu = user + sys_
        shutil.rmtree(ws_dir, ignore_errors=True)
        assert s.rows_written + s.comment_lines == lines, s.to_dict()
        print(f"{kind:9s} {lines:>10,d} lines  {log.stat().st_size / 1e6:6.0f} MB  "
              f"ingest {dt:6.2f}s = {lines / dt:>10,.0f} lines/s  (cpu {user:.1f}+{sys_:.1f}s = "
              f"{lines / cpu:>9,.0f} lines/cpu-s, {r1.ru_minflt - r0.ru_minflt} faults, "
              f"{r1.ru_nvcsw - r0.ru_nvcsw}+{r1.ru_nivcsw - r0.ru_nivcsw} csw)  ratio to wc -l 1/{dt / min(wc):.0f}",
              flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
