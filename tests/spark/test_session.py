"""Starting Spark: a real local session, and the errors a user can fix before anything runs."""

from __future__ import annotations

import os
import stat

import pytest

from threatscope import spark
from threatscope.errors import UserError


def test_a_local_session_runs_sql_in_utc(spark_session):
    row = spark_session.sql("SELECT CAST(TIMESTAMP '2018-05-12 10:00:00' AS STRING) AS t, "
                            "current_timezone() AS tz").collect()[0]
    assert (row.t, row.tz) == ("2018-05-12 10:00:00", "UTC")


def test_unknown_engine():
    assert spark.check_engine("spark") == "spark"
    with pytest.raises(UserError, match="unknown engine 'flink' .*duckdb, spark"):
        spark.check_engine("flink")


def test_no_java_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # no bin/java there
    with pytest.raises(UserError, match=r"Spark needs Java 17 or later \(JAVA_HOME=.* has no "
                                        r"bin/java\): install a JDK"):
        spark._java()


def test_an_old_java_is_named(tmp_path, monkeypatch):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'java version "1.8.0_392"\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(UserError, match="is Java 8: install a newer JDK"):
        spark._java()


def test_the_installed_java_is_accepted(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    spark._java()  # Java 17 is on this machine (and on CI)


@pytest.mark.parametrize(("url", "message"), [
    ("spark://127.0.0.1:9", "cannot reach the Spark master .*127.0.0.1:9"),
    ("mesos-ish://x", "is not a spark://host:port URL"),
])
def test_a_master_that_does_not_answer_fails_fast(url, message):
    with pytest.raises(UserError, match=message):
        spark.session(url)


def test_a_spark_connect_server_that_does_not_answer(monkeypatch):
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:9")
    with pytest.raises(UserError, match="cannot reach the Spark Connect server .*127.0.0.1:9"):
        spark.session()
    assert os.environ["SPARK_REMOTE"] == "sc://127.0.0.1:9"
