"""Loading Sigma YAML into compiled rules.

    rs = load_rules(["my-rules/"])          # built-in pack + my-rules, recursively
    for r in rs.rules: print(r.id, r.table, r.sql)
    for f in rs.failed: print(f.path, f.name, f.reason)

A rule either compiles or is listed in ``failed`` with the reason; it never silently vanishes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from threatscope import schema
from threatscope.detect import cache, mapping
from threatscope.detect.compiler import (
    Atom,
    CompileError,
    Expr,
    Req,
    compile_condition,
    condition_columns,
    decompose_group,
    req_union,
    split_or,
)
from threatscope.errors import UserError

BUILTIN_RULES = Path(__file__).resolve().parent / "rules"

# libyaml's safe loader when available: the pure-Python one dominates load time
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TECHNIQUE = re.compile(r"t\d{4}(\.\d{3})?")
_GROUP_OR_SOFTWARE = re.compile(r"[gsm]\d{4}")


@dataclass
class RulePart:
    """Disjuncts of a rule that read the same single column (``column``), or all the others
    (``column`` None): the rule matches a row iff one of its parts does."""

    column: str | None
    sql: str
    need: Req = field(default=(frozenset(), ()), repr=False)  # prefilter requirement of the part
    # several columns: the part as an expression over atoms (compiler.decompose)
    expr: Expr | None = field(default=None, repr=False)
    atoms: list[Atom] = field(default_factory=list, repr=False)


@dataclass
class CompiledRule:
    """A Sigma rule compiled into a DuckDB boolean expression over ``table`` (``sql``, the OR of
    its ``parts``, which is how the stage evaluates it: see matcher)."""

    id: str
    title: str
    level: str | None
    status: str | None
    tags: list[str]
    logsource: dict[str, str]
    table: str
    sql: str
    path: str
    cves: list[str] = field(default_factory=list)  # 'CVE-2018-7600'
    attack_techniques: list[str] = field(default_factory=list)  # 'T1190', 'T1059.001'
    tactics: list[str] = field(default_factory=list)  # 'initial-access'
    product: str | None = None
    campaign: str | None = None
    family: str | None = None
    parts: list[RulePart] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class FailedRule:
    """A rule (or file) that did not compile: where, which, why."""

    path: str
    name: str  # rule id or title, or the file name when the YAML itself is broken
    reason: str
    logsource: str = ""  # 'product/category/service' ('-' for absent parts); '' if unknown


@dataclass
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    failed: list[FailedRule] = field(default_factory=list)

    def for_table(self, table: str) -> list[CompiledRule]:
        return [r for r in self.rules if r.table == table]

    def by_id(self, rule_id: str) -> CompiledRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def logsource_label(category: str | None, product: str | None, service: str | None) -> str:
    return "/".join(x or "-" for x in (product, category, service))


def rule_files(rule_dirs: Sequence[Path | str] = (), builtin: bool = True) -> list[Path]:
    """The .yml/.yaml files to load, builtin pack first, each folder sorted recursively."""
    roots: list[Path] = [BUILTIN_RULES] if builtin else []
    for d in rule_dirs:
        p = Path(d)
        if not p.exists():
            raise UserError(f"{p}: rule file or folder not found")
        roots.append(p)
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files += sorted(
                p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file()
            )
        elif root.is_file():
            files.append(root)
    return files


def load_rules(
    rule_dirs: Sequence[Path | str] = (), builtin: bool = True, cache_dir: Path | str | None = None
) -> RuleSet:
    """Read and compile Sigma rules: the built-in pack (``builtin``) plus files/folders given.

    ``cache_dir``: a folder keeping compiled rule sets (see detect.cache), keyed by the rule
    files' contents and the compiler's code: a second load of the same files reads one JSON."""
    files = rule_files(rule_dirs, builtin)
    key = cache.cache_key(files) if cache_dir is not None else ""
    if cache_dir is not None:
        doc = cache.read(cache_dir, key)
        if doc is not None:
            try:
                return _from_doc(doc)
            except (KeyError, TypeError, ValueError, IndexError):
                pass  # unreadable entry: compile again, and overwrite it
    rs = RuleSet()
    seen: dict[str, str] = {}
    pipeline = mapping.processing_pipeline()
    con = duckdb.connect()
    for kind, cols in schema.KINDS.items():
        con.execute(f'CREATE TABLE "{kind}" AS {schema.empty_select(cols)}')
    try:
        for path in files:
            _load_file(path, rs, seen, pipeline, con)
    finally:
        con.close()
    if cache_dir is not None:
        cache.write(cache_dir, key, _to_doc(rs))
    return rs


# -- (de)serialisation for the cache ------------------------------------------------------------
def _req_doc(req: Req) -> list:
    return [sorted([k, v] for k, v in req[0]), [list(x) for x in req[1]]]


def _req(doc: list) -> Req:
    return frozenset((k, v) for k, v in doc[0]), tuple(tuple(x) for x in doc[1])


def _to_doc(rs: RuleSet) -> dict:
    rules = []
    for r in rs.rules:
        d = {k: v for k, v in r.__dict__.items() if k != "parts"}
        d["parts"] = [
            {"column": p.column, "sql": p.sql, "need": _req_doc(p.need), "expr": p.expr,
             "atoms": [[c, sql, _req_doc(n)] for c, sql, n in p.atoms]}
            for p in r.parts
        ]
        rules.append(d)
    return {"rules": rules, "failed": [f.__dict__ for f in rs.failed]}


def _from_doc(doc: dict) -> RuleSet:
    rules = []
    for d in doc["rules"]:
        parts = [
            RulePart(p["column"], p["sql"], _req(p["need"]), p["expr"],
                     [(c, sql, _req(n)) for c, sql, n in p["atoms"]])
            for p in d["parts"]
        ]
        rules.append(CompiledRule(**{**d, "parts": parts}))
    return RuleSet(rules, [FailedRule(**f) for f in doc["failed"]])


def _load_file(path: Path, rs: RuleSet, seen: dict[str, str], pipeline, con) -> None:
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
        if "correlation" in d:  # referenced rules may live in other files: not parsed at all
            rs.failed.append(FailedRule(spath, name, "correlation rules not supported yet"))
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
        if isinstance(rule, SigmaCorrelationRule):
            rs.failed.append(FailedRule(spath, name, "correlation rules not supported yet"))
            continue
        if not isinstance(rule, SigmaRule):
            rs.failed.append(FailedRule(spath, name, f"unsupported document {type(rule).__name__}"))
            continue
        ls = rule.logsource
        label = logsource_label(ls.category, ls.product, ls.service)
        if rule.errors:
            reason = f"invalid Sigma: {_one_line(rule.errors[0])}"
            rs.failed.append(FailedRule(spath, name, reason, label))
            continue
        try:
            compiled = _compile(rule, spath, pipeline, con)
        except (CompileError, SigmaError) as e:
            rs.failed.append(FailedRule(spath, name, _one_line(e), label))
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
    # one part per column read alone (evaluated once per distinct value by the stage) and one for
    # the disjuncts reading several columns (evaluated per row)
    by_col: dict[str, list[tuple[str, Req]]] = {}
    multi = []
    for cond in rule.detection.parsed_condition:
        for d in split_or(cond.parsed):
            cols = condition_columns(d, table)
            if len(cols) == 1:
                by_col.setdefault(next(iter(cols)), []).append(compile_condition(d, table))
            else:
                multi.append(d)
    parts = [
        RulePart(c, _or_sql([x[0] for x in xs]), req_union([x[1] for x in xs]))
        for c, xs in by_col.items()
    ]
    if multi:
        atoms: list[Atom] = []
        expr, sql, req = decompose_group(multi, False, table, atoms)
        parts.append(RulePart(None, sql, req, expr, atoms))
    sql = _or_sql([p.sql for p in parts])
    try:  # bind it once: catches regexes RE2 rejects and anything else DuckDB refuses
        con.execute(f'SELECT count(*) FROM "{table}" WHERE {sql}').fetchall()
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
        path=path,
        parts=parts,
        **meta,
    )


def _or_sql(sqls: list[str]) -> str:
    return sqls[0] if len(sqls) == 1 else "(" + " OR ".join(sqls) + ")"


def _tag_meta(tags: list[str]) -> dict:
    """cves / attack_techniques / tactics / product / campaign / family from rule tags."""
    meta: dict = {"cves": [], "attack_techniques": [], "tactics": [], "product": None,
                  "campaign": None, "family": None}
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
            if key in ("product", "campaign", "family") and value and meta[key] is None:
                meta[key] = value
    for k in ("cves", "attack_techniques", "tactics"):
        meta[k] = list(dict.fromkeys(meta[k]))
    return meta


def _one_line(e: object) -> str:
    return " ".join(str(e).split())[:500]
