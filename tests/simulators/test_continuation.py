"""Runs of the simulator on one ledger continue each other: a backfill, then real time, then
another backfill look to the pipeline like one meter history (no register fall), and the
ledger covers all three runs exactly (real Mosquitto and InfluxDB)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.service import Collector
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from simulators.ledger import read_ledger
from simulators.run import RunState, simulate, state_path_for
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store
from tests.helpers import wait_until

TPE = ZoneInfo("Asia/Taipei")
H = timedelta(hours=1)


def test_backfill_then_real_time_then_backfill_is_one_history(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    config = make_config()
    ledger = tmp_path / "ledger.csv"
    t0 = datetime(2026, 10, 5, 6, tzinfo=TPE)
    with Collector(config, client=influx) as collector:
        runs = [simulate(config, start=t0, end=t0 + 6 * H, seed=1, ledger_path=ledger)]
        # real time, 2 simulated hours at 72,000× (0.1 s of wall time)
        runs.append(simulate(config, start=t0 + 6 * H, end=t0 + 8 * H, seed=2, speed=72_000.0,
                             ledger_path=ledger))  # fmt: skip
        with pytest.raises(ValueError, match="continues a run that ended at 2026-10-05T06:00"):
            simulate(config, start=t0 + 7 * H, end=t0 + 9 * H, seed=3, ledger_path=ledger)
        runs.append(simulate(config, start=t0 + 8 * H, end=t0 + 12 * H, seed=3,
                             ledger_path=ledger))  # fmt: skip
        messages = sum(r.messages for r in runs)
        assert wait_until(lambda: collector.stats.reading_messages >= messages, 60)
        assert collector.writer.flush(30)
    assert collector.stats.rejected_total == 0
    assert [r.continued_from_ns for r in runs] == [None, *(datetime_to_ns(t0 + h * H)
                                                         for h in (6, 8))]  # fmt: skip
    assert RunState.load(state_path_for(ledger)).end_ns == datetime_to_ns(t0 + 12 * H)

    start_ns, end_ns = datetime_to_ns(t0), datetime_to_ns(t0 + 12 * H)
    store = Store(influx)
    report = run_rollup(config, store, start_ns, end_ns, FactorLibrary.load())
    assert report.falls == 0 and report.estimated_hours == 0
    truth = read_ledger(ledger)
    assert all(len(hours) == 12 for hours in truth.values())  # every hour of the three runs
    hours, _ = store.hourly_consumption(start_ns, end_ns)
    assert len(hours) == 12 * len(truth)
    for h in hours:
        expected = truth[(h.supplier, h.site, h.meter)][h.hour_start_ns]
        assert abs(Decimal(str(h.consumption)) - expected) <= Decimal("0.001"), h


def test_an_interrupted_run_keeps_its_ledger_and_registers(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """Ctrl-C in real time: the ledger holds every whole hour before the interruption, the
    state the registers at that hour (initial register + what the ledger metered), and the
    next run continues from there."""
    config = make_config()
    ledger = tmp_path / "ledger.csv"
    t0 = datetime(2026, 10, 5, tzinfo=TPE)
    now = [0.0]
    sleeps = [0]

    def sleep(seconds: float) -> None:
        sleeps[0] += 1
        if sleeps[0] > 120:
            raise KeyboardInterrupt
        now[0] += seconds

    run = simulate(config, start=t0, end=t0 + 24 * H, seed=1, speed=1.0, ledger_path=ledger,
                   clock=lambda: now[0], sleep=sleep)  # fmt: skip
    assert run.interrupted and datetime_to_ns(t0) < run.end_ns < datetime_to_ns(t0 + 24 * H)
    assert run.end_ns % (3600 * 10**9) == 0
    state = RunState.load(state_path_for(ledger))
    assert state is not None and state.end_ns == run.end_ns
    metered = read_ledger(ledger)
    hours = (run.end_ns - datetime_to_ns(t0)) // (3600 * 10**9)
    for ref in config.registry.meters():
        key = ref.key
        assert sorted(metered[key]) == [datetime_to_ns(t0 + h * H) for h in range(hours)]
        counted = sum(metered[key].values()) / Decimal(str(ref.meter.multiplier))
        initial = Decimal(str(ref.meter.simulation.initial_register))
        saved = Decimal(int(state.meters["/".join(key)]["register_milli"])) / 1000
        assert abs(saved - (initial + counted)) <= Decimal("0.001"), key
    later = simulate(config, start=datetime.fromtimestamp(run.end_ns / 1e9, TPE),
                     end=t0 + 24 * H, seed=1, ledger_path=ledger)  # fmt: skip
    assert later.continued_from_ns == run.end_ns and not later.interrupted
    assert all(len(h) == 24 for h in read_ledger(ledger).values())
