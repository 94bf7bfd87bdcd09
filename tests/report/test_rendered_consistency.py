"""Every report is checked before it is written (issue 9): the analysis's own checks, the view's,
and every figure of the final HTML and Markdown read back against report.json by figure id. A
failed check stops the report with a message naming the figures, and writes nothing."""

from __future__ import annotations

import copy
import json
import re

import pytest
from click.testing import CliRunner
from markupsafe import escape

from tests.analyze.audience_ws import ACCESS, four_orgs
from tests.analyze.conftest import WsBuilder
from tests.report.helpers import Page
from threatscope.analyze import Period, analyze
from threatscope.analyze.figures import figure_id
from threatscope.errors import UserError
from threatscope.report import InconsistentReport, check_report, write_report
from threatscope.report import html as html_mod
from threatscope.report import markdown as md_mod
from threatscope.report.model import build_view
from threatscope.report.rendered import (
    check_html,
    check_markdown,
    encode_id,
    html_marks,
    md_marks,
    number_problem,
    shown_ids,
)

Q2 = Period.parse("2018Q2")
# a campaign key from a log: markup, the id's own escapes (] and \) and a bidi override
HOSTILE = 'evil"><script>alert(1)</script>]\\\u202e'
GPON = "campaigns[campaign=gpon]"
HOSTILE_ID = figure_id("campaigns", {"campaign": HOSTILE})


@pytest.fixture(scope="module")
def doc(tmp_path_factory) -> dict:
    """A real analysis: four organisations, two sectors, three campaigns and a hostile one."""
    b = WsBuilder(tmp_path_factory.mktemp("rendered") / "ws")
    four_orgs(b)
    b.detect("2018-05-06 10:00", 7, org="f2", ip=ACCESS, campaign=HOSTILE, product=HOSTILE,
             rule="r-hostile", title=HOSTILE, cves=[])
    b.detect("2018-02-06 10:00", 2, org="f2", ip=ACCESS, campaign=HOSTILE, product=HOSTILE,
             rule="r-hostile", title=HOSTILE, cves=[])
    return analyze(b.ws, Q2)


@pytest.fixture
def m(doc) -> dict:
    return copy.deepcopy(doc)


def _rendered(metrics: dict) -> tuple[str, str]:
    return html_mod.render_html(metrics), md_mod.render_markdown(metrics)


def _figure(metrics: dict, fid: str) -> dict:
    return next(f for f in metrics["figures"] if f["id"] == fid)


def _refused(metrics: dict, tmp_path) -> InconsistentReport:
    out = tmp_path / "out"
    with pytest.raises(InconsistentReport) as e:
        write_report(metrics, out)
    assert not out.exists()  # nothing written, not even the folder
    assert isinstance(e.value, UserError)
    return e.value


# -- a real report ------------------------------------------------------------------------------

def test_a_real_report_passes_every_check(m, tmp_path):
    paths = write_report(m, tmp_path)
    html, md = paths["html"].read_text("utf-8"), paths["md"].read_text("utf-8")
    assert check_report(m, html, md) == []
    assert json.loads(paths["json"].read_text("utf-8"))["figures"] == m["figures"]
    # the main figures are all shown, in both formats; every marked number was compared
    required = shown_ids(build_view(m))
    assert {GPON, HOSTILE_ID, "totals.detected_events", "sectors.events[sector=finance]",
            "sectors.events[sector=health]"} <= set(required)
    h_marks, (md_found, md_probs) = html_marks(html), md_marks(md)
    assert md_probs == []
    for marks in (h_marks, md_found):
        assert set(required) <= {fid for fid, part, _ in marks if part == "value"}
        assert {part for _, part, _ in marks} == {"value", "baseline", "fold", "pct"}
    assert (GPON, "value", "6") in h_marks and (GPON, "value", "6") in md_found
    assert ("totals.detected_events", "fold", "7.3×") in md_found


def test_every_shown_number_of_a_figure_matches_its_json_value(m):
    html, md = _rendered(m)
    figs = {f["id"]: f for f in m["figures"]}
    marks = html_marks(html) + md_marks(md)[0]
    assert len(marks) > 100
    for fid, part, text in marks:
        assert fid in figs, fid
        assert number_problem(text, figs[fid], part) is None, (fid, part, text)


# -- a tampered document is refused -------------------------------------------------------------

def _campaign(metrics: dict, key: str) -> dict:
    return next(c for c in metrics["campaigns"] if c["campaign"] == key)


def _sector(metrics: dict, name: str) -> dict:
    return next(s for s in metrics["sectors"] if s["sector"] == name)


def test_a_changed_fold_change_is_refused_naming_the_campaign(m, tmp_path):
    _campaign(m, "iis-webdav")["fold_change"] = 9.0  # 4 / 1 in the data
    e = _refused(m, tmp_path)
    iis = "campaigns[campaign=iis-webdav]"
    assert f"{iis}: HTML shows '9.0×' for its fold, report.json has 4" in e.problems
    assert f"{iis}: Markdown shows '9.0×' for its fold, report.json has 4" in e.problems
    assert any(p.startswith("campaigns[iis-webdav]: fold_change 9.0 != 4/1") for p in e.problems)
    assert str(e).startswith("report not written: ")
    assert iis in str(e)


def test_a_changed_sector_count_is_refused_naming_the_sector(m, tmp_path):
    _sector(m, "finance")["detected_events"] += 1
    e = _refused(m, tmp_path)
    fid = "sectors.events[sector=finance]"
    assert e.problems == [f"{fid}: HTML shows '18' for its value, report.json has 17",
                          f"{fid}: Markdown shows '18' for its value, report.json has 17"]
    assert fid in str(e)


def test_a_figure_that_disagrees_with_its_section_is_refused(m, tmp_path):
    _figure(m, GPON)["value"] = 60  # report.json's figure, not the campaign row (6)
    e = _refused(m, tmp_path)
    assert f"{GPON}: HTML shows '6' for its value, report.json has 60" in e.problems
    assert f"{GPON}: Markdown shows '6' for its value, report.json has 60" in e.problems


def test_problems_of_the_analysis_stop_the_report(m, tmp_path):
    m["consistency"] = {"ok": False, "problems": ["sectors: sum 21 != totals.detected_events 22"]}
    e = _refused(m, tmp_path)
    assert e.problems == ["analysis: sectors: sum 21 != totals.detected_events 22"]


def test_the_message_names_the_first_figures_and_counts_the_rest(m, tmp_path):
    for s in m["sectors"]:
        s["detected_events"] += 1
    for c in m["campaigns"]:
        c["baseline"] += 1
    e = _refused(m, tmp_path)
    lines = str(e).splitlines()
    assert lines[0] == (f"report not written: {len(e.problems)} consistency problems (a bug in "
                        "the analysis or the report, not in the data):")
    assert lines[1:6] == [f"  {p}" for p in e.problems[:5]]
    assert lines[6] == f"  … and {len(e.problems) - 5} more"


def test_existing_report_files_are_left_as_they_were(m, doc, tmp_path):
    paths = write_report(doc, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    _campaign(m, "gpon")["period"] = 7
    with pytest.raises(InconsistentReport, match=re.escape(GPON)):
        write_report(m, tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert paths["json"].exists()


# -- a renderer bug is caught in the final text -------------------------------------------------

def test_an_html_renderer_bug_is_caught(m, tmp_path, monkeypatch):
    real = html_mod._figure

    def wrong(value, fid, part="value"):  # one figure's period shown one too high
        return real(value + 1 if fid == GPON and part == "value" else value, fid, part)

    monkeypatch.setattr(html_mod, "_figure", wrong)
    e = _refused(m, tmp_path)
    # the change table and the campaign's timeline facts both show it
    assert e.problems == [f"{GPON}: HTML shows '7' for its value, report.json has 6"] * 2


def test_a_markdown_renderer_bug_is_caught(m, tmp_path, monkeypatch):
    real = md_mod._fig_text

    def wrong(cell):
        if cell.id == GPON and cell.part == "baseline":
            return "3"
        return real(cell)

    monkeypatch.setattr(md_mod, "_fig_text", wrong)
    e = _refused(m, tmp_path)
    assert e.problems == [f"{GPON}: Markdown shows '3' for its baseline, report.json has 0"]


def test_a_figure_the_renderer_stops_marking_is_missed(m, tmp_path, monkeypatch):
    real = html_mod._figure
    monkeypatch.setattr(html_mod, "_figure",
                        lambda value, fid, part="value": real(value, None if fid == GPON else fid,
                                                              part))
    e = _refused(m, tmp_path)
    assert e.problems == [f"{GPON}: HTML does not show it"]


def test_the_checks_read_the_final_text(m):
    html, md = _rendered(m)
    assert check_html(html, m) == [] and check_markdown(md, m) == []
    # a number changed in the page itself, after rendering
    cell = '<span data-figure="totals.detected_events">22</span>'
    assert html.count(cell) == 1
    bad = html.replace(cell, cell.replace(">22<", ">2,200<"))
    assert check_html(bad, m) == [
        "totals.detected_events: HTML shows '2,200' for its value, report.json has 22"]
    # a Markdown row moved: each row's numbers are now read as another figure's
    lines = md.splitlines()
    gpon = next(i for i, line in enumerate(lines) if line.startswith("| gpon | "))
    lines[gpon], lines[gpon + 1] = lines[gpon + 1], lines[gpon]
    probs = check_markdown("\n".join(lines), m)
    assert f"{GPON}: Markdown shows '5' for its value, report.json has 6" in probs
    # a row dropped from a marked table
    lines = md.splitlines()
    del lines[gpon]
    assert any("Markdown table has" in p for p in check_markdown("\n".join(lines), m))
    # an id the document does not have, showing a count
    assert check_html('<span data-figure="campaigns[campaign=nope]">3</span>', m) == [
        "campaigns[campaign=nope]: HTML shows '3' as its value but report.json has no such "
        "figure"]


def test_numbers_read_back_as_the_renderer_writes_them():
    fig = {"value": 7820, "baseline": 10}
    assert number_problem("7,820", fig, "value") is None
    assert number_problem("7820", fig, "value") is None
    assert number_problem("7,821", fig, "value") is not None
    assert number_problem("782×", fig, "fold") is None
    assert number_problem("780×", fig, "fold") is not None
    assert number_problem("+78,100%", fig, "pct") is None
    assert number_problem("-78,100%", fig, "pct") is not None
    assert number_problem("7.8k", fig, "value") is not None  # no abbreviations
    assert number_problem("—", {"value": 5, "baseline": 0}, "fold") is None
    assert number_problem("5×", {"value": 5, "baseline": 0}, "fold") is not None
    assert number_problem("0.33×", {"value": 1, "baseline": 3}, "fold") is None
    assert number_problem("0.34×", {"value": 1, "baseline": 3}, "fold") is not None
    assert number_problem("-66.7%", {"value": 1, "baseline": 3}, "pct") is None


# -- hostile ids ------------------------------------------------------------------------------

def test_hostile_ids_are_escaped_in_the_attribute_and_still_match(m):
    html, md = _rendered(m)
    assert HOSTILE_ID in {f["id"] for f in m["figures"]}
    attr = str(escape(encode_id(HOSTILE_ID)))
    assert f'<span data-figure="{attr}">7</span>' in html
    assert '"><script>' not in html and "\u202e" not in html
    assert (HOSTILE_ID, "value", "7") in html_marks(html)
    # the Markdown marker holds no markup, link or comment end either
    marker = next(line for line in md.splitlines() if line.startswith("<!-- figures")
                  and "campaigns[campaign=gpon]" in line)
    assert "<script" not in marker and "-->" not in marker[:-3] and "\u202e" not in marker
    assert (HOSTILE_ID, "baseline", "2") in md_marks(md)[0]
    assert check_html(html, m) == [] and check_markdown(md, m) == []


def test_a_tampered_hostile_figure_is_named_exactly(m, tmp_path):
    _campaign(m, HOSTILE)["period"] = 8
    e = _refused(m, tmp_path)
    assert f"{HOSTILE_ID}: HTML shows '8' for its value, report.json has 7" in e.problems
    assert f"{HOSTILE_ID}: Markdown shows '8' for its value, report.json has 7" in e.problems


# -- rendering still shows what failed; the CLI says why it wrote nothing -------------------------

def test_render_functions_still_render_a_failed_check(m):
    _campaign(m, "iis-webdav")["fold_change"] = 9.0
    m["consistency"] = {"ok": False, "problems": ["campaigns[gpon]: flag 'x'"]}
    html, md = _rendered(m)
    text = Page(html).text
    assert "FAIL" in text and "Analysis stage: 1 problem" in text
    assert "**FAIL**" in md and "campaigns\\[gpon\\]: flag 'x'" in md


def test_cli_report_names_the_figures_and_writes_nothing(m, tmp_path, monkeypatch):
    from threatscope import analyze as analyze_mod
    from threatscope.cli import main

    _sector(m, "health")["detected_events"] = 50
    monkeypatch.setattr(analyze_mod, "analyze", lambda *a, **k: m)
    ws = tmp_path / "ws"
    WsBuilder(ws)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["report", "-w", str(ws), "--period", "2018Q2", "-o", str(out)])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)  # a ClickException
    assert "report not written: 2 consistency problems" in r.output
    assert "sectors.events[sector=health]: HTML shows '50' for its value" in r.output
    assert "Traceback" not in r.output and not out.exists()
