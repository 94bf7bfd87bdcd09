"""Enrich on Spark: the per-address work in Spark tasks and broadcast joins.

    from threatscope.enrich import run_enrich
    run_enrich(ws, engine="spark")                       # threatscope.spark.session()
    run_enrich(ws, mmdb=["GeoLite2-City.mmdb"], engine="spark", spark=s)

In Spark (executors):

* the attacking addresses' breadth (detections, organisations, sensors, exploits, lists,
  widespread campaigns): ``classify.breadth_sql`` as Spark SQL over ``detection.parquet``;
* the addresses only events name: a scan of the lake's http and alert events, less the
  attackers (broadcast anti-join);
* each address's 128-bit number (``stage._halves``, the DuckDB engine's C code, per partition
  with ``mapInArrow``);
* the geo/AS range holding it, by an equi-join on a prefix bucket with the range table
  broadcast. A range ``[first, last]`` goes to level ``b`` (a multiple of 8): the bits
  ``first`` and ``last`` share, rounded down to a byte; its bucket is ``first``'s top ``b``
  bits. Ranges do not overlap and every range of a level-``b`` bucket crosses a level-``b+8``
  boundary (else it would be a level further down), so a bucket holds at most 255 ranges: no
  nested loop. An address probes its bucket at each of the 17 levels (0, 8, .., 128) and keeps
  the range whose bounds hold it. IPv4 (``::ffff:0:0/96``) and IPv6 alike; the reserved
  networks join the same way;
* the IOC lists' addresses and networks, the same broadcast join (overlapping ranges: every
  list naming an address matches), aggregated in Spark SQL;
* the host profiles: host records joined to the attacking addresses in Spark, then
  ``hosts.profile_sql`` per partition (all records of an address in one partition).

Numbers are two 64-bit halves, stored with the top bit flipped so that Spark's signed
comparisons order them as unsigned. On the driver, with the DuckDB engine's own code
(:func:`threatscope.enrich.stage._run`, which each piece above replaces): the AS
classification per place (a place per range found: few), the research-scanner check (user
agents of http events, host names), payload indicators (regular expressions over detected
events), the classification, joining it all per address, the writing of the tables and the
atomic switch of ``enriched/CURRENT``; so both engines write the same rows.

The workspace must be at the same path on the driver and the executors (a shared file system
on a cluster); the range table is written once to the workspace's ``cache`` as Parquet and read
from there.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from threatscope import spark as ts_spark
from threatscope.enrich import hosts, stage
from threatscope.spark.lake import kind_frame
from threatscope.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_FLIP = np.uint64(1 << 63)
LEVELS = "sequence(0, 128, 8)"
GEO, RESERVED = 0, 1  # which range table a joined row comes from
RANGES_FORMAT = "ranges-1"  # the cached range file's layout: change it and old files are unused


def run_enrich(ws: Workspace, mmdb: Sequence[Path | str] = (),
               spark: SparkSession | None = None) -> stage.EnrichSummary:
    """:func:`threatscope.enrich.stage.run_enrich` with the per-address work on Spark.

        summary = run_enrich(ws, spark=threatscope.spark.session())
    """
    spark = spark or ts_spark.session()
    return stage._run(ws, mmdb,
                      locate=lambda ips, table, reserved: locate(spark, ws, ips, table, reserved),
                      profiles=lambda con: profiles(spark, ws, con),
                      matches=lambda con: ioc_matches(spark, con),
                      others=lambda rows: other_addresses(spark, ws, rows),
                      breadth=lambda limits: breadth(spark, ws, limits))


# classify.EXPLOIT and classify.SENSOR in Spark SQL (Java regular expressions: $1, not \1)
_EXPLOIT = "coalesce(campaign, array_min(cves), rule_id)"
_SENSOR = (r"org_id || '/' || regexp_replace(regexp_replace(regexp_replace(source_file, "
           r"'(u_ex|u_in|ex|in)[0-9]{4,8}', '$1'), '[0-9]{4}-?[0-9]{2}(-?[0-9]{2})?', ''), "
           r"'\\.[0-9]+(\\.(gz|bz2|zst))?$', '$1')")


def breadth(spark: SparkSession, ws: Workspace, limits: dict[str, int]) -> pa.Table | None:
    """``classify.breadth_sql`` over the detections in Spark SQL (one aggregation per address
    and one per exploit, not the SQL's single-detection shortcut: the same rows). Times as
    epoch microseconds ``first_us``, ``last_us``. None without detections."""
    if not ws.detections_path.exists():
        return None
    view = f"_ts_d_{uuid.uuid4().hex}"
    spark.read.parquet(str(ws.detections_path)).createOrReplaceTempView(view)
    # (the SQL's filtered list of no value is NULL for an address of several detections, as
    # the list of one detection is [])
    lists = ", ".join(
        f"CASE WHEN {empty} AND count(*) > 1 AND size(array_distinct({agg})) = 0 THEN NULL "
        f"ELSE array_sort(array_distinct({agg})) END AS {name}" for name, agg, empty in (
            ("campaigns", "collect_list(campaign)", "true"),
            ("cves", "flatten(collect_list(coalesce(cves, array())))", "false"),
            ("malware_families", "collect_list(malware_family)", "true"),
            ("attack_techniques", "flatten(collect_list(coalesce(attack_techniques, array())))",
             "false")))
    try:
        return spark.sql(f"""
            WITH d AS (
                SELECT src_ip AS ip, org_id, unix_micros(CAST(ts AS TIMESTAMP)) AS us, file_id,
                       source_line, campaign, cves, malware_family, attack_techniques,
                       {_EXPLOIT} AS exploit, {_SENSOR} AS sensor,
                       campaign IS NOT NULL OR size(coalesce(cves, array())) > 0 AS f
                FROM {view} WHERE src_ip IS NOT NULL AND src_ip <> ''),
            e AS (
                SELECT exploit, bool_or(f) AND count(DISTINCT org_id) >= {limits['campaign_orgs']}
                                AND count(DISTINCT ip) >= {limits['campaign_sources']} AS wide
                FROM d GROUP BY exploit)
            SELECT /*+ BROADCAST(e) */ d.ip, min(us) AS first_us, max(us) AS last_us,
                   count(DISTINCT named_struct('f', file_id, 'l', source_line)) AS detections,
                   CAST(count(DISTINCT org_id) AS INT) AS orgs_hit,
                   CAST(count(DISTINCT sensor) AS INT) AS sensors_hit,
                   CAST(count(DISTINCT d.exploit) AS INT) AS exploits, {lists},
                   coalesce(bool_or(e.wide), false) AS widespread
            FROM d LEFT JOIN e ON e.exploit = d.exploit
            GROUP BY d.ip""").toArrow()
    finally:
        spark.catalog.dropTempView(view)


def other_addresses(spark: SparkSession, ws: Workspace, breadth: pa.Table) -> pa.Table:
    """The distinct source addresses of the lake's http and alert events that ``breadth``
    (the attacking addresses, column ip) does not hold: a scan of every event, in Spark."""
    events = [kind_frame(spark, ws, kind).selectExpr("source_ip AS ip")
              for kind in ("http", "alert") if ws.has_data(kind)]
    if not events:
        return pa.table({"ip": pa.array([], pa.string())})
    seen = events[0] if len(events) == 1 else events[0].unionAll(events[1])
    seen = seen.where("ip IS NOT NULL AND ip <> ''").distinct()
    if breadth.num_rows:
        from pyspark.sql import functions as F  # noqa: N812 (pyspark's own spelling)

        attackers = spark.createDataFrame(breadth.select(["ip"]).cast(
            pa.schema([("ip", pa.string())])))
        seen = seen.join(F.broadcast(attackers), "ip", "left_anti")
    return seen.toArrow().cast(pa.schema([("ip", pa.string())]))


def locate(spark: SparkSession, ws: Workspace, ips: pa.Array, table: pa.Table,
           reserved: pa.Table) -> tuple[pa.Table, pa.Array, pa.Array]:
    """For each address of ``ips`` (in order): ``(table of hi, lo: its number's UBIGINT halves,
    NULL when it is no address; whether a reserved range holds it; the row of ``table``
    holding it, NULL if none)``, as ``stage._placed`` takes them."""
    n = len(ips)
    if n == 0:
        empty = pa.array([], pa.uint64())
        return pa.table({"hi": empty, "lo": empty}), pa.array([], pa.bool_()), \
            pa.array([], pa.int32())
    addresses = spark.createDataFrame(pa.table({"pos": pa.array(range(n), pa.int64()),
                                                "ip": ips.cast(pa.string())}))
    numbers = addresses.mapInArrow(_numbers, "pos BIGINT, hi BIGINT, lo BIGINT")
    # views of this call only: another run in the same session has its own
    numbers_view, ranges_view = (f"_ts_{name}_{uuid.uuid4().hex}" for name in ("n", "r"))
    numbers.createOrReplaceTempView(numbers_view)
    _ranges(spark, ws, table, reserved).createOrReplaceTempView(ranges_view)
    # every address probes its 17 buckets (one pass over ``numbers``: no match for one that is
    # no address), the ranges side broadcast; at most one range of each table holds it
    sql = f"""
        SELECT /*+ BROADCAST(r) */ k.pos, max(k.hi) AS hi, max(k.lo) AS lo,
               max(CASE WHEN r.src = {GEO} THEN r.rid END) AS rid,
               coalesce(bool_or(r.src = {RESERVED}), false) AS reserved
        FROM ({_probe(numbers_view)}) k LEFT JOIN {ranges_view} r ON {_HOLDS}
        GROUP BY k.pos"""
    try:
        found = spark.sql(sql).toArrow()
    finally:
        for view in (numbers_view, ranges_view):
            spark.catalog.dropTempView(view)
    # back in the order of ``ips`` (stage numbers the places in that order)
    found = found.take(np.argsort(np.asarray(found.column("pos"), np.int64)))
    known = found.column("hi").is_valid()
    q = pa.table({"hi": _unflip(found.column("hi"), known),
                  "lo": _unflip(found.column("lo"), known)})
    return q, found.column("reserved").combine_chunks(), \
        found.column("rid").cast(pa.int32()).combine_chunks()


def _key(hi: str, lo: str) -> list[str]:
    """Spark SQL: the bucket (``khi``, ``klo``) of the number ``hi``, ``lo`` at ``level``: its
    top ``level`` bits (masking flipped halves keeps equal prefixes equal)."""
    return [f"CASE WHEN level = 0 THEN 0L WHEN level <= 64 "
            f"THEN {hi} & shiftleft(-1L, 64 - level) ELSE {hi} END AS khi",
            f"CASE WHEN level <= 64 THEN 0L "
            f"ELSE {lo} & shiftleft(-1L, 128 - level) END AS klo"]


# the join of probes ``k`` (pos, hi, lo, level, khi, klo) and ranges ``r``: same bucket, and
# the range holds the number (128-bit comparisons on the flipped halves)
_HOLDS = """r.level = k.level AND r.khi = k.khi AND r.klo = k.klo
            AND (k.hi > r.fh OR (k.hi = r.fh AND k.lo >= r.fl))
            AND (k.hi < r.lh OR (k.hi = r.lh AND k.lo <= r.ll))"""


def _probe(numbers: str) -> str:
    """Spark SQL: each row of ``numbers`` (hi, lo, ...) once per level, with its bucket."""
    return (f"SELECT *, {', '.join(_key('hi', 'lo'))} "
            f"FROM {numbers} LATERAL VIEW explode({LEVELS}) l AS level")


def _bounds(bounds: Sequence[np.ndarray], cols: dict[str, pa.Array]) -> pa.Table:
    """Ranges (uint64 halves ``first_hi, first_lo, last_hi, last_lo``) with ``cols``, as a
    table of ``cols``, fh, fl, lh, ll (flipped) and level; ``_key("fh", "fl")`` adds the
    bucket."""
    fh, fl, lh, ll = bounds
    return pa.table({**cols, "fh": _flip(fh), "fl": _flip(fl), "lh": _flip(lh),
                     "ll": _flip(ll), "level": pa.array(_level(fh, fl, lh, ll))})


def _ranges(spark: SparkSession, ws: Workspace, table: pa.Table, reserved: pa.Table
            ) -> DataFrame:
    """Both range tables as one (src, rid, fh, fl, lh, ll, level, khi, klo) DataFrame, read
    from Parquet in the workspace's cache (written once per range data): a million ranges
    sent from the driver on every run would cross the network each time, and through Spark
    Connect's gRPC channel as a local relation."""
    bounds: list[list[np.ndarray]] = [[], [], [], []]
    src, rid = [], []
    digest = hashlib.blake2b(RANGES_FORMAT.encode(), digest_size=16)
    for k, t in ((GEO, table), (RESERVED, reserved)):
        for i, c in enumerate(("first_hi", "first_lo", "last_hi", "last_lo")):
            bounds[i].append(b := np.ascontiguousarray(t.column(c), np.uint64))
            digest.update(b.tobytes())
        src.append(np.full(t.num_rows, k, np.int8))
        rid.append(np.arange(t.num_rows, dtype=np.int32))
        digest.update(b"|")
    path = ws.cache / f"ranges-{digest.hexdigest()}.parquet"
    if not path.exists():
        ws.cache.mkdir(parents=True, exist_ok=True)
        t = _bounds([np.concatenate(b) for b in bounds],
                    {"src": pa.array(np.concatenate(src)), "rid": pa.array(np.concatenate(rid))})
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        pq.write_table(t, part)
        part.replace(path)  # whole or absent: a run killed while writing leaves no half file
    return spark.read.parquet(str(path)).selectExpr("*", *_key("fh", "fl"))


def _level(fh: np.ndarray, fl: np.ndarray, lh: np.ndarray, ll: np.ndarray) -> np.ndarray:
    """The bits ``first`` and ``last`` share, rounded down to a multiple of 8 (0..128)."""
    def zero_bytes(x: np.ndarray) -> np.ndarray:  # leading zero bytes of 64-bit numbers
        used = sum(((x >> np.uint64(8 * k)) != 0).astype(np.int32) for k in range(8))
        return 8 - used

    xh, xl = fh ^ lh, fl ^ ll
    return np.where(xh != 0, 8 * zero_bytes(xh), 64 + 8 * zero_bytes(xl)).astype(np.int32)


def _flip(x: np.ndarray) -> pa.Array:
    return pa.array((x ^ _FLIP).view(np.int64))


def _unflip(col: pa.ChunkedArray, known: pa.ChunkedArray) -> pa.Array:
    x = np.asarray(col.fill_null(0), np.int64).view(np.uint64) ^ _FLIP
    return pa.array(x, pa.uint64(), mask=~np.asarray(known, bool))


def _numbers(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow: (pos, ip) -> (pos, hi, lo) with the DuckDB engine's own conversion."""
    import duckdb

    from threatscope import sqlfn

    con = duckdb.connect()
    sqlfn.install(con)
    try:
        for batch in batches:
            ips = stage._flat(batch.column(1).cast(pa.string()))
            hi, lo, known = stage._halves(con, ips)
            yield pa.RecordBatch.from_arrays([
                batch.column(0),
                pa.array((hi ^ _FLIP).view(np.int64), mask=~known),
                pa.array((lo ^ _FLIP).view(np.int64), mask=~known)],
                names=["pos", "hi", "lo"])
    finally:
        con.close()


# what hosts.profile_sql reads of a host record
RECORD_COLUMNS = ("ip", "ts", "os", "hostnames", "module", "product", "port", "transport",
                  "cloud_provider", "tags", "banner", "record_type", "source_line", "file_id",
                  "event_date")
# what a task returns of hosts.profile_sql (times as epoch microseconds: no zone on the way)
PROFILE = pa.schema([
    ("ip", pa.string()), ("ref_us", pa.int64()), ("host_record_us", pa.int64()),
    ("os", pa.string()), ("os_family", pa.string()), ("products", pa.list_(pa.string())),
    ("services", pa.list_(pa.string())), ("service_classes", pa.list_(pa.string())),
    ("ports", pa.list_(pa.int32())), ("hostnames", pa.list_(pa.string())),
    ("cloud", pa.bool_()), ("host_kind", pa.string()), ("sig", pa.string()),
])
PROFILE_DDL = (
    "ip STRING, ref_us BIGINT, host_record_us BIGINT, os STRING, os_family STRING, "
    "products ARRAY<STRING>, services ARRAY<STRING>, service_classes ARRAY<STRING>, "
    "ports ARRAY<INT>, hostnames ARRAY<STRING>, cloud BOOLEAN, host_kind STRING, sig STRING"
)


def profiles(spark: SparkSession, ws: Workspace, con) -> pa.Table | None:
    """The host profiles of the attacks of the view ``_ts_att`` on ``con`` (ip, ref_ts,
    network_type), as ``stage._describe`` takes them: the host records joined to the attacks
    by address in Spark, then ``hosts.profile_sql`` per partition (all records of an address
    in one), with ``sig`` for numbering the profiles once. None when there is nothing to
    profile (the SQL then makes no rows on the driver)."""
    if not ws.has_data("host_record"):
        return None
    att = con.sql("SELECT ip, epoch_us(ref_ts) AS ref_us, network_type FROM _ts_att "
                  "WHERE ip IS NOT NULL").to_arrow_table()
    if not att.num_rows:
        return None
    from pyspark.sql import functions as F  # noqa: N812 (pyspark's own spelling)

    attacks = (spark.createDataFrame(att).groupBy("ip")
               .agg(F.collect_list(F.struct("ref_us", "network_type")).alias("_attacks")))
    records = kind_frame(spark, ws, "host_record").select(*RECORD_COLUMNS)
    out = (records.join(attacks, "ip").repartition("ip")
           .mapInArrow(_profiles, PROFILE_DDL).toArrow())
    ts = pa.timestamp("us")
    return pa.table({
        "ip": out.column("ip"), "ref_ts": out.column("ref_us").cast(ts),
        "host_record_ts": out.column("host_record_us").cast(ts),
        **{n: out.column(n) for n in PROFILE.names[3:]},
    })


def _profiles(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow: host records with their address's attacks -> hosts.profile_sql's rows."""
    import duckdb

    from threatscope import sqlfn

    got = list(batches)
    if not got or not sum(b.num_rows for b in got):
        return
    con = duckdb.connect()
    try:
        sqlfn.install(con)
        con.register("_j", pa.Table.from_batches(got))
        con.execute("CREATE TEMP TABLE _hr AS SELECT * EXCLUDE (_attacks) FROM _j")
        con.execute("CREATE TEMP TABLE _a AS SELECT DISTINCT ip, "
                    "make_timestamp(a.ref_us) AS ref_ts, a.network_type "
                    "FROM (SELECT ip, unnest(_attacks) AS a FROM _j)")
        out = con.sql(
            "SELECT ip, epoch_us(ref_ts) AS ref_us, epoch_us(host_record_ts) AS host_record_us, "
            "os, os_family, products, services, service_classes, ports, hostnames, cloud, "
            "host_kind, CAST(sig AS VARCHAR) AS sig "
            f"FROM ({hosts.profile_sql('_a', '_hr', with_sig=True)})").to_arrow_table()
    finally:
        con.close()
    yield from out.cast(PROFILE).to_batches()


def ioc_matches(spark: SparkSession, con) -> pa.Table | None:
    """``iocs.address_matches_sql`` over the addresses of ``_ts_geo`` on ``con``, in Spark: the
    IOC lists' addresses and networks are ranges too (overlapping ones: every list that names
    an address matches), joined broadcast as the geo ranges are. Rows: ip, ioc_matches,
    ioc_families, first_us, last_us (epoch microseconds). None when no list names addresses."""
    # a network matches as the SQL's shift join does: the aligned block of its size, when
    # that size is a power of two (others never match there)
    iocs = con.execute("""
        SELECT CAST(ip_first_num AS VARCHAR), CAST(ip_last_num AS VARCHAR), ioc_type,
               feed || ':' || value, malware_family, epoch_us(first_seen), epoch_us(last_seen)
        FROM ioc WHERE ioc_type IN ('ip', 'cidr') AND ip_first_num IS NOT NULL""").fetchall()
    rows = []
    for first, last, kind, match, family, first_us, last_us in iocs:
        lo = int(first)
        size = 1 if kind == "ip" else int(last) - lo + 1 if last is not None else 0
        if size <= 0 or size & (size - 1):
            continue
        lo -= lo % size
        rows.append((lo, lo + size - 1, match, family, first_us, last_us))
    if not rows:
        return None
    mask = (1 << 64) - 1
    bounds = [np.array([r[i] >> 64 if half else r[i] & mask for r in rows], np.uint64)
              for i in (0, 1) for half in (True, False)]
    lists = spark.createDataFrame(_bounds(bounds, {
        "m": pa.array([r[2] for r in rows], pa.string()),
        "family": pa.array([r[3] for r in rows], pa.string()),
        "first_us": pa.array([r[4] for r in rows], pa.int64()),
        "last_us": pa.array([r[5] for r in rows], pa.int64())})).selectExpr("*", *_key("fh", "fl"))
    addresses = con.sql(f"""
        SELECT ip, (ip_num >> 64)::UBIGINT AS hi, (ip_num & {mask}::UHUGEINT)::UBIGINT AS lo
        FROM _ts_geo WHERE ip_num IS NOT NULL""").to_arrow_table()
    if not addresses.num_rows:
        return None
    addresses = pa.table({"ip": addresses.column("ip"),
                          "hi": _flip(np.asarray(addresses.column("hi"), np.uint64)),
                          "lo": _flip(np.asarray(addresses.column("lo"), np.uint64))})
    numbers_view, lists_view = (f"_ts_{name}_{uuid.uuid4().hex}" for name in ("a", "i"))
    spark.createDataFrame(addresses).createOrReplaceTempView(numbers_view)
    lists.createOrReplaceTempView(lists_view)
    try:  # (collect_list skips NULLs as the SQL's list_distinct does)
        return spark.sql(f"""
            SELECT /*+ BROADCAST(r) */ k.ip,
                   array_sort(array_distinct(collect_list(r.m))) AS ioc_matches,
                   -- (the SQL's filtered list of no family is NULL, not empty)
                   nullif(array_sort(array_distinct(collect_list(r.family))), array())
                       AS ioc_families,
                   min(r.first_us) AS first_us, max(r.last_us) AS last_us
            FROM ({_probe(numbers_view)}) k JOIN {lists_view} r ON {_HOLDS}
            GROUP BY k.ip""").toArrow()
    finally:
        for view in (numbers_view, lists_view):
            spark.catalog.dropTempView(view)
