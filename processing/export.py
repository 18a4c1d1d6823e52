"""The monthly scope-3 export: files an auditor can follow back to meters, factors and methods.

``supplymeter export --month YYYY-MM`` computes the month from the hourly rollups (run the
rollup first; months are calendar months in each site's timezone) and writes a *version*::

    <export_dir>/YYYY-MM/v1/scope3-YYYY-MM-suppliers.csv   per supplier: consumption by carrier,
                                                          location- and market-based kgCO2e,
                                                          allocation method/inputs/share, the
                                                          buyer's allocated kgCO2e, completeness,
                                                          estimated share, provisional flag
                            scope3-YYYY-MM-sites.csv       electricity, PV self-consumption,
                                                          certificates, market-based, per site
                            scope3-YYYY-MM-meters.csv      per meter and carrier, with register
                                                          corrections and the factor ids used
                            scope3-YYYY-MM-factors.csv     every factor used, with its source
                            scope3-YYYY-MM.xlsx            all of the above + methodology sheet
                                                          + chart
                            scope3-YYYY-MM-chart.png       tCO2e by supplier, this and the
                                                          previous 12 months
                            manifest.json                  totals, flags, inputs of this version

Restatement: re-running a month compares its totals with the latest version. If a supplier's
location-based, market-based or allocated total moved by more than
``[jobs] restate_threshold_pct`` (default 0.1%), or a provisional flag changed (a year's factor
was published), a new version ``vN+1`` is written with ``diff-vN.csv`` beside it; earlier
versions are never touched. Otherwise nothing is written and the latest version stands.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from processing.emissions import EmissionFactor, FactorLibrary
from processing.rollup import HourlyConsumption
from processing.scope3 import (
    AllocationShare,
    Certificates,
    MeterMonth,
    Month,
    SiteMonth,
    SupplierMonth,
    load_allocations,
    load_certificates,
    meter_month,
    registry_share,
    site_month,
    supplier_month,
)
from supplymeter import schema
from supplymeter.config import CARRIER_REGISTER_FIELD, CARRIER_UNIT, Config, MeterRef
from supplymeter.influx import InfluxClient, quote_ident, quote_literal
from supplymeter.records import ns_to_datetime

NAMES = ("suppliers", "sites", "meters", "factors")


@dataclass(frozen=True)
class ExportResult:
    month: Month
    suppliers: list[SupplierMonth]
    sites: list[SiteMonth]
    meters: list[MeterMonth]
    factors: list[EmissionFactor]
    version: int
    written: bool
    """False when the month's totals matched the latest version: nothing new was written."""
    directory: Path
    paths: list[Path]
    """The version's files: suppliers, sites, meters, factors CSVs, XLSX, chart, manifest."""
    diff_path: Path | None = None


def previous_month(now_ns: int, tz: str) -> Month:
    """The last complete calendar month in ``tz`` at ``now_ns``."""
    local = ns_to_datetime(now_ns).astimezone(ZoneInfo(tz))
    return Month(local.year, local.month).previous()


def fetch_hours(
    client: InfluxClient, ref: MeterRef, start_ns: int, end_ns: int
) -> tuple[dict[str, list[HourlyConsumption]], dict[str, float]]:
    """Hourly rollups of one site's meters in [start, end): ({meter id: hours},
    {grid meter id: exported kWh over the range})."""
    q = (
        f"SELECT * FROM {quote_ident(schema.HOURLY_CONSUMPTION)} "
        f"WHERE supplier = {quote_literal(ref.supplier.id)} "
        f"AND site = {quote_literal(ref.site.id)} "
        f"AND time >= {start_ns} AND time < {end_ns} GROUP BY meter"
    )
    out: dict[str, list[HourlyConsumption]] = {}
    exported: dict[str, float] = {}
    for series in client.query(q):
        meter = series.tags["meter"]
        hours = out.setdefault(meter, [])
        for row in series.rows():
            if row.get("energy_export_kwh") is not None:
                exported[meter] = exported.get(meter, 0.0) + float(row["energy_export_kwh"])
            carrier = row["carrier"]
            value = row.get(CARRIER_REGISTER_FIELD[carrier])
            if value is None:
                continue
            hours.append(
                HourlyConsumption(
                    supplier=ref.supplier.id,
                    site=ref.site.id,
                    meter=meter,
                    carrier=carrier,
                    unit=CARRIER_UNIT[carrier],
                    hour_start_ns=int(row["time"]),
                    consumption=float(value),
                    coverage=float(row["coverage"]),
                    readings=int(row["readings"] or 0),
                    flags=tuple(f for f in (row["flags"] or "").split(",") if f),
                )
            )
    return out, exported


# --- computing a month --------------------------------------------------------------------


@dataclass(frozen=True)
class MonthFigures:
    month: Month
    suppliers: list[SupplierMonth]
    sites: list[SiteMonth]
    meters: list[MeterMonth]
    factors: list[EmissionFactor]


def compute_month(
    config: Config, client: InfluxClient, month: Month, library: FactorLibrary
) -> MonthFigures:
    """Every supplier's month from the hourly rollups, with allocation and market-based."""
    allocations: dict[tuple[str, Month], AllocationShare] = {}
    if config.jobs.allocations_file is not None:
        allocations = load_allocations(config.resolve(config.jobs.allocations_file))
    certificates: dict[tuple[str, str, Month], Certificates] = {}
    if config.jobs.certificates_file is not None:
        certificates = load_certificates(config.resolve(config.jobs.certificates_file))
    meters: list[MeterMonth] = []
    sites: list[SiteMonth] = []
    suppliers: list[SupplierMonth] = []
    for supplier in config.registry.suppliers:
        supplier_meters: list[MeterMonth] = []
        supplier_sites: list[SiteMonth] = []
        for site in supplier.sites:
            first = config.registry.meter(supplier.id, site.id, site.meters[0].id)
            assert first is not None
            start, end = month.bounds(first.tz)
            hours, exported = fetch_hours(client, first, start, end)
            site_meters: list[MeterMonth] = []
            pv: float | None = None
            grid_export: float | None = None
            for meter in site.meters:
                found = hours.get(meter.id, [])
                if meter.role == "pv":
                    pv = (pv or 0.0) + math.fsum(h.consumption for h in found)
                    continue
                if meter.role == "grid":
                    grid_export = (grid_export or 0.0) + exported.get(meter.id, 0.0)
                    continue
                ref = config.registry.meter(supplier.id, site.id, meter.id)
                assert ref is not None
                site_meters.append(meter_month(ref, month, found, library))
            certs = certificates.get((supplier.id, site.id, month))
            sm = site_month(supplier.id, site.id, month, site_meters, pv, grid_export, certs)
            supplier_sites.append(sm)
            supplier_meters += site_meters
        share = allocations.get((supplier.id, month)) or registry_share(supplier)
        suppliers.append(supplier_month(supplier, month, supplier_meters, supplier_sites, share))
        meters += supplier_meters
        sites += supplier_sites
    used = {fid for m in meters for fid in m.factor_ids}
    factors = [f for f in library.factors if f.id in used]
    return MonthFigures(month, suppliers, sites, meters, factors)


# --- rows -----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


SUPPLIER_COLUMNS = (
    "month", "supplier", "supplier_name", "kind", "electricity_kwh", "natural_gas_m3",
    "water_m3", "emissions_kgco2e", "market_kgco2e", "allocation_method", "allocation_share",
    "allocation_numerator", "allocation_denominator", "allocation_unit", "allocation_basis",
    "allocation_source", "allocated_kgco2e", "allocated_market_kgco2e", "completeness_pct",
    "estimated_pct", "provisional", "carriers_without_factor", "register_corrections",
)  # fmt: skip
SITE_COLUMNS = (
    "month", "supplier", "site", "electricity_kwh", "pv_generation_kwh", "grid_export_kwh",
    "pv_self_consumption_kwh", "certificates_kwh", "certificate_ids", "certificate_issuer",
    "unused_certificates_kwh", "market_kwh", "location_kgco2e", "market_kgco2e", "note",
)  # fmt: skip
METER_COLUMNS = (
    "month", "supplier", "site", "meter", "timezone", "carrier", "unit", "consumption",
    "hours_expected", "hours_with_data", "completeness_pct", "estimated_hours", "rollovers",
    "resets", "glitches", "implausible", "factor_ids", "provisional", "emissions_kgco2e",
    "allocation_share", "allocated_kgco2e",
)  # fmt: skip
FACTOR_COLUMNS = (
    "id", "carrier", "region", "year", "period", "value", "unit", "basis", "publisher", "title",
    "url", "retrieved", "note",
)  # fmt: skip


def supplier_row(s: SupplierMonth) -> list[str]:
    a = s.allocation or registry_share(s.supplier)
    return [
        str(s.month), s.supplier.id, s.supplier.name, s.supplier.kind,
        _fmt(s.consumption.get("electricity", 0.0)), _fmt(s.consumption.get("natural_gas", 0.0)),
        _fmt(s.consumption.get("water", 0.0)), _fmt(s.emissions_kgco2e), _fmt(s.market_kgco2e),
        a.method, f"{a.share:.6g}", _fmt(a.numerator, 6), _fmt(a.denominator, 6), a.unit,
        a.basis, a.source, _fmt(s.allocated_kgco2e), _fmt(s.allocated_market_kgco2e),
        _fmt(100 * s.completeness, 2), _fmt(100 * s.estimated_share, 2),
        str(s.provisional).lower(), ";".join(s.carriers_without_factor),
        ";".join(f"{k}={v}" for k, v in sorted(s.flags.items())),
    ]  # fmt: skip


def site_row(s: SiteMonth) -> list[str]:
    c = s.certificates
    return [
        str(s.month), s.supplier, s.site, _fmt(s.electricity_kwh), _fmt(s.pv_generation_kwh),
        _fmt(s.grid_export_kwh), _fmt(s.pv_self_kwh), _fmt(s.certificates_kwh),
        c.ids if c else "", c.issuer if c else "", _fmt(s.unused_certificates_kwh),
        _fmt(s.market_kwh), _fmt(s.location_kgco2e), _fmt(s.market_kgco2e), s.note,
    ]  # fmt: skip


def meter_row(m: MeterMonth, share: float) -> list[str]:
    ref = m.ref
    allocated = None if m.emissions_kgco2e is None else m.emissions_kgco2e * share
    return [
        str(m.month), ref.supplier.id, ref.site.id, ref.meter.id, ref.site.timezone,
        ref.meter.carrier, ref.unit, _fmt(m.consumption), str(m.hours_expected),
        str(m.hours_with_data), _fmt(100 * m.completeness, 2), str(m.estimated_hours),
        str(m.flags.get("rollover", 0)), str(m.flags.get("reset", 0)),
        str(m.flags.get("glitch", 0)), str(m.flags.get("implausible", 0)),
        ";".join(m.factor_ids), str(m.provisional).lower(), _fmt(m.emissions_kgco2e),
        f"{share:.6g}", _fmt(allocated),
    ]  # fmt: skip


def factor_row(f: EmissionFactor) -> list[str]:
    return [f.id, f.carrier, f.region, str(f.year), f.period, f"{f.value:g}", f.unit, f.basis,
            f.publisher, f.title, f.url, f.retrieved, f.note]  # fmt: skip


def tables(figures: MonthFigures) -> dict[str, tuple[tuple[str, ...], list[list[str]]]]:
    shares = {s.supplier.id: (s.allocation or registry_share(s.supplier)).share
              for s in figures.suppliers}  # fmt: skip
    return {
        "suppliers": (SUPPLIER_COLUMNS, [supplier_row(s) for s in figures.suppliers]),
        "sites": (SITE_COLUMNS, [site_row(s) for s in figures.sites]),
        "meters": (METER_COLUMNS,
                   [meter_row(m, shares[m.ref.supplier.id]) for m in figures.meters]),
        "factors": (FACTOR_COLUMNS, [factor_row(f) for f in figures.factors]),
    }  # fmt: skip


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


# --- versions -------------------------------------------------------------------------------


def totals(figures: MonthFigures) -> dict[str, dict[str, float | bool | None]]:
    """What a restatement is judged on, per supplier."""
    return {
        s.supplier.id: {
            "location_kgco2e": s.emissions_kgco2e,
            "market_kgco2e": s.market_kgco2e,
            "allocated_kgco2e": s.allocated_kgco2e,
            "allocated_market_kgco2e": s.allocated_market_kgco2e,
            "provisional": s.provisional,
        }
        for s in figures.suppliers
    }


def versions(month_dir: Path) -> list[int]:
    """Version numbers written for a month, ascending."""
    if not month_dir.is_dir():
        return []
    found = []
    for child in month_dir.iterdir():
        versioned = child.name.startswith("v") and child.name[1:].isdigit()
        if versioned and (child / "manifest.json").exists():
            found.append(int(child.name[1:]))
    return sorted(found)


def differences(
    old: dict[str, dict], new: dict[str, dict], threshold_pct: float
) -> list[list[str]]:
    """Rows ``supplier, metric, previous, new, change, change_pct`` for every total that moved
    by more than ``threshold_pct`` percent, and every provisional flag that changed."""
    rows = []
    for supplier in sorted(set(old) | set(new)):
        before, after = old.get(supplier, {}), new.get(supplier, {})
        for metric in sorted(set(before) | set(after)):
            a, b = before.get(metric), after.get(metric)
            if metric == "provisional":
                if a != b:
                    rows.append([supplier, metric, str(a), str(b), "", ""])
                continue
            if a is None or b is None:
                if a != b:
                    rows.append([supplier, metric, _fmt(a), _fmt(b), "", ""])
                continue
            change = b - a
            pct = 100 * change / a if a else (math.inf if change else 0.0)
            if abs(pct) > threshold_pct:
                rows.append([supplier, metric, _fmt(a), _fmt(b), _fmt(change), _fmt(pct, 4)])
    return rows


def export_month(
    config: Config,
    client: InfluxClient,
    month: Month,
    out_dir: Path,
    library: FactorLibrary,
    history: dict[Month, dict[str, float]] | None = None,
) -> ExportResult:
    """Compute ``month`` and write it as a new version if it is new or restated.

    ``history`` (tCO2e by supplier for earlier months) feeds the chart; by default it is read
    from the ``hourly_emissions`` rollups.
    """
    figures = compute_month(config, client, month, library)
    client.write_lines(monthly_lines(config, figures))
    month_dir = out_dir / str(month)
    existing = versions(month_dir)
    new_totals = totals(figures)
    diff_rows: list[list[str]] = []
    if existing:
        latest = existing[-1]
        manifest = json.loads((month_dir / f"v{latest}" / "manifest.json").read_text())
        diff_rows = differences(manifest["totals"], new_totals, config.jobs.restate_threshold_pct)
        if not diff_rows:
            return ExportResult(
                month, figures.suppliers, figures.sites, figures.meters, figures.factors,
                latest, False, month_dir / f"v{latest}",
                _paths(month_dir / f"v{latest}", month),
            )  # fmt: skip
    version = (existing[-1] + 1) if existing else 1
    target = month_dir / f"v{version}"
    staging = month_dir / f".v{version}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    paths = _paths(staging, month)
    sheets = tables(figures)
    for name, (columns, rows) in sheets.items():
        _write_csv(staging / f"scope3-{month}-{name}.csv", columns, rows)
    if history is None:
        history = monthly_history(config, client, month, 12)
    chart_data = dict(history)
    chart_data[month] = {s.supplier.id: s.emissions_kgco2e / 1000 for s in figures.suppliers}
    from processing.report import write_chart, write_xlsx

    write_chart(paths[5], month, chart_data, [s.id for s in config.registry.suppliers])
    write_xlsx(paths[4], figures, sheets, paths[5], version, diff_rows)
    (staging / "manifest.json").write_text(
        json.dumps(
            {
                "month": str(month),
                "version": version,
                "written_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "restates": existing[-1] if existing else None,
                "totals": new_totals,
                "factor_ids": [f.id for f in figures.factors],
                "allocations_file": str(config.jobs.allocations_file or ""),
                "certificates_file": str(config.jobs.certificates_file or ""),
            },
            indent=2,
            sort_keys=True,
        )
    )
    diff_path = None
    if existing:
        diff_path = staging / f"diff-v{existing[-1]}.csv"
        _write_csv(diff_path, ("supplier", "metric", "previous", "new", "change", "change_pct"),
                   diff_rows)  # fmt: skip
    staging.rename(target)  # a version appears whole or not at all
    final = _paths(target, month)
    return ExportResult(
        month, figures.suppliers, figures.sites, figures.meters, figures.factors, version, True,
        target, final, target / diff_path.name if diff_path else None,
    )  # fmt: skip


def _paths(directory: Path, month: Month) -> list[Path]:
    return [
        *(directory / f"scope3-{month}-{name}.csv" for name in NAMES),
        directory / f"scope3-{month}.xlsx",
        directory / f"scope3-{month}-chart.png",
        directory / "manifest.json",
    ]


def monthly_history(
    config: Config, client: InfluxClient, month: Month, months: int
) -> dict[Month, dict[str, float]]:
    """Location-based tCO2e by supplier for the ``months`` months before ``month``, summed by
    InfluxDB from the hourly emissions (one aggregate query per month)."""
    tz = ZoneInfo(config.jobs.timezone)
    out: dict[Month, dict[str, float]] = {}
    current = month
    for _ in range(months):
        current = current.previous()
        start, end = current.bounds(tz)
        q = (
            f"SELECT sum(emissions_kgco2e) FROM {quote_ident(schema.HOURLY_EMISSIONS)} "
            f"WHERE time >= {start} AND time < {end} GROUP BY supplier"
        )
        out[current] = {
            s.tags["supplier"]: float(s.values[0][1] or 0.0) / 1000 for s in client.query(q)
        }
    return out


def pathway_tco2e(config: Config, month: Month) -> float | None:
    """The reduction pathway's monthly tCO2e for ``month``: base × (1 − r)^(years since base)."""
    g = config.grafana
    if g.pathway_base_tco2e is None:
        return None
    years = month.year + (month.month - 1) / 12 - g.pathway_base_year
    return g.pathway_base_tco2e * (1 - g.pathway_pct_per_year / 100) ** max(0.0, years)


def monthly_lines(config: Config, figures: MonthFigures) -> list[str]:
    """The month's supplier totals (and the pathway) for dashboards, at the month's first
    instant in ``[jobs] timezone``; recomputing a month overwrites them."""
    from influxdb_client import Point, WritePrecision

    start, _ = figures.month.bounds(ZoneInfo(config.jobs.timezone))
    lines = []
    for s in figures.suppliers:
        point = (
            Point(schema.SCOPE3_MONTHLY).tag("supplier", s.supplier.id)
            .field("location_kgco2e", float(s.emissions_kgco2e))
            .field("allocated_kgco2e", float(s.allocated_kgco2e))
            .field("share", float((s.allocation or registry_share(s.supplier)).share))
            .field("completeness", float(s.completeness))
            .field("provisional", s.provisional)
            .time(start, WritePrecision.NS)
        )  # fmt: skip
        if s.market_kgco2e is not None:
            point = point.field("market_kgco2e", float(s.market_kgco2e))
            point = point.field("allocated_market_kgco2e", float(s.allocated_market_kgco2e or 0))
        lines.append(point.to_line_protocol())
    target = pathway_tco2e(config, figures.month)
    if target is not None:
        lines.append(Point(schema.SCOPE3_PATHWAY).field("tco2e", target)
                     .time(start, WritePrecision.NS).to_line_protocol())  # fmt: skip
    return lines
