"""The simulated world: organisations, sensors, two quarters of traffic, campaigns, ground truth.

    simulate("sim", seed=7, scale=1.0)      # -> Path("sim")
    write_bench_log("big.log", 5_000_000, "combined")

Layout written::

    orgs.csv                                 org_id,name,sector,sensors
    <org_id>/<sensor>-u_ex18MM.log[.gz]      IIS W3C extended (fields change mid-period,
                                             header blocks repeat at service restarts)
    <org_id>/<sensor>-access.log-2018MM[.gz] Apache/nginx combined
    <org_id>/<sensor>-2018-MM.jsonl[.gz]     whole HTTP requests (WAF / honeypot)
    <org_id>/endpoint/...                    Windows events of its hosts (see ``endpoint``)
    intel/...                                Shodan host records of the attackers, abuse.ch
                                             Feodo Tracker / URLhaus lists (see ``intel``)
    ground_truth.json                        figures computed from what was written
                                             (``endpoint``: the endpoint truth,
                                             ``intel``: the threat-intel truth,
                                             ``exposure``: 2xx and large answers)

Baseline 2018Q1, period 2018Q2. Everything is drawn from one ``random.Random(seed)`` in a
fixed order, and gzip members carry no name or time, so the same seed gives the same bytes.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import io
import itertools
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from threatscope.errors import UserError
from threatscope.ipnum import V4_MAPPED, num_to_ip
from threatscope.simulate import attacks, benign, endpoint
from threatscope.simulate.attacks import Req

START = date(2018, 1, 1)
DAYS = 181  # 2018-01-01 .. 2018-06-30
Q2_DAY = 90  # 2018-04-01
QUARTERS = {"2018Q1": (0, Q2_DAY), "2018Q2": (Q2_DAY, DAYS)}
_EPOCH0 = 1514764800  # 2018-01-01T00:00:00Z


def _day(d: str) -> int:
    return (date.fromisoformat(d) - START).days


# -- organisations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sensor:
    name: str
    fmt: str  # 'w3c' | 'combined' | 'jsonl'
    gz: bool = False


@dataclass(frozen=True)
class OrgSpec:
    org_id: str
    name: str
    sector: str
    host: str
    sensors: tuple[Sensor, ...]
    per_day: int  # benign requests per day at scale 1
    home_asns: tuple[int, ...]  # where most of its visitors come from


ORGS: tuple[OrgSpec, ...] = (
    OrgSpec("org01", "Helix Biotherapeutics", "biotech", "www.helixbio.example",
            (Sensor("web01", "w3c"), Sensor("web02", "w3c")), 210, (7922, 7018)),
    OrgSpec("org02", "Ledgerline Accounting", "accounting", "www.ledgerline.example",
            (Sensor("iis01", "w3c"),), 110, (3320, 3215)),
    OrgSpec("org03", "Northwind Outfitters", "retail", "shop.northwind.example",
            (Sensor("edge01", "combined", gz=True), Sensor("edge02", "combined", gz=True)),
            260, (7922, 701, 7018)),
    OrgSpec("org04", "Department of Public Works", "government", "dpw.gov.example",
            (Sensor("iis01", "w3c"), Sensor("waf01", "jsonl")), 150, (7018, 701)),
    OrgSpec("org05", "Eastlake University", "education", "www.eastlake.example",
            (Sensor("www", "combined"),), 220, (3269, 3215)),
    OrgSpec("org06", "Kestrel Precision Manufacturing", "manufacturing", "www.kestrel.example",
            (Sensor("iis01", "w3c", gz=True),), 90, (3320, 9121)),
    OrgSpec("org07", "Harbor Mutual Bank", "finance", "online.harbormutual.example",
            (Sensor("waf01", "jsonl", gz=True),), 170, (7922, 1221)),
    OrgSpec("org08", "St Brigid Health", "healthcare", "www.stbrigid.example",
            (Sensor("web", "combined", gz=True),), 130, (3215, 3269)),
    OrgSpec("org09", "Sentinel Research Honeynet", "technology", "hp.sentinel.example",
            (Sensor("hp01", "jsonl"),), 25, (3320,)),
    OrgSpec("org10", "City of Ashford", "government", "www.ashford.example",
            (Sensor("www", "combined"),), 120, (1221, 7018)),
    OrgSpec("org11", "Meridian Retail Group", "retail", "www.meridianretail.example",
            (Sensor("iis01", "w3c"),), 160, (4766, 9318)),
)

HOSTING = {"tencent": 45090, "alibaba": 37963, "digitalocean": 14061, "ovh": 16276,
           "choopa": 20473, "hetzner": 24940, "colocrossing": 36352, "amazon": 16509}
ACCESS = (4134, 4837, 9808, 4766, 9318, 18881, 28573, 45899, 7552, 9121, 12389, 8151, 7922,
          7018, 701, 3320, 3215, 3269, 9498, 7713, 8452, 58224, 1221)


# -- campaigns ------------------------------------------------------------------------------------
def _exp_peak(onset: str, peak: str, rise: float, decay: float, floor: float = 0.0):
    o, p = _day(onset), _day(peak)

    def w(d: int) -> float:
        if d < o:
            return 0.0
        if d <= p:
            return math.exp(-(p - d) / rise) + (0.35 if d == p else 0.0)
        return max(math.exp(-(d - p) / decay), floor)

    return w


@dataclass(frozen=True)
class CampaignSpec:
    key: str
    totals: dict[str, int]  # requests per quarter at scale 1
    weight: Callable[[int], float]  # relative daily volume
    pools: dict[str, tuple[tuple[tuple[int, ...], float], ...]]  # per quarter: (asns, share)
    pool_size: dict[str, int]  # distinct source IPs per quarter at scale 1
    public_exploit_date: str | None
    targets: tuple[str, ...] = ("w3c", "combined", "jsonl")


_TENCENT_ALIBABA = (((HOSTING["tencent"],), 0.56), ((HOSTING["alibaba"],), 0.30),
                    ((HOSTING["digitalocean"], HOSTING["ovh"], HOSTING["choopa"]), 0.14))
_HOSTING_MIX = (((HOSTING["alibaba"], HOSTING["tencent"]), 0.35),
                ((HOSTING["digitalocean"], HOSTING["ovh"], HOSTING["hetzner"],
                  HOSTING["colocrossing"], HOSTING["amazon"]), 0.45), (ACCESS, 0.20))


def _iis_weight(d: int) -> float:
    if d < Q2_DAY:
        return 1.0
    spike = 2.2 if d == _day("2018-06-12") else 1.0  # a burst the report should show as peak
    return (1.0 + 3.0 * (d - Q2_DAY) / (DAYS - Q2_DAY)) * spike


CAMPAIGNS: tuple[CampaignSpec, ...] = (
    CampaignSpec(
        "iis-webdav", {"2018Q1": 6, "2018Q2": 4800}, _iis_weight,
        {"2018Q1": ((ACCESS, 0.5), ((HOSTING["ovh"], HOSTING["digitalocean"]), 0.5)),
         "2018Q2": _TENCENT_ALIBABA},
        {"2018Q1": 4, "2018Q2": 650}, "2017-03-27", targets=("w3c", "jsonl"),
    ),
    CampaignSpec(
        "gpon", {"2018Q1": 0, "2018Q2": 3000},
        _exp_peak("2018-05-01", "2018-05-12", rise=3.5, decay=4.0, floor=0.015),
        {"2018Q2": ((ACCESS, 1.0),)}, {"2018Q2": 1800}, "2018-04-30",
    ),
    CampaignSpec(
        "drupalgeddon2", {"2018Q1": 0, "2018Q2": 1200},
        _exp_peak("2018-04-13", "2018-04-16", rise=1.5, decay=9.0, floor=0.03),
        {"2018Q2": _HOSTING_MIX}, {"2018Q2": 320}, "2018-04-12",
    ),
    CampaignSpec(
        "drupalgeddon3", {"2018Q1": 0, "2018Q2": 150},
        _exp_peak("2018-04-26", "2018-04-27", rise=1.0, decay=6.0, floor=0.02),
        {"2018Q2": (((HOSTING["digitalocean"], HOSTING["ovh"]), 1.0),)}, {"2018Q2": 25},
        "2018-04-25",
    ),
    CampaignSpec(
        "weblogic-wls-wsat", {"2018Q1": 700, "2018Q2": 450},
        lambda d: 1.0 + 0.8 * math.exp(-abs(d - _day("2018-01-08")) / 10.0)
        + 0.6 * math.exp(-abs(d - _day("2018-05-21")) / 6.0),  # a second wave of miners
        {"2018Q1": _HOSTING_MIX, "2018Q2": _HOSTING_MIX}, {"2018Q1": 260, "2018Q2": 180},
        "2017-12-26",
    ),
)
NOISE = {"2018Q1": 900, "2018Q2": 1000}


# -- random helpers -------------------------------------------------------------------------------
class AddressBook:
    """Random addresses inside the real ranges of given ASNs (from the enrich stage's data)."""

    def __init__(self, asns: set[int]):
        from threatscope.enrich.stage import asn_ranges_num

        self._v4: dict[int, tuple[list[tuple[int, int]], list[int]]] = {}
        self._v6: dict[int, list[tuple[int, int]]] = defaultdict(list)
        ranges: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for first, last, asn, _org in asn_ranges_num(sorted(asns)):
            if V4_MAPPED <= first and last <= V4_MAPPED + 0xFFFF_FFFF:
                ranges[asn].append((first - V4_MAPPED, last - V4_MAPPED))
            else:
                self._v6[asn].append((first, last))
        for asn, rs in ranges.items():
            cum, total = [], 0
            for a, b in rs:
                total += b - a + 1
                cum.append(total)
            self._v4[asn] = (rs, cum)
        missing = sorted(asns - set(self._v4))
        if missing:
            raise UserError(f"simulate: no address ranges for AS{missing[0]} in geoip2fast data")

    def v4(self, rng: random.Random, asn: int) -> str:
        rs, cum = self._v4[asn]
        a, b = rs[bisect.bisect_right(cum, int(rng.random() * cum[-1]))]
        n = a + 1 + int(rng.random() * (b - a - 1)) if b - a > 2 else a
        return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def v6(self, rng: random.Random, asn: int) -> str | None:
        rs = self._v6.get(asn)
        if not rs:
            return None
        a, b = rng.choice(rs)
        return num_to_ip(a + rng.randrange(1, b - a))


@functools.lru_cache(maxsize=2)
def _address_book(asns: frozenset[int]) -> AddressBook:
    return AddressBook(set(asns))


def _pool(rng: random.Random, book: AddressBook, mix, size: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    groups = [g for g, _ in mix]
    shares = [s for _, s in mix]
    guard = 0
    while len(out) < size and guard < size * 20:
        guard += 1
        asn = rng.choice(rng.choices(groups, shares)[0])
        ip = book.v4(rng, asn)
        if ip not in seen:
            seen.add(ip)
            out.append(ip)
    return out


def _allocate(rng: random.Random, total: int, weights: list[float]) -> list[int]:
    """Split ``total`` over days in proportion to ``weights`` (largest remainder, so the shape
    is exact; ties, e.g. a handful of requests over flat weights, go to random days)."""
    s = sum(weights)
    if total <= 0 or s <= 0:
        return [0] * len(weights)
    raw = [total * w / s for w in weights]
    counts = [int(x) for x in raw]
    rest = total - sum(counts)
    tie = [rng.random() for _ in raw]
    order = sorted(range(len(raw)), key=lambda i: (-round(raw[i] - counts[i], 9), tie[i]))
    for i in order[:rest]:
        counts[i] += 1
    return counts


def _zipf_weights(n: int) -> list[float]:
    return [1.0 / (i + 1) ** 0.7 for i in range(n)]


def _scaled(n: int, scale: float) -> int:
    return int(round(n * scale))


# -- writers --------------------------------------------------------------------------------------
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
W3C_FIELDS_A = ("date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
                "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken")
W3C_FIELDS_B = ("date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query "
                "s-port cs-username c-ip cs-version cs(User-Agent) cs(Referer) cs-host sc-status "
                "sc-substatus sc-win32-status sc-bytes cs-bytes time-taken")


class _Clock:
    """Cached calendar pieces for epoch seconds (formatting is the writer's hot path)."""

    def __init__(self) -> None:
        self._days: dict[int, date] = {}

    def parts(self, ts: int) -> tuple[date, int, int, int]:
        d, rem = divmod(ts - _EPOCH0, 86400)
        day = self._days.get(d)
        if day is None:
            day = self._days[d] = START + timedelta(days=d)
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        return day, h, m, s


def _w3c(v: str) -> str:
    return "-" if not v or v == "-" else v.replace(" ", "+")


def _split_uri(uri: str) -> tuple[str, str]:
    path, _, query = uri.partition("?")
    return path, (query or "-")


def _size(rng: random.Random, req: Req) -> int:
    if req.status == 304 or req.method == "HEAD":
        return 0
    drawn = 180 + int(rng.random() * 47820) if req.status == 200 else 150 + int(rng.random() * 1050)
    # a fixed size still takes its draw: every other byte of the simulation stays the same
    return drawn if req.size is None else req.size


# Every LARGE_EVERY-th exploit a combined-log server answers 2xx returns a large body (a dump,
# a web shell's output): the exposure figure's unusual sizes. Only combined logs: they always
# log the size, so the ground truth is exact.
LARGE_EVERY = 6
LARGE_BODY = 2_000_000


class _Out:
    """A log file being written (optionally gzip, deterministic bytes)."""

    def __init__(self, path: Path, gz: bool):
        self.path = path
        self.lines = 0
        self.requests = 0
        self._buf = io.StringIO()
        self._gz = gz

    def write(self, line: str, request: bool = True) -> None:
        self._buf.write(line)
        self.lines += 1
        self.requests += request

    def close(self) -> None:
        data = self._buf.getvalue().encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._gz:
            with self.path.open("wb") as f, gzip.GzipFile(
                filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6
            ) as g:
                g.write(data)
        else:
            self.path.write_bytes(data)


def _w3c_header(out: _Out, fields: str, day: date, h: int, m: int, s: int, iis6: bool) -> None:
    ver = "6.0" if iis6 else "8.5"
    for line in (f"#Software: Microsoft Internet Information Services {ver}", "#Version: 1.0",
                 f"#Date: {day.isoformat()} {h:02d}:{m:02d}:{s:02d}", f"#Fields: {fields}"):
        out.write(line + "\n", request=False)


def _esc_combined(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


# -- the simulation -------------------------------------------------------------------------------
Event = tuple[int, int, str, Req]  # (epoch seconds, sequence, source ip, request)


def simulate(outdir: str | Path, seed: int = 7, scale: float = 1.0, intel: bool = True) -> Path:
    """Write two quarters of logs of several organisations plus ``ground_truth.json``.

    ``scale`` multiplies every volume (benign traffic, campaign requests, source pools).
    ``intel`` adds the threat-intel files of ``intel`` (drawn last: every other file is the
    same with or without them).
    """
    if scale <= 0:
        raise UserError("simulate: scale must be > 0")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    book = _address_book(frozenset(set(ACCESS) | set(HOSTING.values()) | {15169, 8075}))

    # every sensor's events, keyed (org_id, sensor name)
    events: dict[tuple[str, str], list[Event]] = {(o.org_id, s.name): [] for o in ORGS
                                                  for s in o.sensors}
    seq = 0

    # benign background: weekday-heavy, office-hours-heavy
    hour_w = [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 4, 6, 7, 7, 6, 7, 7, 6, 5, 4, 4, 4, 3, 3, 2, 1.5]
    day_w = [(0.6 if (START + timedelta(days=d)).weekday() >= 5 else 1.0) for d in range(DAYS)]
    for org in ORGS:
        n = _scaled(org.per_day * DAYS, scale)
        visitors = []
        for i in range(max(20, _scaled(900, scale ** 0.5))):
            asn = rng.choice(org.home_asns) if rng.random() < 0.7 else rng.choice(ACCESS)
            ip = (book.v6(rng, asn) if rng.random() < 0.03 else None) or book.v4(rng, asn)
            visitors.append((ip, benign.BROWSERS[i % len(benign.BROWSERS)]))
        crawlers = [(book.v4(rng, asn), ua) for ua, asn in benign.CRAWLERS for _ in range(6)]
        # request templates per browser, drawn from in bulk (a fresh Req per line is slow)
        nb = len(benign.BROWSERS)
        templates = [[benign.benign(rng, org.sector, ua) for _ in range(400)]
                     for ua in benign.BROWSERS]
        crawl_templates = {ua: [benign.crawl(rng, org.sector, ua) for _ in range(40)]
                           for ua, _ in benign.CRAWLERS}
        vw = _zipf_weights(len(visitors))
        days = rng.choices(range(DAYS), day_w, k=n)
        hours = rng.choices(range(24), hour_w, k=n)
        who = rng.choices(range(len(visitors)), vw, k=n)
        sensors = [(org.org_id, s.name) for s in org.sensors]
        for d, h, w in zip(days, hours, who, strict=True):
            ts = _EPOCH0 + d * 86400 + h * 3600 + int(rng.random() * 3600)
            if rng.random() < 0.04:
                ip, ua = crawlers[int(rng.random() * len(crawlers))]
                req = crawl_templates[ua][int(rng.random() * 40)]
            else:
                ip = visitors[w][0]
                req = templates[w % nb][int(rng.random() * 400)]
            seq += 1
            events[sensors[int(rng.random() * len(sensors))]].append((ts, seq, ip, req))

    # campaigns
    all_sensors = [(o, s) for o in ORGS for s in o.sensors]
    truth_events: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # key -> (day, q, ip)
    # for ``intel`` (no draw): per quarter, each attacking source's first request (epoch s)
    first_seen: dict[str, dict[str, int]] = {q: {} for q in QUARTERS}
    campaigns_of: dict[str, set[str]] = defaultdict(set)
    # exploit attempts answered 2xx, and those with a large body, per campaign and quarter
    exposure: dict[str, dict[str, Counter]] = {
        spec.key: {q: Counter() for q in QUARTERS} for spec in CAMPAIGNS}
    answered_combined = 0
    for spec in CAMPAIGNS:
        targets = [(o, s) for o, s in all_sensors if s.fmt in spec.targets]
        # honeypots and WAFs see more than their share of exploitation
        tw = [3.0 if o.sector == "technology" else 1.0 for o, _ in targets]
        for q, (d0, d1) in QUARTERS.items():
            total = _scaled(spec.totals.get(q, 0), scale)
            if total == 0:
                continue
            pool = _pool(rng, book, spec.pools[q], max(1, _scaled(spec.pool_size[q], scale)))
            pcum = list(itertools.accumulate(_zipf_weights(len(pool))))
            tcum = list(itertools.accumulate(tw))
            counts = _allocate(rng, total, [spec.weight(d) for d in range(d0, d1)])
            for d, c in zip(range(d0, d1), counts, strict=True):
                for _ in range(c):
                    o, s = rng.choices(targets, cum_weights=tcum)[0]
                    ip = rng.choices(pool, cum_weights=pcum)[0]
                    req = attacks.CAMPAIGN_BUILDERS[spec.key](rng, o.host)
                    if 200 <= req.status < 300:
                        exposure[spec.key][q]["successes"] += 1
                        if s.fmt == "combined":
                            answered_combined += 1
                            if answered_combined % LARGE_EVERY == 0:
                                req.size = LARGE_BODY + 1024 * (answered_combined % 97)
                                exposure[spec.key][q]["unusual_size"] += 1
                    ts = _EPOCH0 + d * 86400 + rng.randrange(86400)
                    seq += 1
                    events[(o.org_id, s.name)].append((ts, seq, ip, req))
                    truth_events[spec.key].append((d, q, ip))
                    fq = first_seen[q]
                    if ts < fq.get(ip, ts + 1):
                        fq[ip] = ts
                    campaigns_of[ip].add(spec.key)

    noise_counts: dict[str, Counter] = {}
    noise_ips: dict[str, set[str]] = {q: set() for q in QUARTERS}
    for q, (d0, d1) in QUARTERS.items():
        pool = _pool(rng, book, _HOSTING_MIX, max(1, _scaled(200, scale)))
        c: Counter = Counter()
        for _ in range(_scaled(NOISE[q], scale)):
            o, s = rng.choice(all_sensors)
            req = attacks.noise(rng, o.host)
            ts = _EPOCH0 + rng.randrange(d0, d1) * 86400 + rng.randrange(86400)
            seq += 1
            ip = rng.choice(pool)
            events[(o.org_id, s.name)].append((ts, seq, ip, req))
            c[req.family] += 1
            fq = first_seen[q]
            if ts < fq.get(ip, ts + 1):
                fq[ip] = ts
            noise_ips[q].add(ip)
        noise_counts[q] = c

    files = _write_all(out, rng, events)
    _write_orgs(out)
    truth = _ground_truth(seed, scale, files, truth_events, noise_counts, events)
    truth["exposure"] = {k: {q: {"successes": c["successes"], "unusual_size": c["unusual_size"]}
                             for q, c in qs.items()} for k, qs in exposure.items()}
    # the organisations' Windows hosts, drawn after all the web traffic
    ep_iocs: list[dict] = []
    ep = endpoint.write_endpoints(out, rng, scale, QUARTERS, iocs=ep_iocs)
    truth["totals"]["files"] += ep["totals"]["files"] + ep["totals"]["documents"]
    truth["totals"]["lines"] += ep["totals"]["events"] + ep["totals"]["documents"]
    truth["totals"]["windows_events"] = ep["totals"]["events"]
    truth["totals"]["documents"] = ep["totals"]["documents"]  # a document is one record
    truth["endpoint"] = ep
    if intel:  # drawn after everything else, so the files above stay the same
        from threatscope.simulate import intel as intel_mod

        seen_ips = {ip for evs in events.values() for _, _, ip, _ in evs}
        truth["intel"] = intel_mod.write_intel(
            out, rng, book, first_seen, dict(campaigns_of), noise_ips, ep_iocs, seen_ips, scale)
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2, sort_keys=False) + "\n")
    return out


def _write_orgs(out: Path) -> None:
    lines = ["org_id,name,sector,sensors"]
    lines += [f"{o.org_id},{o.name},{o.sector},{len(o.sensors)}" for o in ORGS]
    (out / "orgs.csv").write_text("\n".join(lines) + "\n")


def _file_name(sensor: Sensor, month: int) -> str:
    suffix = ".gz" if sensor.gz else ""
    if sensor.fmt == "w3c":
        return f"{sensor.name}-u_ex18{month:02d}.log{suffix}"
    if sensor.fmt == "combined":
        return f"{sensor.name}-access.log-2018{month:02d}{suffix}"
    return f"{sensor.name}-2018-{month:02d}.jsonl{suffix}"


def _write_all(out: Path, rng: random.Random, events) -> dict[str, dict]:
    clock = _Clock()
    files: dict[str, dict] = {}
    for org in ORGS:
        for sensor in org.sensors:
            evs = sorted(events[(org.org_id, sensor.name)], key=lambda e: (e[0], e[1]))
            # W3C: the logged fields change once (an admin adds columns); the service restarts
            # a few times a month, each restart writing the header block again
            change = _EPOCH0 + rng.randrange(30, 150) * 86400 + rng.randrange(86400)
            restarts = sorted(_EPOCH0 + rng.randrange(DAYS * 86400) for _ in range(8))
            iis6 = org.org_id in ("org02", "org06")
            cur: _Out | None = None
            cur_month = 0
            fields = None
            ri = 0
            for ts, _seq, ip, req in evs:
                day, h, m, s = clock.parts(ts)
                if day.month != cur_month:
                    if cur is not None:
                        _close(cur, out, files, org.org_id, sensor.fmt)
                    cur_month = day.month
                    cur = _Out(out / org.org_id / _file_name(sensor, cur_month), sensor.gz)
                    fields = None
                restart = False
                while ri < len(restarts) and restarts[ri] <= ts:
                    restart, ri = True, ri + 1
                if sensor.fmt == "w3c":
                    want = W3C_FIELDS_A if ts < change else W3C_FIELDS_B
                    if fields != want or restart:
                        fields = want
                        _w3c_header(cur, fields, day, h, m, s, iis6)
                cur.write(_format(sensor, org, req, ip, day, h, m, s, rng,
                                  fields == W3C_FIELDS_B))
            if cur is not None:
                _close(cur, out, files, org.org_id, sensor.fmt)
    return files


def _close(cur: _Out, out: Path, files: dict, org_id: str, fmt: str) -> None:
    cur.close()
    files[cur.path.relative_to(out).as_posix()] = {
        "org_id": org_id, "format": fmt, "lines": cur.lines, "requests": cur.requests,
    }


def _format(sensor: Sensor, org: OrgSpec, req: Req, ip: str, day: date, h: int, m: int, s: int,
            rng: random.Random, fields_b: bool = False) -> str:
    size = _size(rng, req)
    if sensor.fmt == "combined":
        ts = f"{day.day:02d}/{_MONTHS[day.month - 1]}/{day.year}:{h:02d}:{m:02d}:{s:02d} +0000"
        return (f'{ip} - - [{ts}] "{req.method} {_esc_combined(req.uri)} HTTP/1.1" {req.status} '
                f'{size if size else "-"} "{_esc_combined(req.referer)}" '
                f'"{_esc_combined(req.ua)}"\n')
    if sensor.fmt == "w3c":
        stem, query = _split_uri(req.uri)
        d = f"{day.isoformat()} {h:02d}:{m:02d}:{s:02d}"
        ua, ref, took = _w3c(req.ua), _w3c(req.referer), 1 + int(rng.random() * 900)
        if not fields_b:
            return (f"{d} 10.0.1.10 {req.method} {stem} {query} 80 - {ip} {ua} {ref} "
                    f"{req.status} 0 0 {took}\n")
        return (f"{d} W3SVC1 {sensor.name.upper()} 10.0.1.10 {req.method} {stem} {query} 80 - "
                f"{ip} HTTP/1.1 {ua} {ref} {org.host} {req.status} 0 0 {size} "
                f"{len(req.body) + 300} {took}\n")
    headers = {"Host": org.host}
    if req.ua != "-":
        headers["User-Agent"] = req.ua
    headers.setdefault("Accept", "*/*")
    if req.referer != "-":
        headers["Referer"] = req.referer
    headers.update(req.headers)
    rec = {
        "ts": f"{day.isoformat()}T{h:02d}:{m:02d}:{s:02d}Z", "src_ip": ip,
        "method": req.method, "uri": req.uri, "version": "HTTP/1.1", "headers": headers,
        "body": req.body, "status": req.status, "org_id": org.org_id,
    }
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"


def _ground_truth(seed, scale, files, truth_events, noise_counts, events) -> dict:
    from threatscope.enrich import lookup

    ips = sorted({ip for evs in truth_events.values() for _, _, ip in evs})
    info = {r["ip"]: r for r in lookup(ips).to_pylist()} if ips else {}
    campaigns = {}
    for spec in CAMPAIGNS:
        evs = truth_events.get(spec.key, [])
        quarters = {}
        for q in QUARTERS:
            qe = [(d, ip) for d, qq, ip in evs if qq == q]
            per_day = Counter(d for d, _ in qe)
            orgs = Counter(info[ip]["as_org"] for _, ip in qe)
            countries = Counter(info[ip]["country_code"] for _, ip in qe)
            hosting = sum(1 for _, ip in qe if info[ip]["network_type"] == "hosting")
            top_org = _top(orgs)
            peak = min(per_day, key=lambda d: (-per_day[d], d)) if per_day else None
            quarters[q] = {
                "requests": len(qe),
                "source_ips": len({ip for _, ip in qe}),
                "first_day": _iso(min(per_day)) if per_day else None,
                "last_day": _iso(max(per_day)) if per_day else None,
                "peak_day": _iso(peak) if peak is not None else None,
                "peak_count": per_day[peak] if peak is not None else 0,
                "top_as_org": top_org,
                "top_as_org_asn": next((info[ip]["asn"] for _, ip in qe
                                        if info[ip]["as_org"] == top_org), None),
                "top_as_org_share": round(orgs[top_org] / len(qe), 4) if qe else None,
                "top_country": _top(countries),
                "hosting_share": round(hosting / len(qe), 4) if qe else None,
                "timeline": {_iso(d): per_day[d] for d in sorted(per_day)},
            }
        base, per = quarters["2018Q1"]["requests"], quarters["2018Q2"]["requests"]
        onset = min((d for d, _, _ in evs), default=None)
        campaigns[spec.key] = {
            "baseline": base, "period": per,
            "fold_change": round(per / base, 4) if base else None,
            "onset": _iso(onset) if onset is not None else None,
            "peak_day": quarters["2018Q2"]["peak_day"],
            "top_as_org": quarters["2018Q2"]["top_as_org"],
            "public_exploit_date": spec.public_exploit_date,
            "days_exploit_to_onset": ((onset - _day(spec.public_exploit_date))
                                      if onset is not None and spec.public_exploit_date
                                      and onset >= 0 and _day(spec.public_exploit_date) >= 0
                                      else None),
            "quarters": quarters,
        }
    per_org = {}
    for o in ORGS:
        n = sum(len(events[(o.org_id, s.name)]) for s in o.sensors)
        att = sum(1 for s in o.sensors for _, _, _, r in events[(o.org_id, s.name)]
                  if r.campaign)
        per_org[o.org_id] = {"name": o.name, "sector": o.sector, "sensors": len(o.sensors),
                             "formats": sorted({s.fmt for s in o.sensors}),
                             "requests": n, "campaign_requests": att}
    total_lines = sum(f["lines"] for f in files.values())
    total_req = sum(f["requests"] for f in files.values())
    camp_req = sum(c["baseline"] + c["period"] for c in campaigns.values())
    noise_req = sum(sum(c.values()) for c in noise_counts.values())
    return {
        "generator": "threatscope.simulate", "seed": seed, "scale": scale,
        "baseline": "2018Q1", "period": "2018Q2",
        "totals": {"files": len(files), "lines": total_lines, "requests": total_req,
                   "header_lines": total_lines - total_req, "campaign_requests": camp_req,
                   "noise_requests": noise_req,
                   "benign_requests": total_req - camp_req - noise_req},
        "campaigns": campaigns,
        "noise": {q: dict(sorted(c.items())) for q, c in noise_counts.items()},
        "orgs": per_org,
        "files": dict(sorted(files.items())),
    }


def _top(c: Counter):
    if not c:
        return None
    return min(c, key=lambda k: (-c[k], str(k)))


def _iso(d: int) -> str:
    return (START + timedelta(days=d)).isoformat()
