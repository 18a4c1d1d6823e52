"""``supplymeter status`` on a real InfluxDB: every section an operator on call needs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.status import cmd_status
from processing.alerts import IncidentBook
from processing.detect import Condition
from processing.jobs import JobState
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from supplymeter.store import Store, quality_issue_line, stats_line, status_line
from tests.conftest import with_settings


def test_status_shows_what_needs_the_operator(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config = with_settings(make_config(), "jobs", export_dir=tmp_path / "exports")
    config = with_settings(config, "alerts", state_dir=tmp_path / "alerts")
    now = time.time_ns()
    store = Store(influx)
    assert cmd_status(config, now) == 1  # no collector has ever reported
    assert "collector stats: none in the last 24 h" in capsys.readouterr().out
    store.write([
        stats_line("c0", {"messages": 1200, "backlog_lines": 40, "ack_lag_s": 0.4,
                          "healthy": True}, now - 30 * 10**9),
        status_line("forge-a", "plant-1", "gw1", "offline", now - 600 * 10**9, None),
        status_line("cnc-d", "plant-1", "gw1", "online", now - 600 * 10**9, None),
        quality_issue_line("register_fall_without_event", ("cnc-d", "plant-1", "main"),
                           now - 3600 * 10**9, "register fell (reset)", True),
    ])  # fmt: skip
    state = JobState(tmp_path / "exports" / "jobs-state.json")
    state.last_success_ns["rollup"] = now - 300 * 10**9
    state.pending["2026-10"] = ["late data recomputed: forge-a/plant-1/main"]
    state.save()
    book = IncidentBook.load(tmp_path / "alerts" / "incidents.json")
    spike = Condition("spike", "forge-a", "plant-1", "main", 30.0, 10.0, "kWh",
                      now - 15 * 60 * 10**9, now, "+200% over the usual Tuesday")  # fmt: skip
    book.update([spike], now, 24, 60, 3)
    book.save()
    assert cmd_status(config, now) == 1
    out = capsys.readouterr().out
    assert "c0: 30 s ago: backlog 40 lines, ack lag 0.4 s, 1,200 messages, healthy" in out
    assert "gateways offline: 1" in out and "forge-a/plant-1 since" in out
    assert "cnc-d/plant-1" not in out.split("gateways offline")[1].split("data-quality")[0]
    assert "rollup      " in out and "(5 min ago)" in out and "export      never" in out
    assert "2026-10: late data recomputed: forge-a/plant-1/main" in out
    assert "register_fall_without_event cnc-d/plant-1/main" in out
    assert "health endpoint off" in out
    assert "open incidents: 1" in out and "spike      forge-a/plant-1/main since" in out


def test_status_says_when_influxdb_cannot_be_reached(
    make_config: Callable[..., Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deploy.stack import free_port

    config = with_settings(make_config(), "influxdb", url=f"http://127.0.0.1:{free_port()}")
    config = with_settings(config, "jobs", export_dir=tmp_path / "exports")
    config = with_settings(config, "alerts", state_dir=tmp_path / "alerts")
    assert cmd_status(config) == 1
    assert "InfluxDB: unreachable" in capsys.readouterr().out
