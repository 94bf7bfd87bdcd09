"""Display helpers shared by the HTML and Markdown renderers: make hostile text visible, format numbers.

    >>> clean("a\\u202eb\\x1bc")
    'a\\\\u202eb\\\\x1bc'
    >>> fmt_int(1234567), fmt_fold(782.0), fmt_pct(78100.0), fmt_pct(-12.5), fmt_share(0.4567)
    ('1,234,567', '782×', '+78,100%', '-12.5%', '45.7%')

Every string that reaches a report came from a log or a rule file and is treated as hostile:
``clean`` shows control and bidirectional-override characters as ``\\uXXXX`` so they can neither
reorder nor hide text, and cuts very long values. Escaping for HTML or Markdown happens after this,
in the renderer for that context.
"""

from __future__ import annotations

import math
import re

MAX_TEXT = 240  # characters of one value shown in a report; the full value is in report.json

# C0/C1 controls, DEL, bidi embeddings/overrides/isolates and marks, zero-width characters,
# line/paragraph separators, BOM: all invisible or able to reorder surrounding text.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)


INVISIBLE = _INVISIBLE  # figure ids in attributes encode these too (rendered.py)


def _visible(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def clean(value: object, limit: int = MAX_TEXT) -> str:
    """Text for display: invisible/reordering characters made visible, cut to ``limit`` chars."""
    s = "" if value is None else str(value)
    # surrogates (from lone \udcxx escapes) cannot be encoded as UTF-8: show them too
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    s = _INVISIBLE.sub(_visible, s)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def _num(v: object) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return None if isinstance(v, float) and not math.isfinite(v) else float(v)
    return None


def fmt_int(v: object) -> str:
    """``1234567`` -> ``1,234,567``; missing -> ``—``."""
    n = _num(v)
    if n is None:
        return "—"
    return f"{round(n):,}"


def fmt_num(v: object, digits: int = 1) -> str:
    """A count or a rate: integers with separators, other numbers with ``digits`` decimals."""
    n = _num(v)
    if n is None:
        return "—"
    if n == int(n) and abs(n) >= 100:
        return f"{int(n):,}"
    return f"{n:,.{digits}f}" if n != int(n) else f"{int(n):,}"


def fmt_fold(v: object) -> str:
    """Fold change as ``782×`` (>= 10), ``2.4×`` (< 10), ``0.50×`` (< 1); missing -> ``—``."""
    n = _num(v)
    if n is None:
        return "—"
    if n >= 10:
        return f"{n:,.0f}×"
    if n >= 1:
        return f"{n:.1f}×"
    return f"{n:.2f}×"


def fmt_pct(v: object) -> str:
    """Percent change with its sign: ``+78,100%``, ``+4.5%``, ``-12.5%``, ``0%``."""
    n = _num(v)
    if n is None:
        return "—"
    if n == 0:
        return "0%"
    sign = "+" if n > 0 else "-"
    a = abs(n)
    if a >= 100:
        return f"{sign}{a:,.0f}%"
    return f"{sign}{a:.1f}%" if a >= 1 else f"{sign}{a:.2f}%"


def fmt_share(v: object) -> str:
    """A fraction 0..1 as a percentage: ``0.4567`` -> ``45.7%``."""
    n = _num(v)
    if n is None:
        return "—"
    return f"{100 * n:.1f}%"


def fmt_pp(v: object) -> str:
    """A change of shares in percentage points: ``+7.1 pp``, ``-21.4 pp``, ``0 pp``."""
    n = _num(v)
    if n is None:
        return "—"
    return "0 pp" if n == 0 else f"{n:+.1f} pp"


FLAG_TEXT = {
    "new": "NEW (no baseline)",
    "gone": "GONE",
    "tiny-baseline": "tiny baseline",
    "surging": "SURGING",
}


def fmt_flag(flag: object) -> str:
    """The change flag as words (unknown flags are shown cleaned, never dropped)."""
    if not flag:
        return ""
    return FLAG_TEXT.get(str(flag), clean(flag, 40))


def fmt_span(s: dict, esc=str) -> str:
    """``2018Q2: 2018-04-01 – 2018-06-30, 91 days`` for a period dict; ``esc`` escapes the
    strings for the target format (the HTML template autoescapes, so ``str`` there)."""
    if not s.get("start"):
        return esc(s.get("label") or "—")
    days = f", {fmt_int(s['days'])} days" if s.get("days") is not None else ""
    label = f"{esc(s['label'])}: " if s.get("label") else ""
    return f"{label}{esc(s['start'])} – {esc(s.get('end') or '?')}{days}"
