"""The monthly scope-3 export: CSV files an auditor can follow back to meters and factors.

``supplymeter export --month YYYY-MM --out DIR`` writes three files:

* ``scope3-YYYY-MM-suppliers.csv`` — per supplier: consumption by carrier, location-based
  kgCO2e, allocation method/share/basis, the buyer's allocated kgCO2e, completeness,
  provisional flag, carriers that have no factor yet;
* ``scope3-YYYY-MM-meters.csv`` — the same per meter, with hours expected/with data,
  estimated hours, register corrections (rollover/reset counts) and the factor ids used;
* ``scope3-YYYY-MM-factors.csv`` — every factor used, with its value, unit, publisher,
  title, URL and notes.

Everything is read from the ``hourly_consumption`` rollups (run the rollup first); months are
calendar months in each site's timezone.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from processing.emissions import EmissionFactor, FactorLibrary
from processing.rollup import HourlyConsumption
from processing.scope3 import MeterMonth, Month, SupplierMonth, meter_month, supplier_month
from supplymeter import schema
from supplymeter.config import CARRIER_REGISTER_FIELD, CARRIER_UNIT, Config, MeterRef
from supplymeter.influx import InfluxClient, quote_ident, quote_literal
from supplymeter.records import ns_to_datetime


@dataclass(frozen=True)
class ExportResult:
    month: Month
    suppliers: list[SupplierMonth]
    meters: list[MeterMonth]
    paths: list[Path]


def previous_month(now_ns: int, tz: str) -> Month:
    """The last complete calendar month in ``tz`` at ``now_ns``."""
    local = ns_to_datetime(now_ns).astimezone(ZoneInfo(tz))
    if local.month == 1:
        return Month(local.year - 1, 12)
    return Month(local.year, local.month - 1)


def fetch_hours(
    client: InfluxClient, ref: MeterRef, start_ns: int, end_ns: int
) -> dict[str, list[HourlyConsumption]]:
    """Hourly rollups of one site's meters in [start, end): {meter id: hours}."""
    q = (
        f"SELECT * FROM {quote_ident(schema.HOURLY_CONSUMPTION)} "
        f"WHERE supplier = {quote_literal(ref.supplier.id)} "
        f"AND site = {quote_literal(ref.site.id)} "
        f"AND time >= {start_ns} AND time < {end_ns} GROUP BY meter"
    )
    out: dict[str, list[HourlyConsumption]] = {}
    for series in client.query(q):
        meter = series.tags["meter"]
        hours = out.setdefault(meter, [])
        for row in series.rows():
            carrier = row["carrier"]
            hours.append(
                HourlyConsumption(
                    supplier=ref.supplier.id,
                    site=ref.site.id,
                    meter=meter,
                    carrier=carrier,
                    unit=CARRIER_UNIT[carrier],
                    hour_start_ns=int(row["time"]),
                    consumption=float(row[CARRIER_REGISTER_FIELD[carrier]]),
                    coverage=float(row["coverage"]),
                    readings=int(row["readings"] or 0),
                    flags=tuple(f for f in (row["flags"] or "").split(",") if f),
                )
            )
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


SUPPLIER_COLUMNS = (
    "month", "supplier", "supplier_name", "kind", "electricity_kwh", "natural_gas_m3",
    "water_m3", "emissions_kgco2e", "method", "allocation_method", "allocation_share",
    "allocation_basis", "allocated_kgco2e", "completeness_pct", "provisional",
    "carriers_without_factor",
)  # fmt: skip
METER_COLUMNS = (
    "month", "supplier", "site", "meter", "timezone", "carrier", "unit", "consumption",
    "hours_expected", "hours_with_data", "completeness_pct", "estimated_hours", "rollovers",
    "resets", "factor_ids", "provisional", "emissions_kgco2e", "allocation_share",
    "allocated_kgco2e",
)  # fmt: skip
FACTOR_COLUMNS = (
    "id", "carrier", "region", "year", "value", "unit", "basis", "publisher", "title", "url",
    "retrieved", "note",
)  # fmt: skip


def supplier_row(s: SupplierMonth) -> list[str]:
    a = s.supplier.allocation
    return [
        str(s.month), s.supplier.id, s.supplier.name, s.supplier.kind,
        _fmt(s.consumption.get("electricity", 0.0)), _fmt(s.consumption.get("natural_gas", 0.0)),
        _fmt(s.consumption.get("water", 0.0)), _fmt(s.emissions_kgco2e),
        "location-based", a.method, f"{a.share:g}", a.basis, _fmt(s.allocated_kgco2e),
        _fmt(100 * s.completeness, 2), str(s.provisional).lower(),
        ";".join(s.carriers_without_factor),
    ]  # fmt: skip


def meter_row(m: MeterMonth) -> list[str]:
    ref = m.ref
    return [
        str(m.month), ref.supplier.id, ref.site.id, ref.meter.id, ref.site.timezone,
        ref.meter.carrier, ref.unit, _fmt(m.consumption), str(m.hours_expected),
        str(m.hours_with_data), _fmt(100 * m.completeness, 2), str(m.estimated_hours),
        str(m.flags.get("rollover", 0)), str(m.flags.get("reset", 0)), ";".join(m.factor_ids),
        str(m.provisional).lower(), _fmt(m.emissions_kgco2e),
        f"{ref.supplier.allocation.share:g}", _fmt(m.allocated_kgco2e),
    ]  # fmt: skip


def factor_row(f: EmissionFactor) -> list[str]:
    return [f.id, f.carrier, f.region, str(f.year), f"{f.value:g}", f.unit, f.basis,
            f.publisher, f.title, f.url, f.retrieved, f.note]  # fmt: skip


def _write(path: Path, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def export_month(
    config: Config, client: InfluxClient, month: Month, out_dir: Path, library: FactorLibrary
) -> ExportResult:
    """Compute ``month`` for every supplier from the rollups and write the three CSVs."""
    meters: list[MeterMonth] = []
    suppliers: list[SupplierMonth] = []
    for supplier in config.registry.suppliers:
        supplier_meters: list[MeterMonth] = []
        for site in supplier.sites:
            first = config.registry.meter(supplier.id, site.id, site.meters[0].id)
            assert first is not None
            start, end = month.bounds(first.tz)
            hours = fetch_hours(client, first, start, end)
            for meter in site.meters:
                if meter.role != "consumption":
                    continue  # PV and grid meters are not the plant's consumption
                ref = config.registry.meter(supplier.id, site.id, meter.id)
                assert ref is not None
                supplier_meters.append(meter_month(ref, month, hours.get(meter.id, []), library))
        suppliers.append(supplier_month(supplier, month, supplier_meters))
        meters += supplier_meters
    used = {fid for m in meters for fid in m.factor_ids}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"scope3-{month}-{name}.csv" for name in ("suppliers", "meters", "factors")]
    _write(paths[0], SUPPLIER_COLUMNS, [supplier_row(s) for s in suppliers])
    _write(paths[1], METER_COLUMNS, [meter_row(m) for m in meters])
    _write(paths[2], FACTOR_COLUMNS, [factor_row(f) for f in library.factors if f.id in used])
    return ExportResult(month, suppliers, meters, paths)
