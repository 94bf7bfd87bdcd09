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
    """``{"published": date|None, "public_exploit": date|None, "source": str|None}`` for a CVE
    id (any case); ``source`` says where the dates come from."""
    entry = knowledge().get("cve", {}).get(cve.upper(), {})
    return {"published": entry.get("published"), "public_exploit": entry.get("public_exploit"),
            "source": entry.get("source")}


def campaign_info(key: str) -> dict:
    """Title, product, CVEs and public exploit date (earliest of its CVEs) of a campaign key;
    ``None`` values for a campaign the knowledge base does not list."""
    entry = knowledge().get("campaign", {}).get(key, {})
    cves = list(entry.get("cves", []))
    exploits: list[date] = [d for c in cves if (d := cve_info(c)["public_exploit"])]
    return {
        "title": entry.get("title"),
        "product": entry.get("product"),
        "cves": cves,
        "public_exploit_date": min(exploits) if exploits else None,
    }
