"""Threat-intel files for the simulated attackers: Shodan host records and abuse.ch lists.

Called by ``world.simulate`` after every other draw, so every other file is the same with or
without it. Written under ``intel/``::

    intel/shodan-hosts.json.gz   Shodan banners, one JSON object a line (``shodan download``
                                 format; gzip without name or time)
    intel/feodotracker.csv       abuse.ch Feodo Tracker IP blocklist (CSV, '#' comments)
    intel/urlhaus.csv            abuse.ch URLhaus CSV (the Emotet download URLs of the
                                 endpoint chains)

The story: most attacking hosts are compromised servers at Tencent and Alibaba, many of them
Windows (XP/7/8/2003/2008/2012) with FTP, IIS, RDP; FTP servers are the most common service,
then web, mail, VPN, MikroTik, Kangle/Squid proxies, Jetty; GPON sources are home routers.

Definitions (``ground_truth.json["intel"]``, recomputed by ``tests/simulate/test_intel.py``)
-------------------------------------------------------------------------------------------
*Attacking IPs of a quarter*: the source IPs of the campaign requests and of the noise
requests (``attacks.noise``: sqli/xss/lfi/scanner probes) of that quarter. *First attack*:
the earliest timestamp (UTC, seconds, as written in the logs) of such a request of the IP in
that quarter; for ``"all"``, the IP's earliest over both quarters.
(In the logs, a noise request is one of no campaign whose User-Agent is '-', 'Mozilla/5.0',
sqlmap's, Nikto's, 'masscan/1.0' or 'Mozilla/5.0 zgrab/0.x'; benign traffic never uses
these. With the built-in rules every campaign and noise request is a detection -- checked
for seed 7, scale 1 -- so these are the sources, and first requests, of the detected web
traffic.)

*Banner*: one line of the Shodan file. Only IPv4 banners (``ip_str``) count; the ``ipv6``
banner and the banners of IPs that never attacked are to be ignored. *Snapshot*: the banners of
one IP whose ``timestamp`` has the same UTC date; its time is the earliest timestamp among
them. (Snapshots of one IP are at least 3 days apart, and for every first attack the two
snapshots' distances differ by at least 2 days, so a day-resolution reading gives the same
answers.) *Host record of an attacking IP*: its snapshot nearest to its first attack
(smallest ``|snapshot time - first attack|``; ties -> the later snapshot). Every figure below
about OS, services, products and ASN uses only that snapshot's banners.

Per scope (``"quarters": {"2018Q1": ..., "2018Q2": ...}`` and ``"all"``):

- ``attacking_ips``: number of attacking IPs.
- ``with_host_record``: those with at least one banner.
- ``os_family``: IPs per normalised ``os`` of the record's banners (all non-null ``os`` of one
  snapshot are equal): 'Windows Server 2008 R2' -> 'Windows Server 2008', 'Windows Server
  2012 R2' -> 'Windows Server 2012', 'Windows 7 or 8' -> 'Windows 7/8', 'Windows XP' ->
  'Windows XP', 'Windows Server 2003' -> 'Windows Server 2003', any os starting with 'Linux'
  or being 'Ubuntu', 'CentOS', 'Debian' -> 'Linux', 'MikroTik RouterOS' -> 'RouterOS'
  (``os_family()``). ``os_unknown``: IPs whose record has no ``os`` at all. ``windows``: the
  sum of the 'Windows ...' families.
- ``service_class``: IPs per class of the record's banners, an IP counted once per class
  (``service_class()``): by product first (``PRODUCT_CLASS``) -- ftp: Microsoft ftpd,
  vsftpd, Pure-FTPd, FileZilla ftpd, ProFTPD, MikroTik router ftpd; mail: Exim smtpd,
  Postfix smtpd, Dovecot pop3d, Dovecot imapd, Microsoft Exchange smtpd; vpn: PPTP, OpenVPN,
  IPsec IKE, Fortinet FortiGate SSL VPN; mikrotik: MikroTik bandwidth-test server, MikroTik
  RouterOS API, MikroTik Winbox; proxy: kangle, Squid http proxy; web: Jetty, Apache httpd,
  nginx, Microsoft IIS httpd; database: MySQL, MS SQL Server, Redis key-value store;
  remote-access: Remote Desktop Protocol, OpenSSH; router: GPON Home Gateway httpd --
  then, for a banner without product, by ``_shodan.module`` (``MODULE_CLASS``: smb, rdp,
  ssh, telnet -> remote-access; ftp -> ftp; pptp, ike, openvpn -> vpn; mikrotik-bw ->
  mikrotik).
- ``product``: IPs per non-null ``product`` of the record's banners (once per product).
- ``asn``: IPs per ``asn`` of the record's banners ('AS45090' Tencent, 'AS37963' Alibaba).
- ``two_snapshots``: attacking IPs with banners on two dates; ``nearest_not_latest``: of
  those, the IPs whose record (nearest snapshot) is not their latest snapshot.
- ``research_scanners``: sorted attacking IPs with a banner (any snapshot) whose hostname
  ends with one of ``SCANNER_SUFFIXES`` (research scanners' reverse DNS). They are existing
  noise sources (no scanner IP was added to the traffic, which would change the other files).
- ``ioc_listed``: attacking IP -> malware, for the IPs listed as ``dst_ip`` in
  feodotracker.csv.

``endpoint_iocs`` lists the Emotet chains' indicators (``"ips"``: C2 addresses in Feodo
Tracker, ``"urls"``: download URLs in URLhaus); ``files`` the files' banners/rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threatscope.simulate.world import AddressBook

_EPOCH0 = 1514764800  # 2018-01-01T00:00:00Z
DAYS = 181
QUARTERS = {"2018Q1": (0, 90), "2018Q2": (90, 181)}
SHODAN_FILE = "intel/shodan-hosts.json.gz"
FEODO_FILE = "intel/feodotracker.csv"
URLHAUS_FILE = "intel/urlhaus.csv"

OS_FAMILY = {
    "Windows Server 2008 R2": "Windows Server 2008", "Windows Server 2012 R2": "Windows Server 2012",
    "Windows 7 or 8": "Windows 7/8", "Windows XP": "Windows XP",
    "Windows Server 2003": "Windows Server 2003", "MikroTik RouterOS": "RouterOS",
    "Ubuntu": "Linux", "CentOS": "Linux", "Debian": "Linux",
}
PRODUCT_CLASS = {
    **dict.fromkeys(("Microsoft ftpd", "vsftpd", "Pure-FTPd", "FileZilla ftpd", "ProFTPD",
                     "MikroTik router ftpd"), "ftp"),
    **dict.fromkeys(("Exim smtpd", "Postfix smtpd", "Dovecot pop3d", "Dovecot imapd",
                     "Microsoft Exchange smtpd"), "mail"),
    **dict.fromkeys(("PPTP", "OpenVPN", "IPsec IKE", "Fortinet FortiGate SSL VPN"), "vpn"),
    **dict.fromkeys(("MikroTik bandwidth-test server", "MikroTik RouterOS API",
                     "MikroTik Winbox"), "mikrotik"),
    **dict.fromkeys(("kangle", "Squid http proxy"), "proxy"),
    **dict.fromkeys(("Jetty", "Apache httpd", "nginx", "Microsoft IIS httpd"), "web"),
    **dict.fromkeys(("MySQL", "MS SQL Server", "Redis key-value store"), "database"),
    **dict.fromkeys(("Remote Desktop Protocol", "OpenSSH"), "remote-access"),
    "GPON Home Gateway httpd": "router",
}
MODULE_CLASS = {"smb": "remote-access", "rdp": "remote-access", "ssh": "remote-access",
                "telnet": "remote-access", "ftp": "ftp", "pptp": "vpn", "ike": "vpn",
                "openvpn": "vpn", "mikrotik-bw": "mikrotik"}
SCANNER_SUFFIXES = (".shodan.io", ".censys-scanner.com", ".shadowserver.org",
                    ".internet-measurement.com", ".binaryedge.ninja")


def os_family(os_name: str | None) -> str | None:
    """The normalised OS family of a Shodan ``os`` (None if unknown)."""
    if not os_name:
        return None
    if os_name.startswith("Linux"):
        return "Linux"
    return OS_FAMILY.get(os_name)


def service_class(banner: dict[str, Any]) -> str | None:
    """The service class of a banner (by product, else by Shodan module)."""
    product = banner.get("product")
    if product in PRODUCT_CLASS:
        return PRODUCT_CLASS[product]
    return MODULE_CLASS.get((banner.get("_shodan") or {}).get("module"))


# -- networks -------------------------------------------------------------------------------------
_NETS = {  # asn -> (org, isp, cloud provider)
    45090: ("Tencent cloud computing (Beijing) Co., Ltd.",
            "Shenzhen Tencent Computer Systems Company Limited", "Tencent"),
    37963: ("Hangzhou Alibaba Advertising Co.,Ltd.", "Hangzhou Alibaba Advertising Co.,Ltd.",
            "Alibaba"),
    14061: ("DigitalOcean, LLC", "DigitalOcean, LLC", "DigitalOcean"),
    16276: ("OVH SAS", "OVH SAS", "OVH"),
    20473: ("Choopa, LLC", "Choopa, LLC", "Vultr"),
    24940: ("Hetzner Online GmbH", "Hetzner Online GmbH", "Hetzner"),
    36352: ("ColoCrossing", "ColoCrossing", None),
    16509: ("Amazon.com, Inc.", "Amazon.com", "Amazon"),
}
_WORDS = ("sky", "dragon", "jade", "east", "star", "cloud", "golden", "river", "peak", "nova")


def _profiles(net: str, campaigns: set[str]) -> list[tuple[str, float]]:
    if net in ("tencent", "alibaba"):
        win = 0.72 if "iis-webdav" in campaigns else 0.5
        return [("win-server", win), ("linux-ftp", 0.11), ("linux-mail", 0.08),
                ("kangle", 0.05), ("linux-web", 0.05), ("vpn", 0.04), ("mikrotik", 0.02),
                ("squid", 0.02), ("database", 0.02)]
    if net == "hosting":
        return [("win-server", 0.32), ("linux-ftp", 0.18), ("linux-mail", 0.16),
                ("linux-web", 0.15), ("vpn", 0.08), ("squid", 0.05), ("database", 0.05),
                ("kangle", 0.02), ("mikrotik", 0.03)]
    if "gpon" in campaigns:
        return [("gpon", 0.5), ("mikrotik", 0.22), ("win-desktop", 0.28)]
    return [("mikrotik", 0.35), ("win-desktop", 0.4), ("gpon", 0.1), ("linux-web", 0.15)]


def _record_share(net: str, campaigns: set[str]) -> float:
    if not campaigns:
        return 0.3  # noise only
    if net in ("tencent", "alibaba"):
        return 0.62
    if net == "hosting":
        return 0.45
    return 0.2 if "gpon" in campaigns else 0.3


# -- banners -----------------------------------------------------------------------------------
Service = tuple[int, str, str | None, str | None, str, str]  # port, transport, product,
# version, module, data

_IIS = {"Windows Server 2008 R2": "7.5", "Windows Server 2012 R2": "8.5", "Windows 7 or 8": "7.5",
        "Windows XP": "5.1", "Windows Server 2003": "6.0"}
_SMB_OS = {"Windows Server 2008 R2": "Windows Server 2008 R2 Standard 7601 Service Pack 1",
           "Windows Server 2012 R2": "Windows Server 2012 R2 Standard 9600",
           "Windows 7 or 8": "Windows 7 Professional 7601 Service Pack 1",
           "Windows XP": "Windows 5.1", "Windows Server 2003": "Windows Server 2003 3790 Service "
           "Pack 2"}
_RDP = ("\x03\x00\x00\x13\x0e\xd0\x00\x00\x124\x00\x02\x1f\x08\x00\x02\x00\x00\x00\n"
        "Remote Desktop Protocol\n")


def _http(server: str, status: str = "200 OK", extra: str = "") -> str:
    return (f"HTTP/1.1 {status}\r\nServer: {server}\r\nContent-Type: text/html\r\n{extra}"
            "Content-Length: 612\r\n\r\n")


def _iis(os_name: str) -> Service:
    v = _IIS[os_name]
    return (80, "tcp", "Microsoft IIS httpd", v, "http",
            _http(f"Microsoft-IIS/{v}", extra="X-Powered-By: ASP.NET\r\n"))


def _linux_web(rng: random.Random) -> Service:
    kind = rng.choice(["nginx", "nginx", "Apache httpd", "Jetty"])
    if kind == "nginx":
        v = rng.choice(["1.10.3", "1.12.2", "1.14.0"])
        return (80, "tcp", "nginx", v, "http", _http(f"nginx/{v}"))
    if kind == "Apache httpd":
        v = rng.choice(["2.2.15", "2.4.6", "2.4.18"])
        return (80, "tcp", "Apache httpd", v, "http", _http(f"Apache/{v} (CentOS)"))
    v = rng.choice(["9.2.z-SNAPSHOT", "9.4.8.v20171121", "8.1.16.v20140903"])
    return (8080, "tcp", "Jetty", v, "http", _http(f"Jetty({v})"))


def _linux_ftp(rng: random.Random) -> Service:
    kind = rng.choice(["vsftpd", "vsftpd", "Pure-FTPd", "ProFTPD", "FileZilla ftpd"])
    if kind == "vsftpd":
        return (21, "tcp", "vsftpd", "3.0.2", "ftp", "220 (vsFTPd 3.0.2)\r\n")
    if kind == "Pure-FTPd":
        return (21, "tcp", "Pure-FTPd", None, "ftp",
                "220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n")
    if kind == "ProFTPD":
        return (21, "tcp", "ProFTPD", "1.3.5", "ftp", "220 ProFTPD 1.3.5 Server ready.\r\n")
    return (21, "tcp", "FileZilla ftpd", "0.9.60 beta", "ftp",
            "220-FileZilla Server 0.9.60 beta\r\n220 Welcome\r\n")


def _mail(rng: random.Random, hostname: str) -> list[Service]:
    if rng.random() < 0.55:
        smtp: Service = (25, "tcp", "Exim smtpd", "4.89", "smtp",
                         f"220 {hostname} ESMTP Exim 4.89 #1 Mon, 05 Mar 2018 10:00:00 +0800\r\n")
    else:
        smtp = (25, "tcp", "Postfix smtpd", None, "smtp", f"220 {hostname} ESMTP Postfix\r\n")
    out = [smtp]
    if rng.random() < 0.6:
        out.append((110, "tcp", "Dovecot pop3d", None, "pop3", "+OK Dovecot ready.\r\n"))
    if rng.random() < 0.5:
        out.append((143, "tcp", "Dovecot imapd", None, "imap",
                    "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE "
                    "IDLE AUTH=PLAIN] Dovecot ready.\r\n"))
    return out


def _pptp(vendor: str) -> Service:
    return (1723, "tcp", "PPTP", None, "pptp",
            f"PPTP:\n  Firmware: 1\n  Hostname: \n  Vendor: {vendor}\n")


def _host(rng: random.Random, kind: str, ip: str) -> tuple[str | None, list[Service], list[str]]:
    """(os, services, hostnames) of a host of profile ``kind``."""
    hostnames: list[str] = []
    svcs: list[Service] = []
    if kind in ("win-server", "win-desktop"):
        if kind == "win-server":
            os_name = rng.choices(list(_IIS), [0.36, 0.24, 0.16, 0.1, 0.14])[0]
            opts = [(0.66, "ftp"), (0.5, "iis"), (0.35, "rdp"), (0.25, "smb"), (0.12, "mssql"),
                    (0.12, "exchange"), (0.08, "pptp")]
        else:
            os_name = rng.choices(["Windows 7 or 8", "Windows XP"], [0.65, 0.35])[0]
            opts = [(0.7, "smb"), (0.5, "rdp"), (0.2, "ftp"), (0.1, "iis")]
        for p, what in opts:
            if rng.random() < p:
                svcs.append(_win_service(what, os_name))
        if not svcs:
            svcs.append(_win_service("smb" if kind == "win-desktop" else "ftp", os_name))
        return os_name, svcs[:4], hostnames
    if kind == "mikrotik":
        os_name = "MikroTik RouterOS"
        svcs.append((2000, "tcp", "MikroTik bandwidth-test server", None, "mikrotik-bw",
                     "\x01\x00\x00\x00"))
        if rng.random() < 0.5:
            svcs.append((8728, "tcp", "MikroTik RouterOS API", None, "mikrotik-routeros", ""))
        if rng.random() < 0.5:
            svcs.append((8291, "tcp", "MikroTik Winbox", None, "mikrotik-winbox", ""))
        if rng.random() < 0.45:
            svcs.append((21, "tcp", "MikroTik router ftpd", "6.40.5", "ftp",
                         "220 MikroTik FTP server (MikroTik 6.40.5) ready\r\n"))
        if rng.random() < 0.35:
            svcs.append(_pptp("MikroTik"))
        return os_name, svcs[:4], hostnames
    if kind == "gpon":
        svcs.append((rng.choice([80, 8080]), "tcp", "GPON Home Gateway httpd", None, "http",
                     _http("GoAhead-Webs", extra="X-Frame-Options: SAMEORIGIN\r\n")
                     + "<html><head><title>GPON Home Gateway</title></head>"))
        if rng.random() < 0.3:
            svcs.append((23, "tcp", None, None, "telnet", "\xff\xfd\x01\xff\xfd\x1f\r\nlogin: "))
        return None, svcs, hostnames
    # Linux servers (the os is often unknown)
    os_name = rng.choice(["Linux 3.x", "Linux 2.6.x", "CentOS", "Ubuntu", None, None])
    name = f"{rng.choice(_WORDS)}{rng.choice(_WORDS)}.cn"
    if kind == "linux-ftp":
        svcs.append(_linux_ftp(rng))
        if rng.random() < 0.4:
            svcs.append(_linux_web(rng))
    elif kind == "linux-mail":
        hostnames = [f"mail.{name}"]
        svcs += _mail(rng, hostnames[0])
        if rng.random() < 0.3:
            svcs.append(_linux_ftp(rng))
    elif kind == "linux-web":
        svcs.append(_linux_web(rng))
        if rng.random() < 0.3:
            svcs.append(_linux_ftp(rng))
    elif kind == "kangle":
        svcs.append((rng.choice([80, 3311]), "tcp", "kangle", "3.5.8", "http",
                     _http("kangle/3.5.8", status="401 Unauthorized",
                           extra='WWW-Authenticate: Basic realm="kangle"\r\n')))
        if rng.random() < 0.5:
            svcs.append(_linux_ftp(rng))
    elif kind == "squid":
        svcs.append((3128, "tcp", "Squid http proxy", "3.5.20", "http",
                     _http("squid/3.5.20", status="400 Bad Request",
                           extra="X-Squid-Error: ERR_INVALID_URL 0\r\n")))
    elif kind == "vpn":
        v = rng.choice(["pptp", "openvpn", "ike", "ssl"])
        if v == "pptp":
            svcs.append(_pptp("Linux"))
        elif v == "openvpn":
            svcs.append((1194, "udp", "OpenVPN", None, "openvpn", "OpenVPN\n"))
        elif v == "ike":
            svcs.append((500, "udp", "IPsec IKE", None, "ike",
                         "VPN (IKE)\n\nInitiator SPI: 3c9d21a5e4f80b11\nResponder SPI: "
                         "7f00a1e23b45c6d8\nNext Payload: SA\nVersion: 1.0\n"))
        else:
            svcs.append((10443, "tcp", "Fortinet FortiGate SSL VPN", None, "https",
                         _http("xxxxxxxx-xxxxx", extra="Set-Cookie: SVPNCOOKIE=; path=/\r\n")))
        if rng.random() < 0.4:
            svcs.append(_linux_web(rng))
    else:  # database
        svcs.append(rng.choice([
            (3306, "tcp", "MySQL", "5.5.60", "mysql", "J\x00\x00\x00\n5.5.60-log\x00"),
            (6379, "tcp", "Redis key-value store", "3.2.12", "redis",
             "-NOAUTH Authentication required.\r\n"),
        ]))
        if rng.random() < 0.4:
            svcs.append(_linux_web(rng))
    if rng.random() < 0.25:
        svcs.append((22, "tcp", "OpenSSH", "7.4", "ssh",
                     "SSH-2.0-OpenSSH_7.4\r\nKey type: ssh-rsa\r\n"))
    return os_name, svcs[:4], hostnames


def _win_service(what: str, os_name: str) -> Service:
    if what == "ftp":
        return (21, "tcp", "Microsoft ftpd", None, "ftp", "220 Microsoft FTP Service\r\n")
    if what == "iis":
        return _iis(os_name)
    if what == "rdp":
        return (3389, "tcp", "Remote Desktop Protocol", None, "rdp", _RDP)
    if what == "smb":
        return (445, "tcp", None, None, "smb",
                f"SMB Status:\n  Authentication: enabled\n  SMBv1: yes\n  OS: {_SMB_OS[os_name]}\n")
    if what == "mssql":
        return (1433, "tcp", "MS SQL Server", "10.50.1600", "mssql",
                "\x04\x01\x00%\x00\x00\x01\x00\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01")
    if what == "exchange":
        return (25, "tcp", "Microsoft Exchange smtpd", None, "smtp",
                "220 mail.local Microsoft ESMTP MAIL Service ready\r\n")
    return _pptp("Microsoft")


# -- writing ------------------------------------------------------------------------------------
def _ts(sec: int, micro: int = 0) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{micro:06d}"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ip_int(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _banners(rng: random.Random, ip: str, info: dict, start: int, os_name: str | None,
             svcs: list[Service], hostnames: list[str]) -> list[dict]:
    """One snapshot: the services' banners, within 6 hours of ``start`` on its date."""
    asn = info["asn"]
    org, isp, cloud = _NETS.get(asn, (info["as_org"], info["as_org"], None))
    out = []
    offsets = sorted([0] + [rng.randrange(1, 6 * 3600) for _ in svcs[1:]])
    for (port, transport, product, version, module, data), off in zip(svcs, offsets, strict=True):
        b: dict[str, Any] = {"ip_str": ip, "ip": _ip_int(ip), "port": port, "transport": transport}
        if product is not None:
            b["product"] = product
        if version is not None:
            b["version"] = version
        b.update({"os": os_name, "org": org, "isp": isp, "asn": f"AS{asn}",
                  "hostnames": hostnames, "domains": sorted({".".join(h.split(".")[-2:])
                                                              for h in hostnames}),
                  "tags": ["cloud"] if cloud else []})
        if product == "Microsoft IIS httpd":
            b["cpe23"] = [f"cpe:2.3:a:microsoft:internet_information_services:{version}"]
            if version == "6.0":
                b["vulns"] = {"CVE-2017-7269": {"verified": False, "cvss": 10.0, "summary":
                                                "IIS 6.0 WebDAV ScStoragePathFromUrl overflow"}}
        elif product == "OpenSSH":
            b["cpe23"] = [f"cpe:2.3:a:openbsd:openssh:{version}"]
        b["location"] = {"country_code": info["country_code"],
                         "country_name": info["country_name"]}
        if cloud:
            b["cloud"] = {"provider": cloud}
        b.update({"timestamp": _ts(start + off, rng.randrange(1_000_000)),
                  "hash": rng.randrange(-2**31, 2**31), "data": data,
                  "_shodan": {"module": module, "crawler": f"{rng.getrandbits(160):040x}",
                              "id": _uuid(rng), "ptr": bool(hostnames), "options": {}}})
        out.append(b)
    return out


def _net(info: dict) -> str:
    if info["asn"] == 45090:
        return "tencent"
    if info["asn"] == 37963:
        return "alibaba"
    return "hosting" if info["network_type"] == "hosting" else "access"


def _snapshot_start(rng: random.Random) -> int:
    return _EPOCH0 + rng.randrange(DAYS) * 86400 + rng.randrange(12 * 3600)


def _two_times(rng: random.Random, refs: list[int]) -> tuple[int, int] | None:
    """Two snapshot times >= 3 days apart whose distances to each reference differ by >= 2
    days (so which one is nearest is never a close call)."""
    for _ in range(40):
        a, b = sorted((_snapshot_start(rng), _snapshot_start(rng)))
        if b - a >= 3 * 86400 and all(abs(abs(a - r) - abs(b - r)) >= 2 * 86400 for r in refs):
            return a, b
    return None


def write_intel(out: Path, rng: random.Random, book: AddressBook, first_seen: dict[str, dict[str, int]],
                campaigns_of: dict[str, set[str]], noise_ips: dict[str, set[str]],
                endpoint_iocs: list[dict], seen_ips: set[str], scale: float) -> dict:
    """Write ``intel/*`` and return ``ground_truth.json["intel"]``.

    ``first_seen``: quarter -> attacking IP -> first request (epoch s); ``campaigns_of``: IP
    -> campaign keys; ``noise_ips``: quarter -> noise sources; ``seen_ips``: every source IP of
    the web logs (the never-attacking records avoid them)."""
    from threatscope.enrich import lookup

    attackers = sorted({ip for fq in first_seen.values() for ip in fq})
    info = {r["ip"]: r for r in lookup(attackers).to_pylist()} if attackers else {}
    noise_only = sorted({ip for s in noise_ips.values() for ip in s} - set(campaigns_of))

    # research scanners: some noise-only sources get scanner reverse DNS
    scanners = set(rng.sample(noise_only, min(len(noise_only), max(3, round(10 * scale ** 0.5)))))
    scanner_names = {}
    for i, ip in enumerate(sorted(scanners)):
        suf = SCANNER_SUFFIXES[i % len(SCANNER_SUFFIXES)]
        n = rng.randrange(1, 60)
        scanner_names[ip] = {".shodan.io": f"census{n}.shodan.io",
                             ".censys-scanner.com": f"scanner-{n:02d}.ch1.censys-scanner.com",
                             ".shadowserver.org": f"scan-{n:02d}f.shadowserver.org",
                             ".internet-measurement.com": f"{n}.scan.internet-measurement.com",
                             ".binaryedge.ninja": f"sh-ams-scan-{n}.binaryedge.ninja"}[suf]

    banners: list[dict] = []
    for ip in attackers:
        inf = info[ip]
        camps = campaigns_of.get(ip, set())
        if ip in scanners:
            start = _snapshot_start(rng)
            svcs: list[Service] = [(22, "tcp", "OpenSSH", "7.4", "ssh",
                                    "SSH-2.0-OpenSSH_7.4\r\nKey type: ssh-rsa\r\n")]
            if rng.random() < 0.6:
                svcs.append((80, "tcp", "nginx", "1.14.0", "http", _http("nginx/1.14.0")))
            banners += _banners(rng, ip, inf, start, "Linux 3.x", svcs, [scanner_names[ip]])
            continue
        net = _net(inf)
        if rng.random() >= _record_share(net, camps):
            continue
        prof = _profiles(net, camps)
        kinds = [k for k, _ in prof]
        kind = rng.choices(kinds, [w for _, w in prof])[0]
        times = None
        if rng.random() < 0.2:  # an earlier record from before the compromise
            refs = [fq[ip] for fq in first_seen.values() if ip in fq]
            times = _two_times(rng, refs)
        if times is None:
            banners += _banners(rng, ip, inf, _snapshot_start(rng), *_host(rng, kind, ip))
            continue
        others = [k for k in kinds if k != kind] or kinds
        old = rng.choice(others)
        banners += _banners(rng, ip, inf, times[0], *_host(rng, old, ip))
        banners += _banners(rng, ip, inf, times[1], *_host(rng, kind, ip))

    # hosts that never attacked (to be ignored), and one IPv6 banner
    extra_asns = [45090, 37963, 14061, 4134, 4837]
    quiet: list[str] = []
    while len(quiet) < 12:
        ip = book.v4(rng, rng.choice(extra_asns))
        if ip not in seen_ips and ip not in quiet:
            quiet.append(ip)
    qinfo = {r["ip"]: r for r in lookup(quiet).to_pylist()}
    for ip in quiet:
        net = _net(qinfo[ip])
        prof = _profiles(net, set())
        kind = rng.choices([k for k, _ in prof], [w for _, w in prof])[0]
        banners += _banners(rng, ip, qinfo[ip], _snapshot_start(rng), *_host(rng, kind, ip))
    v6 = None
    for asn in (37963, 45090, 14061, 16276, 24940):
        v6 = book.v6(rng, asn)
        if v6:
            break
    if v6:
        b = _banners(rng, "0.0.0.0", {"asn": asn, "as_org": "", "country_code": "CN",
                                       "country_name": "China"}, _snapshot_start(rng),
                     "Linux 3.x", [(80, "tcp", "nginx", "1.12.2", "http",
                                    _http("nginx/1.12.2"))], [])[0]
        del b["ip_str"], b["ip"]
        banners.append({"ipv6": v6, **b})
        if asn not in (45090, 37963):
            banners[-1]["location"] = {"country_code": None, "country_name": None}

    banners.sort(key=lambda b: (b["timestamp"], b.get("ip", 0), b["port"]))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as g:
        for b in banners:
            g.write((json.dumps(b, ensure_ascii=False) + "\n").encode("utf-8"))
    (out / "intel").mkdir(parents=True, exist_ok=True)
    (out / SHODAN_FILE).write_bytes(buf.getvalue())

    feodo = _feodo(rng, out, book, endpoint_iocs, campaigns_of, first_seen, seen_ips)
    urls = _urlhaus(rng, out, endpoint_iocs)
    truth = intel_truth(banners, feodo, first_seen)
    truth["endpoint_iocs"] = {"ips": sorted({i["c2"]["ip"] for i in endpoint_iocs}),
                              "urls": urls}
    truth["files"] = {SHODAN_FILE: len(banners), FEODO_FILE: len(feodo), URLHAUS_FILE: len(urls)}
    return truth


def _day_str(sec: int) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _feodo(rng, out, book, endpoint_iocs, campaigns_of, first_seen, seen_ips) -> dict[str, str]:
    """Feodo Tracker list: the endpoint Emotet C2s, some WebLogic sources, unrelated IPs.
    Returns dst_ip -> malware."""
    rows: list[tuple[int, str, int, str]] = []  # first seen, ip, port, malware
    listed: dict[str, str] = {}
    for i in endpoint_iocs:
        ip = i["c2"]["ip"]
        if ip not in listed:
            listed[ip] = "Emotet"
            rows.append((i["c2"]["ts_ms"] // 1000 - rng.randrange(1, 20) * 86400, ip,
                         i["c2"]["port"], "Emotet"))
    weblogic = sorted(ip for ip, c in campaigns_of.items() if "weblogic-wls-wsat" in c)
    for ip in rng.sample(weblogic, min(5, len(weblogic))):
        fam = rng.choice(["Emotet", "Emotet", "QakBot", "TrickBot"])
        listed[ip] = fam
        first = min(fq[ip] for fq in first_seen.values() if ip in fq)
        rows.append((max(_EPOCH0, first + rng.randrange(-20, 40) * 86400), ip,
                     rng.choice([443, 8080, 7080, 995, 2222]), fam))
    n = 0
    while n < 10:
        ip = book.v4(rng, rng.choice([14061, 16276, 24940, 36352, 4134]))
        if ip in seen_ips or ip in listed:
            continue
        fam = rng.choice(["Emotet", "Dridex", "TrickBot", "QakBot", "Heodo"])
        listed[ip] = fam
        rows.append((_snapshot_start(rng), ip, rng.choice([443, 447, 449, 8080]), fam))
        n += 1
    rows.sort()
    lines = ["#" * 77, "# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)",
             "# Last updated: 2018-07-01 00:05:12 UTC", "#",
             "# Terms Of Use: https://feodotracker.abuse.ch/blocklist/", "#" * 77, "#",
             '# "first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"']
    sio = io.StringIO()
    w = csv.writer(sio, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for first, ip, port, fam in rows:
        last = min(first + rng.randrange(2, 60) * 86400, _EPOCH0 + (DAYS - 1) * 86400)
        w.writerow([_day_str(first), ip, str(port), "offline", _day_str(last)[:10], fam])
    text = "\n".join(lines) + "\n" + sio.getvalue() + f"# Number of entries: {len(rows)}\n"
    (out / FEODO_FILE).write_text(text)
    return listed


def _urlhaus(rng: random.Random, out: Path, endpoint_iocs: list[dict]) -> list[str]:
    urls: dict[str, int] = {}
    for i in endpoint_iocs:
        for u in i["urls"]:
            urls.setdefault(u, i["download"]["ts_ms"] // 1000 - rng.randrange(3600, 5 * 86400))
    sio = io.StringIO()
    w = csv.writer(sio, quoting=csv.QUOTE_ALL, lineterminator="\n")
    ordered = sorted(urls.items(), key=lambda kv: (kv[1], kv[0]))
    for n, (u, added) in enumerate(ordered):
        uid = 20000 + n * 7 + rng.randrange(7)
        w.writerow([str(uid), _day_str(added), u, "offline",
                    _day_str(added + rng.randrange(1, 10) * 86400)[:10], "malware_download",
                    "doc,emotet,epoch1,heodo", f"https://urlhaus.abuse.ch/url/{uid}/",
                    rng.choice(["Cryptolaemus1", "JayTHL", "spamhaus", "abuse_ch"])])
    head = ["#" * 77, "# abuse.ch URLhaus Database Dump (CSV)",
            "# Last updated: 2018-07-01 00:05:12 (UTC)", "#",
            "# Terms Of Use: https://urlhaus.abuse.ch/api/", "#" * 77, "#",
            "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter"]
    (out / URLHAUS_FILE).write_text("\n".join(head) + "\n" + sio.getvalue())
    return [u for u, _ in ordered]


# -- truth ---------------------------------------------------------------------------------------
def _parse_ts(s: str) -> int:
    return int(datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())


def snapshots(banners: list[dict]) -> dict[str, list[tuple[int, list[dict]]]]:
    """IPv4 banners per IP grouped by UTC date: ip -> [(snapshot time, banners)] by time."""
    by: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for b in banners:
        if "ip_str" in b:
            by[b["ip_str"]][b["timestamp"][:10]].append(b)
    return {ip: sorted((min(_parse_ts(b["timestamp"]) for b in bs), bs) for bs in days.values())
            for ip, days in by.items()}


def nearest(snaps: list[tuple[int, list[dict]]], t: int) -> tuple[int, list[dict]]:
    """The snapshot nearest ``t`` (ties -> the later)."""
    return min(snaps, key=lambda s: (abs(s[0] - t), -s[0]))


def _scope(ips: dict[str, int], snaps: dict, feodo: dict[str, str]) -> dict:
    fam: Counter = Counter()
    cls: Counter = Counter()
    prod: Counter = Counter()
    asn: Counter = Counter()
    with_rec = unknown = two = not_latest = 0
    scanners = []
    for ip, t in ips.items():
        ss = snaps.get(ip)
        if not ss:
            continue
        with_rec += 1
        if len(ss) > 1:
            two += 1
            if nearest(ss, t) is not ss[-1]:
                not_latest += 1
        _, bs = nearest(ss, t)
        f = next((os_family(b.get("os")) for b in bs if b.get("os")), None)
        if f:
            fam[f] += 1
        else:
            unknown += 1
        cls.update({c for b in bs if (c := service_class(b))})
        prod.update({b["product"] for b in bs if b.get("product")})
        asn.update({b["asn"] for b in bs})
        if any(h.endswith(SCANNER_SUFFIXES) for _, sb in ss for b in sb for h in b["hostnames"]):
            scanners.append(ip)

    def srt(c: Counter) -> dict:
        return {k: c[k] for k in sorted(c, key=lambda k: (-c[k], k))}

    return {
        "attacking_ips": len(ips), "with_host_record": with_rec,
        "windows": sum(n for f, n in fam.items() if f.startswith("Windows")),
        "os_family": srt(fam), "os_unknown": unknown, "service_class": srt(cls),
        "product": srt(prod), "asn": srt(asn), "two_snapshots": two,
        "nearest_not_latest": not_latest, "research_scanners": sorted(scanners),
        "ioc_listed": {ip: feodo[ip] for ip in sorted(ips) if ip in feodo},
    }


def intel_truth(banners: list[dict], feodo: dict[str, str],
                first_seen: dict[str, dict[str, int]]) -> dict:
    """The figures of ``ground_truth.json["intel"]`` (see the module docstring)."""
    snaps = snapshots(banners)
    all_first: dict[str, int] = {}
    for fq in first_seen.values():
        for ip, t in fq.items():
            all_first[ip] = min(t, all_first.get(ip, t))
    return {
        "about": ("Shodan host records and abuse.ch lists of the attacking IPs; definitions "
                  "in threatscope/simulate/intel.py"),
        "quarters": {q: _scope(first_seen.get(q, {}), snaps, feodo) for q in QUARTERS},
        "all": _scope(all_first, snaps, feodo),
    }
