"""Job runners: the I/O around the pure calculations, and the scheduler that runs them.

* :func:`run_rollup` — readings → ``hourly_consumption`` and ``hourly_emissions``. Rollup
  points are keyed by meter tags + hour, so recomputing a window overwrites the same points:
  re-running any job never double-counts.
* :func:`run_scheduler` — APScheduler: the rollup every ``jobs.rollup_every_min`` over the
  trailing ``jobs.trailing_window_h`` (absorbing late and store-and-forward data), and the
  previous month's export on the 1st of each month at 06:00 Asia/Taipei.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from influxdb_client import Point, WritePrecision

from processing.emissions import EmissionRecord, FactorLibrary, emissions_for
from processing.rollup import HOUR_NS, HourlyConsumption, RegisterSeries, hourly_consumption
from processing.scope3 import Month
from supplymeter import schema
from supplymeter.config import CARRIER_REGISTER_FIELD, Config
from supplymeter.influx import InfluxClient, quote_ident, quote_literal
from supplymeter.records import ns_to_datetime

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
                max_gap_ns = MAX_GAP_INTERVALS * meter.interval_s * 10**9
                hours = hourly_consumption(series, start_ns, end_ns, max_gap_ns)
                report.meters += 1
                if not hours:
                    report.meters_without_data.append("/".join(ref.key))
                if meter.role == "grid":
                    exported = [(r[0], r[3]) for r in rows if r[3] is not None]
                    lines += export_lines(
                        RegisterSeries.from_points(ref, exported),  # type: ignore[arg-type]
                        start_ns, end_ns, max_gap_ns,
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


# --- scheduled jobs ------------------------------------------------------------------------

JOB_NAMES = ("rollup", "export", "alerts", "dashboards")

MAX_CATCH_UP_H = 31 * 24
"""A rollup after downtime recomputes at most this far back (the export restates the rest)."""


@dataclass
class JobState:
    """When each job last succeeded, kept in a JSON file so a restart can catch up."""

    path: Path
    last_success_ns: dict[str, int] = field(default_factory=dict)
    last_export_month: str | None = None

    @classmethod
    def load(cls, path: Path) -> JobState:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, dict(data.get("last_success_ns", {})), data.get("last_export_month"))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {
            "last_success_ns": self.last_success_ns,
            "last_export_month": self.last_export_month,
        }
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.path)


class Jobs:
    """The job bodies, with the state and clients they share."""

    def __init__(
        self, config: Config, client: InfluxClient, library: FactorLibrary,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:  # fmt: skip
        self.config, self.client, self.library, self.clock = config, client, library, clock
        self.state = JobState.load(config.resolve(config.jobs.export_dir) / "jobs-state.json")
        self._alerts = None

    def dashboards(self) -> str:
        """Push the dashboards (daily: a registry change reaches Grafana within a day)."""
        from dashboards.push import connect, push

        plan = push(self.config, connect(self.config))
        changed = [line for line in plan if not line.endswith("unchanged")]
        return f"{len(plan)} items, {len(changed)} changed" + (f": {changed}" if changed else "")

    def alerts(self) -> str:
        """Detect, update incidents, email (see :mod:`processing.alerts`)."""
        from processing.alerts import AlertRunner

        if self._alerts is None:
            self._alerts = AlertRunner(self.config, self.client)
        summary = self._alerts.run(self.clock())
        self.state.last_success_ns["alerts"] = self.clock()
        self.state.save()
        return summary

    def rollup(self) -> str:
        """Recompute the trailing window — further back after downtime (catch-up)."""
        now = self.clock()
        end = now - now % HOUR_NS + HOUR_NS  # include the running hour as far as it goes
        start = end - self.config.jobs.trailing_window_h * HOUR_NS
        last = self.state.last_success_ns.get("rollup")
        if last is not None:
            start = max(min(start, last - self.config.jobs.trailing_window_h * HOUR_NS),
                        end - MAX_CATCH_UP_H * HOUR_NS)  # fmt: skip
            start -= start % HOUR_NS
        report = run_rollup(self.config, self.client, start, end, self.library)
        self.state.last_success_ns["rollup"] = now
        self.state.save()
        return (f"{report.meters} meters, {report.hours} hours from "
                f"{(end - start) // HOUR_NS} h back, flags {dict(report.flags)}")  # fmt: skip

    def export(self, month: Month | None = None) -> str:
        """Export last month (or ``month``), and restate every earlier exported month whose
        latest version is provisional (a factor may have been published since)."""
        from processing.export import export_month, previous_month, versions

        out = self.config.resolve(self.config.jobs.export_dir)
        target = month or previous_month(self.clock(), self.config.jobs.timezone)
        done = []
        result = export_month(self.config, self.client, target, out, self.library)
        done.append(f"{target} v{result.version}{'' if result.written else ' (unchanged)'}")
        for month_dir in sorted(out.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]")):
            found = versions(month_dir)
            if not found or month_dir.name == str(target):
                continue
            manifest = json.loads((month_dir / f"v{found[-1]}" / "manifest.json").read_text())
            if any(t.get("provisional") for t in manifest["totals"].values()):
                again = export_month(self.config, self.client, Month.parse(month_dir.name),
                                     out, self.library)  # fmt: skip
                if again.written:
                    done.append(f"{month_dir.name} restated as v{again.version}")
        if month is None:
            self.state.last_export_month = str(target)
        self.state.last_success_ns["export"] = self.clock()
        self.state.save()
        return "; ".join(done)

    def export_due(self) -> bool:
        """Whether last month's export is missing and its day has come (catch-up at start)."""
        from processing.export import previous_month

        now = self.clock()
        target = previous_month(now, self.config.jobs.timezone)
        local = ns_to_datetime(now).astimezone(ZoneInfo(self.config.jobs.timezone))
        due = (local.day, local.hour) >= (self.config.jobs.export_day, self.config.jobs.export_hour)
        return due and self.state.last_export_month != str(target)

    def run(self, name: str, sleep: Callable[[float], None] = time.sleep, **kwargs: object) -> bool:
        """Run one job, retrying ``[jobs] job_retries`` times; never raises. True on success."""
        if name not in JOB_NAMES:
            raise ValueError(f"no job {name!r}; jobs: {', '.join(JOB_NAMES)}")
        body = getattr(self, name)
        attempts = 1 + self.config.jobs.job_retries
        for attempt in range(1, attempts + 1):
            try:
                began = time.monotonic()
                summary = body(**kwargs)  # type: ignore[operator]
                log.info("job %s done in %.1f s: %s", name, time.monotonic() - began, summary)
                return True
            except Exception:  # a job's failure must not stop the scheduler or other jobs
                log.exception("job %s failed (attempt %d of %d)", name, attempt, attempts)
                if attempt < attempts:
                    sleep(self.config.jobs.retry_delay_s)
        log.error("job %s gave up after %d attempts; next scheduled run will try again", name,
                  attempts)  # fmt: skip
        return False


def run_scheduler(config: Config) -> None:  # pragma: no cover - runs until interrupted
    """Run the jobs on schedule until interrupted (Ctrl-C / SIGTERM).

    Rollups every ``rollup_every_min``; last month's export on ``export_day`` at
    ``export_hour`` (``[jobs] timezone``). Late runs are never skipped (no misfire grace
    limit; a backlog of runs coalesces into one), and at start the jobs catch up on downtime:
    the rollup from its last success, the export if this month's is missing and due.
    """
    from apscheduler.schedulers.blocking import BlockingScheduler

    jobs = Jobs(config, InfluxClient.from_settings(config.influxdb, config.secrets),
                FactorLibrary.load())  # fmt: skip
    scheduler = BlockingScheduler(timezone=config.jobs.timezone)
    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    scheduler.add_job(jobs.run, "interval", args=["rollup"],
                      minutes=config.jobs.rollup_every_min, id="rollup", **common)  # fmt: skip
    scheduler.add_job(jobs.run, "interval", args=["alerts"], minutes=config.alerts.every_min,
                      id="alerts", **common)  # fmt: skip
    if config.secrets.grafana_token is not None:
        scheduler.add_job(jobs.run, "cron", args=["dashboards"], hour=5, minute=30,
                          id="dashboards", **common)  # fmt: skip
    else:
        log.info("jobs: no SUPPLYMETER_GRAFANA_TOKEN, the daily dashboards push is off")
    scheduler.add_job(jobs.run, "cron", args=["export"], day=config.jobs.export_day,
                      hour=config.jobs.export_hour, id="export", **common)  # fmt: skip
    j = config.jobs
    log.info("jobs: rollup every %d min; export on day %d at %02d:00 %s", j.rollup_every_min,
             j.export_day, j.export_hour, j.timezone)  # fmt: skip
    jobs.run("rollup")
    if jobs.export_due():
        jobs.run("export")
    scheduler.start()
