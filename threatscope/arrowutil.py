"""Arrow helpers shared by the stages (kept out of the stage packages so importing one is cheap).

    constant("acme", 3)   # DictionaryArray ["acme", "acme", "acme"], one dictionary entry
"""

from __future__ import annotations

import pyarrow as pa


def constant(value: str, n: int) -> pa.DictionaryArray:
    """``n`` times the same string, dictionary-encoded (no per-row copy)."""
    return pa.DictionaryArray.from_arrays(_zeros(n),
                                          pa.array([value], pa.string()))


def _zeros(n: int) -> pa.Array:
    """``n`` int32 zeros (a zeroed buffer: much faster than pa.repeat)."""
    return pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(bytes(4 * n))])
