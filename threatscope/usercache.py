"""The per-user cache folder shared by every workspace (converted range tables, compiled rules).

    folder = user_cache_dir("rules")

``$THREATSCOPE_CACHE``, else ``$XDG_CACHE_HOME/threatscope``, else ``~/.cache/threatscope``; where
that cannot be written (read-only home in CI sandboxes), a per-user temp folder. Everything in it
can be deleted at any time: it only saves work.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def user_cache_dir(sub: str = "") -> Path:
    """The cache folder (or its subfolder ``sub``), created on demand."""
    if env := os.environ.get("THREATSCOPE_CACHE"):
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "threatscope"
    try:
        (root / sub).mkdir(parents=True, exist_ok=True)
        probe = root / sub / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError:
        root = Path(tempfile.gettempdir()) / f"threatscope-cache-{os.getuid()}"
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root / sub
