import time
from datetime import datetime

from tests.ingest.conftest import assert_invariant, quarantine, rows, run, write
from threatscope.ingest.formats import sniff

COMBINED = (
    '203.0.113.9 - alice [10/Oct/2018:13:55:36 -0700] "GET /a%2e%2e/b.php?x=1&y=%41 HTTP/1.1" '
    '200 2326 "http://ref.example/" "Mozilla/5.0 (X11)"\n'
    '198.51.100.7 - - [10/Oct/2018:22:00:00 +0200] "POST /login HTTP/1.0" 302 - "-" "curl/7.1"\n'
    '198.51.100.7 - - [10/Oct/2018:22:00:01 +0000] "GET /q HTTP/1.1" 200 5 "-" "say \\"hi\\""\n'
    '192.0.2.1 - - [10/Oct/2018:22:00:02 +0000] "\\x16\\x03\\x01\\x00" 400 226 "-" "-"\n'
    '192.0.2.1 - - [10/Oct/2018:22:00:03 +0000] "-" 408 - "-" "-"\n'
    '2001:db8::1 - - [10/Oct/2018:22:00:04 +0000] "GET /a b HTTP/1.1" 404 0 "-" "x"\n'
    '192.0.2.1 - - [31/Feb/2018:22:00:05 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
    '192.0.2.1 - - [10/Oct/2018:25:00:05 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n'
    'this is not a log line\n'
    '192.0.2.1 - - [10/Oct/2018:22:00:06 +0000] "GET / HTTP/1.1" 200\n'
)


def test_combined_rows(ws, tmp_path):
    s = run(ws, write(tmp_path / "access.log", COMBINED))
    assert s.per_file[0]["format"] == "combined"
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined) == (10, 6, 4)
    got = rows(ws, cols="source_line, ts, event_date, source_ip, source_ip_num, user_name, "
               "http_request_method, url_original, url_path, url_query, url_decoded, "
               "http_version, http_response_status_code, http_response_body_bytes, "
               "http_request_referrer, user_agent_original, raw, org_id")
    first = got[0]
    assert first == {
        "source_line": 1, "ts": datetime(2018, 10, 10, 20, 55, 36),
        "event_date": first["event_date"], "source_ip": "203.0.113.9",
        "source_ip_num": 0xFFFF00000000 + (203 << 24) + (113 << 8) + 9, "user_name": "alice",
        "http_request_method": "GET", "url_original": "/a%2e%2e/b.php?x=1&y=%41",
        "url_path": "/a%2e%2e/b.php", "url_query": "x=1&y=%41",
        "url_decoded": "/a../b.php?x=1&y=A", "http_version": "HTTP/1.1",
        "http_response_status_code": 200, "http_response_body_bytes": 2326,
        "http_request_referrer": "http://ref.example/", "user_agent_original": "Mozilla/5.0 (X11)",
        "raw": COMBINED.splitlines()[0], "org_id": "default",
    }
    assert str(first["event_date"]) == "2018-10-10"
    by_line = {r["source_line"]: r for r in got}
    assert by_line[2]["ts"] == datetime(2018, 10, 10, 20, 0, 0)  # +0200 -> UTC
    assert by_line[2]["http_response_body_bytes"] is None and by_line[2]["http_request_referrer"] is None
    assert by_line[3]["user_agent_original"] == 'say \\"hi\\"'  # regex fallback, kept as logged
    assert by_line[4]["http_request_method"] is None and by_line[4]["url_original"] is None
    assert by_line[4]["http_response_status_code"] == 400
    assert by_line[5]["http_request_method"] is None
    assert by_line[6]["url_original"] == "/a b" and by_line[6]["source_ip_num"] == 0x20010DB8 << 96 | 1
    assert quarantine(ws) == [(7, "invalid timestamp"), (8, "invalid timestamp"),
                              (9, "not an access log line (combined/common)"),
                              (10, "not an access log line (combined/common)")]


def test_common_format(ws, tmp_path):
    log = write(tmp_path / "common.log",
                '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326\n')
    s = run(ws, log)
    assert s.per_file[0]["format"] == "common"
    (r,) = rows(ws, cols="ts, user_name, url_original, user_agent_original, http_request_referrer")
    assert r == {"ts": datetime(2000, 10, 10, 20, 55, 36), "user_name": "frank",
                 "url_original": "/apache_pb.gif", "user_agent_original": None,
                 "http_request_referrer": None}


def test_forced_format_quarantines_misfits(ws, tmp_path):
    log = write(tmp_path / "x.log", '{"a": 1}\n')
    s = run(ws, log, fmt="combined")
    assert (s.rows_written, s.rows_quarantined) == (0, 1)


def test_sniffing_a_line_of_many_quotes_takes_linear_time():
    # (found fuzzing the sniffers: the combined/common regex `".*" \S+ \S+ ".*" ".*"`
    # back-tracked quadratically: seconds per 64 KiB line of quotes at auto-detection)
    line = '192.0.2.1 - - [10/Oct/2018:22:00:00 +0000] "' + '" a b "' * 9000
    start = time.perf_counter()
    assert sniff([line] * 3) == "common"
    assert sniff([line + '" "ua"'] * 3) == "combined"
    assert time.perf_counter() - start < 0.5
