"""IOC lists (intel): abuse.ch Feodo Tracker (CSV, JSON), URLhaus (CSV) and plain lists of IPs,
CIDRs, domains and URLs, into the ``ioc`` kind (schema.IOC), one row per indicator.

    ingest_paths(ws, ["ipblocklist.csv", "ipblocklist.json", "csv.txt", "blocklist.txt"],
                 only=["ioc-feodo-csv", "ioc-feodo-json", "ioc-urlhaus-csv", "ioc-list"])
    # -> the `ioc` view: SELECT ioc_type, value, malware_family FROM ioc WHERE feed = 'list'

IOC lists are no organisation's telemetry (``intel = True``): the rows belong to no
organisation and none is registered for them.

Every indicator goes through one classifier (``indicator_columns``), evaluated once per
distinct text: an IPv4 address, a domain or a URL is read in DuckDB SQL; only texts with a
``:`` or ``/`` that are not URLs (IPv6 addresses, CIDR networks) are read with Python's
``ipaddress``, per distinct value (such lists are small). What it gives:

    ioc_type      'ip' | 'cidr' | 'domain' | 'url'
    value         ip: canonical text (IPv6 compressed, lower case; IPv4-mapped IPv6 as plain
                  IPv4); cidr: network address / prefix (``10.1.2.3/8`` -> ``10.0.0.0/8``);
                  domain: lower case, trailing dot removed; url: the URL as listed (refanged,
                  scheme lower-cased; URLhaus: exactly as listed)
    ip_first_num  ip, cidr: first and last address of the range in the schema's number space
    ip_last_num   (ipnum: IPv4 at ::ffff:0:0/96). Stored as DECIMAL(38,0): NULL where the
                  number has 39 digits (IPv6 from 4b3b:4ca8:: up, e.g. fc00::/7, fe80::/10)
    url_domain    url: its host, lower case, without port, user or IPv6 brackets; domain: itself

Defanged indicators are refanged first: ``hxxp://``/``hxxps://`` (any case), ``[.]``, ``(.)``,
``{.}``, ``[dot]``, ``[:]`` and ``[://]``.

Malware family names (Feodo's ``malware``, URLhaus tags) become lower-case keys (spaces as
``-``) through the alias table ``data/ioc_families.csv`` (``heodo`` -> ``emotet``, ``qbot`` ->
``qakbot``...): Feodo's name is kept (aliased) whatever it is; a URLhaus tag names a family
only when the table knows it.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from threatscope.ingest import reader
from threatscope.ingest.arrowfn import encode
from threatscope.ingest.formats import Format, ParseResult, Part, register
from threatscope.ingest.formats._json import struct_sql
from threatscope.ipnum import V4_MAPPED
from threatscope.sqlfn import sql_str

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
V4_RE = rf"({_OCTET}\.){{3}}{_OCTET}"
# a host name with at least one dot and a TLD of letters (or an IDN's xn-- form)
DOMAIN_RE = r"([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})"
URL_RE = r"(?i)(https?|ftp)://[^\s/?#]+([/?#]\S*)?"
MAX_DOMAIN = 253
MAX_URL = 8192  # a longer "URL" is no indicator
_DEC_MAX = 10**38 - 1  # DECIMAL(38,0), the lake's storage of UHUGEINT
NOT_INDICATOR = "not an IP, CIDR, domain or URL"

JSON_MAX_BYTES = 256 << 20  # a Feodo JSON document is loaded whole: a bigger one is refused
JSON_RECORDS_PER_BATCH = 50_000


def _load_families() -> dict[str, str]:
    path = Path(__file__).with_name("data") / "ioc_families.csv"
    with open(path, encoding="utf-8") as f:
        rows = csv.reader(x for x in f if x.strip() and not x.startswith("#"))
        next(rows)  # the header
        return {name.strip(): family.strip() for name, family in rows}


FAMILIES: dict[str, str] = _load_families()
_FAMILY_MAP = "MAP {" + ", ".join(f"{sql_str(k)}: {sql_str(v)}" for k, v in FAMILIES.items()) + "}"


def family_key(name: str | None) -> str | None:
    """The family key of a malware name as a feed writes it (Python reference of the SQL)."""
    if name is None or not name.strip() or name.strip().lower() in ("none", "null", "n/a"):
        return None
    k = re.sub(r"\s+", "-", name.strip().lower())
    return FAMILIES.get(k, k)


def trim_sql(x: str) -> str:
    """SQL: ``x`` without leading and trailing whitespace (tabs too, unlike trim)."""
    return f"regexp_replace({x}, '^\\s+|\\s+$', '', 'g')"


def _key_sql(x: str) -> str:
    return f"regexp_replace(lower({trim_sql(x)}), '\\s+', '-', 'g')"


def family_sql(x: str) -> str:
    """SQL: the family key of the malware name ``x`` (any name; aliases mapped)."""
    return (f"[CASE WHEN k = '' OR k IN ('none', 'null', 'n/a') THEN NULL "
            f"ELSE coalesce({_FAMILY_MAP}[k], k) END FOR k IN [{_key_sql(x)}]][1]")


def known_family_sql(tags: str) -> str:
    """SQL: the family of the first of the list ``tags`` the alias table knows, else NULL."""
    return (f"{_FAMILY_MAP}[list_filter(list_transform({tags}, lambda t: {_key_sql('t')}), "
            f"lambda t: {_FAMILY_MAP}[t] IS NOT NULL)[1]]")


def refang_sql(x: str) -> str:
    """SQL: ``x`` with the usual defanging undone (hxxp://, [.], (.), {.}, [dot], [:], [://])."""
    x = f"regexp_replace({x}, '\\[\\.\\]|\\(\\.\\)|\\{{\\.\\}}|\\[dot\\]', '.', 'gi')"
    x = f"regexp_replace({x}, '\\[://\\]', '://', 'g')"
    x = f"regexp_replace({x}, '\\[:\\]', ':', 'g')"
    return f"regexp_replace({x}, '^hxxp(s?)://', 'http\\1://', 'i')"


def ts_sql(x: str) -> str:
    """SQL: a feed's time text ('2024-05-01 12:34:56', ISO with offset, or a date) -> UTC
    TIMESTAMP; NULL when empty or unreadable."""
    return f"coalesce(ts_iso_ts({x}), try_cast({x} AS TIMESTAMP))"


def csv_fields_sql(line: str) -> str:
    """SQL: the fields of a CSV line (quoted fields unquoted, "" as "), or NULL when the line
    is not well-formed CSV."""
    m = f"regexp_extract_all(',' || {line}, ',(\"(?:[^\"]|\"\")*\"|[^,\"]*)', 0)"
    return (f"(SELECT CASE WHEN array_to_string(m, '') = ',' || {line} THEN list_transform(m, "
            f"lambda x: CASE WHEN x[2:2] = '\"' THEN replace(x[3:-2], '\"\"', '\"') "
            f"ELSE trim(x[2:]) END) END FROM (SELECT {m} AS m))")


def _blank_sql(x: str) -> str:
    """SQL: NULL for an empty or placeholder value."""
    t = trim_sql(x)
    return f"CASE WHEN {t} IN ('', 'None', 'none', 'null', 'NULL', '-') THEN NULL ELSE {t} END"


# -- the indicator classifier -----------------------------------------------------------------
def _dec(n: int) -> Decimal | None:
    return Decimal(n) if 0 <= n <= _DEC_MAX else None


def _num(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return V4_MAPPED + int(a) if a.version == 4 else int(a)


def classify_ip(text: str) -> tuple[str, str, Decimal | None, Decimal | None] | None:
    """(ioc_type, value, first, last) of an IP address or CIDR network text, or None.

        classify_ip("::ffff:1.2.3.4")   # ('ip', '1.2.3.4', ...)
        classify_ip("10.1.2.3/8")       # ('cidr', '10.0.0.0/8', first, last)
    """
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and \
                    net.network_address.ipv4_mapped is not None:
                net = ipaddress.IPv4Network(
                    (int(net.network_address) - V4_MAPPED, net.prefixlen - 96))
            first, last = _num(net.network_address), _num(net.broadcast_address)
            return "cidr", str(net), _dec(first), _dec(last)
        a = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    n = _dec(_num(a))
    return "ip", str(a), n, n


_COLS = ("ioc_type", "value", "ip_first_num", "ip_last_num", "url_domain")


def indicator_columns(con, arr: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array]:
    """The indicator columns (``_COLS``) of each text of ``arr`` (trimmed and refanged;
    NULL columns where it is no indicator, ``ioc_type`` NULL), aligned with ``arr``."""
    enc = encode(arr)
    values = enc.dictionary.cast(pa.string())
    # IPv6 addresses and CIDR networks: Python's ipaddress, per distinct text
    odd = pc.and_(pc.match_substring_regex(values, "[:/]"),
                  pc.invert(pc.match_substring_regex(values, "^[A-Za-z][A-Za-z0-9+.-]*://")))
    py_in = values.filter(pc.fill_null(odd, False)).to_pylist()
    py_rows = [(v, r) for v in py_in if (r := classify_ip(v)) is not None]
    py = pa.table({
        "pv": pa.array([v for v, _ in py_rows], pa.string()),
        "t": pa.array([r[0] for _, r in py_rows], pa.string()),
        "value": pa.array([r[1] for _, r in py_rows], pa.string()),
        "lo": pa.array([r[2] for _, r in py_rows], pa.decimal128(38, 0)),
        "hi": pa.array([r[3] for _, r in py_rows], pa.decimal128(38, 0)),
    })
    con.register("_ioc_values", pa.table({"i": pa.array(range(len(values)), pa.int64()),
                                          "v": values}))
    con.register("_ioc_py", py)
    try:
        host = (r"regexp_extract(v, '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@\s]*@)?"
                r"(\[[0-9A-Fa-f:.]+\]|[^/?#:\s\[\]]+)', 1)")
        res = con.sql(f"""
            SELECT CASE WHEN t IS NOT NULL THEN t WHEN is_v4 THEN 'ip'
                        WHEN is_url THEN 'url' WHEN is_domain THEN 'domain' END AS ioc_type,
                   CASE WHEN t IS NOT NULL THEN value WHEN is_v4 THEN v
                        WHEN is_url THEN lower(scheme) || v[length(scheme) + 1:]
                        WHEN is_domain THEN dom END AS value,
                   CASE WHEN t IS NOT NULL THEN lo
                        WHEN is_v4 THEN TRY_CAST(ts_ip4_num(v) AS DECIMAL(38,0)) END AS lo,
                   CASE WHEN t IS NOT NULL THEN hi
                        WHEN is_v4 THEN TRY_CAST(ts_ip4_num(v) AS DECIMAL(38,0)) END AS hi,
                   CASE WHEN t IS NOT NULL THEN NULL
                        WHEN is_url THEN lower(trim(url_host, '[]'))
                        WHEN is_domain THEN dom END AS url_domain
            FROM (SELECT i, v, p.t, p.value, p.lo, p.hi,
                         p.t IS NULL AND regexp_full_match(v, '{V4_RE}') AS is_v4,
                         p.t IS NULL AND length(v) <= {MAX_URL}
                             AND regexp_full_match(v, '{URL_RE}')
                             AND {host} <> '' AS is_url,
                         {host} AS url_host,
                         regexp_extract(v, '^[A-Za-z]+') AS scheme,
                         rtrim(lower(v), '.') AS dom,
                         p.t IS NULL AND length(dom) <= {MAX_DOMAIN}
                             AND regexp_full_match(dom, '{DOMAIN_RE}') AS is_domain
                  FROM _ioc_values d LEFT JOIN _ioc_py p ON d.v = p.pv)
            ORDER BY i""").to_arrow_table()
    finally:
        con.unregister("_ioc_values")
        con.unregister("_ioc_py")
    out = {}
    for name, col in zip(_COLS, res.columns, strict=True):
        out[name] = pc.take(col.combine_chunks(), enc.indices)
    return out


def _with_indicators(con, table: pa.Table, cand: str) -> pa.Table:
    """``table`` with the indicator columns of its column ``cand`` appended."""
    for name, col in indicator_columns(con, table.column(cand)).items():
        table = table.append_column(name, col)
    return table


def _staged(con, sql: str, cand: str) -> pa.Table:
    """Run the first stage of a parse (``sql`` over ``_batch``, giving ``cand``, the indicator
    text) and classify its indicators."""
    return _with_indicators(con, con.sql(sql).to_arrow_table(), cand)


def _comment_sql(line: str) -> str:
    """SQL: whether a line is a comment: blank, or starting with '#' (or a BOM then '#')."""
    return f"(regexp_matches({line}, '^\\x{{FEFF}}?\\s*(#|$)'))"


_OUT = """ioc_type, value, ip_first_num, ip_last_num, url_domain"""


# -- Feodo Tracker CSV -------------------------------------------------------------------------
def _stage_csv(con, header: str, fields: tuple[int, ...], candidate: str) -> int:
    """Split the batch's CSV lines into fields ``f`` (``nf`` of them) and register them as
    ``_ioc_s`` with the classified ``candidate`` indicator (of a line with one of ``fields``
    field counts); comment lines and the header (regex ``header``, lower-cased) are marked
    ``comment``. Returns how many there are."""
    stage = f"""
        SELECT source_line, raw, comment, f, len(f) AS nf,
               CASE WHEN NOT comment AND len(f) IN {fields} THEN {candidate} END AS cand
        FROM (SELECT n AS source_line, line AS raw,
                     {_comment_sql('line')} OR regexp_matches(lower(line), {sql_str(header)})
                         AS comment,
                     {csv_fields_sql('line')} AS f
              FROM _batch)"""
    t = _staged(con, stage, "cand")
    con.register("_ioc_s", t)
    return pc.sum(t.column("comment")).as_py() or 0


@register
class FeodoCsv(Format):
    """abuse.ch Feodo Tracker botnet C2 IP blocklist, CSV (ipblocklist.csv and its variants).

    Two layouts, told apart per line by the number of fields (quoted or not)::

        first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware     (6 fields)
        Firstseen,DstIP,DstPort,LastOnline,Malware                       (5 fields, older)

    Source fields -> columns: first_seen_utc / Firstseen -> first_seen and ts; dst_ip / DstIP
    -> ioc_type 'ip', value (canonical), ip_first_num = ip_last_num (its number); dst_port ->
    port; c2_status -> status; last_online -> last_seen (a date: midnight); malware -> malware_family
    (lower-case key, aliases mapped: Heodo -> emotet). Constant: threat 'botnet_cc', feed
    'feodotracker'. ``#`` lines (banner, the header) and an uncommented header line are
    comment lines. Quarantined: a line that is not CSV of 5 or 6 fields, a dst_ip that is not
    an IP address, a first_seen that is present but unreadable.
    """

    name = "ioc-feodo-csv"
    intel = True

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        text = "\n".join(lines[:20]).lower()
        if "feodo tracker" in text or re.search(r'first_seen_utc"?,\s*"?dst_ip', text) or \
                re.search(r"firstseen,\s*dstip,\s*dstport", text):
            return 1.0
        data = [x for x in lines if not x.lstrip().startswith("#")]
        row = re.compile(r'"?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"?,"?[0-9a-fA-F.:]+"?,"?\d+"?,')
        hits = sum(bool(row.match(x)) and x.count(",") in (4, 5) for x in data)
        return 0.9 * hits / len(data) if data else 0.0

    def parse(self, con, batch, prepared) -> ParseResult:
        comments = _stage_csv(con, r'^\s*"?(first_?seen(_utc)?)"?\s*,\s*"?dst_?ip', (5, 6),
                              "trim(f[2])")
        first = "f[1]"
        status = "CASE WHEN nf = 6 THEN f[4] END"
        last = "CASE WHEN nf = 6 THEN f[5] ELSE f[4] END"
        malware = "f[nf]"
        sql = f"""
            SELECT source_line, raw, ts,
                   CASE WHEN nf IS NULL OR nf NOT IN (5, 6)
                        THEN 'not a Feodo Tracker CSV line (expected 5 or 6 fields)'
                        WHEN ioc_type IS DISTINCT FROM 'ip' THEN 'dst_ip is not an IP address'
                        WHEN {_blank_sql(first)} IS NOT NULL AND ts IS NULL
                        THEN 'invalid first_seen' END AS _reason,
                   {_OUT}, try_cast(f[3] AS INTEGER) AS port,
                   {family_sql(malware)} AS malware_family, 'botnet_cc' AS threat,
                   lower({_blank_sql(status)}) AS status, 'feodotracker' AS feed,
                   ts AS first_seen, {ts_sql(_blank_sql(last))} AS last_seen
            FROM (SELECT *, {ts_sql(_blank_sql(first))} AS ts FROM _ioc_s WHERE NOT comment)"""
        return ParseResult([Part("ioc", sql)], comments=comments, views=["_ioc_s"])


# -- Feodo Tracker JSON ------------------------------------------------------------------------
_FEODO_SHAPE = {
    "ip_address": "VARCHAR", "port": "VARCHAR", "status": "VARCHAR", "first_seen": "VARCHAR",
    "last_online": "VARCHAR", "malware": "VARCHAR",
}
_JSON_HEAD = re.compile(r'^\ufeff?\s*\[\s*\{\s*"[a-z_]+"\s*:')


@register
class FeodoJson(Format):
    """abuse.ch Feodo Tracker botnet C2 IP blocklist, JSON (ipblocklist.json): one JSON array
    (often pretty-printed over many lines) of objects, read as records: record n is the
    array's n-th element, ``raw`` the element as compact JSON.

    Source fields -> columns: ip_address -> ioc_type 'ip', value (canonical), ip_first_num =
    ip_last_num; port -> port; status -> status; first_seen -> first_seen and ts; last_online
    -> last_seen; malware -> malware_family (lower-case key, aliases mapped). hostname,
    as_number, as_name, country are kept in ``raw`` only. Constant: threat 'botnet_cc', feed
    'feodotracker'.

    Quarantined: a document that is not valid JSON, or not an array, or bigger than
    ``JSON_MAX_BYTES`` (one record); an element that is not an object; an ip_address that is
    not an IP address; a first_seen that is present but unreadable. Recognised by content
    (gzip etc. too): an array whose first object names ``ip_address`` and ``malware`` or
    ``first_seen``.
    """

    name = "ioc-feodo-json"
    intel = True
    magic = b"["  # (sniff_binary reads the head itself: whitespace and compression first)

    @classmethod
    def sniff_binary(cls, path: str, head: bytes) -> bool:
        h = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not (h.startswith(b"[") or (not h and head) or reader.compression_of(head)):
            return False
        try:
            with reader.open_source(path) as src:
                text = src.read_block(64 << 10).decode("utf-8", "replace")
        except OSError:
            return False
        return bool(_JSON_HEAD.match(text)) and '"ip_address"' in text and (
            '"malware"' in text or '"first_seen"' in text)

    def read_batches(self, path: str) -> Iterator[reader.Batch]:
        with reader.open_source(path) as src:
            data = src.read_block(JSON_MAX_BYTES + 1)
            error = src.error
        if len(data) > JSON_MAX_BYTES:
            yield _bad_document(f"JSON document too large to load (over {JSON_MAX_BYTES} "
                                "bytes)", data)
            return
        try:
            if error:
                raise ValueError(error)
            doc = json.loads(data.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as e:
            yield _bad_document(f"not valid JSON: {str(e)[:200]}", data)
            return
        except RecursionError:  # (json's limit: deep nesting failed the whole ingest)
            yield _bad_document("not valid JSON: nested too deeply", data)
            return
        if not isinstance(doc, list):
            yield _bad_document("not a JSON array of Feodo Tracker entries", data)
            return
        for start in range(0, len(doc), JSON_RECORDS_PER_BATCH):
            nums: list[int] = []
            lines: list[str] = []
            bad: list[tuple[int, str, str]] = []
            part = doc[start:start + JSON_RECORDS_PER_BATCH]
            for i, elem in enumerate(part, start + 1):
                try:
                    text = json.dumps(elem, separators=(",", ":"), ensure_ascii=False)
                except RecursionError:  # (a stricter limit than json.loads' would fail the file)
                    bad.append((i, "array element nested too deeply", ""))
                    continue
                if isinstance(elem, dict):
                    nums.append(i)
                    lines.append(text)
                else:
                    bad.append((i, "array element is not a JSON object",
                                text[:reader.RAW_KEEP]))
            yield reader.Batch(table=pa.table({"n": pa.array(nums, pa.int64()),
                                               "line": pa.array(lines, pa.string())}),
                               lines=len(part), bad=bad, nbytes=sum(map(len, lines)))

    def parse(self, con, batch, prepared) -> ParseResult:
        stage = f"""SELECT n AS source_line, line AS raw, j, trim(j.ip_address) AS cand
                    FROM ({struct_sql('_batch', _FEODO_SHAPE)})"""
        con.register("_ioc_s", _staged(con, stage, "cand"))
        sql = f"""
            SELECT source_line, raw, ts,
                   CASE WHEN j IS NULL THEN 'not a JSON object'
                        WHEN ioc_type IS DISTINCT FROM 'ip'
                        THEN 'ip_address is not an IP address'
                        WHEN {_blank_sql('j.first_seen')} IS NOT NULL AND ts IS NULL
                        THEN 'invalid first_seen' END AS _reason,
                   {_OUT}, try_cast(j.port AS INTEGER) AS port,
                   {family_sql('j.malware')} AS malware_family, 'botnet_cc' AS threat,
                   lower({_blank_sql('j.status')}) AS status, 'feodotracker' AS feed,
                   ts AS first_seen, {ts_sql(_blank_sql('j.last_online'))} AS last_seen
            FROM (SELECT *, {ts_sql(_blank_sql('j.first_seen'))} AS ts FROM _ioc_s)"""
        return ParseResult([Part("ioc", sql)], views=["_ioc_s"])


def _bad_document(reason: str, data: bytes) -> reader.Batch:
    raw = data[:reader.RAW_KEEP].decode("utf-8", "replace")
    return reader.Batch(table=pa.table({"n": pa.array([], pa.int64()),
                                        "line": pa.array([], pa.string())}),
                        lines=1, bad=[(1, reason, raw)], nbytes=len(data))


# -- URLhaus CSV -------------------------------------------------------------------------------
@register
class UrlhausCsv(Format):
    """abuse.ch URLhaus database dump, CSV (csv.txt, csv_online.txt, csv_recent.txt).

    Layouts, told apart per line by the number of fields::

        id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter   (9)
        id,dateadded,url,url_status,threat,tags,urlhaus_link,reporter               (8, older)

    Source fields -> columns: dateadded -> first_seen and ts; url -> ioc_type 'url', value (as
    listed, spaces allowed), url_domain (its host, lower case, no port or brackets);
    url_status -> status;
    last_online -> last_seen; threat -> threat; tags (comma-separated; 'None' is none) ->
    tags, and the first tag the family table knows -> malware_family (aliases mapped);
    urlhaus_link -> reference. id and reporter are kept in ``raw`` only. Constant: feed
    'urlhaus'. ``#`` lines and an uncommented header are comment lines. Quarantined: a line
    that is not CSV of 8 or 9 fields, a url that is not a URL, a dateadded present but
    unreadable.
    """

    name = "ioc-urlhaus-csv"
    intel = True

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        text = "\n".join(lines[:20]).lower()
        if "urlhaus" in text and re.search(r"id,\s*dateadded,\s*url", text):
            return 1.0
        data = [x for x in lines if not x.lstrip().startswith("#")]
        row = re.compile(r'"\d+","\d{4}-\d\d-\d\d \d\d:\d\d:\d\d","(?i:https?|ftp)://')
        hits = sum(bool(row.match(x)) for x in data)
        return 0.9 * hits / len(data) if data else 0.0

    def parse(self, con, batch, prepared) -> ParseResult:
        comments = _stage_csv(con, r'^\s*"?id"?\s*,\s*"?dateadded"?\s*,', (8, 9),
                              "replace(trim(f[3]), ' ', '%20')")
        off = "(nf - 8)"  # 1 when last_online is there
        tags = (f"list_filter(list_transform(string_split(coalesce({_blank_sql(f'f[6 + {off}]')}, "
                f"''), ','), lambda x: trim(x)), lambda x: x <> '')")
        sql = f"""
            SELECT source_line, raw, ts,
                   CASE WHEN nf IS NULL OR nf NOT IN (8, 9)
                        THEN 'not a URLhaus CSV line (expected 8 or 9 fields)'
                        WHEN ioc_type IS DISTINCT FROM 'url' THEN 'url is not a URL'
                        WHEN {_blank_sql('f[2]')} IS NOT NULL AND ts IS NULL
                        THEN 'invalid dateadded' END AS _reason,
                   ioc_type, trim(f[3]) AS value, url_domain,
                   {known_family_sql('tags')} AS malware_family,
                   {_blank_sql(f'f[5 + {off}]')} AS threat, lower({_blank_sql('f[4]')}) AS status,
                   'urlhaus' AS feed, ts AS first_seen,
                   CASE WHEN nf = 9 THEN {ts_sql(_blank_sql('f[5]'))} END AS last_seen,
                   nullif(tags, []) AS tags, {_blank_sql(f'f[7 + {off}]')} AS reference
            FROM (SELECT *, {ts_sql(_blank_sql('f[2]'))} AS ts,
                         CASE WHEN nf IN (8, 9) THEN {tags} END AS tags
                  FROM _ioc_s WHERE NOT comment)"""
        return ParseResult([Part("ioc", sql)], comments=comments, views=["_ioc_s"])


# -- plain lists -------------------------------------------------------------------------------
_DOMAIN = re.compile(DOMAIN_RE)
_URL = re.compile(r"(https?|ftp)://[^\s/?#]+([/?#]\S*)?", re.I)


def is_indicator(text: str) -> bool:
    """Whether a (cleaned, refanged) text is an indicator (Python reference of the SQL)."""
    if _URL.fullmatch(text):
        return len(text) <= MAX_URL
    if ":" in text or "/" in text or re.fullmatch(r"[0-9.]+", text):
        return classify_ip(text) is not None
    d = text.lower().rstrip(".")
    return len(d) <= MAX_DOMAIN and bool(_DOMAIN.fullmatch(d))


def _sniff_clean(line: str) -> str | None:
    """A list line as the parser reads it (trailing comment dropped, refanged), or None for a
    comment line."""
    s = line.lstrip("\ufeff").strip()
    if not s or s[0] in "#;":
        return None
    s = re.split(r"\s[#;]", s, maxsplit=1)[0].strip()
    s = re.sub(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]", ".", s, flags=re.I)
    s = s.replace("[://]", "://").replace("[:]", ":")
    return re.sub(r"^hxxp(s?)://", r"http\1://", s, flags=re.I)


@register
class IocList(Format):
    """A plain IOC list: one indicator a line, an IPv4 or IPv6 address, a CIDR network, a
    domain or a URL (http, https, ftp; defanged forms accepted, see the module docstring).

    Columns: ioc_type, value, ip_first_num, ip_last_num, url_domain (see the module
    docstring); feed 'list'; ts, first_seen and the rest NULL (a list says nothing more).
    Comment lines: blank, starting with ``#`` or ``;``; a trailing comment (whitespace then
    ``#`` or ``;``, as in Spamhaus DROP's ``1.2.3.0/24 ; SBL123``) is dropped. Anything else
    (``999.1.1.1``, ``1.2.3.4/33``, text, control characters, a "URL" over ``MAX_URL``
    characters) is quarantined: 'not an IP, CIDR, domain or URL'.

    Sniffed with a moderate score (0.6) only when at least 90% of the first lines that are not
    comments are indicators, so that any log format that recognises a file wins over it.
    """

    name = "ioc-list"
    intel = True

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        data = [c for x in lines if (c := _sniff_clean(x)) is not None]
        if not data:
            return 0.0
        hits = sum(is_indicator(x) for x in data)
        return 0.6 if hits >= 0.9 * len(data) else 0.0

    def parse(self, con, batch, prepared) -> ParseResult:
        text = "regexp_replace(regexp_replace(line, '^\\x{FEFF}', ''), '\\s[#;].*$', '')"
        stage = f"""
            SELECT n AS source_line, line AS raw,
                   regexp_matches(line, '^\\x{{FEFF}}?\\s*([#;]|$)') AS comment,
                   CASE WHEN NOT comment THEN {refang_sql(trim_sql(text))} END AS cand
            FROM _batch"""
        t = _staged(con, stage, "cand")
        comments = pc.sum(t.column("comment")).as_py() or 0
        con.register("_ioc_s", t)
        sql = f"""
            SELECT source_line, raw, NULL::TIMESTAMP AS ts,
                   CASE WHEN ioc_type IS NULL THEN '{NOT_INDICATOR}' END AS _reason,
                   {_OUT}, 'list' AS feed
            FROM _ioc_s WHERE NOT comment"""
        return ParseResult([Part("ioc", sql)], comments=comments, views=["_ioc_s"])
