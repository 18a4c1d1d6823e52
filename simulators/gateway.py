"""A simulated site gateway: one MQTT client publishing its meters' readings (protocol v1).

Like the hardware it stands in for, it announces itself with a retained ``online`` status and
leaves a retained ``offline`` will. It paces itself on the broker's acknowledgements: at most
``max_outstanding`` QoS 1 messages are unacknowledged at any time (DESIGN.md: an unpaced QoS 1
flood made Mosquitto drop a publisher after ~38,000 messages), and it counts only what the
broker acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import paho.mqtt.client as paho

from collector.mqtt import make_client
from collector.payload import encode_status, status_topic
from supplymeter.config import MqttSettings, Secrets, gateway_username
from supplymeter.errors import SourceUnavailable


class Gateway:
    """One site's gateway. A context manager: connects on enter, flushes and leaves on exit."""

    def __init__(
        self,
        *,
        settings: MqttSettings,
        secrets: Secrets,
        supplier: str,
        site: str,
        gateway: str,
        password: str | None = None,
        max_outstanding: int = 1000,
        ack_timeout_s: float = 60.0,
    ) -> None:
        self.supplier, self.site, self.gateway = supplier, site, gateway
        self._settings = settings
        self._qos = settings.qos
        self._status_topic = status_topic(supplier, site, gateway)
        # A gateway is never the collector: drop the collector's user from the settings and
        # log in as this gateway when a password is given (brokers with per-gateway ACLs).
        self._client = make_client(
            settings.model_copy(update={"username": None}), secrets,
            client_id=f"sim-{supplier}-{site}-{gateway}"[:64],
        )  # fmt: skip
        if password is not None:
            self._client.username_pw_set(gateway_username(supplier, site, gateway), password)
        self._client.will_set(self._status_topic, encode_status("offline"), qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._connected = threading.Event()
        self._outstanding: deque[paho.MQTTMessageInfo] = deque()
        self._max_outstanding = max_outstanding
        self._ack_timeout_s = ack_timeout_s
        self.acked = 0

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        if not reason.is_failure:
            self._connected.set()

    def __enter__(self) -> Gateway:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, timeout_s: float = 10.0) -> None:
        self._client.connect_async(self._settings.host, self._settings.port, keepalive=60)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self._client.loop_stop()
            raise SourceUnavailable(
                f"gateway {self.supplier}/{self.site}: broker "
                f"{self._settings.host}:{self._settings.port} not reachable"
            )
        self._track(self._client.publish(self._status_topic, encode_status("online"), 1, True))

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish one message; blocks while ``max_outstanding`` are unacknowledged."""
        self._track(self._client.publish(topic, payload, qos=self._qos))

    def _track(self, info: paho.MQTTMessageInfo) -> None:
        self._outstanding.append(info)
        while len(self._outstanding) > self._max_outstanding:
            self._settle(self._outstanding.popleft())

    def _settle(self, info: paho.MQTTMessageInfo) -> None:
        """Wait for the broker's ack of one message; count it."""
        deadline = time.monotonic() + self._ack_timeout_s
        # paho keeps a QoS 1 message published while disconnected and sends it after the
        # reconnect, but its info keeps rc=NO_CONN (is_published() raises) even once acked:
        # so read the acknowledgement flag itself.
        while not info._published:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceUnavailable(
                    f"gateway {self.supplier}/{self.site}: no acknowledgement "
                    f"within {self._ack_timeout_s} s"
                )
            if info.rc == paho.MQTT_ERR_SUCCESS:
                info.wait_for_publish(min(remaining, 1.0))
            else:
                time.sleep(0.01)
        self.acked += 1

    def flush(self) -> None:
        """Wait until the broker acknowledged everything published so far."""
        while self._outstanding:
            self._settle(self._outstanding.popleft())

    def close(self) -> None:
        """Flush, say ``offline`` (retained), disconnect."""
        try:
            self.flush()
            self._settle(
                self._client.publish(self._status_topic, encode_status("offline"), 1, True)
            )
        finally:
            self._client.disconnect()
            self._client.loop_stop()
