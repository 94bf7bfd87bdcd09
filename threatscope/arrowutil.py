"""Arrow helpers shared by the stages (kept out of the stage packages so importing one is cheap).

    constant("acme", 3)   # DictionaryArray ["acme", "acme", "acme"], one dictionary entry
    indexed(pa.array([1, 0, 1], pa.int32()), pa.array(["a", "b"]))   # ["b", "a", "b"]
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def constant(value: str, n: int) -> pa.DictionaryArray:
    """``n`` times the same string, dictionary-encoded (no per-row copy)."""
    return pa.DictionaryArray.from_arrays(_zeros(n),
                                          pa.array([value], pa.string()))


def _zeros(n: int) -> pa.Array:
    """``n`` int32 zeros (a zeroed buffer: much faster than pa.repeat)."""
    return pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(bytes(4 * n))])


def indexed(indices: pa.Array, values: pa.Array) -> pa.DictionaryArray:
    """``values[indices]`` as a dictionary array over ``values``, without copying them per row
    (NULL values become NULL indices; text as string, numbers such as IP numbers as they are)."""
    if values.null_count:
        indices = pc.if_else(pc.take(pc.is_null(values), indices), None, indices)
        values = pc.fill_null(values, pa.scalar(0 if pa.types.is_decimal(values.type) else "",
                                                values.type))
    if not pa.types.is_decimal(values.type):
        values = values.cast(pa.string())
    return pa.DictionaryArray.from_arrays(indices, values)
