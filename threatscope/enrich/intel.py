"""Everything the workspace knows about some addresses: what `threatscope intel lookup` prints.

    for info in describe(ws, ["47.95.0.1", "::ffff:119.29.0.1"]):
        info["geo"]["as_org"], info["host_records"], info["ioc_matches"], info["source"]

Per address: where it is (country, AS, network type), every host record snapshot (newest
first, with the services it showed), the IOC list entries that name it, and, when it attacked,
its ``source`` row (classification, detections, organisations hit, first and last seen).
Invalid addresses are reported as such, never looked up.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from threatscope import sqlfn
from threatscope.enrich.stage import lookup
from threatscope.ipnum import ip_to_num, num_to_ip
from threatscope.workspace import Workspace, relations


def canonical(ip: str) -> str | None:
    """The canonical text of an address (IPv4-mapped IPv6 as IPv4), None when it is none."""
    n = ip_to_num(ip.strip()) if isinstance(ip, str) else None
    return None if n is None else num_to_ip(n)


def _plain(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _rows(con, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [{k: _plain(v) for k, v in zip(names, r, strict=True)} for r in cur.fetchall()]


def describe(ws: Workspace, ips: Iterable[str]) -> list[dict[str, Any]]:
    """One dict per input address, in order (see the module docstring)."""
    given = list(ips)
    canon = [canonical(ip) for ip in given]
    valid = sorted({c for c in canon if c})
    geo = {r["ip"]: r for r in lookup(valid).to_pylist()} if valid else {}
    records: dict[str, list] = {}
    iocs: dict[str, list] = {}
    sources: dict[str, dict] = {}
    if valid:
        with ws.connect(read_only=True) as con:
            sqlfn.install(con)
            con.register("_ts_want", pa.table({"ip": valid}))
            con.execute("CREATE TEMP TABLE _ts_w AS SELECT ip, ts_ip_num(ip) AS ip_num "
                        "FROM _ts_want")
            for r in _rows(con, """
                    SELECT h.ip, h.ts, h.port, h.transport, h.module, h.product, h.version,
                           h.os, h.hostnames, h.tags, h.as_org, h.asn, h.country_code,
                           h.vulns, h.record_type, h.source_file
                    FROM host_record h JOIN _ts_w w ON w.ip_num = h.ip_num
                    ORDER BY h.ts DESC NULLS LAST, h.port"""):
                records.setdefault(r["ip"], []).append(r)  # (stored canonical)
            for r in _rows(con, """
                    SELECT w.ip, i.feed, i.ioc_type, i.value, i.malware_family, i.threat,
                           i.status, i.first_seen, i.last_seen, i.source_file
                    FROM _ts_w w JOIN ioc i ON i.ioc_type IN ('ip', 'cidr')
                         AND w.ip_num >= i.ip_first_num AND w.ip_num <= i.ip_last_num
                    ORDER BY i.feed, i.value"""):
                iocs.setdefault(r.pop("ip"), []).append(r)
            if "source" in relations(con):
                for r in _rows(con, """
                        SELECT s.* EXCLUDE (ip_num), w.ip AS _want FROM source s
                        JOIN _ts_w w ON w.ip_num = s.ip_num"""):
                    sources[r.pop("_want")] = r
    out = []
    for ip, c in zip(given, canon, strict=True):
        if c is None:
            out.append({"ip": ip, "valid": False})
            continue
        g = geo.get(c, {})
        out.append({
            "ip": c, "valid": True,
            "geo": {k: g.get(k) for k in ("country_code", "country_name", "asn", "as_org",
                                          "network_type")},
            "host_records": records.get(c, []),
            "ioc_matches": iocs.get(c, []),
            "source": sources.get(c),
        })
    return out
