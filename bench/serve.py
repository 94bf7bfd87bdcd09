"""Dashboard speed: the pages of `threatscope serve` over HTTP on the 10-million-event workspace
of bench/report.py, beside one scan of the lake measured in the same run.

    python bench/serve.py                           # 10M events, 3 runs
    python bench/serve.py --events 2000000 --runs 1
    python bench/serve.py --keep /tmp/ws-10m        # build once, reuse on the next runs
    python bench/serve.py --keep /tmp/ws-10m --profile   # and where each page's time goes

The workspace is bench/report.py's (its builder, then the real `enrich`; see its docstring):
20 organisations, 2019Q1 (the baseline) and 2019Q2 (the period the dashboard opens on), about
5% of the requests attacks; the ingest manifest rows of its lake files are added once (the
builder writes none, and a snapshot reads only the lake files of committed ingests). Each run
starts the server in this process (``make_server`` on 127.0.0.1, port 0, ``serve_forever`` in
a thread) and times:

- the snapshot: server start (catalog and stage outputs copied, lake files pinned, the figures'
  relations prepared over every day with data, the detected events' lake rows indexed);
- with real HTTP GETs (urllib, the whole body read): the first overview ``/`` (its figures
  computed), the overview again (kept: the dashboard keeps the figures of the views it showed,
  the snapshot being read-only), the overview filtered by an organisation and a campaign and by
  a sector (its three tabs: attacks, sources, targets; each repeat another organisation and
  sector: never a kept view), the drill-down
  ``/events?figure=campaigns[campaign=<the biggest>]`` (page 1; under the organisation filter;
  page 50), the drill-down of ``totals.detected_events`` and ``/search?q=<an address seen
  once>`` (full text over every raw line: not a target of the issue, shown for scale).

The warm pages are asked ``--repeat`` times per run; best and median over all of them. Every
response must be 200, and each drill-down's ``id="event-count"`` must equal the value its
figure has on the overview under the same filters (parsed from the HTML), its page list the
events with their raw lines. CPU ms: the median CPU time of this process (every thread)
during the page, steadier than wall time on a busy machine (DuckDB's 2 threads can bring the
wall time of its share down to about half of it). Target (issue 9): a filtered overview and
a drill-down each under 300 ms at 10M events.

Baseline: bench/report.py's one scan of the whole lake (the http columns the report reads,
grouped by organisation, day and kind), once per run, DuckDB with 2 threads (the snapshot's
database uses min(4, cores) threads). ``--profile`` asks each page once more with every SQL
statement (execute and fetch), the lake reads of ``lake_join`` and the template rendering timed.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import re
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threatscope.enrich import run_enrich  # noqa: E402
from threatscope.explore import pages, provenance, serve  # noqa: E402
from threatscope.explore.snapshot import Snapshot  # noqa: E402
from threatscope.workspace import Workspace  # noqa: E402

# bench/report.py: its workspace builder and its lake scan (bench/ is not a package)
_spec = importlib.util.spec_from_file_location("bench_report",
                                               Path(__file__).with_name("report.py"))
bench_report = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["bench_report"] = bench_report
_spec.loader.exec_module(bench_report)  # type: ignore[union-attr]

TARGET_MS = 300
CPU: dict[str, float] = {}  # the CPU seconds of the last GET of each URL (see get)
# pages the issue sets the target for (the others are shown for scale)
TARGETED = {"overview org+campaign", "overview sector", "overview sector, sources",
            "overview sector, targets", "drill-down campaign",
            "drill-down campaign, org", "drill-down campaign, page 50",
            "drill-down detected events"}
_LINK = re.compile(r'<a href="[^"]*" data-figure="([^"]*)">([^<]*)</a>')
_COUNT = re.compile(r'<span id="event-count">([^<]*)</span>')
_VALUE = re.compile(r'<span id="figure-value" data-figure="[^"]*">([^<]*)</span>')


def _num(text: str) -> int | None:
    text = html.unescape(text).strip().replace(",", "")
    return int(text) if text.lstrip("-").isdigit() else None


def figure_values(page: str) -> dict[str, int | None]:
    """The overview's figure values by figure id (the links to their events)."""
    return {html.unescape(fid): _num(v) for fid, v in _LINK.findall(page)}


def get(base: str, path: str, query: dict[str, Any] | None = None) -> tuple[float, str]:
    """(seconds, body) of a GET, the whole body read; anything but 200 fails the bench. The
    CPU seconds this process spent meanwhile (server, DuckDB and client threads) are added to
    :data:`CPU` under the path and query."""
    url = base + path + ("?" + urlencode(query) if query else "")
    t, c = time.perf_counter(), time.process_time()
    try:
        with urllib.request.urlopen(url, timeout=600) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raise SystemExit(f"GET {url}: HTTP {e.code}\n{e.read().decode(errors='replace')[:2000]}"
                         ) from None
    took = time.perf_counter() - t
    CPU[url] = time.process_time() - c
    if status != 200:
        raise SystemExit(f"GET {url}: HTTP {status}")
    return took, body.decode("utf-8")


def workspace(root: Path, events: int) -> Workspace:
    """bench/report.py's workspace at ``root``: built and enriched unless it is there."""
    t = time.perf_counter()
    if not (root / "detection.parquet").exists():
        shutil.rmtree(root, ignore_errors=True)
        ws = bench_report.build(root, events)
        built = time.perf_counter() - t
        run_enrich(ws)
        print(f"built in {built:.0f} s, enriched in {time.perf_counter() - t - built:.0f} s",
              flush=True)
    ws = Workspace.open(root)
    manifest(ws)
    with ws.connect(read_only=True) as con:
        (n, files), = con.execute(
            "SELECT count(*), count(DISTINCT file_id) FROM http").fetchall()
        (dets, evs), = con.execute(
            "SELECT count(*), count(DISTINCT (file_id, source_line)) FROM detection").fetchall()
    print(f"workspace {root}: {n:,} http events in {files} lake files, {dets:,} detections "
          f"({evs:,} detected events)")
    if abs(n - events) > events // 100:
        print(f"  note: --events {events:,} but the workspace has {n:,} (built earlier with "
              "another size: remove it or use another --keep to rebuild)")
    return ws


def manifest(ws: Workspace) -> None:
    """The ingest manifest rows of the lake's http files, as ingest writes them, when missing
    (untimed): bench/report.py's builder writes the lake but not the manifest, and a snapshot
    reads only the lake files of committed ingests (those the manifest names)."""
    files = sorted(str(p) for p in ws.lake.glob("http/org_id=*/*.parquet"))
    with ws.connect() as con:
        have = {r[0] for r in con.execute("SELECT file_id FROM ingest_manifest").fetchall()}
        missing = [f for f in files if Path(f).name.split("_", 1)[0] not in have]
        if not missing:
            return
        con.execute("""
            INSERT INTO ingest_manifest (file_id, path, size, sha256, format, org_id, lines_read,
                                         rows_written, rows_quarantined, comment_lines,
                                         lines_ignored, error, started_at, finished_at,
                                         first_line, continues)
            SELECT split_part(parse_filename(filename), '_', 1), any_value(source_file),
                   sum(strlen(raw) + 1), NULL, 'combined', any_value(org_id), count(*),
                   count(*), 0, 0, 0, NULL, now(), now(), 1, NULL
            FROM read_parquet(?, filename = true, hive_partitioning = true)
            GROUP BY filename""", [missing])
    print(f"ingest manifest: {len(missing)} lake files recorded (the builder does not)")


def rare_text(ws: Workspace) -> str:
    """What to search for: the start of the log line of an address that attacked once."""
    with ws.connect(read_only=True) as con:
        ip, = con.execute("SELECT src_ip FROM detection GROUP BY src_ip HAVING count(*) = 1 "
                          "ORDER BY src_ip LIMIT 1").fetchone()
    return f"{ip} - - ["


class Served:
    """The dashboard served in this process on 127.0.0.1 (a free port)."""

    def __init__(self, ws: Workspace):
        t = time.perf_counter()
        self.server = serve.make_server(ws, "127.0.0.1", 0)
        self.start_s = time.perf_counter() - t
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class Pages:
    """The pages timed, their parameters found on the first overview, and their checks."""

    def __init__(self, overview: str, search: str):
        values = figure_values(overview)
        self.overview_values = values

        def biggest(prefix: str) -> str:
            ids = [k for k, v in values.items() if k.startswith(prefix) and v]
            if not ids:
                raise SystemExit(f"the overview lists no {prefix}...] figure")
            return max(ids, key=lambda k: values[k])  # type: ignore[arg-type, return-value]

        self.campaign_id = biggest("campaigns[campaign=")
        self.campaign = self.campaign_id.split("=", 1)[1].rstrip("]")
        # the dashboard keeps the figures of a view it has shown: each repeat of a filtered
        # overview asks for another organisation or sector, so that none is read from there
        self.orgs = sorted((k for k, v in values.items() if k.startswith("orgs.events[") and v),
                           key=lambda k: -(values[k] or 0))
        self.sectors = sorted((k for k, v in values.items()
                               if k.startswith("sectors.events[") and v),
                              key=lambda k: -(values[k] or 0))
        if not self.orgs or not self.sectors:
            raise SystemExit("the overview lists no organisation or sector figure")
        self.org = self._key(self.orgs[0])
        self.sector_id = self.sectors[0]
        self.sector = self._key(self.sector_id)
        self.search = search
        self.filtered_values: dict[str, int | None] = {}

    @staticmethod
    def _key(fid: str) -> str:
        return fid.split("=", 1)[1].split("]", 1)[0]

    def warm(self, rep: int) -> list[tuple[str, str, dict[str, Any], Callable[[str], None]]]:
        """(name, path, query, check of the body) of each warm page, in repeat ``rep``."""
        c = self.campaign_id
        self.org = o = self._key(self.orgs[rep % len(self.orgs)])
        self.sector_id = self.sectors[rep % len(self.sectors)]
        self.sector = self._key(self.sector_id)
        return [
            ("overview again (kept)", "/", {}, self._same_overview),
            ("overview org+campaign", "/", {"org": o, "campaign": self.campaign},
             self._filtered),
            ("overview sector", "/", {"sector": self.sector}, self._sector),
            ("overview sector, sources", "/", {"sector": self.sector, "tab": "sources"},
             self._sector),
            ("overview sector, targets", "/", {"sector": self.sector, "tab": "targets"},
             self._sector),
            ("drill-down campaign", "/events", {"figure": c},
             lambda b: self._drill(b, c, self.overview_values, 1)),
            ("drill-down campaign, org", "/events", {"figure": c, "org": o},
             lambda b: self._drill(b, c, self.filtered_values, 1)),
            ("drill-down campaign, page 50", "/events", {"figure": c, "page": 50},
             lambda b: self._drill(b, c, self.overview_values, 50)),
            ("drill-down detected events", "/events", {"figure": "totals.detected_events"},
             lambda b: self._drill(b, "totals.detected_events", self.overview_values, 1)),
            ("search (rare)", "/search", {"q": self.search}, self._search),
        ]

    def _same_overview(self, body: str) -> None:
        if figure_values(body).items() - self.overview_values.items():
            raise SystemExit("the warm overview's figures differ from the cold one's")

    def _filtered(self, body: str) -> None:
        # one campaign of one organisation: its events are all the view's detected events
        self.filtered_values = figure_values(body)
        total = self.filtered_values.get("totals.detected_events")
        if total != self.filtered_values.get(self.campaign_id):
            raise SystemExit(f"overview under org={self.org}, campaign={self.campaign}: "
                             f"{total} detected events, "
                             f"{self.filtered_values.get(self.campaign_id)} of the campaign")

    def _sector(self, body: str) -> None:
        # (every tab shows the totals): a sector's detected events, as the unfiltered overview
        # counts them in its sectors.events row
        got = figure_values(body).get("totals.detected_events")
        if got != self.overview_values[self.sector_id]:
            raise SystemExit(f"overview under sector={self.sector}: {got} detected events, "
                             f"{self.overview_values[self.sector_id]} unfiltered")

    def _drill(self, body: str, fid: str, values: dict[str, int | None], page: int) -> None:
        m, v = _COUNT.search(body), _VALUE.search(body)
        count = _num(m.group(1)) if m else None
        want = values.get(fid)
        if count is None or count != want or (v and _num(v.group(1)) != want):
            raise SystemExit(f"drill-down {fid} page {page}: event-count {count}, figure value "
                             f"{v and v.group(1)}, the overview says {want}")
        listed = body.count('<tr class="event">')
        expect = max(0, min(pages.PAGE_SIZE, count - (page - 1) * pages.PAGE_SIZE))
        raws = body.count('<td class="raw"><code>')
        if listed != expect or raws != listed:
            raise SystemExit(f"drill-down {fid} page {page}: {listed} events listed "
                             f"({raws} with their raw line), {expect} expected")

    def _search(self, body: str) -> None:
        if body.count("<tr") < 2:  # the head and at least one hit
            raise SystemExit(f"search {self.search!r}: no hit")


def run(ws: Workspace, repeat: int, search: str, times: dict[str, list[tuple[float, float]]],
        scans: list[tuple[float, float]]) -> Pages:
    """One run: the lake scan, then a server started, its pages timed, the server closed.
    ``times``: (wall s, CPU s) of each page."""
    scans.append(bench_report.scan(ws)[:2])
    c = time.process_time()
    srv = Served(ws)
    try:
        times.setdefault("snapshot (server start)", []).append(
            (srv.start_s, time.process_time() - c))
        took, body = get(srv.base, "/")
        times.setdefault("overview (cold)", []).append((took, CPU[srv.base + "/"]))
        for tab in ("sources", "targets"):  # the other tabs, unfiltered: their figures
            body += get(srv.base, "/", {"tab": tab})[1]
        p = Pages(body, search)
        for rep in range(repeat):
            for name, path, query, check in p.warm(rep):
                took, body = get(srv.base, path, query)
                check(body)
                times.setdefault(name, []).append(
                    (took, CPU[srv.base + path + ("?" + urlencode(query) if query else "")]))
    finally:
        srv.close()
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3,
                    help="server starts (each: a lake scan, the snapshot, a cold overview)")
    ap.add_argument("--repeat", type=int, default=3, help="times each warm page is asked per run")
    ap.add_argument("--keep", type=Path, help="build the workspace here (or reuse it) and keep it")
    ap.add_argument("--profile", action="store_true",
                    help="then each page once more with its SQL, lake reads and rendering timed")
    args = ap.parse_args()
    serve.Handler.log_message = lambda *a: None  # type: ignore[method-assign] (no access log)
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-serve-"))
    try:
        ws = workspace(args.keep or tmp / "ws", args.events)
        bench_report._threads(ws)  # the scan's connections: 2 threads
        search = rare_text(ws)
        times: dict[str, list[tuple[float, float]]] = {}
        scans: list[tuple[float, float]] = []
        load = _load()
        for _ in range(args.runs):
            p = run(ws, args.repeat, search, times, scans)
        print(f"campaign {p.campaign}, organisation {p.org}, sector {p.sector}, "
              f"search {search!r}; every page 200, every drill-down's event count = its "
              "figure's value on the overview")
        table(times, scans, load + " → " + _load())
        if args.profile:
            profile(ws, search)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def table(times: dict[str, list[tuple[float, float]]], scans: list[tuple[float, float]],
          load: str) -> None:
    sw = min(w for w, _ in scans)
    print(f"lake scan: {sw * 1000:.0f} ms best, {statistics.median(w for w, _ in scans) * 1000:.0f}"
          f" ms median, CPU {statistics.median(c for _, c in scans) * 1000:.0f} ms "
          f"({len(scans)} runs; load average {load}, "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024:,} MiB peak)")
    print(f"{'page':<31}{'best ms':>9}{'median ms':>11}{'CPU ms':>8}{'× scan':>8}  n  "
          f"< {TARGET_MS} ms")
    for name, tc in times.items():
        ts = [w for w, _ in tc]
        best, med = min(ts) * 1000, statistics.median(ts) * 1000
        cpu = statistics.median(c for _, c in tc) * 1000
        verdict = "yes" if med < TARGET_MS else "best only" if best < TARGET_MS else "NO"
        if name not in TARGETED:
            verdict = verdict.lower() + " (not a target)"
        print(f"{name:<31}{best:>9.0f}{med:>11.0f}{cpu:>8.0f}{best / 1000 / sw:>8.2f}{len(ts):>3}"
              f"  {verdict}")


# -- --profile: where a page's time goes -------------------------------------------------------
class _Timed:
    """A cursor whose statements are timed, execute and fetch together, into ``log``."""

    def __init__(self, con: Any, log: list[list]):
        self._con, self._log = con, log

    def execute(self, sql: str, *a: Any, **k: Any) -> _Timed:
        t = time.perf_counter()
        self._con.execute(sql, *a, **k)
        self._log.append([time.perf_counter() - t, sql])
        return self

    def _fetch(self, name: str, *a: Any) -> Any:
        t = time.perf_counter()
        out = getattr(self._con, name)(*a)
        if self._log:
            self._log[-1][0] += time.perf_counter() - t
        return out

    def fetchall(self) -> Any:
        return self._fetch("fetchall")

    def fetchone(self) -> Any:
        return self._fetch("fetchone")

    def fetchmany(self, *a: Any) -> Any:
        return self._fetch("fetchmany", *a)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def profile(ws: Workspace, search: str) -> None:
    """Each page once more (after a cold overview) with its time split into SQL statements,
    lake file reads (``lake_join`` of events the snapshot did not index), template rendering
    and the rest (Python, HTTP). A page's statements run on parallel cursors: their sum can
    exceed its time (then "other" is negative)."""
    sql: list[list] = []
    parts = {"lake": 0.0, "render": 0.0}
    new_cursor, lake_rows, render = (Snapshot.new_cursor, provenance._lake_rows,
                                     pages.Dashboard._render)

    def timed(part: str, fn: Callable) -> Callable:
        def wrapped(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[part] += time.perf_counter() - t
        return wrapped

    Snapshot.new_cursor = lambda self: _Timed(new_cursor(self), sql)  # type: ignore[method-assign]
    provenance._lake_rows = timed("lake", lake_rows)
    pages.Dashboard._render = timed("render", render)  # type: ignore[method-assign]
    srv = Served(ws)
    try:
        def one(name: str, path: str, query: dict[str, Any]) -> str:
            sql.clear()
            parts.update(lake=0.0, render=0.0)
            took, body = get(srv.base, path, query)
            s = sum(x[0] for x in sql)
            print(f"{name:<31}{took * 1000:7.0f} ms: SQL {s * 1000:5.0f} ms in {len(sql):2} "
                  f"statements, lake files {parts['lake'] * 1000:4.0f} ms, render "
                  f"{parts['render'] * 1000:4.0f} ms, other "
                  f"{(took - s - parts['lake'] - parts['render']) * 1000:4.0f} ms")
            for t, q in sorted(sql, key=lambda x: -x[0])[:4]:
                if t >= 0.005:
                    print(f"    {t * 1000:6.0f} ms  {' '.join(q.split())[:150]}")
            return body

        print(f"profile (one request each; load average {_load()}):")
        p = Pages(one("overview (cold)", "/", {}) + one("overview sources", "/", {"tab": "sources"})
                  + one("overview targets", "/", {"tab": "targets"}), search)
        for name, path, query, check in p.warm(0):
            check(one(name, path, query))
    finally:
        srv.close()
        Snapshot.new_cursor = new_cursor  # type: ignore[method-assign]
        provenance._lake_rows = lake_rows
        pages.Dashboard._render = render  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
