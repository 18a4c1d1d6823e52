"""Benchmark: the console's *Now* page, served for real (uvicorn) on real InfluxDB 1.6.

Targets (issue "A web console for the buyer and each supplier"):

* *Now* for 4 suppliers × 25 meters: server time < 300 ms p95;
* *Now* with 2,000 meters (paginated, 100 a page): < 1 s p95 per page;
* the live update sends only what changed: with nothing new, no row; after one meter's new
  reading, that meter's row alone.

Every meter has 28 days of hourly consumption (its usual range), today's hours so far and
the last two hours of 15-minute readings, written straight to InfluxDB first (not timed).
The first request of each page is reported apart: it reads the usual ranges, which are then
kept until the hour turns. Run with ``make bench`` (``--meters N`` for one size).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import uvicorn

from app.console.server import Console, create_app
from deploy.stack import InfluxDB, free_port
from supplymeter.config import load_config
from supplymeter.influx import InfluxClient
from supplymeter.operations import Operations
from supplymeter.records import HourlyConsumption, Reading, datetime_to_ns
from supplymeter.store import HOUR_NS, Store, consumption_line, reading_line, status_line

TPE = ZoneInfo("Asia/Taipei")
SMALL_CEILING_MS, LARGE_CEILING_MS = 300.0, 1000.0
NOW = datetime(2026, 11, 18, 15, 20, tzinfo=TPE)
PASSWORD = "bench password 1"


@contextmanager
def served(app: object) -> Iterator[str]:
    """The console on a real uvicorn server on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def registry(meters: int, suppliers: int = 4, per_site: int = 25) -> str:
    lines = []
    per_supplier = meters // suppliers
    for s in range(suppliers):
        lines += [f'[[suppliers]]\nid = "s{s}"\nkind = "forging"',
                  'allocation = { method = "dedicated", share = 1.0 }']  # fmt: skip
        for i in range(per_supplier):
            if i % per_site == 0:
                lines.append(f'  [[suppliers.sites]]\n  id = "site-{i // per_site:03d}"\n'
                             '  gateway = "gw"')  # fmt: skip
            lines.append(f'    [[suppliers.sites.meters]]\n    id = "m{i:04d}"\n'
                         '    carrier = "electricity"')  # fmt: skip
    return "\n".join(lines) + "\n"


def fill(client: InfluxClient, config: object, now_ns: int) -> None:
    refs = config.registry.meters()  # type: ignore[attr-defined]
    start = now_ns - now_ns % HOUR_NS - 29 * 24 * HOUR_NS
    batch: list[str] = []
    for n, ref in enumerate(refs):
        base = 20.0 + n % 7
        for hour in range(start, now_ns - now_ns % HOUR_NS, HOUR_NS):
            h = HourlyConsumption(*ref.key, "electricity", "kWh", hour, base + hour % 5, 1.0, 4)
            batch.append(consumption_line(h))
        for t in range(now_ns - 2 * HOUR_NS, now_ns, 900 * 10**9):
            batch.append(reading_line(Reading(*ref.key, t, None, energy_kwh=1000.0 + t / 1e13,
                                              power_kw=base)))  # fmt: skip
        if len(batch) > 100_000:
            client.write_lines(batch)
            batch = []
    for s in config.registry.suppliers:  # type: ignore[attr-defined]
        for site in s.sites:
            batch.append(status_line(s.id, site.id, "gw", "online", now_ns - 60 * 10**9, None))
    client.write_lines(batch)


def timed(client: httpx.Client, path: str, n: int) -> tuple[float, list[float]]:
    first = 0.0
    times = []
    for i in range(n + 1):
        began = time.perf_counter()
        r = client.get(path)
        elapsed = (time.perf_counter() - began) * 1000
        assert r.status_code == 200, r.status_code
        if i == 0:
            first = elapsed
        else:
            times.append(elapsed)
    return first, times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def run(meters: int, ceiling_ms: float, page: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = InfluxDB(root=tmp / "influx", port=free_port(), rpc_port=free_port())
        server.start(detach=False)
        try:
            (tmp / "suppliers.toml").write_text(registry(meters))
            (tmp / "supplymeter.toml").write_text(
                f'registry = "suppliers.toml"\n[influxdb]\nurl = "{server.url}"\n'
                f'timeout_s = 120\n[operations]\ndatabase = "{tmp / "ops.sqlite"}"\n'
                f'[alerts]\nstate_dir = "{tmp / "alerts"}"\n[jobs]\nexport_dir = "{tmp}"\n'
            )
            config = load_config(tmp / "supplymeter.toml", {})
            client = InfluxClient.from_settings(config.influxdb, config.secrets)
            client.ensure_database()
            now_ns = datetime_to_ns(NOW)
            began = time.perf_counter()
            fill(client, config, now_ns)
            print(f"  {meters:,} meters: 29 days of hours written in "
                  f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
            ops = Operations.from_config(config)
            ops.add_user("manager", PASSWORD, "energy_manager")
            store = Store(client)
            clock = [now_ns]
            app = create_app(Console(config, store, ops, clock=lambda: clock[0]))
            with served(app) as base, httpx.Client(base_url=base, timeout=60) as http:
                login = http.get("/login").text
                pre = login.split('name="pre" value="')[1].split('"')[0]
                http.post("/login", data={"username": "manager", "password": PASSWORD,
                                          "pre": pre})  # fmt: skip
                path = f"/now?page={page}"
                first, times = timed(http, path, 30)
                value = p95(times)
                print(f"{'Now, ' + f'{meters:,} meters, page {page}: p95 of 30':<60} "
                      f"{value:>9.0f} ms   ceiling {ceiling_ms:g} ms: "
                      f"{'OK' if value < ceiling_ms else 'OVER'} (first request {first:.0f} ms, "
                      f"median {statistics.median(times):.0f} ms)", flush=True)  # fmt: skip
                html = http.get(path).text
                csrf = html.split('data-csrf="')[1].split('"')[0]
                rows = dict(zip(html.split('data-row="')[1:], html.split('data-digest="')[1:],
                                strict=False))  # fmt: skip
                known = {k.split('"')[0]: v.split('"')[0] for k, v in rows.items()}
                headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
                quiet = http.post(f"/now/changes?page={page}", json={"rows": known},
                                  headers=headers)  # fmt: skip
                one = next(k for k in known if k.startswith("meter:"))
                key = one.split(":", 1)[1].split("/")
                store.write([reading_line(Reading(*key, now_ns + 60 * 10**9, None,
                                                  energy_kwh=5000.0, power_kw=99.0))])  # fmt: skip
                clock[0] = now_ns + 61 * 10**9
                moved = http.post(f"/now/changes?page={page}", json={"rows": known},
                                  headers=headers)  # fmt: skip
                print(f"{'  live update, nothing new: rows sent':<60} "
                      f"{len(quiet.json()['rows']):>9}   of {len(known)} on the page "
                      f"({len(quiet.content)} bytes)", flush=True)  # fmt: skip
                print(f"{'  live update, one meter read again: rows sent':<60} "
                      f"{len(moved.json()['rows']):>9}   {sorted(moved.json()['rows'])} "
                      f"({len(moved.content)} bytes)", flush=True)  # fmt: skip
            ops.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, choices=(100, 2000), default=None)
    args = parser.parse_args()
    print("console bench: the Now page, through uvicorn, on InfluxDB 1.6", flush=True)
    if args.meters in (None, 100):
        run(100, SMALL_CEILING_MS, 1)
    if args.meters in (None, 2000):
        run(2000, LARGE_CEILING_MS, 7)


if __name__ == "__main__":
    main()
