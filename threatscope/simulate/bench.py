"""Large single log files for benchmarks, written fast.

    write_bench_log("big.log", 5_000_000, "combined", seed=7)     # or "w3c"; ".gz" compresses

A pool of a few thousand rendered requests (mostly benign, ~3% campaign attacks and noise) is
drawn with bulk random choices; only the timestamp and client address change per line, so
millions of lines take seconds rather than minutes.
"""

from __future__ import annotations

import gzip
import random
from datetime import date, timedelta
from pathlib import Path

from threatscope.errors import UserError
from threatscope.simulate import attacks, benign
from threatscope.simulate.world import _MONTHS, W3C_FIELDS_A, _esc_combined, _w3c

_FORMATS = ("combined", "w3c")


def _pool(rng: random.Random, n: int) -> list[attacks.Req]:
    out = []
    sectors = sorted(benign.SECTOR_PAGES)
    builders = [attacks.CAMPAIGN_BUILDERS[k] for k in sorted(attacks.CAMPAIGN_BUILDERS)]
    for i in range(n):
        r = rng.random()
        if r < 0.02:
            out.append(rng.choice(builders)(rng, "www.example.com"))
        elif r < 0.03:
            out.append(attacks.noise(rng, "www.example.com"))
        else:
            ua = benign.BROWSERS[i % len(benign.BROWSERS)]
            out.append(benign.benign(rng, rng.choice(sectors), ua))
    return out


def write_bench_log(path: str | Path, n_lines: int, fmt: str = "combined", seed: int = 7,
                    lines_per_second: int = 40) -> Path:
    """Write ``n_lines`` request lines (W3C also gets its few header lines) to ``path``."""
    if fmt not in _FORMATS:
        raise UserError(f"write_bench_log: format must be one of {', '.join(_FORMATS)}")
    path = Path(path)
    rng = random.Random(seed)
    reqs = _pool(rng, 4096)
    ips = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
           f"{rng.randrange(1, 255)}" for _ in range(5000)]
    if fmt == "combined":
        tails = [
            f'"{q.method} {_esc_combined(q.uri)} HTTP/1.1" {q.status} '
            f'{rng.randrange(200, 40000) if q.status == 200 else "-"} '
            f'"{_esc_combined(q.referer)}" "{_esc_combined(q.ua)}"\n'
            for q in reqs
        ]
    else:
        tails = []
        for q in reqs:
            stem, _, query = q.uri.partition("?")
            tails.append((q.method, stem, query or "-", _w3c(q.ua), _w3c(q.referer), q.status))
    start = date(2018, 4, 1)
    opener = gzip.open if path.suffix == ".gz" else open
    chunk = 65536
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        written = 0
        second = 0
        if fmt == "w3c":
            f.write("#Software: Microsoft Internet Information Services 8.5\n#Version: 1.0\n"
                    f"#Date: {start.isoformat()} 00:00:00\n#Fields: {W3C_FIELDS_A}\n")
        while written < n_lines:
            k = min(chunk, n_lines - written)
            ti = rng.choices(range(len(tails)), k=k)
            ii = rng.choices(range(len(ips)), k=k)
            lines = []
            for j in range(k):
                if (written + j) % lines_per_second == 0:
                    second += 1
                    d, rem = divmod(second, 86400)
                    day = start + timedelta(days=d)
                    hms = f"{rem // 3600:02d}:{rem // 60 % 60:02d}:{rem % 60:02d}"
                    if fmt == "combined":
                        stamp = f"[{day.day:02d}/{_MONTHS[day.month - 1]}/{day.year}:{hms} +0000]"
                    else:
                        stamp = f"{day.isoformat()} {hms}"
                if fmt == "combined":
                    lines.append(f"{ips[ii[j]]} - - {stamp} {tails[ti[j]]}")
                else:
                    m, stem, query, ua, ref, status = tails[ti[j]]
                    lines.append(f"{stamp} 10.0.1.10 {m} {stem} {query} 80 - {ips[ii[j]]} {ua} "
                                 f"{ref} {status} 0 0 {15 + j % 300}\n")
            f.write("".join(lines))
            written += k
            if fmt == "w3c" and written < n_lines and written // chunk == 8:
                # a service restart repeats the header block mid-file, as IIS does
                f.write(f"#Software: Microsoft Internet Information Services 8.5\n#Version: 1.0\n"
                        f"#Date: {day.isoformat()} {hms}\n#Fields: {W3C_FIELDS_A}\n")
    return path


__all__ = ["write_bench_log"]
