"""IP text -> number in DuckDB SQL, in the number space of ``threatscope.schema``.

IPv4 ``a.b.c.d`` becomes ``0xFFFF00000000 + v4`` (the ``::ffff:0:0/96`` mapping) and IPv6 its full
128-bit value, as UHUGEINT; anything that is not an address becomes NULL::

    con = duckdb.connect()
    install_ip_macros(con)
    con.sql("SELECT ts_ip_num('8.8.8.8'), ts_ip_num('2001:db8::1'), ts_ip_num('nope')")
    con.sql("SELECT ts_ip_canon('::FFFF:1.2.3.4'), ts_ip_canon('2001:DB8:0:0:0:0:0:1')")
    # -> '1.2.3.4', '2001:db8::1' (canonical text: Python's ipaddress, v4-mapped as IPv4)

Pure SQL macros, so conversion stays vectorised (no Python call per address).
"""

from __future__ import annotations

import duckdb

V4_MAPPED = 0xFFFF_0000_0000  # ::ffff:0:0, the start of IPv4 in the shared number space

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_RE = rf"({_OCTET}\.){{3}}{_OCTET}"


def _let(name: str, value: str, body: str) -> str:
    """Bind ``value`` once as ``name`` inside ``body`` (a one-element list comprehension):
    nesting macros instead would paste the expression once per use and bind very slowly."""
    return f"[{body} FOR {name} IN [{value}]][1]"


def _v4_int(v: str) -> str:
    return " + ".join(
        f"(split_part({v}, '.', {i + 1})::UBIGINT << {24 - 8 * i})" for i in range(4)
    )


def _half(i: int) -> str:  # groups left (1) / right (2) of '::'
    return (
        f"CASE WHEN split_part(w, '::', {i}) = '' THEN []::VARCHAR[] "
        f"ELSE string_split(split_part(w, '::', {i}), ':') END"
    )


# a trailing dotted quad (::ffff:1.2.3.4) becomes two hex groups
_TAIL = _let(
    "v", "regexp_extract(u, '[^:]*$')",
    f"CASE WHEN regexp_full_match(v, '{_V4_RE}') THEN "
    + _let("n", _v4_int("v"),
           "regexp_replace(u, '[^:]*$', '') || printf('%x:%x', n >> 16, n & 65535)")
    + " END",
)
_GROUPS = (
    "CASE WHEN w IS NULL OR NOT regexp_full_match(w, '[0-9a-f:]{2,39}') "
    "OR w LIKE '%::%::%' OR w LIKE '%:::%' THEN NULL "
    "WHEN w LIKE '%::%' THEN "
    + _let("l", _half(1), _let("r", _half(2), "l || ['0' FOR z IN range(8 - len(l) - len(r))] || r"))
    + " ELSE string_split(w, ':') END"
)
_V6 = _let(
    "u", "lower(split_part(t, '%', 1))",  # drop a zone id (fe80::1%eth0)
    _let("w", f"CASE WHEN u LIKE '%.%' THEN {_TAIL} ELSE u END", _let(
        "g", _GROUPS,
        "CASE WHEN len(g) = 8 AND list_bool_and([regexp_full_match(x, '[0-9a-f]{1,4}') FOR x IN g]) "
        "THEN list_reduce([('0x' || x)::UBIGINT::UHUGEINT FOR x IN g], lambda a, b: (a << 16) | b) END",
    )),
)
_V4 = f"CASE WHEN regexp_full_match(t, '{_V4_RE}') THEN {V4_MAPPED}::UHUGEINT + {_v4_int('t')} END"

# number -> text (RFC 5952, as Python's ipaddress prints it): ':g1:g2:...:g8:' in lower-case hex
# without leading zeros, then the first longest run (2 or more) of zero groups written '::'
# (a zero group is exactly ':0:'; the longest run is looked for from 8 groups down), then the
# wrapping ':' dropped. String functions only: list lambdas cost ~5x more per address.
_HEX_W = ("':' || regexp_replace(regexp_replace(lpad(lower(hex(x)), 32, '0'), '(....)', '\\1:', "
          "'g'), '(^|:)0+([0-9a-f])', '\\1\\2', 'g')")
_ZERO_RUNS = [":0" * n + ":" for n in range(8, 1, -1)]
_ZIP = "CASE " + " ".join(
    f"WHEN strpos(w, '{r}') > 0 THEN left(w, strpos(w, '{r}') - 1) || '::' "
    f"|| substr(w, strpos(w, '{r}') + {len(r)})" for r in _ZERO_RUNS) + " ELSE w END"
_V6_TEXT = _let("w", _HEX_W, _let(
    "z", _ZIP, "regexp_replace(regexp_replace(z, '^:([^:])', '\\1'), '([^:]):$', '\\1')"))
_V4_TEXT = _let("v", f"(x - {V4_MAPPED}::UHUGEINT)::UBIGINT",
                "concat_ws('.', v // 16777216, (v // 65536) % 256, (v // 256) % 256, v % 256)")

MACROS = f"""
CREATE OR REPLACE TEMP MACRO ts_ip4_num(t) AS ({_V4});
CREATE OR REPLACE TEMP MACRO ts_ip6_num(t) AS ({_V6});
CREATE OR REPLACE TEMP MACRO ts_ip_num(s) AS (
  CASE WHEN s LIKE '%:%' THEN ts_ip6_num(trim(s))
       WHEN s LIKE '% %' THEN ts_ip4_num(trim(s))
       ELSE ts_ip4_num(s) END);
CREATE OR REPLACE TEMP MACRO ts_num_ip(x) AS (CASE
  WHEN x IS NULL THEN NULL
  WHEN x BETWEEN {V4_MAPPED}::UHUGEINT AND {V4_MAPPED + 0xFFFF_FFFF}::UHUGEINT THEN {_V4_TEXT}
  ELSE {_V6_TEXT} END);
CREATE OR REPLACE TEMP MACRO ts_ip_canon(s) AS (CASE
  WHEN s NOT LIKE '%:%' THEN CASE WHEN regexp_full_match(trim(s), '{_V4_RE}') THEN trim(s) END
  ELSE ts_num_ip(ts_ip_num(s)) END);
"""


def install_ip_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Define the temp macros ``ts_ip_num(text) -> UHUGEINT``, ``ts_num_ip(number) -> text``,
    ``ts_ip_canon(text) -> canonical text`` (NULL when not an address) and helpers on ``con``."""
    con.execute(MACROS)


def ip_to_num(ip: str) -> int | None:
    """Python reference of ``ts_ip_num`` for one address (tests, small helpers)."""
    import ipaddress

    try:
        a = ipaddress.ip_address(ip.strip().split("%")[0])
    except (ValueError, AttributeError):
        return None
    return V4_MAPPED + int(a) if a.version == 4 else int(a)


def num_to_ip(n: int) -> str:
    """Inverse of :func:`ip_to_num` (v4-mapped numbers print as dotted quads)."""
    import ipaddress

    if V4_MAPPED <= n <= V4_MAPPED + 0xFFFF_FFFF:
        return str(ipaddress.IPv4Address(n - V4_MAPPED))
    return str(ipaddress.IPv6Address(n))


# Special-use blocks (RFC 6890 and friends): private, loopback, link-local, documentation,
# multicast, reserved. Addresses here have no country and no AS.
RESERVED_NETS = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/127", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
)


def reserved_ranges() -> list[tuple[int, int]]:
    """``RESERVED_NETS`` as (first, last) numbers."""
    import ipaddress

    out = []
    for net in map(ipaddress.ip_network, RESERVED_NETS):
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if net.version == 4:
            lo, hi = V4_MAPPED + lo, V4_MAPPED + hi
        out.append((lo, hi))
    return out
