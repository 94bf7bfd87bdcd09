"""Shared machinery for header-driven text logs (W3C extended, Zeek TSV).

Lines starting with ``#`` are directives/comments; some of them (``#Fields:``, ``#fields``,
``#separator``...) change how the following data lines are read, possibly mid-file and across
batches. Directives are few, so they are read in Python; the data lines of each distinct
"schema" are then parsed by one SQL statement per schema (``schema_part``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from threatscope.ingest.formats import Format, ParseResult, Part


class DirectiveFormat(Format):
    def __init__(self) -> None:
        self.schemas: list[Any] = [None]  # schema id -> schema (None: no header seen yet)
        self.sid = 0

    # -- to implement --------------------------------------------------------------------
    def directive(self, text: str) -> Any | None:
        """Apply one ``#`` line; return the new schema when it changes, else None."""
        raise NotImplementedError

    def schema_part(self, con, schema: Any, src: str) -> Part | int:
        """A Part for the data lines of ``src`` (a relation with n, line), or a count of lines
        to account as ignored."""
        raise NotImplementedError

    # -- driver ----------------------------------------------------------------------------
    def _set(self, schema: Any) -> None:
        # Equal schemas share an id, so repeated header blocks do not multiply the queries.
        if schema in self.schemas:
            self.sid = self.schemas.index(schema)
        else:
            self.schemas.append(schema)
            self.sid = len(self.schemas) - 1

    def parse(self, con, table: pa.Table) -> ParseResult:
        lines = table.column("line")
        is_c = pc.starts_with(lines, "#")
        ncomments = pc.sum(is_c).as_py() or 0
        result = ParseResult(comments=ncomments)
        if ncomments == 0:
            self._add(con, result, self.sid, "_batch")
            return result
        idx = pc.indices_nonzero(is_c)
        texts = pc.take(lines, idx).to_pylist()
        nums = pc.take(table.column("n"), idx).to_pylist()
        seg_n = [table.column("n")[0].as_py()]
        seg_sid = [self.sid]
        for n, text in zip(nums, texts, strict=True):
            schema = self.directive(text)
            if schema is not None:
                self._set(schema)
                if seg_n[-1] == n:  # a header on the batch's first line
                    seg_sid[-1] = self.sid
                else:
                    seg_n.append(n)
                    seg_sid.append(self.sid)
        if len(seg_n) == 1:
            self._add(con, result, self.sid, "(SELECT * FROM _batch WHERE NOT starts_with(line, '#'))")
            return result
        segs = pa.table({"n": pa.array(seg_n, pa.int64()), "sid": pa.array(seg_sid, pa.int64())})
        con.register("_segs", segs)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _dlines AS SELECT b.n, b.line, s.sid FROM _batch b "
            "ASOF JOIN _segs s ON b.n >= s.n WHERE NOT starts_with(b.line, '#')"
        )
        con.unregister("_segs")
        for (sid,) in con.execute("SELECT DISTINCT sid FROM _dlines ORDER BY sid").fetchall():
            self._add(con, result, sid, f"(SELECT n, line FROM _dlines WHERE sid = {int(sid)})")
        return result

    def _add(self, con, result: ParseResult, sid: int, src: str) -> None:
        schema = self.schemas[sid]
        part = self.schema_part(con, schema, src)
        if isinstance(part, int):
            result.ignored += part
        else:
            result.parts.append(part)
