"""Sigma correlation rules (event_count, value_count, value_*, temporal, temporal_ordered) run
by the detect stage over a real workspace, with events that must fire and events that must not.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from threatscope.detect import check_rules, load_rules, run_detect
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

T0 = datetime(2018, 5, 12, 10, 0, 0)
SYSMON = "Microsoft-Windows-Sysmon/Operational"


def _event(channel: str, event_id: int, minute: float, data: dict) -> dict:
    ts = (T0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Event": {"System": {
        "Provider": {"#attributes": {"Name": "P"}}, "EventID": event_id, "Channel": channel,
        "Computer": data.pop("_host", "WS01"), "TimeCreated": {"#attributes": {"SystemTime": ts}}},
        "EventData": data}}


def _fail(minute: float, user: str, ip: str = "10.0.0.5", **kw) -> dict:
    return _event("Security", 4625, minute, {"TargetUserName": user, "IpAddress": ip, **kw})


def _logon(minute: float, user: str) -> dict:
    return _event("Security", 4624, minute, {"TargetUserName": user, "IpAddress": "10.0.0.5"})


def _proc(minute: float, user: str, image: str) -> dict:
    return _event(SYSMON, 1, minute, {"User": user, "Image": image, "CommandLine": image})


BASE = """
title: Failed logon
id: 00000000-0000-4000-8000-0000000c0001
name: failed_logon
status: test
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 4625}
  condition: sel
---
title: Successful logon
id: 00000000-0000-4000-8000-0000000c0002
name: logon
status: test
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 4624}
  condition: sel
---
title: Whoami run
id: 00000000-0000-4000-8000-0000000c0003
name: whoami
status: test
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\whoami.exe'}
  condition: sel
"""


def _correlation(cid: str, body: str, title: str = "corr") -> str:
    return f"""
title: {title}
id: 00000000-0000-4000-8000-0000000c01{cid}
status: test
level: high
tags: [attack.credential-access, attack.t1110]
correlation:
{body}
"""


def _run(tmp_path, orgs: dict[str, list[dict]], rules: str, **engine
         ) -> tuple[list[tuple], object]:
    """The detections of ``rules`` (after BASE) over the events of each organisation, and the
    detect summary; ``engine``: run_detect's engine and spark."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    for org, events in orgs.items():
        f = tmp_path / f"{org}.json"
        f.write_text("\n".join(json.dumps(e) for e in events) + "\n")
        ingest_paths(ws, [str(f)], org=org)
    rdir = tmp_path / "rules"
    rdir.mkdir()
    (rdir / "base.yml").write_text(BASE)
    (rdir / "corr.yml").write_text(rules)
    return _detect(ws, rdir, **engine)


def _detect(ws: Workspace, rdir, **engine) -> tuple[list[tuple], object]:
    summary = run_detect(ws, rule_dirs=[rdir], **engine)
    assert not [f for f in summary.failed if "0000000c" in f["rule"]], summary.failed
    with ws.connect() as con:
        rows = con.execute(
            "SELECT right(rule_id, 4), org_id, strftime(ts, '%H:%M:%S'), detector, evidence, "
            "attack_techniques FROM detection WHERE rule_id LIKE '00000000-%' "
            "ORDER BY rule_id, org_id, ts, evidence").fetchall()
    return rows, summary


def _brute_force() -> tuple[dict[str, list[dict]], str]:
    """Failed logons in bursts, in several groups and organisations."""
    events = (
        [_fail(m, "bob") for m in (0, 0.5, 1, 1.5, 2, 3)]          # 6 in 3 min: fires once
        + [_fail(m, "alice") for m in (0, 1, 2, 3)]                 # 4 in 5 min: no
        + [_fail(m, "carol") for m in (0, 4.5, 9, 13.5, 18)]        # 5, but spread: no
        + [_fail(m, "dave") for m in (3, 4, 4.5, 5.5, 6.5)]         # across a 5-min bucket border
        + [_fail(m, "bob", ip="10.0.0.9") for m in (0, 1)]          # another group
        + [_fail(30 + m, "bob") for m in (0, 1, 2, 3, 4)]           # a second burst of bob's
    )
    other = [_fail(m, "erin") for m in (0, 1, 2)]
    rules = _correlation("01", """
  type: event_count
  rules: failed_logon
  group-by: [TargetUserName, IpAddress]
  timespan: 5m
  condition: {gte: 5}""", "Brute force")
    return {"acme": events + [_fail(m, "erin") for m in (3, 4)], "globex": other}, rules


def test_event_count_sliding_window_grouped_per_organisation(tmp_path):
    rows, summary = _run(tmp_path, *_brute_force())
    fired = [(r[1], r[2], r[4].rsplit(" (", 1)[0]) for r in rows if r[0] == "0101"]
    assert fired == [
        ("acme", "10:00:00", "event_count 6 (gte 5) within 5m: TargetUserName=bob, "
                             "IpAddress=10.0.0.5"),
        ("acme", "10:03:00", "event_count 5 (gte 5) within 5m: TargetUserName=dave, "
                             "IpAddress=10.0.0.5"),
        ("acme", "10:30:00", "event_count 5 (gte 5) within 5m: TargetUserName=bob, "
                             "IpAddress=10.0.0.5"),
    ]  # erin: 2 events in acme + 3 in globex are never one group
    assert {r[3] for r in rows if r[0] == "0101"} == {"correlation"}
    assert rows[0][5] == ["T1110"]
    # `generate` is false: the failed logons are no detections of their own
    assert not [r for r in rows if r[0] == "0001"]
    assert summary.correlation_detections == 3
    assert summary.per_rule["00000000-0000-4000-8000-0000000c0101"] == 3


def _generated() -> tuple[dict[str, list[dict]], str]:
    """A correlation that keeps its rule's own detections."""
    rules = _correlation("02", """
  type: event_count
  rules: [failed_logon]
  generate: true
  group-by: TargetUserName
  timespan: 1h
  condition: {gte: 2}""")
    return {"acme": [_fail(0, "bob"), _fail(1, "bob"), _fail(2, "amy")]}, rules


def test_generate_keeps_the_rules_own_detections(tmp_path):
    rows, _ = _run(tmp_path, *_generated())
    assert [r[0] for r in rows] == ["0001", "0001", "0001", "0102"]


def _spray() -> tuple[dict[str, list[dict]], str]:
    """Failed logons of several users from one address."""
    events = ([_fail(m, u, ip="192.0.2.1") for m, u in enumerate(("a", "b", "c"))]
              + [_fail(m, u, ip="192.0.2.2") for m, u in enumerate(("a", "b", "a", "b"))]
              + [_fail(m * 6, u, ip="192.0.2.3") for m, u in enumerate(("a", "b", "c"))])
    rules = _correlation("03", """
  type: value_count
  rules: failed_logon
  group-by: IpAddress
  timespan: 10m
  condition: {field: TargetUserName, gte: 3}""")
    return {"acme": events}, rules


def test_value_count_password_spray(tmp_path):
    rows, _ = _run(tmp_path, *_spray())
    assert [r[4].rsplit(" (", 1)[0] for r in rows] == [
        "value_count 3 (gte 3) within 10m: IpAddress=192.0.2.1"]


def _fixed_windows() -> tuple[dict[str, list[dict]], str]:
    """Upper bounds and sums on fixed hour windows."""
    # lt: hours in which a user failed exactly once (fixed hour buckets, UTC)
    events = [_fail(0, "bob"), _fail(10, "bob"), _fail(70, "bob"), _fail(5, "amy"),
              _fail(130, "amy", Attempts="7"), _fail(131, "amy", Attempts="5")]
    rules = _correlation("04", """
  type: event_count
  rules: failed_logon
  group-by: TargetUserName
  timespan: 1h
  condition: {lt: 2}""") + "---" + _correlation("05", """
  type: value_sum
  rules: failed_logon
  group-by: TargetUserName
  timespan: 1h
  condition: {field: Attempts, gte: 12}""")
    return {"acme": events}, rules


def test_fixed_windows_for_upper_bounds_and_sums(tmp_path):
    rows, _ = _run(tmp_path, *_fixed_windows())
    assert [(r[0], r[2], r[4].split(":")[0]) for r in rows] == [
        ("0104", "10:05:00", "event_count 1 (lt 2) within 1h"),   # amy, 10:00-11:00
        ("0104", "11:10:00", "event_count 1 (lt 2) within 1h"),   # bob, 11:00-12:00
        ("0105", "12:10:00", "value_sum 12 (gte 12) within 1h"),  # amy, 12:00-13:00 (both)
    ]


def _temporal_aliases() -> tuple[dict[str, list[dict]], str]:
    """A logon and a whoami by one user, the user field named differently."""
    # a logon (Security, windows_event) and whoami (Sysmon, process_creation) by one user
    events = [_logon(0, "bob"), _proc(4, "CORP\\bob", "C:\\Windows\\System32\\whoami.exe"),
              _logon(0, "amy"), _proc(25, "CORP\\amy", "C:\\Windows\\System32\\whoami.exe"),
              _proc(1, "CORP\\eve", "C:\\Windows\\System32\\whoami.exe")]
    for e in events:  # the process events name the user as DOMAIN\user
        if e["Event"]["System"]["EventID"] == 4624:
            e["Event"]["EventData"]["TargetUserName"] = "CORP\\" + \
                e["Event"]["EventData"]["TargetUserName"]
    rules = _correlation("06", """
  type: temporal
  rules: [logon, whoami]
  group-by: [user]
  aliases:
    user: {logon: TargetUserName, whoami: User}
  timespan: 10m""")
    return {"acme": events}, rules


def test_temporal_across_tables_with_aliases(tmp_path):
    rows, _ = _run(tmp_path, *_temporal_aliases())
    assert [r[4].rsplit(" (", 1)[0] for r in rows] == [
        "temporal 2 of 2 rules within 10m: user=CORP\\bob"]


def _ordered() -> tuple[dict[str, list[dict]], str]:
    """Failures and logons in both orders."""
    # windows look forward from each event: `failed_logon and not logon` is a failure with
    # no logon in the 5 minutes from it
    events = [_fail(0, "bob"), _logon(2, "bob"),       # fail then logon: 07, 08
              _logon(0, "amy"), _fail(2, "amy"),       # logon then fail: 08, 09
              _fail(0, "joe")]                         # fail, no logon: 09
    rules = _correlation("07", """
  type: temporal_ordered
  rules: [failed_logon, logon]
  group-by: TargetUserName
  timespan: 5m""") + "---" + _correlation("08", """
  type: temporal
  rules: [failed_logon, logon]
  group-by: TargetUserName
  timespan: 5m""") + "---" + _correlation("09", """
  type: temporal
  rules: [failed_logon, logon]
  group-by: TargetUserName
  timespan: 5m
  condition: failed_logon and not logon""")
    return {"acme": events}, rules


def test_temporal_ordered_and_extended_conditions(tmp_path):
    rows, _ = _run(tmp_path, *_ordered())
    got = sorted((r[0], r[4].split(": ")[1].rsplit(" (", 1)[0]) for r in rows)
    assert got == [("0107", "TargetUserName=bob"),
                   ("0108", "TargetUserName=amy"), ("0108", "TargetUserName=bob"),
                   ("0109", "TargetUserName=amy"), ("0109", "TargetUserName=joe")]


SCENARIOS = (_brute_force, _generated, _spray, _fixed_windows, _temporal_aliases, _ordered)


@pytest.mark.spark_stages  # two minutes of local Spark: `make test-spark`
def test_every_correlation_fires_the_same_on_spark(tmp_path, spark_session):
    # every scenario at once (each in its own organisations: correlations never cross them),
    # detected by both engines in one workspace
    orgs, rules = {}, []
    for n, scenario in enumerate(SCENARIOS):
        events, text = scenario()
        orgs.update({f"{org}{n}": evs for org, evs in events.items()})
        rules.append(text)
    on_duckdb, summary = _run(tmp_path, orgs, "---".join(rules))
    on_spark, spark_summary = _detect(Workspace.open(tmp_path / "ws"), tmp_path / "rules",
                                      engine="spark", spark=spark_session)
    assert on_spark == on_duckdb
    fired = {r[0] for r in on_duckdb if r[3] == "correlation"}
    assert fired == {f"01{c:02d}" for c in range(1, 10)}, fired
    assert spark_summary.correlation_detections == summary.correlation_detections


@pytest.mark.parametrize("body, reason", [
    ("type: event_count\n  rules: nope\n  timespan: 5m\n  condition: {gte: 2}",
     "refers to rule 'nope', which is not loaded"),
    ("type: event_count\n  rules: broken\n  timespan: 5m\n  condition: {gte: 2}",
     "refers to rule 'broken', which did not compile: invalid Sigma"),
    ("type: value_count\n  rules: failed_logon\n  timespan: 5m\n  condition: {gte: 2}",
     "without field reference"),
    ("type: event_count\n  rules: failed_logon\n  timespan: 5x\n  condition: {gte: 2}",
     "Timespan '5x' is invalid"),
    ("type: event_count\n  rules: web\n  group-by: NoSuchField\n  timespan: 5m\n"
     "  condition: {gte: 2}", "unknown field 'NoSuchField' for table http"),
    ("type: temporal_ordered\n  rules: [failed_logon, logon]\n  timespan: 5m\n"
     "  condition: {gte: 1}", "temporal_ordered supports only the default condition"),
])
def test_correlations_that_cannot_run_are_reported(tmp_path, body, reason):
    (tmp_path / "base.yml").write_text(BASE + """---
title: Broken
name: broken
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|nosuchmodifier: x}
  condition: sel
---
title: Web
name: web
logsource: {category: webserver}
detection:
  sel: {cs-uri-query|contains: x}
  condition: sel
""")
    (tmp_path / "corr.yml").write_text(_correlation("10", "  " + body))
    rs = load_rules([tmp_path], builtin=False)
    assert not rs.correlations
    failed = [f for f in rs.failed if f.name.endswith("0110")]
    assert len(failed) == 1 and reason in failed[0].reason, rs.failed
    assert failed[0].logsource == "correlation"
    report = check_rules([tmp_path], builtin=False)
    assert {"logsource": "correlation", "table": None, "compiled": 0, "failed": 1} in \
        report["by_logsource"]


def test_rules_check_counts_correlations(tmp_path):
    (tmp_path / "base.yml").write_text(BASE)
    (tmp_path / "corr.yml").write_text(_correlation("11", """
  type: temporal
  rules: [failed_logon, logon]
  timespan: 5m"""))
    report = check_rules([tmp_path], builtin=False)
    assert report["compiled"] == 4 and report["failed"] == 0
    assert {"logsource": "correlation", "table": None, "compiled": 1, "failed": 0} in \
        report["by_logsource"]
