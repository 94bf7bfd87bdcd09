"""The report's source classification, attacker infrastructure and indicators sections: figures
in HTML, Markdown and CSV equal the metrics', hostile values stay text, old documents render."""

from __future__ import annotations

import copy
import csv
import re

import pytest
from markdown_it import MarkdownIt

from tests.report.conftest import (
    INDICATOR_PAYLOADS,
    KNOWN,
    SERVICE_CLASSES,
    build_metrics,
)
from tests.report.helpers import Page, Tables, external_refs, md_tables, section, split_row
from threatscope.report import InconsistentReport, render_html, render_markdown, write_report
from threatscope.report.consistency import check_view
from threatscope.report.markdown import md
from threatscope.report.model import build_view
from threatscope.report.tables import TABLES, cell, services_cell
from threatscope.report.text import clean, fmt_fold, fmt_int, fmt_pct, fmt_share

NEW_TABLES = {"sources_classification", "sources_targeted", "infrastructure_os_families",
              "infrastructure_host_kinds", "infrastructure_service_classes",
              "infrastructure_products", "infrastructure_as_orgs", "infrastructure_countries",
              "indicators_listed_sources", "indicators_appendix"}
NO_HOST_RECORDS = "No host records cover the attacking addresses."
COMMANDS = ("threatscope intel add shodan FILE", "threatscope intel fetch --shodan-key KEY")


def shown(ts: str) -> str:
    """An ISO timestamp as the HTML shows it: date, a space (where it may wrap), time."""
    return ts.replace("T", " ", 1)


def _old(m: dict) -> dict:
    """The document as the analysis wrote it before these sections existed."""
    m = copy.deepcopy(m)
    m.pop("infrastructure")
    m.pop("indicators")
    m.pop("exposure")
    m.pop("recommendations")
    for k in ("classification", "noise_share", "targeted"):
        m["sources"].pop(k)
    return m


def _md_html(text: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(text)


def _md_table(text: str, head0: str, nth: int = 0) -> list[list[str]]:
    """The ``nth`` Markdown table whose first header cell is ``head0``, without its alignment
    row."""
    found = []
    for t in md_tables(text):
        rows = [[c.strip() for c in split_row(line)] for line in t]
        if rows[0][0] == head0:
            found.append([rows[0]] + rows[2:])
    assert len(found) > nth, f"no table headed {head0!r}"
    return found[nth]


def test_sections_are_in_order_and_in_the_table_of_contents(metrics):
    html = render_html(metrics)
    order = re.findall(r'<section id="([^"]+)">', html)
    assert order == ["findings", "recommendations", "comparison", "timelines", "exposure",
                     "sources", "infrastructure",
                     "endpoint", "malware", "sectors", "indicators", "methodology"]
    toc = [a["href"] for t, a in Page(html).elements if t == "a"]
    assert toc == [f"#{s}" for s in order]
    text = render_markdown(metrics)
    heads = re.findall(r"^## (.+)$", text, re.M)
    assert heads == ["Key findings", "Recommendations", "Period comparison", "Campaign timelines",
                     "Exposure", "Sources",
                     "Attacker infrastructure", "Endpoint", "Malware", "Sectors", "Indicators",
                     "Methodology"]
    assert text.index("### Background noise vs targeted attacks") < text.index(
        "## Attacker infrastructure")


def test_html_classification_figures_equal_the_metrics(metrics):
    src = metrics["sources"]
    html = render_html(metrics)
    part = html[html.index('<h3 id="noise">'):html.index('<section id="infrastructure">')]
    page, tables = Page(part), Tables(part)
    assert re.search(r'Background noise</div><div class="v">'
                     + re.escape(fmt_share(src["noise_share"])), part)
    rows = tables["classification"]
    assert rows[0][:3] == ["Classification", "Kind", "2018Q2"]
    assert len(rows) == 1 + len(src["classification"])
    for r, got in zip(src["classification"], rows[1:], strict=True):
        assert got == [r["classification"], "noise" if r["noise"] else "targeted",
                       fmt_int(r["period"]), fmt_int(r["baseline"]), fmt_fold(r["fold_change"]),
                       fmt_pct(r["pct_change"]), got[6], fmt_int(r["source_ips"]),
                       fmt_share(r["share"]), fmt_share(r["baseline_share"])]
    # the chart: one bar per class, targeted in its own colour, values with shares
    svgs = [a for t, a in page.elements if t == "svg"]
    assert [a["aria-label"] for a in svgs] == ["Detected events by source classification"]
    bars = [a["class"] for t, a in page.elements if t == "rect"]
    assert bars == ["c-noise" if r["noise"] else "c-targeted" for r in src["classification"]]
    for r in src["classification"]:
        assert f"{fmt_int(r['period'])} ({fmt_share(r['share'])})" in page.text
    targeted = tables["targeted"]
    assert [row[:6] for row in targeted[1:]] == [
        [t["ip"], t["country_code"], t["as_org"], t["network_type"],
         fmt_int(t["detected_events"]), fmt_int(t["orgs_hit"])] for t in src["targeted"]]
    assert targeted[2][6] == "drupalgeddon2, iis-webdav"


def _share_rows(rows, key):
    return [[r[key], fmt_int(r["period"]), fmt_share(r["share"]), fmt_int(r["baseline"]),
             fmt_share(r["baseline_share"]), fmt_pct(r["pct_change"])] for r in rows]


def test_html_infrastructure_figures_equal_the_metrics(metrics):
    inf = metrics["infrastructure"]
    html = section(render_html(metrics), "infrastructure")
    page, tables = Page(html), Tables(html)
    kpis = [(k, re.sub(r"<[^>]+>", "", v)) for k, v in
            re.findall(r'<div class="k">([^<]*)</div><div class="v">(.*?)</div>', html)]
    assert kpis == [("Attacking addresses", fmt_int(inf["source_ips"]["period"])),
                    ("With a host record", fmt_int(inf["with_host_record"]["period"]))]
    assert f"coverage {fmt_share(inf['coverage'])}" in page.text
    assert NO_HOST_RECORDS not in page.text
    for tid, key, lst in (("infra-os", "os_family", "os_families"),
                          ("infra-kinds", "host_kind", "host_kinds"),
                          ("infra-services", "service_class", "service_classes"),
                          ("infra-products", "product", "products")):
        rows = tables[tid]
        assert len(rows) == 1 + len(inf[lst]), tid
        assert [r[:6] for r in rows[1:]] == _share_rows(inf[lst], key), tid
        for r in inf[lst]:  # shares are of the addresses with a host record
            assert fmt_share(r["period"] / KNOWN) == fmt_share(r["share"])
    # each service class with its services and their address counts
    services = [r[7] for r in tables["infra-services"][1:]]
    assert services == [", ".join(f"{s} {fmt_int(p)}" for s, p, _ in svc)
                        for _, _, _, svc in SERVICE_CLASSES]
    assert "smtp 280, pop3 120" in services
    assert [r[-1] for r in tables["infra-services"][1:]] == services
    as_rows = tables["infra-as-orgs"]
    assert as_rows[0] == ["AS organisation", "ASN", "Network", "Addresses", "Share", "Windows",
                          "Compromised servers", "Home routers", "Cloud instances"]
    assert as_rows[1:] == [[a["as_org"], str(a["asn"]), a["network_type"],
                            fmt_int(a["source_ips"]), fmt_share(a["share"]),
                            fmt_int(a["windows"]), fmt_int(a["compromised_servers"]),
                            fmt_int(a["home_routers"]), fmt_int(a["cloud_instances"])]
                           for a in inf["as_orgs"]]
    assert tables["infra-countries"][1:] == [
        [c["country_code"], fmt_int(c["source_ips"]), fmt_share(c["share"]),
         fmt_int(c["windows"]), fmt_int(c["compromised_servers"]), fmt_int(c["home_routers"]),
         fmt_int(c["cloud_instances"])] for c in inf["countries"]]
    # three charts, one bar per row, each labelled with its count and share
    charts = {a["aria-label"]: a for t, a in page.elements if t == "svg"}
    assert set(charts) == {"Attacking addresses by operating system family",
                           "Attacking addresses by kind of host",
                           "Attacking addresses by class of service they expose"}
    n_rows = sum(len(inf[k]) for k in ("os_families", "host_kinds", "service_classes"))
    assert sum(1 for t, _ in page.elements if t == "rect") == n_rows
    for k in ("os_families", "host_kinds", "service_classes"):
        for r in inf[k]:
            assert f"{fmt_int(r['period'])} ({fmt_share(r['share'])})" in page.text


def test_html_indicators_figures_equal_the_metrics(metrics):
    ind = metrics["indicators"]
    html = section(render_html(metrics), "indicators")
    page, tables = Page(html), Tables(html)
    assert "threatscope export stix" in page.text and "threatscope export misp" in page.text
    assert "threatscope export indicators" in page.text
    assert f"{fmt_int(ind['counts']['attacker'])} attacker and {ind['counts']['payload']} payload" \
        in page.text
    listed = tables["ioc-listed"]
    assert [r[:8] for r in listed[1:]] == [
        [r["feed"], fmt_int(r["period"]), fmt_int(r["baseline"]), fmt_fold(r["fold_change"]),
         fmt_pct(r["pct_change"]), r["flag"] == "surging" and "SURGING" or "NEW (no baseline)",
         fmt_int(r["source_ips"]), ", ".join(r["malware_families"])]
        for r in ind["listed_sources"]]

    def expect(r):
        return [r["role"], r["indicator_type"], r["value"], fmt_int(r["sightings"]),
                ", ".join(r["campaigns"]) or "—", ", ".join(r["cves"]) or "—",
                ", ".join(r["malware_families"]) or "—", ", ".join(r["ioc_feeds"]) or "—",
                shown(r["first_seen"]), shown(r["last_seen"])]

    assert tables["ioc-payloads"][1:] == [expect(r) for r in ind["payload_matches"]]
    assert tables["ioc-appendix"][1:] == [expect(r) for r in ind["appendix"]]
    # values are code-styled text, and no URL in them became a link
    assert sum(1 for t, a in page.elements if t == "td" and a.get("class") == "code") == \
        len(ind["payload_matches"]) + len(ind["appendix"])
    assert "a" not in page.tags()
    assert "http://203.0.113.9/bins/mozi.m" in page.text


def test_markdown_new_sections_equal_the_metrics(metrics):
    text = render_markdown(metrics)
    src, inf, ind = metrics["sources"], metrics["infrastructure"], metrics["indicators"]
    assert f"**Background noise:** {fmt_share(src['noise_share'])}" in text
    cls = _md_table(text, "Classification")
    assert [r[:4] + r[7:] for r in cls[1:]] == [
        [md(r["classification"]), "noise" if r["noise"] else "targeted", fmt_int(r["period"]),
         fmt_int(r["baseline"]), fmt_int(r["source_ips"]), fmt_share(r["share"]),
         fmt_share(r["baseline_share"])] for r in src["classification"]]
    targeted = _md_table(text, "IP", 1)  # after the most active source IPs
    assert targeted[0][5] == "Organisations hit"
    assert [r[:6] for r in targeted[1:]] == [
        [md(t["ip"]), t["country_code"], md(t["as_org"]), t["network_type"],
         fmt_int(t["detected_events"]), fmt_int(t["orgs_hit"])] for t in src["targeted"]]
    assert f"- **Attacking addresses:** {fmt_int(inf['source_ips']['period'])}" in text
    assert f"- **With a host record:** {fmt_int(KNOWN)} (coverage {fmt_share(inf['coverage'])}" \
        in text
    for head, key, lst, nth in (("OS family", "os_family", "os_families", 0),
                                ("Kind of host", "host_kind", "host_kinds", 0),
                                ("Service class", "service_class", "service_classes", 0),
                                ("Product", "product", "products", 1)):  # after the comparison
        rows = _md_table(text, head, nth)
        assert [r[:6] for r in rows[1:]] == [[md(x[0])] + x[1:]
                                             for x in _share_rows(inf[lst], key)], head
    services = [r[7] for r in _md_table(text, "Service class")[1:]]
    assert "smtp 280, pop3 120" in services
    assert _md_table(text, "AS organisation", 1)[1:] == [
        [md(a["as_org"]), md(a["asn"]), md(a["network_type"]), fmt_int(a["source_ips"]),
         fmt_share(a["share"]), fmt_int(a["windows"]), fmt_int(a["compromised_servers"]),
         fmt_int(a["home_routers"]), fmt_int(a["cloud_instances"])] for a in inf["as_orgs"]]
    assert _md_table(text, "Country", 1)[1:] == [
        [c["country_code"], fmt_int(c["source_ips"]), fmt_share(c["share"]),
         fmt_int(c["windows"]), fmt_int(c["compromised_servers"]), fmt_int(c["home_routers"]),
         fmt_int(c["cloud_instances"])] for c in inf["countries"]]
    assert [r[:2] for r in _md_table(text, "IOC list")[1:]] == [
        [r["feed"], fmt_int(r["period"])] for r in ind["listed_sources"]]
    for nth, key in enumerate(("payload_matches", "appendix")):
        rows = _md_table(text, "Role", nth)
        assert [[r[2], r[3], r[9]] for r in rows[1:]] == [
            [md(r["value"], 300), fmt_int(r["sightings"]), md(r["last_seen"])]
            for r in ind[key]], key
    assert "`threatscope export stix|misp|indicators`" in text
    # no link anywhere, though the values include URLs and a domain
    rendered = _md_html(text)
    assert "<a " not in rendered and "http://203.0.113.9/bins/mozi.m" in Page(rendered).text


@pytest.mark.parametrize("how", ["empty", "zero-records"])
def test_no_host_records_says_how_to_add_them(how, empty_metrics):
    m = empty_metrics if how == "empty" else build_metrics()
    if how == "zero-records":
        inf = m["infrastructure"]
        inf.update(with_host_record={"period": 0, "baseline": 0, "fold_change": None,
                                     "pct_change": None, "flag": None}, coverage=0.0,
                   os_families=[], host_kinds=[], service_classes=[], products=[], as_orgs=[],
                   countries=[])
    sec = Page(section(render_html(m), "infrastructure"))
    assert NO_HOST_RECORDS in sec.text
    for c in COMMANDS:
        assert c in sec.text
    assert "svg" not in sec.tags() and "table" not in sec.tags()
    text = render_markdown(m)
    part = text[text.index("## Attacker infrastructure"):text.index("## Endpoint")]
    assert NO_HOST_RECORDS in part and all(f"`{c}`" in part for c in COMMANDS)
    assert all(c["ok"] for c in check_view(build_view(m)))


def test_empty_period_new_sections(empty_metrics):
    html = render_html(empty_metrics)
    assert "No source classification in this period" in Page(html).text
    ind = Page(section(html, "indicators")).text
    assert "No attacking address is named by an IOC list" in ind
    assert "No indicator was seen in this period" in ind
    text = render_markdown(empty_metrics)
    assert "_No source classification in this period._" in text
    assert "_No indicator was seen in this period._" in text


def test_no_targeted_source(metrics):
    metrics["sources"]["targeted"] = []
    assert "No source attacked only a few organisations." in Page(render_html(metrics)).text
    assert "_No source attacked only a few organisations._" in render_markdown(metrics)


def test_old_documents_without_the_new_keys_still_render(metrics, tmp_path):
    old = _old(metrics)
    paths = write_report(old, tmp_path)
    html = paths["html"].read_text()
    text = Page(html).text
    assert "All 5 checks passed" in text
    assert "This report has no infrastructure figures" in text
    assert "This report has no indicator figures" in text
    assert "No source classification in this period" in text
    assert NO_HOST_RECORDS not in text
    md_text = paths["md"].read_text()
    assert "All 5 checks passed" in md_text and "no infrastructure figures" in md_text
    for name in NEW_TABLES:
        with open(paths["tables"] / f"{name}.csv", newline="") as f:
            assert list(csv.reader(f)) == [list(TABLES[name][1])], name
    view = build_view(old)
    assert view["infrastructure"] is None and view["indicators"] is None
    assert view["sources"]["classification"] == [] and view["sources"]["noise_share"] is None


@pytest.mark.parametrize("bad", [
    {"infrastructure": "x", "indicators": [1]},
    {"infrastructure": {"os_families": "x", "service_classes": [{"service_class": "mail",
                                                                "services": "smtp"}, 3],
                        "source_ips": 5, "as_orgs": [None]},
     "indicators": {"appendix": [{"value": "x", "campaigns": "c1"}, "y"], "counts": 3}},
])
def test_malformed_new_keys_are_ignored(bad, tmp_path):
    m = build_metrics()
    m.update(bad)
    m["sources"]["classification"] = {"not": "a list"}
    m["sources"]["targeted"] = [None, {"ip": "192.0.2.1", "campaigns": None}]
    assert "Threat report" in Page(render_html(m)).text
    assert render_markdown(m).startswith("# Threat report")
    if "service_classes" in bad["infrastructure"]:
        # a service class without counts renders, but fails a check: the report is not written
        with pytest.raises(InconsistentReport, match=r"service_classes\[mail\]"):
            write_report(m, tmp_path)
    else:
        paths = write_report(m, tmp_path)
        assert "Threat report" in Page(paths["html"].read_text()).text
        assert paths["md"].read_text().startswith("# Threat report")
    v = build_view(m)
    assert v["sources"]["classification"] == []
    assert v["sources"]["targeted"][0]["ip"] == "192.0.2.1"
    assert v["sources"]["targeted"][0]["campaigns"] == []
    if isinstance(bad["infrastructure"], dict):
        assert v["infrastructure"]["os_families"] == []
        assert v["infrastructure"]["service_classes"][0]["services"] == []
        assert v["infrastructure"]["source_ips"] is None
        assert v["indicators"]["appendix"] == [dict.fromkeys(
            ("role", "indicator_type", "sightings", "first_seen", "last_seen", "orgs",
             "country_code", "as_org", "classification")) | {
            "value": "x", "campaigns": ["c1"], "cves": [], "malware_families": [],
            "ioc_feeds": []}]


def test_hostile_new_sections_are_text_in_html(hostile_metrics):
    html = render_html(hostile_metrics)
    page = Page(html)
    assert not re.search(r"<\s*(script|img|iframe)", html, re.I)
    assert external_refs(page) == []
    assert all(a.get("href", "#").startswith("#") for t, a in page.elements if t == "a")
    for tag, attrs in page.elements:
        # data-figure* hold figure ids verbatim (escaped), never a URL
        assert not any(v and "javascript:" in v for k, v in attrs.items()
                       if not k.startswith("data-figure")), (tag, attrs)
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    for name in ("infrastructure", "indicators"):
        assert "a" not in Page(section(html, name)).tags(), name
    ind = Page(section(html, "indicators")).text
    for p in INDICATOR_PAYLOADS:
        assert clean(p, 600) in ind, p
    tables = Tables(section(html, "indicators"))
    assert [r[2] for r in tables["ioc-appendix"][1:]] == [
        clean(r["value"], 600) for r in hostile_metrics["indicators"]["appendix"]]
    inf = Tables(section(html, "infrastructure"))
    assert inf["infra-as-orgs"][1][0] == INDICATOR_PAYLOADS[2]
    assert inf["infra-products"][1][0] == INDICATOR_PAYLOADS[3]
    assert inf["infra-services"][1][7].startswith(INDICATOR_PAYLOADS[3] + " ")


def test_hostile_new_sections_are_text_in_markdown(hostile_metrics):
    text = render_markdown(hostile_metrics)
    assert "<script" not in text.lower() and "<img" not in text.lower()
    rendered = _md_html(text)
    page = Page(rendered)
    assert "a" not in page.tags() and "img" not in page.tags()
    assert not any(k in ("href", "src") or k.startswith("on") for _, a in page.elements for k in a)
    for p in INDICATOR_PAYLOADS:
        assert clean(p, 600) in page.text, p
    # a URL or www. name is not even auto-linked by GitHub's extended autolinks
    assert "http\\://evil.example/payload.sh" in text and "www\\.evil.example" in text
    for t in md_tables(text):
        width = len(split_row(t[0]))
        assert all(len(split_row(row)) == width for row in t), t[0]


@pytest.mark.parametrize("fixture", ["metrics", "hostile_report"])
def test_new_csv_tables(fixture, request, tmp_path):
    m = request.getfixturevalue(fixture)
    folder = write_report(m, tmp_path)["tables"]
    assert NEW_TABLES <= {p.stem for p in folder.glob("*.csv")}

    def read(name):
        with open(folder / f"{name}.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    services = read("infrastructure_service_classes")
    assert [r["services"] for r in services] == [
        services_cell(c["services"]) for c in m["infrastructure"]["service_classes"]]
    assert [r["share"] for r in read("infrastructure_os_families")] == [
        cell(r["share"]) for r in m["infrastructure"]["os_families"]]
    assert [r["noise"] for r in read("sources_classification")] == ["true"] * 3 + ["false"]
    if fixture == "metrics":
        assert services[1]["services"] == "smtp=280;pop3=120"
        return
    # formula-looking cells are defused, however they arrive
    assert [r["as_org"] for r in read("infrastructure_as_orgs")] == [
        INDICATOR_PAYLOADS[2], "'" + INDICATOR_PAYLOADS[3]]
    assert read("infrastructure_products")[0]["product"] == "'" + INDICATOR_PAYLOADS[3]
    assert services[0]["services"].startswith("'" + INDICATOR_PAYLOADS[3] + "=")
    values = [r["value"] for r in read("indicators_appendix")]
    assert "'" + INDICATOR_PAYLOADS[3] in values and INDICATOR_PAYLOADS[1] in values
    for name in NEW_TABLES:
        for row in read(name):
            for v in row.values():
                assert not v.startswith(("=", "+", "@", "\t", "\r")), (name, v)


def _failed(m: dict) -> dict[str, str]:
    return {c["check"]: c["detail"] for c in check_view(build_view(m)) if not c["ok"]}


def test_consistency_checks_of_the_new_figures(metrics):
    assert _failed(metrics) == {}
    m = copy.deepcopy(metrics)
    m["sources"]["classification"][0]["fold_change"] = 9.0
    m["infrastructure"]["host_kinds"][0]["fold_change"] = 9.0
    assert "host_kinds[compromised-server]" in _failed(m)[
        "fold and percent changes equal the ratio of their counts"]

    m = copy.deepcopy(metrics)
    m["sources"]["classification"][0]["share"] += 0.2
    m["sources"]["noise_share"] = 0.5
    got = _failed(m)["source classification shares sum to 100% and the noise share to its classes"]
    assert "period: classification shares sum to" in got and "noise_share 0.5" in got

    m = copy.deepcopy(metrics)
    m["infrastructure"]["os_families"][0]["share"] = 0.9
    m["infrastructure"]["as_orgs"][0]["share"] = 1.5
    got = _failed(m)
    assert "os_families[linux]: share 0.9" in got[
        "infrastructure shares = addresses ÷ addresses with a host record"]
    assert "infrastructure.as_orgs: share outside 0..1" in got[
        "shares lie in 0..1 and sum to at most 100%"]

    m = copy.deepcopy(metrics)
    m["infrastructure"]["host_kinds"].append(
        {"host_kind": "extra", "period": 5, "baseline": 0, "fold_change": None,
         "pct_change": None, "flag": "new", "share": 5 / KNOWN, "baseline_share": 0.0})
    m["infrastructure"]["source_ips"] = {"period": 1_000, "baseline": 3_200,
                                         "fold_change": 1_000 / 3_200,
                                         "pct_change": 100 * (1_000 - 3_200) / 3_200,
                                         "flag": None}
    got = _failed(m)["OS families and host kinds count at most the addresses with a host "
                     "record, which are at most the attacking addresses"]
    assert "host_kinds count 1805 > 1800" in got and "1800 addresses with a host record > 1000" \
        in got
    # service class shares may add up to more than 100% (an address runs several services)
    m = copy.deepcopy(metrics)
    for r in m["infrastructure"]["service_classes"]:
        r["period"] = 1_500
        r["fold_change"] = 1_500 / r["baseline"] if r["baseline"] else None
        r["pct_change"] = 100 * (1_500 - r["baseline"]) / r["baseline"] if r["baseline"] else None
        r["share"] = 1_500 / KNOWN
    assert sum(r["share"] for r in m["infrastructure"]["service_classes"]) > 4
    assert _failed(m) == {}


def test_the_html_shows_failed_new_checks(metrics):
    metrics["infrastructure"]["os_families"][0]["share"] = 0.9
    text = Page(render_html(metrics)).text
    assert "1 of 9 checks failed" in text and "os_families[linux]" in text
