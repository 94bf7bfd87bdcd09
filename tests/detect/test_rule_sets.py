"""What a report's methodology says about the rules: each rule set loaded, its version, its
counts (compiled and failed)."""

from __future__ import annotations

from importlib import metadata

from threatscope.detect.ruleset import load_rules, rule_sets

RULE = """title: {title}
id: {id}
logsource: {{category: webserver}}
detection:
  sel: {{cs-uri-query|contains: '{needle}'}}
  condition: sel
level: high
"""


def _rules(folder, n: int, broken: int = 0, needle: str = "x", first: int = 0):
    folder.mkdir(parents=True)
    for i in range(first, first + n):
        (folder / f"r{i}.yml").write_text(RULE.format(
            title=f"rule {i}", id=f"00000000-0000-0000-0000-{i:012d}", needle=needle))
    for i in range(broken):
        (folder / f"broken{i}.yml").write_text("title: broken\ndetection: [\n")
    return folder


def test_rule_sets_name_each_folder_with_its_version_and_counts(tmp_path):
    plain = _rules(tmp_path / "mine", 2, broken=1)
    # a git checkout (SigmaHQ cloned): its commit, read from .git without git
    repo = tmp_path / "sigma"
    _rules(repo / "rules" / "web", 3, first=10)
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/master\n")
    (repo / ".git" / "refs" / "heads" / "master").write_text("9f2c1e0d4b3a29181716151413121110\n")
    rs = load_rules([plain, repo / "rules"])
    builtin, mine, sigma = rule_sets([plain, repo / "rules"], rs)
    assert builtin["name"] == "threatscope built-in"
    assert builtin["version"] == metadata.version("threatscope") and builtin["rules"] > 0
    assert (mine["name"], mine["files"], mine["rules"], mine["failed"]) == (str(plain), 3, 2, 1)
    assert mine["version"].startswith("sha256:") and len(mine["version"]) == 19
    assert (sigma["version"], sigma["files"], sigma["rules"]) == ("9f2c1e0d4b3a", 3, 3)
    assert builtin["rules"] + mine["rules"] + sigma["rules"] == len(rs.rules)


def test_a_folder_s_version_changes_with_its_rules_not_its_place(tmp_path):
    a, b = _rules(tmp_path / "a", 2), _rules(tmp_path / "b", 2)
    version = {str(f): rule_sets([f], load_rules([f], builtin=False), builtin=False)[0]["version"]
               for f in (a, b)}
    assert version[str(a)] == version[str(b)]  # same files, same content: same version
    (b / "r1.yml").write_text(RULE.format(title="rule 1", id="00000000-0000-0000-0000-000000000001",
                                          needle="y"))
    changed = rule_sets([b], load_rules([b], builtin=False), builtin=False)[0]["version"]
    assert changed != version[str(a)]
