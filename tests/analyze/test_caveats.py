"""Caveats come from the document's own figures: each only when the figures give a reason."""

from __future__ import annotations

from threatscope.analyze.caveats import caveats


def _doc(**kw) -> dict:
    doc = {"inputs": {"rows_quarantined": 0, "rules_failed": 0}, "campaigns": [], "products": [],
           "cves": [], "families": [], "malware": [], "rules": [],
           "sectors": [{"sector": "biotech", "orgs": 2, "per_sensor": 1.5}]}
    doc.update(kw)
    return doc


def test_a_clean_document_has_only_the_counting_caveat():
    out = caveats(_doc())
    assert len(out) == 1 and out[0].startswith("Days are UTC days")


def test_each_caveat_comes_with_its_reason():
    tiny = {"flag": "tiny-baseline"}
    out = caveats(_doc(
        inputs={"rows_quarantined": 2911, "rules_failed": 3},
        campaigns=[tiny, {"flag": "surging"}], cves=[tiny], rules=[{"flag": None}],
        sectors=[{"sector": "biotech", "orgs": 2, "per_sensor": None},
                 {"sector": "unknown", "orgs": 4, "per_sensor": 2.0}]))
    assert out[1:] == [
        "2,911 input lines were quarantined (unreadable or malformed) and are in no figure; the "
        "reasons are listed above.",
        "3 rules failed to compile and did not run: what they detect is missing from every "
        "figure.",
        "2 rows have a baseline under 10 detected events: their fold and percent changes are "
        "shown but say little.",
        "4 organisations have no registered sector (sector 'unknown'); register them with "
        "`--orgs FILE` on ingest.",
        "Per-sensor rates are given only for sectors whose organisations all registered their "
        "sensor count."]
