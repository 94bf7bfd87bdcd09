"""threatscope analyze stage: a period against its baseline (see docs/architecture.md).

    from threatscope.analyze import analyze, parse_period
    metrics = analyze(ws, parse_period("2018Q2"))   # analyze(ws): the latest quarter
    assert metrics["consistency"]["ok"], metrics["consistency"]["problems"]

Figures are defined as data in :mod:`threatscope.analyze.figures` (``figure_rows`` lists the
rows behind one), checked by :func:`check_consistency`.
"""

from threatscope.analyze.consistency import check_consistency
from threatscope.analyze.metrics import analyze, change, parse_period
from threatscope.analyze.period import Period

__all__ = ["Period", "analyze", "change", "check_consistency", "parse_period"]
