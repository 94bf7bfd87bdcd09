"""Sigma YAML -> CompiledRule: parsing with pySigma, field mapping, compilation to DuckDB SQL.

    rs = compile_files([Path("rules/web/drupal.yml")])   # ruleset.load_rules caches this

Imported only when a rule set is not in the compiled-rule cache: pySigma takes a while to import.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import yaml
from sigma import modifiers as sigma_modifiers
from sigma.collection import SigmaCollection
from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    SigmaCorrelationRule,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from threatscope import schema
from threatscope.detect import mapping
from threatscope.detect.compiler import SPARK, CompileError, compile_condition, resolve_field
from threatscope.detect.ruleset import (
    CompiledCorrelation,
    CompiledRule,
    FailedRule,
    RuleSet,
    logsource_label,
)
from threatscope.detect.sqltext import with_read_fields

# libyaml's safe loader when available: the pure-Python one dominates load time
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# the specification's other name of `wide`, which pySigma does not know
sigma_modifiers.modifier_mapping.setdefault("utf16le", sigma_modifiers.SigmaWideModifier)
_TECHNIQUE = re.compile(r"t\d{4}(\.\d{3})?")
_GROUP_OR_SOFTWARE = re.compile(r"[gsm]\d{4}")


def compile_files(files: list[Path], placeholders: dict[str, list[str]] | None = None) -> RuleSet:
    """Compile every rule of ``files`` (``|expand`` placeholders take ``placeholders``' values);
    rules that cannot be compiled are in ``.failed``."""
    rs = RuleSet()
    seen: dict[str, str] = {}
    pipeline = mapping.processing_pipeline(placeholders)
    con = duckdb.connect()
    for kind, cols in schema.RULE_TABLES.items():
        con.execute(f'CREATE TABLE "{kind}" AS {schema.empty_select(cols)}')
    correlations: list[tuple[str, dict]] = []  # compiled once every rule they may name is
    not_compiled: dict[str, str] = {}  # id or name of a rule that failed -> why
    try:
        for path in files:
            _load_file(path, rs, seen, pipeline, con, correlations, not_compiled)
    finally:
        con.close()
    refs = {ref: r for r in rs.rules for ref in (r.id, r.name) if ref}
    for path, doc in correlations:
        name = str(doc.get("id") or doc.get("title") or Path(path).name)
        try:
            c = compile_correlation(doc, path, refs, not_compiled)
        except (CompileError, SigmaError) as e:
            rs.failed.append(FailedRule(path, name, _one_line(e), "correlation"))
            continue
        if c.id in seen:
            reason = f"duplicate rule id (already loaded from {seen[c.id]})"
            rs.failed.append(FailedRule(path, name, reason, "correlation"))
            continue
        seen[c.id] = path
        rs.correlations.append(c)
    return rs


def _load_file(path: Path, rs: RuleSet, seen: dict[str, str], pipeline, con,
               correlations: list[tuple[str, dict]], not_compiled: dict[str, str]) -> None:
    spath = str(path)
    try:
        docs = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_YamlLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        rs.failed.append(FailedRule(spath, path.name, f"YAML error: {_one_line(e)}"))
        return
    docs = [d for d in docs if d is not None]
    if not docs:
        rs.failed.append(FailedRule(spath, path.name, "no Sigma rule in file"))
        return
    if not all(isinstance(d, dict) for d in docs):
        rs.failed.append(FailedRule(spath, path.name, "not a Sigma rule (YAML is not a mapping)"))
        return
    rule_docs = []
    for d in docs:
        name = str(d.get("id") or d.get("title") or path.name)
        if "correlation" in d:  # the rules it names may be in files read later
            correlations.append((spath, d))
        elif "filter" in d and "detection" not in d:
            rs.failed.append(FailedRule(spath, name, "Sigma filters are not supported yet"))
        else:
            rule_docs.append(d)
    if not rule_docs:
        return
    docs = rule_docs
    try:
        coll = SigmaCollection.from_dicts(docs, collect_errors=True)
    except (SigmaError, ValueError, TypeError, KeyError, AttributeError) as e:
        rs.failed.append(FailedRule(spath, path.name, f"invalid Sigma: {_one_line(e)}"))
        return
    owned = {id(e) for r in [*coll.rules, *coll.filters] for e in getattr(r, "errors", [])}
    for err in coll.errors:
        if id(err) in owned:  # reported with its rule below
            continue
        rs.failed.append(FailedRule(spath, path.name, f"invalid Sigma: {_one_line(err)}"))
    for rule in coll.rules:
        name = str(rule.id or rule.title or path.name)
        if not isinstance(rule, SigmaRule):
            rs.failed.append(FailedRule(spath, name, f"unsupported document {type(rule).__name__}"))
            continue
        ls = rule.logsource
        label = logsource_label(ls.category, ls.product, ls.service)
        if rule.errors:
            reason = f"invalid Sigma: {_one_line(rule.errors[0])}"
            rs.failed.append(FailedRule(spath, name, reason, label))
            not_compiled.update(dict.fromkeys(_refs(rule), reason))
            continue
        try:
            compiled = _compile(rule, spath, pipeline, con)
        except (CompileError, SigmaError) as e:
            rs.failed.append(FailedRule(spath, name, _one_line(e), label))
            not_compiled.update(dict.fromkeys(_refs(rule), _one_line(e)))
            continue
        if compiled.id in seen:
            reason = f"duplicate rule id (already loaded from {seen[compiled.id]})"
            rs.failed.append(FailedRule(spath, name, reason, label))
            continue
        seen[compiled.id] = spath
        rs.rules.append(compiled)


def _compile(rule: SigmaRule, path: str, pipeline, con) -> CompiledRule:
    ls = rule.logsource
    table = mapping.table_for(ls.category, ls.product, ls.service)
    if table is None:
        raise CompileError(
            f"no data for logsource {logsource_label(ls.category, ls.product, ls.service)}"
        )
    pipeline.apply(rule)
    if not all(isinstance(c, str) for c in rule.detection.condition):
        raise CompileError("invalid condition: a condition is a text (or a list of texts)")
    try:  # pySigma parses conditions here, and a malformed one raises more than SigmaError
        trees = [c.parsed for c in rule.detection.parsed_condition]
    except SigmaError:
        raise
    except RecursionError:
        raise CompileError("condition nested too deeply") from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise CompileError(f"invalid condition: {_one_line(e)}") from None
    # the conditions of a rule are alternatives
    try:
        parts = [compile_condition(t, table) for t in trees]
        spark_sql = _or_sql([compile_condition(t, table, SPARK)[0] for t in trees])
    except RecursionError:
        raise CompileError("condition nested too deeply") from None
    sql = _or_sql([p[0] for p in parts])
    expr = parts[0][1] if len(parts) == 1 else ["or", [p[1] for p in parts]]
    # field columns (event_data.Image, ...) are added to the table when matching
    source = with_read_fields(f'SELECT * FROM "{table}"', sql, mapping.columns(table))
    try:  # bind it once: catches regexes RE2 rejects and anything else DuckDB refuses
        con.execute(f"SELECT count(*) FROM ({source}) WHERE {sql}").fetchall()
    except duckdb.Error as e:
        raise CompileError(f"DuckDB rejects the compiled expression: {_one_line(e)}") from None
    meta = _tag_meta([str(t) for t in rule.tags])
    return CompiledRule(
        id=str(rule.id) if rule.id else (rule.name or Path(path).stem),
        title=rule.title or "",
        level=rule.level.name.lower() if rule.level else None,
        status=rule.status.name.lower() if rule.status else None,
        tags=[str(t) for t in rule.tags],
        logsource={
            k: v
            for k, v in (("category", ls.category), ("product", ls.product), ("service", ls.service))
            if v
        },
        table=table,
        sql=sql,
        spark_sql=spark_sql,
        path=path,
        expr=expr,
        name=rule.name or None,
        **meta,
    )


def _refs(rule) -> list[str]:
    return [str(x) for x in (rule.id, rule.name) if x]


_CORRELATION_TYPES = ("event_count", "value_count", "value_sum", "value_avg", "value_median",
                      "value_percentile", "temporal", "temporal_ordered")


def compile_correlation(doc: dict, path: str, refs: dict[str, CompiledRule],
                        not_compiled: dict[str, str]) -> CompiledCorrelation:
    """A correlation rule (its YAML document) over the compiled rules ``refs`` (by id and by
    name); CompileError names what is wrong (an unknown or failed rule, an unknown field)."""
    corr = SigmaCorrelationRule.from_dict(doc, collect_errors=True)
    if corr.errors:
        raise CompileError(f"invalid Sigma: {_one_line(corr.errors[0])}")
    ctype = corr.type.name.lower()
    if ctype not in _CORRELATION_TYPES:
        raise CompileError(f"correlation type {ctype} is not supported")
    cond = corr.condition
    names = ([r.reference for r in corr.rules] if corr.rules
             else list(dict.fromkeys(cond.get_referenced_rules())))
    rules: list[CompiledRule] = []
    for ref in names:
        if ref in refs:
            rules.append(refs[ref])
        elif ref in not_compiled:
            raise CompileError(f"refers to rule {ref!r}, which did not compile: {not_compiled[ref]}")
        else:
            raise CompileError(f"refers to rule {ref!r}, which is not loaded (correlations of "
                               "correlations are not supported)")
    by_ref = dict(zip(names, rules, strict=True))
    aliases = {a.alias: {ref.reference: f for ref, f in a.mapping.items()} for a in corr.aliases}
    columns: dict[str, list[str]] = {}
    for ref, rule in by_ref.items():
        cols = []
        for g in corr.group_by or []:
            if g in aliases and ref not in aliases[g]:
                raise CompileError(f"alias {g!r} names no field of rule {ref!r}")
            cols.append(_field_column(aliases[g][ref] if g in aliases else g, rule))
        columns[rule.id] = cols
    out = dict(
        id=str(corr.id) if corr.id else (corr.name or Path(path).stem),
        title=corr.title or "", level=corr.level.name.lower() if corr.level else None,
        status=corr.status.name.lower() if corr.status else None,
        tags=[str(t) for t in corr.tags], path=path, type=ctype,
        rules=[r.id for r in rules], timespan=corr.timespan.seconds,
        timespan_text=corr.timespan.spec, generate=bool(corr.generate),
        group_by=list(corr.group_by or []), columns=columns, **_tag_meta([str(t) for t in corr.tags]))
    if isinstance(cond, SigmaExtendedCorrelationCondition):
        out["expression"] = _extended(cond.parsed, by_ref)
    else:
        out["condition"] = {"op": cond.op.name.lower(), "count": cond.count,
                            "percentile": cond.percentile}
        if ctype.startswith("value_"):
            if not isinstance(cond.fieldref, str):
                raise CompileError("a value condition needs one field")
            out["value"] = {r.id: _field_column(cond.fieldref, r) for r in rules}
        if ctype == "temporal_ordered" and (cond.op.name, cond.count) != ("GTE", len(rules)):
            raise CompileError("temporal_ordered supports only the default condition "
                               "(every rule, in order)")
    return CompiledCorrelation(**out)


def _field_column(name: str, rule: CompiledRule) -> str:
    """The column of ``rule``'s table a Sigma field name denotes (as its rules map it)."""
    mapped = mapping.TABLE_FIELDS.get(rule.table, {}).get(name, name)
    return resolve_field(mapped, rule.table).column


def _extended(node, by_ref: dict[str, CompiledRule]):
    if isinstance(node, SigmaRuleReference):
        return ["rule", by_ref[node.reference].id]
    args = [_extended(a, by_ref) for a in node.args]
    if isinstance(node, CorrelationConditionNOT):
        return ["not", args[0]]
    return ["and" if isinstance(node, CorrelationConditionAND) else "or", args]


def _or_sql(sqls: list[str]) -> str:
    return sqls[0] if len(sqls) == 1 else "(" + " OR ".join(sqls) + ")"


def _tag_meta(tags: list[str]) -> dict:
    """cves / attack_techniques / tactics / product / campaign / family / malware from rule
    tags (``threatscope.<key>.<value>``)."""
    meta: dict = {"cves": [], "attack_techniques": [], "tactics": [], "product": None,
                  "campaign": None, "family": None, "malware": None}
    for tag in tags:
        ns, _, name = tag.lower().partition(".")
        if ns == "cve" and name:
            meta["cves"].append("CVE-" + name.upper())
        elif ns == "attack" and name:
            if _TECHNIQUE.fullmatch(name):
                meta["attack_techniques"].append(name.upper())
            elif not _GROUP_OR_SOFTWARE.fullmatch(name):
                meta["tactics"].append(name.replace("_", "-"))
        elif ns == "threatscope":
            key, _, value = name.partition(".")
            if key in ("product", "campaign", "family", "malware") and value and meta[key] is None:
                meta[key] = value
    for k in ("cves", "attack_techniques", "tactics"):
        meta[k] = list(dict.fromkeys(meta[k]))
    return meta


def _one_line(e: object) -> str:
    return " ".join(str(e).split())[:500]
