"""A simulated site gateway: what it sends (:class:`GatewayLogic`) and how (:class:`Gateway`).

:class:`GatewayLogic` is the gateway's firmware, free of I/O so a run is replayable: per-meter
batching, store-and-forward through outages (a bounded buffer, replayed oldest first in
batches; what overflowed is recorded), and the delivery faults of ``[simulator.faults]``
(duplicates, out-of-order readings, a skewed clock, malformed messages), each recorded in the
ground truth. It turns readings into :class:`Send` and :class:`Link` actions.

:class:`Gateway` is the MQTT client that carries them out.

Like the hardware it stands in for, it announces itself with a retained ``online`` status and
leaves a retained ``offline`` will. It paces itself on the broker's acknowledgements: at most
``max_outstanding`` QoS 1 messages are unacknowledged at any time (DESIGN.md: an unpaced QoS 1
flood made Mosquitto drop a publisher after ~38,000 messages), and it counts only what the
broker acknowledged.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass

import paho.mqtt.client as paho

from collector.payload import (
    encode_readings,
    encode_status,
    format_ts,
    readings_topic,
    status_topic,
)
from simulators.faults import DAY_S, NS, Event, FaultLog, Window, windows
from supplymeter.config import MqttSettings, Secrets, SimulatorSettings, gateway_username
from supplymeter.errors import SourceUnavailable
from supplymeter.records import Reading

MALFORMED: tuple[tuple[str, bytes], ...] = (
    ("invalid_json", b'{"ts": "2026-01-01T00:00:00Z", "energy_kwh": 12'),
    ("missing_field", b'{"seq": 1, "energy_kwh": 1.0}'),
    ("invalid_timestamp", b'{"ts": "yesterday", "energy_kwh": 1.0}'),
    ("invalid_payload", b"[1, 2, 3]"),
    ("unknown_field", b'{"ts": "2026-01-01T00:00:00Z", "energy_wh": 1.0}'),
    ("invalid_utf8", b'{"ts": "\xff\xfe"}'),
)
"""Garbage a broken gateway sends, with the reason code the collector gives it."""


@dataclass(frozen=True)
class Send:
    """Publish ``payload`` on ``topic`` when simulated time reaches ``due_ns``."""

    due_ns: int
    topic: str
    payload: bytes
    retain: bool = False
    readings: int = 0
    """Readings in the payload (0 for status and malformed messages)."""


@dataclass(frozen=True)
class Link:
    """The gateway loses (``up=False``) or regains its connection at ``due_ns``."""

    due_ns: int
    up: bool


Action = Send | Link


class GatewayLogic:
    """One site gateway's sending behaviour, deterministic for a seed (no I/O)."""

    def __init__(
        self, supplier: str, site: str, gateway: str, settings: SimulatorSettings, seed: int,
        start_ns: int, end_ns: int, log: FaultLog, batch: int = 1,
    ) -> None:  # fmt: skip
        self.supplier, self.site, self.gateway = supplier, site, gateway
        self.settings, self.faults, self.log = settings, settings.faults, log
        self.batch = batch
        self.rng = random.Random(f"{seed}:gateway:{supplier}/{site}/{gateway}")
        faults = self.faults
        plan = random.Random(f"{seed}:outages:{supplier}/{site}/{gateway}")
        self.outages: deque[Window] = deque(windows(
            plan, start_ns, end_ns, faults.offline_per_day / DAY_S,
            tuple(m * 60 for m in faults.offline_minutes),
        ))  # fmt: skip
        self.skew_ns = 0
        if faults.clock_skew_rate and plan.random() < faults.clock_skew_rate:
            self.skew_ns = round(plan.uniform(-faults.clock_skew_s, faults.clock_skew_s) * NS)
            log.add(start_ns, Event(
                "clock_skew", supplier, site, start=format_ts(start_ns), gateway=gateway,
                details={"skew_s": self.skew_ns / NS},
            ))  # fmt: skip
        self.status = status_topic(supplier, site, gateway)
        self.online = True
        self.buffer: deque[Reading] = deque()
        self.dropped: dict[str, int] = {}
        self.outage: Window | None = None
        self.pending: dict[str, list[Reading]] = {}
        self.held: dict[str, Reading] = {}

    def start(self, ts_ns: int) -> list[Action]:
        return [Send(ts_ns, self.status, encode_status("online", ts_ns + self.skew_ns), True)]

    def readings(self, ts_ns: int, readings: list[Reading]) -> list[Action]:
        """What the gateway does at ``ts_ns`` with the readings its meters just reported."""
        out: list[Action] = []
        if self.online and self.outages and self.outages[0].start_ns <= ts_ns:
            out += self._go_offline(self.outages.popleft())
        if not self.online and self.outage and self.outage.end_ns <= ts_ns:
            out += self._come_online(ts_ns)
            if self.outages and self.outages[0].start_ns <= ts_ns:
                out += self._go_offline(self.outages.popleft())
        for r in readings:
            if self.skew_ns:
                r = r._replace(ts_ns=r.ts_ns + self.skew_ns)
            if not self.online:
                self._buffer(r)
                continue
            out += self._deliver(ts_ns, r)
        return out

    def finish(self, ts_ns: int) -> list[Action]:
        """End of the run: reconnect if out, send everything still held."""
        out: list[Action] = []
        if not self.online:
            out += self._come_online(ts_ns)
        for meter, r in sorted(self.held.items()):
            out += self._queue(ts_ns, meter, r)
        self.held.clear()
        out += self._flush_pending(ts_ns)
        return out

    # --- store and forward ---------------------------------------------------------------

    def _buffer(self, r: Reading) -> None:
        if len(self.buffer) >= self.settings.buffer_readings:
            lost = self.buffer.popleft()
            self.dropped[lost.meter] = self.dropped.get(lost.meter, 0) + 1
        self.buffer.append(r)

    def _go_offline(self, outage: Window) -> list[Action]:
        out = self._flush_pending(outage.start_ns)
        out.append(Send(
            outage.start_ns, self.status,
            encode_status("offline", outage.start_ns + self.skew_ns), True,
        ))  # fmt: skip
        out.append(Link(outage.start_ns, up=False))
        self.online, self.outage = False, outage
        # Readings held back for reordering are buffered like the rest.
        for r in self.held.values():
            self._buffer(r)
        self.held.clear()
        return out

    def _come_online(self, ts_ns: int) -> list[Action]:
        outage = self.outage
        assert outage is not None
        end_ns = min(outage.end_ns, ts_ns)
        out: list[Action] = [
            Link(end_ns, up=True),
            Send(end_ns, self.status, encode_status("online", end_ns + self.skew_ns), True),
        ]
        replayed = len(self.buffer)
        batches: dict[str, list[Reading]] = {}
        order: list[str] = []
        for r in sorted(self.buffer, key=lambda r: r.ts_ns):
            batch = batches.setdefault(r.meter, [])
            if not batch:
                order.append(r.meter)
            batch.append(r)
            if len(batch) >= self.settings.flush_batch:
                out.append(self._send(ts_ns, batch))
                batches[r.meter] = []
                order.remove(r.meter)
        for meter in order:
            out.append(self._send(ts_ns, batches[meter]))
        self.log.add(outage.start_ns, Event(
            "offline", self.supplier, self.site, start=format_ts(outage.start_ns),
            end=format_ts(end_ns), gateway=self.gateway,
            details={"replayed": replayed, "dropped": dict(sorted(self.dropped.items()))},
        ))  # fmt: skip
        self.buffer.clear()
        self.dropped = {}
        self.online, self.outage = True, None
        return out

    # --- live delivery -------------------------------------------------------------------

    def _deliver(self, ts_ns: int, r: Reading) -> list[Action]:
        held = self.held.pop(r.meter, None)
        if held is not None:
            # Recorded when it happens: a reading held at the end of a run is simply last.
            self.log.add(ts_ns, Event(
                "out_of_order", self.supplier, self.site, start=format_ts(ts_ns),
                meter=r.meter, details={"ts": format_ts(held.ts_ns), "after": format_ts(r.ts_ns)},
            ))  # fmt: skip
            return self._queue(ts_ns, r.meter, r) + self._queue(ts_ns, r.meter, held)
        if self.faults.out_of_order_rate and self.rng.random() < self.faults.out_of_order_rate:
            self.held[r.meter] = r
            return []
        return self._queue(ts_ns, r.meter, r)

    def _queue(self, ts_ns: int, meter: str, r: Reading) -> list[Action]:
        batch = self.pending.setdefault(meter, [])
        batch.append(r)
        if len(batch) < self.batch:
            return []
        del self.pending[meter]
        return self._with_faults(ts_ns, self._send(ts_ns, batch))

    def _flush_pending(self, ts_ns: int) -> list[Action]:
        out: list[Action] = []
        for meter in sorted(self.pending, key=lambda m: self.pending[m][0].ts_ns):
            out += self._with_faults(ts_ns, self._send(ts_ns, self.pending[meter]))
        self.pending.clear()
        return out

    def _send(self, ts_ns: int, batch: list[Reading]) -> Send:
        r = batch[0]
        return Send(ts_ns, readings_topic(r.supplier, r.site, r.meter), encode_readings(batch),
                    readings=len(batch))  # fmt: skip

    def _with_faults(self, ts_ns: int, send: Send) -> list[Action]:
        out: list[Action] = [send]
        faults, rnd = self.faults, self.rng.random
        meter = send.topic.split("/")[4]
        if faults.duplicate_rate and rnd() < faults.duplicate_rate:
            out.append(send)
            self.log.add(ts_ns, Event(
                "duplicate", self.supplier, self.site, start=format_ts(ts_ns), meter=meter,
                details={"readings": send.readings},
            ))  # fmt: skip
        if faults.malformed_rate and rnd() < faults.malformed_rate:
            code, payload = MALFORMED[self.rng.randrange(len(MALFORMED))]
            out.append(Send(ts_ns, send.topic, payload))
            self.log.add(ts_ns, Event(
                "malformed", self.supplier, self.site, start=format_ts(ts_ns), meter=meter,
                details={"reason": code},
            ))  # fmt: skip
        return out


def gateway_client(
    settings: MqttSettings, *, client_id: str, username: str | None, password: str | None
) -> paho.Client:
    """The simulated gateway's own paho client: a publisher only, so a clean session; the
    broker address, protocol version and TLS CA from ``[mqtt]``, never the collector's user."""
    protocol = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
        clean_session=None if protocol == paho.MQTTv5 else True,
    )  # fmt: skip
    if username is not None:
        client.username_pw_set(username, password)
    if settings.tls_ca_file:
        client.tls_set(ca_certs=str(settings.tls_ca_file))
    return client


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
        # The gateway's user name is its client id: the broker binds the two (deploy/mosquitto.py).
        self._client = gateway_client(
            settings, client_id=gateway_username(supplier, site, gateway),
            username=gateway_username(supplier, site, gateway) if password is not None else None,
            password=password,
        )  # fmt: skip
        self._client.will_set(self._status_topic, encode_status("offline"), qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._connected = threading.Event()
        self._outstanding: deque[paho.MQTTMessageInfo] = deque()
        self._max_outstanding = max_outstanding
        self._ack_timeout_s = ack_timeout_s
        self.acked = 0
        self.up = False

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        if not reason.is_failure:
            self._connected.set()

    def __enter__(self) -> Gateway:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, timeout_s: float = 10.0, announce: bool = True) -> None:
        """Connect; ``announce`` publishes the retained ``online`` status (without a ts)."""
        self._connected.clear()
        self._client.connect_async(self._settings.host, self._settings.port, keepalive=60)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self._client.loop_stop()
            raise SourceUnavailable(
                f"gateway {self.supplier}/{self.site}: broker "
                f"{self._settings.host}:{self._settings.port} not reachable"
            )
        self.up = True
        if announce:
            self._track(self._client.publish(self._status_topic, encode_status("online"), 1, True))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish one message; blocks while ``max_outstanding`` are unacknowledged."""
        self._track(self._client.publish(topic, payload, qos=self._qos, retain=retain))

    def link(self, up: bool) -> None:
        """Drop or restore the connection (a simulated outage): everything sent before a drop
        is acknowledged first, so the outage loses nothing the broker already had."""
        if up:
            self.connect(announce=False)
            return
        self.flush()
        self._client.disconnect()
        self._client.loop_stop()
        self.up = False

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

    def close(self, ts_ns: int | None = None) -> None:
        """Flush, say ``offline`` (retained, stamped ``ts_ns`` if given), disconnect."""
        if not self.up:
            return
        try:
            self.flush()
            self._settle(
                self._client.publish(self._status_topic, encode_status("offline", ts_ns), 1, True)
            )
        finally:
            self._client.disconnect()
            self._client.loop_stop()
