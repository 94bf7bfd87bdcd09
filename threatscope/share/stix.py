"""The workspace's indicators as a STIX 2.1 bundle.

    from threatscope.share.stix import stix_bundle, write_stix
    bundle = stix_bundle(ws, period=Period.parse("2018Q2"), min_sightings=2)
    write_stix(ws, "out/threatscope.stix.json", period=Period.parse("2018Q2"))

What the bundle holds (every object ``created_by_ref`` the producer Identity, marked TLP:AMBER
unless ``tlp`` says otherwise):

* one Indicator per indicator row: a STIX pattern on the value (escaped: values are
  attacker-controlled), ``valid_from`` = first_seen, ``indicator_types`` ``malicious-activity``,
  or ``anomalous-activity`` for addresses classified ``research-scanner`` (they probe, they do
  not exploit: worth knowing, not worth blocking); CVEs and ATT&CK techniques as
  ``external_references``;
* one Sighting per indicator: ``count`` = detected events, first/last seen, sighted by the
  producer (the organisations are never named, only counted in the indicator's description);
* a Campaign per campaign key (title from the knowledge base), a Malware (``is_family``) per
  malware family, a Vulnerability per CVE;
* Relationships: indicator ``indicates`` campaign and malware; campaign ``targets`` its CVEs
  (the knowledge base's, or for a campaign it does not list, the CVEs of indicators that name
  that campaign alone) and ``uses`` the malware families of indicators that name it alone (an
  address in two campaigns does not say which one the malware belongs to).

Determinism: ids are uuid5 of the object's natural key (indicator: type, value, role; campaign:
key; ...), ``created``/``modified`` the first/last time the data saw the thing (the Identity's
are fixed), the bundle id a hash of its objects' ids and versions. So two exports of the same
workspace are the same bytes, and a re-export after new sightings carries the same ids with a
later ``modified``: new versions of the same objects, as STIX versioning wants.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stix2.v21 as stix

from threatscope.analyze.knowledge import campaign_info
from threatscope.analyze.period import Period
from threatscope.files import write_atomic
from threatscope.share.rows import indicator_rows
from threatscope.workspace import Workspace

# Fixed forever: changing it changes every id threatscope ever shared.
NAMESPACE = uuid.UUID("191ae068-ab5a-4b3a-870b-3f38785eb460")
PRODUCER_CREATED = datetime(2018, 1, 1, tzinfo=UTC)
TLP = {"white": stix.TLP_WHITE, "green": stix.TLP_GREEN, "amber": stix.TLP_AMBER,
       "red": stix.TLP_RED}

_OBJECT = {"ipv4": "ipv4-addr", "ipv6": "ipv6-addr", "url": "url", "domain": "domain-name"}
_TYPE_NAME = {"ipv4": "IPv4 address", "ipv6": "IPv6 address", "url": "URL", "domain": "domain"}
_ROLE_NAME = {"attacker": "Attacking", "payload": "Payload"}
_MAX_COUNT = 999_999_999  # STIX 2.1 Sighting.count bound


def stix_id(kind: str, key: str) -> str:
    """The id of the ``kind`` object with natural key ``key``: ``indicator--<uuid5>``."""
    return f"{kind}--{uuid.uuid5(NAMESPACE, f'{kind}|{key}')}"


def pattern_literal(value: str) -> str:
    """A STIX patterning string literal: quoted, backslash and quote escaped (nothing else needs
    escaping; newlines and any Unicode are literal)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def indicator_pattern(indicator_type: str, value: str) -> str:
    """``[ipv4-addr:value = '1.2.3.4']`` and the like; KeyError for an unknown type."""
    return f"[{_OBJECT[indicator_type]}:value = {pattern_literal(value)}]"


class _Span:
    """First and last time of the rows that support an object (its created/modified)."""

    def __init__(self) -> None:
        self.spans: dict[Any, tuple[datetime, datetime]] = {}

    def add(self, key: Any, first: datetime, last: datetime) -> None:
        a, b = self.spans.get(key, (first, last))
        self.spans[key] = (min(a, first), max(b, last))

    def __getitem__(self, key: Any) -> tuple[datetime, datetime]:
        return self.spans[key]

    def keys(self) -> list:
        return sorted(self.spans)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _cve_ref(cve: str) -> dict:
    return {"source_name": "cve", "external_id": cve,
            "url": f"https://nvd.nist.gov/vuln/detail/{cve}"}


def _technique_ref(t: str) -> dict:
    return {"source_name": "mitre-attack", "external_id": t,
            "url": f"https://attack.mitre.org/techniques/{t.replace('.', '/')}/"}


def _campaign_name(key: str) -> str:
    return campaign_info(key)["title"] or key


def _description(r: dict) -> str:
    role = {"attacker": "Sent attacks that threatscope detected",
            "payload": "Named in the payload of a detected attack (e.g. a download URL)"}
    parts = [role.get(r["role"], f"Role: {r['role']}") + ".",
             f"Seen {r['first_seen']:%Y-%m-%d %H:%M:%S} .. {r['last_seen']:%Y-%m-%d %H:%M:%S} UTC"
             f" in {r['sightings'] or 0} detected events at {r['orgs'] or 0} organisations."]
    if r["campaigns"]:
        parts.append("Campaigns: " + ", ".join(
            f"{_campaign_name(k)} ({k})" if _campaign_name(k) != k else k
            for k in r["campaigns"]) + ".")
    for label, col in (("CVEs", "cves"), ("Malware families", "malware_families"),
                       ("ATT&CK techniques", "attack_techniques"),
                       ("Also listed by IOC feeds", "ioc_feeds")):
        if r[col]:
            parts.append(f"{label}: {', '.join(r[col])}.")
    if r["classification"]:
        parts.append(f"Classification: {r['classification']}.")
    where = [x for x in (r["country_code"] and f"country {r['country_code']}",
                         r["as_org"] and f"AS organisation {r['as_org']}") if x]
    if where:
        parts.append("Location: " + ", ".join(where) + ".")
    return " ".join(parts)


def bundle_from_rows(rows: Iterable[dict], *, tlp: str | None = "amber") -> stix.Bundle:
    """The bundle of indicator rows (as ``indicator_rows`` gives them: lists never None,
    first_seen/last_seen set). Rows of a type STIX export does not know are skipped.

        bundle = bundle_from_rows(indicator_rows(ws))
        text = bundle.serialize(indent=2)
    """
    producer = stix.Identity(
        id=stix_id("identity", "threatscope"), name="threatscope", identity_class="system",
        description="threatscope security-telemetry pipeline: detections over the telemetry of "
                    "many organisations",
        created=PRODUCER_CREATED, modified=PRODUCER_CREATED)
    common: dict[str, Any] = {"created_by_ref": producer.id}
    marking = TLP[tlp] if tlp else None
    if marking is not None:
        common["object_marking_refs"] = [marking.id]

    indicators, sightings = [], []
    campaigns, malware, cves, rels = _Span(), _Span(), _Span(), _Span()
    for r in rows:
        if r["indicator_type"] not in _OBJECT:
            continue
        first, last = _utc(r["first_seen"]), _utc(r["last_seen"])
        ind_id = stix_id("indicator", f"{r['indicator_type']}|{r['value']}|{r['role']}")
        refs = [_cve_ref(c) for c in r["cves"]] + [_technique_ref(t) for t in r["attack_techniques"]]
        indicators.append(stix.Indicator(
            id=ind_id, created=first, modified=last, valid_from=first,
            name=f"{_ROLE_NAME.get(r['role'], str(r['role']))} "
                 f"{_TYPE_NAME[r['indicator_type']]} {r['value']}",
            description=_description(r),
            pattern=indicator_pattern(r["indicator_type"], r["value"]), pattern_type="stix",
            indicator_types=["anomalous-activity" if r["classification"] == "research-scanner"
                             else "malicious-activity"],
            labels=[x for x in (r["role"], r["classification"]) if x] or None,
            external_references=refs or None, **common))
        sightings.append(stix.Sighting(
            id=stix_id("sighting", ind_id), created=first, modified=last,
            sighting_of_ref=ind_id, where_sighted_refs=[producer.id],
            first_seen=first, last_seen=last,
            count=min(max(r["sightings"] or 0, 0), _MAX_COUNT), **common))
        for k in r["campaigns"]:
            campaigns.add(k, first, last)
            rels.add((ind_id, "indicates", stix_id("campaign", k)), first, last)
        for m in r["malware_families"]:
            malware.add(m, first, last)
            rels.add((ind_id, "indicates", stix_id("malware", m)), first, last)
        for c in r["cves"]:
            cves.add(c, first, last)
        if len(r["campaigns"]) == 1:  # unambiguous: these belong to that campaign
            (k,) = r["campaigns"]
            for m in r["malware_families"]:
                rels.add((stix_id("campaign", k), "uses", stix_id("malware", m)), first, last)
            if not campaign_info(k)["cves"]:
                for c in r["cves"]:
                    rels.add((stix_id("campaign", k), "targets", stix_id("vulnerability", c)),
                             first, last)

    for k in campaigns.keys():
        for c in campaign_info(k)["cves"]:  # the knowledge base knows what the campaign exploits
            cves.add(c, *campaigns[k])
            rels.add((stix_id("campaign", k), "targets", stix_id("vulnerability", c)),
                     *campaigns[k])

    objects: list = [producer] + ([marking] if marking is not None else [])
    for k in campaigns.keys():
        first, last = campaigns[k]
        title = campaign_info(k)["title"]
        product = campaign_info(k)["product"]
        objects.append(stix.Campaign(
            id=stix_id("campaign", k), created=first, modified=last, name=title or k,
            aliases=[k] if title else None, first_seen=first, last_seen=last,
            description=f"threatscope campaign key {k!r}"
                        + (f", product {product!r}" if product else "") + ".", **common))
    for m in malware.keys():
        first, last = malware[m]
        objects.append(stix.Malware(id=stix_id("malware", m), created=first, modified=last,
                                    name=m, is_family=True, **common))
    for c in cves.keys():
        first, last = cves[c]
        objects.append(stix.Vulnerability(id=stix_id("vulnerability", c), created=first,
                                          modified=last, name=c,
                                          external_references=[_cve_ref(c)], **common))
    objects += indicators + sightings

    for src, kind, dst in rels.keys():
        first, last = rels[(src, kind, dst)]
        objects.append(stix.Relationship(id=stix_id("relationship", f"{src}|{kind}|{dst}"),
                                         created=first, modified=last, relationship_type=kind,
                                         source_ref=src, target_ref=dst, **common))
    versions = "\n".join(f"{o.id}|{o.get('modified', '')}" for o in objects)
    bundle_uuid = uuid.uuid5(NAMESPACE, "bundle|" + hashlib.sha256(versions.encode()).hexdigest())
    return stix.Bundle(objects=objects, id=f"bundle--{bundle_uuid}")


def stix_bundle(ws: Workspace, *, period: Period | None = None, min_sightings: int = 1,
                tlp: str | None = "amber") -> stix.Bundle:
    """The bundle of the workspace's indicators seen in ``period`` (None: all) with at least
    ``min_sightings`` detected events. UserError when enrich has not written them yet.

        bundle = stix_bundle(ws, period=Period.parse("2018-05"))
        [o.pattern for o in bundle.objects if o.type == "indicator"]
    """
    return bundle_from_rows(indicator_rows(ws, period=period, min_sightings=min_sightings),
                            tlp=tlp)


def write_stix(ws: Workspace, path: str | Path, **kw: Any) -> Path:
    """Write ``stix_bundle(ws, **kw)`` as JSON to ``path`` (atomically: temp file + rename).

        write_stix(ws, "out/indicators.stix.json", period=Period.parse("2018Q2"))
    """
    # not pretty=True: stix2's spec-order sorting takes minutes for a few thousand objects;
    # property order is then construction order, the same for the same data
    bundle = stix_bundle(ws, **kw)
    return write_atomic(path, bundle.serialize(indent=2, ensure_ascii=False) + "\n")
