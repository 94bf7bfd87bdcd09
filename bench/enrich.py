"""Attacker enrichment throughput: 1 million distinct attacking addresses through `enrich`
(country and AS, host record nearest the attack, service classes, IOC lists, classification,
indicators), beside a per-address Python look-up loop measured in the same run.

    python bench/enrich.py                  # 1,000,000 addresses, best of 3
    python bench/enrich.py --ips 200000 --runs 1

The workspace is generated (not ingested: ingest has its own benchmark): one detection per
address over a quarter at 20 organisations, Shodan banners for 40% of the addresses (1-3
services each, a second snapshot for a tenth of them: about 1M banners), an IOC list of 50,000
addresses and 1,000 networks. The baseline does per address what a script would: geoip2fast's
``lookup`` (country and AS), a dict of host records (nearest snapshot by a loop over its
banners), a set of listed addresses and a bisect over the listed networks; it runs on a sample
and is scaled to the same number of addresses.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threatscope import schema  # noqa: E402
from threatscope.enrich import run_enrich  # noqa: E402
from threatscope.enrich.stage import asn_ranges_num  # noqa: E402
from threatscope.ipnum import V4_MAPPED  # noqa: E402
from threatscope.workspace import Workspace  # noqa: E402

PRODUCTS = [("ftp", 21, "Microsoft ftpd", "Windows Server 2008 R2"),
            ("http", 80, "Microsoft IIS httpd", "Windows Server 2012 R2"),
            ("smtp", 25, "Exim smtpd", "Linux"), ("pptp", 1723, None, None),
            ("mikrotik-bw", 2000, "MikroTik bandwidth-test server", "MikroTik RouterOS"),
            ("http", 3128, "Squid http proxy", None), ("http", 8080, "Jetty", "Linux"),
            ("rdp", 3389, None, "Windows 7 or 8"), ("ftp", 21, None, None),
            ("mysql", 3306, "MySQL", "Linux")]


def _addresses(n: int, rng: random.Random) -> list[int]:
    """``n`` distinct IPv4 numbers in real allocated ranges (Tencent, Alibaba, big ISPs)."""
    ranges = [(a - V4_MAPPED, b - V4_MAPPED) for a, b, _, _ in
              asn_ranges_num([45090, 37963, 4134, 4837, 16509, 14061, 7922])
              if V4_MAPPED <= a and b <= V4_MAPPED + 0xFFFFFFFF]
    cum = list(itertools.accumulate(b - a + 1 for a, b in ranges))
    out: set[int] = set()
    while len(out) < n:
        a, b = rng.choices(ranges, cum_weights=cum)[0]
        out.add(rng.randint(a, b))
    return sorted(out)


def _text(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def build(root: Path, n: int, seed: int = 1) -> tuple[Workspace, dict]:
    """The generated workspace and what the baseline needs (lists of rows)."""
    rng = random.Random(seed)
    ws = Workspace.open(root, create=True)
    nums = _addresses(n, rng)
    ips = [_text(x) for x in nums]
    t0 = 1522540800  # 2018-04-01
    first = [t0 + rng.randrange(90 * 86400) for _ in ips]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE d ({schema.ddl_columns(schema.DETECTION)})")
    con.register("_a", pa.table({"ip": ips, "t": first, "i": range(n)}))
    con.execute("""
        INSERT INTO d (org_id, ts, src_ip, event_kind, file_id, source_file, source_line, rule_id,
                       title, severity, cves, attack_techniques, product, campaign, detector)
        SELECT 'org' || (i % 20), make_timestamp(t * 1000000), ip, 'http', 'f' || (i % 40),
               'org' || (i % 20) || '/web-u_ex1805.log', i, 'r' || (i % 7), 'rule', 'high',
               ['CVE-2017-7269'], ['T1190'], 'iis', CASE WHEN i % 3 = 0 THEN 'iis-webdav' END,
               'sigma'
        FROM _a""")
    con.execute(f"COPY d TO '{ws.detections_path}' (FORMAT parquet)")
    # host records: 40% of the addresses, 1-3 services, a second snapshot for a tenth
    rec_ip, rec_ts, rec_port, rec_mod, rec_prod, rec_os = [], [], [], [], [], []
    for ip, t in zip(ips, first, strict=True):
        if rng.random() >= 0.4:
            continue
        snaps = [t + rng.randrange(-30, 30) * 86400]
        if rng.random() < 0.1:
            snaps.append(snaps[0] - 60 * 86400)
        for s in snaps:
            for k in rng.sample(range(len(PRODUCTS)), rng.randint(1, 3)):
                mod, port, prod, os_ = PRODUCTS[k]
                rec_ip.append(ip)
                rec_ts.append(s + rng.randrange(3600))
                rec_port.append(port)
                rec_mod.append(mod)
                rec_prod.append(prod)
                rec_os.append(os_)
    folder = ws.lake / "host_record" / f"org_id={schema.NO_ORG}"
    folder.mkdir(parents=True)
    con.register("_r", pa.table({
        "ip": rec_ip, "t": rec_ts, "port": pa.array(rec_port, pa.int32()), "module": rec_mod,
        "product": pa.array(rec_prod, pa.string()), "os": pa.array(rec_os, pa.string()),
        "ts_num": pa.array([_num(i) for i in rec_ip], pa.uint64())}))
    con.execute("""
        COPY (SELECT make_timestamp(t * 1000000) AS ts,
                     CAST(make_timestamp(t * 1000000) AS DATE) AS event_date,
                     'host_record' AS event_kind, 'bench' AS source_file,
                     row_number() OVER () AS source_line, NULL AS raw, ip,
                     CAST(ts_num AS DECIMAL(38,0)) AS ip_num, port, 'tcp' AS transport,
                     module, product, NULL AS version, os, [] AS hostnames, [] AS domains,
                     [] AS tags, [] AS cpe, [] AS vulns, NULL AS as_org, NULL AS isp,
                     NULL::BIGINT AS asn, NULL AS country_code, NULL AS cloud_provider,
                     '220 Service ready' AS banner, 'banner' AS record_type
              FROM _r)
        TO '""" + str(folder / "bench_0.parquet") + "' (FORMAT parquet)")
    listed = rng.sample(nums, min(50_000, n // 20))
    nets = [(x & 0xFFFFFF00, x | 0xFF) for x in rng.sample(nums, 1000)]
    folder = ws.lake / "ioc" / f"org_id={schema.NO_ORG}"
    folder.mkdir(parents=True)
    first_nums = [V4_MAPPED + x for x in listed] + [V4_MAPPED + a for a, _ in nets]
    last_nums = [V4_MAPPED + x for x in listed] + [V4_MAPPED + b for _, b in nets]
    values = [_text(x) for x in listed] + [f"{_text(a)}/24" for a, _ in nets]
    types = ["ip"] * len(listed) + ["cidr"] * len(nets)
    con.register("_i", pa.table({"t": types, "v": values,
                                 "f": pa.array(first_nums, pa.uint64()),
                                 "l": pa.array(last_nums, pa.uint64())}))
    con.execute("""
        COPY (SELECT TIMESTAMP '2018-01-01' AS ts, DATE '2018-01-01' AS event_date,
                     'ioc' AS event_kind, 'bench' AS source_file,
                     row_number() OVER () AS source_line, NULL AS raw, t AS ioc_type, v AS value,
                     CAST(f AS DECIMAL(38,0)) AS ip_first_num, CAST(l AS DECIMAL(38,0)) AS
                     ip_last_num, NULL::INTEGER AS port, NULL AS url_domain,
                     'emotet' AS malware_family, 'botnet_cc' AS threat, 'online' AS status,
                     'feodotracker' AS feed, TIMESTAMP '2018-01-01' AS first_seen,
                     TIMESTAMP '2018-06-01' AS last_seen, [] AS tags, NULL AS reference
              FROM _i)
        TO '""" + str(folder / "bench_0.parquet") + "' (FORMAT parquet)")
    con.close()
    records: dict[str, list] = {}
    for ip, t, port, prod, os_ in zip(rec_ip, rec_ts, rec_port, rec_prod, rec_os, strict=True):
        records.setdefault(ip, []).append((t, port, prod, os_))
    return ws, {"ips": ips, "first": first, "records": records, "listed": set(values[:len(listed)]),
                "nets": sorted(nets)}


def _num(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return V4_MAPPED + (a << 24 | b << 16 | c << 8 | d)


def baseline(data: dict, sample: int) -> float:
    """Seconds per address of the per-address Python loop (on ``sample`` addresses)."""
    from geoip2fast import GeoIP2Fast

    geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")
    nets, starts = data["nets"], [a for a, _ in data["nets"]]
    records, listed = data["records"], data["listed"]
    ips, first = data["ips"][:sample], data["first"][:sample]
    t = time.perf_counter()
    out = []
    for ip, f in zip(ips, first, strict=True):
        g = geo.lookup(ip)
        rec = records.get(ip, [])
        near = min(rec, key=lambda r: abs(r[0] - f)) if rec else None
        n = _num(ip) - V4_MAPPED
        k = bisect.bisect_right(starts, n) - 1
        hit = ip in listed or (k >= 0 and nets[k][0] <= n <= nets[k][1])
        out.append((g.country_code, g.asn_name, near, hit))
    return (time.perf_counter() - t) / len(ips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ips", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=100_000, help="addresses of the baseline loop")
    ap.add_argument("--keep", type=Path, help="build the workspace here (or reuse it) and keep it")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-enrich-"))
    try:
        t = time.perf_counter()
        ws, data = build(args.keep or tmp / "ws", args.ips)
        print(f"built: {args.ips:,} attacking addresses, {sum(map(len, data['records'].values())):,}"
              f" banners, {len(data['listed']) + len(data['nets']):,} IOC entries "
              f"({time.perf_counter() - t:.1f} s)")
        run_enrich(ws)  # warms the range table cache (built once per machine)
        times, base = [], []
        for _ in range(args.runs):
            base.append(baseline(data, min(args.sample, args.ips)) * args.ips)
            t = time.perf_counter()
            s = run_enrich(ws)
            times.append(time.perf_counter() - t)
        best, med = min(times), statistics.median(times)
        b = min(base)
        print(f"enrich: {best:.2f} s best, {med:.2f} s median ({args.ips / best:,.0f} addresses/s);"
              f" attacking {s.attacking_ips:,}, with host record {s.with_host_record:,}, "
              f"IOC-listed {s.with_ioc_match:,}, indicators {s.indicators:,}")
        print(f"per-address Python loop: {b:.2f} s for {args.ips:,} "
              f"({args.ips / b:,.0f} addresses/s, measured on {min(args.sample, args.ips):,})")
        print(f"ratio: enrich is {b / best:.1f}x the loop's speed; target: 1M addresses < 5 s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
