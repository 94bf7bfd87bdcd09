"""threatscope explore stage: every figure traceable to its events, and the dashboard.

    from threatscope.explore import Provenance
    with Provenance.open(ws, Period.parse("2018Q2")) as prov:
        prov.count("campaigns[campaign=gpon]")     # the figure's value, for a count figure
        rows = list(prov.rows("campaigns[campaign=gpon]", limit=20))   # with raw and fields

`threatscope explain` prints and exports these rows; `threatscope serve` (explore.serve) shows
them in a local read-only web app.
"""

from threatscope.explore.provenance import Provenance, Target, lake_join, target, write_rows

__all__ = ["Provenance", "Target", "lake_join", "target", "write_rows"]
