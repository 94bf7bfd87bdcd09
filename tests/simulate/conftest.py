"""Shared simulations (a full-scale run takes a while: run it once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from threatscope.simulate import simulate


@pytest.fixture(scope="session")
def full_sim(tmp_path_factory) -> Path:
    """``simulate(seed=7, scale=1)`` as ``threatscope demo`` writes it."""
    return simulate(tmp_path_factory.mktemp("full") / "out", seed=7)
