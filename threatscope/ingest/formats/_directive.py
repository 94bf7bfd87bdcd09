"""Shared machinery for header-driven text logs (W3C extended, Zeek TSV).

Lines starting with ``#`` are directives/comments; some of them (``#Fields:``, ``#fields``,
``#separator``...) change how the following data lines are read, possibly mid-file and across
batches. Directives are few, so ``prepare`` reads them in Python, in file order; ``parse`` then
reads the data lines of each distinct "schema" with one SQL statement per schema
(``schema_part``). A batch whose data lines all share one schema may first go through the
plug-in's ``fast`` path, which leaves only the lines it cannot read to ``schema_part``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from threatscope.ingest.formats import Format, ParseResult, Part


@dataclass(frozen=True)
class Segments:
    """The schema in force for each run of lines of one batch."""

    starts: tuple[int, ...]  # first line number of each run
    schemas: tuple[Any, ...]  # its schema (None: no header seen yet)
    comments: int  # '#' lines in the batch


class DirectiveFormat(Format):
    def __init__(self) -> None:
        self.schema: Any = None

    # -- to implement --------------------------------------------------------------------
    def directive(self, text: str) -> Any | None:
        """Apply one ``#`` line; return the new schema when it changes, else None."""
        raise NotImplementedError

    def schema_part(self, con, schema: Any, src: str) -> Part | int:
        """A Part for the data lines of ``src`` (a relation with n, line), or a count of lines
        to account as ignored."""
        raise NotImplementedError

    def fast(self, con, batch, schema: Any, data: pa.Array | None
             ) -> tuple[pa.Table, pa.Table] | None:
        """Optional: read the data lines (``data``: mask over batch.table, None = all) of a
        batch with one schema; returns (part table of the lines read, the (n, line) rows left
        for ``schema_part``), or None to leave them all to it."""
        return None

    # -- driver ----------------------------------------------------------------------------
    def prepare(self, table: pa.Table) -> Segments:
        lines = table.column("line")
        first = table.column("n")[0].as_py() if table.num_rows else 0
        is_c = pc.starts_with(lines, "#")
        ncomments = pc.sum(is_c).as_py() or 0
        starts, schemas = [first], [self.schema]
        if ncomments:
            idx = pc.indices_nonzero(is_c)
            texts = pc.take(lines, idx).to_pylist()
            nums = pc.take(table.column("n"), idx).to_pylist()
            comments_in_run = 0  # '#' lines since the current run started
            for n, text in zip(nums, texts, strict=True):
                schema = self.directive(text)
                if schema is None or schema == self.schema:
                    comments_in_run += 1
                    continue
                self.schema = schema
                if n - starts[-1] == comments_in_run:
                    # nothing but headers so far in this run (e.g. '#Software', '#Date' before
                    # '#Fields' at the top of a file): the run takes the new schema
                    schemas[-1] = schema
                    comments_in_run += 1
                else:
                    starts.append(n)
                    schemas.append(schema)
                    comments_in_run = 1
        return Segments(tuple(starts), tuple(schemas), ncomments)

    def parse(self, con, batch, prepared: Segments) -> ParseResult:
        result = ParseResult(comments=prepared.comments)
        distinct = list(dict.fromkeys(prepared.schemas))
        if len(distinct) == 1:
            schema = distinct[0]
            table = batch.table
            data = pc.invert(pc.starts_with(table.column("line"), "#")) \
                if prepared.comments else None
            fast = self.fast(con, batch, schema, data)
            if fast is not None:
                part, rest = fast
                if part.num_rows:
                    result.parts.append(Part("http", table=part))
            else:
                rest = table if data is None else table.filter(data)
            if rest.num_rows:
                con.register("_rest", rest)
                result.views.append("_rest")
                self._add(con, result, schema, "_rest")
            return result
        segs = pa.table({"n": pa.array(prepared.starts, pa.int64()),
                         "sid": pa.array([distinct.index(s) for s in prepared.schemas],
                                         pa.int64())})
        con.register("_segs", segs)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _dlines AS SELECT b.n, b.line, s.sid FROM _batch b "
            "ASOF JOIN _segs s ON b.n >= s.n WHERE NOT starts_with(b.line, '#')"
        )
        con.unregister("_segs")
        for (sid,) in con.execute("SELECT DISTINCT sid FROM _dlines ORDER BY sid").fetchall():
            self._add(con, result, distinct[sid],
                      f"(SELECT n, line FROM _dlines WHERE sid = {int(sid)})")
        return result

    def _add(self, con, result: ParseResult, schema: Any, src: str) -> None:
        part = self.schema_part(con, schema, src)
        if isinstance(part, int):
            result.ignored += part
        else:
            result.parts.append(part)
