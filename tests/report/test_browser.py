"""The HTML report in a real browser (headless Chromium): hostile strings stay text, the CSP
blocks nothing the page needs, the page renders, and it prints to PDF. Skipped without Chromium."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.report.conftest import INDICATOR_PAYLOADS, PAYLOADS
from tests.report.helpers import Page
from tests.report.test_report import ALLOWED_TAGS
from threatscope.report import write_report
from threatscope.report.pdf import chromium_args, find_chromium
from threatscope.report.text import clean

CHROMIUM = find_chromium()
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = chromium_args(CHROMIUM, str(profile)) + ["--enable-logging=stderr", "--log-level=0",
                                                   *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium took more than 30 s")


def _csp_complaints(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Content Security Policy" in line]


def test_hostile_report_dom_has_no_injected_elements(hostile_report, tmp_path):
    html = write_report(hostile_report, tmp_path / "out")["html"]
    r = _chromium(tmp_path, "--dump-dom", html.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    dom = Page(r.stdout)
    assert len(dom.elements) > 500  # the whole report was loaded
    assert dom.tags() <= ALLOWED_TAGS, dom.tags() - ALLOWED_TAGS
    for tag, attrs in dom.elements:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    for p in PAYLOADS:
        assert clean(p, 600) in dom.text, p
    # the endpoint chart is in the rendered page, its labels (hostile technique names) as text
    endpoint = [a for t, a in dom.elements if t == "svg"
                and a.get("aria-label", "").startswith("Share of each execution technique")]
    assert len(endpoint) == 1
    # the indicators appendix (attacker-controlled URLs, markup) and the infrastructure tables:
    # text in the rendered page, and the only links are the table of contents'
    for p in INDICATOR_PAYLOADS:
        assert clean(p, 600) in dom.text, p
    links = [a.get("href") for t, a in dom.elements if t == "a"]
    assert links and all(h and h.startswith("#") for h in links), links
    assert any(t == "section" and a.get("id") == "indicators" for t, a in dom.elements)
    assert "iframe" not in dom.tags() and "img" not in dom.tags()
    assert _csp_complaints(r.stderr) == []


def _png_rows(data: bytes, nrows: int) -> tuple[int, int, list[bytes]]:
    """Width, height and the first ``nrows`` unfiltered scanlines of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr
    assert depth == 8 and ctype in (2, 6)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompressobj().decompress(idat, (w * bpp + 1) * nrows)
    rows, prev = [], bytearray(w * bpp)
    for y in range(nrows):
        f, line = raw[y * (w * bpp + 1)], bytearray(raw[y * (w * bpp + 1) + 1:(y + 1) * (w * bpp + 1)])
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, [bytes(r[i:i + 3]) for r in rows for i in range(0, len(r), bpp)]


def test_screenshot_of_the_report_is_styled_and_not_blank(metrics, tmp_path):
    html = write_report(metrics, tmp_path / "out")["html"]
    png = tmp_path / "shot.png"
    r = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1200,1600",
                  f"--screenshot={png}", html.as_uri())
    assert r.returncode == 0 and png.exists(), r.stderr[-2000:]
    assert _csp_complaints(r.stderr) == []  # the style element's hash matched, nothing blocked
    data = png.read_bytes()
    assert len(data) > 50_000  # text, tables and charts; a blank page is a few KB
    w, h, pixels = _png_rows(data, 60)
    assert (w, h) == (1200, 1600)
    # the header band is drawn in the report's accent colour: the style sheet was applied
    navy = sum(1 for p in pixels if p == bytes((0x1F, 0x4E, 0x79)))
    assert navy > 0.8 * len(pixels)
    full = zlib.decompress(b"".join(  # and the page as a whole has many colours, not one
        data[i + 8:i + 8 + struct.unpack(">I", data[i:i + 4])[0]]
        for i in _chunk_offsets(data, b"IDAT")))
    assert len(set(full[::7])) > 100


def _chunk_offsets(data: bytes, kind: bytes) -> list[int]:
    out, pos = [], 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == kind:
            out.append(pos)
        pos += 12 + n
    return out


def test_pdf_is_printed(metrics, tmp_path):
    paths = write_report(metrics, tmp_path / "out", pdf=True)
    data = paths["pdf"].read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000
    assert data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 3  # several A4 pages
