"""Detection on Apache Spark: the rules' Spark SQL (``CompiledRule.spark_sql``, the compiler's
Spark dialect) over Spark DataFrames, with the results of the DuckDB engine.

    from threatscope.detect.spark import evaluate_spark
    evaluate_spark(spark, load_rules(), "http", [{"url_original": "/?id=1 union select 1"}])

    hits = match_frame(df, rules, keep=["__row"])   # keep + hits (indexes into rules)

Every rule of a table runs in one pass over it: one projection holding each rule's condition
(``CASE WHEN <rule> THEN i END``), the hits an array of rule indexes. Fields inside JSON object
columns (``event_data.Image``) are added as DuckDB adds them (``sqlfn.with_fields``): one
``from_json`` per object column, a second spelling of a name looked up on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from threatscope import schema
from threatscope.detect.compiler import SPARK
from threatscope.detect.ruleset import CompiledRule, RuleSet
from threatscope.detect.sqltext import read_columns
from threatscope.sqlfn import field_column

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

q = SPARK.quote


def read_fields(rules: Sequence[CompiledRule], columns: Sequence[str]) -> list[str]:
    """The field columns (see sqlfn.field_column) the rules read from a table with ``columns``
    (taken from their DuckDB SQL: both dialects read the same columns)."""
    read = read_columns("\n".join(r.sql for r in rules), columns)
    return sorted(c for c in read if field_column(c))


def with_fields(df: DataFrame, fields: Sequence[str]) -> DataFrame:
    """``df`` with the field ``fields`` (``<object column>.<name>``) as STRING columns: JSON
    keys match exactly, a nested value is its JSON text, JSON null is NULL (as DuckDB's
    json_transform to VARCHAR)."""
    if not fields:
        return df
    in_struct: dict[str, dict[str, str]] = {}  # parent -> lower-cased name -> name
    items = []
    for c in fields:
        parent, name = field_column(c)  # type: ignore[misc]
        first = in_struct.setdefault(parent, {}).setdefault(name.lower(), name)
        if first == name:
            items.append(f"{q('__f_' + parent)}.{q(name)} AS {q(c)}")
        else:  # Spark resolves struct fields ignoring case: a second spelling on its own
            items.append(f"get_json_object({q(parent)}, {SPARK.string(f'$[{name!r}]')}) AS {q(c)}")
    parsed = [
        f"from_json({q(p)}, {SPARK.string(_struct(names.values()))}) AS {q('__f_' + p)}"
        for p, names in in_struct.items()]
    return (df.selectExpr("*", *parsed).selectExpr("*", *items)
            .drop(*(f"__f_{p}" for p in in_struct)))


def _struct(names) -> str:
    return "STRUCT<" + ", ".join(f"{q(n)}: STRING" for n in names) + ">"


def match_frame(df: DataFrame, rules: Sequence[CompiledRule], keep: Sequence[str]) -> DataFrame:
    """``keep`` columns of ``df`` plus ``hits`` (ARRAY<INT>: indexes into ``rules``, all of one
    table, in order) of every row: each rule's Spark SQL on each row, in one projection."""
    if not rules:
        return df.selectExpr(*(q(k) for k in keep), "CAST(array() AS ARRAY<INT>) AS hits")
    df = with_fields(df, read_fields(rules, [n for n, _ in schema.RULE_TABLES[rules[0].table]]))
    cases = ", ".join(f"CASE WHEN {r.spark_sql} THEN {i} END" for i, r in enumerate(rules))
    return df.selectExpr(*(q(k) for k in keep),
                         f"filter(array({cases}), i -> i IS NOT NULL) AS hits")


def arrow_frame(spark: SparkSession, data: pa.Table, cols: Sequence[tuple[str, str]]) -> DataFrame:
    """``data`` (DuckDB-typed columns ``cols``, 128-bit numbers as decimal text, plus any
    others) as a Spark DataFrame with the lake's Spark types (threatscope.spark.lake)."""
    from threatscope.spark.lake import spark_type

    types = dict(cols)
    if data.num_rows == 0:
        ddl = ", ".join(f"{q(f.name)} {spark_type(types[f.name]) if f.name in types else 'BIGINT'}"
                        for f in data.schema)
        return spark.createDataFrame([], ddl)
    df = spark.createDataFrame(data)
    return df.selectExpr(*(
        f"try_cast({q(n)} AS {spark_type(types[n])}) AS {q(n)}" if types.get(n) == "UHUGEINT"
        else f"CAST({q(n)} AS {spark_type(types[n])}) AS {q(n)}" if n in types else q(n)
        for n in data.column_names))


def evaluate_spark(spark: SparkSession, ruleset: RuleSet, kind: str, data: pa.Table) -> list[list[str]]:
    """Ids of the rules of ``ruleset`` matching each row of ``data`` (the kind's columns, as
    ``stage.evaluate`` prepares them: all of them, derived ones filled in, and ``__row``)."""
    rules = ruleset.for_table(kind)
    hits: list[list[int]] = [[] for _ in range(data.num_rows)]
    df = arrow_frame(spark, data, [*schema.RULE_TABLES[kind], ("__row", "BIGINT")])
    for row in match_frame(df, rules, ["__row"]).collect():
        hits[row["__row"]] = row["hits"]
    return [[rules[i].id for i in sorted(h)] for h in hits]
