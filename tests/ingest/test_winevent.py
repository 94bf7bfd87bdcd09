"""Windows events: EVTX files (shared samples, skipped when absent) and JSON exports."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.fuzz.evtx_build import Event, evtx_file
from tests.ingest.conftest import SHARED, assert_invariant, manifest, quarantine, rows, run, write

EVTX = sorted((SHARED / "evtx").rglob("*.evtx")) if SHARED.exists() else []
needs_evtx = pytest.mark.skipif(not EVTX, reason="../shared/data/evtx not present")

SYSMON_1 = {"Event": {
    "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
    "System": {
        "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}}, "EventID": 1,
        "EventRecordID": 41, "Channel": "Microsoft-Windows-Sysmon/Operational",
        "Computer": "WS01", "Security": {"#attributes": {"UserID": "S-1-5-18"}},
        "TimeCreated": {"#attributes": {"SystemTime": "2018-05-12T10:00:01.250000Z"}}},
    "EventData": {"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami"}}}
SECURITY_4688 = {"Event": {"System": {
    "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}},
    "EventID": {"#text": 4688, "#attributes": {"Qualifiers": ""}}, "EventRecordID": 7,
    "Channel": "Security", "Computer": "WS02",
    "TimeCreated": {"#attributes": {"SystemTime": "2018-05-12T10:00:02Z"}}},
    "EventData": {"NewProcessName": "C:\\Windows\\System32\\whoami.exe", "NewProcessId": "0x4f0",
                  "ProcessId": "0x12c", "ParentProcessName": "C:\\Windows\\System32\\cmd.exe",
                  "SubjectUserName": "bob", "SubjectDomainName": "CORP",
                  "MandatoryLabel": "S-1-16-12288", "CommandLine": ""}}}
WINLOGBEAT = {"@timestamp": "2018-05-12T10:00:03.000Z", "event": {"code": "4104"},
              "winlog": {"channel": "Microsoft-Windows-PowerShell/Operational",
                         "provider_name": "Microsoft-Windows-PowerShell", "event_id": 4104,
                         "record_id": 99, "computer_name": "WS03",
                         "user": {"identifier": "S-1-5-21-1"},
                         "event_data": {"ScriptBlockText": "Get-Process", "MessageNumber": "1"}}}
NXLOG = {"EventTime": "2018-05-12 10:00:04", "Hostname": "WS04", "EventID": 4625,
         "SourceName": "Microsoft-Windows-Security-Auditing", "Channel": "Security",
         "RecordNumber": 5, "TargetUserName": "admin", "IpAddress": "203.0.113.7"}


def test_json_exports_of_every_shape(ws, tmp_path):
    lines = [json.dumps(x) for x in (SYSMON_1, SECURITY_4688, WINLOGBEAT, NXLOG)]
    lines += ["not json", json.dumps({"hello": "world"}),
              json.dumps({**NXLOG, "EventTime": "yesterday"})]
    s = run(ws, write(tmp_path / "events.json", "\n".join(lines) + "\n"), org="acme")
    assert_invariant(s)
    assert s.per_file[0]["format"] == "winevent-json"
    got = rows(ws, "windows_event", "source_line, ts, channel, provider, event_id, record_id, "
               "computer, user_id, event_data, org_id")
    by_line = {r["source_line"]: r for r in got}
    assert sorted(by_line) == [1, 2, 3, 4]
    sysmon, sec, beat, nx = (by_line[k] for k in (1, 2, 3, 4))
    assert (sysmon["channel"], sysmon["event_id"], sysmon["record_id"], sysmon["computer"],
            sysmon["user_id"]) == ("Microsoft-Windows-Sysmon/Operational", 1, 41, "WS01",
                                   "S-1-5-18")
    assert str(sysmon["ts"]) == "2018-05-12 10:00:01.250000"
    assert json.loads(sysmon["event_data"])["CommandLine"] == "cmd /c whoami"
    assert (sec["event_id"], sec["provider"], sec["user_id"]) == (
        4688, "Microsoft-Windows-Security-Auditing", None)
    assert (beat["event_id"], beat["computer"], beat["user_id"], beat["record_id"]) == (
        4104, "WS03", "S-1-5-21-1", 99)
    assert json.loads(beat["event_data"])["ScriptBlockText"] == "Get-Process"
    assert (nx["event_id"], nx["channel"], nx["provider"], nx["computer"], nx["record_id"]) == (
        4625, "Security", "Microsoft-Windows-Security-Auditing", "WS04", 5)
    # a flat record's own fields are its event data; NXLog's keys are not
    assert json.loads(nx["event_data"]) == {"TargetUserName": "admin", "IpAddress": "203.0.113.7"}
    assert {r["org_id"] for r in got} == {"acme"}
    assert quarantine(ws) == [(5, "not a JSON object"), (6, "not a Windows event (no EventID)"),
                              (7, "invalid timestamp")]
    # Sigma's categories, derived from the same rows (not counted again)
    assert s.rows_written == 4
    assert s.per_file[0]["derived_rows_by_kind"] == {"process_creation": 2, "ps_script": 1}
    procs = rows(ws, "process_creation", "source_line, event_id, computer, process_executable, "
                 "process_command_line, process_pid, process_parent_executable, "
                 "process_parent_pid, process_integrity_level, user_name")
    assert procs == [
        {"source_line": 1, "event_id": 1, "computer": "WS01",
         "process_executable": "C:\\Windows\\System32\\cmd.exe",
         "process_command_line": "cmd /c whoami", "process_pid": None,
         "process_parent_executable": None, "process_parent_pid": None,
         "process_integrity_level": None, "user_name": None},
        {"source_line": 2, "event_id": 4688, "computer": "WS02",
         "process_executable": "C:\\Windows\\System32\\whoami.exe",
         "process_command_line": None, "process_pid": 0x4F0,
         "process_parent_executable": "C:\\Windows\\System32\\cmd.exe",
         "process_parent_pid": 0x12C, "process_integrity_level": "High",
         "user_name": "CORP\\bob"}]
    (script,) = rows(ws, "ps_script", "source_line, script_block_text, message_number, computer")
    assert script == {"source_line": 3, "script_block_text": "Get-Process", "message_number": 1,
                      "computer": "WS03"}


@needs_evtx
def test_every_evtx_sample_is_ingested_and_accounted(ws):
    s = run(ws, *EVTX, org="lab")
    assert_invariant(s)
    assert not s.errors and not s.unrecognised
    per = s.per_file
    assert {f["status"] for f in per} <= {"ingested", "skipped"}  # skipped: a duplicate file
    assert sum(f["status"] == "ingested" for f in per) >= len(EVTX) - 5
    assert all(f["format"] == "evtx" for f in per if f["status"] == "ingested")
    total = s.rows_written  # (a skipped duplicate's per-file row says what it would have added)
    assert total > 5000
    with ws.connect() as con:
        n, sysmon_1, scripts = con.execute(
            "SELECT count(*), count(*) FILTER (channel = 'Microsoft-Windows-Sysmon/Operational' "
            "AND event_id = 1), count(*) FILTER (event_id = 4104) FROM windows_event").fetchone()
    assert n == total and sysmon_1 > 1000 and scripts >= 4
    procs = sum(f["derived_rows_by_kind"].get("process_creation", 0) for f in per
                if f["status"] == "ingested")
    assert procs > sysmon_1  # Sysmon 1 and Security 4688
    with ws.connect() as con:
        assert con.execute("SELECT count(*) FROM process_creation").fetchone()[0] == procs
    again = run(ws, *EVTX, org="lab")  # the same files again: nothing new
    assert again.rows_written == 0 and again.skipped_files == len(EVTX)
    assert sum(m["rows_written"] for m in manifest(ws)) == total


@needs_evtx
def test_a_corrupt_chunk_and_a_cut_file_lose_only_what_is_damaged(ws, tmp_path):
    src = max(EVTX, key=lambda p: p.stat().st_size)  # several chunks
    whole = run(ws, src, org="lab").rows_written
    data = bytearray(src.read_bytes())
    data[4096 + 65536 * 2] ^= 0xFF  # the third chunk's header magic
    bad = write(tmp_path / "bad.evtx", bytes(data))
    cut = write(tmp_path / "cut.evtx", bytes(data[: 4096 + 65536 + 1000]))
    shutil.copy(src, tmp_path / "same.evtx")
    s = run(ws, bad, cut, org="lab")
    assert_invariant(s)
    per = {f["path"].rsplit("/", 1)[-1]: f for f in s.per_file}
    assert 0 < per["bad.evtx"]["rows_written"] < whole and per["bad.evtx"]["rows_quarantined"] == 1
    assert 0 < per["cut.evtx"]["rows_written"] < whole and per["cut.evtx"]["rows_quarantined"] == 1
    reasons = {r for _, r in quarantine(ws)}
    assert any(r.startswith("EVTX: Failed to parse chunk number 2") for r in reasons), reasons
    assert any(r.startswith("EVTX file cut short") for r in reasons), reasons


def test_a_file_with_the_evtx_magic_that_is_not_one_is_quarantined_naming_why(ws, tmp_path):
    # (found by tests/fuzz: the parser's error on the header made the file "failed", with no
    # manifest row; now it is one quarantine entry of a file in the manifest)
    fake = write(tmp_path / "fake.evtx", b"ElfFile\x00" + b"\x00" * 100)
    empty = write(tmp_path / "empty.evtx", b"")
    ok = write(tmp_path / "ok.json", json.dumps(SYSMON_1) + "\n")
    s = run(ws, fake, ok)
    assert_invariant(s)
    assert not s.errors and s.rows_quarantined == 1
    ((line, reason),) = quarantine(ws)
    assert line == 1 and reason.startswith("not a readable EVTX file: ") and "header" in reason
    assert rows(ws, "windows_event", "event_id") == [{"event_id": 1}]
    s = run(ws, empty, fmt="evtx")
    assert (s.files, s.lines_read, s.rows_quarantined, s.errors) == (1, 1, 1, [])
    assert {m["path"] for m in manifest(ws)} == {str(fake), str(ok), str(empty)}


def test_evtx_files_built_here_whole_and_cut(ws, tmp_path):
    # EVTX files from tests/fuzz/evtx_build (the fuzz seeds), so that this runs without the
    # shared samples: every record read, a cut file keeps its whole chunks
    events = [Event(1, "cmd /c whoami"), Event(3, "x"),
              Event(4104, "Get-Process", channel="Microsoft-Windows-PowerShell/Operational",
                    provider="Microsoft-Windows-PowerShell")]
    data = evtx_file(events * 2, per_chunk=3)
    whole = write(tmp_path / "a.evtx", data)
    cut = write(tmp_path / "cut.evtx", data[:len(data) - 1000])
    s = run(ws, whole, cut, org="lab")
    assert_invariant(s)
    per = {f["path"].rsplit("/", 1)[-1]: f for f in s.per_file}
    assert (per["a.evtx"]["rows_written"], per["a.evtx"]["rows_quarantined"]) == (6, 0)
    assert (per["cut.evtx"]["rows_written"], per["cut.evtx"]["rows_quarantined"]) == (3, 1)
    assert per["a.evtx"]["derived_rows_by_kind"] == {"process_creation": 2, "ps_script": 2}
    got = rows(ws, "windows_event", "source_line, event_id, record_id, ts, computer",
               f"source_file = '{whole}'")
    assert [(r["source_line"], r["event_id"], r["record_id"]) for r in got] == [
        (1, 1, 1), (2, 3, 2), (3, 4104, 3), (4, 1, 4), (5, 3, 5), (6, 4104, 6)]
    assert str(got[0]["ts"]) == "2018-05-12 10:00:01" and got[0]["computer"] == "WS01"
    assert rows(ws, "process_creation", "process_command_line",
                f"source_file = '{whole}'")[0] == {"process_command_line": "cmd /c whoami"}
    assert any(r.startswith("EVTX file cut short") for _, r in quarantine(ws))


def _sysmon(event_id: int, record: int, data: dict) -> str:
    e = json.loads(json.dumps(SYSMON_1))
    e["Event"]["System"].update({"EventID": event_id, "EventRecordID": record})
    e["Event"]["EventData"] = data
    return json.dumps(e)


def test_sigma_windows_categories_are_views_with_ecs_columns(ws, tmp_path):
    lines = [
        _sysmon(3, 1, {"Image": "C:\\x.exe", "ProcessId": "412", "Protocol": "tcp",
                       "DestinationIp": "203.0.113.9", "DestinationPort": "4444"}),
        _sysmon(22, 2, {"Image": "C:\\x.exe", "QueryName": "pastebin.com"}),
        _sysmon(12, 3, {"EventType": "DeleteKey", "TargetObject": "HKLM\\SOFTWARE\\Run"}),
        _sysmon(12, 4, {"EventType": "CreateKey", "TargetObject": "HKLM\\SOFTWARE\\X"}),
        _sysmon(13, 5, {"EventType": "SetValue", "TargetObject": "HKCU\\Run\\x",
                        "Details": "C:\\evil.exe"}),
        _sysmon(11, 6, {"Image": "C:\\x.exe", "TargetFilename": "C:\\Users\\a\\evil.dll"}),
        json.dumps(NXLOG),  # a Security event: in none of them
    ]
    s = run(ws, write(tmp_path / "sysmon.json", "\n".join(lines) + "\n"), org="acme")
    assert_invariant(s)
    with ws.connect(windows_categories=True) as con:
        def q(sql: str) -> list[tuple]:
            return con.execute(sql).fetchall()

        assert q("SELECT record_id, process_executable, process_pid, network_transport, "
                 "destination_ip, destination_port FROM network_connection") == [
            (1, "C:\\x.exe", 412, "tcp", "203.0.113.9", 4444)]
        assert q("SELECT record_id, dns_question_name FROM dns_query") == [(2, "pastebin.com")]
        assert q("SELECT record_id, registry_event_type FROM registry_delete") == [(3, "DeleteKey")]
        assert q("SELECT record_id FROM registry_add") == [(4,)]
        assert q("SELECT record_id, registry_path, registry_data FROM registry_set") == [
            (5, "HKCU\\Run\\x", "C:\\evil.exe")]
        assert q("SELECT record_id FROM registry_event ORDER BY 1") == [(3,), (4,), (5,)]
        assert q("SELECT record_id, file_path FROM file_event") == [
            (6, "C:\\Users\\a\\evil.dll")]
        assert q("SELECT count(*) FROM ps_module") == [(0,)]
        # the views keep the event's own columns, raw last
        cols = [r[0] for r in q("DESCRIBE network_connection")]
        assert cols[:3] == ["org_id", "ts", "event_date"] and cols[-1] == "raw"
