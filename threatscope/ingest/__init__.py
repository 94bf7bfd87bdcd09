"""threatscope ingest stage: log files -> Parquet lake + ingest manifest + quarantine.

    from threatscope.ingest import ingest_paths
    summary = ingest_paths(ws, ["logs/"], org=None, fmt="auto")
    print(summary.to_dict())

Formats are plug-ins in ``threatscope.ingest.formats`` (auto-detected per file, or forced with
``fmt``). Per file: lines_read = rows_written + rows_quarantined + comment_lines + lines_ignored.
See ``lake`` for the commit protocol (idempotent, safe against kill -9) and docs/architecture.md.
"""

from threatscope.ingest.formats import FORMATS
from threatscope.ingest.pipeline import IngestSummary, ingest_paths

__all__ = ["FORMATS", "IngestSummary", "ingest_paths"]
