"""Benchmarks on real Mosquitto + InfluxDB: the demo pipeline, stage by stage.

Prints each figure beside the ceiling or target it is compared with, in the same run.
Targets come from the issues: the whole demo (a month, four example suppliers) under 300 s on
a 2-core machine. Run with ``make bench``; record the figures in BENCHMARKS.md.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from collector.service import Collector
from deploy.stack import LocalStack, configure_for
from processing.accounting.runner import export_month
from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from simulators.run import simulate
from supplymeter.config import load_config
from supplymeter.influx import InfluxClient
from supplymeter.store import Store

ROOT = Path(__file__).resolve().parents[1]
TPE = ZoneInfo("Asia/Taipei")
DEMO_CEILING_S = 300.0


def line(name: str, value: str, target: str) -> None:
    print(f"{name:<44} {value:>18}   {target}", flush=True)


def main() -> None:
    config = load_config(ROOT / "supplymeter.toml", {})
    month = Month(2026, 10)
    start_ns, end_ns = month.bounds(TPE)
    start, end = datetime(2026, 10, 1, tzinfo=TPE), datetime(2026, 11, 1, tzinfo=TPE)
    with tempfile.TemporaryDirectory() as tmp, LocalStack.on_free_ports(Path(tmp)) as stack:
        cfg = configure_for(config, stack)
        client = InfluxClient.from_settings(cfg.influxdb, cfg.secrets)
        client.ensure_database()
        began = time.perf_counter()
        with Collector(cfg, client=client) as collector:
            sim = simulate(cfg, start=start, end=end, seed=1)
            published = time.perf_counter()
            deadline = time.monotonic() + 600
            while collector.stats.reading_messages < sim.messages and time.monotonic() < deadline:
                time.sleep(0.05)
            collector.writer.flush(600)
            stored = time.perf_counter()
        library = FactorLibrary.load()
        run_rollup(cfg, Store(client), start_ns, end_ns, library)
        rolled = time.perf_counter()
        export_month(cfg, Store(client), month, Path(tmp) / "out", library)
        exported = time.perf_counter()
    meters = len(cfg.registry.meters())
    print(
        f"demo pipeline: {sim.readings:,} readings in {sim.messages:,} messages, "
        f"{meters} meters, {month}"
    )
    line(
        "simulate + publish (QoS 1, acked)",
        f"{sim.readings / (published - began):,.0f} readings/s",
        "paced on broker acks",
    )
    line(
        "publish → stored in InfluxDB",
        f"{sim.readings / (stored - began):,.0f} readings/s",
        "simulator and collector share one process (see bench_collector.py)",
    )
    line("rollup (hours + emissions)", f"{rolled - stored:.2f} s", "")
    line("export", f"{exported - rolled:.2f} s", "")
    total = exported - began
    verdict = "OK" if total < DEMO_CEILING_S else "OVER"
    line("demo pipeline total", f"{total:.1f} s", f"ceiling {DEMO_CEILING_S:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
