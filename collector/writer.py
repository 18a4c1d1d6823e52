"""Batched, retried writes of collector records to InfluxDB as line protocol.

Lines come from the store's encoders (:mod:`supplymeter.store`); this module only batches
and sends them.

The :class:`BatchWriter` runs one thread: it sends a batch when ``batch_size`` lines are
waiting, ``flush_interval_s`` has passed or a flush is asked for; it retries while InfluxDB is
unavailable, and reports each durable batch so its MQTT messages can be acknowledged. The
collector's memory is bounded by the broker's in-flight window (nothing more arrives while
acks are held); ``queue_max_points`` is a second bound that blocks producers, for QoS 0 or a
broker that ignores the window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from supplymeter.errors import RequestRejected, SourceUnavailable
from supplymeter.influx import InfluxClient

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    """Lines from one source (usually one MQTT message) and what to acknowledge once written."""

    lines: list[str]
    token: object | None
    enqueued: float
    marks: list[tuple[tuple[tuple[str, str, str], int], int]] | None = None
    """((meter key, hour start), late readings in it) of the late readings among the lines."""
    source: str = ""
    """Where the lines came from (the MQTT topic), for a refusal's record."""


class BatchWriter:
    """A thread that writes queued line-protocol lines to InfluxDB in batches.

    Each :meth:`put` may carry a token; ``on_written`` receives the tokens of every batch after
    it was durably written, in the order they were put (the collector acknowledges the MQTT
    messages then). ``on_refused`` is told about every line InfluxDB refused outright (after
    the batch was split to isolate it), so the caller can record it; nothing disappears
    silently. Use as a context manager, or ``start()`` / ``close()``.
    """

    def __init__(
        self,
        *,
        client: InfluxClient,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        queue_max_points: int = 200_000,
        retry_wait_s: float = 1.0,
        on_written: Callable[[list[object]], None] | None = None,
        on_refused: Callable[[str, str, str], None] | None = None,
        mark_lines: Callable[[Counter[tuple[tuple[str, str, str], int]]], list[str]] | None = None,
    ) -> None:
        self._client = client
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._queue_max = max(queue_max_points, batch_size)
        self._retry_wait_s = retry_wait_s
        self._on_written = on_written or (lambda tokens: None)
        self._on_refused = on_refused or (lambda line, why, source: None)
        self._mark_lines = mark_lines
        self._entries: deque[_Entry] = deque()
        self._queued_lines = 0
        self._in_flight_since: float | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._flush_now = False
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self.enqueued = 0
        self.written = 0
        self.refused = 0
        self.batches = 0
        self.write_seconds = 0.0
        self.last_write_s = 0.0
        self.write_failures = 0
        self.unavailable_since: float | None = None

    def __enter__(self) -> BatchWriter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Lines waiting to be written (queued or in the batch being written)."""
        return self.enqueued - self.written - self.refused

    def oldest_age_s(self) -> float:
        """Age of the oldest line not yet written: how far acknowledgements lag. [s]"""
        with self._cond:
            oldest = self._in_flight_since
            if oldest is None and self._entries:
                oldest = self._entries[0].enqueued
        return 0.0 if oldest is None else time.monotonic() - oldest

    def put(
        self, lines: list[str], token: object | None = None, *, block: bool = True,
        marks: list[tuple[tuple[tuple[str, str, str], int], int]] | None = None,
        source: str = "",
    ) -> None:  # fmt: skip
        """Queue lines; blocks while ``queue_max_points`` lines wait (backpressure, never a
        drop) unless ``block`` is false (for records the writer itself produces).

        ``marks`` name the (meter, hour) of late readings among the lines: each batch writes
        one mark line per distinct pair (``mark_lines``), encoded at every write attempt so its
        receipt time is that of the write that makes it durable, in the same request as the
        readings."""
        with self._cond:
            while block and self._queued_lines >= self._queue_max and not self._closing:
                self._cond.wait(1.0)
            self._entries.append(_Entry(lines, token, time.monotonic(), marks, source))
            self._queued_lines += len(lines)
            self.enqueued += len(lines)
            if self._queued_lines >= self._batch_size:
                self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far is written or refused; False on timeout."""
        with self._cond:
            target = self.enqueued
            self._flush_now = True  # send what is queued without waiting for the interval
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self.written + self.refused >= target, timeout=timeout_s
            )

    def close(self, timeout_s: float | None = None) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _take(self) -> list[_Entry] | None:
        """The next batch: whole entries, at least one, up to ``batch_size`` lines."""
        with self._cond:
            deadline = time.monotonic() + self._flush_interval_s
            while self._queued_lines < self._batch_size and not (self._closing or self._flush_now):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not self._entries:
                return None if self._closing else []
            batch, size = [], 0
            while self._entries and (not batch or size + len(self._entries[0].lines)
                                     <= self._batch_size):  # fmt: skip
                entry = self._entries.popleft()
                batch.append(entry)
                size += len(entry.lines)
            self._queued_lines -= size
            self._flush_now = bool(self._entries) and self._flush_now
            self._in_flight_since = batch[0].enqueued
            self._cond.notify_all()
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            if batch:
                self._write(batch)

    def _write(self, batch: list[_Entry]) -> None:
        lines = [line for entry in batch for line in entry.lines]
        marks: Counter[tuple[tuple[str, str, str], int]] = Counter()
        for entry in batch:
            if entry.marks:
                for pair, n in entry.marks:
                    marks[pair] += n
        while True:
            started = time.monotonic()
            try:
                if marks and self._mark_lines is not None:
                    self._client.write_lines([*lines, *self._mark_lines(marks)])
                else:
                    self._client.write_lines(lines)
            except SourceUnavailable as exc:
                self.write_failures += 1
                if self.unavailable_since is None:
                    self.unavailable_since = time.monotonic()
                    log.warning("InfluxDB unavailable, holding %d lines: %s", len(lines), exc)
                time.sleep(self._retry_wait_s)
                continue
            except RequestRejected as exc:
                sources = [entry.source for entry in batch for _ in entry.lines]
                written, refused = self._isolate(lines, str(exc), sources=sources)
                if marks and self._mark_lines is not None:
                    self._isolate(self._mark_lines(marks), "late-arrival marks", count=False)
                break
            written, refused = len(lines), 0
            if self.unavailable_since is not None:
                log.warning("InfluxDB available again")
                self.unavailable_since = None
            self.last_write_s = time.monotonic() - started
            self.write_seconds += self.last_write_s
            break
        # Durable (or refused and recorded): now the sources may be acknowledged.
        self._on_written([entry.token for entry in batch if entry.token is not None])
        with self._cond:
            self.batches += 1
            self.written += written
            self.refused += refused
            self._in_flight_since = None
            self._cond.notify_all()

    def _isolate(
        self, lines: list[str], why: str, count: bool = True, sources: list[str] | None = None
    ) -> tuple[int, int]:
        """InfluxDB refused a batch: write line by line so one bad line costs only itself
        (``count``: report refusals to ``on_refused``)."""
        if len(lines) > 1:
            log.error("InfluxDB refused a batch of %d lines; isolating: %s", len(lines), why)
        written = refused = 0
        for n, line in enumerate(lines):
            while True:
                try:
                    self._client.write_lines([line])
                except SourceUnavailable:
                    time.sleep(self._retry_wait_s)
                    continue
                except RequestRejected as exc:
                    log.error("InfluxDB refused a line: %s; line: %.200s", exc, line)
                    if count:
                        self._on_refused(line, str(exc), sources[n] if sources else "")
                    refused += 1
                else:
                    written += 1
                break
        return written, refused
