"""DuckDB macros shared by the format parsers (installed once per connection by ``install``).

    ts_ip_num(ip)        UHUGEINT: IPv4 as ::ffff:a.b.c.d, IPv6 as its 128-bit value, else NULL
    _ts_v4num(ip)        the same for IPv4 only (ts_ip_num takes DuckDB long to plan)
    ts_url_path(u)       u before the first '?'
    ts_url_query(u)      u after the first '?', NULL when there is none
    ts_url_decode(u)     url_decode(u); when that is not valid UTF-8, decodes only the ASCII
                         escapes (%00-%7F) and keeps the others encoded. Never raises.
    ts_iso_ts(s)         ISO-8601 text (T or space, optional fraction, Z/+hh:mm/+hhmm) -> UTC
    ts_epoch_ts(x)       epoch seconds (DOUBLE) -> TIMESTAMP
    ts_dash(s)           NULL when s is '-' or ''
    ts_cves(txt)         every CVE-YYYY-NNNN written as CVE-YYYY-NNNN / CVE_YYYY_NNNN, normalised
"""

from __future__ import annotations

import duckdb

_V4_BASE = 0xFFFF00000000

MACROS = rf"""
CREATE OR REPLACE TEMP MACRO ts_dash(s) AS CASE WHEN s = '-' OR s = '' THEN NULL ELSE s END;
CREATE OR REPLACE TEMP MACRO _ts_v4(p) AS CASE WHEN len(p) = 4 THEN (
    {_V4_BASE}::UHUGEINT + try_cast(p[1] AS UTINYINT)::UBIGINT * 16777216
    + try_cast(p[2] AS UTINYINT)::UBIGINT * 65536 + try_cast(p[3] AS UTINYINT)::UBIGINT * 256
    + try_cast(p[4] AS UTINYINT)::UBIGINT) END;
CREATE OR REPLACE TEMP MACRO _ts_v4num(s) AS _ts_v4(string_split(s, '.'));
-- IPv6 with an embedded IPv4 tail (::ffff:1.2.3.4): rewrite the tail as two hex groups
CREATE OR REPLACE TEMP MACRO _ts_v6tail(s) AS CASE
    WHEN strpos(s, '.') = 0 THEN s
    ELSE regexp_replace(s, '[^:]*$', '') || printf('%x:%x',
        (_ts_v4num(regexp_extract(s, '[^:]*$')) - {_V4_BASE}::UHUGEINT) // 65536,
        (_ts_v4num(regexp_extract(s, '[^:]*$')) - {_V4_BASE}::UHUGEINT) % 65536) END;
CREATE OR REPLACE TEMP MACRO _ts_v6groups(h) AS CASE
    WHEN len(h) = 1 THEN string_split(h[1], ':')
    WHEN len(h) = 2 THEN
        (CASE WHEN h[1] = '' THEN []::VARCHAR[] ELSE string_split(h[1], ':') END)
        || list_transform(range(8 - (CASE WHEN h[1] = '' THEN 0 ELSE len(string_split(h[1], ':')) END)
                                   - (CASE WHEN h[2] = '' THEN 0 ELSE len(string_split(h[2], ':')) END)),
                          lambda x: '0')
        || (CASE WHEN h[2] = '' THEN []::VARCHAR[] ELSE string_split(h[2], ':') END)
    END;
CREATE OR REPLACE TEMP MACRO _ts_v6sum(g) AS CASE
    WHEN len(g) = 8 AND list_bool_and(list_transform(g, lambda x: regexp_full_match(x, '[0-9a-f]{{1,4}}')))
    THEN list_reduce(list_transform(g, lambda x: try_cast('0x' || x AS UHUGEINT)),
                     lambda acc, x: acc * 65536 + x) END;
CREATE OR REPLACE TEMP MACRO _ts_v6num(s) AS
    _ts_v6sum(_ts_v6groups(string_split(_ts_v6tail(lower(split_part(s, '%', 1))), '::')));
-- v4 first (the common case, cheap); the IPv6 expression only where there is a ':'
CREATE OR REPLACE TEMP MACRO ts_ip_num(ip) AS coalesce(_ts_v4num(ip),
    CASE WHEN strpos(ip, ':') > 0 THEN _ts_v6num(ip) END);
CREATE OR REPLACE TEMP MACRO ts_url_path(u) AS CASE
    WHEN strpos(u, '?') = 0 THEN u ELSE substr(u, 1, strpos(u, '?') - 1) END;
CREATE OR REPLACE TEMP MACRO ts_url_query(u) AS CASE
    WHEN strpos(u, '?') = 0 THEN NULL ELSE substr(u, strpos(u, '?') + 1) END;
CREATE OR REPLACE TEMP MACRO ts_url_decode(u) AS CASE
    WHEN strpos(u, '%') = 0 THEN u
    ELSE coalesce(try(url_decode(u)),
                  try(url_decode(regexp_replace(u, '%([89a-fA-F][0-9a-fA-F])', '%25\1', 'g'))),
                  u) END;
CREATE OR REPLACE TEMP MACRO ts_epoch_ts(x) AS
    make_timestamp(CAST(round(CAST(x AS DOUBLE) * 1000000) AS BIGINT));
CREATE OR REPLACE TEMP MACRO _ts_tzmin(z) AS CASE
    WHEN z = '' OR upper(z) = 'Z' THEN 0
    ELSE (CASE WHEN z[1] = '-' THEN -1 ELSE 1 END)
         * (try_cast(z[2:3] AS INTEGER) * 60 + try_cast(replace(z[4:], ':', '') AS INTEGER)) END;
CREATE OR REPLACE TEMP MACRO _ts_iso(m) AS
    try_cast(m.d || ' ' || m.t AS TIMESTAMP) - to_minutes(_ts_tzmin(m.z));
CREATE OR REPLACE TEMP MACRO ts_iso_ts(s) AS _ts_iso(regexp_extract(s,
    '^\s*(\d{{4}}-\d{{2}}-\d{{2}})[T ](\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?)\s*(Z|z|[+-]\d{{2}}:?\d{{2}}|)\s*$',
    ['d', 't', 'z']));
CREATE OR REPLACE TEMP MACRO ts_cves(txt) AS list_sort(list_distinct(list_transform(
    regexp_extract_all(txt, '(?i)CVE[-_ ]?\d{{4}}[-_]\d{{4,7}}'),
    lambda x: 'CVE-' || regexp_replace(upper(x), '^CVE[-_ ]?(\d{{4}})[-_](\d+)$', '\1-\2'))));
"""


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ts_* macros on this connection."""
    con.execute(MACROS)
