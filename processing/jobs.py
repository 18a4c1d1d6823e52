"""Job runners: the I/O around the pure calculations, and the scheduler that runs them.

* :func:`run_rollup` — readings → ``hourly_consumption`` and ``hourly_emissions``. Rollup
  points are keyed by meter tags + hour, so recomputing a window overwrites the same points:
  re-running any job never double-counts.
* :func:`run_scheduler` — APScheduler: the rollup every ``jobs.rollup_every_min`` over the
  trailing ``jobs.trailing_window_h`` (absorbing late and store-and-forward data), and the
  previous month's export on the 1st of each month at 06:00 Asia/Taipei.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from influxdb_client import Point, WritePrecision

from processing.emissions import EmissionRecord, FactorLibrary, emissions_for
from processing.rollup import HOUR_NS, HourlyConsumption, RegisterSeries, hourly_consumption
from supplymeter import schema
from supplymeter.config import CARRIER_REGISTER_FIELD, Config
from supplymeter.influx import InfluxClient, quote_ident, quote_literal

log = logging.getLogger(__name__)

MAX_GAP_INTERVALS = 2
"""Readings more than this many nominal intervals apart leave the hours between estimated."""


@dataclass
class RollupReport:
    meters: int = 0
    hours: int = 0
    estimated_hours: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    meters_without_data: list[str] = field(default_factory=list)


def _meter_hour(measurement: str, hour: HourlyConsumption) -> Point:
    """A point for one meter-hour: the meter's tags, at the start of its UTC hour."""
    return (
        Point(measurement)
        .tag("supplier", hour.supplier)
        .tag("site", hour.site)
        .tag("meter", hour.meter)
        .tag("carrier", hour.carrier)
        .time(hour.hour_start_ns, WritePrecision.NS)
    )


def consumption_line(hour: HourlyConsumption) -> str:
    """An hourly rollup as line protocol."""
    return (
        _meter_hour(schema.HOURLY_CONSUMPTION, hour)
        .field(CARRIER_REGISTER_FIELD[hour.carrier], float(hour.consumption))
        .field("coverage", float(hour.coverage))
        .field("estimated", hour.estimated)
        .field("flags", ",".join(hour.flags))
        .field("readings", int(hour.readings))
        .to_line_protocol()
    )


def export_lines(series: RegisterSeries, start_ns: int, end_ns: int, max_gap_ns: int) -> list[str]:
    """A grid meter's export register as hourly ``energy_export_kwh``, a field of the same
    ``hourly_consumption`` point as its import (InfluxDB merges fields of one point)."""
    return [
        _meter_hour(schema.HOURLY_CONSUMPTION, hour)
        .field("energy_export_kwh", float(hour.consumption))
        .to_line_protocol()
        for hour in hourly_consumption(series, start_ns, end_ns, max_gap_ns)
    ]


def emissions_line(record: EmissionRecord) -> str:
    """Emissions of a meter-hour as line protocol, tagged with the factor used."""
    return (
        _meter_hour(schema.HOURLY_EMISSIONS, record.hour)
        .tag("factor_id", record.factor.id)
        .field("emissions_kgco2e", float(record.emissions_kgco2e))
        .field("factor_value", float(record.factor.value))
        .field("provisional", record.provisional)
        .to_line_protocol()
    )


def fetch_registers(
    client: InfluxClient, supplier: str, start_ns: int, end_ns: int
) -> dict[tuple[str, str], list[tuple[int, float | None, float | None]]]:
    """Register readings of a supplier's meters in [start, end]: {(site, meter): rows}."""
    q = (
        f"SELECT {quote_ident('energy_kwh')}, {quote_ident('volume_m3')}, "
        f"{quote_ident('energy_export_kwh')} "
        f"FROM {quote_ident(schema.READING)} WHERE supplier = {quote_literal(supplier)} "
        f"AND time >= {start_ns} AND time <= {end_ns} GROUP BY site, meter"
    )
    return {
        (s.tags["site"], s.tags["meter"]): [tuple(row) for row in s.values]  # type: ignore[misc]
        for s in client.query(q)
    }


def run_rollup(
    config: Config,
    client: InfluxClient,
    start_ns: int,
    end_ns: int,
    library: FactorLibrary,
    progress: Callable[[str], None] | None = None,
) -> RollupReport:
    """Recompute hourly consumption and emissions for every meter, hours in [start, end)."""
    start_ns -= start_ns % HOUR_NS
    look = config.jobs.lookaround_h * HOUR_NS
    report = RollupReport()
    for supplier in config.registry.suppliers:
        rows_by_meter = fetch_registers(client, supplier.id, start_ns - look, end_ns + look)
        lines: list[str] = []
        for site in supplier.sites:
            for meter in site.meters:
                ref = config.registry.meter(supplier.id, site.id, meter.id)
                assert ref is not None
                column = 1 if ref.register_field == "energy_kwh" else 2
                rows = rows_by_meter.get((site.id, meter.id), [])
                points = [(r[0], r[column]) for r in rows if r[column] is not None]
                series = RegisterSeries.from_points(ref, points)  # type: ignore[arg-type]
                hours = hourly_consumption(
                    series, start_ns, end_ns, MAX_GAP_INTERVALS * meter.interval_s * 10**9
                )
                report.meters += 1
                if not hours:
                    report.meters_without_data.append("/".join(ref.key))
                if meter.role == "grid":
                    exported = [(r[0], r[3]) for r in rows if r[3] is not None]
                    lines += export_lines(
                        RegisterSeries.from_points(ref, exported),  # type: ignore[arg-type]
                        start_ns, end_ns, MAX_GAP_INTERVALS * meter.interval_s * 10**9,
                    )  # fmt: skip
                for hour in hours:
                    lines.append(consumption_line(hour))
                    report.hours += 1
                    report.estimated_hours += hour.estimated
                    report.flags.update(hour.flags)
                    # PV generation and grid import are not the plant's consumption.
                    if meter.role != "consumption":
                        continue
                    record = emissions_for(hour, ref, library)
                    if record is not None:
                        lines.append(emissions_line(record))
        for i in range(0, len(lines), 5000):
            client.write_lines(lines[i : i + 5000])
        if progress:
            progress(f"rolled up {supplier.id}")
    return report


def run_scheduler(config: Config) -> None:  # pragma: no cover - runs until interrupted
    """Run the rollup and monthly export on schedule until interrupted (Ctrl-C / SIGTERM)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    from processing.export import export_month, previous_month

    library = FactorLibrary.load()
    client = InfluxClient.from_settings(config.influxdb, config.secrets)

    def rollup_job() -> None:
        now = time.time_ns()
        end = now - now % HOUR_NS + HOUR_NS  # include the running hour as far as it goes
        report = run_rollup(
            config, client, end - config.jobs.trailing_window_h * HOUR_NS, end, library
        )
        log.info(
            "rollup: %d meters, %d hours, flags %s", report.meters, report.hours, dict(report.flags)
        )

    def export_job() -> None:
        month = previous_month(time.time_ns(), "Asia/Taipei")
        result = export_month(
            config, client, month, config.resolve(config.jobs.export_dir), library
        )
        log.info("exported %s: %s", month, ", ".join(str(p) for p in result.paths))

    scheduler = BlockingScheduler(timezone="Asia/Taipei")
    scheduler.add_job(
        rollup_job,
        "interval",
        minutes=config.jobs.rollup_every_min,
        id="rollup",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        export_job, "cron", day=1, hour=6, id="export", max_instances=1, coalesce=True
    )
    rollup_job()
    scheduler.start()
