"""The collector: MQTT messages in, validated readings and recorded rejections out to InfluxDB.

Flow per message (on paho's network thread): topic → registry lookup → payload parse →
line protocol → :class:`BatchWriter`, all of one message's lines (readings, and a
``rejected_message`` point for anything refused) as one entry carrying the message's ack
token. When the batch holding it has been written, the message is acknowledged to the broker.

Delivery: at least once from the broker, idempotent in InfluxDB (a point is keyed by
measurement + tags + timestamp), so exactly once in the stored data. ``kill -9`` at any
moment loses nothing — unacknowledged messages are redelivered to the persistent session —
and double-counts nothing.

InfluxDB down: the writer retries the batch it holds; no further acks go out, so the broker
stops sending once the in-flight window (``mqtt.receive_maximum``) is full and keeps the rest
of the backlog (bounded by its own limits, e.g. Mosquitto's ``max_queued_bytes``). Memory in
the collector stays bounded by that window; nothing is dropped. ``/healthz`` turns unhealthy
when this lasts longer than ``collector.unhealthy_after_s``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.metrics import MetricsServer, Snapshot, health_problems, stats_line
from collector.mqtt import (
    AckToken,
    Lanes,
    MqttSubscriber,
    lane_settings,
    probe,
    session_present,
    supplier_filter,
)
from collector.payload import (
    Limits,
    StatusTopic,
    parse_readings,
    parse_status,
    parse_topic,
    resolve_meter,
)
from collector.writer import BatchWriter
from supplymeter.config import (
    AUTO_MAX_PROCESSES,
    AUTO_SHARED_GROUP,
    Config,
    MeterRef,
    RegistryWatch,
)
from supplymeter.errors import BadReading, SourceUnavailable
from supplymeter.influx import InfluxClient
from supplymeter.records import Reading, Rejection
from supplymeter.store import (
    HOUR_NS,
    arrival_line,
    reading_line,
    rejection_line,
    status_line,
)

log = logging.getLogger(__name__)

SUMMARY_EVERY_S = 60.0


@dataclass
class CollectorStats:
    """Counts since start. ``reading_messages`` are those on a registry meter's readings
    topic; ``messages`` counts everything received, rejected or not."""

    messages: int = 0
    reading_messages: int = 0
    readings_accepted: int = 0
    retained_repeats: int = 0
    """Rejections of retained messages seen again (not recorded twice)."""
    late_readings: int = 0
    """Accepted readings older than ``collector.late_after_s`` (marked for the rollup)."""
    statuses: int = 0
    acks_sent: int = 0
    acks_dropped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def __str__(self) -> str:
        refused = ", ".join(f"{n:,} {code}" for code, n in self.rejected.most_common())
        why = f" ({refused})" if refused else ""
        return (f"{self.messages:,} messages, {self.readings_accepted:,} readings stored "
                f"({self.late_readings:,} late), {self.statuses:,} statuses, "
                f"{self.rejected_total:,} refused{why}")  # fmt: skip


class Collector:
    """Subscribes, validates, writes, acknowledges. A context manager (or ``start``/``stop``).

    ``clock`` returns epoch nanoseconds (injected for tests).
    """

    def __init__(
        self,
        config: Config,
        *,
        client: InfluxClient,
        clock: Callable[[], int] = time.time_ns,
        retire: bool = False,
        only_supplier: str | None = None,
    ) -> None:
        """``retire``: drain a session no process serves any more (see
        :func:`retire_sessions`); ``only_supplier``: be that supplier's session alone."""
        self._config = config
        self._registry = config.registry
        settings = config.collector
        self._late_ns = int(settings.late_after_s * 1e9)
        self._retained_seen: set[bytes] = set()
        self._limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_batch_readings=settings.max_batch_readings,
            max_future_ns=int(settings.max_future_s * 1e9),
            max_past_ns=int(settings.max_past_days * 86_400 * 1e9),
            max_power_factor=settings.max_power_factor,
        )
        self._clock = clock
        self._last_ns = 0
        self._lock = threading.Lock()
        self.stats = CollectorStats()
        self.writer = BatchWriter(
            client=client,
            batch_size=settings.batch_size,
            flush_interval_s=settings.flush_interval_s,
            queue_max_points=settings.queue_max_points,
            on_written=self._acknowledge,
            on_refused=self._refused,
            mark_lines=self._mark_lines,
        )
        self.subscriber: MqttSubscriber | Lanes
        if only_supplier is not None:
            self.subscriber = MqttSubscriber(
                settings=lane_settings(config.mqtt, only_supplier), secrets=config.secrets,
                handler=self.handle, retire=retire, topic_filter=supplier_filter(only_supplier),
            )  # fmt: skip
        elif settings.session_per_supplier and config.registry.suppliers:
            self.subscriber = Lanes(settings=config.mqtt, secrets=config.secrets,
                                    handler=self.handle, retire=retire,
                                    suppliers=[s.id for s in config.registry.suppliers],
                                    )  # fmt: skip
        else:
            self.subscriber = MqttSubscriber(
                settings=config.mqtt, secrets=config.secrets, handler=self.handle, retire=retire
            )
        self._metrics: MetricsServer | None = None
        self._stopping = threading.Event()
        self._stats_thread = threading.Thread(target=self._report, name="stats", daemon=True)
        self._last_summary = time.monotonic()
        self._summary_counts: Counter[str] = Counter()
        self._known_topics: dict[bytes, MeterRef] = {}
        path = config.registry_path
        following = not retire and only_supplier is None and path.exists()
        self._watch = RegistryWatch(path, config.registry) if following else None
        self._watch_thread = threading.Thread(target=self._follow_registry, name="registry",
                                              daemon=True)  # fmt: skip
        self._registry_lock = threading.Lock()
        self._lanes_failing: set[str] = set()

    REGISTRY_POLL_S = 2.0
    """How often the registry file is looked at for changes."""

    def _follow_registry(self) -> None:
        """Take registry edits while running: new meters, sites, gateways and suppliers are
        accepted within :attr:`REGISTRY_POLL_S` (a new supplier gets its own session, retried
        until the broker knows its identity)."""
        while not self._stopping.wait(self.REGISTRY_POLL_S):
            try:
                self.reload_registry()
            except Exception:  # the collector must outlive any reload failure
                log.exception("registry reload failed; the last good registry stays")

    def reload_registry(self) -> bool:
        """Look at the registry file once; True when a new registry was taken. Opens the
        sessions of suppliers that have none yet."""
        taken = self._take_registry()
        if isinstance(self.subscriber, Lanes):
            for supplier in self._registry.suppliers:
                if supplier.id in self.subscriber.suppliers:
                    continue
                try:
                    self.subscriber.add(supplier.id)
                    log.warning("session opened for new supplier %s", supplier.id)
                except Exception as exc:  # its identity may not be on the broker yet
                    if supplier.id not in self._lanes_failing:
                        log.warning("no session yet for new supplier %s (%s): run `supplymeter "
                                    "deploy mosquitto --apply`; retrying", supplier.id,
                                    exc)  # fmt: skip
                    self._lanes_failing.add(supplier.id)
                else:
                    self._lanes_failing.discard(supplier.id)
        return taken

    def _take_registry(self) -> bool:
        """Swap in the registry file's new content, if it changed and is valid."""
        if self._watch is None:
            return False
        with self._registry_lock:
            new = self._watch.poll()
            if new is None:
                return False
            self._registry = new
            self._known_topics = {}  # resolved topics are cached: resolve against the new one
            return True

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def metrics_port(self) -> int | None:
        return self._metrics.port if self._metrics else None

    def start(self) -> None:
        settings = self._config.collector
        self.writer.start()
        try:
            if settings.metrics_port:
                self._metrics = MetricsServer(
                    host=settings.metrics_host, port=settings.metrics_port, snapshot=self.snapshot
                )
                self._metrics.start()
            self.subscriber.start()
        except Exception:
            self._close_metrics()
            self.writer.close()
            raise
        self._stats_thread.start()
        if self._watch is not None:
            self._watch_thread.start()

    def stop(self, end_session: bool = False) -> None:
        """Write and acknowledge everything received, then disconnect (``end_session``: and
        delete the persistent session, once everything received is acknowledged).

        Order matters: the writer drains while the connection is still up, so the acks of
        the last batches reach the broker; whatever is not acked is redelivered next time.
        """
        self._stopping.set()
        self._write_stats()
        flushed = self.writer.flush(timeout_s=30)
        # A session is only ended with nothing of it unacknowledged: otherwise it stays, and
        # the broker redelivers what is left to the next drain.
        self.subscriber.stop(end_session=end_session and flushed and not self.writer.backlog)
        # What arrived since is written but was not acked: the broker redelivers it. With
        # InfluxDB down the writer would retry for ever; give up after a while instead —
        # nothing unwritten was acknowledged, so nothing is lost.
        self.writer.close(timeout_s=15)
        if self.writer.backlog:
            log.warning("stopping with %d lines unwritten; their messages were not "
                        "acknowledged and will be redelivered", self.writer.backlog)  # fmt: skip
        self._close_metrics()
        self._log_summary(force=True)

    def _close_metrics(self) -> None:
        if self._metrics:
            self._metrics.stop()
            self._metrics = None

    def _now_ns(self) -> int:
        """Receipt time, strictly increasing so two rejections never share a point key."""
        with self._lock:
            self._last_ns = max(self._clock(), self._last_ns + 1)
            return self._last_ns

    # --- per message --------------------------------------------------------------------

    def handle(self, topic_bytes: bytes, payload: bytes, token: AckToken | None = None) -> None:
        """Process one MQTT message. Never raises: every failure becomes a rejection."""
        self.stats.messages += 1
        topic = topic_bytes.decode("utf-8", "replace")
        lines: list[str] = []
        marks = None
        # A retained message comes again at every (re)subscription: its rejection is recorded
        # the first time only (per collector process and message), not re-counted.
        retained = (hashlib.sha256(topic_bytes + b"\x00" + payload).digest()
                    if token is not None and token.retain else None)  # fmt: skip
        repeat = retained is not None and retained in self._retained_seen

        def reject(exc: BadReading) -> list[str]:
            if repeat:
                self.stats.retained_repeats += 1
                return []
            if retained is not None:
                self._retained_seen.add(retained)
            return [self._reject(exc, topic, payload)]

        try:
            target = self._route(topic_bytes, topic)
            if isinstance(target, StatusTopic) and not payload:
                # An empty retained payload clears a gateway's retained status: not input.
                log.debug("retained status cleared on %.200s", topic)
                self.writer.put([], token)
                return
            if isinstance(target, StatusTopic):
                status = parse_status(payload, target, self._registry, self._now_ns(), self._limits)
                self.stats.statuses += 1
                lines.append(
                    status_line(
                        status.supplier,
                        status.site,
                        status.gateway,
                        status.state,
                        status.received_ns,
                        status.ts_ns,
                    )
                )
            else:
                self.stats.reading_messages += 1
                now_ns = self._clock()
                readings, rejected = parse_readings(payload, target, now_ns, self._limits)
                lines += [reading_line(r) for r in readings]
                if readings and min(r.ts_ns for r in readings) < now_ns - self._late_ns:
                    marks = self._late_marks(readings, now_ns - self._late_ns)
                self.stats.readings_accepted += len(readings)
                for exc in rejected:
                    lines += reject(exc)
        except BadReading as exc:
            lines += reject(exc)
        except Exception as exc:  # a bug must not stop the stream; record it like bad input
            log.exception("internal error handling a message on %.200s", topic)
            lines += reject(BadReading("internal_error", repr(exc)[:300]))
        self.writer.put(lines, token, marks=marks, source=topic)

    def _late_marks(
        self, readings: list[Reading], late_before_ns: int
    ) -> list[tuple[tuple[tuple[str, str, str], int], int]]:
        """(meter, hour) of each late reading: the writer stores one ``reading_arrival`` per
        distinct pair and batch, durable together with the readings, and the rollup job
        recomputes exactly those hours, however old. On-time readings (the common case) cost
        nothing: the job's trailing window covers them."""
        key = (readings[0].supplier, readings[0].site, readings[0].meter)
        hours = Counter(r.ts_ns // HOUR_NS for r in readings if r.ts_ns < late_before_ns)
        self.stats.late_readings += sum(hours.values())
        # One entry per hour (the writer merges them per batch); its count is the readings.
        return [((key, h * HOUR_NS), n) for h, n in hours.items()]

    def _mark_lines(self, marks: Counter[tuple[tuple[str, str, str], int]]) -> list[str]:
        return [arrival_line(key, hour, n, self._now_ns()) for (key, hour), n in marks.items()]

    def _route(self, topic_bytes: bytes, topic: str) -> MeterRef | StatusTopic:
        """The registry meter a readings topic names, or the parsed status topic.

        Resolved readings topics are cached (emptied when the registry is reloaded): at most
        one entry per registry meter, since failures are not kept.
        """
        ref = self._known_topics.get(topic_bytes)
        if ref is not None:
            return ref
        parsed = parse_topic(topic)
        if isinstance(parsed, StatusTopic):
            return parsed
        try:
            ref = resolve_meter(parsed, self._registry)
        except BadReading:
            # A device added to the registry a moment ago: look at the file now rather than
            # refuse its first readings until the next poll.
            if not self._take_registry():
                raise
            ref = resolve_meter(parsed, self._registry)
        self._known_topics[topic_bytes] = ref
        return ref

    def _supplier_tag(self, topic: str) -> str | None:
        """The supplier id of a topic, if the registry knows it (only such ids become tags)."""
        try:
            supplier = parse_topic(topic).supplier
        except BadReading:
            return None
        return supplier if self._registry.supplier(supplier) is not None else None

    def _reject(self, exc: BadReading, topic: str, payload: bytes) -> str:
        """Count and log a rejection; return its ``rejected_message`` line."""
        rejection = Rejection(
            code=exc.code,
            detail=exc.detail,
            topic=topic,
            received_ns=self._now_ns(),
            supplier=self._supplier_tag(topic),
            payload_bytes=len(payload),
            excerpt=payload[:120].decode("utf-8", "replace"),
        )
        if exc.code not in self.stats.rejected:
            log.warning("first %s rejection, on %.200s: %s", exc.code, topic, exc.detail)
        else:
            log.debug("rejected %s on %.200s: %s", exc.code, topic, exc.detail)
        self.stats.rejected[exc.code] += 1
        self._summary_counts[exc.code] += 1
        self._log_summary()
        return rejection_line(rejection)

    def _acknowledge(self, tokens: list[object]) -> None:
        """Called by the writer once a batch is durable: ack its messages, in order."""
        sent, dropped = self.subscriber.ack_many(tokens)  # type: ignore[arg-type]
        self.stats.acks_sent += sent
        self.stats.acks_dropped += dropped

    def _refused(self, line: str, why: str, topic: str) -> None:
        """InfluxDB refused a line: record that as a rejection, with the topic (and so the
        supplier) it came from, instead of losing it silently."""
        error = BadReading("write_refused", why[:300])
        self.writer.put([self._reject(error, topic, line.encode())], block=False)

    # --- self-metrics -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Counters and gauges now, with the health verdict."""
        now = time.monotonic()
        w, sub, limit = self.writer, self.subscriber, self._config.collector.unhealthy_after_s
        mqtt_down = 0.0 if sub.disconnected_since is None else now - sub.disconnected_since
        influx_down = 0.0 if w.unavailable_since is None else now - w.unavailable_since
        ack_lag = w.oldest_age_s()
        return Snapshot(
            collector=self._config.mqtt.client_id,
            messages=self.stats.messages,
            reading_messages=self.stats.reading_messages,
            readings_accepted=self.stats.readings_accepted,
            statuses=self.stats.statuses,
            rejected=dict(self.stats.rejected),
            lines_written=w.written,
            lines_refused=w.refused,
            batches=w.batches,
            write_seconds_total=w.write_seconds,
            last_write_s=w.last_write_s,
            backlog_lines=w.backlog,
            ack_lag_s=ack_lag,
            acks_sent=self.stats.acks_sent,
            acks_dropped=self.stats.acks_dropped,
            mqtt_connected=sub.connected,
            mqtt_connects=sub.connects,
            mqtt_sessions_lost=sub.sessions_lost,
            mqtt_down_s=mqtt_down,
            influx_down_s=influx_down,
            health_problems=health_problems(
                influx_down_s=influx_down, ack_lag_s=ack_lag, mqtt_down_s=mqtt_down,
                limit_s=limit,
                session_lost_ago_s=None if sub.session_lost_at is None
                else now - sub.session_lost_at,
            ),
        )  # fmt: skip

    def _write_stats(self) -> None:
        self.writer.put([stats_line(self.snapshot(), self._now_ns())], block=False)

    def _report(self) -> None:
        interval = self._config.collector.stats_interval_s
        while not self._stopping.wait(interval):
            self._write_stats()
            snap = self.snapshot()
            # Unhealthy is something an operator must act on: WARNING, seen without -v.
            log.log(logging.WARNING if snap.health_problems else logging.INFO,
                    "collector: %d messages, %d readings, %d rejected, backlog %d, ack lag "
                    "%.1f s%s", snap.messages, snap.readings_accepted, sum(snap.rejected.values()),
                    snap.backlog_lines, snap.ack_lag_s,
                    f", UNHEALTHY: {'; '.join(snap.health_problems)}"
                    if snap.health_problems else "")  # fmt: skip

    def _log_summary(self, force: bool = False) -> None:
        """One WARNING a minute at most with rejection counts by reason (details at DEBUG)."""
        now = time.monotonic()
        if self._summary_counts and (force or now - self._last_summary >= SUMMARY_EVERY_S):
            counts = ", ".join(f"{k}={v}" for k, v in sorted(self._summary_counts.items()))
            log.warning("rejected messages since last report: %s", counts)
            self._summary_counts.clear()
            self._last_summary = now


def resolve_processes(config: Config, cores: int | None = None) -> Config:
    """``config`` with ``collector.processes = "auto"`` made a number: one process per core
    (at most ``AUTO_MAX_PROCESSES``) when the broker offers shared subscriptions, else one;
    several share ``mqtt.shared_group``, or ``AUTO_SHARED_GROUP`` when that is unset. A
    number stays as it is. Raises :class:`SourceUnavailable` when the broker cannot say."""
    if config.collector.processes != "auto":
        return config
    cores = cores or os.cpu_count() or 1
    n = 1
    if cores > 1 and probe(config.mqtt, config.secrets).shared_subscriptions:
        n = min(cores, AUTO_MAX_PROCESSES)
    collector = config.collector.model_copy(update={"processes": n})
    update: dict[str, object] = {"collector": collector}
    if n > 1 and not config.mqtt.shared_group:
        update["mqtt"] = config.mqtt.model_copy(update={"shared_group": AUTO_SHARED_GROUP})
    return dataclasses.replace(config, services=config.services.model_copy(update=update))


def worker_config(config: Config, index: int) -> Config:
    """The config of collector process ``index`` of ``collector.processes``: its own MQTT
    client id (a persistent session each) and metrics port; the same shared subscription.
    Process 0 is the collector's own identity (``client_id``, ``username``) whatever the
    count, so going from one process to several or back keeps its session; process N > 0 is
    ``client_id-N`` (user ``username-N``: ``deploy mosquitto`` binds each user to its id)."""
    port = config.collector.metrics_port
    collector = config.collector.model_copy(
        update={"metrics_port": port + index if port else 0, "processes": 1}
    )
    update: dict[str, object] = {"collector": collector}
    if index:
        ids = {"client_id": f"{config.mqtt.client_id}-{index}"}
        if config.mqtt.username:
            ids["username"] = f"{config.mqtt.username}-{index}"
        update["mqtt"] = config.mqtt.model_copy(update=ids)
    return dataclasses.replace(config, services=config.services.model_copy(update=update))


RETIRE_IDLE_S = 3.0
"""A retiring session is drained once no message arrived for this long."""


def _identity(config: Config, index: int) -> Config:
    """``config`` as collector process ``index``; ``-1``: the id a process 0 had before it
    kept the collector's own (``client_id-0``)."""
    if index >= 0:
        return worker_config(config, index)
    mqtt = config.mqtt.model_copy(update={"client_id": f"{config.mqtt.client_id}-0"})
    return dataclasses.replace(config, services=config.services.model_copy(
        update={"mqtt": mqtt}))  # fmt: skip


def _candidates(config: Config) -> list[tuple[list[tuple[int, str | None]], bool]]:
    """Groups of (process index, supplier lane or None) whose sessions the config no longer
    runs, each with whether the group stops at its first identity without a session (a run
    of process indices) or checks every one."""
    processes = config.collector.processes
    assert isinstance(processes, int)
    suppliers = [s.id for s in config.registry.suppliers]
    lanes = config.collector.session_per_supplier and bool(suppliers)  # as Collector decides
    groups: list[tuple[list[tuple[int, str | None]], bool]] = []
    # -1: the id a process 0 had before it kept the collector's own (``client_id-0``).
    groups.append(([(-1, None)] + ([(i, None) for i in range(processes)] if lanes else []),
                   False))  # fmt: skip
    groups.append(([(i, None) for i in range(max(processes, 1), 64)], True))
    for supplier in suppliers:
        if lanes:  # lanes of processes beyond the count
            groups.append(([(i, supplier) for i in range(processes, 64)], True))
        else:  # every lane, from when the sessions were per supplier
            groups.append(([(i, supplier) for i in range(64)], True))
    return groups


def retire_sessions(config: Config, client: InfluxClient, *, idle_s: float = RETIRE_IDLE_S,
                    timeout_s: float = 600.0) -> list[str]:  # fmt: skip
    """Drain and end the persistent sessions of collector identities the config no longer runs.

    A collector session that the config dropped keeps its subscription: the broker goes on
    queueing its share of the stream there, and loses it when the session expires. Retired:
    processes beyond ``collector.processes`` (``client_id-P`` and up, to the first without a
    session), ``client_id-0`` (process 0's id before it kept the collector's own), and on a
    switch of ``collector.session_per_supplier`` the sessions of the other kind (one for
    everyone: ``client_id``, ``client_id-N``; per supplier: ``client_id.<supplier>``, for the
    registry's suppliers). Each such session is drained like any collector's — written, then
    acknowledged — after its subscription is removed (nothing new reaches it), and then
    deleted. Returns the client ids retired."""
    processes = config.collector.processes
    if not isinstance(processes, int):
        raise ValueError("retire_sessions needs a resolved config (resolve_processes)")
    retired: list[str] = []
    for group, run in _candidates(config):
        for index, supplier in group:
            cfg = _identity(config, index)
            settings = lane_settings(cfg.mqtt, supplier) if supplier else cfg.mqtt
            try:
                present = session_present(settings, cfg.secrets)
            except SourceUnavailable as exc:  # broker down, or the identity refused: say so
                if not run:  # an identity the broker may no longer accept
                    log.info("no retired session checked for %r: %s", settings.client_id, exc)
                    continue
                log.warning("cannot check for a retired collector session %r (%s): if it "
                            "holds queued messages, remove it on the broker once they are "
                            "drained", settings.client_id, exc)  # fmt: skip
                break
            if not present:
                if run:
                    break
                continue
            _drain(cfg, client, supplier, settings.client_id, idle_s, timeout_s)
            retired.append(settings.client_id)
    return retired


def _drain(cfg: Config, client: InfluxClient, supplier: str | None, client_id: str,
           idle_s: float, timeout_s: float) -> None:  # fmt: skip
    """Drain one retired session into InfluxDB (written, then acknowledged), then delete it."""
    if supplier is None:
        one = cfg.collector.model_copy(update={"session_per_supplier": False})
        cfg = dataclasses.replace(cfg, services=cfg.services.model_copy(
            update={"collector": one}))  # fmt: skip
    collector = Collector(cfg, client=client, retire=True, only_supplier=supplier)
    collector.start()
    deadline = time.monotonic() + timeout_s
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        if collector.stats.messages != seen:
            seen, quiet_since = collector.stats.messages, time.monotonic()
        elif time.monotonic() - quiet_since >= idle_s and not collector.writer.backlog:
            break
        time.sleep(0.1)
    collector.stop(end_session=True)
    log.warning("retired collector session %r: %d queued messages drained "
                "(collector.processes is now %s, session_per_supplier %s)", client_id,
                collector.stats.messages, cfg.collector.processes,
                cfg.collector.session_per_supplier)  # fmt: skip
