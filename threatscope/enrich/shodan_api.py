"""Live look-ups of addresses in the Shodan REST API, cached in the workspace as host records.

    summary = fetch_hosts(ws, ["1.2.3.4", "2001:db8::1"], key)
    summary.fetched, summary.not_found, summary.cached, summary.failed, summary.errors

Each address is asked once (``GET {base}/shodan/host/{ip}?key=KEY``); every answer is appended
at once (flush + fsync) to ``<workspace>/intel/shodan-api/hosts-<UTC date>-<pid>.jsonl``, one
host record a line as received, and "no information" answers (HTTP 404) to ``not-found.txt``,
so a killed run loses at most the request in flight and a rerun asks only what is not cached.
The cache files are then ingested (format ``shodan``) into ``host_record``: ingest knows a file
by its content hash and reads a file that grew only from its new lines, so rerunning never
writes a host twice.

Only the standard library (urllib): no extra dependency for an optional feature. The API key
never appears in errors (URLs in messages are redacted).
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from threatscope.errors import UserError
from threatscope.workspace import Workspace

if TYPE_CHECKING:
    from threatscope.ingest.pipeline import IngestSummary

DEFAULT_URL = "https://api.shodan.io"
URL_ENV = "THREATSCOPE_SHODAN_URL"
NOT_FOUND_FILE = "not-found.txt"
MAX_429 = 10  # rate-limit answers tolerated for one address before it counts as failed

Progress = Callable[[int, int | None, str], None]


@dataclass
class FetchSummary:
    """What one ``fetch_hosts`` call did. Every valid distinct address given is counted once:
    requested = fetched + not_found + cached + failed (+ those left when the key was
    rejected)."""

    requested: int = 0  # distinct valid addresses given
    fetched: int = 0  # answered with a host record (now in the cache)
    not_found: int = 0  # Shodan has no information (404), now in not-found.txt
    cached: int = 0  # skipped: already in the cache or the not-found list
    failed: int = 0
    invalid: int = 0  # input values that are no IP address (not requested)
    errors: list[str] = field(default_factory=list)  # one line per failure or invalid value
    ingest: dict | None = None  # IngestSummary.to_dict() of the cache files' ingest

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir(ws: Workspace) -> Path:
    """The workspace folder of the API cache."""
    return ws.root / "intel" / "shodan-api"


def normalise_ip(value: str) -> str | None:
    """Canonical text of an address (IPv4-mapped IPv6 as IPv4, IPv6 compressed), else None."""
    try:
        a = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(a)


def fetch_hosts(ws: Workspace, ips: Iterable[str], key: str, *, base_url: str | None = None,
                rate: float = 1.0, timeout: float = 10.0, retries: int = 3,
                backoff: float = 1.0, max_backoff: float = 30.0,
                progress: Progress | None = None, ingest: bool = True) -> FetchSummary:
    """Look up ``ips`` (those not cached yet) in the Shodan API and ingest the cache.

    ``base_url``: the API root (else ``$THREATSCOPE_SHODAN_URL``, else api.shodan.io).
    ``rate``: requests per second at most. HTTP 429 waits (Retry-After, else ``backoff``
    doubling up to ``max_backoff`` seconds) and asks again; 5xx answers, timeouts and connection
    errors are tried ``retries`` times in all (same backoff), then count as failed. A rejected
    key (401/403) stops at once with UserError, after ingesting what was fetched.
    ``progress(advance, total, description)`` is called once per address.
    """
    if not key:
        raise UserError("a Shodan API key is needed")
    base = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    summary = FetchSummary()
    wanted: list[str] = []
    seen: set[str] = set()
    for value in ips:
        ip = normalise_ip(value)
        if ip is None:
            summary.invalid += 1
            summary.errors.append(f"{value.strip()!r}: not an IP address (not requested)")
        elif ip not in seen:
            seen.add(ip)
            wanted.append(ip)
    summary.requested = len(wanted)
    folder = cache_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    known = _cached_ips(folder)
    client = _Client(base, key, timeout, retries, backoff, max_backoff, rate)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    hosts = _Appender(folder / f"hosts-{day}-{os.getpid()}.jsonl")
    missing = _Appender(folder / NOT_FOUND_FILE)
    rejected: UserError | None = None
    try:
        for ip in wanted:
            if progress is not None:
                progress(1, len(wanted), ip)
            if ip in known:
                summary.cached += 1
                continue
            try:
                status, body = client.get(ip)
            except _Failed as e:
                summary.failed += 1
                summary.errors.append(client.redact(f"{ip}: {e}"))
                continue
            except UserError as e:
                rejected = e
                break
            if status == 404:
                missing.write(ip.encode())
                summary.not_found += 1
            elif (line := _one_line(body)) is None:
                summary.failed += 1
                summary.errors.append(f"{ip}: the answer is not a JSON object")
            else:
                hosts.write(line)
                summary.fetched += 1
            known.add(ip)
    finally:
        hosts.close()
        missing.close()
    if ingest:
        done = ingest_cache(ws)
        summary.ingest = done.to_dict()
        summary.errors.extend(done.errors)
    if rejected is not None:
        raise rejected
    return summary


def ingest_cache(ws: Workspace) -> IngestSummary:
    """Ingest every cache file of the workspace (format ``shodan``); files seen before are
    skipped, files that grew are read from their new lines."""
    # (imported here: the ingest machinery is heavy, and not needed to read the cache)
    from threatscope.ingest import ingest_paths
    from threatscope.ingest.pipeline import IngestSummary

    files = sorted(cache_dir(ws).glob("hosts-*.jsonl"))
    for f in files:
        _repair_tail(f)
    if not files:
        return IngestSummary()
    return ingest_paths(ws, [str(f.resolve()) for f in files], fmt="shodan")


# -- the cache ------------------------------------------------------------------------------
def _cached_ips(folder: Path) -> set[str]:
    """Addresses already answered: in any cache file (its host record's ip_str) or in the
    not-found list."""
    known: set[str] = set()
    for f in sorted(folder.glob("hosts-*.jsonl")):
        _repair_tail(f)
        with open(f, "rb") as fh:
            for raw in fh:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("ip_str"), str):
                    if (ip := normalise_ip(rec["ip_str"])) is not None:
                        known.add(ip)
    nf = folder / NOT_FOUND_FILE
    if nf.exists():
        known.update(ip for x in nf.read_text().split() if (ip := normalise_ip(x)))
    return known


def _repair_tail(path: Path) -> None:
    """Cut an unfinished last line (a run killed in the middle of a write): the address is
    asked again, and ingest never sees half a record."""
    size = path.stat().st_size
    if not size:
        return
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        step = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - step)
            f.seek(start)
            cut = f.read(pos - start).rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return
            pos = start
        f.truncate(0)


class _Appender:
    """A file opened on the first line written; each line is on disk before the next request."""

    def __init__(self, path: Path):
        self.path = path
        self._f = None

    def write(self, line: bytes) -> None:
        if self._f is None:
            self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._f.write(line + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _one_line(body: bytes) -> bytes | None:
    """The answer as one line: as received when it is one, else re-serialised; None when it is
    not a JSON object."""
    try:
        rec = json.loads(body)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    body = body.strip()
    if b"\n" in body or b"\r" in body:
        return json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode()
    return body


# -- HTTP ------------------------------------------------------------------------------------
class _Failed(Exception):
    """An address given up on (the message says why)."""


class _Client:
    def __init__(self, base: str, key: str, timeout: float, retries: int, backoff: float,
                 max_backoff: float, rate: float):
        self.base, self.key, self.timeout = base, key, timeout
        self.retries, self.backoff, self.max_backoff = max(1, retries), backoff, max_backoff
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0  # time.monotonic() of the next request allowed

    def redact(self, text: str) -> str:
        text = re.sub(r"(?i)(key=)[^&\s'\"]*", r"\1***", text)
        return text.replace(self.key, "***") if self.key else text

    def _pace(self) -> None:
        now = time.monotonic()
        if now < self._next:
            time.sleep(self._next - now)
            now = time.monotonic()
        self._next = now + self.gap

    def _wait(self, n: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** n)

    def get(self, ip: str) -> tuple[int, bytes]:
        """(200, body) or (404, body); raises _Failed, or UserError on a rejected key."""
        url = (f"{self.base}/shodan/host/{urllib.parse.quote(ip, safe=':.')}?"
               + urllib.parse.urlencode({"key": self.key}))
        tries = limited = 0
        while True:
            self._pace()
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as e:
                status = e.code
                retry_after = e.headers.get("Retry-After") if e.headers else None
                body = _read(e)
                if status == 404:
                    return 404, body
                if status in (401, 403):
                    raise UserError(f"Shodan API key rejected (HTTP {status})") from None
                if status == 429:
                    limited += 1
                    if limited >= MAX_429:
                        raise _Failed(f"rate limited (HTTP 429) {limited} times") from None
                    time.sleep(_retry_after(retry_after, self._wait(limited - 1),
                                            self.max_backoff))
                    continue
                if status < 500:
                    raise _Failed(f"HTTP {status}: {_message(body)}") from None
                tries += 1
                what = f"server error {status}"
            except TimeoutError:  # (socket.timeout is TimeoutError)
                tries += 1
                what = "timed out"
            except urllib.error.URLError as e:
                tries += 1
                timed_out = isinstance(e.reason, TimeoutError)
                what = "timed out" if timed_out else f"cannot connect: {e.reason}"
            except (ConnectionError, http.client.HTTPException) as e:
                tries += 1
                what = f"connection error: {type(e).__name__}"
            if tries >= self.retries:
                raise _Failed(f"{what} after {tries} tries")
            time.sleep(self._wait(tries - 1))


def _read(e: urllib.error.HTTPError) -> bytes:
    try:
        return e.read()
    except (OSError, ValueError):
        return b""


def _message(body: bytes) -> str:
    """The API's {"error": "..."} message, else the start of the body."""
    try:
        msg = json.loads(body).get("error")
    except (ValueError, AttributeError):
        msg = None
    return str(msg or body[:200].decode("utf-8", "replace").strip() or "no message")


def _retry_after(value: str | None, default: float, cap: float) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), else ``default``;
    at most ``cap``."""
    if value:
        value = value.strip()
        if value.isdigit():
            return min(cap, float(value))
        try:
            when = email.utils.parsedate_to_datetime(value)
            return min(cap, max(0.0, when.timestamp() - time.time()))
        except (TypeError, ValueError):
            pass
    return default
