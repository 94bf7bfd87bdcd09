"""MISP export: the event's structure and values, tags, determinism, hostile values as data."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.share.conftest import HOSTILE, ORG_NAMES, ROWS, hostile_rows, make_ws
from threatscope.analyze.period import Period
from threatscope.errors import UserError
from threatscope.share.misp import misp_event, write_misp
from threatscope.workspace import Workspace


def attrs(event: dict) -> dict[tuple[str, str], dict]:
    return {(a["type"], a["value"]): a for a in event["Event"]["Attribute"]}


def test_event(tmp_path, ws):
    text = write_misp(ws, tmp_path / "e.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    ev = doc["Event"]
    assert uuid.UUID(ev["uuid"]).version == 5
    assert ev["published"] is False
    assert (ev["threat_level_id"], ev["analysis"], ev["distribution"]) == ("2", "2", "0")
    assert ev["date"] == "2018-02-01"  # earliest first_seen without a period
    assert {"name": "tlp:amber"} in ev["Tag"]
    a = attrs(doc)
    assert set(a) == {
        ("ip-src", "1.2.3.4"), ("ip-src", "2001:db8::1"), ("ip-src", "5.6.7.8"),
        ("ip-src", "7.7.7.7"), ("ip-src", "9.9.9.9"), ("url", "http://x/a'b\\c"),
        ("domain", "evil.example"), ("vulnerability", "CVE-2018-10561"),
        ("vulnerability", "CVE-2018-7600"), ("vulnerability", "CVE-2099-0001")}
    ip = a[("ip-src", "1.2.3.4")]
    assert (ip["category"], ip["to_ids"]) == ("Network activity", True)
    assert (ip["first_seen"], ip["last_seen"]) == ("2018-05-01T10:00:00.000000+00:00",
                                                   "2018-05-03T10:00:00.000000+00:00")
    assert ip["comment"] == ("campaigns: gpon; CVEs: CVE-2018-10561; malware families: mirai; "
                             "ATT&CK techniques: T1190; IOC feeds: feodotracker; "
                             "classification: campaign; 12 detected events at 3 organisations")
    assert [t["name"] for t in ip["Tag"]] == [
        'threatscope:role="attacker"', 'threatscope:classification="campaign"',
        'threatscope:campaign="gpon"', 'threatscope:malware-family="mirai"',
        'threatscope:cve="CVE-2018-10561"', 'threatscope:attack-technique="T1190"']
    # research scanners: shared, not for an IDS
    assert a[("ip-src", "5.6.7.8")]["to_ids"] is False
    assert a[("url", "http://x/a'b\\c")]["category"] == "Payload delivery"
    assert a[("domain", "evil.example")]["category"] == "Network activity"
    cve = a[("vulnerability", "CVE-2018-10561")]
    assert (cve["category"], cve["to_ids"]) == ("External analysis", False)
    assert cve["first_seen"].startswith("2018-04-10") and cve["last_seen"].startswith("2018-06-20")
    assert "named by 2 indicators" in cve["comment"] and "GPON router" in cve["comment"]
    uuids = [x["uuid"] for x in ev["Attribute"]]
    assert len(set(uuids)) == len(uuids)
    assert not any(n in text for n in ORG_NAMES)


def test_period_and_determinism(tmp_path, ws):
    may = misp_event(ws, period=Period.parse("2018-05"))["Event"]
    assert may["date"] == "2018-05-01" and "(2018-05)" in may["info"]
    assert sorted(v for t, v in attrs({"Event": may}) if t != "vulnerability") == [
        "1.2.3.4", "2001:db8::1", "7.7.7.7", "evil.example", "http://x/a'b\\c"]
    allof = misp_event(ws)["Event"]
    # another scope is another event: its attributes' uuids differ too
    assert may["uuid"] != allof["uuid"]
    assert not {a["uuid"] for a in may["Attribute"]} & {a["uuid"] for a in allof["Attribute"]}
    a = write_misp(ws, tmp_path / "a.json").read_bytes()
    assert write_misp(ws, tmp_path / "b.json").read_bytes() == a
    other = make_ws(tmp_path / "other", rows=list(reversed(ROWS)))
    assert write_misp(other, tmp_path / "c.json").read_bytes() == a


def test_hostile_values(tmp_path):
    ws = make_ws(tmp_path / "ws", rows=hostile_rows())
    doc = json.loads(write_misp(ws, tmp_path / "e.json").read_text(encoding="utf-8"))
    values = [a["value"] for a in doc["Event"]["Attribute"]]
    assert sorted(values) == sorted(HOSTILE + ["ev'il\\.example"])
    tags = {t["name"] for a in doc["Event"]["Attribute"] for t in a["Tag"]}
    # a quote would end the machine tag's value early
    assert 'threatscope:campaign="cam\'paign"' in tags
    assert 'threatscope:malware-family="fam\'ily"' in tags


def test_empty_and_missing(tmp_path, empty_ws):
    ev = misp_event(empty_ws, period=Period.parse("2018Q2"))["Event"]
    assert ev["Attribute"] == [] and ev["date"] == "2018-04-01" and ev["published"] is False
    with pytest.raises(UserError, match="no indicators yet"):
        misp_event(Workspace.open(tmp_path / "bare", create=True))
