"""Run the simulator: every registry meter, one gateway per site, over a time range.

Backfill (``speed=None``) publishes as fast as the broker acknowledges; real time publishes
each reading when its timestamp comes round, ``speed`` simulated seconds per wall second.
Readings fall on multiples of each meter's ``interval_s`` from ``start`` to ``end``
inclusive, so every hour in ``[start, end)`` is bracketed by readings; the ledger holds the
exact consumption of each of those hours.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collector.payload import encode_readings, readings_topic
from simulators.gateway import Gateway
from simulators.ledger import HOUR_NS, Ledger
from simulators.plant import MeterModel
from supplymeter.config import Config, MeterRef, gateway_username
from supplymeter.records import datetime_to_ns

Progress = Callable[[float, int], None]
"""Called now and then with (fraction of the range done, messages acknowledged)."""


@dataclass(frozen=True)
class SimulationResult:
    messages: int
    """Reading messages the broker acknowledged."""
    ledger: Ledger
    ledger_path: Path | None
    wall_s: float


def check_range(start: datetime, end: datetime) -> tuple[int, int]:
    """``start``/``end`` as epoch ns; both timezone-aware, on hour boundaries, start < end."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a UTC offset, e.g. 2026-10-01T00:00:00+08:00")
    start_ns, end_ns = datetime_to_ns(start), datetime_to_ns(end)
    if start_ns % HOUR_NS or end_ns % HOUR_NS:
        raise ValueError("start and end must fall on whole hours")
    if start_ns >= end_ns:
        raise ValueError("start must be before end")
    return start_ns, end_ns


def schedule(
    refs: list[MeterRef], start_ns: int, end_ns: int
) -> Iterator[tuple[int, list[MeterRef]]]:
    """Each instant at which some meter reads, with the meters that read then."""
    step_s = math.gcd(*(r.meter.interval_s for r in refs))
    for ts_ns in range(start_ns, end_ns + 1, step_s * 10**9):
        due = [r for r in refs if (ts_ns // 10**9) % r.meter.interval_s == 0]
        if due:
            yield ts_ns, due


def simulate(
    config: Config,
    *,
    start: datetime,
    end: datetime,
    seed: int,
    speed: float | None = None,
    ledger_path: Path | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    gateway_passwords: Mapping[str, str] | None = None,
) -> SimulationResult:
    """Simulate ``[start, end]`` for every meter in the registry and publish it over MQTT.

    ``clock`` and ``sleep`` pace real-time mode (injected by tests). ``gateway_passwords``
    (user name → password, as ``supplymeter deploy mosquitto`` generates them) makes each
    gateway log in as itself; without it they connect anonymously.
    """
    start_ns, end_ns = check_range(start, end)
    if speed is not None and speed <= 0:
        raise ValueError("speed must be > 0")
    refs = config.registry.meters()
    models = {r.key: MeterModel(r, seed) for r in refs}
    last_load: dict[tuple[str, str, str], float | None] = {r.key: None for r in refs}
    ledger = Ledger()
    gateways: dict[tuple[str, str], Gateway] = {}
    wall_start = clock()
    messages = 0
    last_report = wall_start
    try:
        for supplier in config.registry.suppliers:
            for site in supplier.sites:
                gw = Gateway(
                    settings=config.mqtt,
                    secrets=config.secrets,
                    supplier=supplier.id,
                    site=site.id,
                    gateway=site.gateway,
                    password=(gateway_passwords or {}).get(
                        gateway_username(supplier.id, site.id, site.gateway)
                    ),
                )
                gw.connect()
                gateways[(supplier.id, site.id)] = gw
        for ts_ns, due in schedule(refs, start_ns, end_ns):
            if speed is not None:
                wait = wall_start + (ts_ns - start_ns) / 1e9 / speed - clock()
                if wait > 0:
                    sleep(wait)
            for ref in due:
                model = models[ref.key]
                reading = model.reading(ts_ns, last_load[ref.key])
                gateways[(ref.supplier.id, ref.site.id)].publish(
                    readings_topic(*ref.key), encode_readings([reading])
                )
                messages += 1
                if ts_ns < end_ns:
                    increment, load = model.advance(ts_ns, ref.meter.interval_s)
                    ledger.add(ref, ts_ns, increment)
                    last_load[ref.key] = load
            now = clock()
            if progress and now - last_report >= 2.0:
                progress((ts_ns - start_ns) / (end_ns - start_ns), messages)
                last_report = now
    finally:
        for gw in gateways.values():
            gw.close()
    if progress:
        progress(1.0, messages)
    if ledger_path is not None:
        ledger.write_csv(ledger_path)
    return SimulationResult(messages, ledger, ledger_path, clock() - wall_start)
