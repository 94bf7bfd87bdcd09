"""The one-pass match query: which rules hit which rows of a table, as one DuckDB SELECT.

    cols = distinct_columns(con, "SELECT * FROM http", rules)   # low-variety columns
    con.execute(match_sql(rules, "SELECT * FROM http", "source_line", distinct=cols))

Most rule parts read one column (a user agent, a URL, ...), and in access logs those columns have
few distinct values relative to rows. Such a part is evaluated once per distinct value of its
column: for each such column a small table lists the values on which some rule part holds
(``__h``: rule indexes) or on which some multi-column part's requirement holds (``__g``: part
indexes), and it is LEFT JOINed back to the rows. The other parts (several columns, or a column
with unique values such as ``raw``) run per row, behind a cheap guard: their requirement (an
RE2 alternation of necessary literals per column, see compiler.Req) on the row-wise columns, or
their index in a joined ``__g`` list. A row is a candidate when a joined table has it or a
row-wise requirement holds; everything else is dropped before any rule runs.

``prefilter=False`` evaluates every rule's whole expression on every row: the reference the
tests compare the fast plan against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

import duckdb

from threatscope.detect.compiler import Req, key_column, re2_escape, sql_str
from threatscope.detect.ruleset import CompiledRule, RulePart

# Columns whose values are (nearly) unique per row: never worth a DISTINCT.
ROW_COLUMNS = frozenset({"raw", "source_line", "ts"})
# A column is evaluated per distinct value when a sample of rows has at most this many distinct
# values per row (DISTINCT + join costs ~1/10 of a regex scan of a row, and the hash table must
# stay small: the ratio over the whole table is lower than over a sample)
MAX_DISTINCT_RATIO = 0.5
SAMPLE_ROWS = 100_000


def _key_sql(key: str) -> str:
    if key.startswith("header:"):
        path = '$."' + key[len("header:"):] + '"'
        return f"json_extract_string(http_request_headers, {sql_str(path)})"
    return f'"{key}"'


def _key_terms(need: Req) -> tuple[dict[str, str], list[str]]:
    """One RE2 scan per requirement key: its literals (case-insensitive) and the regexes that have
    none, as a single alternation; plus the loose SQL parts as they are."""
    pairs, loose = need
    lits: dict[str, set[str]] = defaultdict(set)
    regexes: dict[str, list[str]] = defaultdict(list)
    sqls: list[str] = []
    for key, lit in pairs:
        lits[key].add(lit)
    for item in loose:
        if item[0] == "re":
            regexes[item[1]].append(item[2])
        else:
            sqls.append(item[1])
    terms = {}
    for key in sorted(set(lits) | set(regexes)):
        minimal: list[str] = []  # a literal containing another one of the column adds nothing
        for lit in sorted(lits[key], key=lambda x: (len(x), x)):
            if not any(m in lit for m in minimal):
                minimal.append(lit)
        alts = []
        if minimal:
            alts.append("(?i:" + "|".join(re2_escape(x) for x in sorted(minimal)) + ")")
        alts += [f"(?:{r})" for r in dict.fromkeys(regexes[key])]
        terms[key] = f"regexp_matches({_key_sql(key)}, {sql_str('|'.join(alts))})"
    return terms, list(dict.fromkeys(sqls))


def _any(terms: Sequence[str]) -> str:
    terms = list(dict.fromkeys(terms))
    return "(" + " OR ".join(terms) + ")" if terms else "false"


def _union(needs: Sequence[Req]) -> Req:
    return (
        frozenset().union(*(n[0] for n in needs)),
        tuple(dict.fromkeys(x for n in needs for x in n[1])),
    )


def _scan(need: Req) -> str:
    terms, sqls = _key_terms(need)
    return _any([*terms.values(), *sqls])


def _guarded(sql: str, need: Req, guard: str | None = None) -> str:
    """``sql`` behind the scan of its requirement, unless the expression is cheaper than that."""
    cheap = "regexp_matches" not in sql and len(sql) < 1500
    if cheap or (not need[0] and all(x[0] == "sql" for x in need[1])):
        return sql
    return f"{guard or _scan(need)} AND {sql}"


def prefilter_sql(rules: Sequence[CompiledRule]) -> str:
    """A row-wise condition true for every row any of ``rules`` can match."""
    return _scan(_union([r.need for r in rules])) if rules else "false"


def rule_columns(rules: Sequence[CompiledRule]) -> set[str]:
    """The columns that could be evaluated per distinct value for these rules."""
    cols = {p.column for r in rules for p in r.parts if p.column}
    for r in rules:
        for p in r.parts:
            cols |= {key_column(k) for k, _ in p.need[0]}
            cols |= {key_column(x[1]) for x in p.need[1] if x[0] == "re"}
    return cols - ROW_COLUMNS


def distinct_columns(
    con: duckdb.DuckDBPyConnection, source: str, rules: Sequence[CompiledRule],
    sample: int = SAMPLE_ROWS,
) -> frozenset[str]:
    """The columns of ``rules`` worth evaluating per distinct value, judged on the first
    ``sample`` rows of ``source`` (a column with few distinct values per row)."""
    cols = sorted(rule_columns(rules))
    if not cols:
        return frozenset()
    counts = ", ".join(f'count(DISTINCT "{c}")' for c in cols)
    names = ", ".join(f'"{c}"' for c in cols)
    n, *distinct = con.execute(
        f"SELECT count(*), {counts} FROM (SELECT {names} FROM ({source}) LIMIT {int(sample)})"
    ).fetchall()[0]
    return frozenset(c for c, d in zip(cols, distinct, strict=True) if d <= MAX_DISTINCT_RATIO * n)


def match_sql(
    rules: Sequence[CompiledRule],
    source: str,
    keep: str = "*",
    prefilter: bool = True,
    distinct: Collection[str] | None = None,
) -> str:
    """SELECT ``keep`` columns plus ``hits`` (indexes into ``rules``) of candidate rows.

    ``distinct``: the columns evaluated once per distinct value (None: every column the rules
    read alone; see :func:`distinct_columns`). Without ``prefilter`` every rule runs on every row
    (same result, slower: the reference for tests)."""
    if not rules:
        return f"SELECT {keep}, []::INTEGER[] AS hits FROM ({source}) WHERE false"
    if not prefilter:
        cases = ", ".join(f"CASE WHEN {r.sql} THEN {i} END" for i, r in enumerate(rules))
        return f"SELECT {keep}, list_distinct([{cases}]) AS hits FROM ({source})"
    dcols = rule_columns(rules) if distinct is None else set(distinct) - ROW_COLUMNS

    value_parts: dict[str, list[tuple[int, RulePart]]] = defaultdict(list)  # column -> parts
    row_parts: list[tuple[int, RulePart]] = []
    for i, r in enumerate(rules):
        for p in r.parts:
            if p.column in dcols:
                value_parts[p.column].append((i, p))
            else:
                row_parts.append((i, p))

    # requirement of each row part, split: per distinct column (tested once per value, found
    # again through __g), and row-wise (its own scan)
    guard_needs: dict[str, list[tuple[int, Req]]] = defaultdict(list)
    row_guards: list = []
    row_needs: list[Req] = []
    for k, (_, p) in enumerate(row_parts):
        by_col: dict[str, Req] = {}
        lits, loose = p.need
        row_lits = frozenset(x for x in lits if key_column(x[0]) not in dcols)
        row_loose = tuple(x for x in loose if x[0] == "sql" or key_column(x[1]) not in dcols)
        for c in dcols:
            c_lits = frozenset(x for x in lits if key_column(x[0]) == c)
            c_loose = tuple(x for x in loose if x[0] == "re" and key_column(x[1]) == c)
            if c_lits or c_loose:
                by_col[c] = (c_lits, c_loose)
                guard_needs[c].append((k, by_col[c]))
        row_needs.append((row_lits, row_loose))
        row_guards.append(by_col)  # rendered below, once all row-wise scans are known
    # atoms of row parts over distinct columns: evaluated per value, listed in __a (global ids)
    atom_ids: dict[tuple[str, str], int] = {}
    value_atoms: dict[str, list[tuple[int, str, Req]]] = defaultdict(list)
    formulas: list[str] = []
    for _, p in row_parts:
        if p.expr is None:
            formulas.append(p.sql)
            continue
        refs = []
        for col, sql, need in p.atoms:
            if col in dcols:
                if (col, sql) not in atom_ids:
                    atom_ids[col, sql] = len(atom_ids)
                    value_atoms[col].append((atom_ids[col, sql], sql, need))
                refs.append(f"coalesce(list_contains(__a_{_ident(col)}, {atom_ids[col, sql]}), false)")
            else:
                refs.append(sql)
        # over per-value atoms only, the formula is a few list lookups: cheaper than any guard
        formulas.append(_render(p.expr, refs))
        if all(col in dcols for col, _, _ in p.atoms):
            row_guards[len(formulas) - 1] = None

    ctes, joins, matched, hit_lists = [], [], [], []
    for c in sorted(set(value_parts) | set(guard_needs) | set(value_atoms)):
        vp, gn, va = value_parts.get(c, []), guard_needs.get(c, []), value_atoms.get(c, [])
        flag = _scan(_union([p.need for _, p in vp] + [n for _, n in gn] + [n for _, _, n in va]))
        hits = _int_list(f"CASE WHEN {_guarded(p.sql, p.need)} THEN {i} END" for i, p in vp)
        guards = _int_list(f"CASE WHEN {_scan(n)} THEN {k} END" for k, n in gn)
        atoms = _int_list(f"CASE WHEN {_guarded(sql, n)} THEN {j} END" for j, sql, n in va)
        x = _ident(c)
        # LIMIT: else DuckDB pushes the filter below the DISTINCT, i.e. back onto each row
        ctes.append(f'__d_{x} AS (SELECT DISTINCT "{c}" FROM ({source}) LIMIT {_NO_LIMIT})')
        joins.append(
            f"LEFT JOIN (SELECT *, len(__h_{x}) > 0 OR len(__g_{x}) > 0 AS __m_{x} FROM ("
            f'SELECT "{c}" AS __v_{x}, {hits} AS __h_{x}, {guards} AS __g_{x}, {atoms} AS __a_{x} '
            f"FROM __d_{x} WHERE {flag}) WHERE len(__h_{x}) > 0 OR len(__g_{x}) > 0 "
            f"OR len(__a_{x}) > 0) "
            f'ON __t."{c}" IS NOT DISTINCT FROM __v_{x}'
        )
        matched.append(f"__m_{x}")
        if vp:
            hit_lists.append(f"coalesce(__h_{x}, []::INTEGER[])")
    # each row-wise scan runs once per row (as __r_<key>); a part's own scan of that key only
    # runs on the rows where the combined one matched
    row_terms, row_sqls = _key_terms(_union(row_needs))
    scans = ", ".join(f"{t} AS __r_{_ident(k)}" for k, t in row_terms.items())
    cases = []
    for k, (i, p) in enumerate(row_parts):
        if row_guards[k] is None:
            cases.append(f"CASE WHEN {formulas[k]} THEN {i} END")
            continue
        terms, sqls = _key_terms(row_needs[k])
        guard = _any([
            *(f"list_contains(__g_{_ident(c)}, {k})" for c in sorted(row_guards[k])),
            *(f"__r_{_ident(key)}" + ("" if t == row_terms[key] else f" AND {t}")
              for key, t in terms.items()),
            *sqls,
        ])
        # the guard reads booleans and lists: unlike _guarded, worth it even before a short
        # contains() (which would lower() a whole raw line)
        only_sql = not p.need[0] and all(x[0] == "sql" for x in p.need[1])
        cases.append(f"CASE WHEN {formulas[k] if only_sql else f'{guard} AND {formulas[k]}'} THEN {i} END")
    if cases:
        hit_lists.append("[" + ", ".join(cases) + "]")
    where = _any([
        f"coalesce({' OR '.join(matched)}, false)" if matched else "false",
        *(f"__r_{_ident(k)}" for k in row_terms), *row_sqls,
    ])
    keep_sql = keep
    if keep == "*":
        keep_sql = f"__t.* EXCLUDE ({', '.join(f'__r_{_ident(k)}' for k in row_terms)})" if row_terms else "__t.*"
    with_sql = f"WITH {', '.join(ctes)} " if ctes else ""
    return (
        f"{with_sql}SELECT {keep_sql}, list_distinct(flatten([{', '.join(hit_lists)}]))::INTEGER[] AS hits "
        f"FROM (SELECT *{', ' + scans if scans else ''} FROM ({source})) __t {' '.join(joins)} "
        f"WHERE {where}"
    )


_NO_LIMIT = 2**63 - 1


def _render(expr: list, atoms: list[str]) -> str:
    """SQL of a compiler.Expr, atom ``i`` being ``atoms[i]``."""
    op = expr[0]
    if op == "atom":
        return atoms[expr[1]]
    if op == "not":
        return f"(NOT {_render(expr[1], atoms)})"
    return "(" + f" {op.upper()} ".join(_render(e, atoms) for e in expr[1]) + ")"


def _int_list(items) -> str:
    """A list of the non-NULL values of ``items`` (SQL INTEGER expressions)."""
    items = list(items)
    return f"list_distinct([{', '.join(items)}])" if items else "[]::INTEGER[]"


def _ident(column: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in column)
