"""Simulated Windows hosts: processes, the events they log, and those events as JSON lines.

    tl = Timeline(rng)
    word = tl.spawn(host, tl.session(host, day), f"{OFFICE_DIR}\\WINWORD.EXE",
                    f'"{OFFICE_DIR}\\WINWORD.EXE" /n "C:\\Users\\...\\x.doc"', ts)
    tl.spawn(host, word, f"{SYSTEM32}\\cmd.exe", "cmd.exe /c ...", ts + 900,
             label=Label("chain-1", "shell", ("T1204.002", "T1059.003")))
    lines = [render(ev, record_id, "evtx_dump") for ev in tl.events]   # or "winlogbeat"

A host logs process starts as Sysmon 1 (``telemetry="sysmon"``) or Security 4688
(``"security"``: no original file name, hashes or parent command line), PowerShell script blocks
as 4104 when script block logging is on, and (Sysmon hosts) network connections (3) and file
creations (11). A child names its parent's image, command line and process id, as Windows does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SYSMON = "Microsoft-Windows-Sysmon/Operational"
POWERSHELL = "Microsoft-Windows-PowerShell/Operational"
SECURITY = "Security"
PS_PART = 16_000  # script blocks longer than this are logged in several 4104 parts
EPOCH0_MS = 1514764800_000  # 2018-01-01T00:00:00Z, day 0 of the simulation

SYSTEM32 = "C:\\Windows\\System32"
POWERSHELL_EXE = f"{SYSTEM32}\\WindowsPowerShell\\v1.0\\powershell.exe"
OFFICE_DIR = "C:\\Program Files (x86)\\Microsoft Office\\root\\Office16"

# image file name (lower case) -> (OriginalFileName, Description, Product, Company)
_MS = ("Microsoft® Windows® Operating System", "Microsoft Corporation")
_OFFICE = ("Microsoft Office", "Microsoft Corporation")
PE_INFO: dict[str, tuple[str, str, str, str]] = {
    "cmd.exe": ("Cmd.Exe", "Windows Command Processor", *_MS),
    "powershell.exe": ("PowerShell.EXE", "Windows PowerShell", *_MS),
    "wscript.exe": ("wscript.exe", "Microsoft ® Windows Based Script Host", *_MS),
    "cscript.exe": ("cscript.exe", "Microsoft ® Console Based Script Host", *_MS),
    "mshta.exe": ("MSHTA.EXE", "Microsoft (R) HTML Application host", *_MS),
    "wmic.exe": ("wmic.exe", "WMI Commandline Utility", *_MS),
    "wmiprvse.exe": ("Wmiprvse.exe", "WMI Provider Host", *_MS),
    "rundll32.exe": ("RUNDLL32.EXE", "Windows host process (Rundll32)", *_MS),
    "regsvr32.exe": ("REGSVR32.EXE", "Microsoft(C) Register Server", *_MS),
    "explorer.exe": ("EXPLORER.EXE", "Windows Explorer", *_MS),
    "userinit.exe": ("USERINIT.EXE", "Userinit Logon Application", *_MS),
    "svchost.exe": ("svchost.exe", "Host Process for Windows Services", *_MS),
    "taskhostw.exe": ("taskhostw.exe", "Host Process for Windows Tasks", *_MS),
    "conhost.exe": ("CONHOST.EXE", "Console Window Host", *_MS),
    "searchprotocolhost.exe": ("SearchProtocolHost.exe", "Microsoft Windows Search Protocol Host",
                               *_MS),
    "backgroundtaskhost.exe": ("backgroundTaskHost.exe", "Background Task Host", *_MS),
    "splwow64.exe": ("splwow64.exe", "Print driver host for applications", *_MS),
    "ipconfig.exe": ("ipconfig.exe", "IP Configuration Utility", *_MS),
    "ping.exe": ("ping.exe", "TCP/IP Ping Command", *_MS),
    "net.exe": ("net.exe", "Net Command", *_MS),
    "whoami.exe": ("whoami.exe", "whoami - displays logged on user information", *_MS),
    "gpupdate.exe": ("GPUpdate.exe", "Microsoft® Windows Group Policy Update Utility", *_MS),
    "gpscript.exe": ("GPSCRIPT.EXE", "Group Policy Script Application", *_MS),
    "robocopy.exe": ("robocopy.exe", "Microsoft Robocopy", *_MS),
    "msiexec.exe": ("msiexec.exe", "Windows® installer", *_MS),
    "schtasks.exe": ("schtasks.exe", "Task Scheduler Configuration Tool", *_MS),
    "winword.exe": ("WinWord.exe", "Microsoft Word", *_OFFICE),
    "excel.exe": ("Excel.exe", "Microsoft Excel", *_OFFICE),
    "outlook.exe": ("Outlook.exe", "Microsoft Outlook", *_OFFICE),
    "chrome.exe": ("chrome.exe", "Google Chrome", "Google Chrome", "Google Inc."),
    "acrord32.exe": ("AcroRd32.exe", "Adobe Acrobat Reader DC", "Adobe Acrobat Reader DC",
                     "Adobe Systems Incorporated"),
}
_FILE_VERSION = {_MS[0]: "10.0.16299.15 (WinBuild.160101.0800)", _OFFICE[0]: "16.0.9126.2116",
                 "Google Chrome": "65.0.3325.181", "Adobe Acrobat Reader DC": "18.11.20040.185617"}


@dataclass
class Label:
    """What an attack event is: the chain it belongs to and the ATT&CK techniques its own
    fields show. ``evades`` names those of them the built-in rules cannot see (the event is
    still an attack event); ``family`` is the malware family its content gives away."""

    chain: str
    step: str
    techniques: tuple[str, ...] = ()
    family: str | None = None
    evades: tuple[str, ...] = ()


@dataclass
class Host:
    org_id: str
    name: str  # FQDN, as the Computer field has it
    domain: str  # NetBIOS domain
    ip: str
    user: str  # the primary user's account name
    user_sid: str
    telemetry: str  # 'sysmon' | 'security'
    ps_logging: bool
    server: bool = False
    # long-running processes, started before the simulated half-year
    services: Proc | None = None
    schedule: Proc | None = None  # svchost of the Task Scheduler
    wmiprvse: Proc | None = None
    sessions: dict[int, Proc] = field(default_factory=dict)  # logon day -> Explorer
    outlooks: dict[str, Proc] = field(default_factory=dict)  # Explorer's guid -> Outlook
    pids: set[int] = field(default_factory=set)

    @property
    def short(self) -> str:
        return self.name.split(".")[0]

    @property
    def profile(self) -> str:
        return f"C:\\Users\\{self.user}"


@dataclass
class Proc:
    image: str
    cmdline: str
    pid: int
    guid: str
    user: str  # DOMAIN\name
    user_sid: str
    integrity: str  # Low | Medium | High | System
    cwd: str
    logon_id: str
    started: int = 0  # epoch ms (0: before the simulated half-year)


@dataclass
class Event:
    """One Windows event before it is given a record id and written."""

    ts: int  # epoch milliseconds
    seq: int
    host: Host
    channel: str
    event_id: int
    provider: str
    sid: str  # System/Security UserID
    data: dict
    label: Label | None = None


class Timeline:
    """The events of all hosts, appended in any order (``ts`` orders them when written)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.events: list[Event] = []
        self._seq = 0
        self.iocs: list[dict] = []  # indicators of attack chains (no event, no draw)

    def _add(self, ts: int, host: Host, channel: str, event_id: int, provider: str, sid: str,
             data: dict, label: Label | None) -> Event:
        self._seq += 1
        ev = Event(ts, self._seq, host, channel, event_id, provider, sid, data, label)
        self.events.append(ev)
        return ev

    # -- a user's day: logon, Explorer, Outlook --------------------------------------------
    def session(self, host: Host, day: int) -> Proc:
        """The Explorer of ``host``'s user on ``day``. A user logs on (between 07:40 and 08:50)
        on the first day of a week they work and stays logged on for the rest of it: the logon
        and Explorer's start are logged that day."""
        for d in range(day, day - day % 7 - 1, -1):
            if d in host.sessions:
                return host.sessions[d]
        ts = day_ms(day) + (7 * 3600 + 2400 + self.rng.randrange(4200)) * 1000
        user, sid = f"{host.domain}\\{host.user}", host.user_sid
        winlogon = self.proc(host, f"{SYSTEM32}\\winlogon.exe", "winlogon.exe",
                             "NT AUTHORITY\\SYSTEM", "S-1-5-18")
        winlogon.logon_id = self.logon(host, ts, 2, host.user, sid)
        userinit = self.spawn(host, winlogon, f"{SYSTEM32}\\userinit.exe",
                              f"{SYSTEM32}\\userinit.exe", ts + 900, user=user, sid=sid,
                              integrity="Medium")
        host.sessions[day] = self.spawn(host, userinit, "C:\\Windows\\explorer.exe",
                                        "C:\\Windows\\Explorer.EXE", ts + 1400)
        return host.sessions[day]

    def outlook(self, host: Host, day: int) -> Proc:
        """The user's Outlook, started from Explorer a minute or two after logon."""
        explorer = self.session(host, day)
        if explorer.guid not in host.outlooks:
            ts = explorer.started + 60_000 + self.rng.randrange(120_000)
            host.outlooks[explorer.guid] = self.spawn(
                host, explorer, f"{OFFICE_DIR}\\OUTLOOK.EXE", f'"{OFFICE_DIR}\\OUTLOOK.EXE" ',
                ts, cwd=f"{OFFICE_DIR}\\")
        return host.outlooks[explorer.guid]

    def pid(self, host: Host) -> int:
        """A process id not yet used on ``host`` (ids are not reused in half a year)."""
        while True:
            pid = 4 * self.rng.randrange(100, 16000)
            if pid not in host.pids:
                host.pids.add(pid)
                return pid

    def guid(self, host: Host) -> str:
        r = self.rng
        return (f"{{{_host_key(host)}-{r.getrandbits(16):04x}-{r.getrandbits(16):04x}-"
                f"0000-0010{r.getrandbits(32):08x}}}")

    def proc(self, host: Host, image: str, cmdline: str, user: str, sid: str,
             integrity: str = "System", cwd: str = f"{SYSTEM32}\\") -> Proc:
        """A process that was running before the simulation starts (no event)."""
        return Proc(image, cmdline, self.pid(host), self.guid(host), user, sid, integrity, cwd,
                    "0x3e7")

    def spawn(self, host: Host, parent: Proc, image: str, cmdline: str, ts: int, *,
              user: str | None = None, sid: str | None = None, integrity: str | None = None,
              cwd: str | None = None, label: Label | None = None,
              pe: tuple[str, str, str, str] | None = None, hashes: str | None = None) -> Proc:
        """``parent`` starts ``image``: a Sysmon 1 or Security 4688 event; returns the child."""
        child = Proc(image, cmdline, self.pid(host), self.guid(host), user or parent.user,
                     sid or parent.user_sid, integrity or parent.integrity, cwd or parent.cwd,
                     parent.logon_id, ts)
        if host.telemetry == "sysmon":
            name = image.rsplit("\\", 1)[-1]
            ofn, desc, product, company = pe or PE_INFO.get(name.lower(), ("?", "?", "?", "?"))
            data = {
                "RuleName": "-", "UtcTime": _utc(ts), "ProcessGuid": child.guid,
                "ProcessId": child.pid, "Image": image,
                "FileVersion": _FILE_VERSION.get(product, "?"),
                "Description": desc, "Product": product, "Company": company,
                "OriginalFileName": ofn, "CommandLine": cmdline, "CurrentDirectory": child.cwd,
                "User": child.user, "LogonGuid": _logon_guid(host, child.logon_id),
                "LogonId": child.logon_id, "TerminalSessionId": 0 if child.integrity == "System"
                else 1, "IntegrityLevel": child.integrity,
                "Hashes": hashes or image_hashes(name),
                "ParentProcessGuid": parent.guid, "ParentProcessId": parent.pid,
                "ParentImage": parent.image, "ParentCommandLine": parent.cmdline,
            }
            self._add(ts, host, SYSMON, 1, "Microsoft-Windows-Sysmon", "S-1-5-18", data, label)
        else:
            user_dom, _, user_name = child.user.partition("\\")
            data = {
                "SubjectUserSid": child.user_sid, "SubjectUserName": user_name,
                "SubjectDomainName": user_dom, "SubjectLogonId": child.logon_id,
                "NewProcessId": hex(child.pid), "NewProcessName": image,
                "TokenElevationType": "%%1936" if child.integrity == "System" else "%%1938",
                "ProcessId": hex(parent.pid), "CommandLine": cmdline,
                "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-",
                "TargetLogonId": "0x0", "ParentProcessName": parent.image,
                "MandatoryLabel": _LABELS[child.integrity],
            }
            self._add(ts, host, SECURITY, 4688, "Microsoft-Windows-Security-Auditing",
                      "S-1-5-18", data, label)
        return child

    def script(self, host: Host, proc: Proc, text: str, ts: int, path: str = "",
               label: Label | None = None) -> None:
        """PowerShell logs a script block it runs (4104), in parts when it is long; nothing
        when the host does not log script blocks."""
        if not host.ps_logging:
            return
        block = _uuid(self.rng)
        parts = [text[i:i + PS_PART] for i in range(0, len(text), PS_PART)] or [""]
        for n, part in enumerate(parts, 1):
            data = {"MessageNumber": n, "MessageTotal": len(parts), "ScriptBlockText": part,
                    "ScriptBlockId": block, "Path": path}
            self._add(ts + n - 1, host, POWERSHELL, 4104, "Microsoft-Windows-PowerShell",
                      proc.user_sid, data, label)

    def connect(self, host: Host, proc: Proc, dest_ip: str, port: int, ts: int,
                dest_name: str = "", label: Label | None = None) -> None:
        """A TCP connection (Sysmon 3); Security hosts log none."""
        if host.telemetry != "sysmon":
            return
        data = {"RuleName": "-", "UtcTime": _utc(ts), "ProcessGuid": proc.guid,
                "ProcessId": proc.pid, "Image": proc.image, "User": proc.user,
                "Protocol": "tcp", "Initiated": "true", "SourceIsIpv6": "false",
                "SourceIp": host.ip, "SourceHostname": host.name,
                "SourcePort": 49152 + self.rng.randrange(16000), "SourcePortName": "",
                "DestinationIsIpv6": "false", "DestinationIp": dest_ip,
                "DestinationHostname": dest_name, "DestinationPort": port,
                "DestinationPortName": {80: "http", 443: "https", 445: "microsoft-ds"}.get(
                    port, "")}
        self._add(ts, host, SYSMON, 3, "Microsoft-Windows-Sysmon", "S-1-5-18", data, label)

    def file(self, host: Host, proc: Proc, path: str, ts: int, label: Label | None = None) -> None:
        """A file created (Sysmon 11); Security hosts log none."""
        if host.telemetry != "sysmon":
            return
        data = {"RuleName": "-", "UtcTime": _utc(ts), "ProcessGuid": proc.guid,
                "ProcessId": proc.pid, "Image": proc.image, "TargetFilename": path,
                "CreationUtcTime": _utc(ts)}
        self._add(ts, host, SYSMON, 11, "Microsoft-Windows-Sysmon", "S-1-5-18", data, label)

    def logon(self, host: Host, ts: int, logon_type: int, user: str, sid: str,
              source_ip: str = "-") -> str:
        """A successful logon (Security 4624, Security hosts only); returns the logon id."""
        logon_id = hex(self.rng.randrange(0x10000, 0xFFFFFF))
        if host.telemetry != "security":
            return logon_id
        data = {"SubjectUserSid": "S-1-5-18", "SubjectUserName": f"{host.short}$",
                "SubjectDomainName": host.domain, "SubjectLogonId": "0x3e7",
                "TargetUserSid": sid, "TargetUserName": user, "TargetDomainName": host.domain,
                "TargetLogonId": logon_id, "LogonType": str(logon_type),
                "LogonProcessName": "User32 " if logon_type == 2 else "NtLmSsp ",
                "AuthenticationPackageName": "Negotiate" if logon_type == 2 else "NTLM",
                "WorkstationName": host.short, "LogonGuid": "{00000000-0000-0000-0000-000000000000}",
                "TransmittedServices": "-", "LmPackageName": "-", "KeyLength": "0",
                "ProcessId": "0x2f4" if logon_type == 2 else "0x0",
                "ProcessName": f"{SYSTEM32}\\svchost.exe" if logon_type == 2 else "-",
                "IpAddress": "127.0.0.1" if logon_type == 2 else source_ip,
                "IpPort": "0", "ImpersonationLevel": "%%1833"}
        self._add(ts, host, SECURITY, 4624, "Microsoft-Windows-Security-Auditing", "S-1-5-18",
                  data, None)
        return logon_id


_LABELS = {"Low": "S-1-16-4096", "Medium": "S-1-16-8192", "High": "S-1-16-12288",
           "System": "S-1-16-16384"}


def day_ms(day: int) -> int:
    """Epoch milliseconds of 00:00 UTC on ``day`` (0 = 2018-01-01)."""
    return EPOCH0_MS + day * 86_400_000


@functools.lru_cache(maxsize=256)
def image_hashes(name: str, salt: str = "") -> str:
    """Sysmon's Hashes field for an image (stable per file name, or per ``salt``)."""
    seed = f"threatscope-sim:{name.lower()}:{salt}".encode()
    return (f"SHA1={hashlib.sha1(seed).hexdigest().upper()},"
            f"MD5={hashlib.md5(seed).hexdigest().upper()},"
            f"SHA256={hashlib.sha256(seed).hexdigest().upper()},"
            f"IMPHASH={hashlib.md5(seed[::-1]).hexdigest().upper()}")


def _host_key(host: Host) -> str:
    return hashlib.md5(host.name.encode()).hexdigest()[:8]


def _logon_guid(host: Host, logon_id: str) -> str:
    h = hashlib.md5(f"{host.name}:{logon_id}".encode()).hexdigest()
    return f"{{{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}}}"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


@functools.lru_cache(maxsize=512)
def _date(day: int) -> str:
    return (datetime(2018, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y-%m-%d")


def _clock(ts: int) -> tuple[str, str]:
    """('2018-04-12', '09:13:22') and the milliseconds, for epoch milliseconds ``ts``."""
    day, rem = divmod(ts - EPOCH0_MS, 86_400_000)
    sec, ms = divmod(rem, 1000)
    h, sec = divmod(sec, 3600)
    m, sec = divmod(sec, 60)
    return _date(day), f"{h:02d}:{m:02d}:{sec:02d}.{ms:03d}"


def _utc(ts: int) -> str:
    """Sysmon's UtcTime: '2018-04-12 09:13:22.120'."""
    d, t = _clock(ts)
    return f"{d} {t}"


def iso_time(ts: int, digits: int = 3) -> str:
    """'2018-04-12T09:13:22.120Z' (``digits`` 3 or 6 fraction digits)."""
    d, t = _clock(ts)
    return f"{d}T{t}{'000' if digits == 6 else ''}Z"


# -- JSON lines ------------------------------------------------------------------------------
_PROVIDER_GUID = {
    "Microsoft-Windows-Sysmon": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}",
    "Microsoft-Windows-PowerShell": "{A0C1853B-5C40-4B15-8766-3CF1C58F985A}",
    "Microsoft-Windows-Security-Auditing": "{54849625-5478-4994-A5BA-3E3B0328C30D}",
}
_TASK = {1: "Process Create (rule: ProcessCreate)", 3: "Network connection detected "
         "(rule: NetworkConnect)", 11: "File created (rule: FileCreate)",
         4104: "Execute a Remote Command", 4688: "Process Creation", 4624: "Logon"}
_TASK_ID = {1: 1, 3: 3, 11: 11, 4104: 2, 4688: 13312, 4624: 12544}
_VERSION = {1: 5, 3: 5, 11: 2, 4104: 1, 4688: 2, 4624: 2}


def render(ev: Event, record_id: int, fmt: str) -> str:
    """The event as one JSON line: ``evtx_dump`` (``Event.System`` + ``Event.EventData``, as the
    evtx crate writes a record) or ``winlogbeat`` (ECS, ``winlog.*``; event data as strings)."""
    level = 4  # information; PowerShell logs script blocks as verbose, suspicious ones as warnings
    if ev.event_id == 4104:
        level = 3 if ev.label is not None else 5
    if fmt == "evtx_dump":
        rec = {"Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {"#attributes": {"Name": ev.provider,
                                             "Guid": _PROVIDER_GUID[ev.provider]}},
                "EventID": ev.event_id, "Version": _VERSION[ev.event_id], "Level": level,
                "Task": _TASK_ID[ev.event_id],
                "Opcode": 0 if ev.channel == SYSMON else (15 if ev.event_id == 4104 else 0),
                "Keywords": "0x8020000000000000" if ev.channel == SECURITY
                else "0x8000000000000000",
                "TimeCreated": {"#attributes": {"SystemTime": iso_time(ev.ts, 6)}},
                "EventRecordID": record_id, "Correlation": None,
                "Execution": {"#attributes": {"ProcessID": 4 if ev.channel == SECURITY else 2104,
                                              "ThreadID": 3000 + record_id % 977}},
                "Channel": ev.channel, "Computer": ev.host.name,
                "Security": {"#attributes": {"UserID": ev.sid}} if ev.channel != SECURITY
                else None,
            },
            "EventData": ev.data,
        }}
    else:
        data = {k: ("" if v is None else str(v)) for k, v in ev.data.items()}
        rec = {
            "@timestamp": iso_time(ev.ts),
            "agent": {"type": "winlogbeat", "version": "7.17.9", "hostname": ev.host.short,
                      "name": ev.host.short},
            "ecs": {"version": "1.12.0"},
            "host": {"name": ev.host.name.lower()},
            "event": {"code": str(ev.event_id), "kind": "event", "provider": ev.provider,
                      "created": iso_time(ev.ts + 1500)},
            "log": {"level": {3: "warning", 5: "verbose"}.get(level, "information")},
            "winlog": {
                "channel": ev.channel, "computer_name": ev.host.name, "event_id": ev.event_id,
                "provider_name": ev.provider, "provider_guid": _PROVIDER_GUID[ev.provider],
                "record_id": record_id, "api": "wineventlog", "task": _TASK[ev.event_id],
                "opcode": "Info", "version": _VERSION[ev.event_id],
                "process": {"pid": 4 if ev.channel == SECURITY else 2104,
                            "thread": {"id": 3000 + record_id % 977}},
                "user": {"identifier": ev.sid} if ev.channel != SECURITY else None,
                "event_data": data,
            },
        }
        if rec["winlog"]["user"] is None:
            del rec["winlog"]["user"]
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
