"""Spike, regime and level-shift detection on a plant-like load (no servers needed)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.alerts import IncidentBook
from processing.detect import MIN_NS, Detector, Track, day_type, how_often
from supplymeter.config import AlertSettings, Config, load_config
from supplymeter.records import datetime_to_ns
from tests.conftest import write_config

TPE = ZoneInfo("Asia/Taipei")
HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS
WEEK_NS = 7 * DAY_NS
REGISTRY = """
[[suppliers]]
id = "forge-a"
kind = "forging"
allocation = { method = "economic", share = 0.2 }
  [[suppliers.sites]]
  id = "taichung-1"
  gateway = "gw1"
    [[suppliers.sites.meters]]
    id = "press"
    carrier = "electricity"
    interval_s = 300
"""
PRESS = ("forge-a", "taichung-1", "press")
MONDAY = datetime_to_ns(datetime(2026, 10, 26, tzinfo=TPE))
START = MONDAY - 5 * WEEK_NS


def wobble(ts: int) -> float:
    """A deterministic ±8% per quarter hour."""
    return 1 + 0.08 * np.sin(ts // (15 * MIN_NS) * 2.399)


def plant_kw(ts: int) -> float:
    """Workdays 08:00–17:00 at 400 kW, 100 kW otherwise; weekends idle. [kW]"""
    local = datetime.fromtimestamp(ts / 1e9, TPE)
    working = local.weekday() < 5 and 8 <= local.hour < 17
    return (400.0 if working else 100.0) * wobble(ts)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path / "cfg", REGISTRY), {})


def run(
    config: Config, kw: Callable[[int], float], until: int, **settings: object
) -> tuple[list, Detector]:
    """Feed 5-min readings of ``kw`` from START and evaluate every 5 min over the last day;
    the incidents opened (through the real incident book)."""
    d = Detector(config.registry, AlertSettings(**settings))
    book = IncidentBook(Path("/nonexistent/incidents.json"))
    register, opened = 1000.0, []
    judge_from = until - 2 * DAY_NS
    for ts in range(START, until + 1, 5 * MIN_NS):
        d.add_reading(PRESS, ts, register, None)
        register += kw(ts) * 5 / 60
        if ts >= judge_from:
            for event in book.update(d.evaluate(ts + 10**9).conditions, ts + 10**9, 0, 60, 3):
                if event.kind == "open":
                    opened += event.incidents
        if ts % DAY_NS == 0:
            d.prune(ts)
    return opened, d


def test_a_spike_that_came_and_went_is_reported_once_with_its_excess_and_reason(
    config: Config,
) -> None:  # fmt: skip
    t0 = MONDAY + 10 * HOUR_NS  # Monday 10:00–10:30 at double load
    kw = lambda ts: plant_kw(ts) * (2.0 if t0 <= ts < t0 + 30 * MIN_NS else 1.0)  # noqa: E731
    opened, _ = run(config, kw, MONDAY + 14 * HOUR_NS)
    [spike] = opened
    assert spike.type == "spike" and spike.over
    assert (spike.window_start_ns, spike.window_end_ns) == (t0, t0 + 30 * MIN_NS)
    usual = sum(plant_kw(t) * 5 / 60 for t in range(t0, t0 + 30 * MIN_NS, 5 * MIN_NS))
    assert spike.excess == pytest.approx(usual, rel=0.1)  # ~200 kWh above ~200 kWh
    assert "+10" in spike.detail and "after the fact" not in spike.detail
    assert "most similar past days" in spike.reason and "came back down" in spike.reason
    assert "any of the last" in spike.reason  # never reached at this time before


def test_a_burst_on_an_idle_workday_is_not_excused_by_working_days(config: Config) -> None:
    """Tuesday is a workday by the calendar, but the plant stands idle (a bridge day): a
    300 kW burst at 11:00 is the working days' routine, not this day's — it is told."""
    bridge = MONDAY + DAY_NS
    t0 = bridge + 11 * HOUR_NS

    def kw(ts: int) -> float:
        if bridge <= ts < bridge + DAY_NS:
            return (300.0 if t0 <= ts < t0 + 45 * MIN_NS else 100.0) * wobble(ts)
        return plant_kw(ts)

    opened, _ = run(config, kw, bridge + 14 * HOUR_NS)
    assert [(i.type, i.window_start_ns, i.window_end_ns) for i in opened] == [
        ("spike", t0, t0 + 45 * MIN_NS)
    ]


def test_a_small_rise_is_not_a_spike(config: Config) -> None:
    t0 = MONDAY + 10 * HOUR_NS
    kw = lambda ts: plant_kw(ts) * (1.15 if t0 <= ts < t0 + 30 * MIN_NS else 1.0)  # noqa: E731
    opened, _ = run(config, kw, MONDAY + 14 * HOUR_NS)
    assert opened == []


def test_a_shift_that_starts_early_or_runs_long_is_not_a_spike(config: Config) -> None:
    """Production from 07:15 instead of 08:00 and until 18:00 instead of 17:00."""

    def kw(ts: int) -> float:
        if MONDAY + 7 * HOUR_NS + 15 * MIN_NS <= ts < MONDAY + 18 * HOUR_NS:
            return 400.0 * wobble(ts)
        return plant_kw(ts)

    opened, _ = run(config, kw, MONDAY + 22 * HOUR_NS)
    assert [i.type for i in opened if i.type == "spike"] == []


def test_sunday_production_is_compared_with_producing_days_not_reported_as_spikes(
    config: Config,
) -> None:  # fmt: skip
    sunday = MONDAY - DAY_NS

    def kw(ts: int) -> float:
        if sunday + 8 * HOUR_NS <= ts < sunday + 17 * HOUR_NS:
            return 400.0 * wobble(ts)
        return plant_kw(ts)

    opened, _ = run(config, kw, MONDAY + 2 * HOUR_NS)
    assert [i for i in opened if i.type == "spike"] == []


def shop_kw(ts: int, all_at: int = 16) -> float:
    """A shop of three 200-kW machines on workdays 08:00–17:00: none, one or two running in
    turns each quarter-hour, all three for half an hour from ``all_at`` o'clock; 50 kW
    otherwise. [kW]"""
    local = datetime.fromtimestamp(ts / 1e9, TPE)
    if not (local.weekday() < 5 and 8 <= local.hour < 17):
        return 50.0
    if local.hour == all_at and local.minute < 30:
        return 650.0
    return 50.0 + 200.0 * (ts // (15 * MIN_NS) % 3)


def test_a_shop_of_large_machines_is_told_only_of_bursts_beyond_its_capacity(
    config: Config,
) -> None:  # fmt: skip
    """Its machines' coincidences (all three at once, at times no comparable day had them)
    are its routine; a burst beyond anything it drew near that time is news, and says why."""
    tuesday = MONDAY + DAY_NS  # a workday (that Monday is a public holiday in Taiwan)
    until = tuesday + 20 * HOUR_NS
    t0 = tuesday + 14 * HOUR_NS  # all three at 14:00 on Tuesday, at 16:00 on the days before

    def early(ts: int) -> float:
        return shop_kw(ts, 14 if tuesday <= ts < tuesday + DAY_NS else 16)

    as_light, detector = run(config, early, until, shop_swing=100.0)  # judged as smooth
    assert detector.swing(detector.tracks[PRESS], until // (15 * MIN_NS)) > 0.45
    [wolf] = [i for i in as_light if i.type == "spike"]  # never within 1 h of 14:00 before
    assert wolf.window_start_ns == t0
    opened, _ = run(config, early, until)
    assert [i.type for i in opened if i.type == "spike"] == []

    # 850 kW for 30 min: every machine and a fourth one's worth more.
    burst = lambda ts: 850.0 if t0 <= ts < t0 + 30 * MIN_NS else shop_kw(ts)  # noqa: E731
    opened, _ = run(config, burst, until)
    [spike] = [i for i in opened if i.type == "spike"]
    assert (spike.window_start_ns, spike.window_end_ns) == (t0, t0 + 30 * MIN_NS)
    assert "shop of large machines" in spike.reason and "within 3 h" in spike.reason
    assert spike.reason.endswith("workdays.")


def test_a_shop_at_rest_is_not_excused_by_its_machines(config: Config) -> None:
    """One machine left running for 45 min at 19:00, two hours after the shop stopped: its
    machines drew that much within 3 h of 19:00 every workday, but at work, not at rest."""
    tuesday = MONDAY + DAY_NS
    t0 = tuesday + 19 * HOUR_NS
    left_on = lambda ts: 250.0 if t0 <= ts < t0 + 45 * MIN_NS else shop_kw(ts)  # noqa: E731
    opened, _ = run(config, left_on, tuesday + 22 * HOUR_NS)
    [spike] = [i for i in opened if i.type == "spike"]
    assert (spike.window_start_ns, spike.window_end_ns) == (t0, t0 + 45 * MIN_NS)
    assert "shop of large machines" not in spike.reason


def test_a_shop_left_holding_after_its_shift_is_a_regime(config: Config) -> None:
    """After 17:00 the shop stays at a steady 150 kW (a furnace left holding) instead of
    50 kW: its machines drew more within 3 h every workday, but in their bursts, at work. The
    first hour is a shift that may have run long; the regime is told from 18:00."""
    t0 = MONDAY + DAY_NS + 17 * HOUR_NS
    held = lambda ts: 150.0 if t0 <= ts < t0 + 5 * HOUR_NS else shop_kw(ts)  # noqa: E731
    opened, _ = run(config, held, t0 + 5 * HOUR_NS)
    assert [(i.type, i.window_start_ns) for i in opened] == [("regime", t0 + HOUR_NS)]
    assert "since Tue 18:00" in opened[0].detail


def idle_nights_kw(ts: int) -> float:
    """Workdays 08:00–17:00 at 400 kW; 12 kW otherwise, ±8 % — a steel plant's idle night,
    whose load is small beside the 8 kW spike floor. [kW]"""
    local = datetime.fromtimestamp(ts / 1e9, TPE)
    working = local.weekday() < 5 and 8 <= local.hour < 17
    return 400.0 * wobble(ts) if working else 12.0 * wobble(ts)


def test_an_idle_night_held_higher_for_hours_is_a_regime(config: Config) -> None:
    """Tuesday night the idle 12 kW is held at 20.5 kW for six hours (a furnace left holding):
    no quarter-hour is a spike's 8 kW above the comparable nights, but six hours at 1.7 × the
    usual is told, as one regime, with its energy over 2 h as the evidence."""
    tuesday = MONDAY + DAY_NS
    t0 = tuesday + 20 * HOUR_NS
    held = lambda ts: 20.5 if t0 <= ts < t0 + 6 * HOUR_NS else idle_nights_kw(ts)  # noqa: E731
    opened, _ = run(config, held, t0 + 7 * HOUR_NS)
    [regime] = opened
    assert regime.type == "regime"
    assert t0 <= regime.window_start_ns <= t0 + 15 * MIN_NS
    assert "the most the 7 past days most like today" in regime.reason
    assert "over 2 h" in regime.reason
    # The same night untouched, and a rise of only a third, are not news.
    assert run(config, idle_nights_kw, t0 + 7 * HOUR_NS)[0] == []
    third = lambda ts: 16.0 if t0 <= ts < t0 + 6 * HOUR_NS else idle_nights_kw(ts)  # noqa: E731
    assert run(config, third, t0 + 7 * HOUR_NS)[0] == []


def test_a_pattern_that_came_the_day_before_is_not_told_again(config: Config) -> None:
    """From Tuesday the plant runs a night shift of cleaning at twice its night load, 22:00–
    02:00: told the first night; the second night it is what the plant did yesterday."""
    tuesday = MONDAY + DAY_NS

    def cleaning(ts: int) -> float:
        hour = (ts - tuesday) % DAY_NS // HOUR_NS
        night = ts >= tuesday + 22 * HOUR_NS and (hour >= 22 or hour < 2)
        return plant_kw(ts) * (2.0 if night else 1.0)

    opened, _ = run(config, cleaning, tuesday + 2 * DAY_NS + 3 * HOUR_NS)
    assert [(i.type, i.window_start_ns) for i in opened] == [("regime", tuesday + 22 * HOUR_NS)]


def test_an_hours_long_excursion_is_one_regime_incident(config: Config) -> None:
    tuesday = MONDAY + DAY_NS  # Monday 26 Oct 2026 is a holiday in Taiwan
    t0 = tuesday + 9 * HOUR_NS
    kw = lambda ts: plant_kw(ts) * (2.0 if t0 <= ts < t0 + 4 * HOUR_NS else 1.0)  # noqa: E731
    opened, _ = run(config, kw, tuesday + 16 * HOUR_NS)
    assert [i.type for i in opened] == ["regime"]
    assert opened[0].window_start_ns == t0
    assert "so far" in opened[0].detail and opened[0].excess > 0


def test_a_regime_is_compared_with_the_days_like_today_before_it_began(config: Config) -> None:
    """Production varies from day to day (320–480 kW). A regime at 1.5 × today's 400 kW is
    above every day; judged on days matched to its own hours it would soon be compared with
    the strongest days and fade below the envelope before 2 h."""
    tuesday = MONDAY + DAY_NS  # Monday 26 Oct 2026 is a holiday in Taiwan
    t0 = tuesday + 10 * HOUR_NS

    def day_level(ts: int) -> float:
        day = ts // DAY_NS
        return 1.0 if day == tuesday // DAY_NS else 0.8 + 0.4 * ((day * 0.618) % 1)

    def kw(ts: int) -> float:
        base = plant_kw(ts)
        if base < 200:
            return base
        return base * (1.5 if t0 <= ts < t0 + 3 * HOUR_NS else day_level(ts))

    opened, _ = run(config, kw, tuesday + 16 * HOUR_NS)
    [regime] = [i for i in opened if i.type == "regime"]
    assert regime.window_start_ns == t0
    assert [i.type for i in opened] == ["regime"]
    hours = (regime.window_end_ns - regime.window_start_ns) / HOUR_NS
    assert regime.excess / hours == pytest.approx(200, rel=0.35), regime.detail  # kW above
    assert "most like today before it began" in regime.reason


def test_a_lasting_base_load_rise_is_one_notice(config: Config) -> None:
    """Base load up 50% from Thursday on: one notice once it has lasted a week, with its
    evidence, then the new level is normal."""
    change = MONDAY - 4 * DAY_NS
    kw = lambda ts: plant_kw(ts) + (50.0 if ts >= change else 0.0)  # noqa: E731
    d = Detector(config.registry, AlertSettings())
    book = IncidentBook(Path("/nonexistent/incidents.json"))
    register, opened = 1000.0, []
    for ts in range(START, MONDAY + 8 * DAY_NS, 5 * MIN_NS):
        d.add_reading(PRESS, ts, register, None)
        register += kw(ts) * 5 / 60
        if ts >= change - DAY_NS and ts % (15 * MIN_NS) == 0:
            for event in book.update(d.evaluate(ts + 10**9).conditions, ts + 10**9, 0, 60, 3):
                opened += [i for i in event.incidents if event.kind == "open"]
    shifts = [i for i in opened if i.type == "level_shift"]
    assert len(shifts) == 1
    assert "base load up 54% since Thu 22 Oct (93.0 → 143.0 kW)" in shifts[0].detail
    assert "new normal" in shifts[0].reason and "5 of 5 days since then" in shifts[0].reason
    assert [i for i in opened if i.type == "spike"] == []


def test_a_spike_in_a_late_replay_says_so_an_on_time_one_does_not(config: Config) -> None:
    """The gateway is offline 09:30–11:00 and the press doubles 10:00–10:30; the readings
    arrive with the replay and the spike is reported once, dated when it happened."""
    t0 = MONDAY + 10 * HOUR_NS
    kw = lambda ts: plant_kw(ts) * (2.0 if t0 <= ts < t0 + 30 * MIN_NS else 1.0)  # noqa: E731
    d = Detector(config.registry, AlertSettings())
    book = IncidentBook(Path("/nonexistent/incidents.json"))
    outage0, outage1 = t0 - 30 * MIN_NS, t0 + 60 * MIN_NS
    readings = []
    register = 1000.0
    for ts in range(START, MONDAY + 14 * HOUR_NS, 5 * MIN_NS):
        readings.append((ts, register))
        register += kw(ts) * 5 / 60
    opened = []
    for ts, reg in readings:
        if ts == outage1:
            d.set_gateway(*PRESS[:2], "online", ts)
            for t, r in readings:
                if outage0 < t < outage1:
                    d.add_reading(PRESS, t, r, None)
        if not outage0 < ts < outage1:  # buffered at the gateway meanwhile; the job runs on
            d.add_reading(PRESS, ts, reg, None)
        if ts == outage0:
            d.set_gateway(*PRESS[:2], "offline", ts)
        if ts >= MONDAY:
            for event in book.update(d.evaluate(ts + 10**9).conditions, ts + 10**9, 0, 60, 3):
                opened += [i for i in event.incidents if event.kind == "open"]
    [spike] = [i for i in opened if i.type == "spike"]
    assert (spike.window_start_ns, spike.window_end_ns) == (t0, t0 + 30 * MIN_NS)
    assert "judged after the fact" in spike.detail


def test_too_little_history_is_said_not_guessed(config: Config) -> None:
    d = Detector(config.registry, AlertSettings(min_history_weeks=2))
    register = 1000.0
    for ts in range(MONDAY - 3 * DAY_NS, MONDAY + HOUR_NS + 1, 5 * MIN_NS):
        d.add_reading(PRESS, ts, register, None)
        register += plant_kw(ts) * 5 / 60
    evaluation = d.evaluate(MONDAY + HOUR_NS)
    assert "forge-a/taichung-1/press" in evaluation.lacking_history


def test_comparable_days_keep_the_wall_clock_across_daylight_saving(tmp_path: Path) -> None:
    """A Berlin plant starting at 07:00 local: after the clocks go back on 25 October 2026
    the start moves an hour in UTC, and is still not a spike."""
    registry = REGISTRY.replace('gateway = "gw1"', 'gateway = "gw1"\n  timezone = "Europe/Berlin"')
    config = load_config(write_config(tmp_path / "cfg", registry), {})
    berlin = ZoneInfo("Europe/Berlin")

    def kw(ts: int) -> float:
        local = datetime.fromtimestamp(ts / 1e9, berlin)
        return (400.0 if local.weekday() < 5 and 7 <= local.hour < 16 else 100.0) * wobble(ts)

    monday = datetime_to_ns(datetime(2026, 10, 26, tzinfo=berlin))
    d = Detector(config.registry, AlertSettings())
    register = 1000.0
    found = []
    for ts in range(monday - 5 * WEEK_NS, monday + 12 * HOUR_NS, 5 * MIN_NS):
        d.add_reading(PRESS, ts, register, None)
        register += kw(ts) * 5 / 60
        if ts >= monday:
            found += d.evaluate(ts + 10**9).conditions
    assert [c for c in found if c.type in ("spike", "regime")] == []


def test_history_from_register_samples_matches_raw_readings(config: Config) -> None:
    """The slots loaded from one register per slot (InfluxDB's first() after a restart) equal
    those computed from every reading."""
    raw = Detector(config.registry, AlertSettings())
    sampled = Detector(config.registry, AlertSettings())
    register, ts_list, regs = 1000.0, [], []
    for ts in range(START, START + 2 * DAY_NS + 1, 5 * MIN_NS):
        raw.add_reading(PRESS, ts, register, None)
        if ts % (15 * MIN_NS) == 0:
            ts_list.append(ts)
            regs.append(register)
        register += plant_kw(ts) * 5 / 60
    sampled.add_history(PRESS, ts_list, regs)
    raw.tracks[PRESS].refresh_slots()
    g = np.arange(START // (15 * MIN_NS), (START + 2 * DAY_NS) // (15 * MIN_NS))
    a, b = raw.tracks[PRESS].get(g), sampled.tracks[PRESS].get(g)
    assert np.allclose(a, b, rtol=1e-5)
    assert not np.isnan(a).any()


def test_how_often_words() -> None:
    assert how_often(0, 42) == "not reached at this time of day on any of the last 42 days"
    assert "about once every 3 weeks" in how_often(2, 42)
    assert "about 2 times a week" in how_often(12, 42)


def test_day_types() -> None:
    assert day_type(datetime(2026, 10, 9, 10, tzinfo=TPE), "TW") == "holiday"  # National Day
    assert day_type(datetime(2026, 10, 11, 10, tzinfo=TPE), "TW") == "Sunday"
    assert day_type(datetime(2026, 10, 13, 10, tzinfo=TPE), "TW") == "workday"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.floats(0, 1e6), st.one_of(st.none(), st.floats(0, 1e4))),
        max_size=60,
    ),
    st.integers(0, 60),
    st.integers(0, 60),
)
def test_track_keeps_readings_in_any_arrival_order(
    arrivals: list[tuple[int, float, float | None]], cut: int, power_cut: int
) -> None:
    """Readings arrive in any order, duplicated (last wins), around a prune that drops old
    registers and older power: the track stays sorted and every kept value is the right one."""
    config = load_config(write_config(Path(tempfile.mkdtemp()), REGISTRY), {})
    ref = next(r for r in config.registry.meters() if r.key == PRESS)
    track = Track(ref, 15 * MIN_NS, 100)
    latest: dict[int, tuple[float, float | None]] = {}
    half = len(arrivals) // 2
    for n, (minute, register, power) in enumerate(arrivals):
        if n == half:
            track.prune(cut * MIN_NS, max(cut, power_cut) * MIN_NS)
            latest = {t: v for t, v in latest.items() if t >= cut}
        track.add(minute * MIN_NS, register, power)
        latest[minute] = (register, power)
    if half == len(arrivals):
        return
    assert list(track.ts) == [t * MIN_NS for t in sorted(latest)]
    assert list(track.register) == [latest[t][0] for t in sorted(latest)]
    for i in range(len(latest)):
        if i >= track.power_from:  # power kept: the newest arrivals, never a wrong one
            expected = [p for u in sorted(latest)[i:] if (p := latest[u][1]) is not None]
            assert track.power_since(i) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.floats(0, 1e3)), max_size=80))
def test_slot_ring_returns_what_was_set_within_its_capacity(writes: list[tuple[int, float]]):
    """Slots written in any order: a read gives the last value set for a slot still inside the
    ring's span, NaN for any other."""
    config = load_config(write_config(Path(tempfile.mkdtemp()), REGISTRY), {})
    ref = next(r for r in config.registry.meters() if r.key == PRESS)
    track = Track(ref, 15 * MIN_NS, 50)
    expected: dict[int, float] = {}
    for g, v in writes:
        track.set_slot(g, v)
        if g > track.slot_hi - track.capacity:
            expected[g] = v
    hi = track.slot_hi
    for g in range(0, 401):
        value = track.slot(g)
        if g in expected and hi - track.capacity < g <= hi:
            assert value == pytest.approx(expected[g], rel=1e-6)
        else:
            assert value != value
