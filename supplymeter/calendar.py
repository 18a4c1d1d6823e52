"""Public holidays, shared by the simulator's shift schedules and the alerts' day types."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays


@lru_cache(maxsize=64)
def public_holidays(country: str, year: int) -> frozenset[date]:
    """Public holidays of ``country`` in ``year`` (the ``holidays`` package; Taiwan: "TW")."""
    return frozenset(holidays.country_holidays(country, years=[year]).keys())
