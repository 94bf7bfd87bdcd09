"""The detect stage on Spark gives the DuckDB engine's detections, row for row."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.detect.sigma_helpers import rule_yaml
from threatscope import ingest
from threatscope.detect import run_detect
from threatscope.simulate import simulate
from threatscope.workspace import Workspace

# each stage compared in depth between the engines: `make test-spark` (minutes of Spark)
pytestmark = pytest.mark.spark_stages

MY_RULE = "00000000-0000-4000-8000-00000000b001"
LOOK_ALIKE = "00000000-0000-4000-8000-00000000b002"
GET_RULE = "00000000-0000-4000-8000-00000000b003"
BURST = "00000000-0000-4000-8000-00000000b004"
ALERTS = [
    {"timestamp": "2018-05-01T10:00:01.000000+0000", "event_type": "alert",
     "src_ip": "203.0.113.9", "dest_ip": "10.0.0.2", "dest_port": 80,
     "alert": {"signature_id": 2024043, "signature": "ET EXPLOIT Apache Struts RCE",
               "category": "Attempted Administrator Privilege Gain", "severity": 1,
               "metadata": {"cve": ["CVE_2017_5638"]}},
     "http": {"hostname": "shop.example", "url": "/struts2/index.action", "http_method": "GET"}},
    {"timestamp": "2018-05-01T10:00:02.000000+0000", "event_type": "alert",
     "src_ip": "192.0.2.1", "dest_ip": "10.0.0.2", "dest_port": 8080,
     "alert": {"signature_id": 1, "signature": "GPON Router RCE (CVE-2018-10562) CVE-2018-10561",
               "category": "x", "severity": 2, "metadata": {"cve": ["2018-10561"]}}},
]


def _rows(path) -> list[tuple]:
    t = pq.read_table(path)
    return sorted(tuple(map(repr, r.values())) for r in t.to_pylist())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparkdetect")
    data = simulate(root / "data", seed=5, scale=0.02)
    ws = Workspace.open(root / "ws", create=True)
    ingest.ingest_paths(ws, [str(data)])
    eve = root / "eve.json"  # Suricata alerts (the simulation writes none at this scale)
    eve.write_text("".join(json.dumps(r) + "\n" for r in ALERTS), encoding="utf-8")
    ingest.ingest_paths(ws, [str(eve)], org="org01")
    rules = root / "rules"
    rules.mkdir()
    # a rule that must fire (every POST, by a Java regex) and a look-alike that must not (a
    # lower-case method, cased: would fire if case were folded)
    (rules / "post.yml").write_text(rule_yaml(
        "sel:\n  cs-method|re: '^P.ST$'\ncondition: sel").replace(
        "00000000-0000-4000-8000-000000000001", MY_RULE), encoding="utf-8")
    (rules / "never.yml").write_text(rule_yaml(
        "sel:\n  cs-method|cased: post\ncondition: sel").replace(
        "00000000-0000-4000-8000-000000000001", LOOK_ALIKE), encoding="utf-8")
    # a correlation (the Spark engine gathers its events): bursts of GETs from one address;
    # the GETs themselves are no detections (generate: false)
    (rules / "get.yml").write_text(rule_yaml(
        "sel:\n  cs-method: GET\ncondition: sel", extra="name: get_request\n").replace(
        "00000000-0000-4000-8000-000000000001", GET_RULE), encoding="utf-8")
    (rules / "burst.yml").write_text(f"""title: GET burst
id: {BURST}
status: test
level: low
correlation:
  type: event_count
  rules: get_request
  group-by: [c-ip]
  timespan: 1h
  condition: {{gte: 2}}
""", encoding="utf-8")
    return ws, rules


def test_spark_detections_equal_duckdb(workspace, spark_session):
    ws, rules = workspace
    duck = run_detect(ws, [rules])
    duck_rows = _rows(ws.detections_path)
    duck_ps = _rows(ws.powershell_path)
    spark = run_detect(ws, [rules], engine="spark", spark=spark_session)
    assert _rows(ws.detections_path) == duck_rows
    assert _rows(ws.powershell_path) == duck_ps
    assert spark.per_rule == duck.per_rule and spark.events_scanned == duck.events_scanned
    assert spark.per_rule.get(MY_RULE, 0) > 0 and LOOK_ALIKE not in spark.per_rule
    assert spark.per_rule.get(BURST, 0) > 0 and GET_RULE not in spark.per_rule
    assert spark.correlation_detections == duck.correlation_detections
    assert spark.powershell_detections == duck.powershell_detections > 0
    assert spark.suricata_detections == duck.suricata_detections == 2
    with ws.connect(read_only=True) as con:
        runs = con.execute("SELECT count(*) FROM run_history WHERE stage = 'detect'").fetchone()
    assert runs == (2,)
