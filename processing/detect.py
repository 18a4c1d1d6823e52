"""Alert detection: what is wrong right now, judged on the meters' own data.

:class:`Detector` keeps each meter's consumption per ``window_min`` slot (15 min) for
``baseline_weeks`` (float32, a ring per meter: 16 KB for six weeks) and only the last few hours
of raw readings. At any instant ``now`` it finds:

``spike``
    a short excursion that came and went. Each completed slot is compared with the meter's
    **comparable days**: of the previous ``baseline_weeks`` × 7 days, the ``neighbours`` (7)
    whose load over the ``match_hours`` (4 h) before this time of day was closest to today's —
    analogue forecasting (Lorenz, "Atmospheric predictability as revealed by naturally
    occurring analogues", J. Atmos. Sci. 26, 1969) applied the way demand-response programmes
    build customer baselines from similar days (Coughlin et al., *Estimating Demand Response
    Load Impacts: Evaluation of Baseline Load Models for Non-Residential Buildings in
    California*, LBNL-63728, 2008). Days are
    chosen by load shape, so a plant producing on a Sunday is compared with producing days,
    an idle holiday with idle days, a 450 kW day with 450 kW days, and a base-load shift that
    lasts is matched by days at the new level once it has been seen. The slot is *unusual*
    when it exceeds ``spike_min_pct`` above the **upper envelope**: the 80th percentile, over
    those days, of the highest slot within ``shift_tolerance_min`` (± 1 h) of this time — so a
    shift that started 30 minutes early, a skipped lunch dip or a shift that ran long stay
    inside it — and by at least ``spike_min_abs`` (per carrier) and ``spike_min_level_pct`` of
    the meter's median slot. Unusual slots separated by less than ``quiet_min`` form one
    *episode*. An episode that ends within ``spike_max_min`` and stood ``spike_return_pct``
    above the level both before and after it is reported once, with its excess energy, after
    it ended. Measured on real 15-min loads with injected spikes:
    ``bench/bench_alerts_real.py``, BENCHMARKS.md.
``regime``
    an episode unusual for ``regime_min_min`` (2 h) on at least :data:`REGIME_SOLID` (4 in 5)
    of its slots: an hours-long abnormal regime is one incident, open while it lasts, with its
    excess energy so far. (Episodes longer than a spike and shorter than a regime are not
    reported.) Once an episode has lasted longer than a spike, its slots are compared with the
    days that were most like today over the ``match_hours`` **before it began** (for up to
    :data:`FREEZE_MAX_MIN`, 8 h): matched on its own hours, a regime soon chose the plant's
    strongest days as comparable and faded below their envelope before it had lasted 2 h. A
    patchy episode (a busy day's hours) is not a regime: something switched on stays on.

    **Routine energy is not news** (heavy industry): a spike or regime is not reported when
    the meter's energy over the same length — its strongest run of slots, up to a regime's —
    was reached on ``USUAL_SHARE`` (a fifth, at least two) of its recent days of the same kind
    (working or not) within ``shift_tolerance_min`` of this time. Presses, induction heaters
    and furnaces draw in bursts whose timing wanders; a burst of the usual energy belongs to
    the duty cycle even when no comparable day had it at the same quarter-hour. For a spike,
    those days must also have been about as busy as today over the ``match_hours`` before it
    (:data:`LIKE_TODAY`, within × 2): an idle bridge day the calendar calls a workday is not
    excused by the working days' energy.

    **A shop of large machines** (a meter whose load swings by ``shop_swing`` of its level from
    one quarter-hour to the next while it works: :func:`typical_swing`) is told of a spike (or
    a regime, over its first 2 h) only beyond its own capacity: more energy over the spike's
    length than on *any* past day of the same kind within :data:`SHOP_TOLERANCE_MIN` (3 h) of
    that time. Two or three machines running at once at an hour they seldom do is such a
    meter's routine; on a steel plant's load that rule took false spike alarms from 0.48 to 0
    per meter-week (BENCHMARKS.md). Only while it works: a spike on a shop **at rest** (its
    mean load over the hour before near its base, :data:`AT_REST`) is not excused by its
    machines — a burst on a steel plant's idle night load within 3 h of a shift was (recall
    of spikes ≥ +100 % on that load 0.29 → 0.61). A regime is excused only when it looks
    like the machines: it swings like them or stands at the shop's working level (the
    median of its busy slots). A steady load below that — a furnace left holding after the
    shift, a night load doubled for hours — is not their duty cycle, and is told (steel
    plant's regime recall 0.09 → 0.26). "At rest" was not the test for regimes: the
    simulated heat-treatment plant's furnace batches after a pause then read as regimes.

    **Energy over hours** (``Detector._wave``): a regime whose single quarter-hours stay
    inside the comparable days' range is also found in its energy over a regime's length
    (2 h), against the comparable days' highest energy over 2 h near this time — a steel
    plant's idle night of 12 kW held at 20 kW, a shop whose machines all draw half as much
    again. It needs :data:`WAVE_MARGIN` above both, :data:`REGIME_SOLID` of its slots above
    their usual, and the same routine checks; one that looks like the shop's machines is told
    only :data:`WAVE_BEYOND` beyond the most the shop drew over 2 h at any time of day.
    (Real series, seed 1: regime recall 0.635 → 0.70, precision 0.80 → 0.82; seeds 2 and 3
    gain as much from lower figures; BENCHMARKS.md.)
    Neither kind is told when the meter reached its energy near this time **the day before**
    (:data:`RECENT_DAYS`): a new pattern, told when it began.
``level_shift``
    a lasting change of the base load (the 10th percentile of each local day's slots, kW):
    a change point with a minimum segment length — the days since it against the four weeks
    before it, each against the days of its type, holidays and idle days (shutdowns) left
    out — announced once it has lasted ``level_shift_min_days`` and moved the base at least
    ``level_shift_pct`` — :mod:`processing.levels`. Then the new level is the reference.

    Severity is excess energy over the *usual* value (the median of the comparable days at
    that time); every condition carries a plain sentence saying why and how unusual it is.
    Slots are judged once, as soon as the readings around them have arrived — also when they
    arrive late (up to :data:`LOOKBACK_NS` back); only then does the alert say "judged after
    the fact".
``over_capacity``
    the site's demand over the window (its grid meter's import if it has one, else the sum of
    its electricity consumption meters; kWh per window → kW) above its contract capacity —
    Taipower bills demand as 15-minute averages.
``gateway_silent`` / ``meter_silent``
    no reading from any of a gateway's meters for ``silent_after_min`` (by device time), or
    the gateway says ``offline``; a single meter silent while its gateway delivers the others —
    judged only once the gateway has been back ``silent_after_min``, so a store-and-forward
    replay in progress is not mistaken for a silent meter.
``stuck``
    the register flat for ``stuck_after_min`` while the meter reports ``power_kw`` above
    ``stuck_min_kw``.
``ingest_rejects``
    more than ``reject_per_hour`` rejected messages for a supplier in the last hour.

Slot consumption reuses the rollup's register handling (:mod:`processing.rollup`), so
rollovers, glitches and meter swaps do not look like spikes.
"""

from __future__ import annotations

import bisect
import math
import statistics
from array import array
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from processing.levels import Day, LevelShift, LevelWatch
from processing.rollup import RegisterSeries, cumulative_at, measure
from supplymeter.calendar import public_holidays
from supplymeter.config import AlertSettings, MeterRef, Registry
from supplymeter.records import datetime_to_ns, ns_to_datetime

MIN_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
DAY_NS = 86_400 * 10**9
LOOKBACK_NS = 6 * HOUR_NS
"""Slots ending longer ago than this are no longer judged (the alert job re-reads this much
of InfluxDB on every run to take late readings in)."""
RAW_KEEP_NS = LOOKBACK_NS + 2 * HOUR_NS
"""Raw readings are kept this long (slots are computed from them; older history is slots)."""
ENVELOPE_QUANTILE = 0.8
"""The upper envelope is this quantile of the comparable days' highest slots near the time:
with 7 days, between the 5th and 6th highest, so one odd day does not widen it."""
MIN_NEIGHBOURS, CLOSE_FACTOR = 3, 2.5
"""Comparable days are at most ``neighbours``, at least 3, and no further from today than 2.5 ×
the third closest (plus 2% of today's level)."""
LEVEL_FLOOR = 0.07
"""A level shift must also move the base by this share of the meter's median slot (a change
of the standby load too small to matter beside the meter's consumption is not news). At 0.1
a furniture store whose base is a third of its median was told of no base change under
30 %: a −28 % drop of 11 kW all day (264 kWh a day) went untold for eleven days. 0.07 took
the real series' level-shift recall 0.87 → 0.93 and precision 0.65 → 0.68 (simulated
0.79 → 0.77); 0.05 and 0.03 gave 0.67 and 0.65 (BENCHMARKS.md)."""
BASE_QUANTILE = 0.1
"""A day's base load: this quantile of its slots."""
USUAL_SHARE = 0.2
"""A spike or regime whose energy over its length the meter reached on this share of its
history days of the same kind (working or not) near this time of day, at least two, is
routine, not an alert."""
SHOP_TOLERANCE_MIN = 180
"""A shop of large machines (``[alerts] shop_swing``): its spike is told only when no past day
of the same kind reached its energy within this long of its time [min] — the machines' duty
cycle wanders by hours, and a burst of a size they reach is their routine."""
LIKE_TODAY = 2.0
"""A spike's routine-energy check compares with days of the same kind whose load over the
match hours before it was within this factor of today's (and the spike floor). On the real
series it took recall of spikes ≥ +100 % for ≥ 30 min from 0.69 to 0.72 (industrial 0.82 →
0.85); × 1.5 sent more false spikes on an office (0.24 per meter-week against 0.20)."""
AT_REST = 1.5
"""A shop is at rest while its mean load over the hour before stays within this factor of its
base (the :data:`BASE_QUANTILE` of its slots): a steel plant's night load varies 11–17 kW on a
base of 11–13 kW, and its median, 14–24 kW, is no guide — it is a night load where the plant
idles more than half the time and a working one where it idles less. On that steel plant
× 1.5 and the median both took spike recall (≥ +100 %, ≥ 30 min) to 0.6; × 2 sent the
simulated heat-treatment plant more false spikes (0.35 → 0.46 per meter-week)."""
REGIME_SOLID = 0.8
"""A regime: at least this share of its slots unusual. A fault that switches something on
stays on; a busy day's patchy hours are not one (on the real series this halved the regime
emails on untouched loads, BENCHMARKS.md)."""
FREEZE_MAX_MIN = 480
"""An episode under way is judged against days matched on the hours before it began for at
most this long [min]; after that it is matched on its own hours (the new normal)."""
WAVE_MARGIN = 0.55
"""A regime seen in its energy over hours (``Detector._wave``): its energy over a regime's
length must exceed the comparable days' highest (:attr:`Baseline.window_upper`) and the
usual by this share. On the real series 0.3 took regime recall 0.64 → 0.81 but precision
0.80 → 0.54 (a store's nights, an office's long days); 0.5 gave 0.80 / 0.72 with the
simulated heavy plants over their message ceiling, 0.6 gave 0.83 / 0.68 (BENCHMARKS.md)."""
WAVE_FLOOR = 0.5
"""... and by this share of the slot floor (:meth:`Detector.slot_floor`) per slot: half a
spike's, since it lasts at least a regime's 8 slots (a steel plant's idle night of 12 kW held
at 20 kW for hours is told; the same 8 kW for 15 minutes is not a spike)."""
WAVE_BEYOND = 1.25
"""A wave that looks like a shop's machines (``Detector._like_machines``) is told only when its
energy is this much beyond the most the shop drew over the same length at any time of day on
its days of the same kind: a simulated heat-treatment plant's batches coincide now and then
and draw twice their working level for two hours, past anything within 3 h of that time in
six weeks. Without it (machines' waves excused as a shop's spikes are: reached within 3 h)
the simulated heavy plants' messages were 0.75 per meter-week (ceiling 0.5); × 1.25 within
3 h 0.51, at any time of day 0.48."""
RECENT_DAYS = 1
"""A regime whose energy the meter reached near this time of day on the last day (of any kind)
is not news: a store that began cooling at night, a toolmaker working its second weekend day,
a pattern that began yesterday and was told then (real series, waves at a 0.5 margin:
regime precision 0.72 → 0.80 at recall 0.72 either way; the last day *of the same kind*
instead gave 0.74)."""
DAY_COVERAGE = 0.9
"""A day is summarised for the level watch when this share of its slots is known."""


def day_type(local: datetime, country: str) -> str:
    """``holiday`` (public holidays), ``Saturday``, ``Sunday`` or ``workday`` — the calendar
    words in alert sentences ("a usual Sunday")."""
    if local.date() in public_holidays(country, local.year):
        return "holiday"
    weekday = local.weekday()
    if weekday == 5:
        return "Saturday"
    if weekday == 6:
        return "Sunday"
    return "workday"


def _hhmm(start_ns: int, end_ns: int, tz: tzinfo) -> str:
    start = ns_to_datetime(start_ns).astimezone(tz)
    end = ns_to_datetime(end_ns).astimezone(tz)
    return f"{start:%H:%M}–{end:%H:%M}"


def duration_text(ns: int) -> str:
    minutes = round(ns / MIN_NS)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest:02d} min" if rest else f"{hours} h"


def how_often(days: int, of_days: int) -> str:
    """Plain words for "reached on ``days`` of the last ``of_days`` days"."""
    if days <= 0:
        return f"not reached at this time of day on any of the last {of_days} days"
    per_week = days / of_days * 7
    if days == 1:
        often = f"once in {of_days} days"
    elif per_week >= 1:
        often = f"about {per_week:.0f} times a week"
    elif 1 / per_week <= 6:
        often = f"about once every {1 / per_week:.0f} weeks"
    else:
        often = f"about once every {1 / per_week / 4.35:.0f} months"
    return f"reached on {days} of the last {of_days} days at this time of day ({often})"


@dataclass(frozen=True)
class Condition:
    """Something wrong at one instant. ``key`` identifies it across evaluations."""

    type: str
    supplier: str
    site: str
    subject: str
    """The meter, the gateway, or ``""`` for a site/supplier-wide condition."""
    value: float
    baseline: float | None
    unit: str
    window_start_ns: int
    window_end_ns: int
    detail: str
    excess: float | None = None
    """Energy (or volume) above the usual over the event [unit]; ``None`` where it does not
    apply."""
    reason: str = ""
    """One plain sentence: why this is an alert and how unusual it is."""
    over: bool = False
    """Reported once, already over (a spike that came and went, a level-shift notice)."""
    late: bool = False
    """Judged only when its readings arrived late."""

    @property
    def key(self) -> str:
        return "/".join((self.type, self.supplier, self.site, self.subject))


@dataclass
class Baseline:
    """What a slot is compared with [kWh or m³ per slot]."""

    median: float
    """The usual value: median of the comparable days at this time."""
    upper: float
    """The upper envelope (see the module docstring)."""
    days: int
    """Comparable days used."""
    threshold: float
    """Above this the slot is unusual."""
    reached: int = 0
    """Days of the history on which this slot's value was reached near this time."""
    history_days: int = 0
    window_upper: float = math.nan
    """Asked for with a ``width``: the upper envelope of the comparable days' energy over that
    many slots — the 80th percentile of each day's highest run of ``width`` slots within
    ``shift_tolerance_min`` of the run ending at this slot."""

    def band(self) -> tuple[float, float]:
        return self.median, self.threshold


class Profile(NamedTuple):
    """A meter's levels over its slot history, refreshed once a day (``median``, ``base`` and
    ``working`` in the meter's unit per slot; ``swing`` a share of the level)."""

    day: int
    """The day number it was computed on (-1: never)."""
    median: float
    swing: float
    """:func:`typical_swing`."""
    base: float
    """The history's :data:`BASE_QUANTILE`."""
    working: float
    """The level of its busy hours: the median of its slots above its median (a steel plant
    idle more than half the time: about 200 kW against a median of 15 kW)."""


NO_PROFILE = Profile(-1, 0.0, 0.0, 0.0, 0.0)


@dataclass
class Episode:
    """Consecutive unusual slots (gaps shorter than ``quiet_min``) of one meter."""

    start: int
    """First unusual slot (slot number)."""
    last: int
    values: list[float] = field(default_factory=list)
    usual: list[float] = field(default_factory=list)
    peak_ratio: float = 0.0
    reached: int = 0
    history_days: int = 0
    late: bool = False
    told: bool = False
    """Reported as a regime: it stays one incident while it lasts."""

    @property
    def excess(self) -> float:
        return sum(v - u for v, u in zip(self.values, self.usual, strict=True))


@dataclass
class Track:
    """One meter: its raw readings of the last hours (arrays: 8 bytes a value) and its slot
    history (a float32 ring)."""

    ref: MeterRef
    slot_ns: int
    capacity: int
    """Slots kept in the ring."""
    ts: array = field(default_factory=lambda: array("q"))
    register: array = field(default_factory=lambda: array("d"))
    power: array = field(default_factory=lambda: array("d"))
    """``power_kw`` of the readings from ``power_from`` on, NaN where none was sent."""
    power_from: int = 0
    slots: np.ndarray = field(init=False)
    slot_hi: int = -(2**62)
    """Highest slot number held."""
    dirty_ns: int | None = None
    """Earliest reading added since the slots were last computed from the raw readings."""
    judged: int | None = None
    """Last slot judged (slot number)."""
    episode: Episode | None = None
    wave: Episode | None = None
    """A run of slots whose energy over a regime's length stands out (see ``_wave``)."""
    usual_at: dict[int, float] = field(default_factory=dict)
    """The usual value of the slots judged lately (slot number → median of the comparable
    days), for the energy test of ``_wave``."""
    base_day: date | None = None
    """The local day whose base loads were last judged."""
    levels: LevelWatch | None = None
    """Day summaries and the level-shift scan (made by the detector)."""
    profile: Profile = NO_PROFILE
    """The meter's levels (the detector refreshes them once a day)."""
    seen_ns: int | None = None
    """When the detector last evaluated (a new reading older than this came late)."""
    late_slots: set[int] = field(default_factory=set)
    """Slots that received a new reading only after the detector had evaluated past them."""

    def __post_init__(self) -> None:
        self.slots = np.full(self.capacity, np.nan, dtype=np.float32)

    def usual_of(self, g: np.ndarray) -> np.ndarray:
        """The usual values noted for slot numbers ``g`` (:attr:`usual_at`; NaN where none)."""
        return np.array([self.usual_at.get(int(k), math.nan) for k in g])

    @property
    def judged_ns(self) -> int | None:
        """End of the last slot judged (epoch ns)."""
        return None if self.judged is None else (self.judged + 1) * self.slot_ns

    @judged_ns.setter
    def judged_ns(self, end_ns: int | None) -> None:
        self.judged = None if end_ns is None else end_ns // self.slot_ns - 1

    # --- raw readings ---------------------------------------------------------------------

    def add(self, ts_ns: int, register: float, power: float | None) -> None:
        value = float("nan") if power is None else power
        self.dirty_ns = ts_ns if self.dirty_ns is None else min(self.dirty_ns, ts_ns)
        if self.seen_ns is not None and ts_ns < self.seen_ns - self.slot_ns:
            i = bisect.bisect_left(self.ts, ts_ns)
            if i == len(self.ts) or self.ts[i] != ts_ns:
                # New, and older than what the detector already judged: it arrived late.
                self.late_slots.update((ts_ns // self.slot_ns - 1, ts_ns // self.slot_ns))
        if not self.ts or ts_ns > self.ts[-1]:
            self.ts.append(ts_ns)
            self.register.append(register)
            self.power.append(value)
            return
        i = bisect.bisect_left(self.ts, ts_ns)
        if i < len(self.ts) and self.ts[i] == ts_ns:  # a duplicate or a replay: last wins
            self.register[i] = register
            if i >= self.power_from:
                self.power[i - self.power_from] = value
            return
        self.ts.insert(i, ts_ns)
        self.register.insert(i, register)
        if i >= self.power_from:
            self.power.insert(i - self.power_from, value)
        else:
            self.power_from += 1  # older than the power kept: only its register counts

    def power_since(self, i: int) -> list[float]:
        """``power_kw`` of the readings from index ``i`` on (those kept), NaN left out."""
        return [p for p in self.power[max(0, i - self.power_from) :] if p == p]

    def prune(self, before_ns: int, power_before_ns: int) -> None:
        """Drop raw readings before ``before_ns`` (their slots are computed first)."""
        self.refresh_slots()
        oldest = before_ns // self.slot_ns - 1
        self.late_slots = {g for g in self.late_slots if g >= oldest}
        i = bisect.bisect_left(self.ts, before_ns)
        if i:
            del self.ts[:i], self.register[:i]
            self.power_from -= i
        k = bisect.bisect_left(self.ts, power_before_ns)
        if k > self.power_from:
            del self.power[: k - self.power_from]
            self.power_from = k

    def consumption(self, t0: int, t1: int) -> float | None:
        """Consumption in ``[t0, t1)`` [kWh or m³, multiplier applied]; ``None`` unless
        readings bracket both ends within two reading intervals."""
        gap = 2 * self.ref.meter.interval_s * 10**9
        lo = bisect.bisect_right(self.ts, t0) - 1
        hi = bisect.bisect_left(self.ts, t1)
        if lo < 0 or hi >= len(self.ts) or t0 - self.ts[lo] > gap or self.ts[hi] - t1 > gap:
            return None
        lo, hi = max(0, lo - 1), min(len(self.ts), hi + 2)
        series = RegisterSeries(self.ref, tuple(self.ts[lo:hi]), tuple(self.register[lo:hi]))
        m = measure(series)
        begin = cumulative_at(m.ts_ns, m.cumulative, t0)
        end = cumulative_at(m.ts_ns, m.cumulative, t1)
        if begin is None or end is None:
            return None
        return end - begin

    # --- slots ------------------------------------------------------------------------------

    def set_slot(self, g: int, value: float) -> None:
        if g <= self.slot_hi - self.capacity:
            return
        if g > self.slot_hi:
            gap = g - self.slot_hi
            if gap >= self.capacity:
                self.slots[:] = np.nan
            else:
                idx = np.arange(self.slot_hi + 1, g) % self.capacity
                self.slots[idx] = np.nan
            self.slot_hi = g
        self.slots[g % self.capacity] = value

    def set_slots(self, g: np.ndarray, values: np.ndarray) -> None:
        """:meth:`set_slot` for many slots at once (``g`` ascending)."""
        if not len(g):
            return
        top = int(g[-1])
        if top > self.slot_hi:
            self.set_slot(top, float(values[-1]))
        keep = g > self.slot_hi - self.capacity
        self.slots[g[keep] % self.capacity] = values[keep]

    def get(self, g: np.ndarray) -> np.ndarray:
        """Slot values for slot numbers ``g`` (NaN where unknown)."""
        out = self.slots[g % self.capacity].astype(np.float64)
        out[(g > self.slot_hi) | (g <= self.slot_hi - self.capacity)] = np.nan
        return out

    def slot(self, g: int) -> float:
        if g > self.slot_hi or g <= self.slot_hi - self.capacity:
            return math.nan
        return float(self.slots[g % self.capacity])

    def refresh_slots(self) -> None:
        """Compute the slots the readings added since the last call touch."""
        if self.dirty_ns is None or not self.ts:
            self.dirty_ns = None
            return
        gap = 2 * self.ref.meter.interval_s * 10**9
        first = max(self.dirty_ns - gap, self.ts[0]) // self.slot_ns - 1
        for g in range(first, self.ts[-1] // self.slot_ns + 1):
            value = self.consumption(g * self.slot_ns, (g + 1) * self.slot_ns)
            if value is not None:
                self.set_slot(g, value)
        self.dirty_ns = None

    def add_history(self, ts_ns: list[int], registers: list[float]) -> None:
        """Slots from register samples (e.g. the first register of each slot, read from
        InfluxDB for the weeks before the raw readings kept): consumption between samples,
        interpolated to the slot boundaries as the rollup does."""
        if len(ts_ns) < 2:
            return
        m = measure(RegisterSeries(self.ref, tuple(ts_ns), tuple(registers)))
        if len(m.ts_ns) < 2:
            return
        ts = np.array(m.ts_ns, dtype=np.int64)
        cum = np.array(m.cumulative, dtype=np.float64)
        gap = 2 * max(self.slot_ns, self.ref.meter.interval_s * 10**9)
        g = np.arange(ts[0] // self.slot_ns, ts[-1] // self.slot_ns + 1, dtype=np.int64)
        edges = np.append(g, g[-1] + 1) * self.slot_ns
        before = np.searchsorted(ts, edges, side="right") - 1
        after = np.searchsorted(ts, edges, side="left")
        ok = (before >= 0) & (after < len(ts))
        ok[ok] &= (edges[ok] - ts[before[ok]] <= gap) & (ts[after[ok]] - edges[ok] <= gap)
        at = np.interp(edges.astype(np.float64), ts.astype(np.float64), cum)
        values = at[1:] - at[:-1]
        good = ok[:-1] & ok[1:]
        self.set_slots(g[good], values[good])


def strongest_run(values: np.ndarray, width: int) -> np.ndarray:
    """Per row, the highest sum over ``width`` consecutive slots (NaN slots count as 0; NaN
    for a row shorter than ``width``)."""
    if values.shape[1] < width:
        return np.full(values.shape[0], np.nan)
    filled = np.nan_to_num(values, nan=0.0)
    cum = np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(filled, axis=1)], axis=1)
    return (cum[:, width:] - cum[:, :-width]).max(axis=1)


def typical_swing(slots: np.ndarray, median: float) -> float:
    """How far a meter's load moves from one slot to the next while it works: the 90th
    percentile of |Δ| between consecutive slots both above the meter's median, as a share of
    the median level there (0 with too little data: fewer than a day's pairs).

    Over six-week windows of a year: a steel plant 0.50–0.70, the simulated forge 0.56–0.70 and
    heat-treatment plant 0.40–0.59 (shops of large machines); an office 0.26–0.44; light
    industry, a store and the simulated springs and CNC plants 0.06–0.19. ``slots`` may be a
    ring: the one pair across its wrap-around changes nothing measurable."""
    a, b = slots[:-1], slots[1:]
    working = (a > median) & (b > median)
    if working.sum() < 96:
        return 0.0
    return float(np.quantile(np.abs(b[working] - a[working]), 0.9) / np.median(b[working]))


def swing_of(values: np.ndarray) -> float:
    """How far a run of slots moves from one to the next: the 90th percentile of |Δ| as a
    share of its median (∞ with fewer than three known slots, or a median of 0)."""
    known = values[~np.isnan(values)]
    median = float(np.median(known)) if len(known) >= 3 else 0.0
    if median <= 0:
        return math.inf
    return float(np.quantile(np.abs(np.diff(known)), 0.9) / median)


def spike_floor(settings: AlertSettings, ref: MeterRef) -> float:
    """Smallest excess worth a spike alert per window [unit]: ``[alerts] spike_min_abs`` for
    the meter's carrier where set, else the carrier table's default."""
    return settings.spike_min_abs.get(ref.carrier.name, ref.carrier.spike_min_abs)


def _local_midnight(day: date, tz: tzinfo) -> int:
    """Local midnight at the start of ``day`` (epoch ns)."""
    return datetime_to_ns(datetime.combine(day, time(), tz))


@lru_cache(maxsize=65536)
def _offset_slots(tz: tzinfo, hour: int, slot_ns: int) -> int:
    """The UTC offset of ``tz`` in the UTC hour ``hour`` (epoch hours), in slots."""
    offset = ns_to_datetime(hour * HOUR_NS).astimezone(tz).utcoffset()
    return round(offset.total_seconds() * 10**9 / slot_ns) if offset else 0


@dataclass
class Evaluation:
    conditions: list[Condition]
    lacking_history: list[str]
    """Meters whose latest slot could not be judged for want of history."""


class Detector:
    """Meters' recent data and the checks on it (see the module docstring)."""

    def __init__(self, registry: Registry, settings: AlertSettings) -> None:
        self.registry, self.settings = registry, settings
        self.slot_ns = settings.window_min * MIN_NS
        self.per_day = DAY_NS // self.slot_ns
        self.days = settings.baseline_weeks * 7
        capacity = (self.days + 2) * self.per_day
        self.tracks = {ref.key: Track(ref, self.slot_ns, capacity) for ref in registry.meters()}
        self.gateway_state: dict[tuple[str, str], tuple[str, int]] = {}
        """(supplier, site) → (``online``/``offline``, since when; epoch ns)."""
        self.rejects: dict[str, int] = {}
        s = settings
        self._match = round(s.match_hours * 60 / s.window_min)
        self._tolerance = round(s.shift_tolerance_min / s.window_min)
        self._quiet = max(2, math.ceil(s.quiet_min / s.window_min))
        self._max_slots = max(1, s.spike_max_min // s.window_min)
        self._regime_slots = max(self._max_slots + 1, math.ceil(s.regime_min_min / s.window_min))
        self._back = np.arange(1, self.days + 1)
        self._shop_tolerance = SHOP_TOLERANCE_MIN // s.window_min
        self._freeze_max = FREEZE_MAX_MIN // s.window_min

    # --- input ------------------------------------------------------------------------------

    def add_reading(
        self, key: tuple[str, str, str], ts_ns: int, register: float | None, power: float | None
    ) -> None:
        track = self.tracks.get(key)
        if track is not None and register is not None:
            track.add(ts_ns, register, power)

    def add_history(
        self, key: tuple[str, str, str], ts_ns: list[int], registers: list[float]
    ) -> None:
        """Register samples older than the raw readings (see :meth:`Track.add_history`)."""
        track = self.tracks.get(key)
        if track is not None:
            track.add_history(ts_ns, registers)

    def set_gateway(self, supplier: str, site: str, state: str, since_ns: int) -> None:
        self.gateway_state[(supplier, site)] = (state, since_ns)

    def prune(self, now_ns: int) -> None:
        power_keep = now_ns - round(self.settings.stuck_after_min * MIN_NS) - DAY_NS
        for track in self.tracks.values():
            track.prune(now_ns - RAW_KEEP_NS, power_keep)

    # --- the comparison ---------------------------------------------------------------------

    def _neighbour_slots(self, track: Track, g: int) -> np.ndarray:
        """The slot number of the same local wall-clock time 1 … ``days`` days before slot
        ``g`` (daylight-saving changes accounted for)."""
        tz = track.ref.tz
        hour = g * self.slot_ns // HOUR_NS
        own = _offset_slots(tz, hour, self.slot_ns)
        back = g - self._back * self.per_day
        hours = back * self.slot_ns // HOUR_NS
        return back + np.array([own - _offset_slots(tz, int(h), self.slot_ns) for h in hours])

    def level(self, track: Track, g: int) -> float:
        """Median slot of the meter's history (refreshed once a day) [unit per slot]."""
        return self.profile(track, g).median

    def swing(self, track: Track, g: int) -> float:
        """The meter's typical 15-min swing while it works (refreshed once a day): see
        :func:`typical_swing`."""
        return self.profile(track, g).swing

    def profile(self, track: Track, g: int) -> Profile:
        """The meter's :class:`Profile`, refreshed on the first call of a later day than its own
        (an episode's first slot, judged after its last, does not recompute yesterday's)."""
        day = g // self.per_day
        if track.profile.day < day:
            values = track.slots[~np.isnan(track.slots)]
            median = base = working = 0.0
            if len(values):
                median, base = np.quantile(values, (0.5, BASE_QUANTILE))
                busy = values[values > median]
                working = float(np.median(busy)) if len(busy) else median
            swing = typical_swing(track.slots, float(median))
            track.profile = Profile(day, float(median), swing, float(base), float(working))
        return track.profile

    def slot_floor(self, track: Track, g: int) -> float:
        """The smallest excess worth telling in one slot [unit]: the spike floor of the meter's
        carrier or ``spike_min_level_pct`` of its median slot, whichever is more."""
        s = self.settings
        return max(spike_floor(s, track.ref), s.spike_min_level_pct / 100 * self.level(track, g))

    def baseline(
        self, track: Track, g: int, since: int | None = None, width: int = 0
    ) -> Baseline | None:
        """The comparison for slot ``g`` (see the module docstring), or ``None`` with fewer
        than ``min_history_weeks`` × 7 days to compare with. ``since``: the first slot of an
        episode under way — days are matched on the hours before it, which it has not touched
        (an hours-long regime would otherwise choose days like itself to be compared with).
        ``width``: also the envelope of energy over that many slots ending at ``g``."""
        s = self.settings
        h, tol = self._match, self._tolerance
        lag = 0 if since is None else max(0, min(g - since, self._freeze_max))
        base = self._neighbour_slots(track, g)
        span = np.arange(-h - lag, tol + 1)
        values = track.get(base[:, None] + span[None, :])
        match, near = values[:, :h], values[:, h + lag - tol :]
        runs = values[:, max(0, h + lag - tol - width + 1) :] if width else None
        values = values[:, lag:]
        today = track.get(np.arange(g - lag - h, g - lag))
        known = ~np.isnan(today)
        if known.sum() < h / 2:
            return None
        diffs = np.abs(match[:, known] - today[known])
        counted = (~np.isnan(diffs)).sum(axis=1)
        usable = (counted >= known.sum() * 0.75) & (~np.isnan(near).all(axis=1))
        if usable.sum() < s.min_history_weeks * 7:
            return None
        scale = float(np.abs(today[known]).sum()) + 1e-9
        distance = np.where(usable, np.nansum(diffs, axis=1) / np.maximum(counted, 1), np.inf)
        chosen = np.argsort(distance, kind="stable")[: s.neighbours]
        chosen = chosen[np.isfinite(distance[chosen])]
        # Only days about as close as the closest few: six idle Sundays are not topped up
        # with a working day because seven were asked for.
        close = distance[chosen[min(len(chosen), MIN_NEIGHBOURS) - 1]]
        chosen = chosen[distance[chosen] <= CLOSE_FACTOR * close + 0.02 * scale / len(today)]
        highs = np.nanmax(near[chosen], axis=1)
        upper = float(np.quantile(highs, ENVELOPE_QUANTILE))
        centre = values[chosen, h]
        usual = float(np.nanmedian(centre)) if not np.isnan(centre).all() else upper
        floor = self.slot_floor(track, g)
        threshold = max(upper * (1 + s.spike_min_pct / 100), upper + floor)
        day_highs = np.nanmax(np.where(np.isnan(near), -np.inf, near), axis=1)
        y = track.slot(g)
        reached = int((day_highs[usable] >= y).sum()) if y == y else 0
        window = math.nan
        if runs is not None:
            window = float(np.quantile(strongest_run(runs[chosen], width), ENVELOPE_QUANTILE))
        return Baseline(usual, upper, len(chosen), threshold, reached, int(usable.sum()), window)

    # --- checks -------------------------------------------------------------------------------

    def window_end(self, now_ns: int) -> int:
        """The end of the latest slot complete at ``now_ns``."""
        return now_ns - now_ns % self.slot_ns

    def evaluate(self, now_ns: int) -> Evaluation:
        s = self.settings
        window = self.slot_ns
        latest = self.window_end(now_ns)
        out: list[Condition] = []
        lacking: list[str] = []
        site_demand: dict[tuple[str, str], float] = {}
        site_grid: dict[tuple[str, str], float] = {}
        for key, track in self.tracks.items():
            meter = track.ref.meter
            track.refresh_slots()
            if meter.role == "consumption":
                found, lacks = self._judge(track, now_ns)
                out += found
                if lacks:
                    lacking.append("/".join(key))
            value = track.slot(latest // window - 1)
            if value != value:
                continue
            if meter.carrier == "electricity" and meter.role == "consumption":
                site_demand[key[:2]] = site_demand.get(key[:2], 0.0) + value
            if meter.role == "grid":
                site_grid[key[:2]] = site_grid.get(key[:2], 0.0) + value
        t0, t1 = latest - window, latest
        hours = window / HOUR_NS
        for (supplier, site_id), kwh in {**site_demand, **site_grid}.items():
            found_site = self.registry.site(supplier, site_id)
            capacity = found_site[1].contract_capacity_kw if found_site else None
            kw = kwh / hours
            if capacity and kw > capacity:
                source = "grid meter" if (supplier, site_id) in site_grid else "sum of circuits"
                out.append(Condition(
                    "over_capacity", supplier, site_id, "", value=kw, baseline=capacity,
                    unit="kW", window_start_ns=t0, window_end_ns=t1,
                    detail=f"{kw:,.0f} kW demand ({source}) over {capacity:,.0f} kW contract",
                    reason="Taipower bills demand as 15-minute averages; this one was above "
                           "the contract capacity.",
                ))  # fmt: skip
        out += self._silence(now_ns)
        out += self._stuck(now_ns)
        for supplier, count in sorted(self.rejects.items()):
            if count > s.reject_per_hour:
                out.append(Condition(
                    "ingest_rejects", supplier, "", "", value=count, baseline=s.reject_per_hour,
                    unit="messages/h", window_start_ns=now_ns - HOUR_NS,
                    window_end_ns=now_ns, detail=f"{count} rejected messages in the last hour",
                    reason=f"More than the threshold of {s.reject_per_hour} rejected messages "
                           "an hour: a gateway is sending data the collector cannot store.",
                ))  # fmt: skip
        return Evaluation(out, lacking)

    def _judge(self, track: Track, now_ns: int) -> tuple[list[Condition], bool]:
        """Judge the meter's slots completed since the last run; returns the conditions to
        report now (an ongoing regime, spikes that ended, a level shift) and whether the latest
        slot lacked history."""
        latest = self.window_end(now_ns) // self.slot_ns - 1
        if track.judged is None:  # the first run: judge from the latest slot on
            track.judged = latest - 1
        first = max(track.judged + 1, (now_ns - LOOKBACK_NS) // self.slot_ns)
        found: list[Condition] = []
        lacks = False
        replaying = self._replaying(track.ref, now_ns)
        track.seen_ns = now_ns
        for g in range(first, latest + 1):
            y = track.slot(g)
            end = (g + 1) * self.slot_ns
            if y != y:
                if replaying or not track.ts or track.ts[-1] < end:
                    break  # the readings may still come
                track.judged = g  # a gap in the data: it will not be judged
                continue
            track.judged = g
            ep = track.episode
            # An episode longer than a spike is judged against the days like today before it
            # began: a regime would otherwise soon choose days like itself as comparable.
            since = ep.start if ep is not None and g - ep.start >= self._max_slots else None
            base = self.baseline(track, g, since)
            lacks = base is None
            late = g in track.late_slots
            found += self._episode(track, g, y, base, late)
            self._wave(track, g, base, late)
            found += self._level(track, g)
        ep = track.episode
        told = False
        if ep is not None and ep.last - ep.start + 1 >= self._regime_slots:
            regime = self._regime(track, ep)
            if regime is not None:
                found.append(regime)
                told = True
        if track.wave is not None and not told:
            regime = self._wave_regime(track, track.wave)
            if regime is not None:
                found.append(regime)
        return found, lacks

    def _episode(
        self, track: Track, g: int, y: float, base: Baseline | None, late: bool
    ) -> list[Condition]:
        """Update the meter's episode with slot ``g``; the spike to report if one ended."""
        ep = track.episode
        if base is not None and y > base.threshold:
            if ep is None:
                ep = track.episode = Episode(g, g)
            ep.last = g
            ep.values.append(y)
            ep.usual.append(base.median)
            ep.late = ep.late or late
            ratio = y / base.upper if base.upper > 0 else math.inf
            if ratio >= ep.peak_ratio:
                ep.peak_ratio, ep.reached, ep.history_days = ratio, base.reached, base.history_days
            return []
        if ep is None or g - ep.last < self._quiet:
            return []  # nothing going on, or a quiet slot inside an episode
        track.episode = None
        if ep.last - ep.start + 1 > self._max_slots:
            return []  # too long for a spike (a regime was reported while it lasted)
        return [c for c in (self._spike(track, ep),) if c is not None]

    def _spike(self, track: Track, ep: Episode) -> Condition | None:
        """The spike condition of an ended episode, if it came and went: its mean stood
        ``spike_return_pct`` above the level of the slots just before and just after."""
        s, ref = self.settings, track.ref
        before = track.get(np.arange(ep.start - 2, ep.start))
        after = track.get(np.arange(ep.last + 1, ep.last + 3))
        around = [float(np.nanmean(v)) for v in (before, after) if not np.isnan(v).all()]
        mean = statistics.fmean(ep.values)
        if around and mean <= (1 + s.spike_return_pct / 100) * max(around):
            return None  # a step into another level, not an excursion that came and went
        reached, days = self._reached(track, ep, like_today=True)
        if reached >= max(2, USUAL_SHARE * days):
            return None  # this much energy at this time of day is part of the plant's routine
        swing = self.swing(track, ep.last)
        # A shop at rest (its machines idle for the hour before) is not excused by them: a
        # burst then is not one of their coincidences.
        shop = swing >= s.shop_swing and not self._at_rest(track, ep.start)
        if shop:
            reached, days = self._reached(track, ep, self._shop_tolerance)
            if reached:
                return None  # the shop's machines drew this much near this time before
        t0, t1 = ep.start * self.slot_ns, (ep.last + 1) * self.slot_ns
        usual = sum(ep.usual)
        excess = ep.excess
        pct = 100 * excess / usual if usual > 0 else math.inf
        when = _hhmm(t0, t1, ref.tz)
        detail = (f"+{pct:.0f}% for {duration_text(t1 - t0)} ({when}): {excess:,.1f} {ref.unit} "
                  f"above the usual {usual:,.1f} {ref.unit}")  # fmt: skip
        if ep.late:
            detail += "; judged after the fact, when its readings came in"
        reason = (
            f"Consumption rose to {ep.peak_ratio:.1f}× the highest of the {s.neighbours} most "
            f"similar past days within {s.shift_tolerance_min} min of this time and then came "
            f"back down; that level was {how_often(ep.reached, ep.history_days)}."
        )
        if shop:
            reason += (
                f" This meter's load moves by up to {100 * swing:.0f}% of its level from one "
                f"quarter-hour to the next, 9 times in 10 (a shop of large machines), so it is "
                f"told only of bursts beyond "
                f"its own capacity: nothing this large over {duration_text(t1 - t0)} within "
                f"{SHOP_TOLERANCE_MIN // 60} h of this time on any of the last {days} "
                + ("workdays." if self._working(track, ep.start) else "weekend days and holidays.")
            )
        return Condition(
            "spike", *ref.key, value=sum(ep.values), baseline=usual, unit=ref.unit,
            window_start_ns=t0, window_end_ns=t1, detail=detail, excess=excess,
            reason=reason, over=True, late=ep.late,
        )  # fmt: skip

    def _like_machines(self, track: Track, ep: Episode) -> bool:
        """Whether a regime looks like a shop's machines at work: the meter is a shop, and
        the episode swings like one (its own :func:`swing_of` at least ``shop_swing``) or
        stands at the shop's working level. A steady load below it — something left holding
        after the shift, a heater on all night — is not the machines' duty cycle."""
        profile, shop_swing = self.profile(track, ep.last), self.settings.shop_swing
        if profile.swing < shop_swing:
            return False
        values = track.get(np.arange(ep.start, ep.last + 1))
        return swing_of(values) >= shop_swing or float(np.nanmean(values)) >= profile.working

    def _at_rest(self, track: Track, g: int) -> bool:
        """Whether the meter's mean load over the hour before slot ``g`` was within
        :data:`AT_REST` of its base: a shop's machines idle."""
        before = track.get(np.arange(g - max(1, HOUR_NS // self.slot_ns), g))
        if np.isnan(before).all():
            return False  # not known: judged as at work, the cautious side for a shop
        return float(np.nanmean(before)) <= AT_REST * self.profile(track, g).base

    def _working(self, track: Track, g: int) -> bool:
        """Whether slot ``g`` falls on a workday (not a weekend day or public holiday)."""
        local = ns_to_datetime(g * self.slot_ns).astimezone(track.ref.tz)
        return day_type(local, track.ref.supplier.country) == "workday"

    def _reached(
        self,
        track: Track,
        ep: Episode,
        tol: int | None = None,
        like_today: bool = False,
        beyond: float = 1.0,
        recent: int = 0,
    ) -> tuple[int, int]:
        """On how many history days of the same kind (working or not) the episode's energy was
        reached near this time of day, and of how many with data: the episode's strongest run
        of L slots (L its length, at most a regime's) against each day's strongest run of L
        slots within ``tol`` slots (default ``shift_tolerance_min``) of it. Energy over a
        window, not single slots:
        a forge's presses and furnaces draw in bursts whose timing wanders, and a burst of the
        usual size is routine even when no past day had it at the same quarter-hour.
        ``beyond``: a day counts when its run × ``beyond`` reaches the episode's; ``recent``:
        only the last ``recent`` days, whatever their kind."""
        n = ep.last - ep.start + 1
        width = min(n, self._regime_slots)
        values = track.get(np.arange(ep.start, ep.last + 1))
        level = strongest_run(values[None, :], width)[0]
        if level != level:
            return 0, 0
        tol = self._tolerance if tol is None else tol
        base = self._neighbour_slots(track, ep.start)
        if recent:
            same = self._back <= recent  # the last days, whatever their kind
        else:
            working = self._working(track, ep.start)
            same = np.array([self._working(track, int(b)) == working for b in base])
        if like_today:
            # ... and about as busy as today in the hours before: an idle bridge day the
            # calendar calls a workday is not compared with working days' energy.
            h = self._match
            before = track.get(base[:, None] + np.arange(-h, 0)[None, :])
            today = track.get(np.arange(ep.start - h, ep.start))
            if (~np.isnan(today)).sum() >= h / 2:
                mine = float(np.nanmean(today))
                counted = (~np.isnan(before)).sum(axis=1)
                theirs = np.nansum(before, axis=1) / np.maximum(counted, 1)
                theirs[counted == 0] = np.nan  # no data: not a day like today
                floor = spike_floor(self.settings, track.ref)
                same &= (theirs <= LIKE_TODAY * mine + floor) & (
                    mine <= LIKE_TODAY * theirs + floor
                )
        history = track.get(base[same, None] + np.arange(-tol, n + tol)[None, :])
        usable = (~np.isnan(history)).mean(axis=1) >= 0.75
        strongest = strongest_run(history[usable], width)
        return int((strongest * beyond >= level).sum()), int(usable.sum())

    def _regime(self, track: Track, ep: Episode) -> Condition | None:
        """An episode unusual for ``regime_min_min`` or longer: one incident while it lasts
        (none while its energy is one the plant reaches routinely at this time of day; once
        told, it stays told until the episode ends)."""
        if not ep.told:
            if len(ep.values) < REGIME_SOLID * (ep.last - ep.start + 1):
                return None  # patchy: a busy stretch, not something that switched on and stayed
            if self._routine_regime(track, ep, self._shop_tolerance):
                return None
            ep.told = True
        n = ep.last - ep.start + 1
        evidence = (
            f"consumption has stood above the highest of the {self.settings.neighbours} past "
            f"days most like today before it began, in {len(ep.values)} of its {n} "
            f"{self.settings.window_min}-min slots; its peak was "
            f"{how_often(ep.reached, ep.history_days)}."
        )
        return self._regime_condition(track, ep, evidence)

    def _routine_regime(
        self, track: Track, ep: Episode, shop_tol: int, beyond: float = 1.0
    ) -> bool:
        """Whether a regime's energy is routine, not news: reached on :data:`USUAL_SHARE` of
        the meter's days of the same kind near this time, or near this time the day before
        (:data:`RECENT_DAYS`: a new pattern, told then if at all), or — when it looks like a
        shop's machines — on any day of the kind within ``shop_tol`` slots, its run ×
        ``beyond`` (the machines drew this much before)."""
        reached, days = self._reached(track, ep)
        if reached >= max(2, USUAL_SHARE * days):
            return True
        if self._reached(track, ep, recent=RECENT_DAYS)[0]:
            return True
        if self._like_machines(track, ep):
            return self._reached(track, ep, shop_tol, beyond=beyond)[0] > 0
        return False

    def _regime_condition(self, track: Track, ep: Episode, evidence: str) -> Condition:
        """The regime condition of episode ``ep`` (its values and usual values over its slots);
        ``evidence``: why it is unusual, the end of its reason."""
        ref = track.ref
        t0, t1 = ep.start * self.slot_ns, (ep.last + 1) * self.slot_ns
        local = ns_to_datetime(t0).astimezone(ref.tz)
        kind = day_type(local, ref.supplier.country)
        usual = sum(ep.usual)
        detail = (
            f"unusual load since {local:%a %H:%M} ({duration_text(t1 - t0)} so far): "
            f"{ep.excess:,.0f} {ref.unit} above the usual {usual:,.0f} {ref.unit}"
        )
        day = "a public holiday" if kind == "holiday" else f"a {kind}"
        reason = f"For {duration_text(t1 - t0)} on {day} {evidence}"
        return Condition(
            "regime", *ref.key, value=sum(ep.values), baseline=usual, unit=ref.unit,
            window_start_ns=t0, window_end_ns=t1, detail=detail, excess=ep.excess,
            reason=reason, late=ep.late,
        )  # fmt: skip

    def _wave(self, track: Track, g: int, base: Baseline | None, late: bool) -> None:
        """Follow the meter's energy over a regime's length (2 h) ending at slot ``g``. A regime
        whose single quarter-hours stay inside the comparable days' range — a shop's machines
        all drawing more, a night load held at one and a half times its level — stands out in
        its energy over hours. The run is unusual while that energy exceeds the comparable
        days' highest energy over the same length near this time (their 80th percentile:
        :attr:`Baseline.window_upper`, days matched on the hours before the run) and their
        usual energy by :data:`WAVE_MARGIN`, and by :data:`WAVE_FLOOR` × the slot floor per
        slot, with :data:`REGIME_SOLID` of its slots above their usual value (a spike inside
        it is not one). Runs less than ``quiet_min`` apart are one wave: ``_wave_regime``
        tells it."""
        usual, width, wave = track.usual_at, self._regime_slots, track.wave
        if base is None:
            usual.pop(g, None)
        else:
            usual[g] = base.median
        # Kept: the wave's slots and a window's worth before it (where it may have begun).
        keep = (wave.start if wave is not None else g) - 2 * width
        if len(usual) > 4 * width and min(usual) < keep:
            track.usual_at = usual = {k: v for k, v in usual.items() if k >= keep}
        above, ratio = False, 0.0
        window = np.arange(g - width + 1, g + 1)
        values = track.get(window)
        medians = track.usual_of(window)
        if base is not None and not (np.isnan(values).any() or np.isnan(medians).any()):
            energy = float(values.sum())
            if (
                energy > (1 + WAVE_MARGIN) * float(medians.sum())
                and (values > medians).mean() >= REGIME_SOLID
            ):
                since = g - width + 1 if wave is None else wave.start
                found = self.baseline(track, g, since, width)
                if found is not None and found.window_upper == found.window_upper:
                    upper = found.window_upper
                    floor = WAVE_FLOOR * width * self.slot_floor(track, g)
                    above = energy > max(upper * (1 + WAVE_MARGIN), upper + floor)
                    ratio = energy / upper if upper > 0 else math.inf
        if not above:
            if wave is not None and g - wave.last >= self._quiet:
                track.wave = None
            return
        if wave is None:
            wave = track.wave = Episode(g - width + 1, g)
        wave.last = g
        wave.late = wave.late or late
        wave.peak_ratio = max(wave.peak_ratio, ratio)

    def _wave_regime(self, track: Track, wave: Episode) -> Condition | None:
        """A wave (see ``_wave``) as a regime: one incident while it lasts, none while its
        energy is one the plant reaches routinely near this time of day (as ``_regime``)."""
        # The regime runs from its first slot clearly above the usual (by half the margin) to its
        # last: a window that stands out also holds quiet slots before it began and after it
        # ended, and it may have begun before its first window that stood out.
        width, usual, clear = self._regime_slots, track.usual_at, 1 + WAVE_MARGIN / 2
        begin = wave.start
        while begin - 1 in usual and track.slot(begin - 1) > clear * usual[begin - 1]:
            begin -= 1
        span = np.arange(begin, wave.last + 1)
        values = track.get(span)
        medians = track.usual_of(span)
        high = np.flatnonzero(values > clear * medians)
        if not len(high):
            return None
        first, last = int(span[high[0]]), int(span[high[-1]])
        ep = Episode(first, last, late=wave.late, told=wave.told)
        if not wave.told:
            if last - first + 1 < width:
                return None
            if self._routine_regime(track, ep, self.per_day // 2, WAVE_BEYOND):
                return None
            wave.told = True
        part = slice(high[0], high[-1] + 1)
        ep.values = [float(v) for v in values[part]]
        ep.usual = [0.0 if m != m else float(m) for m in medians[part]]
        s = self.settings
        hours = duration_text(width * self.slot_ns)
        evidence = (
            f"consumption has stood well above the usual: over {hours} at a time it used up to "
            f"{wave.peak_ratio:.1f}× the most the {s.neighbours} past days most like today "
            f"used over {hours} within {s.shift_tolerance_min} min of this time (days chosen on "
            f"the hours before it began), with most of its {s.window_min}-min slots above their "
            "usual value."
        )
        return self._regime_condition(track, ep, evidence)

    def _day(self, track: Track, day: date, kind: str) -> Day | None:
        """The summary of local ``day`` from the slot history, or ``None`` when fewer than
        :data:`DAY_COVERAGE` of its slots are known."""
        tz = track.ref.tz
        g0 = _local_midnight(day, tz) // self.slot_ns
        g1 = _local_midnight(day + timedelta(days=1), tz) // self.slot_ns
        values = track.get(np.arange(g0, g1))
        known = values[~np.isnan(values)]
        if len(known) < DAY_COVERAGE * len(values):
            return None
        hours = self.slot_ns / HOUR_NS
        base = float(np.quantile(known, BASE_QUANTILE)) / hours
        return Day(day.toordinal(), kind, max(0.0, base), max(0.0, float(known.mean())) / hours)

    def _level(self, track: Track, g: int) -> list[Condition]:
        """At the first slot judged of a local day: the days before it into the meter's
        :class:`~processing.levels.LevelWatch`; a level-shift notice when yesterday completed
        one. (Days caught up after a start are taken in silently: their news is old.)"""
        s, ref = self.settings, track.ref
        local = ns_to_datetime(g * self.slot_ns).astimezone(ref.tz)
        today = local.date()
        if track.base_day == today:
            return []
        track.base_day = today
        watch = track.levels
        if watch is None:
            watch = track.levels = LevelWatch(s.level_shift_pct, s.level_shift_min_days)
        first = today - timedelta(days=self.days)
        if watch.last is not None:
            first = max(first, date.fromordinal(watch.last + 1))
        # A base-load change lasts all day: the spike floor per hour (2 kWh → 2 kW, 48 kWh a
        # day) or LEVEL_FLOOR of the meter's median load, whichever is more.
        floor_kw = max(spike_floor(s, ref),
                       LEVEL_FLOOR * self.level(track, g) / (self.slot_ns / HOUR_NS))  # fmt: skip
        found: LevelShift | None = None
        day = first
        while day < today:
            summary = self._day(track, day, day_type(datetime.combine(day, time()),
                                                     ref.supplier.country))  # fmt: skip
            if summary is not None:
                # Only the latest day is judged: it sees every change of the weeks before it.
                latest = day == today - timedelta(days=1)
                found = watch.add(summary, floor_kw, judge=latest)
            day += timedelta(days=1)
        if found is None:
            return []
        if (today - first).days > 1 and found.last - found.start + 1 > s.level_shift_min_days:
            return []  # caught up after a start or a gap: old news, now the reference
        return [self._level_notice(track, found)]

    def _level_notice(self, track: Track, shift: LevelShift) -> Condition:
        """The notice of a level shift, with its evidence."""
        ref = track.ref
        t0 = _local_midnight(shift.start_date, ref.tz)
        t1 = _local_midnight(date.fromordinal(shift.last + 1), ref.tz)
        direction = "up" if shift.change > 0 else "down"
        # The per cent of the kW figures told beside it (the scan's own change is measured
        # on log(base + floor/2), a little damped).
        change = shift.after_kw / shift.before_kw - 1 if shift.before_kw > 0 else shift.change
        pct = abs(change) * 100
        since = f"{shift.start_date:%a %d %b}"
        skipped = (f"; {shift.skipped} holiday or idle day{'s' if shift.skipped != 1 else ''} "
                   "left out" if shift.skipped else "")  # fmt: skip
        return Condition(
            "level_shift", *ref.key, value=shift.after_kw, baseline=shift.before_kw,
            unit="kW", window_start_ns=t0, window_end_ns=t1,
            detail=f"base load {direction} {pct:.0f}% since {since} "
                   f"({shift.before_kw:,.1f} → {shift.after_kw:,.1f} kW)",
            excess=(shift.after_kw - shift.before_kw) * 24, over=True,
            reason=f"The lowest tenth of each day's load has stood {pct:.0f}% "
                   f"{'above' if shift.change > 0 else 'below'} the usual since {since}: "
                   f"{shift.beyond} of {shift.days} days since then, compared with "
                   f"{shift.reference_days} days of the same weekday type in the weeks before "
                   f"(day to day it usually varies by {shift.spread_pct:.0f}%){skipped}. It "
                   "is now the new normal the alerts compare with.",
        )  # fmt: skip

    def _replaying(self, ref: MeterRef, now_ns: int) -> bool:
        """Whether the meter's gateway is offline or came back less than ``silent_after_min``
        ago — its buffered readings may still be on their way."""
        state, since = self.gateway_state.get((ref.supplier.id, ref.site.id), ("online", 0))
        return state == "offline" or now_ns - since < self.settings.silent_after_min * MIN_NS

    def _silence(self, now_ns: int) -> list[Condition]:
        s = self.settings
        silent_ns = round(s.silent_after_min * MIN_NS)
        out: list[Condition] = []
        for supplier in self.registry.suppliers:
            for site in supplier.sites:
                keys = [(supplier.id, site.id, m.id) for m in site.meters]
                latest = {k: (self.tracks[k].ts[-1] if self.tracks[k].ts else None) for k in keys}
                newest = max((t for t in latest.values() if t is not None), default=None)
                state, since = self.gateway_state.get((supplier.id, site.id), ("online", 0))
                gateway_out = state == "offline" and now_ns - since > silent_ns
                if newest is None:
                    continue  # never heard of: nothing to compare with yet
                if gateway_out or now_ns - newest > silent_ns:
                    last = newest
                    out.append(Condition(
                        "gateway_silent", supplier.id, site.id, site.gateway,
                        value=(now_ns - last) / MIN_NS, baseline=s.silent_after_min,
                        unit="min", window_start_ns=last, window_end_ns=now_ns,
                        detail=f"no readings for {(now_ns - last) / MIN_NS:.0f} min"
                               + (" (gateway says offline)" if state == "offline" else ""),
                        reason=f"No meter of this site has reported for longer than the "
                               f"threshold of {s.silent_after_min:.0f} min.",
                    ))  # fmt: skip
                    continue
                back_for = now_ns - since if state == "online" else 0
                if since and back_for < silent_ns:
                    continue  # the gateway just came back: let it replay its buffer
                for key, last in latest.items():
                    if last is None:
                        continue
                    interval_ns = self.tracks[key].ref.meter.interval_s * 10**9
                    limit = max(silent_ns, 3 * interval_ns)
                    if now_ns - last > limit:
                        out.append(Condition(
                            "meter_silent", *key, value=(now_ns - last) / MIN_NS,
                            baseline=limit / MIN_NS, unit="min", window_start_ns=last,
                            window_end_ns=now_ns,
                            detail=f"no readings for {(now_ns - last) / MIN_NS:.0f} min "
                                   "while the gateway delivers the others",
                            reason=f"This meter has not reported for longer than the threshold "
                                   f"of {limit / MIN_NS:.0f} min while its gateway delivers the "
                                   "other meters.",
                        ))  # fmt: skip
        return out

    def _stuck(self, now_ns: int) -> list[Condition]:
        s = self.settings
        span = round(s.stuck_after_min * MIN_NS)
        out: list[Condition] = []
        for key, track in self.tracks.items():
            if track.ref.meter.carrier != "electricity" or len(track.ts) < 3:
                continue
            if now_ns - track.ts[-1] > span:
                continue  # silent, not stuck
            i = bisect.bisect_left(track.ts, track.ts[-1] - span)
            if track.ts[-1] - track.ts[i] < span * 0.9:
                continue
            registers = track.register[i:]
            powers = track.power_since(i)
            if max(registers) - min(registers) == 0 and powers and min(powers) > s.stuck_min_kw:
                out.append(Condition(
                    "stuck", *key, value=statistics.mean(powers), baseline=None, unit="kW",
                    window_start_ns=track.ts[i], window_end_ns=track.ts[-1],
                    detail=f"register flat at {registers[-1]:,.3f} for "
                           f"{(track.ts[-1] - track.ts[i]) / MIN_NS:.0f} min while "
                           f"{statistics.mean(powers):,.1f} kW is reported",
                    reason=f"The register has not moved for over {s.stuck_after_min:.0f} min "
                           f"although the meter reports more than {s.stuck_min_kw:g} kW.",
                ))  # fmt: skip
        return out

    def history(self, key: tuple[str, str, str], now_ns: int, hours: int = 24):
        """(slot end, consumption, baseline) for each slot of the last ``hours`` hours, for the
        email chart."""
        track = self.tracks[key]
        latest = self.window_end(now_ns) // self.slot_ns
        out = []
        for g in range(latest - hours * HOUR_NS // self.slot_ns, latest):
            value = track.slot(g)
            out.append(((g + 1) * self.slot_ns, None if value != value else value,
                        self.baseline(track, g)))  # fmt: skip
        return out
