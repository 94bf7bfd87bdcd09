"""A world map drawn offline: one tile per country, placed by where the country is, coloured by
how many detected events came from it (a tile grid map: no coastlines to ship, no projection
library; small countries get a tile each, so they stay visible).

    svg = tile_map([{"country_code": "CN", "country_name": "China", "detected_events": 812}])

Positions come from ``data/countries.csv`` (a rough latitude and longitude per country, and the
rough extent of the largest): large countries take the cells of their extent, the others the
free cell nearest their position, in a fixed order, so the layout is the same on every report.
Codes the table lacks are not drawn; the map says how many.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from functools import cache
from importlib import resources

from markupsafe import Markup, escape

from threatscope.report.svg import W, _num, _svg, _t
from threatscope.report.text import fmt_int

LON_STEP, LAT_STEP = 4.5, 4.0  # degrees per tile: Europe's crowd keeps its neighbourhoods
TOP_LAT = 80.0
COLS = round(360 / LON_STEP) + 1
ROWS = round((TOP_LAT + 56) / LAT_STEP) + 1
BUCKETS = 5  # colour steps, on a log scale of detected events


@cache
def tiles() -> dict[str, list[tuple[int, int]]]:
    """``{code: [(col, row), ...]}``. The largest countries first, by extent: every free cell
    whose middle lies in it; then every other country (and any large one left without a cell)
    takes the free cell nearest its position (ties: the cell above, then left), in code
    order."""
    text = resources.files("threatscope.report").joinpath("data/countries.csv").read_text("utf-8")
    rows = list(csv.DictReader(ln for ln in text.splitlines() if ln and not ln.startswith("#")))
    taken: set[tuple[int, int]] = set()
    out: dict[str, list[tuple[int, int]]] = {}

    def col(lon: float) -> float:
        return (lon + 180) / LON_STEP

    def row(lat: float) -> float:
        return (TOP_LAT - lat) / LAT_STEP

    def area(r: dict) -> float:
        return (float(r["lat_max"]) - float(r["lat_min"])) * (float(r["lon_max"]) - float(r["lon_min"]))

    for r in sorted((r for r in rows if r["lat_min"]), key=lambda r: (-area(r), r["code"])):
        cells = [(c, w) for c in range(math.ceil(col(float(r["lon_min"]))),
                                        math.floor(col(float(r["lon_max"]))) + 1)
                 for w in range(math.ceil(row(float(r["lat_max"]))),
                                math.floor(row(float(r["lat_min"]))) + 1)
                 if 0 <= c < COLS and 0 <= w < ROWS and (c, w) not in taken]
        if cells:
            taken.update(cells)
            out[r["code"]] = cells
    for r in sorted(rows, key=lambda r: r["code"]):
        if r["code"] in out:
            continue
        x, y = col(float(r["lon"])), row(float(r["lat"]))
        for ring in range(max(COLS, ROWS)):
            free = [(c, w) for c in range(round(x) - ring, round(x) + ring + 1)
                    for w in range(round(y) - ring, round(y) + ring + 1)
                    if 0 <= c < COLS and 0 <= w < ROWS and (c, w) not in taken]
            if free:
                best = min(free, key=lambda cw: ((cw[0] - x) ** 2 + (cw[1] - y) ** 2,
                                                 cw[1], cw[0]))
                taken.add(best)
                out[r["code"]] = [best]
                break
    return out


def _bucket(n: float, top: float) -> int:
    """1..BUCKETS by log scale against the largest count (0: none)."""
    if n <= 0:
        return 0
    return 1 + min(BUCKETS - 1, int(BUCKETS * math.log1p(n) / math.log1p(top) - 1e-9))


def tile_map(rows: Sequence[dict], title: str = "Detected events by source country") -> Markup:
    """The map of ``rows`` (country_code, country_name, detected_events): a tile per country
    of the table, darker with more detected events; each tile's title names the country and
    its count (hover, or a screen reader)."""
    place = tiles()
    counts = {str(r.get("country_code")): r for r in rows if r.get("country_code")}
    top = max((_num(r.get("detected_events")) for r in counts.values()), default=0.0)
    cell = W / COLS
    body = []
    for code, cells in sorted(place.items()):
        r = counts.get(code, {})
        n = _num(r.get("detected_events"))
        name = r.get("country_name") or code
        label = f"{name} ({code}): {fmt_int(n)} detected events" if n else f"{code}: none"
        title = f"<title>{_t(label, 120)}</title>"
        body.extend(
            f'<rect class="tile tile-{_bucket(n, top)}" x="{c * cell:.1f}" y="{w * cell:.1f}" '
            f'width="{cell - 1:.1f}" height="{cell - 1:.1f}">{title}</rect>' for c, w in cells)
    height = ROWS * cell
    # the legend: the scale's steps, and what the map could not place
    legend_y = height + 14
    for b in range(BUCKETS + 1):
        body.append(f'<rect class="tile tile-{b}" x="{b * 60:.0f}" y="{legend_y - 10:.0f}" '
                    f'width="12" height="12"/>')
        low = "none" if b == 0 else f"≤{fmt_int(math.expm1((b / BUCKETS) * math.log1p(top)))}"
        body.append(f'<text x="{b * 60 + 16:.0f}" y="{legend_y:.0f}" class="axis">'
                    f"{escape(low)}</text>")
    missing = sorted(c for c in counts if c not in place)
    if missing:
        body.append(f'<text x="{W:.0f}" y="{legend_y:.0f}" class="axis" text-anchor="end">'
                    f"{_t(f'{len(missing)} country code' + 's' * (len(missing) != 1) + ' not on the map', 80)}"
                    "</text>")
    return _svg(legend_y + 8, title, body, cls="chart map")
