"""End to end through the console script: simulate -> run -> report.json equals the ground truth."""

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from threatscope.simulate import simulate

BIN = str(Path(sys.executable).parent / "threatscope")


def ts(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"threatscope {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = simulate(root / "data", seed=11, scale=0.3)
    ws, out = root / "ws", root / "out"
    ts("run", "-w", str(ws), "--orgs", str(data / "orgs.csv"), str(data), "-o", str(out))
    truth = json.loads((data / "ground_truth.json").read_text())
    report = json.loads((out / "report.json").read_text())
    return root, data, ws, out, truth, report


def test_report_files(pipeline):
    _, _, _, out, _, report = pipeline
    for name in ("report.html", "report.md", "report.json"):
        assert (out / name).stat().st_size > 1000
    assert report["consistency"]["ok"], report["consistency"]["problems"]


def test_every_line_accounted_for(pipeline):
    _, data, _, _, truth, report = pipeline
    inputs = report["inputs"]
    # the intel files (Shodan banners, IOC lists) are inputs too: a row a record, '#' comments
    intel = truth["intel"]["files"]
    lines = {p: (gzip.open if p.endswith(".gz") else open)(data / p, "rt").read().splitlines()
             for p in intel}
    comments = sum(x.startswith("#") for ls in lines.values() for x in ls)
    assert sum(len(ls) for ls in lines.values()) == sum(intel.values()) + comments
    assert inputs["files"] == truth["totals"]["files"] + len(intel)
    assert inputs["lines_read"] == truth["totals"]["lines"] + sum(map(len, lines.values()))
    # web requests and Windows events (the derived category rows are not counted again)
    assert inputs["rows_written"] == (truth["totals"]["requests"] + truth["totals"]["windows_events"]
                                      + truth["totals"]["documents"] + sum(intel.values()))
    assert inputs["rows_quarantined"] == 0
    assert inputs["comment_lines"] == truth["totals"]["header_lines"] + comments


def test_periods(pipeline):
    _, _, _, _, truth, report = pipeline
    assert report["period"]["label"] == truth["period"]
    assert report["baseline"]["label"] == truth["baseline"]


def test_campaign_figures_equal_ground_truth(pipeline):
    _, _, _, _, truth, report = pipeline
    got = {c["campaign"]: c for c in report["campaigns"]}
    period = truth["period"]
    assert set(truth["campaigns"]) <= set(got)
    for key, t in truth["campaigns"].items():
        c, q = got[key], t["quarters"][period]
        assert (c["baseline"], c["period"]) == (t["baseline"], t["period"]), key
        if t["baseline"]:
            assert c["fold_change"] == pytest.approx(t["period"] / t["baseline"], rel=1e-3), key
        else:
            assert c["fold_change"] is None and c["flag"] == "new", key
        assert c["onset"] == q["first_day"], key
        assert c["peak_day"] == q["peak_day"], key
        assert c["peak_count"] == q["peak_count"], key
        assert c["source_ips"] == q["source_ips"], key
        assert c["top_as_orgs"][0]["as_org"] == q["top_as_org"], key


def test_exposure_equals_ground_truth(pipeline):
    _, _, _, out, truth, report = pipeline
    e, want = report["exposure"], truth["exposure"]
    for window, quarter in (("period", truth["period"]), ("baseline", truth["baseline"])):
        # every exploit attempt is a campaign request: attempts, 2xx and large answers add up
        assert e["attempts"][window] == sum(c[window] for c in truth["campaigns"].values())
        for k in ("successes", "unusual_size"):
            assert e[k][window] == sum(c[quarter][k] for c in want.values()), (window, k)
    assert e["unusual_size"]["period"] > 0 and e["successes"]["period"] > 0
    for key, t in want.items():
        rows = [r for r in e["rows"] if r["threat"] == key]
        assert sum(r["successes"] for r in rows) == t[truth["period"]]["successes"], key
        assert sum(r["unusual_size"] for r in rows) == t[truth["period"]]["unusual_size"], key
        assert all(r["advice"] for r in rows), key
    # large answers are simulated on combined logs only: the server is the log's name there
    assert {r["server"] for r in e["rows"] if r["unusual_size"]} <= {
        "edge01-access.log", "edge02-access.log", "www-access.log", "web-access.log"}
    recs = [r for r in report["recommendations"] if r["id"].startswith("patch-exposed:")]
    assert {r["id"].split(":", 1)[1] for r in recs} == {r["threat"] for r in e["rows"]}
    assert "## Exposure" in (out / "report.md").read_text()


def test_headline_surge_and_attribution(pipeline):
    _, _, _, _, truth, report = pipeline
    iis = next(c for c in report["campaigns"] if c["campaign"] == "iis-webdav")
    t = truth["campaigns"]["iis-webdav"]
    assert iis["fold_change"] == pytest.approx(t["fold_change"], rel=1e-3)
    # mostly Tencent and Alibaba hosting ranges
    top2 = {o["as_org"] for o in iis["top_as_orgs"][:2]}
    assert any("Tencent" in o for o in top2) and any("Alibaba" in o for o in top2)
    gpon = next(c for c in report["campaigns"] if c["campaign"] == "gpon")
    assert gpon["public_exploit_date"] == "2018-04-30"
    assert gpon["days_exploit_to_onset"] == 1
    assert gpon["peak_day"] == "2018-05-12"


def test_endpoint_families_equal_ground_truth(pipeline):
    """The Malware section: each family's detected events per window are the simulated events
    whose (recovered) content shows it; ranks follow from those counts."""
    _, _, _, _, truth, report = pipeline
    quarters = truth["endpoint"]["quarters"]
    for window in ("period", "baseline"):
        want = {f: n["expected_detected"] for f, n in quarters[truth[window]]["families"].items()
                if n["expected_detected"]}
        assert {f["family"]: f[window] for f in report["malware"] if f[window]} == want, window
    emotet = next(f for f in report["malware"] if f["family"] == "emotet")
    assert emotet["period"] > emotet["baseline"] and emotet["rank"] is not None
    assert not [f for f in report["families"] if f["family"] == "emotet"]


def test_powershell_families_equal_ground_truth(pipeline):
    """The Endpoint section's PowerShell families: PowerShell events (T1059.001) per family and
    window, ranked, as the simulation made them (an encoded Emotet downloader, a cradle, a
    compressed shellcode runner...)."""
    _, _, _, _, truth, report = pipeline
    rows = report["endpoint"]["powershell"]["families"]
    assert {"emotet", "downloader", "shellcode-injector"} <= {r["family"] for r in rows}
    for window in ("period", "baseline"):
        want: dict[str, int] = {}
        for e in truth["endpoint"]["events"]:
            if e["quarter"] == truth[window] and e["family"] and not e["evades"] \
                    and "T1059.001" in e["techniques"]:
                want[e["family"]] = want.get(e["family"], 0) + 1
        assert {r["family"]: r[window] for r in rows if r[window]} == want, window
    ranks = [r["rank"] for r in rows if r["rank"] is not None]
    assert ranks == sorted(ranks) and ranks[0] == 1


def test_endpoint_technique_shares_equal_ground_truth(pipeline):
    """The Endpoint section: each execution technique's events and share, period and baseline,
    are those the simulation made (macro documents and Windows events)."""
    _, _, _, _, truth, report = pipeline
    quarters = truth["endpoint"]["quarters"]
    rows = report["endpoint"]["execution_techniques"]
    assert rows
    for window, share in (("period", "share"), ("baseline", "baseline_share")):
        q = quarters[truth[window]]
        expected = {t: n["expected_detected"] for t, n in q["techniques"].items()
                    if t in truth["endpoint"]["execution_techniques"] and n["expected_detected"]}
        assert {r["technique"]: r[window] for r in rows if r[window]} == expected, window
        assert {r["technique"]: r[share] for r in rows if r[window]} == q["execution_shares"]
    powershell = next(r for r in rows if r["technique"] == "T1059.001")
    assert powershell["name"] == "PowerShell" and powershell["share_change_pp"] > 0


def test_obfuscated_share_of_powershell_equals_ground_truth(pipeline):
    """The PowerShell events (T1059.001) and the obfuscated ones among them (the simulation
    obfuscated them: T1027, an encoded command, a compressed stager...) per window, as the
    PowerShell analyzer and the rules find them."""
    _, _, _, _, truth, report = pipeline
    ps = report["endpoint"]["powershell"]
    for window in ("period", "baseline"):
        events = [e for e in truth["endpoint"]["events"] if e["quarter"] == truth[window]
                  and "T1059.001" in set(e["techniques"]) - set(e["evades"])]
        obfuscated = [e for e in events if "T1027" in e["techniques"]]
        assert (ps["events"][window], ps["obfuscated"][window]) == (len(events), len(obfuscated))
        assert obfuscated, window
    assert ps["obfuscated_share"] > ps["baseline_obfuscated_share"]


def test_sectors_cover_every_registered_org(pipeline):
    _, _, _, _, truth, report = pipeline
    sectors = {s["sector"]: s for s in report["sectors"]}
    expected: dict[str, int] = {}
    for org in truth["orgs"].values():
        expected[org["sector"]] = expected.get(org["sector"], 0) + 1
    assert {k: v["orgs"] for k, v in sectors.items()} == expected


def test_rerun_adds_nothing(pipeline):
    _, data, ws, out, _, report = pipeline
    r = ts("ingest", "-w", str(ws), "--json", str(data))
    summary = json.loads(r.stdout)
    assert summary["rows_written"] == 0
    assert summary["skipped_files"] == report["inputs"]["files"]


def test_export_detections(pipeline):
    root, _, ws, _, truth, _ = pipeline
    out = root / "detections.jsonl"
    ts("export", "detections", "-w", str(ws), "--format", "jsonl", "-o", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(rows[0]) == {
        "org_id", "ts", "src_ip", "source_file", "source_line", "rule_id", "title", "severity",
        "cves", "attack_techniques", "product", "campaign",
    }
    gpon = {(r["source_file"], r["source_line"]) for r in rows if r["campaign"] == "gpon"}
    t = truth["campaigns"]["gpon"]
    assert len(gpon) == t["baseline"] + t["period"]
    csv_out = root / "detections.csv"
    ts("export", "detections", "-w", str(ws), "--format", "csv", "-o", str(csv_out))
    assert len(csv_out.read_text().splitlines()) == len(rows) + 1


def test_export_to_stdout_and_parquet(pipeline):
    import pyarrow.parquet as pq

    root, _, ws, _, _, _ = pipeline
    jsonl = ts("export", "detections", "-w", str(ws)).stdout.splitlines()
    csv_rows = ts("export", "detections", "-w", str(ws), "--format", "csv").stdout.splitlines()
    assert len(jsonl) > 100 and len(csv_rows) == len(jsonl) + 1
    assert csv_rows[0].startswith("org_id,ts,src_ip,source_file,source_line,rule_id")
    out = root / "detections.parquet"
    ts("export", "detections", "-w", str(ws), "--format", "parquet", "-o", str(out))
    assert pq.read_table(out).num_rows == len(jsonl)


def test_attacker_infrastructure_equals_ground_truth(pipeline):
    """The simulator's Shodan records: the profile of each quarter's attacking addresses (the
    snapshot nearest each one's first attack there) equals what was written."""
    _, _, _, _, truth, report = pipeline
    intel, inf = truth["intel"], report["infrastructure"]
    for quarter, key in ((truth["period"], "period"), (truth["baseline"], "baseline")):
        q = intel["quarters"][quarter]
        assert inf["source_ips"][key] == q["attacking_ips"]
        assert inf["with_host_record"][key] == q["with_host_record"]
        assert {r["os_family"]: r[key] for r in inf["os_families"] if r[key]} == q["os_family"]
        assert {r["service_class"]: r[key] for r in inf["service_classes"] if r[key]} \
            == q["service_class"]
    top = {r["product"]: r["period"] for r in inf["products"]}
    want = intel["quarters"][truth["period"]]["product"]
    assert all(top[p] == want[p] for p in top), (top, want)
    assert sum(r["period"] for r in inf["os_families"] if r["os_family"].startswith("Windows")) \
        == intel["quarters"][truth["period"]]["windows"]


def test_sources_classified_and_listed_as_written(pipeline):
    _, _, ws, _, truth, _ = pipeline
    intel = truth["intel"]
    rows = json.loads("[" + ",".join(ts("export", "sources", "-w", str(ws)).stdout.splitlines())
                      + "]")
    by_ip = {r["ip"]: r for r in rows}
    scanners = {r["ip"] for r in rows if r["classification"] == "research-scanner"}
    assert scanners == set(intel["all"]["research_scanners"])
    listed = {ip: r["malware_families"] for ip, r in by_ip.items() if r["ioc_matches"]}
    assert listed == {ip: [fam.lower()] for ip, fam in intel["all"]["ioc_listed"].items()}
    assert all(by_ip[ip]["ioc_matches"] == [f"feodotracker:{ip}"] for ip in listed)


def test_every_number_of_the_simulated_report_comes_from_report_json(pipeline):
    from tests.report.test_numbers import stray_numbers

    _, _, _, out, _, report = pipeline
    assert not stray_numbers(report, (out / "report.html").read_text(encoding="utf-8"),
                             (out / "report.md").read_text(encoding="utf-8"))


def test_the_docs_name_every_key_of_report_json(pipeline):
    """docs/architecture.md's report.json section names each key the analysis writes (two
    levels down, and the keys of list rows): the documented schema cannot fall behind."""
    _, _, _, _, _, report = pipeline
    docs = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    block = docs[docs.index("## report.json"):]
    block = block[:block.index("\n```\n", block.index("```") + 3)]

    def keys(doc: object, depth: int) -> set[str]:
        if depth == 0:
            return set()
        if isinstance(doc, list):
            return set().union(*(keys(r, depth) for r in doc[:3]))
        if not isinstance(doc, dict):
            return set()
        return set(doc).union(*(keys(v, depth - 1) for v in doc.values()))

    named = set(re.findall(r'"([a-z_0-9]+)"', block))
    maps = set(report["attack"]["techniques"]) | set(report["definitions"])  # keys that are data
    missing = keys({k: v for k, v in report.items() if k not in ("attack", "definitions")}, 3)
    assert not (missing - named - maps), sorted(missing - named - maps)


def test_org_report_counts_that_organisation_only(pipeline):
    """`report --org`: the organisation's figures are its own rows of the detection table."""
    from threatscope.workspace import Workspace

    root, data, ws, _, _, whole = pipeline
    out = root / "org03"
    ts("report", "-w", str(ws), "--period", whole["period"]["label"], "--org", "org03",
       "-o", str(out))
    org = json.loads((out / "report.json").read_text())
    assert org["scope"]["kind"] == "org" and org["scope"]["org_id"] == "org03"
    p = org["period"]
    mine = ("FROM detection WHERE org_id = 'org03' AND CAST(ts AS DATE) BETWEEN ? AND ?")
    with Workspace.open(ws).connect(read_only=True) as con:
        rows = con.execute(f"SELECT campaign, count(DISTINCT (file_id, source_line)) {mine} "
                           "GROUP BY ALL", [p["start"], p["end"]]).fetchall()
        total = con.execute(f"SELECT count(DISTINCT (file_id, source_line)) {mine}",
                            [p["start"], p["end"]]).fetchall()[0][0]
    by_campaign = {c: n for c, n in rows if c is not None}
    assert org["totals"]["detected_events"]["period"] == total > 0
    assert {c["campaign"]: c["period"] for c in org["campaigns"]} == by_campaign
    assert org["totals"]["detected_events"]["period"] < whole["totals"]["detected_events"]["period"]
    from tests.report.test_numbers import stray_numbers  # and its pages show only its figures

    assert not stray_numbers(org, (out / "report.html").read_text(encoding="utf-8"),
                             (out / "report.md").read_text(encoding="utf-8"))
    assert org["consistency"]["ok"], org["consistency"]["problems"]
