"""The demo's telemetry through both engines: `threatscope run --engine duckdb` and
`--engine spark` (local[2]) give the same report.json figures. In `make test-spark` (about three
minutes of local Spark: `make test` keeps under ten minutes on two cores with the Spark session,
lake and CLI tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.spark.documents import diff, strip
from threatscope.simulate import simulate

BIN = str(Path(sys.executable).parent / "threatscope")
pytestmark = pytest.mark.spark_stages


def _run(root: Path, data: Path, engine: str) -> dict:
    out = root / f"out-{engine}"
    r = subprocess.run([BIN, "run", "-w", str(root / f"ws-{engine}"), "--orgs",
                        str(data / "orgs.csv"), str(data), "-o", str(out), "--engine", engine,
                        "--spark-master", "local[2]"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"--engine {engine} failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    data = simulate(root / "data", seed=5, scale=0.02)
    return _run(root, data, "duckdb"), _run(root, data, "spark")


def test_both_engines_give_the_same_report_figures(reports):
    duck, spark = (strip(r) for r in reports)
    assert duck["totals"]["detections"]["period"] > 0 and duck["campaigns"]
    assert diff(duck, spark)[:20] == []


def test_the_report_says_nothing_of_the_engine_but_is_consistent(reports):
    for doc in reports:
        assert doc["consistency"]["ok"], doc["consistency"]["problems"]
