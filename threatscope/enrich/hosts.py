"""What an attacking host is: its host record nearest the attack, classed by data tables.

    con.sql(profile_sql("_attacks"))      # _attacks: ip, ref_ts, network_type (one row per pair)

A host's *record* is one snapshot of it: the banners of one ``shodan host`` record (one line,
``record_type = 'host'``), or the banners of one address crawled on one day (banner exports and
the API cache). Its time is its latest banner's. The profile of ``(ip, ref_ts)`` is the record
whose time is nearest ``ref_ts`` (the later on a tie), so a server that was clean in January and
compromised in May is described as it was when it attacked.

The profile: ``os`` (of the record's latest banner that names one), ``os_family`` (the first
pattern of ``data/os_families.csv`` that matches it), ``products``, ``services`` and
``service_classes`` (every row of ``data/service_classes.csv`` a banner matches, as
``class:service``; banner patterns are tried only on banners whose product the record does not
name, as a named product says more than its banner; ``fallback`` rows only when no other row
matches), ``ports``, ``hostnames`` (of its latest banner: reverse DNS is the host's), ``cloud``
(a banner tagged cloud or naming a cloud provider) and
``host_kind``:

1. ``home-router``: RouterOS, or a router or MikroTik service, not on a hosting network;
2. ``iot-device``: a camera/DVR service;
3. ``compromised-server``: a server that runs services of its own (FTP, mail, web, database,
   proxy, VPN, MikroTik) or any Windows: a machine someone owns and uses, taken over;
4. ``cloud-instance``: otherwise, a cloud-tagged record or a hosting network (an instance with
   nothing of its own exposed: rented for the purpose);
5. ``unknown``.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

from threatscope.sqlfn import sql_str

SERVER_CLASSES = ("ftp", "mail", "web", "database", "proxy", "vpn", "mikrotik")
BANNER_CHARS = 256


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("threatscope.enrich").joinpath(f"data/{name}").read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [{k: (v or "").strip() for k, v in r.items()} for r in csv.DictReader(lines)]


@cache
def os_families() -> list[tuple[str, str]]:
    """``[(pattern, os_family), ...]`` in order (first match wins)."""
    return [(r["pattern"], r["os_family"]) for r in _rows("os_families.csv")]


@cache
def service_rules() -> list[dict[str, str]]:
    """The rows of ``data/service_classes.csv`` (empty string: no condition)."""
    rows = _rows("service_classes.csv")
    for r in rows:
        if not r["service_class"] or not r["service"]:
            raise ValueError(f"service_classes.csv: a row without class or service: {r}")
        if r["port"] and not r["port"].isdigit():
            raise ValueError(f"service_classes.csv: bad port {r['port']!r}")
    return rows


def _re(col: str, pattern: str) -> str:
    # (?s): a banner spans lines
    return f"regexp_matches({col}, {sql_str('(?is)' + pattern)})"


def os_family_sql(col: str) -> str:
    """SQL: the family of the OS text ``col`` (NULL when none matches or ``col`` is NULL)."""
    whens = " ".join(f"WHEN {_re(col, p)} THEN {sql_str(f)}" for p, f in os_families())
    return f"CASE {whens} END"


def services_sql(module: str, product: str, port: str, transport: str, banner: str) -> str:
    """SQL: the sorted list of ``class:service`` a service matches (empty when none)."""
    items: list[str] = []
    fallback: list[str] = []
    for r in service_rules():
        conds = []
        if r["module"]:
            conds.append(_re(module, r["module"]))
        if r["product"]:
            conds.append(_re(product, r["product"]))
        if r["port"]:
            conds.append(f"{port} = {int(r['port'])}")
        if r["transport"]:
            conds.append(f"lower({transport}) = {sql_str(r['transport'].lower())}")
        if r["banner"]:
            conds.append(f"{product} IS NULL AND {_re(banner, r['banner'])}")
        if conds:
            label = sql_str(f"{r['service_class']}:{r['service']}")
            (fallback if r.get("fallback") else items).append(
                f"CASE WHEN {' AND '.join(conds)} THEN {label} END")

    def matches(exprs: list[str]) -> str:
        return (f"list_sort(list_distinct(list_filter([{', '.join(exprs) or 'NULL'}], "
                "lambda x: x IS NOT NULL)))")

    if not fallback:
        return matches(items)
    return f"coalesce(nullif({matches(items)}, []), {matches(fallback)})"


def host_kind_sql(os_family: str, router: str, iot: str, server: str, cloud: str,
                  network_type: str) -> str:
    """SQL: the kind of host (see the module docstring), given whether its services include a
    router or MikroTik one (``router``), a camera (``iot``), a server's own (``server``)."""
    return f"""CASE
        WHEN ({os_family} = 'RouterOS' OR {router})
             AND {network_type} IS DISTINCT FROM 'hosting' THEN 'home-router'
        WHEN {iot} THEN 'iot-device'
        WHEN {server} OR {os_family} LIKE 'Windows%' THEN 'compromised-server'
        WHEN {cloud} OR {network_type} = 'hosting' THEN 'cloud-instance'
        ELSE 'unknown' END"""


def profile_sql(attacks: str, records: str = "host_record") -> str:
    """SELECT ip, ref_ts, host_record_ts, os, os_family, products, services, service_classes,
    ports, hostnames, cloud, host_kind: the profile of every row of ``attacks`` (columns
    ip, ref_ts, network_type; one row per ``(ip, ref_ts)``) that has a record in ``records``.

    Lists are built once per distinct set of services (a *signature*: the sorted ids of the
    distinct (module, product, port, transport, banner) of a snapshot), not once per address:
    at a million addresses, building lists row by row is most of the work, and a few thousand
    signatures describe them all."""
    server = ", ".join(f"'{c}'" for c in SERVER_CLASSES)
    return f"""
    WITH a AS (SELECT ip, ref_ts, network_type FROM {attacks}),
    r AS (SELECT h.ip, h.ts, h.port, h.transport, h.module, h.product, h.os, h.hostnames,
                 h.tags, h.cloud_provider, h.banner,
                 CASE WHEN h.record_type = 'host' THEN h.file_id || ':' || h.source_line
                      ELSE CAST(h.event_date AS VARCHAR) END AS snap
          FROM {records} h SEMI JOIN a ON a.ip = h.ip),
    s AS (SELECT ip, snap, max(ts) AS snap_ts FROM r GROUP BY ip, snap),
    pick AS (SELECT a.ip, a.ref_ts, a.network_type, s.snap, s.snap_ts
             FROM a JOIN s ON s.ip = a.ip
             QUALIFY row_number() OVER (
                 PARTITION BY a.ip, a.ref_ts
                 ORDER BY abs(epoch(s.snap_ts) - epoch(a.ref_ts)) NULLS LAST,
                          s.snap_ts DESC NULLS LAST, s.snap) = 1),
    svc AS (SELECT p.ip, p.ref_ts, p.network_type, p.snap_ts, r.ts, r.port, r.transport,
                   r.module, r.product, r.os, r.hostnames, r.tags, r.cloud_provider,
                   CASE WHEN r.product IS NULL THEN left(r.banner, {BANNER_CHARS}) END AS bkey
            FROM pick p JOIN r ON r.ip = p.ip AND r.snap = p.snap),
    k AS (SELECT row_number() OVER () AS kid, *,
                 {services_sql('module', 'product', 'port', 'transport', 'bkey')} AS services
          FROM (SELECT DISTINCT module, product, port, transport, bkey FROM svc)),
    agg AS (
        SELECT svc.ip, svc.ref_ts, svc.network_type, svc.snap_ts AS host_record_ts,
               arg_max(svc.os, svc.ts) FILTER (WHERE svc.os IS NOT NULL) AS os,
               -- reverse DNS is the host's, the same on each banner: the latest banner's
               arg_max(coalesce(svc.hostnames, []), svc.ts) AS hostnames,
               bool_or(svc.cloud_provider IS NOT NULL OR list_contains(svc.tags, 'cloud'))
                   AS cloud,
               CASE WHEN count(*) = 1 THEN [min(k.kid)]
                    ELSE list_sort(list_distinct(list(k.kid))) END AS sig
        FROM svc JOIN k ON k.module IS NOT DISTINCT FROM svc.module
                       AND k.product IS NOT DISTINCT FROM svc.product
                       AND k.port IS NOT DISTINCT FROM svc.port
                       AND k.transport IS NOT DISTINCT FROM svc.transport
                       AND k.bkey IS NOT DISTINCT FROM svc.bkey
        GROUP BY svc.ip, svc.ref_ts, svc.network_type, svc.snap_ts),
    sigs AS (
        SELECT sig,
               list_sort(list_distinct(list(k.product) FILTER (WHERE k.product IS NOT NULL)))
                   AS products,
               list_sort(list_distinct(flatten(list(k.services)))) AS services,
               list_sort(list_distinct(list(k.port) FILTER (WHERE k.port IS NOT NULL))) AS ports
        FROM (SELECT DISTINCT sig FROM agg) x, unnest(x.sig) AS u(kid) JOIN k USING (kid)
        GROUP BY sig),
    kinds AS (
        SELECT *, list_has_any(service_classes, ['router', 'mikrotik']) AS router,
               list_contains(service_classes, 'iot') AS iot,
               list_has_any(service_classes, [{server}]) AS server
        FROM (SELECT *, list_sort(list_distinct(list_transform(services,
                            lambda x: split_part(x, ':', 1)))) AS service_classes FROM sigs)),
    fam AS (SELECT os, {os_family_sql('os')} AS os_family
            FROM (SELECT DISTINCT os FROM agg WHERE os IS NOT NULL))
    SELECT agg.ip, agg.ref_ts, agg.host_record_ts, agg.os, fam.os_family, kinds.products,
           kinds.services, kinds.service_classes, kinds.ports, agg.hostnames, agg.cloud,
           {host_kind_sql('fam.os_family', 'kinds.router', 'kinds.iot', 'kinds.server',
                          'agg.cloud', 'agg.network_type')} AS host_kind
    FROM agg JOIN kinds USING (sig) LEFT JOIN fam ON fam.os = agg.os"""
