"""Measure detection speed over synthetic `http` rows (generated inside DuckDB).

    python bench/detect.py --rows 3000000 --rules ../shared/data/sigma/rules/web \
        --cache /tmp/ts-rules --baseline

Prints the rule load time, then rows/s and CPU seconds of the rule engine over the rows as the
detect stage sees them (an Arrow table with text dictionary-encoded, as read from the lake), and
how many hits; ``--baseline`` adds the reference (every rule's SQL on every row, in DuckDB) on
the same rows, for comparison.
"""

from __future__ import annotations

import argparse
import time

import duckdb
import pyarrow as pa

from threatscope.detect.engine import Engine, reference_sql
from threatscope.detect.ruleset import load_rules
from threatscope.simulate.bench import make_http_table


def _timed(fn) -> tuple[object, float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def bench(
    rows: int = 2_000_000, rule_dirs=(), threads: int | None = None, cache_dir=None,
    baseline: bool = False,
) -> dict:
    """Load the rules, make ``rows`` rows, run the engine; ``baseline`` also runs the
    reference on the same rows."""
    rs, load_s, _ = _timed(lambda: load_rules(rule_dirs, cache_dir=cache_dir))
    rules = rs.for_table("http")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    make_http_table(con, rows)
    t = con.sql("SELECT * REPLACE (CAST(source_ip_num AS DECIMAL(38,0)) AS source_ip_num) "
                "FROM http").to_arrow_table()
    t = pa.table({c: t.column(c).combine_chunks().dictionary_encode()
                  if t.schema.field(c).type == pa.string() and c != "raw" else t.column(c)
                  for c in t.column_names})
    engine = Engine(rules, "http")
    (hit_rows, _), dt, cpu = _timed(lambda: engine.match(con, t))
    out = {"rows": rows, "rules": len(rules), "load_s": round(load_s, 2),
           "engine": {"hits": len(hit_rows), "seconds": round(dt, 2), "cpu_s": round(cpu, 2),
                      "rows_per_s": round(rows / dt)}}
    if baseline:
        sql = reference_sql(rules, "SELECT * FROM http", "source_line")
        (n,), dt, cpu = _timed(lambda: con.execute(
            f"SELECT sum(len(hits)) FROM ({sql})").fetchall()[0])
        out["reference"] = {"hits": int(n or 0), "seconds": round(dt, 2), "cpu_s": round(cpu, 2),
                            "rows_per_s": round(rows / dt),
                            "engine_speedup": round(dt / out["engine"]["seconds"], 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache", default=None, help="compiled-rule cache folder")
    ap.add_argument("--baseline", action="store_true", help="also time the reference")
    a = ap.parse_args()
    print(bench(a.rows, a.rules, a.threads, a.cache, a.baseline))


if __name__ == "__main__":
    main()
