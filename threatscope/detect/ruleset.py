"""Loading Sigma YAML into compiled rules.

    rs = load_rules(["my-rules/"])          # built-in pack + my-rules, recursively
    for r in rs.rules: print(r.id, r.table, r.sql)
    for f in rs.failed: print(f.path, f.name, f.reason)

A rule either compiles or is listed in ``failed`` with the reason; it never silently vanishes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from threatscope.detect import cache
from threatscope.detect.sqltext import Expr
from threatscope.errors import UserError

BUILTIN_RULES = Path(__file__).resolve().parent / "rules"


@dataclass
class CompiledRule:
    """A Sigma rule compiled into a DuckDB boolean expression over ``table`` (``sql``, the
    reference), the same in Spark SQL (``spark_sql``) and as an expression over leaves
    (``expr``, which the engine runs)."""

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
    malware: str | None = None  # malware family, e.g. 'emotet'
    expr: Expr = field(default_factory=list, repr=False)  # see compiler
    spark_sql: str = field(default="", repr=False)  # ``sql`` in Spark SQL (detect.spark)
    name: str | None = None  # the rule's `name:`, by which correlations may refer to it


@dataclass
class CompiledCorrelation:
    """A Sigma correlation rule over the events of compiled rules (see detect.correlation).

    ``rules``: ids of the rules whose events it correlates, in the rule's order (the order
    matters to ``temporal_ordered``); ``columns[rule][i]``: the column holding group-by field
    ``group_by[i]`` in that rule's table (after aliases and field mapping); ``value[rule]``: the
    column a ``value_*`` condition reads; ``condition``: ``{"op", "count", "percentile"}``, or
    ``expression`` for an extended temporal condition (``["and"|"or", [...]]``, ``["not", e]``,
    ``["rule", id]``)."""

    id: str
    title: str
    level: str | None
    status: str | None
    tags: list[str]
    path: str
    type: str  # event_count | value_count | value_sum | value_avg | value_median | ...
    rules: list[str]
    timespan: int  # seconds
    timespan_text: str  # as written, e.g. '5m'
    generate: bool = False
    group_by: list[str] = field(default_factory=list)
    columns: dict[str, list[str]] = field(default_factory=dict)
    value: dict[str, str] = field(default_factory=dict)
    condition: dict | None = None
    expression: Expr | None = None
    cves: list[str] = field(default_factory=list)
    attack_techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    product: str | None = None
    campaign: str | None = None
    family: str | None = None
    malware: str | None = None

    def reads(self, rule_id: str) -> list[str]:
        """The columns this correlation reads from the events of ``rule_id``."""
        cols = list(self.columns.get(rule_id, []))
        if rule_id in self.value:
            cols.append(self.value[rule_id])
        return cols


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
    correlations: list[CompiledCorrelation] = field(default_factory=list)

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


def rule_sets(rule_dirs: Sequence[Path | str], rs: RuleSet, builtin: bool = True) -> list[dict]:
    """What a report's methodology names: each rule folder or file loaded, in order, with
    ``name``, ``version`` (the package's for the built-in pack; else the checkout's git commit
    when it is one, else ``sha256:`` of its rule files' contents), ``files``, ``rules``
    (compiled), ``failed``."""
    from importlib import metadata

    roots = ([BUILTIN_RULES] if builtin else []) + [Path(d) for d in rule_dirs]
    out = []
    for root in roots:
        files = rule_files([root], builtin=False)
        inside = {str(f) for f in files}
        if root == BUILTIN_RULES:
            name, version = "threatscope built-in", metadata.version("threatscope")
        else:
            name = str(root)
            version = _git_commit(root) or "sha256:" + _digest(root, files)
        out.append({"name": name, "version": version, "files": len(files),
                    "rules": sum(r.path in inside for r in [*rs.rules, *rs.correlations]),
                    "failed": sum(f.path in inside for f in rs.failed)})
    return out


def _digest(root: Path, files: list[Path]) -> str:
    """12 hex digits of sha256 over each rule file's path (within ``root``) and content."""
    h = hashlib.sha256()
    for f in files:
        rel = f.relative_to(root) if f != root else Path(f.name)
        h.update(str(rel).encode("utf-8", "surrogateescape") + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _git_commit(path: Path) -> str | None:
    """The commit a git checkout containing ``path`` is at (read from .git, no git needed)."""
    for d in [path, *path.resolve().parents]:
        head = d / ".git" / "HEAD"
        if not head.is_file():
            continue
        ref = head.read_text(errors="replace").strip()
        if not ref.startswith("ref: "):
            return ref[:12] or None
        ref_file = d / ".git" / ref[5:]
        if ref_file.is_file():
            return ref_file.read_text(errors="replace").strip()[:12] or None
        packed = d / ".git" / "packed-refs"
        for line in packed.read_text(errors="replace").splitlines() if packed.is_file() else ():
            if line.endswith(" " + ref[5:]):
                return line.split()[0][:12]
        return None
    return None


def load_rules(
    rule_dirs: Sequence[Path | str] = (), builtin: bool = True, cache_dir: Path | str | None = None,
    placeholders: dict[str, list[str]] | None = None,
) -> RuleSet:
    """Read and compile Sigma rules: the built-in pack (``builtin``) plus files/folders given.

    ``placeholders``: values of ``|expand`` placeholders by name (a workspace's
    ``[detect.placeholders]``). ``cache_dir``: a folder keeping compiled rule sets (see
    detect.cache), keyed by the rule files' contents, the placeholders and the compiler's code:
    a second load of the same files reads one JSON."""
    files = rule_files(rule_dirs, builtin)
    placeholders = placeholders or {}
    key = cache.cache_key(files, {"placeholders": placeholders}) if cache_dir is not None else ""
    if cache_dir is not None:
        doc = cache.read(cache_dir, key)
        if doc is not None:
            try:
                return _from_doc(doc)
            except (KeyError, TypeError, ValueError, IndexError):
                pass  # unreadable entry: compile again, and overwrite it
    from threatscope.detect.sigmaload import compile_files  # pySigma: only on a cache miss

    rs = compile_files(files, placeholders)
    if cache_dir is not None:
        cache.write(cache_dir, key, _to_doc(rs))
    return rs


# -- (de)serialisation for the cache ------------------------------------------------------------
def _to_doc(rs: RuleSet) -> dict:
    return {"rules": [dict(r.__dict__) for r in rs.rules],
            "failed": [f.__dict__ for f in rs.failed],
            "correlations": [dict(c.__dict__) for c in rs.correlations]}


def _from_doc(doc: dict) -> RuleSet:
    return RuleSet([CompiledRule(**d) for d in doc["rules"]],
                   [FailedRule(**f) for f in doc["failed"]],
                   [CompiledCorrelation(**c) for c in doc["correlations"]])
