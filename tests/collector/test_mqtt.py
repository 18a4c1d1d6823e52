from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from collector.metrics import prometheus_text
from collector.mqtt import MAX_BACKOFF_S, backoff_s, lane_settings, subscription
from collector.service import Collector
from supplymeter.config import Config, MqttSettings
from supplymeter.influx import InfluxClient
from tests.helpers import wait_until


def test_backoff_doubles_to_a_ceiling_with_jitter() -> None:
    rng = random.Random(1)
    for attempt, ceiling in enumerate([1, 2, 4, 8, 16, 30, 30, 30]):
        waits = [backoff_s(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling <= MAX_BACKOFF_S
        assert max(waits) - min(waits) > ceiling / 4  # spread: collectors do not move in step


def test_shared_subscription_topic() -> None:
    assert subscription(MqttSettings()) == "energy/v1/#"
    assert subscription(MqttSettings(shared_group="collectors")) == "$share/collectors/energy/v1/#"


def test_a_session_taken_over_is_an_incident_not_silence(
    make_config: Callable[..., Config], influx: InfluxClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Another client connects with the collector's client id and a clean start: the broker
    wipes the collector's persistent session. When the collector is back, it says so (WARNING),
    counts it, and /healthz is degraded — instead of carrying on as if nothing was lost."""
    config = make_config()
    with Collector(config, client=influx) as collector:
        assert wait_until(lambda: collector.subscriber.connected, 10)
        # forge-a's session of the collector (one per supplier)
        forge_a = lane_settings(config.mqtt, "forge-a").client_id
        intruder = paho.Client(CallbackAPIVersion.VERSION2, client_id=forge_a,
                               protocol=paho.MQTTv5)  # fmt: skip
        intruder.connect("127.0.0.1", config.mqtt.port, clean_start=True)
        intruder.loop_start()
        try:
            lane = collector.subscriber.lanes[0]  # type: ignore[union-attr]
            assert wait_until(lambda: lane.connects >= 2
                              and collector.subscriber.sessions_lost >= 1, 30)  # fmt: skip
        finally:
            intruder.loop_stop()
            intruder.disconnect()
        snap = collector.snapshot()
        assert snap.mqtt_sessions_lost >= 1
        assert any("session lost" in p for p in snap.health_problems)
    assert "MQTT session LOST on reconnect" in caplog.text
    assert "supplymeter_collector_mqtt_sessions_lost" in prometheus_text(snap)


@pytest.mark.parametrize(("protocol", "qos"), [("5", 1), ("3.1.1", 1)])
def test_batched_acks_settle_exactly_their_messages_and_stale_ones_are_redelivered(
    make_config: Callable[..., Config], protocol: str, qos: int
) -> None:
    """One write of PUBACKs for a durable batch: the broker takes every one of them (none
    comes back on the next session); acks for a connection that has ended are not sent, and
    those messages come back."""
    import dataclasses

    from collector.mqtt import AckToken, MqttSubscriber

    base = make_config()
    mqtt = base.mqtt.model_copy(
        update={"protocol": protocol, "client_id": f"acks-{protocol}-{qos}", "qos": qos}
    )
    config = dataclasses.replace(
        base, services=base.services.model_copy(update={"mqtt": mqtt}))  # fmt: skip
    received: list[tuple[bytes, AckToken]] = []

    def handler(topic: bytes, payload: bytes, token: AckToken | None = None) -> None:
        assert token is not None
        received.append((payload, token))

    first = MqttSubscriber(settings=config.mqtt, secrets=config.secrets, handler=handler)
    first.start()
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{protocol}-{qos}")
    publisher.connect("127.0.0.1", config.mqtt.port)
    publisher.loop_start()
    for i in range(40):
        publisher.publish(
            "energy/v1/forge-a/plant-1/main/readings", b"%d" % i, qos=qos
        ).wait_for_publish()
    publisher.loop_stop()
    publisher.disconnect()
    assert wait_until(lambda: len(received) == 40, 10)
    tokens = [t for _, t in received]
    assert first.ack_many(tokens[:25]) == (25, 0)
    time.sleep(0.5)  # let the network thread write them
    first.stop()  # the connection ends: its generation is over
    assert first.ack_many(tokens[25:]) == (0, 15)
    received.clear()
    second = MqttSubscriber(settings=config.mqtt, secrets=config.secrets, handler=handler)
    second.start()
    try:
        assert wait_until(lambda: len(received) >= 15, 10)
        time.sleep(1.0)  # nothing else arrives
        assert sorted(int(p) for p, _ in received) == list(range(25, 40))
    finally:
        second.ack_many([t for _, t in received])
        second.stop()


@st.composite
def _publish_packets(draw: st.DrawFn) -> tuple[int, bytes]:
    """A PUBLISH packet after its fixed header: topic, packet id (QoS > 0), MQTT 5 properties
    (none, or some that paho must decode), payload — and now and then cut short."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    qos = draw(st.integers(0, 2))
    header = 0x30 | (qos << 1) | draw(st.integers(0, 1)) | (draw(st.integers(0, 1)) << 3)
    topic = draw(st.binary(max_size=80))
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", draw(st.integers(1, 65535)))
    props = Properties(PacketTypes.PUBLISH)
    if draw(st.booleans()):
        props.ContentType = draw(st.text(max_size=10))
        props.UserProperty = [("k", draw(st.text(max_size=10)))]
    body += props.pack() + draw(st.binary(max_size=200))
    return header, body[: draw(st.integers(0, len(body)))] if draw(st.booleans()) else body


@given(_publish_packets())
def test_the_fast_publish_decoder_decodes_as_paho_does(packet: tuple[int, bytes]) -> None:
    from paho.mqtt.enums import MQTTProtocolVersion

    from collector.mqtt import _paho_decode_publish, decode_publish

    header, body = packet
    for protocol in (MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311):
        try:
            expected = _paho_decode_publish(header, body, protocol)
        except Exception as exc:
            with pytest.raises(type(exc)):
                decode_publish(header, body, protocol)
            continue
        got = decode_publish(header, body, protocol)
        assert got._replace(properties=None) == expected._replace(properties=None)
        assert type(got.payload) is type(expected.payload) and type(got.topic) is bytes
        if expected.properties is None:
            assert got.properties is None
        else:
            assert got.properties.pack() == expected.properties.pack()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_buffered_reads_deliver_every_packet_whole_and_in_order(
    make_config: Callable[..., Config], protocol: str
) -> None:
    """The subscriber reads the socket in 64 KiB chunks: packets of every size — a few bytes,
    across a chunk boundary, several chunks long — arrive whole, in order, none lost, none
    stuck in the buffer (a backlog delivered at once, then one message alone)."""
    import dataclasses

    from collector.mqtt import AckToken, BufferedClient, MqttSubscriber

    base = make_config()
    mqtt = base.mqtt.model_copy(update={"protocol": protocol, "client_id": f"buf-{protocol}"})
    config = dataclasses.replace(base, services=base.services.model_copy(update={"mqtt": mqtt}))
    rnd = random.Random(7)
    sizes = [rnd.choice([1, 60, 140, 4000, 65_000, 70_000, 200_000]) for _ in range(120)]
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    received: list[bytes] = []
    tokens: list[AckToken] = []

    def handler(topic: bytes, payload: bytes, token: AckToken | None = None) -> None:
        assert token is not None
        received.append(payload)
        tokens.append(token)

    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bufpub-{protocol}")
    publisher.connect("127.0.0.1", config.mqtt.port)
    publisher.loop_start()
    subscriber = MqttSubscriber(settings=config.mqtt, secrets=config.secrets, handler=handler)
    assert isinstance(subscriber._client, BufferedClient)
    subscriber.start()
    subscriber.stop()  # away: the backlog queues in the session
    for payload in payloads:
        publisher.publish("energy/v1/forge-a/plant-1/main/readings", payload,
                          qos=1).wait_for_publish()  # fmt: skip
    subscriber = MqttSubscriber(settings=config.mqtt, secrets=config.secrets, handler=handler)
    subscriber.start()
    try:
        assert wait_until(lambda: len(received) == len(payloads), 30)
        assert received == payloads
        subscriber.ack_many(tokens)
        publisher.publish("energy/v1/forge-a/plant-1/main/readings", b"alone",
                          qos=1).wait_for_publish()  # fmt: skip
        assert wait_until(lambda: len(received) == len(payloads) + 1, 5)
        assert received[-1] == b"alone"
    finally:
        subscriber.ack_many(tokens[len(payloads) :])
        subscriber.stop()
        publisher.loop_stop()
        publisher.disconnect()
