"""Fuzzing of the JSON parsers (eve, http-jsonl, winevent-json, shodan, ioc-feodo-json): valid
seed records damaged value by value (wrong types, hostile text, huge numbers, deep nesting,
repeated keys), mixed with non-object lines and other formats, cut, compressed; ingested with
the format forced and auto-detected (properties in ``harness``)."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.harness import (
    Input,
    blocks,
    deep,
    examples,
    files,
    json_line_inputs,
    json_values,
    labs_fixture,
    mutate_json,
    mutate_lines,
    wrapped,
)
from tests.ingest.test_winevent import NXLOG, SECURITY_4688, SYSMON_1, WINLOGBEAT

labs = labs_fixture()

OTHERS = [
    b'192.0.2.1 - - [01/May/2018:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"',
    b"#Fields: date time c-ip cs-method cs-uri-stem sc-status",
    b"1525168800.1\t192.0.2.1\tGET\t/\t200", b"192.0.2.1", b"[", b"]", b"{", b"}",
    b'{"method": "GET", "uri": "/"}', b'{"event_type": "flow"}',
    b'{"ip_str": "192.0.2.1", "port": 80, "data": "x", "_shodan": {"module": "http"}}',
    b'{"EventID": 1, "Channel": "Security", "EventTime": "2018-05-01 10:00:00"}',
]

EVE = [
    {"timestamp": "2018-05-01T10:00:00.250000+0200", "event_type": "http",
     "src_ip": "203.0.113.9", "src_port": 51000, "dest_ip": "10.0.0.2", "dest_port": 80,
     "org_id": "acme",
     "http": {"hostname": "shop.example", "url": "/struts2/index.action", "http_method": "GET",
              "http_user_agent": "Mozilla/5.0", "protocol": "HTTP/1.1", "status": 200,
              "length": 1234, "http_refer": "http://r/",
              "request_headers": [{"name": "Content-Type", "value": "%{(#_='multipart')}"}]}},
    {"timestamp": "2018-05-01T10:00:01.000000+0000", "event_type": "alert",
     "src_ip": "203.0.113.9", "dest_ip": "10.0.0.2", "dest_port": 80,
     "alert": {"signature_id": 2024043, "signature": "ET EXPLOIT Apache Struts RCE CVE-2017-5638",
               "category": "Attempted Administrator Privilege Gain", "severity": 1,
               "metadata": {"cve": ["CVE_2017_5638"]}, "references": ["cve,2017-5638"]},
     "http": {"hostname": "shop.example", "url": "/x", "http_method": "GET"}},
    {"timestamp": "2018-05-01T10:00:03.000000+0000", "event_type": "flow", "src_ip": "192.0.2.1"},
    {"timestamp": "2018-05-01T10:00:04.000000+0000", "event_type": "dns",
     "dns": {"rrname": "example.com"}},
]


@examples()
@given(block=blocks, inputs=files(json_line_inputs(EVE, OTHERS)))
def test_eve(labs, inputs, block):
    labs("eve").check(inputs, "eve", ".json", block)


HTTP_JSONL = [
    {"ts": "2018-05-01T10:00:00Z", "src_ip": "192.0.2.1", "method": "POST",
     "uri": "/login.php?user=admin'--", "version": "HTTP/1.1",
     "headers": {"Host": "example.com", "User-Agent": "sqlmap/1.2", "Referer": "http://r/"},
     "body": "a=b&c=%00", "status": 200, "org_id": "acme"},
    {"ts": 1525168800.5, "method": "GET", "uri": "/", "headers": {"HOST": "localhost"},
     "body": {"json": [1, 2]}, "rule_id": 942100},
    {"method": "PUT", "uri": "/x", "ts": "2018-05-01 10:00:00+02:00", "body": None},
]


@examples()
@given(block=blocks, inputs=files(json_line_inputs(HTTP_JSONL, OTHERS)))
# found by fuzzing: an epoch ts beyond BIGINT microseconds failed the whole file (the cast);
# a deeply nested line failed it at auto-detection (RecursionError in the sniffers)
@example(block=None, inputs=[Input.text(b'{"ts": 9223372036855.0, "method": "GET", "uri": "/"}\n'
                            b'{"ts": "nan", "method": "GET", "uri": "/"}\n'),
                 Input.text(deep(5000, "object").encode() + b"\n")])
def test_http_jsonl(labs, inputs, block):
    labs("http-jsonl").check(inputs, "http-jsonl", ".jsonl", block)


# the four shapes of exported Windows events ingest's own tests use
WINEVENT = [SYSMON_1, SECURITY_4688, WINLOGBEAT, NXLOG]


@examples()
@given(block=blocks, inputs=files(json_line_inputs(WINEVENT, OTHERS)))
def test_winevent_json(labs, inputs, block):
    labs("winevent-json").check(inputs, "winevent-json", ".json", block)


BANNER = {"ip_str": "192.0.2.7", "port": 443, "transport": "tcp", "product": "nginx",
          "version": "1.14", "hostnames": ["a.example"], "domains": ["example"], "tags": ["cdn"],
          "cpe23": ["cpe:2.3:a:nginx:nginx:1.14"], "vulns": {"CVE-2019-9511": {"cvss": 7.8}},
          "org": "Org", "isp": "ISP", "asn": "AS37963", "location": {"country_code": "nl"},
          "cloud": {"provider": "Amazon"}, "timestamp": "2024-05-01T10:00:00.123456",
          "data": "HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n", "_shodan": {"module": "https"}}
SHODAN = [
    BANNER,
    {**BANNER, "ip_str": None, "ip": 3221225991, "port": "80", "vulns": None},
    {"ip_str": "2001:db8::7", "ports": [22, 443], "last_update": "2024-05-01T10:00:00",
     "hostnames": ["h.example"], "vulns": ["CVE-2023-48795"], "os": "Linux", "asn": "AS1",
     "data": [{k: v for k, v in BANNER.items() if k != "ip_str"}, {"port": 22,
              "transport": "tcp", "data": "SSH-2.0-OpenSSH_8.9", "_shodan": {"module": "ssh"},
              "timestamp": "2024-05-01T09:00:00"}]},
    {"ip_str": "192.0.2.8", "ports": [8080], "last_update": "2024-05-01T10:00:00"},
]


@examples()
@given(block=blocks, inputs=files(json_line_inputs(SHODAN, OTHERS)))
def test_shodan(labs, inputs, block):
    labs("shodan").check(inputs, "shodan", ".json", block)


# -- Feodo Tracker JSON: one document (an array), records are its elements ---------------------
FEODO = {"ip_address": "51.178.161.32", "port": 4643, "status": "online",
         "hostname": None, "as_number": 16276, "as_name": "OVH", "country": "FR",
         "first_seen": "2021-01-17 07:44:46", "last_online": "2024-05-02", "malware": "Dridex"}


@st.composite
def feodo_document(draw) -> bytes:
    """A Feodo Tracker JSON document: elements damaged, maybe not all objects, written
    pretty-printed or compact, then maybe damaged line by line (cut, invalid UTF-8)."""
    elems = draw(st.lists(st.one_of(mutate_json(FEODO), json_values.map(json.dumps)),
                          min_size=0, max_size=5))
    text = "[" + ",\n".join(elems) + "]"
    if draw(st.booleans()):
        text = json.dumps(json.loads(text), indent=2) if _valid(text) else text
    if draw(st.integers(0, 4)) == 0:
        text = "\ufeff" + text
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        lines = draw(mutate_lines(data.split(b"\n"), b",", [b"{", b"]", b"[", b"null"], 2))
        data = b"\n".join(lines)
    return data


def _valid(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


@examples()
@given(block=blocks, inputs=files(feodo_document().flatmap(wrapped)))
# found by fuzzing: json's RecursionError on deep nesting failed the whole file
@example(block=None, inputs=[Input.text(deep(5000, "array").encode())])
def test_ioc_feodo_json(labs, inputs, block):
    labs("ioc-feodo-json").check(inputs, "ioc-feodo-json", ".json", block)
