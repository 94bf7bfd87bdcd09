"""Report audiences: every organisation, one organisation, or one sector.

    scope = resolve_scope(con, org="acme")       # or sector="finance", or neither
    scope.org_ids                                # what figures.prepare keeps (None: everyone)
    scope.as_dict()                              # report.json's "scope"

An organisation's sector is its registered sector (``unknown`` when it has none), as in the
sectors figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from threatscope.errors import UserError
from threatscope.workspace import relations

KNOWN_LISTED = 20  # names listed in an error message before "..."


@dataclass(frozen=True)
class Scope:
    """Who a report is for: ``kind`` "all", "org" or "sector"; ``org_ids`` the organisations
    its figures count (None: all of them)."""

    kind: str = "all"
    org_id: str | None = None
    org_name: str | None = None
    sector: str | None = None
    org_ids: tuple[str, ...] | None = None
    orgs: int = 0

    def as_dict(self) -> dict[str, Any]:
        """report.json's ``scope`` object."""
        return {"kind": self.kind, "org_id": self.org_id, "org_name": self.org_name,
                "sector": self.sector, "orgs": self.orgs}

    @property
    def label(self) -> str:
        """The audience in words: ``organisation Acme (finance)``, ``sector finance``."""
        if self.kind == "org":
            return f"organisation {self.org_name or self.org_id} ({self.sector})"
        if self.kind == "sector":
            return f"sector {self.sector}"
        return "all organisations"


def known_orgs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(org_id, name, sector) of every organisation: registered, or seen in detections."""
    seen = ("UNION SELECT DISTINCT org_id, org_id, 'unknown' FROM detection "
            "WHERE org_id IS NOT NULL AND org_id NOT IN (SELECT org_id FROM org)"
            if "detection" in relations(con) else "")
    rows = con.execute(
        "SELECT org_id, coalesce(name, org_id), coalesce(nullif(trim(sector), ''), 'unknown') "
        f"FROM org {seen} ORDER BY 1").fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def _listing(names: list[str]) -> str:
    # names come from orgs.csv and log folders: control characters shown escaped, not sent to
    # the terminal
    shown = ", ".join(repr(n)[1:-1] for n in names[:KNOWN_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > KNOWN_LISTED else "")


def resolve_scope(con: duckdb.DuckDBPyConnection, org: str | None = None,
                  sector: str | None = None) -> Scope:
    """The scope of a report for ``org`` or ``sector`` (at most one), checked against the
    workspace's organisations; UserError naming the known ones when it is not there."""
    if org is not None and sector is not None:
        raise UserError("a report is for one organisation or one sector: give --org or --sector")
    orgs = known_orgs(con)
    if org is not None:
        match = [o for o in orgs if o[0] == org]
        if not match:
            raise UserError(f"unknown organisation {org!r}; known: "
                            f"{_listing([o[0] for o in orgs]) or '(none registered)'}")
        org_id, name, org_sector = match[0]
        return Scope("org", org_id, name, org_sector, (org_id,), 1)
    if sector is not None:
        members = tuple(o[0] for o in orgs if o[2] == sector)
        if not members:
            known = sorted({o[2] for o in orgs})
            raise UserError(f"unknown sector {sector!r}; known: "
                            f"{_listing(known) or '(none registered)'}")
        return Scope("sector", sector=sector, org_ids=members, orgs=len(members))
    return Scope(orgs=len(orgs))
