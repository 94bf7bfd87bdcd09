"""Measure detection speed over synthetic `http` rows (generated inside DuckDB).

    python -m threatscope.detect.bench --rows 3000000 --rules ../shared/data/sigma/rules/web \
        --cache /tmp/ts-rules --baseline

Prints the rule load time, then rows/s and CPU seconds of the whole match (sampling, the
per-distinct-value pass and the row pass), how many rows were candidates and how many hits;
``--baseline`` adds the same for the row-wise plan on the same data.
"""

from __future__ import annotations

import argparse
import time

import duckdb

from threatscope import schema
from threatscope.detect.matcher import distinct_columns, match_query
from threatscope.detect.ruleset import load_rules

_PATHS = [
    "/", "/index.html", "/index.php", "/about/team", "/static/js/app.min.js", "/css/site.css",
    "/images/logo.png", "/favicon.ico", "/robots.txt", "/api/v1/items", "/search", "/blog/2018/05/",
    "/wp-content/uploads/2018/05/photo.jpg", "/products/view", "/cart/add", "/login",
]
_QUERIES = [
    "", "?id=42", "?q=summer+shoes&page=2", "?lang=en", "?utm_source=newsletter&utm_medium=email",
    "?sort=price_asc&filter=brand%3Dacme", "?v=1.2.3", "?session=ab12cd34ef",
]
_ATTACKS = [
    "/index.php?id=1%27%20UNION%20SELECT%20username,password%20FROM%20users--",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array",
    "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
    "/cgi-bin/../../../../etc/passwd",
    "/GponForm/diag_Form?images/",
    "/scripts/..%c1%1c../winnt/system32/cmd.exe?/c+dir",
]
# weighted by repetition: browsers dominate, bots and tools are a few percent (Googlebot's exact
# UA is also flagged by SigmaHQ's proxy_ua_frameworks rule, as Metasploit sends it)
_UAS = (
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/66.0.3359.139 Safari/537.36"] * 9
    + ["Mozilla/5.0 (iPhone; CPU iPhone OS 11_3 like Mac OS X) AppleWebKit/605.1.15 "
       "(KHTML, like Gecko) Version/11.0 Mobile/15E148 Safari/604.1"] * 5
    + ["Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:59.0) Gecko/20100101 Firefox/59.0"] * 4
    + ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
       "curl/7.58.0"]
)


def _list(xs: list[str]) -> str:
    return "[" + ", ".join("'" + x.replace("'", "''") + "'" for x in xs) + "]"


def make_rows(con: duckdb.DuckDBPyConnection, n: int, attack_every: int = 200) -> None:
    """Create table ``http`` (schema.HTTP) with ``n`` access-log-like rows, 1/attack_every attacks."""
    con.execute(f"""
        CREATE OR REPLACE TABLE http AS
        WITH g AS (
            SELECT i,
                   CASE WHEN i % {attack_every} = 0
                        THEN {_list(_ATTACKS)}[1 + (i // {attack_every}) % {len(_ATTACKS)}]
                        ELSE {_list(_PATHS)}[1 + (i * 7) % {len(_PATHS)}]
                             || {_list(_QUERIES)}[1 + (i * 13) % {len(_QUERIES)}] END AS uri,
                   {_list(_UAS)}[1 + (i * 3) % {len(_UAS)}] AS ua,
                   '10.' || (i % 250) || '.' || (i // 250 % 250) || '.' || (i % 7) AS ip
            FROM range({n}) t(i)
        )
        SELECT 'org' || (i % 5) AS org_id, TIMESTAMP '2018-05-01' + to_seconds(i % 2592000) AS ts,
               NULL::DATE AS event_date, 'http' AS event_kind, 'bench' AS file_id,
               'bench.log' AS source_file, i + 1 AS source_line,
               ip || ' - - [01/May/2018:00:00:00 +0000] "GET ' || uri || ' HTTP/1.1" 200 '
                  || (i % 5000) || ' "-" "' || ua || '"' AS raw,
               ip AS source_ip, NULL::UHUGEINT AS source_ip_num, NULL::INTEGER AS source_port,
               NULL AS destination_ip, NULL::INTEGER AS destination_port, 'www.example.org' AS url_domain,
               'GET' AS http_request_method, uri AS url_original, split_part(uri, '?', 1) AS url_path,
               nullif(split_part(uri, '?', 2), '') AS url_query,
               coalesce(try(url_decode(uri)), uri) AS url_decoded, 'HTTP/1.1' AS http_version,
               200 AS http_response_status_code, (i % 5000)::BIGINT AS http_response_body_bytes,
               NULL AS http_request_referrer, ua AS user_agent_original, NULL AS user_name,
               NULL AS http_request_headers, NULL AS http_request_body_content
        FROM g
    """)
    casts = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in schema.HTTP)
    con.execute(f"CREATE OR REPLACE TABLE http AS SELECT {casts} FROM http")  # schema types


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
    make_rows(con, rows)
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
