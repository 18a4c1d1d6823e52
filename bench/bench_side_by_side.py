"""The collector side by side with what a user might pick instead, in one run.

Same Mosquitto, same InfluxDB 1.x (a fresh pair per contender and run, so no session or
shared-group state leaks between them), same load:

* **Drain**: ``BENCH_MESSAGES`` (50,000) single-reading QoS 1 messages queued in the
  contender's persistent session while it is away, then drained into InfluxDB. Rate from its
  start to the last reading stored (and from the first stored point), each contender
  ``BENCH_RUNS`` (2) times, medians; share of the bare paho subscriber on the same protocol
  in the same run (that one only counts, its rate taken at its last message); peak RSS.
* **Faults**: ``BENCH_FAULT_READINGS`` (20,000) readings published live at 2,000/s; 3 s in,
  InfluxDB is paused (SIGSTOP) for 20 s / killed and restarted 20 s later / the bridge is
  killed (SIGKILL) and restarted. Readings stored at the end.

Contenders: bare paho (ceiling), the collector in its configurations, and — when ``make
bench-peers`` installed it — a Node-RED flow (mqtt in → join → influxdb batch; see
``bench/peers.py``). Targets (issue "Collector: ahead of every tool"): one process ≥ 60 % of
bare paho on its protocol and ≥ 1.2 × the Node-RED flow; the default configuration ≥ 1.5 ×
the Node-RED flow; every reading stored under both faults; peak RSS < 150 MB per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as paho

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_collector import BASE_MS, CollectorProcess, bare_subscriber, payloads, publish
from peers import NodeRed, installed

from deploy.stack import LocalStack
from supplymeter.influx import InfluxClient
from supplymeter.store import Store

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "50000"))
RUNS = int(os.environ.get("BENCH_RUNS", "2"))
FAULT_READINGS = int(os.environ.get("BENCH_FAULT_READINGS", "20000"))
FAULTS = os.environ.get("BENCH_FAULTS", "1") != "0"
"""``BENCH_FAULTS=0``: the drains only."""
FAULT_RATE = 2000.0
OUTAGE_S = 20.0


class Contender(Protocol):
    def start(self) -> None: ...
    def away(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def peak_rss_mb(self) -> float: ...


class Collector:
    """``supplymeter collect`` (``bench_collector.CollectorProcess``) as a contender."""

    def __init__(self, tmp: Path, stack: LocalStack, db: str, protocol: str, processes: int):
        self.p = CollectorProcess(tmp, stack, db, protocol, processes)

    def start(self) -> None:
        self.p.start()

    def stop(self) -> None:
        self.p.stop()

    def away(self) -> None:
        self.p.stop()  # acknowledged = stored: a graceful stop leaves the session's queue

    def kill(self) -> None:
        assert self.p.proc
        self.p.proc.kill()  # SIGKILL
        self.p.proc.wait(30)

    def peak_rss_mb(self) -> float:
        return self.p.peak_rss_mb()


Factory = Callable[[Path, LocalStack, str], Contender]


def count(stack: LocalStack, db: str) -> int:
    return Store(InfluxClient(url=stack.influxdb.url, database=db)).count_readings(0, 2**62)


def wait_count(stack: LocalStack, db: str, target: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if count(stack, db) >= target:
            return True
        time.sleep(0.1)
    return False


def settle(stack: LocalStack, db: str, target: int, timeout_s: float = 120.0) -> int:
    """The stored count once it reaches ``target`` or stops moving for 15 s."""
    deadline, last, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        n = count(stack, db)
        if n >= target:
            return n
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > 15:
            return n
        time.sleep(0.25)
    return count(stack, db)


def ready(stack: LocalStack, db: str, contender: Contender) -> None:
    """Start ``contender`` and prove its subscription and its writes with a probe reading."""
    contender.start()
    topic, _ = payloads(1, 1, 0)[0]  # an hour before the load's first reading: its own point
    probe = json.dumps({"ts": BASE_MS - 3_600_000, "energy_kwh": 1.0}).encode()
    # Until its subscription exists a probe reaches nobody: send it again (the same point).
    for _ in range(30):
        publish(stack.mosquitto.port, [(topic, probe)])
        if wait_count(stack, db, 1, 2):
            return
    raise RuntimeError("contender stored nothing within 60 s")


@contextlib.contextmanager
def arena(make: Factory, db: str) -> Iterator[tuple[LocalStack, Contender]]:
    """A fresh Mosquitto + InfluxDB and a contender proven ready on them; stopped after."""
    with tempfile.TemporaryDirectory() as t, LocalStack.on_free_ports(Path(t)) as stack:
        InfluxClient(url=stack.influxdb.url, database=db).ensure_database()
        contender = make(Path(t), stack, db)
        try:
            ready(stack, db, contender)
            yield stack, contender
        finally:
            contender.stop()


def drain(make: Factory) -> tuple[float, float, float, int]:
    """(readings/s incl. start-up, after the first stored point, peak RSS MB, stored)."""
    db = "side"
    with arena(make, db) as (stack, contender):
        contender.away()
        publish(stack.mosquitto.port, payloads(MESSAGES, 1, 0))
        target = MESSAGES + 1
        began = time.perf_counter()
        contender.start()
        first_t, first_n = None, 0
        while True:
            n = count(stack, db)
            now = time.perf_counter()
            if first_t is None and n > 1:
                first_t, first_n = now, n
            if n >= target:
                break
            if now - began > 300:
                raise RuntimeError(f"drain stuck at {n:,}/{target:,}")
            time.sleep(0.05)
        rss = contender.peak_rss_mb()
    after = (target - first_n) / (now - first_t) if first_t and now > first_t else 0.0
    return MESSAGES / (now - began), after, rss, n - 1


def bare(protocol: int) -> float:
    """The bare subscriber (``bench_collector.bare_subscriber``) on a fresh broker."""
    with tempfile.TemporaryDirectory() as t, LocalStack.on_free_ports(Path(t)) as stack:
        return bare_subscriber(stack.mosquitto.port, protocol, MESSAGES, 0)


def fault(make: Factory, kind: str) -> int:
    """Readings stored of FAULT_READINGS published live while ``kind`` happens 3 s in."""
    db = "fault"
    with arena(make, db) as (stack, contender):
        messages = payloads(FAULT_READINGS, 1, 0)
        publisher = threading.Thread(
            target=publish, args=(stack.mosquitto.port, messages, FAULT_RATE), daemon=True
        )
        publisher.start()
        time.sleep(3)
        influx_pid = stack.influxdb.pid()
        assert influx_pid is not None
        if kind == "influx paused":
            os.kill(influx_pid, signal.SIGSTOP)
            time.sleep(OUTAGE_S)
            os.kill(influx_pid, signal.SIGCONT)
        elif kind == "influx killed":
            os.kill(influx_pid, signal.SIGKILL)
            time.sleep(OUTAGE_S)
            stack.influxdb.stop()
            stack.influxdb.start(detach=False)
        else:  # bridge killed
            contender.kill()
            time.sleep(1)
            contender.start()
        publisher.join()
        return settle(stack, db, FAULT_READINGS + 1) - 1


def main() -> None:
    print(f"side by side: {MESSAGES:,}-message drains x {RUNS}, faults on "
          f"{FAULT_READINGS:,} live readings; 2 cores", flush=True)  # fmt: skip
    ceilings = {"3.1.1": statistics.median(bare(paho.MQTTv311) for _ in range(RUNS)),
                "5": statistics.median(bare(paho.MQTTv5) for _ in range(RUNS))}  # fmt: skip
    for proto, rate in ceilings.items():
        print(f"  {'bare paho subscriber, MQTT ' + proto:<44} {rate:>9,.0f} msg/s   ceiling",
              flush=True)  # fmt: skip

    def collector(protocol: str, processes: int | None = 1) -> Factory:
        return lambda tmp, stack, db: Collector(tmp, stack, db, protocol, processes)

    def nodered(tmp: Path, stack: LocalStack, db: str) -> Contender:
        return NodeRed(tmp / "node-red", stack.mosquitto.port, stack.influxdb.url, db)

    contenders: list[tuple[str, str, Factory]] = [
        (f"supplymeter, defaults (auto: {min(os.cpu_count() or 1, 8)} processes, MQTT 5)", "5",
         collector("5", None)),
        ("supplymeter, 1 process (MQTT 5)", "5", collector("5")),
        ("supplymeter, 1 process, 3.1.1", "3.1.1", collector("3.1.1")),
        ("supplymeter, processes = 2, 3.1.1", "3.1.1", collector("3.1.1", 2)),
    ]  # fmt: skip
    if installed():
        contenders.append(("Node-RED flow (mqtt in → join → influxdb batch)", "3.1.1", nodered))
    else:
        print("  (Node-RED not installed: `make bench-peers` adds it as a peer)")
    rates: dict[str, float] = {}
    for name, proto, make in contenders:
        runs = [drain(make) for _ in range(RUNS)]
        rate = statistics.median(r[0] for r in runs)
        after = statistics.median(r[1] for r in runs)
        rates[name] = rate
        print(f"  {name:<44} {rate:>9,.0f} readings/s  after first point {after:>7,.0f}  "
              f"{rate / ceilings[proto]:.2f} of bare {proto}  RSS {max(r[2] for r in runs):.0f} MB"
              f"  stored {min(r[3] for r in runs):,}/{MESSAGES:,}", flush=True)  # fmt: skip
    peer = rates.get("Node-RED flow (mqtt in → join → influxdb batch)")
    defaults, one = rates[contenders[0][0]], rates[contenders[1][0]]
    print(f"  target: one process >= 0.60 of bare MQTT 5: {one / ceilings['5']:.2f} "
          f"({'OK' if one >= 0.6 * ceilings['5'] else 'NOT MET'})")  # fmt: skip
    if peer:
        best_one = max(one, rates[contenders[2][0]])
        print(f"  target: one process >= 1.2 x Node-RED: {best_one / peer:.2f} x "
              f"({'OK' if best_one >= 1.2 * peer else 'NOT MET'})")  # fmt: skip
        print(f"  target: defaults >= 1.5 x Node-RED: {defaults / peer:.2f} x "
              f"({'OK' if defaults >= 1.5 * peer else 'NOT MET'})")  # fmt: skip
    for kind in ("influx paused", "influx killed", "bridge killed") if FAULTS else ():
        for name, _, make in [contenders[0], *([contenders[-1]] if peer else [])]:
            stored = fault(make, kind)
            verdict = "OK" if stored == FAULT_READINGS else f"LOST {FAULT_READINGS - stored:,}"
            print(f"  fault: {kind:<14} {name:<44} stored {stored:,}/{FAULT_READINGS:,} "
                  f"({verdict})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
