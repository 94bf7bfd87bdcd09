"""Sigma correlation rules over the events of the rules they name, as DuckDB SQL.

    sql = correlation_sql(c, "events")     # one row per firing of correlation c
    con.sql(sql)                           # over a table of the named rules' events

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

from threatscope.detect.ruleset import CompiledCorrelation
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
    span = f"to_seconds({int(c.timespan)})"
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
            GROUP BY org_id, gkey, time_bucket({span}, ts, TIMESTAMP '1970-01-01')
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
    after the one before (an ASOF join per step), all within the timespan."""
    steps = [f"a0 AS (SELECT *, ts AS t0 FROM ({ev}) WHERE rule_id = {sql_str(c.rules[0])})"]
    for i, rid in enumerate(c.rules[1:], start=1):
        steps.append(
            f"a{i} AS (SELECT a.*, b.ts AS t{i} FROM a{i - 1} a ASOF JOIN "
            f"(SELECT org_id, gkey, ts FROM ({ev}) WHERE rule_id = {sql_str(rid)}) b "
            f"ON a.org_id = b.org_id AND a.gkey = b.gkey AND b.ts >= a.t{i - 1})")
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
