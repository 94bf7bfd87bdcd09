"""Every figure the final HTML and Markdown show, read back and compared with report.json.

    problems = check_html(html_text, metrics) + check_markdown(md_text, metrics)

The renderers mark each number that is a recorded figure (``metrics["figures"]``) with the
figure's id (:func:`encode_id`) and the part of it shown: ``value`` (the period), ``baseline``,
``fold`` (value ÷ baseline) or ``pct`` (percent change). HTML marks the element, ``<span
data-figure="ID">3,000</span>`` (``data-figure-baseline``, ``-fold``, ``-pct`` for the other
parts); Markdown, which has no attributes, writes one comment line above a pipe table naming the
part of each figure column and the figure of each row (:func:`md_marker`). The checks parse the
final text, not anything the renderer kept, so a renderer that prints a wrong number, drops a row
or mislabels one is caught.

A number reads back as the renderer writes it (``fmt_part``): thousands separators, the decimals
shown (a rendered ``2.4×`` matches a ratio within half its last digit, plus the rounding of the
document's fold and percent changes), ``—`` for a missing value, no abbreviations. A marked id the
document does not record is a problem unless it shows zero: a group without rows (a sector with
no detections) has no figure row, its count is 0 and its changes undefined.

Coverage (:func:`shown_ids`): the main figures, which every report shows in tables in both
formats (totals, campaigns, products, CVEs, attack families, rules, malware, source countries, AS
organisations and addresses, source classes, sectors, endpoint execution techniques, IOC-list
matches; each up to the rows its table shows), must be marked at least once in each. Other
figures (infrastructure, endpoint and PowerShell totals, exposure) are checked wherever marked but
not required. Not checked: numbers in Markdown prose and bullets (no marker: the campaign facts,
infrastructure and endpoint totals), chart labels, shares and rates (no recorded figure holds
them; ``check_view`` checks them against their counts), and figures shown only as charts
(campaign timelines) or not at all (per organisation).

A document without a ``figures`` list (written before figures were recorded) is not checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any, NamedTuple

from threatscope.analyze.figures import figure_id
from threatscope.report.text import INVISIBLE, fmt_fold, fmt_int, fmt_pct

PARTS = ("value", "baseline", "fold", "pct")
ATTRS = {"value": "data-figure", "baseline": "data-figure-baseline", "fold": "data-figure-fold",
         "pct": "data-figure-pct"}
_PART_OF = {a: p for p, a in ATTRS.items()}


class Fig(NamedTuple):
    """A table cell that shows one part of a recorded figure (Markdown renderer)."""

    value: Any
    id: str | None
    part: str = "value"


# characters an id cannot hold as it is: in an HTML attribute, the invisible ones (a page holds
# none raw) and lone surrogates (not UTF-8); in a Markdown comment also anything that could end
# it, split its list or read as markup or a link. "%" always: the encoding stays reversible.
HTML_UNSAFE = re.compile(f"[%\ud800-\udfff]|{INVISIBLE.pattern}")
MD_UNSAFE = re.compile(r"[^A-Za-z0-9._\-\[\]=/,+@]")
_ENCODED = re.compile(r"%([0-9a-f]{1,6});")


def encode_id(fid: str, unsafe: re.Pattern[str] = HTML_UNSAFE) -> str:
    """``fid`` with each ``unsafe`` character as ``%<hex>;`` (:func:`decode_id` reverses it)."""
    return unsafe.sub(lambda m: f"%{ord(m[0]):x};", fid)


def decode_id(text: str) -> str:
    return _ENCODED.sub(lambda m: chr(int(m[1], 16)), text)


def fmt_part(value: object, part: str) -> str:
    """A figure's part as both renderers print it."""
    return {"fold": fmt_fold, "pct": fmt_pct}.get(part, fmt_int)(value)


# view rows name some key columns differently from the figures' SQL
_VIEW_NAME = {"malware_family": "family", "src_ip": "ip", "severity": "level"}
# key columns of a figure when the document records none of its values
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "campaigns": ("campaign",), "products": ("product",), "cves": ("cve",),
    "families": ("family",), "malware": ("malware_family",), "rules": ("rule_id",),
    "sources.countries": ("country_code",), "sources.as_orgs": ("asn",),
    "sources.ips": ("src_ip",), "sources.classification": ("classification",),
    "sectors.events": ("sector",), "orgs.events": ("org_id",),
    "endpoint.execution_techniques": ("technique",), "indicators.listed_sources": ("feed",),
    "infrastructure.os_families": ("os_family",), "infrastructure.host_kinds": ("host_kind",),
    "infrastructure.service_classes": ("service_class",),
    "exposure": ("org_id", "server", "threat_kind", "threat"),
}


def key_columns(metrics: dict) -> dict[str, tuple[str, ...]]:
    """Each figure's key columns, as the document's own figure ids name them (the analysis
    decides them; a renderer that guessed would mark ids the document does not have)."""
    out = dict(DEFAULT_KEYS)
    figs = metrics.get("figures") if isinstance(metrics, dict) else None
    for f in figs if isinstance(figs, list) else []:
        if isinstance(f, dict) and isinstance(f.get("figure"), str):
            key = f.get("key")
            out[f["figure"]] = tuple(key) if isinstance(key, dict) else ()
    return out


def view_fid(view: dict, figure: str, row: dict | None = None) -> str:
    """The id of ``figure`` for a view ``row`` (its key values; None for a figure without key)."""
    cols = view.get("figure_keys", DEFAULT_KEYS).get(figure, ())
    return figure_id(figure, {c: (row or {}).get(_VIEW_NAME.get(c, c)) for c in cols})


# -- what must be shown -----------------------------------------------------------------------

# (figure, view section, rows its table shows): the renderers' limits
_TABLES: tuple[tuple[str, tuple[str, ...], int | None], ...] = (
    ("campaigns", ("campaigns",), 50),
    ("products", ("products",), 50),
    ("cves", ("cves",), 50),
    ("families", ("families",), 50),
    ("rules", ("rules",), 30),
    ("malware", ("malware",), 50),
    ("sources.countries", ("sources", "top_countries"), None),
    ("sources.as_orgs", ("sources", "top_as_orgs"), None),
    ("sources.ips", ("sources", "top_ips"), 50),
    ("sources.classification", ("sources", "classification"), None),
    ("sectors.events", ("sectors",), None),
    ("endpoint.execution_techniques", ("endpoint", "execution_techniques"), 50),
    ("indicators.listed_sources", ("indicators", "listed_sources"), None),
)
_TOTALS = ("detected_events", "detections", "events", "source_ips", "orgs_hit")


def shown_ids(view: dict) -> list[str]:
    """The ids of the main figures the view shows in tables (see the module docstring)."""
    out = [f"totals.{k}" for k in _TOTALS if view["totals"].get(k)]
    for figure, path, limit in _TABLES:
        rows: Any = view
        for p in path:
            rows = (rows or {}).get(p)
        out += [view_fid(view, figure, r) for r in (rows or [])[:limit]]
    return out


# -- reading numbers back -----------------------------------------------------------------------

_NUMBER = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})*|\d+)(?:\.(\d+))?(×|%)?")
_SUFFIX = {"value": None, "baseline": None, "fold": "×", "pct": "%"}


def _expected(fig: dict, part: str) -> float | None:
    v, b = fig.get("value"), fig.get("baseline")
    if part == "value":
        return _num(v)
    if part == "baseline":
        return _num(b)
    if _num(v) is None or not _num(b):
        return None  # no ratio without a baseline
    return v / b if part == "fold" else 100 * (v - b) / b


def _num(v: object) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def number_problem(text: str, fig: dict, part: str) -> str | None:
    """Why ``text`` (as rendered) is not the figure's ``part``; None when it is."""
    want = _expected(fig, part)
    text = text.strip()
    if want is None:
        return None if text == "—" else f"shows {text!r}, report.json has no {part}"
    m = _NUMBER.fullmatch(text)
    if not m or m[4] != _SUFFIX[part]:
        return f"shows {text!r} for its {part} {want:g}, not a number as the report writes it"
    got = float(m[2].replace(",", "") + "." + (m[3] or "0")) * (-1 if m[1] == "-" else 1)
    tol = 0.5 * 10 ** -len(m[3] or "")  # half the last digit shown
    # the document rounds fold changes to 4 decimals and percent changes to 2
    tol += {"fold": 1e-4 * max(1.0, abs(want)), "pct": 0.0051}.get(part, 0.0)
    if abs(got - want) > tol * (1 + 1e-9):
        return f"shows {text!r} for its {part}, report.json has {want:g}"
    return None


_NONE = {"value": 0, "baseline": 0}


def _compare(fmt: str, marks: list[tuple[str, str, str]], metrics: dict,
             required: list[str]) -> list[str]:
    figs = {f["id"]: f for f in metrics["figures"] if isinstance(f, dict) and "id" in f}
    probs: list[str] = []
    for fid, part, text in marks:
        if fid not in figs:
            # a group without rows is not recorded (a sector with no detections): zero or nothing
            if number_problem(text, _NONE, part) is not None:
                probs.append(f"{fid}: {fmt} shows {text.strip()!r} as its {part} but report.json "
                             "has no such figure")
        elif (why := number_problem(text, figs[fid], part)) is not None:
            probs.append(f"{fid}: {fmt} {why}")
    marked = {fid for fid, part, _ in marks if part == "value"}
    probs += [f"{fid}: {fmt} does not show it" for fid in dict.fromkeys(required)
              if fid in figs and fid not in marked]
    return probs


def _has_figures(metrics: dict) -> bool:
    return isinstance(metrics, dict) and isinstance(metrics.get("figures"), list)


# -- HTML -------------------------------------------------------------------------------------

class _Marks(HTMLParser):
    """(id, part, text) of every element carrying a ``data-figure*`` attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.marks: list[tuple[str, str, str]] = []
        self._open: list[list] = []  # [tag, depth, [(id, part)], [text]]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for frame in self._open:
            frame[1] += frame[0] == tag
        parts = [(decode_id(v or ""), _PART_OF[a]) for a, v in attrs if a in _PART_OF]
        if parts:
            self._open.append([tag, 0, parts, []])

    def handle_endtag(self, tag: str) -> None:
        for frame in list(self._open):
            if frame[0] != tag:
                continue
            if frame[1]:
                frame[1] -= 1
            else:
                self._open.remove(frame)
                self.marks += [(fid, part, "".join(frame[3])) for fid, part in frame[2]]

    def handle_data(self, data: str) -> None:
        for frame in self._open:
            frame[3].append(data)


def html_marks(html: str) -> list[tuple[str, str, str]]:
    """``(figure id, part, text shown)`` of every marked number of an HTML page."""
    p = _Marks()
    p.feed(html)
    p.close()
    return p.marks


def check_html(html: str, metrics: dict, required: list[str] | None = None) -> list[str]:
    """Problems (each naming a figure id) of the rendered HTML against ``metrics["figures"]``;
    ``required``: ids that must be shown (default: none)."""
    if not _has_figures(metrics):
        return []
    return _compare("HTML", html_marks(html), metrics, required or [])


# -- Markdown ---------------------------------------------------------------------------------

_MARKER = re.compile(r"<!-- figures cols=(\S*) rows=(.*) -->")


def _enc(fid: str | None) -> str:
    return "-" if fid is None else encode_id(fid, MD_UNSAFE)


def md_marker(columns: dict[int, str], ids: list[str | None]) -> str:
    """The comment line above a pipe table: the part of each figure column (by position) and the
    figure of each body row (``-``: none). Invisible when the Markdown is rendered."""
    cols = ",".join(f"{i}:{p}" for i, p in sorted(columns.items()))
    return f"<!-- figures cols={cols} rows={' '.join(_enc(i) for i in ids)} -->"


def split_cells(line: str) -> list[str]:
    """Cells of a pipe-table row, honouring backslash escapes (``\\|`` is not a separator)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    cells, cur, i = [], [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            cur.append(body[i:i + 2])
            i += 2
            continue
        if body[i] == "|":
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(body[i])
        i += 1
    if "".join(cur).strip():
        cells.append("".join(cur).strip())
    return cells


def _md_tables(text: str) -> Iterator[tuple[str, list[str]]]:
    """(marker line, table lines) of each marked table."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if _MARKER.fullmatch(line.strip()):
            table = []
            for follow in lines[n + 1:]:
                if not follow.startswith("|"):
                    break
                table.append(follow)
            yield line.strip(), table


def md_marks(text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``(figure id, part, cell text)`` of every marked table cell of a Markdown text, and the
    problems of markers that do not fit their table."""
    marks, probs = [], []
    for marker, table in _md_tables(text):
        m = _MARKER.fullmatch(marker)
        assert m is not None
        cols = {int(i): p for i, _, p in (c.partition(":") for c in m[1].split(",") if c)}
        ids = [None if r == "-" else decode_id(r) for r in m[2].split(" ") if r]
        body = table[2:]
        if len(table) < 2 or len(body) != len(ids):
            named = next((i for i in ids if i), "?")
            probs.append(f"{named}: Markdown table has {len(body)} rows, its marker names "
                         f"{len(ids)}")
            continue
        for fid, line in zip(ids, body, strict=True):
            cells = split_cells(line)
            for i, part in cols.items():
                if fid is None:
                    continue
                if i >= len(cells) or part not in PARTS:
                    probs.append(f"{fid}: Markdown row has no column {i} ({part})")
                else:
                    marks.append((fid, part, cells[i]))
    return marks, probs


def check_markdown(text: str, metrics: dict, required: list[str] | None = None) -> list[str]:
    """Problems (each naming a figure id) of the rendered Markdown against ``metrics["figures"]``;
    ``required``: ids that must be shown in its tables (default: none)."""
    if not _has_figures(metrics):
        return []
    marks, probs = md_marks(text)
    return probs + _compare("Markdown", marks, metrics, required or [])
