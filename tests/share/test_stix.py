"""STIX 2.1 export: the bundle parses back with stix2 (no custom content), every pattern is
valid and holds the value exactly, relationships and sightings are the expected ones, and the
same data gives the same bytes."""

from __future__ import annotations

import json
import re

import pytest
import stix2
from stix2.pattern_visitor import create_pattern_object
from stix2patterns.validator import validate

from tests.share.conftest import ORG_NAMES, ROWS, hostile_rows, make_ws
from threatscope.analyze.period import Period
from threatscope.errors import UserError
from threatscope.share.stix import indicator_pattern, stix_bundle, stix_id, write_stix
from threatscope.workspace import Workspace

_PATTERN = re.compile(r"\[([a-z0-9-]+):value = '(.*)'\]", re.S)


def pattern_value(pattern: str) -> tuple[str, str]:
    """(object type, value) of a single-comparison pattern, unescaped."""
    assert validate(pattern, stix_version="2.1", ret_errs=True) == (True, []), pattern
    create_pattern_object(pattern, version="2.1")  # stix2's own parser accepts it too
    m = _PATTERN.fullmatch(pattern)
    assert m, pattern
    return m[1], re.sub(r"\\(.)", r"\1", m[2], flags=re.S)


def parsed(tmp_path, ws, **kw) -> tuple[str, stix2.v21.Bundle]:
    path = write_stix(ws, tmp_path / "b.json", **kw)
    text = path.read_text(encoding="utf-8")
    return text, stix2.parse(text, allow_custom=False)


def by_type(bundle, kind: str) -> list:
    return [o for o in bundle.objects if o.type == kind]


def test_bundle_content(tmp_path, ws):
    text, bundle = parsed(tmp_path, ws)
    producer = stix_id("identity", "threatscope")
    (identity,) = by_type(bundle, "identity")
    assert identity.id == producer and identity.name == "threatscope"

    indicators = by_type(bundle, "indicator")
    assert len(indicators) == len(ROWS)
    got = {pattern_value(i.pattern): i for i in indicators}
    stix_type = {"ipv4": "ipv4-addr", "ipv6": "ipv6-addr", "url": "url", "domain": "domain-name"}
    assert set(got) == {(stix_type[r[0]], r[1]) for r in ROWS}
    gpon_ip = got[("ipv4-addr", "1.2.3.4")]
    assert gpon_ip.pattern == "[ipv4-addr:value = '1.2.3.4']"
    assert gpon_ip.pattern_type == "stix"
    assert gpon_ip.valid_from.isoformat() == "2018-05-01T10:00:00+00:00"
    assert gpon_ip.indicator_types == ["malicious-activity"]
    assert gpon_ip.created_by_ref == producer
    assert "GPON router" in gpon_ip.description and "3 organisations" in gpon_ip.description
    refs = {(r.source_name, r.external_id) for r in gpon_ip.external_references}
    assert refs == {("cve", "CVE-2018-10561"), ("mitre-attack", "T1190")}
    assert got[("ipv4-addr", "5.6.7.8")].indicator_types == ["anomalous-activity"]
    assert got[("url", "http://x/a'b\\c")].pattern == r"[url:value = 'http://x/a\'b\\c']"

    campaigns = {c.aliases[0] if c.get("aliases") else c.name: c
                 for c in by_type(bundle, "campaign")}
    assert set(campaigns) == {"gpon", "drupalgeddon2", "made-up-campaign"}
    assert campaigns["gpon"].name == "GPON router authentication bypass and command injection"
    assert campaigns["made-up-campaign"].name == "made-up-campaign"
    # gpon: 1.2.3.4, 2001:db8::1 and the URL
    assert campaigns["gpon"].first_seen.isoformat() == "2018-04-10T00:00:00+00:00"
    assert campaigns["gpon"].last_seen.isoformat() == "2018-06-20T00:00:00+00:00"
    assert {m.name for m in by_type(bundle, "malware")} == {"mirai", "emotet"}
    assert all(m.is_family for m in by_type(bundle, "malware"))
    vulns = {v.name: v for v in by_type(bundle, "vulnerability")}
    assert set(vulns) == {"CVE-2018-10561", "CVE-2018-10562", "CVE-2018-7600", "CVE-2099-0001"}
    assert [(r.source_name, r.external_id) for r in vulns["CVE-2018-7600"].external_references
            ] == [("cve", "CVE-2018-7600")]

    name = {o.id: (o.get("aliases") or [o.get("name")])[0] for o in bundle.objects
            if o.type in ("campaign", "malware", "vulnerability")}
    name |= {i.id: pattern_value(i.pattern)[1] for i in indicators}
    rels = {(name[r.source_ref], r.relationship_type, name[r.target_ref])
            for r in by_type(bundle, "relationship")}
    assert rels == {
        ("1.2.3.4", "indicates", "gpon"), ("1.2.3.4", "indicates", "mirai"),
        ("2001:db8::1", "indicates", "gpon"), ("2001:db8::1", "indicates", "drupalgeddon2"),
        ("2001:db8::1", "indicates", "emotet"),
        ("http://x/a'b\\c", "indicates", "gpon"), ("http://x/a'b\\c", "indicates", "mirai"),
        ("7.7.7.7", "indicates", "made-up-campaign"),
        # only indicators naming one campaign tie malware to it (not emotet: two campaigns)
        ("gpon", "uses", "mirai"),
        # the knowledge base's CVEs; for a campaign it does not know, its indicators' CVEs
        ("gpon", "targets", "CVE-2018-10561"), ("gpon", "targets", "CVE-2018-10562"),
        ("drupalgeddon2", "targets", "CVE-2018-7600"),
        ("made-up-campaign", "targets", "CVE-2099-0001"),
    }
    assert len(by_type(bundle, "relationship")) == len(rels)

    sightings = {name[s.sighting_of_ref]: s for s in by_type(bundle, "sighting")}
    assert {v: s.count for v, s in sightings.items()} == {r[1]: r[10] for r in ROWS}
    s = sightings["1.2.3.4"]
    assert s.where_sighted_refs == [producer]
    assert (s.first_seen.isoformat(), s.last_seen.isoformat()) == (
        "2018-05-01T10:00:00+00:00", "2018-05-03T10:00:00+00:00")
    # organisations are counted, never named
    assert not any(n in text for n in ORG_NAMES)
    assert all(o.type in ("bundle", "identity", "marking-definition") or
               o.object_marking_refs == [stix2.v21.TLP_AMBER.id] for o in bundle.objects)
    ids = [o.id for o in bundle.objects]
    assert len(ids) == len(set(ids))


def test_min_sightings_and_tlp(ws):
    bundle = stix_bundle(ws, min_sightings=5, tlp=None)
    values = sorted(pattern_value(i.pattern)[1] for i in by_type(bundle, "indicator"))
    assert values == ["1.2.3.4", "2001:db8::1"]
    assert not by_type(bundle, "marking-definition")
    assert all("object_marking_refs" not in o for o in bundle.objects)


def test_period(ws):
    values = lambda b: sorted(pattern_value(i.pattern)[1] for i in by_type(b, "indicator"))  # noqa: E731
    may = stix_bundle(ws, period=Period.parse("2018-05"))
    # overlapping May; 9.9.9.9 starts at June's first instant (the end is exclusive)
    assert values(may) == ["1.2.3.4", "2001:db8::1", "7.7.7.7", "evil.example", "http://x/a'b\\c"]
    assert values(stix_bundle(ws, period=Period.parse("2018Q1"))) == ["5.6.7.8"]
    assert values(stix_bundle(ws, period=Period.parse("2018-06-01..2018-06-01"))) == [
        "2001:db8::1", "9.9.9.9"]
    assert values(stix_bundle(ws, period=Period.parse("2019Q1"))) == []


def test_deterministic(tmp_path, ws):
    a = write_stix(ws, tmp_path / "a.json").read_bytes()
    b = write_stix(ws, tmp_path / "b.json").read_bytes()
    assert a == b
    # rows stored in another order: the same bytes
    other = make_ws(tmp_path / "other", rows=list(reversed(ROWS)))
    assert write_stix(other, tmp_path / "c.json").read_bytes() == a
    # more sightings later: same ids, a later version
    with ws.connect() as con:
        con.execute("UPDATE indicator SET last_seen = TIMESTAMP '2018-05-09 00:00:00', "
                    "sightings = 20 WHERE value = '1.2.3.4'")
    newer = json.loads(write_stix(ws, tmp_path / "d.json").read_text())
    older = json.loads(a)
    ids = lambda doc: sorted(o["id"] for o in doc["objects"])  # noqa: E731
    assert ids(newer) == ids(older) and newer["id"] != older["id"]
    ind = stix_id("indicator", "ipv4|1.2.3.4|attacker")
    (o,) = [o for o in newer["objects"] if o["id"] == ind]
    assert (o["created"], o["modified"]) == ("2018-05-01T10:00:00.000Z", "2018-05-09T00:00:00.000Z")


def test_hostile_values_round_trip(tmp_path):
    ws = make_ws(tmp_path / "ws", rows=hostile_rows())
    text, bundle = parsed(tmp_path, ws)
    got = sorted(pattern_value(i.pattern)[1] for i in by_type(bundle, "indicator"))
    assert got == sorted(r[1] for r in hostile_rows())
    # the JSON holds them as data: names and descriptions too
    doc = json.loads(text)
    names = {o["name"] for o in doc["objects"] if o["type"] == "indicator"}
    assert "Payload URL http://e/<script>alert(1)</script>" in names
    assert "Payload domain ev'il\\.example" in names
    assert {o["name"] for o in doc["objects"] if o["type"] in ("campaign", "malware")} == {
        'cam"paign', "fam'ily"}


@pytest.mark.parametrize("kind,value", [("ipv4", "1.2.3.4"), ("ipv6", "::1"),
                                        ("url", "http://a/'\\"), ("domain", "a.b")])
def test_pattern(kind, value):
    assert pattern_value(indicator_pattern(kind, value))[1] == value


def test_empty(tmp_path, empty_ws):
    _, bundle = parsed(tmp_path, empty_ws)
    assert [o.type for o in bundle.objects] == ["identity", "marking-definition"]


def test_no_indicator_table(tmp_path):
    ws = Workspace.open(tmp_path / "bare", create=True)
    with pytest.raises(UserError, match="run `threatscope enrich` first"):
        stix_bundle(ws)


def test_write_is_atomic(tmp_path, ws):
    out = tmp_path / "b.json"
    out.write_text("old")
    write_stix(ws, out)
    assert json.loads(out.read_text())["type"] == "bundle"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
