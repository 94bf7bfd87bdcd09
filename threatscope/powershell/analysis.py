"""One PowerShell text, analysed: deobfuscated, then classified with what the deobfuscator
undid, as the detect stage's PowerShell analyzer records it (schema.POWERSHELL_ANALYSIS).

    >>> r = analyse("powershell -enc SQBFAFgA")
    >>> r["obfuscated"], r["techniques"], r["final"]
    (True, ['encodedcommand'], 'IEX')
"""

from __future__ import annotations

from typing import Any

from threatscope.powershell.classify import classify
from threatscope.powershell.deobfuscate import deobfuscate

# layers only obfuscation makes: a text the deobfuscator had to undo one of these from is
# obfuscated whatever the classifier's score (an encoded command is short and may look plain).
# Not "securestring": credentials handled as SecureStrings are everyday administration (117
# benign scripts of the evaluation); the model weighs it with the rest.
DECISIVE = frozenset({"encodedcommand", "base64", "deflate", "gzip", "bxor", "char-codes",
                      "reverse", "iex-alias", "clipboard", "carets"})


def analyse(text: str, *, budget_ms: float = 50) -> dict[str, Any]:
    """``obfuscated`` (the classifier says so, or a DECISIVE layer was undone), ``score``
    (the classifier's probability), ``techniques`` (what was undone, sorted),
    ``layers`` (how many), ``final`` (the recovered text), ``iocs`` (URLs, domains, IPs and
    paths in one list), ``truncated`` and ``reason`` (a bound that cut it short, or a
    SecureString payload that cannot be recovered). Never runs anything; never raises on text.
    ``budget_ms``: the deobfuscator's time budget."""
    r = deobfuscate(text, budget_ms=budget_ms)
    c = classify(text, r.techniques)
    reason = r.reason or ("SecureString payload: not recoverable" if r.secure_string else None)
    decisive = bool(DECISIVE & set(r.techniques))
    return {
        "obfuscated": bool(c["obfuscated"]) or decisive, "score": float(c["score"]),
        "techniques": sorted(r.techniques), "layers": len(r.layers), "final": r.final,
        "iocs": [x for kind in ("urls", "domains", "ips", "paths") for x in r.iocs.get(kind, [])],
        "truncated": bool(r.truncated), "reason": reason,
    }
