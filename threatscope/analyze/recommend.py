"""Recommendations drawn from what the metrics document shows, each with its evidence.

    doc["recommendations"] = recommendations(doc)
    # [{"id": "patch-exposed:gpon", "evidence": ["exposure[org_id=org03][server=...]..."],
    #   "text": "..."}, ...]

A pure function of the metrics dict: every recommendation names the figure ids (as in
``figures``) whose values triggered it, and its text is built from those values and the
knowledge base's advice only. No evidence, no recommendation. The order is fixed: exposed
servers, rising campaigns and CVEs, hosting networks, obfuscated PowerShell, malware
families, IOC-listed sources; within each, the order of the document's own lists.
"""

from __future__ import annotations

from typing import Any

from threatscope.analyze import figures
from threatscope.analyze.knowledge import campaign_info, cve_info, malware_info

HOSTING_SHARE_MIN = 0.5  # hosting networks sent at least half of the detected events
RISING = ("surging", "new")
SURGE_FOLD, SURGE_MIN = 3, 10  # on a tiny baseline: at least 3x and 10 events to count as a rise
LIST_MAX = 5  # servers, ASNs named in one text


def figure_id(figure: str, **key: Any) -> str:
    """The id a figure row has in ``figures`` (``exposure[org_id=org01][server=web01]``)."""
    return figures.figure_id(figure, key)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _names(items: list[str]) -> str:
    more = len(items) - LIST_MAX
    return ", ".join(items[:LIST_MAX]) + (f" and {more} more" if more > 0 else "")


def _exposed(doc: dict) -> list[dict]:
    """One per threat with exposed servers: patch those servers."""
    by_threat: dict[tuple[str, str], list[dict]] = {}
    for r in (doc.get("exposure") or {}).get("rows") or []:
        by_threat.setdefault((r["threat_kind"], r["threat"]), []).append(r)
    out = []
    for (kind, threat), rows in by_threat.items():
        servers = [f"{r['org_id']} {r['server']} ({r['successes']} answered 2xx"
                   + (f", {r['unusual_size']} unusually large)" if r["unusual_size"] else ")")
                   for r in rows]
        advice = rows[0]["advice"]
        product = rows[0]["product"] or "the product"
        text = (f"Patch {product} on the {_n(len(rows), 'server')} that answered {threat} exploit "
                f"attempts with success or an unusual response size: {_names(servers)}.")
        out.append({"id": f"patch-exposed:{threat}", "text": text + (f" {advice}" if advice else ""),
                    "evidence": [figure_id("exposure", org_id=r["org_id"], server=r["server"],
                                           threat_kind=kind, threat=threat) for r in rows]})
    return out


def _rose(c: dict) -> bool:
    """Flagged surging or new, or at least SURGE_FOLD times a tiny baseline (a fold change over
    a handful is not a measure, but a rise to SURGE_MIN or more events still calls for action)."""
    p, b = c.get("period") or 0, c.get("baseline") or 0
    if c.get("flag") == "tiny-baseline":
        return p >= SURGE_MIN and p >= SURGE_FOLD * b
    return c.get("flag") in RISING and p > 0


def _rising(doc: dict) -> list[dict]:
    """Campaigns and CVEs flagged surging or new: patch or mitigate their product."""
    out, covered = [], set()
    for c in doc.get("campaigns") or []:
        if not _rose(c):
            continue
        covered.update(c.get("cves") or [])
        advice = campaign_info(c["campaign"])["advice"]
        product = c.get("product") or "the product"
        text = (f"Campaign {c['campaign']} ({product}) rose to "
                f"{_n(c['period'], 'detected event')} from {c['baseline']} in the baseline "
                f"({c['flag']}). Patch or mitigate {product}.")
        out.append({"id": f"mitigate-campaign:{c['campaign']}",
                    "text": text + (f" {advice}" if advice else ""),
                    "evidence": [figure_id("campaigns", campaign=c["campaign"])]})
    for c in doc.get("cves") or []:
        if not _rose(c) or c["cve"] in covered:
            continue
        info = cve_info(c["cve"])
        text = (f"{c['cve']} ({info['product'] or 'product unknown'}) rose to "
                f"{_n(c['period'], 'detected event')} from {c['baseline']} in the baseline "
                f"({c['flag']}).")
        out.append({"id": f"mitigate-cve:{c['cve']}",
                    "text": text + (f" {info['advice']}" if info["advice"] else ""),
                    "evidence": [figure_id("cves", cve=c["cve"])]})
    return out


def _hosting(doc: dict) -> list[dict]:
    sources = doc.get("sources") or {}
    share = sources.get("hosting_share")
    if share is None or share < HOSTING_SHARE_MIN:
        return []
    asns = [f"AS{r['asn']} {r['as_org']}" for r in sources.get("top_as_orgs") or []
            if r.get("network_type") == "hosting" and r.get("asn") is not None]
    if not asns:
        return []
    return [{"id": "rate-limit-hosting",
             "text": (f"{_pct(share)} of detected events came from hosting networks; consider "
                      f"blocking or rate-limiting the hosting ASNs seen, where no customer "
                      f"traffic comes from them: {_names(asns)}."),
             "evidence": ["sources.hosting_share", "sources.as_orgs"]}]


def _powershell(doc: dict) -> list[dict]:
    ps = (doc.get("endpoint") or {}).get("powershell") or {}
    obf, events = ps.get("obfuscated") or {}, ps.get("events") or {}
    if not obf.get("period") or ps.get("obfuscated_share") is None:
        return []
    return [{"id": "powershell-logging",
             "text": (f"{obf['period']} of {events.get('period')} PowerShell events "
                      f"({_pct(ps['obfuscated_share'])}) were obfuscated: enable PowerShell "
                      "script block logging (event 4104) and AMSI on every Windows host, so "
                      "that what ran is logged after deobfuscation and scanned."),
             "evidence": ["endpoint.powershell_obfuscated", "endpoint.powershell_events"]}]


def _malware(doc: dict) -> list[dict]:
    out = []
    for r in doc.get("malware") or []:
        advice = malware_info(r["family"])["advice"]
        if not r.get("period") or not advice:
            continue
        out.append({"id": f"malware:{r['family']}",
                    "text": f"{r['family']} seen in {_n(r['period'], 'detected event')}: {advice}",
                    "evidence": [figure_id("malware", malware_family=r["family"])]})
    return out


def _listed(doc: dict) -> list[dict]:
    out = []
    for r in (doc.get("indicators") or {}).get("listed_sources") or []:
        if not r.get("period") or not r.get("source_ips"):
            continue
        out.append({"id": f"block-listed:{r['feed']}",
                    "text": (f"{r['source_ips']} attacking addresses named by the {r['feed']} "
                             f"list sent {r['period']} detected events: add the list to the "
                             "firewall or WAF block lists."),
                    "evidence": [figure_id("indicators.listed_sources", feed=r["feed"])]})
    return out


def recommendations(doc: dict) -> list[dict[str, Any]]:
    """The recommendations the document's figures support, in a fixed order."""
    return [*_exposed(doc), *_rising(doc), *_hosting(doc), *_powershell(doc), *_malware(doc),
            *_listed(doc)]
