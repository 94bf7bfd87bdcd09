"""`threatscope serve`: the dashboard over HTTP, read-only.

    server = make_server(ws, "127.0.0.1", 8080)      # binds; raises UserError if it cannot
    server.serve_forever()

GET and HEAD only. Bound to a loopback address it answers requests whose Host header names that
address (a web page elsewhere cannot reach it through DNS rebinding); bound to any other address
it requires a token, given once as ``?token=`` (then kept in a same-site, HTTP-only cookie) or as
``Authorization: Bearer``. Every response carries a Content-Security-Policy that allows nothing
but the dashboard's own stylesheet: no script runs, whatever a log line holds. An error inside a
page is logged on the console; the page says only that it failed.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import secrets
import socket
import sys
import traceback
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from threatscope.errors import UserError
from threatscope.explore.pages import Dashboard, csp
from threatscope.explore.snapshot import Snapshots
from threatscope.workspace import Workspace

HEADERS = {
    "Content-Security-Policy": csp("/"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
COOKIE = "threatscope_token"
_CSS = Path(__file__).with_name("templates") / "serve.css"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    dashboard: Dashboard
    token: str | None
    allowed_hosts: set[str] | None  # Host header values accepted (None: any, with a token)

    def server_close(self) -> None:
        super().server_close()
        if hasattr(self, "dashboard"):
            self.dashboard.snapshots.stop()
            self.dashboard.close()


class Server6(Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "threatscope"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        sys.stderr.write(f"{self.address_string()} {format % args}\n".encode(
            "ascii", "backslashreplace").decode("ascii"))

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True, max_num_fields=50)
        if self.server.allowed_hosts is not None and \
                self.headers.get("Host", "") not in self.server.allowed_hosts:
            return self._send(421, "text/plain", b"misdirected request: unknown Host\n", head)
        if self.server.token is not None:
            given = query.pop("token", [None])[-1]
            if given is not None and hmac.compare_digest(given.encode(),
                                                         self.server.token.encode()):
                rest = urlencode(query, doseq=True)
                cookie = (f"{COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/")
                return self._send(303, "text/plain", b"", head, {
                    "Location": url.path + (f"?{rest}" if rest else ""), "Set-Cookie": cookie})
            if not self._authorised():
                return self._send(401, "text/plain",
                                  b"a token is needed: open the URL `threatscope serve` printed\n",
                                  head)
        if url.path == "/style.css":
            return self._send(200, "text/css; charset=utf-8", _CSS.read_bytes(), head)
        if url.path == "/favicon.ico":
            return self._send(404, "text/plain", b"", head)
        try:
            status, body = self.server.dashboard.page(url.path, query)
        except Exception:  # the page says it failed; the console has the details
            traceback.print_exc()
            status, body = 500, _FAILED
        self._send(status, "text/html; charset=utf-8", body.encode("utf-8"), head,
                   {"Content-Security-Policy": csp(url.path)})

    def _authorised(self) -> bool:
        want = self.server.token.encode()  # type: ignore[union-attr]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), want):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:  # a malformed cookie header is no token
            return False
        got = cookie.get(COOKIE)
        return got is not None and hmac.compare_digest(got.value.encode(), want)

    def _refuse(self) -> None:
        self._send(405, "text/plain", b"read-only: GET and HEAD only\n", False,
                   {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = \
        lambda self: self._refuse()  # noqa: E731

    def _send(self, status: int, ctype: str, body: bytes, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {**HEADERS, "Content-Type": ctype, "Content-Length": str(len(body)),
                     **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)


_FAILED = ("<!doctype html><meta charset=utf-8><title>error · threatscope</title>"
           "<link rel=stylesheet href=/style.css><main><h1>This page failed</h1>"
           "<p class=message>Something went wrong while building it; the details are in the "
           "console where <code>threatscope serve</code> runs.</p><p><a href=/>Back</a></main>")


def make_server(ws: Workspace, host: str = "127.0.0.1", port: int = 8080,
                token: str | None = None, poll_s: float = 1.0) -> Server:
    """A server bound to ``host:port`` over a snapshot of ``ws`` (renewed in the background
    once :meth:`Server.serve_forever` runs). Away from loopback without ``token``, one is
    generated (``server.token``)."""
    loopback = is_loopback(host)
    if not loopback and not token:
        token = secrets.token_urlsafe(24)
    try:  # bound first: a port in use is said at once, before the snapshot is taken
        server = (Server6 if ":" in host else Server)((host.strip("[]"), port), Handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use: choose another with --port") \
                from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    try:
        snapshots = Snapshots(ws, poll_s=poll_s)
    except BaseException:
        server.server_close()
        raise
    server.dashboard = Dashboard(snapshots)
    server.token = token
    real_port = server.server_address[1]
    if loopback:
        names = {host if ":" not in host else f"[{host.strip('[]')}]", "localhost",
                 "127.0.0.1", "[::1]"}
        server.allowed_hosts = {f"{n}:{real_port}" for n in names} | names
    else:
        server.allowed_hosts = None
    snapshots.start()
    return server
