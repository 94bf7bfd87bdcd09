"""A folder of compiled rule sets, so that a run does not parse and compile every rule again.

    key = cache_key(files)                   # rule file paths and contents + compiler version
    doc = read(folder, key)                  # None when absent or unreadable
    write(folder, key, doc)                  # JSON, replaced atomically; old entries pruned

The key covers the content of every rule file, the code that compiles them (detect's compiler,
mapping and loader, the schema) and the versions of pySigma and DuckDB, so a stale entry is
never used. Entries are JSON (never pickle: the folder may be shared), validated on read by
the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

import duckdb

import threatscope
from threatscope import schema

_FORMAT = 1
KEEP = 32  # entries kept per folder (the newest); the folder is shared by all workspaces
_CODE = [Path(__file__).parent / n
         for n in ("compiler.py", "mapping.py", "ruleset.py", "sigmaload.py", "sqltext.py")]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def cache_key(files: list[Path], settings: dict | None = None) -> str:
    """Hex digest naming the compiled form of ``files`` (in this order) with this code and
    these compile ``settings`` (e.g. placeholder values)."""
    h = hashlib.sha256()
    for part in (str(_FORMAT), threatscope.__version__, _version("pysigma"), duckdb.__version__,
                 json.dumps(settings or {}, sort_keys=True)):
        h.update(part.encode() + b"\0")
    for p in [*_CODE, Path(schema.__file__)]:
        h.update(p.read_bytes() + b"\0")
    for p in files:
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\0")
        try:
            h.update(p.read_bytes())
        except OSError as e:  # the loader reports it; the key just has to differ
            h.update(f"<unreadable: {e}>".encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(folder: Path, key: str) -> Path:
    return folder / f"rules-{key[:40]}.json"


def read(folder: Path | str, key: str) -> dict | None:
    """The document stored under ``key``, or None."""
    try:
        doc = json.loads(_path(Path(folder), key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


def write(folder: Path | str, key: str, doc: dict) -> None:
    """Store ``doc`` under ``key``; a folder that cannot be written only costs speed."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rules-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({**doc, "key": key}, f)
        os.replace(tmp, _path(folder, key))
        entries = sorted(folder.glob("rules-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        return
