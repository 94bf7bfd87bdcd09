"""arrowfn.split_fields: the pyarrow.csv split used by the access and W3C fast paths."""

from __future__ import annotations

import pytest

from threatscope.ingest.arrowfn import split_fields


@pytest.mark.parametrize("given", [False, True])
def test_split_fields_flags_rows_of_another_field_count(given):
    block = b'a "b c" d\nx y\ne "f" g'
    out = split_fields(block, 3, quote='"', lines=3 if given else None)
    assert out is not None
    table, valid = out
    assert table.column("f1").to_pylist() == ["b c", "f"]
    assert valid.to_pylist() == [True, False, True]


@pytest.mark.parametrize("given", [False, True])
def test_split_fields_refuses_a_quote_running_past_its_line(given):
    block = b'a "b c d\ne f g'
    assert split_fields(block, 3, quote='"', lines=2 if given else None) is None
