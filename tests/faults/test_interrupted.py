"""Runs cut short (tests/faults/harness.py): ingest, detect, enrich and report killed with
SIGKILL at random points, or stopped by a full disk; each complete rerun gives the
uninterrupted run's totals, detections, enrichment and report.

`make test` kills the stages 8 times in all (THREATSCOPE_KILLS) and fills the disk at the
smallest write of each; `make crash` kills them several hundred times and fills the disk at up
to 8 sizes of file per stage (THREATSCOPE_FULL_DISKS; 0: every size)."""

from __future__ import annotations

import os

import pytest

from tests.faults.harness import STAGES, Harness
from threatscope.simulate import simulate

KILLS = int(os.environ.get("THREATSCOPE_KILLS", "8"))
FULL_DISKS = int(os.environ.get("THREATSCOPE_FULL_DISKS", "1"))  # per stage; 0: every size


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Harness:
    h = Harness(tmp_path_factory.mktemp("faults"),
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


@pytest.mark.parametrize("stage", STAGES)
def test_a_full_disk_stops_with_a_clear_error_and_the_rerun_equals_uninterrupted(harness, stage):
    sizes = harness.written[stage]
    assert sizes, f"{stage} wrote nothing?"
    if FULL_DISKS:  # spread over the sizes: the smallest file first, then up to the largest
        last = len(sizes) - 1
        sizes = sorted({sizes[round(i * last / max(1, FULL_DISKS - 1))]
                        for i in range(FULL_DISKS)})
    stopped = [harness.fill(stage, max(1, n - 1)) for n in sizes]
    # the smallest limit stops a run, which says why (a limit the catalog's end crosses may
    # not: DuckDB keeps the data in its WAL when the checkpoint at close cannot write)
    assert stopped[0] is not None and "could not write" in stopped[0]
    print(f"{stage}: disk full at {len(sizes)} sizes, {sum(s is not None for s in stopped)} "
          f"runs stopped; {harness.disk_full} in all")
