"""The PowerShell analysis (tokenizer, static deobfuscator, classifier) on hostile text: it
never raises, never reports an internal error, and stops within its time budget.

The text is built from the pieces obfuscated PowerShell is made of (so the deobfuscator's
folding paths are exercised, not just its rejection of noise), random Unicode, and encoded
layers (base64 UTF-16 / deflate) of such text."""

from __future__ import annotations

import base64
import time
import zlib

from hypothesis import example, given
from hypothesis import strategies as st

from threatscope.powershell import deobfuscate, tokenize
from threatscope.powershell.analysis import analyse

PIECES = ["iex", "(", ")", "'", '"', "+", "-f", "-join", "[char]", "$x", "=", ";", "|", "&",
          ".", ",", "..", "-1", "0x41", "[", "]", "{", "}", "%", "-bxor", "::", "`", "-split",
          "-replace", "@(", "$(", " ", "\n", "'a'", '"b$x"', "[char[]]", "[Convert]",
          "FromBase64String", "'{0}{1}'", "[string]", "Join", "Replace", "'QUJD'", "New-Object",
          "IO.MemoryStream", "[Text.Encoding]", "UTF8", "GetString", "$ShellId", "[array]",
          "Reverse", "*", "99999999", "[regex]", "Matches", "'RightToLeft'", "Length",
          "powershell -enc ", "-EncodedCommand", "^", "$env:comspec", "[int]", "-as", "@'\n",
          "\n'@", "<#", "#>", "#", "$null", "-bnot", "[Text.Encoding]::Unicode", "DeflateStream",
          "'x'*99999999", "1..99999999", "%{", "[scriptblock]::Create(", "Invoke-Expression"]

# the deobfuscator's budget is 50 ms; a busy shared machine (and the classifier after it)
# gets room, while a runaway (exponential backtracking, an unbounded loop) takes far longer
LIMIT_S = 2.0

scripts = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=80).map("".join),
    st.text(max_size=400),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=60).map("".join),
)


def _encoded(text: str) -> str:
    return "powershell -enc " + base64.b64encode(text.encode("utf-16-le")).decode()


def _deflated(text: str) -> str:
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = base64.b64encode(raw.compress(text.encode()) + raw.flush()).decode()
    return ("iex (New-Object IO.StreamReader((New-Object IO.Compression.DeflateStream("
            f"[IO.MemoryStream][Convert]::FromBase64String('{data}'),"
            "[IO.Compression.CompressionMode]::Decompress)))).ReadToEnd()")


@given(scripts, st.sampled_from(["plain", "encoded", "deflated", "nested"]))
@example("iex " + "(" * 5000 + "'x'" + ")" * 5000, "plain")
@example("'a'*99999999*99999999", "plain")
@example("$x='" + "`" * 100_000 + "'", "encoded")
def test_the_analysis_never_fails_and_stays_in_budget(text: str, wrap: str):
    if wrap == "encoded":
        text = _encoded(text)
    elif wrap == "deflated":
        text = _deflated(text)
    elif wrap == "nested":
        text = _encoded(_deflated(_encoded(text)))
    t = time.perf_counter()
    r = deobfuscate(text)
    a = analyse(text)
    tokens = tokenize(text)
    took = time.perf_counter() - t
    assert took < LIMIT_S, f"{took:.2f} s"
    assert isinstance(r.final, str) and isinstance(a["final"], str)
    assert not (r.reason or "").startswith("internal"), r.reason
    assert 0.0 <= a["score"] <= 1.0
    # each token is the text at its place, in order, none overlapping
    assert all(text[t.start:t.start + len(t.text)] == t.text for t in tokens)
    assert all(a.start + len(a.text) <= b.start for a, b in zip(tokens, tokens[1:], strict=False))
