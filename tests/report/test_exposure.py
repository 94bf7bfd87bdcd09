"""The exposure and recommendations sections: HTML, Markdown and CSV show report.json's numbers,
hostile text stays text, the consistency check catches a broken document. The metrics come from
a real analysis of the workspace of tests/exposure_ws.py."""

from __future__ import annotations

import copy
import csv
import re

import pytest
from markdown_it import MarkdownIt

from tests.exposure_ws import HOSTILE_HOST, HOSTILE_URI, build_exposure_ws
from tests.report.conftest import PAYLOADS
from tests.report.helpers import Page, Tables, md_tables, section, split_row
from threatscope.analyze import Period, analyze
from threatscope.report import render_html, render_markdown, write_report
from threatscope.report.consistency import check_view
from threatscope.report.model import build_view
from threatscope.report.tables import cell, write_tables
from threatscope.report.text import clean, fmt_int, fmt_pct

CHECK = "exposure: successes and unusual sizes are at most the attempts"


@pytest.fixture(scope="module")
def real_metrics(tmp_path_factory) -> dict:
    ws = build_exposure_ws(tmp_path_factory.mktemp("expo-report") / "ws")
    return analyze(ws, Period.parse("2018Q2"))


@pytest.fixture
def expo(real_metrics) -> dict:
    return copy.deepcopy(real_metrics)


def _md_table(text: str, head0: str) -> list[list[str]]:
    for t in md_tables(text):
        rows = [[c.strip() for c in split_row(line)] for line in t]
        if rows[0][0] == head0:
            return [rows[0]] + rows[2:]
    raise AssertionError(f"no table headed {head0!r}")


def _unmd(s: str) -> str:
    """A Markdown cell's text as a reader sees it (entities and backslash escapes undone)."""
    html = MarkdownIt("commonmark").render(s)
    return Page(html).text.strip()


def test_html_exposure_shows_the_metrics(expo):
    e = expo["exposure"]
    assert e["rows"], "the workspace must expose something"
    tables = Tables(section(render_html(expo), "exposure"))
    totals = tables["exposure-totals"][1:]
    assert [(r[1], r[2], r[3]) for r in totals] == [
        (fmt_int(e[k]["period"]), fmt_int(e[k]["baseline"]), fmt_pct(e[k]["pct_change"]))
        for k in ("attempts", "successes", "unusual_size")]
    rows = tables["exposure-rows"][1:]
    assert [(r[0], r[1], r[3], r[4], r[5]) for r in rows] == [
        (x["org_id"], x["server"], fmt_int(x["attempts"]), fmt_int(x["successes"]),
         fmt_int(x["unusual_size"])) for x in e["rows"]]
    assert [r[7] for r in rows] == [x["example_uri"] for x in e["rows"]]
    assert [r[8] for r in rows] == [x["advice"] for x in e["rows"]]


def test_markdown_exposure_shows_the_metrics(expo):
    e = expo["exposure"]
    text = render_markdown(expo)
    rows = _md_table(text, "Organisation")[1:]
    assert [(_unmd(r[1]), r[4], r[5], r[6]) for r in rows] == [
        (x["server"], fmt_int(x["attempts"]), fmt_int(x["successes"]),
         fmt_int(x["unusual_size"])) for x in e["rows"]]
    assert [_unmd(r[9]) for r in rows] == [x["example_uri"] for x in e["rows"]]
    totals = _md_table(text, "Exposure")
    assert totals[0][1:3] == ["2018Q2", "2018Q1"]
    assert [r[1:3] for r in totals[1:]] == [
        [fmt_int(e[k]["period"]), fmt_int(e[k]["baseline"])]
        for k in ("attempts", "successes", "unusual_size")]


def test_csv_exposure_and_recommendations_equal_the_metrics(expo, tmp_path):
    folder = write_report(expo, tmp_path)["tables"]

    def read(name):
        with open(folder / f"{name}.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    rows = read("exposure")
    assert [(r["server"], r["threat"], r["attempts"], r["successes"], r["unusual_size"],
             r["example_uri"], r["advice"], r["cves"]) for r in rows] == [
        (x["server"], x["threat"], str(x["attempts"]), str(x["successes"]),
         str(x["unusual_size"]), cell(x["example_uri"]), x["advice"], cell(x["cves"]))
        for x in expo["exposure"]["rows"]]
    recs = read("recommendations")
    assert [(r["id"], r["text"], r["evidence"]) for r in recs] == [
        (x["id"], x["text"], ";".join(x["evidence"])) for x in expo["recommendations"]]


def test_recommendations_show_their_text_and_evidence(expo):
    recs = expo["recommendations"]
    assert recs
    html = section(render_html(expo), "recommendations")
    items = re.findall(r"<li>(.*?)</li>", html, re.S)
    assert len(items) == len(recs)
    for item, r in zip(items, recs, strict=True):
        text = Page(item).text
        assert text.startswith(clean(r["text"], 1200))
        assert all(e in text for e in r["evidence"][:2])
    md = render_markdown(expo)
    part = md[md.index("## Recommendations"):md.index("## Period comparison")]
    assert len(re.findall(r"^\d+\. ", part, re.M)) == len(recs)
    assert Page(MarkdownIt("commonmark").render(part)).text.count("evidence:") == len(recs)


def test_long_recommendations_are_shown_whole_and_escaped(expo):
    text = "Patch <i>x</i> on " + ", ".join(f"server-{i}" for i in range(90)) + ". End."
    assert 600 < len(text) < 1200
    expo["recommendations"][0]["text"] = text
    html = section(render_html(expo), "recommendations")
    assert "<i>" not in html
    assert Page(html).text.count(text) == 1
    assert text.replace("<", "&lt;").replace(">", "&gt;") in render_markdown(expo)


def test_long_evidence_lists_name_two_figures_and_count_the_rest(expo):
    expo["recommendations"][0]["evidence"] = [f"exposure[server=s{i}]" for i in range(7)]
    html = Page(section(render_html(expo), "recommendations")).text
    assert "exposure[server=s1] and 5 more in report.json" in html
    assert "exposure[server=s2]" not in html
    md = render_markdown(expo)
    assert "exposure\\[server=s1\\] and 5 more in report.json" in md


def test_no_exposure_or_recommendation_says_so(expo):
    expo["exposure"]["rows"] = []
    expo["recommendations"] = []
    html = render_html(expo)
    assert "No exploit attempt was answered" in Page(section(html, "exposure")).text
    assert "No recommendation" in Page(section(html, "recommendations")).text
    assert 'id="exposure-rows"' not in html
    md = render_markdown(expo)
    assert "_No exploit attempt was answered with success or an unusual size._" in md
    del expo["exposure"]
    assert "not reported" in Page(section(render_html(expo), "exposure")).text


def test_hostile_host_and_uri_from_the_logs_are_text(expo):
    servers = [r["server"] for r in expo["exposure"]["rows"]]
    assert HOSTILE_HOST in servers  # from the logs, through the analysis
    html = section(render_html(expo), "exposure")
    assert "<b>" not in html and "<script" not in html
    cells = Tables(html)["exposure-rows"][1:]
    assert [r[1] for r in cells] == servers and HOSTILE_URI in [r[7] for r in cells]
    md = render_markdown(expo)
    rows = _md_table(md, "Organisation")[1:]
    assert [_unmd(r[1]) for r in rows] == servers
    assert "<b>" not in md and "<script" not in md


def test_hostile_uri_server_and_advice_are_text(expo):
    row = expo["exposure"]["rows"][0]
    assert row["example_uri"] == HOSTILE_URI  # from the log, through the analysis
    row["server"] = PAYLOADS[1]
    row["advice"] = PAYLOADS[0]
    expo["recommendations"][0]["text"] = " ".join(PAYLOADS[:4])
    html = render_html(expo)
    assert not re.search(r"<\s*(script|img|iframe|svg)", section(html, "exposure"), re.I)
    assert not re.search(r"<\s*(script|img|iframe|svg)", section(html, "recommendations"), re.I)
    page = Page(section(html, "exposure"))
    assert page.tags() <= {"section", "h2", "p", "table", "thead", "tbody", "tr", "th", "td",
                           "span"}
    assert HOSTILE_URI in page.text and clean(PAYLOADS[1], 600) in page.text
    text = render_markdown(expo)
    rendered = Page(MarkdownIt("commonmark", {"html": True}).enable("table").render(text))
    assert "script" not in rendered.tags() and "a" not in rendered.tags()
    assert HOSTILE_URI in rendered.text
    for t in md_tables(text):
        width = len(split_row(t[0]))
        assert all(len(split_row(line)) == width for line in t), t[0]


def test_consistency_check_of_exposure(expo):
    checks = {c["check"]: c for c in check_view(build_view(expo))}
    assert checks[CHECK]["ok"], checks[CHECK]["detail"]
    broken = copy.deepcopy(expo)
    broken["exposure"]["rows"][0]["successes"] = broken["exposure"]["rows"][0]["attempts"] + 1
    checks = {c["check"]: c for c in check_view(build_view(broken))}
    assert not checks[CHECK]["ok"] and "more successes" in checks[CHECK]["detail"]
    broken = copy.deepcopy(expo)
    broken["exposure"]["unusual_size"]["period"] = broken["exposure"]["attempts"]["period"] + 1
    checks = {c["check"]: c for c in check_view(build_view(broken))}
    assert not checks[CHECK]["ok"]


def test_long_exposure_lists_are_cut_with_a_pointer_to_the_csv(expo, tmp_path):
    row = expo["exposure"]["rows"][0]
    expo["exposure"]["rows"] = [dict(row, server=f"10.0.0.{i}") for i in range(60)]
    html = section(render_html(expo), "exposure")
    assert len(Tables(html)["exposure-rows"]) == 1 + 50
    assert "10 more rows" in Page(html).text
    assert len(_md_table(render_markdown(expo), "Organisation")) == 1 + 50
    # 60 made-up rows do not add up to the document's totals: write_report would refuse them
    write_tables(expo, tmp_path / "tables")
    with open(tmp_path / "tables" / "exposure.csv", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 60
