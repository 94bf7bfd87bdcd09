"""Enrich every distinct source IP: where it is (country, AS, network type), what it is (its host
record nearest its attacks), who lists it (IOC lists), how broadly it attacked (classification).

    summary = run_enrich(ws)                       # geoip2fast data; views source, indicator
    summary = run_enrich(ws, mmdb=["GeoLite2-Country.mmdb", "GeoLite2-ASN.mmdb"])
    lookup(["8.8.8.8", "2001:db8::1"]).to_pylist() # where a list of addresses is, as Arrow
    asn_ranges([45090])                            # [(first_ip, last_ip, asn, as_org), ...]

The range tables (see ``ranges``: country + ASN, or several .mmdb files, each field from the
first table that has it) are merged once into one table of non-overlapping ranges, cached and
memory-mapped; each distinct IP finds its range by binary search (C, ``_native.range_index``;
an ASOF join in DuckDB without the extension), and the AS classification runs once per range
found (a *place*), not per address. Private, reserved, unparseable and unlisted addresses get
NULL country/AS and network_type 'unknown'.

The address table is built aligned, not joined: the attacking addresses come out of the breadth
aggregation, the addresses only events name are appended, and their numbers and places are
Arrow columns beside them. Only host records and IOC matches are joined to it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from threatscope import schema, sqlfn
from threatscope.enrich import classify, hosts, iocs, netclass, ranges
from threatscope.files import write_atomic
from threatscope.ingest.arrowfn import to_native
from threatscope.ipnum import num_to_ip, reserved_ranges
from threatscope.native import native
from threatscope.spark import check_engine
from threatscope.workspace import Workspace, parquet_write_columns, relations

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# what `lookup` gives: the address's own attributes (geo, AS, network type)
OUTPUT_COLUMNS = ["ip", "country_code", "country_name", "asn", "as_org", "network_type",
                  "geo_source"]


@dataclass
class EnrichSummary:
    sources: int = 0  # distinct IPs written to `source`
    invalid_ips: int = 0  # IP text that is not an address
    with_country: int = 0
    with_asn: int = 0  # AS organisation known
    network_types: dict[str, int] = field(default_factory=dict)
    geo_source: str = ""
    attacking_ips: int = 0  # addresses with detections
    with_host_record: int = 0  # of them, with a host record
    with_ioc_match: int = 0  # addresses an IOC list names
    classifications: dict[str, int] = field(default_factory=dict)
    indicators: int = 0  # rows of `indicator`
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    """The IP macros and the built-in AS list (``_ts_asn_list``) on ``con``."""
    con.execute("SET enable_progress_bar = false")
    # nothing here depends on row order: let every thread write its rows as they come
    con.execute("SET preserve_insertion_order = false")
    sqlfn.install(con)
    asns = netclass.builtin_asns()
    con.register(
        "_ts_asn_list_arrow",
        pa.table({
            "asn": pa.array([a for a, _, _ in asns], pa.int64()),
            "as_org": [o for _, o, _ in asns],
            "network_type": [t for _, _, t in asns],
        }),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _ts_asn_list AS SELECT * FROM _ts_asn_list_arrow")
    con.unregister("_ts_asn_list_arrow")


_MASK = "18446744073709551615::UHUGEINT"
_MASK64 = (1 << 64) - 1


def _halves(con: duckdb.DuckDBPyConnection, ips: pa.Array) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """``(hi, lo, known)``: the number of each address of ``ips`` as two uint64 halves, and
    whether it is one. In C where it can (its numbers stop below 10**38, ff00::/8 and the like:
    the SQL macro does those and text that is no address), else with the macro."""
    n = len(ips)
    hi, lo = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
    known = np.zeros(n, bool)
    if (c := native()) is not None:
        _, validity, values = c.ip_numbers(*to_native(ips))
        halves = np.frombuffer(values, "<u8").reshape(-1, 2)  # little-endian 128-bit: lo, hi
        lo[:], hi[:] = halves[:, 0], halves[:, 1]
        known[:] = True if validity is None else np.unpackbits(
            np.frombuffer(validity, np.uint8), count=n, bitorder="little").astype(bool)
    rest = np.flatnonzero(~known & ~np.asarray(pc.is_null(ips), bool))
    if len(rest):
        con.register("_ts_rest", pa.table({"ip": ips.take(pa.array(rest))}))
        try:
            num = con.sql(f"""SELECT (n >> 64)::UBIGINT AS hi, (n & {_MASK})::UBIGINT AS lo
                              FROM (SELECT ts_ip_num(ip) AS n FROM _ts_rest)""").to_arrow_table()
        finally:
            con.unregister("_ts_rest")
        found = np.asarray(num.column("hi").is_valid(), bool)
        hi[rest[found]] = np.asarray(num.column("hi").drop_null(), np.uint64)
        lo[rest[found]] = np.asarray(num.column("lo").drop_null(), np.uint64)
        known[rest[found]] = True
    return hi, lo, known


@cache
def _reserved_table() -> pa.Table:
    """The reserved networks as a range table (sorted, not overlapping)."""
    merged: list[list[int]] = []
    for first, last in sorted(reserved_ranges()):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return pa.table({f"{end}_{half}": pa.array([(r[i] >> 64) if half == "hi" else r[i] & _MASK64
                                                for r in merged], pa.uint64())
                     for i, end in enumerate(("first", "last")) for half in ("hi", "lo")})


# (ips, range table, reserved ranges) -> (hi, lo table aligned with ips, reserved?, range row)
Locate = Callable[[pa.Array, pa.Table, pa.Table], tuple[pa.Table, pa.Array, pa.Array]]
# (connection with the view _ts_att) -> the rows of hosts.profile_sql('_ts_att'), or None;
# (connection with _ts_geo) -> the rows of iocs.address_matches_sql over it, or None
Profiles = Callable[[duckdb.DuckDBPyConnection], pa.Table | None]
Matches = Callable[[duckdb.DuckDBPyConnection], pa.Table | None]
# (the attacking addresses' table) -> the other addresses of http and alert events (ip)
Others = Callable[[pa.Table], pa.Table]
# (thresholds) -> the rows of classify.breadth_sql over the detections, or None
Breadth = Callable[[dict[str, int]], pa.Table | None]


def _placed(con: duckdb.DuckDBPyConnection, ips: pa.Array, mmdb: Sequence[Path | str],
            locate: Locate | None = None) -> tuple[pa.Table, pa.Table, str]:
    """Where each address of ``ips`` is: ``(addresses, places, geo_source label)``, Arrow
    tables. ``addresses``, aligned with ``ips``: ip, hi, lo (its number's halves, NULL when it
    is no address), place (a row of ``places``). ``places``: place, country_code, country_name,
    asn, as_org, network_type: one row per range of the range table of ``mmdb`` (default:
    geoip2fast's data) holding some address, and one (NULL country and AS) for reserved
    addresses and those no range holds. The AS classification runs once per place.
    ``locate``: finds the numbers and ranges instead of this process (the Spark engine)."""
    label, path = ranges.combined(mmdb)
    table = ranges.open_combined(path)
    if locate is None:
        hi, lo, known = _halves(con, ips)
        q = pa.table({"hi": pa.array(hi, mask=~known), "lo": pa.array(lo, mask=~known)})
        reserved = _range_rows(con, q, _reserved_table()).is_valid()
        found_rows = _range_rows(con, q, table)
    else:
        q, reserved, found_rows = locate(ips, table, _reserved_table())
    rows = pc.if_else(reserved, pa.scalar(None, pa.int32()), found_rows)
    # a place per range row found, numbered in range order (not in the order the addresses
    # came, which a DISTINCT does not fix): a rerun numbers them the same
    ranks, place_of = np.unique(np.asarray(rows.fill_null(-1), np.int64), return_inverse=True)
    range_rows = pa.array(ranks, pa.int64(), mask=ranks < 0)
    con.register("_ts_orgs", pa.table({
        "place": pa.array(range(len(ranks)), pa.int32()),
        **{c: table.column(c).take(range_rows)
           for c in ("country_code", "country_name", "asn", "as_org")},
    }))
    try:
        places = con.sql(f"""
            SELECT o.place, o.country_code::VARCHAR AS country_code,
                   o.country_name::VARCHAR AS country_name, coalesce(o.asn, bn.asn) AS asn,
                   o.as_org::VARCHAR AS as_org,
                   {netclass.classify_sql('ba.network_type', 'bn.network_type', 'o.as_org')}
                       AS network_type
            FROM _ts_orgs o
            LEFT JOIN (SELECT as_org, min(asn) AS asn, min(network_type) AS network_type
                       FROM _ts_asn_list GROUP BY as_org) bn ON bn.as_org = o.as_org
            LEFT JOIN (SELECT asn, min(network_type) AS network_type FROM _ts_asn_list
                       GROUP BY asn) ba ON ba.asn = coalesce(o.asn, bn.asn)
            ORDER BY o.place""").to_arrow_table()
    finally:
        con.unregister("_ts_orgs")
    addresses = pa.table({"ip": ips, "hi": q.column("hi"), "lo": q.column("lo"),
                          "place": pa.array(place_of.astype(np.int32))})
    return addresses, places, label


def _range_rows(con: duckdb.DuckDBPyConnection, q: pa.Table, table: pa.Table) -> pa.Array:
    """The row of ``table`` holding each number (``q``: UBIGINT halves ``hi``, ``lo``), NULL
    if none: a binary search in C over the memory-mapped bounds, else an ASOF join."""
    hi, lo = _flat(q.column("hi")), _flat(q.column("lo"))
    if (c := native()) is not None:
        bounds = [_flat(table.column(n)).buffers()[1]
                  for n in ("first_hi", "first_lo", "last_hi", "last_lo")]
        valid, idx = c.range_index(table.num_rows, *bounds, len(hi), hi.buffers()[1] or b"",
                                   lo.buffers()[1] or b"", hi.buffers()[0] if hi.null_count else None)
        return pa.Array.from_buffers(pa.int32(), len(hi), [pa.py_buffer(valid),
                                                          pa.py_buffer(idx)])
    # below this many probe rows DuckDB turns ASOF into a nested loop over all ranges: slow here
    con.execute("SET asof_loop_join_threshold = 0")
    num = "(({0}_hi::UHUGEINT << 64) | {0}_lo::UHUGEINT)"
    con.register("_ts_q", pa.table({"pos": pa.array(range(len(hi)), pa.int64()),
                                    "q_hi": hi, "q_lo": lo}))
    con.register("_ts_b", table.select(["first_hi", "first_lo", "last_hi", "last_lo"])
                 .append_column("rid", pa.array(range(table.num_rows), pa.int32())))
    try:
        return con.sql(f"""
            SELECT CASE WHEN q.num <= b.last_num THEN b.rid END AS rid
            FROM (SELECT pos, {num.format('q')} AS num FROM _ts_q) q
            ASOF LEFT JOIN (SELECT rid, {num.format('first')} AS first_num,
                                   {num.format('last')} AS last_num FROM _ts_b) b
                 ON q.num >= b.first_num
            ORDER BY q.pos""").to_arrow_table().column("rid").combine_chunks()
    finally:
        con.unregister("_ts_q")
        con.unregister("_ts_b")


def _flat(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array whose buffers start at its first element (what _native reads)."""
    flat = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return pa.concat_arrays([flat]) if flat.offset else flat  # concat copies to offset 0


def _geo_views(con: duckdb.DuckDBPyConnection, addresses: pa.Table,
               mmdb: Sequence[Path | str], locate: Locate | None = None) -> str:
    """Temp views ``_ts_geo`` (the columns of ``addresses``, one row per distinct ``ip``, and
    ip_num, place) and ``_ts_place`` (place and its SOURCE columns country_code ..
    geo_source), over Arrow tables registered on ``con`` (scanning one costs no more than a
    table, copying it into one does); returns the geo_source label."""
    placed, places, label = _placed(con, _flat(addresses.column("ip")), mmdb, locate)
    for name in ("hi", "lo", "place"):
        addresses = addresses.append_column(f"_{name}", placed.column(name))
    con.register("_ts_geo_arrow", addresses)
    con.register("_ts_place_arrow", places)
    con.execute("""
        CREATE OR REPLACE TEMP VIEW _ts_geo AS
        SELECT * EXCLUDE (_hi, _lo, _place), (_hi::UHUGEINT << 64) | _lo::UHUGEINT AS ip_num,
               _place AS place
        FROM _ts_geo_arrow""")
    con.execute("CREATE OR REPLACE TEMP VIEW _ts_place AS SELECT *, "
                f"{sqlfn.sql_str(label)} AS geo_source FROM _ts_place_arrow")
    return label


def _resolve_mmdb(ws: Workspace, mmdb: Sequence[Path | str]) -> list[Path]:
    paths = [Path(p) for p in mmdb] or ws.mmdb_files
    # paths from config.toml may be relative to the workspace
    return [p if p.is_absolute() or p.exists() else ws.root / p for p in paths]


def run_enrich(ws: Workspace, mmdb: Sequence[Path | str] = (), engine: str = "duckdb",
               spark: SparkSession | None = None) -> EnrichSummary:
    """Replace what the views ``source`` (one row per distinct source IP of detections and
    events: where it is, what it is, what the IOC lists and its detections say about it) and
    ``indicator`` (what is worth sharing) read: a new run folder (Workspace.enriched).

    ``mmdb``: MaxMind-format files to use instead of geoip2fast's data (default: the
    workspace's ``[enrich] mmdb`` list).

    ``engine="spark"``: the per-address work (breadth, numbers, ranges, host profiles, IOC
    matches) runs on Spark (``spark``, default ``threatscope.spark.session()``), the same
    tables are written; see :mod:`threatscope.enrich.spark`.

        run_enrich(ws, engine="spark", spark=threatscope.spark.session("local[4]"))
    """
    if check_engine(engine) == "spark":
        from threatscope.enrich import spark as on_spark  # pyspark only when asked for

        return on_spark.run_enrich(ws, mmdb, spark)
    return _run(ws, mmdb)


def _run(ws: Workspace, mmdb: Sequence[Path | str], locate: Locate | None = None,
         profiles: Profiles | None = None, matches: Matches | None = None,
         others: Others | None = None, breadth: Breadth | None = None) -> EnrichSummary:
    """run_enrich, with the address look-ups of ``locate``, the host profiles of ``profiles``,
    the IOC list matches of ``matches``, the events' other addresses of ``others`` and the
    attacking addresses' breadth of ``breadth`` when given (the Spark engine)."""
    t0 = time.perf_counter()
    limits = classify.thresholds(ws.config)
    with ws.connect() as con:
        _prepare(con)
        have = relations(con)
        detection = "detection" if "detection" in have else \
            f"({schema.empty_select(schema.DETECTION)})"
        # every attacking address with its breadth, then the addresses only events name; the
        # address table is built around them in Arrow, aligned, so nothing joins on addresses
        attackers = breadth(limits) if breadth is not None else None
        if attackers is None:
            attackers = con.sql(classify.breadth_sql(detection, limits)).to_arrow_table()
        else:  # the SQL's types (a query of no rows gives them)
            con.register("_ts_breadth_arrow", attackers)
            attackers = con.sql(f"""
                SELECT * FROM ({classify.breadth_sql(detection, limits)}) WHERE false
                UNION ALL BY NAME
                SELECT * EXCLUDE (first_us, last_us), make_timestamp(first_us) AS first_seen,
                       make_timestamp(last_us) AS last_seen FROM _ts_breadth_arrow
                """).to_arrow_table()
            con.unregister("_ts_breadth_arrow")
        if others is None:
            con.register("_ts_breadth", attackers)
            rest = con.sql("""
                SELECT DISTINCT ip FROM (SELECT source_ip AS ip FROM http
                                         UNION ALL SELECT source_ip FROM alert)
                WHERE ip IS NOT NULL AND ip <> '' AND ip NOT IN (SELECT ip FROM _ts_breadth)
                """).to_arrow_table()
            con.unregister("_ts_breadth")
        else:
            rest = others(attackers)
        addresses = pa.concat_tables([attackers, rest], promote_options="default")
        geo_source = _geo_views(con, addresses, _resolve_mmdb(ws, mmdb), locate)
        _describe(con, detection, have, profiles, matches)
        classification = classify.classification_sql("g", "coalesce(sc.scanner, false)", limits)
        _write_run(ws, con, [
            ("source", schema.SOURCE_STORED,
             _SOURCE_SELECT.replace("{classification}", classification)),
            ("place", schema.PLACE_STORED, "SELECT * FROM _ts_place"),
            ("host_profile", schema.PROFILE_STORED, _PROFILE_SELECT),
            ("payload_indicator", schema.INDICATOR, _PAYLOAD_SELECT)])
        ws.refresh_views(con)
        # one pass over `source` (the indicators counted as the view `indicator` selects
        # them, without making them)
        (total, invalid, with_cc, with_as, attackers, with_host, with_ioc, indicators, types,
         classes), = con.execute(
            "SELECT count(*), count(*) FILTER (ip_num IS NULL), count(country_code), "
            "count(as_org), count(*) FILTER (detections > 0), "
            "count(*) FILTER (detections > 0 AND host_record_ts IS NOT NULL), "
            "count(*) FILTER (len(ioc_matches) > 0), "
            "count(*) FILTER (detections > 0 AND ip_num IS NOT NULL) "
            "+ (SELECT count(*) FROM payload_indicator), histogram(network_type), "
            "histogram(classification) FROM source").fetchall()
    return EnrichSummary(
        sources=total, invalid_ips=invalid, with_country=with_cc, with_asn=with_as,
        network_types=dict(sorted((types or {}).items())), geo_source=geo_source,
        attacking_ips=attackers,
        with_host_record=with_host, with_ioc_match=with_ioc,
        classifications=dict(sorted((classes or {}).items())),
        indicators=indicators, seconds=round(time.perf_counter() - t0, 3),
    )


def _write_run(ws: Workspace, con: duckdb.DuckDBPyConnection,
               tables: list[tuple[str, list[tuple[str, str]], str]]) -> None:
    """Write ``tables`` (name, columns, SELECT) as Parquet into a new folder of
    ``ws.enriched_root`` and make it the current one (Workspace.enriched). Parquet, not
    catalog tables (as the detections): a columnar write of a million rows is a fraction of
    DuckDB's insert and checkpoint. Unordered: readers sort."""
    root = ws.enriched_root
    root.mkdir(exist_ok=True)
    folder = root / uuid.uuid4().hex
    folder.mkdir()
    try:
        for name, cols, select in tables:
            con.execute(f"COPY (SELECT {parquet_write_columns(cols)} FROM ({select})) TO "
                        f"{sqlfn.sql_str(str(folder / f'{name}.parquet'))} (FORMAT parquet)")
        con.execute("BEGIN TRANSACTION")
        for name, kind in con.execute(  # where earlier versions kept them
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_catalog <> 'temp' AND table_schema = 'main' "
                "AND table_name IN ('source', 'payload_indicator', 'indicator')").fetchall():
            con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} main.{name}")
        previous = ws.enriched()
        write_atomic(root / "CURRENT", folder.name + "\n")
        con.execute("COMMIT")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # earlier runs' folders, but the one before (a reader may be in the middle of it)
    for old in root.iterdir():
        if old.is_dir() and old not in (folder, previous):
            shutil.rmtree(old, ignore_errors=True)


def _describe(con: duckdb.DuckDBPyConnection, detection: str, have: set[str],
              profiles: Profiles | None = None, matches: Matches | None = None) -> None:
    """The temp tables _SOURCE_SELECT and _PAYLOAD_SELECT read besides ``_ts_geo``:
    ``_ts_prof`` (the host record of each attacking address nearest its first attack),
    ``_ts_scan`` (research scanners), ``_ts_iocm`` (IOC list matches), ``_ts_pay`` (payload
    indicators). ``detection``: the detections' relation (or an empty one); ``profiles``:
    makes ``_ts_prof``'s rows elsewhere, ``matches`` those of ``_ts_iocm`` (the Spark
    engine)."""
    con.execute("CREATE OR REPLACE TEMP VIEW _ts_b AS SELECT * FROM _ts_geo "
                "WHERE detections IS NOT NULL")
    con.execute("CREATE OR REPLACE TEMP VIEW _ts_att AS SELECT b.ip, b.first_seen AS ref_ts, "
                "p.network_type FROM _ts_b b JOIN _ts_place p USING (place)")
    made = profiles(con) if profiles is not None else None
    if made is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _ts_prof AS {hosts.profile_sql('_ts_att')}")
    else:
        con.register("_ts_prof_arrow", made)
        try:  # profile numbers for all results as one (as hosts.profile_sql numbers them)
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE _ts_prof AS
                SELECT * EXCLUDE (sig), (dense_rank() OVER (ORDER BY sig, os))::INTEGER
                       AS profile
                FROM (SELECT * EXCLUDE (profile)  -- no rows: the types of the SQL's
                      FROM ({hosts.profile_sql('(SELECT * FROM _ts_att WHERE false)')})
                      UNION ALL BY NAME SELECT * FROM _ts_prof_arrow)""")
        finally:
            con.unregister("_ts_prof_arrow")
    # research scanners: a scanner's name on any record of the address, or its user agent
    # (the patterns tried once per distinct name or agent, the attackers looked up last: few
    # records have names, few agents are a scanner's)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _ts_scan AS
        SELECT ip FROM (
            SELECT DISTINCT ip FROM (SELECT ip, unnest(hostnames) AS name FROM host_record
                                     WHERE len(hostnames) > 0)
            WHERE {classify.hostname_scanner_sql('name')}
            UNION
            SELECT DISTINCT source_ip FROM http SEMI JOIN (
                SELECT ua FROM (SELECT DISTINCT user_agent_original AS ua FROM http)
                WHERE {classify.user_agent_scanner_sql('ua')}) s
                ON s.ua = http.user_agent_original)
        SEMI JOIN _ts_b USING (ip)""")
    made = matches(con) if matches is not None else None
    if made is None:
        con.execute("CREATE OR REPLACE TEMP TABLE _ts_iocm AS " + iocs.address_matches_sql(
            "(SELECT ip, ip_num FROM _ts_geo)", iocs.cidr_shifts(con)))
    else:
        con.register("_ts_iocm_arrow", made)
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE _ts_iocm AS SELECT ip, ioc_matches, "
                        "ioc_families, make_timestamp(first_us) AS ioc_first_seen, "
                        "make_timestamp(last_us) AS ioc_last_seen FROM _ts_iocm_arrow")
        finally:
            con.unregister("_ts_iocm_arrow")
    con.execute("CREATE OR REPLACE TEMP TABLE _ts_pay AS "
                + iocs.payloads_sql(have | {"http", "powershell", "document"}))
    con.execute("CREATE OR REPLACE TEMP TABLE _ts_paym AS " + iocs.payload_matches_sql("_ts_pay"))
    # what the detections of each event say (payloads inherit it)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _ts_evd AS
        SELECT file_id, source_line, list(campaign) FILTER (campaign IS NOT NULL) AS campaigns,
               flatten(list(coalesce(cves, []))) AS cves,
               list(malware_family) FILTER (malware_family IS NOT NULL) AS families,
               flatten(list(coalesce(attack_techniques, []))) AS techniques
        FROM {detection} SEMI JOIN (SELECT DISTINCT file_id, source_line FROM _ts_pay) p
             USING (file_id, source_line)
        GROUP BY file_id, source_line""")


def _sorted(expr: str) -> str:
    return f"list_sort(list_distinct({expr}))"


# the rows of source.parquet (schema.SOURCE_STORED): what place.parquet and
# host_profile.parquet hold once (country, AS, OS, products, ...) by their number
_SOURCE_SELECT = f"""
    SELECT g.ip, g.ip_num, g.place, p.profile, coalesce(p.hostnames, []) AS hostnames,
           p.host_kind, p.host_record_ts, coalesce(m.ioc_matches, []) AS ioc_matches,
           CASE WHEN m.ioc_families IS NULL THEN coalesce(g.malware_families, [])
                ELSE {_sorted("m.ioc_families || coalesce(g.malware_families, [])")} END
               AS malware_families,
           CASE WHEN g.detections IS NOT NULL THEN {{classification}} END AS classification,
           coalesce(g.orgs_hit, 0) AS orgs_hit, coalesce(g.sensors_hit, 0) AS sensors_hit,
           coalesce(g.exploits, 0) AS exploits, coalesce(g.detections, 0) AS detections,
           coalesce(g.campaigns, []) AS campaigns, coalesce(g.cves, []) AS cves,
           coalesce(g.attack_techniques, []) AS attack_techniques, g.first_seen, g.last_seen
    FROM _ts_geo g
    LEFT JOIN (SELECT ip, profile, hostnames, host_kind, host_record_ts FROM _ts_prof) p
         ON p.ip = g.ip
    LEFT JOIN _ts_iocm m ON m.ip = g.ip
    LEFT JOIN (SELECT ip, true AS scanner FROM _ts_scan) sc ON sc.ip = g.ip"""

_PROFILE_SELECT = """
    SELECT profile, any_value(os) AS os, any_value(os_family) AS os_family,
           any_value(products) AS products, any_value(service_classes) AS service_classes,
           any_value(ports) AS ports
    FROM _ts_prof GROUP BY profile"""

_PAYLOAD_SELECT = f"""
    SELECT p.indicator_type, p.value, 'payload' AS role,
           {_sorted("flatten(list(coalesce(d.campaigns, [])))")} AS campaigns,
           {_sorted("flatten(list(coalesce(d.cves, [])))")} AS cves,
           {_sorted("flatten(list(coalesce(d.families, []))) || coalesce(any_value(m.ioc_families), [])")}
               AS malware_families,
           {_sorted("flatten(list(coalesce(d.techniques, [])))")} AS attack_techniques,
           coalesce(any_value(m.ioc_feeds), []) AS ioc_feeds,
           min(p.ts) AS first_seen, max(p.ts) AS last_seen,
           count(DISTINCT (p.file_id, p.source_line)) AS sightings,
           count(DISTINCT p.org_id) AS orgs, NULL AS country_code, NULL AS as_org,
           NULL AS classification
    FROM _ts_pay p
    LEFT JOIN _ts_evd d ON d.file_id = p.file_id AND d.source_line = p.source_line
    LEFT JOIN _ts_paym m ON m.indicator_type = p.indicator_type AND m.value = p.value
    -- an event's indicator is shared when a rule detected the event or a list names it
    WHERE d.file_id IS NOT NULL OR m.value IS NOT NULL
    GROUP BY p.indicator_type, p.value"""


def lookup(ips: Iterable[str | None], mmdb: Sequence[Path | str] = ()) -> pa.Table:
    """Enrich a list of IP strings; one output row per input, in order.

    Columns: ip, country_code, country_name, asn, as_org, network_type, geo_source.

    >>> lookup(["8.8.8.8"]).to_pylist()[0]["country_code"]
    'US'
    """
    ips = list(ips)
    con = duckdb.connect()
    try:
        _prepare(con)
        con.register("_ts_in", pa.table({"ip": pa.array(ips, pa.string()),
                                          "pos": pa.array(range(len(ips)), pa.int64())}))
        _geo_views(con, con.sql("SELECT DISTINCT ip FROM _ts_in WHERE ip IS NOT NULL")
                   .to_arrow_table(), mmdb)
        out = ", ".join(f"t.{c}" if c == "ip" else c for c in OUTPUT_COLUMNS)
        table = con.sql(f"SELECT {out} FROM _ts_in t LEFT JOIN _ts_geo e ON e.ip = t.ip "
                        "LEFT JOIN _ts_place USING (place) ORDER BY t.pos").to_arrow_table()
    finally:
        con.close()
    # inputs that were NULL still get a row; say what they are
    nt = table.column("network_type").fill_null("unknown")
    return table.set_column(OUTPUT_COLUMNS.index("network_type"), "network_type", nt)


def asn_ranges(asns: Iterable[int]) -> list[tuple[str, str, int, str]]:
    """IP ranges of these AS numbers in geoip2fast's data: ``(first_ip, last_ip, asn, as_org)``.

    geoip2fast names organisations but not numbers: a number is found through the built-in
    list (``data/asn_network_types.csv``), so only ASNs listed there return ranges.
    """
    return [(num_to_ip(a), num_to_ip(b), asn, org) for a, b, asn, org in asn_ranges_num(asns)]


def asn_ranges_num(asns: Iterable[int]) -> list[tuple[int, int, int, str]]:
    """:func:`asn_ranges` with bounds as numbers (``threatscope.schema`` number space)."""
    wanted = {int(a) for a in asns}
    names = {org: asn for asn, org, _ in netclass.builtin_asns() if asn in wanted}
    if not names:
        return []
    _, path = ranges.geoip2fast_layers()[1]
    con = duckdb.connect()
    try:
        con.register("_ts_names", pa.table({"as_org": list(names), "asn": list(names.values())}))
        rows = con.execute(
            "SELECT (first_num >> 64)::UBIGINT, (first_num & 18446744073709551615::UHUGEINT)::UBIGINT, "
            "(last_num >> 64)::UBIGINT, (last_num & 18446744073709551615::UHUGEINT)::UBIGINT, "
            "n.asn, r.as_org "
            f"FROM ({ranges.range_select(path)}) r JOIN _ts_names n USING (as_org) "
            "ORDER BY first_num"
        ).fetchall()
    finally:
        con.close()
    return [((fh << 64) | fl, (lh << 64) | ll, asn, org) for fh, fl, lh, ll, asn, org in rows]


def source_rows(ws: Workspace) -> list[dict]:
    """The ``source`` table as dicts (small workspaces, tests)."""
    with ws.connect(read_only=True) as con:
        cur = con.execute("SELECT * EXCLUDE (ip_num) FROM source ORDER BY ip")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


__all__ = ["EnrichSummary", "asn_ranges", "lookup", "run_enrich", "source_rows"]
