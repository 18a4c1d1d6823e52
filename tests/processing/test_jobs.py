"""Scheduled jobs: retries, catch-up after downtime, run-job."""

from __future__ import annotations

import csv
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import processing.jobs as jobs_module
from collector.service import Collector
from processing.accounting.export import previous_month
from processing.accounting.runner import compute_month, export_month
from processing.accounting.scope3 import Month
from processing.accounting.versions import latest_manifest
from processing.emissions import FactorLibrary
from processing.jobs import HOUR_NS, Jobs, JobState, restate_emissions
from processing.rollup import RegisterSeries, hourly_consumption
from simulators.gateway import Gateway, Send
from simulators.run import generate, prepare
from supplymeter.config import Config, load_config
from supplymeter.errors import SourceUnavailable
from supplymeter.influx import InfluxClient
from supplymeter.records import HourlyConsumption, Reading, datetime_to_ns
from supplymeter.store import Store, arrival_line, consumption_line, reading_line
from tests.conftest import SMALL_REGISTRY, pointed_at, with_settings
from tests.helpers import Killed, kill_at, wait_until

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


# --- late data, factors, arrival order: the jobs alone keep every number current -------------


def previous_month_bounds() -> tuple[Month, int, int]:
    month = previous_month(time.time_ns(), "Asia/Taipei")
    start, end = month.bounds(TPE)
    return month, start, end


def publish(config: Config, sends: list[Send]) -> None:
    """Publish simulator sends as the site's gateway would (QoS 1, acknowledged)."""
    with Gateway(settings=config.mqtt, secrets=config.secrets, supplier="x", site="y",
                 gateway="replay") as gw:  # fmt: skip
        for send in sends:
            gw.publish(send.topic, send.payload, send.retain)


def first_ts(send: Send) -> int:
    body = json.loads(send.payload)
    readings = body.get("readings", [body])
    return min(datetime_to_ns(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")))
               for r in readings)  # fmt: skip


def stored_hours(store: Store, start: int, end: int) -> dict[tuple[str, str, str, int], float]:
    hours, _ = store.hourly_consumption(start, end)
    return {(h.supplier, h.site, h.meter, h.hour_start_ns): h.consumption for h in hours}


def test_a_gateway_back_after_ten_days_is_absorbed_by_the_scheduled_jobs_alone(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """forge-a's gateway is offline from day 5 to day 15 of last month; its buffer arrives
    after the month was exported. The rollup job recomputes exactly the hours the replay
    touched, every hourly total equals the simulator's ledger, and the export job writes a new
    version whose diff names the late data."""
    config = with_settings(make_config(), "jobs", export_day=1, export_hour=0,
                           export_dir=tmp_path / "exports", retry_delay_s=0)  # fmt: skip
    month, start, end = previous_month_bounds()
    run = prepare(config, start, end, seed=5)
    sends = [a for _, a in generate(run) if isinstance(a, Send) and a.readings]
    outage = (start + 5 * 24 * HOUR_NS, start + 15 * 24 * HOUR_NS)
    held = [s for s in sends if "/forge-a/" in s.topic and outage[0] <= first_ts(s) < outage[1]]
    on_time = [s for s in sends if s not in held]
    assert len(held) > 50
    store = Store(influx)
    jobs = Jobs(config, store, FactorLibrary.load())
    with Collector(config, client=influx) as collector:
        publish(config, on_time)
        assert wait_until(lambda: collector.stats.reading_messages >= len(on_time), 60)
        assert collector.writer.flush(30)
        assert jobs.run("rollup") and jobs.run("export")
        v1 = latest_manifest(tmp_path / "exports" / str(month))
        assert v1 is not None and v1["version"] == 1
        assert v1["totals"]["forge-a"]["estimated_electricity_kwh"] > 0  # the gap, estimated
        publish(config, held)  # the gateway is back: its store-and-forward buffer
        assert wait_until(lambda: collector.stats.reading_messages >= len(sends), 60)
        assert collector.writer.flush(30)
    assert collector.stats.late_readings >= sum(s.readings for s in sends)  # all of last month
    assert jobs.run("rollup")
    truth = run.ledger.metered()
    got = stored_hours(store, start, end)
    for key, hours in truth.items():
        for hour, value in hours.items():
            if start <= hour < end - HOUR_NS:
                assert got[(*key, hour)] == pytest.approx(float(value), abs=1e-3), (key, hour)
    assert jobs.run("export")
    v2 = latest_manifest(tmp_path / "exports" / str(month))
    assert v2 is not None and v2["version"] == 2
    assert any("late data" in why and "forge-a/plant-1/main" in why for why in v2["reasons"])
    assert v2["totals"]["forge-a"]["estimated_electricity_kwh"] == pytest.approx(0, abs=1e-6)
    diff = (tmp_path / "exports" / str(month) / "v2" / "diff-v1.csv").read_text()
    assert "estimated_electricity_kwh" in diff and "late data" in diff
    assert jobs.run("export") and latest_manifest(tmp_path / "exports" / str(month))["version"] == 2


def provisional_export(
    config: Config, store: Store, month: Month, exports: Path
) -> tuple[Jobs, list[int], dict | None]:  # type: ignore[type-arg]
    """Jobs on a clock in November 2026 (reloading the factor file each run) that store the
    emissions of ``month``'s year with the factors as they stand and export the month: (the
    jobs, their settable clock, the export's first manifest)."""
    now = [at(2026, 11, 5, 12)]
    jobs = Jobs(config, store, FactorLibrary.for_config(config), clock=lambda: now[0],
                reload_factors=True)  # fmt: skip
    restate_emissions(config, store, jobs.library,
                      [f"electricity/TW/{month.year}", f"natural_gas/TW/{month.year}"])  # fmt: skip
    assert jobs.run("rollup") and jobs.run("export", month=month)
    return jobs, now, latest_manifest(exports / str(month))


def test_a_factor_published_for_a_provisional_year_restates_hours_months_and_totals(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """A 2026 grid factor row is added to the factor file: the rollup job recomputes the stored
    emissions of exactly the 2026 electricity hours, the export job restates the month, and
    scope3_monthly, hourly_emissions and the export agree to 0.001 kg."""
    import shutil

    factors = tmp_path / "factors.csv"
    shutil.copy(Path(jobs_module.__file__).parent / "data" / "emission_factors.csv", factors)
    config = with_settings(make_config(), "jobs", export_day=1, export_hour=0,
                           export_dir=tmp_path / "exports", factors_file=factors)  # fmt: skip
    store = Store(influx)
    month = Month(2026, 10)
    start, end = month.bounds(TPE)
    lines = []
    for ref in config.registry.meters():
        for hour in range(start - 24 * HOUR_NS, end, HOUR_NS):  # a day of September too
            lines.append(consumption_line(HourlyConsumption(
                *ref.key, ref.meter.carrier, ref.unit, hour, 10.0, 1.0, 4)))  # fmt: skip
    store.write(lines)
    jobs, now, v1 = provisional_export(config, store, month, tmp_path / "exports")
    assert v1 and v1["totals"]["cnc-d"]["provisional"] is True
    with factors.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    row = {"id": "tw-grid-2026", "carrier": "electricity", "region": "TW", "year": "2026",
           "period": "annual", "use": "industry", "value": "0.470", "unit": "kgCO2e/kWh",
           "basis": "location", "publisher": "Energy Administration, MOEA",
           "title": "Electricity emission factor 2026", "url": "https://www.moeaea.gov.tw/",
           "retrieved": "2026-11-24", "note": "test row"}  # fmt: skip
    with factors.open("a", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, header).writerow(row)
    now[0] += HOUR_NS
    assert jobs.run("rollup")
    assert "tw-grid-2026" in jobs.last_summary
    assert jobs.run("export")
    v2 = latest_manifest(tmp_path / "exports" / "2026-10")
    assert v2 and v2["version"] == 2 and not v2["totals"]["cnc-d"]["provisional"]
    assert any("tw-grid-2026" in why for why in v2["reasons"])
    stored = store.hourly_emissions(start, end, supplier="cnc-d")
    assert {e.factor_id for e in stored} == {"tw-grid-2026"}
    september = store.hourly_emissions(start - 24 * HOUR_NS, start, supplier="cnc-d")
    assert {e.factor_id for e in september} == {"tw-grid-2026"}  # the whole year, not the month
    summed = sum(e.emissions_kgco2e for e in stored)
    assert summed == pytest.approx(744 * 10.0 * 0.470, abs=1e-3)
    [monthly] = [t for t in store.monthly_totals(start, end) if t.supplier == "cnc-d"]
    assert monthly.location_kgco2e == pytest.approx(summed, abs=1e-3) and monthly.version == 2
    assert v2["totals"]["cnc-d"]["location_kgco2e"] == pytest.approx(summed, abs=1e-3)


def test_the_2025_factors_by_use_restate_a_provisional_2025_month(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """A factor file from before the 2025 announcement: March 2025 is exported provisional at
    the 2024 factor (0.474). The 2025 rows by use arrive: the month is restated with the
    industry factor (0.466) for electricity and NG2's heating value for heat-c's gas (its gas
    bill's type), hand-computed."""

    registry = SMALL_REGISTRY.replace(
        'id = "plant-1"\n', 'id = "plant-1"\n  factor_use = { natural_gas = "NG2" }\n', 1
    )
    config, store, factors, text, month = factor_case(make_config, influx, tmp_path, registry)
    start, end = month.bounds(TPE)
    jobs, now, v1 = provisional_export(config, store, month, tmp_path / "exports")
    hours = 744
    assert v1 and v1["totals"]["forge-a"]["provisional"] is True
    assert v1["totals"]["forge-a"]["location_kgco2e"] == pytest.approx(
        hours * 10.0 * (0.474 + 1.881), abs=1e-3
    )  # 2024 grid; standing 8,000 kcal/m³ gas
    factors.write_text("".join(text), "utf-8")  # the 2025 announcement arrives
    now[0] += HOUR_NS
    assert jobs.run("rollup")
    assert "tw-grid-2025-industry" in jobs.last_summary and "tw-ng-ng2-2025" in jobs.last_summary
    assert jobs.run("export", month=month)
    v2 = latest_manifest(tmp_path / "exports" / "2025-03")
    assert v2 and v2["version"] == 2 and v2["totals"]["forge-a"]["provisional"] is False
    assert v2["totals"]["forge-a"]["location_kgco2e"] == pytest.approx(
        hours * 10.0 * (0.466 + 2.052), abs=1e-3
    )
    assert any("tw-grid-2025-industry" in why for why in v2["reasons"])
    stored = store.hourly_emissions(start, end, supplier="forge-a")
    assert {e.factor_id for e in stored} >= {"tw-grid-2025-industry", "tw-ng-ng2-2025"}


def readings_of(start: int, n: int, step_s: int) -> list[tuple[int, float]]:
    """Registers every ``step_s`` with a varying load, a 40-min gap and a rollover at 1,000."""
    register, out = 990.0, []
    for i in range(n):
        if not 30 <= i < 38:
            out.append((start + i * step_s * 10**9, round(register % 1000, 3)))
        register += 0.5 + (i % 7) * 0.125
    return out


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=6))
def test_any_arrival_order_and_delay_gives_the_same_hours_and_export(
    make_config: Callable[..., Config], influx: InfluxClient,
    tmp_path_factory: pytest.TempPathFactory, rnd: random.Random, batches: int,
) -> None:  # fmt: skip
    """The same readings, shuffled and delivered in 1–6 batches with the rollup job running
    between them (as the collector marks late arrivals), end as the same hours and the same
    exported month as all readings delivered at once."""
    # A database per example: InfluxDB 1.6 can lose points written right after a DROP.
    db = InfluxClient(url=influx.url, database=f"{influx.database}_{next(_examples)}")
    db.ensure_database()
    try:
        check_arrival_order(make_config, db, tmp_path_factory, rnd, batches)
    finally:
        db.execute(f'DROP DATABASE "{db.database}"')
        db.close()


_examples = itertools.count()


def check_arrival_order(
    make_config: Callable[..., Config], influx: InfluxClient,
    tmp_path_factory: pytest.TempPathFactory, rnd: random.Random, batches: int,
) -> None:  # fmt: skip
    config = with_settings(make_config(), "jobs", export_dir=tmp_path_factory.mktemp("exports"))
    config = pointed_at(config, None, influx)
    ref = config.registry.meter("cnc-d", "plant-1", "main")
    assert ref is not None
    start = at(2026, 10, 31, 18)  # across the month boundary in Taipei
    points = readings_of(start, 12 * 12, ref.meter.interval_s)
    max_gap = jobs_module.MAX_GAP_INTERVALS * ref.meter.interval_s * 10**9
    expected = hourly_consumption(RegisterSeries.from_points(ref, points), start,
                                  points[-1][0], max_gap)  # fmt: skip
    assert any(h.estimated for h in expected) and any(h.flags for h in expected)
    last = points[-1][0]
    rnd.shuffle(points)
    cuts = sorted(rnd.sample(range(1, len(points)), batches - 1))
    store = Store(influx)
    now = [at(2026, 11, 20, 9)]
    jobs = Jobs(config, store, FactorLibrary.load(), clock=lambda: now[0])
    received = now[0]
    for chunk in (points[a:b] for a, b in itertools.pairwise([0, *cuts, len(points)])):
        lines = [reading_line(Reading(*ref.key, ts, None, energy_kwh=v)) for ts, v in chunk]
        hours = Counter(ts - ts % HOUR_NS for ts, _ in chunk)
        for hour, n in hours.items():
            received += 1
            lines.append(arrival_line(ref.key, hour, n, received))
        store.write(lines)
        now[0] += rnd.randint(1, 3) * HOUR_NS
        received = now[0] - 60 * 10**9
        assert jobs.run("rollup")
    got = {h.hour_start_ns: h for h in store.hourly_consumption(start, last + 1,
                                                               meter="main")[0]}  # fmt: skip
    for h in expected:
        assert got[h.hour_start_ns].consumption == pytest.approx(h.consumption, abs=1e-9)
        assert got[h.hour_start_ns].estimated_consumption == pytest.approx(
            h.estimated_consumption, abs=1e-9)  # fmt: skip
    emissions = store.hourly_emissions(start, last + 1, meter="main")
    assert len(emissions) == len(expected)
    nov = Month(2026, 11)
    lo, hi = nov.bounds(TPE)
    [meter] = [m for m in compute_month(config, store, nov, FactorLibrary.load()).meters
               if m.ref.key == ref.key]  # fmt: skip
    inside = [h for h in expected if lo <= h.hour_start_ns < hi]
    assert meter.consumption == pytest.approx(sum(h.consumption for h in inside), abs=1e-9)
    assert meter.estimated == pytest.approx(sum(h.estimated_consumption for h in inside))


# --- faults: effects before state, one job at a time, bad input files ------------------------


class FlakyStore(Store):
    """The real store, whose next ``fail_reads`` reads of hourly consumption fail."""

    fail_reads = 0

    def hourly_consumption(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.fail_reads:
            self.fail_reads -= 1
            raise SourceUnavailable("InfluxDB: read timed out (injected)")
        return super().hourly_consumption(*args, **kwargs)


def factor_case(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path,
    registry: str = SMALL_REGISTRY,
) -> tuple[Config, FlakyStore, Path, list[str], Month]:  # fmt: skip
    """March 2025 of forge-a stored at 10 kWh / 10 m³ an hour, with a factor file from before
    the 2025 announcement (the 2024 grid factor, 0.474, stands in: provisional)."""
    shipped = Path(jobs_module.__file__).parent / "data" / "emission_factors.csv"
    text = shipped.read_text("utf-8").splitlines(keepends=True)
    factors = tmp_path / "factors.csv"
    factors.write_text("".join(line for line in text if ",2025," not in line), "utf-8")
    config = with_settings(make_config(registry), "jobs", export_day=1, export_hour=0,
                           retry_delay_s=0, export_dir=tmp_path / "exports",
                           factors_file=factors)  # fmt: skip
    store = FlakyStore(influx)
    month = Month(2025, 3)
    start, end = month.bounds(TPE)
    store.write([consumption_line(HourlyConsumption(
        *ref.key, ref.meter.carrier, ref.unit, hour, 10.0, 1.0, 4))
        for ref in config.registry.meters() if ref.supplier.id == "forge-a"
        for hour in range(start, end, HOUR_NS)])  # fmt: skip
    return config, store, factors, text, month


def test_a_restatement_survives_a_failed_read(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """The factor file is corrected while InfluxDB fails the restatement's first read: the
    retry still finds the change, the hours take the new factor and the month is restated
    naming it (before: the retry reported success with no factor change)."""
    config, store, factors, text, month = factor_case(make_config, influx, tmp_path)
    jobs, now, v1 = provisional_export(config, store, month, tmp_path / "exports")
    assert v1 and v1["totals"]["forge-a"]["provisional"] is True
    factors.write_text("".join(text), "utf-8")  # the 2025 announcement arrives
    now[0] += HOUR_NS
    store.fail_reads = 1
    assert jobs.run("rollup", sleep=lambda s: None)
    assert store.fail_reads == 0 and "tw-grid-2025-industry" in jobs.last_summary
    start, end = month.bounds(TPE)
    stored = store.hourly_emissions(start, end, supplier="forge-a")
    assert {e.factor_id for e in stored} >= {"tw-grid-2025-industry"}
    assert jobs.run("export")
    v2 = latest_manifest(tmp_path / "exports" / "2025-03")
    assert v2 and v2["version"] == 2
    assert any("tw-grid-2025-industry" in why for why in v2["reasons"])


def test_a_one_shot_job_beside_the_scheduler_loses_nothing(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """The scheduler's jobs and a one-shot ``run-job`` share the state file: what one records
    (a month restated, a success) the other never writes back over with its older copy."""
    config, store, factors, text, month = factor_case(make_config, influx, tmp_path)
    scheduler, now, _ = provisional_export(config, store, month, tmp_path / "exports")
    factors.write_text("".join(text), "utf-8")
    now[0] += HOUR_NS
    assert scheduler.run("rollup")
    assert scheduler.state.pending.get("2025-03")
    one_shot = Jobs(config, store, FactorLibrary.for_config(config), clock=lambda: now[0] + 60)
    assert one_shot.run("export")  # restates March, clears its pending entry
    assert "2025-03 restated as v2" in one_shot.last_summary
    now[0] += HOUR_NS
    assert scheduler.run("rollup")  # its older copy had March pending
    state = json.loads((tmp_path / "exports" / "jobs-state.json").read_text())
    assert "2025-03" not in state["pending"]
    assert state["last_success_ns"]["export"] == now[0] - HOUR_NS + 60
    assert scheduler.run("export") and "2025-03" not in scheduler.last_summary


@pytest.mark.parametrize("step", ["late", "events", "factors"])
def test_a_kill_in_the_change_tracking_restates_exactly_once(
    step: str, make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """Killed at each step boundary of the rollup's change tracking after a factor change:
    the next run (a fresh process) recomputes what was not recorded as done, and the export
    restates the month once, naming the factor."""
    config, store, factors, text, month = factor_case(make_config, influx, tmp_path)
    jobs, now, _ = provisional_export(config, store, month, tmp_path / "exports")
    factors.write_text("".join(text), "utf-8")
    now[0] += HOUR_NS
    jobs.step = kill_at(step)
    with pytest.raises(Killed):
        jobs.run("rollup")
    fresh = Jobs(config, store, FactorLibrary.for_config(config), clock=lambda: now[0],
                 reload_factors=True)  # fmt: skip
    assert fresh.run("rollup")
    assert fresh.run("export")
    assert fresh.run("export") and fresh.last_summary == "nothing due"
    v2 = latest_manifest(tmp_path / "exports" / "2025-03")
    assert v2 and v2["version"] == 2
    assert any("tw-grid-2025-industry" in why for why in v2["reasons"])
    start, end = month.bounds(TPE)
    assert {e.factor_id for e in store.hourly_emissions(start, end, supplier="forge-a")} >= {
        "tw-grid-2025-industry"}  # fmt: skip


def test_a_bad_factor_row_leaves_the_jobs_on_the_last_good_file(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A malformed row appended to the factor file: the rollup runs on the last good factors
    at once (no retries), says which file, line and column, and takes the file up again when
    it is fixed — also after a restart."""
    config, store, factors, _, month = factor_case(make_config, influx, tmp_path)
    jobs, now, _ = provisional_export(config, store, month, tmp_path / "exports")
    good = factors.read_text("utf-8")
    factors.write_text(good + "tw-bad,electricity,TW,2027,annual,,ten,kgCO2e/kWh,location,"
                       "x,y,https://x,2026-01-01,\n", "utf-8")  # fmt: skip
    attempts = []
    now[0] += HOUR_NS
    assert jobs.run("rollup", sleep=attempts.append) and attempts == []
    assert "emission_factors.csv: 1 problem(s), last good version used" in jobs.last_summary
    assert "bad_input_file" in caplog.text
    assert f"{factors}:{len(good.splitlines()) + 1}: column value: cannot read 'ten'" in caplog.text
    restarted = Jobs(config, store, FactorLibrary.load(), clock=lambda: now[0],
                     reload_factors=True)  # fmt: skip
    assert restarted.run("rollup", sleep=attempts.append) and attempts == []
    factors.write_text(good, "utf-8")
    assert restarted.run("rollup") and "last good" not in restarted.last_summary


@pytest.mark.parametrize("step", ["restate:written", "restate:published"])
def test_a_kill_in_the_export_restates_exactly_once(
    step: str, make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """A factor change, recomputed by the rollup; the export job is killed right after it
    wrote the restated version, or after it published. The next run (a fresh process) neither
    loses the restatement nor writes it twice: v2, naming the factor, and no v3."""
    config, store, factors, text, month = factor_case(make_config, influx, tmp_path)
    jobs, now, _ = provisional_export(config, store, month, tmp_path / "exports")
    factors.write_text("".join(text), "utf-8")
    now[0] += HOUR_NS
    assert jobs.run("rollup")
    jobs.step = kill_at(step)
    with pytest.raises(Killed):
        jobs.run("export")
    fresh = Jobs(config, store, FactorLibrary.for_config(config), clock=lambda: now[0])
    assert fresh.run("export")
    assert fresh.run("export") and fresh.last_summary == "nothing due"
    month_dir = tmp_path / "exports" / "2025-03"
    assert sorted(p.name for p in month_dir.glob("v*")) == ["v1", "v2"]
    v2 = latest_manifest(month_dir)
    assert v2 and any("tw-grid-2025-industry" in why for why in v2["reasons"])


WATER_REGISTRY = """
[[suppliers]]
id = "heat-c"
kind = "heat_treatment"
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
    [[suppliers.sites.meters]]
    id = "water"
    carrier = "water"
    interval_s = 900
"""


def test_a_water_register_jump_is_estimated_and_raised_naming_the_meter(
    make_config: Callable[..., Config], influx: InfluxClient
) -> None:
    """1,431 → 9,950 m³ in one quarter hour (beyond the water carrier's 500 m³/h): the rollup
    stores the hour as estimated, not 8,521 m³ measured, and raises an ``implausible_step``
    quality issue that names the meter."""
    from processing.jobs import run_rollup

    config = make_config(WATER_REGISTRY)
    store = Store(influx)
    start = at(2026, 10, 14, 8)
    registers = [1_419.0, 1_422.0, 1_425.0, 1_428.0, 1_431.0, 9_950.0, 9_953.0, 9_956.0,
                 9_959.0]  # fmt: skip
    store.write([reading_line(Reading("heat-c", "plant-1", "water", start + k * 900 * 10**9,
                                      None, volume_m3=v))
                 for k, v in enumerate(registers)])  # fmt: skip
    report = run_rollup(config, store, start, start + 2 * HOUR_NS, FactorLibrary.load())
    assert report.implausible == 1
    hours, _ = store.hourly_consumption(start, start + 2 * HOUR_NS, supplier="heat-c")
    total = sum(h.consumption for h in hours)
    assert total == pytest.approx(8 * 3.0)  # the leap replaced by the neighbours' rate
    assert sum(h.estimated_consumption for h in hours) == pytest.approx(3.0)
    [(code, key, _, detail)] = store.quality_issues(start, start + 2 * HOUR_NS)
    assert (code, key) == ("implausible_step", ("heat-c", "plant-1", "water"))
    assert "heat-c/plant-1/water" in detail and "500 m3/h" in detail


def test_a_factor_file_edited_while_nothing_ran_is_found_by_the_first_scheduled_run(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """The operator rolled up and exported March 2025 by hand with the old factor file, then
    corrected the file and started the jobs: their first run compares the stored hours' factor
    with today's resolution (it has no earlier run to compare with), recomputes them and
    restates the month naming the factor."""
    config, store, factors, text, month = factor_case(make_config, influx, tmp_path)
    old = FactorLibrary.for_config(config)
    restate_emissions(config, store, old, ["electricity/TW/2025", "natural_gas/TW/2025"])
    v1 = export_month(config, store, month, tmp_path / "exports", old)
    assert v1.written and v1.version == 1
    factors.write_text("".join(text), "utf-8")  # corrected while nothing ran
    jobs = Jobs(config, store, FactorLibrary.for_config(config), clock=lambda: at(2026, 11, 5))
    assert not jobs.state.factor_resolutions  # a first run: nothing saved to compare with
    assert jobs.run("rollup") and "tw-grid-2025-industry" in jobs.last_summary
    start, end = month.bounds(TPE)
    assert {e.factor_id for e in store.hourly_emissions(start, end, supplier="forge-a")} >= {
        "tw-grid-2025-industry"}  # fmt: skip
    site = store.site_totals(start, end, supplier="forge-a")[("forge-a", "plant-1")]
    assert site.factor_ids == ("tw-grid-2025-industry",)
    assert site.location_kgco2e == pytest.approx(744 * 10.0 * 0.466, abs=1e-3)
    assert jobs.run("export")
    v2 = latest_manifest(tmp_path / "exports" / "2025-03")
    assert v2 and v2["version"] == 2
    assert any("tw-grid-2025-industry" in why and "tw-grid-2024" in why for why in v2["reasons"])


def test_hours_restored_from_an_older_backup_are_recomputed_at_the_next_start(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """The jobs already took up the 2025 factors (their state says so); then the database is
    restored from a backup taken before: the stored hours carry the old factor again. The next
    start of the jobs finds them by the hours themselves, not by its saved copy."""
    config, store, factors, text, month = factor_case(make_config, influx, tmp_path)
    old = FactorLibrary.for_config(config)
    jobs, now, _ = provisional_export(config, store, month, tmp_path / "exports")
    factors.write_text("".join(text), "utf-8")
    now[0] += HOUR_NS
    assert jobs.run("rollup") and jobs.run("export")
    assert latest_manifest(tmp_path / "exports" / "2025-03")["version"] == 2
    # The restore: the hours as they were stored before the new factors.
    restate_emissions(config, store, old, ["electricity/TW/2025", "natural_gas/TW/2025"])
    restarted = Jobs(config, store, FactorLibrary.for_config(config), clock=lambda: now[0])
    assert restarted.state.factor_resolutions  # its saved copy already has the new factors
    assert restarted.run("rollup") and "tw-grid-2025-industry" in restarted.last_summary
    start, end = month.bounds(TPE)
    stored = store.hourly_emissions(start, end, supplier="forge-a")
    assert "tw-grid-2024" not in {e.factor_id for e in stored}
    # A run with nothing changed since finds nothing more to do.
    again = Jobs(config, store, FactorLibrary.for_config(config), clock=lambda: now[0])
    assert again.run("rollup") and "factors changed" not in again.last_summary


WITH_CT_CHANGE = SMALL_REGISTRY.replace(
    "    multiplier = 40\n",
    '    multiplier = 40\n    events = [{ type = "ct_change", time = '
    "2026-10-10T00:00:00+08:00, new_multiplier = 60 }]\n", 1)  # fmt: skip
"""forge-a/plant-1/main with its CT changed from 40 to 60 on 10 Oct 2026, 00:00 local."""


def write_october(store: Store) -> None:
    """forge-a/plant-1/main's register rising by 1 an hour (15-min readings), all October."""
    start, end = at(2026, 10, 1), at(2026, 11, 1)
    store.write([reading_line(Reading("forge-a", "plant-1", "main", t, None,
                                      energy_kwh=1000.0 + (t - start) / (4 * 900 * 10**9)))
                 for t in range(start - HOUR_NS, end + 2 * HOUR_NS, 900 * 10**9)])  # fmt: skip


def test_a_ct_change_recorded_weeks_later_recomputes_every_hour_after_it(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """forge-a/plant-1/main reads +1 register unit an hour all October, CT 40 → 40 kWh/h. On
    5 Nov the plant manager records that the CT was changed to 60 on 10 Oct 00:00: every hour
    from then on is 60 kWh/h (not only the hours around the event), and October restates
    naming the event. Hand-computed: 9 days × 24 × 40 + 22 days × 24 × 60 = 40,320 kWh."""
    config = make_config()
    store = Store(influx)
    start, end = at(2026, 10, 1), at(2026, 11, 1)
    write_october(store)
    now = [at(2026, 11, 5, 9)]
    from processing.jobs import run_rollup

    run_rollup(config, store, start - HOUR_NS, end + HOUR_NS, FactorLibrary.load())
    jobs = make_jobs(config, influx, tmp_path, now)
    assert jobs.run("rollup") and jobs.run("export")
    hours, _ = store.hourly_consumption(start, end, supplier="forge-a", site="plant-1")
    assert sum(h.consumption for h in hours if h.meter == "main") == pytest.approx(744 * 40.0)
    changed = make_jobs(make_config(WITH_CT_CHANGE), influx, tmp_path, now)
    assert changed.run("rollup") and "meter events" in changed.last_summary
    hours, _ = store.hourly_consumption(start, end, supplier="forge-a", site="plant-1")
    main = {h.hour_start_ns: h.consumption for h in hours if h.meter == "main"}
    assert main[at(2026, 10, 9, 23)] == pytest.approx(40.0)
    assert main[at(2026, 10, 10, 0)] == pytest.approx(60.0)
    assert main[at(2026, 10, 31, 23)] == pytest.approx(60.0)  # three weeks after the event
    assert sum(main.values()) == pytest.approx(9 * 24 * 40 + 22 * 24 * 60)
    site = store.site_totals(start, end, supplier="forge-a")[("forge-a", "plant-1")]
    assert site.purchased_kwh == pytest.approx(40_320.0)
    assert changed.run("export")
    v2 = latest_manifest(tmp_path / "exports" / "2026-10")
    assert v2 and v2["version"] == 2
    assert any("meter event" in why for why in v2["reasons"])
    assert v2["totals"]["forge-a"]["purchased_electricity_kwh"] == pytest.approx(40_320.0)


def test_hours_computed_before_an_event_was_known_are_found_by_their_lineage(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """The database is restored from a backup taken before the CT change of 10 Oct was
    recorded, while the jobs' state already knows the event: no difference of registries
    to see. The first run compares each stored hour's lineage (its meter's settings and
    events up to the hour) with the registry's and recomputes exactly the hours after it."""
    from processing.jobs import _event_digests, run_rollup

    store = Store(influx)
    start, end = at(2026, 10, 1), at(2026, 11, 1)
    write_october(store)
    run_rollup(make_config(), store, start - HOUR_NS, end + HOUR_NS, FactorLibrary.load())
    config = make_config(WITH_CT_CHANGE)
    ref = config.registry.meter("forge-a", "plant-1", "main")
    assert ref is not None and len(ref.lineage_ranges) == 2
    assert store.hours_not_of(ref.key, ref.lineage_ranges) == set(
        range(at(2026, 10, 10), end + HOUR_NS, HOUR_NS))  # fmt: skip
    jobs = make_jobs(config, influx, tmp_path, [at(2026, 11, 5, 9)])
    jobs.state.meter_events = _event_digests(config)  # the state is newer than the data
    jobs.state.save()
    assert jobs.run("rollup") and "meter events" in jobs.last_summary
    hours, _ = store.hourly_consumption(start, end, supplier="forge-a", site="plant-1")
    main = {h.hour_start_ns: h.consumption for h in hours if h.meter == "main"}
    assert sum(main.values()) == pytest.approx(9 * 24 * 40 + 22 * 24 * 60)
    assert not store.hours_not_of(ref.key, ref.lineage_ranges)
    again = make_jobs(config, influx, tmp_path, [at(2026, 11, 5, 10)])
    assert again.run("rollup") and "meter events" not in again.last_summary  # nothing left
