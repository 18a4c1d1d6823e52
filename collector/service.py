"""The collector: MQTT messages in, validated readings and recorded rejections out to InfluxDB.

Flow per message (on paho's network thread): topic → registry lookup → payload parse →
line protocol → :class:`BatchWriter`. A message that fails any step becomes a
``rejected_message`` point with its reason code; the stream goes on. Counters are kept in
:class:`CollectorStats`.

First version (see the collector issue for what comes next): messages are acknowledged to the
broker on receipt, so a crash of the collector process can lose what was queued for writing but
not yet written; a clean stop flushes everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.mqtt import MqttSubscriber
from collector.payload import (
    Limits,
    ReadingsTopic,
    parse_readings,
    parse_status,
    parse_topic,
    resolve_meter,
)
from collector.writer import BatchWriter, reading_line, rejection_line, status_line
from supplymeter.config import Config
from supplymeter.errors import BadReading
from supplymeter.influx import InfluxClient
from supplymeter.records import Rejection

log = logging.getLogger(__name__)

SUMMARY_EVERY_S = 60.0


@dataclass
class CollectorStats:
    """Counts since start. ``messages`` = reading messages + status messages + rejected."""

    messages: int = 0
    reading_messages: int = 0
    readings_accepted: int = 0
    statuses: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class Collector:
    """Subscribes, validates, writes. Use as a context manager (or ``start`` / ``stop``).

    ``clock`` returns epoch nanoseconds (injected for tests).
    """

    def __init__(
        self,
        config: Config,
        *,
        client: InfluxClient,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._config = config
        self._registry = config.registry
        settings = config.collector
        self._limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_batch_readings=settings.max_batch_readings,
            max_future_ns=int(settings.max_future_s * 1e9),
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
            on_refused=self._refused,
        )
        self._subscriber = MqttSubscriber(
            settings=config.mqtt, secrets=config.secrets, handler=self.handle
        )
        self._last_summary = time.monotonic()
        self._summary_counts: Counter[str] = Counter()

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.writer.start()
        try:
            self._subscriber.start()
        except Exception:
            self.writer.close()
            raise

    def stop(self) -> None:
        """Disconnect, then write everything still queued."""
        self._subscriber.stop()
        self.writer.close()
        self._log_summary(force=True)

    def _now_ns(self) -> int:
        """Receipt time, strictly increasing so two rejections never share a point key."""
        with self._lock:
            self._last_ns = max(self._clock(), self._last_ns + 1)
            return self._last_ns

    # --- per message --------------------------------------------------------------------

    def handle(self, topic_bytes: bytes, payload: bytes) -> None:
        """Process one MQTT message. Never raises: every failure becomes a rejection."""
        self.stats.messages += 1
        topic = topic_bytes.decode("utf-8", "replace")
        supplier = None
        try:
            parsed = parse_topic(topic)
            if self._registry.supplier(parsed.supplier) is not None:
                supplier = parsed.supplier
            if isinstance(parsed, ReadingsTopic):
                self.stats.reading_messages += 1
                self._handle_readings(parsed, topic, payload)
            else:
                status = parse_status(payload, parsed, self._registry, self._now_ns(), self._limits)
                self.stats.statuses += 1
                self.writer.put([status_line(status)])
        except BadReading as exc:
            self._reject(exc, topic, payload, supplier)
        except Exception as exc:  # a bug must not stop the stream; record it like bad input
            log.exception("internal error handling a message on %.200s", topic)
            self._reject(BadReading("internal_error", repr(exc)[:300]), topic, payload, supplier)

    def _handle_readings(self, parsed: ReadingsTopic, topic: str, payload: bytes) -> None:
        ref = resolve_meter(parsed, self._registry)
        readings, rejected = parse_readings(payload, ref, self._clock(), self._limits)
        if readings:
            self.writer.put([reading_line(r) for r in readings])
            self.stats.readings_accepted += len(readings)
        for exc in rejected:
            self._reject(exc, topic, payload, parsed.supplier)

    def _reject(self, exc: BadReading, topic: str, payload: bytes, supplier: str | None) -> None:
        rejection = Rejection(
            code=exc.code,
            detail=exc.detail,
            topic=topic,
            received_ns=self._now_ns(),
            supplier=supplier,
            payload_bytes=len(payload),
            excerpt=payload[:120].decode("utf-8", "replace"),
        )
        if exc.code not in self.stats.rejected:
            log.warning("first %s rejection, on %.200s: %s", exc.code, topic, exc.detail)
        else:
            log.debug("rejected %s on %.200s: %s", exc.code, topic, exc.detail)
        self.stats.rejected[exc.code] += 1
        self._summary_counts[exc.code] += 1
        self.writer.put([rejection_line(rejection)])
        self._log_summary()

    def _refused(self, line: str, why: str) -> None:
        self.stats.rejected["write_refused"] += 1

    def _log_summary(self, force: bool = False) -> None:
        """One WARNING a minute at most with rejection counts by reason (details at DEBUG)."""
        now = time.monotonic()
        if self._summary_counts and (force or now - self._last_summary >= SUMMARY_EVERY_S):
            counts = ", ".join(f"{k}={v}" for k, v in sorted(self._summary_counts.items()))
            log.warning("rejected messages since last report: %s", counts)
            self._summary_counts.clear()
            self._last_summary = now
