"""The one carrier table: what each energy or utility carrier is, declared once.

Every stage looks its carrier up here instead of branching on its name: the protocol parser
(which payload quantities a meter of the carrier may send), the store (which register field
to read, which consumption field to write), the rollup and the export (unit), the emission
factors (which factor rows apply), the alert detector (the smallest spike worth a mail) and the
scope split of the export (scope 1: fuels burnt on site; scope 2: purchased electricity, heat,
steam; outside the supplier's scope 1+2: purchased water).

Adding a carrier is one row here, its factor rows in ``processing/data/emission_factors.csv``,
its simulation (``simulators/``) and a dashboard panel; nothing else names carriers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INSTANT_QUANTITIES: tuple[str, ...] = ("power_kw", "voltage_v", "current_a", "power_factor")
"""Instantaneous electrical quantities of protocol v1 (not registers)."""

COUNTERS: tuple[str, ...] = ("production_units",)
"""Cumulative counters any meter may report beside its register (units produced)."""


@dataclass(frozen=True, slots=True)
class Carrier:
    """One carrier: its unit, register and what a meter of it may send.

    ``register_field`` is the cumulative register in the gateway payload and the consumption
    field of ``hourly_consumption``; ``estimated_field`` holds the estimated part of an hour's
    consumption in the same unit.
    """

    name: str
    unit: str
    """Unit of the register and of consumption (``kWh``, ``m3``, ``kg``)."""
    register_field: str
    extra_quantities: tuple[str, ...]
    """Payload quantities besides the register and the counters a meter of it may send."""
    spike_min_abs: float
    """Default smallest spike worth an alert, per 15-minute window. [unit]"""
    scope: str
    """The supplier's GHG Protocol scope of its consumption: ``1`` (combustion on site),
    ``2`` (purchased electricity, heat, steam), ``3`` (purchased goods such as water)."""
    max_flow_per_h: float | None = None
    """Largest plausible flow of one meter when the registry gives it no ``max_power`` (and,
    for electricity, its site no contract capacity) [unit per hour]: a register step implying
    more is an *implausible* jump — estimated, flagged and raised as a quality issue, never
    stored as measured. Engineering bounds for the plants this serves, far above any of their
    meters (a gas meter at 5,000 m³/h feeds ~50 MW of burners); not published values."""
    factor_carrier: str = ""
    """The ``carrier`` column of its emission factor rows (default: ``name``)."""
    quantities: frozenset[str] = field(init=False, repr=False, compare=False)
    """Every payload quantity a meter of this carrier may send (made once: the collector asks
    for every reading)."""

    def __post_init__(self) -> None:
        every = frozenset({self.register_field, *self.extra_quantities, *COUNTERS})
        object.__setattr__(self, "quantities", every)

    @property
    def estimated_field(self) -> str:
        """Field of the estimated part of an hour's consumption, e.g. ``estimated_kwh``."""
        return "estimated_" + self.unit.lower()

    @property
    def factor_key(self) -> str:
        return self.factor_carrier or self.name


CARRIERS: dict[str, Carrier] = {
    c.name: c
    for c in (
        # 50 MW: beyond a metal-working supplier's whole connection (the contract capacity,
        # when the registry has it, bounds a meter at 3 × that instead).
        Carrier(
            "electricity", "kWh", "energy_kwh",
            ("energy_export_kwh", *INSTANT_QUANTITIES), spike_min_abs=2.0, scope="2",
            max_flow_per_h=50_000.0,
        ),
        # 5,000 m³/h of natural gas at ~10 kWh/m³ (the heating values in tw-factors.md):
        # ~50 MW of burners.
        Carrier("natural_gas", "m3", "volume_m3", (), spike_min_abs=0.1, scope="1",
                max_flow_per_h=5_000.0),
        # 500 m³/h: a DN250 main at 3 m/s (~530 m³/h); a plant's supply is far smaller.
        Carrier("water", "m3", "volume_m3", (), spike_min_abs=0.1, scope="3",
                max_flow_per_h=500.0),
        # Purchased process steam (a neighbouring plant's boiler or an industrial park's
        # utility), metered as mass by a steam flow meter's totaliser. 50 t/h: a ~35 MW boiler.
        Carrier("steam", "kg", "steam_kg", (), spike_min_abs=50.0, scope="2",
                max_flow_per_h=50_000.0),
    )
}  # fmt: skip
"""Carriers by name. ``energy_export_kwh`` is only meaningful on a ``grid`` meter."""

REGISTERS: frozenset[str] = frozenset(
    {c.register_field for c in CARRIERS.values()} | {"energy_export_kwh", *COUNTERS}
)
"""Cumulative registers: never negative, may wrap at the meter's rollover value."""

QUANTITIES: tuple[str, ...] = (
    tuple(
        dict.fromkeys(
            q for c in CARRIERS.values() for q in (c.register_field, *c.extra_quantities)
        ).keys()
    )
    + COUNTERS
)
"""Protocol v1 quantity fields, in a stable order; the unit is in the name."""


def register_fields() -> tuple[str, ...]:
    """Distinct register fields of all carriers, in table order."""
    return tuple(dict.fromkeys(c.register_field for c in CARRIERS.values()))
