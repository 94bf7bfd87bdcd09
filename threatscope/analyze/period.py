"""Periods: a quarter (``2018Q2``), a month (``2018-05``), or any dates (``2018-04-01..2018-06-30``).

    >>> p = Period.parse("2018Q2")
    >>> p.start, p.end, p.label
    (datetime.date(2018, 4, 1), datetime.date(2018, 7, 1), '2018Q2')
    >>> p.baseline().label
    '2018Q1'

``end`` is exclusive. The baseline is the period of the same length just before: the previous
quarter or month for those, the same number of days before for a date range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from threatscope.errors import UserError

_Q = re.compile(r"^(\d{4})-?Q([1-4])$", re.I)
_M = re.compile(r"^(\d{4})-(\d{2})$")
_R = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # exclusive
    label: str
    unit: str  # 'quarter' | 'month' | 'range'

    @classmethod
    def parse(cls, spec: str) -> Period:
        spec = spec.strip()
        if m := _Q.match(spec):
            return cls.quarter(int(m[1]), int(m[2]))
        if m := _M.match(spec):
            y, mo = int(m[1]), int(m[2])
            if not 1 <= mo <= 12:
                raise UserError(f"bad period {spec!r}: month must be 01..12")
            return cls.month(y, mo)
        if m := _R.match(spec):
            try:
                a, b = date.fromisoformat(m[1]), date.fromisoformat(m[2])
            except ValueError as e:
                raise UserError(f"bad period {spec!r}: {e}") from None
            if b < a:
                raise UserError(f"bad period {spec!r}: end before start")
            return cls(a, b + timedelta(days=1), f"{a}..{b}", "range")
        raise UserError(f"bad period {spec!r}: use 2018Q2, 2018-05 or 2018-04-01..2018-06-30")

    @classmethod
    def quarter(cls, year: int, q: int) -> Period:
        start = date(year, 3 * (q - 1) + 1, 1)
        end = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
        return cls(start, end, f"{year}Q{q}", "quarter")

    @classmethod
    def month(cls, year: int, mo: int) -> Period:
        end = date(year + 1, 1, 1) if mo == 12 else date(year, mo + 1, 1)
        return cls(date(year, mo, 1), end, f"{year}-{mo:02d}", "month")

    @classmethod
    def containing(cls, d: date, unit: str = "quarter") -> Period:
        if unit == "month":
            return cls.month(d.year, d.month)
        return cls.quarter(d.year, (d.month - 1) // 3 + 1)

    def baseline(self) -> Period:
        if self.unit == "quarter":
            y, q = self.start.year, (self.start.month - 1) // 3 + 1
            return Period.quarter(y - 1, 4) if q == 1 else Period.quarter(y, q - 1)
        if self.unit == "month":
            y, m = self.start.year, self.start.month
            return Period.month(y - 1, 12) if m == 1 else Period.month(y, m - 1)
        days = (self.end - self.start).days
        b_start = self.start - timedelta(days=days)
        last = self.start - timedelta(days=1)
        return Period(b_start, self.start, f"{b_start}..{last}", "range")

    @property
    def days(self) -> int:
        return (self.end - self.start).days
