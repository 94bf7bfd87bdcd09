"""The report's Endpoint section: execution technique shares in HTML, Markdown and CSV."""

from __future__ import annotations

import csv

from tests.report.conftest import EXECUTION, PS_FAMILIES, _endpoint, build_metrics
from tests.report.helpers import Page, md_tables, split_row
from threatscope.report import render_html, render_markdown, write_report
from threatscope.report.consistency import check_view
from threatscope.report.model import build_view
from threatscope.report.text import fmt_pct, fmt_pp, fmt_share

P_TOTAL = sum(r[3] for r in EXECUTION)
B_TOTAL = sum(r[4] for r in EXECUTION)


def _section(html: str, name: str = "endpoint") -> str:
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


def test_html_section_has_the_chart_and_the_table(metrics):
    html = render_html(metrics)
    section = Page(_section(html))
    text = section.text
    assert "Endpoint" in text and "Names from MITRE ATT&CK 18.1" in text
    svgs = [a for t, a in section.elements if t == "svg"]
    assert len(svgs) == 1 and svgs[0]["aria-label"] == (
        "Share of each execution technique, 2018Q2 vs 2018Q1")
    # one pair of bars per technique, labelled with the ATT&CK name
    assert sum(1 for t, _ in section.elements if t == "rect") == 2 + 2 * len(EXECUTION)
    rows = [t for t, _ in section.elements if t == "tr"]
    assert len(rows) == 1 + len(EXECUTION) + 1 + len(PS_FAMILIES)  # and the families table
    for tid, name, parent, p, b in EXECUTION:
        assert f"{tid} {name}" + (f" ({parent})" if parent else "") in text
        assert fmt_share(p / P_TOTAL) in text and fmt_share(b / B_TOTAL) in text
        assert fmt_pp(100 * (p / P_TOTAL - b / B_TOTAL)) in text
    assert "NEW (no baseline)" in text  # T1047 was not seen in the baseline
    assert f"{P_TOTAL:,} in 2018Q2 ({round(0.8 * P_TOTAL):,} detected events), {B_TOTAL:,} in 2018Q1" in text
    assert '<a href="#endpoint">Endpoint</a>' in html


def test_markdown_and_csv_tables(metrics, tmp_path):
    md = render_markdown(metrics)
    assert "## Endpoint" in md
    table = next(t for t in md_tables(md) if "Execution technique" in t[0])
    assert len(table) == 2 + len(EXECUTION)
    tid, name, parent, p, b = EXECUTION[0]
    cells = [c.strip() for c in split_row(table[2])]
    assert cells == [f"{tid} {name}", parent, f"{p:,}", fmt_share(p / P_TOTAL), f"{b:,}",
                     fmt_share(b / B_TOTAL), fmt_pp(100 * (p / P_TOTAL - b / B_TOTAL)),
                     fmt_pct(100 * (p - b) / b), ""]
    folder = write_report(metrics, tmp_path)["tables"]
    with open(folder / "endpoint_execution_techniques.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [(r["technique"], r["name"], int(r["period"]), int(r["baseline"])) for r in got] == [
        (t, n, p, b) for t, n, _, p, b in EXECUTION]
    assert float(got[0]["share"]) == EXECUTION[0][3] / P_TOTAL


def test_no_endpoint_detections_is_one_line(empty_metrics):
    for m in (empty_metrics, {k: v for k, v in build_metrics().items() if k != "endpoint"}):
        section = Page(_section(render_html(m)))
        assert "svg" not in section.tags() and "table" not in section.tags()
        label = m["period"]["label"], m["baseline"]["label"]
        line = (f"No endpoint detections of ATT&CK execution techniques in {label[0]} or "
                f"{label[1]}.")
        assert section.text.strip() == f"Endpoint\n{line}"
        assert f"## Endpoint\n\n_{line}_" in render_markdown(m)


def test_malware_families_ranked_with_their_change_in_rank():
    m = build_metrics()
    m["malware"] = [
        {"family": "emotet", "period": 12, "baseline": 4, "fold_change": 3.0,
         "pct_change": 200.0, "flag": "surging", "rank": 1, "baseline_rank": 2,
         "rank_change": 1},
        {"family": "<script>trickbot", "period": 3, "baseline": 0, "fold_change": None,
         "pct_change": None, "flag": "new", "rank": 2, "baseline_rank": None,
         "rank_change": None}]
    html = render_html(m)
    page = Page(_section(html, "malware"))
    assert "<script>trickbot" in page.text and "<script>trickbot" not in html
    rows = [r for r in page.text.splitlines() if "emotet" in r or "trickbot" in r]
    assert rows and "+1" in page.text
    md = render_markdown(m)
    assert "| 1 | emotet | 12 | 4 | 2 | +1 |" in md
    assert "| 2 | &lt;script&gt;trickbot | 3 | 0 | — | — |" in md  # escaped in Markdown too
    assert all(c["ok"] for c in check_view(build_view(m)))
    m["malware"] = []
    none = "No malware family was detected in 2018Q2 or 2018Q1."
    assert Page(_section(render_html(m), "malware")).text.strip() == f"Malware\n{none}"
    assert f"## Malware\n\n_{none}_" in render_markdown(m)


def test_empty_baseline_shows_no_baseline_share():
    m = build_metrics()
    m["endpoint"] = _endpoint([(t, n, par, p, 0) for t, n, par, p, _ in EXECUTION])
    section = Page(_section(render_html(m))).text
    # each technique, the obfuscated PowerShell line and each PowerShell family
    assert section.count("NEW (no baseline)") == len(EXECUTION) + 1 + len(PS_FAMILIES)
    assert f"{P_TOTAL:,} in 2018Q2" in section and "0 in 2018Q1" in section
    assert all(c["ok"] for c in check_view(build_view(m)))


def test_powershell_families_ranked_in_html_markdown_and_csv(metrics, tmp_path):
    html = render_html(metrics)
    table = html[html.index('id="powershell-families"'):]
    table = Page(table[:table.index("</table>")]).text
    md = render_markdown(metrics)
    rows = next(t for t in md_tables(md) if "Family" in t[0] and "downloader" in "".join(t))
    assert len(rows) == 2 + len(PS_FAMILIES)
    for (family, p, b, rank, b_rank), line in zip(PS_FAMILIES, rows[2:], strict=True):
        cells = [c.strip() for c in split_row(line)]
        change = "±0" if rank == b_rank else f"{b_rank - rank:+d}"
        assert cells[:6] == [str(rank), family, f"{p:,}", f"{b:,}", str(b_rank), change]
        assert family in table and change in table
    folder = write_report(metrics, tmp_path)["tables"]
    with open(folder / "endpoint_powershell_families.csv", newline="") as f:
        got = [(r["family"], int(r["period"]), int(r["rank"]), r["rank_change"])
               for r in csv.DictReader(f)]
    assert got == [(f, p, r, str(br - r)) for f, p, _, r, br in PS_FAMILIES]


def test_campaign_techniques_carry_their_names(metrics):
    metrics["campaigns"][0]["techniques"] = ["T1190", "T1086", "T9999"]
    text = Page(render_html(metrics)).text
    assert ("ATT&CK: T1190 Exploit Public-Facing Application, T1086 (now T1059.001 PowerShell), "
            "T9999") in text
    assert ("**ATT&CK:** T1190 Exploit Public-Facing Application, T1086 (now T1059.001 "
            "PowerShell), T9999") in render_markdown(metrics)


def test_report_check_catches_shares_that_do_not_add_up(metrics):
    metrics["endpoint"]["execution_techniques"][0]["share"] += 0.1
    metrics["endpoint"]["execution_techniques"][1]["baseline"] += 1
    failed = [c for c in check_view(build_view(metrics)) if not c["ok"]]
    assert [c["check"] for c in failed] == [
        "fold and percent changes equal the ratio of their counts",
        "execution technique shares sum to 100% and their counts to the technique events"]
    assert "period: shares sum to 1.1000" in failed[1]["detail"]
    assert f"baseline: technique counts sum to {B_TOTAL + 1}" in failed[1]["detail"]


def test_obfuscated_share_of_powershell_line():
    from threatscope.analyze.metrics import change

    m = build_metrics()
    m["endpoint"]["powershell"] = {
        "events": change(80, 40), "obfuscated": change(66, 22), "obfuscated_share": 0.825,
        "baseline_obfuscated_share": 0.55, "share_change_pp": 27.5}
    text = Page(_section(render_html(m))).text
    line = next(x for x in text.splitlines() if x.startswith("Obfuscated PowerShell:"))
    assert line.startswith(f"Obfuscated PowerShell: 66 of 80 PowerShell events in 2018Q2 "
                           f"({fmt_share(0.825)}), against 22 of 40 in 2018Q1 "
                           f"({fmt_share(0.55)}); change of share {fmt_pp(27.5)}")
    assert "+200%" in line
    assert "**Obfuscated PowerShell:** 66 of 80 PowerShell events" in render_markdown(m)
    m["endpoint"]["powershell"]["events"] = change(0, 0)  # no PowerShell: no line
    assert "Obfuscated PowerShell" not in render_html(m)
