"""`threatscope export stix|misp|indicators`: files written, user mistakes as one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import stix2
from click.testing import CliRunner

from threatscope.cli import main

BIN = str(Path(sys.executable).parent / "threatscope")


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("cmd", ["stix", "misp", "indicators"])
def test_help(cmd):
    r = subprocess.run([BIN, "export", cmd, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Usage:" in r.stdout and "--period" in r.stdout


def test_exports(tmp_path, ws):
    w = str(ws.root)
    r = run("export", "stix", "-w", w, "-o", str(tmp_path / "b.json"), "--period", "2018-05",
            "--min-sightings", "3")
    assert r.exit_code == 0, r.output
    bundle = stix2.parse((tmp_path / "b.json").read_text(encoding="utf-8"), allow_custom=False)
    assert sorted(o.pattern for o in bundle.objects if o.type == "indicator") == [
        "[ipv4-addr:value = '1.2.3.4']", "[ipv4-addr:value = '7.7.7.7']",
        "[ipv6-addr:value = '2001:db8::1']"]

    r = run("export", "misp", "-w", w, "-o", str(tmp_path / "e.json"), "--period", "2018Q1")
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))["Event"]
    assert [a["value"] for a in ev["Attribute"]] == ["5.6.7.8"]

    r = run("export", "indicators", "--format", "csv", "-w", w, "-o", str(tmp_path / "i.csv"))
    assert r.exit_code == 0 and "wrote 7 indicators" in r.output, r.output
    with open(tmp_path / "i.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 7


def test_errors(tmp_path, ws):
    bare = tmp_path / "bare"
    assert run("init", "-w", str(bare)).exit_code == 0
    out = str(tmp_path / "x.json")
    for cmd in ("stix", "misp", "indicators"):
        r = run("export", cmd, "-w", str(bare), "-o", out)
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert "no indicators yet: run `threatscope enrich` first" in r.output
    r = run("export", "stix", "-w", str(ws.root), "-o", out, "--period", "2018Q9")
    assert r.exit_code == 1 and "bad period" in r.output
    r = run("export", "misp", "-w", str(ws.root), "-o", str(tmp_path / "no" / "e.json"))
    assert r.exit_code == 1 and "no such folder" in r.output
    r = run("export", "stix", "-w", str(ws.root))
    assert r.exit_code == 2 and "-o" in r.output  # -o is required
    assert not (tmp_path / "x.json").exists()


def test_same_bytes_across_processes(tmp_path, ws):
    """Two runs (different hash seeds: set and dict order must not leak) write the same files."""
    import os

    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        for cmd, name in (("stix", "b"), ("misp", "e"), ("indicators", "i")):
            out = tmp_path / f"{name}{seed}"
            r = subprocess.run([BIN, "export", cmd, "-w", str(ws.root), "-o", str(out)],
                               capture_output=True, text=True, timeout=120, env=env)
            assert r.returncode == 0, r.stderr
        outs.append([(tmp_path / f"{n}{seed}").read_bytes() for n in "bei"])
    assert outs[0] == outs[1]
