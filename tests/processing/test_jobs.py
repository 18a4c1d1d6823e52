"""Scheduled jobs: retries, catch-up after downtime, run-job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import processing.jobs as jobs_module
from processing.emissions import FactorLibrary
from processing.jobs import HOUR_NS, Jobs, JobState
from supplymeter.config import Config, load_config
from supplymeter.influx import InfluxClient
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store
from tests.conftest import with_settings

TPE = ZoneInfo("Asia/Taipei")


def at(*args: int) -> int:
    return datetime_to_ns(datetime(*args, tzinfo=TPE))


def make_jobs(config: Config, influx: InfluxClient, tmp_path: Path, now: list[int]) -> Jobs:
    config = with_settings(config, "jobs", export_dir=tmp_path / "exports", retry_delay_s=0)
    return Jobs(config, Store(influx), FactorLibrary.load(), clock=lambda: now[0])


def test_a_failing_job_is_retried_logged_and_never_raises(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    jobs = make_jobs(make_config(), influx, tmp_path, [at(2026, 11, 22, 10)])
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("InfluxDB said no")
        return "ok"

    jobs.rollup = flaky  # type: ignore[method-assign]
    sleeps: list[float] = []
    assert jobs.run("rollup", sleep=sleeps.append) is True
    assert len(calls) == 3 and sleeps == [0, 0]
    assert caplog.text.count("job rollup failed") == 2

    def broken() -> str:
        raise RuntimeError("still down")

    jobs.rollup = broken  # type: ignore[method-assign]
    assert jobs.run("rollup", sleep=lambda s: None) is False  # 1 + 3 retries, then gives up
    assert "gave up after 4 attempts" in caplog.text


def test_rollup_catches_up_on_downtime(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    now = [at(2026, 11, 22, 10, 5)]
    jobs = make_jobs(make_config(), influx, tmp_path, now)
    ranges: list[tuple[int, int]] = []

    def fake_rollup(c: Config, cl: InfluxClient, s: int, e: int, lib: object) -> object:
        ranges.append((s, e))
        return jobs_module.RollupReport()

    monkeypatch.setattr(jobs_module, "run_rollup", fake_rollup)
    jobs.rollup()
    assert ranges[-1] == (at(2026, 11, 20, 11), at(2026, 11, 22, 11))  # trailing 48 h
    now[0] = at(2026, 11, 27, 10, 5)  # five days down
    jobs = make_jobs(make_config(), influx, tmp_path, now)  # a restart reads the state file
    jobs.rollup()
    start, end = ranges[-1]
    assert end == at(2026, 11, 27, 11)
    assert start <= at(2026, 11, 22, 10) - 48 * HOUR_NS  # from the last success, with margin


def test_export_is_due_after_its_day_until_done(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    now = [at(2026, 11, 2, 12)]
    jobs = make_jobs(make_config(), influx, tmp_path, now)
    assert not jobs.export_due()  # day 3 at 06:00 has not come
    now[0] = at(2026, 11, 3, 6)
    assert jobs.export_due()
    assert jobs.run("export")
    assert (tmp_path / "exports" / "2026-10" / "v1" / "scope3-2026-10.xlsx").exists()
    assert not jobs.export_due()
    assert JobState.load(tmp_path / "exports" / "jobs-state.json").last_export_month == "2026-10"


def test_run_job_from_the_command_line(
    influx: InfluxClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main
    from tests.conftest import SMALL_REGISTRY, write_config

    services = f'[influxdb]\nurl = "{influx.url}"\ndatabase = "{influx.database}"\n'
    config = load_config(write_config(tmp_path / "cfg", SMALL_REGISTRY, services), {})
    path = str(config.path)
    assert main(["--config", path, "run-job", "export", "--month", "2026-09"]) == 0
    assert list((config.path.parent / "out" / "exports" / "2026-09").glob("v1/*.xlsx"))
    assert main(["--config", path, "run-job", "rollup", "--month", "2026-09"]) == 2
    assert main(["--config", path, "run-job", "rollup"]) == 0
