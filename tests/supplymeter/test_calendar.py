"""Calendar edges: 29 February, DST changes (a site in Europe/Berlin) and year ends."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboards.macros import panel_range
from processing.accounting.export import previous_month
from processing.accounting.scope3 import Month
from supplymeter.calendar import add_years
from supplymeter.records import datetime_to_ns

BERLIN = ZoneInfo("Europe/Berlin")
TPE = ZoneInfo("Asia/Taipei")
HOUR_NS = 3600 * 10**9


@pytest.mark.parametrize(("moment", "years", "expected"), [
    (datetime(2024, 2, 29, 16, tzinfo=UTC), 3, datetime(2027, 2, 28, 16, tzinfo=UTC)),
    (datetime(2024, 2, 29, 16, tzinfo=UTC), 4, datetime(2028, 2, 29, 16, tzinfo=UTC)),
    (datetime(2024, 2, 29, 0, tzinfo=TPE), -1, datetime(2023, 2, 28, 0, tzinfo=TPE)),
    (datetime(2025, 12, 31, 23, 59, tzinfo=BERLIN), 1,
     datetime(2026, 12, 31, 23, 59, tzinfo=BERLIN)),
    (datetime(2026, 3, 1, tzinfo=TPE), -3, datetime(2023, 3, 1, tzinfo=TPE)),
])  # fmt: skip
def test_add_years_lands_29_february_on_28(
    moment: datetime, years: int, expected: datetime
) -> None:
    assert add_years(moment, years) == expected


@given(st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2098, 12, 31)),
       st.integers(-100, 100))  # fmt: skip
def test_add_years_never_fails_and_keeps_the_wall_time(moment: datetime, years: int) -> None:
    moved = add_years(moment, years)
    assert moved.year == moment.year + years and moved.time() == moment.time()
    assert (moved.month, moved.day) == (moment.month, moment.day) or (
        (moment.month, moment.day, moved.day) == (2, 29, 28))  # fmt: skip


@pytest.mark.parametrize(("month", "tz", "hours"), [
    (Month(2026, 3), BERLIN, 743),   # clocks forward on 29 March
    (Month(2026, 10), BERLIN, 745),  # clocks back on 25 October
    (Month(2024, 2), BERLIN, 29 * 24),
    (Month(2024, 2), TPE, 29 * 24),
    (Month(2025, 2), TPE, 28 * 24),
    (Month(2026, 12), BERLIN, 31 * 24),
])  # fmt: skip
def test_month_bounds_count_the_local_hours(month: Month, tz: ZoneInfo, hours: int) -> None:
    start, end = month.bounds(tz)
    assert (end - start) // HOUR_NS == hours
    assert datetime.fromtimestamp(start / 1e9, tz).replace(tzinfo=None) == datetime(
        month.year, month.month, 1)  # fmt: skip


def test_year_end_months_chain_without_a_gap() -> None:
    dec, jan = Month(2025, 12), Month(2026, 1)
    assert jan.previous() == dec and str(dec.previous()) == "2025-11"
    assert dec.bounds(BERLIN)[1] == jan.bounds(BERLIN)[0]
    new_year_berlin = datetime_to_ns(datetime(2026, 1, 1, 0, 30, tzinfo=BERLIN))
    assert previous_month(new_year_berlin, "Europe/Berlin") == dec
    # 31 December 23:30 UTC is already January in Taipei, not yet in UTC.
    late = datetime_to_ns(datetime(2025, 12, 31, 23, 30, tzinfo=UTC))
    assert previous_month(late, "Asia/Taipei") == dec
    assert previous_month(late, "UTC") == Month(2025, 11)


def test_a_panel_shifted_by_a_year_from_29_february() -> None:
    """Grafana's "1y" time shift from a leap day: calendar years, landing on 28 February."""
    start = datetime_to_ns(datetime(2024, 2, 1, tzinfo=TPE))
    end = datetime_to_ns(datetime(2024, 2, 29, 12, tzinfo=TPE))
    shifted = panel_range({"timeShift": "1y"}, start, end, "Asia/Taipei")
    assert shifted == (datetime_to_ns(datetime(2023, 2, 1, tzinfo=TPE)),
                       datetime_to_ns(datetime(2023, 2, 28, 12, tzinfo=TPE)))  # fmt: skip
