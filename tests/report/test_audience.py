"""An organisation's and a sector's report, rendered from a real workspace: the audience in the
title, the peer comparison (or why it is withheld) in HTML, Markdown and CSV, and the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.analyze.audience_ws import make_four_orgs
from tests.report.helpers import Page, Tables, md_tables, section, split_row
from tests.report.test_browser import CHROMIUM
from tests.report.test_browser import _chromium as browser
from tests.report.test_browser import _csp_complaints as csp_complaints
from tests.report.test_report import ALLOWED_TAGS
from threatscope.analyze import Period, analyze
from threatscope.report import write_report

Q2 = Period.parse("2018Q2")
HOSTILE_NAME = "Fin <script>alert(1)</script> | One"
BIN = str(Path(sys.executable).parent / "threatscope")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_four_orgs(tmp_path_factory.mktemp("aud") / "ws", f1_name=HOSTILE_NAME)


@pytest.fixture(scope="module")
def f1_report(ws, tmp_path_factory):
    doc = analyze(ws, Q2, org="f1")
    return doc, write_report(doc, tmp_path_factory.mktemp("f1"))


def test_org_report_names_its_audience_escaped(f1_report):
    doc, paths = f1_report
    html = paths["html"].read_text(encoding="utf-8")
    assert "<script>" not in html
    page = Page(html)
    assert "script" not in page.tags()
    assert f"Threat report 2018Q2: {HOSTILE_NAME} (sector finance)" in page.text
    text = paths["md"].read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith("# Threat report 2018Q2: ") and "&lt;script&gt;" in first
    assert "\\|" in first  # the pipe cannot split anything


def test_org_report_compares_with_sector_peers(f1_report):
    doc, paths = f1_report
    html = paths["html"].read_text(encoding="utf-8")
    peers = section(html, "peers")
    assert "Compared with sector peers" in peers and "withheld" not in peers
    t = Tables(html)
    assert t["peer-comparisons"][1] == ["Detected events per organisation", "5", "2.5"]
    assert t["peer-comparisons"][3] == ["Share of detected events from hosting networks",
                                        "60.0%", "20.0%"]
    assert ["gpon", "2", "40.0%", "2", "80.0%", "1"] in t["peer-campaigns"]
    # health (one organisation) is not a row, not even pooled
    assert [r[0] for r in t["peer-sectors"][1:]] == ["finance"]
    assert "health" not in html.lower()
    md = paths["md"].read_text(encoding="utf-8")
    assert "## Compared with sector peers" in md
    rows = [[c.strip() for c in split_row(line)] for tb in md_tables(md) for line in tb]
    assert ["Detected events per organisation", "5", "2.5"] in rows
    assert ["gpon", "2", "40.0%", "2", "80.0%", "1"] in rows
    with open(paths["tables"] / "peers_comparisons.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["metric"], r["value"], r["peers"]) for r in rows][:2] == [
        ("detected_events_per_org", "5.0", "2.5"), ("source_ips_per_org", "2.0", "1.0")]


def test_sector_of_one_says_peer_figures_are_withheld(ws, tmp_path):
    paths = write_report(analyze(ws, Q2, org="h1"), tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    peers = section(html, "peers")
    assert "withheld" in peers and "fewer than 2" in peers
    assert "Peers&#39; share" not in peers and "Peers' share" not in peers
    assert Tables(html)["peer-comparisons"][1] == ["Detected events per organisation", "5", "—"]
    assert "Health One (sector health)" in Page(html).text
    md = paths["md"].read_text(encoding="utf-8")
    assert "> Peer figures are withheld" in md


def test_org_without_events_renders_and_says_so(ws, tmp_path):
    paths = write_report(analyze(ws, Q2, org="f3"), tmp_path)
    text = Page(paths["html"].read_text(encoding="utf-8")).text
    assert "Nothing detected in this period. This organisation has no detections" in text
    assert "Fin Three (finance) has no events in 2018Q2" in text
    assert "Fin Three (sector finance)" in text


def test_sector_report_title(ws, tmp_path):
    paths = write_report(analyze(ws, Q2, sector="health"), tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert "Threat report 2018Q2: sector health" in Page(html).text
    assert "Compared with the other sectors" in section(html, "peers")
    assert Tables(html)["peer-comparisons"][1] == ["Detected events per organisation",
                                                   "5", "3.3"]


def test_all_org_report_has_no_peer_section(ws, tmp_path):
    paths = write_report(analyze(ws, Q2), tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert 'id="peers"' not in html and "all organisations" in html
    with open(paths["tables"] / "peers_comparisons.csv", encoding="utf-8") as f:
        assert len(list(csv.reader(f))) == 1  # the header only


def ts(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def test_cli_report_for_an_org_and_a_sector(ws, tmp_path):
    r = ts("report", "-w", str(ws.root), "--period", "2018Q2", "--org", "f2",
           "-o", str(tmp_path / "f2"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "f2" / "report.json").read_text(encoding="utf-8"))
    assert doc["scope"]["org_id"] == "f2" and doc["totals"]["detected_events"]["period"] == 5
    r = ts("report", "-w", str(ws.root), "--period", "2018Q2", "--sector", "finance",
           "-o", str(tmp_path / "fin"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "fin" / "report.json").read_text(encoding="utf-8"))
    assert doc["scope"] == {"kind": "sector", "org_id": None, "org_name": None,
                            "sector": "finance", "orgs": 3}
    r = ts("report", "-w", str(ws.root), "--org", "nope", "-o", str(tmp_path / "x"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "unknown organisation 'nope'" in r.stderr and "f1, f2, f3, h1" in r.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_org_report_in_a_browser(f1_report, tmp_path):
    """The audience's (hostile) name is text in the rendered page, the peer section renders."""
    _, paths = f1_report
    r = browser(tmp_path, "--dump-dom", paths["html"].as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = Page(r.stdout)
    assert dom.tags() <= ALLOWED_TAGS, dom.tags() - ALLOWED_TAGS
    assert f"Threat report 2018Q2: {HOSTILE_NAME} (sector finance)" in dom.text
    assert "Compared with sector peers" in dom.text
    assert any(t == "section" and a.get("id") == "peers" for t, a in dom.elements)
    assert csp_complaints(r.stderr) == []


def test_peer_figures_of_too_few_organisations_never_render(ws, tmp_path):
    """A document that holds peer values for too few peers (tampered, or a bug upstream) still
    renders none of them."""
    doc = analyze(ws, Q2, org="f1")
    doc["peers"].update(peer_orgs=1, withheld=False, reason=None)
    paths = write_report(doc, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    t = Tables(html)
    assert t["peer-comparisons"][1] == ["Detected events per organisation", "5", "—"]
    assert len(t["peer-campaigns"][0]) == 3  # no peer columns
    md = paths["md"].read_text(encoding="utf-8")
    assert "| 2.5 |" not in md and "80.0%" not in md


def test_cli_run_reports_for_one_org(tmp_path):
    logs = tmp_path / "logs"
    line = ('203.0.113.{n} - - [0{d}/May/2018:10:00:00 +0000] "POST /GponForm/diag_Form?images/ '
            'HTTP/1.1" 200 5 "-" "Mozilla/5.0"\n')
    for org, n in (("acme", 3), ("beta", 2)):
        (logs / org).mkdir(parents=True)
        (logs / org / "access.log").write_text(
            "".join(line.format(n=i + 1, d=i + 1) for i in range(n)), encoding="utf-8")
    orgs = tmp_path / "orgs.csv"
    orgs.write_text("org_id,name,sector\nacme,Acme,finance\nbeta,Beta,finance\n",
                    encoding="utf-8")
    r = ts("run", "-w", str(tmp_path / "ws"), "--orgs", str(orgs), "--period", "2018Q2",
           "--report-org", "acme", "-o", str(tmp_path / "out"), str(logs))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert doc["scope"]["org_id"] == "acme" and doc["totals"]["events"]["period"] == 3
    assert doc["peers"]["withheld"]  # one other organisation in finance
