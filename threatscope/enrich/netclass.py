"""Hosting vs access classification of autonomous systems.

1. The built-in list ``data/asn_network_types.csv`` (asn, as_org as GeoLite2 names it,
   network_type): cloud/hosting providers and large access ISPs. Matched by AS number, or by
   exact organisation name when the data has no number (geoip2fast).
2. Keywords in the AS organisation name: hosting words first, then access (ISP/telco) words.
3. Otherwise ``unknown`` (also for private/reserved and unlisted addresses).

``classify_sql(asn, org)`` returns a SQL expression; ``builtin_asns()`` the list as rows.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

# Lower-cased org names are searched with these RE2 patterns (word-ish boundaries where a short
# stem would otherwise hit unrelated names, e.g. 'colo' in 'Colombia').
HOSTING_RE = (
    r"hosting|\bhost\b|cloud|data ?cent(er|re)|datacent|\bserver|servers\b|\bvps\b|\bcolo\b"
    r"|colocation|colocrossing|dedicated|\bidc\b|web services|compute"
)
ACCESS_RE = (
    r"telecom|telekom|telecommunica|telecomunica|broadband|mobile|cable|wireless|\bdsl\b"
    r"|fib(er|re)|\bisp\b|internet service|communications|telefonica|vodafone|comcast"
    r"|charter|verizon|chinanet|unicom|airtel|\bgprs\b|\blte\b|\b[34]g\b"
)

NETWORK_TYPES = ("hosting", "access", "unknown")


@cache
def builtin_asns() -> list[tuple[int, str, str]]:
    """``[(asn, as_org, network_type), ...]`` from the package's data file."""
    text = resources.files("threatscope.enrich").joinpath("data/asn_network_types.csv").read_text(
        encoding="utf-8"
    )
    rows = []
    for r in csv.DictReader(text.splitlines()):
        if r["network_type"] not in NETWORK_TYPES:
            raise ValueError(f"asn_network_types.csv: bad network_type {r['network_type']!r}")
        rows.append((int(r["asn"]), r["as_org"], r["network_type"]))
    return rows


def classify_sql(asn_type: str, org_type: str, org: str) -> str:
    """SQL for network_type given the list's type by ASN, by org name, and the org name."""
    return (
        f"coalesce({asn_type}, {org_type}, CASE "
        f"WHEN {org} IS NULL THEN 'unknown' "
        f"WHEN regexp_matches(lower({org}), '{HOSTING_RE}') THEN 'hosting' "
        f"WHEN regexp_matches(lower({org}), '{ACCESS_RE}') THEN 'access' "
        "ELSE 'unknown' END)"
    )
