"""Small real workspaces for the analyze tests: catalog tables filled with exact SQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from threatscope import schema
from threatscope.workspace import Org, Workspace


class WsBuilder:
    """Fill a fresh workspace: organisations, detections, sources and http events."""

    def __init__(self, root: Path):
        self.ws = Workspace.open(root, create=True)
        self._line = 0

    def orgs(self, *orgs: tuple) -> WsBuilder:
        self.ws.register_orgs(Org(*o) for o in orgs)
        return self

    def detect(self, ts: str, n: int = 1, *, org: str = "o1", ip: str = "198.51.100.1",
               rule: str = "r-iis", title: str = "IIS WebDAV", severity: str = "high",
               campaign: str | None = "iis-webdav", product: str | None = "iis",
               cves: list[str] | None = None, family: str | None = "rce",
               event: tuple[str, int] | None = None, kind: str = "http",
               techniques: list[str] | None = None) -> WsBuilder:
        """``n`` detections at ``ts``, each on a new event unless ``event=(file_id, line)``
        names the one event they all match; ``kind`` is the event's kind, ``techniques`` the
        rule's ATT&CK ids (default T1190)."""
        file_id, first = event or ("auto", self._line + 1)
        if event is None:
            self._line += n
        step = 0 if event else 1
        cves = ["CVE-2017-7269"] if cves is None else cves
        techniques = ["T1190"] if techniques is None else techniques
        with self.ws.connect() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS detection ({schema.ddl_columns(schema.DETECTION)})")
            con.execute(
                "INSERT INTO detection SELECT ?, CAST(? AS TIMESTAMP), ?, ?, ?, 'x.log', "
                "? + i * ?, ?, ?, ?, CAST(? AS VARCHAR[]), CAST(? AS VARCHAR[]), ?, ?, ?, NULL, "
                "'sigma', 'PROPFIND /' FROM range(?) t(i)",
                [org, ts, ip, kind, file_id, first, step, rule, title, severity, cves, techniques,
                 product, campaign, family, n])
        return self

    def sources(self, *rows: tuple) -> WsBuilder:
        """rows: (ip, country_code, country_name, asn, as_org, network_type)."""
        with self.ws.connect() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS source ({schema.ddl_columns(schema.SOURCE)})")
            for ip, cc, cn, asn, org, nt in rows:
                con.execute("INSERT INTO source (ip, ip_num, country_code, country_name, asn, "
                            "as_org, network_type, geo_source) VALUES (?, NULL, ?, ?, ?, ?, ?, 'test')",
                            [ip, cc, cn, asn, org, nt])
        return self

    def events(self, org: str, day: str, n: int) -> WsBuilder:
        """``n`` http events of ``org`` on ``day``, written as lake Parquet by DuckDB."""
        d = date.fromisoformat(day)
        out = self.ws.lake / "http" / f"org_id={org}" / f"event_date={d}"
        out.mkdir(parents=True, exist_ok=True)
        cols = ", ".join(
            f"CAST({'TIMESTAMP ' + repr(f'{d} 12:00:00') if c == 'ts' else 'NULL'} AS {t}) AS \"{c}\""
            for c, t in schema.HTTP if c not in ("org_id", "event_date"))
        with self.ws.connect() as con:
            con.execute(f"COPY (SELECT {cols} FROM range({int(n)})) TO '{out / 'z_0.parquet'}' (FORMAT parquet)")
        return self


@pytest.fixture
def build(tmp_path):
    return WsBuilder(tmp_path / "ws")
