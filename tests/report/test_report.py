"""write_report: files, JSON round trip, HTML safety and content, Markdown tables, CSV tables."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re

import pytest
from markdown_it import MarkdownIt

from tests.report.conftest import PAYLOADS, build_metrics, change
from tests.report.helpers import Page, external_refs, md_tables, split_row
from threatscope.errors import UserError
from threatscope.report import InconsistentReport, render_html, render_markdown, write_report
from threatscope.report.consistency import check_view
from threatscope.report.model import build_view
from threatscope.report.tables import TABLES, cell, services_cell
from threatscope.report.text import clean

# what the report's own markup uses; anything else in a page came from data
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "nav", "section", "footer",
    "div", "p", "span", "strong", "h1", "h2", "h3", "a", "ol", "ul", "li", "dl", "dt", "dd",
    "table", "thead", "tbody", "tr", "th", "td",
    "svg", "g", "rect", "text", "line", "polyline", "polygon", "circle",
}


@pytest.fixture(params=["metrics", "empty_metrics", "hostile_report"])
def any_metrics(request):
    return request.getfixturevalue(request.param)


def test_writes_every_file(metrics, tmp_path):
    paths = write_report(metrics, tmp_path / "out")
    assert set(paths) == {"html", "md", "json", "tables"}
    for key in ("html", "md", "json"):
        assert paths[key] == tmp_path / "out" / f"report.{key}"
        assert paths[key].stat().st_size > 1000
    names = {p.stem for p in paths["tables"].glob("*.csv")}
    assert names == set(TABLES) | {"campaign_timelines"}
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_json_round_trips(any_metrics, tmp_path):
    paths = write_report(any_metrics, tmp_path)
    text = paths["json"].read_text(encoding="utf-8")
    assert json.loads(text) == any_metrics
    assert text.startswith('{\n  "' + min(any_metrics) + '"')  # sorted keys, indent 2


def test_output_folder_that_is_a_file_is_a_user_error(metrics, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError):
        write_report(metrics, tmp_path / "f")


def test_html_is_self_contained_with_strict_csp(any_metrics):
    html = render_html(any_metrics)
    page = Page(html)
    assert not re.search(r"<\s*script", html, re.I)
    assert page.tags() <= ALLOWED_TAGS, page.tags() - ALLOWED_TAGS
    assert external_refs(page) == []
    assert "url(" not in "".join(page.style) and "@import" not in "".join(page.style)
    metas = [a for t, a in page.elements if t == "meta"]
    csp = [a["content"] for a in metas if a.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1
    policy = dict(d.strip().split(" ", 1) for d in csp[0].split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'none'"
    assert "unsafe" not in csp[0]
    # the CSP sits before the style element and hashes exactly its content
    order = [t for t, _ in page.elements]
    assert order.index("meta") < order.index("style")
    assert sum(1 for t in order if t == "style") == 1
    style = "".join(page.style)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    # no inline style attributes (the CSP would block them) and no event handlers
    for tag, attrs in page.elements:
        assert "style" not in attrs, tag
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)


def test_html_shows_the_figures(metrics):
    page = Page(render_html(metrics))
    text = page.text
    camps = metrics["campaigns"]
    iis = next(c for c in camps if c["campaign"] == "iis-webdav")
    for s in ("Key findings", "Period comparison", "Campaign timelines", "Sources", "Sectors",
              "Methodology", "2018Q2", "2018Q1", "Shenzhen Tencent Computer Systems",
              "IIS WebDAV exploitation rose 782-fold", "NEW (no baseline)", "tiny baseline",
              "SURGING", "GONE", "All 9 checks passed", "Analysis stage: consistent", "wrong field count", "2,401,233",
              f"{iis['period']:,}", f"{iis['fold_change']:,.0f}×", "+189%", "-9.0%", "71.0%",
              "public exploit 2018-04-30", "peak 2018-05-10", "3 days",
              "412 (80.0% of detected events from hosting)", "1 rule failed to compile and was left"):
        assert s in text, s
    # one timeline chart per campaign with its onset and peak marked
    svgs = [a for t, a in page.elements if t == "svg"]
    assert sum("timeline" in a.get("class", "") for a in svgs) == len(camps)
    assert sum(1 for t, a in page.elements if t == "circle") == len(camps)
    assert text.count("onset 2018-") == len(camps)


def test_empty_period_says_there_is_nothing(empty_metrics, tmp_path):
    paths = write_report(empty_metrics, tmp_path)
    text = Page(paths["html"].read_text()).text
    assert "Nothing detected in this period" in text
    assert "No campaign was detected in this period" in text
    assert "svg" not in {t for t, _ in Page(paths["html"].read_text()).elements}
    md = paths["md"].read_text()
    assert "Nothing detected in this period" in md and "No campaign was detected" in md
    with open(paths["tables"] / "campaigns.csv", newline="") as f:
        assert list(csv.reader(f)) == [list(TABLES["campaigns"][1])]


@pytest.mark.parametrize("doc", [{}, {"schema_version": 1, "future_key": {"x": [1, 2]}},
                                 {"campaigns": "not a list", "sources": [], "period": None,
                                  "totals": {"detections": 5}, "inputs": {"files": ["a.log"]}}])
def test_missing_and_malformed_keys_still_render(doc, tmp_path):
    paths = write_report(doc, tmp_path)
    assert "Threat report" in Page(paths["html"].read_text()).text
    assert paths["md"].read_text().startswith("# Threat report")


def test_a_campaign_without_counts_renders_but_is_not_written(tmp_path):
    doc = {"campaigns": [{"campaign": "x", "timeline": [{"day": "bad"}]}]}
    assert "Threat report" in Page(render_html(doc)).text
    assert render_markdown(doc).startswith("# Threat report")
    with pytest.raises(InconsistentReport, match=r"campaigns\[x\]: period/baseline not numbers"):
        write_report(doc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hostile_strings_are_text_in_html(hostile_metrics):
    html = render_html(hostile_metrics)
    page = Page(html)
    assert page.tags() <= ALLOWED_TAGS, page.tags() - ALLOWED_TAGS
    assert not re.search(r"<\s*(script|img|iframe)", html, re.I)
    assert html.count("</style>") == 1
    assert external_refs(page) == []
    for tag, attrs in page.elements:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        # data-figure* hold figure ids verbatim (escaped): never a URL, only on a <span>
        assert tag == "span" or not any(k.startswith("data-figure") for k in attrs), tag
        assert not any(v and "javascript:" in v for k, v in attrs.items()
                       if not k.startswith("data-figure")), (tag, attrs)
    text = page.text
    for p in PAYLOADS:
        assert clean(p, 600) in text, p
    # shown as the characters they are: no template evaluation, no double unescaping
    assert "{{7*7}}" in text and "&lt;b&gt;already&amp;" in text
    # control and bidi-override characters are made visible, never emitted raw
    assert "\\u202e" in text and "\\x1b" in text
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\u202a-\u202e\u2066-\u2069]", html)


def _md_html(text: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(text)


def test_markdown_tables_keep_their_columns(any_metrics):
    text = render_markdown(any_metrics)
    tables = md_tables(text)
    assert tables
    for t in tables:
        width = len(split_row(t[0]))
        assert re.fullmatch(r"\|(---:?\|)+", t[1]), t[1]
        for row in t:
            assert len(split_row(row)) == width, row
    # and a Markdown renderer agrees: every row of every table has the header's cell count
    rendered = _md_html(text)
    assert rendered.count("<table>") == len(tables)
    for tbl in re.findall(r"<table>.*?</table>", rendered, re.S):
        counts = {len(re.findall(r"<t[hd][ >]", tr)) for tr in re.findall(r"<tr>.*?</tr>", tbl, re.S)}
        assert len(counts) == 1, counts


def test_hostile_markdown_renders_as_text(hostile_metrics):
    text = render_markdown(hostile_metrics)
    assert "<script" not in text.lower() and "<img" not in text.lower()
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\u202a-\u202e]", text)
    rendered = _md_html(text)
    page = Page(rendered)
    assert page.tags() <= {"h1", "h2", "h3", "h4", "p", "em", "strong", "ol", "ul", "li", "table",
                           "thead", "tbody", "tr", "th", "td", "blockquote", "code"}, page.tags()
    # code spans are the report's own commands, never data
    assert all(c.startswith("threatscope ")
               for c in re.findall(r"<code>(.*?)</code>", rendered, re.S))
    assert not any(k.startswith("on") or k in ("href", "src") for _, a in page.elements for k in a)
    shown = page.text
    for p in PAYLOADS:
        assert clean(p, 600).replace("\n", " ") in shown, p


def test_markdown_empty_and_realistic_content(metrics):
    text = render_markdown(metrics)
    for s in ("## Key findings", "## Period comparison", "## Campaign timelines", "## Sources",
              "## Sectors", "## Methodology", "NEW (no baseline)", "tiny baseline", "+189%",
              "**Days from exploit to onset:** 3 days", "All 9 checks passed"):
        assert s in text, s


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("fixture", ["metrics", "hostile_report"])
def test_csv_rows_match_the_metrics(fixture, request, tmp_path):
    m = request.getfixturevalue(fixture)
    folder = write_report(m, tmp_path)["tables"]
    for name, (where, cols) in TABLES.items():
        rows = m
        for part in where.split("."):
            rows = (rows or {}).get(part) or []  # a section the document lacks (peers): none
        got = _read_csv(folder / f"{name}.csv")
        assert len(got) == len(rows), name
        for r, g in zip(rows, got, strict=True):
            assert list(g) == list(cols)
            assert g == {k: services_cell(r.get(k)) if k == "services" else cell(r.get(k))
                         for k in cols}, name
    timelines = _read_csv(folder / "campaign_timelines.csv")
    assert len(timelines) == sum(len(c["timeline"]) for c in m["campaigns"])
    first = m["campaigns"][0]
    assert [int(r["count"]) for r in timelines[: len(first["timeline"])]] == \
        [t["count"] for t in first["timeline"]]


def test_csv_cells():
    assert cell(None) == "" and cell(["a", "b"]) == "a;b" and cell(-12.5) == "-12.5"
    assert cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and cell("@x") == "'@x"
    assert cell("-2+3") == "'-2+3" and cell("ok=1") == "ok=1"


def test_consistency_checks_pass_and_catch_a_wrong_fold(metrics):
    assert all(c["ok"] for c in check_view(build_view(metrics)))
    bad = build_metrics()
    bad["campaigns"][0]["fold_change"] = 1.0
    bad["campaigns"][1]["timeline"][5]["count"] += 7
    bad["inputs"]["lines_read"] += 1
    failed = [c for c in check_view(build_view(bad)) if not c["ok"]]
    assert len(failed) == 3
    text = Page(render_html(bad)).text
    assert "3 of 9 checks failed" in text and "FAIL" in text
    bad["consistency"] = {"ok": False, "problems": ["campaigns[gpon]: flag 'x'"]}
    text = Page(render_html(bad)).text
    assert "Analysis stage: 1 problem" in text and "campaigns[gpon]: flag 'x'" in text


def test_change_fixture_follows_the_spec():
    assert change(7820, 10)["flag"] == "surging" and change(5, 0)["flag"] == "new"
    assert change(40, 4)["flag"] == "tiny-baseline" and change(9, 10)["flag"] is None


def test_units_are_named_detected_events_versus_rule_matches(metrics, tmp_path):
    t = metrics["totals"]
    events, matches = t["detected_events"]["period"], t["detections"]["period"]
    assert events != matches
    html = render_html(metrics)
    page = Page(html)
    kpis = [(k, re.sub(r"<[^>]+>", "", v)) for k, v in
            re.findall(r'<div class="k">([^<]*)</div><div class="v">(.*?)</div>', html)]
    assert kpis[:3] == [("Detected events (requests)", f"{events:,}"),
                        ("Rule matches", f"{matches:,}"), ("Events logged", "2,398,100")]
    for s in ("Rules (rule matches)", "Detected events by AS organisation",
              "Detected events per organisation by sector", "a request that fires two rules is "
              "one detected event and two rule matches"):
        assert s in page.text, s
    md = render_markdown(metrics)
    assert f"| Detected events (requests) | {events:,} |" in md
    assert f"| Rule matches | {matches:,} |" in md
    assert "### Rules (rule matches)" in md
    heads = [[h.strip() for h in split_row(t[0])] for t in md_tables(md)]
    assert ["IP", "Country", "AS organisation", "Network", "Detected events", "Rule matches",
            "Rules", "Campaigns", "First seen", "Last seen"] in heads
    assert not any("Detections" in h for head in heads for h in head)
    folder = write_report(metrics, tmp_path)["tables"]
    with open(folder / "sources_top_ips.csv", newline="") as f:
        head, first = list(csv.reader(f))[:2]
    assert head[4:6] == ["detected_events", "rule_matches"] and first[4:6] == ["640", "702"]
    with open(folder / "sectors.csv", newline="") as f:
        assert "detected_events" in next(csv.reader(f))
