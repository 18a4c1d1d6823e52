"""Monthly totals per meter and supplier, and the buyer's allocated share (scope 3, cat. 1).

Months are calendar months in each site's local timezone (Asia/Taipei for the example
suppliers), not UTC: a Taiwan plant's October starts at 2026-09-30T16:00Z. Pure functions;
:mod:`processing.export` does the I/O.

Allocation (GHG Protocol Scope 3 Standard, Category 1, supplier-specific method): the buyer's
share of a supplier's emissions is ``emissions × share``, with the share's method (physical,
economic, dedicated) and basis taken from the registry and shown in the export.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from processing.emissions import FactorLibrary, emissions_for
from processing.rollup import HourlyConsumption
from supplymeter.config import MeterRef, Supplier
from supplymeter.records import datetime_to_ns


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month, ``YYYY-MM``."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        match = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if not match or not 1 <= int(match[2]) <= 12:
            raise ValueError(f"month must be YYYY-MM (got {text!r})")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def bounds(self, tz: ZoneInfo) -> tuple[int, int]:
        """UTC epoch-ns bounds of the month in ``tz``: [first instant, next month's first)."""
        nxt = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        start = datetime(self.year, self.month, 1, tzinfo=tz)
        end = datetime(nxt.year, nxt.month, 1, tzinfo=tz)
        return datetime_to_ns(start), datetime_to_ns(end)


@dataclass(frozen=True)
class MeterMonth:
    """One meter's month. Emissions are ``None`` when no factor exists for its carrier."""

    ref: MeterRef
    month: Month
    consumption: float
    """[kWh or m³, multiplier applied]"""
    hours_expected: int
    hours_with_data: int
    covered_hours: float
    estimated_hours: int
    flags: Counter[str]
    emissions_kgco2e: float | None
    factor_ids: tuple[str, ...]
    provisional: bool

    @property
    def completeness(self) -> float:
        """Share of the month's hours covered by measured readings, 0–1."""
        return self.covered_hours / self.hours_expected if self.hours_expected else 0.0

    @property
    def allocated_kgco2e(self) -> float | None:
        """The buyer's share of this meter's emissions. [kgCO2e]"""
        if self.emissions_kgco2e is None:
            return None
        return self.emissions_kgco2e * self.ref.supplier.allocation.share


def meter_month(
    ref: MeterRef, month: Month, hours: list[HourlyConsumption], library: FactorLibrary
) -> MeterMonth:
    """Sum a meter's hours in ``month`` (site local time) and their emissions.

    Hours outside the month are ignored, so callers may pass a wider selection.
    """
    start, end = month.bounds(ref.tz)
    inside = [h for h in hours if start <= h.hour_start_ns < end]
    records = [emissions_for(h, ref, library) for h in inside]
    known = [r for r in records if r is not None]
    no_factor = any(r is None for r in records)
    flags: Counter[str] = Counter(flag for h in inside for flag in h.flags)
    return MeterMonth(
        ref=ref,
        month=month,
        consumption=math.fsum(h.consumption for h in inside),
        hours_expected=(end - start) // (3600 * 10**9),
        hours_with_data=len(inside),
        covered_hours=math.fsum(h.coverage for h in inside),
        estimated_hours=sum(h.estimated for h in inside),
        flags=flags,
        emissions_kgco2e=None if no_factor else math.fsum(r.emissions_kgco2e for r in known),
        factor_ids=tuple(sorted({r.factor.id for r in known})),
        provisional=any(r.provisional for r in known),
    )


@dataclass(frozen=True)
class SupplierMonth:
    """A supplier's month: consumption by carrier, emissions, the buyer's allocated share."""

    supplier: Supplier
    month: Month
    consumption: dict[str, float]
    """Per carrier. [kWh for electricity, m³ for gas and water]"""
    emissions_kgco2e: float
    """Location-based, summed over meters whose carrier has a factor. [kgCO2e]"""
    allocated_kgco2e: float
    completeness: float
    provisional: bool
    carriers_without_factor: tuple[str, ...] = field(default=())


def supplier_month(supplier: Supplier, month: Month, meters: list[MeterMonth]) -> SupplierMonth:
    """Roll a supplier's meter-months up. Carriers without a factor are named, not zeroed."""
    consumption: dict[str, float] = {}
    for m in meters:
        carrier = m.ref.meter.carrier
        consumption[carrier] = consumption.get(carrier, 0.0) + m.consumption
    emissions = math.fsum(m.emissions_kgco2e or 0.0 for m in meters)
    expected = sum(m.hours_expected for m in meters)
    return SupplierMonth(
        supplier=supplier,
        month=month,
        consumption=consumption,
        emissions_kgco2e=emissions,
        allocated_kgco2e=emissions * supplier.allocation.share,
        completeness=math.fsum(m.covered_hours for m in meters) / expected if expected else 0.0,
        provisional=any(m.provisional for m in meters),
        carriers_without_factor=tuple(
            sorted({m.ref.meter.carrier for m in meters if m.emissions_kgco2e is None})
        ),
    )
