"""Files written whole or not at all.

    write_atomic("out/report.json", text)   # readers see the old file or the new, never half
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from threatscope.errors import UserError


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and
    os.replace, so that a reader never sees half a file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such folder")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
