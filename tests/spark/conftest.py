"""One local Spark session (two cores) for the tests of a worker that needs one."""

from __future__ import annotations

import pytest

from threatscope import spark


@pytest.fixture(scope="session")
def spark_session():
    s = spark.session("local[2]", conf={"spark.sql.shuffle.partitions": "2"})
    yield s
    s.stop()
