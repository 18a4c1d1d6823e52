"""A console on real InfluxDB with a month of data: forge-a's main meter exchanged on
20 October at 12:10 without a recorded event (a register fall the data-quality page offers
to record), cnc-d's meter steady, October exported as v1, an open incident at each supplier,
and one user per role. Shared by the HTTP tests and the browser test."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import uvicorn

from app.console.server import Console, create_app
from deploy.stack import free_port
from processing.alerts import Incident, IncidentBook
from processing.emissions import FactorLibrary
from processing.jobs import HOUR_NS, Jobs, run_rollup
from supplymeter.config import Config
from supplymeter.operations import Operations
from supplymeter.records import Reading, datetime_to_ns
from supplymeter.store import Store, reading_line
from tests.conftest import with_settings
from tests.helpers import wait_until

TPE = ZoneInfo("Asia/Taipei")
PASSWORD = "correct horse battery"
USERS = {"alice": ("supplier", "forge-a"), "bob": ("supplier", "cnc-d"),
         "erin": ("energy_manager", None), "audrey": ("auditor", None),
         "root": ("admin", None)}  # fmt: skip
EXCHANGE_LOCAL = datetime(2026, 10, 20, 12, 7, 30, tzinfo=TPE)
OCTOBER_KWH = 744 * 40.0
"""forge-a/plant-1/main: +1 register unit an hour, CT ×40, all October (exact once the
exchange is recorded: old final 1468.125, new first 0)."""


def at(*args: int) -> int:
    return datetime_to_ns(datetime(*args, tzinfo=TPE))


def write_october(store: Store) -> None:
    start, end = at(2026, 10, 1), at(2026, 11, 1)
    exchange = datetime_to_ns(EXCHANGE_LOCAL)
    lines = []
    for t in range(start - HOUR_NS, end + 2 * HOUR_NS, 900 * 10**9):
        hours = (t - start) / HOUR_NS
        register = 1000.0 + hours if t < exchange else (t - exchange) / HOUR_NS
        lines.append(reading_line(Reading("forge-a", "plant-1", "main", t, None,
                                          energy_kwh=register, power_kw=40.0)))  # fmt: skip
    for t in range(start - HOUR_NS, end + 2 * HOUR_NS, 300 * 10**9):
        lines.append(reading_line(Reading("cnc-d", "plant-1", "main", t, None,
                                          energy_kwh=100.0 + (t - start) / HOUR_NS * 0.5,
                                          power_kw=0.5)))  # fmt: skip
    store.write(lines)


@dataclass
class Env:
    config: Config
    store: Store
    ops: Operations
    now: list[int]
    tmp: Path

    def jobs(self) -> Jobs:
        return Jobs(self.config, self.store, FactorLibrary.load(), clock=lambda: self.now[0],
                    operations=self.ops)  # fmt: skip

    def console(self) -> Console:
        return Console(self.config, self.store, self.ops, clock=lambda: self.now[0])


def make_env(config: Config, store: Store, tmp: Path) -> Env:
    config = with_settings(config, "jobs", export_dir=tmp / "exports", retry_delay_s=0)
    config = with_settings(config, "alerts", state_dir=tmp / "alerts")
    config = with_settings(config, "operations", database=str(tmp / "operations.sqlite"))
    config = dataclasses.replace(config, path=tmp / "cfg" / "supplymeter.toml")
    ops = Operations.from_config(config)
    env = Env(config, store, ops, [at(2026, 11, 5, 9)], tmp)
    write_october(store)
    start, end = at(2026, 10, 1), at(2026, 11, 1)
    run_rollup(config, store, start - HOUR_NS, end + HOUR_NS, FactorLibrary.load())
    jobs = env.jobs()
    assert jobs.run("rollup") and jobs.run("export")
    for name, (role, supplier) in USERS.items():
        ops.add_user(name, PASSWORD, role, supplier=supplier, registry=config.registry)
    book = IncidentBook(tmp / "alerts" / "incidents.json")
    for supplier in ("forge-a", "cnc-d"):
        key = f"spike/{supplier}/plant-1/main"
        book.open[key] = Incident(
            id=f"{key}@{env.now[0]}", key=key, type="spike", supplier=supplier,
            site="plant-1", subject="main", opened_ns=env.now[0], last_seen_ns=env.now[0],
            last_notified_ns=env.now[0], value=90.0, baseline=40.0, unit="kWh",
            detail=f"{supplier} main: 90 kWh in 15 min, usually 40", window_start_ns=env.now[0],
            window_end_ns=env.now[0], reason="more than twice the usual")  # fmt: skip
    (tmp / "alerts").mkdir(parents=True, exist_ok=True)
    book.save()
    return env


@contextmanager
def served(app: Any) -> Iterator[str]:
    """The app on a real uvicorn server on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def app_of(env: Env) -> Any:
    return create_app(env.console())
