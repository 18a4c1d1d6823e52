"""Collector benchmarks on real Mosquitto + InfluxDB (issue: collector throughput and faults).

Prints, in one run, each figure beside its ceiling or target:

* ceilings — a bare paho subscriber that only counts messages (MQTT 5 and 3.1.1), draining a
  QoS 1 backlog from its persistent session; InfluxDB's raw ingest of pre-built line protocol;
* the collector end to end (a ``supplymeter collect`` process): publish → stored and
  acknowledged, single-reading messages (both protocol versions) and 100-reading batches,
  measured as backlog drains so the publisher's speed does not cap the figure;
* publish-to-stored latency p50/p99 at 5,000 readings/s;
* a 500,000-message backlog (collector stopped while publishing) drained with zero loss;
* the collector's peak RSS.

Environment: ``BENCH_MESSAGES`` (default 100000) sizes the drains, ``BENCH_BACKLOG`` (default
500000) the big backlog, ``BENCH_LATENCY_S`` (default 20) the latency run.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.payload import readings_topic
from deploy.stack import LocalStack, free_port
from supplymeter.config import load_config
from supplymeter.influx import InfluxClient
from supplymeter.store import Store

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "100000"))
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "500000"))
LATENCY_S = float(os.environ.get("BENCH_LATENCY_S", "20"))
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def line(name: str, value: str, target: str = "") -> None:
    print(f"  {name:<52} {value:>22}   {target}", flush=True)


# --- traffic ------------------------------------------------------------------------------


def meters() -> list[tuple[str, str, str]]:
    config = load_config(ROOT / "supplymeter.toml", {})
    return [r.key for r in config.registry.meters() if r.meter.carrier == "electricity"]


def payloads(count: int, per_message: int, offset: int) -> list[tuple[str, bytes]]:
    """``count`` messages of ``per_message`` readings, round-robin over the electricity meters,
    1 s apart per meter from ``offset`` seconds after 2026-01-01."""
    keys = meters()
    out = []
    for i in range(count):
        key = keys[i % len(keys)]
        first = offset + (i // len(keys)) * per_message
        readings = [{"ts": BASE_MS + (first + j) * 1000, "energy_kwh": float(first + j)}
                    for j in range(per_message)]  # fmt: skip
        body = readings[0] if per_message == 1 else {"readings": readings}
        out.append((readings_topic(*key), json.dumps(body).encode()))
    return out


def publish(port: int, messages: list[tuple[str, bytes]], rate: float | None = None) -> float:
    """Publish QoS 1, at most 20 in flight and 1,000 unacknowledged; returns seconds taken.
    With ``rate``, paces to that many messages per second."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    outstanding: deque[paho.MQTTMessageInfo] = deque()
    started = time.perf_counter()
    for i, (topic, body) in enumerate(messages):
        if rate:
            wait = started + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        outstanding.append(client.publish(topic, body, qos=1))
        while len(outstanding) > 1000:
            outstanding.popleft().wait_for_publish(60)
    while outstanding:
        outstanding.popleft().wait_for_publish(60)
    took = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return took


# --- ceilings -----------------------------------------------------------------------------


def bare_subscriber(port: int, protocol: int, count: int, offset: int) -> float:
    """Drain ``count`` queued messages with a subscriber that only counts; messages/s."""
    client_id = f"bare-{protocol}-{offset}"
    received = [0]
    last = [0.0]

    def on_message(*_: object) -> None:
        received[0] += 1
        if received[0] == count:  # the rate ends at the last message, not at loop_stop()
            last[0] = time.perf_counter()

    def make() -> paho.Client:
        kwargs = {"clean_session": False} if protocol == paho.MQTTv311 else {}
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                        **kwargs)  # fmt: skip
        c.on_message = on_message
        return c

    def connect(c: paho.Client) -> None:
        if protocol == paho.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            c.connect("127.0.0.1", port, clean_start=False, properties=props)
        else:
            c.connect("127.0.0.1", port)

    first = make()
    connect(first)
    first.subscribe("energy/v1/#", qos=1)
    first.loop_start()
    time.sleep(0.5)
    first.disconnect()
    first.loop_stop()
    publish(port, payloads(count, 1, offset))
    received[0] = 0
    second = make()
    started = time.perf_counter()
    connect(second)
    second.loop_start()
    while received[0] < count:
        time.sleep(0.01)
    took = last[0] - started
    second.disconnect()
    second.loop_stop()
    return count / took


def influx_ingest(url: str, lines_total: int = 200_000) -> float:
    client = InfluxClient(url=url, database="bench_raw")
    client.ensure_database()
    lines = [f"reading,meter=m{i % 20},site=s,supplier=x energy_kwh={i} {BASE_MS * 10**6 + i}"
             for i in range(lines_total)]  # fmt: skip
    started = time.perf_counter()
    for i in range(0, lines_total, 5000):
        client.write_lines(lines[i : i + 5000])
    return lines_total / (time.perf_counter() - started)


# --- the collector as a process -----------------------------------------------------------


class CollectorProcess:
    """``supplymeter collect`` with its own config; metrics scraped over HTTP (process ``i`` of
    ``processes`` serves on ``metrics_port + i``)."""

    def __init__(
        self, tmp: Path, stack: LocalStack, database: str, protocol: str,
        processes: int | None = 1, mqtt: str = "", collector: str = "",
    ) -> None:  # fmt: skip
        """``processes=None``: the default, ``"auto"`` (one per core on MQTT 5 here, where
        Mosquitto offers shared subscriptions; one on 3.1.1). ``mqtt``/``collector``: more
        TOML lines for those sections (a settings sweep)."""
        self.metrics_port = free_port()
        auto = min(os.cpu_count() or 1, 8) if protocol == "5" else 1
        self.processes = processes or auto
        self.config = tmp / f"collector-{database}.toml"
        group = 'shared_group = "collectors"' if processes and processes > 1 else ""
        count = f"processes = {processes}" if processes else ""
        self.config.write_text(f"""
registry = "{ROOT / "suppliers.toml"}"
[mqtt]
port = {stack.mosquitto.port}
protocol = "{protocol}"
client_id = "bench-{database}"
{group}
{mqtt}
[influxdb]
url = "{stack.influxdb.url}"
database = "{database}"
[collector]
metrics_port = {self.metrics_port}
{count}
{collector}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "--config", str(self.config), "collect"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.total("mqtt_connected") == self.processes:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("collector did not start")

    def metric(self, name: str, process: int = 0) -> float:
        url = f"http://127.0.0.1:{self.metrics_port + process}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        match = re.search(rf"^supplymeter_collector_{name}\{{[^}}]*\}} (\S+)$", text, re.M)
        return float(match[1]) if match else 0.0

    def total(self, name: str) -> float:
        """A metric summed over the collector's processes."""
        return sum(self.metric(name, i) for i in range(self.processes))

    def peak_rss_mb(self) -> float:
        assert self.proc
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(60)


def drain(
    tmp: Path, stack: LocalStack, database: str, protocol: str,
    messages: list[tuple[str, bytes]], processes: int = 1, collector_toml: str = "",
) -> tuple[float, float, int]:  # fmt: skip
    """Queue ``messages`` while the collector is away, then time it storing and acking them.
    Returns (messages/s, peak RSS MB of the first process, readings stored).
    ``collector_toml``: more lines for the collector's ``[collector]`` section."""
    collector = CollectorProcess(tmp, stack, database, protocol, processes,
                                 collector=collector_toml)  # fmt: skip
    began = time.perf_counter()
    collector.start()  # creates the persistent session(s); nothing is queued yet
    startup_s = time.perf_counter() - began
    collector.stop()
    publish(stack.mosquitto.port, messages)
    began = time.perf_counter()
    collector.start()
    while collector.total("acks_sent_total") < len(messages):
        time.sleep(0.02)
    # The processes' own start-up (interpreter, imports, connect), timed above on an empty
    # session, is not the collector's throughput.
    took = time.perf_counter() - began - startup_s
    rss = collector.peak_rss_mb()
    collector.stop()
    client = InfluxClient(url=stack.influxdb.url, database=database)
    stored = Store(client).count_readings(0, 2**62)
    return len(messages) / took, rss, stored


def latency(
    tmp: Path, stack: LocalStack, rate: float, seconds: float
) -> tuple[float, float, float]:
    """Publish ``rate`` single-reading messages/s; poll InfluxDB's count to see each stored."""
    collector = CollectorProcess(tmp, stack, "bench_latency", "5")
    collector.start()
    count = int(rate * seconds)
    messages = payloads(count, 1, 0)
    client = InfluxClient(url=stack.influxdb.url, database="bench_latency")
    store = Store(client)
    seen: list[tuple[float, int]] = []
    import threading

    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.append((time.perf_counter(), store.count_readings(0, 2**62)))
            time.sleep(0.1)  # the count query costs CPU the collector shares

    poller = threading.Thread(target=poll, daemon=True)
    started = time.perf_counter()
    poller.start()
    publish(stack.mosquitto.port, messages, rate=rate)
    while not seen or seen[-1][1] < count:
        time.sleep(0.05)
    stop.set()
    poller.join()
    rss = collector.peak_rss_mb()
    collector.stop()
    # Reading i was published at started + i / rate (paced) and stored by the first poll
    # whose count exceeds i (one publisher, one writer thread: stored in order).
    waits, j = [], 0
    for i in range(0, count, max(1, count // 2000)):
        while seen[j][1] <= i:
            j += 1
        waits.append(seen[j][0] - (started + i / rate))
    waits.sort()
    return statistics.median(waits), waits[int(len(waits) * 0.99)], rss


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        LocalStack.on_free_ports(Path(tmp_name)) as stack,
    ):
        tmp = Path(tmp_name)
        port = stack.mosquitto.port
        print(f"collector benchmarks ({MESSAGES:,} messages per drain), Mosquitto + InfluxDB on "
              "loopback, 2 cores", flush=True)  # fmt: skip
        bare5 = bare_subscriber(port, paho.MQTTv5, MESSAGES, 0)
        line("ceiling: bare paho subscriber, MQTT 5", f"{bare5:,.0f} msg/s")
        bare3 = bare_subscriber(port, paho.MQTTv311, MESSAGES, 10**6)
        line("ceiling: bare paho subscriber, MQTT 3.1.1", f"{bare3:,.0f} msg/s")
        raw = influx_ingest(stack.influxdb.url)
        line("ceiling: InfluxDB raw ingest, 5,000-line batches", f"{raw:,.0f} lines/s")
        rss = []
        for proto, bare in (("5", bare5), ("3.1.1", bare3)):
            rate, peak, stored = drain(tmp, stack, f"bench_single_{proto.replace('.', '')}",
                                       proto, payloads(MESSAGES, 1, 0))  # fmt: skip
            rss.append(peak)
            line(f"collector, single-reading messages, MQTT {proto}", f"{rate:,.0f} readings/s",
                 f"{rate / bare:.0%} of this protocol's bare ceiling, target >= 60%: "
                 f"{'OK' if rate >= 0.6 * bare else 'NOT MET'}; "
                 f"stored {stored:,}/{MESSAGES:,}")  # fmt: skip
        rate, _, stored = drain(tmp, stack, "bench_two", "3.1.1", payloads(MESSAGES, 1, 0), 2)
        line("collector, 2 processes (shared subscription), MQTT 3.1.1", f"{rate:,.0f} readings/s",
             f"target >= 20,000 single-reading readings/s (one process cannot: its bare "
             f"ceiling is {bare3:,.0f}): {'OK' if rate >= 20_000 else 'NOT MET'}; "
             f"stored {stored:,}/{MESSAGES:,}")  # fmt: skip
        batches = max(MESSAGES // 20, 100)
        rate, peak, stored = drain(tmp, stack, "bench_batch", "5", payloads(batches, 100, 0))
        rss.append(peak)
        line("collector, 100-reading batches, MQTT 5", f"{rate * 100:,.0f} readings/s",
             f"target >= 150,000: {'OK' if rate * 100 >= 150_000 else 'NOT MET'}; "
             f"stored {stored:,}/{batches * 100:,}")  # fmt: skip
        p50, p99, peak = latency(tmp, stack, 5000, LATENCY_S)
        rss.append(peak)
        line("publish → stored latency at 5,000 readings/s, p50", f"{p50:.3f} s")
        line("publish → stored latency at 5,000 readings/s, p99", f"{p99:.3f} s",
             f"target < 2 s: {'OK' if p99 < 2 else 'NOT MET'}")  # fmt: skip
        rate, peak, stored = drain(tmp, stack, "bench_backlog", "5", payloads(BACKLOG, 1, 0))
        rss.append(peak)
        line(f"backlog of {BACKLOG:,} drained (collector away while publishing)",
             f"{rate:,.0f} readings/s",
             f"zero loss: {'OK' if stored == BACKLOG else f'LOST {BACKLOG - stored}'}")  # fmt: skip
        line("collector peak RSS (max over runs)", f"{max(rss):.0f} MB",
             f"target < 250 MB: {'OK' if max(rss) < 250 else 'NOT MET'}")  # fmt: skip


if __name__ == "__main__":
    main()
