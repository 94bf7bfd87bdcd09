"""The shodan format: banner exports and host records -> host_record rows (intel, no org)."""

from __future__ import annotations

import gzip
import ipaddress
import json
import random
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from threatscope import schema, sqlfn
from threatscope.ingest import ingest_paths
from threatscope.ingest.formats import FORMATS, sniff
from threatscope.workspace import Workspace

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HANDMADE = SHARED / "shodan" / "handmade.json"

COLS = [c for c, _ in schema.HOST_RECORD if c not in ("file_id", "source_file", "raw")]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws", create=True)


def banner(**kw) -> dict:
    b = {"ip_str": "198.51.100.7", "ip": 3325256711, "port": 443, "transport": "tcp",
         "product": "nginx", "version": "1.18.0", "os": None, "org": "Example Hosting",
         "isp": "Example ISP", "asn": "AS64500", "hostnames": ["www.example.net"],
         "domains": ["example.net"], "tags": ["cloud"], "cpe": ["cpe:/a:nginx:nginx:1.18.0"],
         "cpe23": ["cpe:2.3:a:nginx:nginx:1.18.0"],
         "vulns": {"cve-2021-23017": {"verified": False}, "CVE-2019-20372": {"cvss": 5.3}},
         "location": {"country_code": "NL", "city": "Amsterdam"},
         "cloud": {"provider": "ExampleCloud", "region": "eu"},
         "timestamp": "2023-04-05T06:07:08.123456", "data": "HTTP/1.1 200 OK\r\n\r\n",
         "_shodan": {"module": "https", "crawler": "test"}}
    b.update(kw)
    return {k: v for k, v in b.items() if v is not ...}


def write(path: Path, lines: list, gz: bool = False) -> Path:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def ingest(ws: Workspace, *paths: Path, fmt: str = "auto"):
    s = ingest_paths(ws, [str(p) for p in paths], fmt=fmt)
    for f in s.per_file:
        if f["status"] == "ingested":
            assert f["lines_read"] == (f["rows_written"] + f["rows_quarantined"]
                                       + f["comment_lines"] + f["lines_ignored"]), f
    assert not s.errors
    return s


def rows(ws: Workspace, cols: list[str] | None = None, where: str = "true") -> list[dict]:
    cols = cols or COLS
    with ws.connect() as con:
        cur = con.execute(f"SELECT {', '.join(cols)} FROM host_record WHERE {where} "
                          "ORDER BY source_file, source_line, port NULLS FIRST")
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def quarantine(ws: Workspace) -> list[tuple]:
    with ws.connect() as con:
        return con.execute("SELECT source_file, source_line, format, reason FROM quarantine "
                           "ORDER BY source_file, source_line").fetchall()


def test_banner_line_columns(ws, tmp_path):
    f = write(tmp_path / "banners.json", [banner()])
    s = ingest(ws, f)
    assert s.per_file[0]["format"] == "shodan" and s.rows_written == 1
    assert rows(ws) == [{
        "org_id": schema.NO_ORG, "ts": datetime(2023, 4, 5, 6, 7, 8, 123456),
        "event_date": datetime(2023, 4, 5).date(), "event_kind": "host_record",
        "source_line": 1, "ip": "198.51.100.7", "ip_num": 0xFFFF_0000_0000 + 3325256711,
        "port": 443, "transport": "tcp", "module": "https", "product": "nginx",
        "version": "1.18.0", "os": None, "hostnames": ["www.example.net"],
        "domains": ["example.net"], "tags": ["cloud"], "cpe": ["cpe:2.3:a:nginx:nginx:1.18.0"],
        "vulns": ["CVE-2019-20372", "CVE-2021-23017"], "as_org": "Example Hosting",
        "isp": "Example ISP", "asn": 64500, "country_code": "NL",
        "cloud_provider": "ExampleCloud", "banner": "HTTP/1.1 200 OK\r\n\r\n",
        "record_type": "banner"}]
    assert rows(ws, ["raw"])[0]["raw"] == json.dumps(banner())
    with ws.connect() as con:  # intel: no organisation registered
        assert con.execute("SELECT count(*) FROM org").fetchall() == [(0,)]


def test_banner_fallbacks(ws, tmp_path):
    """cpe without cpe23, vulns as a list, integer ip without ip_str, no timestamp."""
    f = write(tmp_path / "b.json", [
        banner(cpe23=..., vulns=["cve-2020-0001"], ip_str=..., timestamp=..., asn="64501",
               hostnames="one.example", tags=[], location=..., country_code="de")])
    ingest(ws, f, fmt="shodan")
    (r,) = rows(ws)
    assert (r["ip"], r["cpe"], r["vulns"], r["ts"], r["asn"], r["hostnames"], r["tags"],
            r["country_code"]) == ("198.51.100.7", ["cpe:/a:nginx:nginx:1.18.0"],
                                   ["CVE-2020-0001"], None, 64501, ["one.example"], [], "DE")


def host_record(**kw) -> dict:
    h = {"ip_str": "203.0.113.9", "ports": [21, 22, 80], "os": "Windows Server 2008 R2",
         "org": "Host Org", "isp": "Host ISP", "asn": "AS64511", "hostnames": ["h.example"],
         "domains": ["example"], "tags": ["vpn"], "country_code": "FR",
         "last_update": "2024-01-02T03:04:05.000000", "vulns": ["CVE-2014-0160"],
         "data": [
             {"port": 21, "transport": "tcp", "product": "Microsoft ftpd",
              "timestamp": "2024-01-01T00:00:00.000000", "data": "220 FTP\r\n",
              "_shodan": {"module": "ftp"}},
             {"port": 22, "transport": "tcp", "product": "OpenSSH", "hostnames": [],
              "os": "Linux", "asn": "AS1", "vulns": {"cve-2023-38408": {}},
              "data": "SSH-2.0-OpenSSH_8.9", "_shodan": {"module": "ssh"}},
             {"port": 80, "transport": "tcp", "product": "IIS", "org": "Other Org",
              "location": {"country_code": "BE"}, "tags": ["honeypot"],
              "timestamp": "2024-01-03T00:00:00.000000", "_shodan": {"module": "http"}},
         ]}
    h.update(kw)
    return {k: v for k, v in h.items() if v is not ...}


def test_host_record_three_banners(ws, tmp_path):
    f = write(tmp_path / "host.json", [host_record()])
    s = ingest(ws, f)
    (pf,) = s.per_file
    assert pf["format"] == "shodan"
    assert (pf["lines_read"], pf["rows_written"], pf["derived_rows_by_kind"]) == \
        (1, 1, {"host_record": 2})
    got = rows(ws, ["source_line", "ip", "port", "product", "os", "hostnames", "tags", "as_org",
                    "isp", "asn", "country_code", "vulns", "ts", "banner", "record_type",
                    "module"])
    common = {"source_line": 1, "ip": "203.0.113.9", "isp": "Host ISP", "record_type": "host"}
    assert got == [
        common | {"port": 21, "product": "Microsoft ftpd", "os": "Windows Server 2008 R2",
                  "hostnames": ["h.example"], "tags": ["vpn"], "as_org": "Host Org",
                  "asn": 64511, "country_code": "FR", "vulns": None,
                  "ts": datetime(2024, 1, 1), "banner": "220 FTP\r\n", "module": "ftp"},
        # its own os and asn; an empty hostnames list inherits the host's; no timestamp:
        # the host's last_update
        common | {"port": 22, "product": "OpenSSH", "os": "Linux", "hostnames": ["h.example"],
                  "tags": ["vpn"], "as_org": "Host Org", "asn": 1, "country_code": "FR",
                  "vulns": ["CVE-2023-38408"], "ts": datetime(2024, 1, 2, 3, 4, 5),
                  "banner": "SSH-2.0-OpenSSH_8.9", "module": "ssh"},
        common | {"port": 80, "product": "IIS", "os": "Windows Server 2008 R2",
                  "hostnames": ["h.example"], "tags": ["honeypot"], "as_org": "Other Org",
                  "asn": 64511, "country_code": "BE", "vulns": None,
                  "ts": datetime(2024, 1, 3), "banner": None, "module": "http"},
    ]
    assert {r["raw"] for r in rows(ws, ["raw"])} == {json.dumps(host_record())}


def test_host_record_ports_only_and_bare(ws, tmp_path):
    f = write(tmp_path / "hosts.json", [
        host_record(data=[], ports=[443, 8443]),
        host_record(ip_str="203.0.113.10", data=..., ports=..., last_update="2024-02-01T00:00:00"),
        host_record(ip_str="203.0.113.11", data=..., ports=[]),
    ])
    s = ingest(ws, f, fmt="shodan")
    (pf,) = s.per_file
    assert (pf["lines_read"], pf["rows_written"], pf["derived_rows_by_kind"]) == \
        (3, 3, {"host_record": 1})
    got = rows(ws, ["source_line", "ip", "port", "product", "vulns", "ts", "record_type"])
    assert got == [
        {"source_line": 1, "ip": "203.0.113.9", "port": 443, "product": None,
         "vulns": ["CVE-2014-0160"], "ts": datetime(2024, 1, 2, 3, 4, 5), "record_type": "host"},
        {"source_line": 1, "ip": "203.0.113.9", "port": 8443, "product": None,
         "vulns": ["CVE-2014-0160"], "ts": datetime(2024, 1, 2, 3, 4, 5), "record_type": "host"},
        {"source_line": 2, "ip": "203.0.113.10", "port": None, "product": None,
         "vulns": ["CVE-2014-0160"], "ts": datetime(2024, 2, 1), "record_type": "host"},
        {"source_line": 3, "ip": "203.0.113.11", "port": None, "product": None,
         "vulns": ["CVE-2014-0160"], "ts": datetime(2024, 1, 2, 3, 4, 5), "record_type": "host"},
    ]


def test_ipv6_and_ipv4_mapped(ws, tmp_path):
    f = write(tmp_path / "v6.json", [
        banner(ip_str=..., ip=..., ipv6="2001:DB8:0:0:0:0:0:1"),
        banner(ip_str="::ffff:192.0.2.1", ip=...),
        banner(ip_str="::FFFF:C000:0202", ip=...),
        banner(ip_str=..., ip=..., ipv6="2001:db8:0:0:1:0:0:1"),
        host_record(ip_str="::ffff:203.0.113.5"),
    ])
    ingest(ws, f)
    got = [(r["source_line"], r["ip"], r["ip_num"]) for r in rows(ws)]
    assert got == [
        (1, "2001:db8::1", 0x2001_0DB8 << 96 | 1),
        (2, "192.0.2.1", 0xFFFF_C000_0201),
        (3, "192.0.2.2", 0xFFFF_C000_0202),
        (4, "2001:db8::1:0:0:1", 0x2001_0DB8 << 96 | 1 << 48 | 1),
        (5, "203.0.113.5", 0xFFFF_CB00_7105), (5, "203.0.113.5", 0xFFFF_CB00_7105),
        (5, "203.0.113.5", 0xFFFF_CB00_7105),
    ]


def test_hostile_banner_is_stored_verbatim(ws, tmp_path):
    text = ("HTTP/1.1 200 OK\r\nX: '; DROP TABLE host_record; --\r\n\r\n"
            "<script>alert(document.cookie)</script><img src=x onerror=alert(1)>"
            "\x00\x01\x1b[31m\x7f${jndi:ldap://x/a}{{7*7}}\u202e")
    long = "A" * 5000
    f = write(tmp_path / "evil.json", [banner(data=text), banner(data=long, port=8080)])
    ingest(ws, f)
    got = rows(ws, ["banner", "port"])
    assert got == [{"banner": text, "port": 443}, {"banner": "A" * 4096, "port": 8080}]
    with ws.connect() as con:  # nothing was evaluated: the table is there, the rows intact
        assert con.execute("SELECT count(*) FROM host_record").fetchall() == [(2,)]


def test_malformed_lines_are_quarantined(ws, tmp_path):
    f = write(tmp_path / "bad.json", [
        banner(),
        "not json at all",
        "[1, 2, 3]",
        banner(ip_str="999.1.1.1"),
        banner(ip_str=..., ip=...),
        banner(timestamp="yesterday"),
        banner(port=70000),
        banner(port=-1),
        banner(port="http"),
        "",
        host_record(data=[{"port": 21}, {"port": 99999}]),
        host_record(data=[{"port": 21}, "not a banner"]),
        host_record(last_update="soon", data=[]),
        '{"ip_str": "1.2.3.4", "port": 80, "_shodan": {}',
        banner(ip_str="192.0.2.99", port=0),
    ])
    s = ingest(ws, f, fmt="shodan")
    (pf,) = s.per_file
    assert (pf["lines_read"], pf["rows_written"], pf["rows_quarantined"],
            pf["comment_lines"]) == (15, 2, 12, 1)
    name = str(f)
    port = "invalid port (not an integer in 0..65535)"
    assert quarantine(ws) == [(name, n, "shodan", r) for n, r in [
        (2, "invalid JSON"), (3, "invalid JSON"), (4, "missing or invalid ip_str"),
        (5, "missing or invalid ip_str"), (6, "invalid timestamp"), (7, port), (8, port),
        (9, port), (11, port), (12, "invalid banner in data"), (13, "invalid timestamp"),
        (14, "invalid JSON")]]
    assert [(r["source_line"], r["port"]) for r in rows(ws)] == [(1, 443), (15, 0)]
    with ws.connect() as con:
        raw = con.execute("SELECT raw FROM quarantine WHERE source_line = 2").fetchall()
    assert raw == [("not json at all",)]


def test_gzip_export_same_rows(ws, tmp_path):
    lines = [banner(), banner(port=80, ip_str="198.51.100.8"), host_record()]
    plain = write(tmp_path / "export.json", lines)
    packed = write(tmp_path / "export.json.gz", lines, gz=True)
    ws_gz = Workspace.open(tmp_path / "ws-gz", create=True)  # (same content: one file_id)
    got = {}
    for w, f in ((ws, plain), (ws_gz, packed)):
        s = ingest(w, f)
        assert [(p["format"], p["lines_read"], p["rows_written"]) for p in s.per_file] == \
            [("shodan", 3, 3)]
        got[f.name] = rows(w)
    assert len(got["export.json"]) == 5 and got["export.json"] == got["export.json.gz"]


# -- sniffing ------------------------------------------------------------------------------
OTHER_JSON = {
    "http-jsonl": [{"ts": "2024-01-01T00:00:00Z", "src_ip": "192.0.2.1", "method": "GET",
                    "uri": "/", "headers": {"host": "x"}, "port": 80, "data": "x"}],
    "eve": [{"timestamp": "2024-01-01T00:00:00.000000+0000", "event_type": "http",
             "src_ip": "192.0.2.1", "dest_ip": "192.0.2.2", "dest_port": 80,
             "http": {"url": "/", "hostname": "x"}}],
    "winevent-json": [{"Event": {"System": {"EventID": 1, "Channel": "Security"},
                            "EventData": {"ip_str": "1.2.3.4"}}}],
    "zeek": [{"ts": 1700000000.0, "id.orig_h": "192.0.2.1", "id.orig_p": 1,
              "id.resp_h": "192.0.2.2", "id.resp_p": 80, "host": "x", "port": 80}],
}


def test_sniff_shodan_banners_and_hosts():
    assert sniff([json.dumps(banner()) for _ in range(3)]) == "shodan"
    assert sniff([json.dumps(host_record())]) == "shodan"
    assert sniff([json.dumps(host_record(data=..., ports=[1]))]) == "shodan"
    # a host record longer than the head the sniffer reads: the cut-off first line
    assert sniff([json.dumps(host_record(data=[banner()] * 500))[:60000]]) == "shodan"
    # without the telling keys: not claimed
    assert sniff([json.dumps({"ip_str": "1.2.3.4", "hello": 1})]) is None


@pytest.mark.parametrize("fmt", sorted(OTHER_JSON))
def test_sniff_leaves_other_json_formats(fmt):
    lines = [json.dumps(o) for o in OTHER_JSON[fmt]] * 3
    assert FORMATS["shodan"].sniff(lines) == 0.0
    assert sniff(lines) == fmt


def test_ts_ip_canon_matches_ipaddress():
    con = duckdb.connect()
    sqlfn.install(con)
    rnd = random.Random(7)
    values = ["::", "::1", "1::", "::ffff:0:0", "fe80::1%eth0", " 8.8.8.8 ", "01.2.3.4", "x",
              "1:2:3:4:5:6:7:8", "1:0:0:2:0:0:0:3", "::FFFF:1.2.3.4", "2001:db8::1.2.3.4"]
    for _ in range(2000):
        groups = [rnd.choice([0, 0, rnd.getrandbits(16), rnd.getrandbits(4)]) for _ in range(8)]
        n = sum(g << (16 * (7 - i)) for i, g in enumerate(groups))
        values.append(rnd.choice([ipaddress.IPv6Address(n).exploded,
                                   str(ipaddress.IPv6Address(n)).upper(),
                                   str(ipaddress.IPv4Address(rnd.getrandbits(32)))]))

    def ref(v: str) -> str | None:
        try:
            a = ipaddress.ip_address(v.strip().split("%")[0])
        except ValueError:
            return None
        return str(a.ipv4_mapped) if a.version == 6 and a.ipv4_mapped else str(a)

    got = con.execute("SELECT v, ts_ip_canon(v) FROM (SELECT unnest(?) AS v)",
                      [values]).fetchall()
    assert [g for v, g in got] == [ref(v) for v, _ in got]


@pytest.mark.skipif(not HANDMADE.exists(), reason="../shared/data/shodan not present")
def test_shared_handmade(ws):
    s = ingest(ws, HANDMADE)
    lines = sum(1 for x in open(HANDMADE, "rb") if x.strip())
    (pf,) = s.per_file
    assert pf["format"] == "shodan"
    assert (pf["lines_read"], pf["rows_written"], pf["rows_quarantined"]) == (lines, lines, 0)
    got = rows(ws, ["ip", "port", "asn", "record_type"])
    assert all(r["record_type"] == "banner" and r["asn"] and r["port"] is not None for r in got)
    assert all(ipaddress.ip_address(r["ip"]) for r in got)
