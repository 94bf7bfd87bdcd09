"""Sigma rules over Windows events: category tables, service channels, event data fields."""

from __future__ import annotations

import json

from threatscope.detect import run_detect
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace


def _event(channel: str, event_id: int, record: int, data: dict, provider: str = "P") -> str:
    return json.dumps({"Event": {"System": {
        "Provider": {"#attributes": {"Name": provider}}, "EventID": event_id,
        "EventRecordID": record, "Channel": channel, "Computer": "WS01",
        "TimeCreated": {"#attributes": {"SystemTime": "2018-05-12T10:00:00Z"}}},
        "EventData": data}})


SYSMON = "Microsoft-Windows-Sysmon/Operational"
EVENTS = [
    # 1: an encoded PowerShell start from Word (fires), 2: a plain one from explorer (does not)
    _event(SYSMON, 1, 1, {"Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                          "CommandLine": "powershell -nop -enc SQBFAFgA",
                          "ParentImage": "C:\\Program Files\\Microsoft Office\\WINWORD.EXE"}),
    _event(SYSMON, 1, 2, {"Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                          "CommandLine": "powershell -File backup.ps1",
                          "ParentImage": "C:\\Windows\\explorer.exe"}),
    # 3: a failed logon in Security (fires), 4: the same id and data in another channel (not)
    _event("Security", 4625, 3, {"TargetUserName": "administrator", "LogonType": "10"}),
    _event("Application", 4625, 4, {"TargetUserName": "administrator", "LogonType": "10"}),
    # 5: a DNS query to a paste site (Sysmon 22: fires), 6: the same name as a Sysmon 3 (not)
    _event(SYSMON, 22, 5, {"QueryName": "pastebin.com", "Image": "C:\\x.exe"}),
    _event(SYSMON, 3, 6, {"QueryName": "pastebin.com", "Image": "C:\\x.exe"}),
]

RULES = {
    "office_ps.yml": """
title: Office spawns encoded PowerShell
id: 00000000-0000-4000-8000-0000000000a1
status: test
level: high
tags: [attack.execution, attack.t1059.001]
logsource: {category: process_creation, product: windows}
detection:
  sel:
    ParentImage|endswith: '\\WINWORD.EXE'
    Image|endswith: '\\powershell.exe'
    CommandLine|contains|windash: ' -enc '
  condition: sel
""",
    "rdp_logon_fail.yml": """
title: Failed RDP logon of administrator
id: 00000000-0000-4000-8000-0000000000a2
status: test
level: medium
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4625
    TargetUserName: Administrator
    LogonType: 10
  condition: sel
""",
    "dns_paste.yml": """
title: DNS query to a paste site
id: 00000000-0000-4000-8000-0000000000a3
status: test
level: low
logsource: {category: dns_query, product: windows}
detection:
  sel:
    QueryName|endswith: 'pastebin.com'
  condition: sel
""",
}


def test_windows_rules_fire_on_their_events_only(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    (tmp_path / "events.json").write_text("\n".join(EVENTS) + "\n")
    ingest_paths(ws, [str(tmp_path / "events.json")], org="acme")
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in RULES.items():
        (rules / name).write_text(text)
    summary = run_detect(ws, rule_dirs=[rules])
    with ws.connect() as con:
        hits = con.execute("SELECT rule_id, source_line, event_kind, attack_techniques "
                           "FROM detection WHERE rule_id LIKE '00000000-%' "
                           "ORDER BY source_line").fetchall()
    assert [(r[0][-2:], r[1], r[2]) for r in hits] == [
        ("a1", 1, "process_creation"), ("a2", 3, "windows_event"), ("a3", 5, "windows_event")]
    assert hits[0][3] == ["T1059.001"]
    assert summary.events_scanned["windows_event"] == 6
    assert summary.events_scanned["process_creation"] == 2
