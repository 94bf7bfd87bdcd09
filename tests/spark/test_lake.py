"""Spark reads the workspace as DuckDB does: the same rows, columns and types of the lake."""

from __future__ import annotations

import gzip

from threatscope.ingest.pipeline import ingest_paths
from threatscope.spark.lake import register_views
from threatscope.workspace import Workspace

LINES = [
    '203.0.113.9 - - [12/May/2018:10:00:01 +0000] "GET /GponForm/diag_Form?images/ HTTP/1.1" '
    '200 512 "-" "Mozilla/5.0"',
    '198.51.100.7 - - [12/May/2018:10:00:02 +0000] "POST /login HTTP/1.1" 302 0 "-" "curl/8"',
    'not a log line',
]


def test_lake_views_equal_duckdbs(spark_session, tmp_path):
    logs = tmp_path / "logs" / "org1"
    logs.mkdir(parents=True)
    (logs / "access.log").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "logs" / "org1" / "access.log.1.gz", "wt") as f:
        f.write(LINES[1] + "\n")
    ws = Workspace.open(tmp_path / "ws", create=True)
    ingest_paths(ws, [str(tmp_path / "logs")])
    names = register_views(spark_session, ws)
    assert {"http", "alert", "org", "quarantine", "ingest_manifest"} <= names
    cols = "org_id, ts, file_id, source_file, source_line, source_ip, url_original, " \
           "http_response_status_code, http_response_body_bytes, CAST(source_ip_num AS VARCHAR)"
    with ws.connect() as con:
        want = sorted(con.execute(f"SELECT {cols} FROM http").fetchall())
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    got = sorted(tuple(r) for r in spark_session.sql(
        f"SELECT {cols.replace('VARCHAR', 'STRING')} FROM http").collect())
    assert len(want) == 3 and got == want
    assert spark_session.sql("SELECT count(*) FROM quarantine").collect()[0][0] == quarantined == 1
    assert spark_session.sql("SELECT count(*) FROM alert").collect()[0][0] == 0  # empty kind
