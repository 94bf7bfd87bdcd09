"""threatscope report stage: the metrics document (report.json) as HTML, Markdown, JSON and CSV.

    from threatscope.report import write_report
    paths = write_report(metrics, "out/")
    paths["html"], paths["md"], paths["json"], paths["tables"]   # report.html ... tables/

``metrics`` is the document ``analyze.analyze`` returns (docs/architecture.md, "report.json
(schema_version 1)"). The report adds no figure: report.json is the metrics as given, the HTML and
Markdown render them (missing optional keys and empty lists render as "nothing in this period").
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
from threatscope.report.html import render_html
from threatscope.report.markdown import render_markdown
from threatscope.report.tables import write_tables

__all__ = ["render_html", "render_markdown", "write_report"]


def _json_default(v: object) -> object:
    # analyze should hand over plain JSON types; accept the usual near misses rather than fail
    if isinstance(v, _dt.date | _dt.datetime):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, set | tuple):
        return sorted(v, key=str)
    raise TypeError(f"report.json: {type(v).__name__} is not JSON serialisable")


def write_report(metrics: dict, outdir: str | Path, pdf: bool = False) -> dict[str, Path]:
    """Write report.html, report.md, report.json and tables/*.csv (and report.pdf) into ``outdir``.

    Returns ``{"html", "md", "json", "tables"[, "pdf"]}`` -> paths (``tables`` is the folder).
    """
    if not isinstance(metrics, dict):
        raise UserError("report: metrics must be a dict (the report.json document)")
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise UserError(f"report output {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create report folder {out}: {e.strerror}") from None
    body = json.dumps(metrics, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False,
                      default=_json_default)
    paths = {
        "json": write_atomic(out / "report.json", body + "\n"),
        "html": write_atomic(out / "report.html", render_html(metrics)),
        "md": write_atomic(out / "report.md", render_markdown(metrics)),
    }
    write_tables(metrics, out / "tables")
    paths["tables"] = out / "tables"
    if pdf:
        from threatscope.report.pdf import print_pdf

        paths["pdf"] = print_pdf(paths["html"], out / "report.pdf")
    return paths
