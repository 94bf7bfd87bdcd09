from datetime import date

import pytest

from threatscope.analyze.period import Period
from threatscope.errors import UserError
from threatscope.workspace import Workspace, read_orgs_csv


def test_workspace_create_and_reopen(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    assert ws.catalog_path.exists() and ws.lake.is_dir() and ws.config_path.exists()
    with ws.connect() as con:
        # empty lake: typed, zero-row views
        assert con.execute("SELECT count(*) FROM http").fetchone() == (0,)
        types = {r[0]: r[1] for r in con.execute("DESCRIBE http").fetchall()}
        assert types["ts"] == "TIMESTAMP"
    assert Workspace.open(tmp_path / "ws").root == ws.root


def test_missing_workspace_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no workspace"):
        Workspace.open(tmp_path / "nope")


def test_bad_config_is_a_user_error(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    ws.config_path.write_text("[detect\nrule_dirs = ")
    with pytest.raises(UserError, match="invalid TOML"):
        Workspace.open(ws.root)


def test_orgs_csv(tmp_path):
    p = tmp_path / "orgs.csv"
    p.write_text("org_id,name,sector,sensors\nacme,ACME Corp,biotech,3\nbeta,,accounting,\n")
    orgs = read_orgs_csv(p)
    assert [(o.org_id, o.name, o.sector, o.sensors) for o in orgs] == [
        ("acme", "ACME Corp", "biotech", 3),
        ("beta", "beta", "accounting", None),
    ]
    ws = Workspace.open(tmp_path / "ws", create=True)
    assert ws.register_orgs(orgs) == 2
    assert ws.register_orgs(orgs) == 2  # re-registering replaces, never duplicates
    with ws.connect() as con:
        assert con.execute("SELECT count(*) FROM org").fetchone() == (2,)


@pytest.mark.parametrize(
    "text, message",
    [("id,name\nx,y\n", "header must be"), ("org_id,name,sector,sensors\na,b,c,many\n", "integer")],
)
def test_orgs_csv_errors(tmp_path, text, message):
    p = tmp_path / "orgs.csv"
    p.write_text(text)
    with pytest.raises(UserError, match=message):
        read_orgs_csv(p)


@pytest.mark.parametrize(
    "spec, start, end, label, base_label, base_start",
    [
        ("2018Q2", date(2018, 4, 1), date(2018, 7, 1), "2018Q2", "2018Q1", date(2018, 1, 1)),
        ("2018q1", date(2018, 1, 1), date(2018, 4, 1), "2018Q1", "2017Q4", date(2017, 10, 1)),
        ("2018-01", date(2018, 1, 1), date(2018, 2, 1), "2018-01", "2017-12", date(2017, 12, 1)),
        ("2018-12", date(2018, 12, 1), date(2019, 1, 1), "2018-12", "2018-11", date(2018, 11, 1)),
        (
            "2018-05-01..2018-05-10", date(2018, 5, 1), date(2018, 5, 11), "2018-05-01..2018-05-10",
            "2018-04-21..2018-04-30", date(2018, 4, 21),
        ),
    ],
)
def test_periods(spec, start, end, label, base_label, base_start):
    p = Period.parse(spec)
    assert (p.start, p.end, p.label) == (start, end, label)
    b = p.baseline()
    assert (b.label, b.start, b.end) == (base_label, base_start, p.start)


@pytest.mark.parametrize("spec", ["2018Q5", "2018-13", "2018-05-10..2018-05-01", "last week"])
def test_bad_periods(spec):
    with pytest.raises(UserError):
        Period.parse(spec)


def test_lake_views_read_files_of_an_older_schema(tmp_path):
    """A column added to a kind after the lake's files were written reads as NULL, whether
    some files have it or none does."""
    import duckdb

    ws = Workspace.open(tmp_path / "ws", create=True)
    folder = ws.lake / "http" / "org_id=acme"
    folder.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT TIMESTAMP '2018-05-12 10:00:00' AS ts, 1::BIGINT AS source_line, "
                f"'GET /' AS raw) TO '{folder / 'a_0.parquet'}' (FORMAT parquet)")
    con.close()
    with ws.connect() as con:  # no file has url_original (nor any other http column)
        assert con.execute("SELECT org_id, source_line, url_original, file_id FROM http"
                           ).fetchall() == [("acme", 1, None, "a")]
    con = duckdb.connect()
    con.execute(f"COPY (SELECT TIMESTAMP '2018-05-12 10:00:01' AS ts, 2::BIGINT AS source_line, "
                f"'GET /x' AS url_original) TO '{folder / 'b_0.parquet'}' (FORMAT parquet)")
    con.close()
    with ws.connect() as con:  # one file has it
        assert sorted(con.execute("SELECT source_line, url_original FROM http").fetchall()) == [
            (1, None), (2, "GET /x")]


@pytest.mark.parametrize(("version", "advice"), [
    (2, "upgrade threatscope to read it"), (0, "ingest its inputs again into a new workspace"),
    ('"1"', "ingest its inputs again")])
def test_a_workspace_of_another_layout_version_is_refused(tmp_path, version, advice):
    ws = Workspace.open(tmp_path / "ws", create=True)
    config = ws.config_path.read_text().replace("version = 1", f"version = {version}")
    ws.config_path.write_text(config)
    before = sorted(p.name for p in ws.root.rglob("*"))
    with pytest.raises(UserError, match=f"layout version .*this one reads version 1: {advice}"):
        Workspace.open(ws.root)
    assert sorted(p.name for p in ws.root.rglob("*")) == before  # nothing written
