"""Small SQL text helpers shared by the compiler and the engine (kept apart from the compiler so
that matching never imports pySigma)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from threatscope.sqlfn import field_column, with_fields

Expr = list  # a rule as the engine evaluates it (see compiler)


_QUOTED = re.compile(r'"([^"\n]+)"')

# (field columns: threatscope.sqlfn, which ingest shares)


def read_columns(sql: str, columns: Iterable[str]) -> set[str]:
    """The columns among ``columns`` (a table's) and field columns of them (see field_column)
    that ``sql`` reads: the compiler quotes every name it reads."""
    names = set(columns)
    code = " ".join(sql.split("'")[0::2])  # outside '...' literals ('' inside one: empty)
    return {m for m in _QUOTED.findall(code)
            if m in names or ((f := field_column(m)) is not None and f[0] in names)}


def with_read_fields(source: str, sql: str, columns: Iterable[str]) -> str:
    """``source`` (a query over a table with ``columns``) with the field columns that ``sql``
    reads added (see sqlfn.field_column); ``source`` itself when it reads none."""
    fields = sorted(c for c in read_columns(sql, columns) if field_column(c))
    return with_fields(source, fields) if fields else source
