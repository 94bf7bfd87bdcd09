"""Range tables: IP ranges with country and AS data, built once from a source and cached as Parquet.

A range table has one row per network, in the number space of ``threatscope.schema`` (IPv4 at
``0xFFFF00000000 + v4``, IPv6 as its 128-bit value). Parquet has no 128-bit integer (DuckDB
writes UHUGEINT as DOUBLE), so each bound is stored as two UBIGINT halves::

    first_hi, first_lo, last_hi, last_lo  UBIGINT
    country_code, country_name            VARCHAR  (NULL when the source has no country)
    asn                                   BIGINT   (NULL when unknown)
    as_org                                VARCHAR

Sources:

* ``geoip2fast`` -- the data the package ships (``geoip2fast-asn-ipv6.dat.gz``: country and AS
  organisation for IPv4 and IPv6, a pickled set of sorted lists). It becomes two tables,
  ``country`` and ``asn``. Its AS data has organisation names but no AS numbers; the enrich
  stage fills the number from its built-in list where the name is known.
* a MaxMind-format ``.mmdb`` file (GeoLite2/GeoIP2 Country, City, ASN; DB-IP; IPinfo): every
  network of the file, read once with the ``maxminddb`` reader.

Cache: ``$THREATSCOPE_CACHE`` or ``$XDG_CACHE_HOME/threatscope`` or ``~/.cache/threatscope``;
``geoip2fast-<version>-<data file size>/{country,asn}.parquet`` and ``mmdb-<sha256>.parquet``
(keyed by content, so a new file is converted again), and ``combined-<key>.arrow``, the tables
enrich uses merged into one (:func:`combined`, :func:`open_combined`). Delete the folder to
rebuild.

    for layer in geoip2fast_layers():     # [(name, parquet path), ...]
        ...
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import ipaddress
import os
import pickle
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from threatscope.errors import UserError
from threatscope.ipnum import V4_MAPPED
from threatscope.usercache import user_cache_dir

_MASK64 = (1 << 64) - 1
_V4_MAX = 0xFFFF_FFFF
GEOIP2FAST_FILE = "geoip2fast-asn-ipv6.dat.gz"

SCHEMA = pa.schema(
    [
        ("first_hi", pa.uint64()),
        ("first_lo", pa.uint64()),
        ("last_hi", pa.uint64()),
        ("last_lo", pa.uint64()),
        ("country_code", pa.string()),
        ("country_name", pa.string()),
        ("asn", pa.int64()),
        ("as_org", pa.string()),
    ]
)

def range_select(path: Path | str, rid: bool = False) -> str:
    """SQL over a range table's Parquet file with UHUGEINT bounds ``first_num``/``last_num``."""
    p = str(path).replace("'", "''")
    return (
        f"SELECT {'rid, ' if rid else ''}"
        "(first_hi::UHUGEINT << 64) | first_lo::UHUGEINT AS first_num, "
        "(last_hi::UHUGEINT << 64) | last_lo::UHUGEINT AS last_num, "
        f"country_code, country_name, asn, as_org FROM read_parquet('{p}')"
    )


def cache_dir() -> Path:
    """Where converted range tables live (created on demand)."""
    return user_cache_dir()


def _split(nums: list[int]) -> tuple[pa.Array, pa.Array]:
    return (
        pa.array([n >> 64 for n in nums], pa.uint64()),
        pa.array([n & _MASK64 for n in nums], pa.uint64()),
    )


def _table(first: list[int], last: list[int], cc, cn, asn, org) -> pa.Table:
    fh, fl = _split(first)
    lh, ll = _split(last)
    return pa.Table.from_arrays(
        [fh, fl, lh, ll, pa.array(cc, pa.string()), pa.array(cn, pa.string()),
         pa.array(asn, pa.int64()), pa.array(org, pa.string())],
        schema=SCHEMA,
    )


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


# -- geoip2fast -------------------------------------------------------------------------------
def _geoip2fast_file() -> Path:
    # found without importing the package (its import loads nothing we need here)
    spec = importlib.util.find_spec("geoip2fast")
    if spec is None or not spec.origin:
        raise UserError("the geoip2fast package is not installed")
    return Path(spec.origin).parent / GEOIP2FAST_FILE


def _flat_bounds(firsts: list[list[int]], netlens: list[list[int]]) -> tuple[list[int], list[int]]:
    """geoip2fast keeps (first address, prefix length) in chunks; IPv4 as plain 32-bit ints."""
    first, last = [], []
    for chunk_f, chunk_n in zip(firsts, netlens, strict=True):
        for f, n in zip(chunk_f, chunk_n, strict=True):
            if f <= _V4_MAX:
                first.append(V4_MAPPED + f)
                last.append(V4_MAPPED + f + (1 << (32 - n)) - 1)
            else:
                first.append(f)
                last.append(f + (1 << (128 - n)) - 1)
    return first, last


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (lists, tuples, dicts, strings, numbers): a pickle that names
    any class or function, which could run code while loading, is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: data only")


def _convert_geoip2fast(src: Path, out: Path) -> None:
    # The package's data file is a pickle of plain lists and dicts: read as data, never code
    try:
        with gzip.open(src, "rb") as f:
            version, info, _total, db = _PlainUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{src}: unreadable geoip2fast data ({e}); reinstall geoip2fast") from None
    if version not in (120, 121) or not (info.get("country") and info.get("asn")):
        raise UserError(f"{src}: unsupported geoip2fast data (version {version})")
    (_idx, _idx_asn, country_names, asn_names, first_c, first_a, id_c, id_a, len_c, len_a) = db

    first, last = _flat_bounds(first_c, len_c)
    cc, cn = [], []
    for chunk in id_c:
        for i in chunk:
            code, _, name = country_names[i].partition(":")
            # ids < 16 are private/reserved blocks and "99" is "not found": no country
            if code.isdigit():
                cc.append(None)
                cn.append(None)
            else:
                cc.append(code)
                cn.append(name)
    n = len(first)
    _write_atomic(_table(first, last, cc, cn, [None] * n, [None] * n), out / "country.parquet")

    first, last = _flat_bounds(first_a, len_a)
    org = [None if i == 0 else asn_names[i] for chunk in id_a for i in chunk]  # 0 = '<unknown>'
    keep = [i for i, o in enumerate(org) if o is not None]
    _write_atomic(
        _table([first[i] for i in keep], [last[i] for i in keep], [None] * len(keep),
               [None] * len(keep), [None] * len(keep), [org[i] for i in keep]),
        out / "asn.parquet",
    )


def geoip2fast_layers() -> list[tuple[str, Path]]:
    """``[("geoip2fast", country.parquet), ("geoip2fast", asn.parquet)]``, converting on first use."""
    src = _geoip2fast_file()
    if not src.is_file():
        raise UserError(f"geoip2fast data file missing: {src} (reinstall geoip2fast)")
    key = f"geoip2fast-{metadata.version('geoip2fast')}-{src.stat().st_size}"
    out = cache_dir() / key
    if not ((out / "country.parquet").is_file() and (out / "asn.parquet").is_file()):
        out.mkdir(parents=True, exist_ok=True)
        _convert_geoip2fast(src, out)
    return [("geoip2fast", out / "country.parquet"), ("geoip2fast", out / "asn.parquet")]


# -- MaxMind DB --------------------------------------------------------------------------------
def _get(rec: dict, *path: str):
    for p in path:
        if not isinstance(rec, dict):
            return None
        rec = rec.get(p)
    return rec


def _asn_int(v) -> int | None:
    """ASN as an int from 15169, '15169' or 'AS15169' (IPinfo writes the latter)."""
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        v = v.strip().upper().removeprefix("AS")
        return int(v) if v.isdigit() else None
    return None


def _record_fields(rec) -> tuple[str | None, str | None, int | None, str | None]:
    """(country_code, country_name, asn, as_org) from the layouts in common use."""
    if not isinstance(rec, dict):
        return None, None, None, None
    cc = (
        _get(rec, "country", "iso_code")  # GeoLite2 / GeoIP2 / DB-IP
        or _get(rec, "registered_country", "iso_code")
        or (rec.get("country") if isinstance(rec.get("country"), str) else None)  # IPinfo
        or rec.get("country_code")
    )
    names = _get(rec, "country", "names")
    cn = (
        names.get("en") if isinstance(names, dict) else None
    ) or rec.get("country_name")
    if cn is None and isinstance(_get(rec, "registered_country", "names"), dict):
        cn = _get(rec, "registered_country", "names").get("en")
    asn = _asn_int(rec.get("autonomous_system_number")) or _asn_int(rec.get("asn"))
    org = rec.get("autonomous_system_organization") or rec.get("as_name") or rec.get("as_org")
    if org is None and isinstance(rec.get("asn"), str) and rec.get("name"):
        org = rec.get("name")
    cc = cc.upper() if isinstance(cc, str) and cc else None
    return cc, (cn if isinstance(cn, str) else None), asn, (org if isinstance(org, str) else None)


def _iter_mmdb(path: Path) -> Iterator[tuple[int, int, tuple]]:
    import maxminddb

    try:
        reader = maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
        raise UserError(f"{path}: not a readable MaxMind DB file ({e})") from None
    with reader:
        for net, rec in reader:
            lo, hi = int(net.network_address), int(net.broadcast_address)
            if isinstance(net, ipaddress.IPv4Network):
                lo, hi = V4_MAPPED + lo, V4_MAPPED + hi
            yield lo, hi, _record_fields(rec)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mmdb_layer(path: Path | str) -> tuple[str, Path]:
    """``(file name, parquet path)`` for a .mmdb file, converting it on first use."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: .mmdb file not found")
    out = cache_dir() / f"mmdb-{_sha256(path)[:32]}.parquet"
    if not out.is_file():
        first: list[int] = []
        last: list[int] = []
        cols: list[list] = [[], [], [], []]
        for lo, hi, fields in _iter_mmdb(path):
            if not any(v is not None for v in fields):
                continue
            first.append(lo)
            last.append(hi)
            for c, v in zip(cols, fields, strict=True):
                c.append(v)
        order = sorted(range(len(first)), key=first.__getitem__)
        _write_atomic(
            _table([first[i] for i in order], [last[i] for i in order],
                   *([c[i] for i in order] for c in cols)),
            out,
        )
    return path.name, out


def _combine(parts: list[tuple[str, Path]]) -> Path:
    """One range table from several: split into elementary intervals, each field taken from
    the first table that has it. Lets enrich do one look-up instead of one per table.

    Stored as an uncompressed Arrow IPC file (text columns dictionary-encoded): enrich maps it
    into memory instead of decoding 1.2M rows on every run."""
    h = hashlib.sha256(b"combined-v3\n")
    for _, p in parts:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    out = cache_dir() / f"combined-{h.hexdigest()[:32]}.arrow"
    if out.is_file():
        return out
    import duckdb

    top = (1 << 128) - 1
    fields = ["country_code", "country_name", "asn", "as_org"]
    ctes = [f"l{k} AS ({range_select(p)})" for k, (_, p) in enumerate(parts)]
    bounds = " UNION ALL ".join(
        f"SELECT first_num AS x FROM l{k} UNION ALL "
        f"SELECT last_num + 1 FROM l{k} WHERE last_num < '{top}'::UHUGEINT"
        for k in range(len(parts))
    )
    picked = ", ".join(
        f"CASE WHEN iv.first_num <= r{k}.last_num THEN r{k}.{f} END AS {f}_{k}"
        for k in range(len(parts)) for f in fields
    )
    asof = " ".join(
        f"ASOF LEFT JOIN l{k} r{k} ON iv.first_num >= r{k}.first_num" for k in range(len(parts))
    )
    merged = ", ".join(
        f"coalesce({', '.join(f'{f}_{k}' for k in range(len(parts)))}) AS {f}" for f in fields
    )
    mask = "18446744073709551615::UHUGEINT"
    sql = f"""
        WITH {', '.join(ctes)},
        b AS (SELECT DISTINCT x FROM ({bounds})),
        iv AS (SELECT x AS first_num,
                      coalesce(lead(x) OVER (ORDER BY x) - 1, '{top}'::UHUGEINT) AS last_num
               FROM b),
        j AS (SELECT iv.first_num, iv.last_num, {picked} FROM iv {asof}),
        m AS (SELECT first_num, last_num, {merged} FROM j)
        SELECT (first_num >> 64)::UBIGINT AS first_hi, (first_num & {mask})::UBIGINT AS first_lo,
               (last_num >> 64)::UBIGINT AS last_hi, (last_num & {mask})::UBIGINT AS last_lo,
               {', '.join(fields)}
        FROM m WHERE {' OR '.join(f'{f} IS NOT NULL' for f in fields)}
        ORDER BY first_num
    """
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        table = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    table = pa.table({
        n: table.column(n).combine_chunks() if t != pa.string()
        else table.column(n).combine_chunks().dictionary_encode()
        for n, t in zip(table.column_names, table.schema.types, strict=True)
    })
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, out)
    return out


def open_combined(path: Path | str) -> pa.Table:
    """The table :func:`combined` wrote, memory-mapped (no copy, no decoding): columns
    ``first_hi, first_lo, last_hi, last_lo`` (UBIGINT halves of the bounds, sorted, not
    overlapping), ``country_code, country_name, asn, as_org``; the row number is the range id."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def layers(mmdb: Iterable[Path | str] = ()) -> list[tuple[str, Path]]:
    """The range tables to use: the given .mmdb files in order, else geoip2fast's data."""
    mm = [mmdb_layer(p) for p in mmdb]
    return mm or geoip2fast_layers()


def combined(mmdb: Iterable[Path | str] = ()) -> tuple[str, Path]:
    """``(geo_source label, one range table)`` merging :func:`layers` (cached)."""
    parts = layers(mmdb)
    return "+".join(dict.fromkeys(name for name, _ in parts)), _combine(parts)
