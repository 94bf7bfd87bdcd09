"""analyze on Spark makes DuckDB's metrics document: a simulated workspace, both engines."""

from __future__ import annotations

import json

import pytest

from tests.spark.documents import diff
from threatscope import detect, enrich, ingest
from threatscope.analyze.metrics import analyze
from threatscope.analyze.period import Period
from threatscope.simulate import simulate
from threatscope.workspace import Workspace, read_orgs_csv

# each stage compared in depth between the engines: `make test-spark` (minutes of Spark)
pytestmark = pytest.mark.spark_stages


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("spark_analyze")
    data = simulate(root / "data", seed=7, scale=0.02)
    w = Workspace.open(root / "ws", create=True)
    w.register_orgs(read_orgs_csv(data / "orgs.csv"))
    ingest.ingest_paths(w, [str(data)])
    detect.run_detect(w)
    enrich.run_enrich(w)
    return w


def _doc(d: dict) -> dict:
    """The document as JSON would hold it, without the time it was made."""
    d = {k: v for k, v in d.items() if k != "generated_at"}
    return json.loads(json.dumps(d, default=str))


def _same(ws: Workspace, spark_session, **kw) -> dict:
    duck = _doc(analyze(ws, **kw))
    on_spark = _doc(analyze(ws, engine="spark", spark=spark_session, **kw))
    assert diff(on_spark, duck)[:20] == []
    return duck


def test_all_organisations(ws, spark_session):
    doc = _same(ws, spark_session)
    assert doc["totals"]["detections"]["period"] > 0
    assert doc["consistency"]["ok"]


def test_one_org(ws, spark_session):
    with ws.connect(read_only=True) as con:
        org = con.execute("SELECT min(org_id) FROM org").fetchone()[0]
    assert _same(ws, spark_session, org=org)["scope"]["kind"] == "org"


def test_one_sector(ws, spark_session):
    with ws.connect(read_only=True) as con:
        sector = con.execute("SELECT min(sector) FROM org WHERE sector <> ''").fetchone()[0]
    assert _same(ws, spark_session, sector=sector)["scope"]["kind"] == "sector"


def test_empty_period_and_no_baseline(ws, spark_session):
    # years before any event: nothing in the period, nothing in its baseline
    doc = _same(ws, spark_session, period=Period.parse("2001Q2"))
    assert doc["totals"]["events"] == {**doc["totals"]["events"], "period": 0, "baseline": 0}
