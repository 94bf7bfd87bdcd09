import json
from datetime import datetime

from tests.ingest.conftest import assert_invariant, quarantine, rows, run, write


def test_http_jsonl_rows(ws, tmp_path):
    recs = [
        {"ts": "2018-05-01T10:00:00+02:00", "src_ip": "203.0.113.7", "method": "POST",
         "uri": "/user/register?element_parents=account/mail/%23value", "version": "HTTP/1.1",
         "headers": {"Host": "site.example", "User-Agent": "python-requests/2.19",
                     "Referer": "http://x/", "Content-Type": "application/x-www-form-urlencoded"},
         "body": "form_id=user_register_form&mail[#markup]=id", "status": 200, "org_id": "acme"},
        {"method": "GET", "uri": "/get", "headers": {"HOST": "localhost"}, "rule_id": 1},
        {"ts": 1525168800.5, "method": "GET", "uri": "/", "body": {"a": 1}},
        {"ts": "2018-13-01T00:00:00Z", "method": "GET", "uri": "/"},
        {"method": "GET"},
    ]
    text = "\n".join(json.dumps(r) for r in recs) + "\n{not json\n"
    s = run(ws, write(tmp_path / "reqs.jsonl", text))
    assert s.per_file[0]["format"] == "http-jsonl"
    assert_invariant(s)
    assert (s.rows_written, s.rows_quarantined) == (3, 3)
    got = rows(ws, cols="source_line, org_id, ts, source_ip, http_request_method, url_original, "
               "url_path, url_query, url_decoded, http_version, http_response_status_code, "
               "url_domain, user_agent_original, http_request_referrer, http_request_headers, "
               "http_request_body_content")
    assert got[0] == {
        "source_line": 1, "org_id": "acme", "ts": datetime(2018, 5, 1, 8, 0, 0),
        "source_ip": "203.0.113.7", "http_request_method": "POST",
        "url_original": "/user/register?element_parents=account/mail/%23value",
        "url_path": "/user/register", "url_query": "element_parents=account/mail/%23value",
        "url_decoded": "/user/register?element_parents=account/mail/#value",
        "http_version": "HTTP/1.1", "http_response_status_code": 200,
        "url_domain": "site.example", "user_agent_original": "python-requests/2.19",
        "http_request_referrer": "http://x/",
        "http_request_headers": '{"host":"site.example","user-agent":"python-requests/2.19",'
                                '"referer":"http://x/","content-type":"application/x-www-form-urlencoded"}',
        "http_request_body_content": "form_id=user_register_form&mail[#markup]=id",
    }
    assert json.loads(got[0]["http_request_headers"])["content-type"].startswith("application/")
    assert got[1]["ts"] is None and got[1]["org_id"] == "default"
    assert got[1]["url_domain"] == "localhost"
    assert got[2]["ts"] == datetime(2018, 5, 1, 10, 0, 0, 500000)
    assert got[2]["http_request_body_content"] == '{"a":1}'
    assert quarantine(ws) == [(4, "invalid timestamp"), (5, "missing method or uri"),
                              (6, "invalid JSON")]


def test_org_flag_beats_record(ws, tmp_path):
    log = write(tmp_path / "r.jsonl", '{"method": "GET", "uri": "/", "org_id": "acme"}\n')
    run(ws, log, org="beta")
    assert rows(ws, cols="org_id") == [{"org_id": "beta"}]
    with ws.connect() as con:
        assert con.execute("SELECT org_id FROM org").fetchall() == [("beta",)]


def test_hostile_org_id_is_sanitised(ws, tmp_path):
    log = write(tmp_path / "r.jsonl", '{"method": "GET", "uri": "/", "org_id": "../../etc x"}\n')
    run(ws, log)
    assert rows(ws, cols="org_id") == [{"org_id": ".._.._etc_x"}]
    assert not (ws.root / "etc").exists()


def test_epoch_ts_out_of_range_is_quarantined(ws, tmp_path):
    # (found by tests/fuzz: "ts": 9223372036855.0 failed the cast to microseconds, and with it
    # the whole file)
    lines = [json.dumps({"ts": ts, "method": "GET", "uri": "/"})
             for ts in (1525168800.5, 9223372036855.0, "nan", "1e300", 253402300800)]
    s = run(ws, write(tmp_path / "reqs.jsonl", "\n".join(lines) + "\n"), fmt="http-jsonl")
    assert_invariant(s)
    assert (s.errors, s.rows_written, s.rows_quarantined) == ([], 1, 4)
    assert quarantine(ws) == [(n, "invalid timestamp") for n in range(2, 6)]


def test_deeply_nested_line_is_quarantined_not_a_failed_file(ws, tmp_path):
    # (found by tests/fuzz: the JSON sniffers' json.loads raised RecursionError, failing the
    # whole file at auto-detection)
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    text = (json.dumps({"method": "GET", "uri": "/"}) + "\n") * 2 + deep + "\n"
    s = run(ws, write(tmp_path / "reqs.jsonl", text))
    assert_invariant(s)
    assert s.per_file[0]["format"] == "http-jsonl" and not s.errors
    assert (s.rows_written, s.rows_quarantined) == (2, 1)
