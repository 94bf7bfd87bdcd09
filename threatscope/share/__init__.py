"""Sharing the workspace's indicators (the view ``indicator``, written by enrich) with
other organisations: STIX 2.1, MISP, CSV.

    from threatscope.share import write_stix, write_misp, write_indicators_csv
    write_stix(ws, "out/indicators.stix.json", period=Period.parse("2018Q2"))
    write_misp(ws, "out/indicators.misp.json", period=Period.parse("2018Q2"))
    write_indicators_csv(ws, "out/indicators.csv")

Only counts of organisations are shared, never their names.
"""

from threatscope.share.indicators_csv import write_indicators_csv
from threatscope.share.misp import misp_event, write_misp
from threatscope.share.rows import indicator_rows
from threatscope.share.stix import stix_bundle, write_stix

__all__ = ["indicator_rows", "misp_event", "stix_bundle", "write_indicators_csv", "write_misp",
           "write_stix"]
