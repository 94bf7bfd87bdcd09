"""The real 2004 honeynet log through ingest -> detect (skipped when ../shared/data is absent)."""

from pathlib import Path

import pytest

from threatscope import detect, ingest
from threatscope.workspace import Workspace

LOG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "web" / "logs" / (
    "honeynet_chuvakin_access_all.log"
)


@pytest.mark.skipif(not LOG.exists(), reason="../shared/data/web/logs absent")
def test_honeynet_worm_traversal_detected(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    s = ingest.ingest_paths(ws, [str(LOG)], org="honeynet")
    assert s.lines_read == s.rows_written + s.rows_quarantined + s.comment_lines + s.lines_ignored
    detect.run_detect(ws)
    with ws.connect() as con:
        worm_lines = {
            r[0]
            for r in con.execute(
                "SELECT source_line FROM http WHERE raw ILIKE '%cmd.exe%' OR raw ILIKE '%root.exe%'"
            ).fetchall()
        }
        detected = {
            r[0]
            for r in con.execute(
                # the worm rule (CVE-2000-0884/CVE-2001-0333) or generic traversal (scanners)
                "SELECT DISTINCT source_line FROM detection WHERE family IN ('lfi', 'rce')"
            ).fetchall()
        }
        codered = con.execute(
            "SELECT count(*) FROM http WHERE url_path ILIKE '%default.ida'"
        ).fetchone()[0]
        codered_detected = con.execute(
            "SELECT count(DISTINCT source_line) FROM detection WHERE list_contains(cves, 'CVE-2001-0500')"
        ).fetchone()[0]
    assert len(worm_lines) > 5000
    missed = worm_lines - detected
    assert not missed, f"{len(missed)} worm lines not detected, e.g. {sorted(missed)[:5]}"
    with ws.connect() as con:
        by_worm_rule = con.execute(
            "SELECT count(DISTINCT source_line) FROM detection "
            "WHERE list_contains(cves, 'CVE-2001-0333')"
        ).fetchone()[0]
    assert by_worm_rule > 0.95 * len(worm_lines)
    assert codered and codered_detected == codered
