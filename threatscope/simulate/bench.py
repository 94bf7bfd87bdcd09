"""Large single log files for benchmarks, written fast.

    write_bench_log("big.log", 5_000_000, "combined", seed=7)     # or "w3c"; ".gz" compresses
    make_http_table(con, 3_000_000)    # or an `http` table made inside DuckDB (detect benchmark)

A pool of a few thousand rendered requests (mostly benign, ~3% campaign attacks and noise) is
drawn with bulk random choices; only the timestamp and client address change per line, so
millions of lines take seconds rather than minutes.
"""

from __future__ import annotations

import gzip
import random
from datetime import date, timedelta
from pathlib import Path

import duckdb

from threatscope import schema
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


# -- an `http` table generated inside DuckDB ------------------------------------------------
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


def make_http_table(con: duckdb.DuckDBPyConnection, n: int, attack_every: int = 200) -> None:
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
