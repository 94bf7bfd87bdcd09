"""Exposure (exploit attempts a server answered 2xx or with an unusual size) and the
recommendations drawn from the metrics, on the real workspace of tests/exposure_ws.py."""

from __future__ import annotations

import copy

import pytest

from tests.exposure_ws import HOSTILE_HOST, HOSTILE_URI, build_exposure_ws
from threatscope.analyze import Period, analyze, check_consistency
from threatscope.analyze.figures import figure_rows
from threatscope.analyze.knowledge import campaign_info, cve_info
from threatscope.analyze.recommend import recommendations


@pytest.fixture(scope="module")
def exposure_metrics(tmp_path_factory):
    ws = build_exposure_ws(tmp_path_factory.mktemp("expo") / "ws")
    return ws, analyze(ws, Period.parse("2018Q2"))


def _row(m: dict, threat: str, server: str = "10.0.0.5") -> dict:
    return next(r for r in m["exposure"]["rows"]
                if r["threat"] == threat and r["server"] == server)


def test_success_and_unusual_size_are_counted_per_server_and_campaign(exposure_metrics):
    _, m = exposure_metrics
    gpon = _row(m, "gpon")
    assert (gpon["org_id"], gpon["server"], gpon["threat_kind"]) == ("o1", "10.0.0.5", "campaign")
    # lines 41..45: 200 and 200 (one event matched twice) succeed, the 404 and 500s do not
    assert gpon["attempts"] == 5
    assert gpon["successes"] == 2
    # 5 MB and 20 KB exceed 10x the median (1019.5 bytes); 9000 bytes and 1010 bytes do not
    assert gpon["unusual_size"] == 2
    assert gpon["first_seen"] == "2018-05-10T11:00:00"
    assert gpon["last_seen"] == "2018-05-14T11:00:00"
    # the example is the large answered attempt's URI, kept as logged (renderers escape it)
    assert gpon["example_uri"] == HOSTILE_URI
    assert gpon["advice"] == campaign_info("gpon")["advice"]
    assert gpon["cves"] == ["CVE-2018-10561", "CVE-2018-10562"]


def test_cve_without_campaign_has_its_own_row_and_generic_probes_are_left_out(exposure_metrics):
    _, m = exposure_metrics
    php = _row(m, "CVE-2017-9841")
    assert (php["threat_kind"], php["attempts"], php["successes"], php["unusual_size"]) == (
        "cve", 1, 1, 0)
    assert php["advice"] == cve_info("CVE-2017-9841")["advice"] and php["product"] == "phpunit"
    # the sqli probe answered 200 is no exploit attempt
    assert {r["threat"] for r in m["exposure"]["rows"]} == {"gpon", "CVE-2017-9841"}
    # a server known by its Host header only; 9 MB, but 5 references are too few to judge
    evil = next(r for r in m["exposure"]["rows"] if r["server"] == HOSTILE_HOST)
    assert (evil["attempts"], evil["successes"], evil["unusual_size"]) == (1, 1, 0)


def test_totals_compare_with_the_baseline(exposure_metrics):
    _, m = exposure_metrics
    e = m["exposure"]
    # 5 gpon + 1 phpunit on 10.0.0.5, 1 gpon on the hostile host (9 MB, too few references)
    assert (e["attempts"]["period"], e["attempts"]["baseline"]) == (7, 1)
    assert (e["successes"]["period"], e["successes"]["baseline"]) == (4, 1)
    assert (e["unusual_size"]["period"], e["unusual_size"]["baseline"]) == (2, 0)
    ids = {f["id"] for f in m["figures"]}
    assert "exposure[org_id=o1][server=10.0.0.5][threat_kind=campaign][threat=gpon]" in ids
    assert {"exposure.attempts", "exposure.successes", "exposure.unusual_size"} <= ids
    assert "exposure" in m["definitions"]
    assert m["consistency"]["ok"], m["consistency"]["problems"]


def test_rows_behind_the_exposure_figure_can_be_listed(exposure_metrics):
    ws, _ = exposure_metrics
    rows = figure_rows(ws, "exposure", Period.parse("2018Q2"),
                       key={"server": "10.0.0.5", "threat": "gpon"})
    flagged = sorted((r["source_line"], r["success"], r["unusual_size"]) for r in rows)
    # one row per event and threat: line 43, matched by two rules, is listed once
    assert flagged == [(41, True, False), (42, False, False), (43, True, True),
                       (44, False, True), (45, False, False)]


def test_recommendations_come_with_their_evidence(exposure_metrics):
    _, m = exposure_metrics
    recs = {r["id"]: r for r in m["recommendations"]}
    ids = {f["id"] for f in m["figures"]}
    patch = recs["patch-exposed:gpon"]
    assert "10.0.0.5" in patch["text"] and campaign_info("gpon")["advice"] in patch["text"]
    for r in m["recommendations"]:
        assert r["evidence"] and r["text"]
    assert set(patch["evidence"]) <= ids
    # nothing seen, nothing recommended: no hosting share, PowerShell, malware or IOC list here
    assert not any(k.startswith(("rate-limit", "powershell", "malware", "block-listed"))
                   for k in recs)


def test_each_recommendation_appears_only_with_its_evidence(exposure_metrics):
    _, m = exposure_metrics
    doc = copy.deepcopy(m)
    doc["sources"]["hosting_share"] = 0.8
    doc["sources"]["top_as_orgs"] = [
        {"asn": 14061, "as_org": "DigitalOcean", "network_type": "hosting"},
        {"asn": 3320, "as_org": "Deutsche Telekom", "network_type": "isp"}]
    doc["endpoint"]["powershell"]["events"]["period"] = 40
    doc["endpoint"]["powershell"]["obfuscated"]["period"] = 10
    doc["endpoint"]["powershell"]["obfuscated_share"] = 0.25
    doc["malware"] = [{"family": "emotet", "period": 12}, {"family": "unknown-x", "period": 3}]
    doc["indicators"]["listed_sources"] = [{"feed": "feodo", "period": 9, "source_ips": 2}]
    recs = {r["id"]: r for r in recommendations(doc)}
    assert "AS14061 DigitalOcean" in recs["rate-limit-hosting"]["text"]
    assert "Deutsche Telekom" not in recs["rate-limit-hosting"]["text"]
    assert "25.0%" in recs["powershell-logging"]["text"]
    assert "malware:emotet" in recs and "malware:unknown-x" not in recs  # no advice known
    assert recs["block-listed:feodo"]["evidence"] == ["indicators.listed_sources[feed=feodo]"]
    # a share under the threshold, no obfuscated event: those two go
    doc["sources"]["hosting_share"] = 0.49
    doc["endpoint"]["powershell"]["obfuscated"]["period"] = 0
    ids = [r["id"] for r in recommendations(doc)]
    assert "rate-limit-hosting" not in ids and "powershell-logging" not in ids
    # fixed order: exposure, rising threats, hosting, PowerShell, malware, IOC lists
    assert ids == sorted(ids, key=lambda i: ["patch-exposed", "mitigate", "rate-limit",
                                             "powershell", "malware", "block-listed"].index(
        next(p for p in ["patch-exposed", "mitigate", "rate-limit", "powershell", "malware",
                         "block-listed"] if i.startswith(p))))


def test_rising_campaigns_and_cves_only(exposure_metrics):
    _, m = exposure_metrics
    doc = copy.deepcopy(m)
    base = {"title": None, "product": "iis", "cves": ["CVE-2017-7269"], "fold_change": None,
            "pct_change": None}
    doc["campaigns"] = [
        {**base, "campaign": "iis-webdav", "period": 195, "baseline": 1, "flag": "tiny-baseline"},
        {**base, "campaign": "iis-shortname", "period": 4, "baseline": 2,
         "flag": "tiny-baseline"},
        {**base, "campaign": "drupalgeddon2", "product": "drupal", "cves": ["CVE-2018-7600"],
         "period": 50, "baseline": 40, "flag": None},
        {**base, "campaign": "gpon", "product": "gpon", "cves": [], "period": 0, "baseline": 30,
         "flag": "gone"}]
    doc["cves"] = [{"cve": "CVE-2017-7269", "period": 195, "baseline": 1,
                    "flag": "tiny-baseline"},
                   {"cve": "CVE-2017-9841", "period": 12, "baseline": 0, "flag": "new"}]
    recs = {r["id"]: r for r in recommendations(doc)}
    rising = [k for k in recs if k.startswith("mitigate")]
    # the CVE of a recommended campaign is not repeated; the unchanged and gone ones stay out
    assert rising == ["mitigate-campaign:iis-webdav", "mitigate-cve:CVE-2017-9841"]
    assert "rose to 195 detected events from 1" in recs["mitigate-campaign:iis-webdav"]["text"]
    assert cve_info("CVE-2017-7269")["advice"] in recs["mitigate-campaign:iis-webdav"]["text"]


def test_the_analysis_consistency_check_covers_exposure(exposure_metrics):
    _, m = exposure_metrics
    assert check_consistency(m) == []
    doc = copy.deepcopy(m)
    doc["exposure"]["successes"]["period"] = doc["exposure"]["attempts"]["period"] + 1
    doc["exposure"]["rows"][0]["unusual_size"] = doc["exposure"]["rows"][0]["attempts"] + 1
    problems = check_consistency(doc)
    assert "exposure: period successes exceed the attempts" in problems
    assert any(p.startswith("exposure o1/10.0.0.5/gpon") for p in problems)
