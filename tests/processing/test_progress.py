"""Targets and measured savings through a real InfluxDB, and the annual progress report."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from pydantic import ValidationError

from processing.emissions import FactorLibrary
from processing.progress import build_report, target_progress, write_report
from supplymeter.config import Config, Measure, Registry, Target
from supplymeter.influx import InfluxClient
from supplymeter.records import HourlyConsumption, HourlyEmissions, SiteHour, datetime_to_ns
from supplymeter.store import (
    MonthlyTotals,
    Store,
    consumption_line,
    emissions_line,
    monthly_line,
    production_line,
    site_hour_line,
)
from tests.conftest import pointed_at

TZ = ZoneInfo("Asia/Taipei")
FACTOR = 0.474


def test_the_pathway_and_the_progress_figures_by_hand() -> None:
    """100 tCO2e in 2025 → 80 in 2030: 2026 allows 96; 7.5 t a month for three months is
    22.5 t against 96 × 90/365 = 23.671 t allowed: on track by 1.171 t (4.95 %)."""
    target = Target(id="plan", base_year=2025, base_value=100, target_year=2030,
                    target_value=80)  # fmt: skip
    assert target.pathway(2026) == pytest.approx(96.0)
    assert target.pathway(2024) == 100 and target.pathway(2031) == 80
    months = target_progress(target, 2026, {1: (7.5, 1.0), 2: (7.5, 1.0), 3: (7.5, 1.0)}, TZ)
    march = months[2]
    allowed = 96 * 90 / 365
    assert march.ytd == pytest.approx(22.5)
    assert march.allowed_ytd == pytest.approx(allowed)
    assert march.on_track is True
    assert march.gap == pytest.approx(22.5 - allowed)
    assert march.gap_pct == pytest.approx(100 * (22.5 - allowed) / allowed)
    assert months[3].ytd is None and months[3].on_track is None
    intensity = Target(id="per-piece", metric="kgco2e_per_unit", base_year=2025, base_value=2.0,
                       target_year=2027, target_value=1.0)  # fmt: skip
    got = target_progress(intensity, 2026, {1: (1600.0, 1000.0), 2: (1400.0, 1000.0)}, TZ)
    assert got[1].ytd == pytest.approx(1.5) and got[1].allowed_ytd == pytest.approx(1.5)
    assert got[1].on_track is True
    assert got[0].on_track is False and got[0].gap == pytest.approx(0.1)


def test_targets_and_measures_are_checked_where_they_are_written() -> None:
    with pytest.raises(ValidationError, match="target_year"):
        Target(id="t", base_year=2030, base_value=1, target_year=2025, target_value=1)
    with pytest.raises(ValidationError, match="baseline must end"):
        Measure(id="m", name="x", site="s", installed=date(2026, 1, 1),
                baseline={"start": date(2025, 1, 1), "end": date(2026, 2, 1)})  # fmt: skip


def _with_improvement(config: Config) -> Config:
    suppliers = []
    for s in config.registry.suppliers:
        if s.id == "forge-a":
            s = s.model_copy(update={
                "targets": [Target(id="plan-2030", base_year=2025, base_value=100,
                                   target_year=2030, target_value=80,
                                   reference="voluntary reduction plan (example)")],
                "measures": [Measure(id="press-servo", name="Servo drive on the press",
                                     site="taichung-1", meters=["press-line"],
                                     installed=date(2026, 1, 1), counters=["press-line"],
                                     expected_saving_pct=10)],
            })  # fmt: skip
        suppliers.append(s)
    return dataclasses.replace(config, registry=Registry.build(suppliers))


def _history(store: Store) -> float:
    """Two years of the press line: 40 kWh/h of base load and 3 kWh a piece, pieces on
    weekdays 08–17; from 2026 the load is 10 % lower. Returns the true saving. [kWh]"""
    rng = random.Random(5)
    start = datetime(2025, 1, 1, tzinfo=TZ)
    lines, saved = [], 0.0
    for h in range(2 * 365 * 24):
        t = start + timedelta(hours=h)
        ns = datetime_to_ns(t)
        pieces = rng.randint(20, 40) if t.weekday() < 5 and 8 <= t.hour < 17 else 0
        kwh = (40 + 3 * pieces) * math.exp(rng.gauss(0, 0.05))
        if t.year == 2026:
            saved += 0.1 * kwh
            kwh *= 0.9
        key = ("forge-a", "taichung-1", "press-line")
        hour = HourlyConsumption(*key, "electricity", "kWh", ns, kwh, 1.0, 4, (), 0.0)
        lines.append(consumption_line(hour))
        lines.append(emissions_line(HourlyEmissions(*key, "electricity", ns, kwh * FACTOR,
                                                    "tw-grid", FACTOR, False)))  # fmt: skip
        count = HourlyConsumption(*key, "production", "pieces", ns, float(pieces), 1.0, 4, (),
                                  0.0)  # fmt: skip
        lines.append(production_line(count, "wheel-20"))
    for month in (1, 2, 3):
        begin = datetime_to_ns(datetime(2026, month, 1, tzinfo=TZ))
        lines.append(monthly_line(MonthlyTotals("forge-a", begin, 7500.0, None, 3150.0, None,
                                                42.0, 100.0, 100.0, False, 1)))  # fmt: skip
    store.write(lines)
    return saved


@pytest.mark.integration
def test_the_annual_report_states_targets_and_measured_savings(
    example_config: Config, influx: InfluxClient, tmp_path: Path
) -> None:
    config = pointed_at(_with_improvement(example_config), None, influx)
    store = Store(influx)
    truth = _history(store)
    library = FactorLibrary.load()
    report = build_report(config, store, library, "forge-a", 2026, date(2027, 1, 1))

    ((_, months),) = report.targets
    assert months[2].ytd == pytest.approx(22.5) and months[2].on_track is True

    (measure,) = report.measures
    assert measure.model is not None and measure.model.valid, measure.model
    assert measure.model.drivers[0] == "production"
    assert measure.model.coefficients["production"] == pytest.approx(3.0, rel=0.05)
    result = measure.result
    assert result is not None and result.days_used == 365
    assert abs(result.saved - truth) <= result.uncertainty
    assert result.significant
    assert measure.saved_kgco2e == pytest.approx(result.saved * FACTOR, rel=1e-9)
    assert measure.completeness_pct == pytest.approx(100.0)

    version, directory, written = write_report(config, report, tmp_path)
    assert (version, written) == (1, True)
    book = load_workbook(directory / "progress-forge-a-2026.xlsx")
    assert book.sheetnames[:4] == ["Summary", "Energy", "Targets", "Measures"]
    rows = list(book["Measures"].iter_rows(values_only=True))
    header, row = rows[0], rows[1]
    got = dict(zip(header, row, strict=True))
    assert got["Status"] == "significant"
    assert got["Guideline 14"] == "passes"
    assert got["Avoided"] == pytest.approx(result.saved, rel=1e-6)
    summary = " ".join(str(c.value) for r in book["Summary"].iter_rows() for c in r)
    assert "on track" in summary and "press-servo" in summary
    assert write_report(config, report, tmp_path)[2] is False  # same figures: no new version
    store.write([monthly_line(MonthlyTotals(
        "forge-a", datetime_to_ns(datetime(2026, 4, 1, tzinfo=TZ)), 30000.0, None, 0.0, None,
        42.0, 100.0, 100.0, False, 1))])  # fmt: skip
    again = build_report(config, store, library, "forge-a", 2026, date(2027, 1, 1))
    version, directory, written = write_report(config, again, tmp_path)
    assert (version, written) == (2, True)
    assert (directory / "diff-v1.csv").read_text().count("target_plan-2030_ytd") == 1
    assert again.targets[0][1][3].on_track is False  # April: 52.5 t against 31.6 allowed


def test_the_report_refuses_an_unknown_supplier(example_config: Config) -> None:
    with pytest.raises(ValueError, match="no supplier 'nobody'"):
        build_report(example_config, None, None, "nobody", 2026)  # type: ignore[arg-type]


def test_a_year_not_begun_is_refused_by_the_command(tmp_path: Path) -> None:
    from app.cli import main

    root = Path(__file__).resolve().parents[2]
    code = main(["--config", str(root / "supplymeter.toml"), "progress", "forge-a",
                 "--year", str(datetime.now(UTC).year + 1)])  # fmt: skip
    assert code != 0


@pytest.mark.integration
def test_intensity_targets_and_energy_rows_read_the_sums_the_export_reads(
    example_config: Config, influx: InfluxClient
) -> None:
    """January 2026 at taichung-1: two site-hours of 100 kWh bought at 0.474 kg/kWh, 10 kg
    of billet gas, 50 pieces: 104.8 kg / 50 = 2.096 kgCO2e a piece, 200 / 50 = 4 kWh a piece
    (by hand); the Energy sheet's row says 200 kWh bought."""
    targets = [Target(id="kg", metric="kgco2e_per_unit", base_year=2025, base_value=3,
                      target_year=2030, target_value=2),
               Target(id="kwh", metric="kwh_per_unit", base_year=2025, base_value=5,
                      target_year=2030, target_value=4)]  # fmt: skip
    suppliers = [s.model_copy(update={"targets": targets, "measures": []}) if s.id == "forge-a"
                 else s for s in example_config.registry.suppliers]  # fmt: skip
    config = pointed_at(
        dataclasses.replace(example_config, registry=Registry.build(suppliers)), None, influx
    )
    store = Store(influx)
    t0 = datetime_to_ns(datetime(2026, 1, 5, 9, tzinfo=TZ))
    site = ("forge-a", "taichung-1")
    lines = [site_hour_line(SiteHour(*site, t0 + i * 3_600_000_000_000, 100.0, 100.0, 0.0,
                                     False, 100.0, 0.0, None, 0.0, 0.0, 47.4, "tw-grid",
                                     FACTOR, False)) for i in range(2)]  # fmt: skip
    gas = ("forge-a", "taichung-1", "billet-gas")
    lines.append(consumption_line(HourlyConsumption(*gas, "natural_gas", "m3", t0, 5.0, 1.0, 1,
                                                    (), 0.0)))  # fmt: skip
    lines.append(emissions_line(HourlyEmissions(*gas, "natural_gas", t0, 10.0, "tw-ng", 2.0,
                                                False)))  # fmt: skip
    lines.append(production_line(HourlyConsumption(
        "forge-a", "taichung-1", "press-line", "production", "pieces", t0, 50.0, 1.0, 1, (),
        0.0), "wheel-20"))  # fmt: skip
    store.write(lines)
    report = build_report(config, store, FactorLibrary.load(), "forge-a", 2026,
                          date(2027, 1, 1))  # fmt: skip
    by_id = {t.id: months for t, months in report.targets}
    assert by_id["kg"][0].value == pytest.approx(104.8 / 50)
    assert by_id["kwh"][0].value == pytest.approx(4.0)
    assert by_id["kwh"][0].on_track is True  # 4.0 ≤ the 2026 pathway's 4.8
    electricity = next(r for r in report.energy if r[1] == "electricity (purchased)")
    assert electricity[2] == "200.000" and electricity[7] == "tw-grid"
    gas_row = next(r for r in report.energy if r[1] == "natural gas")
    assert gas_row[2] == "5.000"
