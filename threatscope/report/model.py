"""The metrics document (report.json, schema_version 1) normalised for rendering.

    view = build_view(metrics)
    view["campaigns"][0]["period"]      # every key of the schema is present (None when missing)

Renderers read only the view: optional keys missing from the metrics become ``None`` or empty
lists, values of the wrong shape are treated as missing, unknown keys are ignored. The view adds
no figure of its own except the consistency checks (see ``consistency.py``).

Units follow the metrics: ``totals["detections"]`` and the rules count rule matches, source and
sector rows carry ``detected_events`` (events matched by at least one rule, counted once).
"""

from __future__ import annotations

from typing import Any

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
        },
        "totals": {k: change(totals.get(k))
                   for k in ("detected_events", "detections", "events", "source_ips",
                             "orgs_hit")},
        "campaigns": [_campaign(c, glossary) for c in _l(m.get("campaigns"))],
        "products": _rows(m.get("products"), ("product",) + CHANGE),
        "cves": _rows(m.get("cves"), ("cve",) + CHANGE),
        "families": _rows(m.get("families"), ("family",) + CHANGE),
        "malware": _rows(m.get("malware"), RANKED),
        "rules": _rows(m.get("rules"), ("rule_id", "title", "level") + CHANGE),
        "sources": {
            "distinct_ips": sources.get("distinct_ips"),
            "hosting_share": sources.get("hosting_share"),
            "top_countries": _rows(sources.get("top_countries"),
                                   ("country_code", "country_name", "detected_events",
                                    "source_ips", "share")),
            "top_as_orgs": _rows(sources.get("top_as_orgs"),
                                 ("asn", "as_org", "network_type", "detected_events",
                                  "source_ips", "share")),
            "top_ips": top_ips,
            "per_ip_distribution": _pick(dist, ("p50", "p90", "p99", "max")),
        },
        "sectors": _rows(m.get("sectors"), ("sector", "orgs", "sensors", "detected_events",
                                            "per_org", "per_sensor", "rank",
                                            "baseline_detected_events", "baseline_per_org")),
        "endpoint": _endpoint(_d(m.get("endpoint"))),
        "attack": _pick(attack_source, ("package", "version", "attack_version")),
        "key_findings": _rows(m.get("key_findings"), ("id", "text")),
    }
    cons = m.get("consistency")  # written by the analysis stage: {"ok", "problems": [str]}
    view["consistency"] = ({"ok": cons.get("ok"), "problems": _strs(cons.get("problems"))}
                           if isinstance(cons, dict) else None)
    notes = m.get("notes")  # analysis caveats: strings or {"text": ...}
    view["notes"] = [str(n.get("text", "")) if isinstance(n, dict) else str(n)
                     for n in notes if n] if isinstance(notes, list) else []
    det = view["totals"]["detections"]
    view["empty"] = not view["campaigns"] and not view["rules"] and not (det and det["period"])
    return view
