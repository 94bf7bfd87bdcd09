"""Inline SVG charts for the HTML report, built as escaped markup (no script, no style attributes).

    svg = hbars([("Tencent", 812, "hosting")], title="Top AS organisations")
    str(svg).startswith("<svg")

Every text that goes into a chart passes through ``clean`` and ``markupsafe.escape``; numbers are
formatted by this module. Colours are SVG presentation attributes or classes from the report's
style sheet, so a Content-Security-Policy without 'unsafe-inline' still allows them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from markupsafe import Markup, escape

from threatscope.report.text import clean, fmt_int

W = 980  # viewBox width of every chart, about its width on screen (CSS scales it)


def _t(s: object, limit: int = 60) -> Markup:
    return escape(clean(s, limit))


def _svg(height: float, title: str, body: list[str], cls: str = "chart") -> Markup:
    # title is our own label plus possibly hostile text: escape like everything else
    return Markup(
        f'<svg class="{cls}" viewBox="0 0 {W} {height:.0f}" role="img" '
        f'aria-label="{_t(title, 200)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{_t(title, 200)}</title>{''.join(body)}</svg>"
    )


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def compare_bars(rows: Sequence[tuple[str, object, object]], title: str,
                 period_label: str = "period", baseline_label: str = "baseline",
                 fmt: Callable[[object], str] = fmt_int) -> Markup:
    """Paired horizontal bars: for each (label, period, baseline) a period and a baseline bar;
    ``fmt`` writes the values (counts by default; ``fmt_share`` for shares)."""
    left, right, row_h, top = 250, 90, 30, 28
    span = W - left - right
    top_val = max([_num(p) for _, p, _ in rows] + [_num(b) for _, _, b in rows] + [1e-9])
    body = [
        f'<rect x="{left}" y="6" width="10" height="10" class="c-period"/>'
        f'<text x="{left + 14}" y="15" class="legend">{_t(period_label)}</text>'
        f'<rect x="{left + 150}" y="6" width="10" height="10" class="c-base"/>'
        f'<text x="{left + 164}" y="15" class="legend">{_t(baseline_label)}</text>'
    ]
    for i, (label, p, b) in enumerate(rows):
        y = top + i * row_h
        pw, bw = span * _num(p) / top_val, span * _num(b) / top_val
        body.append(
            f"<g><title>{_t(label, 200)}: {escape(fmt(p))} vs {escape(fmt(b))}</title>"
            f'<text x="{left - 8}" y="{y + 15}" class="lbl" text-anchor="end">{_t(label, 32)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{max(pw, 0.5):.1f}" height="13" class="c-period"/>'
            f'<rect x="{left}" y="{y + 17}" width="{max(bw, 0.5):.1f}" height="7" class="c-base"/>'
            f'<text x="{left + pw + 5:.1f}" y="{y + 14}" class="val">{escape(fmt(p))}</text>'
            f'<text x="{left + bw + 5:.1f}" y="{y + 25}" class="val sub">{escape(fmt(b))}</text></g>'
        )
    return _svg(top + len(rows) * row_h + 4, title, body)


def hbars(rows: Sequence[tuple[str, object, str | None]], title: str,
          value_text: Sequence[str] | None = None) -> Markup:
    """Horizontal bars: (label, value, css class suffix or None); ``value_text`` overrides labels."""
    left, right, row_h = 230, 140, 22
    span = W - left - right
    top_val = max([_num(v) for _, v, _ in rows] + [1e-9])
    body = []
    for i, (label, v, kind) in enumerate(rows):
        y = 4 + i * row_h
        w = span * _num(v) / top_val
        cls = f"c-{kind}" if kind in ("hosting", "access", "noise", "targeted") else "c-period"
        txt = value_text[i] if value_text else fmt_int(v)
        body.append(
            f"<g><title>{_t(label, 200)}: {escape(txt)}</title>"
            f'<text x="{left - 8}" y="{y + 13}" class="lbl" text-anchor="end">{_t(label, 32)}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{max(w, 0.5):.1f}" height="15" class="{cls}"/>'
            f'<text x="{left + w + 5:.1f}" y="{y + 14}" class="val">{escape(txt)}</text></g>'
        )
    return _svg(8 + len(rows) * row_h, title, body)


def _day(v: object) -> date | None:
    try:
        return date.fromisoformat(str(v)[:10]) if v else None
    except ValueError:
        return None


def timeline(points: Sequence[dict], title: str, onset: object = None, peak_day: object = None,
             exploit_date: object = None) -> Markup:
    """Daily counts as an area chart with the onset, the peak and a public-exploit date marked."""
    pts = [(d, _num(p.get("count"))) for p in points if (d := _day(p.get("day")))]
    h, left, right, top, bottom = 206, 52, 16, 36, 26
    if not pts:
        return _svg(40, title, ['<text x="10" y="24" class="lbl">no daily counts</text>'])
    pts.sort()
    d0, d1 = pts[0][0], pts[-1][0]
    ndays = max((d1 - d0).days, 1)
    ymax = max(c for _, c in pts) or 1
    pw, ph = W - left - right, h - top - bottom

    def x(d: date) -> float:
        return left + pw * (d - d0).days / ndays

    def y(c: float) -> float:
        return top + ph * (1 - c / ymax)

    body = []
    for frac in (0, 0.5, 1):  # gridlines and y labels
        yy = y(ymax * frac)
        body.append(f'<line x1="{left}" x2="{W - right}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                    f'<text x="{left - 6}" y="{yy + 4:.1f}" class="axis" text-anchor="end">'
                    f"{fmt_int(ymax * frac)}</text>")
    for d, _ in pts:  # x labels at the first of each month (and the first day)
        if d.day == 1 or d == d0:
            body.append(f'<line x1="{x(d):.1f}" x2="{x(d):.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
                        f'class="axisline"/><text x="{x(d):.1f}" y="{h - 8}" class="axis" '
                        f'text-anchor="middle">{d:%d %b}</text>')
    line = " ".join(f"{x(d):.1f},{y(c):.1f}" for d, c in pts)
    body.append(f'<polygon points="{x(d0):.1f},{y(0):.1f} {line} {x(d1):.1f},{y(0):.1f}" '
                f'class="area"/><polyline points="{line}" class="trend"/>')
    body.append(f'<line x1="{left}" x2="{W - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="axisline"/>')

    def vline(d: date | None, cls: str, label: str, at_top: bool) -> None:
        # exploit date: label above the plot (peak labels stay below it); onset: at the bottom
        if not (d and d0 <= d <= d1):
            return
        xx = x(d)
        left_side = W - right - xx < 150
        tx, anchor = (xx - 4, "end") if left_side else (xx + 4, "start")
        ty, y0 = (11, 3) if at_top else (top + ph - 6, top)
        body.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y0}" y2="{top + ph}" class="{cls}"/>'
                    f'<text x="{tx:.1f}" y="{ty}" class="mark {cls}-t" '
                    f'text-anchor="{anchor}">{escape(label)}</text>')

    ex, on, pk = _day(exploit_date), _day(onset), _day(peak_day)
    vline(ex, "m-exploit", f"public exploit {ex}", True)
    vline(on, "m-onset", f"onset {on}", False)
    if pk and d0 <= pk <= d1:
        count = dict(pts).get(pk, ymax)
        xx, yy = x(pk), y(count)
        anchor = "start" if xx - left < 90 else "end" if W - right - xx < 90 else "middle"
        body.append(f'<circle cx="{xx:.1f}" cy="{yy:.1f}" r="4" class="m-peak"/>'
                    f'<text x="{xx:.1f}" y="{yy - 9:.1f}" class="mark m-peak-t" '
                    f'text-anchor="{anchor}">peak {pk}: {fmt_int(count)}</text>')
    return _svg(h, title, body, "chart timeline")
