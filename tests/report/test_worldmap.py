"""The offline world map: a fixed tile layout where neighbours stay neighbours, and tiles
coloured by the document's counts, hostile names escaped."""

from __future__ import annotations

import re

from tests.report.helpers import Page
from threatscope.report.worldmap import BUCKETS, tile_map, tiles


def _middle(code: str) -> tuple[float, float]:
    cells = tiles()[code]
    return (sum(c for c, _ in cells) / len(cells), sum(r for _, r in cells) / len(cells))


def test_every_country_has_its_own_tiles_and_the_largest_many():
    place = tiles()
    cells = [c for cs in place.values() for c in cs]
    assert len(cells) == len(set(cells))  # no tile shared
    assert len(place) > 190 and all(place.values())
    assert len(place["RU"]) > 100 and len(place["US"]) > 40 and len(place["BE"]) == 1


def test_neighbours_stay_where_they_are():
    west_of = [("US", "CN"), ("FR", "DE"), ("DE", "PL"), ("CN", "JP"), ("BR", "ZA"), ("GB", "DE")]
    north_of = [("CA", "US"), ("US", "MX"), ("DE", "IT"), ("RU", "CN"), ("ID", "AU"), ("EG", "ZA")]
    for a, b in west_of:
        assert _middle(a)[0] < _middle(b)[0], (a, b)
    for a, b in north_of:
        assert _middle(a)[1] < _middle(b)[1], (a, b)


def test_tiles_darken_with_counts_and_hostile_names_stay_text():
    rows = [{"country_code": "CN", "country_name": "China", "detected_events": 5000},
            {"country_code": "US", "country_name": "<script>alert(1)</script>",
             "detected_events": 3},
            {"country_code": "ZZ", "country_name": "Nowhere", "detected_events": 7}]
    svg = str(tile_map(rows))
    classes = {c: set(re.findall(rf'class="tile (tile-\d)"[^>]*><title>[^<]*\({c}\)', svg))
               for c in ("CN", "US")}
    assert classes["CN"] == {f"tile-{BUCKETS}"} and classes["US"] == {"tile-1"}
    assert 'class="tile tile-0"' in svg  # countries without events
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt; (US)" in svg
    assert "1 country code not on the map" in Page(svg).text
    assert "Nowhere" not in svg
