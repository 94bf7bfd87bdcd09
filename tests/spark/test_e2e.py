"""The demo's telemetry through both engines: `threatscope run --engine duckdb` and
`--engine spark` (local[2]) give the same report.json figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from threatscope.simulate import simulate

BIN = str(Path(sys.executable).parent / "threatscope")
# about 6 minutes of local Spark today (the report's ~80 figure queries are ~80 Spark jobs):
# in `make test-spark` until the figures are batched into few jobs
pytestmark = pytest.mark.spark_stages
# what may differ: when the document was made, where the workspace is, and timings
VOLATILE = {"generated_at", "seconds", "started_at", "finished_at", "workspace"}


def _run(root: Path, data: Path, engine: str) -> dict:
    out = root / f"out-{engine}"
    r = subprocess.run([BIN, "run", "-w", str(root / f"ws-{engine}"), "--orgs",
                        str(data / "orgs.csv"), str(data), "-o", str(out), "--engine", engine,
                        "--spark-master", "local[2]"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"--engine {engine} failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    return json.loads((out / "report.json").read_text())


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _diff(a, b, path="") -> list[str]:
    """Where two documents differ (the first few places), for a readable failure."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += _diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r:.120} != {b!r:.120}"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    data = simulate(root / "data", seed=5, scale=0.02)
    return _run(root, data, "duckdb"), _run(root, data, "spark")


def test_both_engines_give_the_same_report_figures(reports):
    duck, spark = (_strip(r) for r in reports)
    assert duck["totals"]["detections"]["period"] > 0 and duck["campaigns"]
    assert _diff(duck, spark)[:20] == []


def test_the_report_says_nothing_of_the_engine_but_is_consistent(reports):
    for doc in reports:
        assert doc["consistency"]["ok"], doc["consistency"]["problems"]
