"""Fixtures shared by test folders."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark_session():
    """One local Spark session (two cores) per test worker: Spark keeps one per process, and
    starting it takes seconds. Skipped where pyspark is not installed (`make install` does)."""
    pytest.importorskip("pyspark")
    from threatscope import spark

    s = spark.session("local[2]", conf={"spark.sql.shuffle.partitions": "2"})
    yield s
    s.stop()


# The longest test files, started first: `make test` runs pytest -n 2 --dist loadfile
# --no-loadscope-reorder, which hands files to the workers in this order (xdist's own order,
# by number of tests, would start a long file of two tests last).
SLOW_FIRST = ("tests/spark/test_e2e.py", "tests/explore/test_browser.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the others keep their order
