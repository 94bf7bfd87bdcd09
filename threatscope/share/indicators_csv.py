"""The workspace's indicators as CSV: one row per indicator, every column of schema.INDICATOR.

    from threatscope.share.indicators_csv import write_indicators_csv
    write_indicators_csv(ws, "out/indicators.csv", period=Period.parse("2018Q2"))

Rows end in CRLF (RFC 4180). Lists are ``;``-joined, timestamps ``YYYY-MM-DD HH:MM:SS`` (UTC), missing values empty. A cell
a spreadsheet would run as a formula (``= + - @``, tab, CR first) gets a leading apostrophe
(report.tables.cell): values are attacker-controlled.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from threatscope.analyze.period import Period
from threatscope.files import write_atomic
from threatscope.report.tables import cell
from threatscope.share.rows import COLUMNS, indicator_rows
from threatscope.workspace import Workspace


def write_indicators_csv(ws: Workspace, path: str | Path, *, period: Period | None = None,
                         min_sightings: int = 1) -> int:
    """Write the indicators seen in ``period`` (None: all) to ``path`` (atomically); returns the
    number of rows written."""
    rows = indicator_rows(ws, period=period, min_sightings=min_sightings)
    buf = io.StringIO()
    # RFC 4180 line ends: with "\n" the csv module leaves a lone CR in a value unquoted, and
    # readers split the row there
    out = csv.writer(buf, lineterminator="\r\n")
    out.writerow(COLUMNS)
    out.writerows([cell(r[c]) for c in COLUMNS] for r in rows)
    write_atomic(path, buf.getvalue())
    return len(rows)
