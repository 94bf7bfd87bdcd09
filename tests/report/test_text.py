"""Number formatting and the display cleaning of hostile strings."""

from __future__ import annotations

import pytest

from threatscope.report.text import clean, fmt_flag, fmt_fold, fmt_int, fmt_num, fmt_pct, fmt_share


@pytest.mark.parametrize(("fn", "value", "shown"), [
    (fmt_int, 1234567, "1,234,567"), (fmt_int, 0, "0"), (fmt_int, None, "—"),
    (fmt_int, True, "—"), (fmt_int, float("nan"), "—"), (fmt_int, "12", "—"),
    (fmt_fold, 782.0, "782×"), (fmt_fold, 1234.4, "1,234×"), (fmt_fold, 2.44, "2.4×"),
    (fmt_fold, 0.5, "0.50×"), (fmt_fold, None, "—"),
    (fmt_pct, 78100.0, "+78,100%"), (fmt_pct, -12.5, "-12.5%"), (fmt_pct, 0, "0%"),
    (fmt_pct, 0.04, "+0.04%"), (fmt_pct, -100.0, "-100%"), (fmt_pct, None, "—"),
    (fmt_share, 0.4567, "45.7%"), (fmt_share, 1, "100.0%"), (fmt_share, None, "—"),
    (fmt_num, 777.8, "777.8"), (fmt_num, 1750.0, "1,750"), (fmt_num, 2, "2"),
    (fmt_flag, "tiny-baseline", "tiny baseline"), (fmt_flag, None, ""),
    (fmt_flag, "new", "NEW (no baseline)"), (fmt_flag, "odd\u202eflag", "odd\\u202eflag"),
])
def test_formats(fn, value, shown):
    assert fn(value) == shown


def test_clean_makes_invisible_characters_visible_and_cuts():
    assert clean("a\u202eb\x1bc\x00\u2066\u200b") == "a\\u202eb\\x1bc\\x00\\u2066\\u200b"
    assert clean("line\nbreak\ttab") == "line\\x0abreak\\x09tab"
    assert clean("\udcff") == "\\udcff"  # a lone surrogate cannot reach the UTF-8 output
    assert clean(None) == "" and clean(12) == "12"
    long = clean("x" * 1000, 50)
    assert len(long) == 50 and long.endswith("…")
    assert clean("ordinary text, ÄÖÜ, 漢字 and emoji 🙂") == "ordinary text, ÄÖÜ, 漢字 and emoji 🙂"
