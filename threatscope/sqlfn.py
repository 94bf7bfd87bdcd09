"""DuckDB macros shared by the format parsers and detect (installed once per connection by ``install``).

    ts_ip_num(ip)        UHUGEINT: IPv4 as ::ffff:a.b.c.d, IPv6 as its 128-bit value, else NULL
                         (threatscope.ipnum, shared with enrich)
    ts_ip_canon(ip)      canonical IP text: IPv4-mapped IPv6 as IPv4, IPv6 lower-case compressed
                         (RFC 5952), NULL when not an address; ts_num_ip(n) the inverse of
                         ts_ip_num
    ts_url_path(u)       u before the first '?'
    ts_url_query(u)      u after the first '?', NULL when there is none
    ts_url_decode(u)     url_decode(u); when that is not valid UTF-8, decodes only the ASCII
                         escapes (%00-%7F) and keeps the others encoded. Never raises.
    ts_iso_ts(s)         ISO-8601 text (T or space, optional fraction, Z/+hh:mm/+hhmm) -> UTC
    ts_epoch_ts(x)       epoch seconds (DOUBLE) -> TIMESTAMP
    ts_dash(s)           NULL when s is '-' or ''
    ts_cves(txt)         every CVE-YYYY-NNNN written as CVE-YYYY-NNNN / CVE_YYYY_NNNN, normalised

Also ``with_fields``: a query with fields of JSON object columns (a Windows event's
``event_data``, request headers) as columns of their own, ``"event_data.Image"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from threatscope.ipnum import install_ip_macros

MACROS = r"""
CREATE OR REPLACE TEMP MACRO ts_dash(s) AS CASE WHEN s = '-' OR s = '' THEN NULL ELSE s END;
CREATE OR REPLACE TEMP MACRO ts_url_path(u) AS CASE
    WHEN strpos(u, '?') = 0 THEN u ELSE substr(u, 1, strpos(u, '?') - 1) END;
CREATE OR REPLACE TEMP MACRO ts_url_query(u) AS CASE
    WHEN strpos(u, '?') = 0 THEN NULL ELSE substr(u, strpos(u, '?') + 1) END;
CREATE OR REPLACE TEMP MACRO ts_url_decode(u) AS CASE
    WHEN strpos(u, '%') = 0 THEN u
    ELSE coalesce(try(url_decode(u)),
                  try(url_decode(regexp_replace(u, '%([89a-fA-F][0-9a-fA-F])', '%25\1', 'g'))),
                  u) END;
-- NULL outside years 1..9999 (as ts_iso_ts): a plain CAST of NaN, inf or 1e13 s to BIGINT
-- microseconds raised, failing the whole file on one hostile record
CREATE OR REPLACE TEMP MACRO ts_epoch_ts(x) AS CASE
    WHEN CAST(x AS DOUBLE) BETWEEN -62135596800 AND 253402300799
    THEN make_timestamp(TRY_CAST(round(CAST(x AS DOUBLE) * 1000000) AS BIGINT)) END;
CREATE OR REPLACE TEMP MACRO _ts_tzmin(z) AS CASE
    WHEN z = '' OR upper(z) = 'Z' THEN 0
    ELSE (CASE WHEN z[1] = '-' THEN -1 ELSE 1 END)
         * (try_cast(z[2:3] AS INTEGER) * 60 + try_cast(replace(z[4:], ':', '') AS INTEGER)) END;
CREATE OR REPLACE TEMP MACRO _ts_iso(m) AS
    try_cast(m.d || ' ' || m.t AS TIMESTAMP) - to_minutes(_ts_tzmin(m.z));
CREATE OR REPLACE TEMP MACRO ts_iso_ts(s) AS _ts_iso(regexp_extract(s,
    '^\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(Z|z|[+-]\d{2}:?\d{2}|)\s*$',
    ['d', 't', 'z']));
CREATE OR REPLACE TEMP MACRO ts_cves(txt) AS list_sort(list_distinct(list_transform(
    regexp_extract_all(txt, '(?i)CVE[-_ ]?\d{4}[-_]\d{4,7}'),
    lambda x: 'CVE-' || regexp_replace(upper(x), '^CVE[-_ ]?(\d{4})[-_](\d+)$', '\1-\2'))));
"""


def sql_str(s: str) -> str:
    """A SQL string literal (DuckDB does not interpret backslashes in '...')."""
    return "'" + s.replace("'", "''") + "'"


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ts_* macros on this connection."""
    install_ip_macros(con)
    con.execute(MACROS)


# -- fields of JSON object columns as columns ---------------------------------------------
def field_column(column: str) -> tuple[str, str] | None:
    """(JSON object column, field name) when ``column`` names a field inside one
    (``<column>.<name>``: a request header, a Windows event's data), else None. Such a column is
    not stored: whoever runs the rules adds it (``with_fields``)."""
    parent, dot, name = column.partition(".")
    return (parent, name) if dot and name else None


def field_spellings(columns: Sequence[str]
                    ) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, str, bool]]]:
    """The field ``columns`` (see field_column) grouped for parsing: per object column, its
    field names by lower-cased name (the first spelling), and per column ``(column, parent,
    name, in_struct)``: ``in_struct`` False for a second spelling of a name, which a struct
    (whose keys ignore case in DuckDB and Spark) cannot hold, so it is looked up on its own."""
    in_struct: dict[str, dict[str, str]] = {}  # parent -> lower-cased name -> name
    out = []
    for c in columns:
        parent, name = field_column(c)  # type: ignore[misc]
        first = in_struct.setdefault(parent, {}).setdefault(name.lower(), name)
        out.append((c, parent, name, first == name))
    return in_struct, out


def with_fields(source: str, columns: list[str]) -> str:
    """A SELECT of ``source`` (a query) with the field ``columns`` (see field_column) added:
    one JSON parse per row and object column (a struct of every field; a second spelling of
    a name is looked up on its own)."""
    in_struct, fields = field_spellings(columns)
    taken = []
    for c, parent, name, whole in fields:
        if whole:
            taken.append(f'"__f_{parent}"."{name}" AS "{c}"')
        else:
            path = sql_str('$."' + name + '"')
            taken.append(f'json_extract_string("{parent}", {path}) AS "{c}"')
    parsed = ", ".join(
        f'json_transform("{p}", '
        + sql_str("{" + ", ".join(f'"{n}": "VARCHAR"' for n in names.values()) + "}")
        + f') AS "__f_{p}"' for p, names in in_struct.items())
    structs = ", ".join(f'"__f_{p}"' for p in in_struct)
    return (f"SELECT * EXCLUDE ({structs}), {', '.join(taken)} "
            f"FROM (SELECT *, {parsed} FROM ({source}))")
