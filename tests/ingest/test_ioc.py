"""IOC lists (formats/ioc.py): Feodo Tracker CSV and JSON, URLhaus CSV, plain lists, into the
intel kind ``ioc``: exact rows, IP ranges, quarantine, accounting, no organisation."""

from __future__ import annotations

import gzip
import ipaddress
import json
from datetime import datetime

import pytest

from tests.ingest.conftest import assert_invariant, manifest, quarantine, rows, run, write
from threatscope.ingest import reader
from threatscope.ingest.formats import FORMATS, sniff
from threatscope.ingest.formats import ioc as ioc_mod
from threatscope.ipnum import V4_MAPPED, install_ip_macros, ip_to_num

IOC_FORMATS = ["ioc-feodo-csv", "ioc-feodo-json", "ioc-urlhaus-csv", "ioc-list"]
COLS = ("source_line, ioc_type, value, ip_first_num, ip_last_num, port, url_domain, "
        "malware_family, threat, status, feed, ts, first_seen, last_seen, tags, reference")

FEODO_CSV = """\
################################################################
# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)          #
# Last updated: 2024-05-02 10:00:00 UTC                        #
################################################################
#
# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"
"2021-01-17 07:44:46","51.178.161.32","4643","online","2024-05-02","Dridex"
"2022-02-01 12:00:00","2001:DB8::1","443","offline","","QakBot"
"2022-02-01 12:00:00","999.1.1.1","443","offline","","QakBot"
"2023-03-03 03:03:03","198.51.100.7","8080","online","2024-05-01","Pink Slip Bot"
# "Number of entries: 3"
"""

FEODO_OLD = """\
# Feodo Tracker blocklist (older layout)
# Firstseen,DstIP,DstPort,LastOnline,Malware
2019-05-27 16:44:19,81.169.140.14,443,2019-06-03,Heodo
2019-05-28 01:02:03,192.0.2.44,8080,2019-06-04,TrickBot
"""

URLHAUS_CSV = """\
################################################################
# abuse.ch URLhaus Database Dump (CSV - recent URLs)           #
################################################################
#
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
"2345678","2024-05-01 12:34:56","http://1.2.3.4:8080/bins/mozi.m","online","2024-05-01 12:40:00","malware_download","32-bit,elf,mips,Mozi","https://urlhaus.abuse.ch/url/2345678/","lrz_urlhaus"
"2345679","2024-05-01 13:00:00","https://[2001:DB8::1]:8443/a""b<script>","offline","","malware_download","None","https://urlhaus.abuse.ch/url/2345679/","x"
"2345680","2024-05-01 14:00:00","not a url","offline","","malware_download","None","https://urlhaus.abuse.ch/url/2345680/","x"
"2345681","2024-05-01 15:00:00","http://Evil.Example.COM/'; DROP TABLE ioc;--","online","","malware_download","doc,Heodo,emotet","https://urlhaus.abuse.ch/url/2345681/","y"
"""

LIST = """\
# my blocklist
; another comment

1.2.3.4
10.1.2.3/8   # a whole network
::ffff:5.6.7.8
2001:DB8::/32
2001:db8::dead:BEEF
Evil.Example.COM.
hxxps://bad[.]example(.)org/x?a=<script>'%3B\"DROP_TABLE
hXXp://1.2.3[.]4/bins/x.sh ; dropper
evil[.]example[.]net
192.0.2.0/255.255.255.0
"""

GARBAGE = [
    "999.1.1.1", "1.2.3.4/33", "garbage here", "'; DROP TABLE ioc; --", "<script>alert(1)</script>",
    "\x01\x02junk", "http://", "localhost", "a" * 9000,
]


def _feodo_json(indent: int | None = 2) -> str:
    return json.dumps([
        {"ip_address": "1.2.3.4", "port": 443, "status": "online", "hostname": None,
         "as_number": 16276, "as_name": "OVH", "country": "FR",
         "first_seen": "2022-02-01 12:00:00", "last_online": "2024-05-01", "malware": "QakBot"},
        5,
        {"ip_address": "x<script>'; DROP TABLE", "port": 1, "malware": "Emotet"},
        {"ip_address": "::ffff:9.9.9.9", "port": "8080", "status": "offline",
         "first_seen": "2021-01-01 00:00:00", "last_online": None, "malware": "Heodo"},
    ], indent=indent)


def _ioc_rows(ws, where: str = "true") -> list[dict]:
    return rows(ws, "ioc", COLS, where)


def _num(ip: str) -> int:
    n = ip_to_num(ip)
    assert n is not None
    return n


def _net(cidr: str) -> tuple[int, int]:
    net = ipaddress.ip_network(cidr, strict=False)
    lo, hi = int(net.network_address), int(net.broadcast_address)
    return (V4_MAPPED + lo, V4_MAPPED + hi) if net.version == 4 else (lo, hi)


def _no_org(ws) -> None:
    with ws.connect() as con:
        assert con.execute("SELECT count(*) FROM org").fetchone()[0] == 0
        assert {r[0] for r in con.execute("SELECT DISTINCT org_id FROM ioc").fetchall()} <= {"-"}
    assert all(m["org_id"] is None for m in manifest(ws))


# -- Feodo Tracker CSV ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["auto", "ioc-feodo-csv"])
def test_feodo_csv(ws, tmp_path, fmt):
    s = run(ws, write(tmp_path / "ipblocklist.csv", FEODO_CSV), fmt=fmt)
    assert_invariant(s)
    assert s.per_file[0]["format"] == "ioc-feodo-csv" and not s.errors
    assert (s.lines_read, s.rows_written, s.rows_quarantined, s.comment_lines) == (11, 3, 1, 7)
    r = _ioc_rows(ws)
    assert [(x["source_line"], x["ioc_type"], x["value"], x["port"], x["malware_family"],
             x["status"], x["feed"], x["threat"]) for x in r] == [
        (7, "ip", "51.178.161.32", 4643, "dridex", "online", "feodotracker", "botnet_cc"),
        (8, "ip", "2001:db8::1", 443, "qakbot", "offline", "feodotracker", "botnet_cc"),
        (10, "ip", "198.51.100.7", 8080, "qakbot", "online", "feodotracker", "botnet_cc"),
    ]
    assert r[0]["ts"] == r[0]["first_seen"] == datetime(2021, 1, 17, 7, 44, 46)
    assert r[0]["last_seen"] == datetime(2024, 5, 2)
    assert r[1]["last_seen"] is None
    assert (r[0]["ip_first_num"], r[0]["ip_last_num"]) == (_num("51.178.161.32"),) * 2
    assert (r[1]["ip_first_num"], r[1]["ip_last_num"]) == (_num("2001:db8::1"),) * 2
    assert quarantine(ws) == [(9, "dst_ip is not an IP address")]
    _no_org(ws)


def test_feodo_csv_older_layout_heodo_is_emotet(ws, tmp_path):
    s = run(ws, write(tmp_path / "old.csv", FEODO_OLD))
    assert_invariant(s)
    assert s.per_file[0]["format"] == "ioc-feodo-csv"
    r = _ioc_rows(ws)
    assert [(x["value"], x["port"], x["malware_family"], x["status"], x["first_seen"],
             x["last_seen"]) for x in r] == [
        ("81.169.140.14", 443, "emotet", None, datetime(2019, 5, 27, 16, 44, 19),
         datetime(2019, 6, 3)),
        ("192.0.2.44", 8080, "trickbot", None, datetime(2019, 5, 28, 1, 2, 3),
         datetime(2019, 6, 4)),
    ]
    assert s.comment_lines == 2


def test_feodo_csv_uncommented_header_and_bad_lines(ws, tmp_path):
    data = ('"first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"\n'
            '"2021-01-17 07:44:46","51.178.161.32","4643","online","2024-05-02","Dridex"\n'
            '"only","three","fields"\n'
            '"yesterday","51.178.161.33","4643","online","2024-05-02","Dridex"\n'
            '"2021-01-17 07:44:46","51.178.161.34","4643","online","2024-05-02","Dri"dex"\n')
    s = run(ws, write(tmp_path / "f.csv", data))
    assert_invariant(s)
    assert s.per_file[0]["format"] == "ioc-feodo-csv"
    assert (s.rows_written, s.comment_lines) == (1, 1)
    assert quarantine(ws) == [
        (3, "not a Feodo Tracker CSV line (expected 5 or 6 fields)"),
        (4, "invalid first_seen"),
        (5, "not a Feodo Tracker CSV line (expected 5 or 6 fields)"),
    ]


# -- Feodo Tracker JSON --------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["auto", "ioc-feodo-json"])
@pytest.mark.parametrize("indent", [2, None])
def test_feodo_json(ws, tmp_path, fmt, indent):
    s = run(ws, write(tmp_path / "ipblocklist.json", _feodo_json(indent)), fmt=fmt)
    assert_invariant(s)
    assert s.per_file[0]["format"] == "ioc-feodo-json" and not s.errors
    assert (s.lines_read, s.rows_written, s.rows_quarantined) == (4, 2, 2)
    r = _ioc_rows(ws)
    assert [(x["source_line"], x["value"], x["port"], x["status"], x["malware_family"],
             x["ts"], x["last_seen"]) for x in r] == [
        (1, "1.2.3.4", 443, "online", "qakbot", datetime(2022, 2, 1, 12), datetime(2024, 5, 1)),
        (4, "9.9.9.9", 8080, "offline", "emotet", datetime(2021, 1, 1), None),
    ]
    assert r[1]["ip_first_num"] == r[1]["ip_last_num"] == _num("9.9.9.9")
    assert all(x["threat"] == "botnet_cc" and x["feed"] == "feodotracker" for x in r)
    raw = rows(ws, "ioc", "raw")[0]["raw"]
    assert json.loads(raw)["as_name"] == "OVH" and "\n" not in raw
    with ws.connect() as con:
        q = con.execute("SELECT source_line, reason, raw FROM quarantine ORDER BY 1").fetchall()
    assert q == [(2, "array element is not a JSON object", "5"),
                 (3, "ip_address is not an IP address",
                  '{"ip_address":"x<script>\'; DROP TABLE","port":1,"malware":"Emotet"}')]
    _no_org(ws)


def test_feodo_json_gzip_is_sniffed(ws, tmp_path):
    p = tmp_path / "ipblocklist.json.gz"
    p.write_bytes(gzip.compress(_feodo_json().encode()))
    s = run(ws, p)
    assert s.per_file[0]["format"] == "ioc-feodo-json" and s.rows_written == 2


def test_feodo_json_invalid_document_is_one_quarantined_record(ws, tmp_path):
    s = run(ws, write(tmp_path / "broken.json", _feodo_json()[:-20]), fmt="ioc-feodo-json")
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined) == (1, 0, 1)
    ((line, reason),) = quarantine(ws)
    assert line == 1 and reason.startswith("not valid JSON")
    s = run(ws, write(tmp_path / "obj.json", '{"ip_address": "1.2.3.4"}'), fmt="ioc-feodo-json")
    assert quarantine(ws)[-1] == (1, "not a JSON array of Feodo Tracker entries")


def test_feodo_json_nested_too_deeply_is_one_quarantined_record(ws, tmp_path):
    # (found by tests/fuzz: json's RecursionError failed the whole ingest, no manifest row)
    deep = write(tmp_path / "deep.json", "[" * 5000 + "]" * 5000)
    s = run(ws, deep, fmt="ioc-feodo-json")
    assert_invariant(s)
    assert (s.files, s.lines_read, s.rows_quarantined, s.errors) == (1, 1, 1, [])
    assert quarantine(ws) == [(1, "not valid JSON: nested too deeply")]


def test_feodo_json_too_big_is_refused(ws, tmp_path, monkeypatch):
    monkeypatch.setattr(ioc_mod, "JSON_MAX_BYTES", 100)
    s = run(ws, write(tmp_path / "big.json", _feodo_json()), fmt="ioc-feodo-json")
    assert_invariant(s)
    ((line, reason),) = quarantine(ws)
    assert line == 1 and "too large" in reason and s.rows_written == 0


# -- URLhaus CSV ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["auto", "ioc-urlhaus-csv"])
def test_urlhaus_csv(ws, tmp_path, fmt):
    s = run(ws, write(tmp_path / "csv.txt", URLHAUS_CSV), fmt=fmt)
    assert_invariant(s)
    assert s.per_file[0]["format"] == "ioc-urlhaus-csv" and not s.errors
    assert (s.lines_read, s.rows_written, s.rows_quarantined, s.comment_lines) == (9, 3, 1, 5)
    r = _ioc_rows(ws)
    assert [(x["source_line"], x["ioc_type"], x["value"], x["url_domain"], x["malware_family"],
             x["threat"], x["status"], x["feed"], x["tags"]) for x in r] == [
        (6, "url", "http://1.2.3.4:8080/bins/mozi.m", "1.2.3.4", "mozi", "malware_download",
         "online", "urlhaus", ["32-bit", "elf", "mips", "Mozi"]),
        (7, "url", 'https://[2001:DB8::1]:8443/a"b<script>', "2001:db8::1", None,
         "malware_download", "offline", "urlhaus", None),
        (9, "url", "http://Evil.Example.COM/'; DROP TABLE ioc;--", "evil.example.com", "emotet",
         "malware_download", "online", "urlhaus", ["doc", "Heodo", "emotet"]),
    ]
    assert r[0]["ts"] == r[0]["first_seen"] == datetime(2024, 5, 1, 12, 34, 56)
    assert r[0]["last_seen"] == datetime(2024, 5, 1, 12, 40)
    assert r[0]["reference"] == "https://urlhaus.abuse.ch/url/2345678/"
    assert r[0]["ip_first_num"] is None and r[0]["port"] is None
    assert quarantine(ws) == [(8, "url is not a URL")]
    _no_org(ws)


def test_urlhaus_older_layout_without_last_online(ws, tmp_path):
    data = ("# id,dateadded,url,url_status,threat,tags,urlhaus_link,reporter\n"
            '"1","2019-01-01 00:00:00","http://x.example/a.exe","offline","malware_download",'
            '"exe,Qbot","https://urlhaus.abuse.ch/url/1/","r"\n')
    s = run(ws, write(tmp_path / "old.csv", data), fmt="ioc-urlhaus-csv")
    assert_invariant(s)
    (r,) = _ioc_rows(ws)
    assert (r["value"], r["status"], r["threat"], r["tags"], r["malware_family"],
            r["reference"], r["last_seen"]) == (
        "http://x.example/a.exe", "offline", "malware_download", ["exe", "Qbot"], "qakbot",
        "https://urlhaus.abuse.ch/url/1/", None)


# -- plain lists ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["auto", "ioc-list"])
def test_plain_list(ws, tmp_path, fmt):
    s = run(ws, write(tmp_path / "blocklist.txt", LIST), fmt=fmt)
    assert_invariant(s)
    assert s.per_file[0]["format"] == "ioc-list" and not s.errors
    assert (s.lines_read, s.rows_written, s.rows_quarantined, s.comment_lines) == (13, 10, 0, 3)
    r = _ioc_rows(ws)
    got = [(x["source_line"], x["ioc_type"], x["value"], x["url_domain"]) for x in r]
    assert got == [
        (4, "ip", "1.2.3.4", None),
        (5, "cidr", "10.0.0.0/8", None),
        (6, "ip", "5.6.7.8", None),
        (7, "cidr", "2001:db8::/32", None),
        (8, "ip", "2001:db8::dead:beef", None),
        (9, "domain", "evil.example.com", "evil.example.com"),
        (10, "url", "https://bad.example.org/x?a=<script>'%3B\"DROP_TABLE", "bad.example.org"),
        (11, "url", "http://1.2.3.4/bins/x.sh", "1.2.3.4"),
        (12, "domain", "evil.example.net", "evil.example.net"),
        (13, "cidr", "192.0.2.0/24", None),
    ]
    ranges = {x["value"]: (x["ip_first_num"], x["ip_last_num"]) for x in r}
    assert ranges["1.2.3.4"] == (_num("1.2.3.4"),) * 2
    assert ranges["10.0.0.0/8"] == _net("10.0.0.0/8") == (V4_MAPPED + (10 << 24),
                                                         V4_MAPPED + (11 << 24) - 1)
    assert ranges["5.6.7.8"] == (_num("::ffff:5.6.7.8"),) * 2 == (_num("5.6.7.8"),) * 2
    assert ranges["2001:db8::/32"] == _net("2001:db8::/32")
    assert ranges["2001:db8::dead:beef"] == (_num("2001:db8::dead:beef"),) * 2
    assert ranges["192.0.2.0/24"] == _net("192.0.2.0/24")
    assert ranges["evil.example.com"] == (None, None)
    assert all(x["feed"] == "list" and x["ts"] is None and x["malware_family"] is None
               for x in r)
    _no_org(ws)


def test_plain_list_garbage_is_quarantined(ws, tmp_path):
    data = "1.2.3.4\n" + "\n".join(GARBAGE) + "\n" + "5.6.7.8\n"
    bad = b"\xff\xfe\x00binary\n" + b"b" * (reader.MAX_LINE + 5) + b"\n"
    s = run(ws, write(tmp_path / "mixed.txt", data.encode() + bad), fmt="ioc-list")
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined) == (len(GARBAGE) + 4, 2, 11)
    q = quarantine(ws)
    assert q == [(i + 2, ioc_mod.NOT_INDICATOR) for i in range(len(GARBAGE))] + [
        (len(GARBAGE) + 3, "invalid UTF-8"), (len(GARBAGE) + 4, "line too long")]
    with ws.connect() as con:
        files = con.execute("SELECT DISTINCT source_file, format FROM quarantine").fetchall()
        raws = [x[0] for x in con.execute("SELECT raw FROM quarantine ORDER BY source_line")
                .fetchall()]
    assert files == [(str(tmp_path / "mixed.txt"), "ioc-list")]
    assert raws[3] == "'; DROP TABLE ioc; --" and raws[4] == "<script>alert(1)</script>"
    assert [x["value"] for x in _ioc_rows(ws)] == ["1.2.3.4", "5.6.7.8"]


def test_plain_list_outside_the_lake_number_range_keeps_the_indicator(ws, tmp_path):
    # DECIMAL(38,0) holds numbers below 10**38: fe80::/10 and ff00::/8 have no number there
    run(ws, write(tmp_path / "v6.txt", "fe80::1\nfc00::/7\n2000::/3\n"), fmt="ioc-list")
    r = {x["value"]: (x["ip_first_num"], x["ip_last_num"]) for x in _ioc_rows(ws)}
    assert r == {"fe80::1": (None, None), "fc00::/7": (None, None),
                 "2000::/3": _net("2000::/3")}


def test_plain_list_ingested_twice_adds_nothing(ws, tmp_path):
    p = write(tmp_path / "list.txt", LIST)
    first = run(ws, p)
    again = run(ws, p)
    assert first.rows_written == 10
    assert again.rows_written == 0 and again.skipped_files == 1
    assert len(_ioc_rows(ws)) == 10 and len(manifest(ws)) == 1


def test_big_ip_list(ws, tmp_path):
    n = 200_000
    lines = "\n".join(f"{10 + i % 200}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
                      for i in range(n))
    s = run(ws, write(tmp_path / "big.txt", "# many\n" + lines + "\n"))
    assert_invariant(s)
    assert s.per_file[0]["format"] == "ioc-list"
    assert (s.rows_written, s.rows_quarantined, s.comment_lines) == (n, 0, 1)
    with ws.connect() as con:
        install_ip_macros(con)
        bad = con.execute("SELECT count(*) FROM ioc WHERE ip_first_num <> ts_ip_num(value) "
                          "OR ip_first_num IS NULL").fetchone()[0]
    assert bad == 0


# -- sniffing and the `only` restriction ---------------------------------------------------
def test_sniff_scores():
    assert sniff(FEODO_CSV.splitlines()) == "ioc-feodo-csv"
    assert sniff(FEODO_OLD.splitlines()) == "ioc-feodo-csv"
    assert sniff(URLHAUS_CSV.splitlines()) == "ioc-urlhaus-csv"
    assert sniff(LIST.splitlines()) == "ioc-list"
    assert FORMATS["ioc-list"].sniff(LIST.splitlines()) == 0.6
    # mostly garbage: not a list
    assert FORMATS["ioc-list"].sniff(["1.2.3.4", *GARBAGE[:3]]) == 0.0
    # the log formats' lines are no indicators
    logs = [
        '192.0.2.1 - - [01/May/2018:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"',
        "#Software: Microsoft IIS\n#Fields: date time c-ip cs-method cs-uri-stem sc-status",
        "2018-05-01 10:00:00 192.0.2.1 GET /x 200",
        '{"timestamp": "2018-05-01T10:00:00Z", "event_type": "http", "src_ip": "1.2.3.4"}',
        "#separator \\x09\n#fields\tts\tuid\tid.orig_h\n1525168800.0\tC1\t1.2.3.4",
    ]
    for text in logs:
        for name in IOC_FORMATS:
            assert FORMATS[name].sniff(text.splitlines()) < 0.5, (name, text)


def test_only_ioc_formats_refuses_a_web_log(ws, tmp_path):
    log = write(tmp_path / "access.log",
                '192.0.2.1 - - [01/May/2018:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"\n')
    lst = write(tmp_path / "list.txt", LIST)
    s = run(ws, log, lst, only=IOC_FORMATS)
    assert len(s.errors) == 1 and s.errors[0].startswith(f"{log}: not a ioc-")
    assert "ioc-list" in s.errors[0]
    assert s.files == 1 and s.rows_written == 10
    with ws.connect() as con:
        assert con.execute("SELECT count(*) FROM http").fetchone()[0] == 0
    _no_org(ws)


def test_family_table():
    assert ioc_mod.family_key("Heodo") == "emotet"
    assert ioc_mod.family_key("Pink Slip Bot") == "qakbot"
    assert ioc_mod.family_key("Some  New Bot") == "some-new-bot"
    assert ioc_mod.family_key(" QakBot ") == "qakbot"
    assert ioc_mod.family_key("None") is None
    assert set(ioc_mod.FAMILIES.values()) >= {"emotet", "qakbot", "dridex", "trickbot",
                                               "bazarloader", "mozi", "mirai"}
