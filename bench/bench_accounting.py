"""Benchmark: rollup, incremental rollup and monthly export at 10,000 meters, real InfluxDB 1.6.

Targets (issue "every number agrees with the meters"):

* rollup of 10,000 meters × 1 day of 1-minute readings < 60 s;
* incremental rollup when 1% of a month's meter-hours are dirty, at 10,000 meters < 10 s —
  the dirty hours come as the real world makes them: each of the 100 sites' gateways was
  offline for about 7.4 hours (a different window per site) and replayed its 15-minute
  readings, which the collector marked as late arrivals (``reading_arrival``);
* monthly export at 10,000 meters, Meter reads sheet and hourly CSVs included, < 60 s;
* peak RSS < 2 GB.

Inputs are written straight to InfluxDB as line protocol first (not timed). ``--meters N`` for a
smaller run, ``--part`` for one part. Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from deploy.stack import InfluxDB, free_port
from processing.accounting.cbam import publish_workbook
from processing.accounting.export import write_hourly
from processing.accounting.runner import export_month, hourly_tables, installations, publish_period
from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary, emissions_for
from processing.jobs import Jobs, rebuild_site_hours, run_rollup
from simulators.loadtest import METERS_PER_SITE, registry_toml
from supplymeter.config import load_config
from supplymeter.influx import InfluxClient
from supplymeter.records import HourlyConsumption, datetime_to_ns
from supplymeter.store import (
    HOUR_NS,
    Store,
    arrival_line,
    consumption_line,
    emissions_line,
    production_line,
)

TPE = ZoneInfo("Asia/Taipei")
ROLLUP_CEILING_S, DIRTY_CEILING_S, EXPORT_CEILING_S, RSS_CEILING_MB = 60.0, 10.0, 60.0, 2048.0
EXTRA_CEILING_PCT = 20.0
"""Footprints and CBAM from the month the export computed add less than this to it."""
MIN_NS = 60 * 10**9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(name: str, value: str, target: str) -> None:
    print(f"{name:<60} {value:>12}   {target}", flush=True)


def verdict(value: float, ceiling: float) -> str:
    return f"ceiling {ceiling:g}: {'OK' if value < ceiling else 'OVER'}"


def write(client: InfluxClient, lines: list[str], force: bool = False) -> list[str]:
    if lines and (force or len(lines) >= 50_000):
        client.write_lines(lines)
        return []
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--part", choices=("all", "rollup", "incremental"), default="all",
                        help="rollup: the day's rollup; incremental: it, the export")  # fmt: skip
    args = parser.parse_args()
    meters = args.meters
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = InfluxDB(root=tmp / "influx", port=free_port(), rpc_port=free_port())
        server.start(detach=False)
        try:
            (tmp / "suppliers.toml").write_text(with_products(registry_toml(meters)))
            (tmp / "supplymeter.toml").write_text(
                f'registry = "suppliers.toml"\n[influxdb]\nurl = "{server.url}"\n'
                f'timeout_s = 120\n[jobs]\nlookaround_h = 1\nexport_dir = "{tmp / "out"}"\n'
                "hourly_csv_max_meters = 2000\n"
            )
            config = load_config(tmp / "supplymeter.toml", {})
            client = InfluxClient.from_settings(config.influxdb, config.secrets)
            client.ensure_database()
            store = Store(client)
            refs = config.registry.meters()
            library = FactorLibrary.load()
            print(f"accounting bench: {meters:,} meters in {meters // METERS_PER_SITE} sites",
                  flush=True)  # fmt: skip
            if args.part in ("all", "rollup"):
                full_day(config, client, store, refs, library, meters)
            if args.part in ("all", "incremental"):
                incremental(config, client, store, refs, library, meters)
            rss = peak_rss_mb()
            line("peak RSS of the bench process (setup included)", f"{rss:,.0f} MB",
                 verdict(rss, RSS_CEILING_MB))  # fmt: skip
        finally:
            server.stop()


PIECES_PER_H = 20.0
"""Pieces each site's product counter adds per hour (one wheel-hub part per site)."""


def with_products(registry: str) -> str:
    """The load-test registry with one CN-coded product per site, made on a line of the site's
    first ten meters and counted by the first, so footprints and CBAM have a product
    attribution to compute at every site (the other meters are overhead)."""
    registry = registry.replace(
        'allocation = { method = "dedicated", share = 1.0 }',
        'allocation = { method = "dedicated", share = 1.0 }\ndomain = "loadtest.example"\n'
        'company_ids = ["urn:pact:loadtest.example:company-id:1"]', 1)  # fmt: skip
    out = []
    for text in registry.splitlines():
        out.append(text)
        if text.startswith('  id = "site-'):
            first = int(text.split("-")[1].rstrip('"')) * METERS_PER_SITE
            line_meters = ", ".join(f'"m{first + k:05d}"' for k in range(10))
            out.append(f'  lines = [ {{ id = "hub-line", meters = [{line_meters}] }} ]')
            out.append(f'  products = [ {{ id = "hub", part_number = "HUB-{first:05d}", name = '
                       f'"Wheel hub", cn_code = "732690", mass_kg = 1.5, line = "hub-line", '
                       f'counter = "m{first:05d}" }} ]')  # fmt: skip
    return "\n".join(out) + "\n"


def full_day(config, client, store, refs, library, meters) -> None:  # type: ignore[no-untyped-def]
    day = datetime_to_ns(datetime(2026, 9, 15, tzinfo=TPE))
    began = time.perf_counter()
    batch: list[str] = []
    for minute in range(-60, 24 * 60 + 61):  # the day, bracketed by an hour each side
        ts = day + minute * MIN_NS
        for i, ref in enumerate(refs):
            register = 1000.0 + i + (minute + 60) * (0.5 + (i % 7) / 10)
            batch.append(f"reading,meter={ref.meter.id},site={ref.site.id},supplier=loadtest "
                         f"energy_kwh={register:.3f} {ts}")  # fmt: skip
        batch = write(client, batch)
    write(client, batch, force=True)
    points = meters * (24 * 60 + 122)
    print(f"  {points:,} one-minute readings written in {time.perf_counter() - began:.0f} s "
          "(setup, not timed)", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    report = run_rollup(config, store, day, day + 24 * HOUR_NS, library)
    took = time.perf_counter() - t0
    assert report.hours == meters * 24, report.hours
    line(f"rollup, {meters:,} meters × 1 day of 1-min readings", f"{took:.1f} s",
         verdict(took, ROLLUP_CEILING_S))  # fmt: skip
    line("  readings/s through the rollup", f"{meters * 1440 / took:,.0f}", "")
    client.execute('DROP MEASUREMENT "reading"')


def incremental(config, client, store, refs, library, meters) -> None:  # type: ignore[no-untyped-def]
    month = Month(2026, 10)
    start, end = month.bounds(TPE)
    hours_in_month = (end - start) // HOUR_NS
    rnd = random.Random(7)
    t0 = time.perf_counter()
    # A month of hourly rollups and emissions, as the rollup job left them.
    batch: list[str] = []
    for ref in refs:
        for hour in range(start, end, HOUR_NS):
            h = HourlyConsumption(*ref.key, "electricity", "kWh", hour, 30.0, 1.0, 4)
            batch.append(consumption_line(h))
            record = emissions_for(h, ref, library)
            assert record is not None
            batch.append(emissions_line(record))
            product = ref.site.product_counted_by(ref.meter.id)
            if product is not None:
                pieces = HourlyConsumption(*ref.key, "electricity", "units", hour, PIECES_PER_H,
                                           1.0, 4)  # fmt: skip
                batch.append(production_line(pieces, product.id))
        batch = write(client, batch)
    write(client, batch, force=True)
    t_sites = time.perf_counter()
    built = rebuild_site_hours(config, store, {(r.supplier.id, r.site.id): [(start, end)]
                                               for r in refs}, library)  # fmt: skip
    print(
        f"  {built:,} site-hours built from the stored meter-hours in "
        f"{time.perf_counter() - t_sites:.0f} s (setup, as an upgrade does once)",
        flush=True,
    )
    # Each site's gateway was offline for ~7.4 h and replayed: 1% of the meter-hours.
    dirty_h = round(hours_in_month * 0.01)
    sites = sorted({ref.site.id for ref in refs})
    windows = {s: start + rnd.randrange(0, hours_in_month - dirty_h - 2) * HOUR_NS for s in sites}
    received = time.time_ns() - 10 * MIN_NS
    batch = []
    for i, ref in enumerate(refs):
        lo = windows[ref.site.id]
        for q in range(-4 * 2, 4 * (dirty_h + 2) + 1):  # 15-min readings, with the lookaround
            ts = lo + q * 15 * MIN_NS
            register = 5000.0 + i + (q + 8) * 7.5
            batch.append(f"reading,meter={ref.meter.id},site={ref.site.id},supplier=loadtest "
                         f"energy_kwh={register:.3f} {ts}")  # fmt: skip
        for h in range(dirty_h):
            received += 1
            batch.append(arrival_line(ref.key, lo + h * HOUR_NS, 4, received))
        batch = write(client, batch)
    write(client, batch, force=True)
    print(f"  {meters * hours_in_month:,} hourly rollups + emissions, {meters * dirty_h:,} late "
          f"meter-hours written in {time.perf_counter() - t0:.0f} s (setup, not timed)",
          flush=True)  # fmt: skip
    jobs = Jobs(config, store, library)
    jobs.state.last_success_ns["rollup"] = time.time_ns()  # no downtime to catch up on
    jobs.state.arrivals_cursor_ns = received - 3600 * 10**9
    t0 = time.perf_counter()
    summary = jobs._late(time.time_ns())  # the rollup job's late-data step, as scheduled
    took = time.perf_counter() - t0
    print(f"  {summary[0]}", flush=True)
    line(f"incremental rollup, 1% of a month's meter-hours dirty, {meters:,} meters",
         f"{took:.1f} s", verdict(took, DIRTY_CEILING_S))  # fmt: skip
    t0 = time.perf_counter()
    result = export_month(config, store, month, Path(config.jobs.export_dir), library)
    took = time.perf_counter() - t0
    assert len(result.meters) == meters and result.written
    line(f"monthly export, {meters:,} meters (CSVs, XLSX with Meter reads, chart, manifest)",
         f"{took:.1f} s", verdict(took, EXPORT_CEILING_S))  # fmt: skip
    export_s = took
    computed = {month: result.figures}
    t0 = time.perf_counter()
    published, skipped = publish_period(config, store, library, month, month, computed=computed)
    found = installations(config, store, library, month, month, computed=computed)
    publish_workbook(Path(config.jobs.export_dir) / "cbam", found, 2026, month, month, 0.1)
    took = time.perf_counter() - t0
    assert not skipped and len(published.created) == len(found) == meters // METERS_PER_SITE
    share = 100 * took / export_s
    line(f"  + footprints and CBAM of the same month ({len(published.created)} products)",
         f"{took:.1f} s = {share:.0f}%",
         f"ceiling {EXTRA_CEILING_PCT:g}% of the export: "
         f"{'OK' if share < EXTRA_CEILING_PCT else 'OVER'}")  # fmt: skip
    t0 = time.perf_counter()
    write_hourly(Path(config.jobs.export_dir) / "hourly-bench", hourly_tables(config, store, month))
    took = time.perf_counter() - t0
    line(f"  + every meter's hourly CSV ({meters:,} files, written up to "
         f"hourly_csv_max_meters)", f"{took:.1f} s", "not in the ceiling")  # fmt: skip


if __name__ == "__main__":
    main()
