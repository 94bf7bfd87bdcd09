"""The match query: which rules hit which rows of a table, in two DuckDB passes.

    cols = distinct_columns(con, "SELECT * FROM http", rules)   # low-variety columns
    con.execute(match_query(con, rules, "SELECT * FROM http", "source_line", distinct=cols))

Most rule parts read one column (a user agent, a URL, ...), and in access logs those columns have
few distinct values relative to rows. Such a part is evaluated once per distinct value of its
column (first pass): for each such column a small temp table lists the values on which some rule
part holds (``__h``: rule indexes), some multi-column part's requirement holds (``__g``: part
indexes) or some one-column piece ("atom", compiler.decompose) of a multi-column part holds
(``__a``). The second pass keeps the rows whose value is flagged in such a table (a semi-join)
or that pass a row-wise requirement (an RE2 alternation of necessary literals per column, see
sqltext.Req, for columns with unique values such as ``raw``), and joins the tables back to
those rows only: a multi-column part is then a boolean formula over ``__a`` lookups and its
row-wise atoms, guarded by its requirement.

``candidates`` does the first pass over an Arrow table whose text columns are dictionaries (the
lake as detect reads it): distinct values come from the dictionaries and the flagged rows are
found by dictionary index in Arrow, so the second pass (``Prefilter.query``) runs on the
candidate rows only.

``prefilter=False`` evaluates every rule's whole expression on every row: the reference the
tests compare the fast plan against.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from threatscope import schema
from threatscope.detect.ruleset import CompiledRule, RulePart
from threatscope.detect.sqltext import Req, re2_escape, with_read_fields
from threatscope.sqlfn import sql_str

# Columns whose values are (nearly) unique per row: never worth a DISTINCT.
ROW_COLUMNS = frozenset({"raw", "source_line", "ts"})
# A column is evaluated per distinct value when a sample of rows has at most this many distinct
# values per row (DISTINCT + join costs ~1/10 of a regex scan of a row, and the hash table must
# stay small: the ratio over the whole table is lower than over a sample)
MAX_DISTINCT_RATIO = 0.5
SAMPLE_ROWS = 100_000


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
        terms[key] = f"regexp_matches(\"{key}\", {sql_str('|'.join(alts))})"
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


def _guarded(sql: str, need: Req) -> str:
    """``sql`` behind the scan of its requirement, unless the expression is cheaper than that."""
    cheap = "regexp_matches" not in sql and len(sql) < 1500
    if cheap or (not need[0] and all(x[0] == "sql" for x in need[1])):
        return sql
    return f"{_scan(need)} AND {sql}"


def rule_columns(rules: Sequence[CompiledRule]) -> set[str]:
    """The columns that could be evaluated per distinct value for these rules."""
    cols = {p.column for r in rules for p in r.parts if p.column}
    for r in rules:
        for p in r.parts:
            cols |= {k for k, _ in p.need[0]}
            cols |= {x[1] for x in p.need[1] if x[0] == "re"}
    return cols - ROW_COLUMNS


def with_field_columns(source: str, rules: Sequence[CompiledRule]) -> str:
    """``source`` (a query over the rules' table) with the field columns the rules read
    (sqltext.field_column: ``event_data.Image``, ``http_request_headers.cookie``) added."""
    columns = {n for r in rules for n, _ in schema.KINDS.get(r.table, ())}
    return with_read_fields(source, "\n".join(r.sql for r in rules), columns)


def distinct_columns(
    con: duckdb.DuckDBPyConnection, source: str, rules: Sequence[CompiledRule],
    sample: int = SAMPLE_ROWS,
) -> frozenset[str]:
    """The columns of ``rules`` worth evaluating per distinct value, judged on the first
    ``sample`` rows of ``source`` (a column with few distinct values per row)."""
    source = with_field_columns(source, rules)
    cols = sorted(rule_columns(rules))
    if not cols:
        return frozenset()
    counts = ", ".join(f'count(DISTINCT "{c}")' for c in cols)
    names = ", ".join(f'"{c}"' for c in cols)
    n, *distinct = con.execute(
        f"SELECT count(*), {counts} FROM (SELECT {names} FROM ({source}) LIMIT {int(sample)})"
    ).fetchall()[0]
    return frozenset(c for c, d in zip(cols, distinct, strict=True) if d <= MAX_DISTINCT_RATIO * n)


def match_query(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[CompiledRule],
    source: str,
    keep: str = "*",
    *,
    prefilter: bool = True,
    distinct: Collection[str] | None = None,
) -> str:
    """SELECT ``keep`` columns plus ``hits`` (indexes into ``rules``) of the rows of ``source``
    that may match (every row with a hit is there; rows without one may be too).

    Runs the per-distinct-value phase now (temp tables ``__ts_dv_<column>`` on ``con``) and
    returns the row phase. ``distinct``: the columns evaluated once per distinct value (None:
    every column the rules read alone; see :func:`distinct_columns`). Without ``prefilter``
    every rule's whole expression runs on every row (the reference for tests)."""
    if not rules:
        return f"SELECT {keep}, []::INTEGER[] AS hits FROM ({source}) WHERE false"
    source = with_field_columns(source, rules)
    if not prefilter:
        cases = ", ".join(f"CASE WHEN {r.sql} THEN {i} END" for i, r in enumerate(rules))
        return f"SELECT {keep}, list_distinct([{cases}]) AS hits FROM ({source})"
    plan = _Plan(rules, rule_columns(rules) if distinct is None else set(distinct) - ROW_COLUMNS)
    present, null_flagged = _value_phase(
        con, plan, lambda c: f'SELECT DISTINCT "{c}" FROM ({source})')
    return plan.row_sql(source, keep, present, null_flagged)


def _value_phase(con: duckdb.DuckDBPyConnection, plan: _Plan, values_sql: Callable[[str], str],
                 inputs: dict[str, pa.Table] | None = None
                 ) -> tuple[dict[str, bool], dict[str, bool]]:
    """Create ``__ts_dv_<column>`` (value, hit/guard/atom lists, flagged) for each value column
    of ``plan``, from ``values_sql(column)`` (a SELECT of its distinct values). Returns the
    columns with entries (-> whether some value is flagged) and whether NULL is flagged.

    With ``inputs`` (column -> Arrow table of its values, which ``values_sql`` reads as
    ``__ts_in_<column>``) the columns run side by side, each on its own cursor: with few
    values per column the time goes into DuckDB binding the rules' regexes, per column."""
    cols = plan.value_columns()
    if inputs is None:
        done = [(c, _value_table(con, plan, c, values_sql), None) for c in cols]
    else:
        def run(c: str) -> tuple:
            with con.cursor() as cur:
                cur.register(f"__ts_in_{_ident(c)}", inputs[c])
                flags = _value_table(cur, plan, c, values_sql)
                # temp tables belong to the cursor: hand the (small) result over as Arrow
                return c, flags, flags and cur.sql(f"SELECT * FROM __ts_dv_{_ident(c)}"
                                                   ).to_arrow_table()

        # the costliest first (DuckDB binding the regexes: about the SQL's length), so that
        # the short ones fill in at the end
        def cost(c: str) -> int:
            v = plan.view(c, null_only=inputs[c].column(0).null_count == len(inputs[c]),
                          guarded=False)
            return -len(v.hits + v.guards + v.atoms)

        with ThreadPoolExecutor(max_workers=max(1, min(len(cols), os.cpu_count() or 1))) as pool:
            done = list(pool.map(run, sorted(cols, key=cost)))
        for c, _, table in done:
            if table:
                con.register("__ts_dv_arrow", table)
                con.execute(f"CREATE OR REPLACE TEMP TABLE __ts_dv_{_ident(c)} AS "
                            "SELECT * FROM __ts_dv_arrow")
                con.unregister("__ts_dv_arrow")
    present = {c: flags[0] for c, flags, _ in done if flags}
    null_flagged = {c: flags[1] for c, flags, _ in done if flags}
    return present, null_flagged


def _value_table(con: duckdb.DuckDBPyConnection, plan: _Plan, c: str,
                 values_sql: Callable[[str], str]) -> tuple[bool, bool] | None:
    """Make ``__ts_dv_<c>`` on ``con``: (some value flagged, NULL flagged), or None when no
    value has an entry (the table is dropped)."""
    x = _ident(c)
    con.execute(f"CREATE OR REPLACE TEMP TABLE __ts_dv_{x} AS {values_sql(c)}")
    n, non_null, size = con.execute(
        f'SELECT count(*), count("{c}"), sum(strlen(CAST("{c}" AS VARCHAR))) FROM __ts_dv_{x}'
    ).fetchall()[0]
    # all NULL (e.g. no request bodies in access logs): only the parts whose requirement
    # has loose SQL can hold (a literal or regex scan of NULL is false); few, short values: no
    # need for guards. Both keep DuckDB from compiling regexes that would run on nothing.
    view = plan.view(c, null_only=non_null == 0,
                     guarded=n > _FEW_VALUES or (size or 0) > _FEW_BYTES)
    # Case-insensitive matches read lower(column), once per literal: a base64 rule has
    # hundreds. Lower-case each value once instead (DuckDB does not share them across CASEs).
    lc = f'lower("{c}")'
    hits, guards, atoms = (_replace_code(s, lc, "__lc") for s in (view.hits, view.guards,
                                                                  view.atoms))
    lowered = (hits, guards, atoms) != (view.hits, view.guards, view.atoms)  # (text columns)
    values = f"(SELECT *, {lc} AS __lc FROM __ts_dv_{x})" if lowered else f"__ts_dv_{x}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __ts_dv_{x} AS "
        f"SELECT *, len(__h) > 0 OR len(__g) > 0 AS __m FROM ("
        f'SELECT "{c}" AS __v, {hits} AS __h, {guards} AS __g, {atoms} AS __a '
        f"FROM {values} WHERE {view.flag}"
        f") WHERE len(__h) > 0 OR len(__g) > 0 OR len(__a) > 0"
    )
    n, m, null_m = con.execute(
        f"SELECT count(*), bool_or(__m), bool_or(__m AND __v IS NULL) FROM __ts_dv_{x}"
    ).fetchall()[0]
    if not n:
        con.execute(f"DROP TABLE __ts_dv_{x}")
        return None
    return bool(m), bool(null_m)


def _replace_code(sql: str, old: str, new: str) -> str:
    """``old`` replaced by ``new`` in ``sql`` outside its string literals ('...', where ''
    is a quote: splitting on quotes leaves the code at even positions)."""
    parts = sql.split("'")
    return "'".join(p.replace(old, new) if i % 2 == 0 else p for i, p in enumerate(parts))


def value_columns(table: pa.Table, rules: Sequence[CompiledRule]) -> frozenset[str]:
    """The rule columns of ``table`` worth evaluating once per distinct value: dictionary-encoded
    ones with at most MAX_DISTINCT_RATIO distinct values per row (chunk dictionaries summed)."""
    out = set()
    for c in rule_columns(rules) & set(table.column_names):
        col = table.column(c)
        if pa.types.is_dictionary(col.type) and \
                sum(len(ch.dictionary) for ch in col.chunks) <= MAX_DISTINCT_RATIO * len(col):
            out.add(c)
    return frozenset(out)


def arrow_source(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table,
                 types: dict[str, str] | None = None) -> str:
    """Register ``table`` as ``name``; a SELECT of it with the lake view's column types
    (``types``: column -> SQL type; the IP numbers, stored as DECIMAL(38,0), are UHUGEINT)."""
    con.register(name, table)
    types = types or {}
    cast = [f'CAST("{c}" AS UHUGEINT) AS "{c}"' for c in table.column_names
            if types.get(c) == "UHUGEINT" or pa.types.is_decimal(table.schema.field(c).type)]
    return f"SELECT * REPLACE ({', '.join(cast)}) FROM {name}" if cast else \
        f"SELECT * FROM {name}"


@dataclass
class Prefilter:
    """The candidate rows of a table (``mask``) and the row phase to run on them (``query``),
    from :func:`candidates`."""

    mask: pa.Array
    plan: _Plan | None = None
    present: dict = field(default_factory=dict)
    null_flagged: dict = field(default_factory=dict)

    def query(self, source: str, keep: str) -> str:
        """The row phase over ``source`` (rows of the table, at least the candidates): SELECT
        ``keep`` plus ``hits``, like match_query. Uses the per-value tables of ``candidates``,
        so run it before the next call of ``candidates`` on the same connection."""
        if self.plan is None:
            return f"SELECT {keep}, []::INTEGER[] AS hits FROM ({source}) WHERE false"
        return self.plan.row_sql(source, keep, self.present, self.null_flagged)


def candidates(con: duckdb.DuckDBPyConnection, rules: Sequence[CompiledRule], table: pa.Table,
               distinct: Collection[str], types: dict[str, str] | None = None) -> Prefilter:
    """The rows of ``table`` that ``match_query`` over it would consider (the same prefilter),
    found on the columns' dictionaries: each ``distinct`` column (dictionary-encoded) is
    evaluated once per value of its dictionaries, and a row's flag is a lookup by its
    dictionary index, with no per-row string work. Row-wise requirements (scans of unique
    columns such as ``raw``) run in DuckDB over the table (``types``: see arrow_source).

        pre = candidates(con, rules, table, value_columns(table, rules))
        source = arrow_source(con, "cand", table.filter(pre.mask))
        con.sql(pre.query(source, "source_line"))   # (source_line, hits) of the matches
    """
    n = table.num_rows
    if not rules or not n:
        return Prefilter(_all_false(n))
    plan = _Plan(rules, set(distinct) - ROW_COLUMNS)
    chunks: dict[str, list[pa.DictionaryArray]] = {}
    inputs: dict[str, pa.Table] = {}
    for c in plan.value_columns():
        chunks[c] = [ch if pa.types.is_dictionary(ch.type) else pc.dictionary_encode(ch)
                     for ch in table.column(c).chunks]
        values = pc.unique(pa.concat_arrays([ch.dictionary for ch in chunks[c]]))
        if table.column(c).null_count:
            values = pa.concat_arrays([values, pa.nulls(1, values.type)])
        inputs[c] = pa.table({c: values})
    present, null_flagged = _value_phase(
        con, plan, lambda c: f'SELECT "{c}" FROM __ts_in_{_ident(c)}', inputs)
    masks = []
    for c, flagged_any in present.items():
        if not flagged_any:
            continue
        flagged = con.sql(f"SELECT __v FROM __ts_dv_{_ident(c)} WHERE __m AND __v IS NOT NULL"
                          ).to_arrow_table().column(0).combine_chunks()
        per_chunk = [pc.fill_null(pc.take(pc.is_in(ch.dictionary, value_set=flagged),
                                          ch.indices), null_flagged[c])
                     for ch in chunks[c]]
        masks.append(pa.chunked_array(per_chunk, pa.bool_()).combine_chunks())
    row_terms, row_sqls = _key_terms(_union(plan.row_needs))
    scans = [*row_terms.values(), *row_sqls]
    if scans:
        src = arrow_source(con, "__ts_rows", table, types)
        try:
            masks.append(pc.fill_null(
                con.sql(f"SELECT {_any(scans)} FROM ({src})").to_arrow_table().column(0)
                .combine_chunks(), False))
        finally:
            con.unregister("__ts_rows")
    mask = masks[0] if masks else _all_false(n)
    for m in masks[1:]:
        mask = pc.or_(mask, m)
    return Prefilter(mask, plan, present, null_flagged)


def _all_false(n: int) -> pa.Array:
    return pa.repeat(pa.scalar(False), n)


@dataclass
class _ValueSql:
    flag: str
    hits: str
    guards: str
    atoms: str


# Up to this many distinct values (and bytes of them), a rule part runs on each without its
# requirement's scan first: compiling that scan would cost more than it saves. Long values
# (request headers and bodies) are worth it sooner than short ones.
_FEW_VALUES = 10_000
_FEW_BYTES = 256 << 10


class _Plan:
    """Which rule parts run per distinct value (per column) and which per row."""

    def __init__(self, rules: Sequence[CompiledRule], dcols: set[str]):
        self.dcols = dcols
        self.value_parts: dict[str, list[tuple[int, RulePart]]] = defaultdict(list)
        self.row_parts: list[tuple[int, RulePart]] = []
        for i, r in enumerate(rules):
            for p in r.parts:
                if p.column in dcols:
                    self.value_parts[p.column].append((i, p))
                else:
                    self.row_parts.append((i, p))
        # requirement of each row part, split: per distinct column (tested once per value,
        # found again through __g), and row-wise (its own scan)
        self.guard_needs: dict[str, list[tuple[int, Req]]] = defaultdict(list)
        self.guard_cols: list[list[str]] = []
        self.row_needs: list[Req] = []
        for k, (_, p) in enumerate(self.row_parts):
            lits, loose = p.need
            cols = []
            for c in sorted(dcols):
                c_lits = frozenset(x for x in lits if x[0] == c)
                c_loose = tuple(x for x in loose if x[0] == "re" and x[1] == c)
                if c_lits or c_loose:
                    cols.append(c)
                    self.guard_needs[c].append((k, (c_lits, c_loose)))
            self.guard_cols.append(cols)
            self.row_needs.append((
                frozenset(x for x in lits if x[0] not in dcols),
                tuple(x for x in loose if x[0] == "sql" or x[1] not in dcols),
            ))
        # atoms of row parts over distinct columns: evaluated per value, listed in __a
        self.atom_ids: dict[tuple[str, str], int] = {}
        self.value_atoms: dict[str, list[tuple[int, str, Req]]] = defaultdict(list)
        for _, p in self.row_parts:
            for col, sql, need in p.atoms:
                if col in dcols and (col, sql) not in self.atom_ids:
                    self.atom_ids[col, sql] = len(self.atom_ids)
                    self.value_atoms[col].append((self.atom_ids[col, sql], sql, need))

    # -- the per-value phase ---------------------------------------------------------------
    def value_columns(self) -> list[str]:
        return sorted(set(self.value_parts) | set(self.guard_needs) | set(self.value_atoms))

    def view(self, c: str, null_only: bool, guarded: bool) -> _ValueSql:
        """SQL over the distinct values of ``c``: flag (worth a look), and the lists of rule hits,
        row-part guards and atoms that hold."""
        def keep(need: Req) -> bool:
            return not null_only or any(x[0] == "sql" for x in need[1])

        def test(sql: str, need: Req) -> str:
            return _guarded(sql, need) if guarded else sql

        vp = [(i, p) for i, p in self.value_parts.get(c, []) if keep(p.need)]
        gn = [(k, n) for k, n in self.guard_needs.get(c, []) if keep(n)]
        va = [(j, sql, n) for j, sql, n in self.value_atoms.get(c, []) if keep(n)]
        needs = [p.need for _, p in vp] + [n for _, n in gn] + [n for _, _, n in va]
        return _ValueSql(
            flag=(_scan(_union(needs)) if guarded else "true") if needs else "false",
            hits=_int_list(f"CASE WHEN {test(p.sql, p.need)} THEN {i} END" for i, p in vp),
            guards=_int_list(f"CASE WHEN {_scan(n)} THEN {k} END" for k, n in gn),
            atoms=_int_list(f"CASE WHEN {test(sql, n)} THEN {j} END" for j, sql, n in va),
        )

    # -- the row phase ---------------------------------------------------------------------
    def row_sql(self, source: str, keep: str, present: dict, null_flagged: dict) -> str:
        """``present``: column -> whether its table has candidate values (absent: no row);
        ``null_flagged``: column -> whether NULL is a flagged value."""
        def atom_ref(col, sql):
            if col not in self.dcols:
                return sql
            if col not in present:  # no value of the column satisfies the atom
                return "false"
            return f"coalesce(list_contains(__a_{_ident(col)}, {self.atom_ids[col, sql]}), false)"

        row_terms, row_sqls = _key_terms(_union(self.row_needs))
        scans = "".join(f", {t} AS __r_{_ident(k)}" for k, t in row_terms.items())
        cases = []
        for k, (i, p) in enumerate(self.row_parts):
            if p.expr is None:
                formula = p.sql
            else:
                formula = _render(p.expr, [atom_ref(col, sql) for col, sql, _ in p.atoms])
                if all(col in self.dcols for col, _, _ in p.atoms):
                    # list lookups only: cheaper than any guard
                    cases.append(f"CASE WHEN {formula} THEN {i} END")
                    continue
            terms, sqls = _key_terms(self.row_needs[k])
            if not terms and not any(c in present for c in self.guard_cols[k]) and not sqls:
                continue  # its requirement holds on no row
            guard = _any([
                *(f"list_contains(__g_{_ident(c)}, {k})" for c in self.guard_cols[k]
                  if present.get(c)),
                *(f"__r_{_ident(key)}" + ("" if t == row_terms[key] else f" AND {t}")
                  for key, t in terms.items()),
                *sqls,
            ])
            # the guard reads booleans and lists: unlike _guarded, worth it even before a
            # short contains() (which would lower() a whole raw line)
            only_sql = not p.need[0] and all(x[0] == "sql" for x in p.need[1])
            cases.append(f"CASE WHEN {formula if only_sql else f'{guard} AND {formula}'} THEN {i} END")

        hit_lists = [
            f"coalesce(__h_{_ident(c)}, []::INTEGER[])" for c in sorted(present) if c in self.value_parts
        ]
        if cases:
            hit_lists.append("[" + ", ".join(cases) + "]")
        # candidates: a value flagged in a per-value table (a semi-join: cheap, and DuckDB reads
        # the other columns only for the rows it keeps) or a row-wise scan
        candidate = []
        for c in sorted(present):
            if present[c]:
                candidate.append(f'"{c}" IN (SELECT __v FROM __ts_dv_{_ident(c)} WHERE __m)')
                if null_flagged[c]:
                    candidate.append(f'"{c}" IS NULL')
        candidate += [f"__r_{_ident(k)}" for k in row_terms] + row_sqls
        joins = "".join(
            f" LEFT JOIN (SELECT __v AS __v_{x}, __h AS __h_{x}, __g AS __g_{x}, __a AS __a_{x} "
            f'FROM __ts_dv_{x}) ON __t."{c}" IS NOT DISTINCT FROM __v_{x}'
            for c, x in ((c, _ident(c)) for c in sorted(present))
        )
        hits = f"list_distinct(flatten([{', '.join(hit_lists)}]))" if hit_lists else "[]"
        # Case-insensitive tests read lower(column), once per test: with a thousand rules that
        # is a thousand lower()s of each candidate row's text. Lower each column once instead.
        lowered = sorted({m for part in hits.split("'")[0::2]
                          for m in re.findall(r'lower\("([^"]+)"\)', part)})
        for c in lowered:
            hits = _replace_code(hits, f'lower("{c}")', f'"__lc_{_ident(c)}"')
        scans += "".join(f', lower("{c}") AS "__lc_{_ident(c)}"' for c in lowered)
        helpers = [f"__r_{_ident(k)}" for k in row_terms] + [f'"__lc_{_ident(c)}"' for c in lowered]
        keep_sql = keep
        if keep == "*":
            keep_sql = "__t.*" + (f" EXCLUDE ({', '.join(helpers)})" if helpers else "")
        return (
            f"SELECT {keep_sql}, {hits}::INTEGER[] AS hits "
            f"FROM (SELECT *{scans} FROM ({source}) WHERE {_any(candidate)}) __t{joins}"
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
