"""The metrics document (report.json, schema_version 1) normalised for rendering.

    view = build_view(metrics)
    view["campaigns"][0]["period"]      # every key of the schema is present (None when missing)

Renderers read only the view: optional keys missing from the metrics become ``None`` or empty
lists, values of the wrong shape are treated as missing, unknown keys are ignored. The view adds
no figure of its own except the consistency checks (see ``consistency.py``).

``infrastructure`` and ``indicators`` are None when the document has no such section (written
before the analysis produced them); ``sources.classification`` and ``sources.targeted`` are then
empty lists and ``sources.noise_share`` None.

Units follow the metrics: ``totals["detections"]`` and the rules count rule matches, source and
sector rows carry ``detected_events`` (events matched by at least one rule, counted once).
"""

from __future__ import annotations

from typing import Any

from threatscope.report.audience import peers_view, scope_view
from threatscope.report.exposure import exposure_view, recommendations_view
from threatscope.report.rendered import key_columns

CHANGE = ("period", "baseline", "fold_change", "pct_change", "flag")


def _d(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[dict]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _strs(v: Any) -> list[str]:
    if isinstance(v, list):
        return [str(x) for x in v if x is not None]
    return [str(v)] if isinstance(v, str) and v else []


def _pick(src: dict, keys: tuple[str, ...]) -> dict:
    return {k: src.get(k) for k in keys}


def change(v: Any) -> dict | None:
    """A change object with all five keys, or None when absent."""
    return _pick(v, CHANGE) if isinstance(v, dict) else None


def _span(v: Any) -> dict:
    return _pick(_d(v), ("label", "start", "end", "days"))


_CAMPAIGN = ("campaign", "title", "product", "onset", "peak_day", "peak_count", "last_day",
             "source_ips", "hosting_share", "public_exploit_date", "days_exploit_to_onset")


def _technique_label(tag: str, glossary: dict) -> str:
    """``T1059.001 PowerShell`` from the document's ATT&CK glossary (``attack.techniques``);
    a revoked id shows what replaced it, an id the glossary does not name stays as it is."""
    t = _d(glossary.get(tag))
    name, current = t.get("name"), t.get("id") or tag
    if not name:
        return tag
    return f"{tag} {name}" if current == tag else f"{tag} (now {current} {name})"


def _campaign(c: dict, glossary: dict) -> dict:
    out = _pick(c, CHANGE + _CAMPAIGN)
    out["cves"] = _strs(c.get("cves"))
    out["techniques"] = _strs(c.get("techniques"))
    out["technique_labels"] = [_technique_label(t, glossary) for t in out["techniques"]]
    out["timeline"] = [_pick(t, ("day", "count")) for t in _l(c.get("timeline"))]
    out["top_as_orgs"] = [_pick(t, ("as_org", "asn", "count", "share"))
                          for t in _l(c.get("top_as_orgs"))]
    out["top_countries"] = [_pick(t, ("country_code", "count", "share"))
                            for t in _l(c.get("top_countries"))]
    return out


def _rows(v: Any, keys: tuple[str, ...]) -> list[dict]:
    return [_pick(r, keys) for r in _l(v)]


RANKED = ("family",) + CHANGE + ("rank", "baseline_rank", "rank_change")
_TECHNIQUE = ("technique", "name", "parent") + CHANGE + ("share", "baseline_share",
                                                         "share_change_pp")


def _endpoint(ep: dict) -> dict:
    rows = _rows(ep.get("execution_techniques"), _TECHNIQUE)
    for r in rows:
        r["label"] = f"{r['technique']} {r['name']}" if r["name"] else str(r["technique"] or "?")
    ps = _d(ep.get("powershell"))
    return {"execution_techniques": rows,
            "technique_events": change(ep.get("technique_events")),
            "detected_events": change(ep.get("detected_events")),
            # the obfuscated share of PowerShell; None when no PowerShell was detected
            "powershell": {"events": change(ps["events"]), "obfuscated": change(ps["obfuscated"]),
                           **_pick(ps, ("obfuscated_share", "baseline_obfuscated_share",
                                        "share_change_pp")),
                           "families": _rows(ps.get("families"), RANKED)}
            if change(ps.get("events")) and (ps["events"]["period"] or ps["events"]["baseline"])
            else None}


CLASSIFICATIONS = ("research-scanner", "mass-scanner", "opportunistic", "targeted")
_INFRA_SHARE = CHANGE + ("share", "baseline_share")
_INFRA_MIX = ("source_ips", "share", "windows", "compromised_servers", "home_routers",
              "cloud_instances")
_INDICATOR = ("role", "indicator_type", "value", "sightings", "first_seen", "last_seen", "orgs",
              "country_code", "as_org", "classification")
_INDICATOR_LISTS = ("campaigns", "cves", "malware_families", "ioc_feeds")


def _classification(sources: dict) -> dict:
    """Background noise (research and mass scanners, opportunistic) against targeted sources."""
    rows = []
    for r in _l(sources.get("classification")):
        row = _pick(r, ("classification",) + CHANGE + ("source_ips", "share", "baseline_share"))
        noise = r.get("noise")
        # the analysis marks noise; a document without the mark falls back to the class name
        row["noise"] = noise if isinstance(noise, bool) else (
            row["classification"] in CLASSIFICATIONS[:3])
        rows.append(row)
    targeted = []
    for r in _l(sources.get("targeted")):
        row = _pick(r, ("ip", "country_code", "as_org", "network_type", "detected_events",
                        "orgs_hit", "first_seen", "last_seen"))
        row["campaigns"] = _strs(r.get("campaigns"))
        targeted.append(row)
    return {"classification": rows, "noise_share": sources.get("noise_share"),
            "targeted": targeted}


def _services(v: Any) -> list[dict]:
    return _rows(v, ("service", "source_ips", "baseline_source_ips"))


def _infrastructure(v: Any) -> dict | None:
    """What the attacking addresses are, from their host records; None when not reported."""
    if not isinstance(v, dict):
        return None
    classes = []
    for r in _l(v.get("service_classes")):
        row = _pick(r, ("service_class",) + _INFRA_SHARE)
        row["services"] = _services(r.get("services"))
        classes.append(row)
    return {
        "source_ips": change(v.get("source_ips")),
        "with_host_record": change(v.get("with_host_record")),
        "coverage": v.get("coverage"),
        "os_families": _rows(v.get("os_families"), ("os_family",) + _INFRA_SHARE),
        "host_kinds": _rows(v.get("host_kinds"), ("host_kind",) + _INFRA_SHARE),
        "service_classes": classes,
        "products": _rows(v.get("products"), ("product",) + _INFRA_SHARE),
        "as_orgs": _rows(v.get("as_orgs"), ("as_org", "asn", "network_type") + _INFRA_MIX),
        "countries": _rows(v.get("countries"), ("country_code",) + _INFRA_MIX),
    }


def _indicator(r: dict) -> dict:
    row = _pick(r, _INDICATOR)
    for k in _INDICATOR_LISTS:
        row[k] = _strs(r.get(k))
    return row


def _indicators(v: Any) -> dict | None:
    """IOC-list matches and the period's indicators (the appendix); None when not reported."""
    if not isinstance(v, dict):
        return None
    listed = []
    for r in _l(v.get("listed_sources")):
        row = _pick(r, ("feed",) + CHANGE + ("source_ips", "first_seen", "last_seen"))
        row["malware_families"] = _strs(r.get("malware_families"))
        listed.append(row)
    counts = _d(v.get("counts"))
    return {"listed_sources": listed,
            "payload_matches": [_indicator(r) for r in _l(v.get("payload_matches"))],
            "appendix": [_indicator(r) for r in _l(v.get("appendix"))],
            "counts": _pick(counts, ("attacker", "payload"))}


def build_view(metrics: dict) -> dict:
    """Normalise a metrics dict (see docs/architecture.md) into the shape the templates expect."""
    m = _d(metrics)
    inputs = _d(m.get("inputs"))
    files = inputs.get("files")
    rules_failed = inputs.get("rules_failed")
    sources = _d(m.get("sources"))
    dist = _d(sources.get("per_ip_distribution"))
    totals = _d(m.get("totals"))
    tool = _d(m.get("tool"))
    attack = _d(m.get("attack"))
    glossary = _d(attack.get("techniques"))
    attack_source = _d(attack.get("source"))
    top_ips = []
    for r in _l(sources.get("top_ips")):
        row = _pick(r, ("ip", "country_code", "as_org", "network_type", "detected_events",
                        "rule_matches", "rules", "first_seen", "last_seen"))
        row["campaigns"] = _strs(r.get("campaigns"))
        top_ips.append(row)
    view = {
        "schema_version": m.get("schema_version"),
        "generated_at": m.get("generated_at"),
        "tool": {"name": tool.get("name") or "threatscope", "version": tool.get("version")},
        "workspace": m.get("workspace"),
        "period": _span(m.get("period")),
        "baseline": _span(m.get("baseline")),
        "inputs": {
            **_pick(inputs, ("lines_read", "rows_written", "rows_quarantined", "comment_lines",
                             "orgs", "rules_loaded")),
            # a count, or a list of file names/records: both are accepted
            "files": len(files) if isinstance(files, list) else files,
            "file_list": [str(f.get("path", f)) if isinstance(f, dict) else str(f)
                          for f in files] if isinstance(files, list) else [],
            "rules_failed": len(rules_failed) if isinstance(rules_failed, list) else rules_failed,
            "rules_failed_list": _rows(rules_failed, ("path", "title", "reason")),
            "quarantine_reasons": _rows(inputs.get("quarantine_reasons"), ("reason", "count")),
            "formats": _rows(inputs.get("formats"), ("format", "files", "rows")),
            "rule_sets": _rows(inputs.get("rule_sets"),
                               ("name", "version", "files", "rules", "failed")),
        },
        "totals": {k: change(totals.get(k))
                   for k in ("detected_events", "detections", "events", "source_ips",
                             "orgs_hit")},
        "campaigns": [_campaign(c, glossary) for c in _l(m.get("campaigns"))],
        "products": _rows(m.get("products"), ("product",) + CHANGE),
        "cves": _rows(m.get("cves"), ("cve",) + CHANGE + (
            "product", "first_seen", "last_seen", "published", "public_exploit_date")),
        "families": _rows(m.get("families"), ("family",) + CHANGE),
        "malware": _rows(m.get("malware"), RANKED),
        "rules": _rows(m.get("rules"), ("rule_id", "title", "level") + CHANGE),
        "sources": {
            "distinct_ips": sources.get("distinct_ips"),
            "hosting_share": sources.get("hosting_share"),
            "countries": _rows(sources.get("countries"),
                               ("country_code", "country_name", "detected_events",
                                "source_ips")),
            "top_countries": _rows(sources.get("top_countries"),
                                   ("country_code", "country_name", "detected_events",
                                    "source_ips", "share")),
            "top_as_orgs": _rows(sources.get("top_as_orgs"),
                                 ("asn", "as_org", "network_type", "detected_events",
                                  "source_ips", "share")),
            "top_ips": top_ips,
            "per_ip_distribution": _pick(dist, ("p50", "p90", "p99", "max")),
            **_classification(sources),
        },
        "infrastructure": _infrastructure(m.get("infrastructure")),
        "indicators": _indicators(m.get("indicators")),
        "sectors": _rows(m.get("sectors"), ("sector", "orgs", "sensors", "detected_events",
                                            "per_org", "per_sensor", "rank",
                                            "baseline_detected_events", "baseline_per_org")),
        "endpoint": _endpoint(_d(m.get("endpoint"))),
        "attack": _pick(attack_source, ("package", "version", "attack_version")),
        "key_findings": _rows(m.get("key_findings"), ("id", "text")),
        "exposure": exposure_view(m.get("exposure")),
        "recommendations": recommendations_view(m.get("recommendations")),
        # who the report is for, and its comparison with the others (report/audience.py)
        "scope": scope_view(m.get("scope")),
        "peers": peers_view(m.get("peers")),
    }
    # how the renderers name each figure they show (rendered.view_fid)
    view["figure_keys"] = key_columns(m)
    cons = m.get("consistency")  # written by the analysis stage: {"ok", "problems": [str]}
    view["consistency"] = ({"ok": cons.get("ok"), "problems": _strs(cons.get("problems"))}
                           if isinstance(cons, dict) else None)
    notes = m.get("notes")  # analysis caveats: strings or {"text": ...}
    view["notes"] = [str(n.get("text", "")) if isinstance(n, dict) else str(n)
                     for n in notes if n] if isinstance(notes, list) else []
    det = view["totals"]["detections"]
    view["empty"] = not view["campaigns"] and not view["rules"] and not (det and det["period"])
    # detections in the period but none before: every change is NEW, no fold change exists
    view["no_baseline"] = (not view["empty"] and bool(det) and det["period"] > 0
                           and det["baseline"] == 0)
    return view
