"""`--engine spark` on the command line: a Spark that cannot start is a clear error, and
nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = str(Path(sys.executable).parent / "threatscope")


def test_an_unreachable_master_fails_before_anything_is_written(tmp_path):
    log = tmp_path / "access.log"
    log.write_text('203.0.113.9 - - [12/May/2018:10:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\n')
    ws = tmp_path / "ws"
    r = subprocess.run([BIN, "ingest", "-w", str(ws), "--engine", "spark", "--spark-master",
                        "spark://127.0.0.1:9", str(log)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert "cannot reach the Spark master (--spark-master) at 127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any((ws / "lake").rglob("*.parquet"))


def test_the_engine_is_a_choice():
    r = subprocess.run([BIN, "detect", "--engine", "flink"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "'flink' is not one of 'duckdb', 'spark'" in r.stderr
