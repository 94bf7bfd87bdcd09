"""ATT&CK names from the data package: current and old tags, revoked ids, tactics, the cache."""

from __future__ import annotations

import json

import pytest

from threatscope import attack


@pytest.mark.parametrize("tag", ["attack.t1059.001", "T1059.001", " t1059.001 ", "ATTACK.T1059.001"])
def test_current_sub_technique_with_its_parent(tag):
    assert attack.technique(tag) == {"id": "T1059.001", "name": "PowerShell",
                                     "parent": "Command and Scripting Interpreter",
                                     "tactics": ["execution"]}


def test_techniques_without_parent_and_other_tactics():
    wmi = attack.technique("attack.t1047")
    assert (wmi["name"], wmi["parent"], wmi["tactics"]) == (
        "Windows Management Instrumentation", None, ["execution"])
    assert attack.technique("T1204.002")["parent"] == "User Execution"
    assert attack.technique("T1190")["tactics"] == ["initial-access"]
    assert attack.label("attack.t1059.005") == "T1059.005 Visual Basic"


@pytest.mark.parametrize("old, new, name", [
    ("attack.t1086", "T1059.001", "PowerShell"),  # PowerShell became a sub-technique of T1059
    ("T1085", "T1218.011", "Rundll32"),
    ("t1155", "T1059.002", "AppleScript"),
    ("T1150", "T1647", "Plist File Modification"),  # revoked by T1547.011, itself revoked since
])
def test_revoked_ids_map_to_what_replaced_them(old, new, name):
    t = attack.technique(old)
    assert (t["id"], t["name"]) == (new, name)
    assert attack.label(old) == f"{new} {name}"


def test_deprecated_technique_keeps_its_own_name_and_tactics():
    # T1064 Scripting was deprecated without a replacement: it stays what the data says
    t = attack.technique("attack.t1064")
    assert (t["id"], t["name"]) == ("T1064", "Scripting")
    assert "execution" in t["tactics"]


@pytest.mark.parametrize("tag", ["T9999", "attack.t1059.999", "T0001.001"])
def test_unknown_ids_are_kept_as_they_are(tag):
    t = attack.technique(tag)
    assert t == {"id": tag.upper().removeprefix("ATTACK."), "name": None, "parent": None,
                 "tactics": []}
    assert attack.label(tag) == t["id"]


@pytest.mark.parametrize("given, name", [
    ("execution", "Execution"), ("attack.execution", "Execution"),
    ("attack.defense_evasion", "Defense Evasion"), ("defense-evasion", "Defense Evasion"),
    ("attack.command-and-control", "Command and Control"), ("TA0002", "Execution"),
    ("attack.ta0040", "Impact"), ("attack.s0002", None), ("attack.g0007", None),
    ("no-such-tactic", None),
])
def test_tactic_names(given, name):
    assert attack.tactic(given) == name


def test_technique_table_marks_execution_after_mapping_revoked_ids():
    table = attack.technique_table().to_pylist()
    rows = {r["tag"]: r for r in table}
    assert len(rows) == len(table)  # one row per id: joins do not repeat detections
    assert rows["T1086"] == {"tag": "T1086", "technique": "T1059.001", "name": "PowerShell",
                             "parent": "Command and Scripting Interpreter",
                             "tactics": ["execution"], "execution": True}
    assert rows["T1085"]["execution"] is False  # Rundll32 is defense evasion now
    assert rows["T1047"]["execution"] and rows["T1204.002"]["execution"]
    assert not rows["T1190"]["execution"]
    assert attack.source()["package"] == attack.PACKAGE and attack.source()["attack_version"]


def test_index_is_cached_and_rebuilt_when_the_package_changes(tmp_path):
    path = tmp_path / "index.json"
    built = attack.load_index(tmp_path)
    assert json.loads(path.read_text()) == built
    assert built["revoked"]["T1086"] == "T1059.001"

    # a cache written for the same package version and files is used as it is
    forged = json.loads(path.read_text())
    forged["techniques"]["T1059.001"]["name"] = "from the cache"
    path.write_text(json.dumps(forged))
    assert attack.load_index(tmp_path)["techniques"]["T1059.001"]["name"] == "from the cache"

    # one written for another package version is rebuilt from the data, and replaced
    forged["key"] = forged["key"].replace(f"{attack.PACKAGE}=", f"{attack.PACKAGE}=0.0.0-old")
    path.write_text(json.dumps(forged))
    assert attack.load_index(tmp_path)["techniques"]["T1059.001"]["name"] == "PowerShell"
    assert json.loads(path.read_text())["key"] == attack.cache_key()

    path.write_text("{not json")  # a damaged cache is rebuilt too
    assert attack.load_index(tmp_path) == built
