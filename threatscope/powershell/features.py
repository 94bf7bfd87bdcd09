"""Obfuscation features of a PowerShell script or command line, in linear time.

In the spirit of Revoke-Obfuscation (character and token distributions, entropy, string
statistics, operator counts; compressibility stands in for entropy), without a PowerShell
parser: a fixed number of passes over at most `MAX_CHARS` characters, each done by C code
(bytes.translate and .count, zlib, a few compiled regexes).

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
# without a regex engine trying a match at every position (5-10x faster than regexes).
_T_CASE = _table({_UP: b"U", _LO: b"l", _DI: b"d"})
_T_ALPHA = _table({_UP + _LO: b"a", _DI: b"d", b"`": b"`", b",": b",", b"-": b"-"})
# the punctuation and whitespace we count, kept alone (delete the rest) so the counts run on a
# string a fifth as long
_KEEP = set("".join(_PUNCT_KEYS).encode() + b" \t\r\n")
_DEL_OTHERS = bytes(c for c in range(256) if c not in _KEEP)
_T_WORD = _table({_UP + _LO + _DI: b"w"})
_T_B64 = _table({_UP + _LO + _DI + b"+/=": b"b"})
_T_SPACE = _table({b" \t": b" ", b"\n": b"\n"}, b"x")
_ENTROPY_SAMPLE = 4096
_T_CLASS = _table({_SPECIAL_B: b"s", b"abcdefABCDEF": b"h"}, b".")


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
    f: dict[str, float] = dict.fromkeys(FEATURE_NAMES, 0.0)
    f["log_len"] = math.log1p(n)
    if n == 0:
        return f
    b = text.encode("ascii", "replace")  # one byte a character; non-ASCII -> '?'
    ascii_n = len(text.encode("ascii", "ignore"))

    # Randomness of a bounded sample, as its zlib compression ratio: base64, encrypted and
    # char-code blobs compress poorly, code well. (A byte-entropy histogram costs 10x more.)
    sample = b[:_ENTROPY_SAMPLE]
    ent = len(zlib.compress(sample, 1)) / (len(sample) + 16)
    case = b.translate(_T_CASE)
    up, lo, di = case.count(b"U"), case.count(b"l"), case.count(b"d")
    alpha = up + lo
    punct = b.translate(None, _DEL_OTHERS)
    space = punct.count(b" ") + punct.count(b"\t") + punct.count(b"\n") + punct.count(b"\r")
    cls = b.translate(_T_CLASS)
    special = cls.count(b"s")
    hexd = cls.count(b"h") + di
    lines = punct.count(b"\n") + 1
    f["log_lines"] = math.log1p(lines)
    f["log_max_line"] = math.log1p(max(map(len, b.split(b"\n"))))
    f["compress_ratio"] = ent
    f["sh_alpha"] = alpha / n
    f["sh_upper"] = up / max(1, alpha)
    f["sh_digit"] = di / n
    f["sh_space"] = space / n
    f["sh_special"] = special / n
    f["sh_nonascii"] = (n - ascii_n) / n
    f["sh_hexdigit_of_alnum"] = hexd / max(1, alpha + di)
    for ch, name in _PUNCT_KEYS.items():
        f[name] = math.log1p(punct.count(ch.encode()) * k)

    low = text.lower()
    for name, sub in _LOWER_SUBSTR.items():
        c = len(_RE_FORMAT.findall(low)) if sub is None else low.count(sub)
        f[name] = math.log1p(c * k)
    f["iex_hints"] = math.log1p(sum(low.count(h) for h in _IEX_HINTS) * k)

    # Case switching in identifiers: camelCase switches once or twice per word part, random
    # case (InVoKe) on nearly every letter.
    f["case_switch_rate"] = (case.count(b"lU") + case.count(b"Ul")) / max(1, alpha)
    f["rand_case_words"] = math.log1p((case.count(b"lUlU") + case.count(b"UlUl")) * k)
    f["upper_words"] = math.log1p(case.count(b" UUUU") * k)
    al = b.translate(_T_ALPHA)
    f["digit_words"] = math.log1p(al.count(b"ad") * k)
    f["tick_in_word"] = math.log1p(al.count(b"a`a") * k)
    f["numlist_per_k"] = math.log1p((al.count(b"d,d") + al.count(b"d,d", 1)) * k)
    wlens = [x for x in map(len, b.translate(_T_WORD).split()) if x >= 3]
    f["word_len_mean"] = sum(wlens) / max(1, len(wlens))
    f["log_longest_word"] = math.log1p(max(wlens, default=0))
    f["vowel_share"] = sum(low.count(v) for v in "aeiou") / max(1, alpha)

    strs = _RE_SQ.findall(text)
    if strs:
        lens = [len(s) - 2 for s in strs]
        f["str_per_k"] = math.log1p(len(strs) * k)
        f["str_len_mean"] = math.log1p(sum(lens) / len(lens))
        f["short_str_share"] = sum(1 for x in lens if x <= 4) / len(lens)
        f["log_longest_str"] = math.log1p(max(lens))
    f["log_longest_token"] = math.log1p(max(map(len, b.split()), default=0))
    b64 = [x for x in map(len, b.translate(_T_B64).split()) if x >= 60]
    if b64:
        f["b64_share"] = sum(b64) / n
        f["log_b64_longest"] = math.log1p(max(b64))
    dashes = al.count(b"a-a")
    f["cmdlet_per_k"] = math.log1p(dashes * k)
    if dashes:
        known = sum(low.count(v) for v in _VERB_DASH)
        f["cmdlet_known_share"] = min(1.0, known / dashes)
    else:
        f["cmdlet_known_share"] = 0.5
    f["launcher_enc"] = 1.0 if _RE_LAUNCH.search(text[:20000]) else 0.0
    if "env:" in low and "set" in low:
        f["launcher_env"] = 1.0 if _RE_LAUNCH_ENV.search(text[:30000]) else 0.0
    f["launcher_stdin"] = 1.0 if _RE_LAUNCH_STDIN.search(text[-2000:]) else 0.0
    f["launcher_cmd"] = 1.0 if "cmd" in low[:300] and "/c" in low[:300] else 0.0
    spaces = b.translate(_T_SPACE)
    f["multi_space_per_k"] = math.log1p(
        max(0, spaces.count(b"x  ") - spaces.count(b"\n  ")) * k)
    f["bracevar_per_k"] = math.log1p(len(_RE_BRACEVAR.findall(text)) * k)
    f["specialvar_per_k"] = math.log1p(len(_RE_SPECIALVAR.findall(text)) * k)
    f["comment_share"] = min(1.0, punct.count(b"#") / lines)
    for t in techniques or ():
        key = "tech_" + str(t).lower().replace("-", "_")
        if key in f:
            f[key] = 1.0
    return f


def vector(text: str | bytes, techniques: Iterable[str] | None = None) -> list[float]:
    """extract() as a list in FEATURE_NAMES order."""
    f = extract(text, techniques)
    return [f[name] for name in FEATURE_NAMES]
