"""The ``threatscope`` command line: one command per stage, ``run`` chains them.

    threatscope init -w ws --orgs orgs.csv
    threatscope ingest -w ws logs/            # files, folders, globs or - for stdin
    threatscope detect -w ws --rules my-sigma/
    threatscope enrich -w ws
    threatscope report -w ws --period 2018Q2 -o out/
    threatscope run --orgs orgs.csv logs/ -o out/   # all of the above
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from threatscope import __version__
from threatscope.errors import UserError, storage_error
from threatscope.terminal import safe_text as _safe_text
from threatscope.workspace import DEFAULT_WORKSPACE, Workspace, read_orgs_csv, relations

FORMATS = ["auto", "w3c", "combined", "common", "http-jsonl", "eve", "zeek", "winevent-json", "evtx"]


def workspace_option(f: Callable) -> Callable:
    return click.option(
        "-w",
        "--workspace",
        "workspace",
        default=DEFAULT_WORKSPACE,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Workspace folder (catalog, lake, config).",
    )(f)


def engine_options(f: Callable) -> Callable:
    """``--engine`` and ``--spark-master``: the command's stages run on DuckDB (one machine) or
    on Apache Spark (local, a cluster's master, or Spark Connect via $SPARK_REMOTE)."""
    f = click.option("--spark-master", metavar="URL",
                     help="Spark master (local[N], spark://host:7077, yarn, k8s://...); "
                          "default $SPARK_MASTER, else local[*]. Spark Connect: set "
                          "SPARK_REMOTE=sc://host:15002 instead.")(f)
    return click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb",
                        show_default=True, envvar="THREATSCOPE_ENGINE",
                        help="Where the work runs ($THREATSCOPE_ENGINE).")(f)


class Engine:
    """The engine keywords stage functions take; the Spark session is started once, on
    first use, and shared by the stages of one command."""

    def __init__(self, engine: str, master: str | None):
        self.engine, self.master, self._session = engine, master, None

    def kw(self) -> dict:
        if self.engine == "duckdb":
            return {}
        if self._session is None:
            from threatscope import spark

            self._session = spark.session(self.master)
        return {"engine": "spark", "spark": self._session}


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[int, int | None, str], None] | None]:
    """A ``progress(advance, total, description)`` callback drawing a rich bar on stderr."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr_console(),
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(advance: int, total: int | None, description: str) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], advance=advance, total=total)

        yield update


def _print_summary(summary, as_json: bool, title: str) -> None:
    data = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    scalars = {k: v for k, v in data.items() if not isinstance(v, list | dict)}
    click.echo(f"{title}: " + ", ".join(f"{k}={v}" for k, v in scalars.items()))
    for err in data.get("errors") or []:
        click.echo(f"  error: {err}", err=True)


def handle_user_errors(f: Callable) -> Callable:
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except UserError as e:
            raise click.ClickException(str(e)) from None
        except Exception as e:
            if (why := storage_error(e)) is None:
                raise
            raise click.ClickException(why) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="threatscope")
def main() -> None:
    """threatscope: telemetry of many organisations -> detections, sources, campaigns, report."""


@main.command()
@workspace_option
@click.option("--orgs", type=click.Path(dir_okay=False, path_type=Path), help="org_id,name,sector[,sensors] CSV.")
@handle_user_errors
def init(workspace: Path, orgs: Path | None) -> None:
    """Create a workspace (idempotent) and optionally register organisations."""
    ws = Workspace.open(workspace, create=True)
    if orgs:
        n = ws.register_orgs(read_orgs_csv(orgs))
        click.echo(f"registered {n} organisations")
    click.echo(f"workspace ready: {ws.root}")


def _ingest(ws: Workspace, paths, org, fmt, orgs, as_json: bool, engine: Engine):
    from threatscope import ingest

    if orgs:
        ws.register_orgs(read_orgs_csv(orgs))
    with progress_bar(not as_json) as progress:
        summary = ingest.ingest_paths(ws, list(paths), org=org, fmt=fmt, progress=progress,
                                      **engine.kw())
    _print_summary(summary, as_json, "ingest")
    return summary


@main.command("ingest")
@workspace_option
@click.option("--org", help="Organisation of every input (overrides the folder layout <org_id>/...).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--orgs", type=click.Path(dir_okay=False, path_type=Path), help="Register organisations from CSV first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@engine_options
@click.argument("paths", nargs=-1, required=True)
@handle_user_errors
def ingest_cmd(workspace, org, fmt, orgs, as_json, engine, spark_master, paths) -> None:
    """Ingest log files, folders, globs or - (stdin) into the workspace lake."""
    ws = Workspace.open(workspace, create=True)
    _ingest(ws, paths, org, fmt, orgs, as_json, Engine(engine, spark_master))


def _detect(ws: Workspace, rules, as_json: bool, engine: Engine):
    from threatscope import detect

    with progress_bar(not as_json) as progress:
        summary = detect.run_detect(ws, rule_dirs=list(rules), progress=progress, **engine.kw())
    _print_summary(summary, as_json, "detect")
    return summary


@main.command("detect")
@workspace_option
@click.option("--rules", multiple=True, type=click.Path(exists=True, path_type=Path), help="Extra Sigma rule folder or file (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@engine_options
@handle_user_errors
def detect_cmd(workspace, rules, as_json, engine, spark_master) -> None:
    """Run the built-in rule pack and extra Sigma rules over the lake."""
    _detect(Workspace.open(workspace), rules, as_json, Engine(engine, spark_master))


def _enrich(ws: Workspace, mmdb, as_json: bool, engine: Engine):
    from threatscope import enrich

    summary = enrich.run_enrich(ws, mmdb=list(mmdb), **engine.kw())
    _print_summary(summary, as_json, "enrich")
    return summary


@main.command("enrich")
@workspace_option
@click.option("--mmdb", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="MaxMind-format .mmdb (country/ASN), repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@engine_options
@handle_user_errors
def enrich_cmd(workspace, mmdb, as_json, engine, spark_master) -> None:
    """Attribute source IPs: country, AS organisation, hosting or access network."""
    _enrich(Workspace.open(workspace), mmdb, as_json, Engine(engine, spark_master))


def _report(ws: Workspace, period: str | None, out: Path, pdf: bool, org: str | None,
            sector: str | None, engine: Engine) -> dict:
    from threatscope import analyze, report

    p = analyze.parse_period(period) if period else None
    metrics = analyze.analyze(ws, p, org=org, sector=sector, **engine.kw())
    # refuses (InconsistentReport, a UserError naming the figures) a report failing a check
    paths = report.write_report(metrics, out, pdf=pdf)
    click.echo(f"report ({metrics['period']['label']} vs {metrics['baseline']['label']}): {paths['html']}")
    return paths


@main.command("report")
@workspace_option
@click.option("--period", help="2018Q2, 2018-05 or 2018-04-01..2018-06-30 (default: latest quarter with detections).")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--pdf", is_flag=True, help="Also print report.pdf (needs chromium).")
@click.option("--org", "org", help="Report for this organisation (org_id), compared with its sector peers.")
@click.option("--sector", help="Report for this sector's organisations, compared with the other sectors.")
@engine_options
@handle_user_errors
def report_cmd(workspace, period, out, pdf, org, sector, engine, spark_master) -> None:
    """Analyse a period against the one before and write report.html/.json/.md and tables/."""
    _report(Workspace.open(workspace), period, out, pdf, org, sector,
            Engine(engine, spark_master))


@main.command("run")
@workspace_option
@click.option("--orgs", type=click.Path(dir_okay=False, path_type=Path), help="org_id,name,sector[,sensors] CSV.")
@click.option("--org", help="Organisation of every input.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True)
@click.option("--rules", multiple=True, type=click.Path(exists=True, path_type=Path))
@click.option("--mmdb", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--period", help="Report period (default: latest quarter with detections).")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--pdf", is_flag=True, help="Also print report.pdf (needs chromium).")
@click.option("--report-org", help="Report for this organisation (org_id) only.")
@click.option("--report-sector", help="Report for this sector only.")
@engine_options
@click.argument("paths", nargs=-1, required=True)
@handle_user_errors
def run_cmd(workspace, orgs, org, fmt, rules, mmdb, period, out, pdf, report_org, report_sector,
            engine, spark_master, paths) -> None:
    """All stages: ingest -> detect -> enrich -> report."""
    ws = Workspace.open(workspace, create=True)
    eng = Engine(engine, spark_master)
    _ingest(ws, paths, org, fmt, orgs, False, eng)
    _detect(ws, rules, False, eng)
    _enrich(ws, mmdb, False, eng)
    _report(ws, period, out, pdf, report_org, report_sector, eng)


@main.group("intel")
def intel_group() -> None:
    """Intel about attackers: host records (Shodan) and IOC lists (abuse.ch, plain lists)."""


def _intel_formats(kind: str) -> list[str]:
    from threatscope.ingest.formats import FORMATS

    names = sorted(n for n, c in FORMATS.items() if c.intel)
    return [n for n in names if (n == "shodan") == (kind == "shodan")]


@intel_group.command("add")
@workspace_option
@click.argument("kind", type=click.Choice(["shodan", "ioc"]))
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", default="auto", show_default=True,
              help="Force one format (shodan, ioc-feodo-csv, ioc-feodo-json, ioc-urlhaus-csv, "
                   "ioc-list); by default it is sniffed.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@handle_user_errors
def intel_add(workspace, kind, paths, fmt, as_json) -> None:
    """Add Shodan exports (`shodan download`/`shodan host` NDJSON, plain or .json.gz) or IOC
    lists (Feodo Tracker CSV/JSON, URLhaus CSV, plain IP/CIDR/domain/URL lists) to the
    workspace. Like ingest: every line is a row or quarantined with its reason, and adding a
    file twice adds nothing. Run `threatscope enrich` afterwards."""
    from threatscope import ingest

    only = _intel_formats(kind)
    if fmt != "auto" and fmt not in only:
        raise UserError(f"--format {fmt}: not a {kind} format (choose from {', '.join(only)})")
    ws = Workspace.open(workspace, create=True)
    with progress_bar(not as_json) as progress:
        # an IOC file no sniffer is sure of is read as a plain list: its garbage is quarantined
        summary = ingest.ingest_paths(ws, list(paths), fmt=fmt, progress=progress, only=only,
                                      fallback="ioc-list" if kind == "ioc" else None)
    _print_summary(summary, as_json, f"intel add {kind}")


@intel_group.command("lookup")
@workspace_option
@click.argument("ips", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per address.")
@handle_user_errors
def intel_lookup(workspace, ips, as_json) -> None:
    """What the workspace knows about addresses: country and AS, host record snapshots,
    IOC list entries, and what it did (classification, detections, first/last seen)."""
    from threatscope.enrich.intel import describe

    for info in describe(Workspace.open(workspace), ips):
        if as_json:
            click.echo(json.dumps(info, ensure_ascii=True, default=str))
        else:
            _print_intel(info)


@intel_group.command("fetch")
@workspace_option
@click.option("--shodan-key", envvar="SHODAN_API_KEY", required=True,
              help="Shodan API key (or $SHODAN_API_KEY).")
@click.option("--shodan-url", envvar="THREATSCOPE_SHODAN_URL", help="API base URL (default https://api.shodan.io).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Look up at most this many addresses (most detected events first).")
@click.option("--rate", type=float, default=1.0, show_default=True, help="Requests per second.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.argument("ips", nargs=-1)
@handle_user_errors
def intel_fetch(workspace, shodan_key, shodan_url, limit, rate, as_json, ips) -> None:
    """Look up attacking addresses without a host record (or the IPS given) in the Shodan API.
    Answers are cached in the workspace (intel/shodan-api/) and added as host records; a rerun
    after an interruption asks only for what is missing. Run `threatscope enrich` afterwards."""
    from threatscope.enrich.shodan_api import fetch_hosts

    ws = Workspace.open(workspace)
    if not ips:
        with ws.connect(read_only=True) as con:
            if "source" not in relations(con):
                raise UserError("no sources yet: run `threatscope enrich` first, or name IPS")
            ips = [r[0] for r in con.execute(
                "SELECT ip FROM source WHERE detections > 0 AND host_record_ts IS NULL "
                "AND ip_num IS NOT NULL ORDER BY detections DESC, ip LIMIT ?", [limit]).fetchall()]
    with progress_bar(not as_json) as progress:
        summary = fetch_hosts(ws, list(ips), shodan_key, base_url=shodan_url, rate=rate,
                              progress=progress)
    _print_summary(summary, as_json, "intel fetch")


def _print_intel(info: dict) -> None:
    say = click.echo
    if not info["valid"]:
        say(f"{_safe_text(str(info['ip']))}: not an IP address")
        return
    g = info["geo"]
    say(f"{info['ip']}  {g['country_code'] or '??'}  AS{g['asn'] or '?'} "
        f"{_safe_text(str(g['as_org'] or 'unknown AS'))}  ({g['network_type']})")
    src = info["source"]
    if src and src.get("detections"):
        say(f"  attacker: {src['classification']}, {src['detections']} detected events, "
            f"{src['orgs_hit']} organisations, {src['first_seen']} .. {src['last_seen']}; "
            f"campaigns: {', '.join(src['campaigns']) or '-'}")
        if src.get("host_kind"):
            say(f"  looks like: {src['host_kind']} ({src['os_family'] or 'OS unknown'}; "
                f"{', '.join(src['service_classes']) or 'no classed services'})")
    else:
        say("  no detected attack from this address in the workspace")
    for r in info["ioc_matches"]:
        say(f"  listed: {r['feed']} {r['ioc_type']} {_safe_text(r['value'])} "
            f"family={r['malware_family'] or '-'} first={r['first_seen'] or '-'} "
            f"last={r['last_seen'] or '-'}")
    for r in info["host_records"][:50]:
        say(f"  record {r['ts'] or '?'}: {r['port']}/{r['transport'] or '?'} "
            f"{_safe_text(str(r['product'] or r['module'] or '-'))} "
            f"os={_safe_text(str(r['os'] or '-'))}"
            + (f" names={_safe_text(','.join(r['hostnames']))}" if r["hostnames"] else ""))
    if len(info["host_records"]) > 50:
        say(f"  ... {len(info['host_records']) - 50} more records (--json lists all)")
    if not info["host_records"]:
        say("  no host record (threatscope intel add shodan FILE, or intel fetch)")


EXPORT_COLUMNS = (
    "org_id, ts, src_ip, source_file, source_line, rule_id, title, severity, cves, "
    "attack_techniques, product, campaign"
)


def table_export_options(f: Callable) -> Callable:
    """--format jsonl|csv|parquet and -o FILE of the table exports."""
    f = click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
                     help="Output file (default: stdout; required for parquet).")(f)
    return click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]),
                        default="jsonl", show_default=True)(f)


@main.group("export")
def export_group() -> None:
    """Export tables of the workspace."""


@export_group.command("detections")
@workspace_option
@table_export_options
@handle_user_errors
def export_detections(workspace, fmt, out) -> None:
    """One row per detection: org, time, source, file and line, rule, CVEs, techniques, campaign."""
    ws = Workspace.open(workspace)
    with ws.connect(read_only=True) as con:
        if "detection" not in relations(con):
            raise UserError("no detections yet: run `threatscope detect` first")
        query = f"SELECT {EXPORT_COLUMNS} FROM detection ORDER BY ts, org_id, source_file, source_line, rule_id"
        _export(con, query, fmt, out)


SOURCE_EXPORT = (
    "ip, country_code AS country, as_org, network_type AS as_kind, os, products, "
    "service_classes, ioc_matches, malware_families, classification, orgs_hit, detections, "
    "first_seen, last_seen, asn, os_family, host_kind, sensors_hit, exploits, campaigns, cves"
)


@export_group.command("sources")
@workspace_option
@table_export_options
@handle_user_errors
def export_sources(workspace, fmt, out) -> None:
    """One row per attacking IP: country, AS (hosting/access), what the host is (OS, products,
    service classes), IOC list matches and malware families, classification (research or
    mass scanner, opportunistic, targeted), organisations hit, detected events, first/last seen."""
    ws = Workspace.open(workspace)
    with ws.connect(read_only=True) as con:
        if "source" not in relations(con):
            raise UserError("no sources yet: run `threatscope enrich` first")
        query = f"SELECT {SOURCE_EXPORT} FROM source WHERE detections > 0 ORDER BY ip_num, ip"
        _export(con, query, fmt, out)


def _export(con, query: str, fmt: str, out: Path | None) -> None:
    """``query`` to ``out`` (or stdout) as jsonl, csv or parquet. In CSV, lists become
    ';'-joined text (one value per cell) and text a spreadsheet would run as a formula gets a
    leading apostrophe, as the report's tables do (``report.tables.cell``)."""
    if fmt == "parquet" and out is None:
        raise UserError("--format parquet needs -o FILE")
    if fmt == "csv":
        query = _csv_select(con, query)
    if out is None:
        _stream_rows(con, query, fmt)
        return
    opts = {"jsonl": "FORMAT json", "csv": "FORMAT csv, HEADER true",
            "parquet": "FORMAT parquet"}[fmt]
    con.execute(f"COPY ({query}) TO '{_sql_str(str(out))}' ({opts})")


def _csv_select(con, query: str) -> str:
    """``query`` with its list and text columns made CSV cells (see ``_export``), in SQL."""
    from threatscope.report.tables import FORMULA_START

    # an RE2 class of the starting characters (tab and CR as escapes)
    chars = "".join({"\t": "\\t", "\r": "\\r", "-": "\\-"}.get(c, c) for c in FORMULA_START)
    cols = []
    for name, typ, *_ in con.execute(f"DESCRIBE {query}").fetchall():
        v = f'"{name}"'
        if typ.endswith("[]"):
            v = f"array_to_string(list_transform({v}, lambda x: coalesce(x::VARCHAR, '')), ';')"
        elif typ != "VARCHAR":
            cols.append(v)
            continue
        cols.append(f"CASE WHEN regexp_matches({v}, '^[{chars}]') THEN chr(39) || {v} "
                    f'ELSE {v} END AS "{name}"')
    return f"SELECT {', '.join(cols)} FROM ({query})"


# --- export of the indicators (threatscope.share): STIX 2.1, MISP, CSV ---

def _share_options(f: Callable) -> Callable:
    f = click.option("--period", help="Only indicators seen in it: 2018Q2, 2018-05 or 2018-04-01..2018-06-30.")(f)
    f = click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output file.")(f)
    return workspace_option(f)


def _share_period(period: str | None):
    from threatscope.analyze.period import Period

    return Period.parse(period) if period else None


@export_group.command("stix")
@_share_options
@click.option("--min-sightings", type=click.IntRange(min=0), default=1, show_default=True, help="Only indicators seen in at least this many detected events.")
@handle_user_errors
def export_stix(workspace, out, period, min_sightings) -> None:
    """The indicators as a STIX 2.1 bundle: indicators, sightings, campaigns, malware, CVEs."""
    from threatscope.share.stix import write_stix

    write_stix(Workspace.open(workspace), out, period=_share_period(period), min_sightings=min_sightings)
    click.echo(f"wrote {out}")


@export_group.command("misp")
@_share_options
@handle_user_errors
def export_misp(workspace, out, period) -> None:
    """The indicators as one MISP event (MISP JSON export format), unpublished."""
    from threatscope.share.misp import write_misp

    write_misp(Workspace.open(workspace), out, period=_share_period(period))
    click.echo(f"wrote {out}")


@export_group.command("indicators")
@_share_options
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
@handle_user_errors
def export_indicators(workspace, out, period, fmt) -> None:
    """One row per indicator (address, URL, domain) with its campaigns, CVEs, counts."""
    from threatscope.share.indicators_csv import write_indicators_csv

    n = write_indicators_csv(Workspace.open(workspace), out, period=_share_period(period))
    click.echo(f"wrote {n} indicators to {out}")


def _stream_rows(con, query: str, fmt: str) -> None:
    import csv

    reader = con.sql(query).to_arrow_reader(50_000)
    cols = reader.schema.names
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(cols)
    for batch in reader:
        for row in batch.to_pylist():
            if writer:  # (cells made by _csv_select)
                writer.writerow([row[c] for c in cols])
            else:
                sys.stdout.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


@main.group("rules")
def rules_group() -> None:
    """List or check Sigma rules (built-in pack plus --rules folders)."""


_RULES_WORKSPACE = click.option(
    "-w", "--workspace", "workspace", type=click.Path(file_okay=False, path_type=Path),
    help="Also the rule folders and [detect.placeholders] of this workspace's config.toml.")


def _rule_options(workspace: Path | None, rules) -> tuple[list, dict]:
    if workspace is None:
        return list(rules), {}
    ws = Workspace.open(workspace)
    return [*ws.rule_dirs, *rules], ws.placeholders


@rules_group.command("list")
@click.option("--rules", multiple=True, type=click.Path(exists=True, path_type=Path))
@_RULES_WORKSPACE
@click.option("--json", "as_json", is_flag=True)
@handle_user_errors
def rules_list(rules, workspace, as_json) -> None:
    """List compiled rules with their table, level, CVEs, techniques and campaign."""
    from threatscope import detect

    dirs, placeholders = _rule_options(workspace, rules)
    rows = detect.list_rules(dirs, placeholders=placeholders)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    # one rule a line, tab-separated, so that it greps and pipes well
    for r in rows:
        click.echo("\t".join(str(x) for x in (
            r.get("id"), r.get("level"), r.get("table"),
            r.get("campaign") or r.get("family") or "-",
            ",".join(r.get("cves") or []) or "-",
            ",".join(r.get("attack_techniques") or r.get("techniques") or []) or "-",
            r.get("title"),
        )))


@rules_group.command("check")
@click.option("--rules", multiple=True, type=click.Path(exists=True, path_type=Path))
@_RULES_WORKSPACE
@click.option("--json", "as_json", is_flag=True)
@handle_user_errors
def rules_check(rules, workspace, as_json) -> None:
    """Compile every rule; report per logsource how many compile and why the others do not."""
    from threatscope import detect

    dirs, placeholders = _rule_options(workspace, rules)
    result = detect.check_rules(dirs, placeholders=placeholders)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        _print_check(result)
    builtin_failed = [f for f in result.get("failures", []) if _is_builtin(f.get("path"))]
    if builtin_failed:
        sys.exit(1)  # the built-in pack must always compile completely


def _is_builtin(path: str | None) -> bool:
    from threatscope import detect

    return bool(path) and str(Path(detect.__file__).parent / "rules") in str(path)


def _print_check(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table("logsource", "table", "compiled", "failed")
    for ls in result.get("by_logsource", []):
        table.add_row(
            escape(str(ls.get("logsource"))), escape(str(ls.get("table") or "-")),
            str(ls.get("compiled", 0)), str(ls.get("failed", 0)),
        )
    console.print(table)
    console.print(f"compiled {result.get('compiled', 0)}, failed {result.get('failed', 0)}")
    for f in result.get("failures", []):
        console.print(
            f"FAILED {escape(str(f.get('path')))} ({escape(str(f.get('rule') or ''))}): "
            f"{escape(str(f.get('reason')))}",
            highlight=False,
        )


@main.command()
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--scale", default=1.0, show_default=True, type=float, help="Multiply the traffic volume.")
@handle_user_errors
def simulate(out, seed, scale) -> None:
    """Write simulated telemetry of several organisations (with ground truth)."""
    from threatscope import simulate as sim

    path = sim.simulate(out, seed=seed, scale=scale)
    click.echo(f"simulated telemetry in {path} (organisations: {Path(path) / 'orgs.csv'})")


@main.command()
@click.option("-o", "--out", "out", default="demo-out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=7, show_default=True, type=int)
@engine_options
@handle_user_errors
def demo(out: Path, seed: int, engine: str, spark_master: str | None) -> None:
    """Simulate telemetry, run every stage on it and write a report."""
    import shutil

    from threatscope import simulate as sim

    data, ws_dir = out / "data", out / "workspace"
    for d in (data, ws_dir):
        if d.exists():
            shutil.rmtree(d)
    click.echo(f"simulating telemetry into {data} ...")
    sim.simulate(data, seed=seed)
    ws = Workspace.open(ws_dir, create=True)
    eng = Engine(engine, spark_master)
    _ingest(ws, [str(data)], None, "auto", data / "orgs.csv", False, eng)
    _detect(ws, (), False, eng)
    _enrich(ws, (), False, eng)
    paths = _report(ws, None, out / "report", False, None, None, eng)
    click.echo(f"\nopen the report: {Path(paths['html']).resolve()}")
    click.echo(f"explore it:      threatscope serve -w {ws_dir}   "
               f"(or: threatscope explain -w {ws_dir} 'campaigns[campaign=gpon]')")


@main.group("ps")
def ps_group() -> None:
    """PowerShell: static deobfuscation and obfuscation classification (nothing in a sample is
    ever run)."""


def _print_deobfuscated(res, label: str | None) -> None:
    if label is not None:
        click.echo(f"== {_safe_text(label)}")
    for n, layer in enumerate(res.layers, 1):
        click.echo(f"-- layer {n}: {layer.technique}")
        click.echo(_safe_text(layer.text))
    if not res.layers:
        click.echo("-- no layer recovered")
    if res.truncated or res.reason:
        click.echo(f"-- {'cut' if res.truncated else 'note'}: {res.reason}")
    if res.secure_string:
        click.echo("-- SecureString payload: not recoverable")
    click.echo(f"-- techniques: {', '.join(sorted(res.techniques)) or '-'}")
    for kind, values in res.iocs.items():
        for v in values:
            click.echo(f"-- ioc {kind[:-1]}: {_safe_text(v)}")


@ps_group.command("deobfuscate")
@click.argument("source", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object: layers, final, iocs, techniques, truncated.")
@click.option("--cmdline", is_flag=True, help="Each input line is one command line; one result per line.")
@click.option("--budget-ms", type=float, default=50.0, show_default=True, help="Time budget per script.")
@handle_user_errors
def ps_deobfuscate(source: Path, as_json: bool, cmdline: bool, budget_ms: float) -> None:
    """Peel the obfuscation layers of a PowerShell script or command line (FILE or - for stdin)."""
    from threatscope.powershell import MAX_BYTES, deobfuscate

    raw = sys.stdin.buffer.read(MAX_BYTES + 1) if str(source) == "-" else _read_capped(source, MAX_BYTES + 1)
    text = raw.decode("utf-8-sig", "replace") if not raw.startswith((b"\xff\xfe", b"\xfe\xff")) else raw.decode("utf-16", "replace")
    items = [ln for ln in text.splitlines() if ln.strip()] if cmdline else [text]
    for n, item in enumerate(items, 1):
        res = deobfuscate(item, budget_ms=budget_ms)
        if as_json:
            obj = res.to_dict()
            if cmdline:
                obj = {"line": n, **obj}
            # ensure_ascii: every control character of a sample leaves as an escape, never raw
            click.echo(json.dumps(obj, ensure_ascii=True))
        else:
            _print_deobfuscated(res, f"line {n}" if cmdline else None)


@ps_group.command("classify")
@click.argument("sources", nargs=-1, required=True,
                type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object a line: file, obfuscated, score, family, techniques (and line).")
@click.option("--cmdline", is_flag=True, help="Each input line is one command line; one result per line.")
@handle_user_errors
def ps_classify(sources: tuple[Path, ...], as_json: bool, cmdline: bool) -> None:
    """Tell obfuscated from plain PowerShell: each FILE (or - for stdin) is one script, or with
    --cmdline each of its lines one command line. The score is the classifier's probability;
    a text from which the deobfuscator undid an encoded command, compression, XOR, char codes
    and the like is obfuscated whatever the score. The family is the malware family that the
    built-in rules over the recovered text name (rules/powershell), or none."""
    from threatscope.detect.powershell import name_families
    from threatscope.powershell import MAX_BYTES
    from threatscope.powershell.analysis import analyse

    done: list[tuple[str, dict]] = []
    for source in sources:
        raw = sys.stdin.buffer.read(MAX_BYTES + 1) if str(source) == "-" else \
            _read_capped(source, MAX_BYTES + 1)
        text = raw.decode("utf-8-sig", "replace") if not raw.startswith((b"\xff\xfe", b"\xfe\xff")) \
            else raw.decode("utf-16", "replace")
        items = [ln for ln in text.splitlines() if ln.strip()] if cmdline else [text]
        done += [(item, {"file": str(source), **({"line": n} if cmdline else {})})
                 for n, item in enumerate(items, 1)]
    results = [analyse(item) for item, _ in done]
    named = name_families([item for item, _ in done], [r["final"] for r in results])
    for (_, where), r, fams in zip(done, results, named, strict=True):
        family = fams[0] if fams else None
        obj = {**where, "obfuscated": r["obfuscated"], "score": round(r["score"], 4),
               "family": family, "techniques": r["techniques"]}
        if as_json:
            click.echo(json.dumps(obj, ensure_ascii=True))
        else:
            label = f"{where['file']}:{where['line']}" if cmdline else where["file"]
            click.echo(f"{_safe_text(label)}\t{'obfuscated' if r['obfuscated'] else 'plain'}"
                       f"\t{r['score']:.4f}\t{family or '-'}\t{','.join(r['techniques']) or '-'}")


def _read_capped(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None


@main.command("explain")
@workspace_option
@click.argument("figure_id", required=False)
@click.option("--period", help="The report's period (default: latest quarter with detections).")
@click.option("--baseline", is_flag=True, help="The rows of the baseline (the period before).")
@click.option("--org", "org", help="As the report of this organisation (org_id) counts.")
@click.option("--sector", help="As the report of this sector counts.")
@click.option("--count", "count_only", is_flag=True,
              help="Print only how many events contribute (a count figure's value).")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl", "csv"]), default="text",
              show_default=True, help="jsonl/csv: every contributing row, with the raw line, "
              "parsed fields, rule and enrichment.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the export here (default: stdout).")
@click.option("--limit", type=click.IntRange(min=0), help="Rows listed (text: 10; exports: all).")
@click.option("--list", "list_figures", is_flag=True, help="List the figures and their keys.")
@handle_user_errors
def explain_cmd(workspace, figure_id, period, baseline, org, sector, count_only, fmt, out, limit,
                list_figures) -> None:
    """The definition of a report figure and the events behind it.

    FIGURE_ID is an id of report.json's `figures` list, e.g. 'campaigns[campaign=gpon]'."""
    from threatscope import analyze
    from threatscope.explore import Provenance, target, write_rows
    from threatscope.explore.explain import explain_text, figure_list

    if list_figures:
        for line in figure_list():
            click.echo(line)
        return
    if not figure_id:
        raise UserError("name a figure id (report.json `figures`), or --list the figures")
    target(figure_id)  # an unknown id fails before the workspace is read
    p = analyze.parse_period(period) if period else None
    with Provenance.open(Workspace.open(workspace), p, org=org, sector=sector) as prov:
        if count_only:
            click.echo(prov.count(figure_id, baseline))
        elif fmt == "text":
            for line in explain_text(prov, figure_id, baseline, 10 if limit is None else limit):
                click.echo(line)
        else:
            rows = prov.rows(figure_id, baseline, limit=limit)
            if out is None:
                write_rows(rows, fmt, sys.stdout)
            else:
                with _open_out(out) as f:
                    n = write_rows(rows, fmt, f)
                click.echo(f"{n} rows: {out}", err=True)


@main.command("serve")
@workspace_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; other than loopback, a token is required.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="THREATSCOPE_SERVE_TOKEN",
              help="Token the browser must present ($THREATSCOPE_SERVE_TOKEN; generated when "
                   "listening away from loopback without one).")
@handle_user_errors
def serve_cmd(workspace, host, port, token) -> None:
    """A local, read-only web dashboard over the workspace: the figures under filters, the
    events behind each, full-text search of the raw lines, the quarantine."""
    from threatscope.explore.serve import make_server

    server = make_server(Workspace.open(workspace), host, port, token)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.server_address[1]}/"
    click.echo(f"threatscope serve: {url}" + (f"?token={server.token}" if server.token else ""))
    click.echo("read-only; Ctrl-C stops it", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@contextmanager
def _open_out(path: Path):
    try:
        f = open(path, "w", encoding="utf-8", newline="")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    with f:
        yield f


if __name__ == "__main__":
    main()
