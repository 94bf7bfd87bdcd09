"""Small SQL/RE2 text helpers and the requirement types shared by the compiler and the matcher
(kept apart from the compiler so that matching never imports pySigma)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Requirement of an expression: it implies (one of the literals occurs, lower-cased, in its
# column) OR (one of the "loose" SQL parts, which have no literal, is true).
# A loose part is ("sql", expression) or ("re", column key, RE2 pattern): the prefilter ORs all
# regexes of a column into one alternation, so they cost one scan of the column together.
Req = tuple[frozenset[tuple[str, str]], tuple[tuple[str, ...], ...]]
Expr = list
Atom = tuple[str | None, str, Req]  # (the one column read, or None for several; SQL; requirement)


def sql_str(s: str) -> str:
    """A SQL string literal (DuckDB does not interpret backslashes in '...')."""
    return "'" + s.replace("'", "''") + "'"


_QUOTED = re.compile(r'"([^"\n]+)"')


def read_columns(sql: str, columns: Iterable[str]) -> set[str]:
    """The columns among ``columns`` (a table's) and field columns of them (see field_column)
    that ``sql`` reads: the compiler quotes every name it reads."""
    names = set(columns)
    code = " ".join(sql.split("'")[0::2])  # outside '...' literals ('' inside one: empty)
    return {m for m in _QUOTED.findall(code)
            if m in names or ((f := field_column(m)) is not None and f[0] in names)}


def field_column(column: str) -> tuple[str, str] | None:
    """(JSON object column, field name) when ``column`` names a field inside one
    (``<column>.<name>``: a request header, a Windows event's data), else None. Such a column is
    not stored: whoever runs the rules adds it (``with_fields``)."""
    parent, dot, name = column.partition(".")
    return (parent, name) if dot and name else None


def with_fields(source: str, columns: list[str]) -> str:
    """A SELECT of ``source`` (a query) with the field ``columns`` (see field_column) added:
    one JSON parse per row and object column (a struct of every field; DuckDB's struct keys
    ignore case, so a second spelling of a name is looked up on its own)."""
    in_struct: dict[str, dict[str, str]] = {}  # parent -> lower-cased name -> name
    taken = []
    for c in columns:
        parent, name = field_column(c)  # type: ignore[misc]
        first = in_struct.setdefault(parent, {}).setdefault(name.lower(), name)
        if first == name:
            taken.append(f'"__f_{parent}"."{name}" AS "{c}"')
        else:
            path = sql_str('$."' + name + '"')
            taken.append(f'json_extract_string("{parent}", {path}) AS "{c}"')
    parsed = ", ".join(
        f'json_transform("{p}", '
        + sql_str("{" + ", ".join(f'"{n}": "VARCHAR"' for n in names.values()) + "}")
        + f') AS "__f_{p}"' for p, names in in_struct.items())
    structs = ", ".join(f'"__f_{p}"' for p in in_struct)
    return (f"SELECT * EXCLUDE ({structs}), {', '.join(taken)} "
            f"FROM (SELECT *, {parsed} FROM ({source}))")


def re2_escape(s: str) -> str:
    """``s`` as an RE2 literal (ASCII punctuation backslashed, the rest as \\x{..})."""
    out = []
    for ch in s:
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif ch.isascii() and ch.isprintable() and ch != " ":
            out.append("\\" + ch)
        else:
            out.append(f"\\x{{{ord(ch):x}}}")
    return "".join(out)
