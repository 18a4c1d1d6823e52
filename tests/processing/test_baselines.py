"""Baselines and savings: a hand-checkable model, simulated measures against the ledger's
truth, real loads with an injected saving, and the temperature file reader."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.baselines import (
    Period,
    daily_frame,
    fit_baseline,
    goodness,
    read_temperature,
    savings,
)
from simulators.ledger import Ledger
from simulators.series import site_loads, with_interval
from supplymeter.config import Registry, SimulatedSaving, load_config
from supplymeter.records import datetime_to_ns

ROOT = Path(__file__).resolve().parents[2]
REAL = next((p for p in (ROOT.parent / "shared" / "data" / "real-loads",
                         Path("/work/shared/data/real-loads")) if p.is_dir()),
            ROOT.parent / "shared" / "data" / "real-loads")  # fmt: skip
"""The shared real loads beside the checkout, or where this machine keeps them (a clone
elsewhere)."""
HOUR_NS = 3600 * 10**9


def _frame(energy: list[float], production: list[float], start: date) -> pd.DataFrame:
    days = [start + timedelta(days=i) for i in range(len(energy))]
    return pd.DataFrame(
        {
            "energy": energy,
            "coverage": 1.0,
            "base": np.nan,
            "production": production,
            "saturday": [float(d.weekday() == 5) for d in days],
            "off_day": [float(d.weekday() == 6) for d in days],
        },
        index=pd.Index(days, name="day"),
    )


def test_a_two_driver_baseline_matches_a_reference_computed_by_hand() -> None:
    """energy = 200 + 3·pieces − 150·Sunday + noise: coefficients from the normal equations,
    CV(RMSE) and NMBE from Guideline 14's formulas, all computed here without statsmodels."""
    rng = random.Random(7)
    start = date(2025, 1, 1)
    production = [0.0 if (start + timedelta(days=i)).weekday() == 6 else rng.uniform(200, 400)
                  for i in range(120)]  # fmt: skip
    noise = [rng.gauss(0, 25) for _ in production]
    energy = [
        200 + 3 * p - 150 * float((start + timedelta(days=i)).weekday() == 6) + e
        for i, (p, e) in enumerate(zip(production, noise, strict=True))
    ]
    frame = _frame(energy, production, start)
    period = Period(start, start + timedelta(days=120))
    model = fit_baseline(frame, period, drivers=["production", "off_day"])

    x = np.column_stack([np.ones(120), production, frame["off_day"].to_numpy()])
    y = np.array(energy)
    beta = np.linalg.solve(x.T @ x, x.T @ y)
    resid = y - x @ beta
    cv = 100 * math.sqrt(float(resid @ resid) / (120 - 3)) / y.mean()
    nmbe = 100 * resid.sum() / ((120 - 3) * y.mean())
    assert model.intercept == pytest.approx(beta[0], rel=1e-9)
    assert model.coefficients["production"] == pytest.approx(beta[1], rel=1e-9)
    assert model.coefficients["off_day"] == pytest.approx(beta[2], rel=1e-9)
    assert model.fit.cv_rmse_pct == pytest.approx(cv, rel=1e-9)
    assert model.fit.nmbe_pct == pytest.approx(nmbe, abs=1e-9)
    assert model.fit.n == 120 and model.fit.p == 3
    assert model.coefficients["production"] == pytest.approx(3.0, abs=0.1)
    assert model.valid, model.problems


def test_goodness_judges_monthly_sums_like_guideline_14() -> None:
    days = [date(2025, 1, 1) + timedelta(days=i) for i in range(365)]
    y = np.full(365, 100.0)
    y_hat = y * np.array([1.2 if d.month == 3 else 1.0 for d in days])  # March 20 % off
    fit = goodness(y, y_hat, 2, days)
    lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    monthly = np.array([100.0 * n for n in lengths])
    predicted = monthly.copy()
    predicted[2] *= 1.2
    residual = float(((monthly - predicted) ** 2).sum())
    expected = 100 * math.sqrt(residual / (12 - 2)) / monthly.mean()
    assert fit.monthly_cv_rmse_pct == pytest.approx(expected, rel=1e-9)
    assert fit.months == 12


def test_a_model_on_noise_fails_guideline_14_and_gives_no_savings() -> None:
    rng = random.Random(3)
    start = date(2025, 1, 1)
    energy = [rng.lognormvariate(5, 0.6) for _ in range(365)]
    frame = _frame(energy, [0.0] * 365, start)
    model = fit_baseline(frame, Period(start, date(2025, 10, 1)))
    assert not model.valid
    assert any("CV(RMSE)" in p for p in model.problems)
    with pytest.raises(ValueError, match="Guideline 14"):
        savings(model, frame, Period(date(2025, 10, 1), date(2026, 1, 1)))


def _simulate_measures(shares: dict[str, float], seed: int) -> tuple[Ledger, dict]:
    """Two years of forge-a's plant, each named meter saving its share from 2026-01-01."""
    config = load_config(ROOT / "supplymeter.toml")
    registry = with_interval(config, 900)
    installed = datetime(2025, 12, 31, 16, tzinfo=UTC)  # 2026-01-01 00:00 in Taipei
    suppliers = []
    for supplier in registry.suppliers:
        sites = []
        for site in supplier.sites:
            meters = []
            for meter in site.meters:
                if supplier.id == "forge-a" and meter.id in shares:
                    saving = SimulatedSaving(start=installed, share=shares[meter.id])
                    simulation = meter.simulation.model_copy(update={"savings": [saving]})
                    meter = meter.model_copy(update={"simulation": simulation})
                meters.append(meter)
            sites.append(site.model_copy(update={"meters": meters}))
        suppliers.append(supplier.model_copy(update={"sites": sites}))
    ledger = Ledger()
    start = datetime_to_ns(datetime(2024, 12, 31, 16, tzinfo=UTC))
    end = datetime_to_ns(installed.replace(year=2026))
    loads = site_loads(Registry.build(suppliers), "forge-a", "taichung-1", start, end, seed,
                       ledger=ledger)  # fmt: skip
    return ledger, loads


def test_simulated_measures_are_found_within_their_uncertainty() -> None:
    """−12 % on the press line and −5 % on the induction heaters are found within their stated
    90 % uncertainty of what the ledger says they saved; 0 % on the billet furnace's gas is
    reported not significant.

    A 90 % interval misses the truth one time in ten by design: over seven seeds × three
    unchanged meters it missed once (seed 11, induction heaters, by 1.5 × its half-width),
    so the seed here is fixed, not searched."""
    shares = {"press-line": 0.12, "induction-heaters": 0.05, "billet-gas": 0.0}
    ledger, loads = _simulate_measures(shares, seed=1)
    pieces: dict[int, float] = defaultdict(float)
    for hours in ledger.pieces().values():
        for hour, count in hours.items():
            pieces[hour] += count
    truth = {key[2]: float(sum(hours.values())) for key, hours in ledger.saved().items()}
    baseline, reporting = Period(date(2025, 1, 1), date(2026, 1, 1)), Period(
        date(2026, 1, 1), date(2027, 1, 1))  # fmt: skip
    for meter, share in shares.items():
        hourly: dict[int, float] = defaultdict(float)
        for local, rate in loads[meter]:
            ns = datetime_to_ns(local)
            hourly[ns - ns % HOUR_NS] += rate * 0.25
        frame = daily_frame([(h, v, 0.0) for h, v in hourly.items()], "Asia/Taipei",
                            Period(baseline.start, reporting.end),
                            production=list(pieces.items()))  # fmt: skip
        model = fit_baseline(frame, baseline)
        assert model.valid, (meter, model.problems)
        assert "production" in model.drivers
        result = savings(model, frame, reporting)
        assert result.days_used == 365
        true_saving = truth.get(meter, 0.0)
        assert abs(result.saved - true_saving) <= result.uncertainty, (meter, result)
        if share:
            assert result.significant, (meter, result)
            assert true_saving > 0
        else:
            assert not result.significant, (meter, result)
            assert true_saving == 0.0


def _real(name: str) -> pd.Series:
    frame = pd.read_csv(REAL / f"{name}.csv")
    index = pd.to_datetime(frame.iloc[:, 0], utc=True)
    return pd.Series(frame.iloc[:, 1].to_numpy(dtype=float) * 0.25, index=index)


@pytest.mark.parametrize("name", ["toolmaker-de", "electroplating-de"])
def test_a_saving_injected_into_real_loads_is_found_or_the_model_says_it_cannot(
    name: str,
) -> None:
    """−10 % from 1 July on a year of a real plant's load: a model fitted on January–June
    (day type; no production counts in these series) either fails Guideline 14 and says so,
    or finds the saving within its stated uncertainty."""
    energy = _real(name)
    first = energy.index[0].tz_convert("Europe/Berlin")
    year = first.year
    cut = pd.Timestamp(datetime(year, 7, 1), tz="Europe/Berlin")
    saved = energy.where(energy.index >= cut, 0.0) * 0.10
    measured = energy - saved
    hourly = measured.resample("h").sum()
    hours = [(int(ts.value), float(v), 0.0) for ts, v in hourly.items()]
    frame = daily_frame(hours, "Europe/Berlin", Period(date(year, 1, 1), date(year + 1, 1, 1)),
                        country="DE")  # fmt: skip
    model = fit_baseline(frame, Period(date(year, 1, 1), date(year, 7, 1)))
    if not model.valid:
        assert model.problems
        return
    reporting = Period(date(year, 7, 1), date(year + 1, 1, 1))
    result = savings(model, frame, reporting)
    used = set(result.daily.index)
    local_days = saved.index.tz_convert("Europe/Berlin").date
    truth = float(saved[[d in used for d in local_days]].sum())
    assert abs(result.saved - truth) <= result.uncertainty, (name, result, truth)


@given(st.dictionaries(st.dates(date(2000, 1, 1), date(2099, 12, 31)),
                       st.floats(-50, 50, allow_nan=False), max_size=30))  # fmt: skip
def test_temperature_files_round_trip(values: dict[date, float]) -> None:
    text = "date,mean_c\n" + "".join(f"{d.isoformat()},{v!r}\n" for d, v in values.items())
    assert read_temperature(text) == values


@given(st.text(max_size=80))
def test_a_bad_temperature_line_is_refused_with_its_number(line: str) -> None:
    text = "date,mean_c\n2026-01-01,15.5\n" + line.replace("\r", "") + "\n"
    try:
        read_temperature(text)
    except ValueError as e:
        assert str(e).startswith("line ")
