"""The collector against a real Mosquitto and a real InfluxDB."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.service import Collector
from deploy.stack import Mosquitto
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from tests.conftest import with_settings
from tests.helpers import wait_until

TIMEOUT_S = 20


@pytest.fixture
def publisher(broker: Mosquitto):  # type: ignore[no-untyped-def]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-publisher")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def send(client: paho.Client, topic: str, payload: bytes | str, retain: bool = False) -> None:
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(TIMEOUT_S)
    assert info.is_published()


def collected(collector: Collector, messages: int) -> None:
    assert wait_until(lambda: collector.stats.messages >= messages, TIMEOUT_S)
    assert collector.writer.flush(TIMEOUT_S)


GOOD = "energy/v1/forge-a/plant-1/main/readings"


def test_bad_input_is_rejected_with_reason_and_valid_readings_all_stored(
    make_config: Callable[..., Config], influx: InfluxClient, publisher: paho.Client
) -> None:
    # One session for everyone: a supplier missing from the registry is then received (with
    # a session per supplier nobody subscribes to it; the deployed broker refuses it).
    config = with_settings(make_config(), "collector", session_per_supplier=False)
    bad = [
        (GOOD, b"{not json", "invalid_json"),
        (GOOD, b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": "12.5"}', "invalid_value"),
        ("energy/v1/nobody/plant-1/main/readings", b'{"ts": 1, "energy_kwh": 1}',
         "unknown_supplier"),
        ("energy/v1/forge-a/plant-1/nometer/readings", b'{"ts": 1, "energy_kwh": 1}',
         "unknown_meter"),
        (GOOD, b"\xc3\x28\xa0\xa1", "invalid_utf8"),
        (GOOD, b'{"ts": 1788220800000, "energy_kwh": 1, "pad": "' + b"x" * 300_000 + b'"}',
         "payload_too_large"),
        ("energy/v1/forge-a/plant-1/main/values", b"{}", "invalid_topic"),
    ]  # fmt: skip
    with Collector(config, client=influx) as collector:
        for i in range(10):
            ts = 1_788_220_800_000 + i * 900_000
            send(publisher, GOOD, json.dumps({"ts": ts, "seq": i, "energy_kwh": 100.0 + i}))
            if i < len(bad):  # interleaved: the stream goes on after each bad message
                send(publisher, bad[i][0], bad[i][1])
        collected(collector, 10 + len(bad))
        assert collector.stats.readings_accepted == 10

    stored = influx.query("SELECT energy_kwh, seq FROM reading WHERE meter = 'main'")
    assert [row[1] for row in stored[0].values] == [100.0 + i for i in range(10)]
    reasons = {
        s.tags["reason"]: s.values[0][1]
        for s in influx.query("SELECT count(count) FROM rejected_message GROUP BY reason")
    }
    assert reasons == {code: 1 for _, _, code in bad}
    # Tags only for registry suppliers: garbage ids never become series.
    suppliers = influx.query("SHOW TAG VALUES FROM rejected_message WITH KEY = supplier")
    assert [v[1] for v in suppliers[0].values] == ["forge-a"]
    details = influx.query(
        "SELECT detail, topic FROM rejected_message WHERE reason = 'invalid_json'"
    )
    assert details[0].values[0][2] == GOOD and "not JSON" in details[0].values[0][1]


def test_batches_late_out_of_order_and_duplicates_land_once(
    make_config: Callable[..., Config], influx: InfluxClient, publisher: paho.Client
) -> None:
    config = make_config()
    base = 1_788_220_800_000
    with Collector(config, client=influx) as collector:
        send(publisher, GOOD, json.dumps({"ts": base + 2 * 900_000, "energy_kwh": 3.0}))
        batch = {"readings": [{"ts": base + i * 900_000, "energy_kwh": float(i + 1)}
                              for i in (1, 0, 2, 2)]}  # fmt: skip
        send(publisher, GOOD, json.dumps(batch))
        send(publisher, GOOD, json.dumps({"ts": base, "energy_kwh": 1.0}))
        collected(collector, 3)
    rows = influx.query("SELECT energy_kwh FROM reading")[0].values
    assert rows == [[(base + i * 900_000) * 10**6, float(i + 1)] for i in range(3)]


def test_gateway_status_is_stored_including_retained_and_will(
    make_config: Callable[..., Config], influx: InfluxClient, publisher: paho.Client,
    broker: Mosquitto,
) -> None:  # fmt: skip
    config = make_config()
    status = "energy/v1/cnc-d/plant-1/gateway/gw1/status"
    send(publisher, status, b'{"state": "online", "ts": "2026-09-01T00:00:00Z"}', retain=True)
    gateway = paho.Client(CallbackAPIVersion.VERSION2, client_id="gw-forge")
    gateway.will_set("energy/v1/forge-a/plant-1/gateway/gw1/status", b'{"state": "offline"}',
                     qos=1, retain=True)  # fmt: skip
    gateway.connect("127.0.0.1", broker.port)
    gateway.loop_start()
    with Collector(config, client=influx) as collector:
        collected(collector, 1)  # the retained message arrives on subscribe
        gateway.socket().close()  # an unclean loss: the broker publishes the will
        gateway.loop_stop()
        collected(collector, 2)
    rows = influx.query("SELECT last(state) FROM gateway_status GROUP BY supplier, site, gateway")
    states = {s.tags["supplier"]: s.values[0][1] for s in rows}
    assert states == {"cnc-d": "online", "forge-a": "offline"}


def test_a_retained_bad_message_is_recorded_once_not_at_every_start(
    make_config: Callable[..., Config], broker: Mosquitto, influx: InfluxClient
) -> None:
    """A gateway left a bad retained status. MQTT 5: the collector's persistent subscription
    asks for retained messages only when it is new, so a restart does not record it again;
    delivered twice to one process, it is recorded once. An empty retained payload (clearing
    it) is not bad input at all."""
    config = make_config()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="left-behind")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    topic = "energy/v1/forge-a/plant-1/gateway/gw1/status"
    pub.publish(topic, b'{"state": "sleeping"}', qos=1, retain=True).wait_for_publish(5)
    for start in range(2):  # two collector starts on the same persistent session
        with Collector(config, client=influx) as collector:
            assert wait_until(lambda c=collector: c.subscriber.connected, TIMEOUT_S)
            if start == 0:
                assert wait_until(lambda c=collector: c.stats.messages >= 1, TIMEOUT_S)
                # The same retained message delivered again to this process (a new
                # subscription of its own): still one rejection.
                forge_a = collector.subscriber.lanes[0]  # type: ignore[union-attr]
                forge_a._client.subscribe("energy/v1/+/+/gateway/+/status", qos=1)
                assert wait_until(lambda c=collector: c.stats.messages >= 2, TIMEOUT_S)
                assert collector.stats.retained_repeats == 1
            else:
                time.sleep(1.0)
                assert collector.stats.messages == 0  # not resent on the existing subscription
            assert collector.writer.flush(10)
    pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
    pub.loop_stop()
    pub.disconnect()
    stored = influx.query("SELECT count(count) FROM rejected_message")
    assert stored[0].values[0][1] == 1
