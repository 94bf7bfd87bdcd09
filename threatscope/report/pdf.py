"""Print the HTML report to PDF with a headless Chromium (optional; nothing else needs a browser).

    print_pdf(Path("out/report.html"), Path("out/report.pdf"))

The page has no script and a CSP that blocks every fetch, so printing it needs no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from threatscope.errors import UserError

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    env = os.environ.get("THREATSCOPE_CHROMIUM")
    if env:
        return env
    return next((p for c in _CANDIDATES if (p := shutil.which(c))), None)


def chromium_args(exe: str, profile: str) -> list[str]:
    """A headless, offline Chromium command line (add the action and the URL)."""
    args = [exe, "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--no-first-run", "--no-default-browser-check", "--mute-audio",
            f"--user-data-dir={profile}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
    return args


def print_pdf(html: Path, pdf: Path, timeout: float = 90) -> Path:
    """Print ``html`` to ``pdf`` (A4, as the print style sheet lays it out)."""
    exe = find_chromium()
    if not exe:
        raise UserError("PDF needs Chromium (apt-get install chromium) or THREATSCOPE_CHROMIUM")
    tmp = pdf.with_name(pdf.name + ".tmp")
    with tempfile.TemporaryDirectory(prefix="threatscope-chromium-") as profile:
        cmd = chromium_args(exe, profile) + ["--no-pdf-header-footer", f"--print-to-pdf={tmp}",
                                             html.resolve().as_uri()]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise UserError(f"Chromium did not print {html} within {timeout:.0f} s") from None
    if r.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise UserError(f"Chromium could not print {html} to PDF (exit {r.returncode})")
    os.replace(tmp, pdf)
    return pdf
