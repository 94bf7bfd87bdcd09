"""Sigma detection (as parsed by pySigma) -> a SQL boolean expression over one table, in DuckDB's
dialect or Spark SQL's.

    sql, expr = compile_condition(tree, "http")                    # DuckDB
    spark_sql, _ = compile_condition(tree, "http", dialect=SPARK)  # Spark SQL, same semantics

The compiler decides *what* to test; a :class:`Dialect` says how each test is spelled (quoting,
string literals, LIKE, regular expressions, casts, CIDR ranges), as pySigma backends do with
their token templates. Spark SQL differs from DuckDB in: backslash escapes in string literals
(doubled here), Java regular expressions (RE2 syntax translated by :func:`java_regex`), no
128-bit integers (IP numbers are DECIMAL(38,0)), ``startswith``/``endswith`` and backquoted
names.

Semantics (Sigma specification):
- strings match case-insensitively (both sides ``lower()``-ed) unless ``|cased``;
- ``*``/``?`` are Sigma wildcards (``%``/``_`` in LIKE); ``%``, ``_`` and ``\\`` of the value are
  escaped with ``ESCAPE '\\'``; plain, prefix, suffix and infix values use ``=``,
  ``starts_with``, ``ends_with`` and ``contains`` (no pattern at all);
- ``re`` is an unanchored RE2 search, case-sensitive unless ``|i``; ``m``/``s`` become inline
  flags;
- every leaf is two-valued (a missing field is *false*, never NULL), so ``not`` of a selection
  over a NULL field is true, as Sigma intends;
- ``gt``/``gte``/``lt``/``lte`` read a text as a number only when it is a finite decimal
  (``-1.5``, ``2e3``; not ``nan``, ``inf``, nor one with blanks around it);
- ``cidr`` tests an IP number column's range where there is one (IPv4 is ``::ffff:a.b.c.d``,
  schema.py), else the address text in any of its forms (an RE2 pattern, :func:`ip_text_regex`);
- keyword values (no field) are substring searches over the table's keyword columns
  (``mapping.KEYWORD_COLUMNS``).

Each condition also compiles to an expression for the rule engine (engine.Engine):
``["and"|"or", [Expr, ...]]``, ``["not", Expr]`` or ``["leaf", Leaf]``, a leaf being
``[column, kind, text, cased, sql, guard]``: a test of one column (``column`` None: of several,
evaluated per row). ``kind`` "eq", "pre", "suf" or "sub" is a literal test (equals, starts
with, ends with, contains ``text``; case-insensitive unless ``cased``) that the engine runs
in a multi-pattern automaton; "sql" is any other test, run as ``sql`` (also the SQL of literal
tests, for the engine's pure-DuckDB path) on the values that contain one of the ``guard``
literals (lower-cased; empty: on every value). Guards come from the value's literal parts, and
from regular expressions by parsing them.
"""

from __future__ import annotations

import re
import re._constants as _sre
import re._parser as _sre_parse
import warnings
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from threatscope.detect import mapping
from threatscope.detect.sqltext import Expr
from threatscope.sqlfn import sql_str


class CompileError(Exception):
    """The rule cannot be expressed over threatscope's data; the message is the reason."""


@dataclass(frozen=True)
class Dialect:
    """How one SQL dialect spells the compiler's tests (the DuckDB spelling is the default)."""

    name: str = "duckdb"
    text_type: str = "VARCHAR"
    double: str = "DOUBLE"
    starts_with: str = "starts_with"
    ends_with: str = "ends_with"
    contains: str = "contains"
    max_ip_num: int | None = None  # the largest IP number the dialect's IP columns hold

    def quote(self, name: str) -> str:
        return f'"{name}"'

    def string(self, s: str) -> str:
        return sql_str(s)

    def regex(self, text: str, pattern: str) -> str:
        """An unanchored search of RE2 ``pattern`` (with its inline flags) in ``text``."""
        return f"regexp_matches({text}, {self.string(pattern)})"

    def ip_range(self, num: str, lo: int, hi: int) -> str:
        """``num`` (an IP number column) is within [lo, hi]."""
        return f"{num} BETWEEN '{lo}'::UHUGEINT AND '{hi}'::UHUGEINT"

    def guarded(self, text: str, guard: list[str] | None, sql: str) -> str:
        """``sql``, a leaf's two-valued test of ``text``, run only where ``text`` holds one of
        the ``guard`` literals (lower-cased). DuckDB's text is the test alone: its engine
        (engine.Engine) checks guards over whole columns first."""
        return sql


class SparkDialect(Dialect):
    """Spark SQL (3.4+, ANSI mode or not). Strings stay in Spark's default literal syntax
    (not ``spark.sql.parser.escapedStringLiterals``, a session-wide setting); IP numbers are
    DECIMAL(38,0) (threatscope.spark.lake): a CIDR range reaching 10^38 (fc00::/7,
    fe80::/10) is tested on the address text instead (``source_ip`` is canonical)."""

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def string(self, s: str) -> str:
        # Spark reads backslash escapes in '...': double them, escape the quote with one
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def regex(self, text: str, pattern: str) -> str:
        return f"regexp_like({text}, {self.string(java_regex(pattern))})"

    def ip_range(self, num: str, lo: int, hi: int) -> str:
        return f"{num} BETWEEN {lo}BD AND {hi}BD"

    def guarded(self, text: str, guard: list[str] | None, sql: str) -> str:
        # Spark runs every rule's SQL on every row, and Java's regex engine is most of that
        # cost: a regular expression or LIKE runs only behind a substring test of the literal
        # it needs (the same lower() of the text for every leaf: Spark computes it once).
        # ASCII literals only: their lower case is the same in every locale.
        if not guard or not all(g.isascii() for g in guard):
            return sql
        need = " OR ".join(f"contains(lower({text}), {self.string(g)})" for g in guard)
        return f"(coalesce({need}, false) AND {sql})"


# IP numbers are DECIMAL(38,0) where rules meet them, in both dialects: in the lake (Parquet has
# no 128-bit integer) and in the Arrow tables the engine runs DuckDB's leaves on.
DUCKDB = Dialect(max_ip_num=10**38 - 1)
SPARK = SparkDialect(name="spark", text_type="STRING", starts_with="startswith",
                     ends_with="endswith", max_ip_num=10**38 - 1)
DIALECTS = {"duckdb": DUCKDB, "spark": SPARK}


def dialect_of(dialect: str | Dialect) -> Dialect:
    if isinstance(dialect, Dialect):
        return dialect
    try:
        return DIALECTS[dialect]
    except KeyError:
        raise ValueError(f"unknown SQL dialect {dialect!r} (known: {', '.join(DIALECTS)})") from None


class _Col:
    """A resolved field: SQL expression, DuckDB type, requirement key and the table column read."""

    def __init__(
        self, sql: str, dtype: str, key: str, num_sql: str | None = None, column: str = "",
        dialect: Dialect = DUCKDB, num_column: str | None = None,
    ):
        self.sql, self.dtype, self.key, self.num_sql = sql, dtype, key, num_sql
        self.column = column or key
        self.dialect, self.num_column = dialect, num_column

    @property
    def is_text(self) -> bool:
        return self.dtype == "VARCHAR"

    @property
    def text(self) -> str:
        return self.sql if self.is_text else f"CAST({self.sql} AS {self.dialect.text_type})"


def resolve_field(field: str, table: str, dialect: Dialect = DUCKDB) -> _Col:
    """The column (or header lookup) a mapped Sigma field name denotes in ``table``."""
    cols = mapping.columns(table)
    q = dialect.quote
    if field in cols:
        num = mapping.IP_NUM_COLUMNS.get(field)
        if num in cols:
            return _Col(q(field), cols[field], field, q(num), column=field, dialect=dialect,
                        num_column=num)
        return _Col(q(field), cols[field], field, dialect=dialect)
    inner = mapping.JSON_FIELDS.get(table)
    if inner and inner[0] in cols and field.lower().startswith(inner[1]):
        column, prefix, lower = inner
        name = field[len(prefix):].lower() if lower else field[len(prefix):]
        if not name or any(c in name for c in "\"'\\") or any(ord(c) < 33 for c in name):
            raise CompileError(f"invalid field name {field!r}")
        key = f"{column}.{name}"  # a field column (sqltext.field_column), added when matching
        return _Col(q(key), "VARCHAR", key, dialect=dialect)
    raise CompileError(f"unknown field {field!r} for table {table}")


def compile_condition(node, table: str, dialect: str | Dialect = DUCKDB) -> tuple[str, Expr]:
    """SQL (in ``dialect``: "duckdb" or "spark") and expression (see the module doc) of a
    postprocessed pySigma condition tree.

        sql, expr = compile_condition(rule.detection.parsed_condition[0].parsed, "http")
    """
    d = dialect_of(dialect)
    if isinstance(node, ConditionAND | ConditionOR):
        parts = [compile_condition(a, table, d) for a in node.args]
        op = "and" if isinstance(node, ConditionAND) else "or"
        return _group(op, parts)
    if isinstance(node, ConditionNOT):
        sql, expr = compile_condition(node.args[0], table, d)
        return f"(NOT {sql})", ["not", expr]
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _field_value(resolve_field(node.field, table, d), node.value, table)
    if isinstance(node, ConditionValueExpression):
        return _keyword(node.value, table, d)
    raise CompileError(f"unsupported condition element {type(node).__name__}")


def _group(op: str, parts: list[tuple[str, Expr]]) -> tuple[str, Expr]:
    if len(parts) == 1:
        return parts[0]
    return "(" + f" {op.upper()} ".join(p[0] for p in parts) + ")", [op, [p[1] for p in parts]]


def _leaf(column: str | None, sql: str, kind: str = "sql", text: str = "", cased: bool = False,
          guard: list[str] | None = None) -> tuple[str, Expr]:
    return sql, ["leaf", [column, kind, text, cased, sql, sorted(guard or ())]]


# Literals scoring below this (about: shorter than 3 characters) occur in almost every row: such
# a requirement filters nothing and is treated as "no requirement" (the expression then runs on
# every row by itself). In URL columns a character that benign URLs rarely carry (quote, angle
# bracket, semicolon, ...) counts as 3, so `'` or `;` still make a useful requirement there.
MIN_SCORE = 3
_URL_KEYS = {"url_original", "url_path", "url_query", "url_decoded"}
_URL_COMMON = set("abcdefghijklmnopqrstuvwxyz0123456789/.-_?=&%+~:, ")


# What ordinary traffic looks like (lower-cased), per column family: a literal found here would
# let most rows through (e.g. 'php', 'windows', 'chr' of Chrome), so it scores 0. Only speed
# depends on this list, never which rows match.
_BENIGN_URLS = (
    "/index.php?id=1&page=2&search=summer+shoes&lang=en&sort=price_asc&filter=brand%3dacme"
    "&utm_source=newsletter&utm_medium=email&utm_campaign=spring /wp-content/uploads/2018/05/"
    "photo-1.jpg /wp-login.php /wp-admin/admin-ajax.php /static/js/jquery.min.js?v=3.3.1 "
    "/images/logo.png /css/style.css /api/v1/users/42/orders?limit=50&offset=100&format=json "
    "/favicon.ico /robots.txt /sitemap.xml /login.php /download.php?file=report.pdf /?p=123 "
    "/blog/2018/05/window-cleaning-tips/ /upload/files/ /search?q=hello+world "
    "/products/view.aspx?item=7 /default.aspx /home/index.html /en-us/about/contact-us "
    "/cgi-bin/test.cgi /feed/ /xmlrpc.php /user/login?destination=/node/1 /rss.xml "
    "/assets/fonts/roboto.woff2 /ajax/load_more?offset=20 /print.php?type=text "
)
_BENIGN_UAS = (
    "mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) "
    "chrome/66.0.3359.139 safari/537.36 edge/17.17134 mozilla/5.0 (iphone; cpu iphone os 11_3 "
    "like mac os x) applewebkit/605.1.15 (khtml, like gecko) version/11.0 mobile/15e148 "
    "safari/604.1 mozilla/5.0 (x11; ubuntu; linux x86_64; rv:59.0) gecko/20100101 firefox/59.0 "
    "mozilla/5.0 (compatible; googlebot/2.1; +http://www.google.com/bot.html) mozilla/5.0 "
    "(compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) mozilla/5.0 (macintosh; intel "
    "mac os x 10_13_4) applewebkit/605.1.15 (khtml, like gecko) version/11.1 safari/605.1.15 "
    "mozilla/5.0 (linux; android 8.0.0; sm-g960f build/r16nw) applewebkit/537.36 (khtml, like "
    "gecko) chrome/66.0.3359.126 mobile safari/537.36 mozilla/4.0 (compatible; msie 8.0; "
    "windows nt 6.1; trident/4.0; .net clr 2.0.50727) curl/7.58.0 wget/1.19.4 (linux-gnu) "
    "python-requests/2.18.4 go-http-client/1.1 java/1.8.0_151 okhttp/3.10.0 "
    "apache-httpclient/4.5.5 (java/1.8.0_151) "
)
_BENIGN_OTHER = (
    '{"host": "www.example.org", "accept": "text/html,application/xhtml+xml,application/xml;'
    'q=0.9,*/*;q=0.8", "accept-encoding": "gzip, deflate, br", "accept-language": "en-us,en;'
    'q=0.5", "connection": "keep-alive", "content-type": "application/x-www-form-urlencoded; '
    'charset=utf-8", "cookie": "sessionid=abc123; csrftoken=xyz", "cache-control": "no-cache"} '
    "username=alice&password=secret&remember=on&submit=login "
)
_BENIGN = {
    "url": _BENIGN_URLS,
    "user_agent_original": _BENIGN_UAS,
    "http_request_referrer": "https://www.example.org" + _BENIGN_URLS,
    "raw": '203.0.113.7 - - [10/may/2018:13:55:36 +0000] "get http/1.1" 200 512 "-" '
    + _BENIGN_URLS + _BENIGN_UAS + _BENIGN_OTHER,
}


def _benign(key: str) -> str:
    if key in _URL_KEYS:
        return _BENIGN["url"]
    return _BENIGN.get(key, _BENIGN_OTHER + _BENIGN_UAS)


def literal_score(key: str, lit: str) -> int:
    if lit in _benign(key):
        return 0
    if key in _URL_KEYS:
        return sum(1 if c in _URL_COMMON else 3 for c in lit)
    return len(lit)


def _set_score(key: str, lits) -> int:
    return min(literal_score(key, x) for x in lits)


def _guard(key: str, lits) -> list[str] | None:
    """``lits`` as a leaf's guard, or None when one of them is too common to filter anything."""
    lits = sorted(set(lits))
    if not lits or _set_score(key, lits) < MIN_SCORE:
        return None
    return lits


def _keyword(value, table: str, d: Dialect) -> tuple[str, Expr]:
    """A keyword value (no field): any of the table's keyword columns holds it."""
    cols = mapping.KEYWORD_COLUMNS.get(table)
    if not cols:
        raise CompileError(f"keyword rules are not supported for table {table}")
    if isinstance(value, SigmaNumber | SigmaBool):
        value = SigmaString(str(value).lower())
    if isinstance(value, SigmaString):
        if not value.startswith(SpecialChars.WILDCARD_MULTI):
            value = SpecialChars.WILDCARD_MULTI + value
        if not value.endswith(SpecialChars.WILDCARD_MULTI):
            value = value + SpecialChars.WILDCARD_MULTI
    elif not isinstance(value, SigmaRegularExpression | SigmaExpansion):
        raise CompileError(f"unsupported keyword value type {type(value).__name__}")
    return _group("or", [_field_value(resolve_field(c, table, d), value, table) for c in cols])


def _two_valued(sql: str) -> str:
    return f"coalesce({sql}, false)"


def _field_value(col: _Col, value, table: str) -> tuple[str, Expr]:
    if isinstance(value, SigmaExpansion):  # base64offset, windash: alternatives, always OR
        return _group("or", [_field_value(col, v, table) for v in value.values])
    if isinstance(value, SigmaString):  # includes SigmaCasedString
        return _string(col, value, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaNull):
        return _leaf(col.column, f"({col.sql} IS NULL)")
    if isinstance(value, SigmaExists):
        return _leaf(col.column, f"({col.sql} IS {'NOT ' if value.exists else ''}NULL)")
    if isinstance(value, SigmaBool):
        return _string(col, SigmaString("true" if value.boolean else "false"), cased=False)
    if isinstance(value, SigmaCompareExpression):
        return _leaf(col.column, _compare(col, value))
    if isinstance(value, SigmaTimestampPart):  # |hour, |day, ...: a number, but not equality
        raise CompileError(f"modifier |{value.timestamp_part.name.lower()} is not supported")
    if isinstance(value, SigmaNumber):
        if col.is_text:
            return _string(col, SigmaString(str(value.number)), cased=False)
        return _leaf(col.column, _two_valued(f"{col.sql} = {_num(value)}"))
    if isinstance(value, SigmaRegularExpression):
        return _regex(col, value)
    if isinstance(value, SigmaCIDRExpression):
        return _cidr(col, value)
    if isinstance(value, SigmaFieldReference):
        d = col.dialect
        other = resolve_field(value.field, table, d)
        a, b = f"lower({col.text})", f"lower({other.text})"
        if value.starts_with and value.ends_with:
            sql = f"{d.contains}({a}, {b})"
        elif value.starts_with:
            sql = f"{d.starts_with}({a}, {b})"
        elif value.ends_with:
            sql = f"{d.ends_with}({a}, {b})"
        else:
            sql = f"{a} = {b}"
        return _leaf(None, _two_valued(sql))  # two columns: evaluated per row
    raise CompileError(f"unsupported value type {type(value).__name__} (modifier not supported)")


def _num(value: SigmaNumber) -> str:
    n = value.number
    return repr(n) if isinstance(n, float) else str(int(n))


_OPS = {
    CompareOperators.LT: "<",
    CompareOperators.LTE: "<=",
    CompareOperators.GT: ">",
    CompareOperators.GTE: ">=",
}


# A text compared as a number (|gt, |lt, ...) must be a finite decimal, not whatever a cast
# reads: 'nan' and 'inf' (which sort above every number), blanks around it, DuckDB's '1_0' or
# Java's '1d' would make a text a number in one dialect or in both.
_DECIMAL = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_MAX_DOUBLE = "1.7976931348623157e308"  # '1e999' is a decimal too, but casts to infinity


def _compare(col: _Col, value: SigmaCompareExpression) -> str:
    op = _OPS.get(value.op)
    if op is None:
        op = "<>"  # CompareOperators.NEQ (the `neq` modifier)
    n = _num(value.number)
    if not col.is_text:
        return _two_valued(f"{col.sql} {op} {n}")
    d = col.dialect
    x = f"(CASE WHEN {d.regex(col.sql, _DECIMAL)} THEN TRY_CAST({col.sql} AS {d.double}) END)"
    return _two_valued(f"{x} {op} {n} AND abs({x}) <= {_MAX_DOUBLE}")


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lower_lit(s: str, d: Dialect) -> str:
    # Python and SQL agree on ASCII case mapping; leave anything else to the SQL lower()
    return d.string(s.lower()) if s.isascii() else f"lower({d.string(s)})"


def _string(col: _Col, value: SigmaString, cased: bool) -> tuple[str, Expr]:
    parts = list(value.s)
    for p in parts:
        if isinstance(p, Placeholder):
            raise CompileError(f"placeholder %{p.name}% has no value (give it one under "
                               "[detect.placeholders] in the workspace's config.toml)")
    d = col.dialect
    x = col.text if cased else f"lower({col.text})"

    def lit(s: str) -> str:
        return d.string(s) if cased else _lower_lit(s, d)

    strs = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if not isinstance(p, str)]
    star = SpecialChars.WILDCARD_MULTI
    kind = "sql"
    if not specials:
        sql, kind = f"{x} = {lit(''.join(strs))}", "eq"
    elif all(p is star for p in parts):
        sql = f"{col.sql} IS NOT NULL"
    elif len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(parts[1], str):
        sql, kind = f"{d.contains}({x}, {lit(parts[1])})", "sub"
    elif len(parts) == 2 and parts[1] is star and isinstance(parts[0], str):
        sql, kind = f"{d.starts_with}({x}, {lit(parts[0])})", "pre"
    elif len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
        sql, kind = f"{d.ends_with}({x}, {lit(parts[1])})", "suf"
    else:
        pat = "".join(
            _like_escape(p) if isinstance(p, str) else ("%" if p is star else "_") for p in parts
        )
        sql = f"{x} LIKE {lit(pat)} ESCAPE {d.string(chr(92))}"
    sql = _two_valued(sql)
    text = "".join(strs)
    # a literal test the engine's automaton runs (of a text column, a non-empty literal; the
    # engine lower-cases it as DuckDB's lower() does)
    if kind != "sql" and col.is_text and col.sql == d.quote(col.column) and text:
        return _leaf(col.column, sql, kind, text, cased)
    runs = [r for s in strs for r in _ascii_runs(s)] if col.is_text else []
    guard = _guard(col.key, [max(runs, key=lambda r: literal_score(col.key, r))]) if runs else None
    return _leaf(col.column, d.guarded(col.text, guard, sql), guard=guard)


def _ascii_runs(s: str) -> list[str]:
    """Maximal ASCII runs of the lower-cased text (non-ASCII case mapping is left to DuckDB)."""
    runs, run = [], ""
    for ch in s.lower():
        if ch.isascii():
            run += ch
        else:
            runs.append(run)
            run = ""
    runs.append(run)
    return [r for r in runs if r]


def regex_literals(pattern: str, key: str = "") -> frozenset[str] | None:
    """Lower-cased literals of which one occurs in every text ``pattern`` matches, or None.

    Parsed with Python's regex parser (RE2 syntax is a subset for what matters here); anything
    it does not understand gives None, which only costs speed, never a missed match.
    """
    if "[:" in pattern or "\\Q" in pattern:  # POSIX classes / quoting: Python reads them otherwise
        return None
    try:
        with warnings.catch_warnings():  # Python's future set syntax ("[[", "&&"): not RE2's
            warnings.simplefilter("ignore", FutureWarning)
            tree = _sre_parse.parse(pattern)
    except Exception:  # noqa: BLE001 - unparseable here means "no literal", not an error
        return None
    return _seq_literals(list(tree), key)


def _char(op, av) -> str | None:
    if op is _sre.LITERAL:
        c = chr(av).lower()
        return c if c.isascii() else None
    if op is _sre.IN and av and all(o is _sre.LITERAL for o, _ in av):
        cs = {chr(a).lower() for _, a in av}  # [Ss] and the like: one letter, any case
        if len(cs) == 1 and next(iter(cs)).isascii():
            return cs.pop()
    return None


def _seq_literals(items, key: str) -> frozenset[str] | None:
    cands: list[frozenset[str]] = []
    run = ""
    for op, av in items:
        ch = _char(op, av)
        if ch is not None:
            run += ch
            continue
        if op is _sre.AT:  # zero-width: neighbours stay adjacent
            continue
        if run:
            cands.append(frozenset([run]))
            run = ""
        sub = None
        if op is _sre.SUBPATTERN:
            sub = _seq_literals(av[3], key)
        elif op is _sre.ATOMIC_GROUP:
            sub = _seq_literals(av, key)
        elif op is _sre.BRANCH:
            alts = [_seq_literals(b, key) for b in av[1]]
            sub = None if any(a is None for a in alts) else frozenset().union(*alts)
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and av[0] >= 1:
            sub = _seq_literals(av[2], key)
        if sub:
            cands.append(sub)
    if run:
        cands.append(frozenset([run]))
    cands = [c for c in cands if _set_score(key, c) >= MIN_SCORE]
    if not cands:
        return None
    return max(cands, key=lambda c: (_set_score(key, c), -len(c)))


def _regex(col: _Col, value: SigmaRegularExpression) -> tuple[str, Expr]:
    if not isinstance(value.regexp, SigmaString):  # `|re: 123`, `|re: null` as YAML reads them
        raise CompileError(f"a regular expression must be a string, not {value.regexp!r}")
    if value.regexp.contains_placeholder():
        raise CompileError("placeholders in regular expressions are not supported")
    flags = ""
    if SigmaRegularExpressionFlag.IGNORECASE in value.flags:
        flags += "i"
    if SigmaRegularExpressionFlag.MULTILINE in value.flags:
        flags += "m"
    if SigmaRegularExpressionFlag.DOTALL in value.flags:
        flags += "s"
    return _regex_leaf(col, value.regexp.to_plain(regex=True), flags)


def _regex_leaf(col: _Col, pattern: str, flags: str = "") -> tuple[str, Expr]:
    lits = regex_literals(pattern, col.key) if col.is_text else None
    if flags:
        pattern = f"(?{flags}){pattern}"
    sql = _two_valued(col.dialect.regex(col.text, pattern))
    guard = _guard(col.key, lits) if lits else None
    return _leaf(col.column, col.dialect.guarded(col.text, guard, sql), guard=guard)


_V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96, how schema stores IPv4 in *_ip_num
_V4_MAPPED_NET = IPv6Network((_V4_MAPPED, 96))


def _cidr(col: _Col, value: SigmaCIDRExpression) -> tuple[str, Expr]:
    net = value.network
    lo = int(net.network_address) + (_V4_MAPPED if isinstance(net, IPv4Network) else 0)
    hi = lo + net.num_addresses - 1
    top = col.dialect.max_ip_num
    if col.num_sql is not None and (top is None or hi <= top):
        sql = col.dialect.ip_range(col.num_sql, lo, hi)
        return _leaf(col.num_column, _two_valued(sql))
    if not col.is_text:
        raise CompileError(f"cidr on non-text column {col.key}")
    # No numeric twin (or a range beyond it): the address text, in any of its forms. Not
    # pySigma's prefix wildcards of the canonical text: 'a:b::*' of a:b::/80 holds for
    # a:b::1:0:0:1 too, and Windows logs write ::1 as 0:0:0:0:0:0:0:1.
    pattern = ip_text_regex(net)
    if col.num_sql is not None and net.overlaps(_V4_MAPPED_NET):  # ::/0, ::/1: IPv4 in it
        pattern = f"{pattern}|{ip_text_regex(IPv4Network((0, 0)))}"
    return _regex_leaf(col, pattern)


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_HEX_DIGIT = "[0-9a-fA-F]"


def _either(alternatives: list[str]) -> str:
    return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"


def ip_text_regex(net: IPv4Network | IPv6Network) -> str:
    """An anchored RE2 pattern of the texts of every address in ``net``, as Python's
    ipaddress reads them: IPv4 dotted quads; IPv6 in any case, with or without leading zeros
    and ``::``, an IPv4 tail (``::ffff:1.2.3.4``) or a zone (``fe80::1%eth0``)."""
    addr, plen = int(net.network_address), net.prefixlen
    if net.version == 4:
        return f"^{_ipv4_regex(addr, plen)}$"
    groups = []  # per 16-bit group: its texts, and whether it may be 0 (left out in '::')
    for i in range(8):
        free = 16 - min(16, max(0, plen - 16 * i))
        first = (addr >> (112 - 16 * i)) & 0xFFFF & ~((1 << free) - 1)
        groups.append((_hex_group(first, free), first == 0))
    tail = _ipv4_regex(addr & 0xFFFFFFFF, max(0, plen - 96))
    forms = _ipv6_forms(groups, "") + _ipv6_forms(groups[:6], tail)
    return f"^{_either(forms)}(?:%[^%]+)?$"


def _ipv4_regex(addr: int, plen: int) -> str:
    octets = []
    for i in range(4):
        free = 8 - min(8, max(0, plen - 8 * i))
        first = (addr >> (24 - 8 * i)) & 0xFF & ~((1 << free) - 1)
        octets.append(_OCTET if free == 8 else
                      _either([str(v) for v in range(first, first + (1 << free))]))
    return r"\.".join(octets)


def _hex_group(first: int, free: int) -> str:
    """The texts (1 to 4 hex digits) of the values ``first`` .. ``first + 2**free - 1``."""
    if free == 16:
        return _HEX_DIGIT + "{1,4}"
    nibbles = []
    for k in range(4):
        shift = 12 - 4 * k
        v = (first >> shift) & 0xF
        nibbles.append(range(v, v + (1 << min(4, max(0, free - shift)))))

    def digit(values: range) -> str:
        if len(values) == 16:
            return _HEX_DIGIT
        chars = "".join(sorted({c for x in values for c in (f"{x:x}", f"{x:X}")}))
        return chars if len(chars) == 1 else f"[{chars}]"

    texts = []
    for skip in range(4):  # leading zero digits a text leaves out
        if skip and 0 not in nibbles[skip - 1]:
            break
        texts.append("".join(digit(n) for n in nibbles[skip:]))
    return _either(texts)


def _ipv6_forms(groups: list[tuple[str, bool]], tail: str) -> list[str]:
    """The ways to write ``groups`` (then ``tail``, an IPv4 text): all of them, or with '::'
    for a run of one or more groups that may be 0."""
    n, sep = len(groups), ":" if tail else ""
    forms = [":".join(g for g, _ in groups) + sep + tail]
    for before in range(n):
        for after in range(n - before):
            if all(zero for _, zero in groups[before:n - after]):
                right = ":".join(g for g, _ in groups[n - after:])
                forms.append(":".join(g for g, _ in groups[:before]) + "::" + right
                             + (sep if right else "") + tail)
    return forms


# -- RE2 -> Java regular expressions (Spark's rlike / regexp_like) -----------------------------
_POSIX = {"alnum": "Alnum", "alpha": "Alpha", "ascii": "ASCII", "blank": "Blank",
          "cntrl": "Cntrl", "digit": "Digit", "graph": "Graph", "lower": "Lower",
          "print": "Print", "punct": "Punct", "space": "Space", "upper": "Upper",
          "word": "Alnum_", "xdigit": "XDigit"}
_REPEAT = re.compile(r"\{\d+(,\d*)?\}")
_INLINE_M = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z-]*[:)]")


def java_regex(pattern: str) -> str:
    """``pattern`` (RE2, as DuckDB's regexp_matches reads it) as a Java regex matching the same
    texts: only ``\\n`` ends a line (``(?d)``), ``(?i)`` folds Unicode case (``(?u)``), ``$``
    outside multi-line mode is the end of the text, ``[`` and ``&`` in a class are literal,
    POSIX classes, ``\\s``/``\\v`` as RE2 reads them, group names dropped (RE2 has no
    back-references), ``{`` that is no repetition literal."""
    multiline = bool(_INLINE_M.search(pattern))
    out = ["(?du)"]
    i, n, in_class, first = 0, len(pattern), False, False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e, first = pattern[i + 1], False
            if e == "Q":  # \Q...\E: literal, copied as is (Java reads it alike)
                end = pattern.find("\\E", i + 2)
                end = n if end < 0 else end + 2
                out.append(pattern[i:end])
                i = end
                continue
            if e == "s":
                out.append("\\t\\n\\f\\r " if in_class else "[\\t\\n\\f\\r ]")
            elif e == "S" and not in_class:
                out.append("[^\\t\\n\\f\\r ]")
            elif e == "v":
                out.append("\\x0B")
            elif e in "pP" and i + 2 < n and pattern[i + 2] == "{":
                end = pattern.find("}", i + 3)
                name = pattern[i + 3:end] if end > 0 else ""
                if len(name) > 2 and not name.startswith(("Is", "In", "^")):
                    name = "Is" + name  # a script: \p{Greek} is \p{IsGreek} in Java
                out.append(f"\\{e}{{{name}}}")
                i = (end if end > 0 else n) + 1
                continue
            else:
                out.append(c + e)
            i += 2
            continue
        if in_class:
            if c == "]" and not first:
                in_class = False
                out.append(c)
            elif c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2:end] if end > 0 else ""
                neg = name.startswith("^")
                cls = _POSIX.get(name.lstrip("^"))
                if cls is None:
                    out.append("\\[")
                else:
                    out.append(f"\\{'P' if neg else 'p'}{{{cls}}}" if cls != "Alnum_"
                               else ("[^\\p{Alnum}_]" if neg else "\\p{Alnum}_"))
                    i = end + 2
                    first = False
                    continue
            elif c in "[&]":
                out.append("\\" + c)
            else:
                out.append(c)
            first = False
            i += 1
            continue
        if c == "[":
            in_class, first = True, True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
                continue
            out.append(c)
        elif c == "(" and pattern.startswith(("(?P<", "(?<"), i) and not \
                pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(")  # a named group: its name only matters to back-references
            i = pattern.index(">", i) + 1
            continue
        elif c == "{" and not _REPEAT.match(pattern, i):
            out.append("\\{")
        elif c == "$" and not multiline:
            out.append("\\z")
        else:
            out.append(c)
        i += 1
    return "".join(out)
