"""Key findings: plain sentences built only from figures already in the metrics document.

Counts in findings are detected events (requests or alerts matched by at least one rule), the
unit of every attack figure; rule matches appear only in the rules table and totals.detections.

    key_findings(metrics)  # [{"id": "surge-iis", "text": "IIS exploitation rose 782-fold ..."}]
"""

from __future__ import annotations

from datetime import date
from typing import Any

PRODUCT_NAMES = {
    "iis": "IIS", "drupal": "Drupal", "weblogic": "WebLogic", "gpon": "GPON",
    "struts": "Apache Struts", "thinkphp": "ThinkPHP", "phpunit": "PHPUnit", "bash": "Shellshock",
    "jenkins": "Jenkins",
}


def product_name(product: str | None) -> str:
    if not product:
        return "Unattributed"
    return PRODUCT_NAMES.get(product, product[:1].upper() + product[1:])


def fmt_fold(f: float) -> str:
    return f"{f:,.0f}" if f >= 10 else f"{f:.1f}"


def fmt_num(v: float) -> str:
    """``7`` for 7.0, ``4.5`` for 4.5: per-organisation rates read as counts where they are."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def fmt_count(n: int) -> str:
    """``2,176``; from a million on, three significant figures: ``1.70 million``."""
    for size, word in ((10**9, "billion"), (10**6, "million")):
        if abs(n) >= size:
            return f"{n / size:#.3g} {word}" if n / size < 100 else f"{n / size:,.0f} {word}"
    return f"{n:,}"


def _n(count: int, noun: str) -> str:
    return f"{fmt_count(count)} {noun}{'s' * (count != 1)}"


def fmt_day(iso: str, year: bool = True) -> str:
    d = date.fromisoformat(iso)
    return f"{d.day} {d.strftime('%B')}" + (f" {d.year}" if year else "")


def fmt_pct(share: float) -> str:
    return f"{round(100 * share)}%"


def _sentence(text: str) -> str:
    """End with one full stop (an AS organisation like "Co.,Ltd." may end with its own)."""
    return text if text.endswith(".") else text + "."


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _over(m: dict) -> str:
    unit = m["period"].get("unit")
    if unit == "quarter":
        return "quarter over quarter"
    if unit == "month":
        return "month over month"
    return f"against the {m['baseline']['days']} days before"


def _relative(days: int) -> str:
    if days == 0:
        return "the day the public exploit appeared"
    if days == 1:
        return "the day after the public exploit"
    if days == -1:
        return "the day before the public exploit"
    if days > 0:
        return f"{days} days after the public exploit"
    return f"{-days} days before the public exploit"


def key_findings(m: dict[str, Any], limit: int = 8) -> list[dict[str, str]]:
    """Up to ``limit`` findings, most important first."""
    out: list[dict[str, str]] = []
    over = _over(m)

    t = m["totals"].get("detected_events") or m["totals"]["detections"]
    ips, orgs = m["totals"]["source_ips"]["period"], m["totals"]["orgs_hit"]["period"]
    if t["period"] or t["baseline"]:
        who = f", from {_n(ips, 'source IP')} against {_n(orgs, 'organisation')}"
        if t["baseline"] == 0:
            text = (f"{_n(t['period'], 'detected event')} in {m['period']['label']}{who}; "
                    f"none in {m['baseline']['label']}")
        else:
            verb = "rose" if t["period"] >= t["baseline"] else "fell"
            text = (f"Detected events {verb} {abs(t['pct_change']):.0f}% {over}, from "
                    f"{fmt_count(t['baseline'])} to {fmt_count(t['period'])}" + (
                        f"; {_n(ips, 'source IP')} attacked {_n(orgs, 'organisation')}"
                        if t["period"] else ""))
        out.append({"id": "totals", "text": _sentence(text)})

    # products that grew at least threefold (new ones too), largest first
    surges = [p for p in m["products"] if p["period"] >= 10 and p["period"] >= 3 * p["baseline"]]
    for p in sorted(surges, key=lambda p: (-p["period"], p["product"]))[:2]:
        name = product_name(p["product"])
        if p["baseline"]:
            text = (f"{name} exploitation rose {fmt_fold(p['fold_change'])}-fold {over}, "
                    f"from {fmt_count(p['baseline'])} to {_n(p['period'], 'detected event')}")
        else:
            text = (f"{name} exploitation appeared: {_n(p['period'], 'detected event')} in "
                    f"{m['period']['label']}, none in {m['baseline']['label']}")
        if p.get("hosting_share") is not None:
            hosts = [a["as_org"] for a in p.get("top_as_orgs", [])
                     if a.get("network_type") == "hosting" and a.get("as_org")][:2]
            text += f"; {fmt_pct(p['hosting_share'])} of it came from hosting networks"
            if hosts and p["hosting_share"] >= 0.5:
                text += f", led by {_and(hosts)}"
        out.append({"id": f"surge-{p['product']}", "text": _sentence(text)})

    # campaigns that started in the period, measured against their public exploit date
    started = [c for c in m["campaigns"] if c["baseline"] == 0 and c["onset"]]
    for c in sorted(started, key=lambda c: (-c["period"], c["campaign"]))[:2]:
        name = product_name(c["product"]) if c["product"] else c["title"]
        cve = f" ({c['cves'][0]})" if c["cves"] else ""
        text = f"{name} exploitation{cve} started on {fmt_day(c['onset'])}"
        if c["days_exploit_to_onset"] is not None and abs(c["days_exploit_to_onset"]) <= 60:
            text += f", {_relative(c['days_exploit_to_onset'])},"
        if c["peak_day"] == c["onset"]:
            text += f" and peaked the same day ({_n(c['peak_count'], 'detected event')})"
        else:
            same_year = c["peak_day"][:4] == c["onset"][:4]
            peak = fmt_day(c["peak_day"], year=not same_year)
            text += f" and peaked on {peak} ({_n(c['peak_count'], 'detected event')})"
        out.append({"id": f"onset-{c['campaign']}", "text": _sentence(text)})

    gone = [c for c in m["campaigns"] if c["flag"] == "gone"]
    for c in sorted(gone, key=lambda c: (-c["baseline"], c["campaign"]))[:1]:
        out.append({"id": f"gone-{c['campaign']}", "text": (
            f"{c['title']} stopped: {_n(c['baseline'], 'detected event')} in {m['baseline']['label']}, "
            f"none in {m['period']['label']}.")})

    ranked = [s for s in m["sectors"] if s["sector"] != "unknown" and s["per_org"]]
    if ranked:
        top = ranked[:2]
        names = _and([s["sector"] for s in top])
        names = names[:1].upper() + names[1:]
        verb = "were" if len(top) > 1 else "was"
        vals = _and([fmt_num(s["per_org"]) for s in top])
        out.append({"id": "sectors", "text": (
            f"{names} {verb} hit hardest per organisation ({vals} detected events per "
            "organisation).")})

    ep = m.get("endpoint") or {}
    techniques = [r for r in ep.get("execution_techniques", []) if r["period"]]
    if techniques:
        def who(r: dict) -> str:
            return f"{r['name']} ({r['technique']})" if r["name"] else r["technique"]

        top, base = techniques[0], ep["technique_events"]["baseline"]
        text = f"On endpoints, {who(top)} was {fmt_pct(top['share'])} of execution techniques"
        if base:
            text += f" ({fmt_pct(top['baseline_share'])} in {m['baseline']['label']})"
        if len(techniques) > 1:
            text += f", {who(techniques[1])} {fmt_pct(techniques[1]['share'])}"
        if not base:
            text += f"; none were detected in {m['baseline']['label']}"
        out.append({"id": "endpoint-execution", "text": _sentence(text)})

    src = m["sources"]
    known = [c for c in src["top_countries"] if c["country_code"]]
    if known and src["distinct_ips"]:
        c = known[0]
        text = (f"{fmt_pct(c['source_ips'] / src['distinct_ips'])} of source IPs were in "
                f"{c['country_name'] or c['country_code']}")
        # "mostly" only when its top AS organisations alone hold most of its addresses
        hosts = [a for a in src.get("country_as_orgs", [])
                 if a["country_code"] == c["country_code"] and a["network_type"] == "hosting"
                 and a["as_org"]]
        if hosts and 2 * sum(a["source_ips"] for a in hosts) > c["source_ips"]:
            text += f", mostly in hosting ranges of {_and([a['as_org'] for a in hosts[:2]])}"
        text += f" ({fmt_pct(c['share'])} of detected events)"
        if src["hosting_share"] is not None:
            text += f"; hosting networks sent {fmt_pct(src['hosting_share'])} of all detected events"
        out.append({"id": "sources", "text": _sentence(text)})
    return out[:limit]
