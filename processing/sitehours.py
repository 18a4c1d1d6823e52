"""A site's electricity hour by hour: purchased (scope 2), PV self-consumption, unmetered rest.

Scope 2 is the electricity bought from the grid (GHG Protocol Scope 2 Guidance, 2015, ch. 5
and 6). Where a site has a grid (utility) meter, its import *is* that figure, hour by hour;
the consumption meters explain where it went, and what they do not explain is a line of its
own::

    purchased      = grid import
    PV self        = max(0, PV generation − grid export)        (0 without a PV meter)
    unmetered      = purchased + PV self − Σ consumption meters  (negative: meters disagree)

Without a grid meter (or in an hour the grid meter has no data while the consumption meters
have), purchased electricity is *inferred*: Σ consumption meters, with no PV self-consumption
(the export cannot be measured) — flagged ``inferred`` so every output can say so. Real plants
never sub-meter every circuit; that is why the grid meter wins where there is one.

The location-based emissions of an hour are purchased kWh × the grid factor of the hour's
local year and the site's factor use (:meth:`FactorLibrary.lookup`). Pure: the rollup job
feeds it meter-hours and stores the result (``site_hourly``), which every output reads.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from processing.emissions import EmissionFactor, FactorLibrary
from supplymeter.carriers import CARRIERS
from supplymeter.config import Site, Supplier, factor_use
from supplymeter.records import HourlyConsumption, SiteHour, ns_to_datetime


def site_factor_use(supplier: Supplier, site: Site) -> str:
    """The variant of the electricity factor the site takes (as :attr:`MeterRef.factor_use`)."""
    return factor_use(supplier, site, CARRIERS["electricity"])


@dataclass
class SiteHourInputs:
    """One site's electricity meter-hours, gathered by hour start (ns)."""

    consumption: dict[int, list[float]] = field(default_factory=lambda: defaultdict(
        lambda: [0.0, 0.0]))  # fmt: skip
    """hour → [kWh, estimated kWh] summed over consumption meters."""
    grid: dict[int, list[float]] = field(default_factory=dict)
    export: dict[int, float] = field(default_factory=dict)
    pv: dict[int, float] = field(default_factory=dict)

    def add(self, role: str, hour: HourlyConsumption) -> None:
        """Add one electricity meter-hour of the given registry role."""
        if hour.carrier != "electricity":
            return
        if role == "grid":
            got = self.grid.setdefault(hour.hour_start_ns, [0.0, 0.0])
        elif role == "pv":
            self.pv[hour.hour_start_ns] = self.pv.get(hour.hour_start_ns, 0.0) + hour.consumption
            return
        else:
            got = self.consumption[hour.hour_start_ns]
        got[0] += hour.consumption
        got[1] += hour.estimated_consumption

    def add_export(self, hour_start_ns: int, kwh: float) -> None:
        self.export[hour_start_ns] = self.export.get(hour_start_ns, 0.0) + kwh

    @property
    def hours(self) -> list[int]:
        return sorted(set(self.consumption) | set(self.grid) | set(self.pv))


def site_hours(
    supplier: Supplier, site: Site, inputs: SiteHourInputs, library: FactorLibrary
) -> list[SiteHour]:
    """The site's hours (every hour any of its electricity meters has), see the module."""
    has_grid = any(m.role == "grid" for m in site.meters)
    has_pv = any(m.role == "pv" for m in site.meters)
    if not any(m.carrier == "electricity" for m in site.meters):
        return []
    tz = ZoneInfo(site.timezone)
    use = site_factor_use(supplier, site)
    key = CARRIERS["electricity"].factor_key
    by_year: dict[int, tuple[EmissionFactor, bool] | None] = {}
    out = []
    for h in inputs.hours:
        consumed, consumed_est = inputs.consumption.get(h, (0.0, 0.0))
        pv = inputs.pv.get(h, 0.0) if has_pv else None
        grid = inputs.grid.get(h) if has_grid else None
        if grid is not None:
            export = inputs.export.get(h, 0.0)
            pv_self = max(0.0, pv - export) if pv is not None else 0.0
            purchased, estimated = grid[0], grid[1]
            unmetered: float | None = purchased + pv_self - consumed
            inferred = False
        else:
            export = None
            pv_self = 0.0
            purchased, estimated = consumed, consumed_est
            unmetered = None
            inferred = True
        year = ns_to_datetime(h).astimezone(tz).year
        if year not in by_year:
            by_year[year] = library.lookup(key, supplier.country, year, use)
        found = by_year[year]
        location = purchased * found[0].value if found else None
        out.append(SiteHour(
            supplier.id, site.id, h, consumed, purchased, estimated, inferred,
            grid[0] if grid is not None else None, export, pv, pv_self, unmetered, location,
            found[0].id if found else "", found[0].value if found else 0.0,
            bool(found and found[1]),
        ))  # fmt: skip
    return out
