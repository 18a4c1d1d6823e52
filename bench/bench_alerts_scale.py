"""The alert detector at scale: 10,000 one-minute meters, its memory and the time of a run.

The alert job keeps each meter's consumption per 15-min slot for ``baseline_weeks`` (a float32
ring) and only the last hours of raw readings. After a start it loads the slot history as one
register per slot (what ``Store.register_samples`` returns from InfluxDB) and the raw readings
of the last 8 h; every later run re-reads the look-back (6 h) of raw readings, judges the slots
completed since the run before and prunes. This times, for 10,000 meters read every minute:
the first run (history + raw readings + the first evaluation) and three steady runs 5 minutes
apart, and reports the peak RSS. No InfluxDB: the query time is the store's concern (see
``bench_accounting.py``).

Ceilings (alerts issue): first run < 120 s, steady run < 30 s, peak RSS < 1 GB. Run with
``make bench``; figures go to BENCHMARKS.md. ``BENCH_METERS=1000`` runs a smaller fleet.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from processing.detect import LOOKBACK_NS, MIN_NS, RAW_KEEP_NS, Detector
from simulators.loadtest import registry_toml
from supplymeter.config import AlertSettings, load_config
from supplymeter.records import datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")
METERS = int(os.environ.get("BENCH_METERS", "10000"))
FIRST_CEILING_S, STEADY_CEILING_S, RSS_CEILING_MB = 120.0, 30.0, 1024.0


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
    keys = [ref.key for ref in config.registry.meters()]
    now = datetime_to_ns(datetime(2026, 10, 28, 14, 30, tzinfo=TPE))
    days = settings.baseline_weeks * 7 + 1
    start = now - days * 86_400 * 10**9
    slot = settings.window_min * MIN_NS
    raw_from = now - RAW_KEEP_NS
    # One meter's register at every slot boundary and every minute of the raw span (the
    # meters differ only by an offset, so one walk serves them all).
    minute_kwh = np.array([kw_at(0, t) / 60 for t in range(start, now + 20 * MIN_NS, MIN_NS)])
    register = 1000.0 + np.concatenate(([0.0], np.cumsum(minute_kwh)))

    def reg(ts: int, meter: int) -> float:
        return float(register[(ts - start) // MIN_NS]) + meter

    sample_ts = list(range(start, raw_from, slot))
    samples = [reg(t, 0) for t in sample_ts]
    raw_ts = list(range(raw_from, now + 20 * MIN_NS, MIN_NS))

    detector = Detector(config.registry, settings)
    began = time.perf_counter()
    for i, key in enumerate(keys):  # as Store.register_samples delivers, meter by meter
        detector.add_history(key, sample_ts, [v + i for v in samples])
    history = time.perf_counter() - began

    def feed(t0: int, t1: int) -> int:
        n = 0
        for i, key in enumerate(keys):
            for ts in range(t0, t1, MIN_NS):
                detector.add_reading(key, ts, reg(ts, i), kw_at(i, ts))
                n += 1
        return n

    began = time.perf_counter()
    readings = feed(raw_from, now + MIN_NS)
    raw = time.perf_counter() - began
    began = time.perf_counter()
    first = detector.evaluate(now)
    detector.prune(now)
    evaluate = time.perf_counter() - began
    cold = history + raw + evaluate
    rss_first = peak_rss_mb()
    steady = []
    for k in range(1, 4):
        t = now + 5 * k * MIN_NS
        began = time.perf_counter()
        feed(t - LOOKBACK_NS, t + MIN_NS)  # the job re-reads its look-back every run
        detector.evaluate(t)
        detector.prune(t)
        steady.append(time.perf_counter() - began)
    del raw_ts

    def row(name: str, value: str, target: str) -> None:
        print(f"{name:<60} {value:>16}   {target}", flush=True)

    print(f"alert detector, {METERS:,} one-minute meters: {days} days of slot history "
          f"({len(sample_ts):,} slots a meter) + {readings:,} raw readings")  # fmt: skip
    row("  history from one register per slot (add_history)", f"{history:.1f} s", "")
    row("  raw readings of the last 8 h (add_reading)", f"{raw:.1f} s", "")
    row("  first evaluation (every slot since the start judged)", f"{evaluate:.1f} s", "")
    row("first run (all of the above)", f"{cold:.1f} s",
        f"< {FIRST_CEILING_S:.0f} s: {'OK' if cold < FIRST_CEILING_S else 'OVER'}")  # fmt: skip
    worst = max(steady)
    row("steady run (re-read 6 h, evaluate, prune; worst of 3)", f"{worst:.1f} s",
        f"< {STEADY_CEILING_S:.0f} s: {'OK' if worst < STEADY_CEILING_S else 'OVER'}")  # fmt: skip
    spikes = sum(c.type in ("spike", "regime") for c in first.conditions)
    row("spikes or regimes on the regular synthetic load", f"{spikes}", "0 expected")
    peak = peak_rss_mb()
    row("peak RSS after the first run / at the end", f"{rss_first:,.0f} / {peak:,.0f} MB",
        f"< {RSS_CEILING_MB:,.0f} MB: {'OK' if peak < RSS_CEILING_MB else 'OVER'}")  # fmt: skip


if __name__ == "__main__":
    main()
