"""One small workspace for the explore tests, built once per test run (shared by the xdist
workers through a lock file): simulated telemetry of several organisations at a tenth of the
demo's scale, plus an organisation whose logs and registry entry are hostile (script tags,
event handlers, javascript: URLs, control characters) and a few lines ingest must quarantine."""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from threatscope import detect, enrich, ingest
from threatscope.analyze import analyze
from threatscope.simulate import simulate
from threatscope.workspace import Org, Workspace, read_orgs_csv

HOSTILE_ORG = "evilcorp"
HOSTILE_SECTOR = '"><img src=x onerror=alert(1)>'
HOSTILE_NAME = "<script>alert('org')</script>"
HOSTILE_UA = '<script>alert("ua")</script><img src=x onerror=alert(2)>'
# a GPON exploit request (the pack's rule fires) whose URI and user agent carry markup
HOSTILE_LINES = [
    f'198.51.100.{i} - - [{d:02d}/May/2018:10:{i:02d}:00 +0000] '
    f'"POST /GponForm/diag_Form?images/{suffix} HTTP/1.1" 200 512 '
    f'"javascript:alert(3)" "{HOSTILE_UA}"'
    for i, (d, suffix) in enumerate([
        (12, "%22%3E%3Cscript%3Ealert(4)%3C/script%3E"),
        (13, "<svg/onload=alert(5)>"),
        (14, "javascript:alert(6)"),
        (15, "\x1b[31mred\u202eevil"),
    ], start=10)
]
# lines no format parses: quarantined with a reason (one carries markup)
BAD_LINES = ["<script>alert('quarantine')</script> not a log line", "\x00\x01 garbage"]


@dataclass
class Built:
    root: Path
    ws: Workspace
    data: Path
    report: dict


def _build(root: Path) -> None:
    data = simulate(root / "data", seed=5, scale=0.1)
    hostile = root / "hostile"
    hostile.mkdir()
    (hostile / "access.log").write_text("\n".join(HOSTILE_LINES + BAD_LINES) + "\n",
                                        encoding="utf-8")
    ws = Workspace.open(root / "ws", create=True)
    ws.register_orgs([*read_orgs_csv(data / "orgs.csv"),
                      Org(HOSTILE_ORG, HOSTILE_NAME, HOSTILE_SECTOR, 1)])
    ingest.ingest_paths(ws, [str(data)])
    ingest.ingest_paths(ws, [str(hostile / "access.log")], org=HOSTILE_ORG, fmt="combined")
    detect.run_detect(ws)
    enrich.run_enrich(ws)
    report = analyze(ws)
    (root / "report.json").write_text(json.dumps(report, default=str))
    (root / "done").touch()


@pytest.fixture(scope="session")
def explore_ws(tmp_path_factory, worker_id) -> Built:
    """The shared workspace (read-only: tests must not change it)."""
    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        base = base.parent  # shared by the workers of one run
    root = base / "explore-ws"
    with open(base / "explore-ws.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            if root.exists():
                import shutil

                shutil.rmtree(root)
            root.mkdir()
            _build(root)
    return Built(root, Workspace.open(root / "ws"), root / "data",
                 json.loads((root / "report.json").read_text()))
