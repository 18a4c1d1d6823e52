"""Alert quality on real load series: false alarms on untouched data, precision and recall of
labelled injected events.

    bench/bench_alerts_real.py --series DIR [--json OUT] [--simulated] [--seed S] [--seeds N]

``DIR`` holds CSV files in the format of ``data/real-loads`` (first column: the start of each
15-minute interval with its UTC offset; second: the mean load in that interval, any unit) and a
``series.toml`` with one table per file stem: ``mean_kw`` (scale to this mean power),
``country`` (public holidays), ``kind`` (``industrial``, ``commercial``, …) and optionally
``timezone`` (default: Europe/Berlin for DE, Asia/Taipei for TW, else the file's first offset)
and ``start`` (an ISO date) or ``year`` (the series is moved by whole weeks to start near it,
weekdays kept), and ``base_shifts`` (the series' own known base-load changes, ``[[time, before,
after], …]``: the simulator writes its ground truth there) — a level-shift notice of one of them
is neither false on the untouched series nor in the injected runs. Any interval that divides
an hour is read (the most common one is the grid); missing rows and empty or non-numeric
values are gaps — no reading is sent for them.
``--simulated`` adds the simulator's five site meters (one year, 15-min, from
``bench_realism.py``), scored the same way and pooled as ``simulator``; the forge's and the
heat-treatment plant's (shops of large machines) are also pooled as ``simulator-heavy``.

Each series is run through the real :class:`~processing.detect.Detector` and
:class:`~processing.alerts.IncidentBook` — as a meter with 15-minute cumulative readings, judged
every 15 minutes, after ``baseline_weeks`` of history — four times (each injected run once per
seed of ``--seeds``):

* **untouched**: every spike alert is a false alarm (``false_alarms_per_meter_week``); regime and
  level-shift notices are counted beside it;
* **spikes**: +50–300 % for 15–60 min at random times, ~2 per meter-week (the alerts issue's
  protocol) — ``spike_precision``, ``spike_recall`` and ``recall_100pct_30min`` (spikes of at
  least +100 % lasting at least 30 min); an alert matches a spike it overlaps (± one slot);
* **regimes**: +50–150 % for 2–8 h, ~1 per meter-fortnight — scored on regime alerts; recall is
  also given apart for the regimes that stay within the load's routine energy
  (:func:`routine_regimes`: the detector's own rule for not telling one) and for the rest;
* **level shifts**: the load from a random time on × 1.15–1.6 or × 0.6–0.85, ~1 per 8 weeks,
  at least three weeks apart — scored on level-shift notices in the same direction within two
  weeks of the change; of the notices scored false, the bench also counts those at a lasting
  change of the series' own, found in hindsight (:data:`OWN_CHANGE_PCT`).

Pooled figures: ``all`` and per ``kind``. Targets (alerts issue): real series ≤ 0.5 false
alarms per meter-week (≤ 0.2 industrial), spike precision ≥ 0.8 and recall ≥ 0.8 for ≥ +100 %,
≥ 30 min; the simulator ≥ 0.9 / 0.9. The printed table says which are met; BENCHMARKS.md
records them.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import random
import sys
import time
import tomllib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from processing.alerts import IncidentBook
from processing.detect import (
    BASE_QUANTILE,
    DAY_COVERAGE,
    MIN_NS,
    RECENT_DAYS,
    USUAL_SHARE,
    Detector,
    day_type,
    strongest_run,
)
from supplymeter.config import AlertSettings, Allocation, Meter, Registry, Site, Supplier
from supplymeter.records import datetime_to_ns

SLOT_NS = 15 * MIN_NS
DAY_NS = 86_400 * 10**9
WEEK_NS = 7 * DAY_NS
LEVEL_MATCH_DAYS = 14
"""A level-shift notice matches a change announced within two weeks of it (a shift is told
once it has lasted long enough to matter, not on its first day)."""
LEVEL_SPACING_DAYS = 21
"""Injected level shifts begin at least three weeks apart: a change undone or doubled within
days is not a level that lasted (``level_shift_min_days``, 7) and then had two weeks to be
told."""
KNOWN_SHIFT_PCT = 10.0
"""A series' own known base-load change (``base_shifts`` in ``series.toml``: the simulator's
ground truth) of at least this much explains a level-shift notice; it is not scored in recall
(its effect on the day's lowest tenth depends on the rest of the load)."""
OWN_CHANGE_PCT = 10.0
OWN_CHANGE_WEEKS = 4
"""A level-shift notice not at an injected shift is scored false. Beside that figure the bench
says how many such notices mark a lasting change of the series' own: the untouched load's
base (each day's lowest tenth, as the level watch summarises a day) over the
``OWN_CHANGE_WEEKS`` weeks from the notice's first day differs from the weeks before by at
least ``OWN_CHANGE_PCT`` the same way (the median of each day type, holidays left out,
weighted by days). A hindsight check the detector cannot make when it tells a change a week
in, and not a target: it shows whether the notices scored false are about real changes."""
KINDS = ("spike", "regime", "level_shift")
"""The kinds of injected event, each scored on the alerts of the same type."""
COUNTS = ("events", "detected", "alerts", "alerts_matching", "events_100pct_30min",
          "detected_100pct_30min", "alerts_own_change", "events_routine",
          "detected_routine")  # fmt: skip
"""Every count a kind's row may hold (:func:`figures` totals them by name): all 0 in the row of
a kind left out with ``--only``."""
MESSAGE_TYPES = (
    "spike",
    "regime",
    "level_shift",
    "meter_silent",
    "gateway_silent",
    "stuck",
    "over_capacity",
)
"""Every kind of email a plant manager receives about a meter or site."""
TIMEZONES = {"DE": "Europe/Berlin", "TW": "Asia/Taipei"}
CEILINGS = (
    ("industrial", "messages_per_meter_week", 0.3),
    ("industrial", "false_alarms_per_meter_week", 0.15),
    ("heavy", "messages_per_meter_week", 0.5),
    ("simulator", "messages_per_meter_week", 0.5),
    ("simulator-heavy", "messages_per_meter_week", 0.5),
)
"""(pooled group, figure, ceiling): every message on untouched series, per meter-week."""
KIND_FLOORS = (
    ("spike_precision", 0.8), ("regime_precision", 0.8), ("level_shift_precision", 0.8),
    ("recall_100pct_30min", 0.85), ("regime_recall", 0.7), ("level_shift_recall", 0.7),
)  # fmt: skip
FLOORS = tuple((g, name, floor) for g in ("all", "simulator") for name, floor in KIND_FLOORS)
"""(pooled group, figure, floor): precision per kind; recall for spikes ≥ +100 % lasting
≥ 30 min, regimes ≥ 2 h and level shifts ≥ 15 %."""


@dataclass
class Injected:
    kind: str
    start_ns: int
    end_ns: int
    pct: float


@dataclass
class Series:
    name: str
    kind: str
    country: str
    timezone: str
    ts_ns: list[int]
    kw: list[float]
    """Mean load per interval [kW]; NaN where the file has none."""
    step_ns: int = 15 * MIN_NS
    base_shifts: list[Injected] = field(default_factory=list)
    """The series' own base-load changes, where known (the simulator's ground truth)."""


Alert = tuple[str, int, int, int, int]
"""An incident opened: type, window start, window end, when opened (epoch ns), direction."""


def read_series(directory: Path) -> list[Series]:
    """Every CSV of ``directory`` with its ``series.toml`` entry, scaled to ``mean_kw``, on a
    regular grid (its most common interval; missing or empty rows are gaps, NaN)."""
    meta = tomllib.loads((directory / "series.toml").read_text())
    out = []
    for path in sorted(directory.glob("*.csv")):
        entry = meta.get(path.stem)
        if entry is None:
            sys.exit(f"{path.name}: no [{path.stem}] table in {directory / 'series.toml'}")
        rows: dict[int, float] = {}
        first_stamp = None
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            for n, row in enumerate(reader, start=2):
                if not row or not row[0].strip():
                    continue
                try:
                    stamp = datetime.fromisoformat(row[0].strip())
                except ValueError as exc:
                    sys.exit(f"{path.name}:{n}: cannot read the time {row[0]!r}: {exc}")
                if stamp.tzinfo is None:
                    sys.exit(f"{path.name}:{n}: the time needs its UTC offset")
                first_stamp = first_stamp or stamp
                try:
                    value = float(row[1])
                except (IndexError, ValueError):
                    value = math.nan  # an empty or unreadable value: a gap
                rows[datetime_to_ns(stamp)] = value if math.isfinite(value) else math.nan
        if len(rows) < 2 or first_stamp is None:
            sys.exit(f"{path.name}: fewer than two rows")
        stamps = sorted(rows)
        diffs = Counter(b - a for a, b in pairwise(stamps))
        step = diffs.most_common(1)[0][0]
        if step < MIN_NS or (3600 * 10**9) % step:
            sys.exit(f"{path.name}: interval {step / 1e9:g} s must divide an hour")
        grid = list(range(stamps[0], stamps[-1] + 1, step))
        raw = [rows.get(t, math.nan) for t in grid]
        negative = sum(1 for v in raw if v < 0)
        if negative:
            print(f"{path.name}: {negative} negative values read as 0", file=sys.stderr)
        raw = [max(0.0, v) if v == v else v for v in raw]
        known = [v for v in raw if v == v]
        country = str(entry.get("country", "DE"))
        zone = entry.get("timezone") or TIMEZONES.get(country)
        if zone is None:
            offset = first_stamp.utcoffset()
            hours = int(offset.total_seconds() // 3600) if offset else 0
            zone = f"Etc/GMT{-hours:+d}" if hours else "UTC"
        start = entry.get("start") or (f"{entry['year']}-01-01" if "year" in entry else None)
        if start is not None:  # moved by whole weeks, so weekdays stay weekdays
            target = datetime_to_ns(
                datetime.combine(date.fromisoformat(str(start)), datetime.min.time(),
                                 ZoneInfo(zone)))  # fmt: skip
            weeks = round((target - grid[0]) / WEEK_NS)
            grid = [t + weeks * WEEK_NS for t in grid]
        mean = sum(known) / len(known) if known else 0.0
        if not mean > 1e-9:
            sys.exit(f"{path.name}: no load to scale (mean {mean:g} over {len(known)} values)")
        if "mean_kw" in entry:
            scale = float(entry["mean_kw"]) / mean
        else:  # no plant size given: the values are taken as watts
            print(f"{path.name}: no mean_kw in series.toml; values read as W", file=sys.stderr)
            scale = 1e-3
        shifts = []
        for n, item in enumerate(entry.get("base_shifts", [])):
            try:
                at, before, after = item
                t = datetime_to_ns(datetime.fromisoformat(str(at).replace("Z", "+00:00")))
                pct = 100 * (float(after) / float(before) - 1)
                shifts.append(Injected("level_shift", t, t, pct))
            except (TypeError, ValueError, ZeroDivisionError) as exc:
                sys.exit(f"{path.stem}: base_shifts[{n}] must be [time, before, after]: {exc}")
        out.append(Series(path.stem, str(entry.get("kind", "other")), country, zone, grid,
                          [v * scale for v in raw], step, shifts))  # fmt: skip
    return out


def inject(
    series: Series, kind: str, rng: random.Random, from_ns: int
) -> tuple[list[float], list[Injected]]:
    """A copy of the load with labelled events of ``kind`` after ``from_ns``."""
    kw = list(series.kw)
    t_last = series.ts_ns[-1]
    events: list[Injected] = []
    span = t_last - from_ns
    if kind == "spike":
        n, minutes, pct = round(2.0 * span / WEEK_NS), (15, 60), (50.0, 300.0)
    elif kind == "regime":
        n, minutes, pct = round(0.5 * span / WEEK_NS), (120, 480), (50.0, 150.0)
    else:
        n, minutes, pct = max(1, round(span / (8 * WEEK_NS))), (0, 0), (15.0, 60.0)
    # A level shift must have lasted and had its two weeks to be told before the data ends.
    latest = t_last - (LEVEL_MATCH_DAYS * DAY_NS if kind == "level_shift" else 8 * 3600 * 10**9)
    if latest <= from_ns:
        n = 0  # too short a series to judge this kind after its history
    for _ in range(n):
        start = rng.randrange(from_ns, latest)
        if kind == "level_shift":
            for _retry in range(100):  # each shift lasts before the next begins
                if all(abs(start - e.start_ns) >= LEVEL_SPACING_DAYS * DAY_NS for e in events):
                    break
                start = rng.randrange(from_ns, latest)
            else:
                continue
            up = rng.random() < 0.6
            p = rng.uniform(*pct) if up else -rng.uniform(15.0, 40.0)
            events.append(Injected(kind, start, t_last + SLOT_NS, p))
            continue
        length = rng.uniform(*minutes) * MIN_NS
        events.append(Injected(kind, start, round(start + length), rng.uniform(*pct)))
    events.sort(key=lambda e: e.start_ns)
    for i, t in enumerate(series.ts_ns):
        t1 = t + series.step_ns
        factor = 1.0
        for e in events:
            if kind == "level_shift":
                if e.start_ns <= t:
                    factor *= 1 + e.pct / 100
                continue
            overlap = min(t1, e.end_ns) - max(t, e.start_ns)
            if overlap > 0:
                factor += e.pct / 100 * overlap / series.step_ns
        kw[i] *= factor
    return kw, events


def run_detector(series: Series, kw: list[float], settings: AlertSettings,
                 judge_from_ns: int) -> list[Alert]:  # fmt: skip
    """Feed the load as a 15-min register to the detector; the incidents it opens (type,
    window start, window end, when opened, direction: +1 above the usual, −1 below)."""
    supplier = Supplier(
        id="s", kind="other", country=series.country,
        allocation=Allocation(method="dedicated", share=1.0),
        sites=[Site(id="site", timezone=series.timezone, meters=[
            Meter(id="main", carrier="electricity", interval_s=series.step_ns // 10**9)])],
    )  # fmt: skip
    registry = Registry.build([supplier])
    detector = Detector(registry, settings)
    book = IncidentBook(Path("/nonexistent/incidents.json"))
    key = ("s", "site", "main")
    hours = series.step_ns / 3_600e9
    register, last_kw = 1000.0, 0.0
    opened: list[Alert] = []
    per_day = 86_400 * 10**9 // series.step_ns
    for i, t in enumerate(series.ts_ns):
        # A gap sends no reading; the register still counts (the last known load), as a meter
        # would while its readings were lost.
        if kw[i] == kw[i]:
            last_kw = kw[i]
            detector.add_reading(key, t, register, None)
        register += last_kw * hours
        if t < judge_from_ns:
            if i % per_day == 0:
                detector.prune(t)
            continue
        if (t - judge_from_ns) % SLOT_NS:
            continue  # judged every 15 min, whatever the series' interval
        now = t + 1
        evaluation = detector.evaluate(now)
        for event in book.update(evaluation.conditions, now, 0, settings.cooldown_min,
                                 settings.group_min_meters):  # fmt: skip
            if event.kind == "open":
                opened += [(x.type, x.window_start_ns, x.window_end_ns, now,
                            1 if x.baseline is None or x.value >= x.baseline else -1)
                           for x in event.incidents]  # fmt: skip
        if i % per_day == 0:
            detector.prune(now)
    return opened


def day_bases(series: Series) -> dict[date, tuple[str, float]]:
    """Each local day of the untouched series with enough data: (day type, base load [kW])."""
    tz = ZoneInfo(series.timezone)
    by_day: dict[date, list[float]] = {}
    for t, v in zip(series.ts_ns, series.kw, strict=True):
        if v == v:
            by_day.setdefault(datetime.fromtimestamp(t / 1e9, tz).date(), []).append(v)
    per_day = DAY_NS // series.step_ns
    return {d: (day_type(datetime.combine(d, datetime.min.time()), series.country),
                float(np.quantile(v, BASE_QUANTILE)))
            for d, v in by_day.items() if len(v) >= DAY_COVERAGE * per_day}  # fmt: skip


def own_change(bases: dict[date, tuple[str, float]], start: date) -> float | None:
    """The relative change of the series' own base load at ``start`` (see
    :data:`OWN_CHANGE_WEEKS`), or ``None`` without two days of a type on each side."""
    span = timedelta(weeks=OWN_CHANGE_WEEKS)
    sides: dict[tuple[str, bool], list[float]] = {}
    for d, (kind, base) in bases.items():
        if kind != "holiday" and start - span <= d < start + span:
            sides.setdefault((kind, d >= start), []).append(base)
    logs, weights = [], []
    for kind in ("workday", "Saturday", "Sunday"):
        before, after = sides.get((kind, False), []), sides.get((kind, True), [])
        if len(before) >= 2 and len(after) >= 2 and min(before + after) > 0:
            logs.append(math.log(float(np.median(after)) / float(np.median(before))))
            weights.append(len(before) + len(after))
    if not logs:
        return None
    return math.expm1(sum(x * w for x, w in zip(logs, weights, strict=True)) / sum(weights))


def own_changes(alerts: list[Alert], events: list[Injected], tz: str,
                bases: dict[date, tuple[str, float]]) -> int:  # fmt: skip
    """Of the level-shift notices that match no event, those at a lasting change of the
    series' own (:func:`own_change`, on the untouched load)."""
    count = 0
    for a in alerts:
        if a[0] != "level_shift" or match([a], events, "level_shift", "level_shift")[0]:
            continue
        change = own_change(bases, datetime.fromtimestamp(a[1] / 1e9, ZoneInfo(tz)).date())
        count += change is not None and a[4] * change >= OWN_CHANGE_PCT / 100
    return count


def match(alerts: list[Alert], events: list[Injected], kind: str,
          alert_type: str) -> tuple[int, int, set[int]]:  # fmt: skip
    """(alerts of the type that match an event, alerts of the type, indices of events hit)."""
    mine = [a for a in alerts if a[0] == alert_type]
    hit: set[int] = set()
    good = 0
    for _, a0, a1, _at, sign in mine:
        found = False
        for k, e in enumerate(events):
            if kind == "level_shift":
                same_way = (sign > 0) == (e.pct > 0)
                within = e.start_ns - DAY_NS <= a1 <= e.start_ns + LEVEL_MATCH_DAYS * DAY_NS
                ok = same_way and within
            else:
                ok = a0 < e.end_ns + SLOT_NS and e.start_ns - SLOT_NS < a1
            if ok:
                hit.add(k)
                found = True
        good += found
    return good, len(mine), hit


def score_series(
    series: Series,
    seed: int,
    overrides: dict | None = None,
    only: tuple[str, ...] = (),
    seeds: int = 1,
) -> dict:
    """All four runs of one series; its figures. ``seeds``: each kind is injected with seeds
    ``seed`` … ``seed + seeds − 1`` and their counts are pooled (the untouched run is one)."""
    settings = AlertSettings(every_min=15, **(overrides or {}))
    began = time.perf_counter()
    judge_from = series.ts_ns[0] + settings.baseline_weeks * WEEK_NS
    weeks = (series.ts_ns[-1] - judge_from) / WEEK_NS
    untouched = run_detector(series, series.kw, settings, judge_from)
    # A notice of one of the series' own known base-load changes is not a false one.
    own = [e for e in series.base_shifts if abs(e.pct) >= KNOWN_SHIFT_PCT]
    known = match(untouched, own, "level_shift", "level_shift")[0]
    days = Counter(a[3] // DAY_NS for a in untouched if a[0] in MESSAGE_TYPES)
    out: dict = {
        "kind": series.kind,
        "meter_weeks": round(weeks, 2),
        "messages_untouched": sum(days.values()),
        "busiest_day": max(days.values(), default=0),
        "false_alarms": sum(1 for a in untouched if a[0] == "spike"),
        "regime_notices_untouched": sum(1 for a in untouched if a[0] == "regime"),
        "level_notices_untouched": sum(1 for a in untouched if a[0] == "level_shift") - known,
        "level_notices_known": known,
    }
    bases = day_bases(series)
    out["level_notices_own_change"] = own_changes(untouched, own, series.timezone, bases)
    for kind in KINDS:
        if only and kind not in only:
            out[kind] = dict.fromkeys(COUNTS, 0)
            continue
        row = Counter()
        for run_seed in range(seed, seed + seeds):
            rng = random.Random(f"{run_seed}:{series.name}:{kind}")
            kw, events = inject(series, kind, rng, judge_from + 86_400 * 10**9)
            alerts = run_detector(series, kw, settings, judge_from)
            scored = events + (own if kind == "level_shift" else [])
            good, n_alerts, hit = match(alerts, scored, kind, kind)
            hit = {k for k in hit if k < len(events)}
            row.update(events=len(events), detected=len(hit), alerts=n_alerts,
                       alerts_matching=good)  # fmt: skip
            if kind == "level_shift":
                row.update(alerts_own_change=own_changes(alerts, scored, series.timezone, bases))
            if kind == "regime":
                routine = routine_regimes(series, kw, events, settings)
                row.update(events_routine=len(routine), detected_routine=len(routine & hit))
            if kind == "spike":
                big = [k for k, e in enumerate(events)
                       if e.pct >= 100 and e.end_ns - e.start_ns >= 30 * MIN_NS]  # fmt: skip
                row.update(events_100pct_30min=len(big),
                           detected_100pct_30min=sum(1 for k in big if k in hit))  # fmt: skip
        out[kind] = dict(row)
    out["seconds"] = round(time.perf_counter() - began, 1)
    return out


def routine_regimes(series: Series, kw: list[float], events: list[Injected],
                    settings: AlertSettings) -> set[int]:  # fmt: skip
    """Indices of the injected regimes that stay within the plant's routine energy: the
    strongest run of a regime's length (``regime_min_min``) in the load as injected — what the
    detector sees, earlier injections included — was reached within ``shift_tolerance_min``
    of that time of day on :data:`~processing.detect.USUAL_SHARE` of the past
    ``baseline_weeks`` × 7 days of the same kind (working or not), at least two, or on the
    last :data:`~processing.detect.RECENT_DAYS` days: the rule by which the detector does not
    tell a regime (``Detector._routine_regime``; its shop rule left out), applied to each
    regime as labelled, from the series alone. Not a target: it says how many of the misses
    are loads the plant draws at that hour on a normal day."""
    tz = ZoneInfo(series.timezone)
    step, ts = series.step_ns, series.ts_ns
    x = np.array(kw, dtype=float)
    width = math.ceil(settings.regime_min_min * MIN_NS / step)
    tol = round(settings.shift_tolerance_min * MIN_NS / step)
    out: set[int] = set()
    for k, e in enumerate(events):
        i0 = max(0, bisect.bisect_right(ts, e.start_ns) - 1)
        i1 = bisect.bisect_left(ts, e.end_ns)
        n = i1 - i0
        level = strongest_run(x[None, i0:i1], min(n, width))[0]
        local = datetime.fromtimestamp(ts[i0] / 1e9, tz)
        working = day_type(local, series.country) == "workday"
        reached = days = recent = 0
        for back in range(1, settings.baseline_weeks * 7 + 1):
            # The same wall-clock time ``back`` days before (daylight saving accounted for).
            then = (local.replace(tzinfo=None) - timedelta(days=back)).replace(tzinfo=tz)
            j = bisect.bisect_left(ts, datetime_to_ns(then))
            if j - tol < 0 or j + n + tol > len(ts):
                continue
            history = x[j - tol : j + n + tol]
            if np.isnan(history).mean() > 0.25:
                continue
            got = bool(strongest_run(history[None, :], min(n, width))[0] >= level)
            recent += back <= RECENT_DAYS and got
            if (day_type(then, series.country) == "workday") == working:
                days += 1
                reached += got
        if recent or reached >= max(2, USUAL_SHARE * days):
            out.add(k)
    return out


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def figures(rows: list[dict]) -> dict:
    """Pooled figures of some series' rows."""
    weeks = sum(r["meter_weeks"] for r in rows)

    def total(kind: str, name: str) -> int:
        return sum(r[kind][name] for r in rows)

    return {
        "series": len(rows),
        "meter_weeks": round(weeks, 1),
        "messages_per_meter_week": ratio(sum(r["messages_untouched"] for r in rows), weeks),
        "busiest_site_day": max((r["busiest_day"] for r in rows), default=0),
        "false_alarms_per_meter_week": ratio(sum(r["false_alarms"] for r in rows), weeks),
        "regime_notices_per_meter_week_untouched": ratio(
            sum(r["regime_notices_untouched"] for r in rows), weeks),
        "level_notices_per_meter_week_untouched": ratio(
            sum(r["level_notices_untouched"] for r in rows), weeks),
        "level_notices_known": sum(r["level_notices_known"] for r in rows),
        "spike_precision": ratio(total("spike", "alerts_matching"), total("spike", "alerts")),
        "spike_recall": ratio(total("spike", "detected"), total("spike", "events")),
        "recall_100pct_30min": ratio(total("spike", "detected_100pct_30min"),
                                     total("spike", "events_100pct_30min")),
        "regime_precision": ratio(total("regime", "alerts_matching"), total("regime", "alerts")),
        "regime_recall": ratio(total("regime", "detected"), total("regime", "events")),
        "regime_events_routine": total("regime", "events_routine"),
        "regime_recall_beyond_routine": ratio(
            total("regime", "detected") - total("regime", "detected_routine"),
            total("regime", "events") - total("regime", "events_routine")),
        "regime_recall_within_routine": ratio(total("regime", "detected_routine"),
                                              total("regime", "events_routine")),
        "level_shift_precision": ratio(total("level_shift", "alerts_matching"),
                                       total("level_shift", "alerts")),
        "level_shift_recall": ratio(total("level_shift", "detected"),
                                    total("level_shift", "events")),
        "level_false_own_change": total("level_shift", "alerts_own_change"),
        "level_false": total("level_shift", "alerts") - total("level_shift", "alerts_matching"),
        "level_notices_untouched": sum(r["level_notices_untouched"] for r in rows),
        "level_notices_own_change_untouched": sum(r["level_notices_own_change"] for r in rows),
    }  # fmt: skip


def simulated(directory: Path, seed: int) -> None:
    """Write the simulator's site meters (one year, 15-min; ``bench_realism.py``) as series."""
    import subprocess

    here = Path(__file__).resolve().parent
    subprocess.run([sys.executable, str(here / "bench_realism.py"), "--seed", str(seed),
                    "--write", str(directory)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, action="append", default=[],
                        help="directory of CSVs + series.toml (may be repeated)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--simulated", action="store_true",
                        help="add the simulator's site meters (one year each)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1,
                        help="inject with this many seeds from --seed on and pool them: "
                             "a series holds ~23 regimes and ~6 level shifts a seed")  # fmt: skip
    parser.add_argument("--only", action="append", default=[], choices=KINDS,
                        help="inject only this kind (may be repeated; default: all)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an [alerts] setting to try instead of its default")  # fmt: skip
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = float(value) if "." in value else int(value)
    if not args.series and not args.simulated:
        parser.error("give --series DIR and/or --simulated N")
    series = [s for directory in args.series for s in read_series(directory)]
    sim: list[Series] = []
    if args.simulated:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            simulated(Path(tmp), args.seed)
            sim = read_series(Path(tmp))
        for s in sim:  # "simulator", or "simulator-heavy" for shops of large machines
            s.kind = s.kind if s.kind.startswith("simulator") else "simulator"
    everything = series + sim
    print(
        f"alert quality on {len(series)} real and {len(sim)} simulated series "
        f"({sum(len(s.kw) for s in everything):,} slots); {1 + 3 * args.seeds} runs each",
        file=sys.stderr,
    )
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(score_series, s, args.seed, overrides, tuple(args.only), args.seeds)
            for s in everything
        ]
        rows = {}
        for s, f in zip(everything, futures, strict=True):
            rows[s.name] = f.result()
            print(f"  {s.name}: done in {rows[s.name]['seconds']} s", file=sys.stderr)
    result: dict = {"per_series": {}, "pooled": {}}
    for name, row in rows.items():
        result["per_series"][name] = {**figures([row]), "kind": row["kind"]}
    real = [r for r in rows.values() if not r["kind"].startswith("simulator")]
    if real:
        result["pooled"]["all"] = figures(real)
        for kind in sorted({r["kind"] for r in real} | {"industrial"}):
            result["pooled"][kind] = figures([r for r in real if r["kind"] == kind])
    simulated_rows = [r for r in rows.values() if r["kind"].startswith("simulator")]
    if simulated_rows:  # --simulated, or a directory the simulator wrote (bench_realism --write)
        result["pooled"]["simulator"] = figures(simulated_rows)
        heavy = [r for r in simulated_rows if r["kind"] == "simulator-heavy"]
        if heavy:
            result["pooled"]["simulator-heavy"] = figures(heavy)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True))


def fmt(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def print_table(result: dict) -> None:
    cols = ("messages_per_meter_week", "busiest_site_day", "false_alarms_per_meter_week",
            "spike_precision", "spike_recall", "recall_100pct_30min",
            "regime_notices_per_meter_week_untouched", "regime_precision", "regime_recall",
            "level_notices_per_meter_week_untouched", "level_shift_precision",
            "level_shift_recall")  # fmt: skip
    short = ("msgs/mw", "max/day", "spikes/mw", "spike prec", "spike rec", "rec≥100%",
             "regimes/mw", "reg prec", "reg rec", "levels/mw", "lvl prec", "lvl rec")  # fmt: skip
    print(f"| series | kind | meter-weeks | {' | '.join(short)} |")
    print("|---|---|---|" + "---|" * len(cols))
    for group, rows in (("per_series", result["per_series"]), ("pooled", result["pooled"])):
        for name, r in rows.items():
            label = name if group == "per_series" else f"**pooled: {name}**"
            kind = r.get("kind", "")
            print(f"| {label} | {kind} | {r['meter_weeks']} | "
                  + " | ".join(fmt(r[c]) if c != "busiest_site_day" else str(r[c])
                               for c in cols) + " |")  # fmt: skip
    print()
    for line in verdicts(result["pooled"]):
        print(line)
    for group, r in result["pooled"].items():
        if r.get("regime_events_routine"):
            print(f"{group}: {r['regime_events_routine']} injected regimes stayed within the "
                  f"load's routine energy (reached near that hour on a fifth of its days of "
                  f"the kind, or the day before); regime recall beyond them "
                  f"{fmt(r['regime_recall_beyond_routine'])}, within them "
                  f"{fmt(r['regime_recall_within_routine'])}")  # fmt: skip
        if r.get("level_false"):
            print(f"{group}: of {r['level_false']} level-shift notices scored false in the "
                  f"injected runs, {r['level_false_own_change']} mark a lasting change of the "
                  f"series' own (≥ {OWN_CHANGE_PCT:.0f}% over {OWN_CHANGE_WEEKS} weeks, "
                  f"hindsight); on the untouched series {r['level_notices_own_change_untouched']}"
                  f" of {r['level_notices_untouched']} level notices do")  # fmt: skip


def verdicts(pooled: dict) -> list[str]:
    """Each target of the alert-quality issue against the pooled figures: met or not."""
    out = []
    for group, name, ceiling in CEILINGS:
        v = pooled.get(group, {}).get(name)
        if v is not None:
            out.append(f"{group}: {name} {fmt(v)} (ceiling {ceiling}): "
                       f"{'met' if v <= ceiling else 'NOT met'}")  # fmt: skip
    for group, name, floor in FLOORS:
        v = pooled.get(group, {}).get(name)
        if pooled.get(group, {}).get("series"):
            ok = v is not None and v >= floor
            out.append(f"{group}: {name} {fmt(v)} (target ≥ {floor}): "
                       f"{'met' if ok else 'NOT met'}")  # fmt: skip
    return out


if __name__ == "__main__":
    main()
