"""Sigma semantics of the compiler, feature by feature: rows that must match and rows that must not.

Each case is (detection YAML, [(row, expected match)]). Rows are `http` rows; columns not given
are NULL (url_path/url_query/url_decoded are derived from url_original when absent).
"""

from __future__ import annotations

import base64

import pytest

from tests.detect.sigma_helpers import RULE_ID, check_on_spark, matches, rule_yaml
from threatscope.detect import evaluate, load_rules
from threatscope.errors import UserError
from threatscope.workspace import Workspace


def q(v):
    return {"url_query": v}


def stem(v):
    return {"url_path": v}


def m(v):
    return {"http_request_method": v}


CASES: dict[str, tuple[str, list[tuple[dict, bool]]]] = {
    "plain value is case-insensitive equality": (
        "sel:\n  cs-method: POST\ncondition: sel",
        [(m("POST"), True), (m("post"), True), (m("PoSt"), True), (m("POSTX"), False),
         (m("XPOST"), False), ({}, False)],
    ),
    "cased": (
        "sel:\n  cs-method|cased: POST\ncondition: sel",
        [(m("POST"), True), (m("post"), False)],
    ),
    "cased contains": (
        "sel:\n  cs-uri-query|cased|contains: 'Exec'\ncondition: sel",
        [(q("a=Exec"), True), (q("a=exec"), False)],
    ),
    "contains is case-insensitive": (
        "sel:\n  cs-uri-query|contains: 'Union Select'\ncondition: sel",
        [(q("id=1 UNION SELECT 2"), True), (q("union select"), True), (q("unionselect"), False)],
    ),
    "percent in value is literal": (
        "sel:\n  cs-uri-query|contains: '100%'\ncondition: sel",
        [(q("a=100%"), True), (q("a=1000"), False), (q("a=100"), False)],
    ),
    "underscore in value is literal": (
        "sel:\n  cs-uri-query|contains: 'a_b'\ncondition: sel",
        [(q("x=a_b"), True), (q("x=aXb"), False)],
    ),
    "percent and underscore in equality": (
        "sel:\n  cs-uri-stem: '/a%b_c'\ncondition: sel",
        [(stem("/a%b_c"), True), (stem("/aXXbYc"), False), (stem("/a%bzc"), False)],
    ),
    "like pattern keeps % _ literal around wildcards": (
        "sel:\n  cs-uri-stem: '/x_*%y'\ncondition: sel",
        [(stem("/x_abc%y"), True), (stem("/x_%y"), True), (stem("/xAabc%y"), False),
         (stem("/x_abcQy"), False)],
    ),
    "backslash before ordinary char is literal": (
        r"sel:\n  cs-uri-query|contains: 'think\app'\ncondition: sel".replace("\\n", "\n"),
        [(q(r"s=think\app/x"), True), (q("s=thinkapp"), False)],
    ),
    "escaped backslash then wildcard (LIKE escape)": (
        "sel:\n  cs-uri-stem: 'a\\\\b*c'\ncondition: sel",
        [(stem("a\\bXXc"), True), (stem("a\\bc"), True), (stem("abXXc"), False),
         (stem("a\\\\bc"), False)],
    ),
    "backslash in contains": (
        "sel:\n  cs-uri-query|contains: '..\\\\..\\\\'\ncondition: sel",
        [(q("f=..\\..\\windows"), True), (q("f=../../"), False)],
    ),
    "single quote in value": (
        "sel:\n  cs-uri-query|contains: \"' or 1=1\"\ncondition: sel",
        [(q("id=1' OR 1=1--"), True), (q("id=1 or 1=1"), False)],
    ),
    "wildcards * and ?": (
        "sel:\n  cs-uri-stem: '/adm?n/*.php'\ncondition: sel",
        [(stem("/admin/x.php"), True), (stem("/ADMIN/a/b.PHP"), True), (stem("/admn/x.php"), False),
         (stem("/admin/x.phps"), False)],
    ),
    "escaped wildcards are literal": (
        "sel:\n  cs-uri-query|contains:\n    - 'a\\*b'\n    - 'c\\?d'\ncondition: sel",
        [(q("xa*by"), True), (q("xc?dy"), True), (q("xaZZb"), False), (q("xcZd"), False)],
    ),
    "lone star matches any non-null value": (
        "sel:\n  cs-referer: '*'\ncondition: sel",
        [({"http_request_referrer": "x"}, True), ({"http_request_referrer": ""}, True), ({}, False)],
    ),
    "startswith": (
        "sel:\n  cs-uri-stem|startswith: '/WP-'\ncondition: sel",
        [(stem("/wp-login.php"), True), (stem("/x/wp-login.php"), False)],
    ),
    "endswith": (
        "sel:\n  cs-uri-stem|endswith: '.ENV'\ncondition: sel",
        [(stem("/app/.env"), True), (stem("/app/.env.bak"), False)],
    ),
    "list is OR": (
        "sel:\n  cs-method:\n    - PUT\n    - DELETE\ncondition: sel",
        [(m("put"), True), (m("DELETE"), True), (m("GET"), False)],
    ),
    "contains|all is AND": (
        "sel:\n  cs-uri-query|contains|all:\n    - 'select'\n    - 'from'\ncondition: sel",
        [(q("select a from b"), True), (q("FROM x SELECT"), True), (q("select a"), False)],
    ),
    "fields of one selection are AND": (
        "sel:\n  cs-method: POST\n  sc-status: 200\ncondition: sel",
        [({"http_request_method": "POST", "http_response_status_code": 200}, True),
         ({"http_request_method": "POST", "http_response_status_code": 404}, False)],
    ),
    "list of maps is OR": (
        "sel:\n  - cs-method: PUT\n  - sc-status: 500\ncondition: sel",
        [(m("PUT"), True), ({"http_response_status_code": 500}, True), (m("GET"), False)],
    ),
    "re is case-sensitive by default and unanchored": (
        "sel:\n  cs-uri-query|re: 'Select\\s+\\w'\ncondition: sel",
        [(q("a=Select  x"), True), (q("a=select x"), False)],
    ),
    "re|i": (
        "sel:\n  cs-uri-query|re|i: 'select\\s+\\w'\ncondition: sel",
        [(q("a=SELECT x"), True), (q("a=selectx"), False)],
    ),
    "re|m (^ and $ at line breaks)": (
        "sel:\n  http.request.body.content|re|m: '^bar$'\ncondition: sel",
        [({"http_request_body_content": "foo\nbar\nbaz"}, True),
         ({"http_request_body_content": "foo bar baz"}, False)],
    ),
    "re without m: ^ is start of text": (
        "sel:\n  http.request.body.content|re: '^bar$'\ncondition: sel",
        [({"http_request_body_content": "foo\nbar\nbaz"}, False),
         ({"http_request_body_content": "bar"}, True)],
    ),
    "re|s (dot matches newline)": (
        "sel:\n  http.request.body.content|re|s: 'foo.bar'\ncondition: sel",
        [({"http_request_body_content": "foo\nbar"}, True)],
    ),
    "re without s: dot does not match newline": (
        "sel:\n  http.request.body.content|re: 'foo.bar'\ncondition: sel",
        [({"http_request_body_content": "foo\nbar"}, False),
         ({"http_request_body_content": "foo-bar"}, True)],
    ),
    "cidr IPv4 on numeric column": (
        "sel:\n  c-ip|cidr: 10.0.0.0/8\ncondition: sel",
        [({"source_ip": "10.1.2.3"}, True), ({"source_ip": "10.255.255.255"}, True),
         ({"source_ip": "11.0.0.1"}, False), ({"source_ip": "9.255.255.255"}, False),
         ({"source_ip": "::a01:203"}, False), ({}, False)],
    ),
    "cidr IPv6": (
        "sel:\n  c-ip|cidr: '2001:db8::/32'\ncondition: sel",
        [({"source_ip": "2001:db8::1"}, True), ({"source_ip": "2001:db8:ffff::1"}, True),
         ({"source_ip": "2001:db9::1"}, False), ({"source_ip": "10.0.0.1"}, False)],
    ),
    "cidr list": (
        "sel:\n  c-ip|cidr:\n    - 192.168.0.0/16\n    - 172.16.0.0/12\ncondition: sel",
        [({"source_ip": "192.168.4.4"}, True), ({"source_ip": "172.31.0.1"}, True),
         ({"source_ip": "172.32.0.1"}, False)],
    ),
    "cidr on a text-only IP column": (
        "sel:\n  dst_ip|cidr: 192.168.0.0/23\ncondition: sel",
        [({"destination_ip": "192.168.1.9"}, True), ({"destination_ip": "192.168.2.9"}, False),
         ({"destination_ip": "1.192.168.1"}, False)],
    ),
    # (tests/fuzz/test_sigma.py) pySigma's prefix wildcards of the canonical text held for
    # a:b::1:0:0:1 in a:b::/80, and missed every non-canonical form
    "cidr on a text-only IP column: IPv6 in any of its forms": (
        "sel:\n  dst_ip|cidr: 'a:b::/80'\ncondition: sel",
        [({"destination_ip": "a:b::1"}, True), ({"destination_ip": "A:B:0:0:0:0:0:1"}, True),
         ({"destination_ip": "a:b::ffff:1.2.3.4"}, True), ({"destination_ip": "a:b::1%eth0"}, True),
         ({"destination_ip": "a:b::1:0:0:1"}, False), ({"destination_ip": "a:b:0:0:1::"}, False),
         ({"destination_ip": "a:c::1"}, False), ({"destination_ip": "10.0.0.1"}, False),
         ({"destination_ip": "x"}, False)],
    ),
    "cidr on a text-only IP column: ::1 written in full": (
        "sel:\n  dst_ip|cidr: '::1/128'\ncondition: sel",
        [({"destination_ip": "0:0:0:0:0:0:0:1"}, True), ({"destination_ip": "::0001"}, True),
         ({"destination_ip": "::1"}, True), ({"destination_ip": "::2"}, False),
         ({"destination_ip": "1::"}, False)],
    ),
    # (fuzz) IP numbers reach the engine as DECIMAL(38,0): a range beyond 10^38 made it fail
    "cidr beyond 10^38 on an IP column with a number": (
        "sel:\n  c-ip|cidr: 'fe80::/10'\ncondition: sel",
        [({"source_ip": "fe80::1"}, True), ({"source_ip": "FEBF:FFFF::1"}, True),
         ({"source_ip": "fe80::1%eth0"}, True), ({"source_ip": "fec0::1"}, False),
         ({"source_ip": "10.0.0.1"}, False), ({}, False)],
    ),
    "cidr ::/0 on an IP column with a number holds IPv4 too": (
        "sel:\n  c-ip|cidr: '::/0'\ncondition: sel",
        [({"source_ip": "10.1.2.3"}, True), ({"source_ip": "::1"}, True),
         ({"source_ip": "2001:db8::1"}, True), ({"source_ip": "x"}, False), ({}, False)],
    ),
    "null": (
        "sel:\n  cs-referer: null\ncondition: sel",
        [({}, True), ({"http_request_referrer": ""}, False), ({"http_request_referrer": "x"}, False)],
    ),
    "empty string is not null": (
        "sel:\n  cs-referer: ''\ncondition: sel",
        [({"http_request_referrer": ""}, True), ({}, False), ({"http_request_referrer": "x"}, False)],
    ),
    "exists true": (
        "sel:\n  cs-referer|exists: true\ncondition: sel",
        [({"http_request_referrer": "x"}, True), ({}, False)],
    ),
    "exists false": (
        "sel:\n  cs-referer|exists: false\ncondition: sel",
        [({"http_request_referrer": "x"}, False), ({}, True)],
    ),
    "number on integer column": (
        "sel:\n  sc-status: 200\ncondition: sel",
        [({"http_response_status_code": 200}, True), ({"http_response_status_code": 404}, False),
         ({}, False)],
    ),
    "number list on integer column": (
        "sel:\n  sc-status:\n    - 401\n    - 403\ncondition: sel",
        [({"http_response_status_code": 403}, True), ({"http_response_status_code": 404}, False)],
    ),
    "gte": (
        "sel:\n  sc-status|gte: 500\ncondition: sel",
        [({"http_response_status_code": 500}, True), ({"http_response_status_code": 503}, True),
         ({"http_response_status_code": 499}, False), ({}, False)],
    ),
    "lt on a text column": (
        "sel:\n  cs-uri-query|lt: 10\ncondition: sel",
        [(q("9"), True), (q("10"), False), (q("abc"), False)],
    ),
    # (fuzz) a cast read 'nan' (above every number), 'inf', ' 10', DuckDB's '1_0', Java's '10d'
    "gt on a text: only finite decimals are numbers": (
        "sel:\n  cs-uri-query|gt: 5\ncondition: sel",
        [(q("10"), True), (q("6.5"), True), (q("1e1"), True), (q("+7"), True), (q("nan"), False),
         (q("NaN"), False), (q("inf"), False), (q("Infinity"), False), (q(" 10"), False),
         (q("10 "), False), (q("1_0"), False), (q("1e400"), False), (q("0x10"), False),
         (q("10d"), False)],
    ),
    "lt on a text: -inf is no number": (
        "sel:\n  cs-uri-query|lt: 5\ncondition: sel",
        [(q("-inf"), False), (q("-Infinity"), False), (q("-1e400"), False), (q("4"), True),
         (q("-10"), True), (q(".5"), True)],
    ),
    "gt and lte together": (
        "sel:\n  sc-status|gt: 399\nsel2:\n  sc-status|lte: 404\ncondition: sel and sel2",
        [({"http_response_status_code": 404}, True), ({"http_response_status_code": 399}, False),
         ({"http_response_status_code": 405}, False)],
    ),
    "fieldref equality (case-insensitive)": (
        "sel:\n  cs-referer|fieldref: cs-host\ncondition: sel",
        [({"http_request_referrer": "Example.org", "url_domain": "example.ORG"}, True),
         ({"http_request_referrer": "a", "url_domain": "b"}, False),
         ({"http_request_referrer": "a"}, False)],
    ),
    "not fieldref": (
        "sel:\n  cs-referer|fieldref: cs-host\ncondition: not sel",
        [({"http_request_referrer": "a", "url_domain": "a"}, False),
         ({"http_request_referrer": "a"}, True)],
    ),
    "base64": (
        "sel:\n  http.request.body.content|base64|contains: 'whoami'\ncondition: sel",
        [({"http_request_body_content": "x=" + base64.b64encode(b"whoami").decode()}, True),
         ({"http_request_body_content": "x=whoami"}, False)],
    ),
    "base64offset at each offset": (
        "sel:\n  http.request.body.content|base64offset|contains: 'whoami'\ncondition: sel",
        [({"http_request_body_content": base64.b64encode(p + b"whoami; id").decode()}, True)
         for p in (b"", b"a", b"ab", b"abc")]
        + [({"http_request_body_content": base64.b64encode(b"who am i").decode()}, False)],
    ),
    # -enc payloads: base64 of UTF-16LE text, at any of the three offsets
    "wide base64offset": (
        "sel:\n  http.request.body.content|wide|base64offset|contains: 'IEX ('\ncondition: sel",
        [({"http_request_body_content": base64.b64encode(p + "IEX (New-Object".encode(
            "utf-16-le")).decode()}, True) for p in (b"", b"\x20\x00", b"a\x00b\x00")]
        + [({"http_request_body_content": base64.b64encode(b"IEX (New-Object").decode()}, False),
           ({"http_request_body_content": base64.b64encode("IEX(".encode("utf-16-le")).decode()},
            False)],
    ),
    "utf16le is wide": (
        "sel:\n  http.request.body.content|utf16le|base64|contains: 'calc'\ncondition: sel",
        [({"http_request_body_content": base64.b64encode("calc".encode("utf-16-le")).decode()},
          True),
         ({"http_request_body_content": base64.b64encode("calc".encode("utf-16-be")).decode()},
          False)],
    ),
    "utf16be": (
        "sel:\n  http.request.body.content|utf16be|base64|contains: 'calc'\ncondition: sel",
        [({"http_request_body_content": base64.b64encode("calc".encode("utf-16-be")).decode()},
          True),
         ({"http_request_body_content": base64.b64encode("calc".encode("utf-16-le")).decode()},
          False)],
    ),
    "utf16 starts with a byte order mark": (
        "sel:\n  http.request.body.content|utf16|base64: 'calc'\ncondition: sel",
        [({"http_request_body_content": base64.b64encode(b"\xff\xfe" + "calc".encode(
            "utf-16-le")).decode()}, True),
         ({"http_request_body_content": base64.b64encode("calc".encode("utf-16-le")).decode()},
          False)],
    ),
    "windash": (
        "sel:\n  cs-uri-query|windash|contains: ' -enc '\ncondition: sel",
        [(q("c=powershell -enc AAA"), True), (q("c=powershell /enc AAA"), True),
         (q("c=powershell \u2013enc AAA"), True), (q("c=powershell enc AAA"), False)],
    ),
    "header field by name, case-insensitive name": (
        "sel:\n  http.request.headers.X-Api-Version|contains: '${jndi:'\ncondition: sel",
        [({"http_request_headers": '{"x-api-version": "${JNDI:ldap://e/a}"}'}, True),
         ({"http_request_headers": '{"x-other": "${jndi:ldap://e/a}"}'}, False), ({}, False)],
    ),
    "header shorthand cs-cookie": (
        "sel:\n  cs-cookie|contains: 'admin=1'\ncondition: sel",
        [({"http_request_headers": '{"cookie": "a=b; admin=1"}'}, True),
         ({"http_request_headers": '{"cookie": "a=b"}'}, False)],
    ),
    "ECS field names and column names": (
        "sel:\n  url.decoded|contains: '<script>'\n  user_agent_original|contains: 'curl'\n"
        "condition: sel",
        [({"url_original": "/?q=%3Cscript%3E", "user_agent_original": "curl/8"}, True),
         ({"url_original": "/?q=%3Cscript%3E", "user_agent_original": "Mozilla"}, False)],
    ),
    "keywords search raw (substring, case-insensitive)": (
        "keywords:\n  - 'UNION SELECT'\n  - '<script>'\ncondition: keywords",
        [({"raw": 'GET /?id=1 union select 1 HTTP/1.1" 200'}, True),
         ({"raw": "GET /<SCRIPT>alert(1)"}, True), ({"raw": "GET /index.html"}, False)],
    ),
    "keywords also search the decoded URL (percent-encoded access-log lines)": (
        "keywords:\n  - 'union select'\ncondition: keywords",
        [({"raw": 'GET /?id=1%20UNION%20SELECT%201 HTTP/1.1" 200',
           "url_original": "/?id=1%20UNION%20SELECT%201"}, True),
         ({"raw": "GET /?id=1%20UNION%201", "url_original": "/?id=1%20UNION%201"}, False)],
    ),
    "keywords with |all": (
        "keywords:\n  '|all':\n    - 'POST'\n    - 200\n    - '/ecp/'\ncondition: keywords",
        [({"raw": '"POST /ecp/x HTTP/1.1" 200 5'}, True), ({"raw": '"GET /ecp/x HTTP/1.1" 200 5'}, False)],
    ),
    "keyword with wildcard": (
        "keywords:\n  - 'eval(*base64_decode'\ncondition: keywords",
        [({"raw": "x=EVAL($_POST[a].base64_decode(1))"}, True), ({"raw": "x=base64_decode(eval"}, False)],
    ),
    "keyword with percent is literal": (
        "keywords:\n  - '%00'\ncondition: keywords",
        [({"raw": "GET /a%00.jpg"}, True), ({"raw": "GET /a00.jpg"}, False)],
    ),
    "1 of selection_*": (
        "selection_a:\n  cs-method: PUT\nselection_b:\n  sc-status: 500\nother:\n  cs-uri-stem: '/x'\n"
        "condition: 1 of selection_*",
        [(m("PUT"), True), ({"http_response_status_code": 500}, True), (stem("/x"), False)],
    ),
    "all of selection_*": (
        "selection_a:\n  cs-method: PUT\nselection_b:\n  sc-status: 500\ncondition: all of selection_*",
        [({"http_request_method": "PUT", "http_response_status_code": 500}, True), (m("PUT"), False)],
    ),
    "1 of them": (
        "a:\n  cs-method: PUT\nb:\n  sc-status: 500\ncondition: 1 of them",
        [(m("PUT"), True), ({"http_response_status_code": 500}, True), (m("GET"), False)],
    ),
    "all of them": (
        "a:\n  cs-method: PUT\nb:\n  sc-status: 500\ncondition: all of them",
        [({"http_request_method": "PUT", "http_response_status_code": 500}, True),
         ({"http_response_status_code": 500}, False)],
    ),
    "not and parentheses": (
        "a:\n  cs-method: POST\nb:\n  sc-status: 200\nc:\n  cs-uri-stem: '/health'\n"
        "condition: (a or b) and not c",
        [(m("POST"), True), ({"http_response_status_code": 200, "url_path": "/health"}, False),
         ({"http_response_status_code": 200, "url_path": "/x"}, True), (m("GET"), False)],
    ),
    "not over a NULL field is true (two-valued leaves)": (
        "sel:\n  cs-method: GET\nfilter:\n  cs-user-agent|contains: 'bot'\n"
        "condition: sel and not filter",
        [(m("GET"), True), ({"http_request_method": "GET", "user_agent_original": "a bot"}, False)],
    ),
    "not 1 of filter_*": (
        "sel:\n  cs-method: GET\nfilter_a:\n  cs-referer: 'x'\nfilter_b:\n  sc-status: 404\n"
        "condition: sel and not 1 of filter_*",
        [(m("GET"), True), ({"http_request_method": "GET", "http_response_status_code": 404}, False)],
    ),
    "multiple conditions are OR": (
        "a:\n  cs-method: PUT\nb:\n  sc-status: 500\ncondition:\n  - a\n  - b",
        [(m("PUT"), True), ({"http_response_status_code": 500}, True), (m("GET"), False)],
    ),
    # RE2 as DuckDB reads it; the Spark dialect translates to Java regex (compiler.java_regex)
    "re: $ is the end of the text, not before a final newline": (
        "sel:\n  cs-uri-query|re: 'a$'\ncondition: sel",
        [(q("xa"), True), (q("xa\n"), False)],
    ),
    "re: [ and && inside a class are literal": (
        "sel:\n  cs-uri-query|re: '[[]x|^[a&&b]$'\ncondition: sel",
        [(q("[x"), True), (q("&"), True), (q("x"), False), (q("ab"), False)],
    ),
    "re: POSIX class": (
        "sel:\n  cs-uri-query|re: '^[[:digit:]]+$'\ncondition: sel",
        [(q("123"), True), (q("12a"), False)],
    ),
    "re|i folds non-ASCII case": (
        "sel:\n  cs-uri-query|re|i: 'ÉTÉ'\ncondition: sel",
        [(q("un été"), True), (q("un ete"), False)],
    ),
    "re: dot matches a carriage return, \\s no vertical tab": (
        "sel:\n  cs-uri-query|re: 'a.b|c\\sd'\ncondition: sel",
        [(q("a\rb"), True), (q("c d"), True), (q("c\x0bd"), False)],
    ),
    "re: a brace that is no repetition is literal": (
        "sel:\n  cs-uri-query|re: 'a{,2}'\ncondition: sel",
        [(q("a{,2}"), True), (q("aa"), False)],
    ),
    # a regular expression or wildcard runs where the text holds the literal it needs (the
    # engine's guards; in the Spark SQL, a substring test of the lower-cased text)
    "re behind its literal: case variants, the literal alone is not enough": (
        "sel:\n  cs-uri-query|re|i: 'union\\s+(all\\s+)?select'\ncondition: sel",
        [(q("id=1 UNION ALL SeLeCt 2"), True), (q("id=1 uNiOn\tselect"), True),
         (q("id=1 union-select"), False), (q("union"), False), (q("id=1"), False)],
    ),
    "wildcard behind its literal, case-insensitive": (
        "sel:\n  cs-uri-query: '*/ETC/PASS?D*'\ncondition: sel",
        [(q("f=../../etc/passwd"), True), (q("f=/Etc/PassXd"), True),
         (q("f=/etc/pass"), False), (q("f=/etc/shadow"), False)],
    ),
    "proxy category maps to http": (
        "sel:\n  c-uri|contains: '/wp-admin'\n  c-useragent|startswith: 'python'\ncondition: sel",
        [({"url_original": "/wp-admin/x", "user_agent_original": "Python-urllib"}, True),
         ({"url_original": "/wp-admin/x", "user_agent_original": "Mozilla"}, False)],
    ),
}


def _logsource(name: str) -> dict:
    return {"logsource": "category: proxy"} if name.startswith(("proxy", "cidr on a text")) else {}


@pytest.mark.parametrize("name", list(CASES))
def test_sigma_feature(tmp_path, name):
    detection, cases = CASES[name]
    rows = [r for r, _ in cases]
    want = [w for _, w in cases]
    assert matches(tmp_path, detection, rows, **_logsource(name)) == want


def test_sigma_features_on_spark(tmp_path, spark_session):
    """Every case on the Spark engine, in one Spark job (its rules' Spark SQL)."""
    check_on_spark(tmp_path, spark_session, [(det, _logsource(name), "http", cases)
                                             for name, (det, cases) in CASES.items()])


def test_spark_runs_a_regex_behind_its_literal(tmp_path):
    # the Spark SQL of a regex leaf tests the literal first (Java's regex engine is the cost of
    # detection on Spark); DuckDB's text leaves guards to its engine; a non-ASCII literal,
    # whose lower case can depend on the locale, is no guard
    def compiled(pattern: str):
        d = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        (d / "rule.yml").write_text(rule_yaml(f"sel:\n  cs-uri-query|re: '{pattern}'\n"
                                              "condition: sel"), encoding="utf-8")
        rs = load_rules([d], builtin=False)
        assert not rs.failed, rs.failed
        return rs.for_table("http")[0]

    rule = compiled("union\\s+select")
    assert rule.spark_sql.startswith("(coalesce(contains(lower(`url_query`), 'select'), false) AND ")
    assert "contains(" not in rule.sql
    assert "contains(" not in compiled("été\\d+").spark_sql


def test_expand_takes_placeholder_values_from_the_workspace_config(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    text = ws.config_path.read_text()
    assert "[detect.placeholders]" in text
    ws.config_path.write_text(text.replace(
        "[detect.placeholders]\n", "[detect.placeholders]\nadmin_paths = ['/admin', '/manager/*']\n"))
    placeholders = Workspace.open(ws.root).placeholders
    assert placeholders == {"admin_paths": ["/admin", "/manager/*"]}
    d = tmp_path / "rules"
    d.mkdir()
    (d / "rule.yml").write_text(rule_yaml("sel:\n  cs-uri-stem|expand: '%admin_paths%'\n"
                                          "condition: sel"))
    rows = [stem("/admin"), stem("/ADMIN"), stem("/manager/html"), stem("/administrator"),
            stem("/x"), {}]
    cache = tmp_path / "cache"
    for values, want in ((placeholders, [True, True, True, False, False, False]),
                         ({"admin_paths": ["/x"]}, [False] * 4 + [True, False])):
        for _ in range(2):  # compiled, then from the cache (keyed by the values too)
            rs = load_rules([d], builtin=False, cache_dir=cache, placeholders=values)
            assert not rs.failed, rs.failed
            assert [RULE_ID in h for h in evaluate(rs, "http", rows)] == want
    rs = load_rules([d], builtin=False, placeholders={"other": ["/x"]})
    assert "placeholder %admin_paths% has no value" in rs.failed[0].reason


def test_placeholder_values_must_be_strings(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    ws.config_path.write_text(ws.config_path.read_text().replace(
        "[detect.placeholders]\n", "[detect.placeholders]\nbad = [{a = 1}]\n"))
    with pytest.raises(UserError, match=r"\[detect.placeholders\] bad must be"):
        _ = Workspace.open(ws.root).placeholders
