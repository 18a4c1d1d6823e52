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


def working_share(schedule: Schedule, local: datetime, country: str = "TW") -> float:
    """Share of production running in the local hour starting at ``local``: 0 or 1, with a
    lunch-break dip in single-shift plants and a shift-change dip at 16:00 in multi-shift ones."""
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
        return 1.0
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
