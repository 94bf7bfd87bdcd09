"""Hypothesis profiles of the fuzz tests: ``brief`` in ``make test`` (few examples, the same
ones on every run, so CI is reproducible), ``long`` in ``make fuzz`` (many random examples;
failures found are kept in ``.hypothesis/`` and replayed first next time). Choose with
``THREATSCOPE_FUZZ=brief|long``; ``THREATSCOPE_FUZZ_EXAMPLES`` sets the long run's count.

A crash, hang or silent drop found by a long run becomes an ``@example`` of its test (a
regression test that runs in every profile)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("brief", max_examples=15, deadline=None, derandomize=True,
                          database=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("long", deadline=None, suppress_health_check=_SLOW_OK,
                          max_examples=int(os.environ.get("THREATSCOPE_FUZZ_EXAMPLES", "500")),
                          print_blob=True)
settings.load_profile(os.environ.get("THREATSCOPE_FUZZ", "brief"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/fuzz/" in item.nodeid or item.nodeid.startswith("fuzz/"):
            item.add_marker(pytest.mark.fuzz)
