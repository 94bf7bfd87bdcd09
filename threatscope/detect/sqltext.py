"""Small SQL/RE2 text helpers and the requirement types shared by the compiler and the matcher
(kept apart from the compiler so that matching never imports pySigma)."""

from __future__ import annotations

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


def key_column(key: str) -> str:
    """The table column a requirement key reads: the column itself, or for a field inside a
    JSON object column (``<column>.<name>``: a request header, a Windows event's data) that
    column."""
    return key.split(".", 1)[0]


def key_sql(key: str) -> str:
    """The SQL value a requirement key denotes (see key_column)."""
    column, _, name = key.partition(".")
    if not name:
        return f'"{column}"'
    path = sql_str('$."' + name + '"')
    return f'json_extract_string("{column}", {path})'


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
