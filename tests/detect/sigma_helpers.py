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
