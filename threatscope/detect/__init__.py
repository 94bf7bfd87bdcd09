"""threatscope detect stage: Sigma rules compiled to DuckDB SQL, run in one pass per table.

    from threatscope.detect import load_rules, evaluate, run_detect
    rs = load_rules(["sigma/rules/web"])            # built-in pack + these
    evaluate(rs, "http", [{"url_original": "/index.php?id=1'+union+select+1"}])
    run_detect(ws).to_dict()                         # replaces detection.parquet (view `detection`)
    run_detect(ws, engine="spark")                   # the same rows, computed by Spark

See docs/architecture.md for the interface and the Sigma field mapping.
"""

from threatscope.detect.ruleset import CompiledRule, FailedRule, RuleSet, load_rules
from threatscope.detect.stage import (
    DetectSummary,
    check_rules,
    evaluate,
    list_rules,
    run_detect,
)

__all__ = [
    "CompiledRule",
    "DetectSummary",
    "FailedRule",
    "RuleSet",
    "check_rules",
    "evaluate",
    "list_rules",
    "load_rules",
    "run_detect",
]
