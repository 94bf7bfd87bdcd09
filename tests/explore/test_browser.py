"""`threatscope serve` in a real browser: Playwright for Python driving Debian's chromium (no
browser download; ``find_chromium()`` as the PDF tests use it).

The server runs in this process on 127.0.0.1 (a free port) over the shared explore workspace;
one browser and context per module, a new page per test. The tests open the overview and check
that its numbers are the report's, filter through the form, drill down from a figure to its events
(following the pages) and check that the value equals the number of events listed, and load
every page that shows hostile strings from the logs (script tags, event handlers, javascript:
URLs, an organisation whose sector is markup) to check that nothing runs and the strings show as
text. Full-page screenshots are kept in ``$THREATSCOPE_ARTEFACTS`` or else
``<repo>/test-artefacts/serve/``.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.explore.conftest import (
    BAD_LINES,
    HOSTILE_NAME,
    HOSTILE_ORG,
    HOSTILE_SECTOR,
    HOSTILE_UA,
)
from threatscope.explore.pages import PAGE_SIZE
from threatscope.explore.serve import make_server
from threatscope.report.pdf import chromium_args, find_chromium

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extra not installed
    sync_playwright = None

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None,
                       reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(CHROMIUM is None,
                       reason="no chromium (apt-get install chromium, or THREATSCOPE_CHROMIUM)"),
]

ARTEFACTS = Path(os.environ.get("THREATSCOPE_ARTEFACTS")
                 or Path(__file__).resolve().parents[2] / "test-artefacts" / "serve")

# what the dashboard's own markup never has; in a page it would have come from log content
# (the report's charts are its own <svg class="chart">)
_INSPECT = """() => {
  const on = [];
  for (const el of document.querySelectorAll("*"))
    for (const a of el.attributes)
      if (a.name.toLowerCase().startsWith("on")) on.push(`${el.tagName.toLowerCase()}[${a.name}]`);
  const html = sel => [...document.querySelectorAll(sel)].map(e => e.outerHTML.slice(0, 200));
  return {
    scripts: document.scripts.length,
    on_attributes: on,
    javascript_urls: html('[href^="javascript:" i], [src^="javascript:" i], [action^="javascript:" i], [formaction^="javascript:" i]'),
    images: html("img, image, picture, video, audio, source"),
    foreign_svg: html("svg:not(.chart)"),
    frames: html('iframe, frame, object, embed, base, meta[http-equiv="refresh" i]'),
  };
}"""


def _int(text: str) -> int:
    """A number as the dashboard writes it (``1,092``)."""
    return int(text.strip().replace(",", ""))


def _css(value: str) -> str:
    """``value`` as a quoted CSS string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Tab:
    """A page of a fresh browser context, recording what must not happen: dialogs, page
    errors, CSP reports on the console, responses of the server without a CSP."""

    page: object
    base: str
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    no_csp: list[str] = field(default_factory=list)
    responses: int = 0

    def __post_init__(self) -> None:
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", self._response)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message!r}")
        dialog.dismiss()

    def _response(self, response) -> None:
        if response.url.startswith(self.base):
            self.responses += 1
            if not response.headers.get("content-security-policy"):
                self.no_csp.append(f"{response.status} {response.url}")

    def goto(self, path: str, status: int = 200):
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == status, (path, response)
        return response

    def click(self, selector: str) -> None:
        """Click the link ``selector`` and wait for the page it opens."""
        with self.page.expect_navigation():
            self.page.locator(selector).first.click()

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.page.url).query, keep_blank_values=True)

    def figures(self, baseline: bool = False) -> dict[str, tuple[int, str]]:
        """figure id -> (value shown, href) of the figure links on the page."""
        attr = "data-figure-baseline" if baseline else "data-figure"
        links = self.page.eval_on_selector_all(
            f"a[{attr}]", f"els => els.map(e => [e.getAttribute('{attr}'), e.textContent, "
            "e.getAttribute('href')])")
        out = {}
        for fid, text, href in links:
            assert fid not in out, f"figure {fid} linked twice on {self.page.url}"
            out[fid] = (_int(text), href)
        return out

    def drilled(self) -> tuple[int, int]:
        """(#figure-value, #event-count) of an events page."""
        return (_int(self.page.inner_text("#figure-value")),
                _int(self.page.inner_text("#event-count")))

    def all_rows(self) -> tuple[list[str], int]:
        """The text of every ``tr.event`` of an events listing, following rel=next from
        this page; and the number of pages read."""
        rows, pages = [], 0
        while True:
            pages += 1
            assert pages <= 50, "rel=next does not end"
            found = self.page.locator("#events tr.event").all_inner_texts()
            assert len(found) <= PAGE_SIZE
            rows += found
            nxt = self.page.locator('a[rel="next"]')
            if nxt.count() == 0:
                return rows, pages
            assert len(found) == PAGE_SIZE, "a page before the last is not full"
            self.click('a[rel="next"]')
            assert self.page.locator('a[rel="prev"]').count() > 0

    def screenshot(self, name: str, max_height: int = 8000) -> Path:
        """A full-page PNG in ARTEFACTS (cut at ``max_height`` pixels: the report is long)."""
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{name}.png"
        width, height = self.page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        self.page.screenshot(path=str(path), full_page=True, clip={
            "x": 0, "y": 0, "width": width, "height": min(height, max_height)})
        print(f"screenshot: {path}")
        return path

    def csp_reports(self) -> list[str]:
        """The CSP violations reported on the console."""
        return [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]

    def assert_nothing_ran(self) -> None:
        """No dialog, script, handler, javascript: URL, image or foreign svg; every response
        with a CSP; no CSP violation (of an inline style either)."""
        found = self.page.evaluate(_INSPECT)
        assert self.dialogs == [], f"a dialog opened on {self.page.url}: {self.dialogs}"
        assert self.errors == [], f"script errors on {self.page.url}: {self.errors}"
        csp = self.csp_reports()
        assert csp == [], f"CSP violations on {self.page.url}: {csp}"
        assert found["scripts"] == 0, found
        for k in ("on_attributes", "javascript_urls", "images", "foreign_svg", "frames"):
            assert found[k] == [], f"{k} on {self.page.url}: {found[k]}"
        assert self.responses > 0 and self.no_csp == [], \
            f"responses without a Content-Security-Policy: {self.no_csp}"


def _check_csp(response) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'none'"], csp
    for d in ("script-src", "script-src-elem"):  # absent (default-src 'none'), or 'none'
        assert directives.get(d, ["'none'"]) == ["'none'"], csp
    assert "unsafe" not in csp, csp


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_url(explore_ws) -> Iterator[str]:
    server = make_server(explore_ws.ws, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="threatscope-serve",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    args = [a for a in chromium_args(CHROMIUM, "-")[1:]
            if not a.startswith(("--headless", "--user-data-dir"))]  # playwright's own
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def tab(context, base_url) -> Iterator[Tab]:
    """A new page (the dashboard keeps no state in the browser: no cookie on loopback)."""
    page = context.new_page()
    try:
        yield Tab(page, base_url)
    finally:
        page.close()


@pytest.fixture(scope="module")
def report_figures(explore_ws) -> dict[str, dict]:
    return {f["id"]: f for f in explore_ws.report["figures"]}


# -- the tests ------------------------------------------------------------------------------

def test_overview_shows_the_reports_figures(tab, report_figures):
    response = tab.goto("/")
    _check_csp(response)
    assert tab.page.locator("section.totals .total").count() == 4
    campaigns = tab.page.locator('section[id="campaigns"] table tbody tr')
    assert campaigns.count() > 0
    assert tab.page.locator('section[id="campaigns"] h2').inner_text() == "Campaigns"

    values, baselines = tab.figures(), tab.figures(baseline=True)
    for name in TABS[1:]:  # the other tabs, through their links (the view goes along)
        tab.click(f'nav.tabs a[href*="tab={name}"]')
        assert tab.query["tab"] == [name]
        assert tab.page.locator("nav.tabs a.current").get_attribute("href").endswith(name)
        values |= tab.figures()
        baselines |= tab.figures(baseline=True)
    assert len(values) > 50 and len(baselines) > 20
    for fid in ("totals.detected_events", "totals.detections", "totals.source_ips",
                "totals.orgs_hit"):
        assert fid in values and fid in baselines
    shared = values.keys() & report_figures.keys()
    assert len(shared) >= 0.9 * len(values), values.keys() - report_figures.keys()
    wrong = {fid: (values[fid][0], report_figures[fid]["value"]) for fid in shared
             if values[fid][0] != report_figures[fid]["value"]}
    assert wrong == {}, "shown != report.json value"
    wrong = {fid: (n, report_figures[fid]["baseline"]) for fid, (n, _) in baselines.items()
             if fid in report_figures and n != (report_figures[fid]["baseline"] or 0)}
    assert wrong == {}, "shown != report.json baseline"
    # every link leads to the events of its own figure, under the same period and baseline
    for fid, (_, href) in values.items():
        q = parse_qs(urlsplit(href).query)
        assert urlsplit(href).path == "/events" and q["figure"] == [fid], href
        assert q["period"] == [tab.page.locator('input[name="period"]').input_value()]
    tab.screenshot("overview")
    tab.assert_nothing_ran()


def _busiest_pair(report_figures) -> tuple[str, str]:
    """(organisation, campaign) with the most exposure events: present in the data."""
    pairs = [f for f in report_figures.values() if f["figure"] == "exposure"
             and f["key"].get("threat_kind") == "campaign" and f["key"]["org_id"] != HOSTILE_ORG]
    best = max(pairs, key=lambda f: (f["value"], f["id"]))
    return best["key"]["org_id"], best["key"]["threat"]


def test_filter_through_the_form_then_drill_down(tab, report_figures):
    org, campaign = _busiest_pair(report_figures)
    tab.goto("/")
    period = tab.page.locator('input[name="period"]').input_value()
    tab.page.select_option('select[name="org"]', org)
    tab.page.select_option('select[name="campaign"]', campaign)
    with tab.page.expect_navigation():
        tab.page.get_by_role("button", name="Apply").click()

    q = tab.query
    assert urlsplit(tab.page.url).path == "/"
    assert q["org"] == [org] and q["campaign"] == [campaign] and q["period"] == [period], q
    assert all(v == [""] for k, v in q.items()
               if k in ("sector", "cve", "country", "as_org")), q
    # the form shows the view it made
    assert tab.page.locator('select[name="org"]').input_value() == org
    assert tab.page.locator('select[name="campaign"]').input_value() == campaign
    chips = tab.page.locator(".chip").all_inner_texts()
    assert chips == [f"organisation = {org}", f"campaign = {campaign}"], chips

    shown = tab.figures()
    tab.click('nav.tabs a[href*="tab=targets"]')  # the filters go along to another tab
    assert tab.query["org"] == [org] and tab.query["campaign"] == [campaign]
    shown |= tab.figures()
    tab.click('nav.tabs a[href*="tab=attacks"]')
    fid = f"campaigns[campaign={campaign}]"
    assert {f for f in shown if f.startswith("campaigns[")} == {fid}
    assert {f for f in shown if f.startswith("orgs.events[")} == {f"orgs.events[org_id={org}]"}
    value = shown[fid][0]
    assert 0 < value <= report_figures[fid]["value"]
    assert value < report_figures[fid]["value"], "the filter did not narrow the campaign"
    assert shown[f"orgs.events[org_id={org}]"][0] == value  # the same events, counted twice
    assert shown["totals.orgs_hit"][0] == 1
    assert shown["totals.detected_events"][0] == value
    tab.screenshot("overview-filtered")

    # drill down from the filtered view: the filters go along, the value and rows agree
    tab.click(f"a[data-figure={_css(fid)}]")
    q = tab.query
    assert urlsplit(tab.page.url).path == "/events"
    assert q["figure"] == [fid] and q["org"] == [org] and q["campaign"] == [campaign], q
    assert tab.drilled() == (value, value)
    rows, pages = tab.all_rows()
    assert len(rows) == value and pages == math.ceil(value / PAGE_SIZE)
    assert len(set(rows)) == len(rows), "a row listed twice across pages"
    assert {r.split("\t")[1].split("\n")[0] for r in rows} == {org}  # the organisation column
    tab.screenshot("drilldown-filtered")
    tab.assert_nothing_ran()


def test_drill_down_pages_add_up_to_the_value(tab, report_figures):
    tab.goto("/")
    shown, shown_base = tab.figures(), tab.figures(baseline=True)
    # a count figure on the overview whose events span two or three pages
    small = sorted((n, fid) for fid, (n, _) in shown.items()
                   if PAGE_SIZE < n <= 120 and fid.startswith(("campaigns[", "cves[", "rules[")))
    assert small, "no figure between 51 and 120 events on the overview"
    value, fid = small[-1]
    tab.click(f"a[data-figure={_css(fid)}]")
    assert tab.query["figure"] == [fid]
    assert tab.drilled() == (value, value) == (report_figures[fid]["value"],) * 2
    tab.screenshot("drilldown")
    rows, pages = tab.all_rows()
    assert pages == math.ceil(value / PAGE_SIZE) >= 2
    assert len(rows) == value, f"{fid}: {value} shown, {len(rows)} rows over {pages} pages"
    assert len(set(rows)) == len(rows), "a row listed twice across pages"
    assert tab.query["page"] == [str(pages)] and tab.page.locator('a[rel="next"]').count() == 0
    tab.click('a[rel="prev"]')  # and back
    assert tab.query["page"] == [str(pages - 1)]
    assert tab.page.locator("#events tr.event").count() == PAGE_SIZE

    # its baseline: the baseline link's number is the listing of the baseline window
    base = shown_base[fid][0]
    tab.goto(shown_base[fid][1])
    assert tab.query["window"] == ["baseline"]
    assert tab.drilled() == (base, base) == ((report_figures[fid]["baseline"] or 0),) * 2
    tab.assert_nothing_ran()


def test_drill_down_of_each_section_and_total(tab, report_figures):
    """The totals, the first row of each section and the rows whose key has a NULL part
    (``sources.as_orgs[asn][network_type]``: no ASN): #figure-value is the overview's number
    and the number of events listed."""
    shown, firsts = {}, []
    for name in TABS:
        tab.goto(f"/?tab={name}")
        shown |= tab.figures()
        firsts += tab.page.eval_on_selector_all(
            "section.figure", "ss => ss.map(s => s.querySelector('a[data-figure]'))"
            ".filter(a => a).map(a => a.getAttribute('data-figure'))")
    nulls = [f for f in shown if re.search(r"\[[a-z_]+\]", f)]
    picked = list(dict.fromkeys([f for f in shown if f.startswith("totals.")] + firsts + nulls))
    assert len(picked) >= 12 and nulls, picked
    wrong = {}
    for fid in picked:
        tab.goto(shown[fid][1])
        got = tab.drilled()
        if got != (shown[fid][0], shown[fid][0]):
            wrong[fid] = {"overview": shown[fid][0], "figure-value": got[0], "event-count": got[1]}
    assert wrong == {}
    tab.assert_nothing_ran()


def test_report_page_keeps_its_style(tab):
    """/report is sent with the report's own policy (its style element by hash), not the
    dashboard's (which would block that style: found by this test)."""
    tab.goto("/report")
    assert tab.csp_reports() == []
    assert "Times" not in tab.page.evaluate("getComputedStyle(document.body).fontFamily")


# -- hostile strings --------------------------------------------------------------------

_GPON_MARKUP = ["javascript:alert(3)", "%3Cscript%3Ealert(4)%3C/script%3E",
                "<svg/onload=alert(5)>", "images/javascript:alert(6)", HOSTILE_UA]
_HOSTILE_SEARCH = "<img src=x onerror=alert(7)>"
_HOSTILE_FIGURE = "<script>alert(8)</script>"

# name, path, link to click there (None: the page itself), status, what must show as text
TABS = ("attacks", "sources", "targets")  # the overview's tabs, the first shown at "/"
HOSTILE_PAGES = [
    ("overview", "/?tab=targets", None, 200, {
        '[id="orgs.events"]': [HOSTILE_ORG, HOSTILE_NAME, HOSTILE_SECTOR],
        '[id="sectors.events"]': [HOSTILE_SECTOR]}),
    ("sector-filter", "/?" + urlencode({"sector": HOSTILE_SECTOR, "tab": "targets"}), None, 200,
     {".active": [f"sector = {HOSTILE_SECTOR}"], '[id="orgs.events"]': [HOSTILE_ORG]}),
    ("org-events", "/events?" + urlencode({"figure": f"orgs.events[org_id={HOSTILE_ORG}]"}),
     None, 200, {"#events": [HOSTILE_SECTOR, *_GPON_MARKUP]}),
    ("gpon-drilldown", "/?" + urlencode({"org": HOSTILE_ORG}),
     'a[data-figure="campaigns[campaign=gpon]"]', 200, {"#events": _GPON_MARKUP}),
    ("search", "/search?q=script", None, 200, {"#hits": ["script"]}),
    ("search-org", "/search?" + urlencode({"q": "script", "org": HOSTILE_ORG}), None, 200,
     {"#hits": [HOSTILE_UA, "javascript:alert(3)"]}),
    ("search-reflected", "/search?" + urlencode({"q": _HOSTILE_SEARCH}), None, 200,
     {"main": [_HOSTILE_SEARCH]}),
    ("figure-reflected", "/events?" + urlencode({"figure": _HOSTILE_FIGURE}), None, 400,
     {"main": [_HOSTILE_FIGURE]}),
    ("quarantine", "/quarantine", None, 200, {"#quarantine": [BAD_LINES[0]]}),
    ("report", "/report", None, 200, {"body": [HOSTILE_SECTOR]}),
]


@pytest.mark.parametrize("name, path, click, status, texts", HOSTILE_PAGES,
                         ids=[p[0] for p in HOSTILE_PAGES])
def test_hostile_strings_do_not_run(tab, name, path, click, status, texts):
    response = tab.goto(path, status)
    _check_csp(response)
    if click:
        tab.click(click)
        assert tab.query.get("org") == [HOSTILE_ORG]
    tab.screenshot(f"hostile-{name}")
    tab.assert_nothing_ran()
    # then that the strings show as text, where they belong
    for selector, wanted in texts.items():
        shown = tab.page.locator(selector).first.inner_text()
        for text in wanted:
            assert text in shown, f"{text!r} not shown as text in {selector} of {name}"
    if name in ("org-events", "gpon-drilldown"):
        rows = tab.page.locator("#events tr.event")
        assert rows.count() == 4 == tab.drilled()[0] == tab.drilled()[1]
        shown = tab.page.inner_text("#events")
        # control and reordering characters show as escapes, not as themselves
        assert "\\x1b[31mred\\u202eevil" in shown and "\x1b" not in shown and "\u202e" not in shown
    if name == "search-reflected":  # what was asked, in the form's field, as given
        assert tab.page.locator('input[name="q"]').input_value() == _HOSTILE_SEARCH
    if name == "sector-filter":
        assert tab.page.locator('select[name="sector"]').input_value() == HOSTILE_SECTOR
        assert tab.figures()["totals.orgs_hit"][0] == 1


def test_the_checks_see_script_when_there_is_some(tab):
    """The inspection is not blind: a page without CSP (set_content, not the dashboard) with
    a script, inline handlers, a javascript: link, an image and an svg trips every check."""
    tab.page.set_content('<p>x</p><img src="data:," onerror="alert(1)"><script>alert(2)</script>'
                         '<a href="javascript:alert(3)">x</a><svg onload="alert(4)"></svg>')
    tab.page.wait_for_timeout(200)
    found = tab.page.evaluate(_INSPECT)
    assert found["scripts"] == 1 and found["images"] and found["foreign_svg"]
    assert found["on_attributes"] and found["javascript_urls"]
    assert len(tab.dialogs) >= 2, tab.dialogs
