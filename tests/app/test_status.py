"""``supplymeter status`` on a real InfluxDB: every section an operator on call needs."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.status import cmd_status
from processing.alerts import Event, IncidentBook, alert_lines
from processing.detect import Condition
from processing.jobs import JobState
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from supplymeter.store import Store, alert_line, quality_issue_line, stats_line, status_line
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
    assert "no collector stats in the last 24 h" in capsys.readouterr().out
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
    lines = out.splitlines()
    assert lines[1].startswith("stack") and lines[2].startswith("collector  health endpoint off")
    assert lines[3] == "  c0: 30 s ago, backlog 40 lines, ack lag 0.4 s, 1,200 messages, healthy"
    assert "gateways   1 of 2 down" in out and "forge-a/plant-1 offline since" in out
    assert "cnc-d/plant-1" not in out.split("gateways")[1].split("incidents")[0]
    assert "rollup " in out and "export never" in out
    assert "months     0 to restate · first export due: 2026-10" in out
    assert "register_fall_without_event cnc-d/plant-1/main" in out
    assert "incidents  1 open (1 spike)" in out and "spike forge-a/plant-1/main since" in out
    assert "messages   0 in 7 days · 0.00/meter-week\n" in out


def test_status_counts_every_message_the_sites_were_told(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The alert issue's one budget, seen in production: spikes on two meters of a site are
    one email, a regime on one of them another, a spike at another site went to the digest.
    Three messages, one to the digest, four incidents over three meters, two on one
    site-day; reminders and resolutions are not new messages."""
    config = with_settings(make_config(), "jobs", export_dir=tmp_path / "exports")
    config = with_settings(config, "alerts", state_dir=tmp_path / "alerts")
    now = time.time_ns()
    at = now - 3600 * 10**9

    def condition(kind: str, supplier: str, meter: str) -> Condition:
        return Condition(kind, supplier, "plant-1", meter, 30.0, 10.0, "kWh", at - 900 * 10**9,
                         at, "+200%")  # fmt: skip

    conditions = [
        condition("spike", "forge-a", "main"),
        condition("spike", "forge-a", "gas"),
        condition("regime", "forge-a", "main"),
        condition("spike", "cnc-d", "main"),
    ]
    events = IncidentBook.load(tmp_path / "told.json").update(conditions, at, 24, 60, 2)
    by = {(e.incidents[0].type, e.incidents[0].supplier): e for e in events}
    assert len(events) == 3
    grouped, regime = by["spike", "forge-a"], by["regime", "forge-a"]
    digested = by["spike", "cnc-d"]
    resolved = Event("resolved", at + 10**9, grouped.incidents)
    Store(influx).write(alert_lines(grouped, True) + alert_lines(regime, True)
                        + alert_lines(digested, False) + alert_lines(resolved, True))  # fmt: skip
    cmd_status(config, now)
    out = capsys.readouterr().out
    assert len(grouped.incidents) == 2
    assert "messages   3 in 7 days, 1 to digest · 1.33/meter-week · max 2/site-day\n" in out
    cmd_status(config, now, verbose=True)
    out = capsys.readouterr().out
    assert "  4 incidents opened over 3 consumption meters: 3 spike, 1 regime" in out
    day = f"{datetime.fromtimestamp(at / 1e9, ZoneInfo(config.jobs.timezone)):%m-%d}"
    assert f"  forge-a/plant-1 {day}: 2\n  cnc-d/plant-1 {day}: 1\n" in out


def test_status_fits_one_screen(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Five incidents (gateway silences among them), three months pending (one never
    exported), quality issues and a collector: the summary fits 80×24, gateways and incidents
    agree, a month never exported is not called a restatement, one zone throughout; -v lists
    everything."""
    config = with_settings(make_config(), "jobs", export_dir=tmp_path / "exports")
    config = with_settings(config, "alerts", state_dir=tmp_path / "alerts")
    now = time.time_ns()
    store = Store(influx)
    store.write([stats_line("c0", {"messages": 5, "healthy": True}, now - 10**10)]
                + [quality_issue_line("implausible_step", ("cnc-d", "plant-1", "main"),
                                      now - k * 3600 * 10**9, f"step {k}", True)
                   for k in range(1, 8)])  # fmt: skip
    state = JobState(tmp_path / "exports" / "jobs-state.json")
    for month in ("2026-08", "2026-09"):  # exported before: a restatement is due
        (tmp_path / "exports" / month / "v1").mkdir(parents=True)
        (tmp_path / "exports" / month / "v1" / "manifest.json").write_text("{}")
    state.pending = {"2026-08": ["factor changed"],
                     "2026-09": ["late data recomputed: " + "x" * 300],
                     "2026-10": ["late data recomputed"]}  # fmt: skip
    state.save()
    book = IncidentBook.load(tmp_path / "alerts" / "incidents.json")
    conditions = [
        Condition(
            "gateway_silent",
            "forge-a",
            "plant-1",
            "gw1",
            40.0,
            15.0,
            "min",
            now - 3600 * 10**9,
            now,
            "no status for 40 min",
        )
    ]
    conditions += [Condition("spike", "forge-a", "plant-1", f"m{k}", 30.0, 10.0, "kWh",
                             now - (k + 1) * 600 * 10**9, now, "+200% " + "y" * 200)
                   for k in range(4)]  # fmt: skip
    book.update(conditions, now, 24, 60, 3)
    book.save()
    assert cmd_status(config, now) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    assert "gateways   1 of 1 down" in text and "forge-a/plant-1 silent since" in text
    assert "incidents  5 open (4 spike, 1 gateway_silent)" in text
    assert "months     2 to restate: 2026-08, 2026-09 · first export due: 2026-10" in text
    assert "quality    7 issues in 31 days (7 implausible_step)" in text
    assert "… 4 more (supplymeter status -v)" in text  # 7 issues, 3 shown
    zone = lines[0].split(" (")[1]
    assert zone.startswith("UTC+0800, Asia/Taipei")
    assert cmd_status(config, now, verbose=True) == 1
    full = capsys.readouterr().out
    assert all(f"step {k}" in full for k in range(1, 8)) and "more (supplymeter" not in full


def test_status_says_when_influxdb_cannot_be_reached(
    make_config: Callable[..., Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deploy.stack import free_port

    port = free_port()
    config = with_settings(make_config(), "influxdb", url=f"http://127.0.0.1:{port}")
    config = with_settings(config, "jobs", export_dir=tmp_path / "exports")
    config = with_settings(config, "alerts", state_dir=tmp_path / "alerts")
    assert cmd_status(config) == 1
    out = capsys.readouterr().out
    assert f"InfluxDB   UNREACHABLE at http://127.0.0.1:{port}: connection refused" in out
    assert "object at 0x" not in out and "urllib3" not in out


def test_alert_points_written_before_messages_were_recorded_still_count(
    influx: InfluxClient,
) -> None:
    """An ``alert`` point of an earlier version (no ``emailed`` or ``message`` field) counts as
    one email of its own, named by its incident."""
    now = time.time_ns()
    old = alert_line(at_ns=now - 10**12, type_="stuck", supplier="cnc-d", site="plant-1",
                     subject="main", event="open", incident="i-1", title="Stuck register",
                     detail="flat for 2 h", value=0.0, baseline=None)  # fmt: skip
    Store(influx).write([old])
    [opened] = Store(influx).alert_openings(now - 7 * 86_400 * 10**9, now)
    assert opened[1:] == ("stuck", "cnc-d", "plant-1", "main", None, "i-1")
