"""Caveats of a metrics document: what a reader must know to read its figures, from the
figures themselves (appended to the document's ``notes``, which the methodology lists).

    doc["notes"] += caveats(doc)   # ["Days are UTC days ...", "2,911 input lines ..."]
"""

from __future__ import annotations

from typing import Any

# the document's lists of change objects (each row has a ``flag``)
CHANGE_LISTS = ("campaigns", "products", "cves", "families", "malware", "rules")



def caveats(m: dict[str, Any]) -> list[str]:
    """Plain sentences, in a fixed order; only those the document gives a reason for, but the
    first (how time is counted)."""
    out = ["Days are UTC days; a detected event is one logged request or alert that at least "
           "one rule matched, counted once however many rules matched it."]
    i = m.get("inputs") or {}
    if i.get("rows_quarantined"):
        out.append(f"{i['rows_quarantined']:,} input lines were quarantined (unreadable or "
                   "malformed) and are in no figure; the reasons are listed above.")
    if i.get("rules_failed"):
        out.append(f"{i['rules_failed']:,} rules failed to compile and did not run: what they "
                   "detect is missing from every figure.")
    tiny = sum(1 for key in CHANGE_LISTS for r in m.get(key) or []
               if r.get("flag") == "tiny-baseline")
    if tiny:
        out.append(f"{tiny:,} rows have a baseline under 10 detected events: their fold and "
                   "percent changes are shown but say little.")
    sectors = m.get("sectors") or []
    unknown = next((s for s in sectors if s.get("sector") == "unknown"), None)
    if unknown and unknown.get("orgs"):
        out.append(f"{unknown['orgs']:,} organisations have no registered sector (sector "
                   "'unknown'); register them with `--orgs FILE` on ingest.")
    if any(s.get("per_sensor") is None for s in sectors if s.get("orgs")):
        out.append("Per-sensor rates are given only for sectors whose organisations all "
                   "registered their sensor count.")
    return out
