"""Obfuscation features of a PowerShell script or command line, in linear time.

In the spirit of Revoke-Obfuscation (character and token distributions, entropy, string
statistics, operator counts; compressibility stands in for entropy), without a PowerShell
parser: a fixed number of passes over at most `MAX_CHARS` characters, each done by C code
(zlib, a few compiled regexes, and the counts: bytes.translate and .count, or with the C
extension built, two passes of its ps_scan for all of them).

Usage::

    from threatscope.powershell.features import extract, FEATURE_NAMES
    vec = extract("iex ('Write-Host'+' hi')")          # dict name -> float
    vec = extract(text, techniques={"concat", "enc"})  # + what the deobfuscator had to undo

Counts are normalised per 1,000 characters (or per word/string) so that script length does not
decide the class; lengths are log-scaled.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from functools import cache

from threatscope.native import native

# Longer inputs are judged by their first HEAD and last TAIL characters (bounded time and memory;
# the tail so that a payload appended to a long clean script is still seen). Bytes beyond
# MAX_CHARS * 4 are not even decoded.
HEAD = 24_000
TAIL = 8_000
MAX_CHARS = HEAD + TAIL

# Technique names the deobfuscator (threatscope.powershell.deobfuscate, `techniques`) reports;
# each becomes a 0/1 feature `tech_<name>` ("-" read as "_"). Unknown names are ignored, so the
# two sides can evolve separately. The shipped model is trained with them (train._features), as
# analysis.analyse passes them.
TECHNIQUES = (
    "encodedcommand", "launcher", "carets", "concat", "format", "char_codes", "join", "backticks",
    "case", "reverse", "replace", "split", "base64", "deflate", "gzip", "bxor", "iex", "iex_alias",
    "member_string", "securestring", "special_chars", "whitespace_encoding",
)

_LOWER_SUBSTR = {
    # operators and idioms that obfuscators lean on, counted on the lower-cased text
    "op_format": None,  # regex below
    "op_char": "[char]",
    "op_join": "-join",
    "op_bxor": "-bxor",
    "op_split": "split",
    "op_replace": "replace",
    "op_reverse": "reverse",
    "op_rtl": "righttoleft",
    "op_b64": "frombase64string",
    "op_stream": "compression.",
    "op_convert": "[convert]::",
    "op_iex": "iex",
    "op_invoke_expr": "invoke-expression",
    "op_securestring": "securestring",
    "op_tochararray": "tochararray",
    "op_getvariable": "variable",
}
_IEX_HINTS = ("$shellid[", "comspec[", "$pshome[", "*mdr*", "verbosepreference.tostring()",
              ".invoke(", "&(", ".(", "& (", ". (")

_RE_FORMAT = re.compile(r"-f\b", re.I)
_RE_SQ = re.compile(r"'[^'\n]{0,400}'")
_RE_LAUNCH = re.compile(
    r"(?:powershell|pwsh)(?:\.exe)?[\"']?\s(?:[^\n]{0,200}?)[-/](?:e|en|enc|enco|encod|encode"
    r"|encoded|encodedc\w*|ec)\s+[A-Za-z0-9+/]{16,}", re.I)
# cmd /c "set x=...&& powershell ... $env:x | iex", and "echo ... | powershell -" (stdin)
_RE_LAUNCH_ENV = re.compile(r"(?is)\bset\s+(\w+)=.{0,20000}?(?:powershell|pwsh).{0,300}?env:\1\b")
_RE_LAUNCH_STDIN = re.compile(r"(?i)\|\s*(?:\S*\\)?(?:powershell|pwsh)(?:\.exe)?\b[^|\n]{0,200}?\s-\s*\"?\s*$")
_RE_BRACEVAR = re.compile(r"\$\{[^}\n]{1,40}\}")
_RE_SPECIALVAR = re.compile(r"\$\{[^\w}\n]{1,3}\}")

# The most common verbs, as "verb-" substrings counted on the lower-cased text.
_VERB_DASH = tuple(v + "-" for v in """get set new remove add write out start stop invoke test
import export convertto convertfrom select where foreach format register enable disable update
install copy move join split clear wait read send resolve""".split())

_SPECIAL_B = b"`'\"+{}()[]$;,|&%@^~=*<>!"
_PUNCT_KEYS = {"`": "c_tick", "+": "c_plus", "'": "c_squote", '"': "c_dquote", "{": "c_brace",
               "(": "c_paren", "[": "c_bracket", "$": "c_dollar", "%": "c_percent",
               "^": "c_caret", ";": "c_semi", ",": "c_comma", "|": "c_pipe", "&": "c_amp",
               "\n": "c_newline", "#": "c_hash", "-": "c_dash", ".": "c_dot", "=": "c_equal",
               "\t": "c_tab"}

FEATURE_NAMES: tuple[str, ...] = (
    "log_len", "log_lines", "log_max_line", "compress_ratio", "sh_alpha", "sh_upper", "sh_digit",
    "sh_space", "sh_special", "sh_nonascii", "sh_hexdigit_of_alnum",
    *sorted(set(_PUNCT_KEYS.values())),
    *sorted(k for k in _LOWER_SUBSTR), "iex_hints",
    "tick_in_word", "case_switch_rate", "rand_case_words", "upper_words", "word_len_mean",
    "log_longest_word", "vowel_share", "digit_words",
    "str_per_k", "str_len_mean", "short_str_share", "log_longest_str",
    "log_longest_token", "b64_share", "log_b64_longest", "numlist_per_k",
    "cmdlet_per_k", "cmdlet_known_share", "launcher_enc", "launcher_env", "launcher_stdin",
    "launcher_cmd", "multi_space_per_k", "bracevar_per_k",
    "specialvar_per_k", "comment_share",
    *(f"tech_{t}" for t in TECHNIQUES),
)


_ZEROS = dict.fromkeys(FEATURE_NAMES, 0.0)  # copied: faster than building it each time


def _table(spec: dict[bytes, bytes], default: bytes = b" ") -> bytes:
    table = bytearray(default * 256)
    for chars, cls in spec.items():
        for c in chars:
            table[c] = cls[0]
    return bytes(table)


_UP = bytes(range(65, 91))
_LO = bytes(range(97, 123))
_DI = b"0123456789"
# Class strings made with bytes.translate, then read with bytes.count / split: both run in C
# without a regex engine trying a match at every position (5-10x faster than regexes). (The C
# extension's ps_scan counts the same in one pass, without making them: see _VIEWS.)
_T_CASE = _table({_UP: b"U", _LO: b"l", _DI: b"d"})
_T_ALPHA = _table({_UP + _LO: b"a", _DI: b"d", b"`": b"`", b",": b",", b"-": b"-"})
# the punctuation and whitespace we count, kept alone (delete the rest) so that bytes.count runs
# on a string a fifth as long
_KEEP = set("".join(_PUNCT_KEYS).encode() + b" \t\r\n")
_DEL_OTHERS = bytes(c for c in range(256) if c not in _KEEP)
_T_SPACE = _table({b" \t": b" ", b"\n": b"\n"}, b"x")
_ENTROPY_SAMPLE = 4096
_T_CLASS = _table({_SPECIAL_B: b"s", b"abcdefABCDEF": b"h"}, b".")


# the substrings counted on the lower-cased text; the last ones only to know whether they are
# there (what the launcher patterns need: a count in the same pass is cheaper than `in`)
_SUBS = tuple(sub for sub in _LOWER_SUBSTR.values() if sub is not None)
_GATES = ("powershell", "pwsh", "env:", "set", "-f")
_NEEDLES = (*_SUBS, *_IEX_HINTS, *"aeiou", *_VERB_DASH, *_GATES)
_AT_HINTS = len(_SUBS)
_AT_VOWELS = _AT_HINTS + len(_IEX_HINTS)
_AT_VERBS = _AT_VOWELS + 5
_AT_GATES = len(_NEEDLES) - len(_GATES)


_PS_WORD = ("powershell", "pwsh")
_SET_WORD = ("set",)


# every _RE_LAUNCH match has "-e" or "/e" (lower-cased) within its first 218 characters:
# a word of 10, ".exe", a quote, a space, 200 more, then the dash and the 'e'
_LAUNCH_NEAR = (("-e", "/e"), 218)


def _search_at(rx: re.Pattern[str], head: str, low: str, words: tuple[str, ...],
               near: tuple[tuple[str, ...], int] = ((), 0)) -> bool:
    """rx.search(head) is not None, for a pattern whose matches start with one of *words* in
    any case; in ASCII text (where low = text.lower() has the same positions and IGNORECASE is
    ASCII case) tried only where low has one, found by str.find (faster than re's literal scan),
    and, *near* given, one of its literals within its reach from there.
    (A search tries rx at every character: slow for these IGNORECASE patterns, which have no
    literal prefix to skip ahead by.)"""
    if not head.isascii():
        return rx.search(head) is not None
    n = len(head)
    lits, reach = near
    for w in words:
        i = low.find(w, 0, n)
        while i >= 0:
            if (not lits or any(low.find(x, i, min(i + reach, n)) >= 0 for x in lits)) and rx.match(head, i):
                return True
            i = low.find(w, i + 1, n)
    return False


def _flags(chars: bytes, inverse: bool = False) -> bytes:
    """A 256-byte table: 1 for the bytes in *chars* (or, *inverse*, for the others)."""
    return bytes((c in chars) != inverse for c in range(256))


_IS_WORD = _flags(_UP + _LO + _DI)
_IS_B64 = _flags(_UP + _LO + _DI + b"+/=")
_IS_TOKEN = _flags(b" \t\n\r\x0b\x0c", inverse=True)  # what bytes.split() keeps
_IS_LINE = _flags(b"\n", inverse=True)


def _from0(needles: Iterable[bytes]) -> tuple[tuple[bytes, int], ...]:
    return tuple((x, 0) for x in needles)


_CASE_NEEDLES = (b"U", b"l", b"d", b"lU", b"Ul", b"lUlU", b"UlUl", b" UUUU")
_PUNCT_NEEDLES = (*_PUNCT_KEYS, " ", "\r")
_ALPHA_NEEDLES = (b"ad", b"a`a", b"d,d", b"a-a")


# Everything extract() counts on the bytes. Views (table, delete, needles): each needle (x, start)
# counted as b.translate(table, delete).count(x, start); runs (flags, min_len): the runs of
# flagged bytes at least min_len long (and not empty), as (how many, summed length, longest).
_IDENTITY = bytes(range(256))
_VIEWS = (
    (_T_CASE, b"", _from0(_CASE_NEEDLES)),
    (_IDENTITY, _DEL_OTHERS, _from0(x.encode() for x in _PUNCT_NEEDLES)),
    (_T_CLASS, b"", _from0((b"s", b"h"))),
    (_T_ALPHA, b"", (*_from0(_ALPHA_NEEDLES), (b"d,d", 1))),  # numlist_per_k adds the two "d,d"
    (_T_SPACE, b"", _from0((b"x  ", b"\n  "))),
    (_IDENTITY, b"", _from0((b"${",))),  # what _RE_BRACEVAR and _RE_SPECIALVAR need
)
_RUNS = ((_IS_LINE, 1), (_IS_WORD, 3), (_IS_TOKEN, 1), (_IS_B64, 60))
# _NEEDLES as a view of the lower-cased text's UTF-8, where (ASCII) they occur just where they do
# in the str
_LOW_VIEWS = ((_IDENTITY, b"", _from0(x.encode() for x in _NEEDLES)),)


def _counts(b: bytes, low: str) -> tuple[list[int], list[int]]:
    """The counts of _VIEWS on b in order, then (how many, summed length, longest) of each of
    _RUNS; and [low.count(x) for x in _NEEDLES]. A C pass over each when the extension is built."""
    if (c := native()) is not None:
        return (c.ps_scan(b, _VIEWS, _RUNS),
                c.ps_scan(low.encode("utf-8", "surrogatepass"), _LOW_VIEWS, ()))
    out: list[int] = []
    for table, delete, needles in _VIEWS:
        s = b.translate(table, delete)
        out += [s.count(x, start) for x, start in needles]
    for flags, min_len in _RUNS:
        # the runs are what split() leaves of the bytes with the flagged ones made 'x', the rest ' '
        lens = [x for x in map(len, b.translate(_run_translation(flags)).split()) if x >= min_len]
        out += (len(lens), sum(lens), max(lens, default=0))
    return out, [low.count(x) for x in _NEEDLES]


@cache
def _run_translation(flags: bytes) -> bytes:
    return _table({bytes(c for c in range(256) if flags[c]): b"x"})


def extract(text: str | bytes, techniques: Iterable[str] | None = None) -> dict[str, float]:
    """Feature vector (name -> value, names in FEATURE_NAMES) of one script or command line.

    `techniques`: optional names of what a deobfuscator undid (see TECHNIQUES). Never raises on
    str or bytes input (bytes are decoded as UTF-8 with replacement)."""
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_CHARS * 4:
            text = bytes(text[: HEAD * 4]) + b"\n" + bytes(text[-TAIL * 4 :])
        text = bytes(text).decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = str(text)
    if len(text) > MAX_CHARS:
        text = text[:HEAD] + "\n" + text[-TAIL:]
    n = len(text)
    k = 1000.0 / max(n, 1)
    f = _ZEROS.copy()
    f["log_len"] = math.log1p(n)
    if n == 0:
        return f
    b = text.encode("ascii", "replace")  # one byte a character; non-ASCII -> '?'
    ascii_n = n if text.isascii() else len(text.encode("ascii", "ignore"))

    # Randomness of a bounded sample, as its zlib compression ratio: base64, encrypted and
    # char-code blobs compress poorly, code well. (A byte-entropy histogram costs 10x more.)
    sample = b[:_ENTROPY_SAMPLE]
    ent = len(zlib.compress(sample, 1)) / (len(sample) + 16)
    low = text.lower()
    (up, lo, di, lu, ul, lulu, ulul, upper4,  # _VIEWS in order
     *punct,
     special, hexd,
     ad, ata, dcd, dashes, dcd_odd,
     runs2, nl2,
     brace_vars,
     _, _, max_line,  # _RUNS: lines, alphanumeric words of 3 or more, tokens, base64 of 60 or more
     words, letters, longest,
     _, _, longest_token,
     blobs, b64_chars, b64_longest), counts = _counts(b, low)
    alpha = up + lo
    pc = dict(zip(_PUNCT_NEEDLES, punct, strict=True))
    space = pc[" "] + pc["\t"] + pc["\n"] + pc["\r"]
    hexd += di
    lines = pc["\n"] + 1
    f["log_lines"] = math.log1p(lines)
    f["log_max_line"] = math.log1p(max_line)
    f["compress_ratio"] = ent
    f["sh_alpha"] = alpha / n
    f["sh_upper"] = up / max(1, alpha)
    f["sh_digit"] = di / n
    f["sh_space"] = space / n
    f["sh_special"] = special / n
    f["sh_nonascii"] = (n - ascii_n) / n
    f["sh_hexdigit_of_alnum"] = hexd / max(1, alpha + di)
    for ch, name in _PUNCT_KEYS.items():
        f[name] = math.log1p(pc[ch] * k)

    pws, pwsh, env, set_, dash_f = counts[_AT_GATES:]
    subs = iter(counts)
    for name, sub in _LOWER_SUBSTR.items():
        # _RE_FORMAT needs "-f" (IGNORECASE: only 'f' and 'F' are an 'f'; str.lower() leaves no 'F')
        c = (len(_RE_FORMAT.findall(low)) if dash_f else 0) if sub is None else next(subs)
        f[name] = math.log1p(c * k)
    f["iex_hints"] = math.log1p(sum(counts[_AT_HINTS:_AT_VOWELS]) * k)

    # Case switching in identifiers: camelCase switches once or twice per word part, random
    # case (InVoKe) on nearly every letter.
    f["case_switch_rate"] = (lu + ul) / max(1, alpha)
    f["rand_case_words"] = math.log1p((lulu + ulul) * k)
    f["upper_words"] = math.log1p(upper4 * k)
    f["digit_words"] = math.log1p(ad * k)
    f["tick_in_word"] = math.log1p(ata * k)
    f["numlist_per_k"] = math.log1p((dcd + dcd_odd) * k)
    f["word_len_mean"] = letters / max(1, words)
    f["log_longest_word"] = math.log1p(longest)
    f["vowel_share"] = sum(counts[_AT_VOWELS:_AT_VERBS]) / max(1, alpha)

    strs = _RE_SQ.findall(text) if pc["'"] > 1 else ()
    if strs:
        lens = [len(s) - 2 for s in strs]
        f["str_per_k"] = math.log1p(len(strs) * k)
        f["str_len_mean"] = math.log1p(sum(lens) / len(lens))
        f["short_str_share"] = sum(1 for x in lens if x <= 4) / len(lens)
        f["log_longest_str"] = math.log1p(max(lens))
    f["log_longest_token"] = math.log1p(longest_token)
    if blobs:
        f["b64_share"] = b64_chars / n
        f["log_b64_longest"] = math.log1p(b64_longest)
    f["cmdlet_per_k"] = math.log1p(dashes * k)
    if dashes:
        known = sum(counts[_AT_VERBS:_AT_GATES])
        f["cmdlet_known_share"] = min(1.0, known / dashes)
    else:
        f["cmdlet_known_share"] = 0.5
    # _RE_LAUNCH and _RE_LAUNCH_STDIN need these words (U+017F: IGNORECASE reads it as 's',
    # str.lower() does not), the latter a '|' too; knowing that costs far less than a search
    may_launch = pws or pwsh or "\u017f" in text
    if may_launch and _search_at(_RE_LAUNCH, text[:20000], low, _PS_WORD, _LAUNCH_NEAR):
        f["launcher_enc"] = 1.0
    if env and set_ and _search_at(_RE_LAUNCH_ENV, text[:30000], low, _SET_WORD):
        f["launcher_env"] = 1.0
    if may_launch and pc["|"]:
        f["launcher_stdin"] = 1.0 if _RE_LAUNCH_STDIN.search(text[-2000:]) else 0.0
    f["launcher_cmd"] = 1.0 if "cmd" in low[:300] and "/c" in low[:300] else 0.0
    f["multi_space_per_k"] = math.log1p(max(0, runs2 - nl2) * k)
    if brace_vars:
        f["bracevar_per_k"] = math.log1p(len(_RE_BRACEVAR.findall(text)) * k)
        f["specialvar_per_k"] = math.log1p(len(_RE_SPECIALVAR.findall(text)) * k)
    f["comment_share"] = min(1.0, pc["#"] / lines)
    for t in techniques or ():
        key = "tech_" + str(t).lower().replace("-", "_")
        if key in f:
            f[key] = 1.0
    return f


def vector(text: str | bytes, techniques: Iterable[str] | None = None) -> list[float]:
    """extract() as a list in FEATURE_NAMES order."""
    f = extract(text, techniques)
    return [f[name] for name in FEATURE_NAMES]
