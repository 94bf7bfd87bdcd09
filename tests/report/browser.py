"""Headless Chromium for the report tests: run it, measure a page from a wrapper, decode its
screenshots and pdftoppm's renders, read its network log. Standard library and numpy only.

The report itself has no script and a CSP that forbids one; measuring it needs script, so
``measure`` loads it in an iframe of a wrapper page of ours (the script is the wrapper's, the
report stays as written). Chromium reads the iframe's document across file:// URLs only with
--allow-file-access-from-files.
"""

from __future__ import annotations

import html as html_lib
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from threatscope.report.pdf import chromium_args, find_chromium

CHROMIUM = find_chromium()
PDFTOPPM = shutil.which("pdftoppm")


def chromium(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run headless Chromium (offline flags, a fresh profile under ``tmp_path``)."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = chromium_args(CHROMIUM, str(profile)) + ["--hide-scrollbars", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium took more than {timeout:.0f} s")


# --- measuring a page from a wrapper ------------------------------------------------------

_WRAPPER = """<!DOCTYPE html><html><head><meta charset="utf-8"></head>
<body style="margin:0"><iframe id="f" src="%(src)s" style="width:%(width)dpx;height:800px;border:0">
</iframe><pre id="out">pending</pre><script>
document.getElementById("f").addEventListener("load", () => {
  const d = document.getElementById("f").contentDocument, root = d.documentElement;
  const vw = root.clientWidth, wide = [];
  const clipped = el => { // inside an svg or a box that scrolls or clips: cannot widen the page
    for (let p = el.parentElement; p && p !== d.body; p = p.parentElement)
      if (p instanceof SVGElement || getComputedStyle(p).overflowX !== "visible") return true;
    return false;
  };
  for (const el of d.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    // its box, or the content spilling out of it (a long unbreakable word), past the viewport
    const spill = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1
                  && getComputedStyle(el).overflowX === "visible" ? r.left + el.scrollWidth : 0;
    if ((r.right > vw + 0.5 || r.left < -0.5 || spill > vw + 0.5) && r.width > 0 && !clipped(el))
      wide.push(`${el.tagName.toLowerCase()}.${el.getAttribute("class") || ""} ` +
                `[${Math.round(r.left)}, ${Math.round(r.right)}] ` +
                (el.textContent || "").slice(0, 60));
  }
  // a table cell whose content is wider than the cell runs into its neighbour
  const spilled = [...d.querySelectorAll("th, td")].filter(
      c => c.clientWidth > 0 && c.scrollWidth > c.clientWidth + 1).map(
      c => `${c.closest("table").id || "table"}: ${(c.textContent || "").slice(0, 40)} ` +
           `(${c.scrollWidth} > ${c.clientWidth})`);
  const charts = [...d.querySelectorAll("svg.chart")].map(s => {
    const r = s.getBoundingClientRect();
    return {label: s.getAttribute("aria-label"), x: r.left, y: r.top + root.scrollTop,
            w: r.width, h: r.height, marks: s.querySelectorAll("rect, polyline, circle").length};
  });
  document.getElementById("out").textContent = JSON.stringify({
    viewport: vw, scroll_width: root.scrollWidth, height: root.scrollHeight, wide: wide.slice(0, 20),
    n_wide: wide.length, spilled: spilled.slice(0, 20), n_spilled: spilled.length, charts,
    title: d.title});
});
</script></body></html>
"""


def measure(tmp_path: Path, html: Path, width: int) -> dict:
    """Layout facts of ``html`` laid out ``width`` CSS pixels wide: ``viewport``, ``scroll_width``,
    ``height``, ``wide`` (elements reaching past the viewport), ``spilled`` (table cells whose
    content is wider than they are: it runs into the next cell), ``charts`` (page boxes of every
    svg.chart and how many marks it drew) and ``title``."""
    wrapper = html.with_name(f"_measure_{width}.html")
    wrapper.write_text(_WRAPPER % {"src": html.name, "width": width}, encoding="utf-8")
    r = chromium(tmp_path, "--allow-file-access-from-files", f"--window-size={width + 40},900",
                 "--virtual-time-budget=10000", "--dump-dom", wrapper.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    start = r.stdout.index('<pre id="out">') + len('<pre id="out">')
    text = r.stdout[start:r.stdout.index("</pre>", start)]
    assert text != "pending", "the wrapper's script did not run"
    return json.loads(html_lib.unescape(text))


# --- images ------------------------------------------------------------------------------

def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG (not interlaced) as an (h, w, 3) uint8 array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", data[pos + 8:pos + 21])
        elif kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + n])
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:]
        if f == 0:
            cur = line.copy()
        elif f == 1:  # Sub: a running sum along each channel
            cur = (np.cumsum(line.reshape(w, bpp), axis=0, dtype=np.uint32) & 255
                   ).astype(np.uint8).reshape(stride)
        elif f == 2:
            cur = line + prev
        else:  # Average and Paeth depend on the pixel just decoded: one byte at a time
            cur = _unfilter_serial(int(f), line.tobytes(), prev.tobytes(), bpp)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


def _unfilter_serial(f: int, line: bytes, prev: bytes, bpp: int) -> np.ndarray:
    cur = bytearray(line)
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if f == 3:
            cur[i] = (cur[i] + ((a + b) >> 1)) & 255
        else:
            c = prev[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return np.frombuffer(bytes(cur), np.uint8)


def decode_ppm(data: bytes) -> np.ndarray:
    """A binary PPM (P6, maxval 255, as pdftoppm writes) as an (h, w, 3) uint8 array."""
    parts = data.split(maxsplit=4)
    assert parts[0] == b"P6" and parts[3] == b"255", parts[:4]
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(parts[4][:w * h * 3], np.uint8).reshape(h, w, 3)


def pdf_pages(pdf: Path, out: Path, dpi: int = 50) -> list[np.ndarray]:
    """Every page of ``pdf`` rendered by pdftoppm at ``dpi`` (PPM files kept under ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([PDFTOPPM, "-r", str(dpi), str(pdf), str(out / "page")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return [decode_ppm(p.read_bytes()) for p in sorted(out.glob("page-*.ppm"))]


def colours(region: np.ndarray) -> int:
    """How many distinct colours a region has (an empty region has none)."""
    if region.size == 0:
        return 0
    flat = region.reshape(-1, 3).astype(np.uint32)
    return len(np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]))


def ink(region: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> float:
    """The share of a region's pixels that are not the background colour."""
    if region.size == 0:
        return 0.0
    return float(np.any(region != np.array(background, np.uint8), axis=-1).mean())


def cut_at_right(page: np.ndarray, margin_px: int) -> int:
    """Dark (text) pixels in the last 3 pixel columns inside a printed page's right margin
    (``margin_px`` wide): text cut by the page's content box ends there; a whole table cell keeps
    its padding (4 CSS px) away from it. Table rules and headings' accent lines are not dark."""
    edge = page.shape[1] - margin_px
    return int((page[:, edge - 3:edge].max(-1) < 100).sum())


# --- network log ---------------------------------------------------------------------------

def page_requests(netlog: Path) -> list[str]:
    """URLs that a page asked for, from Chromium's --log-net-log file. Chromium's own
    background requests (updates, time) are not a page's: their initiator is "not an origin"."""
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in log["events"]:
        p = e.get("params") or {}
        if e["type"] == start and "url" in p and (
                p.get("initiator") != "not an origin"
                or "file://" in str(p.get("network_isolation_key", ""))):
            urls.append(p["url"])
    return urls
