"""Measure detection speed over synthetic `http` rows (generated inside DuckDB).

    python bench/detect.py --rows 3000000 --rules ../shared/data/sigma/rules/web \
        --cache /tmp/ts-rules --baseline

Prints the rule load time, then rows/s and CPU seconds of the whole match over the SQL table
(sampling, the per-distinct-value pass and the row pass), how many rows were candidates and how
many hits; ``arrow``: the same rows as the detect stage sees them (an Arrow table with text
dictionary-encoded, as read from the lake) through ``matcher.candidates`` and the row phase on
the candidates; ``--baseline`` adds the row-wise plan on the same data, for comparison.
"""

from __future__ import annotations

import argparse
import time

import duckdb
import pyarrow as pa

from threatscope.detect.matcher import (
    arrow_source,
    candidates,
    distinct_columns,
    match_query,
    value_columns,
)
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


def _run_arrow(con: duckdb.DuckDBPyConnection, rules, rows: int) -> dict:
    """The detect stage's path: dictionary prefilter in Arrow, row phase on the candidates."""
    t = con.sql("SELECT * REPLACE (CAST(source_ip_num AS DECIMAL(38,0)) AS source_ip_num) "
                "FROM http").to_arrow_table()
    t = pa.table({c: t.column(c).combine_chunks().dictionary_encode()
                  if t.schema.field(c).type == pa.string() and c != "raw" else t.column(c)
                  for c in t.column_names})
    t0, c0 = time.perf_counter(), time.process_time()
    pre = candidates(con, rules, t, value_columns(t, rules))
    source = arrow_source(con, "__cand", t.filter(pre.mask))
    n, hits = con.execute(
        f"SELECT count(*), sum(len(hits)) FROM ({pre.query(source, 'source_line')})").fetchall()[0]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"candidates": n, "hits": int(hits or 0), "seconds": round(dt, 2),
            "cpu_s": round(cpu, 2), "rows_per_s": round(rows / dt)}


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
    out["arrow"] = _run_arrow(con, rules, rows)
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
