"""Report audiences: an organisation's and a sector's report on a real workspace of 4 orgs
(tests/analyze/audience_ws.py)."""

from __future__ import annotations

import json

import pytest

from tests.analyze.audience_ws import ACCESS, HOSTING
from tests.analyze.audience_ws import four_orgs as make_four_orgs_ws
from threatscope.analyze import Period, analyze
from threatscope.errors import UserError
from threatscope.workspace import Org

Q2 = Period.parse("2018Q2")


@pytest.fixture
def four_orgs(build):
    return make_four_orgs_ws(build)


def test_org_figures_are_the_org_rows_of_the_all_org_figures(four_orgs):
    whole, f1 = analyze(four_orgs, Q2), analyze(four_orgs, Q2, org="f1")
    assert whole["scope"] == {"kind": "all", "org_id": None, "org_name": None, "sector": None,
                              "orgs": 4}
    assert f1["scope"] == {"kind": "org", "org_id": "f1", "org_name": "Fin One",
                           "sector": "finance", "orgs": 1}
    t = f1["totals"]
    assert (t["events"]["period"], t["detected_events"]["period"], t["detections"]["period"],
            t["source_ips"]["period"], t["orgs_hit"]["period"]) == (10, 5, 5, 2, 1)
    assert whole["totals"]["detected_events"]["period"] == 15
    assert {c["campaign"]: (c["period"], c["baseline"]) for c in f1["campaigns"]} == {
        "iis-webdav": (3, 1), "gpon": (2, 0)}
    assert {c["cve"]: c["period"] for c in f1["cves"]} == {"CVE-2017-7269": 3,
                                                           "CVE-2018-10561": 2}
    assert {c["country_code"]: c["detected_events"] for c in f1["sources"]["top_countries"]} == {
        "NL": 3, "BR": 2}
    assert f1["sources"]["hosting_share"] == 0.6
    assert {ip["ip"] for ip in f1["sources"]["top_ips"]} == {HOSTING, ACCESS}
    # its sector row counts this organisation alone; no other sector is listed
    assert [(s["sector"], s["orgs"], s["detected_events"]) for s in f1["sectors"]] == [
        ("finance", 1, 5)]
    assert f1["inputs"]["orgs"] == 1
    assert f1["consistency"]["ok"], f1["consistency"]["problems"]
    # the same campaign in the whole report counts every organisation
    gpon = next(c for c in whole["campaigns"] if c["campaign"] == "gpon")
    assert gpon["period"] == 6


def test_org_compared_with_its_sector_peers(four_orgs):
    peers = analyze(four_orgs, Q2, org="f1")["peers"]
    assert (peers["group"], peers["peer_orgs"], peers["withheld"]) == ("finance", 2, False)
    got = {c["metric"]: (c["value"], c["peers"]) for c in peers["comparisons"]}
    # peers f2 (5 detected events, 2 addresses, 1 from hosting) and f3 (nothing)
    assert got["detected_events_per_org"] == (5.0, 2.5)
    assert got["source_ips_per_org"] == (2.0, 1.0)
    assert got["hosting_share"] == (0.6, 0.2)
    rows = {c["campaign"]: c for c in peers["campaigns"]}
    assert (rows["iis-webdav"]["share"], rows["iis-webdav"]["peers_per_org"],
            rows["iis-webdav"]["peers_share"], rows["iis-webdav"]["peers_hit"]) == (0.6, 0.5,
                                                                                   0.2, 1)
    assert (rows["gpon"]["per_org"], rows["gpon"]["peers_per_org"]) == (2.0, 2.0)
    findings = {f["id"]: f["text"] for f in analyze(four_orgs, Q2, org="f1")["key_findings"]}
    assert "sectors" not in findings  # one sector in scope: no ranking to tell
    assert findings["peers"] == ("This organisation saw 5 detected events per organisation in "
                                 "2018Q2, more than the 2 organisations of finance (2.5 per "
                                 "organisation).")
    assert "struts" not in rows  # health's campaign: not a finance peer's
    # health is one organisation: its row would be h1's own count, so it is withheld
    assert [(s["sector"], s["orgs"]) for s in peers["sectors"]] == [("finance", 3)]
    assert peers["sectors"][0]["per_org"] == round(10 / 3, 2)
    assert peers["sectors_withheld"] == 1


def test_a_sector_of_one_withholds_peer_figures(four_orgs):
    doc = analyze(four_orgs, Q2, org="h1")
    peers = doc["peers"]
    assert peers["withheld"] and peers["peer_orgs"] == 0
    assert "withheld" in peers["reason"] and "health" in peers["reason"]
    assert all(c["peers"] is None for c in peers["comparisons"])
    assert "peers" not in {f["id"] for f in doc["key_findings"]}
    assert all(set(r) == {"cve", "detected_events", "per_org", "share"} for r in peers["cves"])
    # the finance row (3 organisations outside the audience) may be shown
    assert {s["sector"]: s["per_org"] for s in peers["sectors"]} == {
        "health": 5.0, "finance": round(10 / 3, 2)}
    assert doc["totals"]["detected_events"]["period"] == 5


def test_no_figure_of_a_lone_organisation_reaches_another_report(four_orgs):
    """h1 alone makes the health sector: nothing of it may show in f2's report."""
    doc = analyze(four_orgs, Q2, org="f2")
    text = json.dumps({k: v for k, v in doc.items() if k not in ("definitions", "generated_at")})
    assert "health" not in text and "struts" not in text and "192.0.2.9" not in text
    assert "CVE-2017-5638" not in text and "lone.example" not in text
    # the attacking address f2 saw stays in its indicators, counted in f2 only (the workspace's
    # 6 sightings in 2 organisations would tell f1's 2)
    assert [(i["value"], i["sightings"], i["orgs"], i["campaigns"])
            for i in doc["indicators"]["appendix"]] == [(ACCESS, 4, 1, ["gpon"])]


def test_all_org_report_lists_every_indicator(four_orgs):
    values = {i["value"] for i in analyze(four_orgs, Q2)["indicators"]["appendix"]}
    assert values == {ACCESS, "192.0.2.9", "http://lone.example/x.sh"}


def test_a_sector_without_events_renders_with_a_note(build):
    ws = make_four_orgs_ws(build)
    ws.register_orgs([Org("r1", "Retail One", "retail"), Org("r2", "Retail Two", "retail")])
    doc = analyze(ws, Q2, sector="retail")
    assert doc["scope"]["orgs"] == 2 and doc["totals"]["detected_events"]["period"] == 0
    assert "sector retail has no events in 2018Q2" in doc["notes"]
    # compared with the 4 other organisations: (5 + 5 + 0 + 5) / 4
    assert doc["peers"]["comparisons"][0] == {
        "metric": "detected_events_per_org", "label": "Detected events per organisation",
        "unit": "count", "value": 0.0, "peers": 3.75}


def test_sector_report(four_orgs):
    fin = analyze(four_orgs, Q2, sector="finance")
    assert fin["scope"] == {"kind": "sector", "org_id": None, "org_name": None,
                            "sector": "finance", "orgs": 3}
    assert fin["totals"]["detected_events"]["period"] == 10
    assert fin["totals"]["orgs_hit"]["period"] == 2
    assert [(s["sector"], s["orgs"], s["per_org"]) for s in fin["sectors"]] == [
        ("finance", 3, round(10 / 3, 2))]
    assert {c["campaign"]: c["period"] for c in fin["campaigns"]} == {"gpon": 6, "iis-webdav": 4}
    # the other sectors are h1 alone: withheld
    assert fin["peers"]["withheld"] and fin["peers"]["peer_orgs"] == 1
    health = analyze(four_orgs, Q2, sector="health")["peers"]
    assert not health["withheld"] and health["peer_orgs"] == 3
    got = {c["metric"]: (c["value"], c["peers"]) for c in health["comparisons"]}
    assert got["detected_events_per_org"] == (5.0, round(10 / 3, 2))


def test_org_without_events_renders_with_a_note(four_orgs):
    doc = analyze(four_orgs, Q2, org="f3")
    assert doc["totals"]["detected_events"]["period"] == 0 and doc["campaigns"] == []
    assert any("Fin Three" in n and "no events" in n for n in doc["notes"])
    assert doc["peers"]["comparisons"][0]["peers"] == 5.0  # (5 + 5) / 2 peers


@pytest.mark.parametrize("kw, names", [({"org": "nope"}, ["f1", "h1"]),
                                       ({"sector": "retail"}, ["finance", "health"])])
def test_unknown_audience_names_the_known_ones(four_orgs, kw, names):
    with pytest.raises(UserError) as e:
        analyze(four_orgs, Q2, **kw)
    assert all(n in str(e.value) for n in names)


def test_org_and_sector_together_is_an_error(four_orgs):
    with pytest.raises(UserError, match="one organisation or one sector"):
        analyze(four_orgs, Q2, org="f1", sector="finance")


def test_unknown_org_error_shows_control_characters_escaped(build):
    build.orgs(("evil\x1b[2J", "Evil", "finance", None), ("ok", "Ok", "finance", None))
    build.events("ok", "2018-05-01", 1)
    with pytest.raises(UserError) as e:
        analyze(build.ws, Q2, org="nope")
    assert "\x1b" not in str(e.value) and "evil\\x1b[2J" in str(e.value)
