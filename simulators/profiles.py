"""What shapes a simulated plant's load: shift schedules, equipment cycles, climate, sunshine.

Everything here is deterministic; randomness (noise, weather, press strokes) is drawn by the
caller from its seeded generators. The figures are chosen for plausibility, so that dashboards
and alert tests see the patterns real plants show — none of them feeds the accounting.

Shift schedules by supplier kind (site local time; a supplier's ``simulation`` table overrides):

==============  ======  ========  ======  ========  ==============================================
kind            shifts  saturday  sunday  holidays  why
==============  ======  ========  ======  ========  ==============================================
forging         2       half      no      no        presses and induction heaters, 08:00–24:00
springs         3       half      no      no        coiling and tempering around the clock
heat_treatment  3       full      yes     no        furnaces hold temperature; batch cycles
machining       2       off       no      no        CNC cells, two shifts, weekdays
other           1       off       no      no        08:00–17:00
==============  ======  ========  ======  ========  ==============================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from supplymeter.calendar import public_holidays
from supplymeter.config import Supplier


@dataclass(frozen=True)
class Schedule:
    shifts: int
    saturday: str
    sunday: bool
    holidays: bool


SCHEDULES: dict[str, Schedule] = {
    "forging": Schedule(2, "half", False, False),
    "springs": Schedule(3, "half", False, False),
    "heat_treatment": Schedule(3, "full", True, False),
    "machining": Schedule(2, "off", False, False),
    "other": Schedule(1, "off", False, False),
}


def schedule_of(supplier: Supplier) -> Schedule:
    """The supplier's schedule: its ``simulation`` table over its kind's default."""
    default, sim = SCHEDULES[supplier.kind], supplier.simulation
    return Schedule(
        shifts=sim.shifts if sim.shifts is not None else default.shifts,
        saturday=sim.saturday if sim.saturday is not None else default.saturday,
        sunday=sim.sunday if sim.sunday is not None else default.sunday,
        holidays=sim.holidays if sim.holidays is not None else default.holidays,
    )


NIGHT_SHARE = 0.15
"""Share of the day's production a three-shift plant runs on the night shift (00:00–08:00):
a reduced crew. Calibrated so that night/day ratios fall in the range of the real loads in
``data/real-loads`` (0.19–0.58; ``bench/bench_realism.py``)."""


def working_share(schedule: Schedule, local: datetime, country: str = "TW") -> float:
    """Nominal share of production running in the local hour starting at ``local``: the
    schedule alone (no day-to-day variation; :func:`production_share` adds it), with a
    lunch-break dip in single-shift plants, a shift-change dip at 16:00 in multi-shift ones and
    a reduced night shift in three-shift ones."""
    day = local.date()
    if not schedule.holidays and day in public_holidays(country, local.year):
        return 0.0
    weekday, hour = local.weekday(), local.hour
    if weekday == 6 and not schedule.sunday:
        return 0.0
    if weekday == 5:
        if schedule.saturday == "off":
            return 0.0
        if schedule.saturday == "half":
            return 1.0 if 8 <= hour < 16 else 0.0
    if schedule.shifts == 3:
        return NIGHT_SHARE if hour < 8 else (0.85 if hour == 16 else 1.0)
    if schedule.shifts == 2:
        if hour < 8:
            return 0.0
        return 0.85 if hour == 16 else 1.0
    if not 8 <= hour < 17:
        return 0.0
    return 0.4 if hour == 12 else 1.0


# --- climate ------------------------------------------------------------------------------

MONTHLY_MEAN_C = (16.5, 17.3, 19.8, 23.4, 26.4, 28.2, 29.0, 28.6, 27.7, 25.3, 22.2, 18.2)
"""Approximate monthly mean air temperature in western Taiwan's plains [°C], January first
(rounded from the Central Weather Administration's 1991–2020 climate normals for Taichung and
Tainan). Drives the air-conditioning load only; plausibility, not data."""

DIURNAL_AMPLITUDE_C = 3.5
"""Half the typical day–night temperature swing [°C]; warmest at 14:00."""

COOLING_BASE_C = 22.0
"""Temperature above which plants run air conditioning [°C]."""


def cooling(local_hour: float, month: int) -> float:
    """Air-conditioning demand in [0, 1]: 1 at the hottest hour of the year."""
    temp = MONTHLY_MEAN_C[month - 1] + DIURNAL_AMPLITUDE_C * math.cos(
        (local_hour - 14.0) / 24.0 * 2 * math.pi
    )
    hottest = max(MONTHLY_MEAN_C) + DIURNAL_AMPLITUDE_C
    return max(0.0, temp - COOLING_BASE_C) / (hottest - COOLING_BASE_C)


# --- sunshine -----------------------------------------------------------------------------

LATITUDE_DEG = 23.5
"""Taiwan's western plains lie about on the Tropic of Cancer."""

PV_PERFORMANCE_RATIO = 0.8
"""Typical share of clear-sky DC output a rooftop system delivers (inverter, heat, soiling)."""


def clear_sky(local_hour: float, day_of_year: int) -> float:
    """Clear-sky output of a flat PV array as a share of its peak power, in [0, 1].

    Solar elevation from the declination (Cooper's formula) and the hour angle at local solar
    time (local clock time; Taiwan's clocks are within 10 minutes of solar time).
    """
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365)
    lat = math.radians(LATITUDE_DEG)
    hour_angle = math.radians(15.0 * (local_hour - 12.0))
    sin_elev = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(
        hour_angle
    )
    if sin_elev <= 0:
        return 0.0
    return PV_PERFORMANCE_RATIO * sin_elev**1.15


# --- equipment ------------------------------------------------------------------------------

Segments = tuple[tuple[float, float], ...]
"""A periodic piecewise-constant profile: (share of the period, level) pairs; mean level 1."""

CYCLES: dict[str, tuple[float, Segments]] = {
    # Induction billet heaters: heat, then idle while the press forms the part.
    "induction": (12.0, ((0.6, 1.6), (0.4, 0.1))),
    # Batch furnace: heat-up at full burner/heater power, soak, then unload/reload.
    "furnace": (480.0, ((0.2, 2.0), (0.6, 0.85), (0.2, 0.45))),
    # Screw compressor: load/unload.
    "compressor": (6.0, ((0.7, 1.3), (0.3, 0.3))),
}
"""Default period [min] and profile of each cycling equipment."""

MACHINE_RUN_MIN = 40.0
"""Mean length of one large machine's run (``machines`` equipment) [min], by default."""
MACHINE_DUTY = 0.5
"""Share of the working time each large machine runs. With three machines of 45-min runs (the
example forge) the load over a quarter-hour ranges from nothing to twice its mean and its
15-min steps match the steel plant's in ``bench/data/heavy`` (p90 0.79 of the mean; the
heavy-industry table of ``bench/bench_realism.py``)."""
MACHINE_RUN_SHAPE = 2.0
"""Runs and pauses are gamma-distributed with this shape: few very short runs (a billet
heated, a batch charged), some long ones."""

PRESS_STROKE_SHARE = 0.2
PRESS_STROKE_LEVEL = 3.0
PRESS_IDLE_LEVEL = (1.0 - PRESS_STROKE_SHARE * PRESS_STROKE_LEVEL) / (1.0 - PRESS_STROKE_SHARE)
"""A forging press draws heavy peaks for a fifth of the minutes (mean level 1)."""


def _integral(t: float, period: float, segments: Segments) -> float:
    """∫₀ᵗ of the periodic profile."""
    whole, rest = divmod(t, period)
    total = whole * period * sum(share * level for share, level in segments)
    for share, level in segments:
        length = share * period
        if rest <= length:
            return total + rest * level
        total += length * level
        rest -= length
    return total


def cycle_mean(t0_s: float, dt_s: float, period_s: float, segments: Segments) -> float:
    """Mean of the periodic profile over ``[t0, t0 + dt)`` (times in seconds)."""
    return (_integral(t0_s + dt_s, period_s, segments) - _integral(t0_s, period_s, segments)) / dt_s


# --- day-to-day behaviour ------------------------------------------------------------------
#
# Real plants' days differ (``data/real-loads``, measured by ``bench/bench_realism.py``): days
# fall into load levels that persist for days, shifts start and end 15–45 min off the clock,
# some idle days see production, plants shut down around the Lunar New Year. A :class:`DayPlan`
# holds one site's draws for one local day; the figures below are calibrated so that every
# statistic of the simulated plants falls within the range of the real series.

LEVELS = (1.0, 0.7, 1.2)
"""Day load levels: normal, reduced (fewer lines running), busy."""
LEVEL_STAY = 0.75
"""Probability that a working day keeps the level of the working day before."""
DAY_SIGMA = 0.08
"""Lognormal spread of a day's production around its level."""
START_SIGMA_MIN, END_SIGMA_MIN = 15.0, 25.0
"""Spread of a shift's start and end around the schedule [min] (clipped at ± 45 / −45 … +180)."""
LONG_SHIFT = 0.08
"""Probability that the last shift runs 1–3 h long."""
RAMP_MIN = 30.0
"""Machines start and stop over this long at the beginning and end of production [min]."""
LUNCH_SKIPPED = 0.15
IDLE_DAY_PRODUCTION = 0.1
"""Probability that a day the schedule keeps idle (Sunday, holiday, Saturday off) sees
production: half a day (08:00–14:00 ± jitter) at 50–90% of the level."""
SHUTDOWN_EXTRA_DAYS = 2
"""Working days added on either side of the Lunar New Year holidays as a plant shutdown."""


@dataclass(frozen=True)
class DayPlan:
    """One site's production plan for one local day."""

    works: bool
    """Whether production runs at all."""
    level: float
    """Production level of the day (times the meter's production share)."""
    start_min: float
    """Production start, minutes after the schedule's (08:00) start."""
    end_min: float
    """Production end, minutes after the schedule's end (17:00, 16:00 on half Saturdays,
    24:00 for two shifts)."""
    half_day: bool = False
    """An idle-day production run (08:00–14:00)."""
    lunch: bool = True
    temperature_anomaly_c: float = 0.0
    """The day's weather: air temperature off the climate normal [°C]."""


@lru_cache(maxsize=64)
def shutdown_days(country: str, year: int) -> frozenset:
    """The Lunar New Year shutdown: the longest run of public holidays in January–February
    (weekends joining it), widened by ``SHUTDOWN_EXTRA_DAYS`` working days on each side."""
    from datetime import timedelta

    holidays = public_holidays(country, year)
    early = sorted(d for d in holidays if d.month <= 2)
    if not early:
        return frozenset()
    runs: list[list] = []
    for d in early:
        if runs and (d - runs[-1][-1]).days <= 3:
            runs[-1].append(d)
        else:
            runs.append([d])
    run = max(runs, key=len)
    if len(run) < 3:
        return frozenset()
    first, last = run[0], run[-1]
    days = {first + timedelta(days=k) for k in range((last - first).days + 1)}
    for step in (-1, 1):
        edge, added = (first if step < 0 else last), 0
        while added < SHUTDOWN_EXTRA_DAYS:
            edge += timedelta(days=step)
            days.add(edge)
            if edge.weekday() < 5:
                added += 1
    return frozenset(days)


def draw_day_plan(rng, schedule: Schedule, day, country: str, previous: DayPlan | None,
                  anomaly: float) -> DayPlan:  # fmt: skip
    """The plan of local ``day`` (a :class:`datetime.date`), drawn from ``rng``."""
    holiday = day in public_holidays(country, day.year)
    scheduled = not (
        (holiday and not schedule.holidays)
        or (day.weekday() == 6 and not schedule.sunday)
        or (day.weekday() == 5 and schedule.saturday == "off")
    )
    if day in shutdown_days(country, day.year):
        scheduled = False
    start = max(-45.0, min(45.0, rng.gauss(0.0, START_SIGMA_MIN)))
    end = max(-45.0, min(45.0, rng.gauss(0.0, END_SIGMA_MIN)))
    if rng.random() < LONG_SHIFT:
        end = rng.uniform(60.0, 180.0)
    lunch = rng.random() >= LUNCH_SKIPPED
    previous_level = previous.level if previous is not None and previous.works else 1.0
    base_level = min(LEVELS, key=lambda v: abs(v - previous_level))
    level = base_level if rng.random() < LEVEL_STAY else rng.choice(LEVELS)
    level *= math.exp(rng.gauss(0.0, DAY_SIGMA))
    if scheduled:
        return DayPlan(True, level, start, end, lunch=lunch, temperature_anomaly_c=anomaly)
    if rng.random() < IDLE_DAY_PRODUCTION and day not in shutdown_days(country, day.year):
        return DayPlan(True, level * rng.uniform(0.5, 0.9), start, end, half_day=True,
                       temperature_anomaly_c=anomaly)  # fmt: skip
    return DayPlan(False, 0.0, 0.0, 0.0, temperature_anomaly_c=anomaly)


def _ramp(minute: float, start: float, end: float) -> float:
    """1 inside [start, end), ramping linearly over ``RAMP_MIN`` at both edges, 0 outside."""
    up = (minute - start) / RAMP_MIN + 0.5
    down = (end - minute) / RAMP_MIN + 0.5
    return max(0.0, min(1.0, up, down))


def production_share(schedule: Schedule, minute: float, weekday: int, plan: DayPlan) -> float:
    """Share of production running at ``minute`` after local midnight on a day with ``plan``
    (the schedule's shifts, moved by the plan's jitter, ramped at the edges)."""
    if not plan.works:
        return 0.0
    start = 8 * 60 + plan.start_min
    if plan.half_day:
        return _ramp(minute, start, 14 * 60 + plan.end_min) * plan.level
    if weekday == 5 and schedule.saturday == "half":
        end = 16 * 60
    elif schedule.shifts == 1:
        end = 17 * 60
    else:
        end = 24 * 60
    end += plan.end_min
    share = _ramp(minute, start, end)
    if schedule.shifts == 3 and not (weekday == 5 and schedule.saturday == "half"):
        share = max(share, NIGHT_SHARE if minute < start else 0.0)
        if minute >= end:  # the night shift after a (long) day
            share = max(share, NIGHT_SHARE)
    if schedule.shifts == 1 and plan.lunch and 12 * 60 <= minute < 13 * 60:
        share *= 0.4
    if schedule.shifts >= 2 and 16 * 60 <= minute < 17 * 60:
        share *= 0.85
    return share * plan.level


DAILY_ANOMALY_SIGMA_C = 1.8
"""Standard deviation of a day's temperature off the climate normal [°C] …"""
DAILY_ANOMALY_PERSISTENCE = 0.7
"""… and its day-to-day autocorrelation (weather spells last a few days)."""


def normal_temperature(day_of_year: float) -> float:
    """Climate-normal daily mean temperature [°C]: the monthly means of
    :data:`MONTHLY_MEAN_C` placed mid-month and joined smoothly (no steps at month ends)."""
    mids = [15.0 + 30.44 * k for k in range(12)]
    x = day_of_year
    for k in range(12):
        a, b = mids[k], mids[(k + 1) % 12] + (365.25 if k == 11 else 0.0)
        if x < mids[0]:
            x += 365.25
        if a <= x < b:
            w = (1 - math.cos(math.pi * (x - a) / (b - a))) / 2
            return MONTHLY_MEAN_C[k] * (1 - w) + MONTHLY_MEAN_C[(k + 1) % 12] * w
    return MONTHLY_MEAN_C[0]


def cooling_at(local_hour: float, day_of_year: float, anomaly_c: float = 0.0) -> float:
    """Air-conditioning demand in [0, 1] on a day ``anomaly_c`` off the normal (1 at the
    hottest hour of a normal year's hottest day)."""
    temp = (
        normal_temperature(day_of_year)
        + anomaly_c
        + DIURNAL_AMPLITUDE_C * math.cos((local_hour - 14.0) / 24.0 * 2 * math.pi)
    )
    hottest = max(MONTHLY_MEAN_C) + DIURNAL_AMPLITUDE_C
    return max(0.0, temp - COOLING_BASE_C) / (hottest - COOLING_BASE_C)
