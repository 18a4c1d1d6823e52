"""Faults injected while the simulator publishes; stored data must equal its ground truth.

Each test runs a short simulated week in real-time mode (a few wall seconds), breaks something
in the middle, and then checks, meter by meter and hour by hour, that the rollup of what was
stored equals the simulator's ledger exactly and that every published reading was stored once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.service import Collector
from deploy.stack import InfluxDB, Mosquitto, free_port
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from simulators.run import SimulationResult, simulate
from supplymeter.config import Config, load_config
from supplymeter.influx import InfluxClient
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store
from tests.conftest import SMALL_REGISTRY, pointed_at, with_settings, write_config
from tests.helpers import wait_until

TPE = ZoneInfo("Asia/Taipei")
START = datetime(2026, 3, 2, tzinfo=TPE)
END = START + timedelta(days=7)
SPEED = 7 * 86400 / 6  # the week in 6 wall seconds
TIMEOUT_S = 60
OUTAGE_S = 30


def in_background(config: Config, seed: int = 5) -> tuple[threading.Thread, list[SimulationResult]]:
    out: list[SimulationResult] = []
    thread = threading.Thread(
        target=lambda: out.append(simulate(config, start=START, end=END, seed=seed, speed=SPEED))
    )
    thread.start()
    return thread, out


def stored_readings(influx: InfluxClient) -> int:
    series = influx.query("SELECT count(energy_kwh), count(volume_m3) FROM reading")
    return int(sum(n or 0 for n in series[0].values[0][1:])) if series else 0


def assert_matches_ground_truth(
    config: Config, influx: InfluxClient, sim: SimulationResult
) -> None:
    assert wait_until(lambda: stored_readings(influx) == sim.readings, TIMEOUT_S), (
        f"stored {stored_readings(influx)} of {sim.readings}"
    )
    run_rollup(
        config, Store(influx), datetime_to_ns(START), datetime_to_ns(END), FactorLibrary.load()
    )
    truth = sim.ledger.consumption()
    for key, hours in truth.items():
        q = (f"SELECT * FROM hourly_consumption WHERE supplier = '{key[0]}' AND site = "
             f"'{key[1]}' AND meter = '{key[2]}'")  # fmt: skip
        rows = influx.query(q)[0].rows()
        assert len(rows) == len(hours) == 7 * 24
        for row, (hour, amount) in zip(rows, hours.items(), strict=True):
            stored = row["energy_kwh"] if row["energy_kwh"] is not None else row["volume_m3"]
            assert row["time"] == hour and stored == pytest.approx(float(amount), abs=1e-6)


def test_collector_killed_with_sigkill_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, broker: Mosquitto, influx: InfluxClient
) -> None:
    services = f"""
        [mqtt]
        port = {broker.port}
        client_id = "killed-collector"
        [influxdb]
        url = "{influx.url}"
        database = "{influx.database}"
        [collector]
        flush_interval_s = 0.2
        """
    path = write_config(tmp_path / "cfg", SMALL_REGISTRY, services)
    config = load_config(path, {})
    argv = [sys.executable, "-m", "app.cli", "--config", str(path), "collect"]

    log = (tmp_path / "collector.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log)
        assert proc.stdout is not None
        assert b"collecting" in proc.stdout.readline()  # subscribed
        return proc

    first = start()
    thread, result = in_background(config)
    assert wait_until(lambda: stored_readings(influx) > 300, TIMEOUT_S)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = stored_readings(influx)
    time.sleep(1.0)  # the simulator keeps publishing to the broker meanwhile
    second = start()
    try:
        thread.join(TIMEOUT_S)
        assert result and 0 < killed_at < result[0].messages
        assert_matches_ground_truth(config, influx, result[0])
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert second.returncode == 0


def test_broker_restart_mid_stream(
    make_config: Callable[..., Config], broker: Mosquitto, influx: InfluxClient
) -> None:
    config = make_config()
    with Collector(config, client=influx) as collector:
        thread, result = in_background(config)
        assert wait_until(lambda: collector.stats.readings_accepted > 300, TIMEOUT_S)
        broker.stop()  # SIGTERM: Mosquitto saves sessions and queued messages
        time.sleep(0.5)
        broker.start(detach=False)
        thread.join(TIMEOUT_S)
        assert result, "the simulator gave up"
        assert_matches_ground_truth(config, influx, result[0])
        lanes = collector.subscriber.lanes  # type: ignore[union-attr]
        assert all(lane.connects >= 2 for lane in lanes)  # every supplier's session came back


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_influxdb_outage_holds_acks_and_drains_after(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """InfluxDB stopped for 30 s while the week is published: the collector holds at most its
    in-flight window, the broker keeps the rest, and all of it lands once InfluxDB is back."""
    server = InfluxDB(root=tmp_path / "influx-outage", port=free_port(), rpc_port=free_port())
    server.start(detach=False)
    influx = InfluxClient(url=server.url, database="outage", retries=0)
    influx.ensure_database()
    config = with_settings(
        pointed_at(make_config(), None, influx),
        "collector", metrics_port=free_port(), unhealthy_after_s=1.0, flush_interval_s=0.2,
        batch_size=100,
    )  # fmt: skip
    config = with_settings(config, "mqtt", receive_maximum=200)
    try:
        with Collector(config, client=influx) as collector:
            port = collector.metrics_port
            assert port and healthz(port) == 200
            thread, result = in_background(config)
            assert wait_until(lambda: collector.stats.readings_accepted > 300, TIMEOUT_S)
            server.stop()
            assert wait_until(lambda: healthz(port) == 503, TIMEOUT_S)
            held = collector.stats.acks_sent
            thread.join(TIMEOUT_S)  # the simulator finishes publishing during the outage
            assert result, "the simulator gave up"
            received_during = collector.stats.messages
            time.sleep(max(0.0, OUTAGE_S - 8))
            assert collector.stats.acks_sent == held  # nothing acknowledged while unwritten
            # Bounded memory: the broker stopped sending at the in-flight window (one per
            # supplier's session).
            assert collector.stats.messages == received_during
            lanes = len(config.registry.suppliers)
            assert collector.writer.backlog <= lanes * config.mqtt.receive_maximum + 2
            assert result[0].messages - collector.stats.readings_accepted > 1000
            server.start(detach=False)
            assert_matches_ground_truth(config, influx, result[0])
            assert wait_until(lambda: healthz(port) == 200, TIMEOUT_S)
    finally:
        server.stop()


def test_two_collectors_share_one_stream_without_duplicates(
    make_config: Callable[..., Config], influx: InfluxClient
) -> None:
    base = make_config()

    def with_id(client_id: str) -> Config:
        return with_settings(base, "mqtt", client_id=client_id, shared_group="collectors")

    with (
        Collector(with_id("c1"), client=influx) as c1,
        Collector(with_id("c2"), client=influx) as c2,
    ):
        thread, result = in_background(base)
        thread.join(TIMEOUT_S)
        assert result
        sim = result[0]
        assert wait_until(lambda: c1.stats.reading_messages + c2.stats.reading_messages
                          >= sim.messages, TIMEOUT_S)  # fmt: skip
        assert c1.writer.flush(TIMEOUT_S) and c2.writer.flush(TIMEOUT_S)
    assert c1.stats.reading_messages + c2.stats.reading_messages == sim.messages
    assert (
        c1.stats.reading_messages > sim.messages / 10
        and c2.stats.reading_messages > sim.messages / 10
    )
    assert_matches_ground_truth(base, influx, sim)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_fewer_processes_drain_and_end_the_retired_sessions(
    make_config: Callable[..., Config], influx: InfluxClient, protocol: str
) -> None:
    """Three collector processes ran, then the config drops to one: the broker queued part
    of the stream for each offline session of the shared group. Before the one process
    starts, the two retired sessions are drained into InfluxDB and deleted; process 0 keeps
    the collector's own identity and drains its own share — nothing lost, nothing queued for
    a session that no process will ever serve again."""
    from collector.mqtt import make_client
    from collector.service import retire_sessions, worker_config

    base = with_settings(make_config(), "mqtt", shared_group="collectors", protocol=protocol,
                         client_id=f"retire-{protocol.replace('.', '')}")  # fmt: skip
    base = with_settings(base, "collector", session_per_supplier=False)
    three = with_settings(base, "collector", processes=3)
    for index in (0, 1, 2):  # the sessions join the group, then go offline
        with Collector(worker_config(three, index), client=influx):
            pass
    assert worker_config(three, 0).mqtt.client_id == base.mqtt.client_id
    thread, result = in_background(base)
    thread.join(TIMEOUT_S)
    assert result and stored_readings(influx) == 0  # everything queued in the sessions
    one = with_settings(three, "collector", processes=1)
    retired = retire_sessions(one, influx, idle_s=1.0)
    assert retired == [f"{base.mqtt.client_id}-1", f"{base.mqtt.client_id}-2"]
    assert 0 < stored_readings(influx) < result[0].readings  # process 0's share still queued
    with Collector(worker_config(one, 0), client=influx):
        assert_matches_ground_truth(base, influx, result[0])
    # A second start finds nothing to retire (and its probes leave no session behind).
    assert retire_sessions(one, influx, idle_s=0.2) == []
    # The sessions are gone: a connection under a retired id finds none.
    present: list[bool] = []
    probe = make_client(worker_config(three, 2).mqtt, base.secrets)
    probe.on_connect = lambda c, u, flags, *a: present.append(flags.session_present)
    probe.connect(base.mqtt.host, base.mqtt.port)
    probe.loop_start()
    assert wait_until(lambda: bool(present), 10)
    probe.disconnect()
    probe.loop_stop()
    assert present == [False]


@pytest.mark.parametrize(("protocol", "expected"), [("5", 2), ("3.1.1", 1)])
def test_auto_processes_follow_the_cores_where_the_broker_shares(
    make_config: Callable[..., Config], protocol: str, expected: int
) -> None:
    """``processes = "auto"``: one per core (2 here) when Mosquitto's MQTT 5 CONNACK offers
    shared subscriptions, with a group when none is set; on 3.1.1 the broker cannot say: one."""
    from collector.service import resolve_processes
    from supplymeter.config import AUTO_SHARED_GROUP

    base = with_settings(make_config(), "mqtt", protocol=protocol)
    auto = with_settings(base, "collector", processes="auto")
    resolved = resolve_processes(auto, cores=2)
    assert resolved.collector.processes == expected
    assert resolved.mqtt.shared_group == (AUTO_SHARED_GROUP if expected > 1 else None)
    assert resolve_processes(auto, cores=1).collector.processes == 1
    fixed = with_settings(base, "collector", processes=1)
    assert resolve_processes(fixed) is fixed


@pytest.mark.parametrize("per_supplier", [True, False])
def test_one_supplier_flooding_cannot_make_the_broker_drop_another_suppliers_readings(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path, per_supplier: bool
) -> None:
    """While the collector is away, forge-a's gateway floods (14 × 512 KB, beyond the
    broker's 4 MiB per-session queue), then cnc-d's gateway sends 50 readings; the broker
    acknowledges them all. With a session per supplier (the default) cnc-d's 50 are all
    stored; with one session for everyone the broker dropped them (the hazard it fixes)."""
    import json

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    broker = Mosquitto(root=tmp_path / "mqtt", port=free_port(), max_queued_bytes=4 * 2**20)
    broker.start(detach=False)
    try:
        config = with_settings(pointed_at(make_config(), None, influx), "mqtt", port=broker.port)
        config = with_settings(config, "collector", session_per_supplier=per_supplier)
        with Collector(config, client=influx):
            pass  # the sessions exist and subscribe, then the collector is away
        pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="gateways")
        pub.max_inflight_messages_set(20)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        flood = b'{"pad": "' + b"x" * 512_000 + b'"}'
        infos = [pub.publish("energy/v1/forge-a/plant-1/main/readings", flood, 1)
                 for _ in range(14)]  # fmt: skip
        base = 1_788_220_800_000
        infos += [pub.publish("energy/v1/cnc-d/plant-1/main/readings",
                              json.dumps({"ts": base + i * 300_000, "energy_kwh": 10.0 + i}), 1)
                  for i in range(50)]  # fmt: skip
        for info in infos:
            info.wait_for_publish(30)
        assert all(info.is_published() for info in infos)  # the broker acknowledged them all
        pub.disconnect()
        pub.loop_stop()
        with Collector(config, client=influx) as collector:
            time.sleep(3.0)  # what the broker kept arrives at once
            assert collector.writer.flush(TIMEOUT_S)
        rows = influx.query("SELECT count(energy_kwh) FROM reading WHERE supplier = 'cnc-d'")
        stored = rows[0].values[0][1] if rows else 0
        if per_supplier:
            assert stored == 50
        else:
            assert stored < 50
    finally:
        broker.stop()


def test_switching_to_a_session_per_supplier_drains_the_shared_session(
    make_config: Callable[..., Config], influx: InfluxClient
) -> None:
    """A collector ran with one session for everyone; while it is away readings queue there.
    Started with a session per supplier, it first drains and deletes the old session, then
    runs its own: nothing lost, nothing left queued for a session nobody serves."""
    from collector.service import retire_sessions

    shared = with_settings(make_config(), "collector", session_per_supplier=False, processes=1)
    with Collector(shared, client=influx):
        pass
    thread, result = in_background(shared)
    thread.join(TIMEOUT_S)
    assert result and stored_readings(influx) == 0
    lanes = with_settings(shared, "collector", session_per_supplier=True)
    assert retire_sessions(lanes, influx, idle_s=1.0) == [shared.mqtt.client_id]
    assert stored_readings(influx) == result[0].readings
    with Collector(lanes, client=influx):
        assert_matches_ground_truth(lanes, influx, result[0])
    assert retire_sessions(lanes, influx, idle_s=0.2) == []
