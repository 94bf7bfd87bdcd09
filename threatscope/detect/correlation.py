"""Sigma correlation rules over the events of the rules they name, as DuckDB SQL.

    sql = correlation_sql(c, "events")     # one row per firing of correlation c
    con.sql(sql)                           # over a table of the named rules' events

    correlated = Correlated(ruleset, path)          # as detect runs it:
    rows, idx = correlated.take(con, group, rules, rows, idx)   # keeps the named rules' hits
    correlated.run(con, write, per_rule)            # then writes the firings' detections

``events`` has one row per (event, rule) hit of a rule some correlation names: ``rule_id``,
``org_id``, ``ts``, ``src_ip``, ``event_kind``, ``file_id``, ``source_file``, ``source_line``
and, as text, every column the correlations read (``CompiledCorrelation.reads``). Events of
different organisations are never correlated: the organisation is always part of the group.

How a timespan is applied:

* lower bounds on a count (``event_count`` / ``value_count`` with ``gt`` / ``gte``),
  ``temporal`` and ``temporal_ordered`` use a window anchored at each event, ``[ts, ts +
  timespan]``: a burst is found wherever it falls, not only inside a fixed bucket. Windows that
  fire and overlap are one firing (from its first anchor to its last event), so a burst of 500
  events is one detection, not 490;
* every other condition (``lt``, ``lte``, ``eq``, ``neq`` and the ``value_sum`` / ``avg`` /
  ``median`` / ``percentile`` types) is tested on fixed windows of ``timespan`` aligned to
  the Unix epoch (UTC), as SIEMs bucket time: an anchored window at the tail of a burst would
  otherwise look like a quiet one.

``temporal_ordered`` needs the named rules' events in the given order (each at or after the one
before) within the timespan of the first.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from threatscope import sqlfn
from threatscope.detect.ruleset import CompiledCorrelation, CompiledRule, RuleSet
from threatscope.detect.scan import Group
from threatscope.sqlfn import sql_str

_OPS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "=", "neq": "<>"}
_AGGREGATES = {
    "event_count": "count(*)",
    "value_count": "count(DISTINCT v)",
    "value_sum": "sum(TRY_CAST(v AS DOUBLE))",
    "value_avg": "avg(TRY_CAST(v AS DOUBLE))",
    "value_median": "median(TRY_CAST(v AS DOUBLE))",
}
# the columns a firing is reported with: those of its first event
EVENT = ("org_id", "ts", "src_ip", "event_kind", "file_id", "source_file", "source_line")
_ORDER = "ts, file_id, source_line, rule_id"


def sliding(c: CompiledCorrelation) -> bool:
    """Whether ``c`` is tested on windows anchored at each event (see the module doc)."""
    if c.type in ("temporal", "temporal_ordered"):
        return True
    return c.type in ("event_count", "value_count") and c.condition["op"] in ("gt", "gte")


def correlation_sql(c: CompiledCorrelation, events: str) -> str:
    """The firings of ``c`` over the table ``events``: one row each, with the columns of
    EVENT (its first event), ``until`` (its last event's time), ``value`` (the count, sum, ...
    it fired with; for sliding windows the largest of the firing) and ``groups`` (the
    group-by values, as text, in ``c.group_by`` order)."""
    span = f"INTERVAL {int(c.timespan)} SECOND"
    ev = _events(c, events)
    if c.type == "temporal_ordered":
        return _ordered(c, ev, span)
    if not sliding(c):
        agg = _aggregate(c)
        cond = f"{agg} {_OPS[c.condition['op']]} {c.condition['count']!r}"
        first = "struct_pack(ts, file_id, source_line, rule_id)"
        cols = ", ".join(f"arg_min({x}, {first}) AS {x}" for x in EVENT if x != "ts")
        return f"""
            SELECT {cols}, min(ts) AS ts, max(ts) AS until, CAST({agg} AS DOUBLE) AS value,
                   any_value(groups) AS groups
            FROM ({ev})
            GROUP BY org_id, gkey, floor(epoch(ts) / {int(c.timespan)})
            HAVING {cond}"""
    win = (f"PARTITION BY org_id, gkey ORDER BY ts "
           f"RANGE BETWEEN CURRENT ROW AND {span} FOLLOWING")
    if c.type == "temporal" and c.expression is not None:
        present = {rid: f"p{i}" for i, rid in enumerate(c.rules)}
        flags = ", ".join(f"bool_or(rule_id = {sql_str(rid)}) OVER w AS {p}"
                          for rid, p in present.items())
        value = f"CAST(({' + '.join(f'{p}::INT' for p in present.values())}) AS DOUBLE)"
        anchored = f"SELECT *, {flags}, max(ts) OVER w AS until FROM ({ev}) WINDOW w AS ({win})"
        fired = f"SELECT *, {value} AS value FROM ({anchored}) WHERE {_expr(c.expression, present)}"
    else:
        agg = "count(DISTINCT rule_id)" if c.type == "temporal" else _aggregate(c)
        anchored = (f"SELECT *, CAST({agg} OVER w AS DOUBLE) AS value, max(ts) OVER w AS until "
                    f"FROM ({ev}) WINDOW w AS ({win})")
        fired = (f"SELECT * FROM ({anchored}) "
                 f"WHERE value {_OPS[c.condition['op']]} {c.condition['count']!r}")
    return _episodes(fired, span)


def _events(c: CompiledCorrelation, events: str) -> str:
    """The named rules' events with their group key (``gkey``: the group-by values as JSON),
    the group-by values (``groups``) and the value a value condition reads (``v``)."""
    parts = []
    for rid in dict.fromkeys(c.rules):
        gs = [f'CAST("{col}" AS VARCHAR)' for col in c.columns.get(rid, [])]
        groups = f"[{', '.join(gs)}]::VARCHAR[]" if gs else "[]::VARCHAR[]"
        v = f'CAST("{c.value[rid]}" AS VARCHAR)' if rid in c.value else "NULL::VARCHAR"
        parts.append(f"SELECT {', '.join(EVENT)}, rule_id, CAST(to_json({groups}) AS VARCHAR) "
                     f"AS gkey, {groups} AS groups, {v} AS v "
                     f"FROM {events} WHERE rule_id = {sql_str(rid)}")
    union = " UNION ALL ".join(parts)
    if c.type.startswith("temporal"):
        return union
    # an event several named rules match is one event to count
    return (f"SELECT * FROM ({union}) QUALIFY row_number() OVER "
            f"(PARTITION BY org_id, file_id, source_line, gkey ORDER BY rule_id) = 1")


def _aggregate(c: CompiledCorrelation) -> str:
    if c.type == "value_percentile":
        p = c.condition.get("percentile")
        return f"quantile_cont(TRY_CAST(v AS DOUBLE), {float(p if p is not None else 50) / 100})"
    return _AGGREGATES[c.type]


def _expr(e: list, present: dict[str, str]) -> str:
    op = e[0]
    if op == "rule":
        return present[e[1]]
    if op == "not":
        return f"(NOT {_expr(e[1], present)})"
    return "(" + f" {op.upper()} ".join(_expr(a, present) for a in e[1]) + ")"


def _ordered(c: CompiledCorrelation, ev: str, span: str) -> str:
    """Anchored at each event of the first rule: the earliest event of each next rule at or
    after the one before, all within the timespan.

    Each step is what an ASOF join would give (``b.ts >= a.t``, the nearest), as a window over
    the anchors and the next rule's events in time order: the least event time from each
    anchor's on (Spark has no ASOF join; this runs on both engines)."""
    part = "PARTITION BY org_id, gkey"
    steps = [f"a0 AS (SELECT *, ts AS t0, row_number() OVER ({part} ORDER BY {_ORDER}) AS aid "
             f"FROM ({ev}) WHERE rule_id = {sql_str(c.rules[0])})"]
    for i, rid in enumerate(c.rules[1:], start=1):
        both = (f"SELECT org_id, gkey, aid, t{i - 1} AS t_from, NULL AS bt FROM a{i - 1} "
                f"UNION ALL SELECT org_id, gkey, NULL, ts, ts FROM ({ev}) "
                f"WHERE rule_id = {sql_str(rid)}")
        nearest = (f"SELECT org_id, gkey, aid, min(bt) OVER ({part} ORDER BY t_from RANGE BETWEEN "
                   f"CURRENT ROW AND UNBOUNDED FOLLOWING) AS t{i} FROM ({both})")
        steps.append(
            f"a{i} AS (SELECT a.*, n.t{i} FROM a{i - 1} a JOIN ({nearest}) n "
            f"ON n.org_id = a.org_id AND n.gkey = a.gkey AND n.aid = a.aid "
            f"WHERE n.t{i} IS NOT NULL)")
    last = len(c.rules) - 1
    fired = (f"WITH {', '.join(steps)} SELECT *, t{last} AS until, "
             f"CAST({len(c.rules)} AS DOUBLE) AS value FROM a{last} "
             f"WHERE t{last} <= t0 + {span}")
    return _episodes(fired, span)


def _episodes(fired: str, span: str) -> str:
    """Anchored windows that fired, one row per run of overlapping ones (per organisation and
    group): its first anchor, its last event and its largest value."""
    part = "PARTITION BY org_id, gkey"
    return f"""
        SELECT {', '.join(EVENT)}, until_ AS until, value_ AS value, groups FROM (
            SELECT *, row_number() OVER ({part}, episode ORDER BY {_ORDER}) AS nth,
                   max(until) OVER ({part}, episode) AS until_,
                   max(value) OVER ({part}, episode) AS value_
            FROM (SELECT *, sum(CASE WHEN prev_end IS NULL OR ts > prev_end THEN 1 ELSE 0 END)
                                OVER ({part} ORDER BY {_ORDER} ROWS UNBOUNDED PRECEDING) AS episode
                  FROM (SELECT *, max(ts + {span}) OVER ({part} ORDER BY {_ORDER}
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
                        FROM ({fired}))))
        WHERE nth = 1"""


class Correlated:
    """The events of rules that correlation rules name, gathered while the rules run (into a
    Parquet file beside the detections, so memory holds one group's), then the correlations
    run over them (detect.correlation)."""

    def __init__(self, ruleset: RuleSet, path: Path):
        self.correlations = ruleset.correlations
        self.path = path
        self.reads: dict[str, list[str]] = defaultdict(list)  # rule id -> columns
        for c in self.correlations:
            for rid in c.rules:
                self.reads[rid] += [x for x in c.reads(rid) if x not in self.reads[rid]]
        # rules only correlations with `generate: false` name give no detections of their own
        self.silent = {rid for c in self.correlations if not c.generate for rid in c.rules} - {
            rid for c in self.correlations if c.generate for rid in c.rules}
        self.columns = sorted({x for cols in self.reads.values() for x in cols})
        self.schema = pa.schema(
            [("rule_id", pa.string()), ("org_id", pa.string()), ("ts", pa.timestamp("us")),
             ("src_ip", pa.string()), ("event_kind", pa.string()), ("file_id", pa.string()),
             ("source_file", pa.string()), ("source_line", pa.int64())]
            + [(x, pa.string()) for x in self.columns])
        self.writer = pq.ParquetWriter(path, self.schema) if self.correlations else None

    def take(self, con, group: Group, rules: list[CompiledRule], rows: pa.Array,
             idx: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Keep the hits of ``rules`` that correlations name; return the hits that are
        detections of their own."""
        if self.writer is None or not len(rows):
            return rows, idx
        named = pa.array([i for i, r in enumerate(rules) if r.id in self.reads], pa.int32())
        if len(named):
            keep = pc.is_in(idx, value_set=named)
            if pc.any(keep).as_py():
                self.writer.write_table(self._events(con, group, rules, rows.filter(keep),
                                                     idx.filter(keep)))
        silent = pa.array([i for i, r in enumerate(rules) if r.id in self.silent], pa.int32())
        if not len(silent):
            return rows, idx
        own = pc.invert(pc.is_in(idx, value_set=silent))
        return rows.filter(own), idx.filter(own)

    def _events(self, con, group: Group, rules: list[CompiledRule], rows: pa.Array,
                idx: pa.Array) -> pa.Table:
        ids = pa.array([r.id for r in rules], pa.string())
        cols: dict[str, pa.Array] = {"rule_id": ids.take(idx)}
        for c in ("org_id", "ts", "event_kind", "file_id", "source_file", "source_line"):
            cols[c] = group.column(c, rows)
        cols["src_ip"] = (group.column("source_ip", rows) if "source_ip" in
                          group.table.column_names else pa.nulls(len(rows), pa.string()))
        wanted = {x for r in rules if r.id in self.reads for x in self.reads[r.id]}
        fields = []
        for x in self.columns:
            parent = sqlfn.field_column(x)
            if x not in wanted:
                cols[x] = pa.nulls(len(rows), pa.string())
            elif parent is None:
                cols[x] = group.column(x, rows)
            else:
                fields.append(x)
                if parent[0] not in cols:
                    cols[parent[0]] = group.column(parent[0], rows)
        t = pa.table({k: v.dictionary_decode() if pa.types.is_dictionary(v.type) else v
                      for k, v in cols.items()})
        if fields:  # the JSON object's fields, as the rules read them (sqlfn.with_fields)
            con.register("__ts_correlated", t)
            t = con.sql(sqlfn.with_fields("SELECT * FROM __ts_correlated", fields)
                        ).to_arrow_table()
            con.unregister("__ts_correlated")
        return pa.table([t.column(f.name).cast(f.type) for f in self.schema], schema=self.schema)

    def run(self, con, write: Callable[[pa.Table], int], per_rule: Counter[str]) -> int:
        """Run every correlation over the events kept; write its detections."""
        if self.writer is None:
            return 0
        self.writer.close()
        self.writer = None
        con.execute(f"CREATE OR REPLACE TEMP VIEW __ts_events AS "
                    f"SELECT * FROM read_parquet({sqlfn.sql_str(str(self.path))})")
        n = 0
        for c in self.correlations:
            found = write(con.sql(detections_sql(c, "__ts_events")).to_arrow_table())
            if found:
                per_rule[c.id] += found
            n += found
        con.execute("DROP VIEW __ts_events")
        return n

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.path.unlink(missing_ok=True)


def detections_sql(c: CompiledCorrelation, events: str) -> str:
    """Detection rows (schema.DETECTION) of the firings of ``c``."""
    def text(v: str | None) -> str:
        return "NULL::VARCHAR" if v is None else sqlfn.sql_str(v)

    def texts(vs: list[str]) -> str:
        return "[" + ", ".join(sqlfn.sql_str(v) for v in vs) + "]::VARCHAR[]"

    value = ("CASE WHEN value = floor(value) THEN CAST(CAST(value AS BIGINT) AS VARCHAR) "
             "ELSE CAST(round(value, 3) AS VARCHAR) END")
    if c.type.startswith("temporal"):
        what = f"{c.type} {{}} of {len(c.rules)} rules"
    else:
        what = f"{c.type} {{}} ({c.condition['op']} {c.condition['count']})"
    groups = " || ', ' || ".join(
        f"{sqlfn.sql_str(g + '=')} || coalesce(groups[{i + 1}], '(none)')"
        for i, g in enumerate(c.group_by)) or "''"
    what = sqlfn.sql_str(what).replace("{}", "' || " + value + " || '")
    evidence = (f"left({what} || {sqlfn.sql_str(' within ' + c.timespan_text + ': ')} || "
                f"{groups} || ' (' || strftime(ts, '%Y-%m-%d %H:%M:%S') || ' to ' || "
                f"strftime(until, '%Y-%m-%d %H:%M:%S') || ')', 512)")
    return f"""
        SELECT org_id, ts, src_ip, event_kind, file_id, source_file, source_line,
               {text(c.id)} AS rule_id, {text(c.title)} AS title, {text(c.level)} AS severity,
               {texts(c.cves)} AS cves, {texts(c.attack_techniques)} AS attack_techniques,
               {text(c.product)} AS product, {text(c.campaign)} AS campaign,
               {text(c.family)} AS family, {text(c.malware)} AS malware_family,
               'correlation' AS detector, {evidence} AS evidence
        FROM ({correlation_sql(c, events)})
        ORDER BY org_id, ts, file_id, source_line"""
