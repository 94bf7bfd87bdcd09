"""Sigma detection (as parsed by pySigma) -> a DuckDB SQL boolean expression over one table.

    sql, need = compile_condition(tree, "http")

Semantics (Sigma specification):
- strings match case-insensitively (both sides ``lower()``-ed) unless ``|cased``;
- ``*``/``?`` are Sigma wildcards (``%``/``_`` in LIKE); ``%``, ``_`` and ``\\`` of the value are
  escaped with ``ESCAPE '\\'``; plain, prefix, suffix and infix values use ``=``,
  ``starts_with``, ``ends_with`` and ``contains`` (no pattern at all);
- ``re`` is an unanchored RE2 search, case-sensitive unless ``|i``; ``m``/``s`` become inline
  flags;
- every leaf is two-valued (a missing field is *false*, never NULL), so ``not`` of a selection
  over a NULL field is true, as Sigma intends;
- keyword values (no field) are substring searches over the table's keyword columns
  (``mapping.KEYWORD_COLUMNS``).

Each expression also yields a *requirement* for the one-pass prefilter (``Req``): a set of
``(column, literal)`` pairs and a list of "loose" SQL parts such that any row the expression
matches contains one of the literals (lower-cased substring of that column) or satisfies one of
the loose parts. Literals of ``re`` values are found by parsing the regular expression.
"""

from __future__ import annotations

import re._constants as _sre
import re._parser as _sre_parse
from ipaddress import IPv4Network

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
    SpecialChars,
)

from threatscope.detect import mapping
from threatscope.detect.sqltext import Atom, Expr, Req, re2_escape
from threatscope.sqlfn import sql_str

Need = frozenset[tuple[str, str]] | None  # literals of a leaf (None: no useful literal)



class CompileError(Exception):
    """The rule cannot be expressed over threatscope's data; the message is the reason."""


class _Col:
    """A resolved field: SQL expression, DuckDB type, requirement key and the table column read."""

    def __init__(
        self, sql: str, dtype: str, key: str, num_sql: str | None = None, column: str = ""
    ):
        self.sql, self.dtype, self.key, self.num_sql = sql, dtype, key, num_sql
        self.column = column or key

    @property
    def is_text(self) -> bool:
        return self.dtype == "VARCHAR"

    @property
    def text(self) -> str:
        return self.sql if self.is_text else f"CAST({self.sql} AS VARCHAR)"


def resolve_field(field: str, table: str) -> _Col:
    """The column (or header lookup) a mapped Sigma field name denotes in ``table``."""
    cols = mapping.columns(table)
    if field in cols:
        num = mapping.IP_NUM_COLUMNS.get(field)
        if num in cols:
            return _Col(f'"{field}"', cols[field], field, f'"{num}"', column=field)
        return _Col(f'"{field}"', cols[field], field)
    inner = mapping.JSON_FIELDS.get(table)
    if inner and inner[0] in cols and field.lower().startswith(inner[1]):
        column, prefix, lower = inner
        name = field[len(prefix):].lower() if lower else field[len(prefix):]
        if not name or any(c in name for c in "\"'\\") or any(ord(c) < 33 for c in name):
            raise CompileError(f"invalid field name {field!r}")
        key = f"{column}.{name}"  # a field column (sqltext.field_column), added when matching
        return _Col(f'"{key}"', "VARCHAR", key)
    raise CompileError(f"unknown field {field!r} for table {table}")


def compile_condition(node, table: str) -> tuple[str, Req]:
    """SQL and prefilter requirement of a postprocessed pySigma condition tree."""
    if isinstance(node, ConditionAND | ConditionOR):
        parts = [compile_condition(a, table) for a in node.args]
        op = " AND " if isinstance(node, ConditionAND) else " OR "
        sql = "(" + op.join(p[0] for p in parts) + ")"
        if isinstance(node, ConditionAND):
            return sql, _best_of_and(sql, [p[1] for p in parts])
        return sql, req_union([p[1] for p in parts])
    if isinstance(node, ConditionNOT):
        sql, _ = compile_condition(node.args[0], table)
        sql = f"(NOT {sql})"
        return sql, (frozenset(), (("sql", sql),))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        sql, need = _field_value(resolve_field(node.field, table), node.value, table)
    elif isinstance(node, ConditionValueExpression):
        sql, need = _keyword(node.value, table)
    else:
        raise CompileError(f"unsupported condition element {type(node).__name__}")
    return sql, _leaf_req(sql, need)


def split_or(node) -> list:
    """The disjuncts of a condition tree (nested ORs flattened; any other node is one)."""
    if isinstance(node, ConditionOR):
        return [d for a in node.args for d in split_or(a)]
    return [node]


def condition_columns(node, table: str) -> frozenset[str]:
    """The table columns an expression reads (an expression of one column can be evaluated once
    per distinct value of that column)."""
    if isinstance(node, ConditionAND | ConditionOR | ConditionNOT):
        return frozenset().union(*(condition_columns(a, table) for a in node.args))
    if isinstance(node, ConditionValueExpression):
        return frozenset(mapping.KEYWORD_COLUMNS.get(table, ()))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        col = resolve_field(node.field, table)
        if isinstance(node.value, SigmaFieldReference):
            return frozenset({col.column, resolve_field(node.value.field, table).column})
        if isinstance(node.value, SigmaCIDRExpression) and col.num_sql is not None:
            return frozenset({col.num_sql.strip('"')})
        return frozenset({col.column})
    raise CompileError(f"unsupported condition element {type(node).__name__}")


# An expression over "atoms" (sub-expressions reading one column each, see decompose):
# ["atom", index] | ["not", Expr] | ["and", [Expr, ...]] | ["or", [Expr, ...]]


def decompose(node, table: str, atoms: list[Atom]) -> tuple[Expr, str, Req]:
    """Expression, SQL and requirement of a condition reading several columns, its sub-expressions
    over one column each appended to ``atoms`` (the stage evaluates those once per distinct value
    of their column). The SQL and requirement are those of :func:`compile_condition`."""
    if isinstance(node, ConditionNOT):
        expr, sql, _ = decompose(node.args[0], table, atoms)
        sql = f"(NOT {sql})"
        return ["not", expr], sql, (frozenset(), (("sql", sql),))
    if isinstance(node, ConditionAND | ConditionOR):
        return decompose_group(_flatten(node, type(node)), isinstance(node, ConditionAND), table, atoms)
    if isinstance(node, ConditionValueExpression):
        return decompose_group([node], False, table, atoms)
    sql, req = compile_condition(node, table)  # a field compared with another field
    cols = condition_columns(node, table)
    atoms.append((next(iter(cols)) if len(cols) == 1 else None, sql, req))
    return ["atom", len(atoms) - 1], sql, req


def decompose_group(
    nodes: list, is_and: bool, table: str, atoms: list[Atom]
) -> tuple[Expr, str, Req]:
    """:func:`decompose` of the AND (``is_and``) or OR of ``nodes``."""
    # single-column children (and, under OR, each column's part of a keyword) are grouped
    # into one atom per column
    groups: dict[str, list[tuple[str, Req]]] = {}
    items: list = []
    for a in nodes:
        cols = condition_columns(a, table)
        if len(cols) == 1 and not isinstance(a, ConditionNOT):
            pieces = [(next(iter(cols)), *compile_condition(a, table))]
        elif not is_and and isinstance(a, ConditionValueExpression):
            pieces = [(c, sql, _leaf_req(sql, n)) for c, sql, n in _keyword_parts(a.value, table)]
        else:
            items.append(a)
            continue
        for col, sql, req in pieces:
            if col not in groups:
                groups[col] = []
                items.append(col)
            groups[col].append((sql, req))
    subs = []
    for item in items:
        if isinstance(item, str):
            parts = groups[item]
            sql, req = parts[0] if len(parts) == 1 else _combine(is_and, parts)
            atoms.append((item, sql, req))
            subs.append((["atom", len(atoms) - 1], sql, req))
        else:
            subs.append(decompose(item, table, atoms))
    sql, req = _combine(is_and, [(x[1], x[2]) for x in subs]) if len(subs) > 1 else subs[0][1:]
    return (["and" if is_and else "or", [x[0] for x in subs]], sql, req)


def _flatten(node, kind) -> list:
    return [x for a in node.args for x in (_flatten(a, kind) if isinstance(a, kind) else [a])]


def _combine(is_and: bool, parts: list[tuple[str, Req]]) -> tuple[str, Req]:
    sql = "(" + (" AND " if is_and else " OR ").join(p[0] for p in parts) + ")"
    if is_and:
        return sql, _best_of_and(sql, [p[1] for p in parts])
    return sql, req_union([p[1] for p in parts])


def _leaf_req(sql: str, need) -> Req:
    """Need of a leaf -> Req. A ("re", key, pattern) need (no useful literal) is merged into its
    column's scan; a list is an OR of needs; None makes the leaf SQL itself the requirement."""
    if need is None:
        return frozenset(), (("sql", sql),)
    items = need if isinstance(need, list) else [need]
    lits = frozenset().union(*(n for n in items if isinstance(n, frozenset)))
    return lits, tuple(n for n in items if isinstance(n, tuple))


def req_union(reqs: list[Req]) -> Req:
    """Requirement of an OR: any literal of any part, or any loose part."""
    lits = frozenset().union(*(r[0] for r in reqs))
    loose = tuple(dict.fromkeys(x for r in reqs for x in r[1]))
    return lits, loose


def _best_of_and(sql: str, reqs: list[Req]) -> Req:
    """For AND any child's requirement is necessary: keep the cheapest, most selective one.

    Cost: SQL loose parts (run on every row) first, then regex loose parts (merged into one
    scan per column), then the weakest literal."""
    def cost(r: Req):
        n_sql = sum(1 for x in r[1] if x[0] == "sql")
        # a negation is true for almost every row: the worst requirement there is
        n_not = sum(1 for x in r[1] if x[0] == "sql" and x[1].startswith("(NOT "))
        score = min((literal_score(k, lit) for k, lit in r[0]), default=0)
        return (n_not, n_sql, len(r[1]) - n_sql, -score, len(r[0]))

    best = min(reqs, key=cost)
    if sum(1 for x in best[1] if x[0] == "sql") > 1:  # the whole AND is a cheaper test
        return frozenset(), (("sql", sql),)
    return best


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


def _need(key: str, lits) -> Need:
    lits = frozenset(lits)
    if not lits or _set_score(key, lits) < MIN_SCORE:
        return None
    return frozenset((key, x) for x in lits)


def _or_needs(needs: list):
    """Need of an OR of leaves: all of theirs, when every leaf has one."""
    if any(n is None for n in needs):
        return None
    return [x for n in needs for x in (n if isinstance(n, list) else [n])]


def _keyword_parts(value, table: str) -> list[tuple[str, str, Need]]:
    """(column, SQL, need) of a keyword value for each keyword column (any of them may hold it)."""
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
    return [(c, *_field_value(resolve_field(c, table), value, table)) for c in cols]


def _keyword(value, table: str) -> tuple[str, Need]:
    parts = _keyword_parts(value, table)
    sql = "(" + " OR ".join(p[1] for p in parts) + ")" if len(parts) > 1 else parts[0][1]
    return sql, _or_needs([p[2] for p in parts])


def _two_valued(sql: str) -> str:
    return f"coalesce({sql}, false)"


def _field_value(col: _Col, value, table: str) -> tuple[str, Need]:
    if isinstance(value, SigmaExpansion):  # base64offset, windash: alternatives, always OR
        parts = [_field_value(col, v, table) for v in value.values]
        sql = "(" + " OR ".join(p[0] for p in parts) + ")"
        return sql, _or_needs([p[1] for p in parts])
    if isinstance(value, SigmaString):  # includes SigmaCasedString
        return _string(col, value, cased=isinstance(value, SigmaCasedString))
    if isinstance(value, SigmaNull):
        return f"({col.sql} IS NULL)", None
    if isinstance(value, SigmaExists):
        return f"({col.sql} IS {'NOT ' if value.exists else ''}NULL)", None
    if isinstance(value, SigmaBool):
        return _string(col, SigmaString("true" if value.boolean else "false"), cased=False)
    if isinstance(value, SigmaCompareExpression):
        return _compare(col, value), None
    if isinstance(value, SigmaNumber):
        if col.is_text:
            return _string(col, SigmaString(str(value.number)), cased=False)
        return _two_valued(f"{col.sql} = {_num(value)}"), None
    if isinstance(value, SigmaRegularExpression):
        return _regex(col, value)
    if isinstance(value, SigmaCIDRExpression):
        return _cidr(col, value)
    if isinstance(value, SigmaFieldReference):
        other = resolve_field(value.field, table)
        a, b = f"lower({col.text})", f"lower({other.text})"
        if value.starts_with and value.ends_with:
            sql = f"contains({a}, {b})"
        elif value.starts_with:
            sql = f"starts_with({a}, {b})"
        elif value.ends_with:
            sql = f"ends_with({a}, {b})"
        else:
            sql = f"{a} = {b}"
        return _two_valued(sql), None
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


def _compare(col: _Col, value: SigmaCompareExpression) -> str:
    op = _OPS.get(value.op)
    if op is None:
        op = "<>"  # CompareOperators.NEQ (the `neq` modifier)
    x = f"TRY_CAST({col.sql} AS DOUBLE)" if col.is_text else col.sql
    return _two_valued(f"{x} {op} {_num(value.number)}")


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lower_lit(s: str) -> str:
    # Python and DuckDB agree on ASCII case mapping; leave anything else to DuckDB's lower()
    return sql_str(s.lower()) if s.isascii() else f"lower({sql_str(s)})"


def _string(col: _Col, value: SigmaString, cased: bool) -> tuple[str, Need]:
    parts = list(value.s)
    for p in parts:
        if isinstance(p, Placeholder):
            raise CompileError(f"placeholder %{p.name}% has no value (placeholders are not supported)")
    x = col.text if cased else f"lower({col.text})"
    lit = sql_str if cased else _lower_lit
    strs = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if not isinstance(p, str)]
    star = SpecialChars.WILDCARD_MULTI
    if not specials:
        sql = f"{x} = {lit(''.join(strs))}"
    elif all(p is star for p in parts):
        sql = f"{col.sql} IS NOT NULL"
    elif len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(parts[1], str):
        sql = f"contains({x}, {lit(parts[1])})"
    elif len(parts) == 2 and parts[1] is star and isinstance(parts[0], str):
        sql = f"starts_with({x}, {lit(parts[0])})"
    elif len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
        sql = f"ends_with({x}, {lit(parts[1])})"
    else:
        pat = "".join(
            _like_escape(p) if isinstance(p, str) else ("%" if p is star else "_") for p in parts
        )
        sql = f"{x} LIKE {lit(pat)} ESCAPE '\\'"
    need = _string_need(col, strs)
    if need is None and col.is_text and all(p.isascii() for p in strs):
        need = ("re", col.key, _string_regex(parts, cased))
    return _two_valued(sql), need


def _string_regex(parts: list, cased: bool) -> str:
    """The RE2 equivalent of a Sigma string match (ASCII values: same case folding as lower())."""
    star = SpecialChars.WILDCARD_MULTI
    head = "" if parts and parts[0] is star else "^"
    tail = "" if parts and parts[-1] is star else "$"
    inner = parts[1 if not head else 0: len(parts) - (1 if not tail else 0)]
    body = "".join(
        re2_escape(p) if isinstance(p, str) else (".*" if p is star else ".") for p in inner
    )
    return ("(?s)" if cased else "(?is)") + head + body + tail


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


def _string_need(col: _Col, strs: list[str]) -> Need:
    # each literal part of the value is a necessary substring of lower(column): keep the longest
    runs = [r for s in strs for r in _ascii_runs(s)]
    return _need(col.key, [max(runs, key=lambda r: literal_score(col.key, r))]) if runs else None


def regex_literals(pattern: str, key: str = "") -> frozenset[str] | None:
    """Lower-cased literals of which one occurs in every text ``pattern`` matches, or None.

    Parsed with Python's regex parser (RE2 syntax is a subset for what matters here); anything
    it does not understand gives None, which only costs speed, never a missed match.
    """
    if "[:" in pattern or "\\Q" in pattern:  # POSIX classes / quoting: Python reads them otherwise
        return None
    try:
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


def _regex(col: _Col, value: SigmaRegularExpression) -> tuple[str, Need]:
    if value.regexp.contains_placeholder():
        raise CompileError("placeholders in regular expressions are not supported")
    flags = ""
    if SigmaRegularExpressionFlag.IGNORECASE in value.flags:
        flags += "i"
    if SigmaRegularExpressionFlag.MULTILINE in value.flags:
        flags += "m"
    if SigmaRegularExpressionFlag.DOTALL in value.flags:
        flags += "s"
    pattern = value.regexp.to_plain(regex=True)
    lits = regex_literals(pattern, col.key)
    if flags:
        pattern = f"(?{flags}){pattern}"
    sql = _two_valued(f"regexp_matches({col.text}, {sql_str(pattern)})")
    need = _need(col.key, lits) if lits else None
    if need is None and col.is_text:
        return sql, ("re", col.key, pattern)
    return sql, need


_V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0/96, how schema stores IPv4 in *_ip_num


def _cidr(col: _Col, value: SigmaCIDRExpression) -> tuple[str, Need]:
    net = value.network
    if col.num_sql is not None:
        lo = int(net.network_address)
        if isinstance(net, IPv4Network):
            lo += _V4_MAPPED
        hi = lo + net.num_addresses - 1
        sql = f"{col.num_sql} BETWEEN '{lo}'::UHUGEINT AND '{hi}'::UHUGEINT"
        return _two_valued(sql), None
    if not col.is_text:
        raise CompileError(f"cidr on non-text column {col.key}")
    # no numeric twin: prefix patterns of the network's textual form (pySigma's expansion)
    parts = [_string(col, SigmaString(p), cased=False) for p in value.expand("*")]
    sql = "(" + " OR ".join(p[0] for p in parts) + ")"
    return sql, _or_needs([p[1] for p in parts])
