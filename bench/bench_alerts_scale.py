"""The alert detector at scale: 1,000 one-minute meters, its memory and the time of a run.

The alert job keeps ``baseline_weeks`` + 1 day of every meter's readings in memory (that is what
it judges against) and runs every ``every_min`` minutes. This feeds a detector 29 days of
1-minute readings for 1,000 meters (41.8 M readings, in 6-hour slices with a prune after each,
the way ``AlertRunner.load`` does after a start), then times the first evaluation (cold: every
baseline and cached grid step computed) and three steady runs 5 minutes apart with the new
readings. No InfluxDB: the job's query time
is the rollup's concern (see ``bench_accounting.py``).

Ceilings: a run must finish well inside ``every_min`` (300 s); memory is compared with the
1 GB the accounting jobs stay under. Run with ``make bench``; figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import resource
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from processing.detect import MIN_NS, Detector
from simulators.loadtest import registry_toml
from supplymeter.config import AlertSettings, load_config
from supplymeter.records import datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")
METERS = 1000
RUN_CEILING_S, RSS_CEILING_MB = 300.0, 1024.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kw_at(meter: int, ts: int) -> float:
    """A day/night load with a little per-meter, per-minute wobble. [kW]"""
    hour = (ts // (3600 * 10**9) + 8) % 24
    base = 40.0 if 8 <= hour < 18 else 20.0
    return base * (1 + 0.05 * (((ts // MIN_NS) * 7 + meter * 13) % 11 - 5) / 5)


def main() -> None:
    settings = AlertSettings()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "suppliers.toml").write_text(registry_toml(METERS))
        (Path(tmp) / "supplymeter.toml").write_text('registry = "suppliers.toml"\n')
        config = load_config(Path(tmp) / "supplymeter.toml", {})
    detector = Detector(config.registry, settings)
    keys = [ref.key for ref in config.registry.meters()]
    now = datetime_to_ns(datetime(2026, 10, 28, 14, 30, tzinfo=TPE))
    start = datetime_to_ns(datetime(2026, 10, 28, 14, 30, tzinfo=TPE)
                           - timedelta(days=settings.baseline_weeks * 7 + 1))  # fmt: skip
    registers = [1000.0 + i for i in range(METERS)]

    def feed(t0: int, t1: int) -> int:
        n = 0
        for i, key in enumerate(keys):
            register = registers[i]
            for ts in range(t0, t1, MIN_NS):
                kw = kw_at(i, ts)
                detector.add_reading(key, ts, register, kw)
                register += kw / 60
                n += 1
            registers[i] = register
        return n

    began = time.perf_counter()
    readings = 0
    for t0 in range(start, now + MIN_NS, 6 * 3600 * 10**9):  # as AlertRunner.load: 6-h slices
        readings += feed(t0, min(t0 + 6 * 3600 * 10**9, now + MIN_NS))
        detector.prune(now)
    fed = time.perf_counter() - began
    rss_fed = peak_rss_mb()
    began = time.perf_counter()
    first = detector.evaluate(now)
    cold = time.perf_counter() - began
    steady = []
    for k in range(1, 4):
        feed(now + (5 * k - 4) * MIN_NS, now + (5 * k + 1) * MIN_NS)
        began = time.perf_counter()
        detector.evaluate(now + 5 * k * MIN_NS)
        detector.prune(now + 5 * k * MIN_NS)
        steady.append(time.perf_counter() - began)

    def row(name: str, value: str, target: str) -> None:
        print(f"{name:<60} {value:>16}   {target}", flush=True)

    print(f"alert detector, {METERS} one-minute meters, {readings:,} readings "
          f"({settings.baseline_weeks * 7 + 1} days) in memory")  # fmt: skip
    row("feeding the readings (add_reading)", f"{fed:.1f} s", "reported")
    fits = "OK" if rss_fed <= RSS_CEILING_MB else "OVER"
    row("peak RSS after feeding", f"{rss_fed:,.0f} MB", f"<= {RSS_CEILING_MB:,.0f} MB: {fits}")
    row("first run (cold: every baseline computed)", f"{cold:.1f} s",
        f"< {RUN_CEILING_S:.0f} s: {'OK' if cold < RUN_CEILING_S else 'OVER'}")  # fmt: skip
    worst = max(steady)
    row("steady run (5 min later, worst of 3)", f"{worst:.2f} s",
        f"< {RUN_CEILING_S:.0f} s: {'OK' if worst < RUN_CEILING_S else 'OVER'}")  # fmt: skip
    spikes = sum(c.type == "spike" for c in first.conditions)
    row("spikes on the steady synthetic load (first run)", f"{spikes}", "0 expected")
    peak = peak_rss_mb()
    row("peak RSS at the end", f"{peak:,.0f} MB",
        f"<= {RSS_CEILING_MB:,.0f} MB: {'OK' if peak <= RSS_CEILING_MB else 'OVER'}")  # fmt: skip


if __name__ == "__main__":
    main()
