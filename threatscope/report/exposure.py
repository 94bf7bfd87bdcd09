"""The exposure and recommendations sections: their view, consistency checks and Markdown.

    view["exposure"] = exposure_view(metrics.get("exposure"))   # None when not reported
    view["recommendations"] = recommendations_view(metrics.get("recommendations"))

The HTML of both is ``templates/exposure.html.j2`` and ``templates/recommendations.html.j2``.
Everything shown is a value of report.json: the exposure totals (change objects), its rows and
the recommendations' texts and evidence (figure ids).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

from threatscope.report.rendered import Fig, view_fid
from threatscope.report.text import clean, fmt_flag, fmt_int

EXPOSURE_ROW = ("org_id", "server", "threat_kind", "threat", "product", "attempts",
                "successes", "unusual_size", "source_ips", "first_seen", "last_seen",
                "example_uri", "advice")
CHANGE = ("period", "baseline", "fold_change", "pct_change", "flag")
TOTALS = ("attempts", "successes", "unusual_size")
ROW_LIMIT = 50  # exposure rows shown (HTML and Markdown); the CSV has them all


LONG_TEXT = 1200  # characters of a recommendation shown (the page's default cut is 600)


def long_text(value: object) -> Markup:
    """A long sentence for HTML: made visible and cut like any value, at LONG_TEXT characters,
    then escaped here (the Markup returned passes the page's own cut unchanged)."""
    return escape(clean(value, LONG_TEXT))


def _strs(v: Any) -> list[str]:
    return [str(x) for x in v if x is not None] if isinstance(v, list) else []


def _dicts(v: Any) -> list[dict]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def exposure_view(v: Any) -> dict | None:
    """Totals (change objects or None) and rows with every key; None when not reported."""
    if not isinstance(v, dict):
        return None
    rows = []
    for r in _dicts(v.get("rows")):
        row = {k: r.get(k) for k in EXPOSURE_ROW}
        row["cves"] = _strs(r.get("cves"))
        rows.append(row)
    return {**{k: ({c: v[k].get(c) for c in CHANGE} if isinstance(v.get(k), dict) else None)
               for k in TOTALS}, "rows": rows}


def recommendations_view(v: Any) -> list[dict]:
    """``[{"id", "text", "evidence": [figure id]}]``; empty when not reported."""
    return [{"id": r.get("id"), "text": r.get("text"), "evidence": _strs(r.get("evidence"))}
            for r in _dicts(v)]


def _num(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def exposure_problems(view: dict) -> tuple[list[str], int]:
    """Successes and unusual sizes are at most the attempts, in each row and in total, and the
    rows add up to at most the totals (rows without any success or unusual size are left out)."""
    e = view.get("exposure")
    if not e or not all(e[k] for k in TOTALS):
        return [], 0
    probs, n = [], 0
    total = {k: e[k]["period"] for k in TOTALS}
    for w in ("period", "baseline"):
        a = e["attempts"][w]
        for k in ("successes", "unusual_size"):
            n += 1
            if not (_num(a) and _num(e[k][w])) or e[k][w] > a:
                probs.append(f"{w}: {k} {e[k][w]} > attempts {a}")
    for r in e["rows"]:
        n += 1
        name = f"{r['org_id']}/{r['server']}/{r['threat']}"
        if not all(_num(r[k]) for k in TOTALS):
            probs.append(f"{name}: counts missing")
        elif r["successes"] > r["attempts"] or r["unusual_size"] > r["attempts"]:
            probs.append(f"{name}: more successes or unusual sizes than attempts")
        elif not (r["successes"] or r["unusual_size"]):
            probs.append(f"{name}: listed without a success or an unusual size")
    for k in ("successes", "unusual_size"):
        n += 1
        # a 2xx attempt counts once in the total, once per threat in the rows: per threat kind
        # the rows can exceed the total only where an event has two threats; campaigns have one
        s = sum(r[k] for r in e["rows"] if r["threat_kind"] == "campaign" and _num(r[k]))
        if _num(total[k]) and s > total[k]:
            probs.append(f"{k}: campaign rows sum to {s} > total {total[k]}")
    return probs, n


def markdown_exposure(v: dict, pl: str, bl: str, md: Callable[..., str], table: Callable) -> str:
    """The Markdown exposure section."""
    e = v.get("exposure")
    out = ["## Exposure\n"]
    if e is None:
        return out[0] + "_Not reported in this document._\n"
    out.append(
        "Exploit attempts (detected web requests whose rule names a campaign or CVE) that the "
        "server answered with success (2xx) or with an unusually large response (above both "
        "10× the median and the 99th percentile of the same server's other responses).\n")
    tot = []
    for k, label in (("attempts", "Exploit attempts"), ("successes", "Answered 2xx"),
                     ("unusual_size", "Unusual response size")):
        c = e[k]
        if c:
            fid = f"exposure.{k}"
            tot.append([label, Fig(c["period"], fid), Fig(c["baseline"], fid, "baseline"),
                        Fig(c["pct_change"], fid, "pct"), md(fmt_flag(c["flag"]))])
    if tot:
        out.append(table(["Exposure", pl, bl, "% change", "Flag"], tot,
                         ["l", "r", "r", "r", "l"]) + "\n")
    if not e["rows"]:
        out.append("_No exploit attempt was answered with success or an unusual size._\n")
        return "\n".join(out)
    out.append(table(
        ["Organisation", "Server", "Campaign / CVE", "Product", "Attempts", "2xx",
         "Unusual size", "First seen", "Last seen", "Example URI", "Advice"],
        [[md(r["org_id"]), md(r["server"]), md(r["threat"]), md(r["product"] or "—"),
          Fig(r["attempts"], view_fid(v, "exposure", r)),
          fmt_int(r["successes"]), fmt_int(r["unusual_size"]),
          md(r["first_seen"] or "—"), md(r["last_seen"] or "—"),
          # no code span: its content would be shown without md()'s escaping
          md(r["example_uri"], 120) if r["example_uri"] else "—",
          md(r["advice"] or "—", 600)] for r in e["rows"][:ROW_LIMIT]],
        ["l", "l", "l", "l", "r", "r", "r", "l", "l", "l", "l"]) + "\n")
    if len(e["rows"]) > ROW_LIMIT:
        out.append(f"_… {len(e['rows']) - ROW_LIMIT:,} more rows in report.json and "
                   "tables/exposure.csv._\n")
    return "\n".join(out)


def _more(evidence: list[str]) -> str:
    return f" and {len(evidence) - 2} more in report.json" if len(evidence) > 2 else ""


def markdown_recommendations(v: dict, md: Callable[..., str]) -> str:
    """The Markdown recommendations section: numbered, each with its evidence."""
    recs = v.get("recommendations") or []
    if not recs:
        return "## Recommendations\n\n_No recommendation: nothing seen called for one._\n"
    items = [f"{i}. {md(r['text'], LONG_TEXT)} _(evidence: "
             f"{md(', '.join(r['evidence'][:2]) or '—', 600)}{_more(r['evidence'])})_"
             for i, r in enumerate(recs, 1)]
    return "## Recommendations\n\n" + "\n".join(items) + "\n"
