"""Provenance: every figure of a report leads back to the events that make it
(`threatscope explain`)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from threatscope.analyze import Period
from threatscope.analyze.figures import figure_id, parse_id
from threatscope.cli import main
from threatscope.errors import UserError
from threatscope.explore import Provenance, target
from threatscope.workspace import Workspace

from .conftest import HOSTILE_ORG


def explain(ws, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["explain", "-w", str(ws.root), *args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def prov(explore_ws):
    with Provenance.open(explore_ws.ws, Period.parse(explore_ws.report["period"]["label"])) as p:
        yield p


def test_every_figure_of_the_report_is_recomputed_from_its_rows(explore_ws, prov):
    """For each of the report's figures: its value again from its definition, and for a count
    figure the number of contributing rows (explain --count), in the period and the baseline."""
    figs = explore_ws.report["figures"]
    assert len(figs) > 300
    counted = 0
    for f in figs:
        assert prov.value(f["id"])[0] == f["value"], f["id"]
        t = target(f["id"])
        if not t.counts:
            continue
        counted += 1
        assert prov.count(f["id"]) == f["value"], f["id"]
        if t.figure.windows == "compare":
            assert prov.count(f["id"], baseline=True) == f["baseline"], f["id"]
    assert counted > 300


def test_ids_are_unique_and_parse_back(explore_ws):
    ids = [f["id"] for f in explore_ws.report["figures"]]
    assert len(ids) == len(set(ids))
    for f in explore_ws.report["figures"]:
        name, key = parse_id(f["id"])
        assert name == f["figure"]
        assert key == {k: None if v is None else str(v) for k, v in f.get("key", {}).items()}


@pytest.mark.parametrize("key", [
    {"sector": '"><img src=x onerror=alert(1)>'}, {"a": "x]y"}, {"a": "back\\slash]["},
    {"a": None, "b": "="}, {"a": ""}, {"asn": 4837, "day": "2018-05-12"},
])
def test_figure_ids_escape_what_logs_put_in_keys(key):
    name, back = parse_id(figure_id("sources.as_orgs", key))
    assert name == "sources.as_orgs"
    assert back == {k: None if v is None else str(v) for k, v in key.items()}


@pytest.mark.parametrize("bad, why", [
    ("nope", "unknown figure"), ("campaigns[cve=x]", "not a key of campaigns"),
    ("campaigns[campaign=gpon", "not closed"), ("campaigns]x", "unknown figure"),
    ("campaigns[1x=a]", "not a column name"),
])
def test_bad_ids_are_clear_errors(bad, why):
    with pytest.raises(UserError, match=why):
        target(bad)


def test_explain_text_shows_definition_count_and_first_rows(explore_ws):
    gpon = next(f for f in explore_ws.report["figures"] if f["id"] == "campaigns[campaign=gpon]")
    code, out = explain(explore_ws.ws, "campaigns[campaign=gpon]", "--limit", "2")
    assert code == 0, out
    assert f"value    {gpon['value']}   (baseline {gpon['baseline']})" in out
    assert "from     det where campaign IS NOT NULL" in out
    assert f"count    {gpon['value']}" in out
    assert out.count("-- row ") == 2
    assert "raw " in out and ".url_original" in out and "rule_id" in out and "country_code" in out
    code, out = explain(explore_ws.ws, "campaigns[campaign=gpon]", "--count")
    assert (code, out.strip()) == (0, str(gpon["value"]))


def test_exports_carry_raw_line_fields_rule_and_enrichment(explore_ws, tmp_path):
    fid = "campaigns[campaign=gpon]"
    value = next(f["value"] for f in explore_ws.report["figures"] if f["id"] == fid)
    code, out = explain(explore_ws.ws, fid, "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    # one row per rule match; the events are the figure's value
    assert len({(r["file_id"], r["source_line"]) for r in rows}) == value
    assert all(r["raw"] and r["fields"]["url_original"] and r["rule_id"] and r["title"]
               for r in rows)
    assert all("country_code" in r and "as_org" in r for r in rows)
    out_csv = tmp_path / "gpon.csv"
    code, msg = explain(explore_ws.ws, fid, "--format", "csv", "-o", str(out_csv))
    assert code == 0, msg
    table = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert len(table) == len(rows)
    assert json.loads(table[0]["fields"])["http_request_method"] in ("GET", "POST")
    assert table[0]["raw"] == rows[0]["raw"]


def test_hostile_rows_cannot_drive_the_terminal_or_a_spreadsheet(explore_ws):
    fid = figure_id("orgs.events", {"org_id": HOSTILE_ORG})
    code, out = explain(explore_ws.ws, fid, "--limit", "10")
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[31mred\\u202eevil" in out
    code, out = explain(explore_ws.ws, fid, "--format", "csv")
    cells = [c for row in csv.reader(io.StringIO(out)) for c in row]
    assert not any(c.startswith(("=", "+", "@")) for c in cells)


def test_filters_that_match_nothing_and_period_only_figures(explore_ws):
    code, out = explain(explore_ws.ws, "campaigns[campaign=not-a-campaign]")
    assert code == 0
    assert "count    0" in out and "(no rows:" in out
    code, out = explain(explore_ws.ws, "sources.countries[country_code=CN]", "--baseline",
                        "--count")
    assert code != 0 and "period only" in out
    code, out = explain(explore_ws.ws, "campaigns[campaign=gpon]", "--period", "1999Q1",
                        "--count")
    assert (code, out.strip()) == (0, "0")


def test_unknown_ids_exit_with_a_message_not_a_trace(explore_ws):
    code, out = explain(explore_ws.ws, "campain[campaign=gpon]")
    assert code == 1 or code == 2
    assert "unknown figure 'campain'" in out and "Traceback" not in out
    code, out = explain(explore_ws.ws, "--list")
    assert code == 0 and "campaigns[campaign=…]" in out


def test_a_workspace_without_detections_explains_zero(tmp_path):
    ws = Workspace.open(tmp_path / "ws", create=True)
    log = tmp_path / "a.log"
    log.write_text('203.0.113.9 - - [02/May/2018:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\n')
    from threatscope import ingest

    ingest.ingest_paths(ws, [str(log)], org="o1")
    code, out = explain(ws, "totals.events", "--count")
    assert (code, out.strip()) == (0, "1")
    code, out = explain(ws, "totals.detections", "--count")
    assert (code, out.strip()) == (0, "0")
    code, out = explain(ws, "totals.events", "--format", "jsonl")
    row = json.loads(out)
    assert row["raw"].startswith("203.0.113.9") and row["fields"]["url_original"] == "/"
