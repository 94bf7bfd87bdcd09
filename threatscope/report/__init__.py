"""threatscope report stage: the metrics document (report.json) as HTML, Markdown, JSON and CSV.

    from threatscope.report import write_report
    paths = write_report(metrics, "out/")
    paths["html"], paths["md"], paths["json"], paths["tables"]   # report.html ... tables/

``metrics`` is the document ``analyze.analyze`` returns (docs/architecture.md, "report.json
(schema_version 1)"). The report adds no figure: report.json is the metrics as given, the HTML and
Markdown render them (missing optional keys and empty lists render as "nothing in this period").
A report that fails a consistency check (``check_report``: the analysis's, the view's, and every
figure of the final HTML and Markdown against report.json) is not written.
The HTML is one self-contained file with inline SVG charts, no script and a strict
Content-Security-Policy. ``pdf=True`` also prints it to ``report.pdf`` with headless Chromium.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
from pathlib import Path

from threatscope.errors import UserError
from threatscope.files import write_atomic
from threatscope.report.consistency import InconsistentReport, check_view
from threatscope.report.html import render_html
from threatscope.report.markdown import render_markdown
from threatscope.report.model import build_view
from threatscope.report.rendered import check_html, check_markdown, shown_ids
from threatscope.report.tables import write_tables

__all__ = ["InconsistentReport", "check_report", "render_html", "render_markdown",
           "write_report"]


def _json_default(v: object) -> object:
    # analyze should hand over plain JSON types; accept the usual near misses rather than fail
    if isinstance(v, _dt.date | _dt.datetime):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, set | tuple):
        return sorted(v, key=str)
    raise TypeError(f"report.json: {type(v).__name__} is not JSON serialisable")


def check_report(metrics: dict, html: str, md: str) -> list[str]:
    """Every consistency problem of a report about to be written, each naming its figure: the
    analysis stage's own (``metrics["consistency"]``), the view's (``check_view``) and the final
    HTML and Markdown read back against ``metrics["figures"]`` (report/rendered.py)."""
    probs: list[str] = []
    cons = metrics.get("consistency")
    if isinstance(cons, dict):
        found = [str(p) for p in cons.get("problems") or []]
        probs += [f"analysis: {p}" for p in found]
        if cons.get("ok") is False and not found:
            probs.append("analysis: marked inconsistent without naming a problem")
    view = build_view(metrics)
    for c in check_view(view):
        if not c["ok"]:
            probs += [f"{p} ({c['check']})" for p in c["problems"]]
    required = shown_ids(view)
    probs += check_html(html, metrics, required)
    probs += check_markdown(md, metrics, required)
    return probs


def write_report(metrics: dict, outdir: str | Path, pdf: bool = False) -> dict[str, Path]:
    """Write report.html, report.md, report.json and tables/*.csv (and report.pdf) into ``outdir``.

    Returns ``{"html", "md", "json", "tables"[, "pdf"]}`` -> paths (``tables`` is the folder).
    Everything is rendered and checked (:func:`check_report`) before anything is written: a
    failed check raises :class:`InconsistentReport` naming the figures, and writes nothing.
    """
    if not isinstance(metrics, dict):
        raise UserError("report: metrics must be a dict (the report.json document)")
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise UserError(f"report output {out} exists and is not a folder")
    body = json.dumps(metrics, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False,
                      default=_json_default)
    html, md = render_html(metrics), render_markdown(metrics)
    if problems := check_report(metrics, html, md):
        raise InconsistentReport(problems)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create report folder {out}: {e.strerror}") from None
    paths = {
        "json": write_atomic(out / "report.json", body + "\n"),
        "html": write_atomic(out / "report.html", html),
        "md": write_atomic(out / "report.md", md),
    }
    write_tables(metrics, out / "tables")
    paths["tables"] = out / "tables"
    if pdf:
        from threatscope.report.pdf import print_pdf

        paths["pdf"] = print_pdf(paths["html"], out / "report.pdf")
    return paths
