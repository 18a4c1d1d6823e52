"""The monthly scope-3 export: files an auditor can follow back to meters, factors and methods.

``supplymeter export --month YYYY-MM`` reads the month's *stored* hourly consumption and
hourly emissions (the one emissions path: nothing is recomputed here; the rollup job keeps
them current) and writes a version (:mod:`.versions`)::

    <export_dir>/YYYY-MM/v1/scope3-YYYY-MM-suppliers.csv   per supplier: consumption by carrier
                                                          (total, measured, estimated), location-
                                                          and market-based kgCO2e, scope split,
                                                          allocation, the buyer's kgCO2e,
                                                          completeness and primary-data share
                            scope3-YYYY-MM-sites.csv       electricity, PV self-consumption,
                                                          certificates, market-based, per site
                            scope3-YYYY-MM-meters.csv      per meter: measured and estimated
                                                          energy, hours, register corrections,
                                                          the factor ids used
                            scope3-YYYY-MM-factors.csv     every factor used, with its source,
                                                          use, per-gas values, uncertainty,
                                                          ratings and verification
                            scope3-YYYY-MM-quality.csv     per supplier: uncertainty and its
                                                          components, data quality ratings,
                                                          what an auditor checks first
                            scope3-YYYY-MM-reconciliation.csv  (with bills) metered vs billed
                            scope3-YYYY-MM-boundary.csv    (when sites list sources) in and out
                            scope3-YYYY-MM.xlsx            all of the above + methodology + chart
                            scope3-YYYY-MM-chart.png       tCO2e by supplier, 13 months
                            manifest.json                  totals, quality, inputs, reasons
                            diff-vN.csv                    (restatements) what changed and why

``scope3_monthly`` in InfluxDB always carries the figures of the version that stands (with
its number), so the dashboards and the signed files never disagree.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from processing.accounting.reconcile import (
    RECONCILIATION_COLUMNS,
    reconciliation_row,
)
from processing.accounting.scope3 import (
    DataQuality,
    MeterMonth,
    MeterReads,
    Month,
    MonthFigures,
    SiteMonth,
    SupplierMonth,
    registry_share,
)
from processing.accounting.versions import differences, latest_manifest, publish, version_rows
from processing.emissions import EmissionFactor
from supplymeter.carriers import CARRIERS
from supplymeter.config import Config
from supplymeter.records import (
    HourlyConsumption,
    HourlyEmissions,
    datetime_to_ns,
    ns_to_datetime,
)

NAMES = ("suppliers", "sites", "meters", "factors")
OPTIONAL_NAMES = ("quality", "reads", "reconciliation", "boundary")
"""Tables written when there is something to show (quality: versions from method 3 on)."""


@dataclass(frozen=True)
class ExportResult:
    month: Month
    suppliers: list[SupplierMonth]
    sites: list[SiteMonth]
    meters: list[MeterMonth]
    factors: list[EmissionFactor]
    version: int
    written: bool
    """False when the month matched the latest version: nothing new was written."""
    directory: Path
    paths: list[Path]
    """The version's files: suppliers, sites, meters, factors CSVs, XLSX, chart, manifest."""
    diff_path: Path | None = None
    reasons: tuple[str, ...] = ()
    figures: MonthFigures | None = None
    """The month as computed for this export: footprints and CBAM of the same run take these
    figures instead of computing the month again."""
    totals: dict[str, dict[str, float | bool | None]] | None = None
    """The standing version's totals per supplier (what ``scope3_monthly`` carries)."""


def previous_month(now_ns: int, tz: str) -> Month:
    """The last complete calendar month in ``tz`` at ``now_ns``."""
    local = ns_to_datetime(now_ns).astimezone(ZoneInfo(tz))
    return Month(local.year, local.month).previous()


# --- computing a month --------------------------------------------------------------------


# --- rows -----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _carrier_columns() -> tuple[str, ...]:
    cols: list[str] = []
    for c in CARRIERS.values():
        u = c.unit.lower()
        cols += [f"{c.name}_{u}", f"{c.name}_measured_{u}", f"{c.name}_estimated_{u}"]
    return tuple(cols)


SUPPLIER_COLUMNS = (
    "month", "supplier", "supplier_name", "kind", "purchased_electricity_kwh",
    "pv_self_consumption_kwh", "unmetered_electricity_kwh", "purchased_electricity_inferred",
    *_carrier_columns(), "location_kgco2e",
    "scope1_kgco2e", "scope2_kgco2e", "other_kgco2e", "market_kgco2e", "allocation_method",
    "allocation_share_pct", "allocation_numerator", "allocation_denominator", "allocation_unit",
    "allocation_basis", "allocation_source", "allocated_kgco2e", "allocated_scope1_kgco2e",
    "allocated_scope2_kgco2e", "allocated_market_kgco2e",
    "completeness_pct", "primary_data_share_pct", "estimated_pct", "provisional",
    "carriers_without_factor", "register_corrections", "instrument_uncertainty_pct",
    "instrument_class_coverage_pct", "excluded_estimate_kgco2e", "excluded_pct",
    "uncertainty_pct", "dqr_technological", "dqr_temporal", "dqr_geographical", "co2_kg",
    "ch4_kg", "n2o_kg", "per_gas_coverage_pct", "data",
)  # fmt: skip
"""``data``: ``no data`` for a supplier-month without any stored hour (every share then
says nothing, not 100 %)."""
QUALITY_COLUMNS = (
    "month", "supplier", "location_kgco2e", "primary_data_share_pct", "completeness_pct",
    "estimated_pct", "uncertainty_pct", "instrument_pct", "estimation_pct", "factor_pct",
    "assumed", "instrument_class_coverage_pct", "calibration_overdue_meters",
    "dqr_technological", "dqr_temporal", "dqr_geographical", "dqr_coverage_pct",
    "factors_not_verified", "provisional", "bills_flagged", "excluded_pct",
)  # fmt: skip
BOUNDARY_COLUMNS = (
    "month", "supplier", "site", "source", "scope", "status", "estimate_kgco2e_month",
    "basis",
)  # fmt: skip
SITE_COLUMNS = (
    "month", "supplier", "site", "purchased_electricity_kwh", "purchased_from",
    "estimated_purchased_kwh", "grid_import_kwh", "grid_export_kwh", "pv_generation_kwh",
    "pv_self_consumption_kwh", "metered_consumption_kwh", "unmetered_electricity_kwh",
    "certificates_applied_kwh", "certificate_ids", "certificate_issuer",
    "certificates_rejected_kwh", "certificates_rejected_reason", "certificates_sold_kwh",
    "unused_certificates_kwh", "market_kwh", "location_kgco2e", "market_kgco2e",
    "unmetered_kgco2e", "tariff_class", "factor_ids", "provisional", "note",
)  # fmt: skip
METER_COLUMNS = (
    "month", "supplier", "site", "meter", "role", "timezone", "carrier", "unit", "consumption",
    "measured", "estimated", "primary_data_share_pct", "completeness_pct",
    "missing_hours_estimate", "hours_expected", "hours_measured", "hours_estimated",
    "hours_missing", "rollovers", "resets", "falls", "glitches", "implausible", "exchanges",
    "factor_ids", "provisional", "metered_kgco2e", "location_kgco2e", "allocation_share_pct",
    "allocated_kgco2e", "serial", "accuracy_class", "ct_ratio", "ct_class", "calibrated_on",
    "calibration_due", "calibration_overdue", "instrument_uncertainty_pct",
)  # fmt: skip
"""One row per meter of every role — consumption, ``pv``, ``grid`` (their kWh explain the
site's purchased electricity; no emissions of their own) — and per site with a grid meter an
``unmetered`` row (the circuits without a meter): the rows' ``location_kgco2e`` and
``allocated_kgco2e`` add up to the supplier's. ``metered_kgco2e``: consumption × factor,
before the site's PV self-consumption. Corrections are counted as events."""
READS_COLUMNS = (
    "month", "supplier", "site", "meter", "role", "carrier", "unit", "register",
    "multiplier", "rollover_value", "read_before_start_utc", "register_before_start",
    "read_after_start_utc", "register_after_start", "register_at_start",
    "read_before_end_utc", "register_before_end", "read_after_end_utc", "register_after_end",
    "register_at_end", "rollovers", "events", "consumption_from_reads", "consumption",
    "difference",
)  # fmt: skip
"""The Meter reads table: per meter and month, the readings either side of the month's first
and last instant (device time, UTC; raw register, before the multiplier), the register
interpolated at each, and ``consumption_from_reads`` = (at end − at start + rollovers ×
rollover value) × multiplier beside the month's ``consumption`` (Detail). A difference means
estimated steps (reset, fall, implausible) or events: see the hourly CSV of the meter."""
FACTOR_COLUMNS = (
    "id", "carrier", "region", "year", "period", "use", "value", "unit", "basis", "co2_kg",
    "ch4_kg", "n2o_kg", "gwp", "uncertainty_pct", "dqr_technological", "dqr_geographical",
    "verification", "publisher", "title", "url", "retrieved", "note",
)  # fmt: skip


def _pct(fraction: float, digits: int = 2) -> str:
    return _fmt(100 * fraction, digits)


def _bool(value: bool) -> str:
    """Booleans are ``true``/``false`` in every file."""
    return "true" if value else "false"


def supplier_row(s: SupplierMonth) -> list[str]:
    a = s.allocation or registry_share(s.supplier)
    carriers = []
    for c in CARRIERS.values():
        carriers += [_fmt(s.consumption.get(c.name)), _fmt(s.measured.get(c.name)),
                     _fmt(s.estimated.get(c.name))]  # fmt: skip
    empty = not s.has_data
    return [
        str(s.month), s.supplier.id, s.supplier.name, s.supplier.kind,
        _fmt(s.purchased_electricity_kwh), _fmt(s.pv_self_kwh), _fmt(s.unmetered_kwh),
        ";".join(s.inferred_sites), *carriers,
        _fmt(s.emissions_kgco2e), _fmt(s.by_scope.get("1", 0.0)), _fmt(s.by_scope.get("2", 0.0)),
        _fmt(s.by_scope.get("3", 0.0)), _fmt(s.market_kgco2e),
        a.method, f"{100 * a.share:.6g}", _fmt(a.numerator, 6), _fmt(a.denominator, 6), a.unit,
        a.basis, a.source, _fmt(s.allocated_kgco2e),
        _fmt(s.by_scope.get("1", 0.0) * a.share), _fmt(s.by_scope.get("2", 0.0) * a.share),
        _fmt(s.allocated_market_kgco2e),
        "" if empty else _pct(s.completeness), "" if empty else _pct(s.primary_data_share),
        "" if empty else _pct(s.estimated_share), _bool(s.provisional),
        ";".join(s.carriers_without_factor),
        ";".join(f"{k}={v}" for k, v in sorted(s.flags.items())),
        _fmt(s.instrument_uncertainty_pct, 3), _pct(s.instrument_coverage),
        _fmt(s.excluded_kgco2e), _fmt(s.excluded_pct, 3), *_quality_cells(s.quality),
        "no data" if empty else "",
    ]  # fmt: skip


def _quality_cells(q: DataQuality | None) -> list[str]:
    """uncertainty, the three ratings, kg CO2/CH4/N2O and their coverage (Summary columns)."""
    if q is None:
        return [""] * 8
    g = q.gases_kg or {}
    return [_fmt(q.uncertainty_pct, 2), _fmt(q.technological, 1), _fmt(q.temporal, 1),
            _fmt(q.geographical, 1), _fmt(g.get("co2")), _fmt(g.get("ch4"), 6),
            _fmt(g.get("n2o"), 6), _fmt(100 * q.gases_share, 2)]  # fmt: skip


def quality_rows(figures: MonthFigures) -> list[list[str]]:
    """Per supplier: data quality and uncertainty, and what an auditor checks first (overdue
    calibrations, unverified or provisional factors, bills off the meters)."""
    factors = {f.id: f for f in figures.factors}
    rows = []
    for s in figures.suppliers:
        q = s.quality
        mine = [m for m in figures.meters if m.ref.supplier.id == s.supplier.id]
        overdue = sum(1 for m in mine if _overdue(m))
        unverified = sorted(
            {
                fid
                for m in mine
                for fid in m.factor_ids
                if fid in factors and factors[fid].verification.startswith("NOT VERIFIED")
            }
        )
        flagged = sum(1 for r in figures.reconciliations
                      if r.bill.supplier == s.supplier.id and r.flagged)  # fmt: skip
        rows.append([
            str(s.month), s.supplier.id, _fmt(s.emissions_kgco2e),
            _fmt(100 * s.primary_data_share, 2), _fmt(100 * s.completeness, 2),
            _fmt(100 * s.estimated_share, 2),
            *([_fmt(q.uncertainty_pct, 2), _fmt(q.instrument_pct, 2), _fmt(q.estimation_pct, 2),
               _fmt(q.factor_pct, 2), "; ".join(q.assumed)] if q else [""] * 5),
            _fmt(100 * s.instrument_coverage, 2), str(overdue),
            *([_fmt(q.technological, 1), _fmt(q.temporal, 1), _fmt(q.geographical, 1),
               "100.00"] if q else [""] * 4),
            ";".join(unverified), str(s.provisional).lower(), str(flagged),
            _fmt(s.excluded_pct, 3),
        ])  # fmt: skip
    return rows


def boundary_rows(s: SupplierMonth) -> list[list[str]]:
    """Every source the supplier's sites list, metered or excluded (with its estimate)."""
    return [
        [str(s.month), s.supplier.id, site.id, b.source, b.scope, b.status,
         _fmt(None if b.estimate_kgco2e_per_year is None else b.estimate_kgco2e_per_year / 12),
         b.basis]
        for site in s.supplier.sites for b in site.boundary
    ]  # fmt: skip


def site_row(s: SiteMonth) -> list[str]:
    c = s.certificates
    if not s.hours:
        source = "no data"
    elif s.grid_import_kwh is None:
        source = "inferred from consumption meters"
    elif s.inferred_hours:
        source = f"grid meter; {s.inferred_hours} h inferred from consumption meters"
    else:
        source = "grid meter"
    return [
        str(s.month), s.supplier, s.site, _fmt(s.purchased_kwh), source, _fmt(s.estimated_kwh),
        _fmt(s.grid_import_kwh), _fmt(s.grid_export_kwh), _fmt(s.pv_generation_kwh),
        _fmt(s.pv_self_kwh), _fmt(s.electricity_kwh), _fmt(s.unmetered_kwh),
        _fmt(s.certificates_kwh), c.ids if c else "", c.issuer if c else "",
        _fmt(c.rejected_kwh if c else None), "; ".join(c.issues) if c else "",
        _fmt(c.sold_kwh if c else None), _fmt(s.unused_certificates_kwh), _fmt(s.market_kwh),
        _fmt(s.location_kgco2e), _fmt(s.market_kgco2e),
        _fmt(s.unmetered_kgco2e if s.unmetered_kwh is not None else None),
        s.tariff_class or "not recorded", ";".join(s.factor_ids), _bool(s.provisional), s.note,
    ]  # fmt: skip


def _overdue(m: MeterMonth) -> bool:
    """Whether the meter's calibration fell due before the month ended."""
    due = m.ref.meter.instrument.calibration_due
    _, month_end = m.month.bounds(m.ref.tz)
    return due is not None and datetime_to_ns(
        datetime.combine(due, datetime.min.time(), m.ref.tz)) < month_end  # fmt: skip


def meter_row(m: MeterMonth, share: float) -> list[str]:
    ref = m.ref
    i = ref.meter.instrument
    overdue = _overdue(m)
    location = m.location_kgco2e
    allocated = None if location is None else location * share
    e = m.events
    empty = m.hours_measured + m.hours_estimated == 0
    return [
        str(m.month), ref.supplier.id, ref.site.id, ref.meter.id, ref.meter.role,
        ref.site.timezone, ref.meter.carrier, ref.unit, _fmt(m.consumption), _fmt(m.measured),
        _fmt(m.estimated), "" if empty else _pct(m.primary_data_share),
        "" if empty else _pct(m.completeness),
        _fmt(m.missing_estimate), str(m.hours_expected), str(m.hours_measured),
        str(m.hours_estimated), str(m.hours_missing), str(e.get("rollover", 0)),
        str(e.get("reset", 0)), str(e.get("fall", 0)), str(e.get("glitch", 0)),
        str(e.get("implausible", 0)), str(e.get("exchange", 0) + e.get("ct_change", 0)),
        ";".join(m.factor_ids), _bool(m.provisional), _fmt(m.emissions_kgco2e),
        _fmt(location), f"{100 * share:.6g}", _fmt(allocated), i.serial,
        i.accuracy_class or "", i.ct_ratio, i.ct_class or "", str(i.calibrated_on or ""),
        str(i.calibration_due or ""), _bool(overdue) if i.calibration_due else "",
        _fmt(i.uncertainty_pct, 3),
    ]  # fmt: skip


def unmetered_row(s: SiteMonth, timezone: str, share: float) -> list[str]:
    """A site's unmetered electricity as a row of the meters table (its own line: it is part
    of the purchased electricity no consumption meter explains)."""
    kwh = s.unmetered_kwh or 0.0
    kg = s.unmetered_kgco2e
    row = dict.fromkeys(METER_COLUMNS, "")
    row.update({
        "month": str(s.month), "supplier": s.supplier, "site": s.site, "meter": "(unmetered)",
        "role": "unmetered", "timezone": timezone, "carrier": "electricity", "unit": "kWh",
        "consumption": _fmt(kwh), "factor_ids": ";".join(s.factor_ids),
        "provisional": _bool(s.provisional), "location_kgco2e": _fmt(kg),
        "allocation_share_pct": f"{100 * share:.6g}", "allocated_kgco2e": _fmt(kg * share),
    })  # fmt: skip
    return list(row.values())


def _utc(read: tuple[int, float] | None) -> str:
    return ns_to_datetime(read[0]).strftime("%Y-%m-%dT%H:%M:%SZ") if read else ""


def reads_row(r: MeterReads, consumption: float) -> list[str]:
    ref = r.ref
    computed = r.consumption
    return [
        str(r.month), ref.supplier.id, ref.site.id, ref.meter.id, ref.meter.role,
        ref.meter.carrier, ref.unit, ref.register_field, f"{r.multiplier:g}",
        "" if r.rollover is None else f"{r.rollover:g}",
        _utc(r.start[0]), _fmt(r.start[0][1] if r.start[0] else None, 6),
        _utc(r.start[1]), _fmt(r.start[1][1] if r.start[1] else None, 6),
        _fmt(r.register_start, 6),
        _utc(r.end[0]), _fmt(r.end[0][1] if r.end[0] else None, 6),
        _utc(r.end[1]), _fmt(r.end[1][1] if r.end[1] else None, 6),
        _fmt(r.register_end, 6), str(r.rollovers), "; ".join(r.events), _fmt(computed),
        _fmt(consumption), _fmt(None if computed is None else consumption - computed),
    ]  # fmt: skip


HOURLY_COLUMNS = (
    "hour_start_utc", "hour_start_local", "consumption", "measured", "estimated", "unit",
    "coverage", "readings", "flags", "metered_kgco2e", "factor_id", "provisional",
)  # fmt: skip
"""One meter's hours of the month (``hourly/<supplier>/<site>/<meter>.csv``)."""


def hourly_row(h: HourlyConsumption, e: HourlyEmissions | None, tz: ZoneInfo) -> list[str]:
    """One meter-hour of a meter's hourly CSV (:data:`HOURLY_COLUMNS`), with its emissions."""
    local = ns_to_datetime(h.hour_start_ns).astimezone(tz)
    return [
        ns_to_datetime(h.hour_start_ns).strftime("%Y-%m-%dT%H:%M:%SZ"),
        local.isoformat(), _fmt(h.consumption, 6), _fmt(h.measured_consumption, 6),
        _fmt(h.estimated_consumption, 6), h.unit, f"{h.coverage:.4f}",
        str(h.readings), ";".join(h.flags), _fmt(e.emissions_kgco2e if e else None, 6),
        e.factor_id if e else "", _bool(e.provisional) if e else "",
    ]  # fmt: skip


def factor_row(f: EmissionFactor) -> list[str]:
    def g(v: float | int | None) -> str:
        return "" if v is None else f"{v:g}"

    return [f.id, f.carrier, f.region, str(f.year), f.period, f.use, f"{f.value:g}", f.unit,
            f.basis, g(f.co2_kg), g(f.ch4_kg), g(f.n2o_kg), f.gwp, g(f.uncertainty_pct),
            g(f.dqr_technological), g(f.dqr_geographical), f.verification, f.publisher,
            f.title, f.url, f.retrieved, f.note]  # fmt: skip


def tables(figures: MonthFigures) -> dict[str, tuple[tuple[str, ...], list[list[str]]]]:
    shares = {s.supplier.id: (s.allocation or registry_share(s.supplier)).share
              for s in figures.suppliers}  # fmt: skip
    meter_rows = []
    for site in figures.sites:
        mine = [m for m in figures.meters
                if m.ref.supplier.id == site.supplier and m.ref.site.id == site.site]  # fmt: skip
        share = shares[site.supplier]
        meter_rows += [meter_row(m, share) for m in mine]
        if site.unmetered_kwh is not None and mine:
            meter_rows.append(unmetered_row(site, mine[0].ref.site.timezone, share))
    out = {
        "suppliers": (SUPPLIER_COLUMNS, [supplier_row(s) for s in figures.suppliers]),
        "sites": (SITE_COLUMNS, [site_row(s) for s in figures.sites]),
        "meters": (METER_COLUMNS, meter_rows),
        "factors": (FACTOR_COLUMNS, [factor_row(f) for f in figures.factors]),
    }  # fmt: skip
    out["quality"] = (QUALITY_COLUMNS, quality_rows(figures))
    consumption = {m.ref.key: m.consumption for m in figures.meters}
    out["reads"] = (READS_COLUMNS,
                    [reads_row(r, consumption[r.ref.key]) for r in figures.reads])  # fmt: skip
    if figures.reconciliations:
        rows = [reconciliation_row(r) for r in figures.reconciliations]
        out["reconciliation"] = (RECONCILIATION_COLUMNS, rows)
    boundary = [row for s in figures.suppliers for row in boundary_rows(s)]
    if boundary:
        out["boundary"] = (BOUNDARY_COLUMNS, boundary)
    return out


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


# --- versions -------------------------------------------------------------------------------


METHOD = 5
"""The calculation method a version was written with (in its manifest); a version written
with an earlier one is restated, naming each change (:data:`METHOD_CHANGES`)."""
METHOD_CHANGES = {
    2: "scope 2 counts purchased electricity — a site's PV self-consumption leaves the "
       "location-based figure too (GHG Protocol Scope 2 Guidance, ch. 5); certificates count "
       "only with the Scope 2 Quality Criteria's attributes, and own-PV certificates sold are "
       "not claimed again",
    3: "emission factors are chosen by use (the industry electricity factor for suppliers; "
       "natural gas by the gas type of the site's bill), with per-gas results, uncertainty and "
       "data quality ratings",
    4: "scope 2 is the grid meter's import where a site has one (purchased electricity), "
       "hour by hour; the circuits no consumption meter explains are a line of their own "
       "(unmetered); without a grid meter purchased electricity is inferred from the "
       "consumption meters and flagged so",
    5: "the 2025 grid factor follows the site's tariff class (industry or residential; the "
       "average of all sales is never used), and the primary-data share of a grid-metered "
       "site's electricity is the grid meter's own measured share",
}  # fmt: skip


def totals(figures: MonthFigures) -> dict[str, dict[str, float | bool | None]]:
    """What a restatement is judged on, per supplier: totals, quality and flags."""
    out: dict[str, dict[str, float | bool | None]] = {}
    for s in figures.suppliers:
        row: dict[str, float | bool | None] = {
            "location_kgco2e": s.emissions_kgco2e,
            "market_kgco2e": s.market_kgco2e,
            "allocated_kgco2e": s.allocated_kgco2e,
            "allocated_market_kgco2e": s.allocated_market_kgco2e,
            "allocation_share_pct": 100 * (s.allocation or registry_share(s.supplier)).share,
            "completeness_pct": 100 * s.completeness,
            "primary_data_share_pct": 100 * s.primary_data_share,
            "provisional": s.provisional,
            "excluded_kgco2e": s.excluded_kgco2e,
            "purchased_electricity_kwh": s.purchased_electricity_kwh,
        }
        for carrier in sorted(s.consumption):
            unit = CARRIERS[carrier].unit.lower()
            row[f"{carrier}_{unit}"] = s.consumption[carrier]
            row[f"measured_{carrier}_{unit}"] = s.measured[carrier]
            row[f"estimated_{carrier}_{unit}"] = s.estimated[carrier]
        out[s.supplier.id] = row
    return out


def base_year_policy(config: Config) -> list[tuple[str, str]]:
    """The methodology rows of the base year and the recalculation policy (GHG Protocol Scope 3
    Standard, chapter 9: a base year, a recalculation policy and a significance threshold)."""
    j = config.jobs
    base = (f"Base year {j.base_year}: later years are reported against it." if j.base_year
            else "No base year declared ([jobs] base_year).")  # fmt: skip
    text = (
        f"{base} Recalculation policy: the base year and every reported year are "
        "recalculated when a structural change (a supplier or site added or removed, an "
        "outsourcing or insourcing), a change of calculation method or emission factor, or a "
        "discovered error moves the base year's emissions by more than "
        f"{j.recalculation_threshold_pct:g}%. Below that threshold, corrections restate only "
        f"the affected months (new export versions beyond {j.restate_threshold_pct:g}%, each "
        "with its reasons)."
    )
    return [("Base year and recalculation", text)]


def _paths(directory: Path, month: Month) -> list[Path]:
    """The version's files: the four CSVs, XLSX, chart, manifest, then the quality,
    reconciliation (where bills were reconciled) and boundary CSVs that were written."""
    extra = [directory / f"scope3-{month}-{name}.csv" for name in OPTIONAL_NAMES]
    return [
        *(directory / f"scope3-{month}-{name}.csv" for name in NAMES),
        directory / f"scope3-{month}.xlsx",
        directory / f"scope3-{month}-chart.png",
        directory / "manifest.json",
        *(p for p in extra if p.exists()),
    ]


def pathway_tco2e(config: Config, month: Month) -> float | None:
    """The reduction pathway's monthly tCO2e for ``month``: base × (1 − r)^(years since base)."""
    g = config.grafana
    if g.pathway_base_tco2e is None:
        return None
    years = month.year + (month.month - 1) / 12 - g.pathway_base_year
    return g.pathway_base_tco2e * (1 - g.pathway_pct_per_year / 100) ** max(0.0, years)


HourlyTables = Iterator[tuple[str, str, str, list[list[str]]]]
"""(supplier, site, meter, rows of :data:`HOURLY_COLUMNS`), one meter at a time."""


def write_hourly(directory: Path, hourly: HourlyTables) -> None:
    """Every meter's hours of the month as its own CSV: the hours behind each Detail figure,
    without database access (``hourly/<supplier>/<site>/<meter>.csv``)."""
    for supplier, site, meter, rows in hourly:
        folder = directory / supplier / site
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv(folder / f"{meter}.csv", HOURLY_COLUMNS, rows)


def publish_month(
    config: Config, figures: MonthFigures, out_dir: Path, inputs_digest: str,
    reasons: list[str] | None = None,
    history: Callable[[], dict[Month, dict[str, float]]] | None = None,
    hourly: Callable[[], HourlyTables] | None = None,
    reviews: list[tuple[str, str]] | None = None,
) -> ExportResult:  # fmt: skip
    """Write the computed month as a new version if it is new or restated (the policy of
    :mod:`.versions`), else name the version that stands. ``reasons``: what the jobs recorded
    as changed inputs (late data, meter events, factors), into the diff and the manifest;
    ``history``: tCO2e by supplier of the months before (the chart); ``hourly``: the meters'
    hourly tables (written up to ``[jobs] hourly_csv_max_meters``); ``reviews``: the
    suppliers' confirmations and disputes of the month, as Methodology rows."""
    month = figures.month
    month_dir = out_dir / str(month)
    latest = latest_manifest(month_dir)
    new_totals = totals(figures)
    why = list(reasons or [])
    diff_rows: list[list[str]] = []
    if latest is not None:
        diff_rows = differences(latest["totals"], new_totals, config.jobs.restate_threshold_pct)
        if "inputs_digest" not in latest:  # written before quality and inputs were recorded
            why.append("export upgraded: measured/estimated energy, primary-data share and "
                       "input fingerprints added")  # fmt: skip
        elif latest["inputs_digest"] != inputs_digest:
            why.append("allocation, certificate, bill or review inputs changed for the month")
        method = latest.get("method", 1)
        why += [f"methodology changed: {METHOD_CHANGES[m]}" for m in range(method + 1, METHOD + 1)]
        if not diff_rows and latest.get("inputs_digest") == inputs_digest and method == METHOD:
            directory = month_dir / f"v{latest['version']}"
            return ExportResult(
                month, figures.suppliers, figures.sites, figures.meters, figures.factors,
                latest["version"], False, directory, _paths(directory, month),
                reasons=tuple(why), figures=figures, totals=latest["totals"],
            )  # fmt: skip
    sheets = tables(figures)
    past = history() if history else {}
    past[month] = {s.supplier.id: s.emissions_kgco2e / 1000 for s in figures.suppliers}

    def build(staging: Path, version: int) -> None:
        from processing.accounting.report import write_chart, write_xlsx

        paths = _paths(staging, month)
        for name, (columns, rows) in sheets.items():  # reconciliation too, when bills exist
            _write_csv(staging / f"scope3-{month}-{name}.csv", columns, rows)
        write_chart(paths[5], month, past, [s.id for s in config.registry.suppliers])
        if hourly and len(config.registry.meters()) <= config.jobs.hourly_csv_max_meters:
            write_hourly(staging / "hourly", hourly())
        write_xlsx(paths[4], figures, sheets, paths[5], version, diff_rows, why,
                   base_year_policy(config) + list(reviews or []),
                   version_rows(month_dir, diff_rows, why))  # fmt: skip

    manifest = {
        "month": str(month),
        "totals": new_totals,
        "factor_ids": [f.id for f in figures.factors],
        "allocations_file": str(config.jobs.allocations_file or ""),
        "certificates_file": str(config.jobs.certificates_file or ""),
        "inputs_digest": inputs_digest,
        "method": METHOD,
    }
    done = publish(month_dir, manifest, build, diff_rows, why)
    return ExportResult(
        month, figures.suppliers, figures.sites, figures.meters, figures.factors, done.version,
        True, done.directory, _paths(done.directory, month), done.diff_path, tuple(why),
        figures, new_totals,
    )  # fmt: skip
