import json
from datetime import datetime

from tests.ingest.conftest import assert_invariant, quarantine, rows, run, write

TSV = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\thttp
#open\t2018-05-01-10-00-00
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\tmethod\thost\turi\treferrer\tversion\tuser_agent\trequest_body_len\tresponse_body_len\tstatus_code\tstatus_msg\tusername
#types\ttime\tstring\taddr\tport\taddr\tport\tcount\tstring\tstring\tstring\tstring\tstring\tstring\tcount\tcount\tcount\tstring\tstring
1525168800.123456\tCx1\t203.0.113.4\t40000\t10.0.0.3\t80\t1\tGET\tsite.example\t/cgi-bin/x?a=%3B\t-\t1.1\tMozilla/5.0 (X)\t0\t512\t200\tOK\t-
1525168801.000000\tCx2\t2001:db8::2\t40001\t10.0.0.3\t80\t1\tPOST\t(empty)\t/\t-\t1.0\t-\t10\t0\t404\tNot Found\tbob
notanumber\tCx3\t203.0.113.4\t1\t10.0.0.3\t80\t1\tGET\th\t/\t-\t1.1\t-\t0\t0\t200\tOK\t-
short\tline
#close\t2018-05-01-11-00-00
"""


def test_zeek_tsv(ws, tmp_path):
    s = run(ws, write(tmp_path / "http.log", TSV))
    assert s.per_file[0]["format"] == "zeek"
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined, s.comment_lines) == (13, 2, 2, 9)
    got = rows(ws, cols="ts, source_ip, source_port, destination_ip, destination_port, "
               "http_request_method, url_domain, url_original, url_decoded, http_version, "
               "user_agent_original, http_response_status_code, http_response_body_bytes, "
               "user_name, http_request_referrer")
    assert got[0] == {
        "ts": datetime(2018, 5, 1, 10, 0, 0, 123456), "source_ip": "203.0.113.4",
        "source_port": 40000, "destination_ip": "10.0.0.3", "destination_port": 80,
        "http_request_method": "GET", "url_domain": "site.example",
        "url_original": "/cgi-bin/x?a=%3B", "url_decoded": "/cgi-bin/x?a=;",
        "http_version": "HTTP/1.1", "user_agent_original": "Mozilla/5.0 (X)",
        "http_response_status_code": 200, "http_response_body_bytes": 512, "user_name": None,
        "http_request_referrer": None,
    }
    assert got[1]["url_domain"] == "" and got[1]["user_name"] == "bob"
    assert quarantine(ws) == [(11, "invalid timestamp"), (12, "Zeek: 2 fields, #fields declares 18")]


def test_zeek_json_and_other_logs(ws, tmp_path):
    recs = [
        {"ts": 1525168800.5, "uid": "C1", "id.orig_h": "203.0.113.4", "id.orig_p": 1,
         "id.resp_h": "10.0.0.3", "id.resp_p": 80, "method": "GET", "host": "h", "uri": "/x",
         "version": "1.1", "user_agent": "ua", "status_code": 301},
        {"ts": "2018-05-01T10:00:01.000000Z", "uid": "C2", "id.orig_h": "203.0.113.5",
         "id.orig_p": 2, "id.resp_h": "10.0.0.3", "id.resp_p": 80, "method": "HEAD", "uri": "/"},
        {"ts": 1525168802.0, "uid": "C3", "id.orig_h": "203.0.113.5", "id.orig_p": 2,
         "id.resp_h": "10.0.0.3", "id.resp_p": 53, "proto": "udp", "service": "dns"},
    ]
    s = run(ws, write(tmp_path / "http.json", "".join(json.dumps(r) + "\n" for r in recs)))
    assert s.per_file[0]["format"] == "zeek"
    assert (s.rows_written, s.lines_ignored) == (2, 1)
    got = rows(ws, cols="ts, source_ip, url_original, http_version, http_response_status_code")
    assert got == [
        {"ts": datetime(2018, 5, 1, 10, 0, 0, 500000), "source_ip": "203.0.113.4",
         "url_original": "/x", "http_version": "HTTP/1.1", "http_response_status_code": 301},
        {"ts": datetime(2018, 5, 1, 10, 0, 1), "source_ip": "203.0.113.5", "url_original": "/",
         "http_version": None, "http_response_status_code": None},
    ]
    conn = write(tmp_path / "z" / "conn.log", TSV.replace("#path\thttp", "#path\tconn"))
    s = run(ws, conn)
    assert (s.rows_written, s.lines_ignored, s.comment_lines) == (0, 4, 9), s.to_dict()


def test_zeek_epoch_ts_out_of_range_is_quarantined(ws, tmp_path):
    # (found by tests/fuzz: a ts of nan, inf or 1e13 s failed the cast to microseconds, and
    # with it the whole file)
    good = TSV.splitlines()[8]
    bad = [good.replace("1525168800.123456", ts, 1) for ts in ("nan", "inf", "1e13", "-1e300")]
    lines = [*TSV.splitlines()[:7], good, *bad]
    s = run(ws, write(tmp_path / "http.log", "\n".join(lines) + "\n"), fmt="zeek")
    assert_invariant(s)
    assert (s.errors, s.rows_written, s.rows_quarantined) == ([], 1, 4)
    assert quarantine(ws) == [(n, "invalid timestamp") for n in range(9, 13)]
    lines = [json.dumps({"ts": ts, "method": "GET", "uri": "/"}) for ts in (1e13, "nan", -1e300)]
    s = run(ws, write(tmp_path / "http.json", "\n".join(lines) + "\n"), fmt="zeek")
    assert (s.errors, s.rows_written, s.rows_quarantined) == ([], 0, 3)


def test_zeek_bad_separator_escape_is_taken_as_written(ws, tmp_path):
    # (found by tests/fuzz: '#separator \\' raised UnicodeDecodeError, failing the file)
    text = ("#separator \\\n#fields\\ts\\method\\uri\\status_code\n"
            "1525168800\\GET\\/\\200\n#separator \\x\n")
    s = run(ws, write(tmp_path / "http.log", text), fmt="zeek")
    assert_invariant(s)
    assert (s.errors, s.rows_written, s.comment_lines) == ([], 1, 3)
    assert rows(ws, cols="url_original, http_response_status_code") == [
        {"url_original": "/", "http_response_status_code": 200}]
