"""Fuzzing of the line-format parsers (w3c, zeek, combined, common, the IOC lists): hostile files
built from valid seed lines, ingested with the format forced and auto-detected; the properties
are in ``harness``."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.harness import Input, blocks, examples, files, labs_fixture, text_inputs
from threatscope.ingest.formats import access

labs = labs_fixture()

ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
paths = st.sampled_from(["/", "/index.html", "/a/b.php", "/cgi-bin/x", "/%27or+1", "/x.asp"])
statuses = st.sampled_from(["200", "302", "404", "500", "-"])
secs = st.integers(0, 59).map(lambda s: f"{s:02d}")

# lines of the other formats, mixed into files (a log that changed format, a concatenation)
OTHERS = [
    b'192.0.2.1 - - [01/May/2018:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"',
    b"#Fields: date time c-ip cs-method cs-uri-stem sc-status",
    b"2018-05-01 10:00:00 192.0.2.1 GET / 200",
    b"#separator \\x09",
    b"#fields\tts\tid.orig_h\tmethod\turi\tstatus_code",
    b"1525168800.1\t192.0.2.1\tGET\t/\t200",
    b'{"timestamp": "2018-05-01T10:00:00+0000", "event_type": "http", "src_ip": "192.0.2.9"}',
    b'"2021-01-17 07:44:46","51.178.161.32","4643","online","2024-05-02","Dridex"',
    b"192.0.2.1", b"example.com", b"hxxp://evil[.]example/x", b"10.0.0.0/8",
]


# -- W3C --------------------------------------------------------------------------------------
W3C_FIELDS = [
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
    "cs(Referer) sc-status sc-substatus sc-win32-status time-taken",
    "date time c-ip cs-method cs-uri sc-status sc-bytes cs-host cs-version c-port",
    "time c-ip cs-method cs-uri-stem sc-status cs-version",  # the date from #Date:
]
W3C_EXTRA = [f"#Fields: {f}".encode() for f in W3C_FIELDS] + [
    b"#Fields:", b"#Fields: date", b"#Fields: time time time", b"#Fields: date time c-ip c-ip",
    b"#Fields: DATE TIME C-IP", b"#Date: 2018-02-30 00:00:00", b"#Date:", b"#Date: yesterday",
    b"#Software: IIS", b"#Version: 1.0", b"#Remark: x"] + OTHERS


@st.composite
def w3c_seed(draw) -> list[bytes]:
    layout = draw(st.integers(0, len(W3C_FIELDS) - 1))
    out = [b"#Software: Microsoft Internet Information Services 10.0", b"#Version: 1.0",
           b"#Date: 2018-05-01 00:00:00", f"#Fields: {W3C_FIELDS[layout]}".encode()]
    for _ in range(draw(st.integers(1, 4))):
        ip, path, status, s = draw(ips), draw(paths), draw(statuses), draw(secs)
        if layout == 0:
            line = (f"2018-05-01 10:00:{s} 10.0.0.5 GET {path} q=1 80 - {ip} "
                    f"Mozilla/5.0+(Windows+NT) - {status} 0 0 15")
        elif layout == 1:
            line = (f"2018-05-01 10:00:{s} {ip} POST {path}?a=b {status} 512 www.example.com "
                    "HTTP/1.1 4000")
        else:
            line = f"10:00:{s} {ip} GET {path} {status} HTTP/1.1"
        out.append(line.encode())
    return out


W3C_MINIMAL = (b"#Fields: date time c-ip cs-method cs-uri-stem sc-status\n"
               b"2018-05-01 10:00:00 192.0.2.1 GET / 200\n")


@examples()
@given(block=blocks, inputs=files(text_inputs(w3c_seed(), b" ", W3C_EXTRA)))
@example(block=None, inputs=[Input.text(W3C_MINIMAL)])
def test_w3c(labs, inputs, block):
    labs("w3c").check(inputs, "w3c", ".log", block)


# -- Zeek -------------------------------------------------------------------------------------
ZEEK_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p trans_depth method host uri "
               "referrer version user_agent request_body_len response_body_len status_code "
               "status_msg username").split()
ZEEK_EXTRA = [
    b"#separator \\x09", b"#separator ,", b"#separator \\x", b"#separator", b"#separator \\xzz",
    b"#path\tconn", b"#path\thttp", b"#unset_field\t", b"#empty_field\t-",
    ("#fields\t" + "\t".join(ZEEK_FIELDS[:5])).encode(), b"#fields", b"#fields\tts\tts",
    b"#types\ttime", b"#close\t2018-05-01-11-00-00"] + OTHERS


@st.composite
def zeek_seed(draw) -> list[bytes]:
    out = [b"#separator \\x09", b"#set_separator\t,", b"#empty_field\t(empty)",
           b"#unset_field\t-", b"#path\thttp", b"#open\t2018-05-01-10-00-00",
           ("#fields\t" + "\t".join(ZEEK_FIELDS)).encode(), b"#types\ttime\tstring\taddr"]
    for k in range(draw(st.integers(1, 4))):
        ts = draw(st.sampled_from(["1525168800.123456", "1525168801", "0.0"]))
        row = [ts, f"C{k}", draw(ips), "40000", "10.0.0.3", "80", "1", "GET", "(empty)",
               draw(paths), "-", "1.1", "Mozilla/5.0 (X)", "0", "512",
               draw(statuses), "OK", "-"]
        out.append("\t".join(row).encode())
    if draw(st.booleans()):
        out.append(b"#close\t2018-05-01-11-00-00")
    return out


@st.composite
def zeek_json_seed(draw) -> list[bytes]:
    out = []
    for k in range(draw(st.integers(1, 4))):
        ts = draw(st.sampled_from(["1525168800.5", '"2018-05-01T10:00:00Z"', '"1525168800"']))
        out.append((f'{{"ts": {ts}, "uid": "C{k}", "id.orig_h": "{draw(ips)}", "id.orig_p": 4000, '
                    f'"id.resp_h": "10.0.0.3", "id.resp_p": 80, "method": "GET", '
                    f'"uri": "{draw(paths)}", "status_code": 200, "version": "1.1"}}').encode())
    return out


@examples()
@given(block=blocks, inputs=files(st.one_of(text_inputs(zeek_seed(), b"\t", ZEEK_EXTRA),
                                 text_inputs(zeek_json_seed(), b",", OTHERS))))
# found by fuzzing: a bad escape in '#separator' (UnicodeDecodeError) failed the whole file
@example(block=None, inputs=[Input.text(b"#separator \\\n#fields\\ts\\method\\uri\n1\\GET\\/\n")])
def test_zeek(labs, inputs, block):
    labs("zeek").check(inputs, "zeek", ".log", block)


# -- combined / common ------------------------------------------------------------------------
ACCESS_EXTRA = [
    b'192.0.2.1 - - [01/May/2018:10:00:00 +0000] "-" 400 0 "-" "-"',
    b'192.0.2.1 - - [01/May/2018:10:00:00 +0000] "\\x16\\x03\\x01" 400 0 "-" "-"',
    b'192.0.2.1 - - [01/May/2018:10:00:00 +0000] "GET /a\\"b HTTP/1.1" 200 1 "-" "u\\"a"',
    b'192.0.2.1 - - [01/May/2018:10:00:00] "GET / HTTP/1.1" 200 1',
    b'192.0.2.1 - - [01/May/2018:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "x-fwd" 0.003',
    b'192.0.2.1 - - [01/May/2018:10:00:00 +0000] "GET /a b c HTTP/1.1" 200 1',
    b'192.0.2.1 - - [] "" - -', b'- - - [-] "-" - -'] + OTHERS


@st.composite
def access_seed(draw, combined: bool) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(1, 5))):
        zone = draw(st.sampled_from(["+0000", "-0700", "+0530"]))
        user = draw(st.sampled_from(["-", "bob", "DOM\\\\x"]))
        line = (f'{draw(ips)} - {user} [01/May/2018:10:00:{draw(secs)} {zone}] '
                f'"{draw(st.sampled_from(["GET", "POST", "PROPFIND"]))} {draw(paths)} HTTP/1.1" '
                f'{draw(statuses)} {draw(st.sampled_from(["512", "-", "0"]))}')
        if combined:
            line += ' "http://example.com/" "Mozilla/5.0 (X11; Linux)"'
        out.append(line.encode())
    return out


# the regex the combined/common sniffers used, back-tracking quadratically on many quotes
_COMBINED_RX = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] ".*" \S+ \S+ ".*" ".*"')


@given(st.one_of(st.text(st.sampled_from('"[] a-\t\u2028'), max_size=30),
                 st.text(st.sampled_from('"[] a-'), max_size=30).map(
                     lambda s: '192.0.2.1 - - [x] "' + s)))
def test_combined_sniff_matches_its_regex(line):
    assert access._is_combined(line) == bool(_COMBINED_RX.match(line))


@examples()
@given(block=blocks, inputs=files(text_inputs(access_seed(True), b" ", ACCESS_EXTRA)))
def test_combined(labs, inputs, block):
    labs("combined").check(inputs, "combined", ".log", block)


@examples()
@given(block=blocks, inputs=files(text_inputs(access_seed(False), b" ", ACCESS_EXTRA)))
def test_common(labs, inputs, block):
    labs("common").check(inputs, "common", ".log", block)


# -- IOC lists --------------------------------------------------------------------------------
INDICATORS = ["192.0.2.1", "2001:db8::1", "::ffff:1.2.3.4", "10.1.2.3/8", "2001:db8::/32",
              "evil.example", "EVIL.example.", "xn--80ak6aa92e.com", "http://evil.example/a?b=c",
              "hxxps://evil[.]example/x", "ftp://[2001:db8::1]:21/f", "evil[dot]example",
              "1.2.3.0/24 ; SBL123", "192.0.2.9 # comment", "fc00::/7"]


@st.composite
def ioc_list_seed(draw) -> list[bytes]:
    out = [b"# blocklist", b"; generated"] if draw(st.booleans()) else []
    out += [x.encode() for x in draw(st.lists(st.sampled_from(INDICATORS), min_size=1,
                                              max_size=6))]
    return out


@examples()
@given(block=blocks, inputs=files(text_inputs(ioc_list_seed(), b".", OTHERS)))
def test_ioc_list(labs, inputs, block):
    labs("ioc-list").check(inputs, "ioc-list", ".log", block)


FEODO_HEAD = [b"#" * 64, b"# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)", b"#" * 64,
              b'"first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"']


@st.composite
def feodo_csv_seed(draw) -> list[bytes]:
    out = list(FEODO_HEAD)
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            out.append(f'"2021-01-17 07:44:{draw(secs)}","{draw(ips)}","4643","online",'
                       f'"2024-05-02","{draw(st.sampled_from(["Dridex", "Heodo", "None", ""]))}"'
                       .encode())
        else:  # the older, 5-field layout
            out.append(f"2019-05-27 16:44:19,{draw(ips)},443,2019-06-03,QakBot".encode())
    return out


@examples()
@given(block=blocks, inputs=files(text_inputs(feodo_csv_seed(), b",", OTHERS + FEODO_HEAD)))
def test_ioc_feodo_csv(labs, inputs, block):
    labs("ioc-feodo-csv").check(inputs, "ioc-feodo-csv", ".log", block)


URLHAUS_HEAD = [b"#" * 64, b"# abuse.ch URLhaus Database Dump (CSV - recent URLs)", b"#" * 64,
                b"# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter"]


@st.composite
def urlhaus_seed(draw) -> list[bytes]:
    out = list(URLHAUS_HEAD)
    for k in range(draw(st.integers(1, 4))):
        url = draw(st.sampled_from(["http://1.2.3.4:8080/bins/mozi.m", "https://evil.example/a b",
                                    "http://[2001:db8::1]/x", "ftp://user@evil.example/f"]))
        last = '"2024-05-01 12:40:00",' if draw(st.booleans()) else ""
        out.append((f'"{k}","2024-05-01 12:34:{draw(secs)}","{url}","online",{last}'
                    f'"malware_download","32-bit,elf,Mozi","https://urlhaus.abuse.ch/url/{k}/",'
                    f'"anon"').encode())
    return out


@examples()
@given(block=blocks, inputs=files(text_inputs(urlhaus_seed(), b",", OTHERS + URLHAUS_HEAD)))
def test_ioc_urlhaus_csv(labs, inputs, block):
    labs("ioc-urlhaus-csv").check(inputs, "ioc-urlhaus-csv", ".log", block)
