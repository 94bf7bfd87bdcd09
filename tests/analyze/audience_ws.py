"""A real workspace of four organisations for the report-audience tests.

finance: f1, f2, f3 (f3 has no events); health: h1 alone (a sector of one organisation).
In 2018Q2: f1 3 iis-webdav (hosting) + 2 gpon (access) detected events, 10 http events;
f2 4 gpon (access) + 1 iis-webdav (hosting), 6 events; h1 5 struts (hosting), 7 events.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.analyze.conftest import WsBuilder
from threatscope import schema
from threatscope.workspace import Workspace

HOSTING, ACCESS, LONE = "198.51.100.1", "203.0.113.5", "192.0.2.9"


def four_orgs(b: WsBuilder, f1_name: str = "Fin One") -> Workspace:
    b.orgs(("f1", f1_name, "finance", None), ("f2", "Fin Two", "finance", None),
           ("f3", "Fin Three", "finance", None), ("h1", "Health One", "health", None))
    b.sources((HOSTING, "NL", "Netherlands", 64500, "HostCo", "hosting"),
              ("198.51.100.2", "DE", "Germany", 64501, "CloudCo", "hosting"),
              (ACCESS, "BR", "Brazil", 64502, "TelecomBR", "access"),
              (LONE, "US", "United States", 64503, "BigHost", "hosting"))
    b.detect("2018-05-01 10:00", 3, org="f1", ip=HOSTING)
    b.detect("2018-05-02 10:00", 2, org="f1", ip=ACCESS, campaign="gpon", product="gpon",
             cves=["CVE-2018-10561"], rule="r-gpon")
    b.detect("2018-02-01 10:00", 1, org="f1", ip=HOSTING)  # baseline
    b.detect("2018-05-03 10:00", 4, org="f2", ip=ACCESS, campaign="gpon", product="gpon",
             cves=["CVE-2018-10561"], rule="r-gpon")
    b.detect("2018-05-04 10:00", 1, org="f2", ip="198.51.100.2")
    b.detect("2018-05-05 10:00", 5, org="h1", ip=LONE, campaign="struts", product="struts",
             cves=["CVE-2017-5638"], rule="r-struts")
    b.events("f1", "2018-05-01", 10).events("f2", "2018-05-03", 6).events("h1", "2018-05-05", 7)
    _indicators(b.ws)
    return b.ws


def _indicators(ws: Workspace) -> None:
    """The indicator table enrich would write: f1's and f2's attacker, h1's attacker, a payload
    URL (not attributed to any organisation)."""
    seen = (datetime(2018, 5, 1), datetime(2018, 5, 5))
    rows = [("ipv4", ACCESS, "attacker", ["gpon"], 6, 2),
            ("ipv4", LONE, "attacker", ["struts"], 5, 1),
            ("url", "http://lone.example/x.sh", "payload", ["struts"], 5, 1)]
    with ws.connect() as con:
        con.execute(f"CREATE TABLE indicator ({schema.ddl_columns(schema.INDICATOR)})")
        for kind, value, role, campaigns, sightings, orgs in rows:
            con.execute("INSERT INTO indicator (indicator_type, value, role, campaigns, "
                        "first_seen, last_seen, sightings, orgs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [kind, value, role, campaigns, *seen, sightings, orgs])


def make_four_orgs(root: Path, f1_name: str = "Fin One") -> Workspace:
    return four_orgs(WsBuilder(root), f1_name)
