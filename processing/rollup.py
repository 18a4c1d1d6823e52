"""Cumulative registers → hourly consumption, with every correction labelled.

A meter reports a cumulative register (kWh or m³) at device time. Consumption over an hour is
the register's increase between the hour's two boundaries, times the meter's CT multiplier.
Where no reading falls exactly on a boundary, the register there is interpolated linearly
between the readings either side — the same as apportioning an interval's consumption over
the hours it spans in proportion to time.

Register steps are labelled before they are summed:

* ``normal`` — the register rose (or stayed).
* ``rollover`` — it fell by more than half the meter's rollover value: it wrapped at the
  rollover value (registry), so the step is ``new + rollover - old``.
* ``reset`` — it fell otherwise (meter replaced or reset): the new register is taken to have
  started from zero, so the step is ``new``. First version: the quality-flag issue refines
  this (glitches, implausible jumps) — until then a reset is flagged on the hour for review.

An hour's ``coverage`` is the fraction of it spanned by reading pairs no further apart than
``max_gap``; an hour below full coverage is ``estimated`` (its consumption was apportioned
across a gap).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from supplymeter.config import MeterRef

HOUR_NS = 3600 * 10**9


@dataclass(frozen=True, slots=True)
class RegisterSeries:
    """Register readings of one meter, sorted by time, one per timestamp. [register units]"""

    ref: MeterRef
    ts_ns: tuple[int, ...]
    register: tuple[float, ...]

    @classmethod
    def from_points(cls, ref: MeterRef, points: list[tuple[int, float]]) -> RegisterSeries:
        """Sort and de-duplicate (the last value for a timestamp wins, as in InfluxDB)."""
        by_ts = dict(sorted(points, key=lambda p: p[0]))
        return cls(ref, tuple(by_ts), tuple(by_ts.values()))


@dataclass(frozen=True, slots=True)
class HourlyConsumption:
    """Consumption of one meter in one UTC hour. ``consumption`` is in ``unit`` (kWh or m³),
    CT multiplier applied."""

    supplier: str
    site: str
    meter: str
    carrier: str
    unit: str
    hour_start_ns: int
    consumption: float
    coverage: float
    """Fraction of the hour spanned by readings at most ``max_gap`` apart, 0–1."""
    readings: int
    """Readings with timestamps inside the hour."""
    flags: tuple[str, ...] = ()
    """Labels of non-normal register steps touching the hour (``rollover``, ``reset``)."""

    @property
    def estimated(self) -> bool:
        return self.coverage < 1.0 - 1e-9


def step_label(old: float, new: float, rollover: float | None) -> tuple[str, float]:
    """Label one register step and return its increase. [register units]

    >>> label, increase = step_label(99_999.5, 0.7, 100_000.0)
    >>> label, round(increase, 6)
    ('rollover', 1.2)
    """
    if new >= old:
        return "normal", new - old
    if rollover and old - new > rollover / 2:
        return "rollover", new + rollover - old
    return "reset", new


def unwrap(series: RegisterSeries) -> tuple[list[float], list[str]]:
    """The register as a continuous cumulative quantity, and the label of each step
    (``labels[i]`` describes the step from reading ``i`` to ``i + 1``). [register units]"""
    rollover = series.ref.meter.rollover
    cumulative = [0.0] * len(series.register)
    labels: list[str] = []
    for i in range(1, len(series.register)):
        label, increase = step_label(series.register[i - 1], series.register[i], rollover)
        cumulative[i] = cumulative[i - 1] + increase
        labels.append(label)
    return cumulative, labels


def _at(ts: tuple[int, ...], cumulative: list[float], t: int) -> float | None:
    """The cumulative register at ``t``, interpolated; ``None`` outside the readings."""
    i = bisect.bisect_left(ts, t)
    if i < len(ts) and ts[i] == t:
        return cumulative[i]
    if i == 0 or i == len(ts):
        return None
    t0, t1 = ts[i - 1], ts[i]
    return cumulative[i - 1] + (cumulative[i] - cumulative[i - 1]) * (t - t0) / (t1 - t0)


def hourly_consumption(
    series: RegisterSeries, start_ns: int, end_ns: int, max_gap_ns: int
) -> list[HourlyConsumption]:
    """Consumption of every hour in ``[start_ns, end_ns)`` bracketed by readings.

    Parameters
    ----------
    series : RegisterSeries
        The meter's readings, reaching before ``start_ns`` and after ``end_ns`` where possible.
    start_ns, end_ns : int
        UTC hour boundaries. [epoch ns]
    max_gap_ns : int
        Readings further apart than this leave the hours between them ``estimated``. [ns]

    Returns
    -------
    list of HourlyConsumption
        One per hour whose both boundaries lie within the readings; hours outside are left
        out (nothing is known about them). [kWh or m³, multiplier applied]
    """
    ts = series.ts_ns
    if len(ts) < 2:
        return []
    cumulative, labels = unwrap(series)
    ref = series.ref
    multiplier = ref.meter.multiplier
    out = []
    for hour in range(start_ns - start_ns % HOUR_NS, end_ns, HOUR_NS):
        begin, finish = _at(ts, cumulative, hour), _at(ts, cumulative, hour + HOUR_NS)
        if begin is None or finish is None:
            continue
        first = max(bisect.bisect_right(ts, hour) - 1, 0)
        last = bisect.bisect_left(ts, hour + HOUR_NS)
        covered = 0
        flags = set()
        for i in range(first, min(last, len(ts) - 1)):
            lo, hi = max(ts[i], hour), min(ts[i + 1], hour + HOUR_NS)
            if hi <= lo:
                continue
            if ts[i + 1] - ts[i] <= max_gap_ns:
                covered += hi - lo
            if labels[i] != "normal":
                flags.add(labels[i])
        inside = bisect.bisect_left(ts, hour + HOUR_NS) - bisect.bisect_left(ts, hour)
        out.append(
            HourlyConsumption(
                supplier=ref.supplier.id,
                site=ref.site.id,
                meter=ref.meter.id,
                carrier=ref.meter.carrier,
                unit=ref.unit,
                hour_start_ns=hour,
                consumption=(finish - begin) * multiplier,
                coverage=covered / HOUR_NS,
                readings=inside,
                flags=tuple(sorted(flags)),
            )
        )
    return out
