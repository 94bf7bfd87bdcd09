"""run_detect over a real workspace: Parquet lake written with DuckDB COPY, detection table checked."""

from __future__ import annotations

import ipaddress
import json

import duckdb
import pytest

from tests.detect.sigma_helpers import rule_yaml
from threatscope import schema
from threatscope.detect import run_detect
from threatscope.workspace import Workspace

MY_RULE = "00000000-0000-4000-8000-00000000a001"
KW_RULE = "00000000-0000-4000-8000-00000000a002"

HTTP_ROWS = [
    # (line, ip, method, uri, status, ua)
    (1, "198.51.100.1", "GET", "/index.html", 200, "Mozilla/5.0"),
    (2, "198.51.100.2", "POST", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", 200, "curl/7"),
    (3, "203.0.113.9", "GET", "/admin/Backup_100%25.zip", 404, "sqlmap/1.2"),
    (4, "2001:db8::7", "GET", "/?q=1%20UNION%20SELECT%20password", 200, "Mozilla/5.0"),
    (5, "198.51.100.1", "GET", "/img/logo.png", 304, "Mozilla/5.0"),
]


def _ip_num(ip: str) -> str:
    """As ingest stores IPs: IPv4 mapped into ::ffff:0:0/96."""
    a = ipaddress.ip_address(ip)
    return str(int(a) + (0xFFFF << 32 if a.version == 4 else 0))


def _write_http(ws: Workspace, org: str, day: str, rows) -> None:
    out = ws.lake / "http" / f"org_id={org}" / f"event_date={day}"
    out.mkdir(parents=True)
    con = duckdb.connect()
    cols = [(n, t) for n, t in schema.HTTP if n not in ("org_id", "event_date")]
    con.execute(f"CREATE TABLE t ({schema.ddl_columns(cols)})")
    for line, ip, method, uri, status, ua in rows:
        raw = f'{ip} - - [10/May/2018:10:00:{line:02d} +0000] "{method} {uri} HTTP/1.1" {status} 1 "-" "{ua}"'
        con.execute(
            """INSERT INTO t (ts, event_kind, file_id, source_file, source_line, raw, source_ip,
                   http_request_method, url_original, url_path, url_query, url_decoded,
                   http_version, http_response_status_code, user_agent_original,
                   source_ip_num)
               VALUES (TIMESTAMP '2018-05-10 10:00:00' + to_seconds(?), 'http', 'f1', 'access.log',
                   ?, ?, ?, ?, ?, split_part(?, '?', 1), nullif(split_part(?, '?', 2), ''),
                   url_decode(?), 'HTTP/1.1', ?, ?, CAST(? AS UHUGEINT))""",
            [line, line, raw, ip, method, uri, uri, uri, uri, status, ua, _ip_num(ip)],
        )
    con.execute(f"COPY t TO '{out / 'f1_0.parquet'}' (FORMAT parquet)")
    con.close()


def _write_alerts(ws: Workspace) -> None:
    out = ws.lake / "alert" / "org_id=acme" / "event_date=2018-05-11"
    out.mkdir(parents=True)
    con = duckdb.connect()
    cols = [(n, t) for n, t in schema.ALERT if n not in ("org_id", "event_date")]
    con.execute(f"CREATE TABLE a ({schema.ddl_columns(cols)})")
    con.execute(
        """INSERT INTO a (ts, event_kind, file_id, source_file, source_line, raw, source_ip,
               signature_id, signature, category, severity, cves, url_original)
           VALUES (TIMESTAMP '2018-05-11 08:00:00', 'alert', 'f2', 'eve.json', 7, '{}',
               '192.0.2.55', 2025967, 'ET WEB_SPECIFIC_APPS Drupalgeddon2', 'web-application-attack',
               1, ['cve-2018-7600'], '/user/register'),
              (TIMESTAMP '2018-05-11 08:00:01', 'alert', 'f2', 'eve.json', 8, '{}',
               '192.0.2.56', 2000001, 'ET SCAN something', 'attempted-recon', 3, NULL, '/')"""
    )
    con.execute(f"COPY a TO '{out / 'f2_0.parquet'}' (FORMAT parquet)")
    con.close()


@pytest.fixture
def ws(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    _write_http(ws, "acme", "2018-05-10", HTTP_ROWS)
    _write_alerts(ws)
    rules = tmp_path / "myrules"
    rules.mkdir()
    (rules / "backup.yml").write_text(rule_yaml(
        "sel:\n  cs-uri-stem|contains: '_100%'\n  sc-status: 404\ncondition: sel",
        extra="tags:\n  - attack.t1595\n  - threatscope.family.recon\n",
    ).replace("00000000-0000-4000-8000-000000000001", MY_RULE))
    (rules / "kw.yml").write_text(rule_yaml(
        "keywords:\n  - 'union select'\ncondition: keywords",
        extra="tags:\n  - threatscope.family.sqli\n",
    ).replace("00000000-0000-4000-8000-000000000001", KW_RULE))
    (rules / "endpoint.yml").write_text(rule_yaml(
        "sel:\n  Image|endswith: '\\\\cmd.exe'\ncondition: sel",
        logsource="category: process_creation\n    product: linux",
    ).replace("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-00000000a003"))
    return ws, rules


def _detections(ws):
    with ws.connect() as con:
        cols = [c for c, _ in schema.DETECTION]
        rows = con.execute(
            "SELECT * FROM detection ORDER BY source_file, source_line, rule_id"
        ).fetchall()
        types = con.execute("DESCRIBE detection").fetchall()
    return [dict(zip(cols, r, strict=True)) for r in rows], [(t[0], t[1]) for t in types]


def test_run_detect_writes_detection_table(ws):
    ws, rules = ws
    summary = run_detect(ws, rule_dirs=[rules])
    rows, types = _detections(ws)
    assert types == schema.DETECTION

    by_line = {}
    for r in rows:
        by_line.setdefault((r["source_file"], r["source_line"]), []).append(r)

    # benign lines raise nothing
    assert ("access.log", 1) not in by_line and ("access.log", 5) not in by_line

    # our own rule: '%' and '_' in the value are literal ('_100%' is in the encoded '_100%25')
    (mine,) = [r for r in by_line[("access.log", 3)] if r["rule_id"] == MY_RULE]
    assert mine["rule_id"] == MY_RULE and mine["family"] == "recon"
    assert mine["src_ip"] == "203.0.113.9" and mine["org_id"] == "acme"
    assert mine["attack_techniques"] == ["T1595"] and mine["severity"] == "high"
    assert mine["detector"] == "sigma" and mine["evidence"].startswith("GET /admin/")

    # keyword rule finds the percent-encoded attack through url_decoded, IPv6 source kept
    kw = [r for r in by_line[("access.log", 4)] if r["rule_id"] == KW_RULE]
    assert len(kw) == 1 and kw[0]["src_ip"] == "2001:db8::7"

    # the built-in pack's PHPUnit rule
    php = by_line[("access.log", 2)]
    assert any(r["campaign"] == "phpunit-eval-stdin" and r["cves"] == ["CVE-2017-9841"] for r in php)

    # Suricata alerts: severity mapped, CVE upper-cased, campaign from the pack's CVE tags
    drupal = by_line[("eve.json", 7)][0]
    assert drupal["rule_id"] == "suricata:2025967" and drupal["detector"] == "suricata"
    assert drupal["severity"] == "high" and drupal["cves"] == ["CVE-2018-7600"]
    assert drupal["campaign"] == "drupalgeddon2" and drupal["product"] == "drupal"
    scan = by_line[("eve.json", 8)][0]
    assert scan["severity"] == "low" and scan["cves"] == [] and scan["campaign"] is None

    d = summary.to_dict()
    assert d["detections"] == len(rows)
    assert d["suricata_detections"] == 2
    assert d["per_rule"][MY_RULE] == 1 and d["per_rule"][KW_RULE] == 1
    assert d["events_scanned"]["http"] == len(HTTP_ROWS)
    assert any(f["reason"].startswith("no data for logsource") for f in d["failed"])
    assert d["rules_failed"] == len(d["failed"]) >= 1
    json.dumps(d)


def test_run_detect_is_idempotent_and_uses_config_rule_dirs(ws):
    ws, rules = ws
    ws.config_path.write_text(f"[detect]\nrule_dirs = [{json.dumps(str(rules))}]\n")
    ws = Workspace.open(ws.root)
    first = run_detect(ws)
    rows1, _ = _detections(ws)
    second = run_detect(ws)
    rows2, _ = _detections(ws)
    assert rows1 == rows2 and first.detections == second.detections == len(rows1)
    assert any(r["rule_id"] == MY_RULE for r in rows1)
    with ws.connect() as con:
        runs = con.execute(
            "SELECT summary FROM run_history WHERE stage = 'detect' ORDER BY started_at"
        ).fetchall()
    assert len(runs) == 2 and json.loads(runs[0][0])["detections"] == len(rows1)


def test_run_detect_on_empty_lake(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    progress = []
    s = run_detect(ws, progress=lambda a, t, d: progress.append((a, t, d)))
    assert s.detections == 0 and s.rules_loaded > 0
    assert sum(a for a, _, _ in progress) == progress[0][1]
    rows, types = _detections(ws)
    assert rows == [] and types == schema.DETECTION


def test_detections_replace_an_old_catalog_table_and_survive_a_failed_run(ws, monkeypatch):
    """Detections live in detection.parquet (the view ``detection``). A catalog table of that
    name (where earlier versions kept them) is dropped by the next run; a run that fails
    half-way leaves the previous detections and no partial file."""
    ws, rules = ws
    with ws.connect() as con:
        con.execute(f"CREATE TABLE detection ({schema.ddl_columns(schema.DETECTION)})")
        con.execute("INSERT INTO detection (rule_id) VALUES ('stale')")
    first = run_detect(ws, rule_dirs=[rules])
    rows, _ = _detections(ws)
    assert "stale" not in {r["rule_id"] for r in rows} and len(rows) == first.detections > 0
    with ws.connect() as con:
        assert not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = 'detection'"
                               ).fetchall()

    from threatscope.detect import stage

    def broken(*args):
        raise RuntimeError("killed mid-run")

    monkeypatch.setattr(stage, "_alerts", broken)  # after the sigma rows were written
    with pytest.raises(RuntimeError, match="killed mid-run"):
        run_detect(ws, rule_dirs=[rules])
    assert _detections(ws)[0] == rows
    assert [p.name for p in ws.root.iterdir() if p.name.startswith("detection")] == [
        "detection.parquet"]


def test_files_of_several_orgs_and_an_older_schema_are_read_together(ws):
    """One scan reads every lake file: a file written before a column existed (no user agent
    here) reads it as NULL, and each row keeps its own file's organisation and file id."""
    ws, rules = ws
    out = ws.lake / "http" / "org_id=globex" / "event_date=2018-05-10"
    out.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT TIMESTAMP '2018-05-10 11:00:00' AS ts, 'http' AS event_kind, "
        "'old.log' AS source_file, 9::BIGINT AS source_line, 'raw' AS raw, "
        "'192.0.2.9' AS source_ip, 'GET' AS http_request_method, "
        "'/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php' AS url_original, "
        "'/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php' AS url_path, "
        "'/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php' AS url_decoded, "
        f"404 AS http_response_status_code) TO '{out / 'f9_0.parquet'}' (FORMAT parquet)"
    )
    con.close()
    run_detect(ws, rule_dirs=[rules])
    rows, _ = _detections(ws)
    old = [r for r in rows if r["source_file"] == "old.log"]
    assert old and {(r["org_id"], r["source_line"], r["src_ip"]) for r in old} == \
        {("globex", 9, "192.0.2.9")}
    assert any(r["campaign"] == "phpunit-eval-stdin" for r in old)
    assert {r["org_id"] for r in rows if r["source_file"] == "access.log"} == {"acme"}
