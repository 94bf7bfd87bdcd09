"""Threat-intel files of the simulator: determinism, no change to the other files, the story's
mix, and ``ground_truth.json["intel"]`` recomputed from the written files (plain Python)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.simulate.test_simulate import campaign_of, parse
from threatscope.simulate import simulate

NOISE_UAS = {None, "Mozilla/5.0", "sqlmap/1.2.4#stable (http://sqlmap.org)", "masscan/1.0",
             "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)", "Mozilla/5.0 zgrab/0.x"}
WINDOWS_OS = {"Windows Server 2008 R2": "Windows Server 2008",
              "Windows Server 2012 R2": "Windows Server 2012", "Windows 7 or 8": "Windows 7/8",
              "Windows XP": "Windows XP", "Windows Server 2003": "Windows Server 2003"}
CLASSES = {
    "ftp": {"Microsoft ftpd", "vsftpd", "Pure-FTPd", "FileZilla ftpd", "ProFTPD",
            "MikroTik router ftpd"},
    "mail": {"Exim smtpd", "Postfix smtpd", "Dovecot pop3d", "Dovecot imapd",
             "Microsoft Exchange smtpd"},
    "vpn": {"PPTP", "OpenVPN", "IPsec IKE", "Fortinet FortiGate SSL VPN"},
    "mikrotik": {"MikroTik bandwidth-test server", "MikroTik RouterOS API", "MikroTik Winbox"},
    "proxy": {"kangle", "Squid http proxy"},
    "web": {"Jetty", "Apache httpd", "nginx", "Microsoft IIS httpd"},
    "database": {"MySQL", "MS SQL Server", "Redis key-value store"},
    "remote-access": {"Remote Desktop Protocol", "OpenSSH"},
    "router": {"GPON Home Gateway httpd"},
}
MODULES = {"smb": "remote-access", "rdp": "remote-access", "ssh": "remote-access",
           "telnet": "remote-access", "ftp": "ftp", "pptp": "vpn", "ike": "vpn",
           "openvpn": "vpn", "mikrotik-bw": "mikrotik"}
SCANNER_DNS = (".shodan.io", ".censys-scanner.com", ".shadowserver.org",
               ".internet-measurement.com", ".binaryedge.ninja")
KEYS = {"ip_str", "ip", "port", "transport", "os", "org", "isp", "asn", "hostnames", "domains",
        "tags", "location", "timestamp", "data", "_shodan"}


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _banners(root: Path) -> list[dict]:
    with gzip.open(root / "intel" / "shodan-hosts.json.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_same_bytes_and_other_files_unchanged(tmp_path):
    a = simulate(tmp_path / "a", seed=5, scale=0.03)
    b = simulate(tmp_path / "b", seed=5, scale=0.03)
    off = simulate(tmp_path / "off", seed=5, scale=0.03, intel=False)
    ha, hb, hoff = _hashes(a), _hashes(b), _hashes(off)
    assert ha == hb
    assert {"intel/shodan-hosts.json.gz", "intel/feodotracker.csv", "intel/urlhaus.csv"} <= set(ha)
    assert not any(k.startswith("intel/") for k in hoff)
    rest = {k: v for k, v in ha.items() if not k.startswith("intel/") and k != "ground_truth.json"}
    assert rest == {k: v for k, v in hoff.items() if k != "ground_truth.json"}
    gt = json.loads((a / "ground_truth.json").read_text())
    assert "intel" in gt
    del gt["intel"]
    assert gt == json.loads((off / "ground_truth.json").read_text())
    with (a / "intel" / "shodan-hosts.json.gz").open("rb") as f:
        assert f.read(10)[4:8] == b"\0\0\0\0"  # gzip mtime 0


@pytest.fixture(scope="module")
def full(full_sim) -> tuple[Path, dict, list[dict]]:
    gt = json.loads((full_sim / "ground_truth.json").read_text())
    return full_sim, gt, _banners(full_sim)


def test_banner_shape(full):
    _, _, banners = full
    v4 = [b for b in banners if "ip_str" in b]
    v6 = [b for b in banners if "ipv6" in b]
    assert len(v6) == 1 and "ip" not in v6[0]
    for b in v4:
        assert KEYS <= set(b), set(b) ^ KEYS
        a, b2, c, d = (int(x) for x in b["ip_str"].split("."))
        assert b["ip"] == (a << 24) | (b2 << 16) | (c << 8) | d
        assert b["asn"].startswith("AS") and b["transport"] in ("tcp", "udp")
        assert len(b["timestamp"]) == 26 and "2018-01-01" <= b["timestamp"][:10] <= "2018-06-30"
        assert {"module", "crawler"} <= set(b["_shodan"])
        assert set(b["location"]) == {"country_code", "country_name"}
    per_ip_date = defaultdict(set)
    for b in v4:
        per_ip_date[b["ip_str"]].add(b["timestamp"][:10])
    assert 1 <= max(Counter(b["ip_str"] for b in v4).values())
    assert any(len(s) == 2 for s in per_ip_date.values())
    ftp = next(b for b in v4 if b.get("product") == "Microsoft ftpd")
    assert ftp["data"] == "220 Microsoft FTP Service\r\n" and ftp["port"] == 21
    iis = next(b for b in v4 if b.get("product") == "Microsoft IIS httpd")
    assert "Server: Microsoft-IIS/" in iis["data"]
    rdp = next(b for b in v4 if b["_shodan"]["module"] == "rdp")
    assert rdp["port"] == 3389


def test_story_mix(full):
    _, gt, _ = full
    q2 = gt["intel"]["quarters"]["2018Q2"]
    rec = q2["with_host_record"]
    assert 0.25 * q2["attacking_ips"] < rec < 0.6 * q2["attacking_ips"]
    assert q2["windows"] >= 0.4 * rec and gt["intel"]["all"]["windows"] > 400
    assert max(q2["service_class"], key=q2["service_class"].get) == "ftp"
    assert q2["service_class"]["ftp"] > 300 and gt["intel"]["all"]["service_class"]["mail"] > 80
    for c in ("vpn", "mikrotik", "proxy", "web", "database", "router", "remote-access"):
        assert q2["service_class"][c] > 10, c
    for p in ("kangle", "Squid http proxy", "Jetty", "MikroTik bandwidth-test server"):
        assert q2["product"][p] > 0, p
    top2 = sorted(q2["asn"], key=q2["asn"].get, reverse=True)[:2]
    assert set(top2) == {"AS45090", "AS37963"}
    assert q2["asn"]["AS45090"] + q2["asn"]["AS37963"] > 0.4 * rec
    assert q2["two_snapshots"] > 50 and q2["nearest_not_latest"] > 10
    assert len(gt["intel"]["all"]["research_scanners"]) >= 5
    assert gt["intel"]["all"]["ioc_listed"]
    assert set(gt["intel"]["all"]["ioc_listed"].values()) <= {"Emotet", "QakBot", "TrickBot"}


def _first_attack_days(root: Path) -> dict[str, dict[str, int]]:
    """quarter -> attacking ip -> first attack (epoch s of its day's start), from the logs."""
    out: dict[str, dict[str, int]] = {"2018Q1": {}, "2018Q2": {}}
    for r in parse(root):
        if campaign_of(r) is None and r["user_agent_original"] not in NOISE_UAS:
            continue
        q = "2018Q1" if r["day"] < "2018-04-01" else "2018Q2"
        t = int(datetime.combine(date.fromisoformat(r["day"]), datetime.min.time(),
                                 UTC).timestamp())
        ip = r["source_ip"]
        out[q][ip] = min(t, out[q].get(ip, t))
    return out


def _cls(b: dict) -> str | None:
    for c, products in CLASSES.items():
        if b.get("product") in products:
            return c
    return MODULES.get(b["_shodan"]["module"])


def _family(os_name: str | None) -> str | None:
    if not os_name:
        return None
    if os_name in WINDOWS_OS:
        return WINDOWS_OS[os_name]
    if os_name.startswith("Linux") or os_name in ("Ubuntu", "CentOS", "Debian"):
        return "Linux"
    return {"MikroTik RouterOS": "RouterOS"}.get(os_name)


def _expected(first: dict[str, int], banners: list[dict], feodo: dict[str, str]) -> dict:
    snaps: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for b in banners:
        if "ip_str" in b:
            snaps[b["ip_str"]][b["timestamp"][:10]].append(b)
    fam, cls, prod, asn = Counter(), Counter(), Counter(), Counter()
    rec = unknown = two = not_latest = 0
    scanners = []
    for ip, t in first.items():
        if ip not in snaps:
            continue
        rec += 1
        timed = []
        for bs in snaps[ip].values():
            st = min(datetime.strptime(b["timestamp"], "%Y-%m-%dT%H:%M:%S.%f")
                     .replace(tzinfo=UTC).timestamp() for b in bs)
            timed.append((st, bs))
        timed.sort(key=lambda x: x[0])
        best = min(timed, key=lambda x: (abs(x[0] - t), -x[0]))
        if len(timed) > 1:
            two += 1
            not_latest += best is not timed[-1]
        oses = {b["os"] for b in best[1] if b.get("os")}
        assert len(oses) <= 1
        f = _family(next(iter(oses), None))
        if f:
            fam[f] += 1
        else:
            unknown += 1
        cls.update({c for b in best[1] if (c := _cls(b))})
        prod.update({b["product"] for b in best[1] if b.get("product")})
        asn.update({b["asn"] for b in best[1]})
        if any(h.endswith(SCANNER_DNS) for bs in snaps[ip].values() for b in bs
               for h in b["hostnames"]):
            scanners.append(ip)
    return {"attacking_ips": len(first), "with_host_record": rec,
            "windows": sum(n for k, n in fam.items() if k.startswith("Windows")),
            "os_family": dict(fam), "os_unknown": unknown, "service_class": dict(cls),
            "product": dict(prod), "asn": dict(asn), "two_snapshots": two,
            "nearest_not_latest": not_latest, "research_scanners": sorted(scanners),
            "ioc_listed": {ip: feodo[ip] for ip in sorted(first) if ip in feodo}}


def test_truth_recomputed_from_files(full):
    root, gt, banners = full
    lines = (root / "intel" / "feodotracker.csv").read_text().splitlines()
    assert '# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"' in lines
    rows = list(csv.reader(x for x in lines if not x.startswith("#")))
    assert all(len(r) == 6 and r[3] == "offline" for r in rows)
    feodo = {r[1]: r[5] for r in rows}
    urlhaus = (root / "intel" / "urlhaus.csv").read_text().splitlines()
    assert "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter" in urlhaus
    urls = [r[2] for r in csv.reader(x for x in urlhaus if not x.startswith("#"))]
    intel = gt["intel"]
    assert urls == intel["endpoint_iocs"]["urls"] and urls
    assert set(intel["endpoint_iocs"]["ips"]) <= set(feodo)
    first = _first_attack_days(root)
    first["all"] = {}
    for q in ("2018Q1", "2018Q2"):
        for ip, t in first[q].items():
            first["all"][ip] = min(t, first["all"].get(ip, t))
    for scope in ("2018Q1", "2018Q2", "all"):
        got = intel["all"] if scope == "all" else intel["quarters"][scope]
        assert got == _expected(first[scope], banners, feodo), scope
    # never-attacking hosts have records too, and are in no figure
    attackers = set(first["all"])
    assert {b["ip_str"] for b in banners if "ip_str" in b} - attackers
