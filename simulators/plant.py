"""Simulated sites: every meter's load, its registers, and what the meters report.

A site advances in ticks of the greatest common divisor of its meters' intervals. In each tick a
consumption meter draws

    (base × base shift + production × production share × equipment cycle + air conditioning)
        × exp(site deviation + meter deviation)

(``simulators/profiles.py`` has the shapes), times any injected spike or step change. The
production share follows the day's plan (level, shift start/end jitter, idle-day production,
shutdowns); the deviations are Ornstein–Uhlenbeck processes that persist for hours, as real
plants' deviations from their usual profile do; base loads shift now and then and stay;
equipment cycles drift against the clock; air conditioning follows each day's temperature. A ``pv``
meter generates clear-sky output times the day's weather; a ``grid`` meter at the site's
connection imports what the site's electricity circuits draw beyond PV and exports the rest.

Registers are kept as integers of 0.001 register units, so the ground truth is exact: true
consumption = register increment × CT multiplier. Faults change what the meter *reports*, never
what the plant *consumed*: a stuck register stops counting (that consumption is unmetered and
the ledger says so); a replaced meter restarts near zero; a register wraps at its rollover.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

from collector.payload import format_ts
from simulators.faults import DAY_S, NS, Event, FaultLog, Window, window_event, windows
from simulators.ledger import HOUR_NS, Ledger
from simulators.profiles import (
    CYCLES,
    DAILY_ANOMALY_PERSISTENCE,
    DAILY_ANOMALY_SIGMA_C,
    MACHINE_DUTY,
    MACHINE_RUN_MIN,
    MACHINE_RUN_SHAPE,
    PRESS_IDLE_LEVEL,
    PRESS_STROKE_LEVEL,
    PRESS_STROKE_SHARE,
    DayPlan,
    clear_sky,
    cooling_at,
    cycle_mean,
    draw_day_plan,
    production_share,
    schedule_of,
)
from supplymeter.config import FaultSettings, MeterRef, Site, Supplier
from supplymeter.records import Reading, datetime_to_ns, ns_to_datetime

MILLI = 1000
"""Register resolution: 0.001 register units (kWh or m³)."""

POWER_FACTOR = {
    "press": 0.82,
    "induction": 0.95,
    "furnace": 0.97,
    "compressor": 0.86,
    "machines": 0.9,
}
"""Typical displacement power factor by equipment; others 0.92."""

MONTH_S = 30 * DAY_S
WEEK_S = 7 * DAY_S
SITE_TAU_S, SITE_SIGMA = 4 * 3600.0, 0.10
"""The site-wide deviation from the usual profile: time constant [s] and log-scale spread
(autocorrelation at 15 min ≈ 0.9, as in the real loads)."""
METER_TAU_S = 3 * 3600.0
"""Time constant of each meter's own deviation [s]; its spread is the meter's ``noise``."""
BASE_SHIFT_PER_DAY = 1 / 60
"""Probability per day that a meter's base load shifts (and stays): a new compressor, a
furnace left on idle, lighting changed."""
BASE_SHIFT_RANGE = (0.75, 1.35)
PHASE_DRIFT = 0.5
"""Equipment cycles drift by about this share of a period per day (√time), so they do not
repeat at the same clock time every day."""


@dataclass
class MeterModel:
    """One simulated meter: registers, counters and the faults planned for it."""

    ref: MeterRef
    seed: int
    register_milli: int = 0
    export_milli: int = 0
    production: float = 0.0
    seq: int = 0
    interval_kwh: float = 0.0
    """True energy (or volume) since the last reading, for the reported mean power."""
    interval_s: float = 0.0
    spikes: list[Window] = field(default_factory=list)
    steps: list[Window] = field(default_factory=list)
    stuck: list[Window] = field(default_factory=list)
    replacements: list[int] = field(default_factory=list)
    deviation: float = 0.0
    """This meter's own log-scale deviation (an Ornstein–Uhlenbeck process)."""
    base_factor: float = 1.0
    """Lasting base-load shift (1: none)."""
    cnc: tuple[int, float] = (-1, 1.0)
    """(until when, utilisation) of a CNC cell: changes at random times, not on the hour."""

    def __post_init__(self) -> None:
        sim = self.ref.meter.simulation
        self.register_milli = round(sim.initial_register * MILLI)
        # str seeds are hashed with SHA-512 by random.Random: stable across processes.
        self.rng = random.Random(f"{self.seed}:{'/'.join(self.ref.key)}")
        self.behaviour = random.Random(f"{self.seed}:behaviour:{'/'.join(self.ref.key)}")
        rollover = self.ref.meter.rollover
        self.rollover_milli = round(rollover * MILLI) if rollover else None
        equipment = sim.equipment
        self.cycle = CYCLES.get(equipment)
        if self.cycle is not None:
            minutes = sim.cycle_min or self.cycle[0]
            self.cycle = (minutes * 60.0, self.cycle[1])
            self.phase_s = self.rng.uniform(0, minutes * 60.0)
        self.savings = sorted((s.start_ns, s.share) for s in sim.savings)
        self.units: list[list] = []
        """``machines``: each machine's [running, until when (s)], drawn on first use."""
        self._units_rng = random.Random(f"{self.seed}:machines:{'/'.join(self.ref.key)}")

    def saving_share(self, ts_ns: int) -> float:
        """Fraction of the load the simulated measures in force at ``ts_ns`` remove (the
        latest measure started replaces the earlier ones' combined share)."""
        share = 0.0
        for start_ns, s in self.savings:
            if start_ns <= ts_ns:
                share = s
        return share

    def _shown(self, milli: int) -> float:
        """A register as the meter displays it (wrapped at rollover). [register units]"""
        return (milli % self.rollover_milli if self.rollover_milli else milli) / MILLI

    @property
    def register(self) -> float:
        return self._shown(self.register_milli)

    @property
    def export_register(self) -> float:
        return self._shown(self.export_milli)

    def plan_faults(self, faults: FaultSettings, start_ns: int, end_ns: int, log: FaultLog) -> None:
        """Draw this meter's faults for ``[start, end)`` and record them."""
        rng = random.Random(f"{self.seed}:faults:{'/'.join(self.ref.key)}")
        sup, site, meter = self.ref.key
        consumption = self.ref.meter.role == "consumption"
        if consumption:
            self.spikes = windows(
                rng, start_ns, end_ns, faults.spike_per_week / WEEK_S,
                tuple(m * 60 for m in faults.spike_minutes), faults.spike_pct,
            )  # fmt: skip
            self.steps = windows(
                rng, start_ns, end_ns, faults.step_per_month / MONTH_S,
                tuple(h * 3600 for h in faults.step_hours), faults.step_pct,
            )  # fmt: skip
        self.stuck = windows(
            rng, start_ns, end_ns, faults.stuck_per_month / MONTH_S,
            tuple(h * 3600 for h in faults.stuck_hours),
        )  # fmt: skip
        self.replacements = [
            w.start_ns for w in windows(rng, start_ns, end_ns, faults.replacement_per_month
                                        / MONTH_S, (0.0, 0.0))
        ]  # fmt: skip
        for kind, found in (("spike", self.spikes), ("step", self.steps)):
            for w in found:
                log.add(w.start_ns, window_event(kind, w, sup, site, meter, pct=w.value))
        for w in self.stuck:
            log.add(w.start_ns, window_event("stuck", w, sup, site, meter))
        if self.rollover_milli and faults.rollover_rate > 0 and rng.random() < faults.rollover_rate:
            # Start close enough below the wrap that it happens within the run.
            sim = self.ref.meter.simulation
            hours = (end_ns - start_ns) / HOUR_NS
            expected = sim.mean_load * max(sim.base_fraction, 0.3) * hours
            expected_milli = expected / self.ref.meter.multiplier * MILLI
            lead = round(min(expected_milli, self.rollover_milli) * rng.uniform(0.1, 0.8))
            self.register_milli = max(0, self.rollover_milli - lead)

    def multiplier_at(self, t0_ns: int, t1_ns: int, dt_s: float) -> float:
        """Spike and step-change factor over the tick."""
        factor = 1.0
        for w in self.spikes:
            if w.start_ns < t1_ns and w.end_ns > t0_ns:
                factor += w.value / 100.0 * w.overlap_s(t0_ns, t1_ns) / dt_s
        for w in self.steps:
            if w.start_ns < t1_ns and w.end_ns > t0_ns:
                factor += w.value / 100.0 * w.overlap_s(t0_ns, t1_ns) / dt_s
        return max(0.0, factor)

    def is_stuck(self, ts_ns: int) -> bool:
        return any(w.covers(ts_ns) for w in self.stuck)

    def equipment_level(self, ts_ns: int, dt_s: float) -> float:
        """Mean equipment cycle level over the tick (mean 1 over a long time)."""
        equipment = self.ref.meter.simulation.equipment
        if self.cycle is not None:
            period, segments = self.cycle
            drift = PHASE_DRIFT * period * math.sqrt(dt_s / DAY_S)
            self.phase_s += self.behaviour.gauss(0.0, drift)
            return cycle_mean(ts_ns / NS + self.phase_s, dt_s, period, segments)
        if equipment == "machines":
            return self._machines(ts_ns / NS, dt_s)
        if equipment == "press":
            minutes = max(1, int(dt_s // 60))
            rnd = self.rng.random
            strokes = sum(1 for _ in range(minutes) if rnd() < PRESS_STROKE_SHARE)
            return (strokes * PRESS_STROKE_LEVEL + (minutes - strokes) * PRESS_IDLE_LEVEL) / minutes
        if equipment == "cnc":
            until, level = self.cnc
            if ts_ns >= until:  # a new job: utilisation partly carried over, for 20–120 min
                level = 0.5 * level + 0.5 * self.rng.uniform(0.6, 1.4)
                self.cnc = (ts_ns + round(self.behaviour.uniform(20, 120) * 60 * NS), level)
            return self.cnc[1]
        return 1.0

    def _run_s(self, running: bool) -> float:
        """Length of a machine's next run (or pause) [s]: gamma-distributed around the mean run
        (``cycle_min``) or the pause that makes the machine's duty :data:`MACHINE_DUTY`."""
        run_s = (self.ref.meter.simulation.cycle_min or MACHINE_RUN_MIN) * 60.0
        mean = run_s if running else run_s * (1.0 - MACHINE_DUTY) / MACHINE_DUTY
        return self._units_rng.gammavariate(MACHINE_RUN_SHAPE, mean / MACHINE_RUN_SHAPE)

    def _machines(self, t0_s: float, dt_s: float) -> float:
        """Mean level of a shop of large machines over ``[t0, t0 + dt)`` (mean 1): each machine
        runs and pauses in turns and draws an equal share of the load while it runs."""
        if not self.units:
            rnd = self._units_rng.random
            for _ in range(self.ref.meter.simulation.machines):
                running = rnd() < MACHINE_DUTY
                self.units.append([running, t0_s + rnd() * self._run_s(running)])
        end = t0_s + dt_s
        on_s = 0.0
        for unit in self.units:
            running, until = unit
            t = t0_s
            while until < end:
                if running:
                    on_s += max(0.0, until - t)
                t = max(t, until)
                running = not running
                until = t + self._run_s(running)
            if running:
                on_s += end - t
            unit[0], unit[1] = running, until
        return on_s / dt_s / (len(self.units) * MACHINE_DUTY)


@dataclass(frozen=True)
class HourContext:
    """What every meter of a site needs to know about one UTC hour, computed once."""

    local: datetime
    local_hour: float
    day_of_year: int
    month: int
    plan: DayPlan


class SiteModel:
    """One site: its meters, advanced together so the grid meter sees the site's net load."""

    def __init__(
        self,
        supplier: Supplier,
        site: Site,
        refs: list[MeterRef],
        seed: int,
        ledger: Ledger,
        log: FaultLog,
    ) -> None:
        self.supplier, self.site, self.seed = supplier, site, seed
        self.meters = [MeterModel(r, seed) for r in refs]
        self.step_s = math.gcd(*(r.meter.interval_s for r in refs))
        self.ledger, self.log = ledger, log
        self.schedule = schedule_of(supplier)
        self.tz = refs[0].tz
        self._hour: tuple[int, HourContext | None] = (-1, None)
        self._weather = random.Random(f"{seed}:weather:{supplier.id}/{site.id}")
        self._clearness: tuple[int, float] = (-1, 1.0)
        self._noise = random.Random(f"{seed}:noise:{supplier.id}/{site.id}")
        self._days = random.Random(f"{seed}:days:{supplier.id}/{site.id}")
        self._plan: DayPlan | None = None
        self._plan_day = None
        self._anomaly = 0.0
        self._deviation = 0.0

    def plan_faults(self, faults: FaultSettings, start_ns: int, end_ns: int) -> None:
        for m in self.meters:
            m.plan_faults(faults, start_ns, end_ns, self.log)

    def context(self, ts_ns: int) -> HourContext:
        hour = ts_ns - ts_ns % HOUR_NS
        if self._hour[0] != hour:
            local = ns_to_datetime(hour).astimezone(self.tz)
            ctx = HourContext(
                local=local,
                local_hour=local.hour + local.minute / 60.0,
                day_of_year=local.timetuple().tm_yday,
                month=local.month,
                plan=self.day_plan(local),
            )
            self._hour = (hour, ctx)
        ctx = self._hour[1]
        assert ctx is not None
        return ctx

    def day_plan(self, local: datetime) -> DayPlan:
        """The site's plan for the local day of ``local``, drawn once per day in order; each
        new day also redraws the meters' base-load shifts (logged as ``base_shift``)."""
        day = local.date()
        if self._plan_day != day or self._plan is None:
            self._anomaly = DAILY_ANOMALY_PERSISTENCE * self._anomaly + self._days.gauss(
                0.0, DAILY_ANOMALY_SIGMA_C * math.sqrt(1 - DAILY_ANOMALY_PERSISTENCE**2)
            )
            self._plan = draw_day_plan(self._days, self.schedule, day, self.supplier.country,
                                       self._plan, self._anomaly)  # fmt: skip
            if self._plan_day is not None:
                for m in self.meters:
                    if m.ref.meter.role == "consumption" and (
                            m.behaviour.random() < BASE_SHIFT_PER_DAY):  # fmt: skip
                        old = m.base_factor
                        m.base_factor = min(1.6, max(0.6, old * m.behaviour.uniform(
                            *BASE_SHIFT_RANGE)))  # fmt: skip
                        sup, site_id, mid = m.ref.key
                        at = datetime_to_ns(local)
                        self.log.add(at, Event(
                            "base_shift", sup, site_id, start=format_ts(at), meter=mid,
                            details={"from": round(old, 3), "to": round(m.base_factor, 3)},
                        ))  # fmt: skip
            self._plan_day = day
        return self._plan

    def clearness(self, ctx: HourContext) -> float:
        """The day's weather: share of clear-sky sunshine reaching the panels."""
        day = ctx.local.toordinal()
        if self._clearness[0] != day:
            self._clearness = (day, self._weather.uniform(0.25, 1.0))
        return self._clearness[1]

    def readings(self, ts_ns: int, first: bool) -> list[tuple[MeterModel, Reading]]:
        """What the meters due at ``ts_ns`` report (registers after everything before it)."""
        out = []
        for m in self.meters:
            meter = m.ref.meter
            if (ts_ns // NS) % meter.interval_s:
                continue
            m.seq += 1
            out.append((m, self._reading(m, ts_ns, first)))
            m.interval_kwh, m.interval_s = 0.0, 0.0
            if m.replacements and m.replacements[0] <= ts_ns:
                m.replacements.pop(0)
                old = m.register
                m.register_milli = round(m.rng.uniform(0.0, 5.0) * MILLI)
                m.export_milli = 0
                sup, site, mid = m.ref.key
                self.log.add(ts_ns, Event(
                    "replacement", sup, site, start=format_ts(ts_ns), meter=mid,
                    details={"old_register": old, "new_register": m.register},
                ))  # fmt: skip
        return out

    def _reading(self, m: MeterModel, ts_ns: int, first: bool) -> Reading:
        ref, meter = m.ref, m.ref.meter
        production = {}
        if meter.simulation.production_per_hour is not None:
            production = {"production_units": float(int(m.production))}
        if meter.carrier != "electricity":
            register = {ref.register_field: m.register}
            return Reading(*ref.key, ts_ns, m.seq, **register, **production)
        export = {"energy_export_kwh": m.export_register} if meter.role == "grid" else {}
        if first or m.interval_s <= 0:
            return Reading(*ref.key, ts_ns, m.seq, energy_kwh=m.register, **export, **production)
        power_kw = round(m.interval_kwh / (m.interval_s / 3600.0), 3)
        voltage_v = round(380.0 + self._noise.gauss(0.0, 2.0), 1)
        pf = POWER_FACTOR.get(meter.simulation.equipment, 0.92)
        current_a = round(power_kw * 1000 / (3**0.5 * voltage_v * pf), 2)
        return Reading(
            *ref.key, ts_ns, m.seq, energy_kwh=m.register, **export, power_kw=power_kw,
            voltage_v=voltage_v, current_a=current_a, power_factor=pf, **production,
        )  # fmt: skip

    def advance(self, ts_ns: int) -> None:
        """Run the tick ``[ts, ts + step)``: draw every load, count every register."""
        dt_s = float(self.step_s)
        t1_ns = ts_ns + self.step_s * NS
        ctx = self.context(ts_ns)
        mid_hour = ctx.local_hour + ((ts_ns % HOUR_NS) / NS + dt_s / 2) / 3600.0
        minute = mid_hour * 60.0
        phi = math.exp(-dt_s / SITE_TAU_S)
        self._deviation = phi * self._deviation + SITE_SIGMA * math.sqrt(1 - phi * phi) * (
            self._noise.gauss(0.0, 1.0))  # fmt: skip
        site_deviation = self._deviation
        electric_kw = 0.0
        pv_kw = 0.0
        grid: MeterModel | None = None
        for m in self.meters:
            meter, sim = m.ref.meter, m.ref.meter.simulation
            if meter.role == "grid":
                grid = m
                continue
            if meter.role == "pv":
                sun = clear_sky(mid_hour, ctx.day_of_year) * self.clearness(ctx)
                load = max(0.0, sim.mean_load * sun * (1.0 + 0.08 * m.rng.gauss(0.0, 1.0)))
                pv_kw += load
            else:
                share = sim.base_fraction * m.base_factor
                work = production_share(self.schedule, minute, ctx.local.weekday(), ctx.plan)
                if work:
                    share += (1.0 - sim.base_fraction) * work * m.equipment_level(ts_ns, dt_s)
                if sim.ac_fraction and meter.carrier == "electricity":
                    share += sim.ac_fraction * cooling_at(
                        mid_hour, ctx.day_of_year, ctx.plan.temperature_anomaly_c
                    )
                phi = math.exp(-dt_s / METER_TAU_S)
                m.deviation = phi * m.deviation + sim.noise * math.sqrt(1 - phi * phi) * (
                    m.rng.gauss(0.0, 1.0))  # fmt: skip
                load = sim.mean_load * share * math.exp(site_deviation + m.deviation)
                if m.spikes or m.steps:
                    load *= m.multiplier_at(ts_ns, t1_ns, dt_s)
                if m.savings and (saving := m.saving_share(ts_ns)):
                    self.ledger.add_saved(m.ref, ts_ns, load * saving * dt_s / 3600.0)
                    load *= 1.0 - saving
                if meter.carrier == "electricity":
                    electric_kw += load
                if sim.production_per_hour is not None:
                    counted = int(m.production)
                    m.production += sim.production_per_hour * work * dt_s / 3600.0
                    if int(m.production) != counted:  # whole pieces, as the counter reports
                        self.ledger.add_pieces(m.ref, ts_ns, int(m.production) - counted)
            self._count(m, ts_ns, load * dt_s / 3600.0, 0.0)
        if grid is not None:
            net = (electric_kw - pv_kw) * dt_s / 3600.0
            self._count(grid, ts_ns, max(net, 0.0), max(-net, 0.0))

    def _count(self, m: MeterModel, ts_ns: int, amount: float, exported: float) -> None:
        """Book ``amount`` (kWh or m³, true) to the meter's register and the ledger."""
        multiplier = m.ref.meter.multiplier
        increment = round(amount / multiplier * MILLI)
        export = round(exported / multiplier * MILLI)
        m.interval_kwh += amount
        m.interval_s += self.step_s
        stuck = bool(m.stuck) and m.is_stuck(ts_ns)
        metered = 0 if stuck else increment
        export_metered = 0 if stuck else export
        before = m.register_milli
        m.register_milli += metered
        m.export_milli += export_metered
        self.ledger.add(m.ref, ts_ns, increment, metered, export_metered)
        if m.rollover_milli and before // m.rollover_milli != m.register_milli // m.rollover_milli:
            sup, site, mid = m.ref.key
            self.log.add(ts_ns, Event(
                "rollover", sup, site, start=format_ts(ts_ns), meter=mid,
                details={"rollover": m.ref.meter.rollover},
            ))  # fmt: skip
