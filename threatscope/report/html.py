"""The self-contained HTML report: Jinja2 with autoescape, inline CSS and inline SVG, no script.

    html = render_html(metrics)       # one string, nothing fetched when it is opened

Every value printed by the template goes through ``clean`` (control and bidi characters made
visible) and then HTML escaping; charts are escaped markup from ``svg.py``. Every number that is
a recorded figure is printed by ``fig(value, figure id, part)``, which marks it with the id
(``<span data-figure="campaigns[campaign=gpon]">3,000</span>``) for ``rendered.check_html``.
The page carries a Content-Security-Policy that allows only its own style element (by hash)
and data: images, so even markup that slipped through could neither run script nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from threatscope.report import svg
from threatscope.report.audience import fmt_figure, peers_heading
from threatscope.report.consistency import check_view
from threatscope.report.exposure import long_text
from threatscope.report.limits import TIMELINE_CAMPAIGNS, more_campaigns
from threatscope.report.model import build_view
from threatscope.report.rendered import ATTRS, encode_id, fmt_part, view_fid
from threatscope.report.text import (
    clean,
    fmt_flag,
    fmt_fold,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_pp,
    fmt_share,
    fmt_span,
)
from threatscope.report.worldmap import tile_map

_TEMPLATES = Path(__file__).with_name("templates")


def _finalize(v: object) -> object:
    # every {{ }} value: our Markup (charts) passes, any other string is made visible and cut
    if isinstance(v, Markup) or not isinstance(v, str):
        return v
    return clean(v, 600)


def _join(items: object) -> str:
    # Jinja's own join returns Markup under autoescape, which would skip clean() in _finalize
    return ", ".join(clean(x, 80) for x in items) if isinstance(items, list) else ""


_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def _is_time(v: object) -> bool:
    return isinstance(v, str) and _TIME.match(v) is not None


def _when(v: object) -> Markup | str:
    """An ISO timestamp shown as date and time, each kept whole: a narrow column (or paper)
    wraps it between the two, not inside a number."""
    if not _is_time(v):
        return "—" if v is None or v == "" else clean(str(v), 600)
    day, _, clock = str(v).partition("T")
    return Markup('<span class="when">{}</span> <span class="when">{}</span>').format(
        clean(day, 40), clean(clock, 40))


def _figure(value: object, figure_id: str | None, part: str = "value") -> Markup | str:
    """A figure's part as text, marked with its id (encoded and escaped: ids hold strings from
    logs)."""
    text = fmt_part(value, part)
    if not figure_id:
        return text
    return Markup('<span {}="{}">{}</span>').format(Markup(ATTRS[part]), encode_id(figure_id),
                                                     text)


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters.update(int=fmt_int, num=fmt_num, fold=fmt_fold, pct=fmt_pct, share=fmt_share,
                       flag=fmt_flag, pp=fmt_pp, jl=_join)
    env.filters["long_text"] = long_text
    # looked up at call time: the environment is cached, the helper may be replaced
    env.globals.update(when=_when, is_time=_is_time, fig=lambda *a: _figure(*a))
    return env


def _css() -> str:
    return (_TEMPLATES / "report.css").read_text(encoding="utf-8")


def csp_for(css: str) -> str:
    """The page's Content-Security-Policy: nothing but this exact style element and data: images."""
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; "
            f"style-src 'sha256-{digest}'; img-src data:; font-src 'none'; script-src 'none'; "
            "object-src 'none'; base-uri 'none'; form-action 'none'")


def _charts(v: dict) -> dict:
    plabel = str(v["period"]["label"] or "period")
    blabel = str(v["baseline"]["label"] or "baseline")
    camps = v["campaigns"][:15]
    src = v["sources"]
    as_orgs = src["top_as_orgs"][:12]
    countries = src["top_countries"][:12]
    return {
        "compare": svg.compare_bars(
            [(c["campaign"], c["period"], c["baseline"]) for c in camps],
            f"Detected events per campaign, {plabel} vs {blabel}", plabel, blabel),
        "timelines": [
            svg.timeline(c["timeline"], f"Daily detected events of {c['campaign']}", c["onset"],
                         c["peak_day"], c["public_exploit_date"])
            for c in v["campaigns"][:TIMELINE_CAMPAIGNS]
        ],
        "as_orgs": svg.hbars(
            [(a["as_org"] or "unknown", a["detected_events"],
              "hosting" if a["network_type"] == "hosting" else "access") for a in as_orgs],
            "Detected events by AS organisation",
            [f"{fmt_int(a['detected_events'])} ({fmt_share(a['share'])})" for a in as_orgs]),
        "countries": svg.hbars(
            [(f"{c['country_name'] or 'unknown'} ({c['country_code'] or '??'})", c["detected_events"],
              None) for c in countries],
            "Detected events by source country",
            [f"{fmt_int(c['detected_events'])} ({fmt_share(c['share'])})" for c in countries]),
        "world_map": tile_map(src["countries"]),
        "endpoint": svg.compare_bars(
            [(t["label"], t["share"], t["baseline_share"])
             for t in v["endpoint"]["execution_techniques"][:15]],
            f"Share of each execution technique, {plabel} vs {blabel}", plabel, blabel,
            fmt=fmt_share),
        "classification": svg.hbars(
            [(c["classification"] or "unclassified", c["period"],
              "noise" if c["noise"] else "targeted") for c in src["classification"]],
            "Detected events by source classification",
            [f"{fmt_int(c['period'])} ({fmt_share(c['share'])})" for c in src["classification"]]),
        "infrastructure": _infra_charts(v),
        "sectors": svg.hbars(
            [(s["sector"] or "unassigned", s["per_org"], None) for s in v["sectors"]],
            "Detected events per organisation by sector",
            [f"{fmt_num(s['per_org'])} per org." for s in v["sectors"]]),
    }


def _share_bars(rows: list[dict], key: str, title: str, count: str = "period") -> Markup:
    """Addresses per kind, with their share of the addresses that have a host record."""
    rows = rows[:12]
    return svg.hbars([(r[key] or "unknown", r[count], None) for r in rows], title,
                     [f"{fmt_int(r[count])} ({fmt_share(r['share'])})" for r in rows])


def _infra_charts(v: dict) -> dict:
    infra = v["infrastructure"]
    if not infra:
        return {}
    return {
        "os_families": _share_bars(infra["os_families"], "os_family",
                                   "Attacking addresses by operating system family"),
        "service_classes": _share_bars(infra["service_classes"], "service_class",
                                       "Attacking addresses by class of service they expose"),
        "host_kinds": _share_bars(infra["host_kinds"], "host_kind",
                                  "Attacking addresses by kind of host"),
    }


def report_csp() -> str:
    """The Content-Security-Policy of every rendered report (a server sending the page sends
    this one: the dashboard's /report)."""
    return csp_for(_css())


def render_html(metrics: dict) -> str:
    """Render the metrics document as one self-contained HTML page."""
    v = build_view(metrics)
    checks = check_view(v)
    css = _css()
    return _env().get_template("report.html.j2").render(
        v=v,
        css=Markup(css),  # our own file; hashed into the CSP
        csp=csp_for(css),
        charts=_charts(v),
        checks=checks,
        fid=lambda figure, row=None: view_fid(v, figure, row),
        failed=[c for c in checks if not c["ok"]],
        plabel=clean(v["period"]["label"] or "period", 40),
        blabel=clean(v["baseline"]["label"] or "baseline", 40),
        span=fmt_span,
        figure=fmt_figure,
        peers_heading=peers_heading,
        timeline_cap=TIMELINE_CAMPAIGNS,
        more_timelines=more_campaigns(v["campaigns"]),
    )
