"""The built-in knowledge base: complete, well-formed, and in step with the simulator."""

from datetime import date

from threatscope.analyze.knowledge import campaign_info, cve_info, knowledge, malware_info
from threatscope.simulate.world import CAMPAIGNS


def test_every_cve_has_dates_and_a_source():
    kb = knowledge()
    used = {c for camp in kb["campaign"].values() for c in camp["cves"]}
    assert used == set(kb["cve"])  # no campaign CVE without dates, no orphan entries
    for cve in sorted(used):
        info = cve_info(cve.lower())
        assert isinstance(info["published"], date), cve
        assert isinstance(info["public_exploit"], date), cve
        assert info["source"] and len(info["source"]) < 240, cve
        # an exploit long before the flaw was public would be a typo, not history
        assert (info["public_exploit"] - info["published"]).days > -90, cve


def test_campaign_exploit_date_is_the_earliest_of_its_cves():
    assert campaign_info("thinkphp-rce")["public_exploit_date"] == date(2018, 12, 11)
    assert campaign_info("weblogic-console")["public_exploit_date"] == date(2020, 10, 28)
    assert campaign_info("drupalgeddon3")["public_exploit_date"] == date(2018, 4, 25)
    assert campaign_info("iis-shortname")["public_exploit_date"] is None
    assert campaign_info("no-such-campaign") == {"title": None, "product": None, "cves": [],
                                                 "public_exploit_date": None, "advice": None}


def test_simulator_ground_truth_uses_the_same_exploit_dates():
    for spec in CAMPAIGNS:
        kb = campaign_info(spec.key)["public_exploit_date"]
        assert (kb.isoformat() if kb else None) == spec.public_exploit_date, spec.key


def test_every_cve_campaign_and_malware_family_has_advice():
    kb = knowledge()
    for cve, entry in kb["cve"].items():
        info = cve_info(cve)
        assert info["advice"] and len(info["advice"]) < 300, cve
        assert info["product"], cve
        # a CVE's product is its campaigns' product
        assert {c["product"] for c in kb["campaign"].values() if cve in c["cves"]} == {
            info["product"]}, cve
        assert entry["advice"].endswith("."), cve
    for key, entry in kb["campaign"].items():
        info = campaign_info(key)
        assert info["advice"], key
        if not entry["cves"]:  # no CVE to borrow from: the campaign states its own
            assert entry.get("advice"), key
        if len(entry["cves"]) > 1:  # one text, not near-repeats of its CVEs' advice
            assert entry.get("advice"), key
        if len(entry["cves"]) == 1 and not entry.get("advice"):
            assert info["advice"] == cve_info(entry["cves"][0])["advice"], key
    for family in ("emotet", "downloader", "shellcode-injector", "empire", "powerfun"):
        assert malware_info(family)["advice"], family
    assert malware_info("no-such-family") == {"advice": None}
