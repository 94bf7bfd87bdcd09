"""Enrich stage: IP numbers in SQL, geoip2fast and .mmdb range joins, the `source` table."""

from __future__ import annotations

import ipaddress
import random
import time

import duckdb
import maxminddb
import pytest

from tests.enrich.mmdb_writer import write_mmdb
from threatscope import schema
from threatscope.enrich import asn_ranges, lookup, run_enrich
from threatscope.enrich.netclass import builtin_asns
from threatscope.ipnum import install_ip_macros, ip_to_num
from threatscope.workspace import Workspace


def _row(ip: str, **kw) -> dict:
    return lookup([ip], **kw).to_pylist()[0]


# -- IP text -> number --------------------------------------------------------------------------
def test_sql_ip_num_agrees_with_python():
    rng = random.Random(1)
    ips = ["8.8.8.8", "0.0.0.0", "255.255.255.255", "::", "::1", "2001:db8::1", "fe80::1%eth0",
           "::ffff:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "2001:DB8::",
           " 10.1.2.3 ", "1.2.3.256", "01.2.3.4", "1.2.3", "1::2::3", "1:2:3:4:5:6:7:8:9",
           "abc", "", "12345::", "1.2.3.4.5", "::ffff:1.2.3", "g::1"]
    ips += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(300)]
    ips += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(300)]
    ips += [str(ipaddress.IPv6Address(rng.getrandbits(128) & ~((1 << 64) - 1))) for _ in range(50)]
    con = duckdb.connect()
    install_ip_macros(con)
    got = con.execute("SELECT ts_ip_num(ip) FROM unnest(?::VARCHAR[]) t(ip)", [ips]).fetchall()
    for ip, (num,) in zip(ips, got, strict=True):
        assert num == ip_to_num(ip), ip


def test_range_search_in_c_agrees_with_the_asof_join(monkeypatch):
    """The C binary search (_native.range_index) and the SQL ASOF join find the same range row
    for every address, at range bounds and one past them, at 0 and 2**128-1, and for NULLs."""
    import pyarrow as pa

    from threatscope.enrich import ranges, stage
    from threatscope.native import native

    if native() is None:
        pytest.skip("C extension not built")
    table = ranges.open_combined(ranges.combined(())[1])
    rng = random.Random(7)
    bounds = [(table.column("first_hi")[i].as_py() << 64 | table.column("first_lo")[i].as_py(),
               table.column("last_hi")[i].as_py() << 64 | table.column("last_lo")[i].as_py())
              for i in rng.sample(range(table.num_rows), 300)]
    nums = [0, (1 << 128) - 1, None]
    nums += [n + d for a, b in bounds for n in (a, b) for d in (-1, 0, 1) if 0 <= n + d < 1 << 128]
    nums += [rng.getrandbits(128) for _ in range(300)] + [(0xFFFF << 32) + rng.getrandbits(32)
                                                          for _ in range(300)]
    q = pa.table({"hi": pa.array([None if n is None else n >> 64 for n in nums], pa.uint64()),
                  "lo": pa.array([None if n is None else n & (1 << 64) - 1 for n in nums],
                                 pa.uint64())})
    con = duckdb.connect()
    in_c = stage._range_rows(con, q, table).to_pylist()
    monkeypatch.setenv("THREATSCOPE_NATIVE", "0")
    in_sql = stage._range_rows(con, q, table).to_pylist()
    assert in_c == in_sql
    assert in_c[2] is None and sum(r is not None for r in in_c) > len(nums) // 2
    for n, r in zip(nums, in_c, strict=True):  # and it is the row that holds the number
        if r is not None:
            first = table.column("first_hi")[r].as_py() << 64 | table.column("first_lo")[r].as_py()
            last = table.column("last_hi")[r].as_py() << 64 | table.column("last_lo")[r].as_py()
            assert first <= n <= last


# -- geoip2fast ---------------------------------------------------------------------------------
def test_known_addresses():
    rows = {r["ip"]: r for r in lookup([
        "8.8.8.8", "1.12.1.1", "106.11.1.1", "2001:4860:4860::8888",
    ]).to_pylist()}
    g = rows["8.8.8.8"]
    assert (g["country_code"], g["country_name"], g["asn"], g["as_org"]) == (
        "US", "United States", 15169, "GOOGLE")
    t = rows["1.12.1.1"]  # Tencent Cloud
    assert (t["country_code"], t["asn"], t["network_type"]) == ("CN", 45090, "hosting")
    assert "Tencent" in t["as_org"]
    a = rows["106.11.1.1"]  # Alibaba Cloud
    assert (a["country_code"], a["asn"], a["network_type"]) == ("CN", 37963, "hosting")
    assert "Alibaba" in a["as_org"]
    v6 = rows["2001:4860:4860::8888"]
    assert (v6["country_code"], v6["as_org"]) == ("US", "GOOGLE")
    assert {r["geo_source"] for r in rows.values()} == {"geoip2fast"}


def test_invalid_private_and_null_addresses_keep_their_rows_in_order():
    ips = ["10.1.2.3", "not-an-ip", None, "127.0.0.1", "::1", "fe80::1", "8.8.8.8", "8.8.8.8",
           "192.168.1.1", "999.1.1.1"]
    rows = lookup(ips).to_pylist()
    assert [r["ip"] for r in rows] == ips
    for r in rows:
        if r["ip"] == "8.8.8.8":
            assert r["country_code"] == "US"
            continue
        assert r["country_code"] is None and r["asn"] is None and r["as_org"] is None
        assert r["network_type"] == "unknown"


def test_access_isp_and_keyword_classification():
    chinanet = next(a for a, o, t in builtin_asns() if o == "Chinanet")
    assert chinanet == 4134
    first, _last, asn, org = asn_ranges([4134])[0]
    r = _row(first)
    assert (r["asn"], r["as_org"], r["network_type"]) == (4134, org, "access")
    con = duckdb.connect()
    from threatscope.enrich.netclass import classify_sql

    sql = classify_sql("NULL", "NULL", "o")
    got = dict(con.execute(
        f"SELECT o, {sql} FROM unnest(['Acme Hosting Ltd', 'FooCloud', 'Bar Data Center', "
        "'Some Broadband Co', 'Mobile Telecom', 'Banco de Colombia', 'Plain Corp']) t(o)"
    ).fetchall())
    assert got == {"Acme Hosting Ltd": "hosting", "FooCloud": "hosting",
                   "Bar Data Center": "hosting", "Some Broadband Co": "access",
                   "Mobile Telecom": "access", "Banco de Colombia": "unknown",
                   "Plain Corp": "unknown"}


def test_builtin_list_names_exist_in_geoip2fast_data():
    # every listed organisation name must be spelled as the data spells it, or the
    # ASN/hosting label silently never applies
    from threatscope.enrich import ranges

    _, asn_path = ranges.geoip2fast_layers()[1]
    names = {r[0] for r in duckdb.connect().sql(
        f"SELECT DISTINCT as_org FROM read_parquet('{asn_path}')").fetchall()}
    missing = [o for _, o, _ in builtin_asns() if o not in names]
    assert missing == []


def test_asn_ranges_enrich_back_to_their_asn():
    rs = asn_ranges([45090, 37963])
    assert len(rs) > 20
    assert {asn for _, _, asn, _ in rs} == {45090, 37963}
    sample = [r for i, r in enumerate(rs) if i % 10 == 0]
    got = lookup([first for first, _, _, _ in sample] + [last for _, last, _, _ in sample])
    asns = got.column("asn").to_pylist()
    assert asns == [a for _, _, a, _ in sample] * 2
    assert asn_ranges([]) == [] and asn_ranges([64512]) == []


# -- .mmdb --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mmdb_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mmdb")
    country = write_mmdb(d / "GeoLite2-Country-test.mmdb", [
        ("8.8.8.0/24", {"country": {"iso_code": "US", "names": {"en": "United States"}}}),
        ("81.2.69.0/24", {"country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
                          "registered_country": {"iso_code": "GB"}}),
        ("2a00:1450::/32", {"country": {"iso_code": "IE", "names": {"en": "Ireland"}}}),
    ], ip_version=6, database_type="GeoLite2-Country")
    asn = write_mmdb(d / "GeoLite2-ASN-test.mmdb", [
        ("8.8.8.0/24", {"autonomous_system_number": 15169,
                        "autonomous_system_organization": "GOOGLE"}),
        ("81.2.69.0/24", {"autonomous_system_number": 20712,
                          "autonomous_system_organization": "Andrews & Arnold Ltd"}),
        ("5.6.7.0/24", {"autonomous_system_number": 64500,
                        "autonomous_system_organization": "Example VPS Hosting"}),
    ], ip_version=4, database_type="GeoLite2-ASN")
    ipinfo = write_mmdb(d / "ipinfo-test.mmdb", [
        ("9.9.9.0/24", {"country": "CH", "country_name": "Switzerland", "asn": "AS19281",
                        "as_name": "Quad9", "as_domain": "quad9.net"}),
    ], ip_version=6)
    return country, asn, ipinfo


def test_mmdb_files_are_real_maxmind_dbs(mmdb_files):
    country, asn, _ = mmdb_files
    with maxminddb.open_database(str(country)) as r:
        assert r.get("8.8.8.8")["country"]["iso_code"] == "US"
        assert r.get("2a00:1450::1")["country"]["iso_code"] == "IE"
    with maxminddb.open_database(str(asn)) as r:
        assert r.get("81.2.69.160")["autonomous_system_number"] == 20712


def test_lookup_with_mmdb(mmdb_files):
    country, asn, ipinfo = mmdb_files
    rows = {r["ip"]: r for r in lookup(
        ["8.8.8.8", "81.2.69.160", "2a00:1450::1", "5.6.7.8", "9.9.9.9", "1.1.1.1"],
        mmdb=[country, asn, ipinfo],
    ).to_pylist()}
    assert rows["8.8.8.8"]["country_code"] == "US" and rows["8.8.8.8"]["asn"] == 15169
    assert rows["81.2.69.160"]["as_org"] == "Andrews & Arnold Ltd"
    assert rows["81.2.69.160"]["country_name"] == "United Kingdom"
    assert rows["2a00:1450::1"]["country_code"] == "IE" and rows["2a00:1450::1"]["asn"] is None
    assert rows["5.6.7.8"]["country_code"] is None
    assert rows["5.6.7.8"]["network_type"] == "hosting"  # keyword 'hosting'
    assert (rows["9.9.9.9"]["country_code"], rows["9.9.9.9"]["asn"],
            rows["9.9.9.9"]["as_org"]) == ("CH", 19281, "Quad9")
    assert rows["1.1.1.1"]["country_code"] is None  # not in these files: no geoip2fast fallback
    assert rows["1.1.1.1"]["geo_source"] == (
        "GeoLite2-Country-test.mmdb+GeoLite2-ASN-test.mmdb+ipinfo-test.mmdb")


def test_bad_mmdb_is_a_user_error(tmp_path):
    from threatscope.errors import UserError

    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 10)
    with pytest.raises(UserError, match="junk.mmdb"):
        lookup(["8.8.8.8"], mmdb=[junk])
    with pytest.raises(UserError, match="not found"):
        lookup(["8.8.8.8"], mmdb=[tmp_path / "missing.mmdb"])


# -- the stage ----------------------------------------------------------------------------------
def _write_http(ws: Workspace, ips: list[str]) -> None:
    d = ws.lake / "http" / "org_id=o1" / "event_date=2018-05-01"
    d.mkdir(parents=True)
    con = duckdb.connect()
    install_ip_macros(con)
    cols = [n for n, _ in schema.HTTP if n not in ("org_id", "event_date")]
    sel = ", ".join(
        "ip AS source_ip" if n == "source_ip" else
        "ts_ip_num(ip) AS source_ip_num" if n == "source_ip_num" else
        f'CAST(NULL AS {t}) AS "{n}"'
        for n, t in schema.HTTP if n in cols
    )
    con.execute(f"COPY (SELECT {sel} FROM unnest(?::VARCHAR[]) t(ip)) TO "
                f"'{d / 'f1_0.parquet'}' (FORMAT parquet)", [ips])


def test_run_enrich_without_detections_then_with(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    s = run_enrich(ws)  # empty workspace, no `detection` table yet
    assert s.sources == 0
    top = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"  # numbers from 2**127 fit no DECIMAL(38,0)
    _write_http(ws, ["8.8.8.8", "2001:4860:4860::8888", "10.0.0.1", "8.8.8.8", "bad-ip",
                     "ff02::1", top])
    s = run_enrich(ws)
    assert s.sources == 6 and s.invalid_ips == 1 and s.with_country == 2
    with ws.connect() as con:
        con.execute(f"CREATE TABLE detection ({schema.ddl_columns(schema.DETECTION)})")
        con.execute("INSERT INTO detection (src_ip, rule_id) VALUES ('106.11.1.1', 'r1'), "
                    "('8.8.8.8', 'r2'), (NULL, 'r3')")
    s = run_enrich(ws)
    d = s.to_dict()
    assert d["sources"] == 7 and d["geo_source"] == "geoip2fast"
    assert d["network_types"]["hosting"] == 3
    with ws.connect() as con:
        rows = {r[0]: r for r in con.execute(
            "SELECT ip, ip_num, country_code, asn, network_type FROM source").fetchall()}
        types = {r[0]: r[1] for r in con.execute("DESCRIBE source").fetchall()}
    assert types == dict(schema.SOURCE)
    assert rows["106.11.1.1"][2:] == ("CN", 37963, "hosting")
    assert rows["8.8.8.8"][1] == ip_to_num("8.8.8.8")
    assert rows["2001:4860:4860::8888"][1] == ip_to_num("2001:4860:4860::8888")
    assert rows["10.0.0.1"][2:] == (None, None, "unknown")
    assert rows[top][1:] == (2**128 - 1, None, None, "unknown")
    assert rows["ff02::1"][1] == ip_to_num("ff02::1")


def test_run_enrich_uses_workspace_mmdb_config(tmp_path, mmdb_files):
    ws = Workspace.open(tmp_path / "ws", create=True)
    _write_http(ws, ["81.2.69.160"])
    s = run_enrich(ws, mmdb=[mmdb_files[0]])
    assert s.geo_source == "GeoLite2-Country-test.mmdb" and s.with_country == 1


def test_perf_one_million_distinct_ips():
    """Performance note: where 1M distinct addresses are (seconds printed with -s)."""
    from threatscope.enrich import stage

    con = duckdb.connect()
    stage._prepare(con)
    ips = con.sql(
        "SELECT DISTINCT concat_ws('.', (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)"
        " AS ip FROM (SELECT hash(range) & 4294967295 AS i FROM range(1000000))"
    ).to_arrow_table()
    t0 = time.perf_counter()
    stage._geo_views(con, ips, ())
    got = con.execute("SELECT count(*), count(country_code) FROM _ts_geo "
                      "JOIN _ts_place USING (place)").fetchall()[0]
    secs = time.perf_counter() - t0
    print(f"\nenrich geo: {len(ips):,} distinct IPs in {secs:.2f} s ({len(ips) / secs:,.0f} IPs/s)")
    assert got[0] == len(ips) and got[1] > 0.6 * len(ips)


def test_enrich_replaces_the_catalog_tables_of_earlier_versions(tmp_path):
    """Earlier versions kept `source` and `payload_indicator` in the catalog, `indicator` a
    view there: enrich drops them, and the Parquet files' views are what connections read."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    _write_http(ws, ["8.8.8.8"])
    with ws.connect() as con:
        con.execute(f"CREATE TABLE source ({schema.ddl_columns(schema.SOURCE)})")
        con.execute("INSERT INTO source (ip) VALUES ('192.0.2.99')")
        con.execute(f"CREATE TABLE payload_indicator ({schema.ddl_columns(schema.INDICATOR)})")
        con.execute("CREATE VIEW indicator AS SELECT * FROM payload_indicator")
    assert run_enrich(ws).sources == 1
    assert (ws.enriched() / "source.parquet").exists()
    with ws.connect(read_only=True) as con:
        assert con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog <> 'temp' "
            "AND table_name IN ('source', 'payload_indicator', 'indicator')").fetchall() == []
        assert con.execute("SELECT ip FROM source").fetchall() == [("8.8.8.8",)]
        assert con.execute("SELECT count(*) FROM indicator").fetchall() == [(0,)]


def test_a_failed_enrich_leaves_the_last_run_whole(tmp_path, monkeypatch):
    """A run writes a new folder and switches to it last: one that fails half-way (here in
    its last table) changes nothing readers see, and leaves no folder behind."""
    from threatscope.enrich import stage

    ws = Workspace.open(tmp_path / "ws", create=True)
    _write_http(ws, ["8.8.8.8"])
    run_enrich(ws)
    before = ws.enriched()
    monkeypatch.setattr(stage, "_PAYLOAD_SELECT",
                        f"SELECT * REPLACE (error('disk full') AS value) FROM "
                        f"({schema.empty_select(schema.INDICATOR)} UNION ALL SELECT "
                        f"{', '.join(f'NULL AS {n}' for n, _ in schema.INDICATOR)})")
    with pytest.raises(duckdb.Error, match="disk full"):
        run_enrich(ws)
    assert ws.enriched() == before
    assert [p.name for p in ws.enriched_root.iterdir() if p.is_dir()] == [before.name]
    with ws.connect(read_only=True) as con:
        assert con.execute("SELECT ip FROM source").fetchall() == [("8.8.8.8",)]
    monkeypatch.undo()
    run_enrich(ws)  # the next run replaces it, and keeps it a run longer for readers in it
    assert ws.enriched() not in (None, before) and before.is_dir()
    run_enrich(ws)
    assert not before.exists()
