"""Windows event logs: EVTX files and JSON exports of them, into ``windows_event``.

Every record is a ``windows_event`` row; Sysmon 1 and Security 4688 are also
``process_creation`` rows, PowerShell 4104 also ``ps_script`` rows (Sigma's logsource
categories: derived parts, not counted twice). One SQL normalisation serves every shape a Windows
event comes in (a line each):

* ``Event.System`` + ``Event.EventData`` JSON, as the ``evtx`` package and ``evtx_dump`` write
  a record (the EVTX format below turns each record of a file into such a line);
* Winlogbeat / ECS: ``@timestamp``, ``winlog.{channel, provider_name, event_id, record_id,
  computer_name, user.identifier, event_data, user_data}``;
* NXLog-style flat JSON: ``EventTime``, ``EventID``, ``Channel``, ``SourceName`` /
  ``ProviderName``, ``RecordNumber``, ``Hostname``, ``UserID`` and the event's own fields beside
  them (``Image``, ``CommandLine``, ...), which become ``event_data``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import pyarrow as pa

from threatscope.ingest import reader
from threatscope.ingest.formats import Format, ParseResult, Part, register
from threatscope.ingest.formats._json import sniff_json, struct_sql
from threatscope.sqlfn import sql_str, with_fields

_SHAPE = {
    "Event": {
        "System": {
            "Provider": {"#attributes": {"Name": "VARCHAR"}},
            "EventID": "JSON", "EventRecordID": "VARCHAR", "Channel": "VARCHAR",
            "Computer": "VARCHAR", "Security": {"#attributes": {"UserID": "VARCHAR"}},
            "TimeCreated": {"#attributes": {"SystemTime": "VARCHAR"}},
        },
        "EventData": "JSON", "UserData": "JSON",
    },
    "winlog": {
        "channel": "VARCHAR", "provider_name": "VARCHAR", "event_id": "VARCHAR",
        "record_id": "VARCHAR", "computer_name": "VARCHAR", "user": {"identifier": "VARCHAR"},
        "event_data": "JSON", "user_data": "JSON",
    },
    "@timestamp": "VARCHAR",
    "EventTime": "VARCHAR", "EventID": "VARCHAR", "Channel": "VARCHAR",
    "SourceName": "VARCHAR", "ProviderName": "VARCHAR", "RecordNumber": "VARCHAR",
    "Hostname": "VARCHAR", "UserID": "VARCHAR",
}

# NXLog's own keys; everything else on a flat record is the event's data
_FLAT_SYSTEM = ("EventTime", "EventReceivedTime", "EventID", "Channel", "SourceName",
                "ProviderName", "ProviderGuid", "RecordNumber", "Hostname", "UserID",
                "AccountName", "AccountType", "Domain", "Severity", "SeverityValue",
                "EventType", "Keywords", "Opcode", "OpcodeValue", "Task", "Version",
                "ExecutionProcessID", "ExecutionThreadID", "SourceModuleName",
                "SourceModuleType", "Message", "Category")
_FLAT_DROP = sql_str(json.dumps(dict.fromkeys(_FLAT_SYSTEM)))

_EVENT_ID = ("coalesce(try_cast(j.Event.System.EventID ->> '$' AS INTEGER), "
             "try_cast(j.Event.System.EventID ->> '$.\"#text\"' AS INTEGER), "
             "try_cast(j.winlog.event_id AS INTEGER), try_cast(j.EventID AS INTEGER))")

_SELECT = f"""
    SELECT n AS source_line, line AS raw, ts,
           CASE WHEN j IS NULL THEN 'not a JSON object'
                WHEN event_id IS NULL THEN 'not a Windows event (no EventID)'
                WHEN ts IS NULL THEN 'invalid timestamp' END AS _reason,
           coalesce(j.Event.System.Channel, j.winlog.channel, j.Channel) AS channel,
           coalesce(j.Event.System.Provider."#attributes".Name, j.winlog.provider_name,
                    j.ProviderName, j.SourceName) AS provider,
           event_id,
           try_cast(coalesce(j.Event.System.EventRecordID, j.winlog.record_id, j.RecordNumber)
                    AS BIGINT) AS record_id,
           coalesce(j.Event.System.Computer, j.winlog.computer_name, j.Hostname) AS computer,
           coalesce(j.Event.System.Security."#attributes".UserID, j.winlog."user".identifier,
                    j.UserID) AS user_id,
           CAST(CASE WHEN j IS NULL THEN NULL
                     WHEN j.Event IS NOT NULL THEN coalesce(j.Event.EventData, j.Event.UserData)
                     WHEN j.winlog IS NOT NULL THEN coalesce(j.winlog.event_data, j.winlog.user_data)
                     ELSE json_merge_patch(line, {_FLAT_DROP}) END AS VARCHAR) AS event_data
    FROM (SELECT *, {_EVENT_ID} AS event_id,
                 ts_iso_ts(coalesce(j.Event.System.TimeCreated."#attributes".SystemTime,
                                    j."@timestamp", j.EventTime)) AS ts
          FROM ({struct_sql('{src}', _SHAPE)}))
"""


_SYSTEM = ("ts, source_line, raw, channel, provider, event_id, record_id, computer, user_id, "
           "event_data")
_SYSMON = "channel = 'Microsoft-Windows-Sysmon/Operational'"


def _data(name: str) -> str:
    return f'nullif("event_data.{name}", \'\')'  # a field column (sqlfn.with_fields)


# MandatoryLabel SIDs of 4688 -> the level names Sysmon writes
_LEVELS = ("CASE {} WHEN 'S-1-16-0' THEN 'Untrusted' WHEN 'S-1-16-4096' THEN 'Low' "
           "WHEN 'S-1-16-8192' THEN 'Medium' WHEN 'S-1-16-8448' THEN 'Medium' "
           "WHEN 'S-1-16-12288' THEN 'High' WHEN 'S-1-16-16384' THEN 'System' END")

# Sigma category tables, another view of the windows_event rows (derived parts):
# kind -> (SELECT list over windows_event rows and event_data field columns, which rows)
_CATEGORIES = {
    "process_creation": (f"""
        SELECT {_SYSTEM},
               coalesce({_data('Image')}, {_data('NewProcessName')}) AS process_executable,
               {_data('CommandLine')} AS process_command_line,
               try_cast(CASE WHEN event_id = 4688 THEN {_data('NewProcessId')}
                             ELSE {_data('ProcessId')} END AS BIGINT) AS process_pid,
               coalesce({_data('ParentImage')}, {_data('ParentProcessName')})
                   AS process_parent_executable,
               {_data('ParentCommandLine')} AS process_parent_command_line,
               try_cast(CASE WHEN event_id = 4688 THEN {_data('ProcessId')}
                             ELSE {_data('ParentProcessId')} END AS BIGINT) AS process_parent_pid,
               {_data('OriginalFileName')} AS process_pe_original_file_name,
               {_data('CurrentDirectory')} AS process_working_directory,
               coalesce({_data('IntegrityLevel')},
                        {_LEVELS.format(_data('MandatoryLabel'))}) AS process_integrity_level,
               {_data('Hashes')} AS process_hash,
               {_data('Company')} AS process_pe_company,
               {_data('Description')} AS process_pe_description,
               {_data('Product')} AS process_pe_product,
               {_data('FileVersion')} AS process_pe_file_version,
               coalesce({_data('User')}, CASE WHEN {_data('SubjectUserName')} IS NOT NULL THEN
                        concat_ws('\\', {_data('SubjectDomainName')}, {_data('SubjectUserName')})
                        END) AS user_name,
               {_data('ParentUser')} AS process_parent_user,
               coalesce({_data('LogonId')}, {_data('SubjectLogonId')}) AS logon_id""",
        f"""({_SYSMON} AND event_id = 1) OR (channel = 'Security' AND event_id = 4688)"""),
    "ps_script": (f"""
        SELECT {_SYSTEM}, {_data('ScriptBlockText')} AS script_block_text,
               {_data('ScriptBlockId')} AS script_block_id,
               try_cast({_data('MessageNumber')} AS INTEGER) AS message_number,
               try_cast({_data('MessageTotal')} AS INTEGER) AS message_total,
               {_data('Path')} AS script_path""",
        """event_id = 4104 AND provider = 'Microsoft-Windows-PowerShell'"""),
}


def _category_sql(select: str, where: str) -> str:
    """A category's rows: the good windows_event rows ``where`` keeps, with the event data
    fields ``select`` reads taken out of ``event_data`` once per row."""
    fields = sorted(set(re.findall(r'"(event_data\.[^"]+)"', select)))
    rows = f"SELECT * FROM _winevents WHERE _reason IS NULL AND ({where})"
    return f"{select} FROM ({with_fields(rows, fields)})"


_CATEGORY_SQL = {kind: _category_sql(*sql) for kind, sql in _CATEGORIES.items()}


class _WindowsEvents(Format):
    def parse(self, con, batch, prepared) -> ParseResult:
        # one JSON parse per record: the category tables read the windows_event rows
        events = con.sql(_SELECT.replace("{src}", "_batch")).to_arrow_table()
        con.register("_winevents", events)
        return ParseResult(
            parts=[Part("windows_event", table=events)] + [
                Part(kind, sql, derived=True) for kind, sql in _CATEGORY_SQL.items()],
            views=["_winevents"])


@register
class WinEventJson(_WindowsEvents):
    """JSON lines of Windows events: evtx_dump (``Event.System``/``Event.EventData``),
    Winlogbeat/ECS (``winlog.*``) or NXLog flat records (see the module docstring).

    -> ``windows_event``: the record's time (System/TimeCreated, ``@timestamp`` or
    ``EventTime``, as UTC) -> ts; channel, provider, event_id, record_id, computer, user_id
    (a SID); the event's fields by name as a JSON object -> event_data. Lines that are not JSON
    objects or carry no event id, and bad timestamps, are quarantined.
    """

    name = "winevent-json"

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        objs = sniff_json(lines)
        if not objs:
            return 0.0
        hits = sum(1 for o in objs if isinstance(o.get("Event"), dict) and "System" in o["Event"]
                   or isinstance(o.get("winlog"), dict)
                   or ("EventID" in o and ("Channel" in o or "SourceName" in o)))
        return 0.95 * hits / len(objs)


# EVTX: a 4 KiB file header, then chunks of 64 KiB
_EVTX_HEADER, _EVTX_CHUNK = 4096, 65536
RECORDS_PER_BATCH = 20_000


@register
class Evtx(_WindowsEvents):
    """Windows event log files (``.evtx``), read with the ``evtx`` package.

    Each record becomes one ``windows_event`` row (see WinEventJson: the record as
    ``Event.System`` + ``Event.EventData`` JSON, kept as ``raw``); ``source_line`` is the
    record's position in the file. A chunk the parser cannot read is quarantined as one entry
    naming the chunk, and the chunks after it are still read; a file cut short is quarantined
    as one entry for its incomplete last chunk.
    """

    name = "evtx"
    magic = b"ElfFile\x00"

    def read_batches(self, path: str) -> Iterator[reader.Batch]:
        import evtx  # the Rust parser: 40-100k records/s

        with open(path, "rb"):  # a file that cannot be read stays an error ("cannot read")
            pass
        try:
            records = evtx.PyEvtxParser(path).records_json()
        except (RuntimeError, OSError, ValueError) as e:
            # A header the parser cannot read (cut short, damaged, not EVTX after all): one
            # quarantine entry, so that the file is still accounted for in the manifest.
            yield reader.Batch(table=pa.table({"n": pa.array([], pa.int64()),
                                               "line": pa.array([], pa.string())}),
                               lines=1, bad=[(1, f"not a readable EVTX file: {e}"[:500], "")])
            return
        n = 0
        lines: list[str] = []
        nums: list[int] = []
        bad: list[tuple[int, str, str]] = []
        done = False
        while not done:
            try:
                rec = next(records)
            except StopIteration:
                done = True
                tail = (os.path.getsize(path) - _EVTX_HEADER) % _EVTX_CHUNK
                if tail:
                    n += 1
                    bad.append((n, f"EVTX file cut short: its last chunk has {tail} of "
                                   f"{_EVTX_CHUNK} bytes", ""))
            except (RuntimeError, OSError, ValueError) as e:
                n += 1
                bad.append((n, f"EVTX: {e}"[:500], ""))
            else:
                n += 1
                nums.append(n)
                lines.append(rec["data"])
            if done or len(nums) + len(bad) >= RECORDS_PER_BATCH:
                table = pa.table({"n": pa.array(nums, pa.int64()),
                                  "line": pa.array(lines, pa.string())})
                yield reader.Batch(table=table, lines=len(nums) + len(bad), bad=bad,
                                   nbytes=sum(map(len, lines)))
                lines, nums, bad = [], [], []
