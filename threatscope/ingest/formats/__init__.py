"""Log format plug-ins: one small class per format, found by name in ``FORMATS``.

    from threatscope.ingest.formats import FORMATS, sniff
    fmt_cls = FORMATS["w3c"]            # or sniff(first_lines) -> "w3c" | None
    parser = fmt_cls()                  # one instance per file: it may keep header state
    result = parser.parse(con, table)   # table: pa.Table(n BIGINT, line VARCHAR), also `_batch`

A plug-in subclasses ``Format``, sets ``name``, implements ``sniff`` (a score 0..1 on the first
lines of a file) and ``parse`` (SQL over the batch), and lives in a module of this package:
modules here are imported automatically, so adding a format touches nothing else.

``parse`` returns ``ParseResult(parts, comments, ignored)``. Each ``Part(kind, sql)`` is a
SELECT over the registered view ``_batch`` (or the plug-in's own views) giving, per line it
covers: ``source_line``, ``raw``, ``ts``, ``_reason`` (NULL when the line is a good row, else the
quarantine reason), optionally ``_org`` (an organisation named by the record) and any columns of
the kind (``schema.KINDS``). The driver fills the rest (org_id, event_date, file_id, ip number,
url split/decoding...). Every line of the batch must land in exactly one part or count.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import ClassVar

import duckdb
import pyarrow as pa

from threatscope.errors import UserError


@dataclass
class Part:
    kind: str  # an event kind of schema.KINDS
    sql: str


@dataclass
class ParseResult:
    parts: list[Part] = field(default_factory=list)
    comments: int = 0  # header / comment lines
    ignored: int = 0  # valid records of no interest (e.g. EVE flow events)


class Format:
    """Base class of a format plug-in (see the module docstring)."""

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ("http",)

    @classmethod
    def sniff(cls, lines: list[str]) -> float:
        """How sure (0..1) that these first non-empty lines of a file are this format."""
        return 0.0

    def parse(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> ParseResult:
        raise NotImplementedError


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


def sniff(lines: list[str], threshold: float = 0.5) -> str | None:
    """The name of the format that best recognises these lines, or None."""
    best, score = None, threshold
    for name, cls in sorted(FORMATS.items()):
        s = cls.sniff(lines)
        if s > score:
            best, score = name, s
    return best


def sql_str(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


for _m in pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
