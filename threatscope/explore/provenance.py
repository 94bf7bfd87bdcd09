"""The events behind a figure: its definition, its count, and its rows joined to the lake.

    with Provenance.open(ws, Period.parse("2018Q2")) as prov:
        prov.count("campaigns[campaign=gpon]")            # == the figure's value in report.json
        for row in prov.rows("campaigns[campaign=gpon]", limit=10):
            row["rule_id"], row["country_code"], row["raw"], row["fields"]["url_original"]

A figure id names a figure of :data:`threatscope.analyze.figures.FIGURES` and the key of one of
its groups (``figures.figure_id``). Its rows are those of the figure's relation that pass its
filter, the key and the window (the period, or the baseline with ``baseline=True``); each row of
a detection relation carries its rule and the enrichment of its source, and is joined here to
the logged event: the raw line and the parsed fields of the lake.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import duckdb

from threatscope import schema
from threatscope.analyze import figures as F
from threatscope.analyze.period import Period
from threatscope.analyze.scope import resolve_scope
from threatscope.errors import UserError
from threatscope.report.tables import cell
from threatscope.workspace import Workspace

# measures that count something: the figure's value is that count over its rows
_COUNTS = re.compile(r"^(count\(|sum\(sightings\)$)", re.I)
# columns of the lake that are the event's identity or storage detail, not a parsed field
_NOT_FIELDS = {"org_id", "event_kind", "file_id", "source_file", "source_line", "raw",
               "event_date", "filename"}
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
LAKE_BATCH = 2000  # detections joined to the lake per query when exporting
# An index of logged events: (cursor, kinds) whose tables event_<kind> hold the lake rows of
# those kinds' detected events (a dashboard snapshot's: explore/snapshot.py).
EventIndex = tuple[duckdb.DuckDBPyConnection, set[str]]


@dataclass(frozen=True)
class Target:
    """One figure value: ``figure`` (its definition) restricted to ``key``."""

    id: str
    name: str
    figure: F.Figure
    key: dict[str, Any]

    @property
    def counts(self) -> bool:
        """Whether the figure's value is a count of its rows (events, matches, addresses)."""
        return bool(_COUNTS.match(self.figure.measure)) and self.figure.rollup is None


def target(figure_id: str) -> Target:
    """Resolve a figure id (``campaigns[campaign=gpon]``); a clear error for unknown ones."""
    name, key = F.parse_id(figure_id.strip())
    fig = F.FIGURES.get(name)
    if fig is None:
        close = [f for f in sorted(F.FIGURES) if f.split(".")[0] == name.split(".")[0]]
        raise UserError(f"unknown figure {name!r}; "
                        + (f"did you mean: {', '.join(close)}" if close else
                           "`threatscope explain --list` lists them"))
    extra = set(key) - set(fig.by)
    if extra:
        raise UserError(f"{figure_id}: {', '.join(sorted(extra))} is not a key of {name} "
                        f"(its keys: {', '.join(fig.by) or 'none'})")
    return Target(figure_id, name, fig, key)


class Provenance:
    """A connection with the figures' relations prepared for one period and its baseline."""

    def __init__(self, con: duckdb.DuckDBPyConnection, ws: Workspace, period: Period,
                 baseline: Period | None = None, where: str = "true",
                 indexed: set[str] = frozenset()):
        """``con``: prepared (figures.prepare) for ``period`` and ``baseline`` (default: the
        period before). ``where``: a condition on the relations' columns that narrows every
        figure (the dashboard's filters), SQL text with its values quoted. ``indexed``: event
        kinds whose detected events ``con`` holds as ``event_<kind>`` (a snapshot's), read
        there instead of the lake."""
        self.con, self.ws, self.period = con, ws, period
        self.baseline = baseline or period.baseline()
        self.where = where
        self.index: EventIndex | None = (con, set(indexed)) if indexed else None

    @classmethod
    @contextmanager
    def open(cls, ws: Workspace, period: Period | None = None, org: str | None = None,
             sector: str | None = None) -> Iterator[Provenance]:
        """The period's relations (default period: the report's, the latest quarter with
        detections), for every organisation or the scope of ``org``/``sector``."""
        from threatscope.analyze.metrics import latest_day

        with ws.connect(read_only=True) as con:  # (Workspace.open made the catalog)
            scope = resolve_scope(con, org, sector)
            if period is None:
                latest = latest_day(con)
                if latest is None:
                    raise UserError(f"workspace {ws.root} has no events or detections")
                period = Period.containing(latest, "quarter")
            base = period.baseline()
            F.prepare(con, base.start, period.end, period.start, scope.org_ids)
            yield cls(con, ws, period)

    def _sql(self, t: Target, baseline: bool) -> tuple[str, list[Any]]:
        return F.rows_sql(self.narrowed(t.figure), self.baseline if baseline else self.period,
                          t.key)

    def narrowed(self, fig: F.Figure) -> F.Figure:
        """``fig`` with this view's ``where`` added to its own."""
        return fig if self.where == "true" else replace(
            fig, where=f"({fig.where}) AND ({self.where})")

    def value(self, figure_id: str) -> tuple[Any, Any]:
        """The figure's (period, baseline) values as the report computes them (None, None when
        its key names no group)."""
        t = target(figure_id)
        # the key as a filter, so that a group outside a top-N list still has its value
        fig = self.narrowed(t.figure)
        fig = replace(fig, top=None, where=" AND ".join(
            [f"({fig.where})", *(_key_cond(c, v) for c, v in t.key.items())]))
        rows = F.evaluate(self.con, fig, self.period, self.baseline)
        if len(rows) > 1:  # a key must name one group (metrics records ids so)
            raise UserError(f"{figure_id} names {len(rows)} groups of {t.name}: add the key "
                            f"columns {', '.join(c for c in t.figure.by if c not in t.key)}")
        return (rows[0]["period"], rows[0]["baseline"]) if rows else (None, None)

    def count(self, figure_id: str, baseline: bool = False) -> int:
        """How many events (or matches, addresses: the figure's unit) contribute to the figure:
        for a count figure, its value."""
        t = target(figure_id)
        if baseline and t.figure.windows != "compare":
            raise UserError(f"{t.name} is a figure of the period only: it has no baseline value")
        sql, params = self._sql(t, baseline)
        measure = t.figure.measure if t.counts else (
            F.EVENTS if "ev" in self._columns(sql, params) else F.MATCHES)
        return int(self.con.execute(f"SELECT coalesce({measure}, 0) FROM ({sql})",
                                    params).fetchone()[0])

    def _columns(self, sql: str, params: list[Any]) -> list[str]:
        return [d[0] for d in self.con.execute(f"SELECT * FROM ({sql}) LIMIT 0",
                                               params).description]

    def rows(self, figure_id: str, baseline: bool = False, limit: int | None = 100,
             offset: int = 0) -> Iterator[dict[str, Any]]:
        """The rows behind the figure in a stable order (time, then event, then rule), each
        with ``raw`` and ``fields`` (the parsed event) when it names a logged event."""
        t = target(figure_id)
        sql, params = self._sql(t, baseline)
        cols = self._columns(sql, params)
        order = [c for c in ("ts", "day", "org_id", "file_id", "source_line", "rule_id", "ip",
                             "src_ip", "value") if c in cols] or ["ALL"]
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        internal = [c for c in cols if c in ("ev", "fno")]
        select = f"* EXCLUDE ({', '.join(internal)})" if internal else "*"
        # the lake is read on connections of its own (lake_join): this result streams on
        res = self.con.execute(
            f"SELECT {select} FROM ({sql}) ORDER BY {', '.join(order)}{page}", params)
        names = [d[0] for d in res.description]
        while batch := res.fetchmany(LAKE_BATCH):
            yield from lake_join(self.ws, [dict(zip(names, r, strict=True)) for r in batch],
                                 self.index)

    def events(self, figure_id: str, baseline: bool = False, limit: int = 50,
               offset: int = 0) -> dict[str, Any]:
        """One page of what the figure counts: for a figure of detected events, one item per
        event (its first detection's columns, ``detections``: every rule it matched, ``raw``
        and ``fields``); otherwise one item per row. ``{"unit": "events"|"rows", "items"}``."""
        t = target(figure_id)
        sql, params = self._sql(t, baseline)
        cols = self._columns(sql, params)
        if "ev" not in cols or t.figure.measure not in (F.EVENTS, F.HOSTING_EVENTS):
            return {"unit": "rows", "items": list(self.rows(figure_id, baseline, limit, offset))}
        evs = [r[0] for r in self.con.execute(
            f"SELECT ev, min(ts) AS t FROM ({sql}) GROUP BY ev ORDER BY t, ev "
            f"LIMIT {int(limit)} OFFSET {int(offset)}", params).fetchall()]
        if not evs:
            return {"unit": "events", "items": []}
        detail = ["rule_id", "title", "severity", "evidence", "campaign", "cve", "technique"]
        cur = self.con.execute(
            f"SELECT * FROM ({sql}) WHERE ev IN (SELECT unnest(?)) "
            f"ORDER BY ts, ev, rule_id", [*params, evs])
        names = [d[0] for d in cur.description]
        by_ev: dict[int, dict[str, Any]] = {}
        for rec in cur.fetchall():
            r = dict(zip(names, rec, strict=True))
            item = by_ev.setdefault(r["ev"], {
                **{k: v for k, v in r.items() if k not in detail and k not in ("ev", "fno")},
                "detections": []})
            item["detections"].append({k: r[k] for k in detail if k in r})
        items = lake_join(self.ws, [by_ev[e] for e in evs if e in by_ev], self.index)
        return {"unit": "events", "items": items}

    def definition(self, figure_id: str, baseline: bool = False) -> dict[str, Any]:
        """The figure's definition, its key, window and the SQL listing its rows."""
        t = target(figure_id)
        sql, params = self._sql(t, baseline)
        w = self.baseline if baseline else self.period
        return {"id": t.id, "figure": t.name, "key": t.key, **t.figure.definition(),
                "window": "all" if t.figure.windows == "all" else
                f"{w.label} ({w.start.isoformat()}..{(w.end - timedelta(days=1)).isoformat()})",
                "unit": _unit(t.figure.measure), "sql": sql, "parameters": params}


def _key_cond(col: str, v: Any) -> str:
    if v is None:
        return f"{col} IS NULL"
    return f"CAST({col} AS VARCHAR) = {sql_text(str(v))}"


def sql_text(v: str) -> str:
    """A SQL string literal of ``v`` (text from logs and URLs: quotes doubled; NUL refused)."""
    if "\0" in v:
        raise UserError("a filter value cannot contain a NUL character")
    return "'" + v.replace("'", "''") + "'"


def _unit(measure: str) -> str:
    if measure == F.EVENTS:
        return "detected events (a logged event matched by at least one rule)"
    if measure == F.MATCHES:
        return "rows (for detections: rule matches, one per event and rule)"
    if "DISTINCT ip" in measure or "DISTINCT src_ip" in measure:
        return "attacking addresses"
    return measure


def lake_join(ws: Workspace, rows: list[dict[str, Any]],
              index: EventIndex | None = None) -> list[dict[str, Any]]:
    """``rows`` with ``raw`` and ``fields`` (the lake's parsed columns) of the logged event each
    names by ``event_kind``, ``org_id``, ``file_id`` and ``source_line`` (rows that name none are
    returned as they are). One query per event kind: in ``index`` when it holds the kind, else
    over the named lake files only."""
    want: dict[str, dict[tuple[str, str], set[int]]] = {}
    for r in rows:
        kind, org, fid, line = (r.get("event_kind"), r.get("org_id"), r.get("file_id"),
                                r.get("source_line"))
        if kind in schema.KINDS and isinstance(fid, str) and _HEX.match(fid) and org is not None \
                and line is not None and "raw" not in r:
            want.setdefault(kind, {}).setdefault((org, fid), set()).add(int(line))
    found: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for kind, files in want.items():
        if index is not None and kind in index[1]:
            found.update(_indexed_rows(index[0], kind, files))
        else:
            found.update(_lake_rows(ws, kind, files))
    out = []
    for r in rows:
        ev = found.get((r.get("event_kind"), r.get("org_id"), r.get("file_id"),
                        r.get("source_line")))
        if ev is not None:
            r = {**r, "raw": ev.pop("raw", None), "fields": ev}
        out.append(r)
    return out


def _indexed_rows(con: duckdb.DuckDBPyConnection, kind: str,
                  files: dict[tuple[str, str], set[int]]
                  ) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    keys = [{"o": org, "f": fid, "l": line} for (org, fid), ls in files.items() for line in ls]
    cur = con.execute(f"SELECT * FROM event_{kind} WHERE (org_id, file_id, source_line) IN "
                      "(SELECT unnest(?, recursive := true))", [keys])
    return _as_found(kind, cur, lambda r: (r["org_id"], r["file_id"]), files)


def _as_found(kind: str, cur: duckdb.DuckDBPyConnection, where: Any,
              files: dict[tuple[str, str], set[int]]
              ) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """Rows of a lake query by event key (``where(row)``: its organisation and file), those
    asked for only; ``raw`` beside the parsed fields."""
    names = [d[0] for d in cur.description]
    out = {}
    for rec in cur.fetchall():
        r = dict(zip(names, rec, strict=True))
        org, fid = where(r)
        if r["source_line"] not in files.get((org, fid), ()):
            continue
        out[(kind, org, fid, r["source_line"])] = {
            "raw": r.get("raw"),
            **{k: v for k, v in r.items()
               if k not in _NOT_FIELDS and not k.endswith("_num") and v is not None}}
    return out


def _lake_rows(ws: Workspace, kind: str, files: dict[tuple[str, str], set[int]]
               ) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    root = ws.lake / kind
    try:
        partitions = {p.name: p for p in root.iterdir() if p.is_dir()}
    except FileNotFoundError:
        return {}
    paths, lines = [], set()
    for (org, fid), ls in files.items():
        folder = partitions.get(f"org_id={org}")  # matched by name: org ids come from logs
        if folder is None:
            continue
        paths += [str(p) for p in folder.glob(f"{fid}_*.parquet")]
        lines |= ls
    if not paths:
        return {}
    con = duckdb.connect()
    try:
        cur = con.execute(
            "SELECT * FROM read_parquet(?, filename = true, union_by_name = true) "
            f"WHERE source_line IN ({', '.join(str(n) for n in sorted(lines))})", [paths])
        return _as_found(kind, cur, lambda r: (
            Path(r["filename"]).parent.name.removeprefix("org_id="),
            Path(r["filename"]).name.split("_", 1)[0]), files)
    finally:
        con.close()


def jsonable(v: Any) -> Any:
    """A value as JSON: timestamps and dates ISO 8601, big integers as integers."""
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def write_rows(rows: Iterator[dict[str, Any]], fmt: str, out: IO[str]) -> int:
    """Write rows as JSON lines or CSV (``fields`` as JSON text, cells as the report's tables
    write them: ``report.tables.cell``); returns how many."""
    n = 0
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(jsonable(r), ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
        return n
    if fmt != "csv":
        raise UserError(f"unknown format {fmt!r} (jsonl or csv)")
    writer = None
    for r in rows:
        flat = {k: json.dumps(jsonable(v), ensure_ascii=False) if isinstance(v, dict)
                else cell(jsonable(v)) for k, v in r.items()}
        if writer is None:
            cols = list(flat)
            for extra in ("raw", "fields"):  # rows without an event still have the columns
                if extra not in cols:
                    cols.append(extra)
            writer = csv.DictWriter(out, cols, extrasaction="ignore")
            writer.writeheader()
        writer.writerow(flat)
        n += 1
    return n
