"""arrowfn.typed_fields: the C splitter behind the access-log and W3C fast paths.

It must read exactly the lines of the expected shape, with the values the SQL parsers would
give, and leave every other line to them; ``test_native_and_sql_parsers_agree`` checks the
whole ingest both ways on a mix of regular and odd lines."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from tests.ingest.conftest import rows, run, write
from threatscope.ingest import arrowfn
from threatscope.ingest.formats.access import _COLUMNS
from threatscope.native import native

pytestmark = pytest.mark.skipif(native() is None,
                                reason="C extension not built (or THREATSCOPE_NATIVE=0)")

COMBINED = [*_COLUMNS, "ts"]


def split(lines: list[str], spec: str = "SxsARilqq", names=COMBINED, date_days=None):
    out = arrowfn.typed_fields(pa.array(lines, pa.string()), spec, names, date_days)
    assert out is not None
    table, read = out
    return table.to_pylist(), read.to_pylist()


def test_combined_line_to_typed_columns():
    got, read = split(['203.0.113.9 - bob [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" '
                       '200 2326 "http://x/" "Mozilla/5.0 (X11)"'])
    assert read == [True]
    assert got == [{
        "source_ip": "203.0.113.9", "user_name": "bob", "http_request_method": "GET",
        "url_original": "/a?b=1", "http_version": "HTTP/1.1", "http_response_status_code": 200,
        "http_response_body_bytes": 2326, "http_request_referrer": "http://x/",
        "user_agent_original": "Mozilla/5.0 (X11)", "ts": datetime(2000, 10, 10, 20, 55, 36),
    }]


def test_dashes_are_null_and_the_zone_is_applied():
    got, read = split(['::1 - - [29/Feb/2016:23:30:00 +0130] "PROPFIND / HTTP/1.0" - - "-" ""'])
    assert read == [True]
    row = got[0]
    assert row["ts"] == datetime(2016, 2, 29, 22, 0, 0)
    assert [row[c] for c in ("user_name", "http_response_status_code",
                             "http_response_body_bytes", "http_request_referrer",
                             "user_agent_original")] == [None] * 5


@pytest.mark.parametrize("line", [
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a\\"b HTTP/1.1" 200 1 "-" "-"',  # \" inside
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "-" "extra"',
    '1.2.3.4 - - [10/Oct/2000:13:55:36] "GET /a HTTP/1.1" 200 1 "-" "-"',  # no zone
    '1.2.3.4 - - [31/Feb/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "-"',  # no such day
    '1.2.3.4 - - [10/oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "-"',
    '1.2.3.4 - - [10/Oct/2000:24:00:00 -0700] "GET /a HTTP/1.1" 200 1 "-" "-"',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 2x0 1 "-" "-"',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 99999999999 1 "-" "-"',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a" 200 1 "-" "-"',  # HTTP/0.9
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a b HTTP/1.1" 200 1 "-" "-"',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "\\x16\\x03\\x01" 400 1 "-" "-"',
    '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "-',  # open quote
    '1.2.3.4  - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "-"',
    '1.2"3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "-"',
])
def test_lines_of_another_shape_are_left_to_sql(line):
    good = '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "-"'
    got, read = split([good, line, good])
    assert read == [True, False, True]
    assert len(got) == 2


def test_crlf_and_a_last_line_without_newline():
    from threatscope.ingest import reader

    block = (b'1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /a HTTP/1.1" 200 1 "-" "UA"\r\n'
             b'1.2.3.4 - - [10/Oct/2000:13:55:37 +0000] "GET /b HTTP/1.1" 200 1 "-" "UA"')
    lines = reader.lines_to_batch(block, 1).table.column("line")
    table, read = arrowfn.typed_fields(lines, "SxsARilqq", COMBINED)
    assert read.to_pylist() == [True, True]
    assert table.column("user_agent_original").to_pylist() == ["UA", "UA"]
    assert table.column("url_original").to_pylist() == ["/a", "/b"]


def test_w3c_spec_with_the_date_of_the_header():
    names = ["source_ip", "http_request_method", "url_path", "http_response_status_code",
             "http_response_body_bytes", "user_agent_original", "ts"]
    got, read = split(["10:00:01.25 10.0.0.1 GET /x.asp 404 - Mozilla/4.0+(compatible) junk",
                       "10:00:02 10.0.0.1 GET /x.asp 404 12 - junk extra",
                       "25:00:02 10.0.0.1 GET /x.asp 404 12 - junk"],
                      spec="TsssilpX".replace("X", "x"), names=names, date_days=17663)
    assert read == [True, False, False]
    assert got == [{"source_ip": "10.0.0.1", "http_request_method": "GET", "url_path": "/x.asp",
                    "http_response_status_code": 404, "http_response_body_bytes": None,
                    "user_agent_original": "Mozilla/4.0 (compatible)",
                    "ts": datetime(2018, 5, 12, 10, 0, 1, 250000)}]


def test_a_time_without_a_date_is_not_read():
    _, read = split(["10:00:01 GET"], spec="Ts", names=["http_request_method", "ts"])
    assert read == [False]


def test_unknown_code_is_an_error():
    with pytest.raises(ValueError, match="unknown field code"):
        arrowfn.typed_fields(pa.array(["a b"]), "sZ", ["a"])


ODD_COMBINED = """\
203.0.113.9 - bob [10/Oct/2000:13:55:36 -0700] "GET /a?b=%41%2e HTTP/1.1" 200 2326 "http://x/" "Mozilla/5.0"
203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "GET /a\\"b HTTP/1.1" 200 1 "-" "-"
198.51.100.2 - - [10/Oct/2000:13:55:37 -0700] "GET /x HTTP/1.1" 200 1 "-" "-" "rt=0.1"
198.51.100.2 - - [10/Oct/2000:13:55:37] "GET /x HTTP/1.1" 200 1 "-" "-"
198.51.100.2 - - [31/Feb/2000:13:55:37 -0700] "GET /x HTTP/1.1" 200 1 "-" "-"
198.51.100.2 - - [10/Oct/2000:13:55:37 -0700] "GET /x HTTP/1.1" abc 1 "-" "-"
198.51.100.2 - - [10/Oct/2000:13:55:37 -0700] "-" 400 0 "-" "-"
198.51.100.2 - - [10/Oct/2000:13:55:37 -0700] "GET /" 200 0 "-" "-"
2001:db8::1 - - [10/Oct/2000:13:55:37 +0000] "PROPFIND / HTTP/1.1" 207 - "-" "-"
198.51.100.2 - - [10/Oct/2000:13:55:37 -0700] "GET /cr\rin HTTP/1.1" 200 1 "-" "lone\rCR"
198.51.100.2 - - [10/Oct/2000:13:55:37 -0700] "GET /crlf HTTP/1.1" 200 1 "-" "-"\r
not a log line at all
"""

ODD_W3C = """\
#Software: Microsoft Internet Information Services 10.0
#Date: 2018-05-12 00:00:00
#Fields: time c-ip cs-method cs-uri-stem cs-uri-query sc-status sc-bytes cs(User-Agent) cs(Referer)
10:00:01 10.0.0.1 GET /x.asp a=1 200 12 Mozilla/4.0+(compatible) -
10:00:01 10.0.0.1 GET /y.asp a=1 200 12 - -
10:00:01 10.0.0.1 GET - a=2 200 12 - -
10:00:01 10.0.0.1 GET /x.asp a=2 200 12 - -
10:00:01 10.0.0.1 GET /x.asp a=1 200 12 - -
10:00:01 10.0.0.1 GET /x.asp - 200 x Mozilla/4.0+(compatible) -
10:00:01 10.0.0.1 GET /x.asp - 200 12 - -
10:00:01 10.0.0.1 GET /x.asp - 200 12 -
99:00:01 10.0.0.1 GET /x.asp - 200 12 - -
#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status
2018-05-13 10:00:01 10.0.0.2 GET /y "q" 404
2018-05-13 10:00:01.5 10.0.0.2 GET /y - -
2018-13-13 10:00:01 10.0.0.2 GET /y - 404
"""


@pytest.mark.parametrize("name,text", [("a.log", ODD_COMBINED), ("u_ex1.log", ODD_W3C)])
def test_native_and_sql_parsers_agree(tmp_path, monkeypatch, name, text):
    from threatscope.workspace import Workspace

    def ingest(native: bool) -> tuple[list[dict], list[tuple]]:
        monkeypatch.setenv("THREATSCOPE_NATIVE", "1" if native else "0")
        ws = Workspace.open(tmp_path / f"ws{native}", create=True)
        run(ws, write(tmp_path / name, text), org="o")
        with ws.connect() as con:
            q = con.execute("SELECT source_line, reason FROM quarantine ORDER BY 1").fetchall()
        return [{k: v for k, v in r.items() if k != "file_id"} for r in rows(ws)], q

    fast, slow = ingest(True), ingest(False)
    assert fast == slow
    assert fast[0] and fast[1]  # both rows and quarantined lines


IPS = ["1.2.3.4", "255.255.255.255", "0.0.0.0", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1",
       " 1.2.3.4 ", "1.2.3.4 x", "::1", "::", ":::", "1::2::3", "::ffff:1.2.3.4",
       "::FFFF:1.2.3.4", "::ffff:1.2.3.256", "fe80::1%eth0", "fe80::1", "2001:db8::8a2e:370:7334",
       "2001:0DB8:0000:0000:0000:ff00:0042:8329", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
       "1:2:3:4::5:6:7:8", "1:2:3:4:5:6:7:", ":1:2:3:4:5:6:7", "12345::", "1::", "::1.2.3.4",
       " 2001:db8::1 ", "2001:db8::1%", "g::1", "-", "", "localhost", "1.2.3.4:80",
       "0000:0000:0000:0000:0000:0000:255.255.255.255", "ffff::", "1.2.3.04", None]
URLS = ["/a%2e%2e%2fb+c%ff%zz", "/x%41", "/a?b?c", "/a", "?", "/a?", "%", "%4", "%%41",
        "%C3%A9", "%c3%a9%e9", "%ED%A0%80", "%C0%AF", "%F4%90%80%80", "%EF%BF%BF", "%E2%82",
        "%00x", "/é%20ü?q=%E9", "", None]


def _fuzz(alphabet: str, n: int, seed: int) -> list[str]:
    import random

    rnd = random.Random(seed)
    return ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24))) for _ in range(n)]


def _mutated_ips(n: int, seed: int) -> list[str]:
    """Random v4, v6 (compressed or not, upper case, zone, v4 tail) addresses, half of them
    with one character deleted, inserted or replaced."""
    import ipaddress
    import random

    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rnd.random()
        if kind < 0.4:
            text = str(ipaddress.IPv4Address(rnd.getrandbits(32)))
        else:
            a = ipaddress.IPv6Address(rnd.getrandbits(128) >> rnd.choice([0, 16, 64, 112]))
            text = rnd.choice([a.compressed, a.exploded, a.compressed.upper()])
            if kind > 0.9:
                text = f"::ffff:{ipaddress.IPv4Address(rnd.getrandbits(32))}"
            elif kind > 0.85:
                text += "%eth0"
        if rnd.random() < 0.5:
            i = rnd.randrange(len(text) + 1)
            c = rnd.choice("0123456789abcdefF:.% ")
            text = rnd.choice([text[:i] + text[i + 1:], text[:i] + c + text[i:],
                               text[:i] + c + text[i + 1:]])
        out.append(text)
    return out


def test_ip_numbers_agree_with_the_sql_macro(monkeypatch):
    import duckdb
    import pyarrow as pa

    from threatscope import sqlfn

    con = duckdb.connect()
    sqlfn.install(con)
    values = pa.array(IPS + _mutated_ips(6000, 1), pa.string())
    fast = arrowfn.ip_numbers(con, values)
    monkeypatch.setenv("THREATSCOPE_NATIVE", "0")
    slow = arrowfn.ip_numbers(con, values)
    assert fast.to_pylist() == slow.to_pylist()
    assert 1000 < fast.null_count < len(fast) - 1000  # plenty of both


def test_url_parts_agree_with_the_sql_macros(monkeypatch):
    import duckdb
    import pyarrow as pa

    from threatscope import sqlfn

    con = duckdb.connect()
    sqlfn.install(con)
    values = pa.array(URLS + _fuzz("%?/aAfF09+é", 5000, 3)
                      + _fuzz("%0123456789abcdefABCDEF?", 5000, 4), pa.string())
    fast = [a.to_pylist() for a in arrowfn.url_parts(con, values)]
    monkeypatch.setenv("THREATSCOPE_NATIVE", "0")
    slow = [a.to_pylist() for a in arrowfn.url_parts(con, values)]
    assert fast == slow
    assert sum(a != b for a, b in zip(fast[2], values.to_pylist(), strict=True)) > 500


def test_random_hostile_blocks_give_valid_arrays():
    """Garbage, cut lines, stray quotes/brackets/CRs/NULs and multi-byte text through every
    field code: the C functions never crash and always return arrays Arrow validates.
    (The same loop ran 20,000 rounds under AddressSanitizer when _native.c was written.)"""
    import random

    import pyarrow as pa

    from threatscope import _native

    rnd = random.Random(7)
    specs = ["SxsARilqq", "SxsARil", "DTssssisspsixxx", "Tsp", "DT", "q", "R", "A", "ilS"]
    alpha = [b" ", b'"', b"[", b"]", b"-", b"+", b"/", b":", b".", b"%", b"\r", b"\n", b"0",
             b"9", b"a", b"HTTP/1.1", b"GET ", b"[10/Oct/2000:13:55:36 -0700]", b"2018-05-12",
             b"10:00:01.5", "é".encode(), b"\x00", b"%e9", b"::ffff:1.2.3.4"]
    good = b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 1 "-" "UA"'
    for _ in range(3000):
        if rnd.random() < 0.5:
            block = b"".join(rnd.choice(alpha) for _ in range(rnd.randint(0, 60)))
        else:
            b = bytearray(good * rnd.randint(1, 3))
            for _ in range(rnd.randint(0, 5)):
                i = rnd.randrange(len(b) + 1)
                b[i:i + rnd.randint(0, 3)] = rnd.choice(alpha)
            block = bytes(b)
        n, offsets, data, *_ = _native.split_lines(block)
        nlines, _, nrows, cols = _native.fields((n, 0, None, offsets, data), rnd.choice(specs),
                                                 rnd.choice([-10**9, 0, 17663]))
        assert nlines == n == block.count(b"\n") + 1
        for col in cols:
            arrowfn._from_native(nrows, col).validate(full=True)
        text = block.decode("utf-8", "replace")
        values = pa.array([text, None, text[:len(text) // 2], ""], pa.string())
        arrowfn._from_native(4, _native.ip_numbers(*arrowfn.to_native(values))).validate(
            full=True)
        for col in _native.url_parts(*arrowfn.to_native(values)):
            arrowfn._from_native(4, col).validate(full=True)


def test_more_fields_than_the_splitter_takes_go_to_sql(ws, tmp_path):
    """A '#Fields:' line of 300 fields (hostile or odd): the SQL parser reads the file."""
    assert arrowfn.typed_fields(pa.array(["a"]), "x" * 300, []) is None
    names = ["date", "time", "c-ip", *[f"x-f{i}" for i in range(297)]]
    line = "2018-05-12 10:00:00 10.0.0.1 " + " ".join("v" for _ in range(297))
    text = "#Fields: " + " ".join(names) + "\n" + line + "\n"
    run(ws, write(tmp_path / "u_ex1.log", text), org="o")
    assert [r["source_ip"] for r in rows(ws)] == ["10.0.0.1"]


def test_line_split_agrees_with_arrow(monkeypatch):
    """reader.lines_to_batch splits with _native.split_lines, or with Arrow without the C
    extension: the same batch either way (lines, numbers, blank and bad lines), on random
    hostile blocks."""
    import random

    from threatscope.ingest import reader

    monkeypatch.setattr(reader, "MAX_LINE", 40)  # exercise the too-long path on short blocks
    rnd = random.Random(11)
    alpha = [b"a", b"GET /x HTTP/1.1", b" ", b"\n", b"\r", b"\r\n", b"\n\n", b"\xff", b"\xc3",
             "é".encode(), "\U0001f600".encode(), b"\xed\xa0\x80", b"\x00", b"x" * 45]

    def batch(block: bytes, native: bool) -> tuple:
        monkeypatch.setenv("THREATSCOPE_NATIVE", "1" if native else "0")
        b = reader.lines_to_batch(block, 7)
        return b.table.to_pylist(), b.table.schema, b.lines, b.blank, b.bad, b.nbytes

    cases = [b"", b"\n", b"\r", b"a\r", b"a\r\r", b"a\rb", b"\xff\n", b"ok\nok"]
    cases += [b"".join(rnd.choice(alpha) for _ in range(rnd.randint(0, 30)))
              for _ in range(1000)]
    for block in cases:
        assert batch(block, True) == batch(block, False), block


def test_blank_and_undecodable_lines_leave_the_rest_of_the_batch_to_the_c_splitter():
    """A blank line or one of invalid UTF-8 is taken out of the batch (counted, quarantined):
    the other lines of the batch still go through the C splitter, none to the SQL parser."""
    from threatscope.ingest import reader
    from threatscope.ingest.formats.access import Combined

    good = '1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /a HTTP/1.1" 200 1 "-" "UA"'
    block = "\n".join([good, "", good]).encode() + b"\n\xff\xfe bad\n" + good.encode()
    batch = reader.lines_to_batch(block, 1)
    assert batch.blank == 1 and [b[:2] for b in batch.bad] == [(4, "invalid UTF-8")]
    import duckdb

    result = Combined().parse(duckdb.connect(), batch, None)
    assert result.views == []  # nothing left for the SQL parser
    (part,) = result.parts
    assert part.table.column("source_line").to_pylist() == [1, 3, 5]
