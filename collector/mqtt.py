"""The collector's MQTT subscription (paho-mqtt 2.x).

MQTT 5 by default, 3.1.1 selectable (``mqtt.protocol``): DESIGN.md measured paho's 3.1.1
receive path at nearly twice MQTT 5's on this machine, so the choice stays configurable.
Persistent session (clean start off, session expiry from config) and QoS from config, so the
broker keeps what arrives while the collector is away; reconnects back off from 1 s to 30 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from supplymeter.config import MqttSettings, Secrets
from supplymeter.errors import SourceUnavailable

log = logging.getLogger(__name__)

SUBSCRIPTION = "energy/v1/#"

Handler = Callable[[bytes, bytes], None]
"""Called with the raw topic and payload of every message, on paho's network thread."""


def make_client(
    settings: MqttSettings, secrets: Secrets, *, client_id: str | None = None
) -> paho.Client:
    """A configured, unconnected paho client (shared by the collector and the simulator)."""
    protocol = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or settings.client_id,
        protocol=protocol,
        clean_session=None if protocol == paho.MQTTv5 else False,
    )
    if settings.username:
        password = secrets.mqtt_password.get_secret_value() if secrets.mqtt_password else None
        client.username_pw_set(settings.username, password)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


class MqttSubscriber:
    """Subscribes to every v1 topic and hands each message to ``handler``.

    ``start()`` connects and runs paho's network loop in a thread; ``stop()`` disconnects.
    """

    def __init__(self, *, settings: MqttSettings, secrets: Secrets, handler: Handler) -> None:
        self._settings = settings
        self._handler = handler
        self._client = make_client(settings, secrets)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._subscribed = threading.Event()

    def _on_connect(self, client: paho.Client, userdata: object, flags, reason, props) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        log.info("connected to MQTT %s:%d", self._settings.host, self._settings.port)
        client.subscribe(SUBSCRIPTION, qos=self._settings.qos)

    def _on_subscribe(self, client: paho.Client, userdata: object, mid, reasons, props) -> None:
        # Only the broker's SUBACK means messages published from now on will reach us.
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("MQTT subscription to %s refused: %s", SUBSCRIPTION, failed)
            return
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason, props) -> None:
        self._subscribed.clear()
        if reason != 0:
            log.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # The raw topic bytes: paho's .topic would raise on a non-UTF-8 topic.
        self._handler(msg._topic, msg.payload)

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; raise :class:`SourceUnavailable` if that takes too long."""
        props = None
        kwargs: dict[str, object] = {}
        if self._settings.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._settings.session_expiry_s
            kwargs["clean_start"] = False
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            properties=props,
            **kwargs,
        )
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise SourceUnavailable(
                f"MQTT broker {self._settings.host}:{self._settings.port} "
                f"not reachable within {timeout_s} s"
            )

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
