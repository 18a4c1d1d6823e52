"""Public holidays, shared by the simulator's shift schedules and the alerts' day types."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

import holidays


@lru_cache(maxsize=64)
def public_holidays(country: str, year: int) -> frozenset[date]:
    """Public holidays of ``country`` in ``year`` (the ``holidays`` package; Taiwan: "TW")."""
    return frozenset(holidays.country_holidays(country, years=[year]).keys())


def add_years(moment: datetime, years: int) -> datetime:
    """``moment`` moved by whole calendar years; 29 February lands on 28 February in a common
    year (the earlier day: a validity period never grows past the years it states)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February → a year without one
        return moment.replace(year=moment.year + years, day=28)
