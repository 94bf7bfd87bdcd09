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

