"""A small real workspace with web requests, their responses and detections of some of them:
what the exposure figure and its report sections are tested on (tests/analyze, tests/report).

Organisation o1, period 2018Q2. Server 10.0.0.5 logged 40 ordinary responses of 1000..1039
bytes (median 1019.5, p99 about 1038.6: a size is unusual above 10195 bytes), then these
exploit attempts (file ``f1``):

====  ============  ======  =========  =====================================================
line  threat        status  bytes      expected
====  ============  ======  =========  =====================================================
41    gpon          200     1010       success, usual size
42    gpon          404     500        neither (a 404 is no success)
43    gpon (2 rules) 200    5000000    success and unusual (counted once); hostile URI
44    gpon          500     20000      unusual, no success
45    gpon          500     9000       neither (below 10x the median)
46    sqli (no CVE) 200     1000       not an exploit attempt: left out
47    CVE-2017-9841 200     1200       success (a CVE without campaign: its own row)
====  ============  ======  =========  =====================================================

Server ``<b>evil</b>.example`` (Host header only, hostile text; file ``f2``) has 5 ordinary
responses: too few to call a size unusual, so its 200 of 9 MB (line 6) is a success only. One gpon attempt
answered 200 in the baseline (2018-02-10, file ``f0``).
"""

from __future__ import annotations

from pathlib import Path

from threatscope import schema
from threatscope.workspace import Org, Workspace

HOSTILE_URI = "/GponForm/diag_Form?images/<script>alert('x')</script>"
HOSTILE_HOST = "<b>evil</b>.example"


def _write_http(ws: Workspace, org: str, file_id: str, rows: list[dict]) -> None:
    """Lake Parquet of http events (``rows``: column -> value; others NULL) as ingest lays it
    out: ``lake/http/org_id=<org>/<file_id>_0.parquet``."""
    out = ws.lake / "http" / f"org_id={org}"
    out.mkdir(parents=True, exist_ok=True)
    cols = [(c, t) for c, t in schema.HTTP if c not in ("org_id", "file_id")]
    with ws.connect() as con:
        selects = []
        params: list = []
        for r in rows:
            r = {"event_date": str(r["ts"])[:10], "event_kind": "http",
                 "source_file": f"{org}/{file_id}.log", **r}
            items = []
            for c, t in cols:
                if c == "source_ip_num":
                    items.append(f'CAST(NULL AS DECIMAL(38,0)) AS "{c}"')
                else:
                    items.append(f'CAST(? AS {t}) AS "{c}"')
                    params.append(r.get(c))
            selects.append("SELECT " + ", ".join(items))
        con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO "
                    f"'{out / f'{file_id}_0.parquet'}' (FORMAT parquet)", params)


def _detect(con, org: str, ts: str, file_id: str, line: int, rule: str, campaign: str | None,
            cves: list[str], family: str | None, product: str | None) -> None:
    con.execute(
        "INSERT INTO detection SELECT ?, CAST(? AS TIMESTAMP), '198.51.100.9', 'http', ?, "
        "?, ?, ?, 'rule title', 'high', CAST(? AS VARCHAR[]), ['T1190'], ?, ?, ?, NULL, 'sigma', "
        "'evidence'",
        [org, ts, file_id, f"{org}/{file_id}.log", line, rule, cves, product, campaign, family])


def build_exposure_ws(root: Path) -> Workspace:
    """The workspace of the module docstring."""
    ws = Workspace.open(root, create=True)
    ws.register_orgs([Org("o1", "Org One", "finance", 2)])
    ordinary = [{"ts": f"2018-05-0{1 + i % 9} 10:00:00", "source_line": i + 1,
                 "destination_ip": "10.0.0.5", "url_original": "/index.html",
                 "http_response_status_code": 200, "http_response_body_bytes": 1000 + i}
                for i in range(40)]
    attempts = [(41, 200, 1010, "/GponForm/diag_Form?images/"), (42, 404, 500, "/GponForm/x"),
                (43, 200, 5_000_000, HOSTILE_URI), (44, 500, 20000, "/GponForm/y"),
                (45, 500, 9000, "/GponForm/z"), (46, 200, 1000, "/item?id=1'--"),
                (47, 200, 1200, "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php")]
    _write_http(ws, "o1", "f1", ordinary + [
        {"ts": f"2018-05-{10 + n - 41:02d} 11:00:00", "source_line": n,
         "destination_ip": "10.0.0.5", "url_domain": "www.o1.example", "url_original": uri,
         "http_response_status_code": st, "http_response_body_bytes": size}
        for n, st, size, uri in attempts])
    _write_http(ws, "o1", "f2", [
        {"ts": "2018-05-02 09:00:00", "source_line": i + 1, "url_domain": HOSTILE_HOST,
         "url_original": "/", "http_response_status_code": 200, "http_response_body_bytes": 900}
        for i in range(5)] + [
        {"ts": "2018-05-03 09:00:00", "source_line": 6, "url_domain": HOSTILE_HOST,
         "url_original": "/GponForm/diag_Form?images/", "http_response_status_code": 200,
         "http_response_body_bytes": 9_000_000}])
    _write_http(ws, "o1", "f0", [
        {"ts": "2018-02-10 08:00:00", "source_line": 1, "destination_ip": "10.0.0.5",
         "url_original": "/GponForm/diag_Form?images/", "http_response_status_code": 200,
         "http_response_body_bytes": 300}])
    with ws.connect() as con:
        con.execute(f"CREATE TABLE detection ({schema.ddl_columns(schema.DETECTION)})")
        gpon = ("gpon", ["CVE-2018-10561", "CVE-2018-10562"], "rce", "gpon")
        for n in (41, 42, 43, 44, 45):
            _detect(con, "o1", f"2018-05-{10 + n - 41:02d} 11:00:00", "f1", n, "r-gpon", *gpon)
        _detect(con, "o1", "2018-05-12 11:00:00", "f1", 43, "r-gpon-2", *gpon)  # second rule
        _detect(con, "o1", "2018-05-15 11:00:00", "f1", 46, "r-sqli", None, [], "sqli", None)
        _detect(con, "o1", "2018-05-16 11:00:00", "f1", 47, "r-phpunit", None,
                ["CVE-2017-9841"], "rce", "phpunit")
        _detect(con, "o1", "2018-05-03 09:00:00", "f2", 6, "r-gpon", *gpon)
        _detect(con, "o1", "2018-02-10 08:00:00", "f0", 1, "r-gpon", *gpon)
    return ws
