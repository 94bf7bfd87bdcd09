"""Errors a user can act on. The CLI prints them as one line and exits non-zero.

    try:
        ...
    except Exception as e:
        if (why := storage_error(e)) is not None:   # disk full, file size limit, quota...
            print(why)
"""

from __future__ import annotations

import errno

# what the disk said, as OSError numbers and as the text DuckDB and Arrow put in their messages
_STORAGE = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file size limit was reached",
            errno.EDQUOT: "the disk quota is exceeded", errno.EROFS: "the file system is read-only"}
_STORAGE_TEXT = {"No space left on device": errno.ENOSPC, "File too large": errno.EFBIG,
                 "Disk quota exceeded": errno.EDQUOT, "Read-only file system": errno.EROFS}


class UserError(Exception):
    """A mistake in how threatscope was called (missing file, unknown format, bad config)."""


def storage_error(e: BaseException) -> str | None:
    """A one-line explanation when ``e`` (or what caused it) is the disk refusing a write,
    else None. Every stage writes so that a failed run leaves the workspace as it was before
    it (or with whole files committed), which the message says."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        code = getattr(e, "errno", None) if isinstance(e, OSError) else None
        if code not in _STORAGE:
            text = str(e)
            code = next((c for t, c in _STORAGE_TEXT.items() if t in text), None)
        if code is not None:
            detail = " ".join(str(e).split())[:300]
            return (f"could not write: {_STORAGE[code]} ({detail}). What was committed before "
                    "is kept and nothing half-written is used: make room and run the same "
                    "command again")
        e = e.__cause__ or e.__context__
    return None
