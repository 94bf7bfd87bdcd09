"""The workspace's indicators as one MISP event (MISP's JSON export format, importable with
"Add event from JSON" / ``POST /events/add``).

    from threatscope.share.misp import misp_event, write_misp
    event = misp_event(ws, period=Period.parse("2018Q2"))
    write_misp(ws, "out/threatscope.misp.json", period=Period.parse("2018Q2"))

Attributes:

* attacking addresses: ``ip-src`` (category ``Network activity``); ``to_ids`` true except for
  addresses classified ``research-scanner`` (they probe, they do not exploit: worth knowing, not
  worth an IDS alert); addresses named in a payload: ``ip-dst``;
* payload URLs: ``url`` (``Payload delivery``); domains: ``domain`` (``Network activity``);
* one ``vulnerability`` attribute per CVE (``External analysis``, ``to_ids`` false).

Each attribute has first_seen/last_seen, a ``comment`` (campaigns, CVEs, families, detected
events and the number of organisations: never their names) and machine tags in the
``threatscope`` namespace:

    threatscope:role="attacker"            threatscope:classification="mass-scanner"
    threatscope:campaign="gpon"            threatscope:malware-family="mirai"
    threatscope:cve="CVE-2018-10561"       threatscope:attack-technique="T1190"

(a ``"`` in a tag value becomes ``'`` so that the tag stays one machine tag). The event carries
``tlp:amber`` (or the ``tlp`` given) and is not published (distribution: your organisation only):
the MISP operator decides how far it goes.

Determinism: the event uuid is uuid5 of the scope (the period's label, or ``all``), each
attribute's uuid5 of the event uuid, its type and value; timestamps come from the data. Two
exports of the same workspace are the same bytes; the same event exported again later (more
sightings) updates the same MISP event and attributes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from threatscope.analyze.knowledge import campaign_info
from threatscope.analyze.period import Period
from threatscope.files import write_atomic
from threatscope.share.rows import indicator_rows
from threatscope.share.stix import NAMESPACE
from threatscope.workspace import Workspace

THREAT_LEVEL_MEDIUM = "2"  # 1 high, 2 medium, 3 low, 4 undefined
ANALYSIS_COMPLETED = "2"  # 0 initial, 1 ongoing, 2 completed: the period's data is final
DISTRIBUTION_ORG_ONLY = "0"
DISTRIBUTION_INHERIT = "5"  # attributes: as the event

# (indicator_type, role) -> (MISP type, category); other roles take the type's "*" entry
_TYPES = {
    ("ipv4", "attacker"): ("ip-src", "Network activity"),
    ("ipv6", "attacker"): ("ip-src", "Network activity"),
    ("ipv4", "*"): ("ip-dst", "Network activity"),
    ("ipv6", "*"): ("ip-dst", "Network activity"),
    ("url", "*"): ("url", "Payload delivery"),
    ("domain", "*"): ("domain", "Network activity"),
}


def tag(predicate: str, value: str) -> dict:
    """A threatscope machine tag: ``{"name": 'threatscope:campaign="gpon"'}``."""
    return {"name": f'threatscope:{predicate}="{str(value).replace(chr(34), chr(39))}"'}


def _misp_time(ts: datetime) -> str:
    # MISP stores attribute first_seen/last_seen with microseconds and an offset
    return ts.replace(tzinfo=UTC).isoformat(timespec="microseconds")


def _epoch(ts: datetime) -> str:
    return str(int(ts.replace(tzinfo=UTC).timestamp()))


def _comment(r: dict) -> str:
    parts = []
    if r["campaigns"]:
        parts.append("campaigns: " + ", ".join(r["campaigns"]))
    for label, col in (("CVEs", "cves"), ("malware families", "malware_families"),
                       ("ATT&CK techniques", "attack_techniques"), ("IOC feeds", "ioc_feeds")):
        if r[col]:
            parts.append(f"{label}: {', '.join(r[col])}")
    if r["classification"]:
        parts.append(f"classification: {r['classification']}")
    parts.append(f"{r['sightings'] or 0} detected events at {r['orgs'] or 0} organisations")
    return "; ".join(parts)


def event_from_rows(rows: Iterable[dict], *, scope: str = "all", event_date: date | None = None,
                    tlp: str | None = "amber") -> dict:
    """The MISP event of indicator rows (as ``indicator_rows`` gives them). ``scope`` names what
    the event covers (its uuid and info derive from it); ``event_date`` defaults to the earliest
    first_seen (today for an event without rows)."""
    rows = list(rows)
    event_uuid = uuid.uuid5(NAMESPACE, f"misp-event|{scope}")
    attributes: list[dict] = []
    cve_rows: dict[str, list[dict]] = {}

    def attribute(kind: str, category: str, value: str, to_ids: bool, first: datetime,
                  last: datetime, comment: str, tags: list[dict]) -> dict:
        return {
            "uuid": str(uuid.uuid5(event_uuid, f"{kind}|{value}")), "type": kind,
            "category": category, "value": value, "to_ids": to_ids,
            "distribution": DISTRIBUTION_INHERIT, "timestamp": _epoch(last),
            "first_seen": _misp_time(first), "last_seen": _misp_time(last),
            "comment": comment, "Tag": tags,
        }

    for r in rows:
        key = (r["indicator_type"], r["role"])
        if key not in _TYPES:
            key = (r["indicator_type"], "*")
        if key not in _TYPES:
            continue  # a type MISP export does not know
        kind, category = _TYPES[key]
        tags = [tag(p, v) for p, v in (("role", r["role"]), ("classification",
                                                             r["classification"])) if v]
        tags += [tag("campaign", k) for k in r["campaigns"]]
        tags += [tag("malware-family", m) for m in r["malware_families"]]
        tags += [tag("cve", c) for c in r["cves"]]
        tags += [tag("attack-technique", t) for t in r["attack_techniques"]]
        attributes.append(attribute(
            kind, category, r["value"], r["classification"] != "research-scanner",
            r["first_seen"], r["last_seen"], _comment(r), tags))
        for c in r["cves"]:
            cve_rows.setdefault(c, []).append(r)
    for c in sorted(cve_rows):
        rs = cve_rows[c]
        campaigns = sorted({k for r in rs for k in r["campaigns"]})
        names = [f"{campaign_info(k)['title'] or k} ({k})" for k in campaigns]
        attributes.append(attribute(
            "vulnerability", "External analysis", c, False, min(r["first_seen"] for r in rs),
            max(r["last_seen"] for r in rs),
            f"named by {len(rs)} indicators" + ("; campaigns: " + ", ".join(names)
                                                     if names else ""),
            [tag("cve", c)] + [tag("campaign", k) for k in campaigns]))

    if event_date is None:
        event_date = min((r["first_seen"] for r in rows), default=datetime.now(UTC)).date()
    last = max((r["last_seen"] for r in rows), default=None)
    event: dict[str, Any] = {
        "uuid": str(event_uuid),
        "info": f"threatscope: attack sources and payloads ({scope})",
        "date": event_date.isoformat(),
        "threat_level_id": THREAT_LEVEL_MEDIUM,
        "analysis": ANALYSIS_COMPLETED,
        "distribution": DISTRIBUTION_ORG_ONLY,
        "published": False,
        "Orgc": {"name": "threatscope", "uuid": str(uuid.uuid5(NAMESPACE, "misp-orgc"))},
        "Attribute": attributes,
        "Tag": ([{"name": f"tlp:{tlp}"}] if tlp else []) + [{"name": "threatscope:export"}],
    }
    if last is not None:
        event["timestamp"] = _epoch(last)
    return {"Event": event}


def misp_event(ws: Workspace, *, period: Period | None = None, min_sightings: int = 1,
               tlp: str | None = "amber") -> dict:
    """The MISP event of the workspace's indicators seen in ``period`` (None: all). Its date is
    the period's first day (without a period: the earliest first_seen).

        event = misp_event(ws, period=Period.parse("2018-05"))
        [a["value"] for a in event["Event"]["Attribute"] if a["type"] == "ip-src"]
    """
    rows = indicator_rows(ws, period=period, min_sightings=min_sightings)
    return event_from_rows(rows, scope=period.label if period else "all",
                           event_date=period.start if period else None, tlp=tlp)


def write_misp(ws: Workspace, path: str | Path, **kw: Any) -> Path:
    """Write ``misp_event(ws, **kw)`` as JSON to ``path`` (atomically: temp file + rename).

        write_misp(ws, "out/threatscope.misp.json", period=Period.parse("2018Q2"))
    """
    text = json.dumps(misp_event(ws, **kw), indent=2, ensure_ascii=False)
    return write_atomic(path, text + "\n")
