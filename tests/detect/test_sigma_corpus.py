"""Against public data (skipped when ../shared/data is absent): the SigmaHQ corpus compiles where
threatscope has data, and the match plans (per distinct value, row-wise) never lose a match on
real traffic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.detect.rows import request_row
from threatscope.detect import check_rules, evaluate, load_rules

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SIGMA = DATA / "sigma"
WEB = DATA / "web"

needs_sigma = pytest.mark.skipif(not SIGMA.is_dir(), reason="no ../shared/data/sigma")


def _logsource_category(path: Path) -> str | None:
    m = re.search(r"^\s*category:\s*(\S+)", path.read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def web_rules():
    return load_rules([SIGMA / "rules" / "web", SIGMA / "rules-emerging-threats"], builtin=True)


@needs_sigma
def test_every_sigmahq_webserver_rule_compiles(web_rules):
    web_files = {
        str(p) for d in ("rules", "rules-emerging-threats", "rules-threat-hunting")
        for p in (SIGMA / d).rglob("*.yml") if _logsource_category(p) == "webserver"
    }
    rs = load_rules(sorted(web_files), builtin=False)
    failed = [(f.path, f.reason) for f in rs.failed]
    assert failed == [], failed
    assert len(rs.rules) == len(web_files)
    # keyword-only rules (no field at all) are among them and compile to searches of `raw`
    keyword_only = [r for r in rs.rules if '"raw"' in r.sql and "url_query" not in r.sql]
    assert len(keyword_only) >= 5


@needs_sigma
def test_check_rules_over_the_whole_corpus():
    report = check_rules([SIGMA], builtin=False)
    assert report["compiled"] + report["failed"] >= 3000
    assert sum(x["compiled"] for x in report["by_logsource"]) == report["compiled"]
    assert sum(x["failed"] for x in report["by_logsource"]) == report["failed"]
    web = [x for x in report["by_logsource"] if x["logsource"] == "-/webserver/-"]
    assert web and web[0]["failed"] == 0 and web[0]["table"] == "http"
    reasons = {f["reason"] for f in report["failures"]}
    assert any(r.startswith("no data for logsource linux/process_creation") for r in reasons)
    procs = [x for x in report["by_logsource"] if x["logsource"] == "windows/process_creation/-"]
    assert procs and procs[0]["table"] == "process_creation" and procs[0]["compiled"] > 1400
    assert all(f["reason"].startswith("placeholder") for f in report["failures"]
               if f["logsource"] == "windows/process_creation/-")
    # every Windows rule compiles but for log sources threatscope does not read (named) and
    # placeholders (%domain_controllers%, ... have no values yet)
    windows = [f for f in report["failures"] if f["logsource"].startswith("windows/")]
    assert all(f["reason"].startswith(("no data for logsource", "placeholder")) for f in windows)
    assert sum(x["compiled"] for x in report["by_logsource"]
               if x["logsource"].startswith("windows/")) > 2500
    # the only web failures are fields threatscope does not have (reported, not guessed)
    for f in report["failures"]:
        if f["logsource"].endswith(("/webserver/-", "/proxy/-")):
            assert f["reason"].startswith("unknown field"), f


@needs_sigma
def test_placeholder_rules_compile_once_their_placeholders_have_values():
    folder = SIGMA / "rules-placeholder"
    names = set(re.findall(r"%([\w-]+)%",
                           "\n".join(p.read_text() for p in folder.rglob("*.yml"))))
    before = check_rules([folder], builtin=False)
    assert any(f["reason"].startswith("placeholder") for f in before["failures"])
    after = check_rules([folder], builtin=False,
                        placeholders={n: ["10.0.0.1", "DC01$"] for n in names})
    assert after["compiled"] > before["compiled"]
    windows = [f for f in after["failures"] if f["logsource"].startswith("windows/")]
    assert windows == []  # the rest are cloud log sources threatscope does not read
    assert all(f["reason"].startswith("no data for logsource") for f in after["failures"])


def _access_rows(path: Path, limit: int) -> list[dict]:
    pat = re.compile(r'^(\S+) \S+ \S+ \[[^\]]*\] "(\S+) (\S+)[^"]*" (\d{3}) \S+(?: "([^"]*)" "([^"]*)")?')
    rows = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            m = pat.match(line)
            if not m:
                continue
            ip, method, uri, status, ref, ua = m.groups()
            row = request_row(method, uri, None, None, int(status))
            row.update(source_ip=ip, raw=line.rstrip("\n"), user_agent_original=ua,
                       http_request_referrer=ref, http_request_headers=None)
            rows.append(row)
            if len(rows) >= limit:
                break
    return rows


@needs_sigma
@pytest.mark.skipif(not WEB.is_dir(), reason="no ../shared/data/web")
def test_engine_agrees_with_the_reference_on_real_traffic(web_rules, monkeypatch):
    rows = []
    with (WEB / "crs_requests.jsonl").open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rows.append(request_row(r["method"], r["uri"], r.get("headers") or {}, r.get("body")))
    rows += _access_rows(WEB / "logs" / "honeynet_chuvakin_access_all.log", 4000)
    rows += _access_rows(WEB / "logs" / "nielsbasjes_hackers-access.log", 1500)
    slow = evaluate(web_rules, "http", rows, reference=True)
    # the engine with its automaton, and on DuckDB alone (no C extension)
    for native in ("1", "0"):
        monkeypatch.setenv("THREATSCOPE_NATIVE", native)
        fast = evaluate(web_rules, "http", rows)
        lost = [(i, sorted(set(s) - set(f)))
                for i, (f, s) in enumerate(zip(fast, slow, strict=True)) if set(s) - set(f)]
        assert lost == [], native
        assert fast == slow, native
    assert sum(map(len, slow)) > 1000  # the data is attack-heavy: the rules do fire
