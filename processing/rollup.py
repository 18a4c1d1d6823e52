"""Cumulative registers → hourly consumption, with every correction labelled.

A meter reports a cumulative register (kWh, m³, kg) at device time. Consumption over an hour is
the register's increase between the hour's two boundaries, times the CT multiplier in force.
Where no reading falls exactly on a boundary, the register there is interpolated linearly
between the readings either side — the same as apportioning a step's consumption over the
hours it spans in proportion to time.

Register steps are labelled before they are summed, and the labels are stored with the hourly
rollup (``flags``) so an auditor sees every correction:

* ``normal`` — the register rose (or stayed) no faster than the meter's largest plausible load.
* ``glitch`` — one reading leapt implausibly and the next returned to the path before it: the
  odd reading is left out and the step around it measured from its neighbours.
* ``fall`` — one reading fell and the next rose above the reading before it. That is either a
  momentary odd value or a meter exchange whose new meter passed the old register by its next
  reading (45 → 3 → 50): the data cannot tell, so the step around the odd reading is
  *estimated* — at the register's own path around it (45 → 50; exact for a momentary odd
  value, the least an exchange can have used) — and a quality issue asks for the meter event.
  With the event recorded it is measured exactly.
* ``rollover`` — it fell, and wrapping at the rollover value gives a plausible step (with no
  plausible-power limit known: a fall of more than half the rollover value): the step is
  ``new + rollover - old``.
* ``reset`` — it fell otherwise (meter replaced or reset without a recorded event): estimated.
* ``implausible`` — it rose faster than the meter's ``max_power`` allows: the step is rejected
  and estimated instead.
* ``exchange`` / ``ct_change`` — the step crosses a meter event of the registry: measured
  exactly from the event's stated registers and the multiplier of each side.

Rate-estimated steps (``reset``, ``implausible``) take the meter's mean rate over up to an hour
of measured steps on each side of them (the mean of both sides where both exist), so a single
flat step next to them does not turn the estimate into zero.

An hour's ``coverage`` is the fraction of it spanned by measured steps no longer than
``max_gap``; its ``estimated_consumption`` is the part of its consumption that came from the
other steps (apportioned across a gap, or estimated). Measured + estimated = consumption.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from supplymeter.config import MeterRef, RegisterSegment
from supplymeter.records import HourlyConsumption

HOUR_NS = 3600 * 10**9
UNMEASURED = frozenset({"reset", "implausible", "fall"})
"""Step labels whose increase was estimated rather than measured."""
RATE_ESTIMATED = frozenset({"reset", "implausible"})
"""Estimated from the neighbouring rate (a fall keeps the register's path around it)."""
UNEXPLAINED_FALLS = frozenset({"reset", "fall"})
"""Labels that ask for a meter event (a quality issue is raised for each)."""
RATE_SPAN_NS = HOUR_NS
"""Measured steps up to this far on each side of an estimated step give its rate."""


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
class Measured:
    """A meter's readings as one continuous cumulative quantity.

    ``cumulative[i]`` is the consumption from the first reading to ``ts_ns[i]`` [unit,
    multipliers applied]; ``labels[i]`` describes the step from ``i`` to ``i + 1``. Synthetic
    points at meter events appear twice at the event time (old meter, new meter).
    """

    ts_ns: tuple[int, ...]
    cumulative: list[float]
    labels: list[str]

    def falls(self) -> list[tuple[int, str]]:
        """(time, label) of each step that asks for a meter event."""
        return [(self.ts_ns[i + 1], lab) for i, lab in enumerate(self.labels)
                if lab in UNEXPLAINED_FALLS]  # fmt: skip

    def implausible(self) -> list[tuple[int, int]]:
        """(start, end) of each step that rose faster than the meter can (estimated)."""
        return [(self.ts_ns[i], self.ts_ns[i + 1]) for i, lab in enumerate(self.labels)
                if lab == "implausible"]  # fmt: skip


@dataclass(frozen=True)
class CounterRef(MeterRef):
    """A meter as the carrier of a production counter (see :func:`counter_ref`)."""


def counter_ref(ref: MeterRef, rollover: float | None) -> MeterRef:
    """The meter as the carrier of a production counter (its ``production_units`` pulse
    input): pieces count one each (no CT multiplier), wrap at the counter's own ``rollover``,
    have no plausible-rate limit, and the energy register's exchanges do not apply (a counter
    reset is labelled and estimated like any register fall)."""
    meter = ref.meter.model_copy(update={"multiplier": 1.0, "rollover": rollover,
                                         "events": [], "max_power": None})  # fmt: skip
    site = ref.site.model_copy(update={"contract_capacity_kw": None})
    return CounterRef(ref.supplier, site, meter)


def max_power(ref: MeterRef) -> float | None:
    """Largest plausible load of a meter [kW or unit/h]: the registry's ``max_power``, else for
    an electricity meter 3 × its site's contract capacity (a circuit cannot draw much more than
    the whole site's contract), else its carrier's ``max_flow_per_h``. A production counter
    has none (``None``: no step is ever implausible)."""
    if isinstance(ref, CounterRef):
        return None
    if ref.meter.max_power is not None:
        return ref.meter.max_power
    if ref.meter.carrier == "electricity" and ref.site.contract_capacity_kw:
        return 3 * ref.site.contract_capacity_kw
    return ref.carrier.max_flow_per_h


def step_label(
    old: float, new: float, rollover: float | None, max_step: float | None = None,
    meter_bound: bool = True,
) -> tuple[str, float]:  # fmt: skip
    """Label one register step and return its measured increase. [register units]

    ``max_step`` is the largest plausible increase over the step (``None``: no limit). A
    ``reset`` or ``implausible`` step returns 0 (the caller estimates it). ``meter_bound``:
    ``max_step`` is the meter's own (registry ``max_power``, the site's contract), tight enough
    to tell a wrap from a swap; a carrier's generic bound is not, so a fall is then a wrap only
    if it fell by more than half the rollover value *and* the wrapped step is plausible.

    >>> label, increase = step_label(99_999.5, 0.7, 100_000.0)
    >>> label, round(increase, 6)
    ('rollover', 1.2)
    """
    if new >= old - _tolerance(old):
        if max_step is not None and new - old > max_step:
            return "implausible", 0.0
        return "normal", max(new - old, 0.0)
    if rollover:
        wrapped = new + rollover - old
        within = max_step is None or wrapped <= max_step
        plausible = within if meter_bound and max_step is not None else (
            within and old - new > rollover / 2)  # fmt: skip
        if plausible:
            return "rollover", wrapped
    return "reset", 0.0


def _tolerance(register: float) -> float:
    """Float noise a register may carry (a value written as 1.38943613517037 and read back as
    1.3894361351703708 must not become a fall). [register units]"""
    return 1e-9 * max(1.0, abs(register))


def _meter_bound(ref: MeterRef) -> bool:
    """Whether the meter's plausible load is its own (registry, contract), not its carrier's
    generic bound."""
    return ref.meter.max_power is not None or bool(
        ref.meter.carrier == "electricity" and ref.site.contract_capacity_kw
    )


def _max_rate(ref: MeterRef, multiplier: float) -> float | None:
    """Fastest plausible register rise. [register units per ns]"""
    power = max_power(ref)
    return None if power is None else power / multiplier / HOUR_NS


def drop_glitches(
    ts: list[int], reg: list[float], per_ns: float | None
) -> tuple[list[int], list[float], dict[int, str]]:
    """Leave out single odd readings; returns the kept readings and, for each kept step that
    bridged one, its label (``glitch`` for a leap, ``fall`` for a fall)."""
    keep_ts, keep_reg, bridged = [ts[0]], [reg[0]], {}
    for i in range(1, len(ts)):
        prev = keep_reg[-1]
        if i + 1 < len(ts):
            nxt = reg[i + 1]
            fell = reg[i] < prev - _tolerance(prev)
            leapt = per_ns is not None and reg[i] - prev > (ts[i] - keep_ts[-1]) * per_ns
            back = nxt >= prev and (
                per_ns is None or nxt - prev <= (ts[i + 1] - keep_ts[-1]) * per_ns
            )
            if (fell or (leapt and nxt < reg[i])) and back:
                bridged[len(keep_ts) - 1] = "fall" if fell else "glitch"
                continue
        keep_ts.append(ts[i])
        keep_reg.append(reg[i])
    return keep_ts, keep_reg, bridged


def _segment_steps(
    ref: MeterRef, seg: RegisterSegment, ts: list[int], reg: list[float]
) -> tuple[list[int], list[tuple[str, float]]]:
    """One segment's readings → kept times and (label, increase [unit]) per step, estimated
    steps still at 0."""
    if not ts:
        return [], []
    per_ns = _max_rate(ref, seg.multiplier)
    # The common case, checked in one pass: every step rose, and no faster than the meter
    # can. Then there is nothing to label (about three times faster than the general path).
    diffs = [b - a for a, b in itertools.pairwise(reg)]
    tol = 1e-9 * max(1.0, max(reg))
    if min(diffs, default=0.0) >= -tol and (
        per_ns is None or all(d <= (t1 - t0) * per_ns for d, t0, t1 in zip(diffs, ts, ts[1:],
                                                                        strict=False))
    ):  # fmt: skip
        m = seg.multiplier
        return ts, [("normal", (d if d > 0 else 0.0) * m) for d in diffs]
    ts, reg, bridged = drop_glitches(ts, reg, per_ns)
    steps = []
    own = _meter_bound(ref)
    for i in range(len(ts) - 1):
        limit = None if per_ns is None else (ts[i + 1] - ts[i]) * per_ns
        label, increase = step_label(reg[i], reg[i + 1], seg.rollover, limit, own)
        if label == "normal" and i in bridged:
            label = bridged[i]
            # a fall keeps the bridged increase: the register's own path around the odd value
        steps.append((label, increase * seg.multiplier))
    return ts, steps


def _estimate(ts: list[int], steps: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Fill each estimated step with the mean measured rate around it. [unit]"""
    out = list(steps)
    for i, (label, _) in enumerate(steps):
        if label not in RATE_ESTIMATED:
            continue
        rates = []
        for direction in (-1, 1):
            energy = span = 0
            j = i + direction
            while 0 <= j < len(steps) and span < RATE_SPAN_NS:
                lab, inc = steps[j]
                if lab not in UNMEASURED and ts[j + 1] > ts[j]:
                    energy += inc
                    span += ts[j + 1] - ts[j]
                j += direction
            if span:
                rates.append(energy / span)
        rate = sum(rates) / len(rates) if rates else 0.0
        out[i] = (label, rate * (ts[i + 1] - ts[i]))
    return out


def _split(ref: MeterRef, series: RegisterSeries) -> list[tuple[RegisterSegment, list[int],
                                                                 list[float]]]:  # fmt: skip
    """The readings of each register segment, with the events' registers as points at the
    event times (a CT change without a stated register: interpolated across the change).

    A reading exactly at an event's time belongs to the meter before it: the new meter (or
    ratio) counts from the event on."""
    segments = ref.segments()
    ts, reg = list(series.ts_ns), list(series.register)
    parts = []
    for k, seg in enumerate(segments):
        lo = 0 if seg.start_ns is None else bisect.bisect_right(ts, seg.start_ns)
        hi = len(ts) if seg.end_ns is None else bisect.bisect_right(ts, seg.end_ns)
        s_ts, s_reg = ts[lo:hi], reg[lo:hi]
        if seg.start_ns is not None:
            first = seg.first_register
            if first is None:  # CT change: the same register continues
                first = _interpolate(ts, reg, seg.start_ns)
            if first is not None:
                s_ts, s_reg = [seg.start_ns, *s_ts], [first, *s_reg]
        if seg.end_ns is not None and not (s_ts and s_ts[-1] == seg.end_ns):
            final = seg.final_register
            if final is None and segments[k + 1].first_register is None:
                final = _interpolate(ts, reg, seg.end_ns)
            if final is not None:
                s_ts, s_reg = [*s_ts, seg.end_ns], [*s_reg, final]
        parts.append((seg, s_ts, s_reg))
    return parts


def _interpolate(ts: list[int], reg: list[float], t: int) -> float | None:
    i = bisect.bisect_left(ts, t)
    if i < len(ts) and ts[i] == t:
        return reg[i]
    if i == 0 or i == len(ts) or reg[i] < reg[i - 1]:
        return None
    return reg[i - 1] + (reg[i] - reg[i - 1]) * (t - ts[i - 1]) / (ts[i] - ts[i - 1])


def measure(series: RegisterSeries) -> Measured:
    """Glitches left out, events applied, the register unwrapped into one cumulative quantity
    [unit, multipliers applied] with each step's label."""
    ref = series.ref
    if not series.ts_ns:
        return Measured((), [], [])
    if not any(e.type in ("exchange", "ct_change") for e in ref.meter.events):
        seg = ref.segments()[0]
        kept, steps = _segment_steps(ref, seg, list(series.ts_ns), list(series.register))
    else:
        kept, steps = [], []
        for seg, s_ts, s_reg in _split(ref, series):
            seg_ts, seg_steps = _segment_steps(ref, seg, s_ts, s_reg)
            if not seg_ts:
                continue
            if kept:  # join at the event: a zero-length measured step, labelled by it
                steps.append((_event_type(ref, seg.start_ns), 0.0))
            kept += seg_ts
            steps += seg_steps
    steps = _estimate(kept, steps)
    cumulative = [0.0] * len(kept)
    for i, (_, increase) in enumerate(steps):
        cumulative[i + 1] = cumulative[i] + increase
    return Measured(tuple(kept), cumulative, [label for label, _ in steps])


def _event_type(ref: MeterRef, t: int | None) -> str:
    return next((e.type for e in ref.meter.events if e.time_ns == t), "exchange")


def cumulative_at(ts: tuple[int, ...], cumulative: list[float], t: int) -> float | None:
    """The cumulative quantity at ``t``, interpolated; ``None`` outside the readings."""
    i = bisect.bisect_left(ts, t)
    if i < len(ts) and ts[i] == t:
        return cumulative[i]
    if i == 0 or i == len(ts):
        return None
    t0, t1 = ts[i - 1], ts[i]
    return cumulative[i - 1] + (cumulative[i] - cumulative[i - 1]) * (t - t0) / (t1 - t0)


def hourly_consumption(
    series: RegisterSeries, start_ns: int, end_ns: int, max_gap_ns: int,
    measured: Measured | None = None,
) -> list[HourlyConsumption]:  # fmt: skip
    """Consumption of every hour in ``[start_ns, end_ns)`` bracketed by readings.

    Parameters
    ----------
    series : RegisterSeries
        The meter's readings, reaching before ``start_ns`` and after ``end_ns`` where possible.
    start_ns, end_ns : int
        UTC hour boundaries. [epoch ns]
    max_gap_ns : int
        Readings further apart than this leave the hours between them estimated. [ns]
    measured : Measured, optional
        ``measure(series)`` if the caller already has it.

    Returns
    -------
    list of HourlyConsumption
        One per hour whose both boundaries lie within the readings; hours outside are left
        out (nothing is known about them). [unit, multipliers applied]
    """
    if len(series.ts_ns) < 2:
        return []
    m = measured or measure(series)
    ts, cum, labels = m.ts_ns, m.cumulative, m.labels
    ref = series.ref
    out = []
    for hour in range(start_ns - start_ns % HOUR_NS, end_ns, HOUR_NS):
        begin = cumulative_at(ts, cum, hour)
        finish = cumulative_at(ts, cum, hour + HOUR_NS)
        if begin is None or finish is None:
            continue
        first = max(bisect.bisect_right(ts, hour) - 1, 0)
        last = bisect.bisect_left(ts, hour + HOUR_NS)
        covered = 0
        estimated = 0.0
        flags = set()
        for i in range(first, min(last, len(ts) - 1)):
            lo, hi = max(ts[i], hour), min(ts[i + 1], hour + HOUR_NS)
            if hi <= lo:
                if ts[i] == ts[i + 1] and hour <= ts[i] < hour + HOUR_NS:
                    flags.add(labels[i])  # a meter event inside the hour
                continue
            if ts[i + 1] - ts[i] <= max_gap_ns and labels[i] not in UNMEASURED:
                covered += hi - lo
            else:
                estimated += (cum[i + 1] - cum[i]) * (hi - lo) / (ts[i + 1] - ts[i])
            if labels[i] != "normal":
                flags.add(labels[i])
        inside = bisect.bisect_left(ts, hour + HOUR_NS) - bisect.bisect_left(ts, hour)
        total = finish - begin
        out.append(
            HourlyConsumption(
                supplier=ref.supplier.id,
                site=ref.site.id,
                meter=ref.meter.id,
                carrier=ref.meter.carrier,
                unit=ref.unit,
                hour_start_ns=hour,
                consumption=total,
                coverage=covered / HOUR_NS,
                readings=inside,
                flags=tuple(sorted(flags)),
                estimated_consumption=min(max(estimated, 0.0), max(total, 0.0)),
            )
        )
    return out
