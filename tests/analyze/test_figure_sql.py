"""The shortcuts of figure evaluation give what the plain evaluation gives: a ranked list's extras
computed for the groups it keeps only, and det's event keys for detections with and without a
logged event (det built in two parts)."""

from __future__ import annotations

import dataclasses

from threatscope.analyze import figures as F
from threatscope.analyze.period import Period

Q2 = Period.parse("2018Q2")
# an address without a source row: as_org, country_code, network_type NULL (the keys of its
# group are NULL, which the kept groups must match)
UNKNOWN = "192.0.2.99"


def _workspace(build):
    build.orgs(("o1", "One", "finance"), ("o2", "Two", "energy"))
    build.sources(("203.0.113.1", "CN", "China", 45090, "Tencent", "hosting"),
                  ("203.0.113.2", "CN", "China", 37963, "Alibaba", "hosting"),
                  ("198.51.100.7", "US", "United States", 7922, "Comcast", "access"))
    ips = ["203.0.113.1", "203.0.113.2", "198.51.100.7", UNKNOWN]
    for k, ip in enumerate(ips):
        build.detect(f"2018-04-{10 + k} 10:00:00", 5 - k, ip=ip, org="o1" if k % 2 else "o2",
                     campaign="gpon" if k % 2 else "iis-webdav")
        build.detect(f"2018-02-{10 + k} 10:00:00", 2, ip=ip, rule="r-other", title="Other")
    # two rules on one event, and detections that name no event (no file or line)
    build.detect("2018-05-01 09:00:00", 1, ip=ips[0], event=("evt", 7))
    build.detect("2018-05-01 09:00:00", 1, ip=ips[0], rule="r-x", event=("evt", 7))
    with build.ws.connect() as con:
        con.execute("INSERT INTO detection SELECT * REPLACE (NULL AS file_id) FROM detection "
                    "WHERE rule_id = 'r-other' AND src_ip = ?", [ips[1]])
    return build.ws


def _plain(fig: F.Figure) -> F.Figure:
    """The same figure evaluated the plain way: every group with its extras, ranked."""
    return dataclasses.replace(fig, top=None)


def test_late_extras_equal_the_plain_evaluation(build):
    ws = _workspace(build)
    base = Q2.baseline()
    with ws.connect() as con:
        F.prepare(con, base.start, Q2.end, Q2.start)
        for fid in ("sources.ips", "sources.targeted", "sources.countries", "sources.as_orgs",
                    "indicators.appendix", "sources.per_ip", "campaigns.timeline",
                    "inputs.formats", "campaigns.meta"):
            fig = F.FIGURES[fid]
            got = F.evaluate(con, fig, Q2, base)
            plain = F.evaluate(con, _plain(fig), Q2, base)
            assert got == plain[:fig.top or len(plain)], fid
        ips = F.evaluate(con, "sources.ips", Q2, base)
        assert {r["src_ip"] for r in ips} >= {UNKNOWN}
        assert by_ip(ips, UNKNOWN)["as_org"] is None and by_ip(ips, UNKNOWN)["rules"] == 1


def test_every_detection_is_in_det_once_with_its_event_key(build):
    ws = _workspace(build)
    base = Q2.baseline()
    with ws.connect() as con:
        F.prepare(con, base.start, Q2.end, Q2.start)
        (rows, keyed, unkeyed, events), = con.execute(
            "SELECT count(*), count(*) FILTER (ev > 0), count(*) FILTER (ev < 0), "
            "count(DISTINCT ev) FROM det").fetchall()
        (detections,), = con.execute("SELECT count(*) FROM detection").fetchall()
        (no_event,), = con.execute(
            "SELECT count(*) FROM detection WHERE file_id IS NULL").fetchall()
        # each detection without an event is an event of its own; two rules on one event: one
        assert (rows, unkeyed) == (detections, no_event) and no_event == 2
        assert events == rows - 1 and keyed == rows - no_event
        # the addresses of detections without an event are looked up as the others
        assert con.execute("SELECT DISTINCT as_org FROM det WHERE ev < 0").fetchall() == [
            ("Alibaba",)]


def by_ip(rows, ip):
    return next(r for r in rows if r["src_ip"] == ip)
