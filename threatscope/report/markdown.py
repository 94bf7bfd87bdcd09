"""The Markdown report: the HTML report's sections as headings, bullets and pipe tables.

    text = render_markdown(metrics)

Strings from the metrics go through ``md`` (after ``clean``): HTML-significant characters become
entities, Markdown-significant ones are backslash-escaped (so ``|`` cannot split a table cell,
``<script>`` cannot become HTML and ``[x](javascript:...)`` cannot become a link), and line breaks
become spaces.

Every number that is a recorded figure is a ``Fig`` cell of a pipe table: ``_table`` prints it
and writes a comment line above the table naming each row's figure id and each figure column's
part (``rendered.md_marker``), which ``rendered.check_markdown`` reads back from the final text.
Figures in prose (bullets, sentences) carry no marker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from threatscope.report.audience import peers_markdown
from threatscope.report.consistency import check_view
from threatscope.report.exposure import markdown_exposure, markdown_recommendations
from threatscope.report.limits import TIMELINE_CAMPAIGNS, more_campaigns
from threatscope.report.model import build_view
from threatscope.report.rendered import Fig, fmt_part, md_marker, view_fid
from threatscope.report.text import (
    clean,
    fmt_flag,
    fmt_fold,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_pp,
    fmt_share,
    fmt_span,
)

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# significant anywhere: code spans, emphasis, link/image brackets, table pipes, strikethrough, math
_BACKSLASH = set("\\`*_[]|~$")
_Ids = Callable[[dict], str]  # a view row's figure id
_LEADING = re.compile(r"^(\s*)([-+=#]|\d+[.)])")  # list, heading, setext markers at a line start


def md(value: object, limit: int = 240) -> str:
    """Hostile text as inert Markdown inline text (safe in a table cell)."""
    s = clean(value, limit)
    s = re.sub(r"[\r\n]+", " ", s)  # clean() already made them visible; belt and braces
    out = []
    for ch in s:
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in _BACKSLASH:
            out.append("\\" + ch)
        else:
            out.append(ch)
    s = "".join(out)
    s = re.sub(r"(?i)\b(www)\.", r"\1\\.", s)  # GFM would autolink www.example.com
    s = re.sub(r"(?i)([a-z])://", r"\1\\://", s)  # ... and http://example.com
    return _LEADING.sub(lambda m: m[1] + m[2][:-1] + "\\" + m[2][-1], s)


def _ranked(rows: list[dict], pl: str, bl: str, fid: _Ids | None = None) -> str:
    """Families ranked, with their rank in the baseline and the change (``fid``: a row's figure
    id, when the rows are a recorded figure)."""
    body = []
    for r in rows[:50]:
        rid = fid(r) if fid else None
        body.append([fmt_int(r["rank"]), md(r["family"]), Fig(r["period"], rid),
                     Fig(r["baseline"], rid, "baseline"), fmt_int(r["baseline_rank"]),
                     _rank_change(r["rank_change"]), Fig(r["pct_change"], rid, "pct"),
                     md(fmt_flag(r["flag"]))])
    return _table(["Rank", "Family", pl, bl, f"Rank in {bl}", "Rank change", "% change", "Flag"],
                  body, ["r", "l", "r", "r", "r", "r", "r", "l"])


def _rank_change(n: int | None) -> str:
    return "—" if n is None else ("±0" if n == 0 else f"{n:+d}")


def _fig_text(cell: Fig) -> str:
    return fmt_part(cell.value, cell.part)


def _table(head: Sequence[str], rows: Iterable[Sequence[str | Fig]],
           align: Sequence[str] | None = None) -> str:
    """A pipe table; ``Fig`` cells are printed as numbers and named in a marker line above it
    (a row shows one figure, a column one part of it)."""
    align = align or ["l"] * len(head)
    parts: dict[int, str] = {}
    ids: list[str | None] = []
    body = []
    for r in rows:
        cells, fid = [], None
        for i, c in enumerate(r):
            if isinstance(c, Fig):
                parts[i], fid = c.part, fid or c.id
                c = _fig_text(c)
            cells.append(c if c != "" else " ")
        body.append(cells)
        ids.append(fid)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    marker = [md_marker(parts, ids)] if any(ids) else []
    return "\n".join(marker + lines)


def _change_table(rows: list[dict], key: str, head: str, plabel: str, blabel: str,
                  limit: int = 50, extra: tuple[str, str] | None = None,
                  fid: _Ids | None = None) -> str:
    if not rows:
        return "_None in this period._"
    cols = [head] + ([extra[1]] if extra else []) + [plabel, blabel, "Fold change", "% change",
                                                     "Flag"]
    body = []
    for r in rows[:limit]:
        rid = fid(r) if fid else None
        body.append([md(r[key])] + ([md(r[extra[0]]) or "—"] if extra else [])
                    + [Fig(r["period"], rid), Fig(r["baseline"], rid, "baseline"),
                       Fig(r["fold_change"], rid, "fold"), Fig(r["pct_change"], rid, "pct"),
                       md(fmt_flag(r["flag"]))])
    text = _table(cols, body, ["l"] * (2 if extra else 1) + ["r"] * 4 + ["l"])
    if len(rows) > limit:
        text += f"\n\n_… {len(rows) - limit:,} more rows in report.json and tables/._"
    return text


def _span(s: dict) -> str:
    return fmt_span(s, md)


def _more(rows: list, limit: int, table: str) -> str:
    return (f"\n_… {len(rows) - limit:,} more in tables/{md(table)}.csv._\n"
            if len(rows) > limit else "")


def _noise(v: dict, pl: str, bl: str, add) -> None:
    s = v["sources"]
    add("### Background noise vs targeted attacks\n")
    if not s["classification"]:
        add("_No source classification in this period._\n")
        return
    add(f"**Background noise:** {fmt_share(s['noise_share'])} of classified detected events came "
        "from research scanners (known by reverse DNS name or user agent), mass scanners (many "
        "organisations or sensors, or many exploits) and opportunistic sources (few "
        "organisations, but one of many spraying a widespread campaign); a targeted source did "
        "everything it did at only a few organisations. Counts are detected events.\n")
    add(_table(["Classification", "Kind", pl, bl, "Fold change", "% change", "Flag", "Source IPs",
                "Share", f"Share in {bl}"],
               [[md(r["classification"] or "unclassified"), "noise" if r["noise"] else "targeted",
                 Fig(r["period"], fid := view_fid(v, "sources.classification", r)),
                 Fig(r["baseline"], fid, "baseline"), Fig(r["fold_change"], fid, "fold"),
                 Fig(r["pct_change"], fid, "pct"), md(fmt_flag(r["flag"])),
                 fmt_int(r["source_ips"]), fmt_share(r["share"]), fmt_share(r["baseline_share"])]
                for r in s["classification"]],
               ["l", "l", "r", "r", "r", "r", "l", "r", "r", "r"]) + "\n")
    add("#### Targeted sources\n")
    if not s["targeted"]:
        add("_No source attacked only a few organisations._\n")
        return
    add(_table(["IP", "Country", "AS organisation", "Network", "Detected events",
                "Organisations hit", "Campaigns", "First seen", "Last seen"],
               [[md(r["ip"] or "—"), md(r["country_code"] or "—"), md(r["as_org"] or "unknown"),
                 md(r["network_type"] or "—"), fmt_int(r["detected_events"]),
                 fmt_int(r["orgs_hit"]), md(", ".join(r["campaigns"]) or "—"),
                 md(r["first_seen"] or "—"), md(r["last_seen"] or "—")]
                for r in s["targeted"][:50]],
               ["l", "l", "l", "l", "r", "r", "l", "l", "l"]) + "\n"
        + _more(s["targeted"], 50, "sources_targeted"))


def _share_table(rows: list[dict], key: str, head: str, pl: str, bl: str,
                 services: bool = False, fid: _Ids | None = None) -> str:
    cols = [head, pl, "Share", bl, "Share", "% change", "Flag"]
    body = []
    for r in rows[:50]:
        rid = fid(r) if fid else None
        row = [md(r[key] or "unknown"), Fig(r["period"], rid), fmt_share(r["share"]),
               Fig(r["baseline"], rid, "baseline"), fmt_share(r["baseline_share"]),
               Fig(r["pct_change"], rid, "pct"), md(fmt_flag(r["flag"]))]
        if services:
            row.append(md(", ".join(f"{clean(x['service'] or '?', 40)} {fmt_int(x['source_ips'])}"
                                    for x in r["services"]) or "—", 600))
        body.append(row)
    return _table(cols + (["Services (addresses)"] if services else []), body,
                  ["l", "r", "r", "r", "r", "r", "l"] + (["l"] if services else []))


def _mix_table(rows: list[dict], first: list[tuple[str, str]]) -> str:
    return _table([h for h, _ in first] + ["Addresses", "Share", "Windows", "Compromised servers",
                                           "Home routers", "Cloud instances"],
                  [[md(r[k] if r[k] is not None else "—") for _, k in first]
                   + [fmt_int(r["source_ips"]), fmt_share(r["share"]), fmt_int(r["windows"]),
                      fmt_int(r["compromised_servers"]), fmt_int(r["home_routers"]),
                      fmt_int(r["cloud_instances"])] for r in rows[:50]],
                  ["l"] * len(first) + ["r"] * 6)


def _infrastructure(v: dict, pl: str, bl: str, add) -> None:
    add("## Attacker infrastructure\n")
    inf = v["infrastructure"]
    if not inf:
        add("_This report has no infrastructure figures (report.json was written without "
            "them)._\n")
        return
    ips, known = inf["source_ips"] or {}, inf["with_host_record"] or {}
    add(f"- **Attacking addresses:** {fmt_int(ips.get('period'))} ({bl}: "
        f"{fmt_int(ips.get('baseline'))}, {fmt_pct(ips.get('pct_change'))})\n"
        f"- **With a host record:** {fmt_int(known.get('period'))} (coverage "
        f"{fmt_share(inf['coverage'])}; {bl}: {fmt_int(known.get('baseline'))})\n")
    if not known.get("period"):
        add("> **No host records cover the attacking addresses.** Infrastructure figures "
            "(operating systems, exposed services, kinds of host) come from Shodan host records "
            "of the attacking addresses. Add them with `threatscope intel add shodan FILE` (a "
            "Shodan export) or `threatscope intel fetch --shodan-key KEY`, then run the analysis "
            "again.\n")
        return
    add(f"Counts are attacking addresses; shares are of the {fmt_int(known['period'])} addresses "
        f"with a host record in {pl}. An address can run services of several classes, so service "
        "class shares need not add up to 100%; each address has one OS family and one kind of "
        "host.\n")
    for key, col, head, title in (("os_families", "os_family", "OS family",
                                   "Operating system families"),
                                  ("host_kinds", "host_kind", "Kind of host", "Kinds of host"),
                                  ("service_classes", "service_class", "Service class",
                                   "Exposed services"),
                                  ("products", "product", "Product", "Top products")):
        add(f"### {title}\n")
        # infrastructure products are not recorded figures (analyze/metrics.py)
        fid = (lambda r, f=f"infrastructure.{key}": view_fid(v, f, r)) \
            if key != "products" else None
        add(_share_table(inf[key], col, head, pl, bl, key == "service_classes", fid) + "\n"
            if inf[key] else "_None in the host records._\n")
    add("### By AS organisation\n")
    add(_mix_table(inf["as_orgs"], [("AS organisation", "as_org"), ("ASN", "asn"),
                                    ("Network", "network_type")]) + "\n"
        if inf["as_orgs"] else "_None in the host records._\n")
    add("### By country\n")
    add(_mix_table(inf["countries"], [("Country", "country_code")]) + "\n"
        if inf["countries"] else "_None in the host records._\n")


def _indicator_table(rows: list[dict]) -> str:
    # values are attacker-controlled: md() escapes them and defangs autolinks, and a code span
    # is not used because its content would be shown without md()'s escaping
    return _table(["Role", "Type", "Value", "Sightings", "Campaigns", "CVEs", "Malware families",
                   "IOC lists", "First seen", "Last seen"],
                  [[md(r["role"] or "—"), md(r["indicator_type"] or "—"), md(r["value"], 300),
                    fmt_int(r["sightings"]), md(", ".join(r["campaigns"]) or "—"),
                    md(", ".join(r["cves"]) or "—"), md(", ".join(r["malware_families"]) or "—"),
                    md(", ".join(r["ioc_feeds"]) or "—"), md(r["first_seen"] or "—"),
                    md(r["last_seen"] or "—")] for r in rows[:100]],
                  ["l", "l", "l", "r", "l", "l", "l", "l", "l", "l"])


def _indicators(v: dict, pl: str, bl: str, add) -> None:
    add("## Indicators\n")
    ind = v["indicators"]
    if not ind:
        add("_This report has no indicator figures (report.json was written without them)._\n")
        return
    add(f"Attacking addresses and payload indicators seen in {pl}: "
        f"{fmt_int(ind['counts']['attacker'])} attacker and {fmt_int(ind['counts']['payload'])} "
        "payload indicators in all. Values are attacker-controlled text, never links: do not "
        "visit them. The full list is exported by `threatscope export stix|misp|indicators`.\n")
    add("### Sources named by IOC lists\n")
    ls = ind["listed_sources"]
    add(_table(["IOC list", pl, bl, "Fold change", "% change", "Flag", "Source IPs",
                "Malware families", "First seen", "Last seen"],
               [[md(r["feed"]), Fig(r["period"], fid := view_fid(v, "indicators.listed_sources",
                                                                   r)),
                 Fig(r["baseline"], fid, "baseline"), Fig(r["fold_change"], fid, "fold"),
                 Fig(r["pct_change"], fid, "pct"), md(fmt_flag(r["flag"])),
                 fmt_int(r["source_ips"]), md(", ".join(r["malware_families"]) or "—"),
                 md(r["first_seen"] or "—"), md(r["last_seen"] or "—")] for r in ls],
               ["l", "r", "r", "r", "r", "l", "r", "l", "l", "l"])
        + "\n\nCounts are detected events from addresses the list names.\n" if ls
        else "_No attacking address is named by an IOC list._\n")
    add("### Payload indicators named by IOC lists\n")
    add(_indicator_table(ind["payload_matches"]) + "\n" if ind["payload_matches"]
        else "_No payload indicator is named by an IOC list._\n")
    add(f"### Indicators seen in {pl}\n")
    add(_indicator_table(ind["appendix"]) + "\n" + _more(ind["appendix"], 100,
                                                          "indicators_appendix")
        if ind["appendix"] else "_No indicator was seen in this period._\n")


def render_markdown(metrics: dict) -> str:
    """Render the metrics document as GitHub-flavoured Markdown."""
    v = build_view(metrics)
    p, b = v["period"], v["baseline"]
    pl, bl = md(p["label"] or "period", 40), md(b["label"] or "baseline", 40)
    out: list[str] = []
    add = out.append
    add(f"# Threat report {md(p['label'] or '(no period)')}"
        + (f": {md(v['scope']['title'])}" if v["scope"]["title"] else "") + "\n")
    add(f"Period **{_span(p)}** compared with the baseline **{_span(b)}**.\n")
    add(f"_Generated {md(v['generated_at'] or '—')} by {md(v['tool']['name'])} "
        f"{md(v['tool']['version'] or '')}; workspace {md(v['workspace'] or '—')}; "
        f"schema version {md(v['schema_version'] or '—')}._\n")
    if v["empty"]:
        add(f"> **Nothing detected in this period.** {md(v['scope']['whose'])} no detections between "
            f"{md(p['start'] or '—')} and {md(p['end'] or '—')}.\n")
    if v["no_baseline"]:
        add(f"> **No baseline.** Nothing was detected in {md(b['label'] or 'the baseline')} "
            f"({md(b['start'] or '—')} – {md(b['end'] or '—')}): every figure of "
            f"{md(p['label'] or 'the period')} is new, and no fold or percent change can be "
            "given. The workspace may not hold data that old.\n")
    rows = []
    for key, label in (("detected_events", "Detected events (requests)"),
                       ("detections", "Rule matches"), ("events", "Events logged"),
                       ("source_ips", "Source IPs"), ("orgs_hit", "Organisations hit")):
        c = v["totals"][key]
        if c:
            fid = f"totals.{key}"
            rows.append([label, Fig(c["period"], fid), Fig(c["baseline"], fid, "baseline"),
                         Fig(c["fold_change"], fid, "fold"), Fig(c["pct_change"], fid, "pct"),
                         md(fmt_flag(c["flag"]))])
    if rows:
        add(_table(["Total", pl, bl, "Fold change", "% change", "Flag"], rows,
                   ["l", "r", "r", "r", "r", "l"]) + "\n")

    add("## Key findings\n")
    if v["key_findings"]:
        add("\n".join(f"{i}. {md(f['text'], 600)}" for i, f in enumerate(v["key_findings"], 1)) + "\n")
    else:
        add("_No key findings: nothing stood out._\n")
    add(markdown_recommendations(v, md))

    add("## Period comparison\n")
    add("Counts are detected events (each request or alert once, however many rules matched it), "
        "except in the rules table, which counts rule matches. "
        "Fold change = period ÷ baseline. Flags: _tiny baseline_ (baseline below 10, fold change "
        "not meaningful), _NEW_ (no baseline), _SURGING_ (at least 3× on a baseline of 10 or more).\n")
    for sec, key, head, extra in (("campaigns", "campaign", "Campaign", ("title", "Title")),
                                  ("products", "product", "Product", None),
                                  ("cves", "cve", "CVE", ("product", "Product")),
                                  ("families", "family", "Family", None),
                                  ("rules", "title", "Rule", ("level", "Level"))):
        add(f"### {head}s" + (" (rule matches)" if sec == "rules" else "") + "\n")
        add(_change_table(v[sec], key, head, pl, bl, 30 if sec == "rules" else 50, extra,
                          lambda r, f=sec: view_fid(v, f, r)) + "\n")

    add("## Campaign timelines\n")
    if not v["campaigns"]:
        add("_No campaign was detected in this period._\n")
    for c in v["campaigns"][:TIMELINE_CAMPAIGNS]:
        add(f"### {md(c['title'] or c['campaign'])} ({md(c['campaign'])})\n")
        e2o = c["days_exploit_to_onset"]
        facts = [
            ("Product", md(c["product"] or "—")),
            ("CVEs", md(", ".join(c["cves"]) or "—")),
            ("ATT&CK", md(", ".join(c["technique_labels"]) or "—")),
            ("Detected events", f"{fmt_int(c['period'])} (baseline {fmt_int(c['baseline'])}, "
                           f"{fmt_fold(c['fold_change'])}, {fmt_pct(c['pct_change'])}) "
                           f"{md(fmt_flag(c['flag']))}".rstrip()),
            ("Onset", md(c["onset"] or "—")),
            ("Peak day", md(c["peak_day"] or "—")
             + (f" ({fmt_int(c['peak_count'])})" if c["peak_day"] else "")),
            ("Last day", md(c["last_day"] or "—")),
            ("Public exploit", md(c["public_exploit_date"] or "unknown")),
            ("Days from exploit to onset",
             f"{fmt_int(e2o)} day{'' if e2o == 1 else 's'}" if isinstance(e2o, int) else "—"),
            ("Source IPs", fmt_int(c["source_ips"])
             + (f" ({fmt_share(c['hosting_share'])} of detected events from hosting)"
                if isinstance(c["hosting_share"], int | float) else "")),
            ("Top AS orgs", "; ".join(f"{md(a['as_org'] or 'unknown')} ({fmt_share(a['share'])})"
                                      for a in c["top_as_orgs"][:3]) or "—"),
            ("Top countries", "; ".join(f"{md(a['country_code'] or '??')} ({fmt_share(a['share'])})"
                                        for a in c["top_countries"][:3]) or "—"),
        ]
        add("\n".join(f"- **{k}:** {val}" for k, val in facts) + "\n")
    if more := more_campaigns(v["campaigns"]):
        add(f"_… {fmt_int(more)} more campaigns in tables/campaigns.csv (their daily counts in "
            f"tables/campaign_timelines.csv) and report.json; the {TIMELINE_CAMPAIGNS} with the "
            "most detected events are shown._\n")

    add(markdown_exposure(v, pl, bl, md, _table))

    s = v["sources"]
    d = s["per_ip_distribution"]
    add("## Sources\n")
    add(f"- **Distinct source IPs:** {fmt_int(s['distinct_ips'])}\n"
        f"- **Share of detected events from hosting/cloud networks:** "
        f"{fmt_share(s['hosting_share'])}\n"
        f"- **Detected events per source IP:** median {fmt_num(d['p50'])}, p90 {fmt_num(d['p90'])}, "
        f"p99 {fmt_num(d['p99'])}, max {fmt_int(d['max'])}\n")
    add("### Autonomous systems\n")
    add("Source figures count detected events (requests or alerts matched by at least one rule), "
        "once each however many rules matched them.\n")
    add(_table(["AS organisation", "ASN", "Network", "Detected events", "Source IPs", "Share"],
               [[md(r["as_org"] or "unknown"), md(r["asn"] if r["asn"] is not None else "—"),
                 md(r["network_type"] or "—"),
                 Fig(r["detected_events"], view_fid(v, "sources.as_orgs", r)),
                 fmt_int(r["source_ips"]),
                 fmt_share(r["share"])] for r in s["top_as_orgs"]],
               ["l", "r", "l", "r", "r", "r"]) + "\n" if s["top_as_orgs"]
        else "_No attributed sources in this period._\n")
    add("### Countries\n")
    add(_table(["Country", "Code", "Detected events", "Source IPs", "Share"],
               [[md(r["country_name"] or "unknown"), md(r["country_code"] or "—"),
                 Fig(r["detected_events"], view_fid(v, "sources.countries", r)),
                 fmt_int(r["source_ips"]), fmt_share(r["share"])]
                for r in s["top_countries"]], ["l", "l", "r", "r", "r"]) + "\n"
        if s["top_countries"] else "_No source countries in this period._\n")
    add("### Most active source IPs\n")
    add(_table(["IP", "Country", "AS organisation", "Network", "Detected events", "Rule matches",
                "Rules", "Campaigns", "First seen", "Last seen"],
               [[md(r["ip"] or "—"), md(r["country_code"] or "—"), md(r["as_org"] or "unknown"),
                 md(r["network_type"] or "—"),
                 Fig(r["detected_events"], view_fid(v, "sources.ips", r)),
                 fmt_int(r["rule_matches"]), fmt_int(r["rules"]),
                 md(", ".join(r["campaigns"]) or "—"), md(r["first_seen"] or "—"),
                 md(r["last_seen"] or "—")] for r in s["top_ips"][:50]],
               ["l", "l", "l", "l", "r", "r", "r", "l", "l", "l"]) + "\n"
        + (f"\n_… {len(s['top_ips']) - 50:,} more in tables/sources\\_top\\_ips.csv._\n"
           if len(s["top_ips"]) > 50 else "")
        if s["top_ips"] else "_No source IPs in this period._\n")

    _noise(v, pl, bl, add)
    _infrastructure(v, pl, bl, add)

    ep = v["endpoint"]
    add("## Endpoint\n")
    if ep["execution_techniques"]:
        tev, dev = ep["technique_events"] or {}, ep["detected_events"] or {}
        add("ATT&CK execution techniques named by the rules that matched endpoint events (not web "
            "requests or network alerts); an event counts once for each technique, a parent "
            "technique only where none of its sub-techniques was named, a revoked id as the "
            f"technique that replaced it. Shares are of technique events: "
            f"{fmt_int(tev.get('period'))} in {pl} ({fmt_int(dev.get('period'))} detected "
            f"events), {fmt_int(tev.get('baseline'))} in {bl}."
            + (f" Names from MITRE ATT&CK {md(v['attack']['attack_version'])}."
               if v["attack"]["attack_version"] else "") + "\n")
        ps = ep["powershell"]
        if ps:
            add(f"**Obfuscated PowerShell:** {fmt_int(ps['obfuscated']['period'])} of "
                f"{fmt_int(ps['events']['period'])} PowerShell events in {pl} "
                f"({fmt_share(ps['obfuscated_share'])}), against "
                f"{fmt_int(ps['obfuscated']['baseline'])} of {fmt_int(ps['events']['baseline'])} "
                f"in {bl} ({fmt_share(ps['baseline_obfuscated_share'])}); change of share "
                f"{fmt_pp(ps['share_change_pp'])}, obfuscated PowerShell events "
                f"{fmt_pct(ps['obfuscated']['pct_change'])}.\n")
            if ps["families"]:
                add("PowerShell events by the malware family that a rule over their recovered "
                    f"text named, ranked by events in {pl}:\n")
                add(_ranked(ps["families"], pl, bl) + "\n")
        add(_table(["Execution technique", "Parent", pl, "Share", bl, "Share", "Change of share",
                    "% change", "Flag"],
                   [[md(r["label"]), md(r["parent"] or "—"),
                     Fig(r["period"], fid := view_fid(v, "endpoint.execution_techniques", r)),
                     fmt_share(r["share"]), Fig(r["baseline"], fid, "baseline"),
                     fmt_share(r["baseline_share"]), fmt_pp(r["share_change_pp"]),
                     Fig(r["pct_change"], fid, "pct"), md(fmt_flag(r["flag"]))]
                    for r in ep["execution_techniques"][:50]],
                   ["l", "l", "r", "r", "r", "r", "r", "r", "l"]) + "\n")
        if len(ep["execution_techniques"]) > 50:
            add(f"_… {len(ep['execution_techniques']) - 50:,} more in "
                "tables/endpoint\\_execution\\_techniques.csv._\n")
    else:
        add(f"_No endpoint detections of ATT&CK execution techniques in {pl} or {bl}._\n")
    add("## Malware\n")
    if v["malware"]:
        add(f"Ranked by detected events in {pl}; the rank in {bl} beside it.\n")
        add(_ranked(v["malware"], pl, bl, lambda r: view_fid(v, "malware", r)) + "\n")
    else:
        add(f"_No malware family was detected in {pl} or {bl}._\n")

    add("## Sectors\n")
    if v["sectors"]:
        add(f"Sectors ranked by detected events per monitored organisation in {pl}.\n")
    add(_table(["Rank", "Sector", "Organisations", "Sensors", "Detected events", "Per organisation",
                "Per sensor", "Baseline per org."],
               [[fmt_int(r["rank"]), md(r["sector"] or "unassigned"), fmt_int(r["orgs"]),
                 fmt_int(r["sensors"]),
                 Fig(r["detected_events"], view_fid(v, "sectors.events", r)),
                 fmt_num(r["per_org"]),
                 fmt_num(r["per_sensor"]), fmt_num(r["baseline_per_org"])] for r in v["sectors"]],
               ["r", "l", "r", "r", "r", "r", "r", "r"]) + "\n"
        if v["sectors"] else "_No sector figures for this period._\n")

    if v["peers"]:
        add(peers_markdown(v, md, _table))
    _indicators(v, pl, bl, add)

    i = v["inputs"]
    add("## Methodology\n")
    add("### Inputs\n")
    add(_table(["Input", "Count"], [
        ["Period", f"{v['period']['start'] or '—'} – {v['period']['end'] or '—'}"],
        ["Baseline", f"{v['baseline']['start'] or '—'} – {v['baseline']['end'] or '—'}"],
        ["Files ingested", fmt_int(i["files"])], ["Lines read", fmt_int(i["lines_read"])],
        ["Rows written", fmt_int(i["rows_written"])],
        ["Rows quarantined", fmt_int(i["rows_quarantined"])],
        ["Comment / header lines", fmt_int(i["comment_lines"])],
        ["Organisations", fmt_int(i["orgs"])], ["Rules loaded", fmt_int(i["rules_loaded"])],
        ["Rules that failed to compile", fmt_int(i["rules_failed"])]], ["l", "r"]) + "\n")
    if i["formats"]:
        add("### Formats\n")
        add(_table(["Format", "Files", "Rows"], [[md(f["format"]), fmt_int(f["files"]),
                                                  fmt_int(f["rows"])] for f in i["formats"]],
                   ["l", "r", "r"]) + "\n")
    add("### Quarantine reasons\n")
    add(_table(["Reason", "Lines"], [[md(q["reason"]), fmt_int(q["count"])]
                                     for q in i["quarantine_reasons"]], ["l", "r"]) + "\n"
        if i["quarantine_reasons"] else "_Nothing was quarantined._\n")
    if i["rule_sets"]:
        add("### Rule sets\n")
        add(_table(["Rule set", "Version", "Files", "Rules", "Failed"],
                   [[md(r["name"]), md(r["version"]), fmt_int(r["files"]), fmt_int(r["rules"]),
                     fmt_int(r["failed"])] for r in i["rule_sets"]],
                   ["l", "l", "r", "r", "r"]) + "\n")
    if i["rules_failed_list"]:
        add("### Rules that failed to compile\n")
        add(_table(["Rule file", "Title", "Reason"],
                   [[md(r["path"]), md(r["title"]), md(r["reason"])]
                    for r in i["rules_failed_list"]]) + "\n")
    if v["notes"]:
        add("### Notes from the analysis\n")
        add("\n".join(f"- {md(n, 600)}" for n in v["notes"][:50]) + "\n")
    checks = check_view(v)
    add("### Consistency checks\n")
    cons = v["consistency"]
    if cons:
        ok = cons["ok"] and not cons["problems"]
        add("Analysis stage: " + ("consistent." if ok else f"**{len(cons['problems'])} problem(s).**")
            + "\n")
        if cons["problems"]:
            add("\n".join(f"- {md(p, 600)}" for p in cons["problems"][:50]) + "\n")
    if checks:
        failed = sum(not c["ok"] for c in checks)
        add("Report: " + (f"**{failed} of {len(checks)} checks failed.**" if failed
                          else f"All {len(checks)} checks passed.") + "\n")
        add(_table(["Check", "Result", "Detail"],
                   [[md(c["check"]), "pass" if c["ok"] else "**FAIL**", md(c["detail"], 600)]
                    for c in checks]) + "\n")
    else:
        add("_No figures to check._\n")
    add("An event is one logged request (or IDS alert). A detected event is an event matched by at "
        "least one rule; a rule match (a detection) is one event matched by one rule, so a request "
        "that fires two rules is one detected event and two rule matches. Campaign, product, CVE, "
        "attack-family, source and sector figures count detected events; the rules table and the "
        "rule-matches total count rule matches; endpoint execution techniques count technique "
        "events (an endpoint event once per technique). Fold change is period ÷ baseline and "
        "percent change 100 × (period − baseline) ÷ baseline, both undefined when the baseline is "
        "zero. Countries and autonomous systems come from the source IP address alone. Every "
        "figure is in report.json; the tables are also in tables/\\*.csv.\n")
    return "\n".join(out)
