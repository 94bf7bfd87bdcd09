from datetime import date

import pytest

from threatscope.analyze import Period, parse_period
from threatscope.errors import UserError


def test_quarter_and_its_baseline_across_a_year_boundary():
    p = parse_period("2018Q1")
    assert (p.start, p.end, p.label, p.unit, p.days) == (
        date(2018, 1, 1), date(2018, 4, 1), "2018Q1", "quarter", 90)
    b = p.baseline()
    assert (b.start, b.end, b.label) == (date(2017, 10, 1), date(2018, 1, 1), "2017Q4")
    assert parse_period("2018-q4").end == date(2019, 1, 1)


def test_month_and_its_baseline():
    p = parse_period("2018-01")
    assert (p.start, p.end, p.days) == (date(2018, 1, 1), date(2018, 2, 1), 31)
    assert p.baseline().label == "2017-12"
    assert parse_period("2016-02").days == 29  # leap year


def test_range_baseline_is_the_same_number_of_days_before():
    p = parse_period("2018-04-01..2018-04-10")
    assert (p.end, p.days, p.label) == (date(2018, 4, 11), 10, "2018-04-01..2018-04-10")
    b = p.baseline()
    assert (b.start, b.end, b.days, b.label) == (
        date(2018, 3, 22), date(2018, 4, 1), 10, "2018-03-22..2018-03-31")
    assert parse_period("2018-01-01..2018-01-01").baseline().label == "2017-12-31..2017-12-31"


def test_containing():
    assert Period.containing(date(2018, 6, 30)).label == "2018Q2"
    assert Period.containing(date(2018, 6, 30), "month").label == "2018-06"


@pytest.mark.parametrize("spec", ["2018Q5", "2018-13", "2018-04-10..2018-04-01",
                                  "2018-02-30..2018-03-01", "last quarter", ""])
def test_bad_periods_are_user_errors(spec):
    with pytest.raises(UserError, match="bad period"):
        parse_period(spec)
