"""Enrich on Spark writes the DuckDB engine's tables: source, place, host_profile and
payload_indicator, through the real stages (ingest -> built-in rules -> intel add -> enrich)."""

from __future__ import annotations

import json
import random
import shutil

import duckdb
import pyarrow as pa
import pytest

from tests.enrich.mmdb_writer import write_mmdb
from threatscope import ingest
from threatscope.detect import run_detect
from threatscope.enrich import classify, hosts, iocs, ranges, run_enrich, stage
from threatscope.enrich import spark as on_spark
from threatscope.enrich.classify import thresholds
from threatscope.enrich.spark import locate
from threatscope.simulate import attacks
from threatscope.workspace import Workspace

# each stage compared in depth between the engines: `make test-spark` (minutes of Spark)
pytestmark = pytest.mark.spark_stages

SCANNER = "45.83.64.1"  # a research scanner's user agent
MASS = "8.8.8.10"  # GPON at three organisations; in the test .mmdb; has a host record
TARGETED = "81.2.69.160"  # Drupal at one organisation; in the .mmdb; on an IOC list
V6 = "2a00:1450::25de"  # IPv6, in the .mmdb
V6_NONE = "2a03:2880:f10c:83:face:b00c:0:25de"  # IPv6 in no range; on an IOC list
BENIGN = "4.4.4.4"  # never detected, in no range
PRIVATE = "10.1.2.3"  # reserved


def _req(ip: str, org: str, day: int, builder, ua: str = "Mozilla/5.0") -> str:
    r = builder(random.Random(day * 97 + len(ip)), f"www.{org}.example")
    return json.dumps({"ts": f"2018-05-{day:02d}T10:00:00Z", "src_ip": ip, "method": r.method,
                       "uri": r.uri, "headers": {"User-Agent": ua, **r.headers},
                       "body": r.body, "status": 200, "org_id": org})


def _host(ip: str, ts: str, port: int, product: str, os: str | None) -> str:
    return json.dumps({"ip_str": ip, "port": port, "transport": "tcp", "product": product,
                       "os": os, "hostnames": ["h.example.net"], "timestamp": ts,
                       "data": "HTTP/1.1 200 OK\r\n\r\n", "_shodan": {"module": "http"}})


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    root = tmp_path_factory.mktemp("enrich")
    lines = [_req(SCANNER, "a", 2, attacks.gpon, ua="Mozilla/5.0 CensysInspect/1.1")]
    lines += [_req(MASS, org, 3, attacks.gpon) for org in ("a", "b", "c")]
    lines += [_req(TARGETED, "e", 20, attacks.drupalgeddon2),
              _req(TARGETED, "e", 21, attacks.drupalgeddon2)]
    lines += [_req(V6, "b", 22, attacks.gpon), _req(V6_NONE, "c", 23, attacks.gpon),
              _req(PRIVATE, "a", 24, attacks.gpon)]
    lines.append(json.dumps({"ts": "2018-05-02T09:00:00Z", "src_ip": BENIGN, "method": "GET",
                             "uri": "/index.html", "headers": {}, "status": 200, "org_id": "a"}))
    (root / "requests.jsonl").write_text("\n".join(lines) + "\n")
    (root / "list.txt").write_text(f"# ours\n{TARGETED}\n{V6_NONE}\n8.8.8.0/28\n"
                                   "2a00:1450::/48\nhxxp://203.0.113.77/gpon.sh\n")
    (root / "hosts.json").write_text("\n".join([
        _host(MASS, "2018-04-01T00:00:00", 80, "nginx", "Linux"),
        _host(MASS, "2018-05-02T00:00:00", 3389, "Microsoft IIS httpd", "Windows Server 2008"),
    ]) + "\n")
    mmdb = write_mmdb(root / "geo.mmdb", [
        ("8.8.8.0/24", {"country": {"iso_code": "US", "names": {"en": "United States"}},
                        "autonomous_system_number": 15169,
                        "autonomous_system_organization": "GOOGLE"}),
        ("81.2.69.0/24", {"country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
                          "autonomous_system_organization": "Example VPS Hosting"}),
        ("45.83.64.0/22", {"country": {"iso_code": "DE", "names": {"en": "Germany"}}}),
        ("2a00:1450::/32", {"country": {"iso_code": "IE", "names": {"en": "Ireland"}}}),
    ], ip_version=6)
    duck = Workspace.open(root / "duck", create=True)
    ingest.ingest_paths(duck, [str(root / "requests.jsonl")])
    run_detect(duck)
    ingest.ingest_paths(duck, [str(root / "list.txt")], only=["ioc-list"], fallback="ioc-list")
    s = ingest.ingest_paths(duck, [str(root / "hosts.json")], fmt="shodan")
    assert s.rows_written == 2, s.errors
    shutil.copytree(duck.root, root / "spark")
    return duck, Workspace.open(root / "spark"), mmdb


def _tables(ws: Workspace) -> dict[str, list]:
    """The enriched tables, ids (place, profile: numbers within one run) resolved to rows."""
    folder = ws.enriched()
    con = duckdb.connect()
    for name in ("source", "place", "host_profile", "payload_indicator"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{folder / name}.parquet')")
    got = {}
    for name, sql in {
        "source": "SELECT s.* EXCLUDE (place, profile), "
                  "p.* EXCLUDE (place), h.* EXCLUDE (profile) FROM source s "
                  "LEFT JOIN place p USING (place) LEFT JOIN host_profile h USING (profile)",
        "place": "SELECT * EXCLUDE (place) FROM place",
        "host_profile": "SELECT * EXCLUDE (profile) FROM host_profile",
        "payload_indicator": "SELECT * FROM payload_indicator",
    }.items():
        got[name] = sorted(con.execute(sql).fetchall(), key=repr)
    return got


def test_spark_enrich_equals_duckdb(spark_session, workspaces):
    duck, on_spark, mmdb = workspaces
    want = run_enrich(duck, mmdb=[mmdb])
    got = run_enrich(on_spark, mmdb=[mmdb], engine="spark", spark=spark_session)
    assert {k: v for k, v in got.to_dict().items() if k != "seconds"} == \
        {k: v for k, v in want.to_dict().items() if k != "seconds"}
    a, b = _tables(duck), _tables(on_spark)
    assert a == b
    assert len(a["place"]) >= 4 and a["host_profile"] and a["payload_indicator"]
    by_ip = {r["ip"]: r for r in stage.source_rows(on_spark)}
    assert set(by_ip) >= {SCANNER, MASS, TARGETED, V6, V6_NONE, BENIGN, PRIVATE}
    assert by_ip[MASS]["host_record_ts"] is not None
    assert by_ip[TARGETED]["ioc_matches"] and by_ip[V6_NONE]["ioc_matches"]
    assert (on_spark.enriched_root / "CURRENT").read_text().strip() == on_spark.enriched().name


def test_spark_locate_equals_the_c_search(spark_session, tmp_path):
    """The broadcast range join finds the rows the C binary search finds, on geoip2fast's
    ranges (IPv4 and IPv6, reserved, in no range, not an address): the real table's rows
    around the addresses (the whole table takes a test's minute to broadcast on two cores)."""
    ips = pa.array(["8.8.8.8", "1.1.1.1", "81.2.69.160", "2a00:1450:4001::1", "2001:db8::1",
                    "10.0.0.1", "::1", "not an ip", "255.255.255.255", "0.0.0.0",
                    "2a03:2880:f10c:83:face:b00c:0:25de", "ffff::1", "8.8.4.4", "9.9.9.9",
                    "2001:4860:4860::8888", None])
    full = ranges.open_combined(ranges.combined()[1])
    con = duckdb.connect()
    stage._prepare(con)
    hi, lo, known = stage._halves(con, ips)
    q = pa.table({"hi": pa.array(hi, mask=~known), "lo": pa.array(lo, mask=~known)})
    near = {r + d for r in stage._range_rows(con, q, full).drop_null().to_pylist()
            for d in range(-300, 300)}
    table = full.take(pa.array(sorted(r for r in near if 0 <= r < full.num_rows)))
    want_res = stage._range_rows(con, q, stage._reserved_table()).is_valid()
    want_rows = stage._range_rows(con, q, table)
    ws = Workspace.open(tmp_path / "ws", create=True)  # its cache holds the ranges for Spark
    got_q, got_res, got_rows = locate(spark_session, ws, ips, table, stage._reserved_table())
    assert got_q.equals(q)
    assert got_res.to_pylist() == want_res.to_pylist()
    assert got_rows.to_pylist() == want_rows.to_pylist()
    assert sum(r is not None for r in want_rows.to_pylist()) >= 4


def test_spark_host_profiles_equal_the_sql(spark_session, workspaces):
    """Host profiles made by Spark tasks: hosts.profile_sql's rows, nearest record per attack."""
    duck = workspaces[0]
    with duck.connect() as con:
        con.execute(f"""CREATE TEMP VIEW _ts_att AS SELECT * FROM (VALUES
            ('{MASS}', TIMESTAMP '2018-04-02 00:00:00', 'hosting'),
            ('{TARGETED}', TIMESTAMP '2018-05-20 10:00:00', 'access')) t(ip, ref_ts, network_type)""")
        cols = ("ip, ref_ts, host_record_ts, os, os_family, products, services, "
                "service_classes, ports, hostnames, cloud, host_kind")
        want = con.execute(f"SELECT {cols} FROM ({hosts.profile_sql('_ts_att')})").fetchall()
        got = on_spark.profiles(spark_session, duck, con)
        con.register("_got", got)
        got = con.execute(f"SELECT {cols} FROM _got").fetchall()
    assert got == want and len(want) == 1
    assert want[0][2].month == 4 and want[0][4] == "Linux"  # April's record: nearest


def test_spark_ioc_matches_equal_the_sql(spark_session, workspaces):
    """IOC list matches by the broadcast range join: iocs.address_matches_sql's rows."""
    duck = workspaces[0]
    with duck.connect() as con:
        stage._prepare(con)
        con.execute(f"""CREATE TEMP VIEW _ts_geo AS SELECT ip, ts_ip_num(ip) AS ip_num
                        FROM (VALUES ('{MASS}'), ('{TARGETED}'), ('{V6}'), ('{V6_NONE}'),
                                     ('{BENIGN}'), ('not an ip')) t(ip)""")
        want = con.execute(
            "SELECT ip, ioc_matches, ioc_families, epoch_us(ioc_first_seen), "
            "epoch_us(ioc_last_seen) FROM (" + iocs.address_matches_sql(
                "(SELECT ip, ip_num FROM _ts_geo)", iocs.cidr_shifts(con)) + ") ORDER BY ip"
        ).fetchall()
        got = on_spark.ioc_matches(spark_session, con)
    got = sorted(tuple(r.values()) for r in got.to_pylist())
    assert got == want
    assert {r[0] for r in want} == {MASS, TARGETED, V6, V6_NONE}  # networks and addresses


def test_spark_breadth_equals_the_sql(spark_session, workspaces):
    """Breadth of the attacking addresses in Spark SQL: classify.breadth_sql's rows."""
    duck = workspaces[0]
    limits = thresholds(duck.config)
    with duck.connect() as con:
        stage._prepare(con)
        want = con.execute(
            "SELECT * EXCLUDE (first_seen, last_seen), epoch_us(first_seen), epoch_us(last_seen) "
            f"FROM ({classify.breadth_sql('detection', limits)})").fetchall()
    got = on_spark.breadth(spark_session, duck, limits)
    cols = [c for c in got.column_names if c not in ("first_us", "last_us")]
    got = [tuple(r[c] for c in [*cols, "first_us", "last_us"]) for r in got.to_pylist()]
    assert sorted(got, key=repr) == sorted(want, key=repr)
    assert len(want) >= 5 and any(r[2] > 1 for r in want)  # (detections)
