"""A workspace with `source` and `indicator` catalog tables filled by hand (not by enrich)."""

from __future__ import annotations

from datetime import datetime

import pytest

from threatscope import schema
from threatscope.workspace import Org, Workspace

T = datetime.fromisoformat

# indicator_type, value, role, campaigns, cves, malware_families, attack_techniques, ioc_feeds,
# first_seen, last_seen, sightings, orgs, country_code, as_org, classification
ROWS = [
    ("ipv4", "1.2.3.4", "attacker", ["gpon"], ["CVE-2018-10561"], ["mirai"], ["T1190"],
     ["feodotracker"], T("2018-05-01 10:00:00"), T("2018-05-03 10:00:00"), 12, 3, "CN",
     "Evil AS", "campaign"),
    ("ipv6", "2001:db8::1", "attacker", ["gpon", "drupalgeddon2"],
     ["CVE-2018-7600", "CVE-2018-10561"], ["emotet"], [], [], T("2018-04-10 00:00:00"),
     T("2018-06-20 00:00:00"), 5, 2, "DE", "Hoster GmbH", "mass-scanner"),
    ("ipv4", "5.6.7.8", "attacker", [], [], [], [], [], T("2018-02-01 00:00:00"),
     T("2018-02-02 00:00:00"), 3, 1, "US", "Research Inc", "research-scanner"),
    ("url", "http://x/a'b\\c", "payload", ["gpon"], [], ["mirai"], [], [],
     T("2018-05-01 10:00:00"), T("2018-05-01 10:00:00"), 2, 1, None, None, None),
    ("domain", "evil.example", "payload", [], [], [], [], [], T("2018-05-20 00:00:00"),
     T("2018-05-21 00:00:00"), 1, 1, None, None, None),
    ("ipv4", "7.7.7.7", "attacker", ["made-up-campaign"], ["CVE-2099-0001"], [], [], [],
     T("2018-05-10 00:00:00"), T("2018-05-11 00:00:00"), 4, 1, None, None, "campaign"),
    # starts exactly at the end of May (exclusive)
    ("ipv4", "9.9.9.9", "attacker", [], [], [], [], [], T("2018-06-01 00:00:00"),
     T("2018-06-02 00:00:00"), 1, 1, None, None, "mass-scanner"),
]
ORG_NAMES = ["Acme Bank", "Secret Hospital"]


def make_ws(root, rows=ROWS) -> Workspace:
    ws = Workspace.open(root, create=True)
    ws.register_orgs([Org("o1", ORG_NAMES[0], "finance"), Org("o2", ORG_NAMES[1], "health")])
    with ws.connect() as con:
        con.execute(f"CREATE TABLE indicator ({schema.ddl_columns(schema.INDICATOR)})")
        con.execute(f"CREATE TABLE source ({schema.ddl_columns(schema.SOURCE)})")
        marks = ", ".join("?" * len(schema.INDICATOR))
        for r in rows:
            con.execute(f"INSERT INTO indicator VALUES ({marks})", list(r))
            if r[2] == "attacker":
                con.execute("INSERT INTO source (ip, country_code, as_org, campaigns, cves, "
                            "first_seen, last_seen, detections) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [r[1], r[12], r[13], r[3], r[4], r[8], r[9], r[10]])
    return ws


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return make_ws(tmp_path / "ws")


@pytest.fixture
def empty_ws(tmp_path) -> Workspace:
    return make_ws(tmp_path / "empty", rows=[])


# Attacker-controlled text: quotes, backslashes, markup, newlines, Unicode, formula starts.
HOSTILE = [
    "http://x/a'b\\c", "http://e/\\'", "http://e/trailing\\", "http://e/'; DROP TABLE x;--",
    "http://e/<script>alert(1)</script>", "http://e/l1\nl2\r\nl3", 'http://e/"q"',
    "http://e/ünï\u2028cödé/😀", '=HYPERLINK("http://evil")', "+cmd", "-2+3", "@SUM(A1)",
    "\tx", "\rx", "http://e/]' OR [url:value = 'x",
]


def hostile_rows() -> list[tuple]:
    return [("url", v, "payload", ['cam"paign'], [], ["fam'ily"], [], [],
             T("2018-05-01 00:00:00"), T("2018-05-02 00:00:00"), 1, 1, None, "AS <b>x</b>\n",
             None) for v in HOSTILE] + [
        ("domain", "ev'il\\.example", "payload", [], [], [], [], [], T("2018-05-01 00:00:00"),
         T("2018-05-02 00:00:00"), 1, 1, None, None, None)]
