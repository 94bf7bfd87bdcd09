"""Real public logs from ../shared/data (skipped when absent)."""

import pytest

from tests.ingest.conftest import SHARED, assert_invariant, rows, run

LOGS = sorted((SHARED / "web" / "logs").glob("*.log")) if SHARED.exists() else []
CRS = SHARED / "web" / "crs_requests.jsonl"


@pytest.mark.skipif(not LOGS or not CRS.exists(), reason="../shared/data/web not present")
def test_shared_web_logs(ws):
    s = run(ws, *LOGS, CRS)
    assert_invariant(s)
    assert s.files == len(LOGS) + 1 and not s.errors
    per = {f["path"].rsplit("/", 1)[-1]: f for f in s.per_file}
    for name, f in per.items():
        assert f["format"] == ("http-jsonl" if name.endswith(".jsonl") else "combined")
        lines = sum(1 for _ in open(SHARED / "web" / ("" if name.endswith(".jsonl") else "logs")
                                    / name, "rb"))
        assert f["lines_read"] == lines
        assert f["rows_written"] >= 0.99 * lines  # nearly every line is a request
    assert per["crs_requests.jsonl"]["rows_written"] == 5088
    # The 2004 honeynet's Nimda/CodeRed probes are there, decoded.
    hits = rows(ws, cols="source_file, source_line", where="url_decoded ILIKE '%cmd.exe%' "
                "AND source_file LIKE '%honeynet%'")
    assert len(hits) > 100
