"""Enrich every distinct source IP with country, AS and network type: one range join in DuckDB.

    summary = run_enrich(ws)                       # geoip2fast data, writes table `source`
    summary = run_enrich(ws, mmdb=["GeoLite2-Country.mmdb", "GeoLite2-ASN.mmdb"])
    lookup(["8.8.8.8", "2001:db8::1"]).to_pylist() # same join on a list, as an Arrow table
    asn_ranges([45090])                            # [(first_ip, last_ip, asn, as_org), ...]

Each range table (see ``ranges``) is joined to the distinct IPs with an ASOF join on the range
start, then checked against the range end; several tables (country + ASN, or several .mmdb files)
fill each field in order (first non-NULL wins). Private, reserved, unparseable and unlisted
addresses get NULL country/AS and network_type 'unknown'.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from threatscope import schema
from threatscope.enrich import netclass, ranges
from threatscope.ipnum import install_ip_macros, num_to_ip, reserved_ranges
from threatscope.workspace import Workspace, relations

OUTPUT_COLUMNS = [n for n, _ in schema.SOURCE if n != "ip_num"]


@dataclass
class EnrichSummary:
    sources: int = 0  # distinct IPs written to `source`
    invalid_ips: int = 0  # IP text that is not an address
    with_country: int = 0
    with_asn: int = 0  # AS organisation known
    network_types: dict[str, int] = field(default_factory=dict)
    geo_source: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _prepare(con: duckdb.DuckDBPyConnection, mmdb: Sequence[Path | str]) -> str:
    """Load the range table and the built-in AS list into temp tables; return geo_source."""
    con.execute("SET enable_progress_bar = false")
    # below this many probe rows DuckDB turns ASOF into a nested loop over all ranges: slow here
    con.execute("SET asof_loop_join_threshold = 0")
    install_ip_macros(con)
    label, path = ranges.combined(mmdb)
    # views straight over Parquet (the ASOF join sorts anyway); bounds and attributes apart so
    # that the join carries three narrow columns
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW _ts_ranges AS {ranges.range_select(path, rid=True)}"
    )
    con.execute("CREATE OR REPLACE TEMP VIEW _ts_bounds AS "
                "SELECT first_num, last_num, rid FROM _ts_ranges")
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
    return label


def _reserved_sql(col: str) -> str:
    # a handful of BETWEENs is cheaper than another join
    return "(" + " OR ".join(
        f"{col} BETWEEN '{lo}'::UHUGEINT AND '{hi}'::UHUGEINT" for lo, hi in reserved_ranges()
    ) + ")"


def _enrich_select(ips: str, geo_source: str) -> str:
    """SELECT with the SOURCE columns for every row of ``ips`` (columns ip, ip_num).

    One ASOF join (range start <= ip) checked against the range end; the AS classification
    runs once per distinct organisation, not per IP.
    """
    by_name = (
        "(SELECT as_org, min(asn) AS asn, min(network_type) AS network_type "
        "FROM _ts_asn_list GROUP BY as_org)"
    )
    by_asn = "(SELECT asn, min(network_type) AS network_type FROM _ts_asn_list GROUP BY asn)"
    label = geo_source.replace("'", "''")
    return f"""
        WITH h AS (
            SELECT i.ip, i.ip_num,
                   CASE WHEN i.ip_num <= b.last_num AND NOT i.reserved THEN b.rid END AS rid
            FROM (SELECT ip, ip_num, {_reserved_sql('ip_num')} AS reserved FROM {ips}) i
            ASOF LEFT JOIN _ts_bounds b ON i.ip_num >= b.first_num),
        m AS (SELECT h.ip, h.ip_num, r.country_code, r.country_name, r.asn, r.as_org
              FROM h LEFT JOIN _ts_ranges r ON r.rid = h.rid),
        o AS (SELECT DISTINCT asn, as_org FROM m),
        c AS (SELECT o.asn, o.as_org, coalesce(o.asn, bn.asn) AS asn_filled,
                     {netclass.classify_sql('ba.network_type', 'bn.network_type', 'o.as_org')}
                         AS network_type
              FROM o LEFT JOIN {by_name} bn ON bn.as_org = o.as_org
                     LEFT JOIN {by_asn} ba ON ba.asn = coalesce(o.asn, bn.asn))
        SELECT m.ip, m.ip_num, m.country_code, m.country_name, c.asn_filled AS asn, m.as_org,
               c.network_type, '{label}' AS geo_source
        FROM m JOIN c ON c.asn IS NOT DISTINCT FROM m.asn
                     AND c.as_org IS NOT DISTINCT FROM m.as_org
    """


def _resolve_mmdb(ws: Workspace, mmdb: Sequence[Path | str]) -> list[Path]:
    paths = [Path(p) for p in mmdb] or ws.mmdb_files
    # paths from config.toml may be relative to the workspace
    return [p if p.is_absolute() or p.exists() else ws.root / p for p in paths]


def run_enrich(ws: Workspace, mmdb: Sequence[Path | str] = ()) -> EnrichSummary:
    """Write catalog table ``source``: one row per distinct source IP of detections and events.

    ``mmdb``: MaxMind-format files to use instead of geoip2fast's data (default: the
    workspace's ``[enrich] mmdb`` list). The table is replaced on every run.
    """
    t0 = time.perf_counter()
    with ws.connect() as con:
        geo_source = _prepare(con, _resolve_mmdb(ws, mmdb))
        parts = ["SELECT source_ip AS ip FROM http", "SELECT source_ip AS ip FROM alert"]
        if "detection" in relations(con):
            parts.insert(0, "SELECT src_ip AS ip FROM detection")
        # The number comes from the text, once per address: reading the stored DECIMAL(38,0)
        # column of every event back costs more than computing it again.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _ts_ips AS
            SELECT ip, ts_ip_num(ip) AS ip_num
            FROM (SELECT DISTINCT ip FROM ({' UNION ALL '.join(parts)})
                  WHERE ip IS NOT NULL AND ip <> '')
        """)
        cols = ", ".join(f'"{n}"' for n, _ in schema.SOURCE)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DROP TABLE IF EXISTS source")
            con.execute(f"CREATE TABLE source ({schema.ddl_columns(schema.SOURCE)})")
            con.execute(
                f"INSERT INTO source ({cols}) SELECT {cols} FROM "
                f"({_enrich_select('_ts_ips', geo_source)}) ORDER BY ip_num, ip"
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        (total, invalid, with_cc, with_as), = con.execute(
            "SELECT count(*), count(*) FILTER (ip_num IS NULL), count(country_code), "
            "count(as_org) FROM source"
        ).fetchall()
        types = dict(con.execute(
            "SELECT network_type, count(*) FROM source GROUP BY 1 ORDER BY 1"
        ).fetchall())
    return EnrichSummary(
        sources=total, invalid_ips=invalid, with_country=with_cc, with_asn=with_as,
        network_types=types, geo_source=geo_source,
        seconds=round(time.perf_counter() - t0, 3),
    )


def lookup(ips: Iterable[str | None], mmdb: Sequence[Path | str] = ()) -> pa.Table:
    """Enrich a list of IP strings; one output row per input, in order.

    Columns: ip, country_code, country_name, asn, as_org, network_type, geo_source.

    >>> lookup(["8.8.8.8"]).to_pylist()[0]["country_code"]
    'US'
    """
    ips = list(ips)
    con = duckdb.connect()
    try:
        geo_source = _prepare(con, mmdb)
        con.register("_ts_in", pa.table({"ip": pa.array(ips, pa.string()),
                                          "pos": pa.array(range(len(ips)), pa.int64())}))
        con.execute("CREATE TEMP TABLE _ts_ips AS SELECT DISTINCT ip, ts_ip_num(ip) AS ip_num "
                    "FROM _ts_in WHERE ip IS NOT NULL")
        out = ", ".join(f"e.{c}" if c != "ip" else "t.ip" for c in OUTPUT_COLUMNS)
        rel = con.sql(
            f"SELECT {out} FROM _ts_in t LEFT JOIN ({_enrich_select('_ts_ips', geo_source)})"
            " e ON e.ip = t.ip ORDER BY t.pos"
        )
        table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
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
