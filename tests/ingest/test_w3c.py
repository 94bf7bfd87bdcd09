from datetime import datetime

from tests.ingest.conftest import assert_invariant, quarantine, rows, run, write

W3C = """\
2018-04-01 00:00:01 GET /early - 10.0.0.1
#Software: Microsoft Internet Information Services 10.0
#Version: 1.0
#Date: 2018-04-01 00:00:00
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-bytes cs-host
2018-04-01 10:00:00 10.0.0.5 GET /default.aspx q=%27or+1 80 - 203.0.113.5 Mozilla/5.0+(Windows+NT) http://r/ 200 512 www.example.com
2018-04-01 10:00:01 10.0.0.5 PROPFIND / - 80 DOM\\bob 203.0.113.6 - - 207 - -
2018-04-01 10:00:02 10.0.0.5 GET /too few
2018-02-31 10:00:03 10.0.0.5 GET / - 80 - 203.0.113.6 - - 200 1 -
#Software: Microsoft Internet Information Services 10.0
#Fields: time c-ip cs-method cs-uri-stem sc-status cs-version
#Date: 2018-04-02 00:00:00
11:00:00 198.51.100.1 GET /x.asp 404 HTTP/1.1
"""


def test_w3c_rows(ws, tmp_path):
    s = run(ws, write(tmp_path / "u_ex180401.log", W3C))
    assert s.per_file[0]["format"] == "w3c"
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined, s.comment_lines) == (13, 3, 3, 7)
    got = rows(ws, cols="source_line, ts, source_ip, destination_ip, destination_port, "
               "http_request_method, url_original, url_path, url_query, url_decoded, user_name, "
               "user_agent_original, http_request_referrer, http_response_status_code, "
               "http_response_body_bytes, url_domain, http_version")
    assert got[0] == {
        "source_line": 6, "ts": datetime(2018, 4, 1, 10, 0, 0), "source_ip": "203.0.113.5",
        "destination_ip": "10.0.0.5", "destination_port": 80, "http_request_method": "GET",
        "url_original": "/default.aspx?q=%27or+1", "url_path": "/default.aspx",
        "url_query": "q=%27or+1", "url_decoded": "/default.aspx?q='or+1", "user_name": None,
        "user_agent_original": "Mozilla/5.0 (Windows NT)", "http_request_referrer": "http://r/",
        "http_response_status_code": 200, "http_response_body_bytes": 512,
        "url_domain": "www.example.com", "http_version": None,
    }
    assert got[1]["http_request_method"] == "PROPFIND" and got[1]["user_name"] == "DOM\\bob"
    assert got[1]["url_original"] == "/" and got[1]["url_query"] is None
    # Fields changed mid-file; the date comes from '#Date:' since there is no date field.
    assert got[2]["ts"] == datetime(2018, 4, 2, 11, 0, 0)
    assert got[2]["http_version"] == "HTTP/1.1" and got[2]["source_ip"] == "198.51.100.1"
    assert quarantine(ws) == [
        (1, "W3C data line before any #Fields: header"),
        (8, "W3C: 6 fields, #Fields declares 14"),
        (9, "invalid timestamp"),
    ]


def test_w3c_without_fields(ws, tmp_path):
    log = write(tmp_path / "nofields.log", "2018-04-01 10:00:00 10.0.0.5 GET / - 80\n" * 3)
    s = run(ws, log)
    assert s.per_file[0]["format"] == "w3c"
    assert (s.rows_written, s.rows_quarantined) == (0, 3)
    assert {r for _, r in quarantine(ws)} == {"W3C data line before any #Fields: header"}


def test_w3c_fields_across_batches(ws, tmp_path, monkeypatch):
    from threatscope.ingest import reader

    monkeypatch.setattr(reader, "BLOCK", 8192)
    head = "#Fields: date time c-ip cs-method cs-uri-stem sc-status\n"
    body = "".join(f"2018-04-01 10:{i // 60 % 60:02d}:{i % 60:02d} 10.1.1.{i % 250} GET /p{i} 200\n"
                   for i in range(2000))
    s = run(ws, write(tmp_path / "big.log", head + body + head + body))
    assert_invariant(s)
    assert (s.rows_written, s.rows_quarantined, s.comment_lines) == (4000, 0, 2)


def test_headers_before_the_first_data_line_make_one_run():
    """'#Software/#Version/#Date' then '#Fields' at the top of a batch: one run with that schema
    (so the batch takes the C fast path), while a '#Fields' change after data lines starts a
    second run."""
    import pyarrow as pa

    from threatscope.ingest.formats.w3c import W3C

    lines = ["#Software: IIS", "#Version: 1.0", "#Date: 2018-05-12 00:00:00",
             "#Fields: date time c-ip cs-method", "2018-05-12 10:00:00 10.0.0.1 GET",
             "#Date: 2018-05-12 00:00:00", "#Fields: time c-ip", "10:00:01 10.0.0.2"]
    table = pa.table({"n": pa.array(range(1, 9), pa.int64()), "line": lines})
    seg = W3C().prepare(table)
    assert seg.starts == (1, 7) and seg.comments == 6
    assert [s.fields for s in seg.schemas] == [("date", "time", "c-ip", "cs-method"),
                                               ("time", "c-ip")]
