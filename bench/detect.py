"""Measure detection speed over synthetic `http` rows (generated inside DuckDB).

    python bench/detect.py --rows 3000000 --rules ../shared/data/sigma/rules/web \
        --cache /tmp/ts-rules --baseline

Prints the rule load time, then rows/s and CPU seconds of the whole match (sampling, the
per-distinct-value pass and the row pass), how many rows were candidates and how many hits;
``--baseline`` adds the same for the row-wise plan on the same data.
"""

from __future__ import annotations

import argparse
import time

import duckdb

from threatscope.detect.matcher import distinct_columns, match_query
from threatscope.detect.ruleset import load_rules
from threatscope.simulate.bench import make_http_table


def _run(con: duckdb.DuckDBPyConnection, rules, rows: int, distinct) -> dict:
    """Both passes (and the sampling when ``distinct`` is None), timed in wall and CPU seconds."""
    source = "SELECT * FROM http"
    t, c = time.perf_counter(), time.process_time()
    if distinct is None:
        distinct = distinct_columns(con, source, rules)
    sql = match_query(con, rules, source, "source_line", distinct=distinct)
    n, hits = con.execute(f"SELECT count(*), sum(len(hits)) FROM ({sql})").fetchall()[0]
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    return {"distinct_columns": len(distinct), "candidates": n, "hits": int(hits or 0),
            "seconds": round(dt, 2), "cpu_s": round(cpu, 2), "rows_per_s": round(rows / dt)}


def bench(
    rows: int = 2_000_000, rule_dirs=(), threads: int | None = None, cache_dir=None,
    baseline: bool = False,
) -> dict:
    """Load the rules, make ``rows`` rows, run the match query; ``baseline`` also runs the
    row-wise plan (no per-distinct-value evaluation) on the same data, for comparison."""
    t = time.perf_counter()
    rs = load_rules(rule_dirs, cache_dir=cache_dir)
    load_s = time.perf_counter() - t
    rules = rs.for_table("http")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    make_http_table(con, rows)
    out = {"rows": rows, "rules": len(rules), "load_s": round(load_s, 2)}
    out.update(_run(con, rules, rows, None))
    if baseline:
        out["row_wise"] = _run(con, rules, rows, ())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache", default=None, help="compiled-rule cache folder")
    ap.add_argument("--baseline", action="store_true", help="also time the row-wise plan")
    a = ap.parse_args()
    print(bench(a.rows, a.rules, a.threads, a.cache, a.baseline))


if __name__ == "__main__":
    main()
