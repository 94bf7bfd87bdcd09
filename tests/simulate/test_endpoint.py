"""Simulated endpoint telemetry: files and truth agree, the events ingest cleanly, and the
built-in rules find exactly the attack events the truth lists, technique by technique."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from threatscope.detect import run_detect
from threatscope.ingest import ingest_paths
from threatscope.simulate import simulate
from threatscope.simulate.endpoint import write_endpoints
from threatscope.simulate.world import QUARTERS
from threatscope.workspace import Workspace


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[Path, dict]:
    """The endpoint part of a small simulation (``simulate`` writes the same beside the web
    logs, test_simulate checks that), alone: ingesting the web logs too would only cost time."""
    root = tmp_path_factory.mktemp("ep") / "data"
    return root, write_endpoints(root, random.Random(11), 0.05, QUARTERS)


def test_simulate_writes_it_into_the_ground_truth(tmp_path):
    root = simulate(tmp_path / "data", seed=2, scale=0.01)
    truth = json.loads((root / "ground_truth.json").read_text())
    ep = truth["endpoint"]
    assert ep["files"] and all((root / rel).is_file() for rel in ep["files"])
    assert truth["totals"]["windows_events"] == ep["totals"]["events"]
    docs = [e["file"] for e in ep["events"] if e["step"] == "macro document"]
    assert docs and all((root / rel).is_file() for rel in docs)
    assert truth["totals"]["documents"] == ep["totals"]["documents"] == len(docs)
    assert truth["totals"]["files"] == len(truth["files"]) + len(ep["files"]) + len(docs)
    assert truth["totals"]["lines"] == sum(f["lines"] for f in truth["files"].values()) + sum(
        f["lines"] for f in ep["files"].values()) + len(docs)


def records(path: Path) -> list[dict]:
    """Every event of a file as (computer, channel, event_id, record_id, data), whichever the
    shape (evtx_dump or Winlogbeat), read with plain json."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        r = json.loads(line)
        if "Event" in r:
            s = r["Event"]["System"]
            out.append({"computer": s["Computer"], "channel": s["Channel"],
                        "event_id": s["EventID"], "record_id": s["EventRecordID"],
                        "data": r["Event"]["EventData"]})
        else:
            w = r["winlog"]
            out.append({"computer": w["computer_name"], "channel": w["channel"],
                        "event_id": w["event_id"], "record_id": w["record_id"],
                        "data": w["event_data"]})
    return out


def test_same_seed_same_bytes(tmp_path):
    a = write_endpoints(tmp_path / "a", random.Random(3), 0.03, QUARTERS)
    b = write_endpoints(tmp_path / "b", random.Random(3), 0.03, QUARTERS)
    c = write_endpoints(tmp_path / "c", random.Random(4), 0.03, QUARTERS)
    assert c["events"] != a["events"]
    assert a == b and a["files"] and a["events"]
    docs = [e["file"] for e in a["events"] if e["step"] == "macro document"]
    assert docs
    for rel in [*a["files"], *docs]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert any((tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()
               for rel in a["files"])


def test_files_match_truth(sim):
    root, truth = sim
    recs = {rel: records(root / rel) for rel in truth["files"]}
    assert {f["format"] for f in truth["files"].values()} == {"winlogbeat", "evtx_dump"}
    assert any(rel.endswith(".gz") for rel in recs)
    for rel, info in truth["files"].items():
        assert len(recs[rel]) == info["lines"] == info["events"], rel
    assert sum(len(r) for r in recs.values()) == truth["totals"]["events"]
    ids = Counter(r["event_id"] for rs in recs.values() for r in rs)
    assert all(ids[i] for i in (1, 3, 11, 4104, 4624, 4688)), ids
    # every listed attack event is where the truth says: a Windows event at its line, a macro
    # document in its file, dated when its Office process opened it
    windows = [e for e in truth["events"] if e["event_id"] is not None]
    for e in windows:
        r = recs[e["file"]][e["line"] - 1]
        assert (r["computer"].split(".")[0], r["channel"], r["event_id"], r["record_id"]) == (
            e["host"], e["channel"], e["event_id"], e["record_id"]), e
    assert truth["totals"]["attack_events"] == len(windows) > 0
    opened = {d["chain"]: d["opened"] for d in truth["documents"]}
    for e in truth["events"]:
        if e["step"] == "macro document":
            assert (root / e["file"]).stat().st_mtime == opened[e["chain"]] / 1000
            assert {"T1204.002", "T1059.005"} <= set(e["techniques"])
    assert {e["chain"] for e in truth["events"]} == {c["id"] for c in truth["chains"]}
    # record ids count up per host and channel, across the quarters' files
    last: dict[tuple, int] = {}
    for rel in sorted(recs, key=lambda r: (r.split("/")[0], r)):
        for r in recs[rel]:
            key = (r["computer"], r["channel"])
            assert r["record_id"] > last.get(key, -1), (rel, key)
            last[key] = r["record_id"]


def test_process_chains_are_consistent(sim):
    """A child names its parent's image, command line and process id (Sysmon), or its
    parent's image and process id (Security 4688, ids in hex)."""
    root, truth = sim
    seen: dict[str, dict] = {}
    by_pid: dict[tuple[str, str], str] = {}
    checked = 0
    for rel in sorted(truth["files"]):
        for r in records(root / rel):
            d = r["data"]
            if r["event_id"] == 1:
                parent = seen.get(d["ParentProcessGuid"])
                if parent is not None:
                    assert (d["ParentImage"], d["ParentCommandLine"], str(d["ParentProcessId"])) \
                        == (parent["Image"], parent["CommandLine"], str(parent["ProcessId"]))
                    checked += 1
                seen[d["ProcessGuid"]] = d
            elif r["event_id"] == 4688:
                parent = by_pid.get((r["computer"], d["ProcessId"]))
                if parent is not None:
                    assert d["ParentProcessName"] == parent
                    checked += 1
                by_pid[(r["computer"], d["NewProcessId"])] = d["NewProcessName"]
    assert checked > 100


def test_long_script_blocks_are_split_and_hooks_name_documents(sim):
    root, truth = sim
    parts = defaultdict(list)
    office = []
    for rel in truth["files"]:
        for r in records(root / rel):
            d = r["data"]
            if r["event_id"] == 4104:
                parts[d["ScriptBlockId"]].append((int(d["MessageNumber"]), int(d["MessageTotal"])))
            elif r["event_id"] in (1, 4688):
                office.append(d["CommandLine"])
    split = [p for p in parts.values() if p[0][1] > 1]
    assert split and all(sorted(p) == [(i + 1, len(p)) for i in range(len(p))] for p in split)
    # the macro documents the chains open: their paths are in the Office processes' command lines
    assert truth["documents"]
    for doc in truth["documents"]:
        assert doc["path"].endswith("\\" + doc["name"]) and doc["runs"]
        assert any(f'"{doc["path"]}"' in c and doc["application"] in c for c in office), doc


@pytest.fixture(scope="module")
def detected(sim, tmp_path_factory):
    root, truth = sim
    ws = Workspace.open(tmp_path_factory.mktemp("ws") / "ws", create=True)
    summary = ingest_paths(ws, [str(root)])
    run_detect(ws)
    with ws.connect() as con:
        windows_rows = con.execute("SELECT count(*) FROM windows_event").fetchall()[0][0]
        rows = con.execute("""
            SELECT source_file, source_line, org_id, CAST(ts AS DATE) < DATE '2018-04-01',
                   list(DISTINCT t) FILTER (WHERE t IS NOT NULL),
                   list(DISTINCT malware_family) FILTER (WHERE malware_family IS NOT NULL)
            FROM (SELECT *, unnest(CASE WHEN len(attack_techniques) = 0 THEN [NULL]
                                        ELSE attack_techniques END) AS t
                  FROM detection WHERE event_kind IN ('process_creation', 'ps_script',
                                                      'windows_event', 'document')
                                   AND detector = 'sigma')
            GROUP BY ALL""").fetchall()
    found = {}
    for file, line, org, q1, techniques, families in rows:
        rel = Path(file).resolve().relative_to(root.resolve()).as_posix()
        found[(rel, line)] = {"org": org, "quarter": "2018Q1" if q1 else "2018Q2",
                              "techniques": set(techniques or []), "families": set(families or [])}
    return summary, windows_rows, found


def test_endpoint_events_ingest_without_quarantine(sim, detected):
    _, truth = sim
    summary, windows_rows, _ = detected
    assert summary.rows_quarantined == 0 and not summary.errors
    assert windows_rows == truth["totals"]["events"]
    ep = [f for f in summary.per_file if "/endpoint/" in f["path"].replace("\\", "/")]
    assert len(ep) == truth["totals"]["files"]
    assert all(f["format"] == "winevent-json" for f in ep)


def test_detections_equal_truth_per_technique_and_quarter(sim, detected):
    _, truth = sim
    _, _, found = detected
    listed = {(e["file"], e["line"]): e for e in truth["events"]}
    # no benign event is detected
    assert [k for k in found if k not in listed] == []
    # each event is flagged with exactly the techniques it shows, less the deliberately hard
    wrong = {k: (sorted(v["techniques"]), e["techniques"], e["evades"])
             for k, e in listed.items()
             for v in [found.get(k, {"techniques": set()})]
             if v["techniques"] != set(e["techniques"]) - set(e["evades"])}
    assert wrong == {}
    # the counts the truth gives per quarter, technique and organisation
    for q, tq in truth["quarters"].items():
        got = Counter(t for v in found.values() if v["quarter"] == q for t in v["techniques"])
        assert dict(got) == {t: n["expected_detected"] for t, n in tq["techniques"].items()
                             if n["expected_detected"]}, q
        per_org = defaultdict(Counter)
        for v in found.values():
            if v["quarter"] == q:
                per_org[v["org"]].update(v["techniques"])
        assert {o: dict(c) for o, c in per_org.items()} == tq["orgs"], q
        execution = {t: got[t] for t in truth["execution_techniques"] if got[t]}
        assert {t: round(n / sum(execution.values()), 4) for t, n in execution.items()} == \
            tq["execution_shares"], q
    # the deliberately hard events are in the truth, and missed
    hard = [e for e in truth["events"] if e["evades"]]
    assert hard and all(not set(e["evades"]) & found.get((e["file"], e["line"]), {
        "techniques": set()})["techniques"] for e in hard)


def test_each_family_is_recognised_on_every_event_that_shows_it(sim, detected):
    _, truth = sim
    _, _, found = detected
    listed = {(e["file"], e["line"]): e for e in truth["events"]}
    for q, tq in truth["quarters"].items():
        assert {"emotet", "downloader"} <= set(tq["families"]), q
        for family, want in tq["families"].items():
            hits = [k for k, v in found.items() if family in v["families"] and v["quarter"] == q]
            assert len(hits) == want["expected_detected"], (q, family)
            assert all(listed[k]["family"] == family for k in hits), (q, family)
            hosts = sorted({f"{listed[k]['org_id']}/{listed[k]['host']}" for k in hits})
            assert set(hosts) <= set(want["hosts"]), (q, family)
    # each Emotet infection is one chain on its own host
    em = [tq["families"]["emotet"] for tq in truth["quarters"].values()]
    assert all(len(f["hosts"]) == f["infections"] for f in em)
    assert sum(f["infections"] for f in em) >= 2


def test_period_quarter_has_more_powershell(tmp_path):
    truth = write_endpoints(tmp_path, random.Random(7), 0.5, QUARTERS)
    base, period = truth["quarters"]["2018Q1"], truth["quarters"]["2018Q2"]
    assert period["attack_events"] > base["attack_events"]
    assert period["execution_shares"]["T1059.001"] > base["execution_shares"]["T1059.001"] + 0.05
    assert period["families"]["emotet"]["infections"] > base["families"]["emotet"]["infections"]
    hosts = [h for q in (base, period) for h in q["families"]["emotet"]["hosts"]]
    assert len(hosts) == len(set(hosts))  # one infection per host
