"""Build `http` table rows for detection tests, filled the way ingest fills them.

    >>> access_row("GET", "/a%20b?x=1+2")["url_original"]
    '/a%20b?x=1+2'
    >>> request_row("POST", "/p", {"Content-Type": "text/xml"}, "<x/>")["http_request_headers"]
    '{"content-type": "text/xml"}'

Access-log rows carry method, URI, status, user agent and referer (headers and body are NULL);
whole-request rows also carry the headers (JSON text, names lower-cased) and the body. The URL's
path, query and decoded form are left to ``detect.evaluate``, which derives them with ingest's
own macros.
"""

from __future__ import annotations

import json
from typing import Any

from threatscope.schema import HTTP

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
_COLUMNS = [name for name, _ in HTTP]


def _base(method: str, uri: str, status: int | None) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_COLUMNS)  # url_path/query/decoded: evaluate derives
    row.update(
        org_id="test",
        event_kind="http",
        source_ip="203.0.113.7",
        http_request_method=method,
        url_original=uri,
        http_version="HTTP/1.1",
        http_response_status_code=status,
    )
    return row


def access_row(
    method: str,
    uri: str,
    status: int = 200,
    ua: str | None = BROWSER_UA,
    referer: str | None = None,
) -> dict[str, Any]:
    """A row as ingested from an Apache combined access-log line (no headers, no body)."""
    row = _base(method, uri, status)
    row.update(user_agent_original=ua, http_request_referrer=referer, http_response_body_bytes=512)
    row["raw"] = (
        f'203.0.113.7 - - [10/May/2018:13:55:36 +0000] "{method} {uri} HTTP/1.1" {status} 512 '
        f'"{referer or "-"}" "{ua or "-"}"'
    )
    return row


def request_row(
    method: str,
    uri: str,
    headers: dict[str, str] | None = None,
    body: str | None = "",
    status: int | None = None,
) -> dict[str, Any]:
    """A row as ingested from a whole-request JSON line (WAF / honeypot record)."""
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    row = _base(method, uri, status)
    row.update(
        user_agent_original=hdrs.get("user-agent"),
        http_request_referrer=hdrs.get("referer"),
        url_domain=hdrs.get("host"),
        http_request_headers=json.dumps(hdrs, ensure_ascii=False),
        http_request_body_content=body,
    )
    row["raw"] = json.dumps(
        {"method": method, "uri": uri, "headers": headers or {}, "body": body, "status": status}
    )
    return row
