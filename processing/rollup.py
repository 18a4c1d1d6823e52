"""Cumulative registers → hourly consumption, with every correction labelled.

A meter reports a cumulative register (kWh or m³) at device time. Consumption over an hour is
the register's increase between the hour's two boundaries, times the meter's CT multiplier.
Where no reading falls exactly on a boundary, the register there is interpolated linearly
between the readings either side — the same as apportioning an interval's consumption over
the hours it spans in proportion to time.

Register steps are labelled before they are summed, and the labels are stored with the hourly
rollup (``flags``) so an auditor sees every correction:

* ``normal`` — the register rose (or stayed) no faster than the meter's largest plausible load.
* ``glitch`` — one reading fell (a momentary zero or garbage value) or leapt implausibly, and
  the next reading returned to the path before it: the odd reading is left out, the step
  around it is measured from its neighbours.
* ``rollover`` — it fell, and wrapping at the registry's rollover value gives a plausible
  step (with no plausible-power limit known: a fall of more than half the rollover value):
  the step is ``new + rollover - old``.
* ``reset`` — it fell otherwise (meter replaced or reset). What the new meter counted before
  its first reading is unknown, so the step is estimated at the meter's rate over the nearest
  normal step (capped at ``new``, the most it can have been) and the hours it spans are
  ``estimated``.
* ``implausible`` — it rose faster than the meter's ``max_power`` (registry; see
  :func:`max_power`) allows: the step is rejected, not summed, and its hours are
  ``estimated`` with the step uncovered.

An hour's ``coverage`` is the fraction of it spanned by reading pairs no further apart than
``max_gap`` whose step was measured (normal, glitch or rollover); an hour below full coverage is
``estimated`` (its consumption was apportioned across a gap or estimated across a reset).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from supplymeter.config import MeterRef

HOUR_NS = 3600 * 10**9
UNMEASURED = frozenset({"reset", "implausible"})
"""Step labels whose increase was estimated or rejected rather than measured."""


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


def max_power(ref: MeterRef) -> float | None:
    """Largest plausible load of a meter [kW or m³/h]: the registry's ``max_power``, else for
    an electricity meter 3 × its site's contract capacity (a circuit cannot draw much more than
    the whole site's contract), else unknown (``None``: no step is ever implausible)."""
    if ref.meter.max_power is not None:
        return ref.meter.max_power
    if ref.meter.carrier == "electricity" and ref.site.contract_capacity_kw:
        return 3 * ref.site.contract_capacity_kw
    return None


def step_label(
    old: float, new: float, rollover: float | None, max_step: float | None = None
) -> tuple[str, float]:
    """Label one register step and return its measured increase. [register units]

    ``max_step`` is the largest plausible increase over the step (``None``: no limit). A
    ``reset`` returns ``new`` (an upper bound: the caller estimates), ``implausible`` 0.

    >>> label, increase = step_label(99_999.5, 0.7, 100_000.0)
    >>> label, round(increase, 6)
    ('rollover', 1.2)
    """
    if new >= old:
        if max_step is not None and new - old > max_step:
            return "implausible", 0.0
        return "normal", new - old
    if rollover:
        wrapped = new + rollover - old
        plausible = wrapped <= max_step if max_step is not None else old - new > rollover / 2
        if plausible:
            return "rollover", wrapped
    return "reset", new


def _max_rate(ref: MeterRef) -> float | None:
    """Fastest plausible register rise, from :func:`max_power`. [register units per ns]"""
    power = max_power(ref)
    return None if power is None else power / ref.meter.multiplier / HOUR_NS


def _max_steps(series: RegisterSeries) -> list[float | None]:
    """Largest plausible register increase of each step. [register units]"""
    per_ns = _max_rate(series.ref)
    ts = series.ts_ns
    if per_ns is None:
        return [None] * (len(ts) - 1)
    return [(ts[i + 1] - ts[i]) * per_ns for i in range(len(ts) - 1)]


def drop_glitches(series: RegisterSeries) -> tuple[RegisterSeries, list[int]]:
    """Leave out momentary odd readings; returns the cleaned series and, for each step of it
    that bridged a glitch, that step's index."""
    ts, reg = list(series.ts_ns), list(series.register)
    per_ns = _max_rate(series.ref)
    keep_ts, keep_reg, bridged = [ts[0]], [reg[0]], []
    for i in range(1, len(ts)):
        prev = keep_reg[-1]
        if i + 1 < len(ts):
            nxt = reg[i + 1]
            fell = reg[i] < prev
            leapt = per_ns is not None and reg[i] - prev > (ts[i] - keep_ts[-1]) * per_ns
            back = nxt >= prev and (
                per_ns is None or nxt - prev <= (ts[i + 1] - keep_ts[-1]) * per_ns
            )
            if (fell or (leapt and nxt < reg[i])) and back:
                bridged.append(len(keep_ts) - 1)
                continue
        keep_ts.append(ts[i])
        keep_reg.append(reg[i])
    return RegisterSeries(series.ref, tuple(keep_ts), tuple(keep_reg)), bridged


def unwrap(series: RegisterSeries) -> tuple[list[float], list[str]]:
    """The register as a continuous cumulative quantity, and the label of each step
    (``labels[i]`` describes the step from reading ``i`` to ``i + 1``). [register units]

    ``series`` should already be free of glitches (:func:`drop_glitches`).
    """
    rollover = series.ref.meter.rollover
    reg, ts = series.register, series.ts_ns
    limits = _max_steps(series)
    steps: list[tuple[str, float]] = [
        step_label(reg[i], reg[i + 1], rollover, limits[i]) for i in range(len(reg) - 1)
    ]
    for i, (label, upper) in enumerate(steps):
        if label == "reset":
            steps[i] = ("reset", min(upper, _nearest_rate(steps, ts, i) * (ts[i + 1] - ts[i])))
    cumulative = [0.0] * len(reg)
    for i, (_, increase) in enumerate(steps):
        cumulative[i + 1] = cumulative[i] + increase
    return cumulative, [label for label, _ in steps]


def _nearest_rate(steps: list[tuple[str, float]], ts: tuple[int, ...], i: int) -> float:
    """Register rate of the normal step nearest to step ``i`` (before it first). [units/ns]"""
    for j in sorted(range(len(steps)), key=lambda j: (abs(j - i), j > i)):
        if j != i and steps[j][0] == "normal" and ts[j + 1] > ts[j]:
            return steps[j][1] / (ts[j + 1] - ts[j])
    return float("inf")


def measure(series: RegisterSeries) -> tuple[RegisterSeries, list[float], list[str]]:
    """Glitches left out, the register unwrapped: (the series used, its cumulative register
    [register units], each step's label — ``glitch`` where a step bridged a left-out
    reading)."""
    series, bridged = drop_glitches(series)
    cumulative, labels = unwrap(series)
    for i in bridged:
        if i < len(labels) and labels[i] == "normal":
            labels[i] = "glitch"
    return series, cumulative, labels


def cumulative_at(ts: tuple[int, ...], cumulative: list[float], t: int) -> float | None:
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
    if len(series.ts_ns) < 2:
        return []
    series, cumulative, labels = measure(series)
    ts = series.ts_ns
    ref = series.ref
    multiplier = ref.meter.multiplier
    out = []
    for hour in range(start_ns - start_ns % HOUR_NS, end_ns, HOUR_NS):
        begin = cumulative_at(ts, cumulative, hour)
        finish = cumulative_at(ts, cumulative, hour + HOUR_NS)
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
            if ts[i + 1] - ts[i] <= max_gap_ns and labels[i] not in UNMEASURED:
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
