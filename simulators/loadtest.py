"""Load test: M synthetic meters publishing single readings at a steady target rate.

``supplymeter simulate --load-test --meters M --rate R --duration S`` writes the synthetic
registry it uses (``loadtest/site-NNN/mNNNN``, 100 meters per site, one gateway per site) so a
collector can be started against it, then publishes and reports the rate it actually achieved
— counted on the broker's acknowledgements, never on calls made (DESIGN.md: an unpaced QoS 1
flood made Mosquitto drop a publisher).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collector.payload import encode_readings, readings_topic
from simulators.gateway import Gateway
from supplymeter.config import Config
from supplymeter.records import Reading

METERS_PER_SITE = 100


def registry_toml(meters: int) -> str:
    """A registry of ``meters`` electricity meters for load tests."""
    if meters < 1:
        raise ValueError("meters must be >= 1")
    lines = [
        "# Synthetic registry written by `supplymeter simulate --load-test`.",
        '[[suppliers]]\nid = "loadtest"\nkind = "other"',
        'allocation = { method = "dedicated", share = 1.0 }',
    ]
    for i in range(meters):
        if i % METERS_PER_SITE == 0:
            lines.append(f'  [[suppliers.sites]]\n  id = "site-{i // METERS_PER_SITE:03d}"')
        lines.append(f'    [[suppliers.sites.meters]]\n    id = "m{i:05d}"')
        lines.append('    carrier = "electricity"\n    interval_s = 60')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LoadTestResult:
    target_rate: float
    acknowledged: int
    wall_s: float

    @property
    def achieved_rate(self) -> float:
        """Readings the broker acknowledged per second."""
        return self.acknowledged / self.wall_s if self.wall_s else 0.0


def load_test(
    config: Config,
    meters: int,
    rate: float,
    duration_s: float,
    progress: Callable[[float, int], None] | None = None,
) -> LoadTestResult:
    """Publish ``rate`` single-reading messages per second for ``duration_s`` seconds,
    round-robin over ``meters`` synthetic meters; device time = wall time."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be > 0")
    sites = (meters + METERS_PER_SITE - 1) // METERS_PER_SITE
    gateways = [
        Gateway(settings=config.mqtt, secrets=config.secrets, supplier="loadtest",
                site=f"site-{s:03d}", gateway="gw1", max_outstanding=200)
        for s in range(sites)
    ]  # fmt: skip
    registers = [0.0] * meters
    topics = [
        readings_topic("loadtest", f"site-{i // 100:03d}", f"m{i:05d}") for i in range(meters)
    ]
    sent = 0
    began = time.monotonic()
    last_report = began
    try:
        for gw in gateways:
            gw.connect()
        while True:
            now = time.monotonic()
            elapsed = now - began
            if elapsed >= duration_s:
                break
            due = min(int(elapsed * rate) + 1, int(duration_s * rate)) - sent
            if due <= 0:
                time.sleep(min(0.002, 1 / rate))
                continue
            ts_ns = time.time_ns()
            for _ in range(due):
                i = sent % meters
                registers[i] = round(registers[i] + 0.5, 3)
                reading = Reading(
                    "loadtest", "", "", ts_ns, sent // meters, energy_kwh=registers[i]
                )
                gateways[i // METERS_PER_SITE].publish(topics[i], encode_readings([reading]))
                sent += 1
            if progress and now - last_report >= 2.0:
                progress(elapsed / duration_s, sum(g.acked for g in gateways))
                last_report = now
        for gw in gateways:
            gw.flush()
        wall = time.monotonic() - began
    finally:
        for gw in gateways:
            gw.close()
    acked = sum(g.acked for g in gateways) - 2 * len(gateways)  # minus online/offline status
    return LoadTestResult(rate, min(acked, sent), wall)


LOADTEST_DATABASE = "supplymeter_loadtest"
"""The load test's own database: its synthetic meters never mix with the real ones."""


def write_registry(path: Path, meters: int, config: Config | None = None) -> Path:
    """The synthetic registry at ``path`` and, with ``config``, a services file beside it
    (``supplymeter.toml``): the same broker and InfluxDB server, but the load test's own
    database and collector client id. Returns the services file (or the registry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(registry_toml(meters))
    if config is None:
        return path
    services = path.parent / "supplymeter.toml"
    m, i = config.mqtt, config.influxdb
    services.write_text(
        "# Written by `supplymeter simulate --load-test`: a collector for the synthetic meters,\n"
        "# into their own database. Start it with: supplymeter -c THIS_FILE collect\n"
        f'registry = "{path.resolve()}"\n'
        f'[mqtt]\nhost = "{m.host}"\nport = {m.port}\nprotocol = "{m.protocol}"\n'
        f'client_id = "supplymeter-loadtest"\n'
        + (f'username = "{m.username}"\n' if m.username else "")
        + f'[influxdb]\nurl = "{i.url}"\ndatabase = "{LOADTEST_DATABASE}"\n'
        + (f'username = "{i.username}"\n' if i.username else "")
    )
    return services
