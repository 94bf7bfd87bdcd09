"""threatscope enrich stage: country, AS organisation and network type per source IP.

    from threatscope.enrich import run_enrich, lookup, asn_ranges
    run_enrich(ws).to_dict()        # writes source.parquet (the view `source`)
    lookup(["8.8.8.8"])             # pyarrow.Table
    asn_ranges([45090])             # Tencent's ranges, for the simulator

See ``stage`` for the join, ``ranges`` for the data and its cache, ``netclass`` for hosting/access.
"""

from threatscope.enrich.stage import EnrichSummary, asn_ranges, lookup, run_enrich

__all__ = ["EnrichSummary", "asn_ranges", "lookup", "run_enrich"]
