"""Sigma detection (as parsed by pySigma) -> a DuckDB SQL boolean expression over one table.

    sql, need = compile_condition(tree, "http")

Semantics (Sigma specification):
- strings match case-insensitively (both sides ``lower()``-ed) unless ``|cased``;
- ``*``/``?`` are Sigma wildcards (``%``/``_`` in LIKE); ``%``, ``_`` and ``\\`` of the value are
  escaped with ``ESCAPE '\\'``; plain, prefix, suffix and infix values use ``=``,
  ``starts_with``, ``ends_with`` and ``contains`` (no pattern at all);
- ``re`` is an unanchored RE2 search, case-sensitive unless ``|i``; ``m``/``s`` become inline
  flags;
- every leaf is two-valued (a missing field is *false*, never NULL), so ``not`` of a selection
  over a NULL field is true, as Sigma intends;
- keyword values (no field) are substring searches over the table's keyword columns
  (``mapping.KEYWORD_COLUMNS``).

Each expression also yields a *requirement* for the one-pass prefilter: a set of
``(column, literal)`` pairs of which at least one must occur (as a lower-cased substring) in any
row the expression matches, or None when there is no such cheap necessary condition.
"""

from __future__ import annotations

import re._constants as _sre
import re._parser as _sre_parse
from ipaddress import IPv4Network

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from threatscope.detect import mapping

Need = frozenset[tuple[str, str]] | None  # prefilter requirement, see module docstring


class CompileError(Exception):
    """The rule cannot be expressed over threatscope's data; the message is the reason."""


def sql_str(s: str) -> str:
    """A SQL string literal (DuckDB does not interpret backslashes in '...')."""
    return "'" + s.replace("'", "''") + "'"


class _Col:
    """A resolved field: SQL expression, DuckDB type and requirement key."""

    def __init__(self, sql: str, dtype: str, key: str, num_sql: str | None = None):
        self.sql, self.dtype, self.key, self.num_sql = sql, dtype, key, num_sql

    @property
    def is_text(self) -> bool:
        return self.dtype == "VARCHAR"

    @property
    def text(self) -> str:
        return self.sql if self.is_text else f"CAST({self.sql} AS VARCHAR)"


def resolve_field(field: str, table: str) -> _Col:
    """The column (or header lookup) a mapped Sigma field name denotes in ``table``."""
    cols = mapping.columns(table)
    if field in cols:
        num = mapping.IP_NUM_COLUMNS.get(field)
        return _Col(f'"{field}"', cols[field], field, f'"{num}"' if num in cols else None)
    if field.lower().startswith(mapping.HEADER_PREFIX) and "http_request_headers" in cols:
        name = field[len(mapping.HEADER_PREFIX):].lower()
        if not name or any(c in name for c in "\"'\\") or any(ord(c) < 33 for c in name):
            raise CompileError(f"invalid header name in field {field!r}")
        path = '$."' + name + '"'
        expr = f"json_extract_string(http_request_headers, {sql_str(path)})"
        return _Col(expr, "VARCHAR", f"header:{name}")
    raise CompileError(f"unknown field {field!r} for table {table}")


def compile_condition(node, table: str) -> tuple[str, Need]:
    """SQL and prefilter requirement of a postprocessed pySigma condition tree."""
    if isinstance(node, ConditionAND | ConditionOR):
        parts = [compile_condition(a, table) for a in node.args]
        op = " AND " if isinstance(node, ConditionAND) else " OR "
        sql = "(" + op.join(p[0] for p in parts) + ")"
        needs = [p[1] for p in parts]
        if isinstance(node, ConditionAND):
            return sql, _best(needs)
        if any(n is None for n in needs):
            return sql, None
        return sql, frozenset().union(*needs)
    if isinstance(node, ConditionNOT):
        sql, _ = compile_condition(node.args[0], table)
        return f"(NOT {sql})", None
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _field_value(resolve_field(node.field, table), node.value, table)
    if isinstance(node, ConditionValueExpression):
        return _keyword(node.value, table)
    raise CompileError(f"unsupported condition element {type(node).__name__}")


# Literals shorter than this occur in almost every row: such a requirement filters nothing and
# is treated as "no requirement" (the rule is then evaluated on every row on its own).
MIN_LITERAL = 3


def _need(key: str, lits) -> Need:
    lits = frozenset(lits)
    if not lits or min(len(x) for x in lits) < MIN_LITERAL:
        return None
    return frozenset((key, x) for x in lits)


def _best(needs: list[Need]) -> Need:
    """For AND: any child's requirement is necessary; keep the most selective one."""
    cands = [n for n in needs if n]
    if not cands:
        return None
    # longest shortest-literal first (a short literal lets many rows through), then fewer pairs
    return max(cands, key=lambda n: (min(len(lit) for _, lit in n), -len(n)))


def _keyword(value, table: str) -> tuple[str, Need]:
    cols = mapping.KEYWORD_COLUMNS.get(table)
    if not cols:
        raise CompileError(f"keyword rules are not supported for table {table}")
    if isinstance(value, SigmaNumber | SigmaBool):
        value = SigmaString(str(value).lower())
    if isinstance(value, SigmaString):
        if not value.startswith(SpecialChars.WILDCARD_MULTI):
            value = SpecialChars.WILDCARD_MULTI + value
        if not value.endswith(SpecialChars.WILDCARD_MULTI):
            value = value + SpecialChars.WILDCARD_MULTI
    elif not isinstance(value, SigmaRegularExpression | SigmaExpansion):
        raise CompileError(f"unsupported keyword value type {type(value).__name__}")
    parts = [_field_value(resolve_field(c, table), value, table) for c in cols]
    sql = "(" + " OR ".join(p[0] for p in parts) + ")" if len(parts) > 1 else parts[0][0]
    needs = [p[1] for p in parts]
    return sql, None if any(n is None for n in needs) else frozenset().union(*needs)


def _two_valued(sql: str) -> str:
    return f"coalesce({sql}, false)"


def _field_value(col: _Col, value, table: str) -> tuple[str, Need]:
    if isinstance(value, SigmaExpansion):  # base64offset, windash: alternatives, always OR
        parts = [_field_value(col, v, table) for v in value.values]
        sql = "(" + " OR ".join(p[0] for p in parts) + ")"
        needs = [p[1] for p in parts]
        return sql, None if any(n is None for n in needs) else frozenset().union(*needs)
    if isinstance(value, SigmaString):  # includes SigmaCasedString
        return _string(col, value, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaNull):
        return f"({col.sql} IS NULL)", None
    if isinstance(value, SigmaExists):
        return f"({col.sql} IS {'NOT ' if value.exists else ''}NULL)", None
    if isinstance(value, SigmaBool):
        return _string(col, SigmaString("true" if value.boolean else "false"), cased=False)
    if isinstance(value, SigmaCompareExpression):
        return _compare(col, value), None
    if isinstance(value, SigmaNumber):
        if col.is_text:
            return _string(col, SigmaString(str(value.number)), cased=False)
        return _two_valued(f"{col.sql} = {_num(value)}"), None
    if isinstance(value, SigmaRegularExpression):
        return _regex(col, value)
    if isinstance(value, SigmaCIDRExpression):
        return _cidr(col, value)
    if isinstance(value, SigmaFieldReference):
        other = resolve_field(value.field, table)
        a, b = f"lower({col.text})", f"lower({other.text})"
        if value.starts_with and value.ends_with:
            sql = f"contains({a}, {b})"
        elif value.starts_with:
            sql = f"starts_with({a}, {b})"
        elif value.ends_with:
            sql = f"ends_with({a}, {b})"
        else:
            sql = f"{a} = {b}"
        return _two_valued(sql), None
    raise CompileError(f"unsupported value type {type(value).__name__} (modifier not supported)")


def _num(value: SigmaNumber) -> str:
    n = value.number
    return repr(n) if isinstance(n, float) else str(int(n))


_OPS = {
    CompareOperators.LT: "<",
    CompareOperators.LTE: "<=",
    CompareOperators.GT: ">",
    CompareOperators.GTE: ">=",
}


def _compare(col: _Col, value: SigmaCompareExpression) -> str:
    op = _OPS.get(value.op)
    if op is None:
        op = "<>"  # CompareOperators.NEQ (the `neq` modifier)
    x = f"TRY_CAST({col.sql} AS DOUBLE)" if col.is_text else col.sql
    return _two_valued(f"{x} {op} {_num(value.number)}")


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lower_lit(s: str) -> str:
    # Python and DuckDB agree on ASCII case mapping; leave anything else to DuckDB's lower()
    return sql_str(s.lower()) if s.isascii() else f"lower({sql_str(s)})"


def _string(col: _Col, value: SigmaString, cased: bool) -> tuple[str, Need]:
    parts = list(value.s)
    for p in parts:
        if isinstance(p, Placeholder):
            raise CompileError(f"placeholder %{p.name}% has no value (placeholders are not supported)")
    x = col.text if cased else f"lower({col.text})"
    lit = sql_str if cased else _lower_lit
    strs = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if not isinstance(p, str)]
    star = SpecialChars.WILDCARD_MULTI
    if not specials:
        sql = f"{x} = {lit(''.join(strs))}"
    elif all(p is star for p in parts):
        sql = f"{col.sql} IS NOT NULL"
    elif len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(parts[1], str):
        sql = f"contains({x}, {lit(parts[1])})"
    elif len(parts) == 2 and parts[1] is star and isinstance(parts[0], str):
        sql = f"starts_with({x}, {lit(parts[0])})"
    elif len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
        sql = f"ends_with({x}, {lit(parts[1])})"
    else:
        pat = "".join(
            _like_escape(p) if isinstance(p, str) else ("%" if p is star else "_") for p in parts
        )
        sql = f"{x} LIKE {lit(pat)} ESCAPE '\\'"
    return _two_valued(sql), _string_need(col, strs)


def _ascii_runs(s: str) -> list[str]:
    """Maximal ASCII runs of the lower-cased text (non-ASCII case mapping is left to DuckDB)."""
    runs, run = [], ""
    for ch in s.lower():
        if ch.isascii():
            run += ch
        else:
            runs.append(run)
            run = ""
    runs.append(run)
    return [r for r in runs if r]


def _string_need(col: _Col, strs: list[str]) -> Need:
    # each literal part of the value is a necessary substring of lower(column): keep the longest
    runs = [r for s in strs for r in _ascii_runs(s)]
    return _need(col.key, [max(runs, key=len)]) if runs else None


def regex_literals(pattern: str) -> frozenset[str] | None:
    """Lower-cased literals of which one occurs in every text ``pattern`` matches, or None.

    Parsed with Python's regex parser (RE2 syntax is a subset for what matters here); anything
    it does not understand gives None, which only costs speed, never a missed match.
    """
    if "[:" in pattern or "\\Q" in pattern:  # POSIX classes / quoting: Python reads them otherwise
        return None
    try:
        tree = _sre_parse.parse(pattern)
    except Exception:  # noqa: BLE001 - unparseable here means "no literal", not an error
        return None
    return _seq_literals(list(tree))


def _char(op, av) -> str | None:
    if op is _sre.LITERAL:
        c = chr(av).lower()
        return c if c.isascii() else None
    if op is _sre.IN and av and all(o is _sre.LITERAL for o, _ in av):
        cs = {chr(a).lower() for _, a in av}  # [Ss] and the like: one letter, any case
        if len(cs) == 1 and next(iter(cs)).isascii():
            return cs.pop()
    return None


def _seq_literals(items) -> frozenset[str] | None:
    cands: list[frozenset[str]] = []
    run = ""
    for op, av in items:
        ch = _char(op, av)
        if ch is not None:
            run += ch
            continue
        if op is _sre.AT:  # zero-width: neighbours stay adjacent
            continue
        if run:
            cands.append(frozenset([run]))
            run = ""
        sub = None
        if op is _sre.SUBPATTERN:
            sub = _seq_literals(av[3])
        elif op is _sre.ATOMIC_GROUP:
            sub = _seq_literals(av)
        elif op is _sre.BRANCH:
            alts = [_seq_literals(b) for b in av[1]]
            sub = None if any(a is None for a in alts) else frozenset().union(*alts)
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            sub = _seq_literals(av[2])
        if sub:
            cands.append(sub)
    if run:
        cands.append(frozenset([run]))
    cands = [c for c in cands if min(len(x) for x in c) >= MIN_LITERAL]
    if not cands:
        return None
    return max(cands, key=lambda c: (min(len(x) for x in c), -len(c)))


def _regex(col: _Col, value: SigmaRegularExpression) -> tuple[str, Need]:
    if value.regexp.contains_placeholder():
        raise CompileError("placeholders in regular expressions are not supported")
    flags = ""
    if SigmaRegularExpressionFlag.IGNORECASE in value.flags:
        flags += "i"
    if SigmaRegularExpressionFlag.MULTILINE in value.flags:
        flags += "m"
    if SigmaRegularExpressionFlag.DOTALL in value.flags:
        flags += "s"
    pattern = value.regexp.to_plain(regex=True)
    lits = regex_literals(pattern)
    if flags:
        pattern = f"(?{flags}){pattern}"
    sql = _two_valued(f"regexp_matches({col.text}, {sql_str(pattern)})")
    return sql, _need(col.key, lits) if lits else None


_V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96, how schema stores IPv4 in *_ip_num


def _cidr(col: _Col, value: SigmaCIDRExpression) -> tuple[str, Need]:
    net = value.network
    if col.num_sql is not None:
        lo = int(net.network_address)
        if isinstance(net, IPv4Network):
            lo += _V4_MAPPED
        hi = lo + net.num_addresses - 1
        sql = f"{col.num_sql} BETWEEN '{lo}'::UHUGEINT AND '{hi}'::UHUGEINT"
        return _two_valued(sql), None
    if not col.is_text:
        raise CompileError(f"cidr on non-text column {col.key}")
    # no numeric twin: prefix patterns of the network's textual form (pySigma's expansion)
    parts = [_string(col, SigmaString(p), cased=False) for p in value.expand("*")]
    sql = "(" + " OR ".join(p[0] for p in parts) + ")"
    needs = [p[1] for p in parts]
    return sql, None if any(n is None for n in needs) else frozenset().union(*needs)
