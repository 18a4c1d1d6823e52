from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.rollup import HOUR_NS, RegisterSeries, hourly_consumption, measure, step_label
from supplymeter.config import Allocation, Meter, MeterRef, Site, Supplier
from supplymeter.records import datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")
T0 = datetime_to_ns(datetime(2026, 10, 1, tzinfo=TPE))
MIN = 60 * 10**9


def meter(rollover: float | None = None, multiplier: float = 1.0, carrier: str = "electricity",
          max_power: float | None = None, events: list[dict] | None = None):  # type: ignore[no-untyped-def]  # fmt: skip
    m = Meter(
        id="main",
        carrier=carrier,
        rollover=rollover,
        multiplier=multiplier,
        max_power=max_power,
        events=events or [],
    )
    site = Site(id="plant-1", meters=[m])
    supplier = Supplier(id="s", allocation=Allocation(method="dedicated", share=1), sites=[site])
    return MeterRef(supplier, site, m)


def series(ref: MeterRef, points: list[tuple[int, float]]) -> RegisterSeries:
    return RegisterSeries.from_points(ref, points)


def test_aligned_readings_give_exact_hours_with_multiplier() -> None:
    ref = meter(multiplier=40)
    s = series(ref, [(T0 + i * 15 * MIN, 1000 + i * 0.5) for i in range(9)])  # 2 h of 15-min
    hours = hourly_consumption(s, T0, T0 + 2 * HOUR_NS, 30 * MIN)
    assert [h.consumption for h in hours] == [80.0, 80.0]  # 2.0 register units × 40
    assert [h.coverage for h in hours] == [1.0, 1.0] and not any(h.estimated for h in hours)
    assert [h.readings for h in hours] == [4, 4] and hours[0].unit == "kWh"


def test_rollover_at_99999_9() -> None:
    ref = meter(rollover=100_000)
    s = series(ref, [(T0, 99_999.5), (T0 + 30 * MIN, 99_999.9), (T0 + HOUR_NS, 0.7)])
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, HOUR_NS)
    assert hour.consumption == pytest.approx(1.2, abs=1e-9)
    assert hour.flags == ("rollover",)


def test_meter_replacement_without_event_is_estimated_at_the_neighbouring_rate() -> None:
    ref = meter(rollover=100_000)
    s = series(ref, [(T0, 40_000.0), (T0 + 30 * MIN, 40_010.0), (T0 + HOUR_NS, 3.0)])
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, HOUR_NS)
    assert hour.consumption == pytest.approx(20.0) and hour.flags == ("reset",)
    assert hour.estimated and hour.estimated_consumption == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("old", "new", "rollover", "expected"),
    [
        (10.0, 12.5, None, ("normal", 2.5)),
        (10.0, 10.0, None, ("normal", 0.0)),
        (99_990.0, 10.0, 100_000.0, ("rollover", 20.0)),
        (60_000.0, 50_000.0, 100_000.0, ("reset", 0.0)),
        (10.0, 2.0, None, ("reset", 0.0)),
    ],
)
def test_step_labels(old: float, new: float, rollover: float | None, expected: tuple) -> None:  # type: ignore[type-arg]
    label, increase = step_label(old, new, rollover)
    assert label == expected[0] and increase == pytest.approx(expected[1])


def test_gap_across_local_midnight_is_apportioned_and_estimated() -> None:
    """Readings stop at 22:00 Taipei and resume at 02:00: 40 kWh spread over 4 hours."""
    ref = meter()
    ten_pm = datetime_to_ns(datetime(2026, 10, 1, 22, tzinfo=TPE))
    s = series(ref, [(ten_pm - HOUR_NS, 0.0), (ten_pm, 10.0), (ten_pm + 4 * HOUR_NS, 50.0),
                     (ten_pm + 5 * HOUR_NS, 60.0)])  # fmt: skip
    hours = hourly_consumption(s, ten_pm - HOUR_NS, ten_pm + 5 * HOUR_NS, HOUR_NS)
    assert [h.consumption for h in hours] == [10.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    assert [h.estimated for h in hours] == [False, True, True, True, True, False]
    assert [h.coverage for h in hours] == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_partly_covered_hour_and_hours_outside_the_data() -> None:
    ref = meter()
    s = series(
        ref, [(T0, 0.0), (T0 + 15 * MIN, 1.0), (T0 + 75 * MIN, 5.0), (T0 + 2 * HOUR_NS, 8.0)]
    )
    hours = hourly_consumption(s, T0 - HOUR_NS, T0 + 3 * HOUR_NS, 15 * MIN)
    assert [h.hour_start_ns for h in hours] == [T0, T0 + HOUR_NS]  # no data before or after
    assert hours[0].coverage == pytest.approx(0.25) and hours[0].consumption == pytest.approx(4.0)


def test_duplicates_and_disorder_do_not_change_the_result() -> None:
    ref = meter()
    points = [(T0 + i * 15 * MIN, float(i)) for i in range(5)]
    shuffled = [points[3], points[0], points[4], points[1], points[1], points[2]]
    expected = hourly_consumption(series(ref, points), T0, T0 + HOUR_NS, 15 * MIN)
    assert hourly_consumption(series(ref, shuffled), T0, T0 + HOUR_NS, 15 * MIN) == expected


def test_a_single_reading_says_nothing() -> None:
    assert hourly_consumption(series(meter(), [(T0, 1.0)]), T0, T0 + HOUR_NS, HOUR_NS) == []


@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=7200), st.floats(min_value=0, max_value=500)),
        min_size=2, max_size=60,
    ),
    st.integers(min_value=0, max_value=3599),
)  # fmt: skip
def test_hours_add_up_to_the_register_increase(steps: list[tuple[int, float]], offset: int) -> None:
    """Whatever the spacing, the hours between two hour boundaries sum to the interpolated
    increase between them: nothing is lost or counted twice at hour edges. (Arithmetic only:
    the meter may draw anything, so no step is implausible.)"""
    ref = meter(rollover=1000, max_power=1e15)
    ts, cumulative, points = T0 + offset * 10**9, 0.0, []
    for gap_s, increase in steps:
        points.append((ts, cumulative % 1000))
        ts += gap_s * 10**9
        cumulative += min(increase, 499)  # rollover is only recognisable below half its value
    points.append((ts, cumulative % 1000))
    hours = hourly_consumption(series(ref, points), points[0][0], ts, 3600 * 10**9)
    first_hour = points[0][0] + (-points[0][0]) % HOUR_NS
    whole = [h for h in hours if h.hour_start_ns >= first_hour]
    assert len(whole) == len(hours)
    if whole:
        begin, end = whole[0].hour_start_ns, whole[-1].hour_start_ns + HOUR_NS
        total = sum(h.consumption for h in whole)
        # Increase between begin and end from the unwrapped series, interpolated.
        unwrapped, running = [], 0.0
        for i, (t, v) in enumerate(points):
            if i:
                d = v - points[i - 1][1]
                running += d if d >= 0 else d + 1000
            unwrapped.append((t, running))

        def at(t: int) -> float:
            for (t0, c0), (t1, c1) in itertools.pairwise(unwrapped):
                if t0 <= t <= t1:
                    return c0 + (c1 - c0) * (t - t0) / (t1 - t0)
            raise AssertionError

        assert total == pytest.approx(at(end) - at(begin), rel=1e-9, abs=1e-6)
        assert all(h.consumption >= -1e-9 for h in whole)


# --- quality labels (hand-computed) ---------------------------------------------------------

Q = 15 * MIN


def quarter_hours(*registers: float) -> list[tuple[int, float]]:
    return [(T0 + i * Q, r) for i, r in enumerate(registers)]


def test_a_fall_that_returns_is_estimated_never_measured() -> None:
    """100 → 110 → 0 → 130: a momentary zero, or an exchange whose new meter passed the old
    register by its next reading. The data cannot tell: the 30 min around the odd reading are
    estimated along the register's own path (110 → 130) and asked about."""
    s = series(meter(), quarter_hours(100.0, 110.0, 0.0, 130.0, 140.0))
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, 30 * MIN)
    assert hour.consumption == pytest.approx(40.0) and hour.flags == ("fall",)
    assert hour.estimated and hour.coverage == pytest.approx(0.5)
    assert hour.estimated_consumption == pytest.approx(20.0)
    assert measure(s).falls() == [(T0 + 3 * Q, "fall")]


def test_garbage_spike_is_a_glitch_when_a_max_power_is_known() -> None:
    # 400 kW max: at most 100 kWh per 15 min. 110 → 9,999,999 → 130 is a glitch.
    s = series(meter(max_power=400), quarter_hours(100.0, 110.0, 9_999_999.0, 130.0, 140.0))
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, 30 * MIN)
    assert hour.consumption == pytest.approx(40.0) and hour.flags == ("glitch",)


def test_implausible_jump_is_rejected_not_summed() -> None:
    # The register leaps by 5,000 kWh in 15 min (20 MW on a 400 kW meter) and stays there.
    s = series(meter(max_power=400), quarter_hours(100.0, 110.0, 5110.0, 5120.0, 5130.0))
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    assert hour.consumption == pytest.approx(40.0)  # the leap replaced by the neighbours' rate
    assert hour.flags == ("implausible",) and hour.coverage == pytest.approx(0.75)
    assert hour.estimated_consumption == pytest.approx(10.0)


def test_replacement_is_estimated_from_the_neighbouring_rate() -> None:
    # 10 kWh per 15 min; new meter installed at 4.0 kWh, reads 14.0 a quarter later.
    s = series(meter(rollover=100_000), quarter_hours(500.0, 510.0, 14.0, 24.0, 34.0))
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    assert hour.consumption == pytest.approx(40.0)  # not 10 + 14 + 20 = 44
    assert hour.flags == ("reset",) and hour.estimated and hour.coverage == pytest.approx(0.75)


def test_max_power_tells_a_meter_swap_from_a_rollover() -> None:
    """60,000 → 3 on a 100,000 rollover: read as a wrap it would be 40,003 kWh in 15 min (160
    MW) — beyond even the carrier's default bound (50 MW), so it is a replacement; with the
    meter's own max_power the same."""
    points = quarter_hours(59_980.0, 59_990.0, 60_000.0, 3.0, 13.0)
    [loose] = hourly_consumption(series(meter(rollover=100_000), points), T0, T0 + HOUR_NS, Q)
    assert loose.flags == ("reset",) and loose.consumption == pytest.approx(40.0)
    [strict] = hourly_consumption(
        series(meter(rollover=100_000, max_power=400), points), T0, T0 + HOUR_NS, Q
    )
    assert strict.flags == ("reset",) and strict.consumption == pytest.approx(40.0)


def test_real_rollover_stays_a_rollover_with_max_power() -> None:
    points = quarter_hours(99_980.0, 99_990.0, 0.0, 10.0, 20.0)
    ref = meter(rollover=100_000, max_power=400)
    [hour] = hourly_consumption(series(ref, points), T0, T0 + HOUR_NS, Q)
    assert hour.flags == ("rollover",) and hour.consumption == pytest.approx(40.0)
    assert not hour.estimated


def test_contract_capacity_bounds_an_electricity_meter() -> None:
    m = Meter(id="main", carrier="electricity")
    site = Site(id="plant-1", meters=[m], contract_capacity_kw=500)
    supplier = Supplier(id="s", allocation=Allocation(method="dedicated", share=1), sites=[site])
    ref = MeterRef(supplier, site, m)
    from processing.rollup import max_power

    assert max_power(ref) == 1500 and max_power(meter()) == 50_000  # the carrier's default
    assert max_power(meter(max_power=80)) == 80
    assert max_power(meter(carrier="water")) == 500


def test_a_jump_of_a_water_register_is_estimated_never_measured() -> None:
    """1,431 → 9,950 m³ within a quarter hour (34,000 m³/h; the carrier's bound is 500 m³/h,
    a DN250 main): the leap is estimated from the neighbouring rate and flagged, not stored as
    8,521 m³ measured (before: only electricity had a plausibility limit)."""
    s = series(meter(carrier="water"), quarter_hours(1_425.0, 1_428.0, 1_431.0, 9_950.0,
                                                      9_953.0))  # fmt: skip
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    assert hour.flags == ("implausible",) and hour.consumption == pytest.approx(12.0)
    assert hour.estimated_consumption == pytest.approx(3.0)
    assert measure(s).implausible() == [(T0 + 2 * Q, T0 + 3 * Q)]


def test_a_production_counter_has_no_rate_limit() -> None:
    """A counter of pieces may count 100,000 an hour: the energy meter's bound is not its."""
    from processing.rollup import counter_ref, max_power

    ref = counter_ref(meter(), None)
    assert max_power(ref) is None
    s = series(ref, quarter_hours(0.0, 30_000.0, 60_000.0, 90_000.0, 120_000.0))
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    assert hour.consumption == pytest.approx(120_000.0) and not hour.flags


# --- meter events (hand-computed) -------------------------------------------------------------


def at(i: int) -> datetime:
    return datetime.fromtimestamp((T0 + i * Q) / 1e9, TPE)


def test_exchange_with_event_is_exact_when_the_new_meter_passes_the_old_value() -> None:
    """45 → 3 → 50: the old meter read 45 at 00:15 and 46 when it came off at 00:22:30; the
    new one started at 0 and read 3 at 00:30, 50 at 00:45. Consumption 45→46 + 0→50 = 51 plus
    the first step 40→45: 56, all measured."""
    exchange = {"type": "exchange", "time": at(1) + (at(2) - at(1)) / 2,
                "old_final_register": 46.0, "new_first_register": 0.0}  # fmt: skip
    ref = meter(events=[exchange])
    s = series(ref, quarter_hours(40.0, 45.0, 3.0, 50.0, 60.0))
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    assert hour.consumption == pytest.approx(5 + 1 + 3 + 47 + 10)
    assert not hour.estimated and hour.estimated_consumption == 0.0
    assert hour.flags == ("exchange",) and measure(s).falls() == []


def test_the_same_registers_without_the_event_are_estimated_and_asked_about() -> None:
    s = series(meter(), quarter_hours(40.0, 45.0, 3.0, 50.0, 60.0))
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    assert hour.estimated and hour.flags == ("fall",)
    # The least the exchange can have used (45 → 50), never shown as measured.
    assert hour.consumption == pytest.approx(20.0) and hour.estimated_consumption == 5.0
    assert [label for _, label in measure(s).falls()] == ["fall"]


def test_exchange_to_a_meter_with_another_multiplier_and_rollover() -> None:
    """The old meter (×40) reads 10.0, 10.5 and is removed at 10.75; the new one (×80,
    rollover 1,000) starts at 999.5, wraps, then reads 0.25 and 0.75."""
    exchange = {"type": "exchange", "time": at(2), "old_final_register": 10.75,
                "new_first_register": 999.5, "new_multiplier": 80,
                "new_rollover": 1000}  # fmt: skip
    ref = meter(multiplier=40, events=[exchange])
    s = series(ref, [(T0, 10.0), (T0 + Q, 10.5), (T0 + 3 * Q, 0.25), (T0 + 4 * Q, 0.75)])
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    # 0.75 × 40 before, (0.5 + 0.25 + 0.5) × 80 after
    assert hour.consumption == pytest.approx(30 + 100)
    assert sorted(hour.flags) == ["exchange", "rollover"] and not hour.estimated


def test_ct_change_applies_each_ratio_to_its_side() -> None:
    """The register runs on through a CT change from ×40 to ×60 at 00:30 (no register given:
    interpolated, 2.0): 2 × 40 + 2 × 60."""
    change = {"type": "ct_change", "time": at(2), "new_multiplier": 60}
    ref = meter(multiplier=40, events=[change])
    s = series(ref, [(T0, 0.0), (T0 + Q, 1.0), (T0 + 3 * Q, 3.0), (T0 + 4 * Q, 4.0)])
    [hour] = hourly_consumption(s, T0, T0 + HOUR_NS, Q)
    assert hour.consumption == pytest.approx(2 * 40 + 2 * 60) and not hour.estimated


def test_a_reset_after_a_flat_period_is_not_estimated_as_zero() -> None:
    """Flat for the step before the reset (a break), 10 kWh per quarter before that and after:
    the rate comes from an hour on each side, not from the single flat step."""
    points = quarter_hours(0.0, 10.0, 20.0, 30.0, 40.0, 40.0, 2.0, 12.0, 22.0, 32.0, 42.0)
    s = series(meter(rollover=100_000), points)
    m = measure(s)
    reset = m.labels.index("reset")
    assert m.cumulative[reset + 1] - m.cumulative[reset] == pytest.approx((7.5 + 10) / 2)


def test_measured_plus_estimated_is_the_total_and_energy_shares_are_exact() -> None:
    """20 of 60 kWh estimated: a 2-hour gap apportioned, then measured hours."""
    ref = meter()
    points = [(T0, 0.0), (T0 + HOUR_NS, 20.0), (T0 + 3 * HOUR_NS, 40.0), (T0 + 4 * HOUR_NS, 60.0)]
    hours = hourly_consumption(series(ref, points), T0, T0 + 4 * HOUR_NS, HOUR_NS)
    total = sum(h.consumption for h in hours)
    estimated = sum(h.estimated_consumption for h in hours)
    assert total == pytest.approx(60.0) and estimated == pytest.approx(20.0)
    assert sum(h.measured_consumption for h in hours) == pytest.approx(40.0)
    assert round(100 * estimated / total, 1) == 33.3


def test_events_are_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="old_final_register and new_first_register"):
        meter(events=[{"type": "exchange", "time": at(1), "old_final_register": 3.0}])
    with pytest.raises(ValidationError, match="needs a UTC offset"):
        meter(events=[{"type": "ct_change", "time": datetime(2026, 1, 1), "new_multiplier": 2}])
    with pytest.raises(ValidationError, match="strictly increasing"):
        meter(events=[{"type": "ct_change", "time": at(2), "new_multiplier": 2},
                      {"type": "ct_change", "time": at(1), "new_multiplier": 3}])  # fmt: skip


@given(
    st.lists(st.floats(min_value=0, max_value=50), min_size=3, max_size=40),
    st.integers(min_value=1, max_value=38),
    st.floats(min_value=0, max_value=20),
)
def test_an_exchange_with_its_event_equals_the_uninterrupted_meter(
    increments: list[float], cut: int, new_first: float
) -> None:
    """Any consumption, any exchange point, any new meter start: with the event recorded the
    hours equal those of one meter that was never exchanged."""
    cut = min(cut, len(increments) - 1)
    regs, acc = [], 100.0
    for inc in increments:
        regs.append(acc)
        acc += inc
    regs.append(acc)
    ts = [T0 + i * Q for i in range(len(regs))]
    t_event = ts[cut] + Q // 2
    # true register at the event (uniform within the step)
    at_event = regs[cut] + (regs[cut + 1] - regs[cut]) / 2
    exchanged = [(t, r) if t < t_event else (t, new_first + r - at_event)
                 for t, r in zip(ts, regs, strict=True)]  # fmt: skip
    event = {"type": "exchange", "time": datetime.fromtimestamp(t_event / 1e9, TPE),
             "old_final_register": at_event, "new_first_register": new_first}  # fmt: skip
    end = ts[-1] - ts[-1] % HOUR_NS
    plain = hourly_consumption(series(meter(), list(zip(ts, regs, strict=True))), T0, end, Q)
    swapped = hourly_consumption(series(meter(events=[event]), exchanged), T0, end, Q)
    assert [h.hour_start_ns for h in swapped] == [h.hour_start_ns for h in plain]
    for a, b in zip(plain, swapped, strict=True):
        assert b.consumption == pytest.approx(a.consumption, abs=1e-6)
        assert b.estimated_consumption == pytest.approx(0.0, abs=1e-9)


def simulated_series(config, seed: int, start: int, end: int):  # type: ignore[no-untyped-def]
    """Every meter's readings as the gateways would send them, and the run's ground truth."""
    import json

    from simulators.gateway import Send
    from simulators.run import generate, prepare

    run = prepare(config, start, end, seed)
    points: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for _, action in generate(run):
        if not (isinstance(action, Send) and action.readings):
            continue
        parts = action.topic.split("/")
        body = json.loads(action.payload)
        for r in body.get("readings", [body]):
            ts = datetime_to_ns(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")))
            value = r.get("energy_kwh", r.get("volume_m3"))
            points.setdefault((parts[2], parts[3], parts[4]), []).append((ts, value))
    return run, points


def test_simulated_exchanges_with_their_events_equal_the_ledger_and_without_are_estimated(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Meter replacements injected by the simulator: recorded as registry events (time, old
    final register, new first register) every hour equals what the registers counted; the
    same readings without the events give estimated hours and a fall to ask about."""
    import tomllib

    from supplymeter.config import FaultSettings, Registry, RegistryFile, load_config
    from tests.conftest import SMALL_REGISTRY, with_settings, write_config

    plain = load_config(write_config(tmp_path / "a", SMALL_REGISTRY), {})
    plain = with_settings(plain, "simulator", faults=FaultSettings(replacement_per_month=4.0))
    start = datetime_to_ns(datetime(2026, 10, 1, tzinfo=TPE))
    end = start + 14 * 24 * HOUR_NS
    run, points = simulated_series(plain, 3, start, end)
    replacements = run.faults.of_type("replacement")
    assert len(replacements) >= 3
    # The events an operator records from the work orders, in the registry.
    by_meter: dict[tuple[str, str, str], list[str]] = {}
    for e in replacements:
        t = datetime.fromisoformat(e.start.replace("Z", "+00:00"))
        by_meter.setdefault((e.supplier, e.site, e.meter), []).append(
            f'{{ type = "exchange", time = {t.isoformat()}, '
            f"old_final_register = {e.details['old_register']!r}, "
            f"new_first_register = {e.details['new_register']!r} }}"
        )
    raw = tomllib.loads(SMALL_REGISTRY)
    for supplier in raw["suppliers"]:
        for site in supplier["sites"]:
            for meter in site["meters"]:
                events = by_meter.get((supplier["id"], site["id"], meter["id"]), [])
                meter["events"] = [tomllib.loads(f"e = {ev}")["e"] for ev in events]
    registry = Registry.build(RegistryFile.model_validate(raw).suppliers)
    truth = run.ledger.metered()
    checked = 0
    for key, pts in points.items():
        ref = registry.meter(*key)
        bare = plain.registry.meter(*key)
        assert ref is not None and bare is not None
        gap = 2 * ref.meter.interval_s * 10**9
        exact = hourly_consumption(RegisterSeries.from_points(ref, pts), start, end, gap)
        for h in exact:
            assert h.consumption == pytest.approx(float(truth[key][h.hour_start_ns]), abs=1e-6)
            assert not h.estimated
        if key in by_meter:
            checked += 1
            series = RegisterSeries.from_points(bare, pts)
            guessed = hourly_consumption(series, start, end, gap)
            assert any(h.estimated for h in guessed)
            # Without a power limit, a swap that fell by more than half the rollover value
            # reads as a wrap (test_max_power_tells_a_meter_swap_from_a_rollover); every
            # other swap is a fall to ask about.
            rollover = bare.meter.rollover
            wraps = sum(1 for e in replacements if (e.supplier, e.site, e.meter) == key
                        and rollover and e.details["old_register"] - e.details["new_register"]
                        > rollover / 2)  # fmt: skip
            assert len(measure(series).falls()) == len(by_meter[key]) - wraps
    assert checked >= 2
