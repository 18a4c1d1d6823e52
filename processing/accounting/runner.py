"""The runner: the only code of the monthly accounting that talks to the store.

It gathers a month's typed totals (meter totals, site-hours, register reads at the month's
boundaries, product counts, meter totals over each bill's own period), computes the month
**once** with the pure functions of :mod:`.scope3`, and hands the same
:class:`~.scope3.MonthFigures` to every output: the scope-3 files (:mod:`.export`),
``scope3_monthly`` (written here), the product footprints (:mod:`.footprints`) and CBAM
(:mod:`.cbam`). A run that needs a month for several outputs passes the figures on
(``computed``): :data:`COMPUTED` counts the computations per month.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from processing.accounting import cbam, footprints
from processing.accounting.export import (
    ExportResult,
    HourlyTables,
    hourly_row,
    pathway_tco2e,
    publish_month,
)
from processing.accounting.inputs import Inputs
from processing.accounting.products import ProductPeriod
from processing.accounting.reconcile import Bill, Reconciliation, billed_meters
from processing.accounting.scope3 import (
    MeterMonth,
    MeterReads,
    Month,
    MonthFigures,
    QualityAssumptions,
    SiteMonth,
    StaleRollup,
    SupplierMonth,
    data_quality,
    meter_month,
    meter_reads,
    registry_share,
    site_month,
    supplier_month,
)
from processing.emissions import FactorLibrary
from supplymeter.config import Config
from supplymeter.errors import ConfigError
from supplymeter.store import MonthlyTotals, Store, monthly_line, pathway_line

if TYPE_CHECKING:
    from supplymeter.operations import MonthReview

COMPUTED: Counter[Month] = Counter()
"""How many times each month was computed in this process (one per month and run)."""

Progress = Callable[[int, int, str], None]


# --- computing a month --------------------------------------------------------------------


def compute_month(
    config: Config, store: Store, month: Month, library: FactorLibrary,
    inputs: Inputs | None = None, progress: Callable[[int, int, str], None] | None = None,
) -> MonthFigures:  # fmt: skip
    """Every supplier's month from the stored meter totals, site-hours, register reads and
    product counts, computed by the pure functions of :mod:`.scope3` (``progress(done,
    total, note)`` after each site). ``COMPUTED`` counts the calls: one per month and run."""
    COMPUTED[month] += 1
    inputs = inputs or Inputs.load(config)
    by_id = {f.id: f for f in library.factors}
    j = config.jobs
    assumptions = QualityAssumptions(j.estimate_uncertainty_pct, j.unknown_meter_uncertainty_pct,
                                     j.unknown_factor_uncertainty_pct)  # fmt: skip
    total = sum(len(s.sites) for s in config.registry.suppliers)
    done = 0
    meters: list[MeterMonth] = []
    sites: list[SiteMonth] = []
    suppliers: list[SupplierMonth] = []
    reads: list[MeterReads] = []
    products: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    for supplier in config.registry.suppliers:
        supplier_meters: list[MeterMonth] = []
        supplier_sites: list[SiteMonth] = []
        for site in supplier.sites:
            first = config.registry.meter(supplier.id, site.id, site.meters[0].id)
            assert first is not None
            start, end = month.bounds(first.tz)
            totals = store.meter_totals(start, end, supplier=supplier.id, site=site.id)
            site_meters: list[MeterMonth] = []
            electric_hours = 0
            for meter in site.meters:
                found = totals.get((supplier.id, site.id, meter.id))
                if meter.carrier == "electricity" and found is not None:
                    electric_hours = max(electric_hours, found.hours)
                ref = config.registry.meter(supplier.id, site.id, meter.id)
                assert ref is not None
                # PV and grid meters are listed with their role; the site-hours read them.
                has_factor = meter.role == "consumption" and library.covers(
                    ref.carrier.factor_key, supplier.country
                )
                site_meters.append(meter_month(ref, month, found, has_factor))
            site_totals = store.site_totals(start, end, supplier=supplier.id, site=site.id).get(
                (supplier.id, site.id)
            )
            if electric_hours > (site_totals.hours if site_totals else 0):
                raise StaleRollup(
                    f"{supplier.id}/{site.id}: {month} has electricity meter hours without "
                    "their site-hours (purchased electricity); run the rollup job first"
                )
            if site.products:
                counted = store.product_totals(start, end, supplier=supplier.id, site=site.id)
                products[(supplier.id, site.id)] = {
                    pid: (t.units, t.estimated_units) for (_, pid), t in counted.items()
                }
            done += 1
            if progress:
                progress(done, total, f"{supplier.id}/{site.id}")
            certs = inputs.certificates.get((supplier.id, site.id, month))
            has_pv = any(m.role == "pv" for m in site.meters)
            sm = site_month(supplier.id, site.id, month, site_totals, certs, has_pv,
                            site.tariff_class or "")  # fmt: skip
            rate = sm.kgco2e_per_used_kwh
            site_meters = [
                dataclasses.replace(m, location_kgco2e=m.consumption * rate)
                if m.ref.meter.carrier == "electricity" and m.emissions_kgco2e is not None
                else m for m in site_meters
            ]  # fmt: skip
            supplier_sites.append(sm)
            supplier_meters += site_meters
            reads += site_reads(store, month, site_meters, start, end)
        share = inputs.allocations.get((supplier.id, month)) or registry_share(supplier)
        sm = supplier_month(supplier, month, supplier_meters, supplier_sites, share)
        quality = data_quality(supplier_meters, by_id, assumptions)
        suppliers.append(dataclasses.replace(sm, quality=quality))
        meters += supplier_meters
        sites += supplier_sites
    used = {fid for m in meters for fid in m.factor_ids} | {
        fid for s in sites for fid in s.factor_ids
    }
    factors = [f for f in library.factors if f.id in used]
    reconciliations = [reconcile_bill(config, store, b) for b in inputs.bills_of(month)]
    return MonthFigures(month, suppliers, sites, meters, factors, reconciliations, reads,
                        products)  # fmt: skip


READS_WINDOW_NS = 31 * 24 * 3600 * 10**9
"""How far from a month's boundary the reading on either side of it is looked for."""


def site_reads(
    store: Store, month: Month, meters: list[MeterMonth], start: int, end: int
) -> list[MeterReads]:
    """Each of a site's meters' register at the month's boundaries, from its readings."""
    if not meters:
        return []
    supplier, site = meters[0].ref.supplier.id, meters[0].ref.site.id
    at: dict[tuple[str, int], dict] = {}
    for register in sorted({m.ref.register_field for m in meters}):
        for t in (start, end):
            at[(register, t)] = store.boundary_reads(supplier, site, register, t,
                                                     READS_WINDOW_NS)  # fmt: skip
    none = (None, None)
    return [
        meter_reads(m.ref, month, at[(m.ref.register_field, start)].get((site, m.ref.meter.id),
                                                                         none),
                    at[(m.ref.register_field, end)].get((site, m.ref.meter.id), none),
                    m.events.get("rollover", 0))
        for m in meters
    ]  # fmt: skip


def reconcile_bill(config: Config, store: Store, bill: Bill) -> Reconciliation:
    """A bill against the meters over its own billing period (see :mod:`.reconcile`):
    the site's grid meter for electricity where it has one, else its consumption meters."""
    found = config.registry.site(bill.supplier, bill.site)
    if found is None:
        raise ConfigError([f"{bill.source}: no site {bill.supplier}/{bill.site} in the registry"])
    _, site = found
    chosen = billed_meters(site, bill.carrier)
    if not chosen:
        raise ConfigError([f"{bill.source}: {bill.supplier}/{bill.site} has no "
                           f"{bill.carrier} meter to reconcile with"])  # fmt: skip
    tz = ZoneInfo(site.timezone)
    start, end = bill.bounds(tz)
    totals = store.meter_totals(start, end, supplier=bill.supplier, site=bill.site)
    found_totals = [totals.get((bill.supplier, bill.site, m.id)) for m in chosen]
    metered = math.fsum(t.consumption for t in found_totals if t is not None)
    hours = (end - start) // (3600 * 10**9)
    missing = sum(hours - (t.hours if t is not None else 0) for t in found_totals)
    return Reconciliation(bill, metered, tuple(m.id for m in chosen), missing,
                          config.jobs.reconcile_threshold_pct)  # fmt: skip


# --- outputs ---------------------------------------------------------------------------------


def export_month(
    config: Config,
    store: Store,
    month: Month,
    out_dir: Path,
    library: FactorLibrary,
    reasons: list[str] | None = None,
    progress: Progress | None = None,
    inputs: Inputs | None = None,
) -> ExportResult:
    """Compute ``month`` once and publish it (:func:`.export.publish_month`: a new version
    only if it is new or restated); ``scope3_monthly`` then carries the standing version's
    figures, so the dashboards and the signed files never disagree. ``inputs``: allocations,
    certificates and bills (``None``: read from the configured files)."""
    inputs = inputs or Inputs.load(config)
    figures = compute_month(config, store, month, library, inputs, progress)
    result = publish_month(
        config, figures, out_dir, inputs.digest(month), reasons,
        history=lambda: monthly_history(config, store, month, 12),
        hourly=lambda: hourly_tables(config, store, month),
        reviews=review_rows(inputs.reviews_of(month)),
    )  # fmt: skip
    assert result.totals is not None
    store.write(monthly_lines(config, month, result.totals, result.version))
    return result


def review_rows(reviews: list[MonthReview]) -> list[tuple[str, str]]:
    """The suppliers' confirmations and disputes as Methodology rows (topic, text)."""
    return [(f"Review {r.supplier}", f"{r.status} v{r.version} by {r.recorded_by} on "
             f"{r.recorded_at:%Y-%m-%d %H:%M} UTC" + (f": {r.comment}" if r.comment else ""))
            for r in reviews]  # fmt: skip


def hourly_tables(config: Config, store: Store, month: Month) -> HourlyTables:
    """Every meter's stored hours of the month as rows of :data:`.export.HOURLY_COLUMNS`,
    one site read at a time."""
    for supplier in config.registry.suppliers:
        for site in supplier.sites:
            tz = ZoneInfo(site.timezone)
            start, end = month.bounds(tz)
            hours, _ = store.hourly_consumption(start, end, supplier=supplier.id, site=site.id)
            kg = {(e.meter, e.hour_start_ns): e
                  for e in store.hourly_emissions(start, end, supplier=supplier.id,
                                                  site=site.id)}  # fmt: skip
            by_meter: dict[str, list[list[str]]] = {m.id: [] for m in site.meters}
            for h in sorted(hours, key=lambda h: (h.meter, h.hour_start_ns)):
                if h.meter not in by_meter:
                    continue  # a meter since removed from the registry
                by_meter[h.meter].append(hourly_row(h, kg.get((h.meter, h.hour_start_ns)), tz))
            for meter_id, rows in by_meter.items():
                yield supplier.id, site.id, meter_id, rows


def monthly_history(
    config: Config, store: Store, month: Month, months: int
) -> dict[Month, dict[str, float]]:
    """Location-based tCO2e by supplier for the ``months`` months before ``month``, from the
    stored hourly emissions."""
    tz = ZoneInfo(config.jobs.timezone)
    out: dict[Month, dict[str, float]] = {}
    current = month
    for _ in range(months):
        current = current.previous()
        start, end = current.bounds(tz)
        out[current] = {k: v / 1000 for k, v in store.emissions_by_supplier(start, end).items()}
    return out


def monthly_lines(
    config: Config, month: Month, totals_by_supplier: dict[str, dict], version: int
) -> list[str]:
    """The standing version's supplier totals (and the pathway) for the dashboards, at the
    month's first instant in ``[jobs] timezone``; a restatement overwrites them."""
    start, _ = month.bounds(ZoneInfo(config.jobs.timezone))
    lines = [
        monthly_line(
            MonthlyTotals(
                supplier=supplier,
                month_start_ns=start,
                location_kgco2e=t["location_kgco2e"],
                market_kgco2e=t.get("market_kgco2e"),
                allocated_kgco2e=t["allocated_kgco2e"],
                allocated_market_kgco2e=t.get("allocated_market_kgco2e"),
                allocation_share_pct=t["allocation_share_pct"]
                if "allocation_share_pct" in t
                else 100 * t["share"],
                completeness_pct=t["completeness_pct"],
                primary_data_share_pct=t["primary_data_share_pct"],
                purchased_electricity_kwh=t.get("purchased_electricity_kwh"),
                provisional=bool(t["provisional"]),
                version=version,
            )
        )
        for supplier, t in sorted(totals_by_supplier.items())
    ]
    target = pathway_tco2e(config, month)
    if target is not None:
        lines.append(pathway_line(start, target))
    return lines


# --- the same figures for footprints and CBAM ----------------------------------------------


def month_figures(
    config: Config, store: Store, library: FactorLibrary, months: list[Month],
    progress: Progress | None = None, inputs: Inputs | None = None,
    computed: dict[Month, MonthFigures] | None = None,
) -> dict[Month, MonthFigures]:  # fmt: skip
    """The figures of ``months``: those this run already computed (``computed``, e.g. the
    export's) as they are, the others computed now — without bill reconciliations, which
    footprints and CBAM do not use and which cost queries of their own."""
    inputs = dataclasses.replace(inputs or Inputs.load(config), bills=[])
    out: dict[Month, MonthFigures] = {}
    for k, month in enumerate(months):
        found = (computed or {}).get(month)
        out[month] = found if found is not None else compute_month(config, store, month,
                                                                   library, inputs)  # fmt: skip
        if progress:
            progress(k + 1, len(months), str(month))
    return out


def product_periods(
    config: Config, store: Store, library: FactorLibrary, months: list[Month],
    progress: Progress | None = None,
    meters_out: dict[tuple[str, str], list[MeterMonth]] | None = None,
    inputs: Inputs | None = None, computed: dict[Month, MonthFigures] | None = None,
) -> list[ProductPeriod]:  # fmt: skip
    """Every product's period over ``months`` (:func:`.footprints.product_periods`)."""
    figures = month_figures(config, store, library, months, progress, inputs, computed)
    return footprints.product_periods(config, library, list(figures.values()), meters_out)


def publish_period(
    config: Config, store: Store, library: FactorLibrary, first: Month, last: Month,
    now: datetime | None = None, progress: Progress | None = None,
    inputs: Inputs | None = None, computed: dict[Month, MonthFigures] | None = None,
    reasons: list[str] | None = None,
) -> tuple[footprints.Published, list[str]]:  # fmt: skip
    """Publish every product's footprint over ``first``–``last`` from the months' figures
    (:func:`.footprints.publish_period`)."""
    figures = month_figures(config, store, library, footprints.months_between(first, last),
                            progress, inputs, computed)  # fmt: skip
    return footprints.publish_period(config, library, list(figures.values()), first, last, now,
                                     reasons)  # fmt: skip


def installations(
    config: Config, store: Store, library: FactorLibrary, first: Month, last: Month,
    defaults: dict[str, cbam.DefaultValue] | None = None, progress: Progress | None = None,
    computed: dict[Month, MonthFigures] | None = None,
) -> list[cbam.Installation]:  # fmt: skip
    """Every CBAM installation over ``first``–``last`` (:func:`.cbam.installations`)."""
    figures = month_figures(config, store, library, footprints.months_between(first, last),
                            progress, computed=computed)  # fmt: skip
    return cbam.installations(config, library, list(figures.values()), first, last, defaults)
