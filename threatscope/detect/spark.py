"""Detection on Apache Spark, with the results of the DuckDB engine.

    from threatscope.detect.spark import evaluate_spark
    evaluate_spark(spark, load_rules(), "http", [{"url_original": "/?id=1 union select 1"}])

    hits = match_frame(df, rules, keep=["__row"])   # the rules' Spark SQL: keep + hits
    hits = engine_frame(df, rules, keep=["raw"])    # the engine's matcher, per partition

    run_detect(ws, engine="spark")                  # detect_lake: the stage on Spark

Two ways to run a table's rules, with the same hits. ``match_frame`` is the compiler's Spark
dialect (``CompiledRule.spark_sql``): one projection holding each rule's condition (``CASE WHEN
<rule> THEN i END``), fields inside JSON object columns (``event_data.Image``) added as DuckDB
adds them (``sqlfn.with_fields``); what ``evaluate_spark`` and the conformance tests run.
``engine_frame`` runs the DuckDB engine's matcher (engine.Engine: the rules' literals in one
automaton per column over its distinct values, regular expressions behind their literal guards)
in ``mapInArrow`` over each partition's Arrow batches: Spark SQL tests every rule's strings on
every row, which at 10 million requests is minutes where the engine takes seconds.

The stage on Spark (``detect_lake``) reads the lake through threatscope.spark.lake's views and
gives the DuckDB engine's rows: Sigma rules per table with ``engine_frame`` (PowerShell script
blocks logged in parts joined first, as scan.script_blocks does), the correlations over the
hits of the rules they name (detect.correlation's SQL through spark.sql.to_spark), the
PowerShell analyzer in ``mapInArrow`` (the same Python, once per distinct text), Suricata
alerts in Spark SQL. Only detections come back to the driver, where the PowerShell rows are
formatted as DuckDB formats them (detect.powershell.write_analysis).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from threatscope import schema
from threatscope.detect import powershell, scan
from threatscope.detect.compiler import SPARK
from threatscope.detect.correlation import Correlated, detections_sql
from threatscope.detect.ruleset import CompiledRule, RuleSet
from threatscope.detect.sqltext import read_columns
from threatscope.detect.stage import _EVIDENCE, _SEVERITY, cve_owners
from threatscope.spark.sql import to_spark
from threatscope.sqlfn import field_column, field_spellings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

q = SPARK.quote


def read_fields(rules: Sequence[CompiledRule], columns: Sequence[str]) -> list[str]:
    """The field columns (see sqlfn.field_column) the rules read from a table with ``columns``
    (taken from their DuckDB SQL: both dialects read the same columns)."""
    read = read_columns("\n".join(r.sql for r in rules), columns)
    return sorted(c for c in read if field_column(c))


def with_fields(df: DataFrame, fields: Sequence[str]) -> DataFrame:
    """``df`` with the field ``fields`` (``<object column>.<name>``) as STRING columns: JSON
    keys match exactly, a nested value is its JSON text, JSON null is NULL (as DuckDB's
    json_transform to VARCHAR)."""
    if not fields:
        return df
    in_struct, spelled = field_spellings(fields)
    items = []
    for c, parent, name, whole in spelled:
        if whole:
            items.append(f"{q('__f_' + parent)}.{q(name)} AS {q(c)}")
        else:  # Spark resolves struct fields ignoring case: a second spelling on its own
            items.append(f"get_json_object({q(parent)}, {SPARK.string(f'$[{name!r}]')}) AS {q(c)}")
    parsed = [
        f"from_json({q(p)}, {SPARK.string(_struct(names.values()))}) AS {q('__f_' + p)}"
        for p, names in in_struct.items()]
    return (df.selectExpr("*", *parsed).selectExpr("*", *items)
            .drop(*(f"__f_{p}" for p in in_struct)))


def _struct(names) -> str:
    return "STRUCT<" + ", ".join(f"{q(n)}: STRING" for n in names) + ">"


def match_frame(df: DataFrame, rules: Sequence[CompiledRule], keep: Sequence[str],
                fields: Sequence[str] = ()) -> DataFrame:
    """``keep`` columns of ``df`` plus ``hits`` (ARRAY<INT>: indexes into ``rules``, all of one
    table, in order) of every row: each rule's Spark SQL on each row, in one projection.
    ``fields``: field columns (``event_data.Image``) to add besides those the rules read, for
    ``keep`` to name."""
    if not rules:
        return df.selectExpr(*(q(k) for k in keep), "CAST(array() AS ARRAY<INT>) AS hits")
    cols = [n for n, _ in schema.RULE_TABLES[rules[0].table]]
    df = with_fields(df, sorted({*read_fields(rules, cols), *fields}))
    cases = ", ".join(f"CASE WHEN {r.spark_sql} THEN {i} END" for i, r in enumerate(rules))
    return df.selectExpr(*(q(k) for k in keep),
                         f"filter(array({cases}), i -> i IS NOT NULL) AS hits")


# rows per Arrow batch the engine gets: it tests each column's distinct values once per batch
ENGINE_BATCH = 65536


def engine_frame(df: DataFrame, rules: Sequence[CompiledRule], keep: Sequence[str]) -> DataFrame:
    """The rows of ``df`` that a rule of ``rules`` (all of one table) matches: ``keep``
    columns plus ``hits`` (ARRAY<INT>, indexes into ``rules``), found by the DuckDB engine's
    own matcher (engine.Engine: the rules' literals in one automaton per column over its
    distinct values, the other tests behind their literal guards) over each partition's Arrow
    batches. The same hits as :func:`match_frame`'s Spark SQL, at the engine's speed: Spark
    evaluates every rule's string tests on every row."""
    from pyspark.sql.types import ArrayType, IntegerType, StructField, StructType

    from threatscope.detect.engine import Engine

    if not rules:
        return df.selectExpr(*(q(k) for k in keep), "CAST(array() AS ARRAY<INT>) AS hits")
    table = rules[0].table
    read = Engine(rules, table).read
    have = set(df.columns)
    # the columns the rules read (a field of a JSON object column: the object column)
    reading = list(dict.fromkeys(
        c if c in have else field_column(c)[0] for c in sorted(read)
        if c in have or (field_column(c) and field_column(c)[0] in have)))
    cols = list(dict.fromkeys([*keep, *reading]))
    # the columns as __c<i> in the Python workers (mapInArrow fails on names with dots, as
    # field columns have: event_data.Image)
    alias = {c: f"__c{i}" for i, c in enumerate(cols)}
    out = StructType([StructField(alias[c], df.schema[c].dataType) for c in keep] + [
        StructField("hits", ArrayType(IntegerType()))])
    rules = list(rules)
    kept, probed = [alias[c] for c in keep], {alias[c]: c for c in reading}

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import duckdb

        engine = Engine(rules, table)
        con = duckdb.connect()
        for batch in batches:
            t = pa.Table.from_batches([batch])
            # text as dictionaries, as the lake is read: the engine tests distinct values
            # (raw, one value per row, stays plain: the engine reads it only where needed)
            probe = pa.table({n: pc.dictionary_encode(t.column(a)) if n != "raw" and
                              pa.types.is_string(t.schema.field(a).type) else t.column(a)
                              for a, n in probed.items()})
            rows, idx = engine.match(con, probe)
            if not len(rows):
                continue
            hits = (pa.table({"row": rows, "rule": idx})
                    .group_by("row", use_threads=False).aggregate([("rule", "list")]))
            picked = t.select(kept).take(hits.column("row"))
            yield from picked.append_column("hits", hits.column("rule_list")).to_batches()
        con.close()

    return (df.selectExpr(*(f"{q(c)} AS {a}" for c, a in alias.items())).mapInArrow(run, out)
            .selectExpr(*(f"{alias[c]} AS {q(c)}" for c in keep), "hits"))


def arrow_frame(spark: SparkSession, data: pa.Table, cols: Sequence[tuple[str, str]]) -> DataFrame:
    """``data`` (DuckDB-typed columns ``cols``, 128-bit numbers as decimal text, plus any
    others) as a Spark DataFrame with the lake's Spark types (threatscope.spark.lake)."""
    from threatscope.spark.lake import spark_type

    types = dict(cols)
    if data.num_rows == 0:
        ddl = ", ".join(f"{q(f.name)} {spark_type(types[f.name]) if f.name in types else 'BIGINT'}"
                        for f in data.schema)
        return spark.createDataFrame([], ddl)
    df = spark.createDataFrame(data)
    return df.selectExpr(*(
        f"try_cast({q(n)} AS {spark_type(types[n])}) AS {q(n)}" if types.get(n) == "UHUGEINT"
        else f"CAST({q(n)} AS {spark_type(types[n])}) AS {q(n)}" if n in types else q(n)
        for n in data.column_names))


def evaluate_spark(spark: SparkSession, ruleset: RuleSet, kind: str, data: pa.Table) -> list[list[str]]:
    """Ids of the rules of ``ruleset`` matching each row of ``data`` (the kind's columns, as
    ``stage.evaluate`` prepares them: all of them, derived ones filled in, and ``__row``)."""
    rules = ruleset.for_table(kind)
    hits: list[list[int]] = [[] for _ in range(data.num_rows)]
    df = arrow_frame(spark, data, [*schema.RULE_TABLES[kind], ("__row", "BIGINT")])
    # one projection of every rule outgrows the 64 KB a generated Java method may have
    with _conf(spark, {"spark.sql.codegen.wholeStage": "false"}):
        for row in match_frame(df, rules, ["__row"]).collect():
            hits[row["__row"]] = row["hits"]
    return [[rules[i].id for i in sorted(h)] for h in hits]


# -- the detect stage on Spark ----------------------------------------------------------------
Write = Callable[[pa.Table], int]


def detect_lake(spark: SparkSession, con, ws, ruleset: RuleSet, tables: list[str], write: Write,
                per_rule: Counter[str], summary, correlated: Correlated, ps_out: Path,
                step: Callable[[int, str], None]) -> None:
    """stage._detect_lake on Spark (see the module doc): the same detections through
    ``write``, the PowerShell analysis into ``ps_out``, counts in ``per_rule`` and
    ``summary``; ``con``: the workspace's DuckDB connection (formatting)."""
    # The engine (engine_frame) tests each column's distinct values once per Arrow batch:
    # larger batches than Spark's 10,000 rows.
    with _conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": str(ENGINE_BATCH)}):
        _detect_lake(spark, con, ws, ruleset, tables, write, per_rule, summary, correlated,
                     ps_out, step)


@contextmanager
def _conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """The session's ``settings`` for the block, then their earlier values again."""
    before = {k: spark.conf.get(k) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            spark.conf.set(k, v)


def _detect_lake(spark: SparkSession, con, ws, ruleset: RuleSet, tables: list[str],
                 write: Write, per_rule: Counter[str], summary, correlated: Correlated,
                 ps_out: Path, step: Callable[[int, str], None]) -> None:
    from threatscope.spark.lake import kind_frame

    # the lake's kinds only (lake.register_views also copies catalog tables, which the open
    # read-write catalog connection would block)
    for kind in schema.KINDS:
        kind_frame(spark, ws, kind).createOrReplaceTempView(kind)
    events: list[DataFrame] = []  # the hits of rules correlations name, per table
    for table in tables:
        step(0, table)
        summary.events_scanned[table] = _sigma(spark, table, ruleset.for_table(table), write,
                                               per_rule, correlated, events)
        step(1, table)
    summary.correlation_detections = _correlate(spark, correlated, events, write, per_rule)
    step(0, "PowerShell")
    summary.powershell_detections = _powershell(spark, con, ruleset.for_table("powershell"),
                                                write, ps_out, per_rule)
    summary.suricata_detections = _alerts(spark, ruleset, write)


def joined_blocks(spark: SparkSession, cols: Sequence[str]) -> DataFrame:
    """scan.joined_blocks_sql in Spark SQL: the ps_script blocks logged in parts, one row each
    (per organisation, host and block id), text and raw records joined in part order, every
    other column of ``cols`` the first part's."""
    def joined(c: str, sep: str) -> str:  # sep: SQL
        parts = f"array_sort(collect_list(struct(message_number, {q(c)})))"
        return (f"CASE WHEN count({q(c)}) > 0 THEN array_join(transform({parts}, "
                f"x -> x.{q(c)}), {sep}) END AS {q(c)}")

    items = [joined(c, "''") if c == "script_block_text" else joined(c, "chr(10)") if c == "raw"
             else f"min_by({q(c)}, struct(message_number, ts)) AS {q(c)}" for c in cols]
    return spark.sql(f"SELECT {', '.join(items)} FROM ps_script WHERE {scan.IN_PARTS} "
                     "GROUP BY org_id, computer, script_block_id")


def _rows(spark: SparkSession, table: str) -> DataFrame:
    """The rows the rules of ``table`` run on: its events; for ps_script, a block logged in
    parts as one row instead of its parts (scan.groups)."""
    df = spark.table(table)
    if table != "ps_script":
        return df
    whole = df.where(f"NOT coalesce({scan.IN_PARTS}, false)")
    return whole.unionByName(joined_blocks(spark, df.columns))


def _sigma(spark: SparkSession, table: str, rules: list[CompiledRule], write: Write,
           per_rule: Counter[str], correlated: Correlated, events: list[DataFrame]) -> int:
    """stage._sigma on Spark: every rule of ``table`` in one pass; returns the rows scanned.
    The hits of rules correlations name go to ``events`` (correlation.Correlated's columns)."""
    has = dict(schema.KINDS[table])
    scanned = spark.table(table).count()
    if not rules:
        return scanned
    reads = {r.id: correlated.reads[r.id] for r in rules if r.id in correlated.reads}
    wanted = {x for cols in reads.values() for x in cols}  # as Correlated._events: table-wide
    fields = sorted(x for x in wanted if field_column(x))
    keep = list(dict.fromkeys([
        *(c for c in scan.KEEP if c in has), "raw",
        *([_EVIDENCE[table]] if table in _EVIDENCE else []), *sorted(wanted)]))
    hits = (engine_frame(with_fields(_rows(spark, table), fields), rules, keep)
            .selectExpr("*", "explode(hits) AS __i").drop("hits"))
    meta = spark.createDataFrame(pa.table({
        "__i": pa.array(range(len(rules)), pa.int32()),
        "rule_id": [r.id for r in rules], "title": [r.title for r in rules],
        "severity": pa.array([r.level for r in rules], pa.string()),
        "cves": pa.array([r.cves for r in rules], pa.list_(pa.string())),
        "attack_techniques": pa.array([r.attack_techniques for r in rules], pa.list_(pa.string())),
        **{k: pa.array([getattr(r, a) for r in rules], pa.string()) for k, a in (
            ("product", "product"), ("campaign", "campaign"), ("family", "family"),
            ("malware_family", "malware"))}}))
    hits = hits.join(meta.hint("broadcast"), "__i").cache()
    try:
        if reads:
            cols = correlated.schema.names
            types = {"ts": "TIMESTAMP_NTZ", "source_line": "BIGINT"}
            ev = hits.where(hits.rule_id.isin(list(reads))).selectExpr(*(
                f"CAST({_ev_col(c, has, wanted)} AS {types.get(c, 'STRING')}) AS {q(c)}"
                for c in cols))
            events.append(ev.localCheckpoint())  # the hits are freed below
        own = hits.where(~hits.rule_id.isin(list(correlated.silent))) if correlated.silent \
            else hits
        found = own.selectExpr(*_detection_items(table, has)).toArrow()
    finally:
        hits.unpersist()
    write(found)
    for rid, n in Counter(found.column("rule_id").to_pylist()).items():
        per_rule[rid] += n
    return scanned


def _correlate(spark: SparkSession, correlated: Correlated, events: list[DataFrame],
               write: Write, per_rule: Counter[str]) -> int:
    """Correlated.run on Spark: each correlation's SQL (detect.correlation, written once in
    DuckDB SQL, through spark.sql.to_spark) over the named rules' events of every table."""
    if not correlated.correlations:
        return 0
    if events:
        frame = reduce(lambda a, b: a.unionByName(b), events)
    else:
        types = {"ts": "TIMESTAMP_NTZ", "source_line": "BIGINT"}
        frame = spark.createDataFrame([], ", ".join(
            f"{q(n)} {types.get(n, 'STRING')}" for n in correlated.schema.names))
    frame.createOrReplaceTempView("__ts_events")
    n = 0
    try:
        for c in correlated.correlations:
            found = write(spark.sql(to_spark(detections_sql(c, "__ts_events"))).toArrow())
            if found:
                per_rule[c.id] += found
            n += found
    finally:
        spark.catalog.dropTempView("__ts_events")
    return n


def _ev_col(c: str, has: dict[str, str], wanted: set[str]) -> str:
    """A column of the correlated events (correlation.Correlated.schema) from a hit's row."""
    if c == "src_ip":
        return q("source_ip") if "source_ip" in has else "NULL"
    fixed = ("rule_id", "org_id", "ts", "event_kind", "file_id", "source_file", "source_line")
    return q(c) if c in wanted or c in fixed else "NULL"


def _detection_items(table: str, has: dict[str, str]) -> list[str]:
    """The columns of schema.DETECTION, in order, of a Sigma hit (stage._sigma)."""
    about = q(_EVIDENCE[table]) if table in _EVIDENCE else "CAST(NULL AS STRING)"
    method = q("http_request_method") if "http_request_method" in has else "CAST(NULL AS STRING)"
    evidence = (f"left(concat_ws(' ', {method}, coalesce({about}, {_RAW_EVIDENCE.get(table, 'raw')})),"
                " 512)")
    src = q("source_ip") if "source_ip" in has else "CAST(NULL AS STRING)"
    return ["org_id", "ts", f"{src} AS src_ip", "event_kind", "file_id", "source_file",
            "source_line", "rule_id", "title", "severity", "cves", "attack_techniques", "product",
            "campaign", "family", "malware_family", "'sigma' AS detector",
            f"{evidence} AS evidence"]


def _json_list(path: str) -> str:
    return (f"nullif(array_join(from_json(get_json_object(raw, {SPARK.string(path)}), "
            "'ARRAY<STRING>'), ', '), '')")


# stage._RAW_EVIDENCE in Spark SQL: a document's name, then what made the rules fire
_RAW_EVIDENCE = {
    "document": "concat_ws('; ', get_json_object(raw, '$.file_name'), "
                f"'auto-exec: ' || {_json_list('$.autoexec')}, "
                f"'suspicious: ' || {_json_list('$.suspicious')}, "
                f"'IOCs: ' || {_json_list('$.iocs')})",
}


def _analyse_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow: powershell.analysis.analyse of each ``text`` (as powershell.analyse_all)."""
    for b in batches:
        texts = b.column("text").to_pylist()
        results = powershell._analyse_chunk(texts)
        yield pa.RecordBatch.from_pydict({
            "text": pa.array(texts, pa.string()),
            **{c: pa.array([r[c] for r in results], t) for c, t in powershell._RESULT.items()}})


_RESULT_DDL = ("text STRING, obfuscated BOOLEAN, score DOUBLE, techniques ARRAY<STRING>, "
               "layers INT, final STRING, iocs ARRAY<STRING>, truncated BOOLEAN, reason STRING")


def _powershell(spark: SparkSession, con, rules: list[CompiledRule], write: Write, out: Path,
                per_rule: Counter[str]) -> int:
    """powershell.run_powershell on Spark: the events and their analysis (mapInArrow, once per
    distinct text) and the family rules in Spark; the rows written as DuckDB writes them."""
    launches = SPARK.regex("lower(coalesce(process_executable, ''))", powershell._LAUNCHES)
    named = SPARK.regex("lower(replace(process_command_line, '^', ''))", "powershell|pwsh")
    cols = ["org_id", "ts", "event_kind", "file_id", "source_file", "source_line"]
    joined_blocks(spark, [*cols, "script_block_text"]).createOrReplaceTempView("__ts_ps_joined")
    events = spark.sql(f"""
        SELECT {', '.join(cols)}, 'command_line' AS source, process_command_line AS text
        FROM process_creation
        WHERE process_command_line IS NOT NULL AND ({launches}
            OR lower(process_pe_original_file_name) IN ('powershell.exe', 'pwsh.dll')
            OR {named})
        UNION ALL
        SELECT {', '.join(cols)}, 'script_block', script_block_text FROM ps_script
        WHERE script_block_text IS NOT NULL AND NOT coalesce({scan.IN_PARTS}, false)
        UNION ALL
        SELECT {', '.join(cols)}, 'script_block', script_block_text FROM __ts_ps_joined""")
    results = events.select("text").distinct().mapInArrow(_analyse_batches, _RESULT_DDL)
    keep = powershell.TEXT_KEEP
    analysed = events.join(results, "text").selectExpr(
        *cols, "source", f"left(text, {keep}) AS text", "obfuscated", "score", "techniques",
        "layers", f"left(final, {keep}) AS deobfuscated", "iocs", "truncated", "reason",
        "CAST(NULL AS STRING) AS family")
    names = analysed.columns
    data = match_frame(analysed, rules, names).orderBy("org_id", "ts", "file_id", "source_line").toArrow()
    spark.catalog.dropTempView("__ts_ps_joined")
    hits = data.column("hits").combine_chunks()
    rows = pc.list_parent_indices(hits)
    idx = pc.list_flatten(hits).cast(pa.int32())
    table = data.select(names)
    if table.num_rows == 0:  # Arrow types as DuckDB's for an empty result
        table = pa.table({n: pa.array([], schema.ARROW_TYPES[t])
                          for n, t in schema.POWERSHELL_ANALYSIS})
    return powershell.write_analysis(con, table, rules, rows, idx, write, out, per_rule)


def _alerts(spark: SparkSession, ruleset: RuleSet, write: Write) -> int:
    """stage._alerts in Spark SQL: Suricata alerts as detections, campaign/product from the
    pack's CVE tags (a map literal: a handful of CVEs)."""
    owners = cve_owners(ruleset)

    def lookup(pos: int) -> str:
        if not owners:
            return "CAST(NULL AS STRING)"
        pairs = ", ".join(f"{SPARK.string(o[0])}, "
                          f"{SPARK.string(o[pos]) if o[pos] else 'CAST(NULL AS STRING)'}"
                          for o in owners)
        return (f"array_min(filter(transform(cves_u, c -> try_element_at(map({pairs}), c)), "
                "x -> x IS NOT NULL))")

    sev = " ".join(f"WHEN {k} THEN '{v}'" for k, v in _SEVERITY.items())
    found = spark.sql(f"""
        SELECT org_id, ts, source_ip AS src_ip, event_kind, file_id, source_file, source_line,
               'suricata:' || coalesce(CAST(signature_id AS STRING), '?') AS rule_id,
               signature AS title, CASE severity {sev} ELSE 'informational' END AS severity,
               cves_u AS cves, CAST(array() AS ARRAY<STRING>) AS attack_techniques,
               {lookup(2)} AS product, {lookup(1)} AS campaign,
               CAST(NULL AS STRING) AS family, CAST(NULL AS STRING) AS malware_family,
               'suricata' AS detector,
               left(concat_ws(' ', signature, http_request_method, url_original), 512) AS evidence
        FROM (SELECT *, coalesce(transform(cves, c -> upper(c)), CAST(array() AS ARRAY<STRING>))
                        AS cves_u FROM alert)""").toArrow()
    return write(found)
