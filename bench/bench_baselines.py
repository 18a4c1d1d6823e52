"""Baseline fitting and savings for many meters: 1,000 meters × 2 years of hourly data.

Each meter: hourly consumption driven by production with drifting base load, a saving from
the second year; the bench aggregates the hours into days (:func:`daily_frame`), fits the
baseline with driver selection (:func:`fit_baseline`) and measures the savings — the work
``supplymeter progress`` does per measure, without the store. Prints the wall time and peak
RSS against the ceilings of the issue (60 s, 1 GB) and how many 90 % intervals held the truth.

    python bench/bench_baselines.py [--meters 1000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date

import numpy as np

from processing.baselines import Period, daily_frame, fit_baseline, savings
from supplymeter.records import datetime_to_ns

CEILING_S = 60.0
CEILING_RSS_MB = 1024.0
HOUR_NS = 3600 * 10**9


def meter_hours(rng: np.random.Generator, start_ns: int, hours: int, share: float):
    t = np.arange(hours)
    local_hour = (t + 8) % 24
    weekday = ((t + 8) // 24 + 3) % 7  # 2025-01-01 was a Wednesday
    working = (weekday < 5) & (local_hour >= 8) & (local_hour < 17)
    pieces = np.where(working, rng.integers(20, 40, hours), 0).astype(float)
    steps = rng.random(hours // 24) < 1 / 60
    base = 40 * np.repeat(np.cumprod(np.where(steps, rng.uniform(0.85, 1.15, steps.size), 1)),
                          24)[:hours]  # fmt: skip
    kwh = (base + 3 * pieces) * np.exp(rng.normal(0, 0.05, hours))
    second = t >= hours // 2
    saved = float((kwh[second] * share).sum())
    kwh[second] *= 1 - share
    ns = start_ns + t * HOUR_NS
    return list(zip(ns.tolist(), kwh.tolist(), [0.0] * hours, strict=True)), list(
        zip(ns.tolist(), pieces.tolist(), strict=True)), saved  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meters", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    from datetime import datetime
    from zoneinfo import ZoneInfo

    start_ns = datetime_to_ns(datetime(2025, 1, 1, tzinfo=ZoneInfo("Asia/Taipei")))
    span = Period(date(2025, 1, 1), date(2027, 1, 1))
    baseline, reporting = Period(date(2025, 1, 1), date(2026, 1, 1)), Period(
        date(2026, 1, 1), date(2027, 1, 1))  # fmt: skip
    held = valid = 0
    data_s = 0.0
    began = time.perf_counter()
    for i in range(args.meters):
        t0 = time.perf_counter()
        hours, pieces, truth = meter_hours(rng, start_ns, 2 * 365 * 24, (0.0, 0.05, 0.12)[i % 3])
        data_s += time.perf_counter() - t0
        frame = daily_frame(hours, "Asia/Taipei", span, production=pieces)
        model = fit_baseline(frame, baseline)
        if not model.valid:
            continue
        valid += 1
        result = savings(model, frame, reporting)
        held += abs(result.saved - truth) <= result.uncertainty
        if (i + 1) % 100 == 0:
            print(f"  {i + 1} meters, {time.perf_counter() - began:.1f} s", file=sys.stderr)
    elapsed = time.perf_counter() - began - data_s
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"baselines + savings: {args.meters} meters × 2 years hourly in {elapsed:.1f} s "
          f"(ceiling {CEILING_S:.0f} s; generating the data took another {data_s:.1f} s), "
          f"peak RSS {rss_mb:.0f} MB (ceiling {CEILING_RSS_MB:.0f} MB)")  # fmt: skip
    print(f"valid baselines {valid}/{args.meters}; 90 % intervals holding the truth "
          f"{held}/{valid} ({100 * held / max(valid, 1):.1f} %)")  # fmt: skip
    ok = elapsed < CEILING_S and rss_mb < CEILING_RSS_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
