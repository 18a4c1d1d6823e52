"""The ``supplymeter`` command as a user runs it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from deploy.stack import free_port, port_open
from supplymeter.cli import main
from tests.conftest import SMALL_REGISTRY, write_config


def stack_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "cfg",
        SMALL_REGISTRY,
        f"""
        [stack]
        dir = "{tmp_path / "stack"}"
        mqtt_port = {free_port()}
        influxdb_port = {free_port()}
        influxdb_rpc_port = {free_port()}
        """,
    )


def test_check_reports_config_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, SMALL_REGISTRY, "[mqtt]\nqos = 3\n")
    assert main(["--config", str(path), "check"]) == 2
    assert "mqtt.qos: must be 0, 1 or 2 (got 3)" in capsys.readouterr().err
    good = write_config(tmp_path / "ok", SMALL_REGISTRY)
    assert main(["--config", str(good), "check"]) == 0
    assert "OK — 2 suppliers, 3 meters" in capsys.readouterr().out


def test_bad_month_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, SMALL_REGISTRY)
    assert main(["--config", str(path), "export", "--month", "2026-13"]) == 2
    assert "month must be YYYY-MM (got '2026-13')" in capsys.readouterr().err


def test_unreachable_influxdb_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(
        tmp_path,
        SMALL_REGISTRY,
        f'[influxdb]\nurl = "http://127.0.0.1:{free_port()}"\nretries = 0\n',
    )
    assert main(["--config", str(path), "export", "--month", "2026-10"]) == 1
    assert "unavailable after 1 attempts" in capsys.readouterr().err


def test_stack_up_status_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(stack_config(tmp_path))
    try:
        assert main(["--config", path, "stack", "up"]) == 0
        assert main(["--config", path, "stack", "status"]) == 0
        assert capsys.readouterr().out.count("running") == 4
    finally:
        assert main(["--config", path, "stack", "down"]) == 0
    assert main(["--config", path, "stack", "status"]) == 1


def test_demo_runs_end_to_end_and_matches_its_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_config(tmp_path)
    out = tmp_path / "out"
    assert main(["--config", str(path), "demo", "--month", "2024-01", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "largest |export − simulator ledger| over 3 meters = 0.000" in printed
    assert f"wrote {out / 'scope3-2024-01-suppliers.csv'}" in printed
    with (out / "scope3-2024-01-suppliers.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["supplier"] for r in rows] == ["forge-a", "cnc-d"]
    assert all(float(r["electricity_kwh"]) > 0 and float(r["emissions_kgco2e"]) > 0 for r in rows)
    assert (out / "ledger.csv").exists()
    ports = [int(line.split("=")[1]) for line in path.read_text().splitlines() if "_port" in line]
    assert not any(port_open(p) for p in ports)  # the demo stopped the stack it started


def test_json_logs_are_one_object_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import logging

    from supplymeter.cli import JsonFormatter

    record = logging.LogRecord("collector", logging.WARNING, __file__, 1, "lost %d", (3,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert (
        entry["level"] == "WARNING" and entry["logger"] == "collector" and entry["msg"] == "lost 3"
    )
