"""SIGKILL at random points of ingest, detect, enrich and report (tests/faults/kills.py): each
complete rerun gives the uninterrupted run's totals, detections, enrichment and report.

`make test` kills the stages 12 times in all (THREATSCOPE_KILLS); `make crash` several hundred
times."""

from __future__ import annotations

import os

import pytest

from tests.faults.kills import STAGES, Harness
from threatscope.simulate import simulate

KILLS = int(os.environ.get("THREATSCOPE_KILLS", "12"))


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Harness:
    h = Harness(tmp_path_factory.mktemp("kills"),
                seed=int(os.environ.get("THREATSCOPE_KILLS_SEED", "7")))
    h.prepare(lambda folder: simulate(folder, seed=3, scale=0.005))
    return h


@pytest.mark.parametrize("stage", STAGES)
def test_killed_and_rerun_equals_uninterrupted(harness, stage):
    share = KILLS // len(STAGES) + (STAGES.index(stage) < KILLS % len(STAGES))
    before = harness.killed
    harness.run(stage, share)
    assert harness.killed - before == share  # (a run that ends before its kill is not counted)
    print(f"{stage}: {harness.killed} kills so far, {harness.finished_early} runs ended "
          f"before their kill, {harness.compared} reruns compared")
