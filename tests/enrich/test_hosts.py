"""What attacking hosts are: the snapshot nearest the attack, the class tables, host kinds."""

from __future__ import annotations

import duckdb
import pytest

from threatscope import schema
from threatscope.enrich.hosts import os_family_sql, profile_sql, services_sql

COLS = ("ip", "ts", "port", "transport", "module", "product", "os", "hostnames", "tags",
        "record_type", "banner", "cloud_provider", "file_id", "source_line")


@pytest.fixture()
def con():
    c = duckdb.connect()
    c.execute(f"CREATE TABLE hr ({schema.ddl_columns(schema.HOST_RECORD)})")
    c.execute("CREATE TABLE a (ip VARCHAR, ref_ts TIMESTAMP, network_type VARCHAR)")
    return c


def _records(con, *rows):
    for r in rows:
        r = dict(zip(COLS, r, strict=False))
        con.execute(f"INSERT INTO hr ({', '.join(r)}, event_date) VALUES "
                    f"({', '.join('?' * len(r))}, CAST(? AS TIMESTAMP)::DATE)",
                    [*r.values(), r["ts"]])


def _profile(con, *attacks):
    con.execute("DELETE FROM a")
    con.executemany("INSERT INTO a VALUES (?, ?, ?)", attacks)
    cur = con.execute(profile_sql("a", "hr") + " ORDER BY ip, ref_ts")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_the_snapshot_nearest_the_attack_describes_it(con):
    _records(con,
             # January: a clean Linux box; May: the same address, a Windows server
             ("1.1.1.1", "2018-01-02 05:00", 22, "tcp", "ssh", "OpenSSH", "Linux"),
             ("1.1.1.1", "2018-05-12 03:00", 80, "tcp", "http", "Microsoft IIS httpd",
              "Windows Server 2008 R2"),
             ("1.1.1.1", "2018-05-12 05:00", 21, "tcp", "ftp", None, None, [], [], "banner",
              "220 Microsoft FTP Service"),
             # two snapshots as far from the attack: the later one wins
             ("2.2.2.2", "2018-03-01 00:00", 22, "tcp", "ssh", "OpenSSH", "Linux"),
             ("2.2.2.2", "2018-03-05 00:00", 3389, "tcp", "rdp", None, "Windows 7 or 8"))
    got = _profile(con, ("1.1.1.1", "2018-05-01", "hosting"), ("1.1.1.1", "2018-01-05", "hosting"),
                   ("2.2.2.2", "2018-03-03", "access"), ("9.9.9.9", "2018-05-01", "access"))
    assert [(r["ip"], str(r["host_record_ts"])) for r in got] == [
        ("1.1.1.1", "2018-01-02 05:00:00"), ("1.1.1.1", "2018-05-12 05:00:00"),
        ("2.2.2.2", "2018-03-05 00:00:00")]  # 9.9.9.9 has no record: no row
    jan, may, tie = got
    assert (jan["os_family"], jan["service_classes"], jan["host_kind"]) == \
        ("Linux", ["remote-access"], "cloud-instance")
    assert (may["os_family"], may["products"], may["ports"]) == \
        ("Windows Server 2008", ["Microsoft IIS httpd"], [21, 80])
    assert may["services"] == ["ftp:ftp", "web:iis"] and may["host_kind"] == "compromised-server"
    assert (tie["os_family"], tie["services"]) == ("Windows 7/8", ["remote-access:rdp"])


def test_a_host_record_line_is_one_snapshot(con):
    # `shodan host`: banners crawled days apart, one record (file, line)
    _records(con,
             ("3.3.3.3", "2018-04-01 00:00", 2000, "tcp", "mikrotik-bw",
              "MikroTik bandwidth-test server", "MikroTik RouterOS", [], [], "host", "", None,
              "f1", 7),
             ("3.3.3.3", "2018-04-20 00:00", 8291, "tcp", "mikrotik-winbox", None, None, [], [],
              "host", "", None, "f1", 7))
    home, = _profile(con, ("3.3.3.3", "2018-04-19", "access"))
    assert home["services"] == ["mikrotik:bandwidth-test", "mikrotik:routeros", "mikrotik:winbox"]
    assert (home["os_family"], home["host_kind"]) == ("RouterOS", "home-router")
    hosted, = _profile(con, ("3.3.3.3", "2018-04-19", "hosting"))
    assert hosted["host_kind"] == "compromised-server"  # a router rented in a cloud


def test_one_snapshot_describes_every_attack_and_ties_go_to_the_smaller_key(con):
    _records(con,
             # one snapshot: it is the nearest to each attack
             ("4.4.4.4", "2018-02-01 00:00", 22, "tcp", "ssh", "OpenSSH", "Linux"),
             ("4.4.4.4", "2018-02-01 09:00", 80, "tcp", "http", "nginx"),
             # a banner day and a host record as recent: the day ('2018-...' < 'f1:3') wins
             ("5.5.5.5", "2018-02-01 00:00", 22, "tcp", "ssh", "OpenSSH", "Linux"),
             ("5.5.5.5", "2018-02-01 00:00", 3389, "tcp", "rdp", None, "Windows 7 or 8", [],
              [], "host", "", None, "f1", 3))
    got = _profile(con, ("4.4.4.4", "2018-01-01", "access"), ("4.4.4.4", "2018-06-01", "access"),
                   ("5.5.5.5", "2018-03-01", "access"))
    assert [(r["ip"], str(r["host_record_ts"]), r["ports"], r["os"]) for r in got] == [
        ("4.4.4.4", "2018-02-01 09:00:00", [22, 80], "Linux"),
        ("4.4.4.4", "2018-02-01 09:00:00", [22, 80], "Linux"),
        ("5.5.5.5", "2018-02-01 00:00:00", [22], "Linux")]


@pytest.mark.parametrize("order", [1, -1])
def test_two_oses_at_the_same_time_give_the_last_by_name_whatever_the_order(con, order):
    banners = [("6.6.6.6", "2018-02-01 00:00", 22, "tcp", "ssh", "OpenSSH", "Linux"),
               ("6.6.6.6", "2018-02-01 00:00", 3389, "tcp", "rdp", None, "Windows 7 or 8")]
    _records(con, *banners[::order])
    host, = _profile(con, ("6.6.6.6", "2018-02-02", "access"))
    assert host["os"] == "Windows 7 or 8"


@pytest.mark.parametrize(("module", "product", "port", "transport", "banner", "want"), [
    ("ftp", "Microsoft ftpd", 21, "tcp", None, ["ftp:ftp"]),
    (None, None, 21, "tcp", "220 ProFTPD Server ready", ["ftp:ftp"]),
    (None, None, 21, "tcp", "SSH-2.0-OpenSSH", []),  # port 21 alone is not FTP
    ("smtp", "Exim smtpd", 25, "tcp", None, ["mail:smtp"]),
    (None, "Dovecot pop3d", 110, "tcp", None, ["mail:imap", "mail:pop3"]),
    ("pptp", None, 1723, "tcp", None, ["vpn:pptp"]),
    (None, None, 500, "udp", None, ["vpn:ipsec"]),
    (None, None, 500, "tcp", None, []),  # IKE is UDP
    ("http", "Squid http proxy", 3128, "tcp", None, ["proxy:http-proxy", "proxy:squid"]),
    ("http", "kangle", 3311, "tcp", None, ["proxy:kangle"]),
    ("http", "Jetty", 8080, "tcp", None, ["web:jetty"]),
    ("http", None, 80, "tcp", "HTTP/1.1 200 OK\r\nServer: nginx\r\n", ["web:nginx"]),
    ("http", "GPON Home Gateway httpd", 80, "tcp", None, ["router:gpon", "router:home-router"]),
    ("http", None, 80, "tcp", "HTTP/1.1 200 OK\r\n", ["web:http"]),  # the fallback
    # a named product says more than its banner: no banner rule on it
    ("http", "Apache httpd", 80, "tcp", "Server: nginx", ["web:apache"]),
])
def test_service_classes(module, product, port, transport, banner, want):
    got, = duckdb.sql(f"SELECT {services_sql('m', 'p', 'port', 't', 'b')} FROM (SELECT "
                      "?::VARCHAR AS m, ?::VARCHAR AS p, ?::INTEGER AS port, ?::VARCHAR AS t, "
                      "?::VARCHAR AS b)", params=[module, product, port, transport, banner]
                      ).fetchall()[0]
    assert got == want


@pytest.mark.parametrize(("os", "family"), [
    ("Windows Server 2008 R2", "Windows Server 2008"), ("Windows 2008", "Windows Server 2008"),
    ("Windows Server 2012 R2 Standard 9600", "Windows Server 2012"), ("Windows XP", "Windows XP"),
    ("Windows 7 or 8", "Windows 7/8"), ("Windows 6.1", "Windows 7/8"),
    ("Windows Server 2003", "Windows Server 2003"), ("Windows 10 Home 19041", "Windows 10/11"),
    ("MikroTik RouterOS 6.42", "RouterOS"), ("Linux 3.x", "Linux"), ("Ubuntu", "Linux"),
    ("FreeBSD 11", "FreeBSD"), ("Windows", "Windows (other)"), ("SomethingOS", None),
])
def test_os_families(os, family):
    got, = duckdb.sql(f"SELECT {os_family_sql('o')} FROM (SELECT ?::VARCHAR AS o)",
                      params=[os]).fetchall()[0]
    assert got == family
