import ipaddress

import duckdb
import pytest

from threatscope import sqlfn


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    sqlfn.install(c)
    return c


@pytest.mark.parametrize("ip", ["1.2.3.4", "255.255.255.255", "0.0.0.0", "::1", "::",
                                "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4", "fe80::1%eth0",
                                "1::", "2001:0db8:0000:0000:0000:ff00:0042:8329"])
def test_ip_num_valid(con, ip):
    a = ipaddress.ip_address(ip.split("%")[0])
    want = int(a) + 0xFFFF00000000 if a.version == 4 else int(a)
    if a.version == 6 and a.ipv4_mapped:
        want = int(a)
    assert con.execute("SELECT ts_ip_num(?)", [ip]).fetchall()[0][0] == want


@pytest.mark.parametrize("ip", ["256.1.1.1", "1.2.3", "a.b.c.d", "-", "localhost",
                                "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", None])
def test_ip_num_invalid_is_null(con, ip):
    assert con.execute("SELECT ts_ip_num(?)", [ip]).fetchall()[0][0] is None


def test_url_helpers(con):
    got = con.execute("SELECT ts_url_decode('/a%2e%2e%2fb+c%ff%zz'), ts_url_decode('/x%41'), "
                      "ts_url_path('/a?b?c'), ts_url_query('/a?b?c'), ts_url_query('/a')"
                      ).fetchall()[0]
    assert got == ("/a../b+c%ff%zz", "/xA", "/a", "b?c", None)


def test_epoch_ts_outside_years_1_to_9999_is_null(con):
    # (NaN, inf or 1e13 s used to raise a conversion error, failing a whole file's ingest)
    got = con.execute(
        "SELECT ts_epoch_ts(x)::VARCHAR FROM (VALUES ('nan'::DOUBLE), ('inf'::DOUBLE), "
        "(1e13), (-1e300), (253402300799), (253402300800), (-62135596800), (-62135596801), "
        "(NULL)) t(x)").fetchall()
    assert [g[0] for g in got] == [None, None, None, None, "9999-12-31 23:59:59", None,
                                   "0001-01-01 00:00:00", None, None]


def test_timestamps_and_cves(con):
    got = con.execute(
        "SELECT ts_iso_ts('2018-04-01T10:00:00.5+0200')::VARCHAR, "
        "ts_iso_ts('2018-04-01 10:00:00Z')::VARCHAR, ts_iso_ts('2018-02-31T10:00:00Z'), "
        "ts_iso_ts('nope'), ts_epoch_ts(1525000000.5)::VARCHAR, "
        "ts_cves('x CVE-2017-5638 cve_2018_1000861 CVE-2017-5638')").fetchall()[0]
    assert got == ("2018-04-01 08:00:00.5", "2018-04-01 10:00:00", None, None,
                   "2018-04-29 11:06:40.5", ["CVE-2017-5638", "CVE-2018-1000861"])
