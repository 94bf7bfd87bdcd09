"""Who a report is for (report.json ``scope``) and its peer comparison (``peers``), as view parts.

    view["scope"]["title"]     # "Fin One (sector finance)", "sector finance" or "" (everyone)
    view["peers"]              # None in the all-organisations report

The renderers show these as given: peer figures that report.json withholds stay withheld.
"""

from __future__ import annotations

from typing import Any

from threatscope.report.text import fmt_int, fmt_num, fmt_share

_COMPARISON = ("metric", "label", "unit", "value", "peers")
_TOP = ("detected_events", "per_org", "share", "peers_per_org", "peers_share", "peers_hit")
_SECTOR = ("sector", "orgs", "detected_events", "per_org", "audience", "pooled_sectors")


def _d(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _rows(v: Any, keys: tuple[str, ...]) -> list[dict]:
    return [{k: r.get(k) for k in keys} for r in v if isinstance(r, dict)] \
        if isinstance(v, list) else []


def scope_view(v: Any) -> dict[str, Any]:
    """The audience: ``kind`` all|org|sector, its names and a ``title`` for headings."""
    s = _d(v)
    kind = s.get("kind") if s.get("kind") in ("org", "sector") else "all"
    out = {k: s.get(k) for k in ("org_id", "org_name", "sector", "orgs")} | {"kind": kind}
    if kind == "org":
        out["title"] = (f"{out['org_name'] or out['org_id'] or '?'} "
                        f"(sector {out['sector'] or 'unknown'})")
        out["whose"] = "This organisation has"
    elif kind == "sector":
        out["title"] = f"sector {out['sector'] or 'unknown'}"
        out["whose"] = "This sector's organisations have"
    else:
        out["title"], out["whose"] = "", "The workspace has"
    return out


def peers_view(v: Any) -> dict[str, Any] | None:
    """The peer comparison, every key present; None when the document has none."""
    if not isinstance(v, dict):
        return None
    out = {k: v.get(k) for k in ("kind", "group", "min_peers", "peer_orgs", "reason",
                                 "sectors_withheld")}
    # too few peers is withheld whatever the document holds: a second guard of their privacy
    peer_orgs, k = v.get("peer_orgs"), v.get("min_peers")
    out["withheld"] = bool(v.get("withheld")) or not isinstance(peer_orgs, int) or (
        isinstance(k, int) and peer_orgs < k)
    out["comparisons"] = _rows(v.get("comparisons"), _COMPARISON)
    out["campaigns"] = _rows(v.get("campaigns"), ("campaign",) + _TOP)
    out["cves"] = _rows(v.get("cves"), ("cve",) + _TOP)
    if out["withheld"]:
        for r in out["comparisons"]:
            r["peers"] = None
        for r in out["campaigns"] + out["cves"]:
            r.update(peers_per_org=None, peers_share=None, peers_hit=None)
    out["sectors"] = _rows(v.get("sectors"), _SECTOR)
    for r in out["sectors"]:
        r["label"] = (r["sector"] if r["sector"] is not None
                      else f"small sectors ({fmt_int(r['pooled_sectors'])}, pooled)")
    return out


def fmt_figure(value: Any, unit: Any) -> str:
    """A comparison value: a share as a percentage, a count per organisation with one decimal."""
    if value is None:
        return "—"
    return fmt_share(value) if unit == "share" else fmt_num(value)


def peers_heading(peers: dict) -> str:
    return "Compared with sector peers" if peers["kind"] == "org" else \
        "Compared with the other sectors"


def peers_markdown(view: dict, md, table) -> str:
    """The peer comparison section in Markdown (``md`` escapes text, ``table`` makes a pipe
    table: the renderer's own helpers); "" without one."""
    pr = view.get("peers")
    if not pr:
        return ""
    me = "This organisation" if pr["kind"] == "org" else "This sector"
    out = [f"## {peers_heading(pr)}\n"]
    if pr["withheld"]:
        out.append(f"> {md(pr['reason'] or 'Peer figures are withheld.', 400)}\n")
    else:
        out.append(f"Against the {fmt_int(pr['peer_orgs'])} organisations of "
                   f"{md(pr['group'])}: counts are per organisation, shares are of detected "
                   "events.\n")
    out.append(table(["Figure", me, "Peers"],
                     [[md(c["label"]), fmt_figure(c["value"], c["unit"]),
                       fmt_figure(c["peers"], c["unit"])] for c in pr["comparisons"]],
                     ["l", "r", "r"]) + "\n")
    for key, col, head in (("campaigns", "campaign", "Campaign"), ("cves", "cve", "CVE")):
        if not pr[key]:
            continue
        cols = [head, "Detected events", "Share"]
        cols += [] if pr["withheld"] else ["Peers per org.", "Peers' share", "Peers hit"]
        out.append(table(cols, [
            [md(r[col]), fmt_int(r["detected_events"]), fmt_share(r["share"])]
            + ([] if pr["withheld"] else [fmt_num(r["peers_per_org"]),
                                          fmt_share(r["peers_share"]), fmt_int(r["peers_hit"])])
            for r in pr[key]], ["l"] + ["r"] * (len(cols) - 1)) + "\n")
    if pr["sectors"]:
        out.append(table(["Sector", "Organisations", "Detected events", "Per organisation"],
                         [[md(r["label"]), fmt_int(r["orgs"]), fmt_int(r["detected_events"]),
                           fmt_num(r["per_org"])] for r in pr["sectors"]],
                         ["l", "r", "r", "r"]) + "\n")
    if pr["sectors_withheld"]:
        out.append(f"_{fmt_int(pr['sectors_withheld'])} sector(s) with too few organisations "
                   "are not shown, even pooled._\n")
    return "\n".join(out)
