"""A tiny MaxMind DB (v2) writer for tests, written from the public format specification.

    write_mmdb(path, [("8.8.8.0/24", {"country": {"iso_code": "US"}})], ip_version=6)

Binary search tree of 24-bit records, a 16-byte zero separator, the data section (records
encoded without pointers), then the metadata marker and map. Networks must not overlap.
IPv4 networks in an IPv6 tree go under ::/96, where readers look for them.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

_META_MARKER = b"\xab\xcd\xefMaxMind.com"


def _ctrl(type_id: int, size: int) -> bytes:
    if size < 29:
        first, extra = size, b""
    elif size < 29 + 256:
        first, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        first, extra = 30, struct.pack(">H", size - 285)
    else:
        first, extra = 31, struct.pack(">I", size - 65821)[1:]
    if type_id <= 7:
        return bytes([(type_id << 5) | first]) + extra
    return bytes([first, type_id - 7]) + extra  # extended type


def _uint(type_id: int, v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""
    return _ctrl(type_id, len(raw)) + raw


def encode(v) -> bytes:
    """Encode a Python value as an MMDB data-section value."""
    if isinstance(v, bool):
        return _ctrl(14, int(v))
    if isinstance(v, str):
        b = v.encode("utf-8")
        return _ctrl(2, len(b)) + b
    if isinstance(v, int):
        if v < 0:
            raise ValueError("negative ints are not needed here")
        return _uint(6 if v < 2**32 else 9, v)
    if isinstance(v, float):
        return _ctrl(3, 8) + struct.pack(">d", v)
    if isinstance(v, dict):
        return _ctrl(7, len(v)) + b"".join(encode(str(k)) + encode(x) for k, x in v.items())
    if isinstance(v, list | tuple):
        return _ctrl(11, len(v)) + b"".join(encode(x) for x in v)
    raise TypeError(type(v))


def write_mmdb(path: str | Path, networks: list[tuple[str, dict]], ip_version: int = 6,
               database_type: str = "Test-DB") -> Path:
    bits = 128 if ip_version == 6 else 32
    nodes: list[list] = [[None, None]]  # record: None (empty), ("n", idx) or ("d", offset)
    data = bytearray()
    for cidr, record in networks:
        net = ipaddress.ip_network(cidr)
        value, plen = int(net.network_address), net.prefixlen
        if net.version == 4 and bits == 128:
            plen += 96  # ::a.b.c.d/96+n
        elif net.version == 6 and bits == 32:
            raise ValueError("IPv6 network in an IPv4 tree")
        offset = len(data)
        data += encode(record)
        node = 0
        for depth in range(plen):
            bit = (value >> (bits - 1 - depth)) & 1
            if depth == plen - 1:
                if nodes[node][bit] is not None:
                    raise ValueError(f"overlapping network {cidr}")
                nodes[node][bit] = ("d", offset)
                break
            rec = nodes[node][bit]
            if rec is None:
                nodes.append([None, None])
                rec = nodes[node][bit] = ("n", len(nodes) - 1)
            elif rec[0] == "d":
                raise ValueError(f"overlapping network {cidr}")
            node = rec[1]
    n = len(nodes)

    def rec_value(rec) -> int:
        if rec is None:
            return n
        return rec[1] if rec[0] == "n" else n + 16 + rec[1]

    tree = b"".join(
        rec_value(left).to_bytes(3, "big") + rec_value(right).to_bytes(3, "big")
        for left, right in nodes
    )
    meta = {
        "node_count": n, "record_size": 24, "ip_version": ip_version,
        "database_type": database_type, "languages": ["en"],
        "binary_format_major_version": 2, "binary_format_minor_version": 0,
        "build_epoch": 1525132800, "description": {"en": "threatscope test database"},
    }
    meta_bytes = (
        _ctrl(7, len(meta))
        + b"".join(
            encode(k) + (_uint(5, v) if k in ("record_size", "ip_version",
                                               "binary_format_major_version",
                                               "binary_format_minor_version") else
                         _uint(9, v) if k == "build_epoch" else encode(v))
            for k, v in meta.items()
        )
    )
    path = Path(path)
    path.write_bytes(tree + b"\x00" * 16 + bytes(data) + _META_MARKER + meta_bytes)
    return path
