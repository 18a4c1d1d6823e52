"""The simulator behaves like plants and gateways, and its ground truth is exact."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.payload import Limits, parse_readings
from simulators.faults import FaultLog, read_faults
from simulators.gateway import Link, Send
from simulators.ledger import HOUR_NS, read_ledger
from simulators.plant import MeterModel
from simulators.profiles import (
    MACHINE_DUTY,
    NIGHT_SHARE,
    SCHEDULES,
    Schedule,
    clear_sky,
    cooling,
    working_share,
)
from simulators.run import check_range, faults_path_for, generate, prepare, simulate
from supplymeter.config import Config, FaultSettings, SimulatorSettings
from supplymeter.errors import BadReading
from supplymeter.records import Reading, datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")
OCT_1 = datetime_to_ns(datetime(2026, 10, 1, tzinfo=TPE))
DAY_NS = 24 * HOUR_NS
FAR_FUTURE = 4_000_000_000 * 10**9


def settings(**faults: object) -> SimulatorSettings:
    return SimulatorSettings(faults=FaultSettings(**faults))


def decode(config: Config, send: Send) -> list[Reading]:
    """The readings of one published message (as the collector parses them)."""
    _, _, supplier, site, meter, _ = send.topic.split("/")
    ref = config.registry.meter(supplier, site, meter)
    assert ref is not None
    readings, rejected = parse_readings(
        send.payload, ref, FAR_FUTURE, Limits(max_past_ns=FAR_FUTURE)
    )
    assert not rejected
    return readings


def run_actions(config: Config, days: float, seed: int = 1, batch: int = 1, **faults: object):
    run = prepare(config, OCT_1, OCT_1 + round(days * DAY_NS), seed, batch, settings(**faults))
    return run, list(generate(run))


def readings_by_meter(config: Config, actions) -> dict[tuple[str, str, str], list[Reading]]:
    out: dict[tuple[str, str, str], list[Reading]] = defaultdict(list)
    for _, action in actions:
        if isinstance(action, Send) and action.readings:
            for r in decode(config, action):
                out[(r.supplier, r.site, r.meter)].append(r)
    return out


# --- ground truth ---------------------------------------------------------------------------


def test_ledger_hours_equal_register_differences(example_config: Config) -> None:
    """Every meter, every hour: ledger = register difference × multiplier, across rollovers
    (heat-c main wraps at 100,000; quench-water at 10,000) and for the grid's export."""
    run, actions = run_actions(example_config, days=3)
    by_meter = readings_by_meter(example_config, actions)
    metered, exported = run.ledger.metered(), run.ledger.exported()
    wrapped = set()
    for key, readings in by_meter.items():
        ref = example_config.registry.meter(*key)
        assert ref is not None
        field = ref.register_field
        at = {r.ts_ns: getattr(r, field) for r in readings}
        export_at = {r.ts_ns: r.energy_export_kwh for r in readings}
        rollover = Decimal(str(ref.meter.rollover)) if ref.meter.rollover else None
        hours = metered[key]
        assert len(hours) == 72
        for hour, amount in hours.items():
            delta = Decimal(str(at[hour + HOUR_NS])) - Decimal(str(at[hour]))
            if delta < 0:
                assert rollover is not None
                delta += rollover
                wrapped.add(key)
            assert amount == delta * Decimal(str(ref.meter.multiplier)), (key, hour)
            if ref.meter.role == "grid":
                sent = Decimal(str(export_at[hour + HOUR_NS])) - Decimal(str(export_at[hour]))
                assert exported[key][hour] == sent * Decimal(str(ref.meter.multiplier))
    assert ("heat-c", "kaohsiung-1", "main") in wrapped
    assert ("heat-c", "kaohsiung-1", "quench-water") in wrapped


def test_grid_meter_imports_load_minus_pv_self_consumption(example_config: Config) -> None:
    """cnc-d: import − export = electricity circuits − PV generation, hour by hour, to the
    rounding of three meters' registers (0.001 kWh per tick each)."""
    run, _ = run_actions(example_config, days=7)
    true = run.ledger.consumption()
    site = ("cnc-d", "tainan-1")
    grid, export = true[(*site, "grid")], run.ledger.exported()[(*site, "grid")]
    pv = true[(*site, "rooftop-pv")]
    load = {h: true[(*site, "main")][h] + true[(*site, "compressors")][h] for h in grid}
    ticks = 3600 // 300
    for hour in grid:
        net = grid[hour] - export[hour]
        assert abs(net - (load[hour] - pv[hour])) <= Decimal("0.0015") * ticks * 4
    for hour in grid:  # whenever the panels outproduce the circuits, the surplus is exported
        if pv[hour] > load[hour] + Decimal("0.1"):
            assert export[hour] > 0
    assert sum(pv.values()) > Decimal("0.1") * sum(load.values())


def test_same_seed_same_bytes_other_seed_other_bytes(
    example_config: Config, tmp_path: Path
) -> None:
    faults = dict(
        offline_per_day=1, duplicate_rate=0.02, out_of_order_rate=0.02, malformed_rate=0.01,
        clock_skew_rate=0.5, spike_per_week=3, stuck_per_month=3, replacement_per_month=2,
    )  # fmt: skip
    first_run, first = run_actions(example_config, 2, seed=5, **faults)
    second_run, second = run_actions(example_config, 2, seed=5, **faults)
    _, other = run_actions(example_config, 2, seed=6, **faults)
    assert first == second and first != other
    paths = []
    for i, run in enumerate((first_run, second_run)):
        run.ledger.write_csv(tmp_path / f"{i}.csv")
        run.faults.write_jsonl(tmp_path / f"{i}.jsonl")
        paths.append((tmp_path / f"{i}.csv").read_bytes() + (tmp_path / f"{i}.jsonl").read_bytes())
    assert paths[0] == paths[1]
    assert len(first_run.faults.events) > 10


# --- plants ---------------------------------------------------------------------------------


def test_shift_schedules_weekends_and_taiwan_holidays() -> None:
    def share(kind: str, *args: int) -> float:
        return working_share(SCHEDULES[kind], datetime(*args, tzinfo=TPE))

    assert share("forging", 2026, 10, 13, 10) == 1 and share("forging", 2026, 10, 13, 3) == 0
    assert share("springs", 2026, 10, 13, 3) == NIGHT_SHARE  # three shifts, a lighter night
    assert share("machining", 2026, 10, 11, 10) == 0  # Sunday
    assert share("forging", 2026, 10, 9, 10) == 0  # National Day (observed), a Friday
    assert share("heat_treatment", 2026, 10, 11, 10) == 1  # furnaces run on Sundays
    assert share("forging", 2026, 10, 10 + 7, 10) == 1 and share("forging", 2026, 10, 17, 18) == 0
    assert share("other", 2026, 10, 13, 12) < share("other", 2026, 10, 13, 11)  # lunch
    custom = Schedule(shifts=1, saturday="off", sunday=False, holidays=True)
    assert working_share(custom, datetime(2026, 10, 9, 10, tzinfo=TPE)) == 1


def test_sun_and_summer() -> None:
    june, december = 172, 355
    assert clear_sky(0.0, june) == 0 and clear_sky(20.0, june) == 0
    assert clear_sky(12.0, june) > clear_sky(12.0, december) > 0.5
    assert clear_sky(12.0, june) > clear_sky(9.0, june) > 0
    assert cooling(14.0, 7) == pytest.approx(1.0)
    assert cooling(3.0, 1) == 0 and cooling(14.0, 7) > cooling(14.0, 10) > cooling(14.0, 12)


def test_the_four_kinds_look_different(example_config: Config) -> None:
    """Night/day and Sunday/weekday load ratios separate the kinds (what a dashboard shows)."""
    run, _ = run_actions(example_config, days=14)
    true = run.ledger.consumption()

    def ratio(supplier: str, test: Callable[[datetime], bool]) -> float:
        picked, rest = Decimal(0), Decimal(0)
        for key, hours in true.items():
            meter = example_config.registry.meter(*key).meter
            if key[0] != supplier or meter.role != "consumption" or meter.carrier != "electricity":
                continue
            for hour, amount in hours.items():
                local = datetime.fromtimestamp(hour / 1e9, TPE)
                if local.weekday() >= 5 or local.day in (9, 10):
                    continue
                if test(local):
                    picked += amount
                else:
                    rest += amount
        return float(picked / rest)

    night = {s: ratio(s, lambda t: t.hour < 6) for s in ("forge-a", "spring-b", "heat-c", "cnc-d")}
    # Three-shift plants run a (lighter) night shift; two-shift ones drop to their base load.
    three, two = ("spring-b", "heat-c"), ("forge-a", "cnc-d")
    assert min(night[s] for s in three) > 1.25 * max(night[s] for s in two)


def test_equipment_cycles_show_in_the_power_readings(example_config: Config) -> None:
    """Press strokes are spiky, the compressor cycles, a furnace swings slowly."""
    config = example_config
    _run, actions = run_actions(config, days=2)
    by_meter = readings_by_meter(config, actions)

    def cv(key: tuple[str, str, str], hour_from: int, hour_to: int) -> float:
        powers = [
            r.power_kw for r in by_meter[key]
            if r.power_kw is not None
            and hour_from <= datetime.fromtimestamp(r.ts_ns / 1e9, TPE).hour < hour_to
            and datetime.fromtimestamp(r.ts_ns / 1e9, TPE).day == 1
        ]  # fmt: skip
        mean = sum(powers) / len(powers)
        return math.sqrt(sum((p - mean) ** 2 for p in powers) / len(powers)) / mean

    steady = cv(("spring-b", "changhua-1", "main"), 9, 15)  # the day shift, no cycle
    furnace = cv(("spring-b", "changhua-1", "temper-furnace"), 9, 15)
    press = cv(("forge-a", "taichung-1", "press-line"), 9, 15)
    induction = cv(("forge-a", "taichung-1", "induction-heaters"), 9, 15)
    assert furnace > 2 * steady  # heat-up at 2× vs unload at 0.45× of the production load
    assert press > 1.5 * induction  # strokes vs a 12-min cycle that 15-min readings smooth


def test_a_shop_of_large_machines_keeps_its_mean_and_moves_in_steps(
    example_config: Config,
) -> None:
    """The forge's site meter (``equipment = "machines"``): three machines running in turns
    average the configured load over time, while a quarter-hour holds anything from no machine
    to all of them — the 15-min steps of heavy industry, not a smooth shift load."""
    ref = example_config.registry.meter("forge-a", "taichung-1", "main")
    assert ref is not None and ref.meter.simulation.equipment == "machines"
    model = MeterModel(ref, seed=3)
    quarter = 900.0
    levels = [model.equipment_level(OCT_1 + k * 900 * 10**9, quarter) for k in range(96 * 120)]
    assert sum(levels) / len(levels) == pytest.approx(1.0, abs=0.05)
    n, duty = ref.meter.simulation.machines, MACHINE_DUTY
    assert max(levels) <= 1 / duty + 1e-9  # every machine running
    idle = sum(1 for v in levels if v < 1e-9) / len(levels)
    assert 0.3 * (1 - duty) ** n < idle < 3 * (1 - duty) ** n  # none running, as often as chance
    steps = sorted(abs(b - a) for a, b in itertools.pairwise(levels))
    assert steps[int(0.9 * len(steps))] > 0.5  # steel plant: p90 0.79 of the mean

    smooth = MeterModel(example_config.registry.meter("spring-b", "changhua-1", "main"), seed=3)
    assert {smooth.equipment_level(OCT_1 + k * 900 * 10**9, quarter) for k in range(96)} == {1.0}


def test_production_counter_counts_while_working(example_config: Config) -> None:
    _run, actions = run_actions(example_config, days=1)
    readings = readings_by_meter(example_config, actions)[("cnc-d", "tainan-1", "main")]
    counts = [r.production_units for r in readings]
    assert counts == sorted(counts) and counts[0] == 0
    assert counts[-1] == pytest.approx(150 * 16 * 0.99, rel=0.05)  # two shifts, 150/h


# --- faults ---------------------------------------------------------------------------------


def poisson_ok(observed: int, expected: float) -> bool:
    """Within 4 standard deviations of a Poisson count (a false failure ~1 in 15,000)."""
    return abs(observed - expected) <= 4 * math.sqrt(expected) + 1


def test_each_fault_appears_at_its_rate_and_is_labelled(example_config: Config) -> None:
    days = 28
    faults = dict(
        offline_per_day=0.5, offline_minutes=(30.0, 30.0), duplicate_rate=0.01,
        out_of_order_rate=0.01, malformed_rate=0.005, clock_skew_rate=0.5,
        replacement_per_month=1.0, stuck_per_month=1.0, stuck_hours=(2.0, 2.0),
        spike_per_week=2.0, spike_minutes=(30.0, 30.0), step_per_month=1.0,
        step_hours=(24.0, 24.0), rollover_rate=1.0,
    )  # fmt: skip
    run, actions = run_actions(example_config, days, seed=3, **faults)
    log: FaultLog = run.faults
    count = Counter(e.type for _, e in log.events)
    refs = example_config.registry.meters()
    consumption = [r for r in refs if r.meter.role == "consumption"]
    gateways = len({r.key[:2] for r in refs})
    span_s = days * 86_400

    def expected(per_s: float, length_s: float, entities: int) -> float:
        # windows never overlap: the next starts after an exponential wait from the last end
        return entities * span_s / (1 / per_s + length_s)

    assert poisson_ok(count["offline"], expected(0.5 / 86_400, 1800, gateways))
    assert poisson_ok(count["spike"], expected(2 / (7 * 86_400), 1800, len(consumption)))
    assert poisson_ok(count["step"], expected(1 / (30 * 86_400), 86_400, len(consumption)))
    assert poisson_ok(count["stuck"], expected(1 / (30 * 86_400), 7200, len(refs)))
    assert poisson_ok(count["replacement"], len(refs) * days / 30)
    sends = [a for _, a in actions if isinstance(a, Send) and a.readings]
    live = len(sends) - sum(e.details["replayed"] > 0 for e in log.of_type("offline"))
    assert poisson_ok(count["duplicate"], 0.01 * live)
    assert poisson_ok(count["malformed"], 0.005 * live)
    assert 0 < count["clock_skew"] <= gateways
    # Rollovers: every meter with a rollover wrapped at least once, and each wrap is logged.
    assert {e.meter for e in log.of_type("rollover")} >= {
        r.meter.id for r in refs if r.meter.rollover
    }

    # Each label matches what the stream shows.
    payloads = Counter((a.topic, a.payload) for _, a in actions if isinstance(a, Send))
    assert sum(n - 1 for n in payloads.values() if n > 1) >= count["duplicate"]
    codes: Counter[str] = Counter()
    for _, a in actions:
        if isinstance(a, Send) and not a.readings and "/readings" in a.topic:
            _, _, sup, site, meter, _ = a.topic.split("/")
            ref = example_config.registry.meter(sup, site, meter)
            try:
                _, rejected = parse_readings(
                    a.payload, ref, FAR_FUTURE, Limits(max_past_ns=FAR_FUTURE)
                )
                codes[rejected[0].code] += 1  # one bad reading inside a valid payload
            except BadReading as exc:
                codes[exc.code] += 1
    logged = Counter(e.details["reason"] for e in log.of_type("malformed"))
    assert codes == logged and len(logged) >= 4
    assert sum(logged.values()) == count["malformed"]


def test_stuck_meter_is_flat_while_power_is_drawn(example_config: Config) -> None:
    run, actions = run_actions(example_config, 14, seed=4, stuck_per_month=4.0,
                               stuck_hours=(3.0, 3.0))  # fmt: skip
    by_meter = readings_by_meter(example_config, actions)
    checked = 0
    for event in run.faults.of_type("stuck"):
        key = (event.supplier, event.site, event.meter)
        ref = example_config.registry.meter(*key)
        if ref.meter.role == "consumption" and ref.meter.carrier == "electricity":
            start = datetime.fromisoformat(event.start).timestamp() * 1e9
            end = datetime.fromisoformat(event.end).timestamp() * 1e9
            inside = [r for r in by_meter[key] if start + 3600e9 <= r.ts_ns <= end]
            if len(inside) >= 2:
                assert len({r.energy_kwh for r in inside}) == 1
                assert all(r.power_kw and r.power_kw > 0 for r in inside)
                checked += 1
    assert checked >= 3
    true, metered = run.ledger.consumption(), run.ledger.metered()
    assert sum(sum(h.values()) for h in true.values()) > sum(
        sum(h.values()) for h in metered.values()
    )


def test_replaced_meter_restarts_near_zero(example_config: Config) -> None:
    run, actions = run_actions(example_config, 7, seed=2, replacement_per_month=3.0)
    by_meter = readings_by_meter(example_config, actions)
    events = run.faults.of_type("replacement")
    assert events
    for event in events:
        key = (event.supplier, event.site, event.meter)
        field = example_config.registry.meter(*key).register_field
        ts = datetime.fromisoformat(event.start).timestamp() * 1e9
        after = [getattr(r, field) for r in by_meter[key] if r.ts_ns > ts]
        if after:
            new, old = event.details["new_register"], event.details["old_register"]
            assert 0 <= new < 5 and new <= after[0] < old  # the next reading counts from new


def test_out_of_order_and_clock_skew_show_in_the_timestamps(example_config: Config) -> None:
    run, actions = run_actions(example_config, 3, seed=7, out_of_order_rate=0.05,
                               clock_skew_rate=1.0, clock_skew_s=60)  # fmt: skip
    skew = {(e.supplier, e.site): e.details["skew_s"] for e in run.faults.of_type("clock_skew")}
    assert len(skew) == len({r.key[:2] for r in example_config.registry.meters()})
    by_meter = readings_by_meter(example_config, actions)
    reversed_steps = 0
    for key, readings in by_meter.items():
        offsets = {(r.ts_ns - OCT_1) % (60 * 10**9) for r in readings}
        assert offsets == {round(skew[key[:2]] * 10**9) % (60 * 10**9)}
        ts = [r.ts_ns for r in readings]
        reversed_steps += sum(b < a for a, b in itertools.pairwise(ts))
    assert reversed_steps == len(run.faults.of_type("out_of_order"))


def test_store_and_forward_replays_the_buffer_oldest_first(example_config: Config) -> None:
    run, actions = run_actions(example_config, 3, seed=9, offline_per_day=1.0)
    outages = run.faults.of_type("offline")
    assert outages and all(not e.details["dropped"] for e in outages)
    assert sum(e.details["replayed"] for e in outages) > 0
    # Every reading the meters produced is sent exactly once.
    produced = readings_by_meter(example_config, run_actions(example_config, 3, seed=9)[1])
    assert readings_by_meter(example_config, actions) == produced
    # A drop, an offline status, silence, a reconnect, online, then the backlog oldest first.
    site_actions = defaultdict(list)
    for key, action in actions:
        site_actions[key].append(action)
    for event in outages:
        seq = site_actions[(event.supplier, event.site)]
        down = next(i for i, a in enumerate(seq) if isinstance(a, Link) and not a.up)
        up = next(i for i, a in enumerate(seq) if isinstance(a, Link) and a.up)
        assert json.loads(seq[down - 1].payload)["state"] == "offline"
        assert up == down + 1 and json.loads(seq[up + 1].payload)["state"] == "online"
        replayed: list[Reading] = []
        for a in seq[up + 2 :]:
            if len(replayed) >= event.details["replayed"]:
                break
            replayed += decode(example_config, a)
        assert len(replayed) == event.details["replayed"]  # 0 if no reading fell due
        end_ns = datetime.fromisoformat(event.end).timestamp() * 1e9
        assert all(r.ts_ns < end_ns for r in replayed)
        for meter in {r.meter for r in replayed}:
            ts = [r.ts_ns for r in replayed if r.meter == meter]
            assert ts == sorted(ts)  # oldest first
        site_actions[(event.supplier, event.site)] = seq[up + 1 :]


def test_full_buffer_drops_the_oldest_and_says_so(example_config: Config) -> None:
    config = example_config
    run = prepare(config, OCT_1, OCT_1 + DAY_NS, 1, 1, SimulatorSettings(
        buffer_readings=10, faults=FaultSettings(offline_per_day=2, offline_minutes=(120, 120)),
    ))  # fmt: skip
    actions = list(generate(run))
    produced = readings_by_meter(config, run_actions(config, 1)[1])
    got = readings_by_meter(config, actions)
    missing = Counter()
    for key, readings in produced.items():
        missing[key] += len(readings) - len(got.get(key, []))
        assert {r.ts_ns for r in got.get(key, [])} <= {r.ts_ns for r in readings}
    logged = Counter()
    for e in run.faults.of_type("offline"):
        assert e.details["replayed"] <= 10
        for meter, n in e.details["dropped"].items():
            logged[(e.supplier, e.site, meter)] += n
    assert sum(missing.values()) > 0 and +missing == +logged


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


# --- over MQTT ------------------------------------------------------------------------------


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
    assert result.messages == result.readings == 25 + 9 + 3  # every 5 min, 15 min, hourly


def test_outage_over_mqtt_replays_everything_and_writes_the_ground_truth(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """A real broker: the gateway really disconnects and reconnects; a subscriber sees every
    reading once after the replay, and the ledger and fault list are written."""
    import paho.mqtt.client as paho

    from collector.mqtt import make_client
    from tests.helpers import wait_until

    config = make_config()
    got: list[bytes] = []
    statuses: list[str] = []
    sub = make_client(config.mqtt, config.secrets, client_id="test-sub")
    sub.on_message = lambda c, u, m: (statuses if m.topic.endswith("/status") else got).append(
        m.payload
    )
    sub.connect(config.mqtt.host, config.mqtt.port)
    sub.subscribe("energy/v1/#", qos=1)
    sub.loop_start()
    try:
        start = datetime(2026, 10, 1, tzinfo=TPE)
        sim = simulate(
            config, start=start, end=start + timedelta(days=2), seed=1,
            ledger_path=tmp_path / "ledger.csv",
            settings=settings(offline_per_day=2.0, offline_minutes=(60.0, 120.0)),
        )  # fmt: skip
        assert wait_until(lambda: len(got) >= sim.messages, 30)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert isinstance(sub, paho.Client)
    readings = [json.loads(p) for p in got]
    count = sum(len(r["readings"]) if "readings" in r else 1 for r in readings)
    assert count == sim.readings == 2 * 24 * (12 + 4 + 1) + 3  # 5-min, 15-min, hourly (+ends)
    faults = read_faults(faults_path_for(tmp_path / "ledger.csv"))
    offline = [f for f in faults if f["type"] == "offline"]
    assert offline and sum(f["details"]["replayed"] for f in offline) > 0
    states = [json.loads(p)["state"] for p in statuses]
    assert states.count("offline") >= len(offline) and states.count("online") >= len(offline)
    assert read_ledger(tmp_path / "ledger.csv") == sim.ledger.metered()
