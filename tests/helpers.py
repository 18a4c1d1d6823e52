"""Helpers the tests share (never imported by production code)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from influxdb_client import Point, WritePrecision

from deploy.stack import Mosquitto, find_binary
from supplymeter.records import Reading


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def reading_point(reading: Reading) -> Point:
    """A reading as an influxdb-client ``Point``: the reference serialization the store's
    hand-written ``reading_line`` must equal."""
    point = (
        Point("reading")
        .tag("supplier", reading.supplier)
        .tag("site", reading.site)
        .tag("meter", reading.meter)
        .time(reading.ts_ns, WritePrecision.NS)
    )
    if reading.seq is not None:
        point.field("seq", int(reading.seq))
    for name, number in reading.quantities().items():
        point.field(name, float(number))
    return point


class MosquittoFromFile(Mosquitto):
    """Mosquitto run with a given config file (e.g. what ``deploy mosquitto`` wrote);
    ``port`` is the plain listener it opens, used to tell when it is ready."""

    def __init__(self, *, root: Path, port: int, conf: Path) -> None:
        super().__init__(root=root, port=port)
        self.conf = conf

    def argv(self) -> list[str]:
        return [find_binary("mosquitto", "mosquitto"), "-c", str(self.conf)]

    def write_config(self) -> None:
        """The file is given, not written."""


class Killed(BaseException):
    """Stands for kill -9 at a step boundary: nothing after it runs, memory is dropped, only
    what is on disk remains (the test goes on with a fresh object, as a new process would)."""


def kill_at(name: str) -> Callable[[str], None]:
    """A ``step`` hook that raises :class:`Killed` when the job reaches step ``name``."""

    def step(reached: str) -> None:
        if reached == name:
            raise Killed(name)

    return step
