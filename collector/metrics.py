"""The collector's self-metrics: a snapshot, Prometheus text, a health verdict, an HTTP server.

``GET /metrics`` serves the Prometheus text exposition format (version 0.0.4);
``GET /healthz`` answers 200 ``ok`` or 503 with the reasons the collector is unhealthy:
writes to InfluxDB failing, acknowledgements lagging (the oldest unwritten reading is older
than the limit, i.e. the backlog is not draining), or the broker connection down — each for
longer than ``unhealthy_after_s``. The same snapshot is written to InfluxDB as
``collector_stats`` so Grafana can chart ingest health.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from supplymeter import store


@dataclass(frozen=True)
class Snapshot:
    """The collector's counters and gauges at one instant."""

    collector: str
    messages: int
    reading_messages: int
    readings_accepted: int
    statuses: int
    rejected: dict[str, int]
    lines_written: int
    lines_refused: int
    batches: int
    write_seconds_total: float
    last_write_s: float
    backlog_lines: int
    ack_lag_s: float
    acks_sent: int
    acks_dropped: int
    mqtt_connected: bool
    mqtt_connects: int
    mqtt_down_s: float
    influx_down_s: float
    health_problems: tuple[str, ...] = field(default=())
    mqtt_sessions_lost: int = 0


SESSION_LOSS_UNHEALTHY_S = 600.0
"""How long ``/healthz`` stays degraded after the MQTT session was lost: long enough for a
monitor polling every few minutes to see it."""


def health_problems(
    *, influx_down_s: float, ack_lag_s: float, mqtt_down_s: float, limit_s: float,
    session_lost_ago_s: float | None = None,
) -> tuple[str, ...]:  # fmt: skip
    """Why the collector is unhealthy (empty when healthy)."""
    problems = []
    if session_lost_ago_s is not None and session_lost_ago_s < SESSION_LOSS_UNHEALTHY_S:
        problems.append(f"MQTT session lost {session_lost_ago_s:.0f} s ago: readings the "
                        "broker had queued were discarded")  # fmt: skip
    if influx_down_s > limit_s:
        problems.append(f"InfluxDB writes failing for {influx_down_s:.0f} s")
    if ack_lag_s > limit_s:
        problems.append(f"oldest unwritten reading waited {ack_lag_s:.0f} s")
    if mqtt_down_s > limit_s:
        problems.append(f"MQTT disconnected for {mqtt_down_s:.0f} s")
    return tuple(problems)


_COUNTERS = (
    ("messages", "MQTT messages received"),
    ("reading_messages", "messages on readings topics"),
    ("readings_accepted", "readings validated and queued for writing"),
    ("statuses", "gateway status messages stored"),
    ("lines_written", "line-protocol lines written to InfluxDB"),
    ("lines_refused", "lines InfluxDB refused (recorded as rejections)"),
    ("batches", "write batches"),
    ("write_seconds_total", "time spent in InfluxDB writes"),
    ("acks_sent", "MQTT acknowledgements sent after durable writes"),
    ("acks_dropped", "acks not sent because their connection had ended (redelivered)"),
    ("mqtt_connects", "successful MQTT connections"),
    ("mqtt_sessions_lost", "reconnects that found the persistent session gone"),
)
_GAUGES = (
    ("last_write_s", "duration of the last InfluxDB write"),
    ("backlog_lines", "lines waiting to be written"),
    ("ack_lag_s", "age of the oldest line not yet written"),
    ("mqtt_down_s", "seconds the MQTT connection has been down"),
    ("influx_down_s", "seconds InfluxDB writes have been failing"),
)


def prometheus_text(snap: Snapshot) -> str:
    """The snapshot in Prometheus text format, metric names prefixed ``supplymeter_collector_``."""
    label = f'collector="{snap.collector}"'
    out: list[str] = []
    for name, help_text in _COUNTERS:
        metric = f"supplymeter_collector_{name}" + ("" if name.endswith("_total") else "_total")
        out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter",
                f"{metric}{{{label}}} {getattr(snap, name)}"]  # fmt: skip
    for name, help_text in _GAUGES:
        metric = f"supplymeter_collector_{name}"
        out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge",
                f"{metric}{{{label}}} {getattr(snap, name):.6g}"]  # fmt: skip
    metric = "supplymeter_collector_rejected_total"
    out += [f"# HELP {metric} messages or readings rejected, by reason code",
            f"# TYPE {metric} counter"]  # fmt: skip
    out += [f'{metric}{{{label},reason="{code}"}} {n}' for code, n in sorted(snap.rejected.items())]
    for name, value in (("mqtt_connected", snap.mqtt_connected),
                        ("healthy", not snap.health_problems)):  # fmt: skip
        metric = f"supplymeter_collector_{name}"
        out += [f"# TYPE {metric} gauge", f"{metric}{{{label}}} {int(value)}"]
    return "\n".join(out) + "\n"


def stats_line(snap: Snapshot, ts_ns: int) -> str:
    """The snapshot as one ``collector_stats`` point."""
    fields: dict[str, float | int | bool] = {}
    for name, _ in _COUNTERS + _GAUGES:
        value = getattr(snap, name)
        fields[name] = float(value) if isinstance(value, float) else int(value)
    fields["rejected"] = sum(snap.rejected.values())
    fields["mqtt_connected"] = snap.mqtt_connected
    fields["healthy"] = not snap.health_problems
    return store.stats_line(snap.collector, fields, ts_ns)


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` in a thread. A context manager."""

    def __init__(self, *, host: str, port: int, snapshot: Callable[[], Snapshot]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "supplymeter-collector"
            routes: ClassVar[tuple[str, ...]] = ("/metrics", "/healthz")

            def do_GET(self) -> None:
                snap = outer._snapshot()
                if self.path == "/metrics":
                    self._send(200, prometheus_text(snap), "text/plain; version=0.0.4")
                elif self.path == "/healthz":
                    if snap.health_problems:
                        self._send(503, "\n".join(snap.health_problems) + "\n", "text/plain")
                    else:
                        self._send(200, "ok\n", "text/plain")
                else:
                    self._send(404, "not found\n", "text/plain")

            def _send(self, status: int, body: str, kind: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # quiet: no per-request logs
                pass

        self._snapshot = snapshot
        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)  # fmt: skip

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
