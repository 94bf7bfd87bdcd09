"""Key findings: counts written for reading, and the sources sentence's claims."""

from __future__ import annotations

import pytest

from threatscope.analyze.findings import fmt_count, key_findings


@pytest.mark.parametrize(("n", "text"), [
    (0, "0"), (2176, "2,176"), (999_999, "999,999"), (1_000_000, "1.00 million"),
    (1_704_311, "1.70 million"), (12_345_678, "12.3 million"), (250_000_000, "250 million"),
    (3_100_000_000, "3.10 billion"),
])
def test_counts_from_a_million_read_in_words(n, text):
    assert fmt_count(n) == text


def _metrics(country_as_orgs: list[dict]) -> dict:
    zero = {"period": 0, "baseline": 0}
    return {
        "period": {"label": "2018Q2", "unit": "quarter"},
        "baseline": {"label": "2018Q1", "days": 90},
        "totals": {"detected_events": zero, "detections": zero, "source_ips": zero,
                   "orgs_hit": zero},
        "products": [], "campaigns": [], "sectors": [], "endpoint": {},
        "sources": {
            "distinct_ips": 100, "hosting_share": 0.8,
            "top_countries": [{"country_code": "CN", "country_name": "China",
                               "detected_events": 900, "source_ips": 61, "share": 0.9}],
            "country_as_orgs": country_as_orgs,
        },
    }


def _as(org: str, ips: int, kind: str = "hosting") -> dict:
    return {"country_code": "CN", "asn": 1, "as_org": org, "network_type": kind,
            "detected_events": ips, "source_ips": ips, "share": 0.1}


def test_the_sources_sentence_says_mostly_only_when_the_organisations_hold_most():
    text = key_findings(_metrics([_as("Tencent", 20), _as("Alibaba", 15)]))[0]["text"]
    assert text == ("61% of source IPs were in China, mostly in hosting ranges of Tencent and "
                    "Alibaba (90% of detected events); hosting networks sent 80% of all detected "
                    "events.")
    # 30 of 61 addresses: not most; an access network is not a hosting range
    for rows in ([_as("Tencent", 20), _as("Alibaba", 10)],
                 [_as("China Telecom", 50, "access")]):
        text = key_findings(_metrics(rows))[0]["text"]
        assert "mostly" not in text and text.startswith("61% of source IPs were in China (90%")
