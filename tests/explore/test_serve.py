"""`threatscope serve` over real HTTP: the report's numbers, drill-down counts, read-only access,
tokens, bad input, concurrent requests and snapshots while an ingest writes the workspace."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest

from threatscope.errors import UserError
from threatscope.explore.serve import make_server
from threatscope.workspace import Workspace

from .conftest import HOSTILE_ORG, HOSTILE_SECTOR

BIN = str(Path(sys.executable).parent / "threatscope")


class Marks(HTMLParser):
    """The figure values a page marks (data-figure / data-figure-baseline) and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.baselines: dict[str, str] = {}
        self.hrefs: dict[str, str] = {}
        self._open: tuple[dict, str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for attr, into in (("data-figure", self.values), ("data-figure-baseline", self.baselines)):
            if attr in a:
                self._open = (into, a[attr])
                into[a[attr]] = ""  # the figure may show again (the totals on each tab)
                if tag == "a" and into is self.values:
                    self.hrefs[a[attr]] = a["href"]

    def handle_data(self, data):
        if self._open:
            into, fid = self._open
            into[fid] = into.get(fid, "") + data

    def handle_endtag(self, tag):
        self._open = None


def number(text: str) -> int:
    return int(text.replace(",", "").strip())


def get(server, path: str, headers: dict | None = None) -> tuple[int, dict, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}{path}",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8")


@pytest.fixture
def running():
    servers = []

    def start(ws: Workspace, host: str = "127.0.0.1", **kw):
        server = make_server(ws, host, 0, **kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def server(explore_ws):
    s = make_server(explore_ws.ws, "127.0.0.1", 0)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield s
    s.shutdown()
    s.server_close()


TABS = ("attacks", "sources", "targets")


def test_the_overview_shows_the_reports_numbers_with_a_csp(server, explore_ws):
    marks = Marks()
    for tab in TABS:
        status, headers, page = get(server, f"/?tab={tab}")
        assert status == 200
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script" not in csp.replace("script-src", "")
        assert headers["X-Content-Type-Options"] == "nosniff"
        marks.feed(page)
    report = {f["id"]: f for f in explore_ws.report["figures"]}
    shared = set(marks.values) & set(report)
    assert {"totals.detected_events", "campaigns[campaign=gpon]", "orgs.events[org_id=org01]",
            "sources.countries[country_code=CN]"} <= shared
    assert len(shared) > 40
    for fid in shared:
        assert number(marks.values[fid]) == report[fid]["value"], fid
        if fid in marks.baselines:
            assert number(marks.baselines[fid]) == report[fid]["baseline"], fid


def test_every_campaign_drills_down_to_as_many_events_as_it_counts(server, explore_ws):
    _, _, page = get(server, "/")
    marks = Marks()
    marks.feed(page)
    campaigns = [f for f in marks.hrefs if f.startswith("campaigns[")]
    assert len(campaigns) >= 3
    for fid in campaigns:
        status, _, events = get(server, marks.hrefs[fid].replace("&amp;", "&"))
        assert status == 200
        value = number(re.search(r'id="figure-value"[^>]*>([^<]*)<', events).group(1))
        count = number(re.search(r'id="event-count">([^<]*)<', events).group(1))
        assert value == count == number(marks.values[fid])


def test_a_small_figure_lists_each_of_its_events_across_pages(server, explore_ws):
    fig = min((f for f in explore_ws.report["figures"]
               if f["figure"] == "campaigns" and 50 < f["value"] <= 200),
              key=lambda f: f["value"], default=None)
    if fig is None:
        pytest.skip("no campaign of 51..200 events at this scale")
    rows, url, pages = 0, "/events?" + urlencode({"figure": fig["id"]}), 0
    while url:
        status, _, page = get(server, url.replace("&amp;", "&"))
        assert status == 200
        rows += page.count('<tr class="event">')
        nxt = re.search(r'<a rel="next" href="([^"]+)"', page)
        url = nxt.group(1) if nxt else None
        pages += 1
    assert pages >= 2
    assert rows == fig["value"]


def test_filters_narrow_every_figure_and_drill_downs_keep_them(server, explore_ws):
    org = "org01"
    marks = Marks()
    for tab in TABS:
        _, _, page = get(server, "/?" + urlencode({"org": org, "campaign": "gpon", "tab": tab}))
        assert f'name="tab" value="{tab}"' in page  # the form keeps the tab
        marks.feed(page)
    n = number(marks.values["campaigns[campaign=gpon]"])
    assert 0 < n < next(f["value"] for f in explore_ws.report["figures"]
                        if f["id"] == "campaigns[campaign=gpon]")
    assert number(marks.values["totals.detected_events"]) == n  # one campaign: its events
    assert number(marks.values[f"orgs.events[org_id={org}]"]) == n
    assert not [f for f in marks.values if f.startswith("orgs.events") and org not in f]
    href = marks.hrefs["campaigns[campaign=gpon]"].replace("&amp;", "&")
    assert "org=org01" in href and "campaign=gpon" in href
    _, _, events = get(server, href)
    assert number(re.search(r'id="event-count">([^<]*)<', events).group(1)) == n
    assert "org09" not in re.sub(r"<form.*?</form>", "", events, flags=re.S)


@pytest.mark.parametrize("path, status, text", [
    ("/?org=no-such-org", 200, "Nothing in"),
    ("/events?figure=campaigns%5Bcampaign%3Dnope%5D", 200, "No events match"),
    ("/events?figure=not.a.figure", 400, "unknown figure"),
    ("/events?figure=campaigns%5Bcve%3Dx%5D", 400, "not a key"),
    ("/events?figure=totals.events&campaign=gpon", 400, "cannot narrow"),
    ("/events?figure=sources.countries%5Bcountry_code%3DCN%5D&window=baseline", 400,
     "period only"),
    ("/?period=2018Q9", 400, "Cannot show this"),
    ("/events?figure=totals.detections&page=abc", 400, "page must be a number"),
    ("/?org=" + "x" * 600, 400, "too long"),
    ("/nowhere", 404, "no such page"),
    ("/?tab=nope", 400, "no tab"),
    ("/search?q=" + "%00", 200, "No logged line"),
    ("/search?q=%25%25%25%25", 200, "No logged line"),  # '%' is a character, not a wildcard
])
def test_bad_input_gets_a_message_not_a_trace(server, path, status, text):
    got, headers, page = get(server, path)
    assert got == status, page
    assert text in page
    assert "Traceback" not in page and "Error:" not in page
    assert "Content-Security-Policy" in headers


def test_read_only_and_loopback_only(server):
    port = server.server_address[1]
    for method in ("POST", "PUT", "DELETE"):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", method=method, data=b"x")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 405
    # a page of another site resolving its name to 127.0.0.1 (DNS rebinding) is refused
    status, _, _ = get(server, "/", {"Host": f"attacker.example:{port}"})
    assert status == 421
    assert get(server, "/", {"Host": f"localhost:{port}"})[0] == 200


def test_away_from_loopback_a_token_is_required(running, explore_ws):
    server = running(explore_ws.ws, "0.0.0.0", token="s3cret-token")
    assert get(server, "/")[0] == 401
    assert get(server, "/?token=wrong")[0] == 401
    assert get(server, "/", {"Authorization": "Bearer s3cret-token"})[0] == 200
    # the token in the URL once: a redirect without it, and a same-site HTTP-only cookie
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.server_address[1]}/?token=s3cret-token&org=org01")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(NoRedirect).open(req, timeout=30)
    assert e.value.code == 303
    assert e.value.headers["Location"] == "/?org=org01"
    cookie = e.value.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert get(server, "/", {"Cookie": cookie.split(";")[0]})[0] == 200
    generated = running(explore_ws.ws, "0.0.0.0")
    assert generated.token and len(generated.token) >= 24


def test_a_port_in_use_is_a_clear_error(server, explore_ws):
    with pytest.raises(UserError, match="is in use: choose another with --port"):
        make_server(explore_ws.ws, "127.0.0.1", server.server_address[1])


def test_concurrent_requests_all_answer_the_same(server):
    paths = ["/", "/?org=org02", "/events?figure=campaigns%5Bcampaign%3Dgpon%5D",
             "/events?figure=totals.detected_events&page=3", "/quarantine",
             "/search?q=GponForm", "/?sector=finance", "/events?figure=totals.detections&org=org03"] * 3
    strip = re.compile(r'<p class="snapshot".*?</p>', re.S)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: get(server, p), paths))
    by_path: dict[str, set] = {}
    for p, (status, _, page) in zip(paths, results, strict=True):
        assert status == 200, (p, page[:300])
        by_path.setdefault(p, set()).add(strip.sub("", page))
    assert all(len(v) == 1 for v in by_path.values())


def test_hostile_strings_are_shown_as_text(server):
    _, _, page = get(server, "/?" + urlencode({"sector": HOSTILE_SECTOR}))
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    _, _, page = get(server, "/events?" + urlencode({"figure": f"orgs.events[org_id={HOSTILE_ORG}]"}))
    assert "<script>" not in page and "<svg" not in page
    assert "&lt;script&gt;alert(&#34;ua&#34;)&lt;/script&gt;" in page
    assert "\\x1b[31mred\\u202eevil" in page  # escape and bidi override shown, not obeyed
    assert 'href="javascript:' not in page
    _, _, page = get(server, "/?tab=targets")  # the organisation's name: its list, its row
    assert page.count("&lt;script&gt;alert(&#39;org&#39;)&lt;/script&gt;") == 2
    _, _, page = get(server, "/quarantine")
    assert "&lt;script&gt;alert(&#39;quarantine&#39;)&lt;/script&gt;" in page
    _, _, page = get(server, "/search?q=onerror")
    assert page.count('<tr class="hit">') >= 1 and "<img" not in page


def test_the_dashboard_keeps_its_snapshot_while_an_ingest_writes(running, explore_ws, tmp_path):
    """An ingest holds the catalog for its whole run: the dashboard keeps answering from the
    snapshot before it (and says an ingest is running) and shows the new state, whole, once
    the ingest is done."""
    root = tmp_path / "ws"
    shutil.copytree(explore_ws.ws.root, root)
    ws = Workspace.open(root)
    server = running(ws, poll_s=0.2)
    before = get(server, "/quarantine")[2]
    n_before = int(re.search(r"<small>([\d,]+) lines", before).group(1).replace(",", ""))
    big = tmp_path / "big.log"
    good = '203.0.113.{} - - [02/May/2018:10:00:00 +0000] "GET /x{} HTTP/1.1" 200 5 "-" "ua"'
    with open(big, "w") as f:
        for i in range(300_000):
            f.write(good.format(i % 250, i) + "\n")
            if i % 100_000 == 0:
                f.write("not a log line\n")
    proc = subprocess.Popen([BIN, "ingest", "-w", str(root), "--org", "org01", "--format",
                             "combined", str(big)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    answered, announced = 0, 0
    try:
        while proc.poll() is None:
            status, _, page = get(server, "/quarantine")
            assert status == 200
            m = re.search(r"<small>([\d,]+) lines", page)
            # the old snapshot whole, or the new one whole: never a half-written state
            assert int(m.group(1).replace(",", "")) in (n_before, n_before + 3)
            announced += "an ingest is writing the workspace" in page
            answered += 1
            time.sleep(0.05)
    finally:
        out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert answered >= 3
    assert announced >= 1  # the pages say an ingest is on its way
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = get(server, "/quarantine")[2]
        if f"<small>{n_before + 3:,} lines" in page:
            assert "an ingest is writing the workspace" not in page
            break
        time.sleep(0.2)
    else:
        pytest.fail("the snapshot was not renewed after the ingest")


def test_a_workspace_without_some_tables_says_what_is_missing(running, tmp_path):
    """Nothing ingested, then events without detections or enrichment: pages, not errors."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    server = running(ws, poll_s=0.2)
    for path in ("/", "/events?figure=totals.detections", "/report"):
        status, _, page = get(server, path)
        assert (status, "Nothing to show yet" in page) == (200, True), (path, page[:300])
    assert get(server, "/search?q=x")[0] == get(server, "/quarantine")[0] == 200
    log = tmp_path / "a.log"
    log.write_text('203.0.113.9 - - [02/May/2018:10:00:00 +0000] "GET /a HTTP/1.1" 200 5 "-" '
                   '"x"\nnot a line\n')
    r = subprocess.run([BIN, "ingest", "-w", str(ws.root), "--org", "o1", "--format",
                        "combined", str(log)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while "Nothing to show yet" in get(server, "/")[2]:
        assert time.monotonic() < deadline, "the snapshot was not renewed after the ingest"
        time.sleep(0.2)
    status, _, page = get(server, "/")
    assert status == 200 and "Nothing in 2018Q2" in page  # no detections: empty sections
    status, _, page = get(server, "/events?figure=totals.events")
    assert status == 200 and 'id="event-count">1<' in page and "GET /a HTTP/1.1" in page
    assert "1 lines" in get(server, "/quarantine")[2]
    assert get(server, "/report")[0] == 200
    assert "GET /a" in get(server, "/search?q=get+/A")[2]


def test_snapshots_leave_no_files_behind(explore_ws):
    from threatscope.explore.snapshot import Snapshots

    snaps = Snapshots(explore_ws.ws)
    first = snaps.current
    assert (first.folder / "snapshot.duckdb").exists()
    assert snaps.renew() and snaps.current is not first
    assert first.folder.exists()  # requests that started on it may still read it
    with first.cursor() as con:
        assert con.execute("SELECT count(*) FROM det").fetchone()[0] > 0
    snaps._close_retired(0)
    assert not first.folder.exists()
    current = snaps.current.folder
    snaps.stop()
    assert not current.exists()
