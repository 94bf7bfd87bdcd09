"""The methodology's rule sets and time range, and the exploited-CVE table: what the HTML,
Markdown and CSV show equals the metrics."""

from __future__ import annotations

import csv
import re

from tests.report.conftest import build_metrics
from tests.report.helpers import Page, md_tables, section, split_row
from threatscope.report import render_html, render_markdown, write_report

SETS = [{"name": "threatscope built-in", "version": "0.1.0", "files": 52, "rules": 52, "failed": 0},
        {"name": "/opt/sigma/rules/web", "version": "0a1b2c3d4e5f", "files": 310, "rules": 297,
         "failed": 13}]
CVE = {"product": "iis", "first_seen": "2018-04-02T05:06:07", "last_seen": "2018-06-29T10:00:00",
       "published": "2017-03-27", "public_exploit_date": "2017-03-27"}


def _metrics() -> dict:
    m = build_metrics()
    m["inputs"]["rule_sets"] = SETS
    for r in m["cves"]:
        r.update(CVE if r["cve"] == "CVE-2017-7269" else {})
    return m


def test_methodology_names_rule_sets_and_the_time_range(tmp_path):
    m = _metrics()
    text = Page(section(render_html(m), "methodology")).text
    for r in SETS:
        row = f"{r['name']}{r['version']}{r['files']:,}{r['rules']:,}{r['failed']:,}"
        assert row in text.replace("\n", "")
    assert f"Period{m['period']['start']} – {m['period']['end']}" in text
    assert f"Baseline{m['baseline']['start']} – {m['baseline']['end']}" in text
    tables = [[[re.sub(r"\\(.)", r"\1", c).strip() for c in split_row(line)] for line in t]
              for t in md_tables(render_markdown(m))]
    sets = next(t for t in tables if t[0][:2] == ["Rule set", "Version"])
    assert sets[2:] == [[r["name"], r["version"], f"{r['files']:,}", f"{r['rules']:,}",
                         f"{r['failed']:,}"] for r in SETS]


def test_exploited_cves_show_product_disclosure_and_first_attack(tmp_path):
    m = _metrics()
    html = render_html(m)
    assert "Exploited CVEs in" in html
    text = Page(html).text
    assert "CVE-2017-7269iis2017-03-272017-03-272018-04-02 05:06:072018-06-29 10:00:00" in \
        text.replace("\n", "")
    paths = write_report(m, tmp_path / "out")
    with open(paths["tables"] / "cves.csv", newline="", encoding="utf-8") as f:
        rows = {r["cve"]: r for r in csv.DictReader(f)}
    assert {k: rows["CVE-2017-7269"][k] for k in CVE} == CVE
    # a CVE the metrics give no product shows a dash, not "None"
    assert "None" not in Page(section(html, "comparison")).text


def test_a_period_without_baseline_says_so(empty_metrics):
    m = build_metrics()
    assert "No baseline." not in render_html(m) and "No baseline." not in render_markdown(m)
    for k in ("detections", "detected_events"):
        m["totals"][k]["baseline"] = 0
    html, text = render_html(m), render_markdown(m)
    assert "No baseline.</strong> Nothing was detected in 2018Q1" in html
    assert "**No baseline.** Nothing was detected in 2018Q1" in text
    # an empty period says that instead
    assert "No baseline." not in render_html(empty_metrics)
