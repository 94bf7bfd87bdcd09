"""Simulated endpoint telemetry: Windows events of the organisations' hosts, with ground truth.

    truth = write_endpoints(out, rng, scale, {"2018Q1": (0, 90), "2018Q2": (90, 181)})

``world.simulate`` calls this after writing the web logs (same ``random.Random``, so the same
seed gives the same bytes) and puts ``truth`` into ``ground_truth.json`` as ``endpoint``.
Files written, one per organisation for the whole span (organisations without endpoint
telemetry get none; few files, as ingest pays a fixed cost per Windows JSON file)::

    <org_id>/endpoint/winlogbeat-20180101-20180630.ndjson[.gz]   Winlogbeat 7 (ECS, winlog.*)
    <org_id>/endpoint/wef-events-20180101-20180630.jsonl         evtx_dump JSON lines of a Windows
                                                 Event Forwarding collector (Event.System/EventData)

Most events are benign background (logons, Explorer, Office opening documents, Outlook,
browsers, services, scheduled backups, administrators' cmd and PowerShell, a monthly inventory
script long enough to be logged in several 4104 parts). Attack chains (``endpoint_attacks``)
are fewer, and the period quarter has more of the PowerShell ones than the baseline.

The truth lists every attack event (file, line, host, record id) with the ATT&CK techniques
its own fields show and those of them that are deliberately hard for the built-in rules, and
counts them per quarter, technique and organisation; benign events are never in it. Macro
documents the chains open are listed under ``documents`` (name, path on the host, the command
the macro starts): where an Office document writer would create them.
"""

from __future__ import annotations

import gzip
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

from threatscope import attack
from threatscope.simulate.endpoint_attacks import KINDS, MacroDocument
from threatscope.simulate.hosts import (
    OFFICE_DIR,
    POWERSHELL_EXE,
    SYSTEM32,
    Event,
    Host,
    Timeline,
    day_ms,
    iso_time,
    render,
)


def _execution(technique: str) -> bool:
    """An execution technique, as the analysis counts them: ATT&CK's tactics include it
    (shares are among these)."""
    return "execution" in attack.technique(technique)["tactics"]


@dataclass(frozen=True)
class HostSpec:
    name: str
    telemetry: str  # 'sysmon' | 'security'
    ps_logging: bool
    server: bool = False
    admin: bool = False  # its user administers machines (cmd, PowerShell)


@dataclass(frozen=True)
class Fleet:
    """An organisation's monitored Windows hosts and how their events reach the MDR."""

    domain: str  # DNS domain
    shipper: str  # 'winlogbeat' | 'evtx_dump'
    hosts: tuple[HostSpec, ...]
    gz: bool = False


S, W = "sysmon", "security"
FLEETS: dict[str, Fleet] = {
    "org01": Fleet("helixbio.local", "winlogbeat", (
        HostSpec("WS-0142", S, True), HostSpec("WS-0157", S, True), HostSpec("WS-0203", S, False),
        HostSpec("LAB-PC07", S, True), HostSpec("SRV-FS01", S, True, server=True))),
    "org02": Fleet("ledgerline.local", "evtx_dump", (
        HostSpec("LL-DESK01", W, True), HostSpec("LL-DESK02", W, True, admin=True),
        HostSpec("LL-DESK05", W, False))),
    "org03": Fleet("northwind.corp", "winlogbeat", (
        HostSpec("NW-POS-MGR1", S, False), HostSpec("NW-OFFICE-03", S, False),
        HostSpec("NW-OFFICE-11", S, True)), gz=True),
    "org04": Fleet("dpw.gov.local", "evtx_dump", (
        HostSpec("DPW-WS-2231", S, True), HostSpec("DPW-WS-2240", S, True),
        HostSpec("DPW-WS-2302", W, True), HostSpec("DPW-APP01", S, True, server=True))),
    "org05": Fleet("eastlake.local", "winlogbeat", (
        HostSpec("EL-ADMIN-12", S, True, admin=True), HostSpec("EL-FIN-04", S, True),
        HostSpec("EL-LIB-PC2", W, False))),
    "org06": Fleet("kestrel.local", "evtx_dump", (
        HostSpec("KP-ENG-07", W, True), HostSpec("KP-OFFICE-02", W, True))),
    "org07": Fleet("harbormutual.local", "winlogbeat", (
        HostSpec("HM-TELLER-14", S, True), HostSpec("HM-TELLER-22", S, True),
        HostSpec("HM-LOAN-03", S, True), HostSpec("HM-OPS-09", S, True, admin=True),
        HostSpec("HM-SRV-APP2", S, True, server=True)), gz=True),
    "org08": Fleet("stbrigid.local", "evtx_dump", (
        HostSpec("SB-NURSE-01", S, True), HostSpec("SB-ADMIN-06", S, True, admin=True),
        HostSpec("SB-RAD-03", S, False))),
    "org10": Fleet("ashford.local", "winlogbeat", (
        HostSpec("ASH-CLERK-2", S, False), HostSpec("ASH-IT-01", S, True, admin=True))),
}

_FIRST = ["anna", "ben", "carla", "dev", "erin", "farid", "grace", "hugo", "ines", "jon", "kim",
          "lena", "marc", "nora", "omar", "petra", "raj", "sofia", "tom", "vera"]
_LAST = ["adams", "baker", "chen", "diaz", "evans", "fischer", "garcia", "hughes", "ito",
         "jensen", "khan", "lopez", "moreau", "novak", "okafor", "patel", "quinn", "rossi"]
_DOCS = ["Minutes {d}", "Budget {y} v{n}", "Project plan", "Timesheet week {n}", "Report {d}",
         "Supplier list", "Rota {d}", "Travel request {n}", "Meeting notes {d}"]


def write_endpoints(out: Path, rng: random.Random, scale: float,
                    quarters: dict[str, tuple[int, int]], iocs: list[dict] | None = None) -> dict:
    """Simulate the fleets' Windows events over ``quarters`` (name -> [first day, end day) of
    2018), write them under ``out`` and return the truth (``ground_truth.json["endpoint"]``).
    ``iocs``, if given, receives the network indicators of the attack chains (see
    ``Timeline.iocs``)."""
    tl = Timeline(rng)
    fleets = {org: _make_hosts(rng, tl, org, f) for org, f in FLEETS.items()}
    days = max(d1 for _, d1 in quarters.values())
    for org, hosts in fleets.items():
        for host in hosts:
            _background(tl, rng, host, days, scale, FLEETS[org])
    chains, documents = _attacks(tl, rng, fleets, scale, quarters)
    if iocs is not None:
        iocs.extend(tl.iocs)
    files, events = _write(out, rng, tl, quarters)
    events += write_documents(out, documents, quarters)
    return _truth(files, events, chains, documents, fleets, quarters)


def _make_hosts(rng: random.Random, tl: Timeline, org: str, fleet: Fleet) -> list[Host]:
    dom = fleet.domain.split(".")[0].upper()[:15]
    sid = f"S-1-5-21-{rng.randrange(10**9, 4 * 10**9)}-{rng.randrange(10**9, 4 * 10**9)}-" \
          f"{rng.randrange(10**9, 4 * 10**9)}"
    net = f"10.{rng.randrange(1, 250)}.{rng.randrange(0, 250)}."
    hosts = []
    for i, spec in enumerate(fleet.hosts):
        user = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}" if not spec.server else "svc-backup"
        host = Host(org, f"{spec.name}.{fleet.domain}", dom, f"{net}{20 + 7 * i}", user,
                    f"{sid}-{rng.randrange(1100, 9000)}", spec.telemetry, spec.ps_logging,
                    spec.server)
        system = ("NT AUTHORITY\\SYSTEM", "S-1-5-18")
        host.services = tl.proc(host, f"{SYSTEM32}\\services.exe", f"{SYSTEM32}\\services.exe",
                                *system)
        host.schedule = tl.proc(host, f"{SYSTEM32}\\svchost.exe",
                                f"{SYSTEM32}\\svchost.exe -k netsvcs -p -s Schedule", *system)
        host.wmiprvse = tl.proc(host, f"{SYSTEM32}\\wbem\\WmiPrvSE.exe",
                                f"{SYSTEM32}\\wbem\\wmiprvse.exe -secured -Embedding",
                                "NT AUTHORITY\\NETWORK SERVICE", "S-1-5-20")
        hosts.append(host)
    return hosts


# -- benign background ----------------------------------------------------------------------
def _background(tl: Timeline, rng: random.Random, host: Host, days: int, scale: float,
                fleet: Fleet) -> None:
    spec = next(s for s in fleet.hosts if host.name.startswith(s.name + "."))
    inventory = _inventory_script(rng, fleet.domain) if host.server else ""
    for day in range(days):
        weekend = (date(2018, 1, 1) + timedelta(days=day)).weekday() >= 5
        t0 = day_ms(day)
        if host.server:
            if rng.random() < min(1.0, scale):
                _nightly_backup(tl, rng, host, t0 + (2 * 3600 + rng.randrange(600)) * 1000)
            # a monthly inventory (a script long enough to be logged in parts); always the first
            if (date(2018, 1, 1) + timedelta(days=day)).day == 1 and (
                    day == 0 or rng.random() < scale):
                _inventory(tl, rng, host, t0 + (3 * 3600 + rng.randrange(600)) * 1000, inventory)
        mean = (0.2 if weekend else 1.0) * scale * (0.5 if host.server else 1.0)
        n = int(mean) + (rng.random() < mean - int(mean))
        if not n:
            continue
        for ts in sorted(t0 + (9 * 3600 + rng.randrange(8 * 3600)) * 1000 for _ in range(n)):
            if host.server:
                _system(tl, rng, host, day, ts)
                continue
            act = rng.choices(_ACTIVITIES, _WEIGHTS)[0]
            if act in (_admin_cmd, _admin_powershell) and not spec.admin and rng.random() < 0.7:
                act = _browser
            act(tl, rng, host, day, max(ts, tl.session(host, day).started + 30_000))


def _browser(tl: Timeline, rng, host: Host, day: int, ts: int) -> None:
    exe = "C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe"
    chrome = tl.spawn(host, tl.session(host, day), exe, f'"{exe}" ', ts,
                      cwd="C:\\Program Files (x86)\\Google\\Chrome\\Application\\65.0.3325.181\\")
    tl.connect(host, chrome, f"203.0.113.{rng.randrange(2, 250)}", 443, ts + 800)
    if rng.random() < 0.3:
        name = rng.choice(["brochure", "datasheet", "statement", "agenda"])
        tl.file(host, chrome, f"{host.profile}\\Downloads\\{name}.pdf", ts + 20_000)


def _office_document(tl: Timeline, rng, host: Host, day: int, ts: int) -> None:
    d = (date(2018, 1, 1) + timedelta(days=day)).isoformat()
    name = rng.choice(_DOCS).format(d=d, y=2018, n=rng.randrange(1, 40))
    app, ext = rng.choice([("WINWORD.EXE", "docx"), ("WINWORD.EXE", "docx"), ("EXCEL.EXE", "xlsx")])
    path = f"{host.profile}\\Documents\\{name}.{ext}"
    args = f'/n "{path}" /o ""' if app == "WINWORD.EXE" else f'"{path}"'
    office = tl.spawn(host, tl.session(host, day), f"{OFFICE_DIR}\\{app}",
                      f'"{OFFICE_DIR}\\{app}" {args}', ts, cwd=f"{host.profile}\\Documents\\")
    if rng.random() < 0.25:  # printing: Office starts the 64-bit print driver host
        tl.spawn(host, office, "C:\\Windows\\splwow64.exe", "C:\\Windows\\splwow64.exe 8192",
                 ts + 60_000 + rng.randrange(600_000))


def _outlook(tl: Timeline, rng, host: Host, day: int, ts: int) -> None:
    outlook = tl.outlook(host, day)
    ts = max(ts, outlook.started + 10_000)
    cache = (f"{host.profile}\\AppData\\Local\\Microsoft\\Windows\\INetCache\\Content.Outlook\\"
             f"{''.join(rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ0123456789') for _ in range(8))}")
    r = rng.random()
    if r < 0.4:  # a link in a mail
        exe = "C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe"
        tl.spawn(host, outlook, exe, f'"{exe}" -- "https://intranet.{host.name.split(".", 1)[1]}'
                 f'/news/{rng.randrange(100, 999)}"', ts)
    elif r < 0.8:  # an attachment
        app, ext = rng.choice([("EXCEL.EXE", "xlsx"), ("WINWORD.EXE", "docx")])
        path = f"{cache}\\{rng.choice(['Q2 figures', 'Agenda', 'Rota', 'Offer'])}.{ext}"
        args = f'/n "{path}" /o ""' if app == "WINWORD.EXE" else f'"{path}"'
        tl.spawn(host, outlook, f"{OFFICE_DIR}\\{app}", f'"{OFFICE_DIR}\\{app}" {args}', ts,
                 cwd=f"{cache}\\")
    else:
        exe = "C:\\Program Files (x86)\\Adobe\\Acrobat Reader DC\\Reader\\AcroRd32.exe"
        tl.spawn(host, outlook, exe, f'"{exe}" "{cache}\\invoice-{rng.randrange(1000, 9999)}.pdf"',
                 ts)


def _system(tl: Timeline, rng, host: Host, day: int, ts: int) -> None:
    """Services, scheduled-task hosts, the search indexer, SMB to the file server."""
    services = host.services
    pick = rng.randrange(4)
    if pick == 0:
        svc = rng.choice(["-k netsvcs -p -s BITS", "-k LocalServiceNetworkRestricted -p -s lmhosts",
                          "-k wsappx -p -s ClipSVC", "-k LocalService -p -s W32Time"])
        tl.spawn(host, services, f"{SYSTEM32}\\svchost.exe", f"{SYSTEM32}\\svchost.exe {svc}", ts)
    elif pick == 1:
        tl.spawn(host, host.schedule, f"{SYSTEM32}\\taskhostw.exe", "taskhostw.exe", ts)
    elif pick == 2:
        indexer = tl.proc(host, f"{SYSTEM32}\\SearchIndexer.exe",
                          f"{SYSTEM32}\\SearchIndexer.exe /Embedding", "NT AUTHORITY\\SYSTEM",
                          "S-1-5-18")
        tl.spawn(host, indexer, f"{SYSTEM32}\\SearchProtocolHost.exe",
                 f'"{SYSTEM32}\\SearchProtocolHost.exe" Global\\UsGthrFltPipeMssGthrPipe'
                 f'{rng.randrange(1, 99)}_ Global\\UsGthrCtrlFltPipeMssGthrPipe{rng.randrange(1, 99)} '
                 '1 -2147483646 "Software\\Microsoft\\Windows Search" '
                 '"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT; MS Search 4.0 Robot)" '
                 '"C:\\ProgramData\\Microsoft\\Search\\Data\\Temp\\usgthrsvc" "DownLevelDaemon" ',
                 ts)
    else:
        tl.connect(host, services, f"10.0.0.{rng.randrange(2, 20)}", 445, ts)


def _admin_cmd(tl: Timeline, rng, host: Host, day: int, ts: int) -> None:
    cmd = tl.spawn(host, tl.session(host, day), f"{SYSTEM32}\\cmd.exe",
                   f'"{SYSTEM32}\\cmd.exe" ', ts, cwd=f"{host.profile}\\")
    tl.spawn(host, cmd, f"{SYSTEM32}\\conhost.exe", "\\??\\C:\\Windows\\system32\\conhost.exe "
             "0xffffffff -ForceV1", ts + 40)
    t = ts + 5000
    for _ in range(rng.randrange(1, 4)):
        t += rng.randrange(5000, 90_000)
        line = rng.choice([
            "ipconfig  /all", "ping  -n 2 fs01", "net  use", "gpupdate  /force", "whoami",
            "wmic  logicaldisk get caption,freespace,size", "wmic  qfe list brief",
            "cscript  //nologo C:\\Windows\\System32\\slmgr.vbs /dli",
            "rundll32.exe  shell32.dll,Control_RunDLL desk.cpl",
            f"rundll32  printui.dll,PrintUIEntry /in /n\\\\printsrv\\{rng.choice(['HP-2F', 'Ricoh-3'])}",
            'powershell  -NoProfile -Command "Get-Service -Name Spooler | Restart-Service"',
        ])
        exe = line.split(" ")[0]
        image = {"wmic": f"{SYSTEM32}\\wbem\\WMIC.exe", "cscript": f"{SYSTEM32}\\cscript.exe",
                 "rundll32.exe": f"{SYSTEM32}\\rundll32.exe", "rundll32": f"{SYSTEM32}\\rundll32.exe",
                 "powershell": POWERSHELL_EXE}.get(exe, f"{SYSTEM32}\\{exe}.exe")
        child = tl.spawn(host, cmd, image, line, t)
        if exe == "powershell":
            tl.script(host, child, line.split('"')[1], t + 300)


_TYPED = [
    "Get-Service | Where-Object {$_.Status -eq 'Running'}",
    "Get-Process | Sort-Object CPU -Descending | Select-Object -First 10",
    "Test-NetConnection fs01 -Port 445",
    "Get-WmiObject -Class Win32_LogicalDisk | Select-Object DeviceID, FreeSpace",
    "Get-EventLog -LogName System -Newest 50 | Where-Object {$_.EntryType -eq 'Error'}",
    "Get-ChildItem C:\\Temp -Recurse | Where-Object {$_.LastWriteTime -lt (Get-Date).AddDays(-30)}"
    " | Remove-Item -WhatIf",
    "Get-HotFix | Sort-Object InstalledOn -Descending | Select-Object -First 5",
    "Restart-Service -Name Spooler -Force",
]


def _admin_powershell(tl: Timeline, rng, host: Host, day: int, ts: int) -> None:
    ps = tl.spawn(host, tl.session(host, day), POWERSHELL_EXE, f'"{POWERSHELL_EXE}" ', ts,
                  cwd=f"{host.profile}\\")
    t = ts + 3000
    tl.script(host, ps, "{ Set-StrictMode -Version 1; $_.PSMessageDetails }", t)
    for _ in range(rng.randrange(1, 4)):
        t += rng.randrange(10_000, 120_000)
        if rng.random() < 0.15:  # fetches a tool for later: a download that runs nothing
            site = f"intranet.{host.name.split('.', 1)[1]}"
            text = (f"Invoke-WebRequest -Uri 'https://{site}/tools/agent.zip' -OutFile "
                    "\"$env:TEMP\\agent.zip\"; Expand-Archive -Path \"$env:TEMP\\agent.zip\" "
                    "-DestinationPath 'C:\\Program Files\\Agent' -Force")
        else:
            text = rng.choice(_TYPED)
        tl.script(host, ps, text, t)


def _rare(tl: Timeline, rng, host: Host, day: int, ts: int) -> None:
    explorer = tl.session(host, day)
    pick = rng.randrange(3)
    if pick == 0:  # an installation: the package registers its control
        msi = tl.spawn(host, explorer, f"{SYSTEM32}\\msiexec.exe",
                       '"C:\\Windows\\System32\\msiexec.exe" /i "\\\\fs01\\software\\'
                       'ContosoViewer.msi"', ts)
        tl.spawn(host, msi, f"{SYSTEM32}\\regsvr32.exe",
                 'regsvr32.exe /s "C:\\Program Files (x86)\\Contoso Viewer\\cviewer.ocx"',
                 ts + 40_000)
    elif pick == 1:  # a vendor's setup front end
        tl.spawn(host, explorer, f"{SYSTEM32}\\mshta.exe",
                 '"C:\\Windows\\System32\\mshta.exe" "C:\\Program Files (x86)\\Contoso\\Setup\\'
                 'welcome.hta" ', ts)
    else:  # the logon script
        gp = tl.proc(host, f"{SYSTEM32}\\gpscript.exe", "gpscript.exe /Logon",
                     explorer.user, explorer.user_sid, "Medium")
        tl.spawn(host, gp, f"{SYSTEM32}\\wscript.exe",
                 f'"{SYSTEM32}\\WScript.exe" "\\\\{host.name.split(".", 1)[1]}\\NETLOGON\\'
                 'drives.vbs" ', ts)


_ACTIVITIES = [_browser, _office_document, _outlook, _system, _admin_cmd, _admin_powershell,
               _rare]
_WEIGHTS = [30, 22, 22, 12, 6, 6, 2]


def _nightly_backup(tl: Timeline, rng, host: Host, ts: int) -> None:
    # the date in the target folder is cut out of %date%, as backup scripts do
    cmd = tl.spawn(host, host.schedule, f"{SYSTEM32}\\cmd.exe",
                   "C:\\Windows\\system32\\cmd.exe /c robocopy D:\\Shares "
                   "\\\\nas01\\backup\\%date:~-4,4%-%date:~-7,2% /MIR /R:1 /W:1 /NP",
                   ts, user=f"{host.domain}\\svc-backup", sid=host.user_sid, integrity="High")
    tl.spawn(host, cmd, f"{SYSTEM32}\\Robocopy.exe", "robocopy  D:\\Shares \\\\nas01\\backup\\"
             f"2018-{rng.randrange(1, 13):02d} /MIR /R:1 /W:1 /NP", ts + 200)


def _inventory(tl: Timeline, rng, host: Host, ts: int, script: str) -> None:
    path = "C:\\ProgramData\\IT\\Get-Inventory.ps1"
    ps = tl.spawn(host, host.schedule, POWERSHELL_EXE,
                  f'powershell.exe -NoProfile -ExecutionPolicy Bypass -File "{path}"', ts)
    tl.script(host, ps, script, ts + 1500, path=path)


def _inventory_script(rng: random.Random, domain: str) -> str:
    """An administrator's inventory script, about 40,000 characters (logged in three parts)."""
    head = (f"<#\n.SYNOPSIS\n  Monthly inventory of {domain} servers: disks, services, hotfixes,"
            " software, local administrators.\n#>\n[CmdletBinding()]\nparam(\n  [string]"
            f"$ReportUri = 'https://cmdb.{domain}/api/inventory',\n  [int]$MinFreeGB = 20\n)\n"
            "$ErrorActionPreference = 'Stop'\n$report = [ordered]@{Host = $env:COMPUTERNAME; "
            "Taken = (Get-Date).ToString('o')}\n")
    funcs = []
    for name, body in [
        ("Get-DiskReport", "Get-WmiObject Win32_LogicalDisk -Filter 'DriveType=3' | ForEach-Object "
         "{ [pscustomobject]@{Drive=$_.DeviceID; FreeGB=[math]::Round($_.FreeSpace/1GB,1); "
         "Low=($_.FreeSpace/1GB -lt $MinFreeGB)} }"),
        ("Get-ServiceReport", "Get-Service | Where-Object {$_.StartType -eq 'Automatic' -and "
         "$_.Status -ne 'Running'} | Select-Object Name, DisplayName, Status"),
        ("Get-HotfixReport", "Get-HotFix | Select-Object HotFixID, InstalledOn"),
        ("Get-AdminReport", "Get-LocalGroupMember -Group Administrators | Select-Object Name, "
         "PrincipalSource"),
    ]:
        funcs.append(f"function {name} {{\n  [CmdletBinding()] param()\n  {body}\n}}\n")
    baseline = ["$baseline = @{"]
    vendors = ["Contoso", "Fabrikam", "Northwind", "Adventure Works", "Litware", "Tailspin"]
    products = ["Viewer", "Agent", "Client", "Backup", "Scanner", "Reporting", "Runtime", "Tools"]
    size = 0
    while size < 36_000:
        baseline.append(f"  '{rng.choice(vendors)} {rng.choice(products)} "
                        f"{rng.randrange(1, 12)}.{rng.randrange(0, 10)}' = "
                        f"'{rng.randrange(1, 12)}.{rng.randrange(0, 10)}.{rng.randrange(100, 9999)}'")
        size += len(baseline[-1]) + 1
    baseline.append("}\n")
    tail = ("function Get-SoftwareReport {\n  $keys = 'HKLM:\\Software\\Microsoft\\Windows\\"
            "CurrentVersion\\Uninstall\\*'\n  Get-ItemProperty $keys | Where-Object "
            "{$_.DisplayName} | ForEach-Object {\n    $want = $baseline[$_.DisplayName]\n"
            "    [pscustomobject]@{Name=$_.DisplayName; Version=$_.DisplayVersion; "
            "Expected=$want}\n  }\n}\n"
            "$report.Disks = Get-DiskReport\n$report.Services = Get-ServiceReport\n"
            "$report.Hotfixes = Get-HotfixReport\n$report.Admins = Get-AdminReport\n"
            "$report.Software = Get-SoftwareReport\n"
            "Invoke-RestMethod -Uri $ReportUri -Method Post -UseDefaultCredentials "
            "-ContentType 'application/json' -Body ($report | ConvertTo-Json -Depth 4)\n")
    return head + "".join(funcs) + "\n".join(baseline) + tail


# -- attacks ----------------------------------------------------------------------------------
@dataclass
class _ChainInfo:
    id: str
    kind: str
    org_id: str
    host: str
    quarter: str
    started: str
    family: str | None


def _attacks(tl: Timeline, rng: random.Random, fleets: dict[str, list[Host]], scale: float,
             quarters: dict[str, tuple[int, int]]
             ) -> tuple[list[_ChainInfo], list[MacroDocument]]:
    workstations = [h for hosts in fleets.values() for h in hosts if not h.server]
    chains: list[_ChainInfo] = []
    documents: list[MacroDocument] = []
    for q, (d0, d1) in quarters.items():
        weekdays = [d for d in range(d0, d1)
                    if (date(2018, 1, 1) + timedelta(days=d)).weekday() < 5]
        for kind, spec in KINDS.items():
            n = spec.counts.get(q, 0)
            used = {c.org_id + c.host for c in chains if c.kind == kind}
            for i in range(max(1, round(n * scale)) if n else 0):
                pool = [h for h in workstations if spec.needs(h)
                        and not (spec.distinct_hosts and h.org_id + h.short in used)]
                host = rng.choice(pool)
                used.add(host.org_id + host.short)
                day = rng.choice(weekdays)
                ts = day_ms(day) + (9 * 3600 + rng.randrange(7 * 3600)) * 1000
                chain = f"{q}-{kind}-{i + 1:02d}"
                peers = [h for h in fleets[host.org_id] if h is not host]
                doc = spec.build(tl, rng, host, ts, chain, peers)
                if doc is not None:
                    documents.append(doc)
                chains.append(_ChainInfo(chain, kind, host.org_id, host.short, q,
                                         iso_time(ts), spec.family))
    return chains, documents


# -- files ------------------------------------------------------------------------------------
def _quarter_of(ts: int, quarters: dict[str, tuple[int, int]]) -> str:
    day = (ts - day_ms(0)) // 86_400_000
    return next(q for q, (d0, d1) in quarters.items() if d0 <= day < d1)


def _write(out: Path, rng: random.Random, tl: Timeline, quarters: dict[str, tuple[int, int]]
           ) -> tuple[dict[str, dict], list[dict]]:
    """Write each organisation's events into one file, in time order; record ids count up per
    host and channel. Returns (files, the attack events with where they were written)."""
    by_org: dict[str, list[Event]] = defaultdict(list)
    for ev in tl.events:
        by_org[ev.host.org_id].append(ev)
    first, end = min(d0 for d0, _ in quarters.values()), max(d1 for _, d1 in quarters.values())
    span = "-".join((date(2018, 1, 1) + timedelta(days=d)).strftime("%Y%m%d")
                    for d in (first, end - 1))
    files: dict[str, dict] = {}
    attack: list[dict] = []
    for org in sorted(by_org):
        fleet = FLEETS[org]
        evs = sorted(by_org[org], key=lambda e: (e.ts, e.seq))
        record: dict[tuple[str, str], int] = {}
        for host, channel in sorted({(e.host.name, e.channel) for e in evs}):
            record[(host, channel)] = rng.randrange(1000, 400_000)
        lines: dict[str, list[str]] = defaultdict(list)
        name = (f"winlogbeat-{span}.ndjson" + (".gz" if fleet.gz else "")
                if fleet.shipper == "winlogbeat" else f"wef-events-{span}.jsonl")
        for ev in evs:
            q = _quarter_of(ev.ts, quarters)
            key = (ev.host.name, ev.channel)
            record[key] += 1
            rel = f"{org}/endpoint/{name}"
            lines[rel].append(render(ev, record[key], fleet.shipper))
            if ev.label is not None:
                lab = ev.label
                attack.append({
                    "file": rel, "line": len(lines[rel]), "org_id": org,
                    "host": ev.host.short, "channel": ev.channel, "event_id": ev.event_id,
                    "record_id": record[key], "quarter": q,
                    "ts": iso_time(ev.ts),
                    "chain": lab.chain, "step": lab.step, "techniques": list(lab.techniques),
                    "evades": list(lab.evades), "family": lab.family,
                })
        for rel, ls in lines.items():
            data = ("\n".join(ls) + "\n").encode("utf-8")
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith(".gz"):
                with path.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f,
                                                         mtime=0) as g:
                    g.write(data)
            else:
                path.write_bytes(data)
            files[rel] = {"org_id": org, "format": fleet.shipper, "lines": len(ls),
                          "events": len(ls)}
    return files, attack


# -- macro documents --------------------------------------------------------------------------
# Word and Excel run these entry points when a document is opened
_ENTRY = {"WINWORD.EXE": ("ThisDocument", "Document_Open"),
          "EXCEL.EXE": ("ThisWorkbook", "Workbook_Open")}
# what a macro that downloads by itself shows (its text names a downloader)
_DOWNLOADS = re.compile(r"URLDownloadToFile|XMLHTTP|Net\.WebClient|DownloadFile|DownloadString",
                        re.I)


def write_documents(out: Path, documents: list[MacroDocument],
                    quarters: dict[str, tuple[int, int]]) -> list[dict]:
    """Write the macro documents the chains opened (``<org>/documents/<name>``, dated when the
    Office process opened them) and return them as attack events of the truth: one document
    is one event that shows T1204.002 (a malicious file the user opened) and T1059.005 (VBA),
    and T1105 when its macro's text downloads. PowerPoint lures are not written (the writer
    makes Word and Excel files; PowerPoint runs no macro on opening without an add-in): their
    events still name them."""
    from threatscope.simulate import office

    events = []
    for doc in documents:
        if doc.application not in _ENTRY or not doc.runs:
            continue
        module, entry = _ENTRY[doc.application]
        code = _macro(entry, doc)
        rel = f"{doc.org_id}/documents/{doc.name}"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write = office.write_xls if doc.application == "EXCEL.EXE" else office.write_doc
        write(path, {module: code})
        os.utime(path, (doc.opened / 1000, doc.opened / 1000))
        techniques = ["T1204.002", "T1059.005"] + (["T1105"] if _DOWNLOADS.search(code) else [])
        events.append({
            "file": rel, "line": 1, "org_id": doc.org_id, "host": doc.host, "channel": None,
            "event_id": None, "record_id": None, "quarter": _quarter_of(doc.opened, quarters),
            "ts": iso_time(doc.opened), "chain": doc.chain, "step": "macro document",
            "techniques": techniques, "evades": [], "family": None})
    return events


def _macro(entry: str, doc: MacroDocument) -> str:
    """VBA that starts ``doc.runs`` when the document opens: through WScript.Shell, or WMI's
    Win32_Process.Create. An Emotet-style macro hides its command behind a junk token that
    Replace takes out."""
    command = doc.runs
    junk = ""
    if doc.family == "emotet":
        junk = "]b[" if "]b[" not in command else "]q["
        command = junk.join(command[i:i + 3] for i in range(0, len(command), 3))
    parts = [command[i:i + 120].replace('"', '""') for i in range(0, len(command), 120)]
    lines = [f"Private Sub {entry}()", "    Dim c As String", f'    c = "{parts[0]}"']
    lines += [f'    c = c & "{p}"' for p in parts[1:]]
    if junk:
        lines.append(f'    c = Replace(c, "{junk}", "")')
    if doc.via == "wmi":
        lines.append(r'    GetObject("winmgmts:\\.\root\cimv2:Win32_Process").Create c, Null, '
                     "Null, pid")
    else:
        lines.append('    CreateObject("WScript.Shell").Run c, 0, False')
    lines.append("End Sub")
    return "\r\n".join(lines) + "\r\n"


# -- truth ------------------------------------------------------------------------------------
def _families(events: list[dict]) -> dict[str, dict]:
    """Per malware family: the events that show it (and of those the ones the rules are
    expected to see), the chains (infections) and hosts they belong to."""
    out: dict[str, dict] = {}
    for f in sorted({e["family"] for e in events if e["family"]}):
        fe = [e for e in events if e["family"] == f]
        out[f] = {"events": len(fe),
                  "expected_detected": sum(1 for e in fe if not e["evades"]),
                  "infections": len({e["chain"] for e in fe}),
                  "hosts": sorted({f"{e['org_id']}/{e['host']}" for e in fe})}
    return out


def _truth(files: dict[str, dict], events: list[dict], chains: list[_ChainInfo],
           documents: list[MacroDocument], fleets: dict[str, list[Host]],
           quarters: dict[str, tuple[int, int]]) -> dict:
    total = sum(f["events"] for f in files.values())
    per_quarter = {}
    for q in quarters:
        qe = [e for e in events if e["quarter"] == q]
        tech: dict[str, dict[str, int]] = {}
        orgs: dict[str, Counter] = defaultdict(Counter)
        for e in qe:
            for t in e["techniques"]:
                d = tech.setdefault(t, {"events": 0, "expected_detected": 0})
                d["events"] += 1
                if t not in e["evades"]:
                    d["expected_detected"] += 1
                    orgs[e["org_id"]][t] += 1
        exe = {t: d["expected_detected"] for t, d in tech.items() if _execution(t)}
        s = sum(exe.values())
        per_quarter[q] = {
            "chains": dict(Counter(c.kind for c in chains if c.quarter == q)),
            "attack_events": len(qe),
            "techniques": dict(sorted(tech.items())),
            "execution_shares": {t: round(n / s, 4) for t, n in sorted(exe.items())} if s else {},
            "families": _families(qe),
            "orgs": {o: dict(sorted(c.items())) for o, c in sorted(orgs.items())},
        }
    return {
        "about": ("Windows events of the organisations' hosts. 'events' lists every attack "
                  "event (benign events are never listed) with the ATT&CK techniques its own "
                  "fields show; 'evades' names those the built-in rules are not expected to see "
                  "(a renamed powershell.exe on a host that logs Security 4688, which has no "
                  "original file name). Per quarter, techniques count events (an event counts "
                  "once for each technique it shows); 'expected_detected' leaves out the "
                  "evading ones; execution_shares divide each execution technique's "
                  "expected_detected by their sum; families count, per malware family, the "
                  "events whose (recovered) content shows it, the chains and the hosts."),
        "execution_techniques": sorted({t for e in events for t in e["techniques"]
                                        if _execution(t)}),
        "hosts": {org: [{"host": h.short, "computer": h.name, "telemetry": h.telemetry,
                         "powershell_logging": h.ps_logging, "server": h.server,
                         "shipper": FLEETS[org].shipper} for h in hosts]
                  for org, hosts in fleets.items()},
        "files": dict(sorted(files.items())),
        "totals": {"files": len(files), "events": total,
                   "attack_events": sum(1 for e in events if e["event_id"] is not None),
                   "benign_events": total - sum(1 for e in events if e["event_id"] is not None),
                   "documents": sum(1 for e in events if e["step"] == "macro document"),
                   "chains": len(chains)},
        "quarters": per_quarter,
        "chains": [asdict(c) for c in chains],
        "documents": [asdict(d) for d in documents],
        "events": sorted(events, key=lambda e: (e["file"], e["line"])),
    }
