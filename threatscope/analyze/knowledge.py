"""Built-in knowledge base: campaigns (title, product, CVEs) and CVE publication and first
public exploit dates, read from ``data/knowledge.toml``.

    >>> from threatscope.analyze.knowledge import campaign_info
    >>> campaign_info("gpon")["public_exploit_date"]
    datetime.date(2018, 4, 30)
"""

from __future__ import annotations

import tomllib
from datetime import date
from functools import cache
from importlib import resources


@cache
def knowledge() -> dict:
    """The parsed knowledge file: ``{"campaign": {key: {...}}, "cve": {id: {...}}}``."""
    text = resources.files("threatscope.analyze").joinpath("data/knowledge.toml").read_text("utf-8")
    return tomllib.loads(text)


def cve_info(cve: str) -> dict:
    """``{"published", "public_exploit", "source", "product", "advice"}`` for a CVE id (any
    case), None values when unknown; ``source`` says where the dates come from, ``advice`` is
    the fix or mitigation."""
    entry = knowledge().get("cve", {}).get(cve.upper(), {})
    return {"published": entry.get("published"), "public_exploit": entry.get("public_exploit"),
            "source": entry.get("source"), "product": entry.get("product"),
            "advice": entry.get("advice")}


def malware_info(family: str) -> dict:
    """``{"advice": str|None}``: the mitigation of a malware family (the rules' family name)."""
    return {"advice": knowledge().get("malware", {}).get(family, {}).get("advice")}


def campaign_info(key: str) -> dict:
    """Title, product, CVEs, public exploit date (earliest of its CVEs) and advice (its own, else
    its CVEs' advice in order, repeats dropped) of a campaign key; ``None`` values for a
    campaign the knowledge base does not list."""
    entry = knowledge().get("campaign", {}).get(key, {})
    cves = list(entry.get("cves", []))
    exploits: list[date] = [d for c in cves if (d := cve_info(c)["public_exploit"])]
    advice = entry.get("advice") or " ".join(
        dict.fromkeys(a for c in cves if (a := cve_info(c)["advice"]))) or None
    return {
        "title": entry.get("title"),
        "product": entry.get("product"),
        "cves": cves,
        "public_exploit_date": min(exploits) if exploits else None,
        "advice": advice,
    }
