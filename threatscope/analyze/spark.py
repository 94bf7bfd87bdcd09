"""The analysis on Spark: a DuckDB-like connection over a SparkSession.

    from threatscope.analyze.spark import SparkConnection
    con = SparkConnection(spark, ws)                 # the workspace's views (spark/lake.py)
    con.execute("SELECT count(*) FROM det WHERE ts >= ?", [day]).fetchall()

The analysis (figures, relations, peers, exposure) is written once, in DuckDB SQL: this
connection translates each statement to Spark SQL (:func:`threatscope.spark.sql.to_spark`)
and returns rows with
the Python types DuckDB returns (naive datetimes, dates, lists), so that
``metrics.analyze(..., engine="spark")`` writes the document DuckDB writes.

What analyze asks of a DuckDB connection: ``execute(sql, params)`` with ``fetchall`` /
``fetchone`` / ``description``; ``register`` / ``unregister`` of Arrow tables;
``CREATE OR REPLACE TEMP TABLE|VIEW name AS ...`` (a table is a checkpointed temp view); the
catalog query of :func:`threatscope.workspace.relations`. ``SET`` and macros (DuckDB only: the
analysis does not call them) are ignored.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from threatscope.spark.sql import to_spark
from threatscope.workspace import Workspace

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

_CREATE = re.compile(
    r"^\s*CREATE\s+OR\s+REPLACE\s+TEMP(?:ORARY)?\s+(TABLE|VIEW)\s+(\w+)\s+AS\s+(.*)$",
    re.S | re.I)
_IGNORED = re.compile(r"^\s*(SET\s|CREATE\s+(OR\s+REPLACE\s+)?TEMP(ORARY)?\s+MACRO\s)", re.I)
# DuckDB's table of tables (workspace.relations): answered from Spark's temp views
_CATALOG = "information_schema.tables"
_CATALOG_COPIES = ("run_history",)  # the last detect run's rule sets (metrics._rules_summary)
_DEBUG = bool(os.environ.get("THREATSCOPE_SPARK_SQL_DEBUG"))


class SparkResult:
    """The rows of one statement (``fetchall``, ``fetchone``, ``description`` as DuckDB's)."""

    def __init__(self, names: list[str], rows: list[tuple]):
        self.description = [(n, None, None, None, None, None, None) for n in names]
        self._rows = rows
        self._next = 0

    def fetchall(self) -> list[tuple]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    def fetchone(self) -> tuple | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]


class SparkConnection:
    """What the analysis uses of a DuckDB connection, on a SparkSession (see the module doc).

    ``ws``: register the workspace's views (spark/lake.py) first. A context manager: on exit
    the tables it materialised are freed. Its queries may run from several threads at once
    (``concurrent_queries``: figures.ahead): each Spark query waits mostly on planning and job
    scheduling, which queries in flight together share."""

    concurrent_queries = 6

    def __init__(self, spark: SparkSession, ws: Workspace | None = None):
        self.spark = spark
        self._tables: dict[str, DataFrame] = {}
        self._sql: dict[str, str] = {}
        if ws is not None:
            from threatscope.spark.lake import _from_duckdb, register_views

            register_views(spark, ws)
            # catalog tables the analysis reads besides the lake's views (small: copied)
            with ws.connect(read_only=True) as duck:
                for name in _CATALOG_COPIES:
                    _from_duckdb(spark, duck, name).createOrReplaceTempView(name)

    def __enter__(self) -> SparkConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for df in self._tables.values():
            _release(df)
        self._tables.clear()

    def translate(self, sql: str, params: list[Any] | None = None) -> str:
        """The Spark SQL of one DuckDB statement (``?`` parameters inlined as literals)."""
        key = sql if not params else None
        if key is not None and key in self._sql:
            return self._sql[key]
        out = to_spark(sql, params)
        if key is not None:
            self._sql[key] = out
        return out

    def execute(self, sql: str, params: list[Any] | None = None) -> SparkResult:
        """Run one DuckDB statement on Spark."""
        if _IGNORED.match(sql):
            return SparkResult([], [])
        if _CATALOG in sql:
            names = [r.tableName for r in self.spark.sql("SHOW TABLES").collect()
                     if r.isTemporary]
            return SparkResult(["table_name"], [(n,) for n in names])
        m = _CREATE.match(sql)
        if m:
            kind, name, body = m.group(1).upper(), m.group(2), m.group(3)
            df = self._sql_df(self.translate(body, params))
            old = self._tables.pop(name, None)
            if kind == "TABLE":
                # computed once, as DuckDB's temp table: several figures read it. Not cache():
                # a cached plan is found again by comparing plans, and one with nondeterministic
                # parts (input_file_name, row numbers) never matches: every figure recomputed
                # det (3x slower analysis). A checkpoint is the rows themselves.
                try:
                    df = df.localCheckpoint()
                except Exception as e:
                    if _DEBUG:
                        raise RuntimeError(f"{name}: {e}"[:2000]) from e
                    raise
                self._tables[name] = df
            df.createOrReplaceTempView(name)
            if old is not None:
                _release(old)
            return SparkResult([], [])
        return _fetch(self._sql_df(self.translate(sql, params)))

    def _sql_df(self, text: str) -> DataFrame:
        try:
            return self.spark.sql(text)
        except Exception as e:  # the statement with Spark's error: what the rewrite missed
            if _DEBUG:
                raise RuntimeError(f"{e}\n-- Spark SQL:\n{text}") from e
            raise

    def sql(self, sql: str) -> SparkResult:
        return self.execute(sql)

    def register(self, name: str, table: pa.Table) -> None:
        """An Arrow table as temp view ``name``."""
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)


def _release(df: DataFrame) -> None:
    """Free a checkpointed DataFrame's rows now (classic Spark; on Spark Connect the server
    frees them once nothing refers to them)."""
    try:
        df._jdf.queryExecution().logical().rdd().unpersist(False)
    except Exception:  # no JVM handle (Spark Connect): left to the server
        pass


def _fetch(df: DataFrame) -> SparkResult:
    table = df.toArrow()
    cols = [_py(c.to_pylist()) for c in table.columns]
    return SparkResult(list(table.column_names), list(zip(*cols, strict=True)))


def _py(values: list[Any]) -> list[Any]:
    """Values as DuckDB returns them: timestamps without a zone (Spark's TIMESTAMP is UTC)."""
    return [_plain(v) for v in values]


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.replace(tzinfo=None)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
