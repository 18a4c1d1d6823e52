"""The real-series alert bench's input and output contract: any directory of CSVs in the shared
real loads' format plugs in, and the JSON holds the figures the alerts issue names."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_alerts_real.py"
spec = importlib.util.spec_from_file_location("bench_alerts_real", SCRIPT)
assert spec and spec.loader
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_alerts_real"] = bench  # dataclasses look their module up
spec.loader.exec_module(bench)
CET = timezone(timedelta(hours=1))


def write(
    directory: Path, values: list[str], step_min: int = 15, name: str = "plant",
    kind: str = "industrial",
) -> None:  # fmt: skip
    start = datetime(2018, 1, 1, tzinfo=CET)
    lines = ["datetime,electrical load [W]"]
    lines += [f"{(start + timedelta(minutes=step_min * i)).isoformat(sep=' ')},{v}"
              for i, v in enumerate(values)]  # fmt: skip
    (directory / f"{name}.csv").write_text("\n".join(lines) + "\n")
    (directory / "series.toml").write_text(
        f'[{name}]\nmean_kw = 300.0\ncountry = "DE"\nkind = "{kind}"\n'
    )


def plant_values() -> list[str]:
    """Eight weeks of a plant that works 07–16 on weekdays: 400 kW at work, 100 kW idle, ± 5 %."""
    values = []
    for i in range(8 * 7 * 96):
        day, q = divmod(i, 96)
        working = day % 7 < 5 and 28 <= q < 64
        values.append(f"{(400.0 if working else 100.0) * (1 + 0.05 * math.sin(i * 2.4)):.3f}")
    return values


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(0, 1e3), st.just(""), st.just("nan"), st.just("n/a")),
        min_size=3,
        max_size=200,
    ),
    st.sampled_from([5, 15, 30]),
)
def test_any_interval_gaps_and_bad_values_read_as_a_regular_grid(values, step_min) -> None:
    import tempfile

    numbers = [float(v) if isinstance(v, float) else math.nan for v in values]
    known = [x for x in numbers if x == x]
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), [str(v) for v in values], step_min)
        if not (known and sum(known) / len(known) > 1e-9):
            with pytest.raises(SystemExit, match="no load to scale"):
                bench.read_series(Path(tmp))
            return
        [series] = bench.read_series(Path(tmp))
    assert series.step_ns == step_min * 60 * 10**9
    assert len(series.kw) == len(values)
    assert all(b - a == series.step_ns for a, b in pairwise(series.ts_ns))
    for read, x in zip(series.kw, numbers, strict=True):
        assert (read != read) == (x != x)  # a gap stays a gap
    read_known = [v for v in series.kw if v == v]
    assert math.isclose(sum(read_known) / len(read_known), 300.0, rel_tol=1e-9)


def test_the_cli_writes_the_figures_the_issue_names(tmp_path: Path) -> None:
    """Eight weeks of a plant that works 07–16 on weekdays: the JSON has per-series and pooled
    figures (all, industrial), and the untouched plant raises no spike alert."""
    values = plant_values()
    write(tmp_path, values)
    out = tmp_path / "figures.json"
    subprocess.run([sys.executable, str(SCRIPT), "--series", str(tmp_path), "--json", str(out)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    figures = json.loads(out.read_text())
    for scope in (figures["per_series"]["plant"], figures["pooled"]["all"],
                  figures["pooled"]["industrial"]):  # fmt: skip
        for name in ("false_alarms_per_meter_week", "spike_precision", "spike_recall",
                     "recall_100pct_30min", "messages_per_meter_week", "busiest_site_day",
                     "regime_precision", "level_shift_recall"):  # fmt: skip
            assert name in scope
    assert figures["pooled"]["all"]["false_alarms_per_meter_week"] == 0
    assert figures["pooled"]["all"]["messages_per_meter_week"] == 0
    assert figures["pooled"]["industrial"]["spike_recall"] > 0.5
    # Without an industrial series the key is still there, its figures empty.
    write(tmp_path, values, kind="commercial")
    subprocess.run([sys.executable, str(SCRIPT), "--series", str(tmp_path), "--json", str(out)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["pooled"]["industrial"]["series"] == 0
    assert figures["pooled"]["industrial"]["spike_precision"] is None
    assert figures["pooled"]["commercial"]["series"] == 1


def test_several_seeds_pool_the_counts_of_each_seed(tmp_path: Path) -> None:
    """``--seeds 2`` judges the injections of both seeds: its counts are the two single-seed
    runs' counts added, so a figure rests on twice the events."""
    values = plant_values()
    write(tmp_path, values)
    [series] = bench.read_series(tmp_path)
    one = [bench.score_series(series, s, only=("spike",))["spike"] for s in (3, 4)]
    both = bench.score_series(series, 3, only=("spike",), seeds=2)["spike"]
    assert one[0]["events"] > 0 and one[0] != one[1]  # two seeds, two different injections
    for name in ("events", "detected", "alerts", "alerts_matching", "events_100pct_30min",
                 "detected_100pct_30min"):  # fmt: skip
        assert both[name] == one[0][name] + one[1][name], name


def test_a_notice_at_the_series_own_lasting_change_is_found_in_hindsight() -> None:
    """The bench's own-change check: a plant whose base steps from 100 to 130 kW on 1 Oct 2018
    shows +30 % there and nothing five weeks before; a notice dated at the step (either
    direction's sign) counts only when it points the same way."""
    start = datetime(2018, 7, 2, tzinfo=CET)
    step = datetime(2018, 10, 1, tzinfo=CET)
    ts, kw = [], []
    for i in range(20 * 7 * 96):
        t = start + timedelta(minutes=15 * i)
        working = t.weekday() < 5 and 7 <= t.hour < 16
        ts.append(int(t.timestamp()) * 10**9)
        kw.append((130.0 if t >= step else 100.0) + (300.0 if working else 0.0))
    series = bench.Series("plant", "industrial", "DE", "Europe/Berlin", ts, kw)
    bases = bench.day_bases(series)
    assert math.isclose(bench.own_change(bases, step.date()), 0.3, rel_tol=1e-9)
    assert bench.own_change(bases, (step - timedelta(weeks=5)).date()) == 0.0
    t0 = int(step.timestamp()) * 10**9
    up = ("level_shift", t0, t0 + 7 * bench.DAY_NS, t0 + 7 * bench.DAY_NS, 1)
    down = (*up[:4], -1)
    assert bench.own_changes([up, down], [], series.timezone, bases) == 1


def test_a_regime_at_a_load_the_plant_draws_routinely_is_counted_within_its_routine() -> None:
    """The bench's routine-energy check: a plant idles at 100 kW and works 07–16 on weekdays
    and 16–20 on Tuesdays and Thursdays at 400 kW. The same injected 16–18 h load of 400 kW is
    routine on a Monday (two workdays in five reach it at that hour; the Sunday before did not)
    and on a Sunday after the Saturday that had it, not on that Saturday (no weekend day, nor
    the Friday before, reached it)."""
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2018, 7, 2, tzinfo=berlin)
    ts, kw = [], []
    for i in range(8 * 7 * 96):
        t = start + timedelta(minutes=15 * i)
        working = t.weekday() < 5 and 7 <= t.hour < (20 if t.weekday() in (1, 3) else 16)
        ts.append(int(t.timestamp()) * 10**9)
        kw.append(400.0 if working else 100.0)
    events = []
    for day in (20, 11, 12):  # Monday, and a Saturday and Sunday the week before
        t0 = int(datetime(2018, 8, day, 16, tzinfo=berlin).timestamp()) * 10**9
        events.append(bench.Injected("regime", t0, t0 + 2 * 3600 * 10**9, 300.0))
        first = ts.index(t0)
        for i in range(first, first + 8):
            kw[i] *= 4
    series = bench.Series("plant", "industrial", "DE", "Europe/Berlin", ts, kw)
    routine = bench.routine_regimes(series, kw, events, bench.AlertSettings())
    assert routine == {0, 2}
