"""The rule engine agrees with the reference (every rule's SQL on every row): with its automaton
and on DuckDB alone, guarded or not, in one slice of rows or many; the compiled-rule cache is
exact."""

from __future__ import annotations

import array
import json

import duckdb
import pyarrow as pa
import pytest

from tests.detect.sigma_helpers import RULE_ID, rule_yaml
from threatscope.detect import engine, evaluate, load_rules
from threatscope.detect.engine import Engine, reference_sql
from threatscope.native import native
from threatscope.simulate.bench import make_http_table

# Rules mixing what the engine treats apart: literal leaves of every kind, DuckDB leaves with
# and without guards, NOT, NULL tests, keywords (raw: no dictionary), field references (per row),
# CIDR over the IP number, case-sensitive values.
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
    "wildcards": "a:\n  cs-uri|contains: 'union*select'\ncondition: a",
    "cased": "a:\n  cs-user-agent|cased|startswith: 'Mozilla/5.0 (Windows'\ncondition: a",
    "prefix_eq": "a:\n  cs-uri-stem|startswith: '/wp-'\nb:\n  cs-method: 'post'\n"
                 "condition: a and not b",
    # fields inside the headers' JSON object: once per distinct object, then per field value
    "header_field": "a:\n  http.request.headers.x-forwarded-for|startswith: '10.1.2.3'\n"
                    "condition: a",
    "header_absent": "a:\n  http.request.headers.cookie: null\n  cs-method: GET\n"
                     "condition: a",
    "header_fieldref": "a:\n  http.request.headers.x-forwarded-for|fieldref: c-ip\n"
                       "condition: a",
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
    c.execute("UPDATE http SET user_agent_original = 'curl''); DROP TABLE http; --\\''' "
              "WHERE source_line % 19 = 0")
    c.execute("UPDATE http SET user_agent_original = 'CURL/7 İ' WHERE source_line % 23 = 0")
    c.execute("""UPDATE http SET http_request_headers = '{"x-forwarded-for": "10.1.2.' ||
                 (source_line % 7) || '", "cookie": "s=' || (source_line % 5) || '"}'
                 WHERE source_line % 3 = 0""")
    c.execute("UPDATE http SET source_ip = '10.1.2.' || (source_line % 7) "
              "WHERE source_line % 6 = 0")
    yield c
    c.close()


def _reference(con, rules) -> dict[int, list[str]]:
    sql = reference_sql(rules, "SELECT * FROM http", "source_line")
    return {line: sorted(rules[i].id for i in hits)
            for line, hits in con.execute(sql).fetchall() if hits}


def _lake_table(con) -> pa.Table:
    """The http rows as detect reads the lake: text as dictionaries, in two chunks with
    different dictionaries (two files); raw plain."""
    t = con.sql("SELECT * REPLACE (CAST(source_ip_num AS DECIMAL(38,0)) AS source_ip_num) "
                "FROM http ORDER BY source_line").to_arrow_table()
    text = [f.name for f in t.schema if f.type == pa.string() and f.name != "raw"]
    halves = []
    for part in (t.slice(0, 2500), t.slice(2500)):
        halves.append(pa.table({c: part.column(c).combine_chunks().dictionary_encode()
                                if c in text else part.column(c) for c in t.column_names}))
    return pa.concat_tables(halves)


@pytest.mark.parametrize("native_on", ["1", "0"])
@pytest.mark.parametrize("few_values", [engine.FEW_VALUES, 0])
@pytest.mark.parametrize("slice_rows", [engine.SLICE, 1000])
def test_engine_agrees_with_the_reference(con, mixed_rules, monkeypatch, native_on, few_values,
                                          slice_rows):
    monkeypatch.setenv("THREATSCOPE_NATIVE", native_on)
    monkeypatch.setattr(engine, "FEW_VALUES", few_values)  # 0: the guarded path
    monkeypatch.setattr(engine, "SLICE", slice_rows)
    want = _reference(con, mixed_rules)
    assert len(want) > 1000 and len({i for v in want.values() for i in v}) == len(MIXED)
    table = _lake_table(con)
    c2 = duckdb.connect()
    rows, idx = Engine(mixed_rules, "http").match(c2, table)
    lines = table.column("source_line").take(rows).to_pylist()
    got: dict[int, list[str]] = {}
    for line, i in zip(lines, idx.to_pylist(), strict=True):
        got.setdefault(line, []).append(mixed_rules[i].id)
    assert {k: sorted(v) for k, v in got.items()} == want
    assert len(lines) == len(set(zip(lines, idx.to_pylist(), strict=True)))  # no duplicates


def test_engine_reads_only_the_rules_columns(mixed_rules):
    e = Engine(mixed_rules, "http")
    assert {"user_agent_original", "url_path", "raw", "source_ip_num",
            "http_request_headers.x-forwarded-for"} <= e.read
    assert "http_response_body_bytes" not in e.read and "ts" not in e.read


# Case folding: the engine folds as DuckDB's lower() does (İ -> i, K (Kelvin) -> k), and a
# case-insensitive regex folds as RE2 does (ſ is an s): each row against the reference.
FOLDING = {
    "ascii_ci": "a:\n  cs-user-agent|contains: 'KILL'\ncondition: a",
    "dotted_i": "a:\n  cs-user-agent|endswith: 'ix'\ncondition: a",
    "non_ascii_literal": "a:\n  cs-user-agent|contains: 'ÉTÉ 🐆'\ncondition: a",
    "cased_non_ascii": "a:\n  cs-user-agent|cased|contains: 'Été'\ncondition: a",
    "regex_ci": "a:\n  cs-user-agent|re: '(?i)powershell\\s'\ncondition: a",
    "equals": "a:\n  cs-user-agent: 'ab'\ncondition: a",
}
VALUES = ["kill", "xKILLx", "\u212aill", "skİll", "İX", "ix", "été 🐆", "ÉTÉ 🐆 x", "Été",
          "ÉTÉ", "POWERſHELL x", "powershell x", "powershell", "AB", "ab", "aab", "abb",
          "", None]


@pytest.mark.parametrize("native_on", ["1", "0"])
def test_case_folding_agrees_with_the_reference(tmp_path, monkeypatch, native_on):
    monkeypatch.setenv("THREATSCOPE_NATIVE", native_on)
    d = tmp_path / "rules"
    d.mkdir()
    for i, (name, det) in enumerate(FOLDING.items()):
        rid = RULE_ID[:-3] + f"{i:03d}"
        (d / f"{name}.yml").write_text(rule_yaml(det).replace(RULE_ID, rid), encoding="utf-8")
    rs = load_rules([d], builtin=False)
    rows = [{"user_agent_original": v} for v in VALUES]
    want = evaluate(rs, "http", rows, reference=True)
    assert evaluate(rs, "http", rows) == want
    by_value = dict(zip(VALUES, want, strict=True))
    ids = {name: RULE_ID[:-3] + f"{i:03d}" for i, name in enumerate(FOLDING)}
    assert ids["ascii_ci"] in by_value["\u212aill"] and ids["ascii_ci"] in by_value["skİll"]
    assert ids["dotted_i"] in by_value["İX"]
    assert ids["non_ascii_literal"] in by_value["ÉTÉ 🐆 x"]
    assert ids["cased_non_ascii"] not in by_value["ÉTÉ"]
    assert ids["regex_ci"] in by_value["POWERſHELL x"]
    assert by_value["aab"] == [] and ids["equals"] in by_value["AB"]


@pytest.mark.skipif(native() is None, reason="C extension not built")
def test_patterns_find_every_occurrence_kind():
    c = native()
    # contains 0, starts 1, ends 2, equals 3; overlapping patterns, one found inside another
    p = c.patterns([(b"cmd.exe", 2, 0), (b"powershell", 0, 1), (b"c:\\", 1, 2), (b"x", 3, 3),
                    (b"ell", 0, 4), (b"shell", 0, 4)], True)
    a = pa.array(["C:\\Windows\\CMD.EXE", "powershell -enc", None, "x", "X", "shell", "xx",
                  "a c:\\"])
    v, leaf, odd = p.scan(len(a), a.offset, *a.buffers())
    assert odd == b""
    pairs = list(zip(array.array("i", v), array.array("i", leaf), strict=True))
    assert sorted(pairs) == [(0, 0), (0, 2), (1, 1), (1, 4), (3, 3), (4, 3), (5, 4)]
    cased = c.patterns([(b"X", 3, 0)], False)
    v, _, _ = cased.scan(len(a), a.offset, *a.buffers())
    assert list(array.array("i", v)) == [4]
    # a slice of an array (offset) and the bitmaps of its rows
    s = a.slice(3, 3)
    v, leaf, _ = p.scan(len(s), s.offset, *s.buffers())
    assert sorted(zip(array.array("i", v), array.array("i", leaf), strict=True)) == \
        [(0, 3), (1, 3), (2, 4)]
    offsets, ids = c.leaf_csr(3, v, leaf)
    slots, bits = c.leaf_bits(offsets, ids, 5, None, 0, None, -1, 0, 3)
    assert list(array.array("i", slots)) == [3, 4] and bits == bytes([0b011, 0b100])
    # values with non-ASCII bytes are left to the caller when folding, unless told otherwise
    u = pa.array(["X", "Ä x", "shellé"])
    v, leaf, odd = p.scan(len(u), u.offset, *u.buffers())
    assert list(array.array("i", v)) == [0] and list(array.array("i", odd)) == [1, 2]
    v, leaf, odd = p.scan(len(u), u.offset, *u.buffers(), False)
    assert list(array.array("i", v)) == [0, 2] and odd == b""


@pytest.mark.skipif(native() is None, reason="C extension not built")
def test_native_functions_reject_bad_buffers():
    c = native()
    with pytest.raises(ValueError):
        c.patterns([(b"", 0, 0)], True)
    with pytest.raises(TypeError):
        c.patterns([("text", 0, 0)], True)
    p = c.patterns([(b"a", 0, 0)], True)
    with pytest.raises(ValueError):
        p.scan(10, 0, None, bytes(8), b"aa")  # 10 values, 2 offsets
    with pytest.raises(ValueError):
        c.leaf_csr(1, array.array("i", [5]).tobytes(), array.array("i", [0]).tobytes())
    offsets, ids = c.leaf_csr(1, array.array("i", [0]).tobytes(), array.array("i", [7]).tobytes())
    with pytest.raises(ValueError):
        c.leaf_bits(offsets, ids, 3, None, 0, None, -1, 0, 1)  # leaf 7 of 3
    offsets, ids = c.leaf_csr(1, array.array("i", [0]).tobytes(), array.array("i", [0]).tobytes())
    with pytest.raises(ValueError):  # a dictionary index beyond the values
        c.leaf_bits(offsets, ids, 1, array.array("i", [4]).tobytes(), 0, None, -1, 0, 1)


def test_no_rules_and_nothing_flagged():
    builtin = load_rules().for_table("http")
    c = duckdb.connect()
    make_http_table(c, 300, attack_every=10**9)
    c.execute("DELETE FROM http WHERE source_line = 1")  # the one attack: benign only now
    table = c.sql("SELECT * REPLACE (CAST(source_ip_num AS DECIMAL(38,0)) AS source_ip_num) "
                  "FROM http").to_arrow_table()
    rows, idx = Engine([], "http").match(c, table)
    assert len(rows) == len(idx) == 0
    rows, _ = Engine(builtin, "http").match(c, table)
    assert len(rows) == 0


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
