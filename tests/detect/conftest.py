"""A local Spark session (two cores) for the conformance suites' Spark runs; the same session as
tests/spark's (Spark keeps one per process)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark_session():
    pytest.importorskip("pyspark")
    from threatscope import spark

    s = spark.session("local[2]", conf={"spark.sql.shuffle.partitions": "2"})
    yield s
    s.stop()
