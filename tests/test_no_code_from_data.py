"""No code runs from data: nothing in threatscope evaluates, unpickles or YAML-constructs what
it reads, and the loaders that read structured files refuse what would run code."""

from __future__ import annotations

import ast
import gzip
import os
import pickle
from pathlib import Path

import pytest

from threatscope.detect.sigmaload import compile_files
from threatscope.enrich import ranges
from threatscope.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1] / "threatscope"

# calls that run or construct code from their argument
_BUILTINS = {"eval", "exec", "compile", "__import__"}
_MODULE_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
    ("marshal", "load"), ("marshal", "loads"), ("shelve", "open"),
    ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "unsafe_load_all"),
    ("yaml", "full_load_all"), ("os", "system"), ("os", "popen"),
}
_SAFE_YAML = {"SafeLoader", "CSafeLoader", "_YamlLoader"}  # _YamlLoader: one of the two


def _offences(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in _BUILTINS:
            found.append(f"{f.id}() at line {node.lineno}")
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            if (f.value.id, f.attr) in _MODULE_CALLS:
                found.append(f"{f.value.id}.{f.attr}() at line {node.lineno}")
            if f.value.id == "yaml" and f.attr in ("load", "load_all"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                name = getattr(loader, "id", getattr(loader, "attr", None))
                if name not in _SAFE_YAML:
                    found.append(f"yaml.{f.attr}() without a safe Loader at line {node.lineno}")
        if any(k.arg == "shell" and getattr(k.value, "value", False) is True
               for k in node.keywords):
            found.append(f"a shell=True call at line {node.lineno}")
    return found


def test_the_checker_finds_what_it_looks_for():
    bad = ("eval(x)\nexec(y)\npickle.loads(b)\nyaml.load(t, Loader=yaml.Loader)\n"
           "yaml.load(t)\nsubprocess.run(c, shell=True)\nos.system(c)\n")
    assert len(_offences(ast.parse(bad))) == 7
    assert _offences(ast.parse("yaml.load_all(t, Loader=_YamlLoader)\nm.eval()\n")) == []


def test_no_module_evaluates_or_unpickles_anything():
    offences = {str(p.relative_to(PACKAGE)): found for p in sorted(PACKAGE.rglob("*.py"))
                if (found := _offences(ast.parse(p.read_text(encoding="utf-8"))))}
    assert offences == {}


def test_a_sigma_rule_with_python_yaml_tags_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    rule = tmp_path / "evil.yml"
    rule.write_text(f"""title: evil
id: 11111111-2222-3333-4444-555555555555
logsource: {{category: webserver}}
detection:
  sel:
    cs-uri-query|contains: !!python/object/apply:os.system ["touch {marker}"]
  condition: sel
""", encoding="utf-8")
    rs = compile_files([rule])
    assert rs.rules == [] and len(rs.failed) == 1
    assert "python/object" in rs.failed[0].reason
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_the_range_data_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    data = tmp_path / "geoip2fast-asn-ipv6.dat.gz"
    with gzip.open(data, "wb") as f:
        pickle.dump((121, {"country": True, "asn": True}, 0, [_Touch(str(marker))]), f)
    with pytest.raises(UserError, match="unreadable geoip2fast data.*os.*system"):
        ranges._convert_geoip2fast(data, tmp_path)
    assert not marker.exists()
    plain = tmp_path / "plain.dat.gz"  # plain data loads: the refusal is about code
    with gzip.open(plain, "wb") as f:
        pickle.dump((999, {}, 0, []), f)
    with pytest.raises(UserError, match="unsupported geoip2fast data"):
        ranges._convert_geoip2fast(plain, tmp_path)
