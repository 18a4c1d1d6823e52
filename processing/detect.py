"""Alert detection: what is wrong right now, judged on the meters' own data.

:class:`Detector` keeps each meter's recent readings (``baseline_weeks`` + 1 day) and, at any
instant ``now``, finds:

``spike``
    consumption over a window of ``window_min`` above a robust baseline: the same
    local time of day (± one window) on days of the same type over the previous
    ``baseline_weeks`` weeks — workdays (Monday to Friday) with workdays, Saturdays with
    Saturdays, Sundays with Sundays, Taiwan public holidays with holidays. Median and MAD
    (median absolute deviation), the MAD floored by the median relative spread of the windows
    within ``POOL_HOURS`` on the same day type (a few weeks of one time of day under-estimate
    a wandering load's spread — BENCHMARKS.md shows what that did to false alarms); a spike must
    clear all three of ``spike_min_pct`` above the median, ``spike_min_abs_kwh`` (``_m3`` for
    gas and water) and ``spike_mad`` robust standard deviations (1.4826 × MAD). Fewer than
    ``min_history_weeks`` comparable days: the meter is reported as lacking history, never
    judged.

    Windows end on a fixed grid (multiples of ``every_min``, epoch time) and each meter's
    window is judged once, as soon as a reading at or after its end has arrived — whenever the
    job happens to run, and also when the readings arrive late: a store-and-forward replay is
    judged window by window when it lands (up to :data:`LOOKBACK_NS` back), so a spike during a
    gateway outage is still reported, dated when it happened ("judged after the fact").
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

Window consumption reuses the rollup's register handling (:mod:`processing.rollup`), so
rollovers, glitches and meter swaps do not look like spikes.
"""

from __future__ import annotations

import bisect
import math
import statistics
from array import array
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo

from processing.rollup import RegisterSeries, cumulative_at, measure
from supplymeter.calendar import public_holidays
from supplymeter.config import AlertSettings, MeterRef, Registry
from supplymeter.records import datetime_to_ns, ns_to_datetime

MIN_NS = 60 * 10**9
DAY_NS = 86_400 * 10**9
LOOKBACK_NS = 6 * 3600 * 10**9
"""Windows ending longer ago than this are no longer judged (the alert job re-reads this much
of InfluxDB on every run to take late readings in)."""
POOL_HOURS = 2
"""The spread floor pools the windows up to this many hours either side."""
MAD_TO_SIGMA = 1.4826
"""MAD × 1.4826 estimates the standard deviation of normally distributed data."""


def day_type(local: datetime, country: str) -> str:
    """``holiday`` (public holidays: their own type), ``Saturday``, ``Sunday`` or ``workday``
    (Monday to Friday: plants run the same shifts on each, so four weeks give twenty
    comparable days rather than four — see BENCHMARKS.md for what that does to precision)."""
    if local.date() in public_holidays(country, local.year):
        return "holiday"
    weekday = local.weekday()
    if weekday == 5:
        return "Saturday"
    if weekday == 6:
        return "Sunday"
    return "workday"


def _hhmm(c: Condition, tz: tzinfo) -> str:
    start = ns_to_datetime(c.window_start_ns).astimezone(tz)
    end = ns_to_datetime(c.window_end_ns).astimezone(tz)
    return f"{start:%H:%M}–{end:%H:%M}"


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

    @property
    def key(self) -> str:
        return "/".join((self.type, self.supplier, self.site, self.subject))


@dataclass
class Baseline:
    median: float
    """Median consumption of the comparable windows [kWh or m³]."""
    mad: float
    """Their median absolute deviation, floored by the pooled spread [kWh or m³]."""
    days: int

    def band(self, k: float = 3.0) -> tuple[float, float]:
        spread = k * MAD_TO_SIGMA * self.mad
        return max(0.0, self.median - spread), self.median + spread


@dataclass
class Track:
    """One meter's recent readings, sorted by device time (arrays: 8 bytes a value)."""

    ref: MeterRef
    ts: array = field(default_factory=lambda: array("q"))
    register: array = field(default_factory=lambda: array("d"))
    power: array = field(default_factory=lambda: array("d"))
    """``power_kw`` of the readings from ``power_from`` on, NaN where none was sent — only the
    recent ones are kept (the stuck check looks back ``stuck_after_min``)."""
    power_from: int = 0
    """Index in ``ts`` of ``power[0]``."""
    judged_ns: int | None = None
    """End of the last window judged for spikes (epoch ns)."""
    spike: Condition | None = None
    """The spike found in the last window judged, if it was one."""
    steps: array = field(default_factory=lambda: array("d"))
    """Consumption of each settled grid step from ``steps_base`` on, computed as baselines need
    it: NaN not yet computed, −inf not measurable."""
    steps_base: int = 0

    def add(self, ts_ns: int, register: float, power: float | None) -> None:
        value = float("nan") if power is None else power
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

    def prune(self, before_ns: int, step_ns: int, power_before_ns: int) -> None:
        i = bisect.bisect_left(self.ts, before_ns)
        if i:
            del self.ts[:i], self.register[:i]
            self.power_from -= i
        k = bisect.bisect_left(self.ts, power_before_ns)
        if k > self.power_from:
            del self.power[: k - self.power_from]
            self.power_from = k
        n = min(before_ns // step_ns - self.steps_base, len(self.steps))
        if n > 0:
            del self.steps[:n]
            self.steps_base += n

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


def spike_floor(settings: AlertSettings, ref: MeterRef) -> float:
    """Smallest excess worth a spike alert per window [unit]: ``[alerts] spike_min_abs_kwh``
    / ``_m3`` where set for the meter's unit, else the carrier table's default."""
    overrides = {"kWh": settings.spike_min_abs_kwh, "m3": settings.spike_min_abs_m3}
    return overrides.get(ref.unit, ref.carrier.spike_min_abs)


@dataclass
class Evaluation:
    conditions: list[Condition]
    lacking_history: list[str]
    """Meters whose window could not be judged for want of history."""


class Detector:
    """Meters' recent data and the checks on it (see the module docstring)."""

    def __init__(self, registry: Registry, settings: AlertSettings) -> None:
        self.registry, self.settings = registry, settings
        self.tracks = {ref.key: Track(ref) for ref in registry.meters()}
        self.gateway_state: dict[tuple[str, str], tuple[str, int]] = {}
        """(supplier, site) → (``online``/``offline``, since when; epoch ns)."""
        self.rejects: dict[str, int] = {}
        self._baselines: dict[tuple[tuple[str, str, str], int], Baseline | None] = {}
        self._fits: dict[tuple[tuple[str, str, str], int], Baseline | None] = {}
        self._settled_ns = 0
        """Grid steps ending before this (``LOOKBACK_NS`` before the latest evaluation) take no
        more readings and are cached."""

    # --- input ------------------------------------------------------------------------------

    def add_reading(
        self, key: tuple[str, str, str], ts_ns: int, register: float | None, power: float | None
    ) -> None:
        track = self.tracks.get(key)
        if track is not None and register is not None:
            track.add(ts_ns, register, power)

    def set_gateway(self, supplier: str, site: str, state: str, since_ns: int) -> None:
        self.gateway_state[(supplier, site)] = (state, since_ns)

    def prune(self, now_ns: int) -> None:
        keep = now_ns - (self.settings.baseline_weeks * 7 + 1) * DAY_NS
        power_keep = now_ns - round(self.settings.stuck_after_min * MIN_NS) - DAY_NS
        for track in self.tracks.values():
            track.prune(keep, self.settings.every_min * MIN_NS, power_keep)
        # Baselines serve the last 24 h of email charts; fits the pooled spread two hours ahead.
        recent = now_ns - DAY_NS
        self._baselines = {k: v for k, v in self._baselines.items() if k[1] >= recent}
        self._fits = {k: v for k, v in self._fits.items() if k[1] >= recent}

    # --- checks -------------------------------------------------------------------------------

    def amount(self, track: Track, t0: int, t1: int) -> float | None:
        """:meth:`Track.consumption` over ``[t0, t1)``, summed from cached grid steps where the
        window is on the grid and settled (baselines read each past step many times)."""
        step = self.settings.every_min * MIN_NS
        if t0 % step or t1 % step or t1 > self._settled_ns:
            return track.consumption(t0, t1)
        total = 0.0
        for g in range(t0 // step, t1 // step):
            if not track.steps:
                track.steps_base = g - (self.settings.baseline_weeks * 7 + 1) * DAY_NS // step
            i = g - track.steps_base
            if i < 0:
                value = track.consumption(g * step, (g + 1) * step)
            else:
                if i >= len(track.steps):
                    track.steps.extend([math.nan] * (i + 1 - len(track.steps)))
                cached = track.steps[i]
                if cached != cached:  # NaN: not computed yet
                    value = track.consumption(g * step, (g + 1) * step)
                    track.steps[i] = -math.inf if value is None else value
                else:
                    value = None if cached == -math.inf else cached
            if value is None:
                return None
            total += value
        return total

    def baseline(self, track: Track, end_ns: int) -> Baseline | None:
        """The robust baseline of the window ending at ``end_ns`` (cached per window): median
        and MAD of the comparable windows — the same local time ± one window on days of the
        same type."""
        cache_key = (track.ref.key, end_ns)
        if cache_key in self._baselines:
            return self._baselines[cache_key]
        t0 = end_ns - self.settings.window_min * MIN_NS
        fit = self._fit(track, t0)
        result = None
        if fit is not None and fit.days >= self.settings.min_history_weeks:
            median, mad, days = fit.median, fit.mad, fit.days
            if median > 0:
                # A few weeks of one time of day can under-estimate a meter's spread (a
                # handful of Saturdays; a machine whose load wanders from hour to hour):
                # floor it by the relative spread of the neighbouring hours on that day type.
                mad = max(mad, median * self._pooled_spread(track, t0))
            result = Baseline(median, mad, days)
        self._baselines[cache_key] = result
        return result

    def _fit(self, track: Track, t0: int) -> Baseline | None:
        """Median and MAD of the windows comparable with the one starting at ``t0`` (no
        pooling), or ``None`` without any (cached: past days' data no longer changes)."""
        if (track.ref.key, t0) in self._fits:
            return self._fits[(track.ref.key, t0)]
        fit = self._fits[(track.ref.key, t0)] = self._fit_now(track, t0)
        return fit

    def _fit_now(self, track: Track, t0: int) -> Baseline | None:
        s = self.settings
        window = s.window_min * MIN_NS
        country = track.ref.supplier.country
        local = ns_to_datetime(t0).astimezone(track.ref.tz)
        span = timedelta(microseconds=(window - 1) // 1000)
        # A window across midnight is compared with windows across the same kind of midnight.
        kind = (day_type(local, country), day_type(local + span, country))
        values: list[float] = []
        days = set()
        for back in range(1, s.baseline_weeks * 7 + 1):
            day = local - timedelta(days=back)  # same wall-clock time
            if (day_type(day, country), day_type(day + span, country)) != kind:
                continue
            start = datetime_to_ns(day)
            for shift in (-window, 0, window):
                value = self.amount(track, start + shift, start + shift + window)
                if value is not None:
                    values.append(value)
                    days.add(back)
        if not values:
            return None
        median = statistics.median(values)
        return Baseline(median, statistics.median(abs(x - median) for x in values), len(days))

    def _pooled_spread(self, track: Track, t0: int) -> float:
        """Median relative spread (MAD / median) of the windows within ``POOL_HOURS`` of
        ``t0``, each against its own comparable days — levels are not mixed, so a plant idle
        on Sundays is not judged by the spread of its working days."""
        window = self.settings.window_min * MIN_NS
        reach = POOL_HOURS * 60 // self.settings.window_min
        spreads = []
        for k in range(-reach, reach + 1):
            fit = self._fit(track, t0 + k * window) if k else None
            if fit is not None and fit.median > 0:
                spreads.append(fit.mad / fit.median)
        return statistics.median(spreads) if spreads else 0.0

    def window_end(self, now_ns: int) -> int:
        """The end of the latest window complete at ``now_ns`` (on the ``every_min`` grid)."""
        step = self.settings.every_min * MIN_NS
        return now_ns - now_ns % step

    def evaluate(self, now_ns: int) -> Evaluation:
        s = self.settings
        window = s.window_min * MIN_NS
        latest = self.window_end(now_ns)
        self._settled_ns = max(self._settled_ns, now_ns - LOOKBACK_NS)
        out: list[Condition] = []
        lacking: list[str] = []
        site_demand: dict[tuple[str, str], float] = {}
        site_grid: dict[tuple[str, str], float] = {}
        for key, track in self.tracks.items():
            meter = track.ref.meter
            if meter.role == "consumption":
                spike, lacks = self._judge(track, now_ns)
                out += spike
                if lacks:
                    lacking.append("/".join(key))
            value = track.consumption(latest - window, latest)
            if value is None:
                continue
            if meter.carrier == "electricity" and meter.role == "consumption":
                site_demand[key[:2]] = site_demand.get(key[:2], 0.0) + value
            if meter.role == "grid":
                site_grid[key[:2]] = site_grid.get(key[:2], 0.0) + value
        t0, t1 = latest - window, latest
        hours = window / (3600 * 10**9)
        for (supplier, site_id), kwh in {**site_demand, **site_grid}.items():
            found = self.registry.site(supplier, site_id)
            capacity = found[1].contract_capacity_kw if found else None
            kw = kwh / hours
            if capacity and kw > capacity:
                source = "grid meter" if (supplier, site_id) in site_grid else "sum of circuits"
                out.append(Condition(
                    "over_capacity", supplier, site_id, "", value=kw, baseline=capacity,
                    unit="kW", window_start_ns=t0, window_end_ns=t1,
                    detail=f"{kw:,.0f} kW demand ({source}) over {capacity:,.0f} kW contract",
                ))  # fmt: skip
        out += self._silence(now_ns)
        out += self._stuck(now_ns)
        for supplier, count in sorted(self.rejects.items()):
            if count > s.reject_per_hour:
                out.append(Condition(
                    "ingest_rejects", supplier, "", "", value=count, baseline=s.reject_per_hour,
                    unit="messages/h", window_start_ns=now_ns - 3600 * 10**9,
                    window_end_ns=now_ns, detail=f"{count} rejected messages in the last hour",
                ))  # fmt: skip
        return Evaluation(out, lacking)

    def _judge(self, track: Track, now_ns: int) -> tuple[list[Condition], bool]:
        """Judge the meter's windows completed since the last run (see the module docstring).

        Returns the spike conditions to report now and whether the latest window lacked
        history. A spike in the latest window judged stays reported until a later window is
        judged clean (or the meter has been silent for ``silent_after_min``); spikes found only
        in earlier windows — readings that arrived late, or runs that were missed — are reported
        once, as one condition spanning them."""
        s = self.settings
        step, window = s.every_min * MIN_NS, s.window_min * MIN_NS
        latest = self.window_end(now_ns)
        if track.judged_ns is None:  # the first run: judge from the latest window on
            track.judged_ns = latest - step
        first = max(track.judged_ns + step, latest - LOOKBACK_NS + step)
        found: list[Condition] = []
        judged = lacks = False
        replaying = self._replaying(track.ref, now_ns)
        for end in range(first, latest + 1, step):
            value = track.consumption(end - window, end)
            if value is None:
                if replaying or not track.ts or track.ts[-1] < end:
                    break  # the readings may still come
                track.judged_ns = end  # a gap in the data: it will not be judged
                continue
            track.judged_ns, judged = end, True
            base = self.baseline(track, end)
            lacks = base is None
            spike = None if base is None else self._spike(track, value, base, end)
            if spike is not None:
                found.append(spike)
            track.spike = spike
        if not judged:
            fresh = bool(track.ts) and now_ns - track.ts[-1] <= s.silent_after_min * MIN_NS
            if not fresh:
                track.spike = None
            return ([track.spike] if track.spike else []), False
        if track.spike is not None:
            return [replace(track.spike, window_start_ns=found[0].window_start_ns)], lacks
        if not found:
            return [], lacks
        peak = max(found, key=lambda c: c.value - (c.baseline or 0.0))
        late = replace(
            peak, window_start_ns=found[0].window_start_ns,
            window_end_ns=found[-1].window_end_ns, detail=f"{peak.detail}; judged after the fact, "
            f"when its readings came in (peak {_hhmm(peak, track.ref.tz)})",
        )  # fmt: skip
        return [late], lacks

    def _spike(self, track: Track, value: float, base: Baseline, end_ns: int) -> Condition | None:
        """A spike condition if ``value`` over the window ending at ``end_ns`` clears all
        three thresholds."""
        s, ref = self.settings, track.ref
        excess = value - base.median
        if (
            value > base.median * (1 + s.spike_min_pct / 100)
            and excess > spike_floor(s, ref)
            and excess > s.spike_mad * MAD_TO_SIGMA * base.mad
        ):
            pct = 100 * excess / base.median if base.median > 0 else float("inf")
            return Condition(
                "spike", *ref.key, value=value, baseline=base.median, unit=ref.unit,
                window_start_ns=end_ns - s.window_min * MIN_NS, window_end_ns=end_ns,
                detail=f"+{pct:.0f}% over the median of {base.days} comparable days",
            )  # fmt: skip
        return None

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
                ))  # fmt: skip
        return out

    def history(self, key: tuple[str, str, str], now_ns: int, hours: int = 24):
        """(window end, consumption, baseline) for each window of the last ``hours`` hours,
        for the email chart."""
        track = self.tracks[key]
        window = self.settings.window_min * MIN_NS
        out = []
        for end in range(now_ns - hours * 3600 * 10**9 + window, now_ns + 1, window):
            out.append((end, track.consumption(end - window, end), self.baseline(track, end)))
        return out
