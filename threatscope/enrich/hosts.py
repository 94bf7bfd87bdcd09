"""What an attacking host is: its host record nearest the attack, classed by data tables.

    con.sql(profile_sql("_attacks"))      # _attacks: ip, ref_ts, network_type (one row per pair)

A host's *record* is one snapshot of it: the banners of one ``shodan host`` record (one line,
``record_type = 'host'``), or the banners of one address crawled on one day (banner exports and
the API cache). Its time is its latest banner's. The profile of ``(ip, ref_ts)`` is the record
whose time is nearest ``ref_ts`` (the later on a tie), so a server that was clean in January and
compromised in May is described as it was when it attacked.

The profile: ``os`` (of the record's latest banner that names one; of two at the same time,
the last by name), ``os_family`` (the first pattern of ``data/os_families.csv`` that matches
it), ``products``, ``services`` and
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


def profile_sql(attacks: str, records: str = "host_record", with_sig: bool = False) -> str:
    """SELECT ip, ref_ts, host_record_ts, os, os_family, products, services, service_classes,
    ports, hostnames, cloud, host_kind, profile: the profile of every row of ``attacks``
    (columns ip, ref_ts, network_type; one row per ``(ip, ref_ts)``) that has a record in
    ``records``. Rows with the same ``profile`` (a number, within one result) have the same
    os, os_family, products, services, service_classes and ports.

    Most addresses have a single snapshot, which is then the nearest whatever ``ref_ts``: the
    banners of each ``(ip, ref_ts)`` are aggregated once as if they were one snapshot, and only
    the pairs whose banners span several snapshots are read again, aggregated per snapshot and
    ranked by distance to ``ref_ts`` (no per-pair ranking for the others).

    Lists are built once per distinct set of services (a *signature*: the sorted ids of the
    distinct (module, product, port, transport, banner) of a snapshot), not once per address:
    at a million addresses, building lists row by row is most of the work, and a few thousand
    signatures describe them all.

    ``with_sig``: also ``sig``, what ``profile`` numbers with ``os`` (for numbering the
    profiles of several results as one: the Spark engine)."""
    server = ", ".join(f"'{c}'" for c in SERVER_CLASSES)
    # a service's id: a 64-bit hash of its (module, product, port, transport, banner) (a
    # collision would merge two services; joining on the five nullable columns costs more)
    rows = f"""SELECT *, hash(module, product, port, transport, bkey) AS kid
        FROM (SELECT h.ip, h.ts, h.os, h.hostnames, h.module, h.product, h.port, h.transport,
                     h.cloud_provider IS NOT NULL OR list_contains(h.tags, 'cloud') AS cloud,
                     CASE WHEN h.product IS NULL THEN left(h.banner, {BANNER_CHARS}) END AS bkey,
                     -- the snapshot: a host record's (file_id, source_line) or a banner's day,
                     -- NULL when a part is (as the text file_id:source_line or day would be)
                     CASE WHEN h.record_type = 'host' AND h.source_line IS NOT NULL
                          THEN h.file_id END AS sf,
                     CASE WHEN h.record_type = 'host' AND h.file_id IS NOT NULL
                          THEN h.source_line END AS sl,
                     CASE WHEN h.record_type = 'host' THEN NULL ELSE h.event_date END AS sd,
                     a.ref_ts, a.network_type"""
    snap = """max(ts) AS snap_ts,
               -- the latest banner's OS (of two at the same time, the last by name)
               arg_max(os, (ts, os)) FILTER (WHERE os IS NOT NULL) AS os,
               -- reverse DNS is the host's, the same on each banner: the latest banner's
               -- (arg_max_null: also when it has none; a list per row would cost more)
               CASE WHEN max(ts) IS NOT NULL
                    THEN coalesce(arg_max_null(hostnames, ts), []) END AS hostnames,
               bool_or(cloud) AS cloud,
               CASE WHEN min(kid) = max(kid) THEN [min(kid)]
                    ELSE list_sort(list_distinct(list(kid))) END AS sig"""
    return f"""
    WITH r AS ({rows} FROM {records} h JOIN {attacks} a ON a.ip = h.ip)),
    one AS (
        SELECT ip, ref_ts, any_value(network_type) AS network_type, {snap},
               -- one snapshot: each part of its key the same on every banner (or NULL on all)
               (count(sf) = 0 OR count(sf) = count(*) AND min(sf) = max(sf))
               AND (count(sl) = 0 OR count(sl) = count(*) AND min(sl) = max(sl))
               AND (count(sd) = 0 OR count(sd) = count(*) AND min(sd) = max(sd)) AS single,
               count(sf) + count(sd) > 0 AS keyed
        FROM r GROUP BY ip, ref_ts),
    multi AS (
        SELECT ip, ref_ts, any_value(network_type) AS network_type, sf, sl, sd, {snap}
        FROM ({rows} FROM {records} h
                     JOIN (SELECT ip, ref_ts, network_type FROM one WHERE NOT single) a
                          ON a.ip = h.ip))
        GROUP BY ip, ref_ts, sf, sl, sd),
    -- a snapshot without a key (a banner without a day, a host record without file and line)
    -- is no record: the pairs it is the nearest to have no profile
    picked AS (
        SELECT ip, ref_ts, network_type, snap_ts, os, hostnames, cloud, sig
        FROM one WHERE single AND keyed
        UNION ALL
        SELECT ip, ref_ts, network_type, snap_ts, os, hostnames, cloud, sig
        FROM (SELECT * FROM multi
              QUALIFY row_number() OVER (
                  PARTITION BY ip, ref_ts
                  ORDER BY abs(epoch(snap_ts) - epoch(ref_ts)) NULLS LAST,
                           snap_ts DESC NULLS LAST,
                           -- the key as text: 'YYYY-MM-DD' or 'file_id:source_line'
                           CASE WHEN sd IS NOT NULL THEN CAST(sd AS VARCHAR)
                                ELSE sf || ':' || sl END) = 1)
        WHERE sd IS NOT NULL OR sf IS NOT NULL),
    k AS (SELECT *, {services_sql('module', 'product', 'port', 'transport', 'bkey')} AS services
          FROM (SELECT kid, any_value(module) AS module, any_value(product) AS product,
                       any_value(port) AS port, any_value(transport) AS transport,
                       any_value(bkey) AS bkey
                FROM r GROUP BY kid)),
    sigs AS (
        SELECT sig,
               list_sort(list_distinct(list(k.product) FILTER (WHERE k.product IS NOT NULL)))
                   AS products,
               list_sort(list_distinct(flatten(list(k.services)))) AS services,
               list_sort(list_distinct(list(k.port) FILTER (WHERE k.port IS NOT NULL))) AS ports
        FROM (SELECT sig, unnest(sig) AS kid FROM (SELECT DISTINCT sig FROM picked)) x
             JOIN k USING (kid)
        GROUP BY sig),
    kinds AS (
        SELECT *, list_has_any(service_classes, ['router', 'mikrotik']) AS router,
               list_contains(service_classes, 'iot') AS iot,
               list_has_any(service_classes, [{server}]) AS server
        FROM (SELECT *, list_sort(list_distinct(list_transform(services,
                            lambda x: split_part(x, ':', 1)))) AS service_classes FROM sigs)),
    -- one join for both lookups: a few thousand (signature, os) pairs
    -- (SQL both engines run: the Spark engine's analysis reads it through spark.sql.to_spark)
    combos AS (SELECT c.sig, c.os, {os_family_sql('c.os')} AS os_family, kinds.products,
                      kinds.services, kinds.ports, kinds.service_classes, kinds.router, kinds.iot,
                      kinds.server,
                      -- numbered in (sig, os) order: a rerun gives the same numbers
                      row_number() OVER (ORDER BY c.sig, c.os)::INTEGER AS profile
               FROM (SELECT DISTINCT sig, os FROM picked) c JOIN kinds USING (sig))
    SELECT p.ip, p.ref_ts, p.snap_ts AS host_record_ts, p.os, c.os_family, c.products,
           c.services, c.service_classes, c.ports, p.hostnames, p.cloud,
           {host_kind_sql('c.os_family', 'c.router', 'c.iot', 'c.server',
                          'p.cloud', 'p.network_type')} AS host_kind, c.profile
           {', c.sig' if with_sig else ''}
    FROM picked p JOIN combos c ON c.sig = p.sig AND c.os IS NOT DISTINCT FROM p.os"""
