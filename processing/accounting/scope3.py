"""Monthly totals per meter and supplier, and the buyer's allocated share (scope 3, cat. 1).

Months are calendar months in each site's local timezone (Asia/Taipei for the example
suppliers), not UTC: a Taiwan plant's October starts at 2026-09-30T16:00Z. Pure functions;
:mod:`.export` does the I/O.

Allocation (GHG Protocol Scope 3 Standard, Category 1, hybrid method: the supplier's own scope
1 and 2 allocated to the buyer): the buyer's share of a supplier's emissions is ``emissions ×
share``, with the share's method (physical, economic, dedicated) and basis taken from the
registry or the monthly allocation file and shown in the export.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from processing.emissions import EmissionFactor
from supplymeter.carriers import CARRIERS
from supplymeter.config import MeterRef, Supplier
from supplymeter.errors import SupplymeterError
from supplymeter.records import MeterTotals, SiteTotals, datetime_to_ns

if TYPE_CHECKING:
    from processing.accounting.reconcile import Reconciliation


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

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def bounds(self, tz: ZoneInfo) -> tuple[int, int]:
        """UTC epoch-ns bounds of the month in ``tz``: [first instant, next month's first)."""
        nxt = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        start = datetime(self.year, self.month, 1, tzinfo=tz)
        end = datetime(nxt.year, nxt.month, 1, tzinfo=tz)
        return datetime_to_ns(start), datetime_to_ns(end)


@dataclass(frozen=True)
class MeterMonth:
    """One meter's month. Emissions are ``None`` when no factor exists for its carrier.

    Energy (or volume, mass) is split into ``measured`` (read from measured register steps)
    and ``estimated`` (apportioned across gaps, estimated across resets and unexplained falls);
    ``missing_estimate`` is what the hours without any rollup (no readings either side) would
    add at the month's mean hourly rate — shown, never added to the totals.
    """

    ref: MeterRef
    month: Month
    consumption: float
    """[unit, multiplier applied] = measured + estimated"""
    measured: float
    estimated: float
    hours_expected: int
    hours_measured: int
    """Hours fully covered by measured steps."""
    hours_estimated: int
    """Hours with a rollup that is partly or wholly estimated."""
    flags: Counter[str]
    emissions_kgco2e: float | None
    factor_ids: tuple[str, ...]
    provisional: bool
    location_kgco2e: float | None = None
    """The meter's part of its supplier's location-based emissions: an electricity meter
    carries its kWh at its site's rate per kWh used (purchased electricity shared with own PV,
    :attr:`SiteMonth.kgco2e_per_used_kwh`); any other meter its own emissions. ``None``: no
    factor, or not a consumption meter. [kgCO2e]"""
    events: Counter[str] = field(default_factory=Counter)
    """Register corrections counted as events (a fall spanning two hours is one fall)."""

    @property
    def hours_missing(self) -> int:
        """Hours of the month without any rollup."""
        return self.hours_expected - self.hours_measured - self.hours_estimated

    @property
    def missing_estimate(self) -> float:
        """The missing hours at the month's mean hourly rate. [unit]"""
        with_data = self.hours_measured + self.hours_estimated
        return self.consumption / with_data * self.hours_missing if with_data else 0.0

    @property
    def primary_data_share(self) -> float:
        """Measured ÷ (measured + estimated), 0–1: 1 for a month whose data show no
        consumption, 0 for a month without any data."""
        if self.hours_measured + self.hours_estimated == 0:
            return 0.0
        return self.measured / self.consumption if self.consumption > 0 else 1.0

    @property
    def completeness(self) -> float:
        """(measured + estimated) ÷ (measured + estimated + missing estimate), 0–1; 0 for a
        month without any data."""
        if self.hours_measured + self.hours_estimated == 0:
            return 0.0
        whole = self.consumption + self.missing_estimate
        if whole > 0:
            return self.consumption / whole
        return 1.0 - self.hours_missing / self.hours_expected  # a month without consumption


def meter_month(
    ref: MeterRef, month: Month, totals: MeterTotals | None, has_factor: bool
) -> MeterMonth:
    """A meter's month from its summed hourly rollups and *stored* emissions.

    ``totals`` come from the store (the one emissions path: nothing is recomputed here;
    ``None``: no rollup in the month). ``has_factor`` says whether the carrier has any factor
    at all; if it has, hours whose emissions are not stored yet raise (run the rollup job).
    """
    start, end = month.bounds(ref.tz)
    t = totals or MeterTotals()
    if has_factor and t.emission_hours < t.hours:
        raise StaleRollup(
            f"{'/'.join(ref.key)}: {t.hours - t.emission_hours} hours of {month} have "
            "consumption but no stored emissions; run the rollup job first"
        )
    return MeterMonth(
        ref=ref,
        month=month,
        consumption=t.consumption,
        measured=t.consumption - t.estimated,
        estimated=t.estimated,
        hours_expected=(end - start) // (3600 * 10**9),
        hours_measured=t.hours_measured,
        hours_estimated=t.hours - t.hours_measured,
        flags=Counter(t.flags),
        emissions_kgco2e=t.emissions_kgco2e if has_factor else None,
        factor_ids=t.factor_ids,
        provisional=t.provisional_hours > 0,
        location_kgco2e=t.emissions_kgco2e if has_factor else None,
        events=Counter(t.events),
    )


Read = tuple[int, float]
"""(device time ns, raw register value) of one reading."""


@dataclass(frozen=True)
class MeterReads:
    """A meter's register at its month's boundaries, from its own readings: what lets an
    auditor recompute the month's consumption by hand, without database access::

        consumption = (register at end − register at start + rollovers × rollover value)
                      × multiplier

    A boundary's register is interpolated linearly in time between the last reading at or
    before it and the first after (as the rollup does at every hour boundary); without a
    reading on one side, the reading on the other stands (the rollup has no hours there)."""

    ref: MeterRef
    month: Month
    start: tuple[Read | None, Read | None]
    end: tuple[Read | None, Read | None]
    multiplier: float
    rollover: float | None
    rollovers: int
    events: tuple[str, ...]
    """Exchanges and CT changes within the month (the formula then runs per segment)."""

    @property
    def register_start(self) -> float | None:
        return _register_at(self.start, self.month.bounds(self.ref.tz)[0], self.rollover)

    @property
    def register_end(self) -> float | None:
        return _register_at(self.end, self.month.bounds(self.ref.tz)[1], self.rollover)

    @property
    def consumption(self) -> float | None:
        """The formula above; ``None`` with events in the month or no reading. [unit]"""
        a, b = self.register_start, self.register_end
        if a is None or b is None or self.events:
            return None
        return (b - a + self.rollovers * (self.rollover or 0.0)) * self.multiplier


def _register_at(pair: tuple[Read | None, Read | None], t: int, rollover: float | None
                 ) -> float | None:  # fmt: skip
    before, after = pair
    if before is None or after is None:
        return before[1] if before else after[1] if after else None
    (t0, v0), (t1, v1) = before, after
    if t0 == t:
        return v0
    if v1 < v0 and rollover:
        v1 += rollover
    value = v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return value - rollover if rollover and value >= rollover else value


def meter_reads(
    ref: MeterRef, month: Month, start: tuple[Read | None, Read | None],
    end: tuple[Read | None, Read | None], rollovers: int,
) -> MeterReads:  # fmt: skip
    """A meter's reads at its month's boundaries (see :class:`MeterReads`)."""
    lo, hi = month.bounds(ref.tz)
    segment = next((s for s in ref.segments() if s.end_ns is None or lo < s.end_ns),
                   ref.segments()[-1])  # fmt: skip
    events = tuple(
        f"{e.type} at {e.time.isoformat()}: old final register {e.old_final_register}, new "
        f"first register {e.new_first_register}, multiplier {e.new_multiplier}"
        for e in ref.meter.events
        if e.type in ("exchange", "ct_change") and lo <= e.time_ns < hi
    )  # fmt: skip
    return MeterReads(ref, month, start, end, segment.multiplier, segment.rollover, rollovers,
                      events)  # fmt: skip


class StaleRollup(SupplymeterError):
    """Hourly consumption without its stored emissions: the rollup has not caught up."""


# --- allocation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationShare:
    """The buyer's share of one supplier's month, and where it came from."""

    method: str
    """``physical`` (units shipped to the buyer / units produced), ``economic`` (purchase
    value / supplier revenue) or ``dedicated`` (produces only for the buyer: 1)."""
    share: float
    basis: str
    source: str
    """``registry`` or ``FILE:LINE`` of the monthly allocation CSV (the file's name only:
    no path of the machine in a signed file)."""
    numerator: float | None = None
    denominator: float | None = None
    unit: str = ""


def registry_share(supplier: Supplier) -> AllocationShare:
    a = supplier.allocation
    return AllocationShare(a.method, a.share, a.basis, "registry", a.numerator, a.denominator,
                           a.unit)  # fmt: skip


# --- market-based: PV self-consumption and certificates -------------------------------------


@dataclass(frozen=True)
class Certificates:
    """Renewable energy certificates (e.g. T-RECs) for one site's month."""

    kwh: float
    """Retired for the site and meeting the quality checks: applied. [kWh]"""
    ids: str
    issuer: str
    source: str
    rejected_kwh: float = 0.0
    """Retired but not applied (attributes missing, vintage outside the year, another
    beneficiary). [kWh]"""
    sold_kwh: float = 0.0
    """Issued for the site's own PV generation and sold: those kWh's attributes went to the
    buyer of the certificates, so the site cannot also claim them as self-consumed
    renewable electricity (no double counting). [kWh]"""
    issues: tuple[str, ...] = ()


@dataclass(frozen=True)
class SiteMonth:
    """A site's electricity for the month from its stored site-hours (:mod:`processing.
    sitehours`), location- and market-based (GHG Protocol Scope 2 Guidance, 2015: dual
    reporting)."""

    supplier: str
    site: str
    month: Month
    electricity_kwh: float
    """Σ the site's electricity consumption meters (``metered_consumption_kwh``). [kWh]"""
    purchased_kwh: float
    """Electricity bought from the grid: the grid meter's import; inferred from the
    consumption meters without one (``inferred_hours``). [kWh]"""
    location_kgco2e: float
    """Purchased electricity × the grid factor of each hour: scope 2 is purchased
    electricity; what the site's own panels supplied is not (GHG Protocol Scope 2 Guidance,
    2015, ch. 5). [kgCO2e]"""
    pv_generation_kwh: float | None
    grid_export_kwh: float | None
    pv_self_kwh: float
    """PV generated and used on site: generation − export (0 without a grid meter). [kWh]"""
    certificates: Certificates | None
    market_kwh: float
    """Purchased electricity not covered by certificates (own-PV certificates sold count
    again). [kWh]"""
    market_kgco2e: float
    note: str = ""
    grid_import_kwh: float | None = None
    unmetered_kwh: float | None = None
    """import + PV self-consumption − Σ consumption meters: circuits without a meter
    (negative when meters disagree); ``None`` where purchased electricity is inferred."""
    hours: int = 0
    inferred_hours: int = 0
    """Hours whose purchased electricity was inferred from consumption meters (no grid
    meter, or no grid data in the hour)."""
    estimated_kwh: float = 0.0
    """The estimated part of ``purchased_kwh``. [kWh]"""
    factor_ids: tuple[str, ...] = ()
    provisional: bool = False
    tariff_class: str = ""
    """The site's Taipower tariff class, which picked its grid factor ("": not recorded, the
    supplier's factor use)."""

    @property
    def inferred(self) -> bool:
        """Whether any of the month's purchased electricity was inferred."""
        return self.inferred_hours > 0

    @property
    def used_kwh(self) -> float:
        """Electricity used on site: purchased + PV self-consumption (= Σ consumption meters +
        unmetered). [kWh]"""
        return self.purchased_kwh + self.pv_self_kwh

    @property
    def kgco2e_per_used_kwh(self) -> float:
        """Location-based kgCO2e per kWh used on site: every consumer's kWh is part grid, part
        own PV, in the month's proportion — the rate at which meters and the unmetered rest
        carry the site's scope 2. [kgCO2e/kWh]"""
        return self.location_kgco2e / self.used_kwh if self.used_kwh > 0 else 0.0

    @property
    def primary_data_share(self) -> float:
        """Measured ÷ purchased electricity, 0–1 (the grid meter's own measured/estimated
        split where it has one); 1 for hours that bought nothing, 0 without any hour."""
        if not self.hours:
            return 0.0
        if self.purchased_kwh <= 0:
            return 1.0
        return max(0.0, 1.0 - self.estimated_kwh / self.purchased_kwh)

    @property
    def unmetered_kgco2e(self) -> float:
        """The unmetered rest's share of the site's location-based emissions. [kgCO2e]"""
        return (self.unmetered_kwh or 0.0) * self.kgco2e_per_used_kwh

    @property
    def certificates_kwh(self) -> float:
        return self.certificates.kwh if self.certificates else 0.0

    @property
    def unused_certificates_kwh(self) -> float:
        """Certificates beyond the site's remaining consumption (not carried over). [kWh]"""
        sold = pv_sold_kwh(self.certificates, self.pv_self_kwh)
        return max(0.0, self.certificates_kwh - self.purchased_kwh - sold)


def pv_sold_kwh(certificates: Certificates | None, pv_self_kwh: float) -> float:
    """The part of the site's PV self-consumption whose certificates were sold: it counts at
    the grid factor market-based, never as the site's own renewable electricity. [kWh]"""
    return min(certificates.sold_kwh, pv_self_kwh) if certificates else 0.0


def site_month(
    supplier: str, site: str, month: Month, totals: SiteTotals | None,
    certificates: Certificates | None, has_pv: bool = False, tariff_class: str = "",
) -> SiteMonth:  # fmt: skip
    """A site's scope 2 electricity from its summed site-hours (``None``: none stored).
    Location-based: purchased electricity at the grid factor of each hour. Market-based:
    purchased − certificates (+ own-PV certificates sold), at the grid factor (Taiwan publishes
    no residual mix; the grid average stands in for it, as the methodology sheet says); a
    month's hours share one year's factor, so the kWh scale exactly."""
    t = totals or SiteTotals()
    notes = []
    if t.inferred_hours:
        notes.append("purchased electricity inferred from consumption meters"
                     + ("" if t.inferred_hours == t.hours else
                        f" for {t.inferred_hours} h without grid meter data"))  # fmt: skip
    if has_pv and t.grid_import_kwh is None and t.hours:
        notes.append("PV without a grid meter: self-consumption not measurable, counted as 0")
    certs = certificates.kwh if certificates else 0.0
    sold = pv_sold_kwh(certificates, t.pv_self_kwh)
    if certificates and certificates.issues:
        notes.append("certificates not applied: " + "; ".join(certificates.issues))
    market_kwh = max(0.0, t.purchased_kwh + sold - certs)
    rate = t.location_kgco2e / t.purchased_kwh if t.purchased_kwh > 0 else t.factor_value or 0.0
    return SiteMonth(
        supplier, site, month, t.consumption_kwh, t.purchased_kwh, t.location_kgco2e,
        t.pv_generation_kwh, t.grid_export_kwh, t.pv_self_kwh, certificates, market_kwh,
        market_kwh * rate, "; ".join(notes), t.grid_import_kwh, t.unmetered_kwh, t.hours,
        t.inferred_hours, t.estimated_kwh, t.factor_ids, t.provisional_hours > 0, tariff_class,
    )  # fmt: skip


# --- supplier ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupplierMonth:
    """A supplier's month: consumption by carrier (measured and estimated), emissions, the
    buyer's allocated share, and the data quality of the month on energy."""

    supplier: Supplier
    month: Month
    consumption: dict[str, float]
    """Per carrier, in the carrier's unit; only carriers the supplier meters."""
    measured: dict[str, float]
    estimated: dict[str, float]
    emissions_kgco2e: float
    """Location-based, summed over meters whose carrier has a factor. [kgCO2e]"""
    allocated_kgco2e: float
    completeness: float
    """Emission-weighted mean of the meters' completeness on energy, 0–1 (consumption-
    weighted for carriers without a factor; see docs/glossary.md)."""
    primary_data_share: float
    """Share of the emissions computed from measured register steps, 0–1 (at a site with a
    grid meter, its electricity counts with the grid meter's measured share)."""
    provisional: bool
    carriers_without_factor: tuple[str, ...] = field(default=())
    market_kgco2e: float | None = None
    """Market-based: electricity reduced by PV self-consumption and certificates; other
    carriers as location-based. [kgCO2e]"""
    allocation: AllocationShare | None = None
    flags: Counter[str] = field(default_factory=Counter)
    by_scope: dict[str, float] = field(default_factory=dict)
    """Location-based emissions by the supplier's own scope of each carrier (carrier table):
    ``"1"`` fuels burnt on site, ``"2"`` purchased electricity/steam, ``"3"`` other. [kgCO2e]"""
    instrument_uncertainty_pct: float | None = None
    """± % of the emissions from the meters' accuracy classes (meter and CT limits, each meter
    independent: combined in quadrature, weighted by its emissions) — the instruments only,
    not estimation or factors; ``None`` when no meter has a class."""
    instrument_coverage: float = 0.0
    """Share of the emissions measured by meters with a known accuracy class, 0–1."""
    excluded_kgco2e: float = 0.0
    """Estimated emissions of the sources the sites' boundaries exclude, for the month
    (a twelfth of the yearly estimates). [kgCO2e]"""
    quality: DataQuality | None = None
    """Uncertainty, data quality ratings and per-gas results (:func:`data_quality`); set by
    the export, which knows the factors."""
    purchased_electricity_kwh: float = 0.0
    """Σ the sites' purchased electricity (grid import, else inferred). [kWh]"""
    pv_self_kwh: float = 0.0
    unmetered_kwh: float = 0.0
    inferred_sites: tuple[str, ...] = ()
    """Sites whose purchased electricity was (partly) inferred from consumption meters."""
    has_data: bool = True
    """False for a month without any stored hour: its shares then say nothing."""

    @property
    def excluded_pct(self) -> float:
        """Excluded estimate as a share of metered + excluded emissions. [%]"""
        whole = self.emissions_kgco2e + self.excluded_kgco2e
        return 100 * self.excluded_kgco2e / whole if whole > 0 else 0.0

    @property
    def estimated_share(self) -> float:
        """1 − primary-data share: the share of the emissions from estimated energy."""
        return 1.0 - self.primary_data_share

    @property
    def allocated_market_kgco2e(self) -> float | None:
        if self.market_kgco2e is None or self.allocation is None:
            return None
        return self.market_kgco2e * self.allocation.share


def _weighted(values: list[tuple[float, float]], default: float) -> float:
    """Mean of ``value`` weighted by ``weight`` over (value, weight) pairs."""
    total = math.fsum(w for _, w in values)
    return math.fsum(v * w for v, w in values) / total if total > 0 else default


def supplier_month(
    supplier: Supplier,
    month: Month,
    meters: list[MeterMonth],
    sites: list[SiteMonth] | None = None,
    allocation: AllocationShare | None = None,
) -> SupplierMonth:
    """Roll a supplier's meter-months up (its consumption meters; PV and grid meters are
    read through ``sites``). Carriers without a factor are named, not zeroed."""
    allocation = allocation or registry_share(supplier)
    meters = [m for m in meters if m.ref.meter.role == "consumption"]
    consumption: dict[str, float] = {}
    measured: dict[str, float] = {}
    estimated: dict[str, float] = {}
    by_scope: dict[str, float] = {}
    for m in meters:
        carrier = m.ref.meter.carrier
        consumption[carrier] = consumption.get(carrier, 0.0) + m.consumption
        measured[carrier] = measured.get(carrier, 0.0) + m.measured
        estimated[carrier] = estimated.get(carrier, 0.0) + m.estimated
        scope = m.ref.carrier.scope
        by_scope[scope] = by_scope.get(scope, 0.0) + (m.emissions_kgco2e or 0.0)
    emissions = math.fsum(m.emissions_kgco2e or 0.0 for m in meters)
    market = None
    if sites is not None:
        # Scope 2 electricity is what the sites bought (their site-hours), not what the
        # consumption meters read: the meters only explain where it went.
        metered = math.fsum(m.emissions_kgco2e or 0.0 for m in meters
                            if m.ref.meter.carrier == "electricity")  # fmt: skip
        electric = math.fsum(s.location_kgco2e for s in sites)
        emissions += electric - metered
        scope = CARRIERS["electricity"].scope
        by_scope[scope] = by_scope.get(scope, 0.0) + electric - metered
        market = emissions - electric + math.fsum(s.market_kgco2e for s in sites)
    flags: Counter[str] = Counter()
    for m in meters:
        flags.update(m.flags)
    weights = [(m, m.emissions_kgco2e or 0.0) for m in meters]
    if not any(w for _, w in weights):  # no factor anywhere: weigh by consumption
        weights = [(m, m.consumption) for m in meters]
    # Where a grid meter measured the purchase, scope 2 is its figure: the primary-data share
    # of that electricity is the grid meter's own, weighted by the site's location-based
    # kgCO2e, not the consumption meters' (they only say where it went).
    grid = {s.site for s in sites or () if s.grid_import_kwh is not None and s.hours}
    primary = [
        (m.primary_data_share, w)
        for m, w in weights
        if not (m.ref.meter.carrier == "electricity" and m.ref.site.id in grid)
    ]
    primary += [(s.primary_data_share, s.location_kgco2e) for s in sites or () if s.site in grid]
    any_data = any(m.hours_measured + m.hours_estimated for m in meters)
    uncertainty, coverage = instrument_uncertainty(meters)
    return SupplierMonth(
        supplier=supplier,
        month=month,
        consumption=consumption,
        measured=measured,
        estimated=estimated,
        emissions_kgco2e=emissions,
        allocated_kgco2e=emissions * allocation.share,
        completeness=_weighted([(m.completeness, w) for m, w in weights], 1.0 if any_data else 0.0),
        primary_data_share=_weighted(primary, 1.0),
        provisional=any(m.provisional for m in meters) or any(s.provisional for s in sites or ()),
        carriers_without_factor=tuple(
            sorted({m.ref.meter.carrier for m in meters if m.emissions_kgco2e is None})
        ),
        market_kgco2e=market,
        allocation=allocation,
        flags=flags,
        by_scope=by_scope,
        instrument_uncertainty_pct=uncertainty,
        instrument_coverage=coverage,
        excluded_kgco2e=excluded_per_month(supplier),
        purchased_electricity_kwh=math.fsum(s.purchased_kwh for s in sites or ()),
        pv_self_kwh=math.fsum(s.pv_self_kwh for s in sites or ()),
        unmetered_kwh=math.fsum(s.unmetered_kwh or 0.0 for s in sites or ()),
        inferred_sites=tuple(s.site for s in sites or () if s.inferred),
        has_data=any_data or any(s.hours for s in sites or ()),
    )


# --- data quality ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityAssumptions:
    """What the uncertainty assumes where the registry or the factor file says nothing
    (``[jobs]`` settings of the same names). [± %, 95 %]"""

    estimate_pct: float = 25.0
    unknown_meter_pct: float = 2.0
    unknown_factor_pct: float = 5.0


@dataclass(frozen=True)
class DataQuality:
    """A supplier-month's uncertainty (± %, 95 %, of its metered emissions), its PACT v3 data
    quality ratings (1 best – 5, emission-weighted over meters) and per-gas results."""

    uncertainty_pct: float
    instrument_pct: float
    estimation_pct: float
    factor_pct: float
    """The three components; ``uncertainty_pct² = instrument² + estimation² + factor²``."""
    assumed: tuple[str, ...]
    """What took an assumed value, e.g. ``"meter class for 3 meters (±2%)"``."""
    technological: float
    temporal: float
    geographical: float
    gases_kg: dict[str, float] | None
    """kg CO2, CH4 and N2O of the emissions whose factors give them; ``None`` if none does."""
    gases_share: float
    """Share of the metered emissions covered by ``gases_kg``, 0–1."""


def temporal_rating(activity_year: int, factor_year: int) -> int:
    """PACT-style temporal rating of a factor for an activity year: the same year 1, a year
    apart 2 (a provisional factor), 2–3 years 3, 4–6 years 4, older 5."""
    gap = abs(activity_year - factor_year)
    return 1 if gap == 0 else 2 if gap == 1 else 3 if gap <= 3 else 4 if gap <= 6 else 5


def data_quality(
    meters: list[MeterMonth], factors: dict[str, EmissionFactor],
    assumptions: QualityAssumptions = QualityAssumptions(),
) -> DataQuality | None:  # fmt: skip
    """Uncertainty by error propagation (IPCC 2006 Guidelines Vol. 1 ch. 3, Approach 1;
    GHG Protocol, *Quantitative Inventory Uncertainty*, 2011): per meter, emissions E = A × F
    with activity A's relative uncertainty u_A² = u_class² + (estimated share × u_estimate)²;
    meters are independent, so their activity terms add in quadrature, (u_A·E)²; a factor is
    shared by every meter that uses it (fully correlated), so its term is (u_F · ΣE of those
    meters)². Relative to the metered emissions ΣE. Class limits and assumed values are
    bounds, so the result is conservative. ``None`` without emissions."""
    rows = [(m, m.emissions_kgco2e) for m in meters if m.emissions_kgco2e]
    total = math.fsum(e for _, e in rows)
    if not rows or total <= 0:
        return None
    a = assumptions
    instrument: list[float] = []
    estimation: list[float] = []
    by_factor: dict[str, float] = {}
    unknown_class = 0
    unknown_factors: set[str] = set()
    ratings: list[tuple[float, float, float, float]] = []
    gases: dict[str, float] = {}
    gases_e = 0.0
    for m, e in rows:
        u_class = m.ref.meter.instrument.uncertainty_pct
        if u_class is None:
            u_class = a.unknown_meter_pct
            unknown_class += 1
        share = m.estimated / m.consumption if m.consumption > 0 else 0.0
        instrument.append(u_class * e)
        estimation.append(share * a.estimate_pct * e)
        used = [factors[f] for f in m.factor_ids if f in factors]
        for f in used:
            by_factor[f.id] = by_factor.get(f.id, 0.0) + e / len(used)
        if used:
            ratings.append((
                max(f.dqr_technological or 3 for f in used),
                max(temporal_rating(m.month.year, f.year) for f in used),
                max(f.dqr_geographical or 3 for f in used), e,
            ))  # fmt: skip
        if len(used) == 1 and (g := used[0].per_gas(m.consumption)) is not None:
            for k, v in g.items():
                gases[k] = gases.get(k, 0.0) + v
            gases_e += e
    factor_terms = []
    for fid, e in by_factor.items():
        u = factors[fid].uncertainty_pct
        if u is None:
            u = a.unknown_factor_pct
            unknown_factors.add(fid)
        factor_terms.append(u * e)

    def rss(terms: list[float]) -> float:
        return math.sqrt(math.fsum(t * t for t in terms)) / total

    inst, est, fac = rss(instrument), rss(estimation), rss(factor_terms)
    assumed = []
    if unknown_class:
        assumed.append(f"meter class for {unknown_class} meter(s) without one "
                       f"(±{a.unknown_meter_pct:g}%)")  # fmt: skip
    if unknown_factors:
        assumed.append(f"factor uncertainty of {', '.join(sorted(unknown_factors))} "
                       f"(±{a.unknown_factor_pct:g}%, none published)")  # fmt: skip
    if any(estimation):
        assumed.append(f"estimated energy ±{a.estimate_pct:g}%")
    weight = math.fsum(r[3] for r in ratings)

    def mean(i: int) -> float:
        return math.fsum(r[i] * r[3] for r in ratings) / weight if weight else 3.0

    return DataQuality(
        uncertainty_pct=math.sqrt(inst**2 + est**2 + fac**2), instrument_pct=inst,
        estimation_pct=est, factor_pct=fac, assumed=tuple(assumed),
        technological=mean(0), temporal=mean(1), geographical=mean(2),
        gases_kg=gases or None, gases_share=gases_e / total,
    )  # fmt: skip


def excluded_per_month(supplier: Supplier) -> float:
    """A twelfth of the yearly estimates of the sources the supplier's sites exclude. [kgCO2e]"""
    excluded = [b.estimate_kgco2e_per_year or 0.0 for site in supplier.sites
                for b in site.boundary if b.status == "excluded"]  # fmt: skip
    return math.fsum(excluded) / 12


def instrument_uncertainty(meters: list[MeterMonth]) -> tuple[float | None, float]:
    """(± % of the meters' emissions from their accuracy classes, share of the emissions
    whose meters have a class). Each meter's limit (:attr:`MeterInstrument.uncertainty_pct`)
    scaled by its emissions; meters independent, so combined in quadrature (GUM, JCGM
    100:2008, uncorrelated inputs). Class limits are bounds, so this is conservative."""
    total = math.fsum(m.emissions_kgco2e or 0.0 for m in meters)
    known = [(m.ref.meter.instrument.uncertainty_pct, m.emissions_kgco2e or 0.0) for m in meters
             if m.ref.meter.instrument.uncertainty_pct is not None]  # fmt: skip
    covered = math.fsum(e for _, e in known)
    if not known or covered <= 0:
        return None, 0.0
    spread = math.sqrt(math.fsum((u * e) ** 2 for u, e in known)) / covered
    return spread, covered / total if total > 0 else 0.0


@dataclass(frozen=True)
class MonthFigures:
    """Everything one month's export shows."""

    month: Month
    suppliers: list[SupplierMonth]
    sites: list[SiteMonth]
    meters: list[MeterMonth]
    factors: list[EmissionFactor]
    reconciliations: list[Reconciliation] = field(default_factory=list)
    """The bills whose billing period ends in the month, against the meters."""
    reads: list[MeterReads] = field(default_factory=list)
    """Each meter's register at the month's boundaries (the Meter reads sheet)."""
    products: dict[tuple[str, str], dict[str, tuple[float, float]]] = field(
        default_factory=dict)  # fmt: skip
    """Per (supplier, site) with products: each product's counted pieces in the month and
    the estimated part of them (units, estimated units)."""
