"""DuckDB SQL as Spark SQL: one text of a query for both engines.

    from threatscope.spark.sql import to_spark
    spark.sql(to_spark("SELECT list(x) FILTER (WHERE x > ?) FROM t", [1]))

sqlglot carries the syntax across (quoting, functions, 1-based list indexes); :func:`_spark_ast`
rewrites what its Spark text would mean something else by (DuckDB's ``list()`` of no rows is
NULL, ``any_value`` skips NULLs, ``mode``'s ties, ``regexp_replace``'s group references, ...).
The analysis (analyze/spark.py) and the Sigma correlations (detect/correlation.py) are written
once, in DuckDB SQL, and run on Spark through this.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlglot
from sqlglot import exp


def to_spark(sql: str, params: list[Any] | None = None) -> str:
    """The Spark SQL of one DuckDB statement (``?`` parameters inlined as literals)."""
    return _spark_ast(sqlglot.parse_one(sql, read="duckdb"), params or []).sql(dialect="spark")


def _literal(v: Any) -> exp.Expression:
    if v is None:
        return exp.null()
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, int | float | Decimal):
        return exp.Literal.number(v)
    if isinstance(v, datetime):
        return exp.cast(exp.Literal.string(v.isoformat(sep=" ")), "TIMESTAMP")
    if isinstance(v, date):
        return exp.cast(exp.Literal.string(v.isoformat()), "DATE")
    if isinstance(v, list | tuple):
        return exp.Array(expressions=[_literal(x) for x in v])
    return exp.Literal.string(str(v))


def _regexp_replace(node: exp.RegexpReplace) -> exp.Expression:
    """DuckDB's regexp_replace(s, p, r[, 'gi']) as Spark's: group references $1 (not \\1),
    the ``i`` option as (?i). Without ``g`` DuckDB replaces the first match only and Spark
    every one: the analysis's patterns without ``g`` are anchored (one match at most)."""
    node = node.copy()
    mods = node.args.get("modifiers")
    flags = mods.name if isinstance(mods, exp.Literal) else ""
    pattern, repl = node.expression, node.args.get("replacement")
    if "i" in flags and isinstance(pattern, exp.Literal):
        node.set("expression", exp.Literal.string("(?i)" + pattern.name))
    if isinstance(repl, exp.Literal):
        text = re.sub(r"\$", r"\\$", repl.name)
        node.set("replacement", exp.Literal.string(re.sub(r"\\(\d)", r"$\1", text)))
    node.set("modifiers", None)
    node.set("single_replace", None)
    return node


def _spark_ast(tree: exp.Expression, params: list[Any]) -> exp.Expression:
    """The DuckDB statement ``tree`` rewritten where sqlglot's Spark text would differ."""
    values = iter(params)

    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder):
            return _literal(next(values))
        # the analysis takes len() of lists only (Spark's length() is of strings)
        if isinstance(node, exp.Length):
            return exp.func("size", node.this)
        # DuckDB's mode(x ORDER BY x): the first of the most frequent by x; Spark: the lowest
        if isinstance(node, exp.Anonymous) and node.name.lower() == "mode" or (
                type(node).__name__ == "Mode"):
            arg = node.this if not isinstance(node, exp.Anonymous) else node.expressions[0]
            if isinstance(arg, exp.Order):
                arg = arg.this
            return exp.Anonymous(this="mode", expressions=[arg, exp.true()])
        if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
            node = node.copy()
            node.set("materialized", None)  # a hint DuckDB reads; Spark plans CTEs itself
            return node
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name == "hash":  # an id only: 64 bits, as DuckDB's (fewer collisions)
                return exp.Anonymous(this="xxhash64", expressions=node.expressions)
            if name == "arg_max_null":  # Spark's max_by also keeps a NULL value
                return exp.Anonymous(this="max_by", expressions=node.expressions)
        # DuckDB's list() of no rows is NULL, Spark's collect_list []: NULL for none (the
        # analysis lists no NULL elements, which DuckDB would keep and Spark drop)
        if (isinstance(node, exp.Filter) and isinstance(node.this, exp.ArrayAgg)
                or isinstance(node, exp.ArrayAgg) and not isinstance(node.parent, exp.Filter)):
            return exp.Nullif(this=node.copy(), expression=exp.Array(expressions=[]))
        # count(DISTINCT x) OVER (...): Spark has no distinct window aggregates; the size of
        # the set of x (both leave NULLs out)
        if (isinstance(node, exp.Window) and isinstance(node.this, exp.Count)
                and isinstance(node.this.this, exp.Distinct)):
            node = node.copy()
            node.set("this", exp.Anonymous(this="collect_set",
                                           expressions=node.this.this.expressions))
            return exp.func("size", node)
        if isinstance(node, exp.ArrayOverlaps):  # sqlglot writes &&, which Spark lacks
            return exp.Anonymous(this="arrays_overlap", expressions=[node.this, node.expression])
        if isinstance(node, exp.TimeToUnix):  # epoch(): seconds with their fraction
            micros = exp.Anonymous(this="unix_micros",
                                   expressions=[exp.cast(node.this, "TIMESTAMP")])
            return exp.Div(this=micros, expression=exp.Literal.number(1000000.0))
        # DuckDB's any_value skips NULLs: Spark's any_value(x, true) (IGNORE NULLS would not
        # parse before FILTER)
        if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
            node = node.this
        if isinstance(node, exp.AnyValue):
            return exp.Anonymous(this="any_value", expressions=[node.this, exp.true()])
        if isinstance(node, exp.PercentileCont):  # Spark's percentile interpolates as it
            return exp.Anonymous(this="percentile", expressions=[node.this, node.expression])
        if isinstance(node, exp.RegexpReplace):
            return _regexp_replace(node)
        # row_number() OVER (): any numbering (Spark wants an order; DuckDB's is the scan's)
        if (isinstance(node, exp.Window) and isinstance(node.this, exp.RowNumber)
                and not node.args.get("order")):
            node = node.copy()
            node.set("order", exp.Order(expressions=[exp.Ordered(
                this=exp.func("monotonically_increasing_id"))]))
            return node
        return node

    return tree.transform(fix)
