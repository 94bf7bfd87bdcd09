import copy
import json

import pytest

from threatscope.analyze import analyze, change, check_consistency, parse_period
from threatscope.analyze.figures import figure_rows
from threatscope.errors import UserError

Q2 = parse_period("2018Q2")

TENCENT = ("203.0.113.1", "CN", "China", 45090, "Tencent", "hosting")
ALIBABA = ("203.0.113.2", "CN", "China", 37963, "Alibaba", "hosting")
COMCAST = ("198.51.100.7", "US", "United States", 7922, "Comcast", "access")


def by(rows, key, value):
    return next(r for r in rows if r[key] == value)


@pytest.mark.parametrize("p, b, fold, pct, flag", [
    (4692, 6, 782.0, 78100.0, "tiny-baseline"),
    (30, 10, 3.0, 200.0, "surging"),
    (29, 10, 2.9, 190.0, None),
    (5, 20, 0.25, -75.0, None),
    (5, 0, None, None, "new"),
    (0, 12, 0.0, -100.0, "gone"),
    (0, 3, 0.0, -100.0, "gone"),
    (0, 0, None, None, None),
])
def test_change_object(p, b, fold, pct, flag):
    assert change(p, b) == {"period": p, "baseline": b, "fold_change": fold,
                            "pct_change": pct, "flag": flag}


def test_two_rules_on_one_event_count_once_per_campaign_and_twice_per_rule(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    build.detect("2018-04-02 10:00:00", rule="r-a", event=("f9", 7))
    build.detect("2018-04-02 10:00:00", rule="r-b", title="IIS other", event=("f9", 7))
    build.detect("2018-04-03 10:00:00", rule="r-a")
    m = analyze(build.ws, Q2)
    c = by(m["campaigns"], "campaign", "iis-webdav")
    assert (c["period"], c["baseline"], c["flag"]) == (2, 0, "new")
    assert by(m["products"], "product", "iis")["period"] == 2
    assert by(m["cves"], "cve", "CVE-2017-7269")["period"] == 2
    assert by(m["families"], "family", "rce")["period"] == 2
    assert [(r["rule_id"], r["period"]) for r in m["rules"]] == [("r-a", 2), ("r-b", 1)]
    assert m["totals"]["detections"]["period"] == 3
    assert m["totals"]["detected_events"]["period"] == 2
    assert sum(x["count"] for x in c["timeline"]) == 2
    assert m["consistency"] == {"ok": True, "problems": []}


def test_sources_and_sectors_count_detected_events_not_rule_matches(build):
    """A request firing a generic SQLi rule and a scanner-UA rule is one attack event: it counts
    once for its source IP, AS, country, hosting share and sector, twice in totals.detections."""
    build.orgs(("o1", "Org 1", "biotech", None), ("o2", "Org 2", "retail", None))
    build.sources(TENCENT, COMCAST)
    generic = {"campaign": None, "product": None, "cves": []}
    sqli = {"rule": "r-sqli", "title": "SQLi", "family": "sqli", **generic}
    scan = {"rule": "r-scan", "title": "Scanner UA", "family": "scanner", **generic}
    for line in (10, 11, 12):  # Tencent -> o1: three requests, each firing both rules
        for rule in (sqli, scan):
            build.detect("2018-04-02 10:00:00", ip=TENCENT[0], org="o1", event=("f1", line), **rule)
    build.detect("2018-04-03 10:00:00", ip=COMCAST[0], org="o2", event=("f2", 5), **sqli)
    build.detect("2018-04-03 11:00:00", ip=COMCAST[0], org="o2", event=("f2", 6), **scan)
    for rule in (sqli, scan):  # baseline: one request, two rules
        build.detect("2018-02-01 10:00:00", ip=COMCAST[0], org="o1", event=("f3", 1), **rule)
    m = analyze(build.ws, Q2)

    t = m["totals"]
    assert (t["detections"]["period"], t["detections"]["baseline"]) == (8, 2)  # rule matches
    assert (t["detected_events"]["period"], t["detected_events"]["baseline"]) == (5, 1)
    assert [(r["rule_id"], r["period"], r["baseline"]) for r in m["rules"]] == [
        ("r-scan", 4, 1), ("r-sqli", 4, 1)]
    assert [(f["family"], f["period"]) for f in m["families"]] == [("scanner", 4), ("sqli", 4)]

    src = m["sources"]
    assert [(r["ip"], r["detected_events"], r["rule_matches"], r["rules"]) for r in src["top_ips"]] == [
        (TENCENT[0], 3, 6, 2), (COMCAST[0], 2, 2, 2)]
    assert [(r["country_code"], r["detected_events"], r["share"]) for r in src["top_countries"]] == [
        ("CN", 3, 0.6), ("US", 2, 0.4)]
    assert [(r["as_org"], r["detected_events"]) for r in src["top_as_orgs"]] == [
        ("Tencent", 3), ("Comcast", 2)]
    assert src["hosting_share"] == 0.6  # 3 of 5 events (6 of 8 rule matches would say 0.75)
    assert src["per_ip_distribution"] == {"p50": 2.5, "p90": 2.9, "p99": 2.99, "max": 3}

    assert [(s["sector"], s["detected_events"], s["baseline_detected_events"], s["per_org"])
            for s in m["sectors"]] == [("biotech", 3, 1, 3.0), ("retail", 2, 0, 2.0)]
    texts = [f["text"] for f in m["key_findings"]]
    assert ("Detected events rose 400% quarter over quarter, from 1 to 5; 2 source IPs attacked "
            "2 organisations.") in texts
    assert ("50% of source IPs were in China, mostly in hosting ranges of Tencent (60% of "
            "detected events); hosting networks sent 60% of all detected events.") in texts
    assert m["consistency"] == {"ok": True, "problems": []}


def test_fold_change_hosting_share_and_the_surge_finding(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    build.sources(TENCENT, ALIBABA, COMCAST)
    build.detect("2018-02-01 08:00:00", 6, ip=COMCAST[0])
    build.detect("2018-05-03 08:00:00", 2000, ip=TENCENT[0])
    build.detect("2018-05-04 08:00:00", 1331, ip=ALIBABA[0])
    build.detect("2018-05-05 08:00:00", 1361, ip=COMCAST[0])
    m = analyze(build.ws, Q2)
    iis = by(m["campaigns"], "campaign", "iis-webdav")
    assert (iis["period"], iis["baseline"], iis["fold_change"], iis["pct_change"], iis["flag"]) == (
        4692, 6, 782.0, 78100.0, "tiny-baseline")
    assert iis["source_ips"] == 3
    assert iis["hosting_share"] == round(3331 / 4692, 4)
    assert [(a["as_org"], a["count"]) for a in iis["top_as_orgs"]] == [
        ("Tencent", 2000), ("Comcast", 1361), ("Alibaba", 1331)]
    assert iis["top_as_orgs"][0]["share"] == round(2000 / 4692, 4)
    assert [(c["country_code"], c["count"]) for c in iis["top_countries"]] == [("CN", 3331), ("US", 1361)]
    assert m["sources"]["hosting_share"] == round(3331 / 4692, 4)
    assert m["sources"]["top_as_orgs"][0] == {
        "asn": 45090, "as_org": "Tencent", "network_type": "hosting", "detected_events": 2000,
        "source_ips": 1, "share": round(2000 / 4692, 4)}
    assert [t["ip"] for t in m["sources"]["top_ips"]] == [TENCENT[0], COMCAST[0], ALIBABA[0]]
    assert m["sources"]["top_ips"][0]["campaigns"] == ["iis-webdav"]
    assert m["sources"]["per_ip_distribution"] == {"p50": 1361.0, "p90": 1872.2, "p99": 1987.22,
                                                   "max": 2000}
    cve, = m["cves"]  # the CVE with what it is in and when it was attacked in the period
    assert (cve["cve"], cve["product"], cve["first_seen"], cve["last_seen"], cve["published"]) == (
        "CVE-2017-7269", "iis", "2018-05-03T08:00:00", "2018-05-05T08:00:00", "2017-03-27")
    texts = [f["text"] for f in m["key_findings"]]
    assert ("IIS exploitation rose 782-fold quarter over quarter, from 6 to 4,692 detected "
            "events; 71% of it came from hosting networks, led by Tencent and Alibaba.") in texts
    assert m["consistency"]["ok"], m["consistency"]["problems"]


def test_timeline_onset_peak_ties_and_the_onset_finding(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    gpon = {"campaign": "gpon", "product": "gpon", "cves": ["CVE-2018-10561"], "rule": "r-gpon"}
    build.detect("2018-03-31 23:59:59", 4, **gpon)  # baseline: not in the timeline
    build.detect("2018-05-01 00:00:00", 1, **gpon)
    build.detect("2018-05-12 03:00:00", 5, **gpon)
    build.detect("2018-05-20 23:00:00", 5, **gpon)  # ties with 12 May: the earliest is the peak
    build.detect("2018-06-30 23:59:59", 2, **gpon)
    build.detect("2018-07-01 00:00:00", 9, **gpon)  # after the period
    m = analyze(build.ws, Q2)
    c = by(m["campaigns"], "campaign", "gpon")
    assert len(c["timeline"]) == 91
    assert c["timeline"][0] == {"day": "2018-04-01", "count": 0}
    assert c["timeline"][-1] == {"day": "2018-06-30", "count": 2}
    assert (c["period"], c["baseline"], c["onset"], c["peak_day"], c["peak_count"], c["last_day"]) == (
        13, 4, "2018-05-01", "2018-05-12", 5, "2018-06-30")
    assert c["cves"] == ["CVE-2018-10561", "CVE-2018-10562"]
    assert (c["public_exploit_date"], c["days_exploit_to_onset"]) == ("2018-04-30", 1)

    fresh = analyze(build.ws, parse_period("2018-05"))  # baseline April has none: "started"
    texts = [f["text"] for f in fresh["key_findings"]]
    assert ("GPON exploitation (CVE-2018-10561) started on 1 May 2018, the day after the public "
            "exploit, and peaked on 12 May (5 detected events).") in texts
    assert len(by(fresh["campaigns"], "campaign", "gpon")["timeline"]) == 31


def test_sectors_per_org_count_orgs_without_detections(build):
    build.orgs(("b1", "Bio 1", "biotech", 2), ("b2", "Bio 2", "biotech", 1),
               ("b3", "Bio 3", "biotech", 3), ("a1", "Acc 1", "accounting", None),
               ("r1", "Retail 1", "retail", 4))
    build.detect("2018-04-05 00:00:00", 9, org="b1")
    build.detect("2018-04-06 00:00:00", 3, org="b2")
    build.detect("2018-04-06 00:00:00", 7, org="a1")
    build.detect("2018-01-06 00:00:00", 6, org="b3")
    build.detect("2018-04-07 00:00:00", 2, org="zz")  # never registered: sector unknown
    m = analyze(build.ws, Q2)
    got = [(s["rank"], s["sector"], s["orgs"], s["detected_events"], s["per_org"], s["sensors"],
            s["per_sensor"], s["baseline_per_org"]) for s in m["sectors"]]
    assert got == [
        (1, "accounting", 1, 7, 7.0, None, None, 0.0),
        (2, "biotech", 3, 12, 4.0, 6, 2.0, 2.0),
        (3, "unknown", 1, 2, 2.0, None, None, 0.0),
        (4, "retail", 1, 0, 0.0, 4, 0.0, 0.0),
    ]
    assert m["inputs"]["orgs"] == 6
    assert m["totals"]["orgs_hit"]["period"] == 4
    assert {"id": "sectors", "text": "Accounting and biotech were hit hardest per organisation "
            "(7 and 4 detected events per organisation)."} in m["key_findings"]
    assert m["consistency"]["ok"], m["consistency"]["problems"]


def test_without_source_table_geo_is_null_and_noted(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    build.detect("2018-04-05 00:00:00", 3)
    m = analyze(build.ws, Q2)
    assert m["sources"]["hosting_share"] is None
    assert m["sources"]["top_countries"] == [
        {"country_code": None, "country_name": None, "detected_events": 3, "source_ips": 1,
         "share": 1.0}]
    assert m["campaigns"][0]["top_as_orgs"] == [{"as_org": None, "asn": None, "count": 3, "share": 1.0}]
    assert any("no source table" in n for n in m["notes"])
    assert m["consistency"]["ok"], m["consistency"]["problems"]


def test_events_only_workspace_and_default_period(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    build.events("o1", "2018-08-02", 4).events("o1", "2018-05-02", 3)
    m = analyze(build.ws)  # no detection table: latest quarter with events
    assert m["period"] == {"label": "2018Q3", "start": "2018-07-01", "end": "2018-09-30",
                           "days": 92, "unit": "quarter"}
    assert m["baseline"]["label"] == "2018Q2"
    assert m["totals"]["events"] == change(4, 3)
    assert m["totals"]["detections"]["period"] == 0 and m["campaigns"] == []
    assert any("no detections table" in n for n in m["notes"])
    assert m["consistency"]["ok"], m["consistency"]["problems"]

    build.detect("2018-05-02 00:00:00", 1)  # detections decide the default period
    assert analyze(build.ws)["period"]["label"] == "2018Q2"


def test_empty_workspace_is_a_user_error(build):
    with pytest.raises(UserError, match="no events or detections"):
        analyze(build.ws)
    with pytest.raises(UserError):
        analyze(build.ws, Q2)


def test_inputs_from_manifest_quarantine_and_detect_run(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    build.detect("2018-04-05 00:00:00", 1)
    with build.ws.connect() as con:
        con.execute("INSERT INTO ingest_manifest (file_id, path, format, lines_read, rows_written, "
                    "rows_quarantined, comment_lines) VALUES ('a', 'a.log', 'combined', 10, 7, 2, 1), "
                    "('b', 'b.log', 'w3c', 5, 4, 0, 1), ('c', 'c.log', 'combined', 3, 3, 0, 0)")
        con.execute("INSERT INTO quarantine (file_id, reason) VALUES ('a', 'bad timestamp'), "
                    "('a', 'field count'), ('a', 'bad timestamp')")
        con.execute("INSERT INTO run_history VALUES ('r1', 'detect', TIMESTAMP '2024-01-01', "
                    "TIMESTAMP '2024-01-01 00:01', '{\"rules_loaded\": 42, \"rules_failed\": [{\"path\": \"x\"}]}')")
    i = analyze(build.ws, Q2)["inputs"]
    assert (i["files"], i["lines_read"], i["rows_written"], i["rows_quarantined"], i["comment_lines"]) == (
        3, 18, 14, 2, 2)
    assert i["quarantine_reasons"] == [{"reason": "bad timestamp", "count": 2},
                                       {"reason": "field count", "count": 1}]
    assert i["formats"] == [{"format": "combined", "files": 2, "rows": 10},
                            {"format": "w3c", "files": 1, "rows": 4}]
    assert (i["rules_loaded"], i["rules_failed"]) == (42, 1)


def test_json_serialisable_and_figures_can_be_explained(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    build.sources(TENCENT)
    build.detect("2018-04-05 00:00:00", 3, ip=TENCENT[0])
    build.detect("2018-04-05 00:00:00", 2, campaign="gpon", product="gpon", rule="r-gpon")
    build.detect("2018-01-05 00:00:00", 1, campaign="gpon", product="gpon", rule="r-gpon")
    m = analyze(build.ws, Q2)
    assert json.loads(json.dumps(m)) == m
    fig = by(m["figures"], "id", "campaigns[campaign=gpon]")
    assert (fig["value"], fig["baseline"]) == (2, 1)
    assert m["definitions"]["campaigns"]["measure"] == "count(DISTINCT ev)"
    rows = figure_rows(build.ws, "campaigns", Q2, key={"campaign": "gpon"})
    assert len(rows) == 2 and {r["rule_id"] for r in rows} == {"r-gpon"}
    assert len(figure_rows(build.ws, "campaigns", Q2, key={"campaign": "gpon"}, baseline=True)) == 1
    ips = figure_rows(build.ws, "sources.ips", Q2, key={"src_ip": TENCENT[0]})
    assert [r["as_org"] for r in ips] == ["Tencent"] * 3
    with pytest.raises(UserError, match="unknown figure"):
        figure_rows(build.ws, "nope", Q2)


def test_consistency_catches_a_broken_document(build):
    build.orgs(("o1", "Org 1", "biotech", None), ("o2", "Org 2", "retail", None))
    build.sources(TENCENT, COMCAST)
    build.detect("2018-01-05 00:00:00", 12, ip=COMCAST[0])
    build.detect("2018-04-05 00:00:00", 30, ip=TENCENT[0])
    build.detect("2018-04-06 00:00:00", 10, ip=COMCAST[0], org="o2")
    good = analyze(build.ws, Q2)
    assert good["consistency"]["ok"] and check_consistency(good) == []
    assert by(good["campaigns"], "campaign", "iis-webdav")["flag"] == "surging"

    def broken(edit):
        m = copy.deepcopy(good)
        edit(m)
        return check_consistency(m)

    def fold(m):
        m["campaigns"][0]["fold_change"] = 9.9
    assert any("fold_change" in p for p in broken(fold))

    def timeline(m):
        m["campaigns"][0]["timeline"][10]["count"] += 1
    assert any("timeline sums" in p for p in broken(timeline))

    def share(m):
        m["sources"]["top_countries"][0]["share"] = 0.9
    assert any("shares sum" in p for p in broken(share))

    def sector(m):
        m["sectors"][0]["detected_events"] += 5
    assert any("sectors: detected_events sum" in p for p in broken(sector))

    assert [(c["country_code"], c["detected_events"]) for c in good["sources"]["countries"]] == [
        ("CN", 30), ("US", 10)]

    def country(m):
        m["sources"]["countries"][0]["detected_events"] += 1
    assert any("CN differs from top_countries" in p for p in broken(country))

    def countries(m):
        m["sources"]["countries"].append({"country_code": "FR", "detected_events": 99})
    assert any("countries: more detected events" in p for p in broken(countries))

    def country(m):
        m["sources"]["top_countries"][0]["detected_events"] += 1
    assert any("top_countries: detected events sum" in p for p in broken(country))

    def matches(m):  # counting sectors in rule matches again would break the sum
        m["totals"]["detected_events"] = change(41, 12)
    assert any("sectors: detected_events sum to 40, expected 41" in p for p in broken(matches))

    def rules(m):
        m["totals"]["detections"] = change(39, 12)
    assert any("rules: period counts sum to 40" in p for p in broken(rules))

    def flag(m):
        m["totals"]["detections"]["flag"] = None
    assert any("flag" in p for p in broken(flag))

    def peak(m):
        m["campaigns"][0]["peak_day"] = "2018-06-01"
    assert any("peak" in p for p in broken(peak))

    assert broken(lambda m: m.pop("sectors"))[0].startswith("malformed metrics document")


def test_gone_campaigns_multi_cve_events_and_list_order(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    build.detect("2018-02-01 00:00:00", 12, campaign="drupalgeddon2", product="drupal",
                 cves=["CVE-2018-7600"], rule="r-d")
    build.detect("2018-05-01 00:00:00", 3, campaign="gpon", product="gpon",
                 cves=["CVE-2018-10561", "CVE-2018-10562"], rule="r-g")
    build.detect("2018-05-02 00:00:00", 3, campaign="thinkphp-rce", product="thinkphp",
                 cves=["CVE-2018-20062"], rule="r-t")
    m = analyze(build.ws, Q2)
    assert [(c["campaign"], c["period"], c["flag"]) for c in m["campaigns"]] == [
        ("gpon", 3, "new"), ("thinkphp-rce", 3, "new"), ("drupalgeddon2", 0, "gone")]
    gone = m["campaigns"][2]
    assert (gone["onset"], gone["peak_day"], gone["peak_count"], gone["last_day"]) == (None, None, 0, None)
    assert gone["days_exploit_to_onset"] is None and gone["public_exploit_date"] == "2018-04-12"
    assert gone["fold_change"] == 0.0 and gone["pct_change"] == -100.0
    assert [(c["cve"], c["period"]) for c in m["cves"]] == [
        ("CVE-2018-10561", 3), ("CVE-2018-10562", 3), ("CVE-2018-20062", 3), ("CVE-2018-7600", 0)]
    # ThinkPHP's public exploit is the earliest of its two CVEs' (CVE-2018-20062, 2018-12-11)
    assert m["campaigns"][1]["public_exploit_date"] == "2018-12-11"
    assert m["campaigns"][1]["days_exploit_to_onset"] == -223
    assert {"id": "gone-drupalgeddon2", "text": "Drupalgeddon 2 (Drupal Form API remote code "
            "execution) stopped: 12 detected events in 2018Q1, none in 2018Q2."} in m["key_findings"]
    assert m["consistency"]["ok"], m["consistency"]["problems"]


def test_sentence_ends_with_one_full_stop():
    from threatscope.analyze.findings import _and, _sentence

    assert _sentence("led by " + _and(["Tencent", "Alibaba Co.,Ltd."])) == (
        "led by Tencent and Alibaba Co.,Ltd."
    )
    assert _sentence("rose 5-fold") == "rose 5-fold."


def test_malware_families_are_ranked_with_their_change_in_rank():
    from threatscope.analyze.consistency import _sorted
    from threatscope.analyze.metrics import _ranked, change

    rows = [{"family": f, **change(p, b)} for f, p, b in
            (("qakbot", 3, 9), ("emotet", 12, 4), ("trickbot", 3, 0), ("dridex", 0, 4))]
    got = {r["family"]: (r["rank"], r["baseline_rank"], r["rank_change"]) for r in _ranked(rows)}
    # period: emotet 12, then qakbot and trickbot tie at 3; baseline: qakbot 9, emotet and
    # dridex tie at 4
    assert got == {"emotet": (1, 2, 1), "qakbot": (2, 1, -1), "trickbot": (2, None, None),
                   "dridex": (None, 2, None)}
    assert [r["family"] for r in _ranked(rows)] == ["emotet", "qakbot", "trickbot", "dridex"]
    # a tie in the period is ordered by name, whatever the baselines (the consistency check's
    # order for every ranked table): the demo's emotet and shellcode-injector
    tie = [{"family": f, **change(p, b)} for f, p, b in
           (("shellcode-injector", 16, 7), ("emotet", 16, 2), ("downloader", 70, 20))]
    ranked = _ranked(tie)
    assert [r["family"] for r in ranked] == ["downloader", "emotet", "shellcode-injector"]
    assert [r["rank"] for r in ranked] == [1, 2, 2]
    assert _sorted("families", ranked, "period", "family") == []


@pytest.mark.parametrize("titles", [("Zeta probe", "Alpha probe"), ("Alpha probe", "Zeta probe")])
def test_a_campaigns_title_and_product_on_a_tie_are_the_first_by_name(build, titles):
    build.orgs(("o1", "Org 1", "biotech", None))
    for title in titles:  # two rules of one campaign, as many matches each
        build.detect("2018-04-02 10:00:00", 2, rule=f"r-{title}", title=title,
                     campaign="unlisted-campaign", product=title.split()[0].lower())
    c = by(analyze(build.ws, Q2)["campaigns"], "campaign", "unlisted-campaign")
    assert (c["title"], c["product"]) == ("Alpha probe", "alpha")
