"""Spark Connect: a real local Connect server (the one pyspark ships), `SPARK_REMOTE` pointing
at it, and `threatscope run --engine spark` giving the report.json figures DuckDB gives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.spark.documents import diff, strip
from threatscope.simulate import simulate

pytestmark = pytest.mark.spark_stages  # minutes of Spark: `make test-spark`
BIN = str(Path(sys.executable).parent / "threatscope")
SERVER = "org.apache.spark.sql.connect.service.SparkConnectServer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """``sc://localhost:<port>`` of a Connect server in local mode, stopped after the module."""
    pytest.importorskip("grpc")  # the Connect client: pip install 'pyspark[connect]'
    import pyspark

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    port = _free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_REMOTE", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(submit), "--class", SERVER, "--master", "local[2]",
             "--conf", f"spark.connect.grpc.binding.port={port}",
             "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
             "--conf", "spark.ui.enabled=false"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the Connect server stopped:\n{log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"no Connect server after 180 s:\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield f"sc://localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _run(root: Path, data: Path, name: str, env: dict[str, str], engine: str) -> dict:
    out = root / f"out-{name}"
    r = subprocess.run([BIN, "run", "-w", str(root / f"ws-{name}"), "--orgs",
                        str(data / "orgs.csv"), str(data), "-o", str(out), "--engine", engine],
                       capture_output=True, text=True, timeout=1800, env=env)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    return json.loads((out / "report.json").read_text())


def test_the_pipeline_through_spark_connect_gives_duckdbs_figures(remote, tmp_path):
    data = simulate(tmp_path / "data", seed=11, scale=0.01)
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    duck = _run(tmp_path, data, "duckdb", env, "duckdb")
    on_connect = _run(tmp_path, data, "connect", {**env, "SPARK_REMOTE": remote}, "spark")
    assert diff(strip(duck), strip(on_connect))[:20] == []
    assert duck["totals"]["detections"]["period"] > 0
