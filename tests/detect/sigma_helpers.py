"""Write a one-rule Sigma file and evaluate rows against it (conformance tests)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from threatscope.detect import RuleSet, evaluate, load_rules

RULE_ID = "00000000-0000-4000-8000-000000000001"


def rule_yaml(detection: str, logsource: str = "category: webserver", extra: str = "") -> str:
    det = textwrap.indent(textwrap.dedent(detection).strip("\n"), "    ")
    return (
        f"title: conformance\nid: {RULE_ID}\nstatus: test\nlevel: high\n{extra}"
        f"logsource:\n    {logsource}\ndetection:\n{det}\n"
    )


def load_one(tmp: Path, detection: str, **kw) -> RuleSet:
    d = tmp / "rules"
    d.mkdir(exist_ok=True)
    (d / "rule.yml").write_text(rule_yaml(detection, **kw), encoding="utf-8")
    return load_rules([d], builtin=False)


def matches(tmp: Path, detection: str, rows: list[dict], **kw) -> list[bool]:
    rs = load_one(tmp, detection, **kw)
    assert not rs.failed, rs.failed
    assert len(rs.rules) == 1
    return [RULE_ID in hits for hits in evaluate(rs, "http", rows)]


def rule_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def check_on_spark(tmp: Path, spark, cases: list[tuple[str, dict, str, list[tuple[dict, bool]]]]
                   ) -> None:
    """Every case (detection, rule_yaml keywords, table, [(row, expected)]) on Spark in one job
    per table: each case's rule, as its own rule, matches exactly its expected rows, and every
    rule gives on every row what the DuckDB reference gives."""
    d = tmp / "spark-rules"
    d.mkdir()
    for i, (detection, kw, _, _) in enumerate(cases):
        text = rule_yaml(detection, **kw).replace(RULE_ID, rule_id(i))
        (d / f"rule{i}.yml").write_text(text, encoding="utf-8")
    rs = load_rules([d], builtin=False)
    assert not rs.failed, rs.failed
    for table in sorted({c[2] for c in cases}):
        mine = [(i, rows) for i, (_, _, t, rows) in enumerate(cases) if t == table]
        rows = [r for _, rs_ in mine for r, _ in rs_]
        got = evaluate(rs, table, rows, engine="spark", spark=spark)
        assert got == evaluate(rs, table, rows, reference=True)
        at = 0
        for i, case_rows in mine:
            hits = [rule_id(i) in h for h in got[at:at + len(case_rows)]]
            assert hits == [w for _, w in case_rows], (cases[i][0], hits)
            at += len(case_rows)
