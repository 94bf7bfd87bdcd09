"""Helpers for JSON-lines formats: one parse of each line into a typed struct."""

from __future__ import annotations

import json

from threatscope.sqlfn import sql_str


def struct_sql(src: str, shape: dict) -> str:
    """SELECT n, line, j (the struct, NULL when the line is not a JSON object) FROM src.

    ``shape`` is a json_transform structure; a value of an unexpected type becomes NULL.
    """
    s = sql_str(json.dumps(shape))
    return (
        f"SELECT n, line, CASE WHEN json_valid(line) AND json_type(line) = 'OBJECT' "
        f"THEN json_transform(line, {s}) END AS j FROM {src}"
    )


def ts_sql(v: str) -> str:
    """A JSON timestamp value (epoch seconds as number or string, or ISO text) -> TIMESTAMP."""
    return (
        f"CASE WHEN json_type({v}) IN ('DOUBLE', 'UBIGINT', 'BIGINT') "
        f"THEN ts_epoch_ts(CAST({v} AS DOUBLE)) "
        f"WHEN try_cast({v} ->> '$' AS DOUBLE) IS NOT NULL "
        f"THEN ts_epoch_ts(try_cast({v} ->> '$' AS DOUBLE)) "
        f"ELSE ts_iso_ts({v} ->> '$') END"
    )


def headers_sql(v: str) -> str:
    """A JSON object of headers -> JSON text with lower-cased names (NULL when not an object)."""
    m = f"try_cast({v} AS MAP(VARCHAR, JSON))"
    return (
        f"CASE WHEN json_type({v}) = 'OBJECT' THEN '{{' || array_to_string(list_transform("
        f"map_entries({m}), lambda e: to_json(lower(e.key)) || ':' || e.value), ',') || '}}' END"
    )


def sniff_json(lines: list[str]) -> list[dict]:
    """The first lines that parse as JSON objects (used by the JSON sniffers)."""
    out = []
    for x in lines[:50]:
        x = x.strip()
        if not x.startswith("{"):
            continue
        try:
            obj = json.loads(x)
        except (ValueError, RecursionError):  # (deep nesting: a hostile line, not a record)
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
