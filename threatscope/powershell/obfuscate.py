"""Python re-implementations of the Invoke-Obfuscation families (our own code, same ideas).

Used to make training data for the obfuscation classifier and obfuscated commands for the demo
simulator. Nothing here runs PowerShell; every output is built so that it is valid PowerShell by
construction (string pieces are single-quoted with quotes doubled, token changes only touch code
outside strings and comments).

Usage::

    import random
    from threatscope.powershell.obfuscate import obfuscate
    text, applied = obfuscate("Write-Host 'hi'", random.Random(7), families=["STRING"], layers=1)

Families: TOKEN, STRING, ENCODING, COMPRESS, AST, LAUNCHER (LAUNCHER is always the outermost
layer: it turns a script into a command line).
"""

from __future__ import annotations

import base64
import random
import re
import zlib
from collections.abc import Callable, Sequence

FAMILIES = ("TOKEN", "STRING", "ENCODING", "COMPRESS", "AST", "LAUNCHER")

# PowerShell treats these four as single quotes too: all must be doubled inside '...'.
_SQUOTES = "'\u2018\u2019\u201a\u201b"


def ps_quote(s: str) -> str:
    """`s` as a PowerShell single-quoted literal (quotes doubled)."""
    for q in _SQUOTES:
        s = s.replace(q, q + q)
    return "'" + s + "'"


# --- Invoke-Expression in its many spellings --------------------------------------------------
# Each gives the name "iex" (or the cmdlet) without writing it plainly; all are well known
# Invoke-Obfuscation outputs: $ShellId = 'Microsoft.PowerShell', $env:ComSpec = 'C:\WINDOWS\system32
# \cmd.exe', $PSHome = 'C:\Windows\System32\WindowsPowerShell\v1.0', *mdr* = MaximumDriveCount,
# $VerbosePreference = 'SilentlyContinue'.
IEX_NAMES = (
    "iex",
    "IEX",
    "Invoke-Expression",
    "&($ShellId[1]+$ShellId[13]+'x')",
    ".($env:ComSpec[4,15,25]-join'')",
    ".($PSHome[4]+$PSHome[30]+'x')",
    ".($PSHome[21]+$PSHome[30]+'x')",
    "&((Get-Variable '*mdr*').Name[3,11,2]-join'')",
    "&((gv '*mdr*').Name[3,11,2]-join'')",
    ".($VerbosePreference.ToString()[1,3]+'x'-join'')",
)


def iex_wrap(expr: str, rng: random.Random) -> str:
    """Invoke the string expression `expr` with a random Invoke-Expression spelling."""
    name = rng.choice(IEX_NAMES)
    if rng.random() < 0.5:
        return f"{name} ({expr})"
    return f"({expr}) | {name}"


# --- segmentation: code vs strings/comments ---------------------------------------------------
_SEG = re.compile(
    r"""(?P<here>@'\r?\n.*?\r?\n'@|@"\r?\n.*?\r?\n"@)
      |(?P<block><\#.*?\#>)
      |(?P<comment>\#[^\r\n]*)
      |(?P<sq>'(?:[^'\u2018\u2019\u201a\u201b]|['\u2018\u2019\u201a\u201b]{2})*')
      |(?P<dq>"(?:[^"`]|`.|"")*")""",
    re.S | re.X,
)


def segments(text: str) -> list[tuple[str, str]]:
    """Split `text` into (kind, piece): kind is code, here, block, comment, sq or dq."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _SEG.finditer(text):
        if m.start() > pos:
            out.append(("code", text[pos : m.start()]))
        out.append((m.lastgroup or "code", m.group()))
        pos = m.end()
    if pos < len(text):
        out.append(("code", text[pos:]))
    return out


# --- TOKEN ------------------------------------------------------------------------------------
_CMD = re.compile(r"(?<![\w$\-.:`\\/])([A-Za-z]{2,}-[A-Za-z]{2,})(?![\w\-:`])")
_MEMBER = re.compile(r"(?<=[\w)\]])\.([A-Za-z]{3,})(?=\()")
_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)(?![\w:])")
# After a backtick these letters are escapes (`n, `t, ...): never put a tick before them.
_NO_TICK = set("0abefnrtuvABEFNRTUV")


def _ticks(word: str, rng: random.Random, rate: float = 0.3) -> str:
    out = [word[0]]
    for ch in word[1:]:
        if ch.isalpha() and ch not in _NO_TICK and rng.random() < rate:
            out.append("`")
        out.append(ch)
    return "".join(out)


def _rand_case(word: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)


def _split_string(s: str, rng: random.Random, max_parts: int = 4) -> list[str]:
    if len(s) < 2:
        return [s]
    n = rng.randint(2, min(max_parts, len(s)))
    cuts = sorted(rng.sample(range(1, len(s)), n - 1))
    return [s[a:b] for a, b in zip([0] + cuts, cuts + [len(s)], strict=True)]


def format_reorder(s: str, rng: random.Random, max_parts: int = 4) -> str:
    """`s` as ("{1}{0}" -f 'b','a'): pieces in shuffled order, put back by the format string."""
    parts = _split_string(s, rng, max_parts)
    order = list(range(len(parts)))
    rng.shuffle(order)  # order[k] = index of the piece given as k-th argument
    pos = {p: k for k, p in enumerate(order)}
    fmt = "".join("{" + str(pos[i]) + "}" for i in range(len(parts)))
    args = ",".join(ps_quote(parts[p]) for p in order)
    return f"({ps_quote(fmt)} -f {args})"


def concat_split(s: str, rng: random.Random, max_parts: int = 4) -> str:
    """`s` as ('a'+'b'+'c')."""
    return "(" + "+".join(ps_quote(p) for p in _split_string(s, rng, max_parts)) + ")"


def _unquote(sq: str) -> str:
    body = sq[1:-1]
    for q in _SQUOTES:
        body = body.replace(q + q, q)
    return body


def _token_code(code: str, rng: random.Random, depth: list[int]) -> str:
    def cmd(m: re.Match[str]) -> str:
        before = code[max(0, m.start() - 9) : m.start()].lower()
        if before.rstrip().endswith(("function", "filter", "workflow", "configuration")):
            return m.group()
        w = _rand_case(m.group(1), rng) if rng.random() < 0.7 else m.group(1)
        return _ticks(w, rng) if rng.random() < 0.7 else w

    def member(m: re.Match[str]) -> str:
        w = _rand_case(m.group(1), rng) if rng.random() < 0.7 else m.group(1)
        # ticks go inside a quoted member name ($x."Down`load"()), where they surely parse
        return '."' + _ticks(w, rng) + '"' if rng.random() < 0.5 else "." + w

    def var(m: re.Match[str]) -> str:
        name = _rand_case(m.group(1), rng) if rng.random() < 0.5 else m.group(1)
        return "${" + name + "}" if rng.random() < 0.5 else "$" + name

    code = _CMD.sub(cmd, code)
    code = _MEMBER.sub(member, code)
    code = _VAR.sub(var, code)
    # Whitespace: widen some existing spaces (never one escaped by a backtick).
    code = re.sub(r"(?<!`) (?=\S)", lambda m: " " * rng.choice((1, 1, 1, 2, 3)), code)
    depth[0] += code.count("[") - code.count("]")
    return code


def token_obfuscate(text: str, rng: random.Random) -> str:
    """TOKEN family: ticks and random case in commands/members, ${} variables, whitespace, and
    single-quoted strings rewritten as concatenations or `-f` reorderings.

    Strings inside [...] (attributes need constants) are left alone."""
    out: list[str] = []
    depth = [0]
    for kind, piece in segments(text):
        if kind == "code":
            out.append(_token_code(piece, rng, depth))
        elif kind == "sq" and depth[0] <= 0 and len(piece) >= 4 and rng.random() < 0.6:
            s = _unquote(piece)
            out.append(format_reorder(s, rng) if rng.random() < 0.5 else concat_split(s, rng))
        elif kind == "dq":
            out.append(_VAR.sub(lambda m: "${" + m.group(1) + "}", piece))
        else:
            out.append(piece)
    return "".join(out)


# --- STRING -----------------------------------------------------------------------------------
def _chunks(text: str, rng: random.Random, lo: int = 8, hi: int = 40) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(lo, hi)
        out.append(text[i : i + n])
        i += n
    return out or [""]


def string_obfuscate(text: str, rng: random.Random) -> str:
    """STRING family: the whole script as a concatenation, a reversed string or an `-f`
    reordering, handed to an Invoke-Expression spelling."""
    kind = rng.randrange(3)
    if kind == 0:
        expr = "+".join(ps_quote(c) for c in _chunks(text, rng))
    elif kind == 1:
        rev = ps_quote(text[::-1])
        v = "$" + _rand_name(rng)
        form = rng.randrange(3)
        if form == 0:
            return f"{v} = {rev}; " + iex_wrap(f"{v}[-1..-({v}.Length)] -join ''", rng)
        if form == 1:
            return (f"{v} = {rev}.ToCharArray(); [Array]::Reverse({v}); "
                    + iex_wrap(f"-join {v}", rng))
        expr = f"-join [regex]::Matches({rev}, '.', 'RightToLeft')"
    else:
        parts = _chunks(text, rng, 10, 60)
        order = list(range(len(parts)))
        rng.shuffle(order)
        pos = {p: k for k, p in enumerate(order)}
        fmt = "".join("{" + str(pos[i]) + "}" for i in range(len(parts)))
        expr = f"{ps_quote(fmt)} -f " + ",".join(ps_quote(parts[p]) for p in order)
    return iex_wrap(expr, rng)


# --- ENCODING ---------------------------------------------------------------------------------
# (not ? ^ $ _: those are automatic variables)
_SPECIAL_VARS = (";", "=", "+", "@", ".", "[", "]", "(", ")", "&", "!", "~", "*", "/", "%", ",")


def _int_list(codes: Sequence[int], base: int, sep: str) -> str:
    if base == 16:
        return sep.join(format(c, "x") for c in codes)
    if base == 8:
        return sep.join(format(c, "o") for c in codes)
    return sep.join(format(c, "b") for c in codes)


def encoding_obfuscate(text: str, rng: random.Random) -> str:
    """ENCODING family: char codes (decimal, hex, octal, binary), -bxor, special characters,
    whitespace or SecureString, decoded in the script and given to Invoke-Expression."""
    codes = [ord(c) for c in text]
    kind = rng.randrange(7)
    if kind == 0:  # decimal [char] codes
        nums = ",".join(map(str, codes))
        if rng.random() < 0.5:
            expr = f"-join (({nums}) | ForEach-Object {{ [char]$_ }})"
        else:
            expr = f"[string]::Join('', [char[]]({nums}))"
    elif kind in (1, 2, 3):  # hex / octal / binary
        base = (16, 8, 2)[kind - 1]
        sep = rng.choice(["~", ":", "x", ",", "}", "l"] if base != 16 else ["~", ":", ",", "}", "l"])
        body = _int_list(codes, base, sep)
        expr = (f"-join ({ps_quote(body)}.Split({ps_quote(sep)}) | % "
                f"{{ [char]([Convert]::ToInt32($_, {base})) }})")
    elif kind == 4:  # -bxor with a one-byte key
        key = rng.randint(1, 255)
        nums = ",".join(str(c ^ key) for c in codes)
        expr = f"-join (({nums}) | % {{ [char]($_ -bxor 0x{key:x}) }})"
    elif kind == 5:  # special characters: digits held in ${;} style variables
        names = rng.sample(_SPECIAL_VARS, 10)
        v = ["${" + n + "}" for n in names]
        head = _special_head(v)
        chars = ",".join('"' + "".join(v[int(d)] for d in str(c)) + '"' for c in codes)
        expr = f"-join (({chars}) | % {{ [char][int]$_ }})"
        return head + "; " + iex_wrap(expr, rng)
    else:  # whitespace: each char code is a run of spaces, runs separated by tabs
        if len(codes) > 2000 or rng.random() < 0.3:
            return _securestring(text, rng)
        body = "\t".join(" " * c for c in codes)
        expr = f"-join ({ps_quote(body)}.Split(\"`t\") | % {{ [char]$_.Length }})"
    return iex_wrap(expr, rng)


def _special_head(v: list[str]) -> str:
    """Assign 0..9 to the special-character variables v[0]..v[9] without writing a digit:
    +$() is 0, and each v[d] takes the next ++ of v[0], which is then reset to 0."""
    c = v[0]
    return (f"{c}=+$(); " + "; ".join(f"{v[d]}=++{c}" for d in range(1, 10))
            + f"; {c}=+$()")


def _securestring(text: str, rng: random.Random) -> str:
    """SecureString form. Python's stdlib has no AES, so the ciphertext is shape-correct random
    bytes (the 76492d... ConvertFrom-SecureString -Key layout), not a decryptable payload: good for
    training and demo text, not for running."""
    key = [rng.randint(1, 255) for _ in range(rng.choice((16, 24, 32)))]
    iv = bytes(rng.randrange(256) for _ in range(16))
    n = (len(text.encode("utf-16-le")) // 16 + 1) * 16
    body = base64.b64encode(iv).decode() + "|" + bytes(rng.randrange(256) for _ in range(n)).hex()
    blob = base64.b64encode(("2|" + body).encode("utf-16-le")).decode()
    ss = "76492d1116743f0423413b16050a5345" + blob
    k = ",".join(map(str, key))
    v = "$" + _rand_name(rng)
    return (f"{v} = {ps_quote(ss)} | ConvertTo-SecureString -Key ({k}); "
            + iex_wrap(f"[Runtime.InteropServices.Marshal]::PtrToStringAuto("
                       f"[Runtime.InteropServices.Marshal]::SecureStringToBSTR({v}))", rng))


# Invoke-Obfuscation's two script-only encodings, in the form its encoders write them (the
# ENCODING family above has simpler cousins of both): samples for the deobfuscator's tests.
_IO_SPECIAL = (";", "=", "+", "@", ".", "[", "]", "(", ")", "&", "|", "!", "~", "*", "/", "%", ",")


def special_chars_command(text: str, rng: random.Random) -> str:
    """Special characters only: ten variables named by symbols count 0-9 (``+$()`` is 0, then
    ``++``), one is spelled ``[CHar]`` and one ``iex`` from characters of ``"$(@{})"``
    (System.Collections.Hashtable), ``"$?"`` (True) and ``"".("inSert")`` (its signature string
    ``string Insert(int startIndex, string value)``), and ``"[CHar]87+[CHar]114...|iex"|&iex`` runs
    the text."""
    names = rng.sample(_IO_SPECIAL, 11)
    v = ["${" + n + "}" for n in names[:10]]  # v[d] holds the digit d
    ch = '${"}'
    c = "${" + names[10] + "}"  # the counter, then the method string, then iex

    def num(k: int) -> str:
        return v[k] if k < 10 else '"' + "".join(v[int(d)] for d in str(k)) + '"'

    ht, ok = '"$(@{})"', '"$?"'
    sep = rng.choice([";", ";\n"])
    head = [f"{c}=+$()", f"{v[0]}={c}"] + [f"{v[d]}=++{c}" for d in range(1, 10)]
    head += [f'{ch}="["+{ht}[{num(7)}]+{ht}[{num(19)}]+{ht}[{num(20)}]+{ok}[{num(1)}]+"]"']
    head += [f'{c}="".({ht}[{num(14)}]+{ht}[{num(16)}]+{ht}[{num(0)}]+{ht}[{num(4)}]+{ok}[{num(1)}]'
             f"+{ht}[{num(3)}])"]
    head += [f'{c}={ht}[{num(14)}]+{ht}[{num(4)}]+"{c}"[{num(27)}]']
    body = "+".join(ch + "".join(v[int(d)] for d in str(ord(x))) for x in text)
    return sep.join(head) + sep + f'"{body}|{c}"|&{c}'


def whitespace_command(text: str, rng: random.Random) -> str:
    """Whitespace only: each character code's decimal digits as runs of one whitespace character
    (digit + 1 long) split by the other, codes split by it twice; ``$_.Length - 1`` reads a digit
    back and the joined codes go to Invoke-Expression."""
    mark, sep = rng.choice([(" ", "\t"), ("\t", " ")])
    data = (sep * 2).join(sep.join(mark * (int(d) + 1) for d in str(ord(x))) for x in text)
    v = "$" + _rand_name(rng)
    digits = f"{v}=$_ -split '{sep * 2}'|%{{'{sep}';$_.Split('{sep}')|%{{$_.Length-1}}}}"
    codes = f"(-join {v}[0..({v}.Length-1)]).Trim('{sep} ').Split('{sep}')"
    return f"'{data}'|%{{{digits};iex([string]::Join('',[char[]][int[]]{codes}))}}"


# --- COMPRESS ---------------------------------------------------------------------------------
def deflate_b64(text: str) -> str:
    """Raw Deflate (what IO.Compression.DeflateStream reads) of UTF-8 `text`, base64."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(text.encode("utf-8")) + c.flush()).decode()


def compress_obfuscate(text: str, rng: random.Random) -> str:
    """COMPRESS family: Deflate + base64, read back through IO.Compression.DeflateStream."""
    b64 = deflate_b64(text)
    enc = rng.choice(["[Text.Encoding]::UTF8", "[System.Text.Encoding]::UTF8"])
    ms = rng.choice(["[IO.MemoryStream]", "[System.IO.MemoryStream]"])
    expr = (f"(New-Object IO.StreamReader((New-Object IO.Compression.DeflateStream("
            f"{ms}[Convert]::FromBase64String({ps_quote(b64)}),"
            f"[IO.Compression.CompressionMode]::Decompress)),{enc})).ReadToEnd()")
    return iex_wrap(expr, rng)


# --- AST-ish ----------------------------------------------------------------------------------
_AUTOMATIC = {
    "_", "args", "input", "this", "true", "false", "null", "psitem", "error", "host", "matches",
    "lastexitcode", "myinvocation", "psboundparameters", "executioncontext", "home", "pid", "pwd",
    "shellid", "stacktrace", "foreach", "switch", "sender", "eventargs", "event", "iswindows",
    "islinux", "ismacos", "iscoreclr", "profile", "pshome", "psscriptroot", "pscommandpath",
    "psversiontable", "psculture", "psuiculture", "pscmdlet", "psdebugcontext", "psedition",
    "nestedpromptlevel", "ofs", "consolefilename", "using", "env",
}


def _rand_name(rng: random.Random) -> str:
    alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return rng.choice(alpha) + "".join(rng.choice(alpha + "0123456789") for _ in range(
        rng.randint(4, 11)))


_ASSIGN = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*(?:[+\-*/%]?=)(?!=)")
_PARAM_BLOCK = re.compile(r"\bparam\s*\(", re.I)
_SPLAT_LINE = re.compile(
    r"^(?P<ind>[ \t]*)(?P<cmd>[A-Za-z]+-[A-Za-z]+)(?P<args>(?:[ \t]+-[A-Za-z]+[ \t]+"
    r"(?:'[^'\n]*'|\$[A-Za-z_]\w*|\d+|[A-Za-z][\w.\\:]*))+)[ \t]*$", re.M)
_PAIR = re.compile(r"-([A-Za-z]+)[ \t]+('[^'\n]*'|\$[A-Za-z_]\w*|\d+|[A-Za-z][\w.\\:]*)")


def _param_names(text: str) -> set[str]:
    names: set[str] = set()
    for m in _PARAM_BLOCK.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        names.update(n.lower() for n in re.findall(r"\$([A-Za-z_]\w*)", text[m.end() : i]))
    return names


def ast_obfuscate(text: str, rng: random.Random) -> str:
    """AST-ish family: assigned variables renamed to random names (not parameters, not automatic
    variables), simple `Verb-Noun -A x -B y` lines splatted or with parameters reordered."""
    keep = _AUTOMATIC | _param_names(text)
    keep |= {n.lower() for n in re.findall(r"(?<![\w$])-([A-Za-z_]\w*)", text)}
    targets = {n.lower() for n in _ASSIGN.findall(text)} - keep
    targets = {n for n in targets if not n.endswith("preference")}
    mapping = {n: _rand_name(rng) for n in sorted(targets)}

    def ren(m: re.Match[str]) -> str:
        new = mapping.get(m.group(2).lower())
        return m.group(1) + new if new else m.group()

    var = re.compile(r"(\$\{?)([A-Za-z_][A-Za-z0-9_]*)(?![\w:])")
    out = []
    for kind, piece in segments(text):
        out.append(var.sub(ren, piece) if kind in ("code", "dq") and mapping else piece)
    text = "".join(out)

    def splat(m: re.Match[str]) -> str:
        pairs = _PAIR.findall(m.group("args"))
        rng.shuffle(pairs)
        if rng.random() < 0.5:
            args = " ".join(f"-{k} {v}" for k, v in pairs)
            return f"{m.group('ind')}{m.group('cmd')} {args}"
        name = _rand_name(rng)
        vals = "; ".join(f"{k} = {v if v[0] in chr(39) + '$0123456789' else ps_quote(v)}"
                         for k, v in pairs)
        return f"{m.group('ind')}${name} = @{{ {vals} }}; {m.group('cmd')} @{name}"

    if "@'" in text or '@"' in text:  # here-strings: do not touch lines that may be inside one
        return text
    return _SPLAT_LINE.sub(splat, text)


# --- LAUNCHER ---------------------------------------------------------------------------------
_EXES = ("powershell", "powershell.exe", "PowerShell.exe", "POWERSHELL",
         r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe")
_ENC_FLAGS = ("-e", "-en", "-enc", "-ec", "-EncodedCommand", "-encodedcommand", "-EnC", "/enc",
              "/e", "-ENCOD")
_EXTRA_FLAGS = ("-nop", "-NoP", "-NoProfile", "-noni", "-NonInteractive", "-w hidden",
                "-W Hidden", "-WindowStyle Hidden", "-win hid", "-ep bypass", "-exec bypass",
                "-ExecutionPolicy Bypass", "-sta", "/nop", "-nol", "-NoLogo")


def encode_command(text: str) -> str:
    """Base64 of UTF-16LE, the form -EncodedCommand takes."""
    return base64.b64encode(text.encode("utf-16-le")).decode()


def launcher(text: str, rng: random.Random) -> str:
    """LAUNCHER family: a command line running `text`: powershell -enc, cmd /c wrappers, set +
    $env: and stdin forms (the last two only for one-line scripts without quotes or cmd
    metacharacters; otherwise -enc)."""
    exe = rng.choice(_EXES)
    flags = rng.sample(_EXTRA_FLAGS, rng.randint(0, 3))
    simple = "\n" not in text and not re.search(r'["%^&|<>]', text) and len(text) < 4000
    kind = rng.randrange(5) if simple else rng.choice((0, 1))
    if kind in (0, 1):
        cmd = " ".join([exe, *flags, rng.choice(_ENC_FLAGS), encode_command(text)])
        return cmd if kind == 0 else f"cmd.exe /c {cmd}" if rng.random() < 0.5 else f"cmd /c {cmd}"
    if kind == 2:  # environment variable read back by PowerShell
        var = _rand_name(rng)
        read = rng.choice([f"$env:{var}", f"(Get-Item env:{var}).Value", f"(gci env:{var}).Value"])
        inner = " ".join([exe, *flags, "-c", f"\"{read} | iex\""])
        return f'cmd /c "set {var}={text}&& {inner}"'
    if kind == 3:  # script on stdin
        inner = " ".join([exe, *flags, "-"])
        return f'cmd /c "echo {text} | {inner}"'
    return f"cmd.exe /c \"{exe} {' '.join(flags)} -c \"\"{text}\"\"\"".replace("  ", " ")


# --- the API ----------------------------------------------------------------------------------
_TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    "TOKEN": token_obfuscate,
    "STRING": string_obfuscate,
    "ENCODING": encoding_obfuscate,
    "COMPRESS": compress_obfuscate,
    "AST": ast_obfuscate,
    "LAUNCHER": launcher,
}


def obfuscate(text: str, rng: random.Random, families: Sequence[str] | None = None,
              layers: int = 1) -> tuple[str, list[str]]:
    """Apply `layers` transforms drawn from `families` (default: all) with `rng`.

    Returns (obfuscated text, the families applied, innermost first). LAUNCHER is only ever the
    last layer, since its output is a command line rather than a script. Deterministic for a
    given seed::

        >>> obfuscate("Get-Date", random.Random(1), ["STRING"])[1]
        ['STRING']
    """
    fams = [f.upper() for f in (families or FAMILIES)]
    unknown = [f for f in fams if f not in _TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown obfuscation families: {unknown}")
    applied: list[str] = []
    for i in range(max(1, layers)):
        last = i == max(1, layers) - 1
        choices = [f for f in fams if f != "LAUNCHER" or last] or fams
        fam = rng.choice(choices)
        text = _TRANSFORMS[fam](text, rng)
        applied.append(fam)
        if fam == "LAUNCHER":
            break
    return text, applied
