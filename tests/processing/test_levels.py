"""Level shifts: a lasting step is told once, with its evidence; the calendar, a drift and
noise are not."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processing.levels import Day, LevelShift, LevelWatch

START = date(2026, 1, 5)  # a Monday


def kind(day: date) -> str:
    return {5: "Saturday", 6: "Sunday"}.get(day.weekday(), "workday")


def plant(days: int, base, seed: int = 1, holidays: set[date] = frozenset(),
          idle: set[date] = frozenset()) -> list[Day]:  # fmt: skip
    """A two-shift plant: base ``base(day)`` kW (± 5 % a day), workdays four times the base on
    average, weekends 1.2 times; idle days flat at the base."""
    rng = random.Random(seed)
    out = []
    for n in range(days):
        day = START + timedelta(days=n)
        b = base(n) * rng.uniform(0.95, 1.05)
        k = "holiday" if day in holidays else kind(day)
        shape = 1.05 if day in idle or k == "holiday" else 4.0 if k == "workday" else 1.2
        out.append(Day(day.toordinal(), k, b, b * shape * rng.uniform(0.9, 1.1)))
    return out


def feed(days: list[Day], min_pct: float = 15.0, min_days: int = 7) -> list[LevelShift]:
    watch = LevelWatch(min_pct, min_days)
    return [s for d in days if (s := watch.add(d, floor_kw=2.0)) is not None]


def test_a_step_is_told_once_a_week_after_it_began_with_its_evidence() -> None:
    found = feed(plant(120, lambda n: 100.0 if n < 70 else 125.0))
    assert len(found) == 1
    shift = found[0]
    assert shift.start_date == START + timedelta(days=70)
    assert 7 <= shift.last - shift.start + 1 <= 10
    assert 0.2 < shift.change < 0.3 and shift.before_kw < 105 < shift.after_kw
    assert shift.beyond == shift.days and shift.reference_days >= 14


def test_a_step_down_is_told_too() -> None:
    found = feed(plant(120, lambda n: 100.0 if n < 70 else 70.0))
    assert [round(s.change, 1) for s in found] == [-0.3]


def test_a_load_that_fell_by_more_than_half_but_keeps_working_is_told() -> None:
    """A line closed for good: the whole load, base and peaks alike, at 40 % from day 70. Its
    days use less than half the usual energy, but they keep a working day's shape: not a
    shutdown to leave out, a change to tell."""
    found = feed(plant(120, lambda n: 100.0 if n < 70 else 40.0))
    assert [(s.start_date, round(s.change, 1)) for s in found] == [
        (START + timedelta(days=70), -0.6)
    ]


def test_a_step_is_measured_from_the_level_just_before_it() -> None:
    """The base fell 12 % (less than the 15 % told either way) and a month later rose 30 % from
    there: 14 % above where it stood two months ago, but a 30 % step — told as such, from its
    first day."""

    def base(n: int) -> float:
        return 100.0 if n < 60 else 88.0 if n < 90 else 88.0 * 1.3

    found = feed(plant(130, base))
    assert [(s.start_date, round(s.change, 1)) for s in found] == [
        (START + timedelta(days=90), 0.3)
    ]
    assert 85 < found[0].before_kw < 91


def test_a_shutdown_fortnight_and_holidays_are_not_level_shifts() -> None:
    """Two weeks of idle days at a third of the base (machines off) and a run of holidays:
    neither the drop nor the return is a change."""
    shutdown = {START + timedelta(days=n) for n in range(70, 84)}
    xmas = {START + timedelta(days=n) for n in (100, 101, 102)}

    def base(n: int) -> float:
        return 35.0 if START + timedelta(days=n) in shutdown else 100.0

    assert feed(plant(130, base, idle=shutdown, holidays=xmas)) == []


def test_a_slow_drift_is_followed_not_told() -> None:
    """+30 % over four months (a season): the reference follows it."""
    assert feed(plant(120, lambda n: 100.0 * (1 + 0.3 * n / 120))) == []


def test_a_change_smaller_than_the_threshold_or_shorter_than_a_week_is_not_told() -> None:
    assert feed(plant(120, lambda n: 100.0 if n < 70 else 110.0)) == []
    assert feed(plant(120, lambda n: 140.0 if 70 <= n < 75 else 100.0)) == []


def test_noise_alone_is_rarely_a_level_shift() -> None:
    """Independent day-to-day noise of 5–14 % (the range of real plants' workdays): fewer than
    one notice per 100 meter-weeks."""
    notices, weeks = 0, 0.0
    for seed in range(30):
        rng = random.Random(seed)
        noise = 0.05 + 0.09 * seed / 29
        days = [Day((START + timedelta(days=n)).toordinal(), kind(START + timedelta(days=n)),
                    b := 100.0 * math.exp(rng.gauss(0, noise)), b * 3)
                for n in range(180)]  # fmt: skip
        notices += len(feed(days))
        weeks += 180 / 7
    assert notices / weeks < 0.01


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 10)), min_size=1, max_size=150),
       st.floats(1, 80), st.integers(2, 28))  # fmt: skip
def test_any_days_never_fail_and_a_notice_is_at_least_the_threshold(
    values: list[tuple[float, float]], min_pct: float, min_days: int
) -> None:
    """Whatever a meter's days look like (zero base, huge jumps): no exception, and every
    notice moves the base at least ``min_pct`` and has lasted ``min_days``."""
    days = [Day((START + timedelta(days=n)).toordinal(), kind(START + timedelta(days=n)),
                base, base * shape) for n, (base, shape) in enumerate(values)]  # fmt: skip
    for shift in feed(days, min_pct, min_days):
        assert abs(shift.change) >= min_pct / 100 - 1e-9
        assert shift.last - shift.start + 1 >= min_days
