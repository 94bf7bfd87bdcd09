"""The demo report looks right: in headless Chromium at a desktop width every chart is drawn and
nothing reaches past the viewport; printed to PDF (``report --pdf``), rendered by pdftoppm, every
page has content, each campaign's timeline is on the page of its heading, and the right margin
is empty (nothing cut). Screenshots and page renders stay under the pytest tmp dir."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.browser import (
    CHROMIUM,
    PDFTOPPM,
    chromium,
    colours,
    cut_at_right,
    decode_png,
    ink,
    measure,
    pdf_pages,
)
from threatscope.report.pdf import print_pdf
from threatscope.simulate import simulate

BIN = str(Path(sys.executable).parent / "threatscope")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None or PDFTOPPM is None,
                                 reason="chromium or pdftoppm is not installed")]
DESKTOP = 1280
SCALE = 0.5  # screenshots at half resolution: a 25,000 px page decodes in seconds


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """A small simulated quarter through ``threatscope run --pdf``."""
    root = tmp_path_factory.mktemp("looks")
    data = simulate(root / "data", seed=11, scale=0.1)
    out = root / "out"
    r = subprocess.run([BIN, "run", "-w", str(root / "ws"), "--orgs", str(data / "orgs.csv"),
                        str(data), "-o", str(out), "--pdf"],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def desktop(demo_report, tmp_path_factory):
    """The report's layout at the desktop width and a full-page screenshot of it."""
    tmp = tmp_path_factory.mktemp("looks-shots")
    html = demo_report / "report.html"
    layout = measure(tmp, html, DESKTOP)
    png = tmp / "report-desktop.png"
    r = chromium(tmp, f"--window-size={DESKTOP},{min(layout['height'], 30000)}",
                 f"--force-device-scale-factor={SCALE}", f"--screenshot={png}", html.as_uri(),
                 timeout=120)
    assert r.returncode == 0 and png.exists(), r.stderr[-2000:]
    print(f"desktop screenshot: {png}")
    return layout, decode_png(png.read_bytes())


def _region(shot, box: dict):
    x, y, w, h = (round(box[k] * SCALE) for k in ("x", "y", "w", "h"))
    return shot[y:y + h, x:x + w]


def _drawn(region) -> bool:
    """A chart region that shows a chart: several colours and some ink on the white page."""
    return colours(region) >= 4 and ink(region) >= 0.02


def test_every_chart_is_drawn(demo_report, desktop):
    layout, shot = desktop
    report = json.loads((demo_report / "report.json").read_text(encoding="utf-8"))
    charts = layout["charts"]
    labels = [c["label"] for c in charts]
    # the comparison, one timeline per campaign, sources, classification, sectors...
    assert len(charts) >= len(report["campaigns"]) + 5, labels
    for c in report["campaigns"]:
        assert f"Daily detected events of {c['campaign']}" in labels
    for c in charts:
        assert c["w"] > 0.5 * 1040 and c["h"] > 60 and c["marks"] > 0, c
        assert _drawn(_region(shot, c)), c["label"]
    # the look-alike: the same box in the page's left margin is blank, and the test says so
    margin = dict(charts[0], x=0, w=100)
    assert not _drawn(_region(shot, margin))


A4_WIDTH = 703  # CSS px between the margins of an A4 page (210 mm - 2 x 12 mm)


def _as_printed(html: Path, out: Path) -> Path:
    """``html`` with its print rules applied on screen: laid out A4_WIDTH wide, it is the
    page Chromium prints (fonts, paddings and column widths of paper). The policy allows the
    style sheet by its hash: the changed sheet gets its own."""
    text = html.read_text(encoding="utf-8")
    start = text.index("<style>") + len("<style>")
    css = text[start:text.index("</style>", start)]
    assert "@media print" in css
    printed = css.replace("@media print", "@media all")
    def digest(sheet: str) -> str:
        return base64.b64encode(hashlib.sha256(sheet.encode("utf-8")).digest()).decode("ascii")
    assert text.count(digest(css)) == 1
    out.write_text(text.replace(css, printed).replace(digest(css), digest(printed)),
                   encoding="utf-8")
    return out


@pytest.mark.parametrize("width", [DESKTOP, 800, 680, 390, "print"])
def test_nothing_overflows_the_viewport_or_a_table_cell(demo_report, tmp_path, width):
    html = demo_report / "report.html"
    if width == "print":
        html, width = _as_printed(html, demo_report / "report-as-printed.html"), A4_WIDTH
    layout = measure(tmp_path, html, width)
    assert layout["viewport"] == width
    assert layout["n_wide"] == 0, layout["wide"]
    assert layout["scroll_width"] <= width
    assert layout["n_spilled"] == 0, layout["spilled"]


def test_a_spilled_cell_is_detected(tmp_path):
    """The measurement sees a heading wider than its fixed-width column."""
    page = tmp_path / "cells.html"
    page.write_text('<table id="t" style="table-layout:fixed;width:200px"><tr>'
                    '<th style="width:20%">Organisation</th><th>b</th></tr></table>',
                    encoding="utf-8")
    layout = measure(tmp_path, page, 800)
    assert layout["n_wide"] == 0 and layout["spilled"] == ["t: Organisation (" +
                                                            layout["spilled"][0].split("(")[1]]


def test_overflow_is_detected(tmp_path):
    """The measurement sees an element wider than the page (a long unbreakable line)."""
    page = tmp_path / "wide.html"
    page.write_text("<p>ok</p><p>" + "x" * 400 + "</p>", encoding="utf-8")
    layout = measure(tmp_path, page, 800)
    assert layout["n_wide"] >= 1 and layout["scroll_width"] > 800


def _page_text(pdf: Path, n: int) -> str:
    """Page ``n``'s text without white space and hyphens (a heading may wrap anywhere, and
    pdftotext joins a word broken after a hyphen without it)."""
    text = subprocess.run(["pdftotext", "-f", str(n), "-l", str(n), str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    return "".join(text.split()).replace("-", "")


def _near(page, rgb: tuple[int, int, int], tol: int = 12) -> int:
    import numpy as np

    return int((np.abs(page.astype(int) - np.array(rgb)).max(-1) <= tol).sum())


TIMELINE_AREA = (0xD6, 0xE4, 0xF0)  # .area in report.css: a timeline's filled curve
DPI = 100
MARGIN_PX = round(12 / 25.4 * DPI)  # the print style sheet's side margin, 12 mm


def test_pdf_pages_are_whole(demo_report, tmp_path):
    pdf = demo_report / "report.pdf"
    pages = pdf_pages(pdf, tmp_path / "pages", dpi=DPI)
    print(f"pdf pages: {tmp_path / 'pages'}")
    assert len(pages) >= 5
    report = json.loads((demo_report / "report.json").read_text(encoding="utf-8"))
    for n, page in enumerate(pages, 1):
        assert ink(page) > 0.002, f"page {n} is blank"
        assert ink(page[:, -MARGIN_PX + 2:]) == 0, f"page {n}: something in the right margin"
        assert cut_at_right(page, MARGIN_PX) == 0, f"page {n}: something is cut at the right margin"
    # a campaign box never breaks across pages: its timeline is on the page of its heading
    drawn = [c for c in report["campaigns"] if c["period"] > 0]
    assert drawn
    texts = [_page_text(pdf, n) for n in range(1, len(pages) + 1)]
    for c in drawn:
        on = [n for n in range(1, len(pages) + 1) if "·" + c["campaign"].replace("-", "") in texts[n - 1]]
        assert on, c["campaign"]
        assert _near(pages[on[0] - 1], TIMELINE_AREA) > 2000, (c["campaign"], on)
    # the look-alike: the first page (title, key findings) has no timeline
    assert _near(pages[0], TIMELINE_AREA) < 2000


def test_pdf_cut_check_sees_a_cut(tmp_path):
    """A printed line too long for the page is cut at the right margin: the check sees it."""
    page = tmp_path / "wide.html"
    page.write_text("<style>@page { size: A4; margin: 14mm 12mm; }</style>"
                    "<pre style='font-size:20px'>" + "W" * 300 + "</pre>", encoding="utf-8")
    pdf = print_pdf(page, tmp_path / "wide.pdf")
    pages = pdf_pages(pdf, tmp_path / "pages", dpi=DPI)
    assert cut_at_right(pages[0], MARGIN_PX) > 0


def test_no_missing_value_reads_none(demo_report, tmp_path):
    """A missing value shows as a dash, never as Python's None (the demo has detected events
    without a source address: a top 'IP' that is null)."""
    from tests.report.conftest import build_metrics
    from tests.report.helpers import Page, Tables
    from threatscope.report import write_report

    for out in (demo_report, tmp_path):
        if out == tmp_path:  # the case itself, should the demo ever lose it
            m = build_metrics()
            m["sources"]["top_ips"][0]["ip"] = None
            m["sources"]["targeted"][0]["ip"] = None
            write_report(m, out)
        texts = Page((out / "report.html").read_text(encoding="utf-8")).texts  # text nodes
        md = (out / "report.md").read_text(encoding="utf-8")
        assert not [t for t in texts if re.search(r"\bNone\b", t)], out
        assert not re.search(r"\bNone\b", md), out
    assert Tables((tmp_path / "report.html").read_text(encoding="utf-8"))["targeted"][1][0] == "—"
