"""Fixtures: a real InfluxDB for the session, a real Mosquitto per test, configs on them.

Each test gets its own database (dropped afterwards) and its own broker, so no test sees
another's data or retained messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import signal
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.stack import InfluxDB, Mosquitto, free_port
from supplymeter.config import Config, load_config
from supplymeter.influx import InfluxClient, quote_ident

ROOT = Path(__file__).resolve().parents[1]

# Every process a test starts inherits this mark; at the end of the session none may be left.
SESSION_MARK = f"SUPPLYMETER_TEST_SESSION={uuid.uuid4().hex}"
os.environ["SUPPLYMETER_TEST_SESSION"] = SESSION_MARK.partition("=")[2]


def leftover_processes() -> list[tuple[int, str]]:
    """(pid, command line) of live processes started by this test session, other than
    pytest itself."""
    out = []
    mark = SESSION_MARK.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if cmdline:  # zombies have none: they are gone, only not yet reaped
            out.append((int(entry.name), cmdline))
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing started by the tests outlives them: leftovers are killed and fail the run."""
    left = leftover_processes()
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        lines = "\n".join(f"  {pid}: {cmd[:200]}" for pid, cmd in left)
        print(f"\nprocesses started by the tests were still running (killed now):\n{lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


SMALL_REGISTRY = """
[[suppliers]]
id = "forge-a"
kind = "forging"
allocation = { method = "physical", share = 0.5 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    multiplier = 40
    rollover = 100000
    simulation = { mean_load = 800, initial_register = 99990 }
    [[suppliers.sites.meters]]
    id = "gas"
    carrier = "natural_gas"
    interval_s = 3600
    simulation = { mean_load = 20 }

[[suppliers]]
id = "cnc-d"
kind = "machining"
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    interval_s = 300
    rollover = 1000
    simulation = { mean_load = 120, initial_register = 900 }
"""


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    server = InfluxDB(
        root=tmp_path_factory.mktemp("influxdb"), port=free_port(), rpc_port=free_port()
    )
    server.start(detach=False)
    yield server
    server.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(root=tmp_path / "mosquitto", port=free_port())
    server.start(detach=False)
    yield server
    server.stop()


_db_numbers = itertools.count()


@pytest.fixture
def influx(influx_server: InfluxDB) -> Iterator[InfluxClient]:
    """A client on a fresh database of the session's InfluxDB."""
    client = InfluxClient(url=influx_server.url, database=f"test{next(_db_numbers)}", retries=2)
    client.ensure_database()
    yield client
    client.execute(f"DROP DATABASE {quote_ident(client.database)}")
    client.close()


def write_config(directory: Path, registry: str, services: str = "") -> Path:
    """A services file + registry under ``directory``; returns the services file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "suppliers.toml").write_text(textwrap.dedent(registry))
    path = directory / "supplymeter.toml"
    path.write_text('registry = "suppliers.toml"\n' + textwrap.dedent(services))
    return path


def pointed_at(config: Config, broker: Mosquitto | None, influx: InfluxClient) -> Config:
    """``config`` using the test's broker and database."""
    update: dict[str, object] = {
        "influxdb": config.influxdb.model_copy(
            update={"url": influx.url, "database": influx.database}
        ),
        "collector": config.collector.model_copy(update={"flush_interval_s": 0.2}),
    }
    if broker is not None:
        update["mqtt"] = config.mqtt.model_copy(update={"port": broker.port})
    return dataclasses.replace(config, services=config.services.model_copy(update=update))


def with_settings(config: Config, section: str, **values: object) -> Config:
    """``config`` with some settings of one section (``mqtt``, ``collector``...) changed."""
    changed = getattr(config.services, section).model_copy(update=values)
    services = config.services.model_copy(update={section: changed})
    return dataclasses.replace(config, services=services)


@pytest.fixture
def make_config(tmp_path: Path, broker: Mosquitto, influx: InfluxClient) -> Callable[[str], Config]:
    """Build a config from registry text, pointed at this test's broker and database."""

    def make(registry: str = SMALL_REGISTRY) -> Config:
        return pointed_at(load_config(write_config(tmp_path / "cfg", registry), {}), broker, influx)

    return make


@pytest.fixture(scope="session")
def example_config() -> Config:
    """The shipped example config and registry."""
    return load_config(ROOT / "supplymeter.toml", {})
