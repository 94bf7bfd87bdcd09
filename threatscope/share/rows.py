"""The rows every export reads: the view ``indicator`` (schema.INDICATOR), filtered.

    rows = indicator_rows(ws, period=Period.parse("2018Q2"), min_sightings=2)
    rows[0]["value"], rows[0]["campaigns"]      # one dict per indicator, lists never None

Rows come sorted by (indicator_type, value, role) so that every export of the same data is the
same file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from threatscope import schema
from threatscope.analyze.period import Period
from threatscope.errors import UserError
from threatscope.workspace import Workspace, relations

COLUMNS: tuple[str, ...] = tuple(n for n, _ in schema.INDICATOR)
LIST_COLUMNS: frozenset[str] = frozenset(n for n, t in schema.INDICATOR if t.endswith("[]"))
NO_INDICATORS = "no indicators yet: run `threatscope enrich` first"


def indicator_rows(ws: Workspace, *, period: Period | None = None,
                   min_sightings: int = 1) -> list[dict[str, Any]]:
    """Indicators seen in ``period`` (their first_seen..last_seen overlaps it; None = all) with at
    least ``min_sightings`` sightings (NULL counts as 0). A row without any timestamp is left out:
    nothing can say when it was valid. Counts are the table's own (all time): the table has no
    per-day breakdown to restrict them to the period."""
    where = ["coalesce(first_seen, last_seen) IS NOT NULL", "coalesce(sightings, 0) >= ?"]
    params: list[Any] = [min_sightings]
    if period is not None:
        where += ["coalesce(last_seen, first_seen) >= ?", "coalesce(first_seen, last_seen) < ?"]
        params += [datetime.combine(period.start, datetime.min.time()),
                   datetime.combine(period.end, datetime.min.time())]
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    with ws.connect(read_only=True) as con:
        if "indicator" not in relations(con):
            raise UserError(NO_INDICATORS)
        cur = con.execute(f"SELECT {cols} FROM indicator WHERE {' AND '.join(where)} "
                          "ORDER BY indicator_type, value, role", params)
        rows = [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]
    for r in rows:
        for c in LIST_COLUMNS:  # sorted, without NULLs or repeats: the same set, the same text
            r[c] = sorted({x for x in r[c] or () if x is not None})
        r["first_seen"] = r["first_seen"] or r["last_seen"]
        r["last_seen"] = max(r["last_seen"] or r["first_seen"], r["first_seen"])
    return rows
