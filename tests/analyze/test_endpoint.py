"""Endpoint figures: the share of each ATT&CK execution technique, per period and baseline."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest

from tests.analyze.conftest import WsBuilder
from threatscope import attack
from threatscope.analyze import analyze, change, check_consistency, parse_period
from threatscope.analyze.figures import figure_rows
from threatscope.detect import run_detect
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

Q2 = parse_period("2018Q2")
PERIOD_DAY, BASE_DAY = "2018-05-02 09:00:00", "2018-02-02 09:00:00"
NO_WEB = {"campaign": None, "product": None, "cves": [], "family": None}


def endpoint(build, ts: str, event: tuple[str, int], rule: str, techniques: list[str],
             kind: str = "process_creation") -> None:
    build.detect(ts, rule=rule, title=rule, event=event, kind=kind, techniques=techniques,
                 **NO_WEB)


def _workspace(build):
    """Endpoint detections whose technique events are listed in the comments."""
    build.orgs(("o1", "Org 1", "biotech", None))
    p, b = PERIOD_DAY, BASE_DAY
    endpoint(build, p, ("p", 1), "ps", ["T1059.001"])  # two rules, one event: PowerShell once
    endpoint(build, p, ("p", 1), "ps-old", ["T1086"])  # (T1086 was revoked by T1059.001)
    endpoint(build, p, ("p", 2), "ps", ["T1059.001"], kind="ps_script")
    endpoint(build, p, ("p", 3), "cmd", ["T1059.003"])  # the sub-technique counts, the parent
    endpoint(build, p, ("p", 3), "interp", ["T1059"])  # named by another rule does not
    endpoint(build, p, ("p", 4), "macro", ["T1204.002", "T1059.005"])  # both count
    endpoint(build, p, ("p", 5), "wmi", ["T1047"])
    endpoint(build, p, ("p", 6), "interp", ["T1059"])  # alone: the parent counts
    endpoint(build, p, ("p", 7), "rundll", ["T1085"])  # Rundll32: defense evasion, not execution
    endpoint(build, p, ("p", 8), "unknown", ["T9999"])
    endpoint(build, p, ("p", 9), "exploit", ["T1190"])
    build.detect(p, rule="web-cmdi", event=("w", 1), techniques=["T1059.004"])  # a web request
    endpoint(build, b, ("b", 1), "ps", ["T1059.001"])
    endpoint(build, b, ("b", 2), "ps-old", ["T1086"])
    endpoint(build, b, ("b", 3), "cmd", ["T1059.003"], kind="windows_event")
    endpoint(build, b, ("b", 4), "cmd", ["T1059.003"])
    # period: T1059.001 2, T1047 1, T1059 1, T1059.003 1, T1059.005 1, T1204.002 1
    # baseline: T1059.001 2, T1059.003 2
    return {"T1059.001": (2, 2), "T1047": (1, 0), "T1059": (1, 0), "T1059.003": (1, 2),
            "T1059.005": (1, 0), "T1204.002": (1, 0)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The workspace of ``_workspace`` (built once: each detection is a catalog write) and its
    technique counts."""
    build = WsBuilder(tmp_path_factory.mktemp("endpoint") / "ws")
    return build, _workspace(build)


def test_shares_of_execution_techniques_against_the_baseline(built):
    build, expected = built
    m = analyze(build.ws, Q2)
    ep = m["endpoint"]
    p_total = sum(p for p, _ in expected.values())
    b_total = sum(b for _, b in expected.values())
    assert ep["technique_events"] == change(p_total, b_total)
    assert ep["detected_events"] == change(6, 4)  # events p1..p6, b1..b4
    got = [(r["technique"], r["period"], r["baseline"]) for r in ep["execution_techniques"]]
    # by period count, then id
    assert got == [("T1059.001", 2, 2), ("T1047", 1, 0), ("T1059", 1, 0), ("T1059.003", 1, 2),
                   ("T1059.005", 1, 0), ("T1204.002", 1, 0)]
    for r in ep["execution_techniques"]:
        p, b = expected[r["technique"]]
        assert r["share"] == round(p / p_total, 4)
        assert r["baseline_share"] == round(b / b_total, 4)
        assert r["share_change_pp"] == round(100 * (p / p_total - b / b_total), 2)
        assert {k: r[k] for k in change(p, b)} == change(p, b)
    ps = ep["execution_techniques"][0]
    assert (ps["name"], ps["parent"]) == ("PowerShell", "Command and Scripting Interpreter")
    wmi = ep["execution_techniques"][1]
    assert (wmi["name"], wmi["parent"], wmi["flag"]) == (
        "Windows Management Instrumentation", None, "new")
    assert m["attack"]["techniques"]["T1059.005"]["name"] == "Visual Basic"
    assert m["attack"]["source"]["attack_version"]
    assert {"id": "endpoint-execution", "text": (
        f"On endpoints, PowerShell (T1059.001) was {round(100 * 2 / 7)}% of execution techniques "
        f"({round(100 * 2 / 4)}% in 2018Q1), Windows Management Instrumentation (T1047) "
        f"{round(100 / 7)}%.")} in m["key_findings"]
    assert m["consistency"] == {"ok": True, "problems": []}


def test_figures_are_recorded_and_their_rows_listed(built):
    build, _ = built
    m = analyze(build.ws, Q2)
    fig = next(f for f in m["figures"]
               if f["id"] == "endpoint.execution_techniques[technique=T1059.001]")
    assert (fig["value"], fig["baseline"]) == (2, 2)
    assert m["definitions"]["endpoint.execution_techniques"]["table"] == "det_exec"
    rows = figure_rows(build.ws, "endpoint.execution_techniques", Q2,
                       key={"technique": "T1059.001"})
    # the rule matches behind the two events: p1 by two rules (one with the old id), p2
    assert sorted((r["source_line"], r["rule_id"]) for r in rows) == [
        (1, "ps"), (1, "ps-old"), (2, "ps")]


def test_empty_baseline_has_no_shares_to_compare(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    endpoint(build, PERIOD_DAY, ("p", 1), "ps", ["T1059.001"])
    endpoint(build, PERIOD_DAY, ("p", 2), "ps", ["T1059.001"])
    endpoint(build, PERIOD_DAY, ("p", 3), "cmd", ["T1059.003"])
    endpoint(build, BASE_DAY, ("b", 1), "rundll", ["T1085"])  # no execution technique
    m = analyze(build.ws, Q2)
    ep = m["endpoint"]
    assert ep["technique_events"] == change(3, 0)
    assert [(r["technique"], r["share"], r["baseline_share"], r["share_change_pp"], r["flag"])
            for r in ep["execution_techniques"]] == [
        ("T1059.001", round(2 / 3, 4), None, None, "new"),
        ("T1059.003", round(1 / 3, 4), None, None, "new")]
    assert {"id": "endpoint-execution", "text": (
        f"On endpoints, PowerShell (T1059.001) was {round(200 / 3)}% of execution techniques, "
        f"Windows Command Shell (T1059.003) {round(100 / 3)}%; none were detected in 2018Q1.")} in (
        m["key_findings"])
    assert m["consistency"] == {"ok": True, "problems": []}


def test_only_in_the_baseline_and_no_endpoint_detections(build):
    build.orgs(("o1", "Org 1", "biotech", None))
    endpoint(build, BASE_DAY, ("b", 1), "ps", ["T1059.001"])
    build.detect(PERIOD_DAY, techniques=["T1059.004"])  # web only in the period
    m = analyze(build.ws, Q2)
    ep = m["endpoint"]
    assert [(r["technique"], r["period"], r["share"], r["baseline_share"], r["flag"])
            for r in ep["execution_techniques"]] == [("T1059.001", 0, None, 1.0, "gone")]
    assert not any(f["id"] == "endpoint-execution" for f in m["key_findings"])
    assert m["consistency"]["ok"], m["consistency"]["problems"]

    web = analyze(build.ws, parse_period("2018Q3"))  # nothing at all: every figure is zero
    assert web["endpoint"] == {"execution_techniques": [], "technique_events": change(0, 0),
                               "detected_events": change(0, 0), "powershell": {
                                   "events": change(0, 0), "obfuscated": change(0, 0),
                                   "obfuscated_share": None, "baseline_obfuscated_share": None,
                                   "share_change_pp": None, "families": []}}
    assert web["consistency"]["ok"], web["consistency"]["problems"]


def test_consistency_catches_broken_endpoint_figures(built):
    good = analyze(built[0].ws, Q2)

    def broken(edit):
        m = copy.deepcopy(good)
        edit(m["endpoint"])
        return check_consistency(m)

    def share(ep):
        ep["execution_techniques"][0]["share"] = 0.5
    assert any("shares sum" in p for p in broken(share))

    def count(ep):
        ep["execution_techniques"][1].update(change(2, 0))
    assert any("period counts sum to 8" in p for p in broken(count))

    def pp(ep):
        ep["execution_techniques"][0]["share_change_pp"] = 0.0
    assert any("share_change_pp" in p for p in broken(pp))

    def events(ep):
        ep["detected_events"] = change(9, 4)
    assert any("detected events (9)" in p for p in broken(events))

    def order(ep):
        ep["execution_techniques"].reverse()
    assert any("not sorted" in p for p in broken(order))


DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SAMPLES = DATA / "evtx" / "EVTX-ATTACK-SAMPLES" / "Execution"
RULES = DATA / "sigma" / "rules" / "windows" / "process_creation"
SIGMA_RULES = ["proc_creation_win_hh_html_help_susp_child_process.yml",  # T1047, T1059.00x
               "proc_creation_win_powershell_base64_iex.yml",  # these two fire on one event
               "proc_creation_win_powershell_frombase64string.yml",
               "proc_creation_win_wmic_squiblytwo_bypass.yml",
               "proc_creation_win_susp_shell_spawn_susp_program.yml"]
EVTX = ["Sysmon_Exec_CompiledHTML.evtx", "susp_explorer_exec.evtx",
        "exec_wmic_xsl_internet_sysmon_3_1_11.evtx",
        "exec_persist_rundll32_mshta_scheduledtask_sysmon_1_3_11.evtx"]


@pytest.mark.skipif(not all((SAMPLES / f).is_file() for f in EVTX)
                    or not all((RULES / f).is_file() for f in SIGMA_RULES),
                    reason="no ../shared/data/evtx or sigma")
def test_sigmahq_rules_over_evtx_samples_agree_with_a_reference_count(tmp_path):
    """Real detections (SigmaHQ rules over EVTX-ATTACK-SAMPLES) counted again in Python from
    the detection rows: per event, the execution techniques its rules named, parents dropped
    where a sub-technique of theirs was named."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    assert not ingest_paths(ws, [str(SAMPLES / f) for f in EVTX], org="lab").errors
    run_detect(ws, [RULES / f for f in SIGMA_RULES])
    with ws.connect() as con:
        rows = con.execute("SELECT file_id, source_line, attack_techniques, CAST(ts AS DATE) "
                           "FROM detection").fetchall()
    per_event: dict[tuple, set[str]] = {}
    for file_id, line, tags, _ in rows:
        ids = {t["id"] for t in map(attack.technique, tags) if "execution" in t["tactics"]}
        per_event.setdefault((file_id, line), set()).update(ids)
    expected = Counter(t for ids in per_event.values() for t in ids
                       if not any(o.startswith(t + ".") for o in ids))
    assert expected["T1059.001"] and len(expected) >= 4

    days = sorted(r[3] for r in rows)
    m = analyze(ws, parse_period(f"{days[0]}..{days[-1]}"))
    got = {r["technique"]: r["period"] for r in m["endpoint"]["execution_techniques"]}
    assert got == dict(expected)
    assert m["endpoint"]["detected_events"]["period"] == sum(1 for ids in per_event.values() if ids)
    assert m["consistency"] == {"ok": True, "problems": []}


def _powershell_rows(ws: Workspace, rows: list[tuple[str, int, bool]]) -> None:
    """The PowerShell analyzer's table (detect/powershell.py): (file_id, line, obfuscated) of
    org o1 (the figures join it to the detections by event)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from threatscope import schema

    given = {"org_id": ["o1"] * len(rows), "file_id": [r[0] for r in rows],
             "source_line": [r[1] for r in rows], "obfuscated": [r[2] for r in rows],
             "score": [0.99 if r[2] else 0.01 for r in rows]}
    types = pa.schema([(n, schema.ARROW_TYPES[t]) for n, t in schema.POWERSHELL_ANALYSIS])
    pq.write_table(pa.table({f.name: given.get(f.name, [None] * len(rows)) for f in types},
                            schema=types), ws.powershell_path)


def test_obfuscated_share_of_powershell(tmp_path):
    build = WsBuilder(tmp_path / "ws")
    build.orgs(("o1", "Org 1", "biotech", None))
    p, b = PERIOD_DAY, BASE_DAY
    for i in range(1, 5):  # 4 PowerShell events in the period, 3 of them obfuscated
        endpoint(build, p, ("p", i), "ps", ["T1059.001"])
    endpoint(build, p, ("p", 5), "ps-old", ["T1086"])  # PowerShell too: not analysed
    endpoint(build, p, ("p", 6), "cmd", ["T1059.003"])  # obfuscated, but not PowerShell
    endpoint(build, b, ("b", 1), "ps", ["T1059.001"])  # baseline: 1 of 2
    endpoint(build, b, ("b", 2), "ps", ["T1059.001"])
    _powershell_rows(build.ws, [("p", 1, True), ("p", 2, True), ("p", 3, True), ("p", 4, False),
                                ("p", 6, True), ("b", 1, True), ("b", 2, False), ("x", 9, True)])
    m = analyze(build.ws, Q2)
    ps = m["endpoint"]["powershell"]
    assert ps["events"] == change(5, 2) and ps["obfuscated"] == change(3, 1)
    assert ps["obfuscated_share"] == 0.6 and ps["baseline_obfuscated_share"] == 0.5
    assert ps["share_change_pp"] == 10.0
    assert check_consistency(m) == []
    ids = {f["id"] for f in m["figures"]}
    assert {"endpoint.powershell_events", "endpoint.powershell_obfuscated"} <= ids
    broken = copy.deepcopy(m)
    broken["endpoint"]["powershell"]["obfuscated_share"] = 0.7
    assert any("obfuscated_share" in p for p in check_consistency(broken))
