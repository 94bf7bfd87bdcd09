"""The peer comparison of an organisation's or a sector's report (report.json ``peers``).

An organisation is compared with the other organisations of its sector, a sector with the
organisations of every other sector. Counts are per-organisation averages (the group's total over
its organisations, those without a detection included); shares are pooled (of the group's
detected events). Figures of fewer than :data:`MIN_PEERS` organisations outside the audience are
never shown: they would be one or two organisations' own figures. The peer comparison is then
withheld, and a sector row of the sector table that small is pooled into "small sectors" (itself
withheld when still too small).

Everything here is evaluated on the unscoped relations of :func:`figures.prepare` (``det_all``,
``orgs_all``), in the period only.
"""

from __future__ import annotations

from typing import Any

import duckdb

from threatscope.analyze import figures as F
from threatscope.analyze.figures import CAMPAIGN, EVENTS, MATCHES, Figure
from threatscope.analyze.findings import fmt_num
from threatscope.analyze.period import Period
from threatscope.analyze.scope import Scope

MIN_PEERS = 2  # fewest organisations outside the audience whose figures may be shown
TOP_PEER = 5  # campaigns and CVEs compared: the top of the audience and the top of the peers

PEER_FIGURES: dict[str, Figure] = {
    "peers.orgs": Figure("orgs_all", MATCHES, ("org_id", "sector"), windows="all"),
    "peers.detected_events": Figure(
        "det_all", EVENTS, ("org_id",), windows="period",
        extra={"source_ips": "count(DISTINCT src_ip)",
               "hosting": "count(DISTINCT ev) FILTER (WHERE network_type = 'hosting')",
               "targeted": "count(DISTINCT ev) FILTER (WHERE classification = 'targeted')"}),
    "peers.campaigns": Figure("det_all", EVENTS, ("org_id", "campaign"), CAMPAIGN,
                              windows="period"),
    "peers.cves": Figure("det_cve_all", EVENTS, ("org_id", "cve"), "cve IS NOT NULL",
                         windows="period"),
}
DET_CVE_ALL = "SELECT *, unnest(list_distinct(cves)) AS cve FROM det_all"


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 2) if n else None


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


class _Group:
    """Sums of one set of organisations (the audience, its peers, a sector)."""

    def __init__(self, members: list[str], per_org: dict[str, dict]):
        self.members = members
        rows = [per_org.get(o, {}) for o in members]
        self.n = len(members)
        self.sums = {k: sum(int(r.get(k) or 0) for r in rows)
                     for k in ("period", "source_ips", "hosting", "targeted")}

    def per_org(self, key: str) -> float | None:
        return _mean(self.sums[key], self.n)


def _keyed(rows: list[dict], key: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r[key], {})[r["org_id"]] = int(r["period"] or 0)
    return out


def _top_rows(counts: dict[str, dict[str, int]], key: str, audience: _Group, peers: _Group,
              show_peers: bool) -> list[dict[str, Any]]:
    """The audience's top campaigns (CVEs) and the peers' top, side by side."""
    def total(name: str, group: _Group) -> int:
        return sum(counts[name].get(o, 0) for o in group.members)

    def top(group: _Group) -> list[str]:
        named = [(total(n, group), n) for n in counts if total(n, group)]
        return [n for _, n in sorted(named, key=lambda x: (-x[0], x[1]))[:TOP_PEER]]

    mine_top = top(audience)
    names = mine_top + [n for n in (top(peers) if show_peers else []) if n not in mine_top]
    rows = []
    for n in names:
        mine = total(n, audience)
        row: dict[str, Any] = {key: n, "detected_events": mine,
                               "per_org": _mean(mine, audience.n),
                               "share": _share(mine, audience.sums["period"])}
        if show_peers:
            theirs = total(n, peers)
            row |= {"peers_per_org": _mean(theirs, peers.n),
                    "peers_share": _share(theirs, peers.sums["period"]),
                    "peers_hit": sum(1 for o in peers.members if counts[n].get(o))}
        rows.append(row)
    return rows


def _sector_rows(sectors: dict[str, list[str]], audience: set[str],
                 per_org: dict[str, dict]) -> tuple[list[dict[str, Any]], int]:
    """Detected events per organisation of each sector; a sector with 1..MIN_PEERS-1
    organisations outside the audience is pooled into "small sectors". Returns the rows and
    how many sectors were left out because even their pool was too small."""
    def row(name: str | None, members: list[str], pooled: int = 0) -> dict[str, Any]:
        g = _Group(members, per_org)
        return {"sector": name, "orgs": g.n, "detected_events": g.sums["period"],
                "per_org": g.per_org("period"), "audience": bool(set(members) & audience),
                "pooled_sectors": pooled}

    def small(members: list[str]) -> bool:
        outside = len([o for o in members if o not in audience])
        return 0 < outside < MIN_PEERS

    rows = [row(s, m) for s, m in sorted(sectors.items()) if not small(m)]
    pool = [s for s, m in sectors.items() if small(m)]
    pooled = [o for s in pool for o in sectors[s]]
    withheld = 0
    if pool and not small(pooled):
        rows.append(row(None, pooled, len(pool)))
    elif pool:
        withheld = len(pool)
    rows.sort(key=lambda r: (r["sector"] is None, -(r["per_org"] or 0), r["sector"] or ""))
    return rows, withheld


def _withheld_reason(scope: Scope, n: int) -> str:
    orgs = f"{n} organisation{'' if n == 1 else 's'}"
    where = (f"sector {scope.sector} has {orgs} besides this one" if scope.kind == "org"
             else f"the other sectors have {orgs}")
    return (f"Peer figures are withheld: {where}, fewer than {MIN_PEERS}; their figures would "
            "be those organisations' own.")


def compare(con: duckdb.DuckDBPyConnection, scope: Scope, period: Period,
            have_source: bool) -> dict[str, Any]:
    """report.json's ``peers`` for an organisation's or a sector's report (on a connection
    prepared by :func:`figures.prepare`)."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW det_cve_all AS {DET_CVE_ALL}")

    def ev(fid: str) -> list[dict[str, Any]]:
        return F.evaluate(con, PEER_FIGURES[fid], period, period.baseline())

    sector_of = {r["org_id"]: r["sector"] for r in ev("peers.orgs")}
    per_org = {r["org_id"]: r for r in ev("peers.detected_events")}
    members = list(scope.org_ids or ())
    if scope.kind == "org":
        others = sorted(o for o, s in sector_of.items() if s == scope.sector and o != scope.org_id)
        group = scope.sector
    else:
        others = sorted(o for o in sector_of if o not in members)
        group = "other sectors"
    audience, peers = _Group(members, per_org), _Group(others, per_org)
    withheld = peers.n < MIN_PEERS

    def metric(name: str, label: str, mine: float | None, theirs: float | None,
               unit: str) -> dict[str, Any]:
        return {"metric": name, "label": label, "unit": unit, "value": mine,
                "peers": None if withheld else theirs}

    def pooled(key: str, g: _Group) -> float | None:
        return _share(g.sums[key], g.sums["period"]) if have_source else None

    comparisons = [
        metric("detected_events_per_org", "Detected events per organisation",
               audience.per_org("period"), peers.per_org("period"), "count"),
        metric("source_ips_per_org", "Attacking addresses per organisation",
               audience.per_org("source_ips"), peers.per_org("source_ips"), "count"),
        metric("hosting_share", "Share of detected events from hosting networks",
               pooled("hosting", audience), pooled("hosting", peers), "share"),
        metric("targeted_share", "Share of detected events from targeted sources",
               pooled("targeted", audience), pooled("targeted", peers), "share"),
    ]
    sectors: dict[str, list[str]] = {}
    for o, s in sorted(sector_of.items()):
        sectors.setdefault(s, []).append(o)
    sector_rows, sectors_withheld = _sector_rows(sectors, set(members), per_org)
    return {
        "kind": scope.kind,
        "group": group,
        "min_peers": MIN_PEERS,
        "peer_orgs": peers.n,
        "withheld": withheld,
        "reason": _withheld_reason(scope, peers.n) if withheld else None,
        "comparisons": comparisons,
        "campaigns": _top_rows(_keyed(ev("peers.campaigns"), "campaign"), "campaign",
                               audience, peers, not withheld),
        "cves": _top_rows(_keyed(ev("peers.cves"), "cve"), "cve", audience, peers,
                          not withheld),
        "sectors": sector_rows,
        "sectors_withheld": sectors_withheld,
        "definitions": {k: f.definition() for k, f in PEER_FIGURES.items()},
    }


def scoped_findings(findings: list[dict[str, str]], doc: dict[str, Any]) -> list[dict[str, str]]:
    """Key findings of an organisation's or a sector's report: the sector ranking says nothing
    with one sector in scope, the comparison with the peers says more (when not withheld)."""
    pr = doc.get("peers")
    if not pr:
        return findings
    out = [f for f in findings if f["id"] != "sectors"]
    mine, theirs = pr["comparisons"][0]["value"], pr["comparisons"][0]["peers"]
    if theirs is None or mine is None:
        return out
    who = "This organisation" if pr["kind"] == "org" else "This sector"
    than = ("more" if mine > theirs else "fewer" if mine < theirs else "as many")
    rel = f"{than} than" if than != "as many" else "as many as"
    text = (f"{who} saw {fmt_num(mine)} detected events per organisation in "
            f"{doc['period']['label']}, {rel} the {pr['peer_orgs']} organisations of "
            f"{pr['group']} ({fmt_num(theirs)} per organisation).")
    return [out[0], {"id": "peers", "text": text}, *out[1:]] if out else [
        {"id": "peers", "text": text}]
