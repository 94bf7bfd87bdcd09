"""What `threatscope explain` prints: a figure's definition, its value and its first rows.

    explain_text(prov, "campaigns[campaign=gpon]", limit=5)   # -> lines of text

Text from logs is printed with control and format characters escaped: an attacker's user agent
must not drive the analyst's terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from threatscope.analyze import figures as F
from threatscope.explore.provenance import Provenance, jsonable, target
from threatscope.terminal import safe_text

RAW_CHARS = 300  # of each raw line in the text listing (exports keep it whole)
# what the listing shows of a row, in order, when the row has it
SHOWN = ("ts", "day", "org_id", "sector", "src_ip", "ip", "country_code", "as_org",
         "network_type", "classification", "rule_id", "title", "severity", "campaign", "cve",
         "technique", "evidence", "source_file", "source_line", "reason", "value", "role")


def _line(v: Any) -> str:
    if isinstance(v, list | dict):
        v = json.dumps(jsonable(v), ensure_ascii=False)
    return safe_text(str(jsonable(v))).replace("\n", "\\n")


def explain_text(prov: Provenance, figure_id: str, baseline: bool = False,
                 limit: int = 10) -> Iterator[str]:
    """The lines `threatscope explain ID` prints."""
    d = prov.definition(figure_id, baseline)
    t = target(figure_id)
    value, base_value = prov.value(figure_id)
    n = prov.count(figure_id, baseline)
    yield f"figure   {_line(d['id'])}"
    yield f"value    {_line(value)}" + (f"   (baseline {_line(base_value)})"
                                         if t.figure.windows == "compare" else "")
    yield f"window   {d['window']}" + ("   [baseline]" if baseline else "")
    yield f"measure  {d['measure']}   ({d['unit']})"
    yield f"from     {d['table']}" + (f" where {d['where']}" if "where" in d else "")
    if d["by"] if "by" in d else False:
        yield f"by       {', '.join(d['by'])}" + (f"   key {_line(t.key)}" if t.key else "")
    if t.figure.top:
        yield f"top      {t.figure.top}" + (f" per {', '.join(t.figure.partition)}"
                                            if t.figure.partition else "")
    yield f"sql      {d['sql']}   -- parameters {_line(d['parameters'])}"
    yield f"count    {n}" + ("" if t.counts else "   (events behind this ratio)")
    yield ""
    shown = 0
    for row in prov.rows(figure_id, baseline, limit=limit):
        shown += 1
        yield f"-- row {shown}"
        for k in SHOWN:
            if row.get(k) is not None and row.get(k) != []:
                yield f"   {k:<14} {_line(row[k])}"
        if row.get("raw") is not None:
            raw = row["raw"]
            cut = f" … ({len(raw)} characters)" if len(raw) > RAW_CHARS else ""
            yield f"   {'raw':<14} {_line(raw[:RAW_CHARS])}{cut}"
        for k, v in (row.get("fields") or {}).items():
            if k not in SHOWN and k != "ts":
                yield f"   {'.' + k:<14} {_line(v)[:RAW_CHARS]}"
    if shown == 0:
        yield "(no rows: nothing in this window matches the figure's definition)"
    elif shown < n and limit:
        yield f"-- first {shown} rows; --format jsonl|csv exports every one"


def figure_list() -> Iterator[str]:
    """One line per figure: its name, its key columns and what it counts."""
    for name in sorted(F.FIGURES):
        fig = F.FIGURES[name]
        key = "".join(f"[{c}=…]" for c in fig.by)
        yield f"{name}{key}\t{fig.measure} over {fig.table}"
