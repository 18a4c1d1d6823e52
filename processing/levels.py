"""Lasting changes of a meter's base load, told once they have lasted long enough to matter.

Each local day of a meter becomes a :class:`Day`: its base load (the 10th percentile of its
slots, kW — what the plant draws when nothing runs) and its mean load. :class:`LevelWatch` keeps
about three months of them and looks, each day, for **one change point with a minimum segment
length** (the at-most-one-change likelihood scan of Hinkley, "Inference about the change-point
in a sequence of random variables", *Biometrika* 57, 1970, with the minimum segment length of
the change-point literature, e.g. Killick, Fearnhead & Eckley, *JASA* 107, 2012): every day τ of
the last :data:`MAX_AGE_DAYS` that would make the segment since τ at least ``min_days`` long
is a candidate first day of a new level, and the days since τ are compared with the
:data:`BEFORE_DAYS` before τ:

* A day is compared only with days of its own **day type** (workday, Saturday, Sunday): its
  deviation is ``log(base) − median log(base)`` of that type's days before τ, in units of the
  meter's own day-to-day spread there (σ from the mean absolute deviation, at least
  :data:`MIN_SPREAD`).
* **The calendar explains some changes**, and those days are neither evidence nor reference:
  public holidays, and *idle days* — a day whose load has lost its usual shape (mean ÷ base
  close to 1 where that day type usually has a clear production peak): shutdown weeks, bridge
  days, a line stopped for a strike or a lack of orders — or a day that used less than half
  its type's usual energy, unless it kept a working day's shape (the whole load scaled down,
  a line closed: that is a change). So a summer shutdown and the return from it are not
  level shifts.
* A candidate is a **change** when the median deviation since τ is at least ``min_pct`` and
  outside the usual day-to-day band (:data:`BAND` spreads), :data:`AGREE` of its days stood
  beyond half of it, the latest day still shows it, its later half agrees with its earlier half
  (:data:`STEP`: a step, not a drift) and it moved the base by at least ``floor_kw``. Of the
  candidates, the one with the strongest evidence (mean deviation × √days) is told; a new level
  is then the reference and the days before it are not compared with again.

Measured against the four weeks just before the change — not a longer reference — a change is
told as large as it is, also right after an earlier one that was too small to tell; a season's
drift moves less than ``min_pct`` in four weeks and is followed rather than told.

Every figure of the notice is evidence a plant manager can check on the meter's own chart: since
when, how many days, how far (per cent and kW), compared with which days.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import date

KEEP_DAYS = 91
"""Days of summaries kept per meter (13 weeks; 4 numbers a day)."""
BEFORE_DAYS = 28
"""A change is compared with the four weeks before it ..."""
MAX_AGE_DAYS = 27
"""... and looked for among the last four weeks of days (an older one was told already, or
has become the reference)."""
MIN_REFERENCE = 3
"""Days of a day type before the change needed before days of that type are judged ..."""
MIN_BEFORE = 10
"""... and usable days before the change in all (two working weeks: after an announced change,
the new level is learnt before it is compared with)."""
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
IDLE_SHAPE = 0.4
"""A day is idle when it used less than usual and its mean ÷ base exceeds 1 by less than this
share of its type's usual excess (and that type has a clear shape: usual mean ÷ base ≥ 1.3) —
a continuous production day is flat too, but uses more, not less ..."""
IDLE_MEAN = 0.45
"""... or when it used less than this share of its type's usual energy (a shutdown that left
the base load standing) ..."""
KEEP_SHAPE = 0.7
"""... unless it kept its shape: mean ÷ base exceeds 1 by at least this share of its type's
usual excess, where that type has a clear working day (usual mean ÷ base ≥ 1 +
:data:`KEEP_MIN_SHAPE`). A plant whose whole load fell by more than half, peaks and base alike
(a line closed for good), still works the usual day; counted as a shutdown, every day after
the change was left out and the change was never told. (On the real series: level-shift
recall 0.83 → 0.87, precision 0.62 → 0.65, BENCHMARKS.md.)"""
KEEP_MIN_SHAPE = 0.5
"""A weekend whose usual mean is 1.3 × its base has no working shape to keep: a toolmaker's
Christmas Saturday at a fifth of the usual energy kept "its shape" and was told as a 71 %
drop."""
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
class LevelWatch:
    """One meter's day summaries and its change-point scan (see the module docstring)."""

    min_pct: float
    """Smallest change announced [%]."""
    min_days: int
    """A change must have lasted this many calendar days."""
    days: deque[Day] = field(default_factory=lambda: deque(maxlen=KEEP_DAYS))
    reset: int = -(2**31)
    """Days before this ordinal are no longer reference (the last announced change)."""

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
        kept_shape = shape >= KEEP_MIN_SHAPE and day.shape - 1 >= KEEP_SHAPE * shape
        if day.mean_kw < IDLE_MEAN * mean and not kept_shape:
            return False  # a shutdown: less than half the usual energy
        lost_shape = shape >= 0.3 and day.shape - 1 < IDLE_SHAPE * shape
        return not (lost_shape and day.mean_kw < mean)

    def add(self, day: Day, floor_kw: float, judge: bool = True) -> LevelShift | None:
        """Take the next day in (days arrive in order; a repeated or older day is ignored);
        the change to announce, if this day completes one. ``floor_kw``: the smallest move of
        the base load worth telling [kW]. ``judge=False`` only keeps the day (a catch-up:
        the latest day judged sees the same changes)."""
        if self.days and day.ordinal <= self.days[-1].ordinal:
            return None
        shapes = self._shapes()
        use = self.usable(day, shapes)
        self.days.append(day)
        if not use or not judge:
            return None
        eps = floor_kw / 2
        newest = day.ordinal
        oldest = max(self.reset, newest - MAX_AGE_DAYS - BEFORE_DAYS)
        days = [(d, math.log(d.base_kw + eps)) for d in self.days
                if d.ordinal >= oldest and self.usable(d, shapes)]  # fmt: skip
        best: tuple[float, LevelShift] | None = None
        for first in range(max(self.reset, newest - MAX_AGE_DAYS), newest - self.min_days + 2):
            found = self._candidate(days, first, newest, eps, floor_kw)
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        if best is None:
            return None
        shift = best[1]
        shift = replace(shift, skipped=sum(1 for d in self.days if d.ordinal >= shift.start)
                        - shift.days)  # fmt: skip
        self.reset = shift.start
        return shift

    def _candidate(
        self, days: list[tuple[Day, float]], first: int, newest: int, eps: float, floor_kw: float
    ) -> tuple[float, LevelShift] | None:
        """The change whose first day is ``first`` (an ordinal), with the weight of its
        evidence, if the days since it make one (see the module docstring). ``days``: the
        usable days with their log base."""
        before = [(d, x) for d, x in days if first - BEFORE_DAYS <= d.ordinal < first]
        if len(before) < MIN_BEFORE:
            return None
        by_type: dict[str, list[float]] = {}
        for d, x in before:
            by_type.setdefault(d.kind, []).append(x)
        centre = {k: statistics.median(v) for k, v in by_type.items() if len(v) >= MIN_REFERENCE}
        since = [(d, x - centre[d.kind]) for d, x in days
                 if d.ordinal >= first and d.kind in centre]  # fmt: skip
        if not since or since[-1][0].ordinal != newest:
            return None
        if newest - since[0][0].ordinal + 1 < self.min_days:
            return None
        xs = [x for _, x in since]
        shift = statistics.median(xs)
        sign = 1.0 if shift > 0 else -1.0
        # ``min_pct`` either way: up by log(1 + p), down by −log(1 − p).
        pct = self.min_pct / 100
        least = math.log1p(pct) if sign > 0 else -math.log1p(-pct) if pct < 1 else math.inf
        if sign * shift < least:
            return None  # (most candidates: checked before the spreads are worked out)
        # Deviations from a median of n days are smaller than from the truth: × √(n/(n−1)).
        spread = _spread([(x - centre[k]) * math.sqrt(len(v) / (len(v) - 1))
                          for k, v in by_type.items() if k in centre for x in v])  # fmt: skip
        # The days since the change vary at least as much as the days before it: a calm
        # reference month alone does not make a noisy week a change.
        if len(xs) >= 5:
            spread = max(spread, _spread([x - shift for x in xs]))
        threshold = max(least, BAND * spread)
        beyond = sum(1 for x in xs if sign * x >= threshold / 2)
        if (
            sign * shift < threshold
            or beyond < AGREE * len(xs)
            or min(sign * xs[0], sign * xs[-1]) < threshold / 2
        ):
            return None  # not there, not clear, or not begun on its first day or not still on
        half = len(xs) // 2
        if half and abs(statistics.median(xs[half:]) - statistics.median(xs[:half])) > max(
            STEP * abs(shift), spread
        ):
            return None  # still moving: a drift, not a step to a new level
        before_kw = statistics.median(d.base_kw for d, _ in before)
        after_kw = (before_kw + eps) * math.exp(shift) - eps
        if abs(after_kw - before_kw) < floor_kw:
            return None
        weight = abs(statistics.fmean(xs)) * math.sqrt(len(xs)) / spread
        return weight, LevelShift(
            start=since[0][0].ordinal, last=newest, change=math.expm1(shift),
            before_kw=before_kw, after_kw=after_kw, days=len(xs), beyond=beyond,
            reference_days=len(before), skipped=0, spread_pct=100 * math.expm1(spread),
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
