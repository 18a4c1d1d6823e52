"""Generated Mosquitto auth, ACL and TLS against a real Mosquitto."""

from __future__ import annotations

import getpass
import json
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from app.cli import main
from collector.service import Collector
from deploy.mosquitto import hash_password, load_passwords, write_mosquitto
from deploy.stack import free_port
from simulators.run import simulate
from supplymeter.config import Config, load_config
from supplymeter.influx import InfluxClient
from tests.conftest import ROOT, SMALL_REGISTRY, pointed_at, write_config
from tests.helpers import MosquittoFromFile, wait_until

FORGE_GW = "forge-a.plant-1.gw1"
CNC_GW = "cnc-d.plant-1.gw1"
Secured = tuple[Config, MosquittoFromFile, dict[str, str], Path]
"""Config pointed at the broker, the broker, the generated passwords, the test CA's folder."""
READING = json.dumps({"ts": 1_788_220_800_000, "energy_kwh": 12.5}).encode()


@pytest.fixture
def secured(tmp_path: Path, influx: InfluxClient) -> Iterator[Secured]:
    yield from secure(tmp_path, influx)


def secure(tmp_path: Path, influx: InfluxClient, extra: str = "") -> Iterator[Secured]:
    """The generated broker files running on a real Mosquitto (TLS with a test CA)."""
    ca = tmp_path / "ca"
    subprocess.run(["bash", str(ROOT / "deploy" / "make-test-ca.sh"), str(ca)], check=True,
                   capture_output=True)  # fmt: skip
    port, tls_port = free_port(), free_port()
    services = (
        f"""
        [broker]
        port = {port}
        tls_port = {tls_port}
        bind_address = "127.0.0.1"
        run_as_user = "{getpass.getuser()}"
        persistence_dir = "{tmp_path / "data"}"
        secrets_file = "{tmp_path / "secrets.toml"}"
        certfile = "{ca / "server.crt"}"
        keyfile = "{ca / "server.key"}"
        [mqtt]
        port = {port}
        username = "collector"
        """
        + extra
    )
    path = write_config(tmp_path / "cfg", SMALL_REGISTRY, services)
    (tmp_path / "data").mkdir()
    config = load_config(path, {})
    files = write_mosquitto(config, tmp_path / "mosquitto")
    passwords = load_passwords(tmp_path / "secrets.toml")
    config = pointed_at(
        load_config(path, {"SUPPLYMETER_MQTT_PASSWORD": passwords["collector"]}), None, influx
    )
    server = MosquittoFromFile(root=tmp_path / "run", port=port, conf=files.conf)
    server.start(detach=False)
    yield config, server, passwords, ca
    server.stop()


def connect(port: int, user: str | None, password: str | None, *, client_id: str,
            ca: Path | None = None, tls: bool = False) -> tuple[paho.Client, object]:  # fmt: skip
    """Connect with MQTT 5; returns the client and the CONNACK reason (or the exception)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set(ca_certs=str(ca) if ca else None)
    result: list[object] = []
    done = threading.Event()

    def on_connect(c, u, flags, reason, props) -> None:  # type: ignore[no-untyped-def]
        result.append(reason)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port)
    except (OSError, ssl.SSLError) as exc:
        return client, exc
    client.loop_start()
    done.wait(10)
    return client, result[0] if result else None


def test_files_are_private_and_passwords_never_printed(
    secured: Secured, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config, _, passwords, _ = secured
    assert set(passwords) == {"collector", FORGE_GW, CNC_GW, "supplymeter-admin"}
    dynsec = tmp_path / "mosquitto" / "dynamic-security.json"
    for path in (tmp_path / "secrets.toml", tmp_path / "mosquitto" / "passwd", dynsec):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    passwd = (tmp_path / "mosquitto" / "passwd").read_text()
    assert not any(pw in passwd or pw in dynsec.read_text() for pw in passwords.values())
    clients = {c["username"]: c for c in json.loads(dynsec.read_text())["clients"]}
    assert clients["collector"]["clientid"] == config.mqtt.client_id
    assert clients[FORGE_GW]["clientid"] == FORGE_GW  # every identity bound to its client id
    acl = (tmp_path / "mosquitto" / "acl").read_text()
    assert f"user {FORGE_GW}\ntopic write energy/v1/forge-a/plant-1/main/readings\n" in acl
    assert "user collector\ntopic read energy/v1/#\n" in acl
    # Re-running keeps the passwords and prints none of them.
    assert main(["--config", str(config.path), "deploy", "mosquitto", "--out",
                 str(tmp_path / "again")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert load_passwords(tmp_path / "secrets.toml") == passwords
    assert not any(pw in out for pw in passwords.values()) and "3 users" in out


def test_hash_is_mosquitto_2_pbkdf2_sha512() -> None:
    salt = bytes(range(12))
    assert hash_password("correct horse", salt=salt).startswith("$7$101$AAECAwQFBgcICQoL$")
    assert hash_password("x", salt=salt) != hash_password("y", salt=salt)


def test_wrong_password_and_anonymous_are_refused(
    secured: Secured,
) -> None:
    _, server, passwords, _ = secured
    for user, pw in ((FORGE_GW, "wrong-password-123"), (None, None), ("nobody", "whatever-12345")):
        client, reason = connect(server.port, user, pw, client_id=f"t-{user}")
        assert reason is not None and getattr(reason, "is_failure", True), (user, reason)
        client.loop_stop()
    client, reason = connect(server.port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
    assert reason is not None and not reason.is_failure  # type: ignore[attr-defined]
    client.disconnect()
    client.loop_stop()


def test_gateway_cannot_write_another_suppliers_topic(
    secured: Secured, influx: InfluxClient,
) -> None:  # fmt: skip
    config, server, passwords, _ = secured
    with Collector(config, client=influx) as collector:
        intruder, reason = connect(server.port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
        assert not reason.is_failure  # type: ignore[attr-defined]
        intruder.publish("energy/v1/cnc-d/plant-1/main/readings", READING, qos=1)
        # Mosquitto 2.0 may drop the connection of a client publishing where it may not.
        wait_until(lambda: not intruder.is_connected(), 2)
        intruder.disconnect()
        intruder.loop_stop()
        gateway, _ = connect(server.port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
        gateway.publish("energy/v1/forge-a/plant-1/main/readings", READING, qos=1).wait_for_publish(
            10
        )
        # The second message arriving means the first had its chance: it never came.
        assert wait_until(lambda: collector.stats.readings_accepted >= 1, 20)
        assert collector.writer.flush(20)
        gateway.disconnect()
        gateway.loop_stop()
    assert collector.stats.messages == 1 and collector.stats.rejected_total == 0
    stored = influx.query("SELECT energy_kwh FROM reading GROUP BY supplier")
    assert [s.tags["supplier"] for s in stored] == ["forge-a"]


def test_collector_may_read_but_not_publish(
    secured: Secured,
) -> None:
    config, server, passwords, _ = secured
    received: list[str] = []
    collector, _ = connect(server.port, "collector", passwords["collector"],
                           client_id=config.mqtt.client_id)  # fmt: skip
    collector.on_message = lambda c, u, m: received.append(m.topic)
    assert not any(r.is_failure for r in subscribe_result(collector, "energy/v1/#"))  # type: ignore[attr-defined]
    gateway, _ = connect(server.port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
    gateway.publish("energy/v1/forge-a/plant-1/gas/readings", READING, qos=1).wait_for_publish(10)
    assert wait_until(lambda: received, 10)
    # The collector's own publish is refused (Mosquitto may also drop its connection for it).
    collector.publish("energy/v1/forge-a/plant-1/main/readings", READING, qos=1)
    time.sleep(1.0)
    assert received == ["energy/v1/forge-a/plant-1/gas/readings"]
    for client in (collector, gateway):
        client.disconnect()
        client.loop_stop()


def test_nobody_can_connect_with_anothers_client_id(secured: Secured, influx: InfluxClient) -> None:
    """The session takeover: a gateway of supplier A connects with the collector's client id
    (clean start). The broker refuses it, the collector keeps its session, and every reading
    of every supplier arrives (the simulator's ledger)."""
    config, server, passwords, _ = secured
    with Collector(config, client=influx) as collector:
        assert wait_until(lambda: collector.subscriber.connected, 10)
        lane = f"{config.mqtt.client_id}.forge-a"  # the collector's forge-a session
        for user, client_id in ((FORGE_GW, config.mqtt.client_id), (FORGE_GW, lane),
                                (FORGE_GW, CNC_GW), ("collector", FORGE_GW)):  # fmt: skip
            client, reason = connect(server.port, user, passwords[user], client_id=client_id)
            assert reason is not None and reason.is_failure, (user, client_id, reason)  # type: ignore[attr-defined]
            client.loop_stop()
        everything_lands(config, collector, influx, passwords)
        lanes = len(config.registry.suppliers)  # one connection per supplier's session
        assert collector.subscriber.sessions_lost == 0
        assert collector.subscriber.connects == lanes


def everything_lands(
    config: Config, collector: Collector, influx: InfluxClient, passwords: dict[str, str]
) -> None:
    """A day of every supplier's gateways, logged in as themselves, through the broker:
    InfluxDB holds exactly what the simulator's ledger says they sent."""
    start = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Taipei"))
    gateways = {u: p for u, p in passwords.items() if u != "collector"}
    sim = simulate(config, start=start, end=start + timedelta(days=1), seed=5,
                   gateway_passwords=gateways)  # fmt: skip
    assert wait_until(lambda: collector.stats.reading_messages >= sim.messages, 30)
    assert collector.writer.flush(30)
    series = influx.query("SELECT count(energy_kwh), count(volume_m3) FROM reading "
                          "GROUP BY supplier")  # fmt: skip
    stored = {s.tags["supplier"]: sum(n or 0 for n in s.values[0][1:]) for s in series}
    assert sum(stored.values()) == sim.readings and set(stored) == {"forge-a", "cnc-d"}
    assert collector.stats.rejected_total == 0


def subscribe_result(client: paho.Client, topic: str) -> list[object]:
    got: list[object] = []
    done = threading.Event()

    def on_subscribe(c, u, mid, reasons, props) -> None:  # type: ignore[no-untyped-def]
        got.extend(reasons)
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    done.wait(5)
    return got


def test_gateways_cannot_subscribe_not_even_to_the_collectors_shared_group(
    tmp_path: Path, influx: InfluxClient
) -> None:
    """The shared-subscription hijack: with collectors in a shared group, a gateway that joins
    it would receive half of every supplier's readings (and drop them). Its SUBSCRIBE is
    refused; the collector gets every reading."""
    for config, server, passwords, _ in secure(tmp_path, influx, 'shared_group = "collectors"\n'):
        with Collector(config, client=influx) as collector:
            assert wait_until(lambda: collector.subscriber.connected, 10)
            intruder, _ = connect(server.port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
            for topic in ("$share/collectors/energy/v1/#", "energy/v1/#", "#",
                          "energy/v1/forge-a/plant-1/main/readings"):  # fmt: skip
                reasons = subscribe_result(intruder, topic)
                assert reasons and all(r.is_failure for r in reasons), (topic, reasons)  # type: ignore[attr-defined]
            everything_lands(config, collector, influx, passwords)  # not half of it
            intruder.disconnect()
            intruder.loop_stop()


def test_plaintext_listens_on_loopback_only_when_tls_is_configured(secured: Secured) -> None:
    config, _, _, _ = secured
    conf = (config.resolve(Path("..")) / "mosquitto" / "mosquitto.conf").read_text()
    broker = config.services.broker
    assert f"listener {broker.port} 127.0.0.1\n" in conf
    assert f"listener {broker.tls_port} {broker.bind_address}\n" in conf


def test_tls_works_with_the_test_ca_and_fails_without(
    secured: Secured,
) -> None:
    config, _, passwords, ca = secured
    tls_port = config.services.broker.tls_port
    client, reason = connect(tls_port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW,
                             ca=ca / "ca.crt", tls=True)  # fmt: skip
    assert reason is not None and not reason.is_failure  # type: ignore[attr-defined]
    client.disconnect()
    client.loop_stop()
    _, failure = connect(tls_port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW, tls=True)
    assert isinstance(failure, ssl.SSLError) and "certificate verify failed" in str(failure)


def test_simulated_gateways_log_in_as_themselves_and_everything_lands(
    secured: Secured, influx: InfluxClient
) -> None:
    """The whole registry through the locked-down broker: each gateway with its own user."""
    config, _, passwords, _ = secured
    start = datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Taipei"))
    with Collector(config, client=influx) as collector:
        sim = simulate(config, start=start, end=start + timedelta(days=1), seed=3,
                       gateway_passwords=passwords)  # fmt: skip
        assert wait_until(lambda: collector.stats.reading_messages >= sim.messages, 30)
        assert collector.writer.flush(30)
    assert collector.stats.rejected_total == 0
    series = influx.query("SELECT count(energy_kwh), count(volume_m3) FROM reading")
    assert sum(n or 0 for n in series[0].values[0][1:]) == sim.readings
    statuses = influx.query("SELECT last(state) FROM gateway_status GROUP BY supplier")
    assert {s.tags["supplier"] for s in statuses} == {"forge-a", "cnc-d"}


def test_passwords_with_quotes_and_backslashes_survive_a_second_run(tmp_path: Path) -> None:
    from deploy.mosquitto import ensure_passwords

    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[passwords]\n"collector" = "a\\"b\\\\c-long-enough"\n')
    kept = ensure_passwords(secrets, ["collector", FORGE_GW])
    assert kept["collector"] == 'a"b\\c-long-enough'
    assert load_passwords(secrets) == kept  # still valid TOML, same passwords


def test_the_broker_refuses_a_packet_larger_than_the_collector_accepts(
    secured: Secured, influx: InfluxClient
) -> None:
    """``max_packet_size`` is the collector's payload limit + 1 KiB: a gateway's 300 KB
    message never reaches (or fills) a queue — an MQTT 3.1.1 sender is disconnected, an
    MQTT 5 one told the limit in its CONNACK — while a batch just under the limit arrives."""
    from deploy.mosquitto import max_packet_bytes

    config, server, passwords, _ = secured
    assert f"max_packet_size {max_packet_bytes(config)}" in server.conf.read_text()
    topic = "energy/v1/forge-a/plant-1/main/readings"
    too_big = b'{"pad": "' + b"x" * 300_000 + b'"}'
    with Collector(config, client=influx) as collector:
        gateway, _ = connect(server.port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
        gateway.publish(topic, too_big, qos=1)
        time.sleep(1.0)
        gateway.disconnect()
        gateway.loop_stop()
        old = paho.Client(CallbackAPIVersion.VERSION2, client_id=FORGE_GW, protocol=paho.MQTTv311)
        old.username_pw_set(FORGE_GW, passwords[FORGE_GW])
        old.connect("127.0.0.1", server.port)
        old.loop_start()
        assert wait_until(old.is_connected, 10)
        old.publish(topic, too_big, qos=1)
        assert wait_until(lambda: not old.is_connected(), 10)
        old.loop_stop()
        readings, size = [], 20
        while size < config.collector.max_payload_bytes - 100:
            ts = 1_788_220_800_000 + len(readings) * 60_000
            readings.append({"ts": ts, "energy_kwh": 12.5 + len(readings)})
            size += len(json.dumps(readings[-1])) + 2
        body = json.dumps({"readings": readings}).encode()
        assert len(body) <= config.collector.max_payload_bytes
        gateway, _ = connect(server.port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
        gateway.publish(topic, body, qos=1).wait_for_publish(10)
        assert wait_until(lambda: collector.stats.readings_accepted == len(readings), 20)
        gateway.disconnect()
        gateway.loop_stop()
    assert collector.stats.messages == 1 and collector.stats.rejected_total == 0


NEW_SUPPLIER = """
[[suppliers]]
id = "weld-e"
kind = "other"
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
"""


def test_gateways_and_meters_are_added_live_with_one_edit_and_one_command(
    secured: Secured, influx: InfluxClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new meter behind an existing gateway, and a new supplier with its gateway: one
    registry edit and `deploy mosquitto --apply`, with the broker and the collector running.
    The new readings are stored within a minute; the gateway that kept publishing throughout
    lost nothing; nothing restarted."""
    from supplymeter.store import Store

    config, server, passwords, _ = secured
    monkeypatch.setattr(Collector, "REGISTRY_POLL_S", 0.2)
    broker_pid = server.pid()
    port = config.mqtt.port
    gw, reason = connect(port, FORGE_GW, passwords[FORGE_GW], client_id=FORGE_GW)
    assert not getattr(reason, "is_failure", True)
    sent: list[int] = []
    stop = threading.Event()

    def keep_publishing() -> None:
        k = 0
        while not stop.is_set():
            ts = 1_788_220_800_000 + 60_000 * k
            # As a gateway does: a reading not acknowledged (the broker drops a client's
            # connection when its role changes; it reconnects) is sent again.
            while True:
                info = gw.publish("energy/v1/forge-a/plant-1/main/readings",
                                  json.dumps({"ts": ts, "energy_kwh": 1.0 + k}), qos=1)  # fmt: skip
                try:
                    info.wait_for_publish(5)
                    break
                except (RuntimeError, ValueError):
                    time.sleep(0.1)
            sent.append(ts)
            k += 1
            time.sleep(0.02)

    with Collector(config, client=influx) as collector:
        connects = collector.subscriber.connects
        publisher = threading.Thread(target=keep_publishing)
        publisher.start()
        try:
            registry = config.registry_path
            registry.write_text(registry.read_text().replace(
                '    id = "gas"', '    id = "new-press"\n    carrier = "electricity"\n'
                '    [[suppliers.sites.meters]]\n    id = "gas"', 1) + NEW_SUPPLIER)  # fmt: skip
            assert main(["--config", str(config.path), "deploy", "mosquitto", "--apply",
                         "--out", str(tmp_path / "mosquitto")]) == 0  # fmt: skip
            fresh = load_passwords(tmp_path / "secrets.toml")
            weld, reason = connect(port, "weld-e.plant-1.gw1", fresh["weld-e.plant-1.gw1"],
                                   client_id="weld-e.plant-1.gw1")  # fmt: skip
            assert not getattr(reason, "is_failure", True), reason
            reading = json.dumps({"ts": 1_788_220_800_000, "energy_kwh": 7.0})
            gw.publish("energy/v1/forge-a/plant-1/new-press/readings", reading, qos=1)
            weld.publish("energy/v1/weld-e/plant-1/main/readings", reading, qos=1)

            def stored() -> int:
                return sum(len(Store(influx).meter_readings(key, 0, 2**62))
                           for key in (("forge-a", "plant-1", "new-press"),
                                       ("weld-e", "plant-1", "main")))  # fmt: skip

            assert wait_until(lambda: stored() == 2, 60), "new meters' readings not stored"
        finally:
            stop.set()
            publisher.join()
        assert wait_until(lambda: collector.stats.readings_accepted >= len(sent) + 2, 30)
        assert collector.writer.flush(30)
        assert collector.subscriber.connects == connects + 1  # the new supplier's session only
    main_readings = Store(influx).meter_readings(("forge-a", "plant-1", "main"), 0, 2**62,
                                                 limit=10**6)  # fmt: skip
    assert sorted(int(r["time"]) // 1_000_000 for r in main_readings) == sent
    assert server.pid() == broker_pid and collector.stats.rejected_total == 0
    assert main(["--config", str(config.path), "deploy", "mosquitto", "--apply",
                 "--out", str(tmp_path / "mosquitto")]) == 0  # fmt: skip
