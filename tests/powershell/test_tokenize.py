"""The PowerShell tokenizer: every construct, obfuscated forms, garbage, and linear time."""

import random
import time

import pytest

from threatscope.powershell.tokenize import string_value, tokenize, variable_name, word_value


def kinds(src: str) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokenize(src)]


@pytest.mark.parametrize(
    "src,expected",
    [
        ("i`e`x", [("word", "i`e`x")]),
        ("'it''s'", [("string", "'it''s'")]),
        ('"a""b`"c"', [("string", '"a""b`"c"')]),
        ("@'\nraw $x\n'@", [("herestring", "@'\nraw $x\n'@")]),
        ('@"\nhi $x\n"@', [("herestring", '@"\nhi $x\n"@')]),
        ("$var", [("variable", "$var")]),
        ("${a b`}c}", [("variable", "${a b`}c}")]),
        ("$env:ComSpec", [("variable", "$env:ComSpec")]),
        ("$_", [("variable", "$_")]),
        ("-f", [("operator", "-f")]),
        ("-bxor -JOIN -split -replace -creplace", [("operator", "-bxor"), ("operator", "-JOIN"), ("operator", "-split"), ("operator", "-replace"), ("operator", "-creplace")]),
        ("[char]", [("type", "[char]")]),
        ("[Char[]]", [("type", "[Char[]]")]),
        ("[System.Collections.Generic.List[string]]", [("type", "[System.Collections.Generic.List[string]]")]),
        ("# note", [("comment", "# note")]),
        ("<# block\n #>", [("comment", "<# block\n #>")]),
        ("0x1F 42 1.5e3 10kb", [("number", "0x1F"), ("number", "42"), ("number", "1.5e3"), ("number", "10kb")]),
        ("@args", [("splat", "@args")]),
        ("$(1)", [("subexpr", "$("), ("number", "1"), ("rparen", ")")]),
        ("@(1)", [("arrayexpr", "@("), ("number", "1"), ("rparen", ")")]),
        ("@{a=1}", [("hashtable", "@{"), ("word", "a"), ("operator", "="), ("number", "1"), ("rbrace", "}")]),
        ("$a.b", [("variable", "$a"), ("dot", "."), ("word", "b")]),
        ("[a]::b", [("type", "[a]"), ("operator", "::"), ("word", "b")]),
        ("Get-Item -Path:x", [("word", "Get-Item"), ("parameter", "-Path:"), ("word", "x")]),
        ("\u2013enc", [("parameter", "\u2013enc")]),
        ("a `\n b", [("word", "a"), ("word", "b")]),
        ("1..5", [("number", "1"), ("operator", ".."), ("number", "5")]),
        ("a|b;c&d", [("word", "a"), ("pipe", "|"), ("word", "b"), ("semicolon", ";"), ("word", "c"), ("amp", "&"), ("word", "d")]),
    ],
)
def test_constructs(src, expected):
    assert kinds(src) == expected


def test_values():
    assert string_value(tokenize("'it''s'")[0]) == "it's"
    assert string_value(tokenize('"a`tb`"c"')[0]) == 'a\tb"c'
    assert string_value(tokenize("@'\nline1\nline2\n'@")[0]) == "line1\nline2"
    assert word_value(tokenize("I`E`X")[0]) == "IEX"
    assert variable_name(tokenize("${E`Nv:X}")[0]) == "env:x"
    assert variable_name(tokenize("$Env:X")[0]) == "env:x"


@pytest.mark.parametrize("src", ["'never closed", '"never closed', "@'\nnever", "<# never", "${never", "[char", "`"])
def test_unclosed_runs_to_the_end(src):
    toks = tokenize(src, keep_space=True)
    assert "".join(t.text for t in toks) == src


def test_garbage_round_trips_and_never_raises():
    rnd = random.Random(4)
    alphabet = "'\"`$@{}()[]#<>-|&;.,:+*%!=\n\r\t abcXYZ019\x00\x1b\u2013\u2018\ufeff"
    for _ in range(300):
        s = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 200)))
        assert "".join(t.text for t in tokenize(s, keep_space=True)) == s
        tokenize(s)
    raw = rnd.randbytes(100_000)
    assert tokenize(raw)  # bytes are decoded with replacement, not rejected
    assert "".join(t.text for t in tokenize(raw.decode("latin-1"), keep_space=True)) == raw.decode("latin-1")


def test_linear_time():
    unit = "$x = ('a'+\"b`n\") -f $y; i`e`x [char]0x41 # c\n" * 2000
    t = time.perf_counter()
    tokenize(unit)
    small = time.perf_counter() - t
    t = time.perf_counter()
    tokenize(unit * 10)
    big = time.perf_counter() - t
    assert big < max(small, 0.005) * 30  # 10x the input, not 100x the time
    unclosed = "'" + "a'' " * 200_000  # an unclosed string of ''-escapes must not backtrack
    t = time.perf_counter()
    tokenize(unclosed)
    assert time.perf_counter() - t < 2
