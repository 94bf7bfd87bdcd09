"""The PowerShell analyzer of the detect stage: every PowerShell command line and script block
of the lake, deobfuscated and classified once per distinct text, never run.

    n = run_powershell(con, write, out)    # detections written; the analysis in ``out``

The events: ``process_creation`` rows that start PowerShell (its image or original file name,
or a command line that names it, e.g. ``cmd /c powershell ...``) and ``ps_script`` blocks (a
block logged in parts joined first, as the Sigma rules see it: ``scan.script_blocks``). Each
distinct text goes through ``powershell.analysis.analyse`` (static deobfuscation with its
layers, IOCs and the obfuscation classifier) in worker processes; the results are joined back to
the events and written as ``powershell.parquet`` (the view ``powershell``:
schema.POWERSHELL_ANALYSIS), which the analysis reads for the obfuscated share of PowerShell. An obfuscated one is also a
detection (``detector = 'powershell'``, T1027) whose evidence is its score, the techniques
undone, the first IOCs and what the deobfuscator recovered. Then the Sigma rules of the ``powershell`` table (logsource category
``ps_deobfuscated``: rules/powershell, or a user's) run over the analysed events: each hit is a
detection of its own, and the first malware family named is the event's ``family`` (in the
table, and the obfuscation detection's ``malware_family``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from threatscope import schema, sqlfn
from threatscope.detect import scan
from threatscope.detect.engine import Engine
from threatscope.detect.ruleset import BUILTIN_RULES, CompiledRule, RuleSet, load_rules

RULE_ID = "threatscope:powershell-obfuscated"
TITLE = "Obfuscated PowerShell"
# obfuscation: the PowerShell execution itself is the rules' to name (an obfuscated cmd
# launcher is not a PowerShell event; a PowerShell process is one already)
TECHNIQUES = ["T1027"]
TEXT_KEEP = 65536  # characters of the original and the recovered text kept per event
_CHUNK = 256  # texts per task sent to a worker process

_LAUNCHES = r"(^|[\\/])(powershell|pwsh)(_ise)?\.exe$"
_EVENTS = rf"""
    SELECT org_id, ts, event_kind, file_id, source_file, source_line,
           'command_line' AS source, process_command_line AS text
    FROM process_creation
    WHERE process_command_line IS NOT NULL AND (
        regexp_matches(lower(coalesce(process_executable, '')), '{_LAUNCHES}')
        OR lower(process_pe_original_file_name) IN ('powershell.exe', 'pwsh.dll')
        -- a launcher naming it, carets (cmd's escape) taken out: cmd /c p^owe^rshell
        OR regexp_matches(lower(replace(process_command_line, '^', '')), 'powershell|pwsh'))
    UNION ALL
    SELECT org_id, ts, event_kind, file_id, source_file, source_line,
           'script_block', script_block_text
    FROM ps_script
    WHERE script_block_text IS NOT NULL
      AND NOT coalesce({scan.IN_PARTS}, false)
    UNION ALL  -- a block logged in parts, whole, as its first part's event
    SELECT org_id, ts, event_kind, file_id, source_file, source_line, 'script_block',
           script_block_text
    FROM ({scan.joined_blocks_sql(["org_id", "ts", "event_kind", "file_id", "source_file",
                                    "source_line", "script_block_text"])})
"""


def run_powershell(con: duckdb.DuckDBPyConnection, write: Callable[[pa.Table], int],
                   out: Path, rules: Sequence[CompiledRule] = (), per_rule: Counter | None = None,
                   workers: int | None = None) -> int:
    """Analyse the lake's PowerShell (module doc); run ``rules`` (Sigma rules of the
    ``powershell`` table: malware families in the recovered text) over the result; write
    ``out`` (schema.POWERSHELL_ANALYSIS, with the first family named) and, through ``write``,
    the detections: obfuscated PowerShell (with its family) and each rule's hits, counted in
    ``per_rule``; returns their number."""
    table = _analysed(con, workers)
    rules = list(rules)
    rows, idx = _family_hits(con, table, rules)
    return write_analysis(con, table, rules, rows, idx, write, out, per_rule)


def _analysed(con: duckdb.DuckDBPyConnection, workers: int | None) -> pa.Table:
    """The lake's PowerShell events with their analysis (schema.POWERSHELL_ANALYSIS, no family
    yet), in event order."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE __ts_ps AS {_EVENTS}")
    texts = [t for (t,) in con.execute("SELECT DISTINCT text FROM __ts_ps").fetchall()]
    results = analyse_all(texts, workers)
    con.register("__ts_ps_results", pa.table({
        "text": pa.array(texts, pa.string()),
        **{c: pa.array([r[c] for r in results], t) for c, t in _RESULT.items()}}))
    table = con.sql(f"""
        SELECT e.org_id, e.ts, e.event_kind, e.file_id, e.source_file, e.source_line,
               e.source, left(e.text, {TEXT_KEEP}) AS text, r.obfuscated, r.score,
               r.techniques, r.layers, left(r.final, {TEXT_KEEP}) AS deobfuscated, r.iocs,
               r.truncated, r.reason, NULL::VARCHAR AS family
        FROM __ts_ps e JOIN __ts_ps_results r USING (text)
        ORDER BY e.org_id, e.ts, e.file_id, e.source_line""").to_arrow_table()
    con.unregister("__ts_ps_results")
    con.execute("DROP TABLE __ts_ps")
    return table


def write_analysis(con: duckdb.DuckDBPyConnection, table: pa.Table, rules: list[CompiledRule],
                   rows: pa.Array, idx: pa.Array, write: Callable[[pa.Table], int], out: Path,
                   per_rule: Counter | None = None) -> int:
    """Write the analysed events ``table`` (with each event's first family among the hits
    ``rows``, ``idx`` of ``rules``) to ``out`` and their detections through ``write``; returns
    the detections' number. Shared by both engines (detect.spark computes its inputs)."""
    per_rule = Counter() if per_rule is None else per_rule
    if len(rows):  # each event's first family, in rule order
        first: dict[int, tuple[int, str]] = {}
        for r, i in zip(rows.to_pylist(), idx.to_pylist(), strict=True):
            if rules[i].malware and (r not in first or i < first[r][0]):
                first[r] = (i, rules[i].malware)
        family = [None] * table.num_rows
        for r, (_, name) in first.items():
            family[r] = name
        table = table.set_column(table.schema.get_field_index("family"), "family",
                                 pa.array(family, pa.string()))
    pq.write_table(table.cast(pa.schema([(n, schema.ARROW_TYPES[t])
                                         for n, t in schema.POWERSHELL_ANALYSIS])), out)
    con.register("__ts_ps_out", table)
    n = write(con.sql(f"""
        SELECT org_id, ts, NULL::VARCHAR AS src_ip, event_kind, file_id, source_file,
               source_line, {sqlfn.sql_str(RULE_ID)} AS rule_id, {sqlfn.sql_str(TITLE)} AS title,
               CASE WHEN score >= 0.9 THEN 'high' ELSE 'medium' END AS severity,
               []::VARCHAR[] AS cves, {_texts(TECHNIQUES)} AS attack_techniques,
               NULL::VARCHAR AS product, NULL::VARCHAR AS campaign,
               'obfuscation' AS family, family AS malware_family,
               'powershell' AS detector,
               left(concat('score ', round(score, 2), '; ',
                           nullif(array_to_string(techniques, ', '), '') || '; ',
                           'iocs: ' || nullif(array_to_string(iocs[1:5], ' '), '') || '; ',
                           coalesce(deobfuscated, text)), 512) AS evidence
        FROM __ts_ps_out WHERE obfuscated""").to_arrow_table())
    con.unregister("__ts_ps_out")
    if n:
        per_rule[RULE_ID] += n
    return n + (_family_detections(write, table, rows, idx, rules, per_rule) if len(rows) else 0)


def _family_hits(con, table: pa.Table, rules: list[CompiledRule]) -> tuple[pa.Array, pa.Array]:
    """(row, rule index) of every hit of ``rules`` on the analysed events (one engine pass)."""
    if not rules or not table.num_rows:
        return pa.array([], pa.int64()), pa.array([], pa.int32())
    types = dict(schema.POWERSHELL_ANALYSIS)
    data = pa.table({c: pc.dictionary_encode(table.column(c)) if types[c] == "VARCHAR"
                     else table.column(c) for c in table.column_names})
    return Engine(rules, "powershell").match(con, data)


def _family_detections(write: Callable[[pa.Table], int], table: pa.Table, rows: pa.Array,
                       idx: pa.Array, rules: list[CompiledRule], per_rule: Counter) -> int:
    """Each hit a detection with its rule's tags (``threatscope.malware.<family>``:
    malware_family), the recovered text its evidence."""
    hit = table.take(rows)
    idx = idx.to_pylist()
    n = write(pa.table({
        **{c: hit.column(c) for c in ("org_id", "ts")},
        "src_ip": pa.nulls(len(idx), pa.string()),
        **{c: hit.column(c) for c in ("event_kind", "file_id", "source_file", "source_line")},
        "rule_id": [rules[i].id for i in idx], "title": [rules[i].title for i in idx],
        "severity": [rules[i].level for i in idx],
        "cves": pa.array([rules[i].cves for i in idx], pa.list_(pa.string())),
        "attack_techniques": pa.array([rules[i].attack_techniques for i in idx],
                                      pa.list_(pa.string())),
        "product": pa.array([rules[i].product for i in idx], pa.string()),
        "campaign": pa.array([rules[i].campaign for i in idx], pa.string()),
        "family": pa.array([rules[i].family for i in idx], pa.string()),
        "malware_family": pa.array([rules[i].malware for i in idx], pa.string()),
        "detector": ["sigma"] * len(idx),
        "evidence": pc.utf8_slice_codeunits(
            pc.coalesce(hit.column("deobfuscated"), hit.column("text")), 0, 512),
    }))
    for i in idx:
        per_rule[rules[i].id] += 1
    return n


def family_rules() -> RuleSet:
    """The built-in family rules (rules/powershell) alone, compiled once per machine."""
    from threatscope.usercache import user_cache_dir

    return load_rules([BUILTIN_RULES / "powershell"], builtin=False,
                      cache_dir=user_cache_dir("rules"))


def name_families(texts: Sequence[str], recovered: Sequence[str | None],
                  rules: RuleSet | None = None) -> list[list[str]]:
    """The malware families the ``powershell`` rules of ``rules`` (default: family_rules())
    name for each text and what was recovered from it, in rule order, as detect names them.

        name_families(["powershell -enc ..."], ["IEX (New-Object Net.WebClient)..."])
        # [["downloader"]]
    """
    from threatscope.detect.stage import evaluate  # stage imports this module

    rules = rules or family_rules()
    malware = {r.id: r.malware for r in rules.for_table("powershell")}
    hits = evaluate(rules, "powershell", [{"text": t, "deobfuscated": d}
                                          for t, d in zip(texts, recovered, strict=True)])
    return [[malware[i] for i in ids if malware.get(i)] for ids in hits]


# what analyse returns per text, as Arrow types
_RESULT = {"obfuscated": pa.bool_(), "score": pa.float64(), "techniques": pa.list_(pa.string()),
           "layers": pa.int32(), "final": pa.string(), "iocs": pa.list_(pa.string()),
           "truncated": pa.bool_(), "reason": pa.string()}


def analyse_all(texts: list[str], workers: int | None = None) -> list[dict]:
    """``powershell.analysis.analyse`` of each text, in order, over worker processes when
    there are many (the analysis is pure Python)."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(texts) <= 2 * _CHUNK:
        return _analyse_chunk(texts)
    chunks = [texts[i:i + _CHUNK] for i in range(0, len(texts), _CHUNK)]
    # forkserver: the parent holds DuckDB's threads, which a fork would copy mid-flight
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=multiprocessing.get_context("forkserver")) as pool:
        return [r for part in pool.map(_analyse_chunk, chunks) for r in part]


def _analyse_chunk(texts: list[str]) -> list[dict]:
    from threatscope.powershell.analysis import analyse

    return [analyse(t) for t in texts]


def _texts(vs: list[str]) -> str:
    return "[" + ", ".join(sqlfn.sql_str(v) for v in vs) + "]::VARCHAR[]"
