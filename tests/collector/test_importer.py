"""The history importer takes files from outside: any text gives readings or a list of
problems (never another exception), and valid rows come back exactly."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.importer import read_history
from supplymeter.config import Config
from supplymeter.errors import ConfigError

NOW = time.time_ns()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_readings_or_problems(example_config: Config, text: str) -> None:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None
    for header in ("", "ts,energy_kwh\n", "interval_start,consumption\n"):
        try:
            read_history(header + text, "f.csv", ref, NOW)
        except ConfigError as exc:
            assert exc.problems and all(str(p).startswith("f.csv") for p in exc.problems)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 99_999, allow_nan=False)),
                min_size=1, max_size=30, unique_by=lambda x: x[0]))  # fmt: skip
def test_register_rows_come_back_exactly(
    example_config: Config, rows: list[tuple[int, float]]
) -> None:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None
    base = 1_735_660_800_000  # 2025-01-01T00:00+08:00 in epoch ms
    text = "ts,energy_kwh\n" + "".join(f"{base + 60_000 * t},{v!r}\n" for t, v in rows)
    history = read_history(text, "f.csv", ref, NOW)
    assert [(r.ts_ns, r.energy_kwh) for r in history.readings] == [
        ((base + 60_000 * t) * 1_000_000, v) for t, v in rows
    ]


def test_interval_rows_become_a_register(example_config: Config) -> None:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None
    text = ("interval_start,consumption\n2025-01-01 00:00,40\n2025-01-01 00:15,80\n"
            "2025-01-01 00:30,0\n")  # fmt: skip
    history = read_history(text, "f.csv", ref, NOW)
    multiplier = ref.meter.multiplier
    assert [r.energy_kwh for r in history.readings] == pytest.approx(
        [0, 40 / multiplier, 120 / multiplier, 120 / multiplier]
    )
    assert history.readings[0].ts_ns == 1_735_660_800 * 10**9  # site-local midnight
