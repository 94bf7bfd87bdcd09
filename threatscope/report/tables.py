"""The report's tables as CSV files (``tables/*.csv``), one per list in the metrics document.

    paths = write_tables(metrics, "out/tables")     # {"campaigns": Path(...), ...}

Values are the metrics' own (no rounding) and headers are their keys, which name the unit:
``detected_events`` (events matched by at least one rule, each counted once) in the source and
sector tables, ``rule_matches`` for rule matches. The change tables' ``period``/``baseline``
count detected events, except in ``rules.csv`` where they count rule matches, and in
``endpoint_execution_techniques.csv`` where they count technique events (an endpoint event once
per ATT&CK execution technique), and in ``infrastructure_*.csv`` where they count attacking
addresses (a service class's ``services`` cell is ``service=addresses`` pairs). Lists become
``;``-joined text, missing values empty cells. A text cell that a spreadsheet would run as a formula (starting with ``= + - @`` or a tab)
gets a leading apostrophe, as OWASP recommends for CSV exports of untrusted data.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from threatscope.report.model import CHANGE, RANKED, build_view

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (where in the view, columns)
    "campaigns": ("campaigns", ("campaign", "title", "product", "cves", "techniques") + CHANGE
                  + ("onset", "peak_day", "peak_count", "last_day", "source_ips",
                     "public_exploit_date", "days_exploit_to_onset")),
    "products": ("products", ("product",) + CHANGE),
    "cves": ("cves", ("cve",) + CHANGE + ("product", "first_seen", "last_seen", "published",
                                           "public_exploit_date")),
    "families": ("families", ("family",) + CHANGE),
    "malware": ("malware", RANKED),
    "rules": ("rules", ("rule_id", "title", "level") + CHANGE),
    "sources_top_countries": ("sources.top_countries",
                              ("country_code", "country_name", "detected_events", "source_ips",
                               "share")),
    "sources_top_as_orgs": ("sources.top_as_orgs",
                            ("asn", "as_org", "network_type", "detected_events", "source_ips",
                             "share")),
    "sources_top_ips": ("sources.top_ips", ("ip", "country_code", "as_org", "network_type",
                                            "detected_events", "rule_matches", "rules",
                                            "campaigns", "first_seen", "last_seen")),
    "endpoint_execution_techniques": ("endpoint.execution_techniques",
                                      ("technique", "name", "parent") + CHANGE
                                      + ("share", "baseline_share", "share_change_pp")),
    "endpoint_powershell_families": ("endpoint.powershell.families", RANKED),
    "sources_classification": ("sources.classification",
                               ("classification", "noise") + CHANGE
                               + ("source_ips", "share", "baseline_share")),
    "sources_targeted": ("sources.targeted", ("ip", "country_code", "as_org", "network_type",
                                              "detected_events", "orgs_hit", "campaigns",
                                              "first_seen", "last_seen")),
    "infrastructure_os_families": ("infrastructure.os_families",
                                   ("os_family",) + CHANGE + ("share", "baseline_share")),
    "infrastructure_host_kinds": ("infrastructure.host_kinds",
                                  ("host_kind",) + CHANGE + ("share", "baseline_share")),
    "infrastructure_service_classes": ("infrastructure.service_classes",
                                       ("service_class",) + CHANGE
                                       + ("share", "baseline_share", "services")),
    "infrastructure_products": ("infrastructure.products",
                                ("product",) + CHANGE + ("share", "baseline_share")),
    "infrastructure_as_orgs": ("infrastructure.as_orgs",
                               ("as_org", "asn", "network_type", "source_ips", "share", "windows",
                                "compromised_servers", "home_routers", "cloud_instances")),
    "infrastructure_countries": ("infrastructure.countries",
                                 ("country_code", "source_ips", "share", "windows",
                                  "compromised_servers", "home_routers", "cloud_instances")),
    "indicators_listed_sources": ("indicators.listed_sources",
                                  ("feed",) + CHANGE + ("source_ips", "malware_families",
                                                        "first_seen", "last_seen")),
    "indicators_appendix": ("indicators.appendix",
                            ("role", "indicator_type", "value", "sightings", "campaigns", "cves",
                             "malware_families", "ioc_feeds", "first_seen", "last_seen", "orgs",
                             "country_code", "as_org", "classification")),
    "exposure": ("exposure.rows", ("org_id", "server", "threat_kind", "threat", "product", "cves",
                                   "attempts", "successes", "unusual_size", "source_ips",
                                   "first_seen", "last_seen", "example_uri", "advice")),
    "recommendations": ("recommendations", ("id", "text", "evidence")),
    "sectors": ("sectors", ("sector", "orgs", "sensors", "detected_events", "per_org",
                            "per_sensor", "rank", "baseline_detected_events",
                            "baseline_per_org")),
    # an organisation's or a sector's report only (empty otherwise): report/audience.py
    "peers_comparisons": ("peers.comparisons", ("metric", "label", "unit", "value", "peers")),
    "peers_campaigns": ("peers.campaigns", ("campaign", "detected_events", "per_org", "share",
                                            "peers_per_org", "peers_share", "peers_hit")),
    "peers_cves": ("peers.cves", ("cve", "detected_events", "per_org", "share",
                                  "peers_per_org", "peers_share", "peers_hit")),
    "peers_sectors": ("peers.sectors", ("sector", "orgs", "detected_events", "per_org",
                                        "audience", "pooled_sectors")),
}


def cell(v: object) -> str:
    """One CSV cell: None -> '', list -> 'a;b', formula-looking text defused with a quote."""
    if v is None:
        return ""
    if isinstance(v, list):
        v = ";".join("" if x is None else str(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v if v.startswith(FORMULA_START) else v
    return str(v)


def services_cell(services: object) -> str:
    """A service class's services as one cell: ``smtp=120;pop3=40`` (addresses in the period)."""
    if not isinstance(services, list):
        return ""
    return cell([f"{s.get('service')}={'' if s.get('source_ips') is None else s['source_ips']}"
                 for s in services if isinstance(s, dict)])


def table_rows(view: dict, name: str) -> tuple[tuple[str, ...], list[list[str]]]:
    """Header and rows of one table, from a view built by ``build_view``."""
    if name == "campaign_timelines":
        head = ("campaign", "day", "count")
        return head, [[cell(c["campaign"]), cell(t["day"]), cell(t["count"])]
                      for c in view["campaigns"] for t in c["timeline"]]
    where, head = TABLES[name]
    rows = view
    for part in where.split("."):
        rows = (rows or {}).get(part)  # a section that is absent (None) has no rows
    return head, [[services_cell(r.get(k)) if k == "services" else cell(r.get(k)) for k in head]
                  for r in rows or []]


def write_tables(metrics: dict, folder: str | Path) -> dict[str, Path]:
    """Write every table as ``<folder>/<name>.csv`` (UTF-8, header row); returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    view = build_view(metrics)
    out = {}
    for name in [*TABLES, "campaign_timelines"]:
        head, rows = table_rows(view, name)
        path = folder / f"{name}.csv"
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(head)
            w.writerows(rows)
        os.replace(tmp, path)
        out[name] = path
    return out
