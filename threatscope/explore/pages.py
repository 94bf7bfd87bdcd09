"""The dashboard's pages: what each shows, read from a snapshot (no HTTP here).

    app = Dashboard(snapshots)
    status, html = app.page("/events", {"figure": ["campaigns[campaign=gpon]"], "org": ["org01"]})

Pages: ``/`` (the period's figures under the filters, each value a link to its events),
``/events`` (the events behind one figure, paged, with raw line, parsed fields, rules and
enrichment), ``/search`` (full text over the raw lines), ``/quarantine`` (lines ingest set aside,
with reasons) and ``/report`` (the period's whole report, as `threatscope report` writes it).
Every figure is evaluated by the figure definitions of ``analyze.figures`` through
:class:`~threatscope.explore.provenance.Provenance`: the numbers are the report's numbers.
Everything shown from the workspace is escaped by Jinja2's autoescape after ``report.text.clean``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import jinja2
from markupsafe import Markup

from threatscope.analyze import figures as F
from threatscope.analyze import parse_period
from threatscope.analyze.period import Period
from threatscope.errors import UserError
from threatscope.explore.provenance import Provenance, jsonable, sql_text, target
from threatscope.explore.snapshot import Snapshot, Snapshots
from threatscope.ingest.lake import staging_root
from threatscope.report.text import clean, fmt_fold, fmt_int, fmt_pct
from threatscope.workspace import relations

PAGE_SIZE = 50
RAW_SHOWN = 400  # characters of a raw line shown before "more"
WINDOWS_KEPT = 4  # prepared (period, baseline) pairs kept per snapshot
OVERVIEWS_KEPT = 32  # overviews (period, baseline, filters) whose figures are kept
WORKERS = 4  # threads (and cursors) a page's queries run on
# relations whose rows depend on the period (prepare's split): their figures are evaluated on a
# cursor prepared for the request's period; every other relation holds every day once
WINDOWED = {"src_first", "src_host", "src_service", "src_product", "ind", "exposure"}
_TEMPLATES = Path(__file__).with_name("templates")

# filter name -> (label, SQL condition over the detection relations; {v}: the quoted value)
FILTERS: dict[str, tuple[str, str]] = {
    "org": ("organisation", "org_id = {v}"),
    "sector": ("sector", "sector = {v}"),
    "campaign": ("campaign", "campaign = {v}"),
    "cve": ("CVE", "list_contains(cves, upper({v}))"),
    "country": ("country", "country_code = upper({v})"),
    "as_org": ("AS organisation", "as_org = {v}"),
}

# the overview's tabs, each of sections: title, figure, key columns (as report.json ids), label
# columns. Tabs, not one page: each figure is a pass over the detections, and a page of a few
# stays quick under any filter.
Section = tuple[str, str, tuple[str, ...], tuple[str, ...]]
TABS: dict[str, tuple[str, tuple[Section, ...]]] = {
    "attacks": ("Attacks", (
        ("Campaigns", "campaigns", ("campaign",), ("campaign",)),
        ("Products", "products", ("product",), ("product",)),
        ("CVEs", "cves", ("cve",), ("cve", "product")),
        ("Attack families", "families", ("family",), ("family",)),
        ("Malware families", "malware", ("malware_family",), ("malware_family",)))),
    "sources": ("Sources", (
        ("Source countries", "sources.countries", ("country_code",),
         ("country_code", "country_name")),
        ("Source AS organisations", "sources.as_orgs", ("asn", "network_type"),
         ("as_org", "asn", "network_type")),
        ("Top source addresses", "sources.ips", ("src_ip",),
         ("src_ip", "country_code", "as_org")))),
    "targets": ("Targets and rules", (
        ("Sectors", "sectors.events", ("sector",), ("sector",)),
        ("Organisations", "orgs.events", ("org_id",), ("org_id", "name", "sector")),
        ("Rules", "rules", ("rule_id", "severity"), ("title", "severity")))),
}
TOTALS = ("totals.detected_events", "totals.detections", "totals.source_ips", "totals.orgs_hit")


@dataclass
class View:
    """A request's period, baseline and filters (validated; values as given)."""

    period: Period
    baseline: Period
    filters: dict[str, str]

    def where(self) -> str:
        conds = [FILTERS[k][1].format(v=sql_text(v)) for k, v in self.filters.items()]
        return " AND ".join(conds) if conds else "true"

    def query(self, **more: Any) -> str:
        """The URL query of this view plus ``more`` (None values left out)."""
        q = {"period": self.period.label, "baseline": self.baseline.label, **self.filters,
             **more}
        return urlencode({k: v for k, v in q.items() if v not in (None, "")})


class Window:
    """A cursor of the snapshot prepared for one period and baseline (temp relations are per
    cursor); requests on it take turns."""

    def __init__(self, snap: Snapshot, period: Period, baseline: Period):
        self.lock = threading.Lock()
        self.con = snap.new_cursor()
        start, end = min(period.start, baseline.start), max(period.end, baseline.end)
        self.have = F.prepare(self.con, start, end, period.start)

    def close(self) -> None:
        with self.lock:  # after the request using it, if one is
            self.con.close()


class Dashboard:
    """The pages over the current snapshot of :class:`Snapshots`."""

    def __init__(self, snapshots: Snapshots):
        self.snapshots = snapshots
        self._windows: OrderedDict[tuple, Window] = OrderedDict()
        self._wlock = threading.Lock()
        self._reports: dict[tuple, str] = {}
        self._overviews: OrderedDict[tuple, tuple] = OrderedDict()
        self._lists: dict[int, tuple] = {}  # per snapshot: filter choices, organisation names
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="page")

    # -- request plumbing -------------------------------------------------------------------
    def page(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        """(status, HTML) of a GET of ``path`` with ``query`` (parse_qs form); the page's
        Content-Security-Policy is :func:`csp` of ``path``."""
        route: dict[str, Callable[[Snapshot, dict[str, str]], str]] = {
            "/": self._overview, "/events": self._events, "/search": self._search,
            "/quarantine": self._quarantine, "/report": self._report}
        snap = self.snapshots.current
        self._forget_older(snap)
        args = {k: v[-1] for k, v in query.items() if v}
        if path not in route:
            return 404, self._message(snap, "Not found", "There is no such page.", args)
        if snap.default_period is None and path in ("/", "/events", "/report"):
            return 200, self._message(snap, "Nothing to show yet", "The workspace has no events "
                                      "yet: ingest some logs (`threatscope ingest`).", args)
        try:
            return 200, route[path](snap, args)
        except UserError as e:
            return 400, self._message(snap, "Cannot show this", str(e), args)

    def _forget_older(self, snap: Snapshot) -> None:
        """Once a newer snapshot serves, what was kept for older ones goes (their windows'
        cursors would keep the older database in memory)."""
        with self._wlock:
            for k in [k for k in self._windows if k[0] != snap.serial]:
                self._windows.pop(k).close()
            for k in [k for k in self._overviews if k[0] != snap.serial]:
                del self._overviews[k]

    def close(self) -> None:
        """Stop the page threads and close the windows' cursors."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._wlock:
            while self._windows:
                self._windows.popitem()[1].close()

    def _view(self, snap: Snapshot, args: dict[str, str]) -> View:
        if snap.default_period is None:
            raise UserError("the workspace has no events yet: ingest some logs first")
        period = parse_period(args["period"]) if args.get("period") else snap.default_period
        baseline = (parse_period(args["baseline"]) if args.get("baseline")
                    else period.baseline())
        filters = {}
        for k in FILTERS:
            v = args.get(k, "").strip()
            if v:
                if len(v) > 500 or "\0" in v:
                    raise UserError(f"filter {k}: too long or not text")
                filters[k] = v
        return View(period, baseline, filters)

    def _window(self, snap: Snapshot, view: View) -> Window:
        key = (snap.serial, view.period, view.baseline)
        with self._wlock:
            w = self._windows.get(key)
            if w is None:
                w = self._windows[key] = Window(snap, view.period, view.baseline)
                while len(self._windows) > WINDOWS_KEPT:
                    self._windows.popitem(last=False)[1].close()
            self._windows.move_to_end(key)
            return w

    def _render(self, snap: Snapshot, name: str, args: dict[str, str], **ctx: Any) -> str:
        return _env().get_template(name).render(
            snap=self._banner(snap), args=args, filters=FILTERS, **ctx)

    def _banner(self, snap: Snapshot) -> dict[str, Any]:
        s = self.snapshots
        return {"taken_at": snap.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "busy_since": s.busy_since.strftime("%H:%M:%S UTC") if s.busy_since else None,
                # an ingest stages its files there until it commits (or a killed one left them)
                "ingesting": staging_root(snap.ws).exists(),
                "catalog_read": snap.catalog_read, "error": s.error,
                "workspace": str(snap.ws.root)}

    def _message(self, snap: Snapshot, title: str, text: str, args: dict[str, str]) -> str:
        return self._render(snap, "message.html.j2", args, title=title, text=text)

    def _names(self, snap: Snapshot) -> dict[str, str]:
        return self._snapshot_lists(snap)[1]

    def _choices(self, snap: Snapshot) -> dict[str, list[tuple[str, str]]]:
        return self._snapshot_lists(snap)[0]

    def _snapshot_lists(self, snap: Snapshot) -> tuple[dict, dict]:
        """What the filter lists offer and the organisations' names: once per snapshot."""
        got = self._lists.get(snap.serial)
        if got is None:
            with snap.cursor() as con:
                names = dict(con.execute("SELECT org_id, name FROM org").fetchall())
            got = (self._choice_lists(snap), names)
            self._lists = {snap.serial: got}  # an older snapshot's are not needed again
        return got

    def _choice_lists(self, snap: Snapshot) -> dict[str, list[tuple[str, str]]]:
        """The values each filter can take (value, text) for its list, from the snapshot."""
        sql = {"org": "SELECT DISTINCT o.org_id, concat_ws(' — ', o.org_id, g.name) FROM orgs o "
                      "LEFT JOIN org g USING (org_id)",
               "sector": "SELECT DISTINCT sector, sector FROM orgs",
               "campaign": "SELECT DISTINCT campaign, campaign FROM det",
               "country": "SELECT DISTINCT country_code, country_code FROM det"}
        out: dict[str, list[tuple[str, str]]] = {}
        with snap.cursor() as con:
            for k, q in sql.items():
                rows = con.execute(f"SELECT * FROM ({q}) t(v, text) WHERE v IS NOT NULL "
                                   "ORDER BY v LIMIT 500").fetchall()
                out[k] = [(r[0], r[1]) for r in rows]
        return out

    # -- pages ------------------------------------------------------------------------------
    def _on_cursors(self, snap: Snapshot, jobs: list[Callable[[Any], Any]]) -> list[Any]:
        """Run ``jobs`` (each given a cursor of the snapshot) on the dashboard's threads, a
        share of them per cursor: DuckDB runs a query over a filtered table on few threads,
        several queries side by side use the cores."""
        n = min(len(jobs), WORKERS)

        def run(share: list[tuple[int, Callable]]) -> list[tuple[int, Any]]:
            with snap.cursor() as con:
                return [(i, job(con)) for i, job in share]

        shares = [list(enumerate(jobs))[k::n] for k in range(n)]
        out = [r for part in self._pool.map(run, shares) for r in part]
        return [r for _, r in sorted(out, key=lambda x: x[0])]

    def _overview(self, snap: Snapshot, args: dict[str, str]) -> str:
        view = self._view(snap, args)
        tab = args.get("tab") or "attacks"
        if tab not in TABS:
            raise UserError(f"no tab {tab!r}: {', '.join(TABS)}")
        key = (snap.serial, tab, view.period, view.baseline,
               tuple(sorted(view.filters.items())))
        cached = self._overviews.get(key)
        if cached is None:
            cached = self._overview_figures(snap, view, TABS[tab][1])
            with self._wlock:
                self._overviews[key] = cached
                while len(self._overviews) > OVERVIEWS_KEPT:
                    self._overviews.popitem(last=False)
        totals, sections = cached
        tabs = [(name, label, "/?" + view.query(tab=name)) for name, (label, _) in TABS.items()]
        return self._render(snap, "overview.html.j2", args, view=view, totals=totals,
                            sections=sections, choices=self._choices(snap), tab=tab, tabs=tabs)

    def _overview_figures(self, snap: Snapshot, view: View,
                          shown: tuple[Section, ...]) -> tuple[list, list]:
        """The overview's totals and sections: the snapshot is never written, so a view's
        figures are computed once (the few most recent kept)."""
        names = self._names(snap)

        def total(fid: str) -> Callable:
            def job(con: Any) -> dict:
                prov = Provenance(con, snap.ws, view.period, view.baseline, view.where())
                return self._figure_row(prov, view, fid, {})
            return job

        def section(title: str, fid: str, key: tuple, labels: tuple) -> Callable:
            def job(con: Any) -> dict:
                prov = Provenance(con, snap.ws, view.period, view.baseline, view.where())
                # (its extra columns are not shown: not computed; values and ranks the same)
                fig = replace(prov.narrowed(F.FIGURES[fid]), extra={})
                rows = []
                for r in F.evaluate(con, fig, view.period, view.baseline):
                    r["name"] = names.get(r.get("org_id"))  # organisations by name too
                    k = {c: jsonable(r[c]) for c in key}
                    rows.append({"labels": [jsonable(r.get(c)) for c in labels],
                                 **self._cells(view, fid, k, r["period"], r["baseline"])})
                return {"title": title, "figure": fid, "labels": labels,
                        "compare": fig.windows == "compare", "rows": rows}
            return job

        done = self._on_cursors(snap, [total(f) for f in TOTALS]
                                + [section(*s) for s in shown])
        return done[:len(TOTALS)], done[len(TOTALS):]

    def _figure_row(self, prov: Provenance, view: View, fid: str, key: dict) -> dict:
        value, base = prov.value(F.figure_id(fid, key))
        return {"label": fid.split(".", 1)[1].replace("_", " "),
                **self._cells(view, fid, key, value or 0, base or 0)}

    def _cells(self, view: View, fid: str, key: dict, value: Any, base: Any) -> dict:
        figure_id = F.figure_id(fid, key)
        return {"id": figure_id, "value": value, "baseline": base,
                "value_url": "/events?" + view.query(figure=figure_id),
                "baseline_url": "/events?" + view.query(figure=figure_id, window="baseline"),
                "fold": fmt_fold(value / base) if base else "—",
                "pct": fmt_pct(100 * (value - base) / base) if base else "new" if value else "—"}

    def _events(self, snap: Snapshot, args: dict[str, str]) -> str:
        view = self._view(snap, args)
        t = target(args.get("figure", ""))
        baseline = args.get("window") == "baseline"
        if baseline and t.figure.windows != "compare":
            raise UserError(f"{t.name} is a figure of the period only: it has no baseline")
        try:
            page = max(1, int(args.get("page", "1")))
        except ValueError:
            raise UserError("page must be a number") from None
        offset = (page - 1) * PAGE_SIZE

        def prov_on(con: Any) -> Provenance:
            return Provenance(con, snap.ws, view.period, view.baseline, view.where(),
                              snap.indexed)

        jobs = [lambda c: prov_on(c).value(t.id), lambda c: prov_on(c).count(t.id, baseline),
                lambda c: prov_on(c).events(t.id, baseline, PAGE_SIZE, offset),
                lambda c: prov_on(c).definition(t.id, baseline)]
        try:
            if t.figure.table in WINDOWED:
                # relations built for one period: on the window's cursor, in turn
                win = self._window(snap, view)
                with win.lock:
                    results = [job(win.con) for job in jobs]
            else:  # relations over every day: side by side on the snapshot's cursors
                results = self._on_cursors(snap, jobs)
        except duckdb.BinderException:
            raise UserError(f"the filters cannot narrow {t.name}: its rows have no "
                            "organisation, campaign or source columns") from None
        (value, base_value), count, listing, definition = results
        pages = max(1, -(-count // PAGE_SIZE))
        return self._render(
            snap, "events.html.j2", args, view=view, t=t, definition=definition,
            value=base_value if baseline else value, baseline=baseline, count=count,
            listing=listing, page=page, pages=pages, raw_shown=RAW_SHOWN,
            prev_url=("/events?" + view.query(figure=t.id, window=args.get("window"),
                                              page=page - 1)) if page > 1 else None,
            next_url=("/events?" + view.query(figure=t.id, window=args.get("window"),
                                              page=page + 1)) if page < pages else None)

    def _search(self, snap: Snapshot, args: dict[str, str]) -> str:
        q = args.get("q", "")
        view = self._view(snap, args) if snap.default_period else None
        hits, more = [], False
        page = max(1, int(args["page"])) if args.get("page", "").isdigit() else 1
        if q:
            if len(q) > 500:
                raise UserError("search for at most 500 characters")
            hits, more = search(snap, q, view, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        base = view.query(q=q) if view else urlencode({"q": q})
        return self._render(snap, "search.html.j2", args, view=view, q=q, hits=hits, page=page,
                            raw_shown=RAW_SHOWN,
                            prev_url=f"/search?{base}&page={page - 1}" if page > 1 else None,
                            next_url=f"/search?{base}&page={page + 1}" if more else None)

    def _quarantine(self, snap: Snapshot, args: dict[str, str]) -> str:
        page = max(1, int(args["page"])) if args.get("page", "").isdigit() else 1
        reason = args.get("reason") or None
        with snap.cursor() as con:
            reasons = con.execute("SELECT reason, count(*) FROM quarantine GROUP BY 1 "
                                  "ORDER BY 2 DESC, 1").fetchall()
            cond, params = ("WHERE q.reason = ?", [reason]) if reason else ("", [])
            total = con.execute(f"SELECT count(*) FROM quarantine q {cond}", params).fetchone()[0]
            cur = con.execute(
                "SELECT coalesce(q.source_file, m.path, q.file_id) AS file, q.source_line AS "
                f"line, q.reason, q.raw FROM quarantine q LEFT JOIN ingest_manifest m USING "
                f"(file_id) {cond} ORDER BY file, line LIMIT {PAGE_SIZE} OFFSET {(page - 1) * PAGE_SIZE}",
                params)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        pages = max(1, -(-total // PAGE_SIZE))
        base = urlencode({"reason": reason} if reason else {})
        return self._render(snap, "quarantine.html.j2", args, reasons=reasons, total=total,
                            rows=rows, page=page, pages=pages, reason=reason,
                            reason_url=lambda r: "/quarantine?" + urlencode({"reason": r}),
                            prev_url=f"/quarantine?{base}&page={page - 1}" if page > 1 else None,
                            next_url=f"/quarantine?{base}&page={page + 1}"
                            if page < pages else None)

    def _report(self, snap: Snapshot, args: dict[str, str]) -> str:
        """The whole report of the period, as `threatscope report` renders it (cached per
        snapshot and window)."""
        from threatscope.analyze.metrics import document
        from threatscope.analyze.scope import resolve_scope
        from threatscope.report.html import render_html

        view = self._view(snap, args)
        key = (snap.serial, view.period, view.baseline)
        if key not in self._reports:
            win = self._window(snap, view)
            with win.lock:
                doc = document(win.con, snap.ws, view.period, view.baseline, win.have,
                               resolve_scope(win.con))
            self._reports = {k: v for k, v in self._reports.items() if k[0] == snap.serial}
            self._reports[key] = render_html(doc)
        return self._reports[key]


def csp(path: str) -> str:
    """The Content-Security-Policy of a page: no script anywhere; the dashboard's pages style
    with its stylesheet, /report with the report's own style element (by hash)."""
    if path == "/report":
        from threatscope.report.html import report_csp

        return report_csp() + "; frame-ancestors 'none'"
    return ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


def search(snap: Snapshot, q: str, view: View | None, limit: int, offset: int
           ) -> tuple[list[dict[str, Any]], bool]:
    """Logged events whose raw line contains ``q`` (case-insensitive), oldest first, with the
    rules that matched them; and whether there are more."""
    # ILIKE, not lower() of every line: no copy of 10 million strings per search
    like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    conds, params = ["raw ILIKE ? ESCAPE '\\'"], [like]
    if view is not None:
        if "org" in view.filters:
            conds.append("org_id = ?")
            params.append(view.filters["org"])
    kinds = ("http", "alert", "process_creation", "ps_script", "windows_event", "document")
    union = " UNION ALL ".join(
        f"SELECT '{k}' AS event_kind, org_id, ts, file_id, source_file, source_line, raw "
        f"FROM {k} WHERE {' AND '.join(conds)}" for k in kinds)
    with snap.cursor() as con:
        cur = con.execute(
            f"SELECT * FROM ({union}) ORDER BY ts, file_id, source_line "
            f"LIMIT {int(limit) + 1} OFFSET {int(offset)}", params * len(kinds))
        names = [d[0] for d in cur.description]
        hits = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        more = len(hits) > limit
        hits = hits[:limit]
        keys = [(h["file_id"], h["source_line"]) for h in hits]
        rules: dict[tuple, list] = {}
        if keys and "detection" in relations(con):
            for fid, line, title, sev in con.execute(
                    "SELECT file_id, source_line, title, severity FROM detection "
                    "WHERE (file_id, source_line) IN (SELECT unnest(?, recursive := true))",
                    [[{"f": f, "l": n} for f, n in keys]]).fetchall():
                rules.setdefault((fid, line), []).append((title, sev))
    for h in hits:
        h["rules"] = rules.get((h["file_id"], h["source_line"]), [])
    return hits, more


def _link(url: str, text: object, figure_id: str | None = None, part: str = "value") -> Markup:
    attr = "data-figure" if part == "value" else "data-figure-baseline"
    if figure_id is None:
        return Markup('<a href="{}">{}</a>').format(url, text)
    return Markup('<a href="{}" {}="{}">{}</a>').format(url, Markup(attr), figure_id, text)


def _finalize(v: object) -> object:
    if isinstance(v, Markup) or not isinstance(v, str):
        return v
    return clean(v, 2000)


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, finalize=_finalize)
    env.filters.update(int=fmt_int, clean=clean,
                       when=lambda v: v.isoformat(sep=" ") if isinstance(v, datetime) else v,
                       json=lambda v: jsonable(v))
    env.globals.update(link=_link, now=lambda: datetime.now(UTC))
    return env
