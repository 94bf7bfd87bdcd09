"""CSV export: every INDICATOR column, lists ';'-joined, formula-looking cells defused."""

from __future__ import annotations

import csv

from tests.share.conftest import ROWS, hostile_rows, make_ws
from threatscope import schema
from threatscope.analyze.period import Period
from threatscope.share.indicators_csv import write_indicators_csv


def read(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_columns_and_values(tmp_path, ws):
    out = tmp_path / "i.csv"
    assert write_indicators_csv(ws, out) == len(ROWS)
    with open(out, newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == [n for n, _ in schema.INDICATOR]
    rows = {r["value"]: r for r in read(out)}
    assert rows["2001:db8::1"]["campaigns"] == "drupalgeddon2;gpon"  # sorted
    assert rows["2001:db8::1"]["cves"] == "CVE-2018-10561;CVE-2018-7600"
    assert rows["1.2.3.4"] | {} == {
        "indicator_type": "ipv4", "value": "1.2.3.4", "role": "attacker", "campaigns": "gpon",
        "cves": "CVE-2018-10561", "malware_families": "mirai", "attack_techniques": "T1190",
        "ioc_feeds": "feodotracker", "first_seen": "2018-05-01 10:00:00",
        "last_seen": "2018-05-03 10:00:00", "sightings": "12", "orgs": "3",
        "country_code": "CN", "as_org": "Evil AS", "classification": "campaign"}
    assert rows["evil.example"]["country_code"] == "" and rows["evil.example"]["campaigns"] == ""
    write_indicators_csv(ws, out, period=Period.parse("2018Q1"))
    assert [r["value"] for r in read(out)] == ["5.6.7.8"]


def test_hostile_cells(tmp_path):
    ws = make_ws(tmp_path / "ws", rows=hostile_rows())
    out = tmp_path / "i.csv"
    write_indicators_csv(ws, out)
    got = sorted(r["value"] for r in read(out))
    want = sorted(("'" + v if v[0] in "=+-@\t\r" else v) for _, v, *_ in hostile_rows())
    assert got == want
    # a lone CR stays inside its cell
    assert "'\rx" in got
    assert "'=HYPERLINK(\"http://evil\")" in got and "http://e/l1\nl2\r\nl3" in got
    assert {r["as_org"] for r in read(out)} == {"AS <b>x</b>\n", ""}


def test_empty(tmp_path, empty_ws):
    out = tmp_path / "i.csv"
    assert write_indicators_csv(empty_ws, out) == 0
    assert out.read_bytes() == (",".join(n for n, _ in schema.INDICATOR) + "\r\n").encode()
