"""A minimal EVTX writer for tests: one file header, chunks of records, each record a BinXML
template instance (the way Windows writes them) with the template defined inline.

    data = evtx_file([Event(1, "cmd.exe /c whoami"), Event(4104, "Get-Process")])
    Path("x.evtx").write_bytes(data)       # the evtx package reads it back

Only what the ingest needs is written (Provider, EventID, TimeCreated, EventRecordID, Channel,
Computer, one EventData field); checksums are computed as Windows does.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

FILE_HEADER, CHUNK, CHUNK_HEADER = 4096, 65536, 512
_EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)

# BinXML tokens and value types
_EOF, _OPEN, _OPEN_ATTRS, _CLOSE_START, _CLOSE_EMPTY, _END = 0x00, 0x01, 0x41, 0x02, 0x03, 0x04
_VALUE, _ATTR, _TEMPLATE, _SUBST, _FRAGMENT = 0x05, 0x06, 0x0C, 0x0D, 0x0F
_STRING, _UINT16, _UINT64, _FILETIME = 0x01, 0x06, 0x0A, 0x11


@dataclass
class Event:
    event_id: int
    data: str  # the one EventData field, CommandLine
    channel: str = "Microsoft-Windows-Sysmon/Operational"
    provider: str = "Microsoft-Windows-Sysmon"
    computer: str = "WS01"
    time: datetime = datetime(2018, 5, 12, 10, 0, 1, tzinfo=UTC)


def _hash(name: str) -> int:
    h = 0
    for c in name.encode("utf-16-le")[::2]:
        h = (h * 65599 + c) & 0xFFFFFFFF
    return h & 0xFFFF


class _Chunk:
    """Builds a chunk's bytes; names are written inline where first used (offsets are chunk
    offsets, so the writer tracks where it is)."""

    def __init__(self) -> None:
        self.buf = bytearray(CHUNK_HEADER)

    def name(self, text: str) -> bytes:
        at = len(self.buf) + 4  # the name follows its own offset field
        u = text.encode("utf-16-le")
        return struct.pack("<IIHH", at, 0, _hash(text), len(text)) + u + b"\x00\x00"

    def element(self, name: str, body: list, attrs: list | None = None) -> None:
        """Append an element (inside a template definition: with a dependency id). ``body``:
        callables appending content; ``attrs``: (name, callable appending the value)."""
        start = len(self.buf)
        self.buf += bytes([_OPEN_ATTRS if attrs else _OPEN]) + struct.pack("<H", 0xFFFF)
        size_at = len(self.buf)
        self.buf += b"\x00" * 4
        self.buf += self.name(name)
        if attrs:
            list_at = len(self.buf)
            self.buf += b"\x00" * 4
            for i, (aname, value) in enumerate(attrs):
                self.buf += bytes([_ATTR | (0x40 if i < len(attrs) - 1 else 0)])
                self.buf += self.name(aname)
                value()
            struct.pack_into("<I", self.buf, list_at, len(self.buf) - list_at - 4)
        if body:
            self.buf.append(_CLOSE_START)
            for part in body:
                part()
            self.buf.append(_END)
        else:
            self.buf.append(_CLOSE_EMPTY)
        struct.pack_into("<I", self.buf, size_at, len(self.buf) - size_at - 4)
        del start

    def subst(self, index: int, vtype: int):
        def put() -> None:
            self.buf += bytes([_SUBST]) + struct.pack("<HB", index, vtype)
        return put

    def text(self, value: str):
        def put() -> None:
            self.buf += bytes([_VALUE, _STRING]) + struct.pack("<H", len(value))
            self.buf += value.encode("utf-16-le")
        return put

    def template(self) -> None:
        """The Event template (substitutions 0..6), defined inline here."""
        s = self.subst
        el = self.element

        def system() -> None:
            el("System", [
                lambda: el("Provider", [], [("Name", s(0, _STRING))]),
                lambda: el("EventID", [s(1, _UINT16)]),
                lambda: el("TimeCreated", [], [("SystemTime", s(2, _FILETIME))]),
                lambda: el("EventRecordID", [s(3, _UINT64)]),
                lambda: el("Channel", [s(4, _STRING)]),
                lambda: el("Computer", [s(5, _STRING)]),
            ])

        def event_data() -> None:
            el("EventData", [lambda: el("Data", [s(6, _STRING)],
                                        [("Name", self.text("CommandLine"))])])

        self.buf += bytes([_FRAGMENT, 1, 1, 0])
        el("Event", [system, event_data])
        self.buf.append(_EOF)

    def record(self, record_id: int, ev: Event) -> None:
        start = len(self.buf)
        filetime = int((ev.time - _EPOCH_1601).total_seconds() * 10_000_000)
        self.buf += b"**\x00\x00" + b"\x00" * 4 + struct.pack("<QQ", record_id, filetime)
        self.buf += bytes([_FRAGMENT, 1, 1, 0, _TEMPLATE, 0x01]) + struct.pack("<I", 1)
        def_at = len(self.buf) + 4
        self.buf += struct.pack("<I", def_at)
        # template definition header: next template offset, GUID, size of the fragment
        self.buf += struct.pack("<I", 0) + bytes(range(16))
        size_at = len(self.buf)
        self.buf += b"\x00" * 4
        self.template()
        struct.pack_into("<I", self.buf, size_at, len(self.buf) - size_at - 4)
        values = [
            (_STRING, ev.provider.encode("utf-16-le")),
            (_UINT16, struct.pack("<H", ev.event_id & 0xFFFF)),
            (_FILETIME, struct.pack("<Q", filetime)),
            (_UINT64, struct.pack("<Q", record_id)),
            (_STRING, ev.channel.encode("utf-16-le")),
            (_STRING, ev.computer.encode("utf-16-le")),
            (_STRING, ev.data.encode("utf-16-le")),
        ]
        self.buf += struct.pack("<I", len(values))
        for vtype, data in values:
            self.buf += struct.pack("<HBB", len(data), vtype, 0)
        for _, data in values:
            self.buf += data
        self.buf += b"\x00" * 4
        size = len(self.buf) - start
        struct.pack_into("<I", self.buf, start + 4, size)
        struct.pack_into("<I", self.buf, len(self.buf) - 4, size)


def evtx_chunk(events: list[Event], first_id: int = 1) -> bytes:
    """One 64 KiB chunk holding ``events`` (record ids from ``first_id``)."""
    c = _Chunk()
    last_at = CHUNK_HEADER
    for i, ev in enumerate(events):
        last_at = len(c.buf)
        c.record(first_id + i, ev)
    if len(c.buf) > CHUNK:
        raise ValueError("too many events for one chunk")
    free = len(c.buf)
    last_id = first_id + len(events) - 1
    head = struct.pack("<8sQQQQIII", b"ElfChnk\x00", first_id, last_id, first_id, last_id,
                       128, last_at, free)
    c.buf[:len(head)] = head
    struct.pack_into("<I", c.buf, 52, zlib.crc32(bytes(c.buf[CHUNK_HEADER:free])))
    c.buf += b"\x00" * (CHUNK - len(c.buf))
    struct.pack_into("<I", c.buf, 124, zlib.crc32(bytes(c.buf[:120] + c.buf[128:CHUNK_HEADER])))
    return bytes(c.buf)


def evtx_file(events: list[Event], per_chunk: int = 50) -> bytes:
    """An EVTX file of ``events``, ``per_chunk`` records a chunk."""
    groups = [events[i:i + per_chunk] for i in range(0, len(events), per_chunk)] or [[]]
    chunks = []
    next_id = 1
    for g in groups:
        chunks.append(evtx_chunk(g, next_id) if g else b"")
        next_id += len(g)
    chunks = [c for c in chunks if c]
    head = bytearray(FILE_HEADER)
    struct.pack_into("<8sQQQIHHHH", head, 0, b"ElfFile\x00", 0, max(0, len(chunks) - 1),
                     next_id, 128, 1, 3, FILE_HEADER, len(chunks))
    struct.pack_into("<I", head, 124, zlib.crc32(bytes(head[:120])))
    return bytes(head) + b"".join(chunks)
