"""A PowerShell tokenizer that survives obfuscated and hostile input.

One compiled master regex, scanned left to right: every character of the input belongs to exactly
one token, so the scan is linear, never raises (an unclosed string or comment runs to the end of the
input, a character no rule knows becomes an ``unknown`` token) and needs no PowerShell. When the C
extension is built, ``threatscope._native.ps_tokens`` gives the same tokens 15-30x faster.

>>> [(t.kind, t.text) for t in tokenize("i`ex ('a'+\\"b\\") -f $x")]  # doctest: +NORMALIZE_WHITESPACE
[('word', 'i`ex'), ('lparen', '('), ('string', "'a'"), ('operator', '+'), ('string', '"b"'),
 ('rparen', ')'), ('operator', '-f'), ('variable', '$x')]
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from threatscope.native import native

__all__ = ["Token", "tokenize", "string_value", "word_value", "variable_name"]


class Token(NamedTuple):
    """One token: its kind, its exact source text and where it starts in the input."""

    kind: str
    text: str
    start: int


# PowerShell accepts the en dash, em dash and horizontal bar wherever it accepts '-'.
_D = "\\-\u2013\u2014\u2015"
_Q1 = "'\u2018\u2019\u201a\u201b"  # single quotes, curly ones included (PowerShell treats them alike)
_Q2 = '"\u201c\u201d\u201e'
_OPS = (
    "f|bxor|band|bor|bnot|shl|shr|join|split|csplit|isplit|replace|creplace|ireplace|"
    "c?eq|c?ne|c?gt|c?lt|c?ge|c?le|i?eq|i?ne|c?like|c?notlike|c?match|c?notmatch|c?contains|"
    "c?notcontains|c?in|c?notin|isnot|is|as|and|or|xor|not"
)
_WORDCH = r"[^\s(){}\[\];,|&'\"`$@#<>=+*/%!\u2018\u2019\u201a\u201b\u201c\u201d\u201e]"
_RULES = [
    ("ws", r"[ \t\f\v\u00a0\ufeff]+"),
    ("newline", r"\r?\n|\r"),
    # the common case first (a word that starts with a letter), only for speed: the general rule is below
    ("word", rf"[A-Za-z_](?:{_WORDCH}+|`[\s\S])*"),
    ("continuation", r"`\r?\n"),
    ("comment", r"<#(?:[^#]+|#(?!>))*(?:#>)?|#[^\r\n]*"),
    ("herestring", rf"@[{_Q1}][ \t]*\r?\n(?:[^\n]+|\n(?![{_Q1}]@))*(?:\n[{_Q1}]@)?|@[{_Q2}][ \t]*\r?\n(?:[^\n]+|\n(?![{_Q2}]@))*(?:\n[{_Q2}]@)?"),
    ("string", rf"[{_Q1}](?:[^{_Q1}]+|[{_Q1}][{_Q1}])*[{_Q1}]?|[{_Q2}](?:[^{_Q2}`]+|`[\s\S]?|[{_Q2}][{_Q2}])*[{_Q2}]?"),
    ("subexpr", r"\$\("),
    ("variable", r"\$\{(?:[^}`]+|`[\s\S]?)*\}?|\$(?:[A-Za-z_][\w]*:(?!:))?(?:[\w?]|`[\s\S])+|\$[$?^_]"),
    ("arrayexpr", r"@\("),
    ("hashtable", r"@\{"),
    ("splat", r"@[A-Za-z_]\w*"),
    ("type", r"\[\s*[A-Za-z_`][\w.`+]*(?:\[[\w.,`\s\[\]]*\])?\s*\]"),
    ("number", r"(?i:0x[0-9a-f]+l?|(?:\d+(?:\.\d+)?|\.\d+)(?:e[+-]?\d+)?[ld]?(?:[kmgtp]b)?)(?![\w`])"),
    ("operator", rf"(?i:[{_D}](?:{_OPS})(?![\w`]))"),
    ("parameter", rf"[{_D}](?:[A-Za-z_?]|`[\s\S])(?:[\w?\-]|`[\s\S])*:?"),
    # a second rule for operators, so that a parameter wins over a lone '-'
    ("symop", rf"[{_D}][{_D}]|\+\+|[+*/%{_D}]?=|::|\.\.|&&|\|\||[!+*/%{_D}]|[<>]+|[0-9*]?>&?[0-9]?"),
    ("dot", r"\."),
    ("lparen", r"\("),
    ("rparen", r"\)"),
    ("lbrace", r"\{"),
    ("rbrace", r"\}"),
    ("lbracket", r"\["),
    ("rbracket", r"\]"),
    ("comma", r","),
    ("semicolon", r";"),
    ("pipe", r"\|"),
    ("amp", r"&"),
    ("word", rf"(?:{_WORDCH}|`[\s\S])(?:{_WORDCH}+|`[\s\S])*"),
    ("unknown", r"[\s\S]"),
]
_MASTER = re.compile("|".join(f"({rx})" for _, rx in _RULES))
_KINDS = [""] + ["operator" if name == "symop" else name for name, _ in _RULES]  # by group number
_SKIP = frozenset({"ws", "continuation"})
# Without spaces: whitespace, line continuations and blank lines are a prefix of the next match, so
# the Python loop (the cost of this tokenizer; the regex alone runs at ~6 MB/s) sees half the matches.
_SPACE = r"[ \t\f\v\u00a0\ufeff]*(?:`\r?\n[ \t\f\v\u00a0\ufeff]*)*"
_FAST_RULES = [("newline", r"[\r\n][ \t\f\v\u00a0\ufeff\r\n]*")] + [
    r if r[0] != "unknown" else ("unknown", r"[^ \t\f\v\u00a0\ufeff]")
    for r in _RULES if r[0] not in ("ws", "newline", "continuation")
]
_FAST = re.compile(_SPACE + "(?:" + "|".join(f"({rx})" for _, rx in _FAST_RULES) + ")")
_FAST_KINDS = [""] + ["operator" if name == "symop" else name for name, _ in _FAST_RULES]


def tokenize(text: str, *, keep_space: bool = False, deadline: float | None = None) -> list[Token]:
    """Split *text* into tokens; whitespace and line continuations are dropped unless *keep_space*.

    Never raises: non-text input is replaced, never rejected. ``"".join(t.text for t in
    tokenize(s, keep_space=True)) == s`` for every string ``s``. With *deadline* (a
    ``time.perf_counter()`` value) the scan stops there and returns the tokens so far.

    >>> [t.kind for t in tokenize("$env:x = @{a=1}; [char]0x41")]  # doctest: +NORMALIZE_WHITESPACE
    ['variable', 'operator', 'hashtable', 'word', 'operator', 'number', 'rbrace', 'semicolon',
     'type', 'number']
    """
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", "replace") if isinstance(text, bytes | bytearray) else str(text)
    if not keep_space:
        return _tokens(text, deadline, False)
    out: list[Token] = []
    append = out.append
    for n, m in enumerate(_MASTER.finditer(text)):
        if deadline is not None and not n & 4095 and n and time.perf_counter() > deadline:
            break
        kind = _KINDS[m.lastindex or 0] or "unknown"
        if keep_space or kind not in _SKIP:
            append(Token(kind, m.group(), m.start()))
    return out


# the C scanner's kind order (threatscope/_native.c, ps_tokens); it gives the same tokens as _FAST
_NATIVE_KINDS = ("newline", "word", "comment", "herestring", "string", "subexpr", "variable",
                 "arrayexpr", "hashtable", "splat", "type", "number", "operator", "parameter", "dot",
                 "lparen", "rparen", "lbrace", "rbrace", "lbracket", "rbracket", "comma",
                 "semicolon", "pipe", "amp", "unknown")


def _tokens(text: str, deadline: float | None, skip_comments: bool,
            clock: Callable[[], float] = time.perf_counter) -> list[Token]:
    """Tokens without spaces (and without comments when *skip_comments*): the C scanner when
    the extension is built, else the regex. Both read *clock* every 1024 tokens."""
    c = native()
    if c is not None:
        return c.ps_tokens(text, Token, _NATIVE_KINDS, skip_comments, deadline, clock)
    toks = _tokens_fast(text, deadline, clock)
    return [t for t in toks if t.kind != "comment"] if skip_comments else toks


def code_tokens(text: str, deadline: float | None = None,
                clock: Callable[[], float] = time.perf_counter) -> list[Token]:
    """tokenize(text) without its comments (what the deobfuscator reads); past *deadline* on
    *clock* (read every 1024 tokens) the tokens so far."""
    return _tokens(text, deadline, True, clock)


# (kind, text, start): a Token, or the plain tuple code_tuples makes
Tok = tuple[str, str, int]


def code_tuples(text: str, deadline: float | None = None,
                clock: Callable[[], float] = time.perf_counter) -> list[Tok]:
    """code_tokens(text) as plain tuples when the C scanner makes them: what the deobfuscator
    reads by index, cheaper to make and to free than Tokens (a tuple subclass; about a fifth of
    the analysis was making and freeing them)."""
    c = native()
    if c is not None:
        return c.ps_tokens(text, tuple, _NATIVE_KINDS, True, deadline, clock)
    return code_tokens(text, deadline, clock)


def _tokens_fast(text: str, deadline: float | None,
                 clock: Callable[[], float] = time.perf_counter) -> list[Token]:
    kinds = _FAST_KINDS
    new = tuple.__new__
    it = _FAST.finditer(text)
    out: list[Token] = []
    while True:
        batch = [
            new(Token, (kinds[g], m.group(g), m.start(g)))
            for m in itertools.islice(it, 1024)
            for g in (m.lastindex or 0,)
        ]
        out.extend(batch)
        if len(batch) < 1024 or (deadline is not None and clock() > deadline):
            return out


_DQ_ESC = {"0": "\0", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_BT = re.compile(r"`(.)", re.S)


def _unbacktick(s: str, escapes: dict[str, str] | None = None) -> str:
    """``_BT.sub(lambda m: table.get(m.group(1), m.group(1)), s)``, with str methods (a Python
    call per escape made a string of a million backticks take seconds)."""
    if "`" not in s:
        return s
    return unescape(s, "`", escapes or {}, True)


def _unused(s: str, n: int) -> list[str]:
    """*n* characters that do not occur in *s* (placeholders)."""
    out: list[str] = []
    cp = 0xE000  # the private use area first
    while len(out) < n:
        if chr(cp) not in s:
            out.append(chr(cp))
        cp += 1
    return out


def unescape(s: str, esc: str, table: dict[str, str], dotall: bool) -> str:
    """``re.sub(re.escape(esc) + "(.)", repl, s)`` (with re.S when *dotall*) where repl gives
    ``table.get(c, c)`` for the escaped character c, by str.replace: escapes pair left to right,
    so a doubled *esc* is one literal *esc*; a lone one escapes the next character, or stays when
    nothing follows it (or a newline does, without *dotall*)."""
    pair, keep = _unused(s, 2)
    t = s.replace(esc + esc, pair)
    if not dotall:
        t = t.replace(esc + "\n", keep)
    for c, v in table.items():
        t = t.replace(esc + c, v)
    tail = t.endswith(esc)
    t = t.replace(esc, "")
    if tail:
        t += esc
    t = t.replace(pair, table.get(esc, esc))
    return t.replace(keep, esc + "\n") if not dotall else t


def string_value(tok: Tok) -> str:
    """The value of a ``string`` or ``herestring`` token (quotes removed, escapes applied).

    Variables inside double quotes are left as written (the caller decides whether it knows them).

    >>> string_value(tokenize("'it''s'")[0]), string_value(tokenize('"a`tb"')[0])
    ("it's", 'a\\tb')
    """
    s = tok[1]
    if tok[0] == "herestring":
        body = s[2:]
        nl = body.find("\n")
        body = body[nl + 1:] if nl >= 0 else ""
        if len(body) >= 2 and body[-2] in _Q1 + _Q2 and body[-1] == "@":
            body = body[:-2]
        if body.endswith("\n"):
            body = body[:-2] if body.endswith("\r\n") else body[:-1]
        return body if s[1] in _Q1 else _unbacktick(body, _DQ_ESC)
    if not s:
        return ""
    q = s[0]
    inner = s[1:-1] if len(s) >= 2 and s[-1] in (_Q1 if q in _Q1 else _Q2) else s[1:]
    # doubled quotes: str.replace when they are all ASCII (the same pairs, without a Python call
    # per pair)
    if q in _Q1:
        if "\u2018" in inner or "\u2019" in inner or "\u201a" in inner or "\u201b" in inner:
            return re.sub(f"[{_Q1}][{_Q1}]", lambda m: m.group()[0], inner)
        return inner.replace("''", "'")
    if "\u201c" in inner or "\u201d" in inner or "\u201e" in inner:
        inner = re.sub(f"[{_Q2}][{_Q2}]", lambda m: m.group()[0], inner)
    else:
        inner = inner.replace('""', '"')
    return _unbacktick(inner, _DQ_ESC)


def word_value(tok: Tok) -> str:
    """A bare word (command, member or type name) with its backticks removed: ``I`E`X`` -> ``IEX``."""
    return _unbacktick(tok[1])


def variable_name(tok: Tok) -> str:
    """The lower-cased name of a ``variable`` token: ``${E`Nv:X}`` and ``$env:x`` -> ``env:x``."""
    s = tok[1][1:]
    if s.startswith("{"):
        s = s[1:-1] if s.endswith("}") else s[1:]
    return _unbacktick(s).lower()
