"""Shodan API look-ups against a real HTTP server on 127.0.0.1 (no network, no mocks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from threatscope.enrich.shodan_api import URL_ENV, cache_dir, fetch_hosts
from threatscope.errors import UserError
from threatscope.workspace import Workspace

KEY = "s3cr3t-KEY-0123456789"
ROOT = Path(__file__).resolve().parents[2]


def record(ip: str, ports: list[int]) -> dict:
    return {"ip_str": ip, "ports": ports, "os": None, "org": "Test Org", "isp": "Test ISP",
            "asn": "AS64500", "hostnames": [], "domains": [], "tags": [],
            "country_code": "NL", "last_update": "2024-05-06T07:08:09.000000",
            "vulns": [], "data": [
                {"ip_str": ip, "port": p, "transport": "tcp", "product": f"svc{p}",
                 "timestamp": "2024-05-06T07:08:09.000000", "data": f"banner {p}",
                 "_shodan": {"module": "test"}} for p in ports]}


HOSTS = {
    "198.51.100.1": record("198.51.100.1", [22, 80, 443]),
    "198.51.100.2": record("198.51.100.2", [21]),
    "198.51.100.3": record("198.51.100.3", [25, 587]),
    "2001:db8::5": record("2001:db8::5", [443]),
    "192.0.2.29": record("192.0.2.29", [8080]),  # 429 (Retry-After: 0) first
    "192.0.2.30": record("192.0.2.30", [8081]),  # 429 without Retry-After first
    "192.0.2.77": record("192.0.2.77", [7]),  # answered pretty-printed (several lines)
    "192.0.2.99": record("192.0.2.99", [9]),  # answered too slowly
}
NOT_FOUND, SERVER_ERROR, FORBIDDEN, SLOW = "192.0.2.44", "192.0.2.50", "192.0.2.66", "192.0.2.99"
HANG = "192.0.2.200"  # answers after 60 s: the run is killed while waiting


class Api:
    """The test server's state: requests seen, by address."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.keys: set[str] = set()
        self.lock = threading.Lock()
        self.served: dict[str, bytes] = {}


def handler(api: Api, slow: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:  # the client gave up (timeout)
                pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            ip = urllib.parse.unquote(url.path.removeprefix("/shodan/host/"))
            key = urllib.parse.parse_qs(url.query).get("key", [""])[0]
            with api.lock:
                api.hits[ip] += 1
                api.keys.add(key)
                n = api.hits[ip]
            if key != KEY or ip == FORBIDDEN:
                status = 401 if key != KEY else 403
                return self.answer(status, b'{"error": "Please provide a valid API key."}')
            if ip == NOT_FOUND:
                return self.answer(404, b'{"error": "No information available for that IP."}')
            if ip == SERVER_ERROR:
                return self.answer(500, b"oops")
            if ip == "192.0.2.29" and n == 1:
                return self.answer(429, b'{"error": "slow down"}', {"Retry-After": "0"})
            if ip == "192.0.2.30" and n == 1:
                return self.answer(429, b'{"error": "slow down"}')
            if ip == SLOW:
                time.sleep(slow)
            if ip == HANG:
                time.sleep(60)
            if ip not in HOSTS:
                return self.answer(404, b'{"error": "No information available for that IP."}')
            indent = 2 if ip == "192.0.2.77" else None
            body = json.dumps(HOSTS[ip], indent=indent).encode()
            api.served[ip] = body
            return self.answer(200, body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Api]]:
    api = Api()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(api, slow=1.0))
    httpd.daemon_threads = True
    httpd.block_on_close = False
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", api
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws", create=True)


FAST = {"rate": 1000.0, "timeout": 0.3, "retries": 3, "backoff": 0.01, "max_backoff": 0.05}


def host_rows(ws: Workspace) -> list[tuple]:
    with ws.connect() as con:
        return con.execute("SELECT ip, port, product, record_type FROM host_record "
                           "ORDER BY ip, port").fetchall()


def expected_rows(*ips: str) -> list[tuple]:
    return sorted((ip, b["port"], b["product"], "host") for ip in ips
                  for b in HOSTS[ip]["data"])


def cache_files(ws: Workspace) -> list[Path]:
    return sorted(cache_dir(ws).glob("hosts-*.jsonl"))


def test_fetch_answers_errors_and_cache(ws, server):
    base, api = server
    ips = ["198.51.100.1", "::ffff:198.51.100.1", " 198.51.100.2 ", "2001:DB8:0::5",
           NOT_FOUND, "not-an-ip", "192.0.2.29", "192.0.2.30", "192.0.2.77", SERVER_ERROR,
           SLOW, "::ffff:c000:22c"]  # (the last: NOT_FOUND again)
    seen = []
    s = fetch_hosts(ws, ips, KEY, base_url=base, progress=lambda a, t, d: seen.append(d),
                    **FAST)
    d = s.to_dict()
    assert {k: d[k] for k in ("requested", "fetched", "not_found", "cached", "failed",
                              "invalid")} == {"requested": 9, "fetched": 6, "not_found": 1,
                                              "cached": 0, "failed": 2, "invalid": 1}
    assert s.errors == ["'not-an-ip': not an IP address (not requested)",
                        f"{SERVER_ERROR}: server error 500 after 3 tries",
                        f"{SLOW}: timed out after 3 tries"]
    assert len(seen) == 9 and seen[0] == "198.51.100.1" and "2001:db8::5" in seen
    assert api.hits[SERVER_ERROR] == 3 and api.hits[SLOW] == 3
    assert api.hits["192.0.2.29"] == 2 and api.hits["192.0.2.30"] == 2
    assert api.hits["198.51.100.1"] == 1 and api.hits["2001:db8::5"] == 1
    assert api.keys == {KEY}
    # the cache: one host record a line, as served (the pretty-printed one as one line)
    (f,) = cache_files(ws)
    assert f.name == f"hosts-{time.strftime('%Y-%m-%d', time.gmtime())}-{os.getpid()}.jsonl"
    lines = f.read_bytes().splitlines()
    assert len(lines) == 6
    by_ip = {json.loads(x)["ip_str"]: x for x in lines}
    assert by_ip["198.51.100.1"] == api.served["198.51.100.1"]
    assert json.loads(by_ip["192.0.2.77"]) == HOSTS["192.0.2.77"]
    assert (cache_dir(ws) / "not-found.txt").read_text() == f"{NOT_FOUND}\n"
    assert KEY not in f.read_text() and KEY not in json.dumps(d)
    # ingested: one row per banner
    ok = ["198.51.100.1", "198.51.100.2", "2001:db8::5", "192.0.2.29", "192.0.2.30",
          "192.0.2.77"]
    assert host_rows(ws) == expected_rows(*ok)
    assert s.ingest["files"] == 1 and s.ingest["lines_read"] == 6
    assert s.ingest["rows_written"] == 6 and s.ingest["rows_quarantined"] == 0

    # again: only the failed ones are asked again, nothing is written twice
    s2 = fetch_hosts(ws, ips, KEY, base_url=base, **FAST)
    assert (s2.requested, s2.cached, s2.fetched, s2.failed) == (9, 7, 0, 2)
    assert api.hits["198.51.100.1"] == 1 and api.hits[NOT_FOUND] == 1
    assert api.hits[SERVER_ERROR] == 6
    assert s2.ingest["files"] == 0 and s2.ingest["skipped_files"] == 1
    assert host_rows(ws) == expected_rows(*ok)


def test_growing_cache_file_reads_new_lines_only(ws, server):
    base, _ = server
    s1 = fetch_hosts(ws, ["198.51.100.1"], KEY, base_url=base, **FAST)
    s2 = fetch_hosts(ws, ["198.51.100.1", "198.51.100.2", "198.51.100.3"], KEY,
                     base_url=base, **FAST)
    assert (s1.fetched, s2.fetched, s2.cached) == (1, 2, 1)
    assert len(cache_files(ws)) == 1  # same process, same day: the file grew
    assert (s2.ingest["lines_read"], s2.ingest["rows_written"]) == (2, 2)
    assert host_rows(ws) == expected_rows("198.51.100.1", "198.51.100.2", "198.51.100.3")
    with ws.connect() as con:
        m = con.execute("SELECT first_line, lines_read, continues IS NOT NULL "
                        "FROM ingest_manifest ORDER BY first_line").fetchall()
    assert m == [(1, 1, False), (2, 2, True)]


def test_rejected_key_stops_and_keeps_what_was_fetched(ws, server):
    base, api = server
    with pytest.raises(UserError, match=r"^Shodan API key rejected \(HTTP 403\)$"):
        fetch_hosts(ws, ["198.51.100.1", FORBIDDEN, "198.51.100.2"], KEY, base_url=base,
                    **FAST)
    assert api.hits[FORBIDDEN] == 1 and api.hits["198.51.100.2"] == 0
    assert host_rows(ws) == expected_rows("198.51.100.1")
    with pytest.raises(UserError, match=r"HTTP 401") as e:
        fetch_hosts(ws, ["198.51.100.2"], "wrong-key", base_url=base, **FAST)
    assert "wrong-key" not in str(e.value)


def test_base_url_from_environment(ws, server, monkeypatch):
    base, api = server
    monkeypatch.setenv(URL_ENV, base + "/")
    s = fetch_hosts(ws, ["198.51.100.3"], KEY, **FAST)
    assert s.fetched == 1 and api.hits["198.51.100.3"] == 1


def test_unreachable_server_never_shows_the_key(ws, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = fetch_hosts(ws, ["198.51.100.1"], KEY, base_url=f"http://127.0.0.1:{port}", **FAST)
    assert s.failed == 1 and s.errors[0].startswith("198.51.100.1: cannot connect")
    assert s.errors[0].endswith("after 3 tries") and KEY not in s.errors[0]


def test_rerun_after_kill(ws, server, tmp_path):
    """A run killed while waiting for an answer keeps the answers before; a torn last line
    (killed in the middle of a write) is cut; the rerun asks only the rest and ingests each
    host once."""
    base, api = server
    script = (
        "import sys; from threatscope.workspace import Workspace; "
        "from threatscope.enrich.shodan_api import fetch_hosts; "
        "fetch_hosts(Workspace.open(sys.argv[1]), sys.argv[3:], sys.argv[2], rate=1000, "
        "timeout=120)"  # (the API root from the environment)
    )
    env = dict(os.environ, **{URL_ENV: base, "PYTHONPATH": str(ROOT)})
    proc = subprocess.Popen([sys.executable, "-c", script, str(ws.root), KEY,
                             "198.51.100.1", "198.51.100.2", HANG, "198.51.100.3"],
                            env=env, cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while api.hits[HANG] == 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (f,) = cache_files(ws)
    assert len(f.read_bytes().splitlines()) == 2
    with open(f, "ab") as fh:  # as if killed in the middle of writing a third answer
        fh.write(json.dumps(HOSTS["198.51.100.3"]).encode()[:40])
    assert host_rows(ws) == []  # killed before its ingest

    s = fetch_hosts(ws, ["198.51.100.1", "198.51.100.2", "198.51.100.3"], KEY,
                    base_url=base, **FAST)
    assert (s.requested, s.cached, s.fetched, s.failed) == (3, 2, 1, 0)
    assert api.hits["198.51.100.1"] == 1 and api.hits["198.51.100.3"] == 1
    assert len(cache_files(ws)) == 2
    assert (s.ingest["files"], s.ingest["lines_read"], s.ingest["rows_written"],
            s.ingest["rows_quarantined"]) == (2, 3, 3, 0)
    assert host_rows(ws) == expected_rows("198.51.100.1", "198.51.100.2", "198.51.100.3")
    s = fetch_hosts(ws, ["198.51.100.1", "198.51.100.2", "198.51.100.3"], KEY,
                    base_url=base, **FAST)
    assert (s.cached, s.fetched, s.ingest["files"], s.ingest["skipped_files"]) == (3, 0, 0, 2)
    assert host_rows(ws) == expected_rows("198.51.100.1", "198.51.100.2", "198.51.100.3")


def test_cli_intel_fetch(ws, server, monkeypatch):
    from click.testing import CliRunner

    from threatscope.cli import main

    base, api = server
    monkeypatch.setenv("SHODAN_API_KEY", KEY)
    run = CliRunner().invoke
    r = run(main, ["intel", "fetch", "-w", str(ws.root), "--shodan-url", base, "--rate", "1000"])
    assert r.exit_code != 0 and "run `threatscope enrich` first" in r.output
    r = run(main, ["intel", "fetch", "-w", str(ws.root), "--shodan-url", base, "--rate", "1000",
                   "--json", "198.51.100.2", NOT_FOUND])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert (summary["fetched"], summary["not_found"]) == (1, 1)
    assert KEY not in r.output and api.hits["198.51.100.2"] == 1
    with ws.connect(read_only=True) as con:
        assert con.execute("SELECT ip, port FROM host_record").fetchall() == [("198.51.100.2", 21)]
