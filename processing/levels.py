"""Lasting changes of a meter's base load, told once they have lasted long enough to matter.

Each local day of a meter becomes a :class:`Day`: its base load (the 10th percentile of its
slots, kW — what the plant draws when nothing runs) and its mean load. :class:`LevelWatch` keeps
about three months of them and runs a two-sided **CUSUM** (Page, "Continuous inspection
schemes", *Biometrika* 41, 1954; the tabular form of Montgomery, *Introduction to Statistical
Quality Control*, 7th ed., §9.1) on each day's deviation from the comparable days before it:

* A day is compared only with days of its own **day type** (workday, Saturday, Sunday): the
  deviation is ``log(base) − median log(base)`` of that type's reference days, scaled by the
  meter's own day-to-day spread (1.4826 × the median absolute deviation, at least
  :data:`MIN_SPREAD`) and clipped at ±:data:`CLIP`, so one odd day moves the sum at most that
  much.
* **The calendar explains some changes**, and those days are neither evidence nor reference:
  public holidays, and *idle days* — a day whose load has lost its usual shape (mean ÷ base
  close to 1 where that day type usually has a clear production peak): shutdown weeks, bridge
  days, a line stopped for a strike or a lack of orders. So a summer shutdown and the return
  from it are not level shifts.
* The reference is the usable days before the current run of the sum began (up to
  :data:`REFERENCE_DAYS` back, never before the last announced change), so a slow change does
  not drag its own reference along.
* A change is **announced** when the sum passes ``h`` *and* it has lasted ``min_days``
  calendar days *and* the median deviation of its days is at least ``min_pct`` *and* moved the
  base by at least ``floor_kw`` *and* the latest usable day still shows it. A new level is
  then the reference; the days before it are not compared with again.

Every figure of the notice is evidence a plant manager can check on the meter's own chart: since
when, how many days, how far (per cent and kW), compared with which days.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from datetime import date

KEEP_DAYS = 91
"""Days of summaries kept per meter (13 weeks; 4 bytes × 4 a day)."""
REFERENCE_DAYS = 42
"""The reference reaches this many days back from the start of the change (six weeks)."""
MIN_REFERENCE = 3
"""Reference days of a day type needed before a day of that type is judged ..."""
MIN_REFERENCE_DAYS = 14
"""... and usable reference days in all (two weeks: after an announced change, the new level
is learnt before it is compared with)."""
MAX_RUN_DAYS = 28
"""A run of the sum that has not become a clear change in four weeks is a drift; it starts
over against a newer reference."""
STEP = 0.5
"""A step, not a drift: the later half of the days since the change may differ from the earlier
half by at most this share of the change (or one spread)."""
BAND = 1.5
"""A change is announced only when it also lies outside the usual day-to-day band (± 1.5
spreads: the middle 87 % of days) ..."""
AGREE = 0.75
"""... and at least this share of its days stood beyond half of it, on its side."""
MIN_SPREAD = 0.04
"""The day-to-day spread of log(base) is taken as at least this (≈ 4 %: meter resolution and
quantisation), so a perfectly flat history does not make every wobble a shift."""
CLIP = 3.0
"""A day moves the sum by at most this many spreads (holidays missed by the calendar, a
one-off)."""
K, H = 0.5, 5.0
"""CUSUM reference value and decision interval in spreads (Montgomery's k = 0.5, h ≈ 5: for
independent normal days an average of ~900 days between false signals on each side, a
one-spread shift found in ~10 days, a three-spread one in ~2–3)."""
IDLE_SHAPE = 0.4
"""A day is idle when it used less than usual and its mean ÷ base exceeds 1 by less than this
share of its type's usual excess (and that type has a clear shape: usual mean ÷ base ≥ 1.3) —
a continuous production day is flat too, but uses more, not less ..."""
IDLE_MEAN = 0.45
"""... or when it used less than this share of its type's usual energy (a shutdown that left
the base load standing)."""
TYPES = {"workday": "workday", "Saturday": "Saturday", "Sunday": "Sunday"}
"""Day types compared with each other; holidays are not compared at all."""


@dataclass(frozen=True)
class Day:
    """One local day of a meter."""

    ordinal: int
    """``date.toordinal()``."""
    kind: str
    """``workday``, ``Saturday``, ``Sunday`` or ``holiday``."""
    base_kw: float
    """10th percentile of the day's slots [kW]."""
    mean_kw: float
    """Mean load over the day [kW]."""

    @property
    def shape(self) -> float:
        """Mean ÷ base: 1 for a flat (idle) day."""
        return self.mean_kw / self.base_kw if self.base_kw > 0 else math.inf


@dataclass(frozen=True)
class LevelShift:
    """An announced change of the base load."""

    start: int
    """First day of the new level (ordinal)."""
    last: int
    """Latest day judged (ordinal)."""
    change: float
    """Relative change of the base load (+0.2: 20 % up)."""
    before_kw: float
    """Median base load of the reference days [kW]."""
    after_kw: float
    """Median base load since the change, in the reference's day-type mix [kW]."""
    days: int
    """Usable days since the change (holidays and idle days left out)."""
    beyond: int
    """Of those, days beyond half the announced change on the same side."""
    reference_days: int
    skipped: int
    """Days since the change left out as holidays or idle days."""
    spread_pct: float
    """The meter's usual day-to-day spread of the base load [%]."""

    @property
    def start_date(self) -> date:
        return date.fromordinal(self.start)


@dataclass
class _Side:
    total: float = 0.0
    start: int | None = None
    """First day of the current run of the sum."""


@dataclass
class LevelWatch:
    """One meter's day summaries and its CUSUM (see the module docstring)."""

    min_pct: float
    """Smallest change announced [%]."""
    min_days: int
    """A change must have lasted this many calendar days."""
    days: deque[Day] = field(default_factory=lambda: deque(maxlen=KEEP_DAYS))
    reset: int = -(2**31)
    """Days before this ordinal are no longer reference (the last announced change)."""
    up: _Side = field(default_factory=_Side)
    down: _Side = field(default_factory=_Side)

    @property
    def last(self) -> int | None:
        return self.days[-1].ordinal if self.days else None

    def _shapes(self) -> dict[str, tuple[float, float]]:
        """Each day type's usual (mean ÷ base − 1, mean load [kW]) over the days kept."""
        shapes: dict[str, list[float]] = {}
        means: dict[str, list[float]] = {}
        for d in self.days:
            if d.kind in TYPES and d.base_kw > 0:
                shapes.setdefault(d.kind, []).append(d.shape)
                means.setdefault(d.kind, []).append(d.mean_kw)
        return {k: (statistics.median(v) - 1, statistics.median(means[k]))
                for k, v in shapes.items() if len(v) >= MIN_REFERENCE}  # fmt: skip

    def usable(self, day: Day, shapes: dict[str, tuple[float, float]] | None = None) -> bool:
        """Not a holiday, not an idle day (``shapes``: :meth:`_shapes`, computed once)."""
        if day.kind not in TYPES:
            return False
        usual = (self._shapes() if shapes is None else shapes).get(day.kind)
        if usual is None:
            return True
        shape, mean = usual
        if day.mean_kw < IDLE_MEAN * mean:
            return False  # a shutdown: less than half the usual energy
        lost_shape = shape >= 0.3 and day.shape - 1 < IDLE_SHAPE * shape
        return not (lost_shape and day.mean_kw < mean)

    def add(self, day: Day, floor_kw: float) -> LevelShift | None:
        """Take the next day in (days arrive in order; a repeated or older day is ignored);
        the change to announce, if this day completes one. ``floor_kw``: the smallest move of
        the base load worth telling [kW]."""
        if self.days and day.ordinal <= self.days[-1].ordinal:
            return None
        shapes = self._shapes()
        use = self.usable(day, shapes)
        self.days.append(day)
        if not use:
            return None
        eps = floor_kw / 2
        starts = [s.start for s in (self.up, self.down) if s.start is not None]
        if starts and day.ordinal - min(starts) >= MAX_RUN_DAYS:
            # A run this long without a clear step is a slow drift (season, weather): the
            # reference follows it instead.
            self.up, self.down, starts = _Side(), _Side(), []
        reference = self._reference(min(starts, default=day.ordinal), shapes)
        if starts and len(reference) < MIN_REFERENCE_DAYS:
            self.up, self.down = _Side(), _Side()
            reference = self._reference(day.ordinal, shapes)
        by_type: dict[str, list[float]] = {}
        for d in reference:
            by_type.setdefault(d.kind, []).append(math.log(d.base_kw + eps))
        mine = by_type.get(day.kind, [])
        if len(mine) < MIN_REFERENCE or len(reference) < MIN_REFERENCE_DAYS:
            return None
        centre = {k: statistics.median(v) for k, v in by_type.items() if len(v) >= MIN_REFERENCE}
        # Deviations from a median of n days are smaller than from the truth: × √(n/(n−1)).
        spread = _spread([(x - centre[k]) * math.sqrt(len(v) / (len(v) - 1))
                          for k, v in by_type.items() if k in centre for x in v])  # fmt: skip
        x = math.log(day.base_kw + eps) - centre[day.kind]
        z = max(-CLIP, min(CLIP, x / spread))
        # The reference value is half the smallest change worth telling (Montgomery: k = δ/2),
        # so a drift smaller than that does not add up.
        k = max(K, math.log1p(self.min_pct / 100) / 2 / spread)
        for side, sign in ((self.up, 1.0), (self.down, -1.0)):
            side.total = max(0.0, side.total + sign * z - k)
            if side.total == 0.0:
                side.start = None
            elif side.start is None:
                side.start = day.ordinal
        for side, sign in ((self.up, 1.0), (self.down, -1.0)):
            if side.total < H or side.start is None:
                continue
            found = self._judge(side.start, day, sign, centre, spread, eps, floor_kw,
                                reference, shapes)  # fmt: skip
            if found is not None:
                self.reset = found.start
                self.up, self.down = _Side(), _Side()
                return found
        return None

    def _reference(self, end: int, shapes: dict[str, tuple[float, float]]) -> list[Day]:
        """Usable days before ``end`` back to :data:`REFERENCE_DAYS`, none before the last
        announced change."""
        begin = max(self.reset, end - REFERENCE_DAYS)
        return [d for d in self.days if begin <= d.ordinal < end and self.usable(d, shapes)]

    def _judge(
        self, start: int, day: Day, sign: float, centre: dict[str, float], spread: float,
        eps: float, floor_kw: float, reference: list[Day], shapes: dict[str, tuple[float, float]],
    ) -> LevelShift | None:  # fmt: skip
        """The change in the run that began at ``start``, if it is long, large and still there.
        It starts where the evidence is strongest: the day τ that maximises Σ_{i≥τ} x_i / √n
        (the maximum-likelihood change point of a step in a normal mean; the sum may have begun
        to run a little before the step)."""
        days = [d for d in self.days
                if d.ordinal >= start and d.kind in centre and self.usable(d, shapes)]  # fmt: skip
        xs = [sign * (math.log(d.base_kw + eps) - centre[d.kind]) for d in days]
        if not xs:
            return None
        best, tail = -math.inf, 0.0
        for i in range(len(xs) - 1, -1, -1):
            tail += xs[i]
            score = tail / math.sqrt(len(xs) - i)
            if score > best:
                best, first = score, i
        start = days[first].ordinal
        if day.ordinal - start + 1 < self.min_days:
            return None
        run = [d for d in self.days if d.ordinal >= start]
        judged = days[first:]
        xs = [sign * x for x in xs[first:]]
        shift = statistics.median(xs)
        threshold = max(math.log1p(self.min_pct / 100), BAND * spread)
        beyond = sum(1 for x in xs if sign * x >= threshold / 2)
        if sign * shift < threshold or sign * xs[-1] < threshold / 2 or beyond < AGREE * len(xs):
            return None
        half = len(xs) // 2
        if half and abs(statistics.median(xs[half:]) - statistics.median(xs[:half])) > max(
            STEP * abs(shift), spread
        ):
            return None  # still moving: a drift, not a step to a new level
        before = statistics.median(d.base_kw for d in reference)
        after = (before + eps) * math.exp(shift) - eps
        if abs(after - before) < floor_kw:
            return None
        return LevelShift(
            start=start, last=day.ordinal, change=math.expm1(shift), before_kw=before,
            after_kw=after, days=len(judged),
            beyond=beyond,
            reference_days=len(reference), skipped=len(run) - len(judged),
            spread_pct=100 * math.expm1(spread),
        )  # fmt: skip


def _spread(deviations: list[float]) -> float:
    """The day-to-day spread σ of log(base) around its type's median: 1.2533 × the mean
    absolute deviation (σ for normal days), each deviation clipped at three times the median
    one so a single odd day does not widen it, at least :data:`MIN_SPREAD`. (The mean, not
    the median, of the deviations: quantised data can make half the days equal.)"""
    size = [abs(x) for x in deviations]
    if not size:
        return MIN_SPREAD
    cap = 3 * 1.4826 * statistics.median(size) or math.inf
    return max(MIN_SPREAD, 1.2533 * statistics.fmean(min(x, cap) for x in size))
