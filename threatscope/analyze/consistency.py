"""Consistency checks over a metrics document: parts add up, shares and ratios agree.

    problems = check_consistency(metrics)   # [] when consistent

Each part is checked against the total in its own unit: rules add up to ``totals.detections``
(rule matches); sectors add up to, and campaigns, products, CVEs, families and source rows stay
within, ``totals.detected_events`` (detected events); endpoint execution technique shares sum to
100% per window and their counts to ``endpoint.technique_events``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from threatscope.analyze.figures import TOP

EPS = 1e-3  # shares and ratios are rounded to 4 decimals in the document


def _close(a: float, b: float, tol: float = EPS) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


def _change(where: str, c: dict[str, Any]) -> list[str]:
    out = []
    p, b = c.get("period"), c.get("baseline")
    if not isinstance(p, int) or not isinstance(b, int) or p < 0 or b < 0:
        return [f"{where}: period/baseline must be non-negative integers ({p!r}, {b!r})"]
    fold, pct = c.get("fold_change"), c.get("pct_change")
    if b == 0:
        if fold is not None or pct is not None:
            out.append(f"{where}: fold/pct change must be null on a zero baseline")
    else:
        if fold is None or abs(fold - p / b) > 1e-4:
            out.append(f"{where}: fold_change {fold} != {p}/{b}")
        if pct is None or abs(pct - 100 * (p - b) / b) > 0.01:
            out.append(f"{where}: pct_change {pct} != 100*({p}-{b})/{b}")
    expect = (
        ("new" if p else None) if b == 0 else
        "gone" if p == 0 else
        "tiny-baseline" if b < 10 else
        "surging" if p >= 3 * b else None
    )
    if c.get("flag") != expect:
        out.append(f"{where}: flag {c.get('flag')!r}, expected {expect!r}")
    return out


def _shares(where: str, rows: list[dict], count_key: str, total: int | None) -> list[str]:
    out = []
    s = sum(r.get("share") or 0 for r in rows)
    if s > 1 + EPS:
        out.append(f"{where}: shares sum to {s:.4f} > 1")
    if total:
        for r in rows:
            if r.get("share") is not None and not _close(r["share"], r[count_key] / total):
                out.append(f"{where}: share {r['share']} != {r[count_key]}/{total}")
                break
        if sum(r[count_key] for r in rows) > total:
            out.append(f"{where}: counts exceed the total {total}")
    return out


def _sorted(where: str, rows: list[dict], count: str, name: str) -> list[str]:
    keys = [(-(r[count] or 0), str(r[name]) if r[name] is not None else "\uffff") for r in rows]
    return [] if keys == sorted(keys) else [f"{where}: not sorted by {count} desc, then {name}"]


def _endpoint(ep: dict[str, Any], detected: dict[str, Any]) -> list[str]:
    """Execution technique shares sum to 100% in each window, counts add up to the technique
    events, which hold at least the endpoint detected events."""
    out: list[str] = []
    rows, tev, dev = ep["execution_techniques"], ep["technique_events"], ep["detected_events"]
    out += _change("endpoint.technique_events", tev) + _change("endpoint.detected_events", dev)
    for r in rows:
        out += _change(f"endpoint technique {r['technique']}", r)
    out += _sorted("endpoint.execution_techniques", rows, "period", "technique")
    for w, key in (("period", "share"), ("baseline", "baseline_share")):
        total, counted = tev[w], sum(r[w] for r in rows)
        if counted != total:
            out.append(f"endpoint: technique {w} counts sum to {counted}, "
                       f"technique_events.{w} is {total}")
        shares = [r[key] for r in rows]
        if not total:
            if any(x is not None for x in shares):
                out.append(f"endpoint: {key} given without technique events in the {w}")
            continue
        if any(x is None for x in shares) or abs(sum(shares) - 1) > max(EPS, 5e-5 * len(rows)):
            out.append(f"endpoint: {key}s sum to {sum(x or 0 for x in shares):.4f}, not 1")
        bad = [r["technique"] for r in rows
               if r[key] is not None and not _close(r[key], r[w] / total)]
        if bad:
            out.append(f"endpoint: {key} of {bad[0]} != its {w} count / {total}")
        if not dev[w] <= total or any(r[w] > dev[w] for r in rows):
            out.append(f"endpoint: {w} detected events ({dev[w]}) must lie between each "
                       f"technique's count and the technique events ({total})")
        if dev[w] > detected[w]:
            out.append(f"endpoint: more {w} detected events ({dev[w]}) than in totals "
                       f"({detected[w]})")
    for r in rows:
        s, b, pp = r["share"], r["baseline_share"], r["share_change_pp"]
        if (s is None or b is None) != (pp is None) or (
                pp is not None and abs(pp - 100 * (s - b)) > 0.02):
            out.append(f"endpoint technique {r['technique']}: share_change_pp {pp} != "
                       f"100 * ({s} - {b})")
    ps = ep.get("powershell")
    if ps:  # the obfuscated share of PowerShell: a part of its events, their ratio
        out += _change("endpoint.powershell.events", ps["events"])
        out += _change("endpoint.powershell.obfuscated", ps["obfuscated"])
        for w, key in (("period", "obfuscated_share"), ("baseline", "baseline_obfuscated_share")):
            n, k = ps["events"][w], ps["obfuscated"][w]
            if k > n:
                out.append(f"endpoint: more obfuscated PowerShell events than PowerShell "
                           f"events in the {w} ({k} > {n})")
            if (ps[key] is None) != (n == 0) or (n and not _close(ps[key], k / n)):
                out.append(f"endpoint: powershell {key} {ps[key]} != {k} / {n}")
            tech = next((r[w] for r in rows if r["technique"] == "T1059.001"), 0)
            if n != tech:
                out.append(f"endpoint: {w} PowerShell events ({n}) != T1059.001's ({tech})")
            for r in ps.get("families", []):
                if r[w] > n:
                    out.append(f"endpoint: PowerShell family {r['family']} has more {w} events "
                               f"({r[w]}) than PowerShell ({n})")
        for r in ps.get("families", []):
            out += _change(f"endpoint.powershell.families {r['family']}", r)
        out += _sorted("endpoint.powershell.families", ps.get("families", []), "period",
                       "family")
    return out


def _exposure(e: dict[str, Any], events: dict[str, Any]) -> list[str]:
    """Exploit attempts are detected events; 2xx and unusual sizes are some of the attempts."""
    out = []
    for k in ("attempts", "successes", "unusual_size"):
        out += _change(f"exposure {k}", e[k])
    for w in ("period", "baseline"):
        if e["attempts"][w] > events[w]:
            out.append(f"exposure: {w} attempts exceed the detected events")
        for k in ("successes", "unusual_size"):
            if e[k][w] > e["attempts"][w]:
                out.append(f"exposure: {w} {k} exceed the attempts")
    for r in e["rows"]:
        if not 0 < max(r["successes"], r["unusual_size"]) <= r["attempts"]:
            out.append(f"exposure {r['org_id']}/{r['server']}/{r['threat']}: counts disagree")
    return out


def check_consistency(m: dict[str, Any]) -> list[str]:
    """Problems found in metrics document ``m`` (an empty list when it is consistent)."""
    out: list[str] = []
    try:
        totals = m["totals"]
        for k, c in totals.items():
            out += _change(f"totals.{k}", c)
        det = totals["detections"]["period"]
        events = totals.get("detected_events", totals["detections"])["period"]
        if events > det:
            out.append(f"totals: detected events ({events}) exceed rule matches ({det})")
        if det and not events:
            out.append("totals: rule matches without any detected event")
        days = m["period"]["days"]
        d0 = date.fromisoformat(m["period"]["start"])
        for c in m["campaigns"]:
            w = f"campaign {c['campaign']}"
            out += _change(w, c)
            tl = c["timeline"]
            if len(tl) != days:
                out.append(f"{w}: timeline has {len(tl)} days, period has {days}")
            elif tl and date.fromisoformat(tl[0]["day"]) != d0:
                out.append(f"{w}: timeline does not start on the period's first day")
            if sum(x["count"] for x in tl) != c["period"]:
                out.append(f"{w}: timeline sums to {sum(x['count'] for x in tl)}, period count is {c['period']}")
            hit = [x for x in tl if x["count"]]
            onset = hit[0]["day"] if hit else None
            peak = max(hit, key=lambda x: x["count"]) if hit else None  # max keeps the earliest
            if c["onset"] != onset:
                out.append(f"{w}: onset {c['onset']} != first day with detections {onset}")
            if c["peak_day"] != (peak["day"] if peak else None) or c["peak_count"] != (peak["count"] if peak else 0):
                out.append(f"{w}: peak {c['peak_day']}/{c['peak_count']} disagrees with its timeline")
            if c["period"] > events:
                out.append(f"{w}: more events ({c['period']}) than all detected events ({events})")
            out += _shares(f"{w} top_as_orgs", c["top_as_orgs"], "count", c["period"])
            out += _shares(f"{w} top_countries", c["top_countries"], "count", c["period"])
        out += _sorted("campaigns", m["campaigns"], "period", "campaign")
        for section, name in (("products", "product"), ("cves", "cve"), ("families", "family"),
                              ("malware", "family"), ("rules", "rule_id")):
            for r in m[section]:
                out += _change(f"{section} {r[name]}", r)
                if section != "rules" and r["period"] > events:
                    out.append(f"{section} {r[name]}: more events than all detected events")
            out += _sorted(section, m[section], "period", name)
        rule_sum = sum(r["period"] for r in m["rules"])
        if rule_sum != det:
            out.append(f"rules: period counts sum to {rule_sum}, rule matches (totals.detections) "
                       f"are {det}")

        src = m["sources"]
        if src["distinct_ips"] != totals["source_ips"]["period"]:
            out.append("sources: distinct_ips differs from totals.source_ips")
        h = src["hosting_share"]
        if h is not None and not 0 <= h <= 1:
            out.append(f"sources: hosting_share {h} outside 0..1")
        for part in ("top_countries", "top_as_orgs"):
            rows = src[part]
            out += _shares(f"sources {part}", rows, "detected_events", events)
            part_sum = sum(r["detected_events"] for r in rows)
            if len(rows) < TOP and part_sum != events:  # the whole list: it must add up
                out.append(f"sources {part}: detected events sum to {part_sum}, "
                           f"totals.detected_events is {events}")
        # the map's countries: every country, so the known ones' events, and the top ones agree
        countries = {r["country_code"]: r["detected_events"] for r in src.get("countries", [])}
        if sum(countries.values()) > events:
            out.append("sources countries: more detected events than there are")
        for r in src["top_countries"]:
            if r["country_code"] and countries and countries.get(r["country_code"]) != \
                    r["detected_events"]:
                out.append(f"sources countries: {r['country_code']} differs from top_countries")
        dist = src["per_ip_distribution"]
        if src["top_ips"] and dist["max"] != src["top_ips"][0]["detected_events"]:
            out.append("sources: per-IP max differs from the top IP's detected events")
        if not dist["p50"] <= dist["p90"] <= dist["p99"] <= dist["max"]:
            out.append("sources: per-IP percentiles are not increasing")
        if sum(r["detected_events"] for r in src["top_ips"]) > events:
            out.append("sources: top IPs hold more detected events than there are")
        for r in src["top_ips"]:
            if r.get("rule_matches") is not None and r["rule_matches"] < r["detected_events"]:
                out.append(f"sources: IP {r['ip']} has fewer rule matches than detected events")
                break

        if m.get("endpoint") is not None:
            out += _endpoint(m["endpoint"], totals.get("detected_events", totals["detections"]))
        if m.get("exposure") is not None:
            out += _exposure(m["exposure"], totals.get("detected_events", totals["detections"]))

        sectors = m["sectors"]
        for col, total in (("detected_events", events),
                           ("baseline_detected_events",
                            totals.get("detected_events", totals["detections"])["baseline"])):
            sec_sum = sum(s[col] for s in sectors)
            if sec_sum != total:
                out.append(f"sectors: {col} sum to {sec_sum}, expected {total} "
                           "(totals.detected_events)")
        ids = [f["id"] for f in m.get("figures", [])]
        if len(ids) != len(set(ids)):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            out.append(f"figures: ids not unique: {', '.join(dup[:5])}")
        # each event belongs to one organisation: the organisations add up to the total too
        detected = totals.get("detected_events", totals["detections"])
        for w in ("period", "baseline") if m.get("organisations") is not None else ():
            org_sum = sum(o[w] for o in m["organisations"])
            if org_sum != detected[w]:
                out.append(f"organisations: {w} detected events sum to {org_sum}, expected "
                           f"{detected[w]} (totals.detected_events)")
        for s in sectors:
            if s["orgs"] and not _close(s["per_org"], s["detected_events"] / s["orgs"], 1e-2):
                out.append(f"sector {s['sector']}: per_org {s['per_org']} != "
                           f"{s['detected_events']}/{s['orgs']}")
        per = [s["per_org"] if s["per_org"] is not None else -1 for s in sectors]
        if per != sorted(per, reverse=True) or [s["rank"] for s in sectors] != list(range(1, len(sectors) + 1)):
            out.append("sectors: not ranked by detected events per organisation")
        if m.get("inputs", {}).get("orgs") is not None and sum(s["orgs"] for s in sectors) != m["inputs"]["orgs"]:
            out.append("sectors: organisations do not add up to inputs.orgs")
    except (KeyError, TypeError, ValueError) as e:
        out.append(f"malformed metrics document: {type(e).__name__}: {e}")
    return out
