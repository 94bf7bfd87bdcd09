"""The rule engine: which rules of one table hold on which rows of an Arrow table.

    engine = Engine(ruleset.for_table("process_creation"), "process_creation")
    rows, rules = engine.match(con, table)    # row index and rule index of each hit

A rule is an expression over *leaves*, tests of one column each (see compiler). The engine
never runs a rule row by row:

1. per column it takes the distinct values: the dictionary the lake is read as;
2. on those values it runs all the column's literal leaves at once, in one pass of a
   multi-pattern automaton (``_patterns.c``), and every other leaf in DuckDB, only on the values
   that contain one of its guard literals (which the same pass finds);
3. the (value, leaf) hits become one bitmap per leaf over the rows, through the dictionary
   indices, a slice of rows at a time;
4. each rule's expression is folded over those bitmaps: a leaf that holds on no row of the
   slice is false, so most rules are decided without looking at a row.

Without the C extension every leaf runs in DuckDB on the distinct values and the bitmaps come
from Arrow ``take``: the same hits, slower. :func:`reference_sql` evaluates each rule's SQL on
every row: the reference the tests hold the engine to.
"""

from __future__ import annotations

import array
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from threatscope import schema
from threatscope.detect.ruleset import CompiledRule
from threatscope.detect.sqltext import read_columns
from threatscope.native import native
from threatscope.sqlfn import field_column, with_fields

# Rows per bitmap slice: bounds the bitmaps' memory (leaves present x SLICE / 8 bytes).
SLICE = 1 << 16
# Up to this many distinct values a column's DuckDB leaves run on every value, unguarded: the
# guard's bookkeeping would cost more than it saves.
FEW_VALUES = 2048
_KINDS = {"sub": 0, "pre": 1, "suf": 2, "eq": 3}


@dataclass(frozen=True)
class Leaf:
    column: str | None  # None: reads several columns (evaluated per row)
    kind: str  # eq | pre | suf | sub (literal tests) | sql
    text: str
    cased: bool
    sql: str
    guard: tuple[str, ...]


@dataclass
class _Column:
    """The leaves of one column and how they run."""

    name: str
    text: bool
    literal: list[int] = field(default_factory=list)  # eq/pre/suf/sub leaves
    sql: list[int] = field(default_factory=list)
    # native only, built on first use
    automata: tuple | None = None  # (folded Patterns | None, cased Patterns | None)
    guards: dict[int, list[int]] | None = None  # guard id -> sql leaves it guards


class Engine:
    """The rules of one table, ready to run on Arrow tables of it (see the module doc)."""

    def __init__(self, rules: Sequence[CompiledRule], kind: str):
        self.rules = list(rules)
        self.kind = kind
        types = dict(schema.KINDS[kind])
        self.leaves: list[Leaf] = []
        ids: dict[Leaf, int] = {}

        def intern(e: list) -> tuple:
            op = e[0]
            if op == "leaf":
                col, lk, text, cased, sql, guard = e[1]
                leaf = Leaf(col, lk, text, bool(cased), sql, tuple(guard))
                if leaf not in ids:
                    ids[leaf] = len(self.leaves)
                    self.leaves.append(leaf)
                return ("leaf", ids[leaf])
            if op == "not":
                return ("not", intern(e[1]))
            kids = [intern(x) for x in e[1]]
            kids.sort(key=lambda k: k[0] != "leaf")  # leaves first: a decisive one is cheap
            return (op, kids)

        self.programs = [intern(r.expr) for r in self.rules]
        self.rules_of: dict[int, list[int]] = defaultdict(list)
        for i, prog in enumerate(self.programs):
            for leaf in sorted(_leaf_ids(prog)):
                self.rules_of[leaf].append(i)
        # rules that hold when none of their leaves does (a lone negation): run on every slice
        self.always = [i for i, p in enumerate(self.programs) if _fold(p, {}) is not False]
        self.columns: dict[str, _Column] = {}
        self.row_leaves: list[int] = []  # several columns, or a column without a dictionary
        for i, leaf in enumerate(self.leaves):
            typ = types.get(leaf.column) if leaf.column else None
            if leaf.column is None or (typ or "").endswith("[]"):
                self.row_leaves.append(i)
                continue
            text = typ == "VARCHAR" or (typ is None and field_column(leaf.column) is not None)
            col = self.columns.setdefault(leaf.column, _Column(leaf.column, text))
            (col.literal if leaf.kind in _KINDS and text else col.sql).append(i)
        names = [n for n, _ in schema.KINDS[kind]]
        self.read = set(self.columns) | read_columns(
            "\n".join(self.leaves[i].sql for i in self.row_leaves), names)

    # -- matching ---------------------------------------------------------------------------
    def match(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> tuple[pa.Array, pa.Array]:
        """(row index int64, rule index int32) of every rule hit on ``table``, which has the
        columns ``self.read`` (text ones best dictionary-encoded, as the lake is read; a field
        column such as ``event_data.Image`` may come as its JSON object column)."""
        n = table.num_rows
        if not n or not self.rules:
            return pa.array([], pa.int64()), pa.array([], pa.int32())
        table = with_field_columns(con, table, self.read)
        sources = [self._column_source(con, c, table.column(c.name))
                   for c in self.columns.values()]
        if self.row_leaves:
            sources.append(self._row_source(con, table))
        sources = [s for s in sources if s is not None]
        rows_out: list[pa.Array] = []
        rules_out: list[pa.Array] = []
        for start in range(0, n, SLICE):
            count = min(SLICE, n - start)
            bits: dict[int, pa.Array] = {}
            for s in sources:
                bits.update(s.bits(start, count, len(self.leaves)))
            todo = set(self.always)
            for leaf in bits:
                todo.update(self.rules_of.get(leaf, ()))
            for i in sorted(todo):
                v = _fold(self.programs[i], bits)
                if v is False:
                    continue
                if v is True:
                    hit = pa.array(range(start, start + count), pa.int64())
                else:
                    hit = pc.add(pc.indices_nonzero(v), start)
                    if not len(hit):
                        continue
                rows_out.append(hit.cast(pa.int64()))
                rules_out.append(pa.repeat(pa.scalar(i, pa.int32()), len(hit)))
        if not rows_out:
            return pa.array([], pa.int64()), pa.array([], pa.int32())
        return pa.concat_arrays(rows_out), pa.concat_arrays(rules_out)

    def _column_source(self, con, col: _Column, arr: pa.ChunkedArray) -> _Source | None:
        values, indices = _distinct(arr)
        # the NULL value, last: leaves such as "IS NULL" hold on it
        values = pa.concat_arrays([values, pa.nulls(1, values.type)])
        null_value = len(values) - 1
        c = native()
        if c is None:
            pairs = [self._sql_pairs(con, col.name, values, col.literal + col.sql)]
        else:
            pairs = self._native_pairs(con, c, col, values)
        vals = pa.concat_arrays([p[0] for p in pairs]) if pairs else pa.array([], pa.int32())
        leaves = pa.concat_arrays([p[1] for p in pairs]) if pairs else pa.array([], pa.int32())
        if not len(vals):
            return None
        return _Source(len(values), vals, leaves, indices, null_value)

    def _row_source(self, con, table: pa.Table) -> _Source | None:
        cols = sorted(c for c in self.read if c in table.column_names
                      and any(f'"{c}"' in self.leaves[i].sql for i in self.row_leaves))
        rows = table.select(cols) if cols else pa.table({"__x": pa.nulls(table.num_rows)})
        vals, leaves = self._sql_pairs(con, None, rows, self.row_leaves)
        if not len(vals):
            return None
        return _Source(table.num_rows, vals, leaves, None, -1)

    def _sql_pairs(self, con, name: str | None, values: pa.Array | pa.Table,
                   leaves: Sequence[int]) -> tuple[pa.Array, pa.Array]:
        """(value index, leaf) of each of ``leaves`` (their SQL) holding on each of ``values``
        (a column called ``name``; or a table of the rows, for leaves of several columns)."""
        if not leaves or not len(values):
            return pa.array([], pa.int32()), pa.array([], pa.int32())
        t = values if isinstance(values, pa.Table) else pa.table({name: values})
        t = t.append_column("__i", pa.array(range(len(t)), pa.int32()))
        cases = ", ".join(f"CASE WHEN {self.leaves[i].sql} THEN {i} END" for i in leaves)
        with con.cursor() as cur:
            cur.register("__ts_values", t)
            got = cur.sql(f"SELECT __i, __l FROM (SELECT __i, unnest(list_distinct([{cases}])) "
                          "AS __l FROM __ts_values) WHERE __l IS NOT NULL").to_arrow_table()
        return _int32(got.column(0)), _int32(got.column(1))

    def _native_pairs(self, con, c, col: _Column, values: pa.Array) -> list:
        out = []
        if col.automata is None:
            self._build(con, c, col)
        folded, cased = col.automata
        nleaves = len(self.leaves)
        guard_pairs = None
        if folded is not None:
            v, leaf = _scan(folded, _lowered(con, values))
            is_guard = pc.greater_equal(leaf, nleaves)
            out.append((pc.filter(v, pc.invert(is_guard)), pc.filter(leaf, pc.invert(is_guard))))
            guard_pairs = (pc.filter(v, is_guard), pc.filter(leaf, is_guard))
        if cased is not None:
            out.append(_scan(cased, values))
        if col.sql:
            out += self._guarded_sql(con, col, values, guard_pairs)
        return out

    def _guarded_sql(self, con, col: _Column, values: pa.Array, guard_pairs) -> list:
        guarded = [i for i in col.sql if self.leaves[i].guard] if col.text else []
        if len(values) <= FEW_VALUES or not guarded:
            return [self._sql_pairs(con, col.name, values, col.sql)]
        out = [self._sql_pairs(con, col.name, values, [i for i in col.sql if i not in guarded])]
        # candidates: (value, leaf) where a guard literal of the leaf was found; and every
        # non-ASCII value (RE2's case folding knows more than ASCII: ſ is an s)
        gmap = pa.table({
            "g": pa.array([g for g, ls in col.guards.items() for _ in ls], pa.int32()),
            "l": pa.array([x for ls in col.guards.values() for x in ls], pa.int32())})
        found = pa.table({"v": guard_pairs[0], "g": guard_pairs[1]})
        nonascii = pc.indices_nonzero(pc.invert(pc.fill_null(pc.string_is_ascii(values), True)))
        t = pa.table({"__i": pa.array(range(len(values)), pa.int32()), col.name: values})
        cases = " ".join(f"WHEN {i} THEN {self.leaves[i].sql}" for i in guarded)
        with con.cursor() as cur:
            cur.register("__ts_values", t)
            cur.register("__ts_found", found)
            cur.register("__ts_gmap", gmap)
            cur.register("__ts_guarded", pa.table({"l": pa.array(guarded, pa.int32())}))
            cur.register("__ts_nonascii", pa.table({"v": nonascii.cast(pa.int32())}))
            got = cur.sql(f"""
                WITH cand AS (
                    SELECT f.v, m.l FROM __ts_found f JOIN __ts_gmap m USING (g)
                    UNION SELECT n.v, g.l FROM __ts_nonascii n, __ts_guarded g)
                SELECT c.v, c.l FROM cand c JOIN __ts_values x ON x.__i = c.v
                WHERE CASE c.l {cases} END""").to_arrow_table()
        out.append((_int32(got.column(0)), _int32(got.column(1))))
        return out

    def _build(self, con, c, col: _Column) -> None:
        """The column's automata: case-insensitive literals and guards (lower-cased as DuckDB
        does), and case-sensitive literals."""
        folded, cased = [], []
        lower = _lowercase(con, [self.leaves[i].text for i in col.literal
                                 if not self.leaves[i].cased])
        for i in col.literal:
            leaf = self.leaves[i]
            text = leaf.text if leaf.cased else lower[leaf.text]
            (cased if leaf.cased else folded).append(
                (text.encode(), _KINDS[leaf.kind], i))
        col.guards = {}
        if col.text:
            gid: dict[str, int] = {}
            for i in col.sql:
                for g in self.leaves[i].guard:
                    if g not in gid:
                        gid[g] = len(self.leaves) + len(gid)
                        folded.append((g.encode(), 0, gid[g]))
                    col.guards.setdefault(gid[g], []).append(i)
        col.automata = (c.patterns(folded, True) if folded else None,
                        c.patterns(cased, False) if cased else None)


class _Source:
    """(value, leaf) hits of one column and the rows' value indices: bitmaps per slice."""

    def __init__(self, nvalues: int, vals: pa.Array, leaves: pa.Array,
                 indices: pa.Array | None, null_value: int):
        self.nvalues, self.indices, self.null_value = nvalues, indices, null_value
        c = native()
        if c is not None:
            self.csr = c.leaf_csr(nvalues, _buf(vals), _buf(leaves))
        else:
            self.csr = None
            by_leaf = pa.table({"v": vals, "l": leaves}).group_by("l").aggregate([("v", "list")])
            all_values = pa.array(range(nvalues), pa.int32())
            self.masks = {
                leaf: pc.is_in(all_values, value_set=vs.values)
                for leaf, vs in zip(by_leaf.column("l").to_pylist(), by_leaf.column("v_list"),
                                    strict=True)
            }

    def bits(self, start: int, count: int, nleaves: int) -> dict[int, pa.Array]:
        idx = None if self.indices is None else self.indices.slice(start, count)
        if self.csr is None:
            out = {}
            for leaf, mask in self.masks.items():
                if idx is None:
                    m = mask.slice(start, count)
                else:
                    m = pc.take(mask, idx)
                    if m.null_count:
                        m = pc.fill_null(m, self.null_value >= 0 and mask[self.null_value].as_py())
                if pc.any(m).as_py():
                    out[leaf] = m
            return out
        if idx is None:
            args = (None, 0, None, -1, start, count)
        else:
            validity, data = idx.buffers()
            args = (data, idx.offset, validity, self.null_value, 0, count)
        slots, bitmaps = native().leaf_bits(*self.csr, nleaves, *args)
        nbytes = (count + 7) // 8
        buf = pa.py_buffer(bitmaps)
        return {
            leaf: pa.Array.from_buffers(pa.bool_(), count, [None, buf.slice(k * nbytes, nbytes)])
            for k, leaf in enumerate(array.array("i", slots))
        }


# -- helpers ----------------------------------------------------------------------------------
def with_field_columns(con: duckdb.DuckDBPyConnection, table: pa.Table, columns: set[str]
                       ) -> pa.Table:
    """``table`` with those of ``columns`` that are field columns (sqlfn.field_column) of its
    JSON object columns added, taken out with one parse per row and dictionary-encoded like
    the stored text columns."""
    fields = sorted(c for c in columns if c not in table.column_names and
                    (f := field_column(c)) is not None and f[0] in table.column_names)
    if not fields:
        return table
    parents = sorted({field_column(c)[0] for c in fields})
    with con.cursor() as cur:
        cur.register("__ts_objects", table.select(parents))
        got = cur.sql(with_fields("SELECT * FROM __ts_objects", fields)).to_arrow_table()
    for c in fields:
        table = table.append_column(c, pc.dictionary_encode(got.column(c)))
    return table


def _distinct(arr: pa.ChunkedArray) -> tuple[pa.Array, pa.Array | None]:
    """(distinct values, int32 index of each row's value or None when row i is value i)."""
    if pa.types.is_dictionary(arr.type):
        d = arr.chunk(0) if arr.num_chunks == 1 else pa.concat_arrays(arr.chunks)
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or \
            pa.types.is_string_view(arr.type):
        # text without a dictionary: a column of (nearly) unique values such as raw
        return _plain(arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)), None
    else:
        d = pc.dictionary_encode(arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0))
    values = d.dictionary
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or \
            pa.types.is_string_view(values.type):
        values = _plain(values)
    return values, d.indices.cast(pa.int32())


def _plain(a: pa.Array) -> pa.Array:
    return a if a.type == pa.string() else a.cast(pa.string())


def _int32(a: pa.ChunkedArray | pa.Array) -> pa.Array:
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    return a.cast(pa.int32())


def _buf(a: pa.Array) -> pa.Buffer | bytes:
    """The int32 values of ``a`` (no nulls) as one buffer from element 0."""
    if not len(a):
        return b""
    data = a.buffers()[1]
    return data.slice(a.offset * 4, len(a) * 4)


def _scan(automaton, values: pa.Array) -> tuple[pa.Array, pa.Array]:
    validity, offsets, data = values.buffers()
    v, leaf = automaton.scan(len(values), values.offset, validity, offsets,
                             data if data is not None else b"")
    return (pa.Array.from_buffers(pa.int32(), len(v) // 4, [None, pa.py_buffer(v)]),
            pa.Array.from_buffers(pa.int32(), len(leaf) // 4, [None, pa.py_buffer(leaf)]))


def _lowered(con, values: pa.Array) -> pa.Array:
    """``values`` with the non-ASCII ones lower-cased by DuckDB (the automaton folds ASCII
    itself, as lower() does): so that case-insensitive tests agree with lower() exactly."""
    ascii_ = pc.fill_null(pc.string_is_ascii(values), True)
    if pc.all(ascii_).as_py():
        return values
    odd = pc.indices_nonzero(pc.invert(ascii_))
    with con.cursor() as cur:
        cur.register("__ts_odd", pa.table({"v": values.take(odd)}))
        low = cur.sql("SELECT lower(v) FROM __ts_odd").to_arrow_table().column(0)
    return pc.replace_with_mask(values, pc.invert(ascii_), _plain(low.combine_chunks()))


def _lowercase(con, texts: list[str]) -> dict[str, str]:
    """DuckDB's lower() of each text (Python's str.lower differs beyond ASCII)."""
    out = {t: t.lower() for t in texts if t.isascii()}
    odd = sorted({t for t in texts if not t.isascii()})
    if odd:
        with con.cursor() as cur:
            cur.register("__ts_texts", pa.table({"t": pa.array(odd, pa.string())}))
            out.update(cur.sql("SELECT t, lower(t) FROM __ts_texts").fetchall())
    return out


def _leaf_ids(prog: tuple) -> set[int]:
    if prog[0] == "leaf":
        return {prog[1]}
    if prog[0] == "not":
        return _leaf_ids(prog[1])
    return set().union(*(_leaf_ids(k) for k in prog[1]))


def _fold(prog: tuple, bits: dict[int, pa.Array]) -> bool | pa.Array:
    """A rule's value over a slice: a leaf without a bitmap holds on no row; True/False when
    that decides it, else a boolean array."""
    op = prog[0]
    if op == "leaf":
        return bits.get(prog[1], False)
    if op == "not":
        x = _fold(prog[1], bits)
        return (not x) if isinstance(x, bool) else pc.invert(x)
    unit = op == "and"  # the value that changes nothing
    acc: bool | pa.Array = unit
    for k in prog[1]:
        x = _fold(k, bits)
        if x is (not unit):
            return not unit
        if x is unit:
            continue
        acc = x if acc is unit else (pc.and_(acc, x) if unit else pc.or_(acc, x))
    return acc


def reference_sql(rules: Sequence[CompiledRule], source: str, keep: str = "*") -> str:
    """SELECT ``keep`` plus ``hits`` (indexes into ``rules``) of every row of ``source``: each
    rule's SQL on each row, the reference the engine must agree with (slow)."""
    if not rules:
        return f"SELECT {keep}, []::INTEGER[] AS hits FROM ({source})"
    cases = ", ".join(f"CASE WHEN {r.sql} THEN {i} END" for i, r in enumerate(rules))
    return f"SELECT {keep}, list_distinct([{cases}])::INTEGER[] AS hits FROM ({source})"


__all__ = ["Engine", "Leaf", "reference_sql", "with_field_columns"]
