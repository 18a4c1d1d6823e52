"""Load-test mode, the week plot and the CLI's fault overrides."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from app.cli import _fault_overrides
from simulators.loadtest import load_test, registry_toml
from simulators.plot import plot_week
from supplymeter.config import Config, load_config
from supplymeter.errors import ConfigError
from tests.conftest import write_config


def test_load_test_registry_is_valid_and_the_broker_acknowledges_the_target(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    registry = load_config(write_config(tmp_path / "lt", registry_toml(250)), {}).registry
    assert len(registry.meters()) == 250 and len(registry.suppliers[0].sites) == 3
    config = make_config()
    result = load_test(config, meters=250, rate=400, duration_s=1.5)
    assert result.acknowledged == 600  # 400/s × 1.5 s, every one acknowledged
    assert result.achieved_rate > 0


def test_week_plot_is_written(example_config: Config, tmp_path: Path) -> None:
    out = plot_week(example_config, date(2026, 7, 6), tmp_path / "week.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_fault_overrides_parse_and_validate(example_config: Config) -> None:
    settings = _fault_overrides(example_config, ["spike_per_week=2", "offline_minutes=5,30"])
    assert settings.faults.spike_per_week == 2 and settings.faults.offline_minutes == (5, 30)
    with pytest.raises(ConfigError, match="NAME one of"):
        _fault_overrides(example_config, ["nonsense=1"])
    with pytest.raises(ConfigError, match="offline_minutes"):
        _fault_overrides(example_config, ["offline_minutes=30,5"])
    with pytest.raises(ConfigError, match="duplicate_rate"):
        _fault_overrides(example_config, ["duplicate_rate=2"])
