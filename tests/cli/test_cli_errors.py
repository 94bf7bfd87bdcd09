"""The console script: every command has --help; user mistakes give one line and a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = str(Path(sys.executable).parent / "threatscope")

COMMANDS = [
    [], ["init"], ["ingest"], ["detect"], ["enrich"], ["report"], ["run"], ["export"],
    ["export", "detections"], ["rules"], ["rules", "list"], ["rules", "check"], ["simulate"],
    ["demo"],
]


def ts(*args: str, cwd: Path | None = None, stdin: str | None = None):
    return subprocess.run(
        [BIN, *args], capture_output=True, text=True, cwd=cwd, input=stdin, timeout=120
    )


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_help(cmd):
    r = ts(*cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def _one_line_error(r) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_missing_workspace(tmp_path):
    line = _one_line_error(ts("detect", "-w", str(tmp_path / "nope")))
    assert "no workspace" in line


def test_bad_config(tmp_path):
    ws = tmp_path / "ws"
    assert ts("init", "-w", str(ws)).returncode == 0
    (ws / "config.toml").write_text("[detect\n")
    line = _one_line_error(ts("detect", "-w", str(ws)))
    assert "config.toml" in line and "invalid TOML" in line


def test_unknown_format(tmp_path):
    f = tmp_path / "a.log"
    f.write_text("x\n")
    r = ts("ingest", "-w", str(tmp_path / "ws"), "--format", "syslog", str(f))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "syslog" in r.stderr


def test_missing_input_file(tmp_path):
    missing = tmp_path / "missing.log"
    r = ts("ingest", "-w", str(tmp_path / "ws"), str(missing))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "missing.log" in r.stderr


def test_bad_orgs_csv(tmp_path):
    orgs = tmp_path / "orgs.csv"
    orgs.write_text("id;sector\n")
    line = _one_line_error(ts("init", "-w", str(tmp_path / "ws"), "--orgs", str(orgs)))
    assert "orgs.csv" in line


def test_bad_period(tmp_path):
    ws = tmp_path / "ws"
    ts("init", "-w", str(ws))
    line = _one_line_error(ts("report", "-w", str(ws), "--period", "2018Q7", "-o", str(tmp_path / "o")))
    assert "2018Q7" in line


def test_export_before_detect(tmp_path):
    ws = tmp_path / "ws"
    ts("init", "-w", str(ws))
    line = _one_line_error(ts("export", "detections", "-w", str(ws)))
    assert "detect" in line
