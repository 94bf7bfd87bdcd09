"""Log format plug-ins: one small class per format, found by name in ``FORMATS``.

    from threatscope.ingest.formats import FORMATS, sniff
    fmt_cls = FORMATS["w3c"]                  # or sniff(first_lines) -> "w3c" | None
    parser = fmt_cls()                        # one instance per file: it may keep header state
    prepared = parser.prepare(batch.table)    # in file order (header state)
    result = parser.parse(con, batch, prepared)   # any thread; batch.table is also `_batch`

A plug-in subclasses ``Format``, sets ``name``, implements ``sniff`` (a score 0..1 on the first
lines of a file; a binary format sets ``magic``, its file's first bytes (or a tuple of such),
instead, and overrides ``sniff_binary`` when other files share them, e.g. zip) and ``parse``,
and lives in a module of this package: modules here are imported
automatically, so adding a format touches nothing else. The driver parses the batches of a file
in parallel: ``prepare`` is called for each batch in file order and is the only method that may
change the instance (e.g. apply ``#Fields:`` headers); ``parse`` must not change it.

A record format (a binary file such as EVTX) also implements ``read_batches``: it gives the
file's batches itself, one row per record (``n`` its position in the file, ``line`` the record as
JSON text, kept as ``raw``), and records it cannot read as ``Batch.bad``; the driver hashes the
file, and the rest (parallel parse, manifest, quarantine) is the same as for lines.

``parse`` returns ``ParseResult(parts, comments, ignored, views)``. Each ``Part`` is either
``Part(kind, sql)``, a SELECT over the registered view ``_batch`` (or views the plug-in
registered on ``con`` and lists in ``views``), or ``Part(kind, table=...)``, an Arrow table;
either gives, per line it covers: ``source_line``, ``raw``, ``ts``, ``_reason`` (NULL when the
line is a good row, else the quarantine reason; may be absent when all rows are good),
optionally ``_org`` (an organisation named by the record) and any columns of the kind
(``schema.KINDS``). The driver fills the rest (org_id, event_date, ip number, url split and
decoding...). Every line of the batch must land in exactly one part or count; a part marked
``derived`` is another view of lines that a counted part already covers.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
import pyarrow as pa

from threatscope.errors import UserError

if TYPE_CHECKING:
    from threatscope.ingest.reader import Batch


@dataclass
class Part:
    kind: str  # an event kind of schema.KINDS
    sql: str | None = None
    table: pa.Table | None = None
    # a second view of lines another part already covers (e.g. a Windows event's category
    # table beside windows_event): written, not counted in the line accounting
    derived: bool = False


@dataclass
class ParseResult:
    parts: list[Part] = field(default_factory=list)
    comments: int = 0  # header / comment lines
    ignored: int = 0  # valid records of no interest (e.g. EVE flow events)
    views: list[str] = field(default_factory=list)  # registered by parse; dropped after use


class Format:
    """Base class of a format plug-in (see the module docstring)."""

    name: ClassVar[str] = ""
    magic: ClassVar[bytes | tuple[bytes, ...]] = b""  # a binary format: its files' first bytes
    # intel (host records, IOC lists: schema.INTEL_KINDS): no organisation's telemetry, so no
    # organisation is taken from the folder or registered for it
    intel: ClassVar[bool] = False

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        """How sure (0..1) that these first non-empty lines of a file are this format."""
        return 0.0

    @classmethod
    def sniff_binary(cls, path: str, head: bytes) -> bool:
        """Whether the file ``path``, which starts with ``head``, is this binary format: by
        default whether ``head`` starts with ``magic``."""
        return bool(cls.magic) and head.startswith(cls.magic)

    def prepare(self, table: pa.Table) -> Any:
        """Called once per batch in file order before ``parse``; returns what ``parse`` needs of
        the per-file state at that batch. The default has no state."""
        return None

    def parse(self, con: duckdb.DuckDBPyConnection, batch: Batch, prepared: Any) -> ParseResult:
        raise NotImplementedError

    def read_batches(self, path: str) -> Iterator[Batch] | None:
        """A record format's batches of ``path`` (see the module docstring); None for a text
        format, whose lines the driver reads."""
        return None


FORMATS: dict[str, type[Format]] = {}


def register(cls: type[Format]) -> type[Format]:
    """Class decorator adding a plug-in to ``FORMATS`` under its ``name``."""
    FORMATS[cls.name] = cls
    return cls


def get(name: str) -> type[Format]:
    try:
        return FORMATS[name]
    except KeyError:
        raise UserError(
            f"unknown format {name!r} (choose from auto, {', '.join(sorted(FORMATS))})"
        ) from None


def sniff(lines: list[str], threshold: float = 0.5, only: Sequence[str] | None = None
          ) -> str | None:
    """The name of the format (of ``only``, when given) that best recognises these lines, or
    None."""
    best, score = None, threshold
    for name, cls in sorted(FORMATS.items()):
        if only is not None and name not in only:
            continue
        s = cls.sniff(lines)
        if s > score:
            best, score = name, s
    return best


def sniff_magic(head: bytes, path: str, only: Sequence[str] | None = None) -> str | None:
    """The binary format (of ``only``, when given) of the file ``path``, which starts with
    ``head``, or None."""
    for name, cls in sorted(FORMATS.items()):
        if only is not None and name not in only:
            continue
        if cls.magic and cls.sniff_binary(path, head):
            return name
    return None


for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
