"""The simulator's day-to-day behaviour: what real plants show and white noise does not."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from simulators.profiles import (
    SCHEDULES,
    DayPlan,
    cooling_at,
    normal_temperature,
    production_share,
    shutdown_days,
)
from simulators.series import site_loads, with_interval
from supplymeter.config import Config, load_config
from supplymeter.records import datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")
ROOT = Path(__file__).resolve().parents[2]


def loads(config: Config, key: tuple[str, str, str], weeks: int = 8) -> np.ndarray:
    start = datetime_to_ns(datetime(2025, 9, 1, tzinfo=TPE))
    rows = site_loads(with_interval(config, 900), key[0], key[1], start,
                      start + weeks * 7 * 86_400 * 10**9, seed=3)[key[2]]  # fmt: skip
    return np.array([kw for _, kw in rows])


def test_deviations_from_the_usual_profile_persist_for_hours() -> None:
    """Real loads' deviation from their hour-of-week median has an autocorrelation of 0.8–0.95
    at 15 min; white noise has none."""
    config = load_config(ROOT / "supplymeter.toml", {})
    kw = loads(config, ("spring-b", "changhua-1", "main"))
    slots = np.arange(len(kw)) % (7 * 96)
    median = np.array([np.median(kw[slots == s]) for s in range(7 * 96)])
    dev = kw - median[slots]
    dev -= dev.mean()
    acf = (dev[:-1] * dev[1:]).sum() / (dev * dev).sum()
    assert acf > 0.75


def test_days_differ_and_shifts_start_at_different_times() -> None:
    config = load_config(ROOT / "supplymeter.toml", {})
    kw = loads(config, ("forge-a", "taichung-1", "main")).reshape(-1, 96)
    workdays = [d for d in range(len(kw)) if d % 7 < 5]  # 2025-09-01 is a Monday
    energy = kw[workdays].sum(axis=1)
    assert energy.std() / energy.mean() > 0.1  # real plants: 0.15–0.35
    mid = (kw[workdays, 24:40].min(axis=1) + kw[workdays, 40:48].max(axis=1)) / 2
    starts = [int(np.argmax(day[24:48] > m)) for day, m in zip(kw[workdays], mid, strict=True)]
    assert max(starts) - min(starts) >= 2  # at least 30 minutes between the earliest and latest


def test_the_shifts_ramp_jitter_and_end_late_sometimes() -> None:
    forging = SCHEDULES["forging"]
    early = DayPlan(True, 1.0, start_min=-30.0, end_min=0.0)
    late = DayPlan(True, 1.0, start_min=30.0, end_min=120.0)
    assert production_share(forging, 8 * 60, 1, early) == 1.0
    assert production_share(forging, 8 * 60, 1, late) == 0.0
    assert 0 < production_share(forging, 8 * 60 + 30, 1, late) < 1  # ramping up
    assert production_share(forging, 25 * 60, 1, late) == 1.0  # an hour past midnight... of
    # the schedule's 24:00 end: the plan's day runs on two hours
    idle = DayPlan(False, 0.0, 0.0, 0.0)
    assert production_share(forging, 10 * 60, 1, idle) == 0.0


def test_lunar_new_year_shutdown_spans_the_holidays_and_two_working_days_each_side() -> None:
    days = shutdown_days("TW", 2026)
    assert date(2026, 2, 17) in days  # New Year's Day 2026
    assert date(2026, 2, 12) in days and date(2026, 2, 24) in days  # Thu–Fri before, Mon–Tue after
    assert date(2026, 2, 11) not in days
    assert date(2026, 3, 2) not in days


def test_air_conditioning_follows_the_seasons_without_steps_at_month_ends() -> None:
    steps = [abs(normal_temperature(d + 1) - normal_temperature(d)) for d in range(365)]
    assert max(steps) < 0.25  # °C per day: no jump on the 1st of a month
    assert cooling_at(14.0, 200) > cooling_at(14.0, 100) > cooling_at(14.0, 15) == 0.0
    assert cooling_at(14.0, 200, anomaly_c=2.0) > cooling_at(14.0, 200)


def test_base_load_shifts_are_logged_and_stay() -> None:
    """A year of one site: base-load shifts happen at about their rate and are labelled."""
    from simulators.faults import NS, FaultLog
    from simulators.ledger import Ledger
    from simulators.plant import BASE_SHIFT_PER_DAY, SiteModel

    config = load_config(ROOT / "supplymeter.toml", {})
    registry = with_interval(config, 900)
    supplier = next(s for s in registry.suppliers if s.id == "spring-b")
    site = supplier.sites[0]
    refs = [r for r in registry.meters() if r.key[:2] == (supplier.id, site.id)]
    log = FaultLog()
    model = SiteModel(supplier, site, refs, 4, Ledger(), log)
    start = datetime_to_ns(datetime(2025, 1, 1, tzinfo=TPE))
    for ts in range(start, start + 365 * 86_400 * 10**9, 3600 * NS):
        model.context(ts)
    shifts = log.of_type("base_shift")
    consumption = sum(1 for r in refs if r.meter.role == "consumption")
    expected = 364 * consumption * BASE_SHIFT_PER_DAY
    assert abs(len(shifts) - expected) <= 4 * expected**0.5 + 1
    assert all(0.6 <= e.details["to"] <= 1.6 for e in shifts)
