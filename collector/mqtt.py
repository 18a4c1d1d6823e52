"""The collector's MQTT subscription (paho-mqtt 2.x), acknowledging only what is stored.

* MQTT 5 by default, 3.1.1 selectable (``mqtt.protocol``). DESIGN.md measured paho's 3.1.1
  receive path at nearly twice MQTT 5's: the cost was paho building a ``Properties`` object
  for every PUBLISH, which :func:`decode_publish` skips when a message has none; MQTT 5 is now
  as fast as 3.1.1 here (BENCHMARKS.md).
* Persistent session (clean start off, session expiry from config, or clean session off on
  3.1.1), so the broker keeps what arrives while the collector is away.
* Manual acknowledgements: a QoS 1 message is acknowledged only when :meth:`ack` is called
  with its :class:`AckToken` — after the batch holding it was written to InfluxDB. Unacked
  messages are redelivered after a crash; writes are idempotent, so replays cost nothing.
  The broker's in-flight window (``mqtt.receive_maximum`` on MQTT 5, Mosquitto's
  ``max_inflight_messages`` on 3.1.1) therefore bounds how many readings the collector holds
  in memory: an InfluxDB outage becomes a backlog on the broker, not in RAM.
* Acks are tied to the connection they came from: after a reconnect the broker redelivers
  what was unacked and may reuse packet ids, so an ack for an older connection is dropped
  rather than sent (it could acknowledge a different, unwritten message).
* Reconnects back off exponentially from 1 s to 30 s with jitter (half fixed, half random),
  so a fleet of collectors does not reconnect in lockstep after a broker restart; the session
  resumes where it was.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt._packet as paho_packet
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from supplymeter.config import MqttSettings, Secrets
from supplymeter.errors import SourceUnavailable

log = logging.getLogger(__name__)

SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
_PUBACK = struct.Struct("!BBH")
"""PUBACK fixed header, remaining length 2, packet id (MQTT 3.1.1 §3.4; 5.0 §3.4)."""

SESSION_TAKEN_OVER = 142
"""MQTT 5 DISCONNECT reason: another connection with the same client id took the session."""

TOPIC_FILTER = "energy/v1/#"
MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


_EMPTY_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)
_paho_decode_publish = paho_packet.decode_publish


def decode_publish(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> paho_packet.PublishPacket:
    """paho's PUBLISH decoder, with a fast path for an MQTT 5 message without properties.

    paho builds a ``Properties`` object for every MQTT 5 PUBLISH — 11.6 of the 13.6 µs its
    decoding takes on this machine (BENCHMARKS.md), the whole of MQTT 5's extra cost over
    3.1.1. Gateways send no properties: a property length of 0 (MQTT 5.0 §3.3.2.3.1) gets one
    shared, empty ``Properties`` instead (nothing here reads or changes it). Anything else
    — properties present, a short or malformed packet, MQTT 3.1.1 — goes to paho's own
    decoder, unchanged. ``tests/collector/test_mqtt.py`` proves both decode alike."""
    if protocol == MQTTProtocolVersion.MQTTv5 and len(packet) >= 2:
        qos = (header & 0x06) >> 1
        slen = (packet[0] << 8) | packet[1]
        at = 2 + slen + (2 if qos else 0)
        if len(packet) > at and packet[at] == 0 and qos != 3:
            return paho_packet.PublishPacket(
                dup=bool(header & 0x08), qos=qos, retain=bool(header & 0x01),
                topic=bytes(packet[2 : 2 + slen]),
                mid=(packet[2 + slen] << 8) | packet[3 + slen] if qos else 0,
                properties=_EMPTY_PUBLISH_PROPERTIES, payload=bytes(packet[at + 1 :]),
            )  # fmt: skip
    return _paho_decode_publish(header, packet, protocol)


def install_fast_decoder() -> None:
    """Route paho's PUBLISH decoding through :func:`decode_publish` (idempotent). paho looks
    the decoder up in its ``_packet`` module at every message: a private module, so check
    this when paho is upgraded (the pinned version is tested)."""
    paho_packet.decode_publish = decode_publish


@dataclass(frozen=True, slots=True)
class AckToken:
    """What is needed to acknowledge one received message, on the connection it came from."""

    generation: int
    mid: int
    qos: int
    retain: bool = False
    """The broker delivered a retained message (sent again at every subscription)."""
    lane: int = 0
    """Which of the collector's sessions (one per supplier, see :class:`Lanes`) it came on."""


Handler = Callable[[bytes, bytes, AckToken], None]
"""Called with the raw topic, payload and ack token of every message, on the network thread."""


def subscription(settings: MqttSettings, topic_filter: str = TOPIC_FILTER) -> str:
    """The topic filter, as a shared subscription when ``mqtt.shared_group`` is set."""
    if settings.shared_group:
        return f"$share/{settings.shared_group}/{topic_filter}"
    return topic_filter


def supplier_filter(supplier: str) -> str:
    """The topics of one supplier's gateways (readings and statuses)."""
    return f"energy/v1/{supplier}/#"


def lane_settings(settings: MqttSettings, supplier: str) -> MqttSettings:
    """The MQTT identity of the session that carries ``supplier``'s topics: client id
    ``client_id.<supplier>`` and user ``username.<supplier>`` (same password). Gateway
    users are ``supplier.site.gateway`` — three parts — so the names cannot meet."""
    ids = {"client_id": f"{settings.client_id}.{supplier}"}
    if settings.username:
        ids["username"] = f"{settings.username}.{supplier}"
    return settings.model_copy(update=ids)


YIELD_AFTER_S = 0.01
"""Longest the network thread handles buffered packets before it yields the GIL [s]. Without
a yield, p99 publish → stored latency at 5,000 readings/s ran 0.4–1.15 s; with 2 ms the drain
was about 10 % slower; 10 ms keeps both (BENCHMARKS.md)."""


class BufferedClient(paho.Client):
    """paho's client reading the socket in 64 KiB chunks.

    paho reads each packet with three or four ``recv`` calls (the command byte, each byte of
    the remaining length, the rest) and goes back to ``select`` after every packet; draining
    a backlog, those system calls were a large part of its per-message cost. Here ``recv``
    fills a buffer that serves paho's reads, and :meth:`loop_read` goes on until the buffer is
    empty (data in it is invisible to ``select``). The buffer belongs to one socket: it is
    emptied when the socket closes. Everything else is paho's own code; the overridden
    methods are private API, so check them when paho is upgraded (the pinned version is
    tested)."""

    CHUNK = 65536

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rbuf = b""
        self._rpos = 0
        self.yield_after_s = YIELD_AFTER_S
        """How long this client's network thread handles buffered packets before it yields
        the GIL; :class:`Lanes` divides :data:`YIELD_AFTER_S` among its sessions' threads."""

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            self._rbuf, self._rpos = super()._sock_recv(self.CHUNK), 0
            if not self._rbuf:
                return b""  # the peer closed: paho sees an empty read
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        since = time.perf_counter()
        while rc == SUCCESS and self._sock is not None and self._rpos < len(self._rbuf):
            rc = super().loop_read(1)
            if time.perf_counter() - since > self.yield_after_s:
                # Without a system call per packet this thread would keep the GIL for the
                # whole buffer: the writer thread would wait, and so would the readings.
                time.sleep(0)
                since = time.perf_counter()
        return rc

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()


def make_client(
    settings: MqttSettings, secrets: Secrets, *, client_id: str | None = None,
    manual_ack: bool = False, clean: bool = False,
) -> paho.Client:  # fmt: skip
    """A configured, unconnected paho client (shared by the collector and the simulator);
    ``clean``: an MQTT 3.1.1 clean session (the stored session is discarded)."""
    protocol = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
    client = (BufferedClient if manual_ack else paho.Client)(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or settings.client_id,
        protocol=protocol,
        clean_session=None if protocol == paho.MQTTv5 else clean,
        manual_ack=manual_ack,
    )
    if settings.username:
        password = secrets.mqtt_password.get_secret_value() if secrets.mqtt_password else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca_file:
        client.tls_set(ca_certs=str(settings.tls_ca_file))
    return client


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Wait before reconnect attempt ``attempt`` (0-based): equal-jitter exponential backoff."""
    ceiling = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2**attempt)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class MqttSubscriber:
    """Subscribes to every v1 topic, hands each message to ``handler``, acks on request.

    ``start()`` runs paho's network loop in its thread (it reconnects by itself; the waits
    between attempts are set here, with jitter); ``stop()`` ends it.
    """

    def __init__(self, *, settings: MqttSettings, secrets: Secrets, handler: Handler,
                 retire: bool = False, topic_filter: str = TOPIC_FILTER,
                 lane: int = 0) -> None:  # fmt: skip
        """``retire``: drain a persistent session that no process serves any more — its
        subscription is removed at once (nothing new is routed to it) and the messages the
        broker had queued for it arrive as usual; :meth:`end_session` then deletes it.
        ``topic_filter``: what to subscribe to (default every v1 topic); ``lane``: the
        number its ack tokens carry."""
        install_fast_decoder()
        self._filter = topic_filter
        self._lane = lane
        self._settings = settings
        self._secrets = secrets
        self._retire = retire
        self.session_present: bool | None = None
        self._handler = handler
        self._client = make_client(settings, secrets, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_unsubscribe = self._on_unsubscribe
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._attempt = 0
        self._rng = random.Random()
        self.connects = 0
        self.sessions_lost = 0
        """Reconnects that found the persistent session gone (queued messages lost)."""
        self.session_lost_at: float | None = None
        self.disconnected_since: float | None = time.monotonic()
        self._next_wait()

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    def set_yield_after(self, seconds: float) -> None:
        """See :attr:`BufferedClient.yield_after_s`."""
        if isinstance(self._client, BufferedClient):
            self._client.yield_after_s = seconds

    def _next_wait(self) -> None:
        """Set paho's wait before its next reconnect attempt (it doubles, we add jitter)."""
        wait = backoff_s(self._attempt, self._rng)
        self._attempt += 1
        self._client.reconnect_delay_set(wait, wait)  # type: ignore[arg-type]

    # --- callbacks (network thread) -----------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: object, flags, reason, props) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        self.connects += 1
        self.session_present = bool(flags.session_present)
        log.info("connected to MQTT %s:%d (session present: %s)", self._settings.host,
                 self._settings.port, flags.session_present)  # fmt: skip
        if self._retire:
            client.unsubscribe(subscription(self._settings, self._filter))
            return
        if self.connects > 1 and not flags.session_present and self._settings.session_expiry_s:
            # Our persistent session should have outlived the disconnect: without it, the
            # messages the broker had queued for us are gone. Another client connected with
            # our client id (a takeover), or the broker lost its persistence.
            self.sessions_lost += 1
            self.session_lost_at = time.monotonic()
            log.warning("MQTT session LOST on reconnect as %r: messages queued for the "
                        "collector were discarded by the broker (another client used this "
                        "client id, or the broker restarted without persistence)",
                        self._settings.client_id)  # fmt: skip
        if self._settings.protocol == "5":
            # Retained messages only when the subscription is new: a persistent session's
            # re-subscription would otherwise get every retained status (and every retained
            # bad message) again at each start.
            only_new = SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            options = SubscribeOptions(qos=self._settings.qos, retainHandling=only_new)
            client.subscribe(subscription(self._settings, self._filter), options=options)
        else:
            client.subscribe(subscription(self._settings, self._filter), qos=self._settings.qos)

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        log.warning("MQTT %s:%d unreachable; retrying", self._settings.host, self._settings.port)
        self._next_wait()

    def _on_disconnect(self, client: paho.Client, userdata: object, flags, reason, props) -> None:
        with self._lock:
            # Acks for this connection's messages must not be sent on the next one.
            self._generation += 1
        self._subscribed.clear()
        if self.disconnected_since is None:
            self.disconnected_since = time.monotonic()
        if reason != 0:
            log.warning("MQTT connection lost (%s); reconnecting", reason)
            if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
                log.warning("another client connected with the collector's client id %r",
                            self._settings.client_id)  # fmt: skip
        self._next_wait()

    def _on_subscribe(self, client: paho.Client, userdata: object, mid, reasons, props) -> None:
        # Only the broker's SUBACK means messages published from now on will reach us.
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("MQTT subscription to %s refused: %s",
                      subscription(self._settings, self._filter), failed)  # fmt: skip
            return
        self._attempt = 0
        self._next_wait()
        self.disconnected_since = None
        self._subscribed.set()

    def _on_unsubscribe(self, client: paho.Client, userdata: object, mid, reasons, props
                        ) -> None:  # fmt: skip
        # A retiring session: from here on the broker routes nothing new to it.
        self.disconnected_since = None
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        token = AckToken(self._generation, msg.mid, msg.qos, bool(msg.retain), self._lane)
        # The raw topic bytes: paho's .topic would raise on a non-UTF-8 topic.
        self._handler(msg._topic, msg.payload, token)

    # --- acks (any thread) --------------------------------------------------------------

    def ack_many(self, tokens: list[AckToken]) -> tuple[int, int]:
        """Acknowledge a durable batch's messages, in order: (sent, dropped — their connection
        is gone, the broker redelivers them).

        The QoS 1 PUBACKs go to paho's network thread as **one** write: per message, paho
        would wake its loop and make a system call for 4 bytes. A PUBACK is the same 4 bytes
        in MQTT 3.1.1 and 5 (success, no properties: MQTT 5.0 §3.4.2.1), and paho keeps no
        state for a manual ack, so queueing them together changes nothing but the cost.
        """
        with self._lock:
            current = [t for t in tokens if t.generation == self._generation]
            failed = 0
            qos1 = [t.mid for t in current if t.qos == 1]
            if qos1:
                packet = b"".join(_PUBACK.pack(paho.PUBACK, 2, mid) for mid in qos1)
                if self._client._packet_queue(paho.PUBACK, packet, 0, 0) != SUCCESS:
                    failed += len(qos1)
            for t in current:  # QoS 2 (rare: a subscription at qos = 2): paho's own PUBCOMP
                if t.qos == 2 and self._client.ack(t.mid, 2) != SUCCESS:
                    failed += 1
        return len(current) - failed, len(tokens) - len(current) + failed

    # --- lifetime -----------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; raise :class:`SourceUnavailable` if that takes too long.

        paho keeps reconnecting in the background after a later connection loss.
        """
        props, kwargs = None, {}
        if self._settings.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self._settings.session_expiry_s
            props.ReceiveMaximum = self._settings.receive_maximum
            kwargs["clean_start"] = False
        self._client.connect_async(
            self._settings.host, self._settings.port, keepalive=self._settings.keepalive_s,
            properties=props, **kwargs,
        )  # fmt: skip
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise SourceUnavailable(
                f"MQTT broker {self._settings.host}:{self._settings.port} "
                f"not reachable within {timeout_s} s"
            )

    def stop(self, end_session: bool = False) -> None:
        """Disconnect (what was not acknowledged stays with the broker) and end the loop;
        ``end_session``: and have the broker delete the persistent session."""
        with self._lock:
            self._generation += 1
        if end_session and self._settings.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0  # MQTT 5.0 §3.14.2.2.2: the session ends now
            self._client.disconnect(properties=props)
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self._subscribed.clear()
        if end_session and self._settings.protocol != "5":
            # MQTT 3.1.1 §3.1.2.4: a clean-session connection discards the stored session.
            clean = make_client(self._settings, self._secrets, manual_ack=False, clean=True)
            done = threading.Event()
            clean.on_connect = lambda *a: done.set()
            clean.connect(self._settings.host, self._settings.port, self._settings.keepalive_s)
            clean.loop_start()
            done.wait(10)
            clean.disconnect()
            clean.loop_stop()


class Lanes:
    """One :class:`MqttSubscriber` per supplier, seen as one: its own persistent session and
    so its own broker queue each (``collector.session_per_supplier``). Acks go back on the
    session their message came from; health is the worst lane's."""

    def __init__(self, *, settings: MqttSettings, secrets: Secrets, handler: Handler,
                 suppliers: list[str], retire: bool = False) -> None:  # fmt: skip
        if not suppliers:
            raise ValueError("a collector with a session per supplier needs suppliers")
        self.suppliers = list(suppliers)
        self._settings, self._secrets, self._handler = settings, secrets, handler
        self.lanes = [
            MqttSubscriber(settings=lane_settings(settings, s), secrets=secrets, handler=handler,
                           retire=retire, topic_filter=supplier_filter(s), lane=i)
            for i, s in enumerate(self.suppliers)
        ]  # fmt: skip
        # Each session has its own network thread: together they hold the GIL as long as one
        # would, so the writer thread (and the acks) are not starved. Measured: four sessions
        # at 10 ms each drained single readings at 82 % of one session's rate, at 2.5 ms at
        # 99-130 %; 100-reading batches at about 80 % either way (BENCHMARKS.md).
        share = max(YIELD_AFTER_S / len(self.lanes), 0.001)
        for lane in self.lanes:
            lane.set_yield_after(share)

    @property
    def connected(self) -> bool:
        return all(lane.connected for lane in self.lanes)

    @property
    def connects(self) -> int:
        """Connections made, every lane's (a counter)."""
        return sum(lane.connects for lane in self.lanes)

    @property
    def sessions_lost(self) -> int:
        return sum(lane.sessions_lost for lane in self.lanes)

    @property
    def session_lost_at(self) -> float | None:
        return max((x for lane in self.lanes if (x := lane.session_lost_at) is not None),
                   default=None)  # fmt: skip

    @property
    def disconnected_since(self) -> float | None:
        return min((x for lane in self.lanes if (x := lane.disconnected_since) is not None),
                   default=None)  # fmt: skip

    def ack_many(self, tokens: list[AckToken]) -> tuple[int, int]:
        """Acknowledge each token on its own lane, in order; (sent, dropped)."""
        by_lane: dict[int, list[AckToken]] = {}
        for t in tokens:
            by_lane.setdefault(t.lane, []).append(t)
        sent = dropped = 0
        for lane, mine in by_lane.items():
            s, d = self.lanes[lane].ack_many(mine)
            sent, dropped = sent + s, dropped + d
        return sent, dropped

    def add(self, supplier: str, timeout_s: float = 10.0) -> None:
        """Open a session for a supplier added to the registry while running (its broker
        identity must exist: ``supplymeter deploy mosquitto --apply``)."""
        if supplier in self.suppliers:
            return
        lane = MqttSubscriber(settings=lane_settings(self._settings, supplier),
                              secrets=self._secrets, handler=self._handler, retire=False,
                              topic_filter=supplier_filter(supplier),
                              lane=len(self.lanes))  # fmt: skip
        lane.start(timeout_s)
        self.lanes.append(lane)
        self.suppliers.append(supplier)
        share = max(YIELD_AFTER_S / len(self.lanes), 0.001)
        for each in self.lanes:
            each.set_yield_after(share)

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect every lane (in parallel); all or none."""
        errors: list[Exception] = []

        def start_one(lane: MqttSubscriber) -> None:
            try:
                lane.start(timeout_s)
            except Exception as exc:  # reported below, once every lane has had its try
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(lane,)) for lane in self.lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]

    def stop(self, end_session: bool = False) -> None:
        for lane in self.lanes:
            lane.stop(end_session=end_session)


@dataclass(frozen=True)
class BrokerProbe:
    session_present: bool
    """The broker holds a persistent session for the client id."""
    shared_subscriptions: bool
    """The broker offers shared subscriptions: MQTT 5 CONNACK ``SharedSubscriptionAvailable``
    (absent means yes, MQTT 5.0 §3.2.2.3.15); unknown on 3.1.1, taken as no."""


def probe(settings: MqttSettings, secrets: Secrets, timeout_s: float = 10.0) -> BrokerProbe:
    """Connect once as ``settings.client_id`` and see what the broker offers, leaving things
    as they were: an existing session keeps its queue (what the broker sends during the
    probe is not acknowledged, so it is redelivered), and a session the probe itself created
    is deleted again. Raises :class:`SourceUnavailable` when the broker refuses or cannot be
    reached."""
    client = make_client(settings, secrets, manual_ack=True)
    answer: list[tuple[bool, bool, bool]] = []
    done = threading.Event()

    def on_connect(c: paho.Client, u: object, flags, reason, props) -> None:
        shared = settings.protocol == "5" and bool(
            getattr(props, "SharedSubscriptionAvailable", 1))  # fmt: skip
        answer.append((bool(flags.session_present), not reason.is_failure, shared))
        done.set()

    client.on_connect = on_connect
    props, kwargs = None, {}
    if settings.protocol == "5":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = max(settings.session_expiry_s, 1)
        kwargs["clean_start"] = False
    try:
        client.connect(settings.host, settings.port, settings.keepalive_s, properties=props,
                       **kwargs)  # fmt: skip
    except OSError as exc:
        raise SourceUnavailable(f"MQTT broker {settings.host}:{settings.port}: {exc}") from exc
    client.loop_start()
    try:
        if not done.wait(timeout_s) or not answer[0][1]:
            raise SourceUnavailable(f"MQTT broker {settings.host}:{settings.port} refused "
                                    f"or did not answer {settings.client_id!r}")  # fmt: skip
        present = answer[0][0]
        if not present and settings.protocol == "5":
            end = Properties(PacketTypes.DISCONNECT)
            end.SessionExpiryInterval = 0
            client.disconnect(properties=end)
        else:
            client.disconnect()
    finally:
        client.loop_stop()
    if not present and settings.protocol != "5":
        clean = make_client(settings, secrets, clean=True)
        clean.connect(settings.host, settings.port, settings.keepalive_s)
        clean.loop_start()
        clean.disconnect()
        clean.loop_stop()
    return BrokerProbe(present, answer[0][2])


def session_present(settings: MqttSettings, secrets: Secrets, timeout_s: float = 10.0) -> bool:
    """Whether the broker holds a persistent session for ``settings.client_id`` (see
    :func:`probe`)."""
    return probe(settings, secrets, timeout_s).session_present
