from __future__ import annotations

import urllib.error
import urllib.request

from collector.metrics import MetricsServer, Snapshot, health_problems, prometheus_text, stats_line


def snapshot(**changes: object) -> Snapshot:
    values: dict[str, object] = dict(
        collector="c1", messages=10, reading_messages=8, readings_accepted=7, statuses=2,
        rejected={"invalid_json": 1}, lines_written=9, lines_refused=0, batches=2,
        write_seconds_total=0.5, last_write_s=0.25, backlog_lines=3, ack_lag_s=0.1, acks_sent=9,
        acks_dropped=0, mqtt_connected=True, mqtt_connects=1, mqtt_down_s=0.0, influx_down_s=0.0,
    )  # fmt: skip
    values.update(changes)
    return Snapshot(**values)  # type: ignore[arg-type]


def test_health_names_each_problem_past_the_limit() -> None:
    assert health_problems(influx_down_s=5, ack_lag_s=5, mqtt_down_s=5, limit_s=60) == ()
    problems = health_problems(influx_down_s=61, ack_lag_s=90, mqtt_down_s=120, limit_s=60)
    assert problems == ("InfluxDB writes failing for 61 s", "oldest unwritten reading waited 90 s",
                        "MQTT disconnected for 120 s")  # fmt: skip


def test_prometheus_text_has_counters_gauges_and_reasons() -> None:
    text = prometheus_text(snapshot())
    assert 'supplymeter_collector_messages_total{collector="c1"} 10' in text
    assert 'supplymeter_collector_rejected_total{collector="c1",reason="invalid_json"} 1' in text
    assert 'supplymeter_collector_backlog_lines{collector="c1"} 3' in text
    assert 'supplymeter_collector_healthy{collector="c1"} 1' in text
    counter_type = "# TYPE supplymeter_collector_write_seconds_total counter"
    assert counter_type in text
    for line in text.splitlines():
        assert line.startswith("#") or line.count(" ") == 1  # name{labels} value


def test_stats_line_is_one_point_tagged_by_collector() -> None:
    line = stats_line(snapshot(), 123)
    assert line.startswith("collector_stats,collector=c1 ") and line.endswith(" 123")
    assert "rejected=1i" in line and "healthy=true" in line


def test_server_answers_metrics_and_health() -> None:
    current = [snapshot()]
    with MetricsServer(host="127.0.0.1", port=0, snapshot=lambda: current[0]) as server:
        url = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{url}/healthz") as resp:
            assert resp.status == 200 and resp.read() == b"ok\n"
        with urllib.request.urlopen(f"{url}/metrics") as resp:
            assert b"supplymeter_collector_messages_total" in resp.read()
        current[0] = snapshot(health_problems=("MQTT disconnected for 61 s",))
        try:
            urllib.request.urlopen(f"{url}/healthz")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and exc.read() == b"MQTT disconnected for 61 s\n"
        else:
            raise AssertionError("healthz should answer 503")
