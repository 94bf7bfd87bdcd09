"""Ingest throughput on simulated combined and W3C logs (not a test; run by hand).

    .venv/bin/python tests/ingest/bench_ingest.py [LINES] [combined|w3c ...]

Prints lines/s for ingest alone and the ratio to ``wc -l`` on the same file, and peak RSS.
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

_UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/66.0 Safari/537.36", "curl/7.58.0", "python-requests/2.18.4", "Mozilla/5.0 zgrab/0.x"]
_PATHS = ["/index.html", "/wp-login.php", "/images/logo.png", "/search?q=foo+bar&x=%2e%2e%2f",
          "/api/v1/items/12345?sort=desc", "/cgi-bin/test.cgi", "/GponForm/diag_Form?images/"]


def write_log(path: Path, kind: str, n: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    t0 = datetime(2018, 4, 1)
    with path.open("w") as out:
        if kind == "w3c":
            out.write("#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n"
                      "#Date: 2018-04-01 00:00:00\n#Fields: date time s-ip cs-method cs-uri-stem "
                      "cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status "
                      "sc-substatus sc-win32-status time-taken\n")
        buf = []
        for i in range(n):
            t = t0 + timedelta(seconds=i * 5)
            ip = f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
            p, ua = rnd.choice(_PATHS), rnd.choice(_UAS)
            if kind == "combined":
                buf.append(f'{ip} - - [{t:%d/%b/%Y:%H:%M:%S} +0200] "GET {p} HTTP/1.1" '
                           f'{rnd.choice((200, 404, 301))} {rnd.randint(100, 50000)} "-" "{ua}"\n')
            else:
                stem, _, q = p.partition("?")
                buf.append(f"{t:%Y-%m-%d %H:%M:%S} 10.0.0.1 GET {stem} {q or '-'} 80 - {ip} "
                           f"{ua.replace(' ', '+')} - {rnd.choice((200, 404))} 0 0 {rnd.randint(1, 500)}\n")
            if len(buf) >= 100_000:
                out.writelines(buf)
                buf.clear()
        out.writelines(buf)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    kinds = sys.argv[2:] or ["combined", "w3c"]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            log = Path(tmp) / f"{kind}.log"
            write_log(log, kind, n)
            t = time.perf_counter()
            lines = int(subprocess.run(["wc", "-l", str(log)], capture_output=True, text=True,
                                       check=True).stdout.split()[0])
            wc = time.perf_counter() - t
            ws = Workspace.open(Path(tmp) / f"ws-{kind}", create=True)
            t = time.perf_counter()
            c0 = time.process_time()
            s = ingest_paths(ws, [str(log)])
            dt = time.perf_counter() - t
            cpu = time.process_time() - c0
            assert s.rows_written == n, s.to_dict()
            print(f"{kind:9s} {lines:>10,d} lines  {log.stat().st_size / 1e6:8.0f} MB  "
                  f"ingest {dt:6.2f}s = {lines / dt:>10,.0f} lines/s  (cpu {cpu:.1f}s)  "
                  f"wc -l {wc:.3f}s = {lines / wc:>12,.0f} lines/s  ratio 1/{dt / wc:.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
