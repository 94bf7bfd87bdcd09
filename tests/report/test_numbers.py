"""Every number the HTML and Markdown reports show comes from report.json.

Each numeric token of the page's text (chart axes aside: a scale, not a figure) must be a
formatting of a number of the metrics document, or appear in a string of it (labels, dates,
findings), or be the template's own text (a legend's "baseline below 10"), or count what the
report's own consistency checks read. A figure the report computed itself, or one shown from
the wrong key, has no source and fails the test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources

import pytest

from tests.report.conftest import build_empty, build_hostile, build_metrics
from tests.report.helpers import Page
from threatscope.report import render_html, render_markdown
from threatscope.report.consistency import check_view
from threatscope.report.model import build_view
from threatscope.report.text import fmt_fold, fmt_int, fmt_num, fmt_pct, fmt_pp, fmt_share

# a number as the report writes one: 1,234 · 12.5 · 45.7% · 782× · +7.1 pp · 2018-04-01
TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _numbers(doc: object) -> Iterator[int | float]:
    if isinstance(doc, bool):
        return
    if isinstance(doc, int | float):
        yield doc
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from _numbers(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _numbers(v)


def _strings(doc: object) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for k, v in doc.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)


def _tokens(text: str) -> set[str]:
    return {t.rstrip(",.") for t in TOKEN.findall(text)}


def allowed(metrics: dict) -> set[str]:
    """Every token a rendering of the document's numbers and strings can hold."""
    out: set[str] = set()
    for n in _numbers(metrics):
        for f in (fmt_int, fmt_num, fmt_fold, fmt_pct, fmt_share, fmt_pp, str):
            out |= _tokens(f(n))
        out |= _tokens(fmt_num(n, 2))
        if isinstance(n, float) and 0 <= n <= 1:  # shares also shown as whole percents
            out |= _tokens(f"{100 * n:.0f}%")
    for s in _strings(metrics):
        out |= _tokens(s)
    return out


def _checks(metrics: dict) -> set[str]:
    """The report's own checks of the document: how many there are, how many failed, how many
    figures each read."""
    checks = check_view(build_view(metrics))
    return {str(len(checks)), str(sum(not c["ok"] for c in checks))} | {
        t for c in checks for t in _tokens(str(c.get("detail", "")))}


def _static(*names: str) -> set[str]:
    """Numbers of the report's own source text (templates, Markdown writer)."""
    files = resources.files("threatscope.report")
    text = "".join(files.joinpath(n).read_text("utf-8") for n in names)
    return _tokens(text)


def _page_text(html: str) -> str:
    """The visible text outside charts (<svg> holds scales: axes and ticks)."""
    return " ".join(Page(re.sub(r"<svg\b.*?</svg>", " ", html, flags=re.S)).texts)


HTML_SOURCES = ("templates/report.html.j2", "html.py", "model.py", "text.py")
MD_SOURCES = ("markdown.py", "model.py", "text.py")


def stray_numbers(metrics: dict, html: str, markdown: str) -> dict[str, list[str]]:
    """The numbers of a rendered report (HTML, Markdown) that nothing in ``metrics`` gives."""
    ok = allowed(metrics) | _checks(metrics)
    # Markdown escapes, as a reader sees; the figure markers are comments a reader does not see
    text = re.sub(r"\\(.)", r"\1", re.sub(r"(?m)^<!-- figures .* -->$", "", markdown))
    out = {"html": sorted(_tokens(_page_text(html)) - ok - _static(*HTML_SOURCES)),
           "markdown": sorted(_tokens(text) - ok - _static(*MD_SOURCES))}
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("build", [build_metrics, build_empty, build_hostile])
def test_every_number_in_the_html_and_markdown_comes_from_the_document(build):
    m = build()
    assert not stray_numbers(m, render_html(m), render_markdown(m))


def test_a_number_the_document_does_not_hold_is_caught():
    m = build_metrics()
    shown = _tokens(_page_text(render_html(m)))
    m["totals"]["detected_events"]["period"] += 1  # the page shows one figure report.json lacks
    assert shown - allowed(m) - _static(*HTML_SOURCES)
