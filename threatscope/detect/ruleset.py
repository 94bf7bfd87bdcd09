"""Loading Sigma YAML into compiled rules.

    rs = load_rules(["my-rules/"])          # built-in pack + my-rules, recursively
    for r in rs.rules: print(r.id, r.table, r.sql)
    for f in rs.failed: print(f.path, f.name, f.reason)

A rule either compiles or is listed in ``failed`` with the reason; it never silently vanishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from threatscope.detect import cache
from threatscope.detect.sqltext import Atom, Expr, Req
from threatscope.errors import UserError

BUILTIN_RULES = Path(__file__).resolve().parent / "rules"


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
    from threatscope.detect.sigmaload import compile_files  # pySigma: only on a cache miss

    rs = compile_files(files)
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
