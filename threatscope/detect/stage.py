"""The detect stage: every rule of a table in one pass over it, into ``detection.parquet`` (the
view ``detection``).

    summary = run_detect(ws)                     # built-in pack + ws.rule_dirs
    evaluate(load_rules(), "http", [{"url_original": "/?id=1 union select 1", ...}])

Per table, the lake is read in groups of files (scan.groups) and the rule engine (engine.Engine)
finds the hits of each group: its leaves run once per distinct value of their column, the
rules fold over per-row bitmaps. Each hit becomes a detection row.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from threatscope import schema, sqlfn
from threatscope.arrowutil import constant, indexed
from threatscope.detect import scan
from threatscope.detect.correlation import Correlated
from threatscope.detect.engine import Engine, reference_sql
from threatscope.detect.powershell import run_powershell
from threatscope.detect.ruleset import (
    CompiledRule,
    RuleSet,
    load_rules,
    logsource_label,
    rule_sets,
)
from threatscope.errors import UserError
from threatscope.spark import check_engine
from threatscope.usercache import user_cache_dir
from threatscope.workspace import abort

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Progress = Callable[[int, "int | None", str], None]


# -- evaluate: the same SQL over rows given in Python ----------------------------------------
def evaluate(
    ruleset: RuleSet,
    kind: str,
    rows: pa.Table | list[dict],
    *,
    reference: bool = False,
    engine: str = "duckdb",
    spark: SparkSession | None = None,
) -> list[list[str]]:
    """Ids of the rules of ``ruleset`` matching each row (in rule order), as the stage runs them.

    ``rows`` has the kind's columns (schema.KINDS[kind]); missing columns are NULL, except that
    (as ingest does) NULL or missing ``url_decoded``/``url_path``/``url_query`` of ``http`` rows
    are derived from ``url_original``, and ``source_ip_num`` from ``source_ip``.

        evaluate(rs, "http", [{"http_request_method": "GET", "url_original": "/a?b=%27"}])

    ``reference=True`` runs every rule's SQL on every row instead of the engine (tests check
    both agree). ``engine="spark"`` runs every rule's Spark SQL on the same rows in ``spark``
    (default: threatscope.spark.session()).
    """
    check_engine(engine)
    if kind not in schema.RULE_TABLES:
        raise UserError(f"unknown event kind {kind!r} (known: {', '.join(schema.RULE_TABLES)})")
    cols = schema.RULE_TABLES[kind]
    tbl = rows if isinstance(rows, pa.Table) else _rows_table(rows, kind)
    given = set(tbl.column_names)
    tbl = tbl.append_column("__row", pa.array(range(tbl.num_rows), pa.int64()))
    select = []
    for name, typ in cols:
        source, derived = _DERIVED.get(name, (None, None))
        derived = derived if source in given else None
        if name in given and derived:
            select.append(f'coalesce(CAST("{name}" AS {typ}), {derived}) AS "{name}"')
        elif name in given:
            select.append(f'CAST("{name}" AS {typ}) AS "{name}"')
        elif derived:
            select.append(f'CAST({derived} AS {typ}) AS "{name}"')
        else:
            select.append(f'CAST(NULL AS {typ}) AS "{name}"')
    rules = ruleset.for_table(kind)
    hits: list[set[int]] = [set() for _ in range(tbl.num_rows)]
    con = duckdb.connect()
    try:
        sqlfn.install(con)
        con.register("__rows", tbl)
        source = f"SELECT __row, {', '.join(select)} FROM __rows"
        if engine == "spark":
            from threatscope.detect.spark import evaluate_spark
            from threatscope.spark import session

            # the rows as the DuckDB path derives them; 128-bit numbers as text for Arrow
            huge = [f'CAST("{n}" AS VARCHAR) AS "{n}"' for n, t in cols if t == "UHUGEINT"]
            data = con.sql(f"SELECT * REPLACE ({', '.join(huge)}) FROM ({source})" if huge
                           else source).to_arrow_table()
            return evaluate_spark(spark or session(), ruleset, kind, data)
        if reference:
            for row, found in con.execute(reference_sql(rules, source, "__row")).fetchall():
                hits[row].update(found)
        else:
            engine = Engine(rules, kind)
            data = con.sql(source).to_arrow_table()
            # text columns as dictionaries, as detect reads the lake
            types = dict(cols)
            for i, name in enumerate(data.column_names):
                if types.get(name) == "VARCHAR":
                    data = data.set_column(i, name, pc.dictionary_encode(data.column(name)))
            found_rows, found_rules = engine.match(con, data)
            row_ids = data.column("__row").take(found_rows).to_pylist()
            for row, i in zip(row_ids, found_rules.to_pylist(), strict=True):
                hits[row].add(i)
    finally:
        con.close()
    return [[rules[i].id for i in sorted(h)] for h in hits]


# Columns ingest derives, as it derives them (the same macros): column -> (from, SQL).
_DERIVED = {
    "url_decoded": ("url_original", "ts_url_decode(url_original)"),
    "url_path": ("url_original", "ts_url_path(url_original)"),
    "url_query": ("url_original", "ts_url_query(url_original)"),
    "source_ip_num": ("source_ip", "ts_ip_num(source_ip)"),
}


def _rows_table(rows: list[dict], kind: str) -> pa.Table:
    names: list[str] = []
    for r in rows:
        for k in r:
            if k not in names:
                names.append(k)
    known = dict(schema.RULE_TABLES[kind])
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown {kind} column(s): {', '.join(unknown)}")
    arrays = {}
    for n in names:
        vals = [r.get(n) for r in rows]
        if known[n].endswith("[]"):
            arrays[n] = pa.array(vals, pa.list_(pa.string()))
        elif known[n] == "UHUGEINT":
            arrays[n] = pa.array([None if v is None else str(v) for v in vals], pa.string())
        else:
            arrays[n] = pa.array(vals)
    return pa.table(arrays) if arrays else pa.table({"__empty": pa.nulls(len(rows))})


# -- run_detect ------------------------------------------------------------------------------
@dataclass
class DetectSummary:
    rules_loaded: int = 0
    rules_failed: int = 0
    detections: int = 0
    sigma_detections: int = 0
    correlation_detections: int = 0
    powershell_detections: int = 0  # obfuscated PowerShell (detect/powershell.py)
    suricata_detections: int = 0
    events_scanned: dict[str, int] = field(default_factory=dict)
    per_rule: dict[str, int] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)
    rule_sets: list[dict] = field(default_factory=list)  # ruleset.rule_sets: name, version, ...
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


_SEVERITY = {1: "high", 2: "medium", 3: "low"}


def run_detect(
    ws, rule_dirs: Sequence[Path | str] = (), progress: Progress | None = None,
    engine: str = "duckdb", spark: SparkSession | None = None,
) -> DetectSummary:
    """Run all rules over the workspace's lake; replace the workspace's detections (the view
    ``detection``: ``Workspace.detections_path``), atomically.

        run_detect(ws)                                   # DuckDB, on this machine
        run_detect(ws, engine="spark", spark=session)    # the same rows, computed by Spark

    ``engine="spark"``: the lake read and matched by Spark (detect.spark; ``spark`` None:
    threatscope.spark.session()); the files and the run_history row are the same."""
    check_engine(engine)
    if engine == "spark" and spark is None:
        from threatscope.spark import session

        spark = session()  # before any file is touched: its errors say what to fix
    started = datetime.now(UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    ruleset = load_rules([*ws.rule_dirs, *rule_dirs], builtin=True,
                         cache_dir=user_cache_dir("rules"), placeholders=ws.placeholders)
    summary = DetectSummary(rules_loaded=len(ruleset.rules), rules_failed=len(ruleset.failed),
                            rule_sets=rule_sets([*ws.rule_dirs, *rule_dirs], ruleset))
    summary.failed = [
        {"path": f.path, "rule": f.name, "reason": f.reason, "logsource": f.logsource}
        for f in ruleset.failed
    ]
    tables = sorted({r.table for r in ruleset.rules if r.table in schema.KINDS})  # the lake's
    total = len(tables) + 1
    per_rule: Counter[str] = Counter()
    out = ws.detections_path
    tmp = out.with_name(out.name + ".tmp")
    # the events of rules that correlations name, gathered while the rules run
    correlated = Correlated(ruleset, out.with_name("correlated-events.tmp.parquet"))
    ps_tmp = ws.powershell_path.with_name(ws.powershell_path.name + ".tmp")
    con = ws.connect()
    began = False
    try:
        con.execute("SET enable_progress_bar = false")  # the CLI draws its own
        # Detections go to Parquet (the view `detection`), not into the catalog file: a
        # columnar write of the rows is a fraction of DuckDB's insert and checkpoint.
        with pq.ParquetWriter(tmp, _DETECTION) as writer:
            def write(t: pa.Table) -> int:
                """Write detection rows (the columns of schema.DETECTION, in its order)."""
                writer.write_table(pa.Table.from_arrays(
                    [c.cast(f.type) for c, f in zip(t.columns, _DETECTION, strict=True)],
                    schema=_DETECTION))
                return t.num_rows

            def step(done: int, what: str) -> None:
                if progress:
                    progress(done, total, f"detect: {what}")

            if engine == "spark":
                from threatscope.detect.spark import detect_lake

                detect_lake(spark, con, ws, ruleset, tables, write, per_rule, summary,
                            correlated, ps_tmp, step)
            else:
                _detect_lake(con, ws, ruleset, tables, write, per_rule, summary, correlated,
                             ps_tmp, step)
        summary.events_scanned["alert"] = summary.suricata_detections
        step(1, "suricata alerts")
        summary.per_rule = dict(sorted(per_rule.items(), key=lambda kv: (-kv[1], kv[0])))
        summary.sigma_detections = (sum(summary.per_rule.values())
                                    - summary.correlation_detections
                                    - summary.powershell_detections)
        summary.detections = (summary.sigma_detections + summary.correlation_detections
                              + summary.powershell_detections + summary.suricata_detections)
        summary.seconds = round(time.perf_counter() - t0, 3)
        finished = datetime.now(UTC).replace(tzinfo=None)
        record = {k: v for k, v in summary.to_dict().items() if k != "failed"}
        con.execute("BEGIN TRANSACTION")
        began = True
        for (db,) in con.execute(  # where earlier versions kept the detections
                "SELECT database_name FROM duckdb_tables() "
                "WHERE table_name = 'detection' AND NOT temporary").fetchall():
            con.execute(f'DROP TABLE "{db}".main.detection')
        con.execute(
            "INSERT INTO run_history VALUES (?, 'detect', ?, ?, ?)",
            [uuid.uuid4().hex, started, finished, json.dumps(record)],
        )
        os.replace(ps_tmp, ws.powershell_path)
        os.replace(tmp, out)
        con.execute("COMMIT")
    except BaseException:
        if began:
            abort(con)
        tmp.unlink(missing_ok=True)
        ps_tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
        correlated.close()
    return summary


def _detect_lake(con: duckdb.DuckDBPyConnection, ws, ruleset: RuleSet, tables: list[str],
                 write: Callable[[pa.Table], int], per_rule: Counter[str],
                 summary: DetectSummary, correlated: Correlated, ps_tmp: Path,
                 step: Callable[[int, str], None]) -> None:
    """The detections of the lake (DuckDB and the rule engine) through ``write``: Sigma rules
    per table, correlations, the PowerShell analyzer (its analysis into ``ps_tmp``), Suricata
    alerts; counted in ``per_rule`` and ``summary``."""
    for table in tables:
        step(0, table)
        summary.events_scanned[table] = _sigma(con, ws, table, ruleset.for_table(table), write,
                                               per_rule, correlated)
        step(1, table)
    summary.correlation_detections = correlated.run(con, write, per_rule)
    step(0, "PowerShell")
    summary.powershell_detections = run_powershell(
        con, write, ps_tmp, ruleset.for_table("powershell"), per_rule)
    summary.suricata_detections = _alerts(con, ruleset, write)


# Columns with few values (organisations, files, rules) as dictionaries: cheap to write.
_DETECTION = pa.schema([
    (n, pa.dictionary(pa.int32(), pa.string()) if n not in ("src_ip", "evidence")
     and t == "VARCHAR" else schema.ARROW_TYPES[t]) for n, t in schema.DETECTION])


def _sigma(con: duckdb.DuckDBPyConnection, ws, table: str, rules: list[CompiledRule],
           write: Callable[[pa.Table], int], per_rule: Counter[str],
           correlated: Correlated) -> int:
    """Match ``rules`` over the lake's ``table``, ``write`` each group's detection rows and
    count them in ``per_rule``, hand the hits of rules correlations name to ``correlated``;
    returns the rows scanned."""
    has = dict(schema.KINDS[table])
    raw_text = _RAW_EVIDENCE.get(table, "raw")
    meta = {
        "rule_id": pa.array([r.id for r in rules], pa.string()),
        "title": pa.array([r.title for r in rules], pa.string()),
        "severity": pa.array([r.level for r in rules], pa.string()),
        "cves": pa.array([r.cves for r in rules], pa.list_(pa.string())),
        "attack_techniques": pa.array([r.attack_techniques for r in rules],
                                      pa.list_(pa.string())),
        "product": pa.array([r.product for r in rules], pa.string()),
        "campaign": pa.array([r.campaign for r in rules], pa.string()),
        "family": pa.array([r.family for r in rules], pa.string()),
        "malware_family": pa.array([r.malware for r in rules], pa.string()),
    }
    engine = Engine(rules, table)
    scanned = 0
    for group in scan.groups(con, ws, table, engine.read):
        if group.files:  # not the script blocks joined from parts (scan.script_blocks)
            scanned += group.table.num_rows
        rows, idx = engine.match(con, group.table, group.column)
        if group.exclude is not None and len(rows):
            own = pc.invert(group.exclude.take(rows))
            rows, idx = rows.filter(own), idx.filter(own)
        rows, idx = correlated.take(con, group, rules, rows, idx)
        if not len(rows):
            continue
        hit = group.table.select([c for c in scan.KEEP if c in group.table.column_names]
                                 ).take(rows)
        cols = {c: hit.column(c) for c in ("org_id", "ts", "event_kind", "file_id",
                                             "source_file", "source_line")}
        cols["src_ip"] = hit.column("source_ip") if "source_ip" in has else \
            pa.nulls(len(rows), pa.string())
        # evidence: what the event is about (the URL, command line, script), or its raw record
        # where there is none (each read only for the rows shown)
        about = _EVIDENCE.get(table)
        text = group.column(about, rows) if about else pa.nulls(len(rows), pa.string())
        raw_rows = rows.filter(pc.is_null(text))
        raw = pa.nulls(len(rows), pa.string())
        if len(raw_rows):
            raw_rows = pc.unique(raw_rows)
            got = group.column("raw", raw_rows)
            raw = pc.take(got, pc.index_in(rows, value_set=raw_rows))
        ev = pa.table({"method": _col(hit, "http_request_method"), "text": text, "raw": raw})
        con.register("__ts_hits", ev)
        cols["evidence"] = con.sql(
            f"SELECT left(concat_ws(' ', method, coalesce(text, {raw_text})), 512) FROM __ts_hits"
        ).to_arrow_table().column(0)
        con.unregister("__ts_hits")
        # the rule's columns by index into the rule list: no per-row strings
        for c, values in meta.items():
            cols[c] = values.take(idx) if pa.types.is_list(values.type) else indexed(idx, values)
        cols["detector"] = constant("sigma", len(idx))
        write(pa.table({c: cols[c] for c, _ in schema.DETECTION}))
        for vc in pc.value_counts(idx).to_pylist():  # one entry per rule that hit
            per_rule[rules[vc["values"]].id] += vc["counts"]
    return scanned


# The evidence of a detection, what an analyst reads first: the column the event is about
# (the URL, command line, script), else its raw record, shown as _RAW_EVIDENCE says (SQL
# over `raw`).
_EVIDENCE = {"http": "url_original", "process_creation": "process_command_line",
             "ps_script": "script_block_text"}
_RAW_EVIDENCE = {
    # a document's raw is olevba's summary (JSON): its name, then what made the rules fire
    "document": """concat_ws('; ', json_extract_string(raw, '$.file_name'),
        'auto-exec: ' || nullif(array_to_string(CAST(raw -> '$.autoexec' AS VARCHAR[]), ', '), ''),
        'suspicious: ' || nullif(array_to_string(CAST(raw -> '$.suspicious' AS VARCHAR[]), ', '), ''),
        'IOCs: ' || nullif(array_to_string(CAST(raw -> '$.iocs' AS VARCHAR[]), ', '), ''))""",
}


def _col(t: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    return t.column(name) if name in t.column_names else pa.nulls(t.num_rows, pa.string())


def cve_owners(ruleset: RuleSet) -> list[tuple[str, str | None, str | None]]:
    """(cve, campaign, product) of each CVE the pack's rules tag with one campaign/product."""
    owners: dict[str, set[tuple[str | None, str | None]]] = defaultdict(set)
    for r in ruleset.rules:
        if r.campaign or r.product:
            for c in r.cves:
                owners[c].add((r.campaign, r.product))
    return [(c, *next(iter(o))) for c, o in sorted(owners.items()) if len(o) == 1]


def _alerts(con: duckdb.DuckDBPyConnection, ruleset: RuleSet,
            write: Callable[[pa.Table], int]) -> int:
    """Suricata EVE alerts are detections already; campaign/product from the pack's CVE tags."""
    cve_map = cve_owners(ruleset)
    con.register("__cve_map", pa.table({
        "cve": pa.array([c for c, _, _ in cve_map], pa.string()),
        "campaign": pa.array([k for _, k, _ in cve_map], pa.string()),
        "product": pa.array([p for _, _, p in cve_map], pa.string()),
    }))
    sev = " ".join(f"WHEN {k} THEN '{v}'" for k, v in _SEVERITY.items())
    n = write(con.sql(f"""
        SELECT a.org_id, a.ts, a.source_ip, a.event_kind, a.file_id,
               a.source_file, a.source_line, 'suricata:' || coalesce(CAST(a.signature_id AS VARCHAR), '?'),
               a.signature, CASE a.severity {sev} ELSE 'informational' END,
               a.cves_u, []::VARCHAR[],
               (SELECT min(m.product) FROM __cve_map m WHERE list_contains(a.cves_u, m.cve)),
               (SELECT min(m.campaign) FROM __cve_map m WHERE list_contains(a.cves_u, m.cve)),
               NULL, NULL, 'suricata',
               left(concat_ws(' ', a.signature, a.http_request_method, a.url_original), 512)
        FROM (SELECT *, coalesce(list_transform(cves, lambda c: upper(c)), []::VARCHAR[]) AS cves_u
              FROM alert) a
    """).to_arrow_table())
    con.unregister("__cve_map")
    return n


# -- rules list / check ----------------------------------------------------------------------
def list_rules(rule_dirs: Sequence[Path | str] = (), builtin: bool = True,
               placeholders: dict[str, list[str]] | None = None) -> list[dict]:
    """One dict per compiled rule, for ``threatscope rules list``."""
    rs = load_rules(rule_dirs, builtin, cache_dir=user_cache_dir("rules"), placeholders=placeholders)
    return [
        {"id": r.id, "title": r.title, "level": r.level, "table": r.table, "cves": r.cves,
         "techniques": r.attack_techniques, "product": r.product, "campaign": r.campaign,
         "family": r.family, "malware": r.malware, "path": r.path}
        for r in rs.rules
    ] + [
        {"id": c.id, "title": c.title, "level": c.level, "table": f"correlation:{c.type}",
         "cves": c.cves, "techniques": c.attack_techniques, "product": c.product,
         "campaign": c.campaign, "family": c.family, "malware": c.malware, "path": c.path,
         "rules": c.rules}
        for c in rs.correlations
    ]


def check_rules(rule_dirs: Sequence[Path | str] = (), builtin: bool = True,
                placeholders: dict[str, list[str]] | None = None) -> dict:
    """Compiled/failed counts per logsource and every failure with its reason.

    ``{"compiled": int, "failed": int, "by_logsource": [{"logsource", "table", "compiled",
    "failed"}], "failures": [{"path", "rule", "logsource", "reason"}]}``
    """
    rs = load_rules(rule_dirs, builtin, cache_dir=user_cache_dir("rules"), placeholders=placeholders)
    counts: dict[str, Counter] = defaultdict(Counter)
    tables: dict[str, str | None] = {}
    for r in rs.rules:
        label = logsource_label(r.logsource.get("category"), r.logsource.get("product"),
                                r.logsource.get("service"))
        counts[label]["compiled"] += 1
        tables[label] = r.table
    if rs.correlations:
        counts["correlation"]["compiled"] += len(rs.correlations)
    for f in rs.failed:
        label = f.logsource or "(unparsed)"
        counts[label]["failed"] += 1
        if label not in tables and f.logsource and label != "correlation":
            from threatscope.detect import mapping  # imports pySigma

            prod, cat, serv = (None if x == "-" else x for x in f.logsource.split("/"))
            tables[label] = mapping.table_for(cat, prod, serv)
    by_ls = [
        {"logsource": ls, "table": tables.get(ls), "compiled": c["compiled"], "failed": c["failed"]}
        for ls, c in sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    ]
    return {
        "compiled": len(rs.rules) + len(rs.correlations),
        "failed": len(rs.failed),
        "by_logsource": by_ls,
        "failures": [
            {"path": f.path, "rule": f.name, "logsource": f.logsource, "reason": f.reason}
            for f in rs.failed
        ],
    }
