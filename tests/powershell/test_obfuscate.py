"""The obfuscation families produce what they claim: decoded back (by parsing our own output with
regexes here, never by running it) they give the input; deterministic per seed."""

import base64
import random
import re
import zlib

import pytest

from threatscope.powershell import obfuscate as ob

SCRIPT = (
    "$url = 'http://example.com/a.ps1'\n"
    "$out = Join-Path $env:TEMP 'a.ps1'\n"
    "Invoke-WebRequest -Uri $url -OutFile $out\n"
    "Write-Host \"saved $out\"\n"
)


def _sq_strings(text: str) -> list[str]:
    return [ob._unquote(m) for m in re.findall(r"'(?:[^']|'')*'", text)]


def _apply_format(fmt: str, args: list[str]) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: args[int(m.group(1))], fmt)


def test_ps_quote_doubles_every_single_quote_kind():
    assert ob.ps_quote("it's") == "'it''s'"
    assert ob.ps_quote("a\u2019b") == "'a\u2019\u2019b'"
    assert ob._unquote(ob.ps_quote("x'\u2018y")) == "x'\u2018y"


@pytest.mark.parametrize("seed", range(5))
def test_format_reorder_and_concat_give_back_the_string(seed):
    s = "System.Net.WebClient"
    f = ob.format_reorder(s, random.Random(seed))
    m = re.fullmatch(r"\((?P<fmt>'[^']*') -f (?P<args>.*)\)", f)
    assert m, f
    args = _sq_strings(m.group("args"))
    assert len(args) >= 2
    assert _apply_format(ob._unquote(m.group("fmt")), args) == s
    c = ob.concat_split(s, random.Random(seed))
    assert c.startswith("(") and "+" in c
    assert "".join(_sq_strings(c)) == s


def test_string_family_forms_decode_to_the_script():
    seen = set()
    for seed in range(40):
        text = ob.string_obfuscate(SCRIPT, random.Random(seed))
        assert text.count("'") > 4 and text != SCRIPT
        strs = _sq_strings(text)
        if "Reverse" in text or "RightToLeft" in text or "-join ''" in text:
            seen.add("reverse")
            assert max(strs, key=len)[::-1] == SCRIPT
        elif re.search(r"^\S.*'\{\d+\}", text) and " -f " in text:
            seen.add("format")
            fmt_i = next(i for i, x in enumerate(strs) if re.fullmatch(r"(\{\d+\})+", x))
            assert _apply_format(strs[fmt_i], strs[fmt_i + 1 :]) == SCRIPT
        else:
            seen.add("concat")
            assert "".join(s for s in strs if s not in ("x", "*mdr*", "")) == SCRIPT
        assert any(n.lower() in text.lower() for n in ("iex", "invoke-expression", "shellid",
                                                          "comspec", "pshome", "mdr",
                                                          "verbosepreference"))
    assert seen == {"reverse", "format", "concat"}


def test_compress_is_raw_deflate_that_zlib_reads_back():
    text = ob.compress_obfuscate(SCRIPT, random.Random(1))
    assert "IO.Compression.DeflateStream" in text
    b64 = re.search(r"FromBase64String\('([A-Za-z0-9+/=]+)'\)", text).group(1)
    assert zlib.decompress(base64.b64decode(b64), -15).decode("utf-8") == SCRIPT


def test_encoding_forms_decode_to_the_script():
    kinds = set()
    for seed in range(60):
        text = ob.encoding_obfuscate(SCRIPT, random.Random(seed))
        assert "Invoke-WebRequest" not in text
        if "-bxor" in text:
            key = int(re.search(r"-bxor 0x([0-9a-f]+)", text).group(1), 16)
            nums = re.search(r"\(\(([\d,]+)\)", text).group(1).split(",")
            assert "".join(chr(int(x) ^ key) for x in nums) == SCRIPT
            kinds.add("bxor")
        elif "ToInt32" in text:
            base = int(re.search(r"ToInt32\(\$_, (\d+)\)", text).group(1))
            body, sep = re.search(r"'([^']*)'\.Split\('([^']*)'\)", text).groups()
            assert "".join(chr(int(x, base)) for x in body.split(sep)) == SCRIPT
            kinds.add(base)
        elif "[char[]]" in text or "[char]$_ }" in text:
            nums = re.search(r"\(\(?([\d,]+)\)", text).group(1).split(",")
            assert "".join(chr(int(x)) for x in nums) == SCRIPT
            kinds.add("decimal")
        elif "=+$()" in text:
            # special characters: simulate the digit assignments, then read the codes
            env: dict[str, int] = {}
            for stmt in text.split("; "):
                m = re.fullmatch(r"\$\{(.)\}=\+\$\(\)", stmt)
                if m:
                    env[m.group(1)] = 0
                m = re.fullmatch(r"\$\{(.)\}=\+\+\$\{(.)\}", stmt)
                if m:
                    env[m.group(2)] += 1
                    env[m.group(1)] = env[m.group(2)]
            assert sorted(env.values()) == list(range(10))
            codes = re.findall(r'"((?:\$\{.\})+)"', text)
            dec = "".join(chr(int("".join(str(env[c]) for c in re.findall(r"\$\{(.)\}", x))))
                          for x in codes)
            assert dec == SCRIPT
            # digits are never written: neither in the assignments nor in the codes
            assert not any(re.search(r"\d", st) for st in text.split("; ") if st.startswith("${"))
            assert not re.search(r"\d", "".join(codes))
            kinds.add("special")
        elif "SecureString" in text:
            assert "ConvertTo-SecureString -Key" in text
            kinds.add("securestring")
        else:
            runs = max(_sq_strings(text), key=len).split("\t")
            assert "".join(chr(len(r)) for r in runs) == SCRIPT
            kinds.add("whitespace")
    assert {"bxor", "decimal", "special", "whitespace", 16, 8, 2} <= kinds


def test_launcher_enc_is_utf16le_base64_of_the_script():
    n = 0
    for seed in range(30):
        text = ob.launcher(SCRIPT, random.Random(seed))  # multi-line: always the -enc form
        m = re.search(r"\s[-/]\w+\s+([A-Za-z0-9+/=]{20,})$", text)
        assert m and "powershell" in text.lower(), text
        assert base64.b64decode(m.group(1)).decode("utf-16-le") == SCRIPT
        n += text.startswith("cmd")
    assert 0 < n < 30  # both the bare and the cmd /c wrapper appear
    one = "Write-Host hello"
    forms = {ob.launcher(one, random.Random(s)).split()[0].lower() for s in range(40)}
    texts = [ob.launcher(one, random.Random(s)) for s in range(40)]
    assert any("set " in t and "env:" in t for t in texts)
    assert any(t.startswith('cmd /c "echo Write-Host hello |') for t in texts)
    assert forms & {"cmd", "cmd.exe"}


def test_token_changes_only_spelling():
    code = "Get-ChildItem -Path C:\\Temp | ForEach-Object { $_.FullName.ToUpper() }\n$n = 3"
    quoted = 0
    for seed in range(10):
        out = ob.token_obfuscate(code, random.Random(seed))
        norm = re.sub(r"\$\{(\w+)\}", r"$\1", out.replace("`", ""))
        norm = re.sub(r'\."(\w+)"', r".\1", norm)
        norm = re.sub(r" +", " ", norm).lower()
        assert norm == re.sub(r" +", " ", code).lower()
        # a tick never makes an escape sequence (`n, `t, `a, ...)
        assert not re.search(r"`[0abefnrtuvABEFNRTUV]", out)
        quoted += '."' in out
    assert quoted  # the quoted member form appears


def test_token_leaves_strings_in_attributes_and_rewrites_others():
    code = "[Parameter(HelpMessage='keep this one')]\n$a = 'rewrite this string'"
    outs = [ob.token_obfuscate(code, random.Random(s)) for s in range(20)]
    assert all("'keep this one'" in o for o in outs)
    assert any("'rewrite this string'" not in o for o in outs)


def test_ast_renames_variables_consistently_but_not_parameters():
    code = ("function Get-It {\n param($Path)\n $items = Get-ChildItem $Path\n"
            " Write-Output \"$items\"\n}\n$count = 1\n$count += 1\nGet-It -Path $count")
    out = ob.ast_obfuscate(code, random.Random(3))
    assert "param($Path)" in out and "Get-ChildItem $Path" in out
    assert "$count" not in out and "$items" not in out
    new = re.search(r"\$(\w+) = 1", out).group(1)
    assert out.count("$" + new) == 3 and "$count" not in out


def test_obfuscate_api_is_deterministic_and_reports_layers():
    a = ob.obfuscate(SCRIPT, random.Random(42), layers=3)
    b = ob.obfuscate(SCRIPT, random.Random(42), layers=3)
    assert a == b
    outs = {ob.obfuscate(SCRIPT, random.Random(s), layers=2)[0] for s in range(10)}
    assert len(outs) > 5
    for s in range(30):
        text, applied = ob.obfuscate(SCRIPT, random.Random(s), layers=3)
        assert 1 <= len(applied) <= 3 and set(applied) <= set(ob.FAMILIES)
        assert "LAUNCHER" not in applied[:-1]
        assert text != SCRIPT
    assert ob.obfuscate(SCRIPT, random.Random(0), ["compress"])[1] == ["COMPRESS"]
    with pytest.raises(ValueError):
        ob.obfuscate(SCRIPT, random.Random(0), ["NOPE"])


def test_iex_spellings_spell_iex():
    shell_id, comspec = "Microsoft.PowerShell", r"C:\WINDOWS\system32\cmd.exe"
    pshome, mdr = r"C:\Windows\System32\WindowsPowerShell\v1.0", "MaximumDriveCount"
    assert (shell_id[1] + shell_id[13] + "x").lower() == "iex"
    assert "".join(comspec[i] for i in (4, 15, 25)).lower() == "iex"
    assert (pshome[4] + pshome[30] + "x").lower() == "iex"
    assert (pshome[21] + pshome[30] + "x").lower() == "iex"
    assert "".join(mdr[i] for i in (3, 11, 2)).lower() == "iex"
    assert ("SilentlyContinue"[1] + "SilentlyContinue"[3] + "x").lower() == "iex"
