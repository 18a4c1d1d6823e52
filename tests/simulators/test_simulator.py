from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from simulators.ledger import HOUR_NS, Ledger, read_ledger
from simulators.plant import MILLI, MeterModel, working
from simulators.run import check_range, schedule, simulate
from supplymeter.config import Config, MeterRef
from supplymeter.records import datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")
OCT_1 = datetime_to_ns(datetime(2026, 10, 1, tzinfo=TPE))


def run_meter(ref: MeterRef, seed: int, hours: int) -> tuple[list[float], Ledger]:
    """Drive one meter like the simulator does; return its published registers and ledger."""
    model, ledger, registers = MeterModel(ref, seed), Ledger(), []
    step = ref.meter.interval_s * 10**9
    for ts in range(OCT_1, OCT_1 + hours * HOUR_NS + 1, step):
        reading = model.reading(ts, None)
        registers.append(reading.energy_kwh if reading.energy_kwh is not None else model.register)
        if ts < OCT_1 + hours * HOUR_NS:
            increment, _ = model.advance(ts, ref.meter.interval_s)
            ledger.add(ref, ts, increment)
    return registers, ledger


def test_ledger_hours_equal_register_differences_through_rollover(example_config: Config) -> None:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None and ref.meter.rollover == 100000
    registers, ledger = run_meter(ref, seed=3, hours=48)
    per_hour = ledger.consumption()[ref.key]
    assert len(per_hour) == 48
    assert min(registers) < 1000 < 99_000 < max(registers)  # it wrapped
    readings_per_hour = 3600 // ref.meter.interval_s
    for i, (hour, amount) in enumerate(per_hour.items()):
        assert hour == OCT_1 + i * HOUR_NS
        first, last = registers[i * readings_per_hour], registers[(i + 1) * readings_per_hour]
        delta = Decimal(str(last)) - Decimal(str(first))
        if delta < 0:
            delta += Decimal(str(ref.meter.rollover))
        assert amount == delta * Decimal(str(ref.meter.multiplier))


def test_multiplier_scales_ground_truth(example_config: Config) -> None:
    ref = example_config.registry.meter("forge-a", "taichung-1", "main")
    assert ref is not None and ref.meter.multiplier == 40
    registers, ledger = run_meter(ref, seed=1, hours=24)
    total = sum(ledger.consumption()[ref.key].values())
    assert total == (Decimal(str(registers[-1])) - Decimal(str(registers[0]))) * 40


def test_same_seed_same_readings_other_seed_other_readings(example_config: Config) -> None:
    ref = example_config.registry.meter("spring-b", "changhua-1", "coiling")
    assert ref is not None
    assert run_meter(ref, 7, 24)[0] == run_meter(ref, 7, 24)[0]
    assert run_meter(ref, 7, 24)[0] != run_meter(ref, 8, 24)[0]


def test_plants_follow_shifts_weekends_and_taiwan_holidays() -> None:
    tue_10 = datetime(2026, 10, 13, 10, tzinfo=TPE)
    tue_03 = datetime(2026, 10, 13, 3, tzinfo=TPE)
    sunday = datetime(2026, 10, 11, 10, tzinfo=TPE)
    national_day = datetime(2026, 10, 9, 10, tzinfo=TPE)  # observed holiday, a Friday
    assert working("forging", tue_10) and not working("forging", tue_03)
    assert working("springs", tue_03)  # three shifts
    assert not working("machining", sunday) and not working("forging", national_day)
    assert working("heat_treatment", sunday)


def test_a_working_hour_draws_more_than_a_night(example_config: Config) -> None:
    ref = example_config.registry.meter("forge-a", "taichung-1", "press-line")
    assert ref is not None
    model = MeterModel(ref, 1)
    day = [
        model.load(datetime_to_ns(datetime(2026, 10, 13, 10, m, tzinfo=TPE)))
        for m in range(0, 60, 15)
    ]
    night = [
        model.load(datetime_to_ns(datetime(2026, 10, 13, 3, m, tzinfo=TPE)))
        for m in range(0, 60, 15)
    ]
    assert min(day) > 5 * max(night)


def test_schedule_reads_every_meter_on_its_interval(example_config: Config) -> None:
    refs = example_config.registry.meters()
    steps = list(schedule(refs, OCT_1, OCT_1 + HOUR_NS))
    counts = {r.key: 0 for r in refs}
    for _, due in steps:
        for r in due:
            counts[r.key] += 1
    assert all(counts[r.key] == 3600 // r.meter.interval_s + 1 for r in refs)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (datetime(2026, 10, 1), datetime(2026, 10, 2), "UTC offset"),
        (
            datetime(2026, 10, 1, 0, 30, tzinfo=TPE),
            datetime(2026, 10, 2, tzinfo=TPE),
            "whole hours",
        ),
        (datetime(2026, 10, 2, tzinfo=TPE), datetime(2026, 10, 1, tzinfo=TPE), "before end"),
    ],
)
def test_range_is_checked(start: datetime, end: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_range(start, end)


def test_ledger_csv_round_trips(example_config: Config, tmp_path: Path) -> None:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "quench-water")
    assert ref is not None
    _, ledger = run_meter(ref, 1, 5)
    ledger.write_csv(tmp_path / "ledger.csv")
    assert read_ledger(tmp_path / "ledger.csv") == ledger.consumption()
    assert (tmp_path / "ledger.csv").read_text().splitlines()[0] == (
        "supplier,site,meter,carrier,unit,hour_start_utc,consumption"
    )
    assert MILLI == 1000


def test_real_time_mode_paces_readings_on_the_simulated_clock(
    make_config: Callable[..., Config],
) -> None:
    """--speed 600: two simulated hours take 12 s, one reading step (5 min) every 0.5 s."""
    config = make_config()
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    start = datetime(2026, 10, 1, tzinfo=TPE)
    result = simulate(config, start=start, end=start + timedelta(hours=2), seed=1, speed=600,
                      clock=lambda: now[0], sleep=sleep)  # fmt: skip
    assert now[0] == pytest.approx(12.0)
    assert sleeps == pytest.approx([0.5] * 24)
    assert result.messages == 25 + 9 + 3  # cnc-d every 5 min, forge-a main 15 min, gas hourly
