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
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from threatscope import schema
from threatscope.detect.ruleset import CompiledRule
from threatscope.detect.sqltext import read_columns, with_read_fields
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
        types = dict(schema.RULE_TABLES[kind])
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
        self.leaf_sets = [_leaf_ids(p) for p in self.programs]
        self.rules_of: dict[int, list[int]] = defaultdict(list)
        for i, ids_ in enumerate(self.leaf_sets):
            for leaf in sorted(ids_):
                self.rules_of[leaf].append(i)
        self._bounds: dict[frozenset[int], dict[int, tuple]] = {}
        # rules that hold when none of their leaves does (a lone negation): run on every slice
        self.always = [i for i, p in enumerate(self.programs) if _fold(p, {}) is not False]
        self.columns: dict[str, _Column] = {}
        self.row_leaves: list[int] = []  # of several columns (or a list column): per row
        for i, leaf in enumerate(self.leaves):
            typ = types.get(leaf.column) if leaf.column else None
            if leaf.column is None or (typ or "").endswith("[]"):
                self.row_leaves.append(i)
                continue
            text = typ == "VARCHAR" or (typ is None and field_column(leaf.column) is not None)
            col = self.columns.setdefault(leaf.column, _Column(leaf.column, text))
            (col.literal if leaf.kind in _KINDS and text else col.sql).append(i)
        names = [n for n, _ in schema.RULE_TABLES[kind]]
        self.read = set(self.columns) | read_columns(
            "\n".join(self.leaves[i].sql for i in self.row_leaves), names)

    # -- matching ---------------------------------------------------------------------------
    def match(self, con: duckdb.DuckDBPyConnection, table: pa.Table,
              fetch: Callable[[str, pa.Array], pa.Array] | None = None
              ) -> tuple[pa.Array, pa.Array]:
        """(row index int64, rule index int32) of every rule hit on ``table``.

        ``table`` has the columns ``self.read``: text best dictionary-encoded, as the lake is
        read; a field column (``event_data.Image``) may come as its JSON object column. A
        text column without a dictionary (``raw``), or one missing from ``table`` that
        ``fetch(column, rows)`` returns for int64 ``rows``, is *lazy*: read and tested only
        on the rows where a rule that reads it can still hold once the other columns are
        known."""
        n = table.num_rows
        if not n or not self.rules:
            return pa.array([], pa.int64()), pa.array([], pa.int32())
        names = set(table.column_names)
        jobs: list[Callable[[], _Source | None]] = []
        fields: dict[str, list[_Column]] = defaultdict(list)
        lazy: list[_Column] = []
        for col in self.columns.values():
            f = field_column(col.name)
            if col.name not in names and f is not None and f[0] in names:
                fields[f[0]].append(col)
            elif col.name not in names or (col.text and not pa.types.is_dictionary(
                    table.column(col.name).type)):
                lazy.append(col)
            else:
                jobs.append(partial(self._column_source, con, col, table.column(col.name)))
        for parent, cols in fields.items():
            jobs.append(partial(self._field_source, con, parent, cols, table.column(parent)))
        # columns side by side: DuckDB and the automaton release the GIL (each job has its
        # own cursor and its own columns)
        with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            sources = [s for s in pool.map(lambda job: job(), jobs) if s is not None]
        lazy_leaves = frozenset({i for c in lazy for i in c.literal + c.sql} |
                                set(self.row_leaves))
        # per rule reading lazy leaves: an upper bound without them (True where positive,
        # False under a NOT), the rows on which they must be known
        if lazy_leaves not in self._bounds:
            self._bounds[lazy_leaves] = {
                i: _bound(p, lazy_leaves, True) for i, p in enumerate(self.programs)
                if self.leaf_sets[i] & lazy_leaves}
        bounds = self._bounds[lazy_leaves]
        rows_out: list[pa.Array] = []
        rules_out: list[pa.Array] = []
        for start in range(0, n, SLICE):
            count = min(SLICE, n - start)
            bits: dict[int, pa.Array] = {}
            for s in sources:
                bits.update(s.bits(start, count, len(self.leaves)))
            if bounds:
                need = _any_of([_fold(b, bits) for b in bounds.values()])
                if need is not False:
                    bits.update(self._lazy_bits(con, table, fetch, lazy, start, count, need))
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
        vals, leaves = self._pairs(con, col, values)
        if not len(vals):
            return None
        return _Source(len(values), vals, leaves, indices, len(values) - 1)

    def _field_source(self, con, parent: str, cols: list[_Column], arr: pa.ChunkedArray
                      ) -> _Source | None:
        """The field columns of one JSON object column, never one per row: each field is
        taken out once per distinct object and evaluated once per distinct value of its
        own; the hits are mapped back to the objects, whose indices the rows have."""
        objects, indices = _distinct(arr)
        objects = pa.concat_arrays([objects, pa.nulls(1, objects.type)])
        with con.cursor() as cur:
            cur.register("__ts_objects", pa.table({parent: objects}))
            got = cur.sql(with_fields("SELECT * FROM __ts_objects",
                                      [c.name for c in cols])).to_arrow_table()
        ids = pa.array(range(len(objects)), pa.int32())
        vals, leaves = [], []
        for col in cols:
            enc = pc.dictionary_encode(_plain(got.column(col.name).combine_chunks()))
            values = pa.concat_arrays([enc.dictionary, pa.nulls(1, enc.dictionary.type)])
            fv, leaf = self._pairs(con, col, values)
            if not len(fv):
                continue
            of = pc.fill_null(enc.indices, len(values) - 1)  # object -> its value of the field
            j = pa.table({"o": ids, "fv": of}).join(pa.table({"fv": fv, "l": leaf}), "fv",
                                                     join_type="inner")
            vals.append(_int32(j.column("o")))
            leaves.append(_int32(j.column("l")))
        if not vals:
            return None
        return _Source(len(objects), pa.concat_arrays(vals), pa.concat_arrays(leaves), indices,
                       len(objects) - 1)

    def _pairs(self, con, col: _Column, values: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(value index, leaf) of the column's leaves holding on ``values``."""
        c = native()
        if c is None:
            pairs = [self._sql_pairs(con, col.name, values, col.literal + col.sql)]
        else:
            pairs = self._native_pairs(con, c, col, values)
        if not pairs:
            return pa.array([], pa.int32()), pa.array([], pa.int32())
        return pa.concat_arrays([p[0] for p in pairs]), pa.concat_arrays([p[1] for p in pairs])

    def _lazy_bits(self, con, table: pa.Table, fetch, lazy: list[_Column], start: int,
                   count: int, need: bool | pa.Array) -> dict[int, pa.Array]:
        """Bitmaps of the lazy leaves over rows start..start+count-1, tested on the rows
        ``need`` flags only (True: all)."""
        if need is True:
            rows = pa.array(range(start, start + count), pa.int64())
            indices = None
        else:
            rows = pc.add(pc.indices_nonzero(need), start).cast(pa.int64())
            if not len(rows):
                return {}
            # slice row -> its position among the rows tested; NULL for the others
            pos = pc.subtract(pc.cumulative_sum(need.cast(pa.int32())), 1)
            indices = pc.if_else(need, pos, pa.scalar(None, pa.int32())).cast(pa.int32())
        vals, leaves = [], []
        for col in lazy:
            if col.name in table.column_names:
                values = _plain(table.column(col.name).take(rows).combine_chunks())
            elif fetch is not None and field_column(col.name) is None:
                values = _plain(fetch(col.name, rows))
            else:
                values = pa.nulls(len(rows), pa.string())
            v, leaf = self._pairs(con, col, values)
            vals.append(v)
            leaves.append(leaf)
        if self.row_leaves:
            want = read_columns("\n".join(self.leaves[i].sql for i in self.row_leaves),
                                table.column_names)
            fields = sorted(c for c in want if c not in table.column_names)
            cols = sorted({c for c in want if c in table.column_names} |
                          {field_column(c)[0] for c in fields})
            t = table.select(cols).take(rows) if cols else pa.table({"__x": pa.nulls(len(rows))})
            v, leaf = self._sql_pairs(con, None, t, self.row_leaves, fields)
            vals.append(v)
            leaves.append(leaf)
        vals_a, leaves_a = pa.concat_arrays(vals), pa.concat_arrays(leaves)
        if not len(vals_a):
            return {}
        src = _Source(len(rows), vals_a, leaves_a, indices, -1)
        return src.bits(0, count, len(self.leaves))

    def _sql_pairs(self, con, name: str | None, values: pa.Array | pa.Table,
                   leaves: Sequence[int], fields: Sequence[str] = ()
                   ) -> tuple[pa.Array, pa.Array]:
        """(value index, leaf) of each of ``leaves`` (their SQL) holding on each of ``values``
        (a column called ``name``; or a table of the rows, for leaves of several columns, with
        the ``fields`` they read taken out of its object columns)."""
        if not leaves or not len(values):
            return pa.array([], pa.int32()), pa.array([], pa.int32())
        t = values if isinstance(values, pa.Table) else pa.table({name: values})
        t = t.append_column("__i", pa.array(range(len(t)), pa.int32()))
        cases = ", ".join(f"CASE WHEN {self.leaves[i].sql} THEN {i} END" for i in leaves)
        with con.cursor() as cur:
            cur.register("__ts_values", t)
            source = with_fields("SELECT * FROM __ts_values", list(fields)) if fields else \
                "SELECT * FROM __ts_values"
            got = cur.sql(f"SELECT __i, __l FROM (SELECT __i, unnest(list_distinct([{cases}])) "
                          f"AS __l FROM ({source})) WHERE __l IS NOT NULL").to_arrow_table()
        return _int32(got.column(0)), _int32(got.column(1))

    def _native_pairs(self, con, c, col: _Column, values: pa.Array) -> list:
        out = []
        if col.automata is None:
            self._build(con, c, col)
        folded, cased = col.automata
        nleaves = len(self.leaves)
        guard_pairs = None
        if folded is not None:
            v, leaf = _scan(folded, values, con)
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
        if vals.null_count or leaves.null_count:  # (the buffers are read as they are)
            raise ValueError("engine: NULL in a (value, leaf) pair")
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


def _scan(automaton, values: pa.Array, con=None) -> tuple[pa.Array, pa.Array]:
    """(value index, leaf) pairs of ``automaton`` over ``values``. A folding automaton leaves
    values with non-ASCII bytes out: those are lower-cased by DuckDB (the automaton folds ASCII
    itself, as lower() does) and scanned again, so that case-insensitive tests agree with
    lower() exactly."""
    v, leaf, odd = _scan_buffers(automaton, values, True)
    if not odd:
        return v, leaf
    odd = pa.Array.from_buffers(pa.int32(), len(odd) // 4, [None, pa.py_buffer(odd)])
    with con.cursor() as cur:
        cur.register("__ts_odd", pa.table({"v": values.take(odd)}))
        low = _plain(cur.sql("SELECT lower(v) FROM __ts_odd").to_arrow_table().column(0)
                     .combine_chunks())
    v2, leaf2, _ = _scan_buffers(automaton, low, False)
    return pa.concat_arrays([v, odd.take(v2)]), pa.concat_arrays([leaf, leaf2])


def _scan_buffers(automaton, values: pa.Array, skip_odd: bool) -> tuple:
    validity, offsets, data = values.buffers()
    v, leaf, odd = automaton.scan(len(values), values.offset, validity, offsets,
                                  data if data is not None else b"", skip_odd)
    return (pa.Array.from_buffers(pa.int32(), len(v) // 4, [None, pa.py_buffer(v)]),
            pa.Array.from_buffers(pa.int32(), len(leaf) // 4, [None, pa.py_buffer(leaf)]), odd)


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
    if prog[0] == "const":
        return set()
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
    if op == "const":
        return prog[1]
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


def _bound(prog: tuple, leaves: set[int], positive: bool) -> tuple:
    """``prog`` with ``leaves`` replaced so that it holds wherever ``prog`` may: True where
    they count positively, False under an odd number of NOTs."""
    op = prog[0]
    if op == "leaf":
        return ("const", positive) if prog[1] in leaves else prog
    if op == "const":
        return prog
    if op == "not":
        return ("not", _bound(prog[1], leaves, not positive))
    return (op, [_bound(k, leaves, positive) for k in prog[1]])


def _any_of(values: list) -> bool | pa.Array:
    if any(v is True for v in values):
        return True
    arrays = [v for v in values if v is not False]
    if not arrays:
        return False
    out = arrays[0]
    for a in arrays[1:]:
        out = pc.or_(out, a)
    return out


def reference_sql(rules: Sequence[CompiledRule], source: str, keep: str = "*") -> str:
    """SELECT ``keep`` plus ``hits`` (indexes into ``rules``, all of one table) of every row of
    ``source``: each rule's SQL on each row, the reference the engine must agree with (slow)."""
    if not rules:
        return f"SELECT {keep}, []::INTEGER[] AS hits FROM ({source})"
    # the field columns the rules read (event_data.Image), taken out of their objects
    source = with_read_fields(source, "\n".join(r.sql for r in rules),
                              (n for n, _ in schema.RULE_TABLES[rules[0].table]))
    cases = ", ".join(f"CASE WHEN {r.sql} THEN {i} END" for i, r in enumerate(rules))
    return f"SELECT {keep}, list_distinct([{cases}])::INTEGER[] AS hits FROM ({source})"


__all__ = ["Engine", "Leaf", "reference_sql"]
