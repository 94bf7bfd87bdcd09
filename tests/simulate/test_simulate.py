"""Simulator: determinism, formats, ground truth recomputed from the files, rule coverage."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

from threatscope.simulate import simulate, write_bench_log

COMBINED = re.compile(
    r'^(?P<ip>[0-9a-fA-F:.]+) - - \[(?P<d>\d{2})/(?P<mon>[A-Z][a-z]{2})/(?P<y>\d{4}):'
    r'(?P<t>\d{2}:\d{2}:\d{2}) \+0000\] "(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/1\.1" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "(?P<ref>[^"]*)" "(?P<ua>[^"]*)"$'
)
MONTHS = {m: i + 1 for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])}


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim") / "out", seed=11, scale=0.1)


def _open(p: Path):
    return gzip.open(p, "rt", encoding="utf-8") if p.suffix == ".gz" else p.open(encoding="utf-8")


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in
                  ("orgs.csv", "ground_truth.json"))


def _files(root: Path) -> list[Path]:
    """The web logs (the endpoint telemetry and documents are tested in test_endpoint.py, the
    threat-intel files in test_intel.py)."""
    return [p for p in _all_files(root)
            if not {"endpoint", "documents", "intel"} & set(p.relative_to(root).parts)]


def parse(root: Path) -> list[dict]:
    """Every request of every file as a row of `http` columns (plain Python parsing)."""
    rows = []
    for p in _files(root):
        rel = p.relative_to(root).as_posix()
        with _open(p) as f:
            fields = None
            for line in f:
                line = line.rstrip("\n")
                if ".jsonl" in p.name:
                    r = json.loads(line)
                    rows.append({
                        "file": rel, "day": r["ts"][:10], "source_ip": r["src_ip"],
                        "http_request_method": r["method"], "url_original": r["uri"],
                        "http_response_status_code": r["status"],
                        "user_agent_original": r["headers"].get("User-Agent"),
                        "http_request_headers": json.dumps(
                            {k.lower(): v for k, v in r["headers"].items()}),
                        "http_request_body_content": r["body"] or None,
                    })
                elif "u_ex" in p.name:
                    if line.startswith("#Fields: "):
                        fields = line[9:].split(" ")
                        continue
                    if line.startswith("#"):
                        continue
                    v = dict(zip(fields, line.split(" "), strict=True))
                    q = v["cs-uri-query"]
                    rows.append({
                        "file": rel, "day": v["date"], "source_ip": v["c-ip"],
                        "http_request_method": v["cs-method"],
                        "url_original": v["cs-uri-stem"] + ("" if q == "-" else "?" + q),
                        "http_response_status_code": int(v["sc-status"]),
                        "user_agent_original": (None if v["cs(User-Agent)"] == "-"
                                                else v["cs(User-Agent)"].replace("+", " ")),
                    })
                else:
                    m = COMBINED.match(line)
                    assert m, (rel, line)
                    day = date(int(m["y"]), MONTHS[m["mon"]], int(m["d"])).isoformat()
                    rows.append({
                        "file": rel, "day": day, "source_ip": m["ip"],
                        "http_request_method": m["method"], "url_original": m["uri"],
                        "http_response_status_code": int(m["status"]),
                        "user_agent_original": None if m["ua"] == "-" else m["ua"],
                    })
    return rows


def campaign_of(r: dict) -> str | None:
    """The simulator's campaigns told apart by their own markers (independent of the rules)."""
    u = r["url_original"]
    if r["http_request_method"] == "PROPFIND":
        return "iis-webdav"
    if u.startswith("/GponForm/diag_Form?images/"):
        return "gpon"
    if "%2523post_render" in u:
        return "drupalgeddon3"
    if "element_parents=account/mail/%23value" in u or "name%5B%23post_render%5D" in u:
        return "drupalgeddon2"
    if u.startswith("/wls-wsat/"):
        return "weblogic-wls-wsat"
    return None


@pytest.fixture(scope="module")
def rows(sim) -> list[dict]:
    return parse(sim)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = simulate(tmp_path / "a", seed=5, scale=0.02)
    b = simulate(tmp_path / "b", seed=5, scale=0.02)
    c = simulate(tmp_path / "c", seed=6, scale=0.02)
    fa, fb = _all_files(a), _all_files(b)
    assert any("endpoint" in p.parts for p in fa)
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb]
    for x, y in zip(fa, fb, strict=True):
        assert x.read_bytes() == y.read_bytes(), x
    assert (a / "ground_truth.json").read_bytes() == (b / "ground_truth.json").read_bytes()
    assert any(x.read_bytes() != (c / x.relative_to(a)).read_bytes() for x in fa
               if (c / x.relative_to(a)).exists())
    assert any("documents" in p.parts for p in fa)


def test_ground_truth_matches_files(sim, rows):
    gt = json.loads((sim / "ground_truth.json").read_text())
    # per file line counts
    for rel, info in gt["files"].items():
        with _open(sim / rel) as f:
            lines = f.read().splitlines()
        assert len(lines) == info["lines"], rel
        assert sum(not x.startswith("#") for x in lines) == info["requests"], rel
    assert gt["totals"]["requests"] == len(rows)
    # campaign requests per quarter, peak day, onset
    per = defaultdict(Counter)
    days = defaultdict(Counter)
    for r in rows:
        c = campaign_of(r)
        if c:
            per[c]["2018Q1" if r["day"] < "2018-04-01" else "2018Q2"] += 1
            if r["day"] >= "2018-04-01":
                days[c][r["day"]] += 1
    for key, c in gt["campaigns"].items():
        assert (c["baseline"], c["period"]) == (per[key]["2018Q1"], per[key]["2018Q2"]), key
        if c["period"]:
            peak = max(days[key].values())
            assert days[key][c["peak_day"]] == peak
            assert c["peak_day"] == min(d for d, n in days[key].items() if n == peak)
            assert c["quarters"]["2018Q2"]["timeline"] == dict(sorted(days[key].items()))
    assert gt["campaigns"]["gpon"]["onset"] == "2018-05-01"
    assert gt["campaigns"]["gpon"]["baseline"] == 0
    orgs = (sim / "orgs.csv").read_text().splitlines()
    assert orgs[0] == "org_id,name,sector,sensors"
    sectors = {line.split(",")[2] for line in orgs[1:]}
    assert {"biotech", "accounting", "retail", "government", "education", "manufacturing",
            "finance", "healthcare"} <= sectors
    assert {o: v["sector"] for o, v in gt["orgs"].items()} == {
        line.split(",")[0]: line.split(",")[2] for line in orgs[1:]}


def test_full_scale_figures_and_sources(full_sim):
    gt = json.loads((full_sim / "ground_truth.json").read_text())
    assert 200_000 <= gt["totals"]["lines"] <= 400_000
    iis = gt["campaigns"]["iis-webdav"]
    assert 0 < iis["baseline"] < 10 and iis["period"] >= 4000
    assert 500 <= iis["fold_change"] <= 1100
    q2 = iis["quarters"]["2018Q2"]
    assert q2["top_as_org"] == "Shenzhen Tencent Computer Systems Company Limited"
    assert q2["top_country"] == "CN" and q2["hosting_share"] > 0.8
    gpon = gt["campaigns"]["gpon"]
    assert gpon["peak_day"] == "2018-05-12" and gpon["days_exploit_to_onset"] == 1
    assert gt["campaigns"]["drupalgeddon2"]["onset"] > "2018-04-12"


def test_formats(sim):
    changed = 0
    for p in _files(sim):
        with _open(p) as f:
            lines = f.read().splitlines()
        if "u_ex" in p.name:
            assert lines[0].startswith("#Software: ") and lines[3].startswith("#Fields: ")
            fields, seen = None, set()
            for line in lines:
                if line.startswith("#Fields: "):
                    fields = line[9:].split(" ")
                    seen.add(line)
                elif not line.startswith("#"):
                    assert len(line.split(" ")) == len(fields), (p, line)
            changed += len(seen) > 1
        elif ".jsonl" in p.name:
            for line in lines:
                r = json.loads(line)
                assert {"ts", "src_ip", "method", "uri", "version", "headers", "body", "status",
                        "org_id"} <= set(r)
        else:
            assert all(COMBINED.match(x) for x in lines), p
    assert changed >= 1  # a #Fields change inside one file
    assert any(p.suffix == ".gz" for p in _files(sim))


def test_rules_fire_on_attacks_and_not_on_benign(rows):
    detect = pytest.importorskip("threatscope.detect")
    rs = detect.load_rules()
    campaign = {r.id: r.campaign for r in rs.rules}
    want_campaigns = {campaign_of(r) for r in rows} - {None}
    assert want_campaigns <= set(campaign.values())
    cols = ["source_ip", "http_request_method", "url_original", "http_response_status_code",
            "user_agent_original", "http_request_headers", "http_request_body_content"]
    hits = detect.evaluate(rs, "http", [{k: r.get(k) for k in cols} for r in rows])
    missed, benign_hits = [], []
    for r, ids in zip(rows, hits, strict=True):
        c = campaign_of(r)
        fired = {campaign[i] for i in ids}
        if c is not None and c not in fired:
            missed.append((c, r["url_original"], r["file"]))
        is_noise = r["user_agent_original"] and any(
            s in r["user_agent_original"] for s in ("sqlmap", "Nikto", "masscan", "zgrab"))
        if c is None and not is_noise and fired - {None}:
            benign_hits.append((sorted(fired - {None}), r["url_original"]))
    assert missed == []
    assert benign_hits == []


def test_benign_requests_fire_no_rule_at_all():
    detect = pytest.importorskip("threatscope.detect")
    import random

    from threatscope.simulate import benign

    rng = random.Random(3)
    reqs = [benign.benign(rng, s, benign.BROWSERS[i % 8]) for i in range(3000)
            for s in [sorted(benign.SECTOR_PAGES)[i % len(benign.SECTOR_PAGES)]]]
    reqs += [benign.crawl(rng, "retail", ua) for ua, _ in benign.CRAWLERS]
    rows = [{"http_request_method": q.method, "url_original": q.uri,
             "user_agent_original": q.ua, "http_request_body_content": q.body or None,
             "http_request_referrer": q.referer} for q in reqs]
    hits = detect.evaluate(detect.load_rules(), "http", rows)
    assert [(r["url_original"], h) for r, h in zip(rows, hits, strict=True) if h] == []


@pytest.mark.parametrize("fmt", ["combined", "w3c"])
def test_bench_log(tmp_path, fmt):
    p = write_bench_log(tmp_path / f"b.{fmt}.log.gz", 20_000, fmt, seed=1)
    with gzip.open(p, "rt") as f:
        lines = f.read().splitlines()
    data = [x for x in lines if not x.startswith("#")]
    assert len(data) == 20_000
    if fmt == "combined":
        assert all(COMBINED.match(x) for x in data)
    else:
        assert lines[3].startswith("#Fields: ") and all(len(x.split(" ")) == 15 for x in data)
    again = write_bench_log(tmp_path / "again.gz", 20_000, fmt, seed=1)
    assert gzip.open(again).read() == gzip.open(p).read()
