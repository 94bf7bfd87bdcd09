"""The analyze stage: a period against its baseline, as the report.json metrics document.

    ws = Workspace.open("threatscope-ws")
    metrics = analyze(ws, Period.parse("2018Q2"))    # or analyze(ws): latest quarter
    metrics["campaigns"][0]["fold_change"], metrics["consistency"]["ok"]

Every figure is evaluated from a definition in :mod:`threatscope.analyze.figures`; this module
only shapes the results into the document of docs/architecture.md ("report.json").

Units: ``totals.detections`` and ``rules`` count rule matches (detection rows: one event matched
by one rule); ``totals.detected_events`` and everything else about attacks (campaigns, products,
CVEs, families, sources, sectors) count detected events (requests or alerts matched by at least
one rule); ``totals.events`` counts every ingested event. Source and sector rows name their count
``detected_events``. Endpoint execution techniques count technique events (an endpoint detected
event once per ATT&CK execution technique its rules named).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb

import threatscope
from threatscope import attack
from threatscope.analyze import figures as F
from threatscope.analyze import peers
from threatscope.analyze.caveats import caveats
from threatscope.analyze.consistency import check_consistency
from threatscope.analyze.exposure import exposure_section
from threatscope.analyze.findings import key_findings
from threatscope.analyze.knowledge import campaign_info, cve_info
from threatscope.analyze.period import Period
from threatscope.analyze.recommend import recommendations
from threatscope.analyze.scope import Scope, resolve_scope
from threatscope.enrich import classify
from threatscope.errors import UserError
from threatscope.spark import check_engine
from threatscope.workspace import Workspace, relations

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMA_VERSION = 1
TINY_BASELINE = 10  # 0 < baseline < 10: a fold change over it is flagged
SURGE_FOLD = 3


def change(period: int | None, baseline: int | None) -> dict[str, Any]:
    """The change object of two counts.

    >>> change(4692, 6)["fold_change"], change(4692, 6)["flag"]
    (782.0, 'tiny-baseline')
    """
    p, b = int(period or 0), int(baseline or 0)
    fold = round(p / b, 4) if b else None
    pct = round(100 * (p - b) / b, 2) if b else None
    if b == 0:
        flag = "new" if p > 0 else None
    elif p == 0:
        flag = "gone"
    elif b < TINY_BASELINE:
        flag = "tiny-baseline"
    elif p >= SURGE_FOLD * b:
        flag = "surging"
    else:
        flag = None
    return {"period": p, "baseline": b, "fold_change": fold, "pct_change": pct, "flag": flag}


def parse_period(spec: str, ws: Workspace | None = None) -> Period:
    """``2018Q2``, ``2018-05`` or ``2018-04-01..2018-06-30`` as a :class:`Period` (``ws`` is
    accepted for symmetry with the CLI and not needed)."""
    return Period.parse(spec)


def latest_day(con: duckdb.DuckDBPyConnection) -> date | None:
    """The last day with detections, else the last day with events, else None."""
    if "detection" in relations(con):
        d = con.execute("SELECT CAST(max(ts) AS DATE) FROM detection").fetchall()[0][0]
        if d is not None:
            return d
    d = con.execute(
        "SELECT max(d) FROM (SELECT max(event_date) AS d FROM http "
        "UNION ALL SELECT max(event_date) FROM alert)"
    ).fetchall()[0][0]
    return d


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date | datetime) else v


def _period_dict(p: Period) -> dict[str, Any]:
    last = p.end - timedelta(days=1)
    return {"label": p.label, "start": p.start.isoformat(), "end": last.isoformat(),
            "days": p.days, "unit": p.unit}


def _rules_summary(con: duckdb.DuckDBPyConnection
                   ) -> tuple[int | None, int | None, list[dict]]:
    """rules_loaded, rules_failed and rule_sets (name, version, files, rules, failed) of the
    last detect run, from run_history when recorded."""
    rows = con.execute(
        "SELECT summary FROM run_history WHERE stage = 'detect' "
        "ORDER BY finished_at DESC NULLS LAST, started_at DESC NULLS LAST LIMIT 1"
    ).fetchall()
    row = rows[0] if rows else None
    if not row or not row[0]:
        return None, None, []
    try:
        s = json.loads(row[0])
    except (TypeError, ValueError):
        return None, None, []

    def n(v: Any) -> int | None:
        return len(v) if isinstance(v, list) else (int(v) if isinstance(v, int | float) else None)

    sets = [{k: r.get(k) for k in ("name", "version", "files", "rules", "failed")}
            for r in s.get("rule_sets") or [] if isinstance(r, dict)]
    return n(s.get("rules_loaded")), n(s.get("rules_failed")), sets


def _ranked(rows: list[dict]) -> list[dict]:
    """Rows with ``rank`` in the period and ``baseline_rank`` (1 = the most detected events;
    ties share a rank; None where a window has none) and ``rank_change`` (places moved up,
    None when either rank is), most detected first, ties by name (as every ranked table)."""
    def ranks(key: str) -> dict[str, int]:
        counts = sorted({r[key] for r in rows if r[key]}, reverse=True)
        place = {c: 1 + sum(1 for r in rows if r[key] > c) for c in counts}
        return {r["family"]: place[r[key]] for r in rows if r[key]}

    now, before = ranks("period"), ranks("baseline")
    out = [{**r, "rank": now.get(r["family"]), "baseline_rank": before.get(r["family"]),
            "rank_change": (before[r["family"]] - now[r["family"]]
                            if r["family"] in now and r["family"] in before else None)}
           for r in rows]
    return sorted(out, key=lambda r: (-r["period"], r["family"]))


def _share(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)


def _infrastructure(ev, record) -> dict[str, Any]:
    """What the attacking addresses are (their host records): counts of addresses, each with
    its share of the addresses that have a host record (an address runs services of several
    classes, so those shares need not sum to 100%)."""
    out: dict[str, Any] = {}
    for name in ("source_ips", "with_host_record"):
        row = ev(f"infrastructure.{name}")[0]
        out[name] = change(row["period"], row["baseline"])
        record(f"infrastructure.{name}", row)
    known, known_b = out["with_host_record"]["period"], out["with_host_record"]["baseline"]
    ips = out["source_ips"]["period"]
    out["coverage"] = _share(known / ips) if ips else None

    def rows(fid: str, key: str, keep: bool = True) -> list[dict[str, Any]]:
        got = ev(f"infrastructure.{fid}")
        if keep:
            for r in got:
                record(f"infrastructure.{fid}", r, (key,))
        return [{key: r[key], **change(r["period"], r["baseline"]),
                 "share": _share(r["period"] / known) if known else None,
                 "baseline_share": _share(r["baseline"] / known_b) if known_b else None}
                for r in got]

    out["os_families"] = rows("os_families", "os_family")
    out["host_kinds"] = rows("host_kinds", "host_kind")
    out["service_classes"] = rows("service_classes", "service_class")
    services: dict[str, list] = {}
    for r in ev("infrastructure.services"):
        services.setdefault(r["service_class"], []).append(
            {"service": r["service"], "source_ips": r["period"],
             "baseline_source_ips": r["baseline"]})
    for c in out["service_classes"]:
        c["services"] = services.get(c["service_class"], [])
    out["products"] = rows("products", "product", keep=False)
    for key, fid in (("as_orgs", "as_orgs"), ("countries", "countries")):
        out[key] = [{**{k: r[k] for k in ("as_org", "asn", "network_type", "country_code")
                        if k in r},
                     "source_ips": r["period"], "share": _share(r["period"] / known) if known
                     else None,
                     **{k: r[k] for k in ("windows", "compromised_servers", "home_routers",
                                          "cloud_instances")}}
                    for r in ev(f"infrastructure.{fid}")]
    return out


def _indicators(ev, record) -> dict[str, Any]:
    """IOC list matches of attacking addresses (per list) and of payload indicators, and the
    indicators seen in the period (the report's appendix; the whole list: export stix|misp)."""
    listed = []
    for r in ev("indicators.listed_sources"):
        listed.append({"feed": r["feed"], **change(r["period"], r["baseline"]),
                       "source_ips": r["source_ips"] or 0,
                       "malware_families": list(r["malware_families"] or []),
                       "first_seen": _iso(r["first_seen"]), "last_seen": _iso(r["last_seen"])})
        record("indicators.listed_sources", r, ("feed",))

    def ind(r: dict) -> dict[str, Any]:
        return {"role": r.get("role", "payload"), "indicator_type": r["indicator_type"],
                "value": r["value"], "sightings": int(r["period"] or 0),
                **{k: (list(r[k]) if isinstance(r[k], list) else _iso(r[k]))
                   for k in ("campaigns", "cves", "malware_families", "ioc_feeds",
                             "first_seen", "last_seen")},
                "orgs": r["orgs"], "country_code": r["country_code"], "as_org": r["as_org"],
                "classification": r["classification"]}

    counts = {r["role"]: r["period"] for r in ev("indicators.count")}
    return {"listed_sources": listed,
            "payload_matches": [ind(r) for r in ev("indicators.payload_matches")],
            "appendix": [ind(r) for r in ev("indicators.appendix")],
            "counts": {"attacker": counts.get("attacker", 0),
                       "payload": counts.get("payload", 0)}}


def analyze(ws: Workspace, period: Period | None = None, org: str | None = None,
            sector: str | None = None, engine: str = "duckdb",
            spark: SparkSession | None = None) -> dict[str, Any]:
    """The metrics document of ``period`` (default: the latest quarter with detections, or with
    events when nothing was detected) against the period just before it; for every
    organisation, or only for organisation ``org`` or sector ``sector`` (analyze/scope.py:
    every figure counts its organisations, and ``peers`` compares them with the others).

    ``engine="spark"`` evaluates the same SQL on Spark (analyze/spark.py) over the workspace's
    Spark views, in ``spark`` (default: :func:`threatscope.spark.session`); the document is the
    one DuckDB makes::

        analyze(ws, Period.parse("2018Q2"), engine="spark", spark=spark.session("local[4]"))
    """
    check_engine(engine)
    if engine == "spark":
        from threatscope.analyze.spark import SparkConnection
        from threatscope.spark import session

        connect = SparkConnection(spark if spark is not None else session(), ws)
    else:
        connect = ws.connect()
    with connect as con:
        scope = resolve_scope(con, org, sector)
        latest = latest_day(con)
        if latest is None:
            raise UserError(
                f"workspace {ws.root} has no events or detections: run `threatscope ingest` first"
            )
        if period is None:
            period = Period.containing(latest, "quarter")
        base = period.baseline()
        have = F.prepare(con, base.start, period.end, period.start, scope.org_ids)
        return document(con, ws, period, base, have, scope)


def document(con: Any, ws: Workspace, period: Period, base: Period, have: dict[str, bool],
             scope: Scope) -> dict[str, Any]:
    """The metrics document from a connection prepared (figures.prepare) for ``period`` and
    ``base`` (what :func:`analyze` returns; the dashboard calls it on its snapshot)."""
    with F.ahead(con, period, base) as ready:
        doc = _build(con, ws, period, base, have, ready)
    _add_scope(doc, con, scope, period, have)
    doc["key_findings"] = peers.scoped_findings(key_findings(doc), doc)
    doc["notes"] = [*doc.get("notes", []), *caveats(doc)]
    doc["recommendations"] = recommendations(doc)
    problems = check_consistency(doc)
    doc["consistency"] = {"ok": not problems, "problems": problems}
    return doc


def _add_scope(doc: dict[str, Any], con: duckdb.DuckDBPyConnection, scope: Scope,
               period: Period, have: dict) -> None:
    """The audience of the document, and for one organisation or sector its peer comparison."""
    doc["scope"] = scope.as_dict()
    if scope.kind == "all":
        return
    doc["peers"] = peers.compare(con, scope, period, have["source"])
    if doc["totals"]["events"]["period"] == 0 and doc["totals"]["detections"]["period"] == 0:
        doc["notes"].append(f"{scope.label} has no events in {period.label}")


def _build(
    con: duckdb.DuckDBPyConnection, ws: Workspace, period: Period, base: Period, have: dict,
    ready: dict[str, Any],
) -> dict[str, Any]:
    def ev(fid: str) -> list[dict[str, Any]]:
        if fid in ready:  # evaluated ahead (F.ahead)
            return ready[fid].result()
        return F.evaluate(con, F.FIGURES[fid], period, base)

    notes: list[str] = []
    if not have["detection"]:
        notes.append("no detections table: run `threatscope detect` to detect attacks")
    if not have["source"]:
        notes.append(
            "no source table: countries, AS organisations and hosting share are unknown "
            "(run `threatscope enrich`)"
        )
    figs: list[dict[str, Any]] = []

    def record(fid: str, row: dict[str, Any], key: tuple[str, ...] = ()) -> None:
        k = {c: _iso(row[c]) for c in key}
        figs.append({"id": F.figure_id(fid, k), "figure": fid, **({"key": k} if k else {}),
                     "value": row["period"], "baseline": row["baseline"]})

    # -- totals -------------------------------------------------------------------------
    totals: dict[str, Any] = {}
    for name in ("events", "detections", "detected_events", "source_ips", "orgs_hit"):
        row = ev(f"totals.{name}")[0]
        totals[name] = change(row["period"], row["baseline"])
        record(f"totals.{name}", row)
    if totals["detections"]["period"] == 0:
        notes.append(f"no detections in {period.label}")

    # -- inputs -------------------------------------------------------------------------
    man = ev("inputs.manifest")[0]
    loaded, failed, rule_sets = _rules_summary(con)
    inputs = {
        "files": man["period"] or 0,
        **{k: int(man[k] or 0) for k in ("lines_read", "rows_written", "rows_quarantined",
                                          "comment_lines")},
        "quarantine_reasons": [{"reason": r["reason"], "count": r["period"]}
                               for r in ev("inputs.quarantine_reasons")],
        "formats": [{"format": r["format"], "files": r["period"], "rows": int(r["rows"] or 0)}
                    for r in ev("inputs.formats")],
        "orgs": ev("inputs.orgs")[0]["period"],
        "rules_loaded": loaded,
        "rules_failed": failed,
        "rule_sets": rule_sets,
    }

    # -- campaigns ----------------------------------------------------------------------
    meta = {r["campaign"]: r for r in ev("campaigns.meta")}
    daily: dict[str, dict[date, int]] = {}
    for r in ev("campaigns.timeline"):
        daily.setdefault(r["campaign"], {})[r["day"]] = r["period"]
        record("campaigns.timeline", r, ("campaign", "day"))
    as_orgs: dict[str, list] = {}
    for r in ev("campaigns.as_orgs"):
        as_orgs.setdefault(r["campaign"], []).append(
            {"as_org": r["as_org"], "asn": r["asn"], "count": r["period"], "share": _share(r["share"])})
    countries: dict[str, list] = {}
    for r in ev("campaigns.countries"):
        countries.setdefault(r["campaign"], []).append(
            {"country_code": r["country_code"], "count": r["period"], "share": _share(r["share"])})
    days = [period.start + timedelta(days=i) for i in range(period.days)]
    campaigns = []
    for r in ev("campaigns"):
        key = r["campaign"]
        kb, m = campaign_info(key), meta.get(key, {})
        counts = daily.get(key, {})
        hit = [d for d in days if counts.get(d)]
        peak = max(hit, key=lambda d: (counts[d], -d.toordinal())) if hit else None
        cves = sorted(set(m.get("cves") or []) | set(kb["cves"]))
        exploits = [x for c in cves if (x := cve_info(c)["public_exploit"])]
        exploit = min(exploits) if exploits else kb["public_exploit_date"]
        onset = hit[0] if hit else None
        campaigns.append({
            "campaign": key,
            "title": kb["title"] or m.get("title") or key,
            "product": kb["product"] or m.get("product"),
            "cves": cves,
            "techniques": list(m.get("techniques") or []),
            **change(r["period"], r["baseline"]),
            "onset": _iso(onset),
            "peak_day": _iso(peak),
            "peak_count": counts[peak] if peak else 0,
            "last_day": _iso(hit[-1]) if hit else None,
            "timeline": [{"day": d.isoformat(), "count": counts.get(d, 0)} for d in days],
            "source_ips": r["source_ips"] or 0,
            "hosting_share": _share(r["hosting_share"]) if have["source"] else None,
            "top_as_orgs": as_orgs.get(key, []),
            "top_countries": countries.get(key, []),
            "public_exploit_date": _iso(exploit),
            "days_exploit_to_onset": (onset - exploit).days if onset and exploit else None,
        })
        record("campaigns", r, ("campaign",))

    # -- products, CVEs, families, rules -----------------------------------------------
    prod_as: dict[str, list] = {}
    for r in ev("products.as_orgs"):
        prod_as.setdefault(r["product"], []).append(
            {"as_org": r["as_org"], "asn": r["asn"], "network_type": r["network_type"],
             "count": r["period"], "share": _share(r["share"])})
    products = []
    for r in ev("products"):
        products.append({"product": r["product"], **change(r["period"], r["baseline"]),
                         "source_ips": r["source_ips"] or 0,
                         "hosting_share": _share(r["hosting_share"]) if have["source"] else None,
                         "top_as_orgs": prod_as.get(r["product"], [])})
        record("products", r, ("product",))
    cves_l = []
    for r in ev("cves"):
        info = cve_info(r["cve"])
        cves_l.append({"cve": r["cve"], **change(r["period"], r["baseline"]),
                       "product": r["product"], "first_seen": _iso(r["first_seen"]),
                       "last_seen": _iso(r["last_seen"]),
                       "published": _iso(info["published"]),
                       "public_exploit_date": _iso(info["public_exploit"])})
        record("cves", r, ("cve",))
    families = []
    for r in ev("families"):
        families.append({"family": r["family"], **change(r["period"], r["baseline"])})
        record("families", r, ("family",))
    malware = []
    for r in ev("malware"):
        malware.append({"family": r["malware_family"], **change(r["period"], r["baseline"])})
        record("malware", r, ("malware_family",))
    malware = _ranked(malware)
    rules = []
    for r in ev("rules"):
        rules.append({"rule_id": r["rule_id"], "title": r["title"], "level": r["severity"],
                      **change(r["period"], r["baseline"])})
        record("rules", r, ("rule_id", "severity"))  # a native analyzer's rule has levels

    # -- sources ------------------------------------------------------------------------
    hosting = ev("sources.hosting_share")[0]["period"]
    # (a key names one group: unknown ASNs are grouped by network type too)
    for fid, key in (("sources.countries", ("country_code",)),
                     ("sources.as_orgs", ("asn", "network_type")),
                     ("sources.ips", ("src_ip",))):
        for r in ev(fid):
            record(fid, r, key)
    dist = ev("sources.per_ip")[0]
    sources = {
        "distinct_ips": totals["source_ips"]["period"],
        "hosting_share": _share(hosting) if have["source"] and hosting is not None else None,
        "top_countries": [
            {"country_code": r["country_code"], "country_name": r["country_name"],
             "detected_events": r["period"], "source_ips": r["source_ips"],
             "share": _share(r["share"])}
            for r in ev("sources.countries")],
        "top_as_orgs": [
            {"asn": r["asn"], "as_org": r["as_org"], "network_type": r["network_type"],
             "detected_events": r["period"], "source_ips": r["source_ips"],
             "share": _share(r["share"])}
            for r in ev("sources.as_orgs")],
        "countries": [
            {"country_code": r["country_code"], "country_name": r["country_name"],
             "detected_events": r["period"], "source_ips": r["source_ips"]}
            for r in ev("sources.country_map") if r["period"]],
        "country_as_orgs": [
            {"country_code": r["country_code"], "asn": r["asn"], "as_org": r["as_org"],
             "network_type": r["network_type"], "detected_events": r["period"],
             "source_ips": r["source_ips"], "share": _share(r["share"])}
            for r in ev("sources.country_as_orgs")],
        "top_ips": [
            {"ip": r["src_ip"], "country_code": r["country_code"], "as_org": r["as_org"],
             "network_type": r["network_type"], "detected_events": r["period"],
             "rule_matches": r["rule_matches"], "rules": r["rules"],
             "campaigns": list(r["campaigns"] or []), "first_seen": _iso(r["first_seen"]),
             "last_seen": _iso(r["last_seen"])}
            for r in ev("sources.ips")],
        "per_ip_distribution": {
            k: (round(float(dist[k]), 2) if dist[k] is not None else 0)
            for k in ("p50", "p90", "p99")} | {"max": int(dist["max"] or 0)},
    }

    noise = set(classify.NOISE)
    cls_rows = ev("sources.classification")
    sources["classification"] = [
        {"classification": r["classification"], "noise": r["classification"] in noise,
         **change(r["period"], r["baseline"]), "source_ips": r["source_ips"] or 0,
         "share": _share(r["share"]), "baseline_share": _share(r["baseline_share"])}
        for r in cls_rows]
    for r in cls_rows:
        record("sources.classification", r, ("classification",))
    classified = sum(r["period"] for r in cls_rows)
    noise_events = sum(r["period"] for r in cls_rows if r["classification"] in noise)
    sources["noise_share"] = _share(noise_events / classified) if classified else None
    sources["targeted"] = [
        {"ip": r["src_ip"], "country_code": r["country_code"], "as_org": r["as_org"],
         "network_type": r["network_type"], "detected_events": r["period"],
         "orgs_hit": r["orgs_hit"], "campaigns": list(r["campaigns"] or []),
         "first_seen": _iso(r["first_seen"]), "last_seen": _iso(r["last_seen"])}
        for r in ev("sources.targeted")]
    infrastructure = _infrastructure(ev, record)
    indicators = _indicators(ev, record)

    # -- sectors and organisations ------------------------------------------------------
    det_by = {r["sector"]: r for r in ev("sectors.events")}
    for r in det_by.values():
        record("sectors.events", r, ("sector",))
    organisations = []
    for r in ev("orgs.events"):
        organisations.append({"org_id": r["org_id"], "sector": r["sector"],
                              **change(r["period"], r["baseline"])})
        record("orgs.events", r, ("org_id",))
    sectors = []
    org_rows = {r["sector"]: r for r in ev("sectors.orgs")}
    for name in sorted(set(org_rows) | set(det_by)):
        n_orgs = org_rows[name]["period"] if name in org_rows else 0
        sensors = org_rows[name]["sensors"] if name in org_rows else None
        d = det_by.get(name, {"period": 0, "baseline": 0})
        sectors.append({
            "sector": name, "orgs": n_orgs,
            "sensors": int(sensors) if sensors is not None else None,
            "detected_events": d["period"], "baseline_detected_events": d["baseline"],
            "per_org": round(d["period"] / n_orgs, 2) if n_orgs else None,
            "per_sensor": round(d["period"] / sensors, 2) if sensors else None,
            "baseline_per_org": round(d["baseline"] / n_orgs, 2) if n_orgs else None,
        })
    sectors.sort(key=lambda s: (s["per_org"] is None, -(s["per_org"] or 0), s["sector"]))
    for i, s in enumerate(sectors, start=1):
        s["rank"] = i

    # -- endpoint: execution techniques ----------------------------------------------------
    techniques = []
    for r in ev("endpoint.execution_techniques"):
        share, base_share = r["share"], r["baseline_share"]
        techniques.append({
            "technique": r["technique"], "name": r["technique_name"], "parent": r["parent_name"],
            **change(r["period"], r["baseline"]),
            "share": _share(share), "baseline_share": _share(base_share),
            # NULL when either window has no technique events: no share to compare
            "share_change_pp": (round(100 * (share - base_share), 2)
                                if share is not None and base_share is not None else None),
        })
        record("endpoint.execution_techniques", r, ("technique",))
    endpoint: dict[str, Any] = {"execution_techniques": techniques}
    for name in ("technique_events", "detected_events"):
        row = ev(f"endpoint.{name}")[0]
        endpoint[name] = change(row["period"], row["baseline"])
        record(f"endpoint.{name}", row)
    # the obfuscated share of PowerShell (its events: those counted as T1059.001)
    ps, obf = ev("endpoint.powershell_events")[0], ev("endpoint.powershell_obfuscated")[0]
    record("endpoint.powershell_events", ps)
    record("endpoint.powershell_obfuscated", obf)
    p_share = obf["period"] / ps["period"] if ps["period"] else None
    b_share = obf["baseline"] / ps["baseline"] if ps["baseline"] else None
    endpoint["powershell"] = {
        "events": change(ps["period"], ps["baseline"]),
        "obfuscated": change(obf["period"], obf["baseline"]),
        "obfuscated_share": _share(p_share), "baseline_obfuscated_share": _share(b_share),
        "share_change_pp": (round(100 * (p_share - b_share), 2)
                            if p_share is not None and b_share is not None else None),
        # families named in PowerShell events, ranked (an event may name more than one)
        "families": _ranked([{"family": r["family"], **change(r["period"], r["baseline"])}
                             for r in ev("endpoint.powershell_families")]),
    }

    # ATT&CK names of every technique id the document mentions (renderers label ids with it)
    tags = {t for c in campaigns for t in c["techniques"]} | {t["technique"] for t in techniques}
    attack_doc = {"source": attack.source(),
                  "techniques": {t: attack.technique(t) for t in sorted(tags)}}

    exposure = exposure_section(ev, change, record, _iso)

    used = {f["figure"] for f in figs} | {"exposure"} | {
        "campaigns.timeline", "campaigns.as_orgs", "campaigns.countries", "cves", "families",
        "malware",
        "rules", "sources.hosting_share", "sources.countries", "sources.as_orgs", "sources.ips",
        "sources.per_ip", "sectors.events", "sectors.orgs", "orgs.events", "endpoint.execution_techniques",
        "endpoint.powershell_families", "sources.targeted", "infrastructure.services",
        "infrastructure.as_orgs", "infrastructure.countries", "indicators.payload_matches",
        "indicators.appendix", "indicators.count"}
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "tool": {"name": "threatscope", "version": threatscope.__version__},
        "workspace": str(ws.root),
        "period": _period_dict(period),
        "baseline": _period_dict(base),
        "inputs": inputs,
        "totals": totals,
        "campaigns": campaigns,
        "products": products,
        "cves": cves_l,
        "families": families,
        "malware": malware,
        "rules": rules,
        "sources": sources,
        "infrastructure": infrastructure,
        "indicators": indicators,
        "sectors": sectors,
        "organisations": organisations,
        "endpoint": endpoint,
        "exposure": exposure,
        "attack": attack_doc,
        "notes": notes,
        "figures": figs,
        "definitions": {k: F.FIGURES[k].definition() for k in sorted(used)},
    }
