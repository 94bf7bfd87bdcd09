import json
from datetime import datetime

from tests.ingest.conftest import assert_invariant, quarantine, rows, run, write

EVE = [
    {"timestamp": "2018-05-01T10:00:00.250000+0200", "event_type": "http", "src_ip": "203.0.113.9",
     "src_port": 51000, "dest_ip": "10.0.0.2", "dest_port": 80, "proto": "TCP",
     "http": {"hostname": "shop.example", "url": "/struts2/index.action", "http_method": "GET",
              "http_user_agent": "Mozilla/5.0", "protocol": "HTTP/1.1", "status": 200,
              "length": 1234, "http_refer": "http://r/",
              "request_headers": [{"name": "Content-Type", "value": "%{(#_='multipart')}"}]}},
    {"timestamp": "2018-05-01T10:00:01.000000+0000", "event_type": "alert", "src_ip": "203.0.113.9",
     "dest_ip": "10.0.0.2", "dest_port": 80,
     "alert": {"signature_id": 2024043, "signature": "ET EXPLOIT Apache Struts RCE",
               "category": "Attempted Administrator Privilege Gain", "severity": 1,
               "metadata": {"cve": ["CVE_2017_5638"], "former_category": ["EXPLOIT"]}},
     "http": {"hostname": "shop.example", "url": "/struts2/index.action", "http_method": "GET"}},
    {"timestamp": "2018-05-01T10:00:02.000000+0000", "event_type": "alert", "src_ip": "192.0.2.1",
     "dest_ip": "10.0.0.2", "dest_port": 8080,
     "alert": {"signature_id": 1, "signature": "GPON Router RCE (CVE-2018-10562) CVE-2018-10561",
               "category": "x", "severity": 2, "metadata": {"cve": ["2018-10561"]}}},
    {"timestamp": "2018-05-01T10:00:03.000000+0000", "event_type": "flow", "src_ip": "192.0.2.1"},
    {"timestamp": "2018-05-01T10:00:04.000000+0000", "event_type": "stats"},
    {"timestamp": "2018-05-01T10:00:05.000000+0000", "src_ip": "192.0.2.1"},
]


def test_eve_http_alert_and_ignored(ws, tmp_path):
    text = "".join(json.dumps(r) + "\n" for r in EVE) + "garbage\n"
    s = run(ws, write(tmp_path / "eve.json", text))
    assert s.per_file[0]["format"] == "eve"
    assert_invariant(s)
    assert (s.lines_read, s.rows_written, s.rows_quarantined, s.lines_ignored) == (7, 3, 2, 2)
    (h,) = rows(ws, cols="ts, source_ip, source_port, destination_ip, destination_port, "
                "url_domain, url_original, http_request_method, user_agent_original, "
                "http_version, http_response_status_code, http_response_body_bytes, "
                "http_request_referrer, http_request_headers, event_kind")
    assert h == {
        "ts": datetime(2018, 5, 1, 8, 0, 0, 250000), "source_ip": "203.0.113.9",
        "source_port": 51000, "destination_ip": "10.0.0.2", "destination_port": 80,
        "url_domain": "shop.example", "url_original": "/struts2/index.action",
        "http_request_method": "GET", "user_agent_original": "Mozilla/5.0",
        "http_version": "HTTP/1.1", "http_response_status_code": 200,
        "http_response_body_bytes": 1234, "http_request_referrer": "http://r/",
        "http_request_headers": '{"content-type":"%{(#_=\'multipart\')}"}', "event_kind": "http",
    }
    alerts = rows(ws, "alert", cols="source_line, signature_id, signature, category, severity, "
                  "cves, url_original, url_domain, http_request_method, source_ip_num, "
                  "destination_port, event_kind")
    assert alerts[0] == {
        "source_line": 2, "signature_id": 2024043, "signature": "ET EXPLOIT Apache Struts RCE",
        "category": "Attempted Administrator Privilege Gain", "severity": 1,
        "cves": ["CVE-2017-5638"], "url_original": "/struts2/index.action",
        "url_domain": "shop.example", "http_request_method": "GET",
        "source_ip_num": 0xFFFF00000000 + (203 << 24) + (113 << 8) + 9, "destination_port": 80,
        "event_kind": "alert",
    }
    assert alerts[1]["cves"] == ["CVE-2018-10561", "CVE-2018-10562"]
    assert quarantine(ws) == [(6, "not an EVE record (no event_type)"), (7, "invalid JSON")]
