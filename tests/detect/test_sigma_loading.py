"""Loading: failures are reported with a reason (never silently dropped), tags become metadata."""

from __future__ import annotations

import pytest

from tests.detect.sigma_helpers import RULE_ID, load_one, rule_yaml
from threatscope.detect import check_rules, evaluate, list_rules, load_rules
from threatscope.errors import UserError


@pytest.mark.parametrize(
    ("detection", "logsource", "reason"),
    [
        ("sel:\n  cs-cookiez: x\ncondition: sel", "category: webserver", "unknown field 'cs-cookiez'"),
        ("sel:\n  Image: x.exe\ncondition: sel", "category: process_creation\n    product: linux",
         "no data for logsource linux/process_creation/-"),
        ("sel:\n  x: 1\ncondition: sel", "product: windows\n    service: nosuchservice",
         "no data for logsource windows/-/nosuchservice"),
        ("sel:\n  cs-uri-query|re: '(?=x)a'\ncondition: sel", "category: webserver", "is invalid"),
        ("sel:\n  cs-uri-query|expand: '%admin_paths%'\ncondition: sel", "category: webserver",
         "placeholder %admin_paths%"),
        ("sel:\n  cs-method: GET\ncondition: sel and nothere", "category: webserver", "nothere"),
        ("sel:\n  cs-method|nosuchmodifier: GET\ncondition: sel", "category: webserver",
         "nosuchmodifier"),
    ],
)
def test_rule_failures_carry_reasons(tmp_path, detection, logsource, reason):
    rs = load_one(tmp_path, detection, logsource=logsource)
    assert rs.rules == []
    assert len(rs.failed) == 1
    f = rs.failed[0]
    assert reason in f.reason
    assert f.path.endswith("rule.yml")


def test_yaml_error_and_correlation_and_duplicates(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "a_broken.yml").write_text("title: x\ndetection: [unclosed\n")
    (d / "b_ok.yml").write_text(rule_yaml("sel:\n  cs-method: GET\ncondition: sel"))
    (d / "c_dup.yml").write_text(rule_yaml("sel:\n  cs-method: PUT\ncondition: sel"))
    (d / "d_corr.yml").write_text(
        "title: many\nid: 00000000-0000-4000-8000-0000000000c0\ncorrelation:\n  type: event_count\n"
        f"  rules:\n    - {RULE_ID}\n  group-by: [c-ip]\n  timespan: 1h\n"
        "  condition:\n    gte: 10\n"
    )
    rs = load_rules([d], builtin=False)
    assert [r.id for r in rs.rules] == [RULE_ID]
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in rs.failed}
    assert reasons["a_broken.yml"].startswith("YAML error")
    assert "duplicate rule id" in reasons["c_dup.yml"]
    assert "d_corr.yml" not in reasons
    [corr] = rs.correlations  # named by id, its group-by field mapped to the column
    assert (corr.type, corr.rules, corr.columns) == ("event_count", [RULE_ID],
                                                     {RULE_ID: ["source_ip"]})
    report = check_rules([d], builtin=False)
    assert report["compiled"] == 2 and report["failed"] == 2
    assert {"logsource": "-/webserver/-", "table": "http", "compiled": 1, "failed": 1} in report[
        "by_logsource"
    ]


def test_missing_rule_dir_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_rules([tmp_path / "nope"])


def test_tags_become_metadata(tmp_path):
    extra = (
        "tags:\n  - attack.initial-access\n  - attack.t1190\n  - attack.t1059.001\n"
        "  - attack.g0032\n  - cve.2018-7600\n  - threatscope.product.drupal\n"
        "  - threatscope.campaign.drupalgeddon2\n  - threatscope.family.rce\n"
    )
    rs = load_one(tmp_path, "sel:\n  cs-method: GET\ncondition: sel", extra=extra)
    r = rs.rules[0]
    assert r.cves == ["CVE-2018-7600"]
    assert r.attack_techniques == ["T1190", "T1059.001"]
    assert r.tactics == ["initial-access"]
    assert (r.product, r.campaign, r.family) == ("drupal", "drupalgeddon2", "rce")
    assert (r.level, r.status, r.table) == ("high", "test", "http")
    listed = list_rules([tmp_path / "rules"], builtin=False)
    assert listed[0]["cves"] == ["CVE-2018-7600"] and listed[0]["campaign"] == "drupalgeddon2"


def test_evaluate_rejects_unknown_kind_and_column(tmp_path):
    rs = load_one(tmp_path, "sel:\n  cs-method: GET\ncondition: sel")
    with pytest.raises(UserError):
        evaluate(rs, "nokind", [{}])
    with pytest.raises(UserError, match="unknown http column"):
        evaluate(rs, "http", [{"cs-method": "GET"}])


def test_builtin_pack_compiles_entirely():
    rs = load_rules()
    assert rs.rules and rs.failed == []
    assert {r.table for r in rs.rules} == {"http", "document", "process_creation", "ps_script",
                                          "powershell"}
