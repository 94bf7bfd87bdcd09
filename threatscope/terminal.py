"""Text from logs and samples as a terminal may show it.

    click.echo(safe_text(user_agent))   # ESC, C1 and bidi overrides escaped, not interpreted
"""

from __future__ import annotations

import unicodedata


def safe_text(s: str) -> str:
    """Control and format characters (ESC, C1, bidi overrides) escaped as ``\\xNN``/``\\uNNNN``
    (newline and tab kept): a logged string must not drive the analyst's terminal."""
    out = []
    for ch in s:
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs"):
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out)
