"""The collector's batching and in-flight settings swept on the side-by-side drain.

For each (``mqtt.receive_maximum``, ``collector.batch_size``, ``collector.flush_interval_s``)
the same drain as ``bench_side_by_side.py``: ``BENCH_MESSAGES`` (50,000) single-reading QoS 1
messages queued in the session, then drained by one collector process (MQTT 5) on a fresh
Mosquitto + InfluxDB; ``BENCH_RUNS`` (2) runs, medians. The defaults are marked; the issue
"Collector: ahead of every tool" asks for defaults chosen by measurement.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_collector import CollectorProcess
from bench_side_by_side import MESSAGES, RUNS, Collector, drain

from supplymeter.config import CollectorSettings, MqttSettings

GRID = [(1000, 1000, 0.25), (1000, 5000, 0.25), (10000, 1000, 0.25), (10000, 5000, 0.25),
        (10000, 20000, 0.25), (10000, 5000, 1.0), (30000, 20000, 0.25)]  # fmt: skip


class Tuned(Collector):
    def __init__(self, tmp: Path, stack, db: str, receive_maximum: int, batch: int,
                 flush: float) -> None:  # fmt: skip
        self.p = CollectorProcess(
            tmp,
            stack,
            db,
            "5",
            1,
            mqtt=f"receive_maximum = {receive_maximum}",
            collector=f"batch_size = {batch}\nflush_interval_s = {flush}",
        )


def main() -> None:
    defaults = (MqttSettings().receive_maximum, CollectorSettings().batch_size,
                CollectorSettings().flush_interval_s)  # fmt: skip
    print(f"collector settings sweep: {MESSAGES:,}-message drains x {RUNS}, 1 process, MQTT 5",
          flush=True)  # fmt: skip
    for rx, batch, flush in GRID:
        runs = [drain(lambda t, s, d, a=(rx, batch, flush): Tuned(t, s, d, *a))
                for _ in range(RUNS)]  # fmt: skip
        rate = statistics.median(r[0] for r in runs)
        after = statistics.median(r[1] for r in runs)
        mark = "  (defaults)" if (rx, batch, flush) == defaults else ""
        print(f"  receive_maximum {rx:>6,}  batch_size {batch:>6,}  flush {flush:>4} s  "
              f"{rate:>9,.0f} readings/s  after first point {after:>8,.0f}  "
              f"RSS {max(r[2] for r in runs):.0f} MB{mark}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
