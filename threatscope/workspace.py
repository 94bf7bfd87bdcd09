"""A workspace is a folder: ``catalog.duckdb``, ``lake/`` (Parquet events), ``detection.parquet``
(written by detect) and ``config.toml``.

    ws = Workspace.open("threatscope-ws", create=True)
    with ws.connect() as con:          # views `http`, `alert` (lake), `detection` are ready
        con.execute("SELECT count(*) FROM http").fetchall()

Everything a report says can be recomputed from the workspace.
"""

from __future__ import annotations

import csv
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from threatscope import schema
from threatscope.errors import UserError

DEFAULT_WORKSPACE = "threatscope-ws"
# The layout of the lake and the enriched tables this threatscope reads and writes
# ([workspace] version in config.toml): a workspace of another version is refused, whole,
# rather than read half-right by either engine.
LAYOUT_VERSION = 1

_DEFAULT_CONFIG = """\
# threatscope workspace configuration
[workspace]
version = {version}

[detect]
# Extra Sigma rule folders, used in addition to the built-in pack.
rule_dirs = []

# Values of the placeholders Sigma rules name with the `expand` modifier (%name%): a rule
# matches any of them. A rule naming a placeholder without a value here is reported, not run.
[detect.placeholders]
# admin_workstations = ["ADMIN-WS01", "ADMIN-WS02"]

[enrich]
# MaxMind-format .mmdb files (country / ASN); without them the data geoip2fast ships is used.
mmdb = []
"""


@dataclass
class Org:
    org_id: str
    name: str
    sector: str
    sensors: int | None = None


@dataclass
class Workspace:
    root: Path
    config: dict = field(default_factory=dict)

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def detections_path(self) -> Path:
        """The detections (schema.DETECTION), replaced as a whole by each detect run."""
        return self.root / "detection.parquet"

    @property
    def powershell_path(self) -> Path:
        """The PowerShell analyzer's view of every PowerShell event (schema.POWERSHELL_ANALYSIS),
        replaced with the detections."""
        return self.root / "powershell.parquet"

    @property
    def enriched_root(self) -> Path:
        """Where enrich runs write their files: one folder per run and ``CURRENT``, the name of
        the one readers use."""
        return self.root / "enriched"

    def enriched(self) -> Path | None:
        """The folder of the last complete enrich run (``source.parquet``, ``place.parquet``,
        ``host_profile.parquet``, ``payload_indicator.parquet``), None before the first. A run
        writes a new folder, then replaces ``CURRENT`` (an atomic rename): readers see one
        run's files, whole, even when a run is killed half-way."""
        try:
            name = (self.enriched_root / "CURRENT").read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        folder = self.enriched_root / name
        return folder if name.isalnum() and folder.is_dir() else None

    @property
    def cache(self) -> Path:
        """Files derived from data outside the workspace and kept for reuse (the Spark engine's
        range table); removing the folder loses nothing."""
        return self.root / "cache"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @classmethod
    def open(cls, root: str | Path = DEFAULT_WORKSPACE, create: bool = False) -> Workspace:
        """Open a workspace; with ``create`` make it (idempotent) when missing."""
        root = Path(root)
        if not (root / "config.toml").exists():
            if not create:
                raise UserError(
                    f"no workspace at {root} (run `threatscope init -w {root}` first)"
                )
            root.mkdir(parents=True, exist_ok=True)
            (root / "lake").mkdir(exist_ok=True)
            (root / "config.toml").write_text(_DEFAULT_CONFIG.format(version=LAYOUT_VERSION))
        try:
            config = tomllib.loads((root / "config.toml").read_text())
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{root / 'config.toml'}: invalid TOML: {e}") from None
        version = config.get("workspace", {}).get("version", LAYOUT_VERSION)
        if version != LAYOUT_VERSION:
            newer = isinstance(version, int) and version > LAYOUT_VERSION
            raise UserError(
                f"{root} was written by a threatscope with workspace layout version {version!r}; "
                f"this one reads version {LAYOUT_VERSION}: "
                + ("upgrade threatscope to read it" if newer else
                   "ingest its inputs again into a new workspace"))
        ws = cls(root=root, config=config)
        ws.lake.mkdir(exist_ok=True)
        if not ws.catalog_path.exists():
            with ws.connect():  # creates the catalog's tables (every connect makes sure of them)
                pass
        return ws

    def connect(self, read_only: bool = False, windows_categories: bool = False
                ) -> duckdb.DuckDBPyConnection:
        """A connection to the catalog with the catalog tables and lake views in place; with
        ``windows_categories``, also the views of Sigma's other Windows categories
        (``network_connection``, ``dns_query``, ...: see refresh_views).

            with ws.connect(windows_categories=True) as con:
                con.sql("SELECT destination_ip, count(*) FROM network_connection GROUP BY 1")
        """
        con = open_catalog(self.catalog_path, read_only)
        if not read_only:
            con.execute(schema.CATALOG_DDL)
        self.refresh_views(con, windows_categories)
        return con

    def kind_glob(self, kind: str) -> str:
        return str(self.lake / kind / "**" / "*.parquet")

    def has_data(self, kind: str) -> bool:
        return any((self.lake / kind).rglob("*.parquet")) if (self.lake / kind).exists() else False

    def lake_view(self, con: duckdb.DuckDBPyConnection, kind: str,
                  files: list[str] | None = None, temp: bool = True) -> None:
        """The view ``kind`` (its columns, schema.KINDS) over the lake's files of that kind, or
        over ``files`` only (a snapshot's: explore/snapshot.py); an empty view without files.
        ``temp=False``: a view of the database, which its other cursors see too."""
        cols, tmp = schema.KINDS[kind], "TEMP " if temp else ""
        if not (self.has_data(kind) if files is None else files):
            con.execute(f'CREATE OR REPLACE {tmp}VIEW "{kind}" AS {schema.empty_select(cols)}')
            return
        where = (f"'{_sql_str(self.kind_glob(kind))}'" if files is None
                 else "[" + ", ".join(f"'{_sql_str(f)}'" for f in files) + "]")
        files_sql = (f"read_parquet({where}, hive_partitioning = true, filename = true, "
                     "union_by_name = true, hive_types = {'org_id': VARCHAR})")
        try:
            con.execute(f'CREATE OR REPLACE {tmp}VIEW "{kind}" AS '
                        f"SELECT {_lake_columns(cols)} FROM {files_sql}")
        except duckdb.BinderException:
            # a column newer than every file of the lake: NULL until files have it
            have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {files_sql}").fetchall()}
            con.execute(f'CREATE OR REPLACE {tmp}VIEW "{kind}" AS '
                        f"SELECT {_lake_columns(cols, have)} FROM {files_sql}")

    def refresh_views(self, con: duckdb.DuckDBPyConnection,
                      windows_categories: bool = False) -> None:
        """(Re)create one temp view per event kind over its Parquet files (or an empty one),
        and the view ``detection`` once detect has written its file. ``windows_categories``:
        also one view of ``windows_event`` per Sigma Windows category (schema.WINDOWS_CATEGORIES,
        with the ECS columns of schema.WINDOWS_CATEGORY_COLUMNS); only on request, as binding
        each view reads the lake's file list again."""
        for kind in schema.KINDS:
            self.lake_view(con, kind)
        for category, sql in (_WINDOWS_VIEWS.items() if windows_categories else ()):
            con.execute(f'CREATE OR REPLACE TEMP VIEW "{category}" AS {sql}')
        for name, sql in self.stage_outputs().items():
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def stage_outputs(self) -> dict[str, str]:
        """The SELECT of each table the stages after ingest wrote, in the order to create
        them: ``powershell`` (an empty one before detect), ``detection`` once detect has run,
        ``source``, ``payload_indicator`` and ``indicator`` once enrich has."""
        out = {"powershell": (
            f"SELECT * FROM read_parquet('{_sql_str(str(self.powershell_path))}')"
            if self.powershell_path.exists() else schema.empty_select(schema.POWERSHELL_ANALYSIS))}
        if self.detections_path.exists():
            out["detection"] = (f"SELECT * FROM "
                                f"read_parquet('{_sql_str(str(self.detections_path))}')")
        if (folder := self.enriched()) is not None:
            out["source"] = _source_select(folder)
            out["payload_indicator"] = (
                f"SELECT {parquet_read_columns(schema.INDICATOR)} FROM "
                f"read_parquet('{_sql_str(str(folder / 'payload_indicator.parquet'))}')")
            out["indicator"] = schema.INDICATOR_SELECT
        return out

    # -- organisations ------------------------------------------------------------------
    def register_orgs(self, orgs: Iterable[Org]) -> int:
        rows = [(o.org_id, o.name, o.sector, o.sensors) for o in orgs]
        with self.connect() as con:
            con.executemany(
                "INSERT OR REPLACE INTO org VALUES (?, ?, ?, ?)", rows
            )
        return len(rows)

    def ensure_org(self, con: duckdb.DuckDBPyConnection, org_id: str) -> None:
        """Make sure an organisation seen in data exists (sector unknown until registered)."""
        con.execute(
            "INSERT INTO org SELECT ?, ?, NULL, NULL WHERE NOT EXISTS "
            "(SELECT 1 FROM org WHERE org_id = ?)",
            [org_id, org_id, org_id],
        )

    @property
    def rule_dirs(self) -> list[Path]:
        return [Path(p) for p in self.config.get("detect", {}).get("rule_dirs", [])]

    @property
    def placeholders(self) -> dict[str, list[str]]:
        """Values of Sigma ``expand`` placeholders (``[detect.placeholders]``), by name."""
        table = self.config.get("detect", {}).get("placeholders", {})
        out: dict[str, list[str]] = {}
        for name, values in (table.items() if isinstance(table, dict) else ()):
            values = values if isinstance(values, list) else [values]
            if not values or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                                     for v in values):
                raise UserError(f"{self.config_path}: [detect.placeholders] {name} must be a "
                                "string or a list of strings")
            out[str(name)] = [str(v) for v in values]
        if not isinstance(table, dict):
            raise UserError(f"{self.config_path}: [detect.placeholders] must be a table")
        return out

    @property
    def mmdb_files(self) -> list[Path]:
        return [Path(p) for p in self.config.get("enrich", {}).get("mmdb", [])]


# how long opening the catalog waits for another process that holds it (the dashboard's
# snapshot holds it for milliseconds; an ingest for its whole run)
LOCK_WAIT_S = 5.0


def open_catalog(path: Path, read_only: bool = False,
                 wait_s: float = LOCK_WAIT_S) -> duckdb.DuckDBPyConnection:
    """A connection to the catalog file; waits up to ``wait_s`` while another process holds
    its lock, then raises a UserError saying so."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise UserError(f"cannot open {path}: {e}") from None
            if time.monotonic() >= deadline:
                raise WorkspaceBusy(f"{path} is in use by another threatscope process (an "
                                    f"ingest or detect still running?): {e}") from None
            time.sleep(0.05)


class WorkspaceBusy(UserError):
    """Another process holds the catalog (DuckDB allows one writer and no reader beside it)."""


def abort(con: duckdb.DuckDBPyConnection) -> None:
    """ROLLBACK the catalog's open transaction, if there still is one: a COMMIT that failed
    (the disk full when writing the WAL) has ended it already, and a second error would hide
    the first."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass


def relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Names of the tables and views a query on ``con`` can read (catalog tables such as
    ``source``, the lake views, ``detection`` once detect has run)."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {r[0] for r in rows}


def read_orgs_csv(path: str | Path) -> list[Org]:
    """Read ``org_id,name,sector[,sensors]`` (header row required)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: organisations file not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"org_id", "name", "sector"}
        if reader.fieldnames is None or not need <= {h.strip() for h in reader.fieldnames}:
            raise UserError(f"{path}: header must be org_id,name,sector[,sensors]")
        orgs = []
        for n, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not row["org_id"]:
                raise UserError(f"{path}:{n}: empty org_id")
            sensors = row.get("sensors") or None
            try:
                sensors = int(sensors) if sensors else None
            except ValueError:
                raise UserError(f"{path}:{n}: sensors must be an integer") from None
            orgs.append(Org(row["org_id"], row["name"] or row["org_id"], row["sector"], sensors))
    return orgs


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


def _windows_view(conditions: dict, columns: dict[str, str]) -> str:
    """A Sigma Windows category as a view of `windows_event` (schema.WINDOWS_CATEGORIES)."""
    def data(name: str) -> str:
        return f"json_extract_string(event_data, '$.\"{name}\"')"

    where = []
    for name, want in conditions.items():
        values = want if isinstance(want, list) else [want]
        column = {"Channel": "channel", "EventID": "event_id"}.get(name) or data(name)
        where.append(f"{column} IN ({', '.join(_sql_value(v) for v in values)})")
    cols = [f"{'TRY_CAST(' + data(f) + ' AS BIGINT)' if c.endswith(('_pid', '_port')) else data(f)}"
            f' AS "{c}"' for c, f in columns.items()]
    return (f"SELECT * EXCLUDE (raw), {', '.join(cols + ['raw'])} FROM windows_event "
            f"WHERE {' AND '.join(where)}")


def _sql_value(v: str | int) -> str:
    return f"'{_sql_str(v)}'" if isinstance(v, str) else str(int(v))


_WINDOWS_VIEWS = {c: _windows_view(cond, schema.WINDOWS_CATEGORY_COLUMNS.get(c, {}))
                  for c, cond in schema.WINDOWS_CATEGORIES.items()}


def parquet_write_columns(cols: list[tuple[str, str]]) -> str:
    """The SELECT list that writes rows with columns ``cols`` to Parquet, which has no 128-bit
    integer: a UHUGEINT column ``n`` becomes its UBIGINT halves ``n_hi`` and ``n_lo`` (exact,
    where DECIMAL(38,0) stops below 10**38)."""
    return ", ".join(
        f'("{n}" >> 64)::UBIGINT AS "{n}_hi", ("{n}" & {_MASK64}::UHUGEINT)::UBIGINT AS "{n}_lo"'
        if t == "UHUGEINT" else f'CAST("{n}" AS {t}) AS "{n}"' for n, t in cols)


def parquet_read_columns(cols: list[tuple[str, str]]) -> str:
    """The SELECT list that reads back what :func:`parquet_write_columns` wrote."""
    return ", ".join(f'("{n}_hi"::UHUGEINT << 64) | "{n}_lo"::UHUGEINT AS "{n}"'
                     if t == "UHUGEINT" else f'"{n}"' for n, t in cols)


_MASK64 = (1 << 64) - 1


def _source_select(folder: Path) -> str:
    """schema.SOURCE's columns, in order, from the three tables enrich stores it as."""
    def read(name: str, cols: list[tuple[str, str]]) -> str:
        path = _sql_str(str(folder / f"{name}.parquet"))
        return f"(SELECT {parquet_read_columns(cols)} FROM read_parquet('{path}'))"

    items = []
    for n, t in schema.SOURCE:
        if n in schema.SOURCE_PLACE:
            items.append(f'p."{n}"')
        elif n in schema.SOURCE_PROFILE:
            items.append(f'coalesce(h."{n}", []) AS "{n}"' if t.endswith("[]") else f'h."{n}"')
        else:
            items.append(f's."{n}"')
    return (f"SELECT {', '.join(items)} FROM {read('source', schema.SOURCE_STORED)} s "
            f"LEFT JOIN {read('place', schema.PLACE_STORED)} p USING (place) "
            f"LEFT JOIN {read('host_profile', schema.PROFILE_STORED)} h USING (profile)")


def _lake_columns(cols: list[tuple[str, str]], have: set[str] | None = None) -> str:
    """The SELECT list of a lake view: the kind's columns, in order. Parquet has no 128-bit
    integer, so IP numbers are stored as DECIMAL(38,0) and read back as UHUGEINT. file_id is
    not stored (ingest learns the content hash only after the last row): it is the lake file
    name's prefix (<file_id>_<n>.parquet). ``have``: the columns the files have (others NULL)."""
    items = []
    for n, t in cols:
        if n == "file_id":
            # a regexp, not split_part: DuckDB evaluates it once per file (filename is a
            # constant vector), where split_part would run on each of millions of rows
            items.append(r"regexp_extract(filename, '([^/\\_]*)[^/\\]*$', 1)"
                         f' AS "{n}"')
        elif have is not None and n not in have:
            items.append(f'CAST(NULL AS {t}) AS "{n}"')
        elif t == "UHUGEINT":
            items.append(f'CAST("{n}" AS {t}) AS "{n}"')
        else:
            items.append(f'"{n}"')
    return ", ".join(items)
