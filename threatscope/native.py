"""The optional C extension (``_native.c``): line splitting and column helpers for ingest, range
look-ups for enrich. Every caller has a pure Arrow/DuckDB path giving the same results.

    if (c := native()) is not None:
        c.split_lines(block)
"""

from __future__ import annotations

import os

try:
    from threatscope import _native
except ImportError:  # built without a C compiler
    _native = None


def native():
    """The C extension module, or None when it is not built or ``THREATSCOPE_NATIVE=0`` (which
    makes every stage take its pure Arrow/DuckDB paths, as on a machine without a C compiler)."""
    return _native if os.environ.get("THREATSCOPE_NATIVE") != "0" else None


__all__ = ["native"]
