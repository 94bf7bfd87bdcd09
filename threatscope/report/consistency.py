"""Consistency checks the report runs over the metrics it renders.

    checks = check_view(build_view(metrics))
    [c for c in checks if not c["ok"]]     # each: {"check", "ok", "detail", "problems"}

Each check restates a rule of docs/architecture.md (change = ratio of its counts, shares in 0..1,
execution technique shares sum to 100%, a campaign's timeline adds up to its period count, lines
read = rows + quarantined + comments, source classification shares sum to 100%, infrastructure
shares are counts over the addresses with a host record, which are at most the attacking
addresses). Checks whose figures a document lacks (older documents) are left out.
The methodology section shows the result; a failure means the analysis stage has a bug, and
``write_report`` refuses to write the report (:class:`InconsistentReport`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from threatscope.errors import UserError
from threatscope.report.exposure import exposure_problems

_EPS = 1e-6
SHOWN = 5  # problems an InconsistentReport message lists


class InconsistentReport(UserError):
    """The report failed a consistency check and was not written; ``problems`` lists every
    failure, each starting with the figure it concerns."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"report not written: {n} consistency problem{'s' if n != 1 else ''} "
                 "(a bug in the analysis or the report, not in the data):"]
        lines += [f"  {p}" for p in self.problems[:SHOWN]]
        if n > SHOWN:
            lines.append(f"  … and {n - SHOWN} more")
        super().__init__("\n".join(lines))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-3)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _change_problem(c: dict) -> str | None:
    p, b, fold, pct = c["period"], c["baseline"], c["fold_change"], c["pct_change"]
    if not (_is_num(p) and _is_num(b)):
        return "period/baseline not numbers"
    if b == 0:
        if fold is not None or pct is not None:
            return f"baseline 0 but fold/pct given ({fold}, {pct})"
        return None
    if not _is_num(fold) or not _close(fold, p / b):
        return f"fold_change {fold} != {p}/{b}"
    # the analysis rounds pct_change to 2 decimals (fold_change to 4, within _close)
    if not _is_num(pct) or not math.isclose(pct, 100 * (p - b) / b, rel_tol=1e-4,
                                            abs_tol=0.0051):
        return f"pct_change {pct} != 100*({p}-{b})/{b}"
    return None


def _changes(view: dict) -> Iterable[tuple[str, dict]]:
    for k, c in view["totals"].items():
        if c:
            yield f"totals.{k}", c
    for section, key in (("campaigns", "campaign"), ("products", "product"), ("cves", "cve"),
                         ("families", "family"), ("malware", "family"), ("rules", "rule_id")):
        for row in view[section]:
            yield f"{section}[{row[key]}]", row
    ep = view["endpoint"]
    for k in ("technique_events", "detected_events"):
        if ep[k]:
            yield f"endpoint.{k}", ep[k]
    for row in ep["execution_techniques"]:
        yield f"endpoint.execution_techniques[{row['technique']}]", row
    for row in (ep["powershell"] or {}).get("families", []):
        yield f"endpoint.powershell.families[{row['family']}]", row
    for row in view["sources"]["classification"]:
        yield f"sources.classification[{row['classification']}]", row
    infra = view["infrastructure"] or {}
    for k in ("source_ips", "with_host_record"):
        if infra.get(k):
            yield f"infrastructure.{k}", infra[k]
    for section, key in _INFRA_LISTS:
        for row in infra.get(section, []):
            yield f"infrastructure.{section}[{row[key]}]", row
    for row in (view["indicators"] or {}).get("listed_sources", []):
        yield f"indicators.listed_sources[{row['feed']}]", row


# infrastructure lists with change columns, each row one kind of address
_INFRA_LISTS = (("os_families", "os_family"), ("host_kinds", "host_kind"),
                ("service_classes", "service_class"), ("products", "product"))


def _infra_checks(view: dict) -> tuple[list[str], int, list[str], int]:
    """Shares = count / addresses with a host record; OS families and host kinds (one per
    address) count at most those addresses, which are at most the attacking addresses."""
    infra = view["infrastructure"]
    if not infra:
        return [], 0, [], 0
    known, ips = infra["with_host_record"], infra["source_ips"]
    share_probs, n_share = [], 0
    rows = [(f"{s}[{r[k]}]", r, "period", "baseline") for s, k in _INFRA_LISTS
            for r in infra[s]]
    rows += [(f"{s}[{r[k]}]", r, "source_ips", None)
             for s, k in (("as_orgs", "as_org"), ("countries", "country_code")) for r in infra[s]]
    for name, r, pk, bk in rows:
        for count_key, share_key, w in ((pk, "share", "period"), (bk, "baseline_share",
                                                                   "baseline")):
            if count_key is None or share_key not in r:
                continue
            share, count = r[share_key], r[count_key]
            total = known[w] if known else None
            if share is None and not (_is_num(total) and total):
                continue  # no host record in that window: no share
            n_share += 1
            if not (_is_num(share) and _is_num(count) and _is_num(total) and total):
                share_probs.append(f"infrastructure.{name}: {share_key} {share} without "
                                   f"a count over host records")
            elif not _close(share, count / total):
                share_probs.append(f"infrastructure.{name}: {share_key} {share} != "
                                   f"{count}/{total}")
    cov = infra["coverage"]
    if _is_num(cov) and known and ips and _is_num(known["period"]) and _is_num(ips["period"]):
        n_share += 1
        if ips["period"] and not _close(cov, known["period"] / ips["period"]):
            share_probs.append(f"infrastructure.coverage {cov} != "
                               f"{known['period']}/{ips['period']}")
    count_probs, n_count = [], 0
    for w in ("period", "baseline"):
        k = known[w] if known else None
        if not _is_num(k):
            continue
        n_count += 1
        if ips and _is_num(ips[w]) and k > ips[w]:
            count_probs.append(f"{w}: {k} addresses with a host record > {ips[w]} attacking")
        for s in ("os_families", "host_kinds"):
            counts = [r[w] for r in infra[s] if _is_num(r[w])]
            if sum(counts) > k:
                count_probs.append(f"{w}: {s} count {sum(counts)} > {k} with a host record")
    return share_probs, n_share, count_probs, n_count


def check_view(view: dict) -> list[dict]:
    """Run every check that the data present allows; returns one dict per check."""
    out: list[dict] = []

    def add(name: str, problems: list[str], n: int) -> None:
        if n:
            detail = "; ".join(problems[:5]) + (" …" if len(problems) > 5 else "")
            out.append({"check": name, "ok": not problems,
                        "detail": detail if problems else f"{n} checked",
                        "problems": list(problems)})

    changes = list(_changes(view))
    probs = [f"{name}: {p}" for name, c in changes if (p := _change_problem(c))]
    add("fold and percent changes equal the ratio of their counts", probs, len(changes))

    shares, probs = 0, []
    lists = [("sources.top_countries", view["sources"]["top_countries"]),
             ("sources.top_as_orgs", view["sources"]["top_as_orgs"])]
    lists += [(f"campaigns[{c['campaign']}].{k}", c[k]) for c in view["campaigns"]
              for k in ("top_as_orgs", "top_countries")]
    for name, rows in lists:
        vals = [r["share"] for r in rows if _is_num(r["share"])]
        shares += len(vals)
        if any(not 0 <= v <= 1 + _EPS for v in vals):
            probs.append(f"{name}: share outside 0..1")
        elif sum(vals) > 1 + 1e-3:
            probs.append(f"{name}: shares sum to {sum(vals):.3f}")
    # lists whose shares need not sum to 100%: an address runs services of several classes
    infra = view["infrastructure"] or {}
    bounded = [(f"infrastructure.{k}", infra.get(k, []))
               for k in ("os_families", "host_kinds", "service_classes", "products", "as_orgs",
                         "countries")]
    bounded.append(("sources.classification", view["sources"]["classification"]))
    for name, rows in bounded:
        vals = [r[k] for r in rows for k in ("share", "baseline_share")
                if _is_num(r.get(k))]
        shares += len(vals)
        if any(not 0 <= v <= 1 + _EPS for v in vals):
            probs.append(f"{name}: share outside 0..1")
    for name, hs in (("sources.hosting_share", view["sources"]["hosting_share"]),
                     ("sources.noise_share", view["sources"]["noise_share"]),
                     ("infrastructure.coverage", infra.get("coverage"))):
        if _is_num(hs):
            shares += 1
            if not 0 <= hs <= 1 + _EPS:
                probs.append(f"{name} {hs} outside 0..1")
    add("shares lie in 0..1 and sum to at most 100%", probs, shares)

    probs, n = [], 0
    for c in view["campaigns"]:
        counts = [t["count"] for t in c["timeline"] if _is_num(t["count"])]
        if not counts:
            continue
        n += 1
        if _is_num(c["period"]) and sum(counts) != c["period"]:
            probs.append(f"{c['campaign']}: timeline sums to {sum(counts)}, period {c['period']}")
        if _is_num(c["peak_count"]) and max(counts) != c["peak_count"]:
            probs.append(f"{c['campaign']}: peak_count {c['peak_count']} != max {max(counts)}")
        days = view["period"]["days"]
        if _is_num(days) and len(c["timeline"]) != days:
            probs.append(f"{c['campaign']}: {len(c['timeline'])} timeline days, period {days}")
    add("campaign timelines cover the period and add up to its count", probs, n)

    probs, n = [], 0
    ep = view["endpoint"]
    rows, totals = ep["execution_techniques"], ep["technique_events"]
    for w, key in (("period", "share"), ("baseline", "baseline_share")):
        total = totals[w] if totals else None
        counts = [r[w] for r in rows]
        if not rows or not _is_num(total) or not all(_is_num(c) for c in counts):
            continue
        n += 1
        if sum(counts) != total:
            probs.append(f"{w}: technique counts sum to {sum(counts)}, technique events {total}")
        shares = [r[key] for r in rows if _is_num(r[key])]
        if total and (len(shares) != len(rows) or not _close(sum(shares), 1.0)):
            probs.append(f"{w}: shares sum to {sum(shares):.4f}")
    add("execution technique shares sum to 100% and their counts to the technique events",
        probs, n)

    probs, n = [], 0
    rows = view["sources"]["classification"]
    for w, key in (("period", "share"), ("baseline", "baseline_share")):
        vals = [r[key] for r in rows if _is_num(r[key])]
        if not any(_is_num(r[w]) and r[w] for r in rows):
            continue  # nothing classified in that window: no shares to add up
        n += 1
        if len(vals) != len(rows) or not _close(sum(vals), 1.0):
            probs.append(f"{w}: classification shares sum to {sum(vals):.4f}")
        total = sum(r[w] for r in rows if _is_num(r[w]))
        for r in rows:
            if _is_num(r[w]) and _is_num(r[key]) and not _close(r[key], r[w] / total):
                probs.append(f"{w}: {r['classification']} share {r[key]} != {r[w]}/{total}")
    noise = view["sources"]["noise_share"]
    total = sum(r["period"] for r in rows if _is_num(r["period"]))
    if _is_num(noise) and total:
        n += 1
        quiet = sum(r["period"] for r in rows if r["noise"] and _is_num(r["period"]))
        if not _close(noise, quiet / total):
            probs.append(f"noise_share {noise} != {quiet}/{total}")
    add("source classification shares sum to 100% and the noise share to its classes", probs, n)

    share_probs, n_share, count_probs, n_count = _infra_checks(view)
    add("infrastructure shares = addresses ÷ addresses with a host record", share_probs, n_share)
    add("OS families and host kinds count at most the addresses with a host record, "
        "which are at most the attacking addresses", count_probs, n_count)

    probs, n = exposure_problems(view)
    add("exposure: successes and unusual sizes are at most the attempts", probs, n)

    i = view["inputs"]
    parts = [i["rows_written"], i["rows_quarantined"], i["comment_lines"] or 0]
    if _is_num(i["lines_read"]) and all(_is_num(p) for p in parts):
        ok = i["lines_read"] == sum(parts)
        add("lines read = rows written + quarantined + comment lines",
            [] if ok else [f"{i['lines_read']} != {' + '.join(str(p) for p in parts)}"], 1)
    return out
