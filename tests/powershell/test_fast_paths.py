"""The deobfuscator's shortcuts give what the plain code gives: IOC patterns tried only where a
match can start, the printable share by bytes.translate."""

import importlib
import random
import re
import sys
from pathlib import Path

dob = importlib.import_module("threatscope.powershell.deobfuscate")
BENIGN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "powershell" / "benign"
ATOMS = list("ab:/\\%$.1234 \n'\"()hHtTpPsSfF\u017fxX") + [
    "http", "https", "ftp", "://", "$env:", "$ENV:", "%temp%\\", "C:\\", "\\\\", "1.2.3.4",
    "255.", "..", "\\\\srv\\", "c:\\\\", "evil.com", "10.0.0.1:80", "HTTP://a.ru/x"]


def texts() -> list[str]:
    rng = random.Random(4)
    out = ["".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 30))) for _ in range(20_000)]
    if BENIGN.exists():
        out += [p.read_text(encoding="utf-8", errors="replace")
                for p in sorted(BENIGN.glob("*.ps1"))[:200]]
    return out


def starts(kind: str, text: str) -> list[int]:
    # as extract_iocs computes them
    if kind == "url":
        return dob._url_starts(text)
    if kind == "ip":
        return [m.start() - d for m in dob._IP_AT.finditer(text) for d in (3, 2, 1) if m.start() >= d]
    return dob._path_starts(text)


def test_ioc_patterns_tried_at_their_starts_only():
    for text in texts():
        for kind, rx in (("url", dob._URL), ("ip", dob._IP_CAND), ("path", dob._PATH)):
            got = [m.span() for m in dob._finditer_at(rx, text, starts(kind, text))]
            assert got == [m.span() for m in rx.finditer(text)], (kind, text[:200])


def test_ascii_share():
    rng = random.Random(8)
    for _ in range(5000):
        s = "".join(chr(rng.choice([rng.randrange(0, 130), rng.randrange(0, 0x3000)]))
                    for _ in range(rng.randint(0, 50)))
        want = sum(1 for ch in s if " " <= ch <= "~" or ch in "\r\n\t") / max(len(s), 1)
        assert dob._ascii_share(s) == want


def test_unescape_is_the_regex():
    tk = importlib.import_module("threatscope.powershell.tokenize")
    rng = random.Random(9)
    chars = list("`^ab\n\r'\"0nt\ue000") + ["``", "^^", "`n", "^\n"]
    for _ in range(20_000):
        s = "".join(rng.choice(chars) for _ in range(rng.randint(0, 16)))
        assert dob._uncaret(s) == re.sub(r"\^(.)", r"\1", s), s
        assert tk._unbacktick(s) == re.sub(r"`(.)", r"\1", s, flags=re.S), s
        want = re.sub(r"`(.)", lambda m: tk._DQ_ESC.get(m.group(1), m.group(1)), s, flags=re.S)
        assert tk._unbacktick(s, tk._DQ_ESC) == want, s


def test_string_values():
    tk = importlib.import_module("threatscope.powershell.tokenize")
    rng = random.Random(10)
    chars = list("'\"`a\u2018\u201c\u201d\n$") + ["''", '""', "`n"]
    for _ in range(20_000):
        body = "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
        for q in ("'", '"', "\u2019", "\u201d"):
            text = q + body + q
            tok = tk.Token("string", text, 0)
            inner = text[1:-1]
            if q in "'\u2019":
                want = re.sub("['\u2018\u2019\u201a\u201b]{2}", lambda m: m.group()[0], inner)
            else:
                inner = re.sub('["\u201c\u201d\u201e]{2}', lambda m: m.group()[0], inner)
                want = re.sub(r"`(.)", lambda m: tk._DQ_ESC.get(m.group(1), m.group(1)), inner, flags=re.S)
            assert tk.string_value(tok) == want, text


def test_securestring_words_need_ascii():
    # deobfuscate looks for them in the ASCII bytes before lower-casing a big text
    rng = random.Random(14)
    parts = ["Secure", "String", "ConvertTo-", "ToBSTR", "s", "\u0130", "\u0131", "\u212a", "\u017f",
             "\xe9", "-", "i", "I", "ng", "N"]
    for _ in range(30_000):
        s = "".join(rng.choice(parts) for _ in range(rng.randint(0, 10)))
        low8 = s.encode("ascii", "ignore").lower()
        for word in ("convertto-securestring", "securestringtobstr"):
            if word in s.lower():
                assert word.encode() in low8, s


def test_launcher_feature_tried_at_its_word():
    feats = importlib.import_module("threatscope.powershell.features")
    rng = random.Random(15)
    parts = ["powershell", "PowerShell.exe", "pwsh", "PWSH ", " -enc ", " /e ", " -EncodedCommand ",
             "SQBFAFgAIAAoACcAVwByAGkAdABlAC0A", " ", "\n", "'", '"', "x", "\u017f", "-", "/E", "-E",
             "y" * 50, "z" * 48, "Powershell.exe' ", "pwsh.EXE\""]
    hits = 0
    for _ in range(40_000):
        s = "".join(rng.choice(parts) for _ in range(rng.randint(0, 16)))
        want = feats._RE_LAUNCH.search(s) is not None
        assert feats._search_at(feats._RE_LAUNCH, s, s.lower(), feats._PS_WORD, feats._LAUNCH_NEAR) == want, s
        hits += want
    assert hits > 1000
    for word in ("powershell", "pwsh"):  # the dash as far as a match can have it
        for k in range(195, 206):
            s = f"{word}.exe' " + "x" * k + "-e SQBFAFgAIAAoACcAVwByAGkA"
            want = feats._RE_LAUNCH.search(s) is not None
            assert want == (k <= 200)
            assert feats._search_at(feats._RE_LAUNCH, s, s.lower(), feats._PS_WORD, feats._LAUNCH_NEAR) == want, s


def test_launcher_env_feature_tried_at_set():
    feats = importlib.import_module("threatscope.powershell.features")
    rng = random.Random(16)
    parts = ["set ", "SET  ", "Set", "xset ", "offset ", "a=", "A1=", "x", " ", "\n", "=", "&&",
             "powershell ", "PWSH ", "$env:a", "env:A1", "env:a1x", "\u017f", "|iex", "-c ",
             "set a=1&& ", "cmd /c set A1=x", " powershell $env:a|iex", " pwsh -c env:A1"]
    hits = 0
    for _ in range(20_000):
        s = "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        want = feats._RE_LAUNCH_ENV.search(s) is not None
        assert feats._search_at(feats._RE_LAUNCH_ENV, s, s.lower(), feats._SET_WORD) == want, s
        hits += want
    assert hits > 100


def test_pattern_gates_hold_what_every_match_has():
    # extract tries these patterns only when the text has what a match needs: with IGNORECASE,
    # the letters of "-f", "powershell" and "pwsh" are those letters in either case (or U+017F,
    # which str.lower() keeps), and no lower-cased text has an 'F'
    feats = importlib.import_module("threatscope.powershell.features")
    chars = list(map(chr, range(sys.maxunicode + 1)))
    either = re.compile("(?i)[fpowershl]")
    assert [c for c in chars if either.match(c) and c.lower() not in "fpowershl"] == ["\u017f"]
    assert not any("F" in c.lower() for c in chars)
    rng = random.Random(17)
    parts = ["${", "$", "{", "}", "a", "'", "\n", "|", " ", "powershell", "PoWeRsHeLl.exe", "pwsh",
             "\u017f", "-", "f", "F", "-F", "-f", "x", "\\", "\"", "!", "-enc "]
    for _ in range(20_000):
        s = "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        low = s.lower()
        if feats._RE_BRACEVAR.search(s) or feats._RE_SPECIALVAR.search(s):
            assert "${" in s, s
        if feats._RE_SQ.search(s):
            assert s.count("'") > 1, s
        if feats._RE_LAUNCH_STDIN.search(s):
            assert ("powershell" in low or "pwsh" in low or "\u017f" in s) and "|" in s, s
        if feats._RE_FORMAT.search(low):
            assert "-f" in low, s


def test_launcher_patterns_tried_at_their_words():
    # _search_near: the executable patterns tried only before their words give rx.search's match,
    # the TLD hits on lower-cased ASCII bytes the IGNORECASE pattern's
    rng = random.Random(8)
    atoms = list(" \t\n\"'\\/&|(;=^.-x") + [
        "cmd", "CMD", "cmd.exe", "cmD.ExE", " /c ", "/K", "/r", "powershell", "PowerShell",
        "pwsh", "POWERSHELL_ISE", ".exe", "-enc", "po\u017fh", "pw\u017fh", "\u212a", "\xe9",
        ".com", ".CoM", ".ru", ".de.", "a-", "_"]
    cases = ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 12))) for _ in range(30_000)]
    if BENIGN.exists():
        cases += [p.read_text(encoding="utf-8", errors="replace")[:4096]
                  for p in sorted(BENIGN.glob("*.ps1"))[:200]]
    for s in cases:
        for rx, word in ((dob._PS_EXE, dob._PS_WORD), (dob._CMD_EXE, dob._CMD_WORD)):
            got, want = dob._search_near(rx, s, word), rx.search(s)
            assert (got and got.span()) == (want and want.span()), (rx.pattern, s)
        if s.isascii():
            assert ([m.span() for m in dob._TLD_HIT_LOW.finditer(s.encode().lower())]
                    == [m.span() for m in dob._TLD_HIT.finditer(s)]), s


def test_word_starts_are_the_regex():
    rng = random.Random(18)
    atoms = ["cmd", "CMD", "powershell", "pwsh", "pw", "sh", "-e", "/e", "-", "/", "e", "c", "m", " "]
    for _ in range(20_000):
        low = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12))).encode().lower()
        for words in (dob._PS_WORD, dob._CMD_WORD, (b"-e", b"/e")):
            want = [m.start() for m in re.finditer(b"|".join(words), low)]
            assert dob._word_starts(low, words) == want, (words, low)


def test_enc_param_tried_at_its_dashes():
    # _launcher finds -EncodedCommand from the dashes before an 'e'; IGNORECASE folds only 'E' to
    # 'e', and U+0130/U+0131/U+017F/U+212A to letters of [a-z]
    rng = random.Random(19)
    atoms = list(" \t\n-/eEncx\u2013\u2014\u2015\u0130\u0131\u017f\u212a\xe9\"'") + [
        " -e ", " -E ", " /enc ", "-EncodedCommand ", " \u2013ec ", " -ex ", "/e", "-\u212a", "SQBFAFgA"]
    cases = ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 14))) for _ in range(40_000)]
    if BENIGN.exists():
        cases += [p.read_text(encoding="utf-8", errors="replace")[:8192]
                  for p in sorted(BENIGN.glob("*.ps1"))[:200]]
    hits = 0
    for s in cases:
        got = [m.span(1) for m in dob._finditer_at(dob._ENC_PARAM, s, dob._enc_starts(s))]
        want = [m.span(1) for m in dob._ENC_PARAM.finditer(s)]
        assert got == want, s
        hits += bool(want)
    assert hits > 1000


def test_wmic_tried_with_its_word():
    rng = random.Random(20)
    atoms = ["wmic", "WMIC", "wm\u0130c", "wm\u0131c", "wmi", "c", "C:\\", "c:/x/", "\\", "/", " ",
             "process call create ", "/node:x ", '"', "'", ".exe", "\u017f", "\xe9", "powershell -c 1"]
    hits = 0
    for n in range(30_000):
        s = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 10)))
        if n % 2:  # the shape of a match, pieces of it random
            s = (rng.choice(["", " ", '"', "C:\\w\\", "x:/"]) + rng.choice(atoms[:4]) + rng.choice(["", ".exe"])
                 + rng.choice([" ", "' "]) + rng.choice(["", "/node:a ", "/x "]) + "process call create " + s)
        got, want = dob._wmic(s), dob._WMIC.match(s)
        assert (got and got.span(1)) == (want and want.span(1)), s
        hits += want is not None
    assert hits > 100


def test_random_case_stops_at_its_second_signal():
    def plain(word: str) -> bool:  # the full scan it replaces
        if dob._CASE_ANY.search(word) is None:
            return False
        signals = [m.group(1) for m in dob._CASE_SIGNAL.finditer(word)]
        signals = [x for x in signals if not (len(x) == 3 and x[:2] in dob._TWO_LETTER)]
        return len(signals) >= 2 or (len(signals) == 1 and dob._LOWER_RUN.search(word) is None)

    rng = random.Random(21)
    atoms = list("aAbBzZ1_\u0130\u0131\u017f\u212a") + ["Is", "Or", "IsX", "OrB", "abc", "xY", "AbC"]
    words = ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 10))) for _ in range(40_000)]
    if BENIGN.exists():
        words += [w for p in sorted(BENIGN.glob("*.ps1"))[:100]
                  for w in re.findall(r"\w+", p.read_text(encoding="utf-8", errors="replace"))]
    assert sum(plain(w) for w in words) > 1000
    for w in words:
        assert dob._random_case(w) == plain(w), w


def test_domain_left_part_read_backwards():
    left = re.compile(r"[\w.-]{1,253}\Z")
    rng = random.Random(22)
    atoms = list("a.-_ 9/@$\u017f\xe9\u212a(") + ["x" * 100, "a-b.c", "\u0660"]
    for _ in range(5_000):
        s = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        for at in range(len(s) + 1):
            m = left.search(s, max(0, at - 253), at)
            assert dob._left(s, at) == (at if m is None else m.start()), (s, at)


def test_ioc_starts_found_by_find():
    # the patterns that found them before
    path_at = [re.compile(r":(?=\\)"), re.compile("%"), re.compile(r"\$(?=[eE][nN][vV]:)"),
               re.compile(r"\\(?=\\)")]
    extra = ["$Env:", "$eNV:x", "$e\u212av:", "\\\\\\", ":\\\\", "%%", ":://", "\u017f"]
    rng = random.Random(23)
    for s in texts() + ["".join(rng.choice(ATOMS + extra) for _ in range(20)) for _ in range(20_000)]:
        want = [m.start() - d for m in re.finditer("://", s) for d in (5, 4, 3) if m.start() >= d]
        assert dob._url_starts(s) == want, s
        want = [m.start() - (m.group() == ":") for rx in path_at for m in rx.finditer(s)]
        assert dob._path_starts(s) == want, s
