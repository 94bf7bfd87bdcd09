"""Enrich on Spark: where each address is, found by Spark tasks and a broadcast range join.

    from threatscope.enrich import run_enrich
    run_enrich(ws, engine="spark")                       # threatscope.spark.session()
    run_enrich(ws, mmdb=["GeoLite2-City.mmdb"], engine="spark", spark=s)

Per address, on the executors: its 128-bit number (``stage._halves``, the DuckDB engine's C
code, per partition with ``mapInArrow``), then the range holding it by an equi-join on a
prefix bucket with the range table broadcast:

* a range ``[first, last]`` goes to level ``b`` (a multiple of 8): the bits ``first`` and
  ``last`` share, rounded down to a byte; its bucket is ``first``'s top ``b`` bits. Ranges do
  not overlap and every range of a level-``b`` bucket crosses a level-``b+8`` boundary (else it
  would be a level further down), so a bucket holds at most 255 ranges: no nested loop;
* an address probes its bucket at each of the 17 levels (0, 8, .., 128); the join keeps the
  (at most one) range whose bounds hold it. IPv4 (``::ffff:0:0/96``) and IPv6 alike.

Numbers are two 64-bit halves, stored with the top bit flipped so that Spark's signed
comparisons order them as unsigned. The reserved networks join the same way. The addresses
come from the detections and events (DuckDB, on the driver), and the AS classification per
place, host profiles, IOC matches, classification, indicators and the atomic switch of
``enriched/CURRENT`` are the DuckDB engine's own code over the rows found here
(:func:`threatscope.enrich.stage._run`), so both engines write the same tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from threatscope import spark as ts_spark
from threatscope.enrich import hosts, stage
from threatscope.spark.lake import kind_frame
from threatscope.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_FLIP = np.uint64(1 << 63)
LEVELS = "sequence(0, 128, 8)"
GEO, RESERVED = 0, 1  # which range table a joined row comes from


def run_enrich(ws: Workspace, mmdb: Sequence[Path | str] = (),
               spark: SparkSession | None = None) -> stage.EnrichSummary:
    """:func:`threatscope.enrich.stage.run_enrich` with the address look-ups on Spark.

        summary = run_enrich(ws, spark=threatscope.spark.session())
    """
    spark = spark or ts_spark.session()
    return stage._run(ws, mmdb,
                      locate=lambda ips, table, reserved: locate(spark, ips, table, reserved),
                      profiles=lambda con: profiles(spark, ws, con))


def locate(spark: SparkSession, ips: pa.Array, table: pa.Table, reserved: pa.Table
           ) -> tuple[pa.Table, pa.Array, pa.Array]:
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
    _ranges(spark, table, reserved).createOrReplaceTempView(ranges_view)
    # every address probes its 17 buckets (one pass over ``numbers``: no match for one that is
    # no address), the ranges side broadcast; at most one range of each table holds it
    sql = f"""
        SELECT /*+ BROADCAST(r) */ k.pos, max(k.hi) AS hi, max(k.lo) AS lo,
               max(CASE WHEN r.src = {GEO} THEN r.rid END) AS rid,
               coalesce(bool_or(r.src = {RESERVED}), false) AS reserved
        FROM (SELECT pos, hi, lo, level, {', '.join(_key('hi', 'lo'))}
              FROM {numbers_view} LATERAL VIEW explode({LEVELS}) l AS level) k
        LEFT JOIN {ranges_view} r
          ON r.level = k.level AND r.khi = k.khi AND r.klo = k.klo
         AND (k.hi > r.fh OR (k.hi = r.fh AND k.lo >= r.fl))
         AND (k.hi < r.lh OR (k.hi = r.lh AND k.lo <= r.ll))
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


def _ranges(spark: SparkSession, table: pa.Table, reserved: pa.Table) -> DataFrame:
    """Both range tables as one (src, rid, fh, fl, lh, ll, level, khi, klo) DataFrame."""
    parts = []
    for src, t in ((GEO, table), (RESERVED, reserved)):
        fh, fl, lh, ll = (np.asarray(t.column(c), np.uint64)
                          for c in ("first_hi", "first_lo", "last_hi", "last_lo"))
        parts.append(pa.table({
            "src": pa.array(np.full(len(fh), src, np.int8)),
            "rid": pa.array(np.arange(len(fh), dtype=np.int32)),
            "fh": _flip(fh), "fl": _flip(fl), "lh": _flip(lh), "ll": _flip(ll),
            "level": pa.array(_level(fh, fl, lh, ll)),
        }))
    ranges = spark.createDataFrame(pa.concat_tables(parts))
    return ranges.selectExpr("*", *_key("fh", "fl"))


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
