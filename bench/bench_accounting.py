"""Benchmark: rollup and monthly export at 1,000 meters, against a real InfluxDB 1.6.7.

Targets (accounting issue): rollup of 1,000 meters × 1 day of 1-minute readings (1.44 M
points) under 20 s; monthly export of 1,000 meters under 30 s; peak RSS under 1 GB. The
readings and the month of hourly rollups are written straight to InfluxDB as line protocol
first (not timed). Run with ``make bench``.
"""

from __future__ import annotations

import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from deploy.stack import InfluxDB, free_port
from processing.emissions import FactorLibrary
from processing.export import export_month
from processing.jobs import consumption_line, run_rollup
from processing.rollup import HOUR_NS, HourlyConsumption
from processing.scope3 import Month
from simulators.loadtest import registry_toml
from supplymeter.config import load_config
from supplymeter.influx import InfluxClient
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store

TPE = ZoneInfo("Asia/Taipei")
METERS = 1000
ROLLUP_CEILING_S, EXPORT_CEILING_S, RSS_CEILING_MB = 20.0, 30.0, 1024.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(name: str, value: str, target: str) -> None:
    print(f"{name:<52} {value:>14}   {target}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = InfluxDB(root=tmp / "influx", port=free_port(), rpc_port=free_port())
        server.start(detach=False)
        try:
            (tmp / "suppliers.toml").write_text(registry_toml(METERS))
            (tmp / "supplymeter.toml").write_text(
                f'registry = "suppliers.toml"\n[influxdb]\nurl = "{server.url}"\n'
                f"[jobs]\nlookaround_h = 1\n"
            )
            config = load_config(tmp / "supplymeter.toml", {})
            client = InfluxClient.from_settings(config.influxdb, config.secrets)
            client.ensure_database()
            refs = config.registry.meters()
            day = datetime_to_ns(datetime(2026, 10, 15, tzinfo=TPE))
            began = time.perf_counter()
            batch: list[str] = []
            for minute in range(-60, 24 * 60 + 61):  # the day, bracketed by an hour each side
                ts = day + minute * 60 * 10**9
                for i, ref in enumerate(refs):
                    register = 1000.0 + i + (minute + 60) * (0.5 + (i % 7) / 10)
                    batch.append(
                        f"reading,meter={ref.meter.id},site={ref.site.id},supplier=loadtest "
                        f"energy_kwh={register:.3f} {ts}"
                    )
                if len(batch) >= 50_000:
                    client.write_lines(batch)
                    batch = []
            client.write_lines(batch)
            points = METERS * (24 * 60 + 122)
            print(f"accounting bench: {METERS:,} meters; {points:,} readings written in "
                  f"{time.perf_counter() - began:.1f} s (setup, not timed)")  # fmt: skip

            library = FactorLibrary.load()
            t0 = time.perf_counter()
            report = run_rollup(config, Store(client), day, day + 24 * HOUR_NS, library)
            took = time.perf_counter() - t0
            assert report.hours == METERS * 24, report.hours
            verdict = "OK" if took < ROLLUP_CEILING_S else "OVER"
            line("rollup, 1,000 meters × 1 day of 1-min readings", f"{took:.1f} s",
                 f"ceiling {ROLLUP_CEILING_S:.0f} s: {verdict}")  # fmt: skip
            line("  readings/s through the rollup", f"{METERS * 1440 / took:,.0f}", "")

            month = Month(2026, 10)
            start, end = month.bounds(TPE)
            t0 = time.perf_counter()
            batch = []
            for ref in refs:
                for hour in range(start, end, HOUR_NS):
                    batch.append(consumption_line(HourlyConsumption(
                        *ref.key, "electricity", "kWh", hour, 30.0, 1.0, 60)))  # fmt: skip
                if len(batch) >= 50_000:
                    client.write_lines(batch)
                    batch = []
            client.write_lines(batch)
            print(f"  {METERS * 744:,} hourly rollups written in "
                  f"{time.perf_counter() - t0:.1f} s (setup, not timed)")  # fmt: skip
            t0 = time.perf_counter()
            result = export_month(config, Store(client), month, tmp / "out", library)
            took = time.perf_counter() - t0
            assert len(result.meters) == METERS
            verdict = "OK" if took < EXPORT_CEILING_S else "OVER"
            line("monthly export, 1,000 meters (CSV + XLSX + chart)", f"{took:.1f} s",
                 f"ceiling {EXPORT_CEILING_S:.0f} s: {verdict}")  # fmt: skip
            rss = peak_rss_mb()
            verdict = "OK" if rss < RSS_CEILING_MB else "OVER"
            line("peak RSS of the bench process", f"{rss:.0f} MB",
                 f"ceiling {RSS_CEILING_MB:.0f} MB: {verdict}")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
