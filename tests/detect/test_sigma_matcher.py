"""The match query's plans agree: per-distinct-value evaluation, row-wise evaluation and the
reference (every rule on every row) give the same hits; the compiled-rule cache is exact."""

from __future__ import annotations

import json

import duckdb
import pytest

from tests.detect.sigma_helpers import RULE_ID, rule_yaml
from threatscope.detect import load_rules, matcher
from threatscope.simulate.bench import make_http_table

# Rules mixing what the planner splits: one-column parts, multi-column parts (atoms), NOT,
# NULL tests, keywords (raw is always row-wise), field references.
MIXED = {
    "ua_or_path": "a:\n  cs-user-agent|contains: 'curl'\nb:\n  cs-uri-stem|endswith: '.php'\n"
                  "condition: a or b",
    "and_not": "a:\n  cs-method: GET\n  cs-uri-query|contains: 'id='\nf:\n  cs-user-agent|contains: "
               "'iphone'\ncondition: a and not f",
    "null_referer": "a:\n  cs-referer: null\n  cs-uri-stem: '/login'\ncondition: a",
    "not_only": "f:\n  cs-user-agent|contains: 'Mozilla'\ncondition: not f",
    "keywords": "keywords:\n  - 'union select'\n  - 'passwd'\ncondition: keywords",
    "fieldref": "a:\n  cs-uri-stem|fieldref: cs-uri\ncondition: a",
    "regex_status": "a:\n  cs-uri|re: '(?i)eval-stdin\\.php$'\nb:\n  sc-status: 200\n"
                    "condition: a and b",
    "cidr": "a:\n  c-ip|cidr: '10.0.0.0/16'\n  cs-method: GET\ncondition: a",
}


@pytest.fixture(scope="module")
def mixed_rules(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    for i, (name, det) in enumerate(MIXED.items()):
        rid = RULE_ID[:-3] + f"{i:03d}"
        (d / f"{name}.yml").write_text(rule_yaml(det).replace(RULE_ID, rid), encoding="utf-8")
    rs = load_rules([d], builtin=False)  # the built-in pack is covered by test_sigma_corpus
    assert not rs.failed, rs.failed
    return rs.for_table("http")


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    make_http_table(c, 6000, attack_every=5)
    # NULLs and odd values the generator does not make
    c.execute("""UPDATE http SET user_agent_original = NULL, http_request_referrer = NULL,
                 source_ip_num = CAST(167772160 + source_line AS UHUGEINT) + (CAST(65535 AS UHUGEINT) << 32)
                 WHERE source_line % 11 = 0""")
    c.execute("UPDATE http SET http_request_referrer = 'https://x/?id=1 union select 2' "
              "WHERE source_line % 13 = 0")
    c.execute("UPDATE http SET url_original = url_path WHERE source_line % 17 = 0")
    # a flagged value with quotes
    c.execute("UPDATE http SET user_agent_original = 'curl''); DROP TABLE http; --\\''' "
              "WHERE source_line % 19 = 0")
    yield c
    c.close()


def _hits(con, rules, **kw) -> dict[int, list[str]]:
    sql = matcher.match_query(con, rules, "SELECT * FROM http", "source_line", **kw)
    return {
        line: sorted(rules[i].id for i in hits)
        for line, hits in con.execute(sql).fetchall() if hits
    }


@pytest.mark.parametrize("few_values", [matcher._FEW_VALUES, 0])
def test_plans_agree_with_the_reference(con, mixed_rules, monkeypatch, few_values):
    monkeypatch.setattr(matcher, "_FEW_VALUES", few_values)  # 0: the guarded per-value path
    ref = _hits(con, mixed_rules, prefilter=False)
    assert len(ref) > 1000 and len({i for v in ref.values() for i in v}) == len(MIXED)
    chosen = matcher.distinct_columns(con, "SELECT * FROM http", mixed_rules)
    assert "user_agent_original" in chosen and "raw" not in chosen
    for distinct in (None, (), chosen):
        assert _hits(con, mixed_rules, distinct=distinct) == ref, distinct


@pytest.mark.parametrize("few_values", [matcher._FEW_VALUES, 0])
def test_dictionary_prefilter_agrees_with_the_reference(con, mixed_rules, monkeypatch,
                                                        few_values):
    """The lake path: candidates found on an Arrow table's dictionaries (in two chunks with
    different dictionaries, as two lake files), then the row phase on those rows only."""
    import pyarrow as pa

    monkeypatch.setattr(matcher, "_FEW_VALUES", few_values)
    t = con.sql("SELECT * REPLACE (CAST(source_ip_num AS DECIMAL(38,0)) AS source_ip_num) "
                "FROM http ORDER BY source_line").to_arrow_table()
    text = [f.name for f in t.schema if f.type == pa.string() and f.name != "raw"]
    halves = []
    for part in (t.slice(0, 2500), t.slice(2500)):
        halves.append(pa.table({c: part.column(c).combine_chunks().dictionary_encode()
                                if c in text else part.column(c) for c in t.column_names}))
    table = pa.concat_tables(halves)
    distinct = matcher.value_columns(table, mixed_rules)
    assert "user_agent_original" in distinct and "raw" not in distinct
    c2 = duckdb.connect()
    lines = table.column("source_line").to_pylist()
    # a NOT-only rule, a field comparison and "method is GET" hold on most rows: without
    # them, few rows are candidates
    broad = ("not_only.yml", "fieldref.yml", "and_not.yml", "cidr.yml")
    for rules in (mixed_rules, [r for r in mixed_rules if not r.path.endswith(broad)]):
        want = _hits(con, rules, prefilter=False)
        pre = matcher.candidates(c2, rules, table, distinct)
        flagged = {ln for ln, m in zip(lines, pre.mask.to_pylist(), strict=True) if m}
        assert set(want) <= flagged  # every match is a candidate
        source = matcher.arrow_source(c2, "cand", table.filter(pre.mask))
        got = {line: sorted(rules[i].id for i in hits)
               for line, hits in c2.execute(pre.query(source, "source_line")).fetchall() if hits}
        assert got == want
    assert len(rules) == len(mixed_rules) - 4 and len(flagged) < len(lines) / 2


@pytest.fixture(scope="module")
def builtin_rules():
    return load_rules().for_table("http")


def test_distinct_columns_skips_unique_columns(builtin_rules):
    c = duckdb.connect()
    make_http_table(c, 2000)
    c.execute("UPDATE http SET url_original = url_original || '&n=' || source_line")
    rules = builtin_rules
    picked = matcher.distinct_columns(c, "SELECT * FROM http", rules)
    assert "url_original" not in picked and "raw" not in picked
    assert {"user_agent_original", "url_path", "http_request_method"} <= picked


def test_no_rules_and_nothing_flagged(builtin_rules):
    c = duckdb.connect()
    make_http_table(c, 300, attack_every=10**9)
    c.execute("DELETE FROM http WHERE source_line = 1")  # the one attack: benign only now
    assert c.execute(matcher.match_query(c, [], "SELECT * FROM http")).fetchall() == []
    sql = matcher.match_query(c, builtin_rules, "SELECT * FROM http", "source_line")
    assert [h for _, h in c.execute(sql).fetchall() if h] == []


def test_rule_cache_is_exact_and_follows_the_files(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    f = rules / "r.yml"
    f.write_text(rule_yaml("sel:\n  cs-uri|contains: 'abc'\ncondition: sel"), encoding="utf-8")
    cache = tmp_path / "cache"
    fresh = load_rules([rules], builtin=False)
    first = load_rules([rules], builtin=False, cache_dir=cache)
    (entry,) = cache.glob("rules-*.json")
    again = load_rules([rules], builtin=False, cache_dir=cache)
    for rs in (first, again):
        assert [r.__dict__ for r in rs.rules] == [r.__dict__ for r in fresh.rules]
        assert rs.failed == fresh.failed

    # an edited rule file is a different key: compiled again, not read from the old entry
    f.write_text(rule_yaml("sel:\n  cs-uri|contains: 'xyz'\ncondition: sel"), encoding="utf-8")
    edited = load_rules([rules], builtin=False, cache_dir=cache)
    assert "xyz" in edited.by_id(RULE_ID).sql and len(list(cache.glob("rules-*.json"))) == 2

    # a damaged entry is ignored and rewritten
    entry.write_text(json.dumps({"key": json.loads(entry.read_text())["key"], "rules": [{}]}))
    f.write_text(rule_yaml("sel:\n  cs-uri|contains: 'abc'\ncondition: sel"), encoding="utf-8")
    repaired = load_rules([rules], builtin=False, cache_dir=cache)
    assert [r.__dict__ for r in repaired.rules] == [r.__dict__ for r in fresh.rules]


def test_values_are_lowered_once_outside_literals_only(tmp_path):
    """The per-value phase reads lower(column) from one lowered copy; a literal that spells
    that SQL is still a literal."""
    assert matcher._replace_code(
        """contains(lower("c"), 'lower("c") it''s') OR lower("c") = ''""", 'lower("c")', "__lc"
    ) == """contains(__lc, 'lower("c") it''s') OR __lc = ''"""

    from tests.detect.sigma_helpers import matches

    det = "a:\n  cs-user-agent|contains: 'lower(\"user_agent_original\")'\ncondition: a"
    rows = [{"user_agent_original": 'x LOWER("User_Agent_Original") y'},  # case-insensitive
            {"user_agent_original": "x lower(user_agent_original) y"},  # no quotes: no match
            {"user_agent_original": None}]
    assert matches(tmp_path, det, rows) == [True, False, False]


def test_long_values_are_guarded_and_agree(con, mixed_rules, monkeypatch):
    """Long values (request headers, bodies) get the requirement scan before the rule parts
    even when few; the hits are the same either way."""
    source = "SELECT * FROM http"
    ref = con.execute(matcher.match_query(con, mixed_rules, source, "source_line",
                                          prefilter=False)).fetchall()
    monkeypatch.setattr(matcher, "_FEW_BYTES", 0)
    fast = con.execute(matcher.match_query(con, mixed_rules, source, "source_line")).fetchall()
    assert sorted((n, sorted(h)) for n, h in fast if h) == \
        sorted((n, sorted(h)) for n, h in ref if h)
