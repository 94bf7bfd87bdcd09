"""Shodan banners and host records (``shodan download`` / ``shodan host`` / the API cache)."""

from __future__ import annotations

import json
import re

from threatscope.ingest.formats import Format, ParseResult, Part, register
from threatscope.ingest.formats._json import sniff_json, struct_sql
from threatscope.ipnum import V4_MAPPED
from threatscope.sqlfn import sql_str

# One banner: a line of a banner export, or an element of a host record's `data`. Values whose
# type varies between Shodan versions (port, lists, vulns, data) are read as JSON and typed below.
_BANNER = {
    "ip_str": "VARCHAR", "ipv6": "VARCHAR", "ip": "JSON", "port": "JSON",
    "transport": "VARCHAR", "product": "VARCHAR", "version": "VARCHAR", "os": "VARCHAR",
    "org": "VARCHAR", "isp": "VARCHAR", "asn": "VARCHAR",
    "hostnames": "JSON", "domains": "JSON", "tags": "JSON", "cpe": "JSON", "cpe23": "JSON",
    "vulns": "JSON", "location": {"country_code": "VARCHAR"}, "country_code": "VARCHAR",
    "cloud": {"provider": "VARCHAR"}, "timestamp": "VARCHAR", "data": "JSON",
    "_shodan": {"module": "VARCHAR"},
}
# A line: a banner, or a host record (the banner fields at host level, plus these).
_LINE = _BANNER | {"ports": "JSON", "last_update": "VARCHAR"}

BANNER_KEEP = 4096  # characters of a banner's text kept in `banner`


def _list(v: str) -> str:
    """A JSON list of strings (or one string) -> VARCHAR[] without NULLs; NULL when absent."""
    return (f"CASE json_type({v}) WHEN 'ARRAY' THEN list_filter(try_cast({v} AS VARCHAR[]), "
            f"lambda x: x IS NOT NULL) WHEN 'VARCHAR' THEN [{v} ->> '$'] END")


def _vulns(v: str) -> str:
    """{CVE: {...}} (a banner) or [CVE, ...] (a host record) -> sorted upper-case list."""
    keys = (f"CASE json_type({v}) WHEN 'OBJECT' THEN json_keys({v}) "
            f"WHEN 'ARRAY' THEN try_cast({v} AS VARCHAR[]) END")
    return (f"list_sort(list_distinct(list_transform(list_filter({keys}, "
            f"lambda x: x IS NOT NULL), lambda x: upper(trim(x)))))")


def _int_ip(v: str) -> str:
    """The banner's integer `ip` (IPv4) as text, for a banner without ip_str."""
    return (f"CASE WHEN json_type({v}) IN ('UBIGINT', 'BIGINT') "
            f"AND try_cast({v} AS UBIGINT) < 4294967296 "
            f"THEN ts_num_ip({V4_MAPPED}::UHUGEINT + try_cast({v} AS UBIGINT)) END")


def _columns(b: str, h: str | None, record_type: str, synthetic: str = "false") -> str:
    """The host_record columns of banner ``b`` (a struct of _BANNER) on host ``h`` (a struct of
    _LINE whose fields the banner inherits when it lacks them; None for a banner line), plus
    ``_ip_src``, ``_tsv``, ``_port_raw`` for the checks. ``synthetic``: the row stands for a
    port or the host alone (no banner), so it takes the host's vulns."""

    def inherit(field: str, conv=lambda x: x) -> str:
        mine = conv(f"{b}.{field}")
        if h is None:
            return mine
        theirs = conv(f"{h}.{field}")
        if conv is _list:  # an empty list in a banner says no more than an absent one
            return f"CASE WHEN len({mine}) > 0 THEN {mine} ELSE coalesce({theirs}, {mine}) END"
        return f"coalesce({mine}, {theirs})"

    ip_src = f"coalesce({b}.ip_str, {b}.ipv6, {_int_ip(f'{b}.ip')}"
    ip_src += f", {h}.ip_str, {h}.ipv6, {_int_ip(f'{h}.ip')})" if h else ")"
    tsv = f"coalesce({b}.timestamp, {h}.last_update)" if h else f"{b}.timestamp"
    country = f"coalesce({b}.location.country_code, {b}.country_code"
    country += f", {h}.location.country_code, {h}.country_code)" if h else ")"
    vulns = _vulns(f"{b}.vulns")
    if h:
        vulns = f"coalesce({vulns}, CASE WHEN {synthetic} THEN {_vulns(f'{h}.vulns')} END)"
    asn = inherit("asn")
    return f"""{ip_src} AS _ip_src, {tsv} AS _tsv, {b}.port ->> '$' AS _port_raw,
        try_cast({b}.port ->> '$' AS BIGINT) AS _port,
        lower({b}.transport) AS transport, {b}._shodan.module AS module,
        {b}.product AS product, {b}.version AS version, {inherit('os')} AS os,
        {inherit('hostnames', _list)} AS hostnames, {inherit('domains', _list)} AS domains,
        {inherit('tags', _list)} AS tags,
        coalesce({_list(f'{b}.cpe23')}, {_list(f'{b}.cpe')}) AS cpe, {vulns} AS vulns,
        {inherit('org')} AS as_org, {inherit('isp')} AS isp,
        try_cast(regexp_replace(trim({asn}), '^[Aa][Ss]', '') AS BIGINT) AS asn,
        upper({country}) AS country_code, {b}.cloud.provider AS cloud_provider,
        CASE WHEN json_type({b}.data) = 'VARCHAR' THEN left({b}.data ->> '$', {BANNER_KEEP})
             END AS banner,
        '{record_type}' AS record_type"""


_OUT = """source_line, raw, ts, ip,
    CAST(_port AS INTEGER) AS port, transport, module, product, version, os, hostnames,
    domains, tags, cpe, vulns, as_org, isp, asn, country_code, cloud_provider, banner,
    record_type"""


def _reason(valid: str, invalid: str = "invalid JSON") -> str:
    """The quarantine reason of a row (NULL when good); ``valid``: the line (a host record's
    banner) is a JSON object, else the reason is ``invalid``."""
    return f"""CASE WHEN NOT ({valid}) THEN '{invalid}'
        WHEN ip IS NULL THEN 'missing or invalid ip_str'
        WHEN _tsv IS NOT NULL AND ts IS NULL THEN 'invalid timestamp'
        WHEN _port_raw IS NOT NULL AND (_port IS NULL OR _port NOT BETWEEN 0 AND 65535)
        THEN 'invalid port (not an integer in 0..65535)' END"""


@register
class Shodan(Format):
    """Shodan banners, one JSON object a line (``shodan download`` exports, .json.gz), and host
    records (``shodan host`` / ``GET /shodan/host/{ip}``: the host's fields and its banners in
    ``data``), both as ``host_record`` rows (intel: no organisation).

    Source fields -> columns (a banner's own field first, else its host record's):

    ==========================================  ================================================
    ip_str | ipv6 | ip (integer IPv4)           ip (canonical: IPv4-mapped IPv6 as IPv4, IPv6
                                                lower-case compressed); ip_num by the driver
    port                                        port
    transport                                   transport (lower-case)
    _shodan.module                              module
    product, version                            product, version
    os (inherited)                              os
    hostnames, domains, tags (inherited when    hostnames, domains, tags
    absent or empty)
    cpe23, else cpe                             cpe
    vulns ({CVE: {...}} or [CVE, ...])          vulns (keys, upper-case, sorted); a row with no
                                                banner of its own takes the host's list
    org, isp (inherited)                        as_org, isp
    asn ('AS37963', inherited)                  asn (37963)
    location.country_code | country_code        country_code (upper-case)
    (inherited)
    cloud.provider                              cloud_provider
    data (the banner text)                      banner (first 4096 characters, verbatim)
    timestamp, else the host's last_update      ts (UTC, as Shodan writes it, no zone)
    (banner line | host record)                 record_type ('banner' | 'host')
    the line                                    raw
    ==========================================  ================================================

    A banner line is one row. A host record line is one row per banner of its ``data`` (the
    first counted, the others a derived part: the line is one line of the accounting); without
    banners, one row per element of ``ports`` (NULL product...), else one row with NULL port.
    A line that is not a JSON object ('invalid JSON'), a banner without a readable address
    ('missing or invalid ip_str'), a timestamp present but unreadable ('invalid timestamp') and
    a port that is not an integer in 0..65535 are quarantined; in a host record, one bad banner
    quarantines the whole line (its first bad banner's reason). Other keys stay in ``raw``.
    """

    name = "shodan"
    intel = True

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        objs = sniff_json(lines)
        if not objs and lines and lines[0].lstrip().startswith("{"):
            # a host record longer than the sniffed head: its cut-off first line
            head = lines[0]
            return 0.9 if _HEAD_KEYS.search(head) and (
                '"_shodan"' in head or ('"ports"' in head and '"data"' in head)) else 0.0
        hits = sum(1 for o in objs if _is_shodan(o))
        return 0.95 * hits / max(1, len(lines))

    def parse(self, con, batch, prepared) -> ParseResult:
        host = ("j IS NOT NULL AND (json_type(j.data) = 'ARRAY' OR (j.port IS NULL "
                "AND (j.ports IS NOT NULL OR j.last_update IS NOT NULL)))")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _shodan AS SELECT n, line, j, "
                    f"coalesce({host}, false) AS host FROM ({struct_sql('_batch', _LINE)})")
        banners = f"""SELECT {_OUT}, {_reason('j IS NOT NULL')} AS _reason
            FROM (SELECT *, ts_iso_ts(_tsv) AS ts, ts_ip_canon(_ip_src) AS ip FROM (
                SELECT n AS source_line, line AS raw, j, {_columns('j', None, 'banner')}
                FROM _shodan WHERE NOT host))"""
        # a host record: one element per banner, else per port, else one for the host alone
        has_data = "coalesce(json_type(j.data) = 'ARRAY' AND json_array_length(j.data) > 0, false)"
        items = f"""CASE WHEN {has_data} THEN CAST(j.data AS JSON[])
            WHEN json_type(j.ports) = 'ARRAY' AND json_array_length(j.ports) > 0
            THEN list_transform(CAST(j.ports AS JSON[]), lambda p: json_object('port', p))
            ELSE [NULL::JSON] END"""
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _shodan_host AS
            SELECT *, arg_min(_r, k) FILTER (WHERE _r IS NOT NULL)
                          OVER (PARTITION BY source_line) AS _reason
            FROM (SELECT *, {_reason("e IS NULL OR json_type(e) = 'OBJECT'", "invalid banner in data")} AS _r
                  FROM (SELECT *, ts_iso_ts(_tsv) AS ts, ts_ip_canon(_ip_src) AS ip FROM (
                      SELECT n AS source_line, line AS raw, k, e,
                             {_columns('b', 'j', 'host', 'synthetic')}
                      FROM (SELECT *, json_transform(e, {sql_str(json.dumps(_BANNER))}) AS b FROM (
                          SELECT n, line, j, NOT ({has_data}) AS synthetic,
                                 unnest(range(1, len(items) + 1)) AS k, unnest(items) AS e
                          FROM (SELECT *, {items} AS items FROM _shodan WHERE host))))))""")
        hosts = f"SELECT {_OUT}, _reason FROM _shodan_host"
        return ParseResult([
            Part("host_record", banners),
            Part("host_record", hosts + " WHERE k = 1"),
            Part("host_record", hosts + " WHERE k > 1", derived=True),
        ])


_HEAD_KEYS = re.compile(r'^\s*\{.*"(ip_str|ipv6)"\s*:')


def _is_shodan(o: dict) -> bool:
    if not ("ip_str" in o or "ipv6" in o) or "event_type" in o or "uri" in o:
        return False
    # (a host record asked with minify=true has no `data`, but still its last_update)
    return (("port" in o and ("_shodan" in o or "data" in o))
            or ("ports" in o and ("data" in o or "last_update" in o)))
