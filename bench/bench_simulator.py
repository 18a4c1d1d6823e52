"""Benchmark: simulate one month of 4 suppliers × ~10 meters at 1-minute resolution (backfill).

Target (simulator issue): under 60 s, published to a real Mosquitto and acknowledged. The
registry is the example one with each supplier's consumption meters cloned to ten and every
meter reading once a minute (PV and grid meters kept: 44 meters, ~1.9 M readings). Also prints
the load-test mode's achieved rate against its target. Run with ``make bench``.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from deploy.stack import Mosquitto, free_port
from simulators.loadtest import load_test
from simulators.run import simulate
from supplymeter.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TPE = ZoneInfo("Asia/Taipei")
CEILING_S = 60.0
METERS_PER_SUPPLIER = 10


def bench_registry() -> str:
    """The example registry, each supplier's first site holding ten 1-minute meters."""
    config = load_config(ROOT / "supplymeter.toml", {})
    out = []
    for supplier in config.registry.suppliers:
        alloc = supplier.allocation
        out.append(
            f'[[suppliers]]\nid = "{supplier.id}"\nkind = "{supplier.kind}"\n'
            f'allocation = {{ method = "{alloc.method}", share = {alloc.share} }}\n'
            f'  [[suppliers.sites]]\n  id = "{supplier.sites[0].id}"\n'
        )
        meters = [m for s in supplier.sites for m in s.meters]
        consumption = [m for m in meters if m.role == "consumption"]
        special = [m for m in meters if m.role != "consumption"]
        picked = [consumption[i % len(consumption)] for i in range(METERS_PER_SUPPLIER)]
        for i, meter in enumerate(picked + special):
            sim = meter.simulation
            out.append(
                f'    [[suppliers.sites.meters]]\n    id = "{meter.id}-{i}"\n'
                f'    carrier = "{meter.carrier}"\n    role = "{meter.role}"\n'
                f"    interval_s = 60\n    multiplier = {meter.multiplier}\n"
                + (f"    rollover = {meter.rollover}\n" if meter.rollover else "")
                + f"    simulation = {{ mean_load = {sim.mean_load}, "
                f'equipment = "{sim.equipment}", base_fraction = {sim.base_fraction}, '
                f"initial_register = {sim.initial_register} }}\n"
            )
    return "".join(out)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "suppliers.toml").write_text(bench_registry())
        broker = Mosquitto(root=tmp / "mqtt", port=free_port())
        broker.start(detach=False)
        try:
            (tmp / "supplymeter.toml").write_text(
                f'registry = "suppliers.toml"\n[mqtt]\nport = {broker.port}\n'
            )
            config = load_config(tmp / "supplymeter.toml", {})
            meters = len(config.registry.meters())
            began = time.perf_counter()
            sim = simulate(
                config, start=datetime(2026, 10, 1, tzinfo=TPE),
                end=datetime(2026, 11, 1, tzinfo=TPE), seed=1, ledger_path=tmp / "ledger.csv",
            )  # fmt: skip
            took = time.perf_counter() - began
            verdict = "OK" if took < CEILING_S else "OVER"
            print(f"simulator backfill: {meters} meters × 1 month at 1 min, "
                  f"{sim.readings:,} readings in {sim.messages:,} messages (acked)")  # fmt: skip
            print(f"{'simulate + publish + ledger':<44} {took:>14.1f} s   "
                  f"ceiling {CEILING_S:.0f} s: {verdict}")  # fmt: skip
            print(f"{'  readings/s':<44} {sim.readings / took:>14,.0f}")
            for rate in (2_000, 8_000):
                result = load_test(config, 1000, rate, 10.0)
                verdict = "OK" if result.achieved_rate >= 0.95 * rate else "BELOW"
                name = f"load test, 1,000 meters, target {rate:,}/s"
                print(f"{name:<44} {result.achieved_rate:>12,.0f}/s   "
                      f"acked; ≥95% of target: {verdict}")  # fmt: skip
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
