"""Load of a simulated meter: base load plus shift-driven production load, and its register.

First version of the plant model (the simulator issue deepens it with equipment cycles, PV and
faults): each meter draws ``base_fraction`` of its ``mean_load`` around the clock, and the rest
only while its plant works. When a plant works depends on the supplier's kind:

==============  ===============================================  ==========================
kind            working hours (site local time)                  days
==============  ===============================================  ==========================
forging         two shifts, 08:00–24:00                          Mon–Fri, Sat 08:00–16:00
springs         three shifts, around the clock                   Mon–Fri, Sat 08:00–16:00
heat_treatment  furnaces around the clock                        every day but holidays
machining       two shifts, 08:00–24:00                          Mon–Fri
other           one shift, 08:00–17:00                           Mon–Fri
==============  ===============================================  ==========================

Taiwan public holidays (the ``holidays`` package) are days off. Electricity gets 10 % more in
June–September (air conditioning). Noise is Gaussian, per interval, seeded per meter so a run
is replayable.

Registers are kept as integers of 0.001 register units, so the ground truth the simulator
records is exact: true consumption = register increment × CT multiplier.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

import holidays

from supplymeter.config import MeterRef
from supplymeter.records import Reading, ns_to_datetime

MILLI = 1000
"""Register resolution: 0.001 register units (kWh or m³)."""

_SATURDAY = 5


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=[year]).keys())


def working(kind: str, local: datetime, country: str = "TW") -> bool:
    """Whether a plant of ``kind`` runs production at local time ``local``."""
    day = local.date()
    if day in _holidays(country, local.year):
        return False
    weekday, hour = local.weekday(), local.hour
    if kind == "heat_treatment":
        return True
    saturday_day = weekday == _SATURDAY and 8 <= hour < 16
    if kind == "springs":
        return weekday < _SATURDAY or saturday_day
    if kind == "forging":
        return (weekday < _SATURDAY and hour >= 8) or saturday_day
    if kind == "machining":
        return weekday < _SATURDAY and hour >= 8
    return weekday < _SATURDAY and 8 <= hour < 17


@dataclass
class MeterModel:
    """One simulated meter: its load model, register and sequence counter."""

    ref: MeterRef
    seed: int
    register_milli: int = field(init=False)
    seq: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        sim = self.ref.meter.simulation
        self.register_milli = round(sim.initial_register * MILLI)
        # str seeds are hashed with SHA-512 by random.Random: stable across processes.
        self._rng = random.Random(f"{self.seed}:{'/'.join(self.ref.key)}")
        rollover = self.ref.meter.rollover
        self._rollover_milli = round(rollover * MILLI) if rollover else None

    def load(self, ts_ns: int) -> float:
        """Mean load over the interval starting at ``ts_ns``. [kW, or m³/h for gas/water]"""
        sim = self.ref.meter.simulation
        local = ns_to_datetime(ts_ns).astimezone(self.ref.tz)
        share = sim.base_fraction
        if working(self.ref.supplier.kind, local, self.ref.supplier.country):
            share = 1.0
        summer = self.ref.meter.carrier == "electricity" and 6 <= local.month <= 9
        load = sim.mean_load * share * (1.1 if summer else 1.0)
        return max(0.0, load * (1.0 + sim.noise * self._rng.gauss(0.0, 1.0)))

    @property
    def register(self) -> float:
        """The register as the meter displays it (wrapped at rollover). [register units]"""
        milli = self.register_milli
        if self._rollover_milli:
            milli %= self._rollover_milli
        return milli / MILLI

    def reading(self, ts_ns: int, power: float | None) -> Reading:
        """The reading the meter reports at ``ts_ns`` (register after the last interval)."""
        self.seq += 1
        ref = self.ref
        if ref.meter.carrier != "electricity":
            return Reading(*ref.key, ts_ns, self.seq, volume_m3=self.register)
        if power is None:  # first reading of a run: no interval behind it yet
            return Reading(*ref.key, ts_ns, self.seq, energy_kwh=self.register)
        power_kw = round(power, 3)
        voltage_v = round(380.0 + self._rng.gauss(0.0, 2.0), 1)
        power_factor = 0.92
        current_a = round(power_kw * 1000 / (3**0.5 * voltage_v * power_factor), 2)
        return Reading(
            *ref.key,
            ts_ns,
            self.seq,
            energy_kwh=self.register,
            power_kw=power_kw,
            voltage_v=voltage_v,
            current_a=current_a,
            power_factor=power_factor,
        )

    def advance(self, ts_ns: int, interval_s: int) -> tuple[int, float]:
        """Run the interval starting at ``ts_ns``: returns (register increment in 0.001
        register units, mean load over the interval)."""
        load = self.load(ts_ns)
        increment = round(load * interval_s / 3600 / self.ref.meter.multiplier * MILLI)
        self.register_milli += increment
        return increment, load
