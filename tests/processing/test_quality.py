"""Data quality of a supplier-month: the uncertainty combination, PACT data quality ratings,
per-gas results — hand-computed — and the sheets an auditor receives."""

from __future__ import annotations

from collections import Counter

import pytest

from processing.accounting.scope3 import (
    MeterMonth,
    Month,
    QualityAssumptions,
    data_quality,
    temporal_rating,
)
from processing.emissions import FactorLibrary
from supplymeter.config import Config

OCT = Month(2026, 10)


def month_of(config: Config, meter: str, kwh: float, estimated: float, factor: str,
             value: float) -> MeterMonth:  # fmt: skip
    ref = config.registry.meter("forge-a", "taichung-1", meter)
    assert ref is not None
    return MeterMonth(ref, OCT, kwh, kwh - estimated, estimated, 744, 700, 44, Counter(),
                      kwh * value, (factor,), True)  # fmt: skip


def test_uncertainty_combines_classes_estimates_and_correlated_factors(
    example_config: Config,
) -> None:  # fmt: skip
    """forge-a in October 2026, three meters:

    * main: 1,000 kWh, 100 estimated, class 0.5S with a 0.5S CT (±√(0.5²+0.5²) = ±0.7071%),
      grid 2025 industry 0.466 (no published uncertainty: ±5% assumed) → 466 kg;
    * press-line: 500 kWh, no class (±2% assumed), same factor → 233 kg;
    * billet-gas: 100 m³, no class, NG2 2.052 (±4%) → 205.2 kg. Total 904.2 kg.

    instrument = √((0.7071·466)² + (2·233)² + (2·205.2)²) / 904.2 = 0.7774%
    estimation = 0.1 × 25% × 466 / 904.2 = 1.2884%
    factor     = √((5·(466+233))² + (4·205.2)²) / 904.2 = 3.9705%  (one grid factor, shared)
    total      = √(0.7774² + 1.2884² + 3.9705²) = 4.2461%
    """
    library = FactorLibrary.load()
    factors = {f.id: f for f in library.factors}
    meters = [
        month_of(example_config, "main", 1000.0, 100.0, "tw-grid-2025-industry", 0.466),
        month_of(example_config, "press-line", 500.0, 0.0, "tw-grid-2025-industry", 0.466),
        month_of(example_config, "billet-gas", 100.0, 0.0, "tw-ng-ng2-2025", 2.052),
    ]
    q = data_quality(meters, factors, QualityAssumptions(25.0, 2.0, 5.0))
    assert q is not None
    assert q.instrument_pct == pytest.approx(0.7774460, rel=1e-6)
    assert q.estimation_pct == pytest.approx(1.2884318, rel=1e-6)
    assert q.factor_pct == pytest.approx(3.9704588, rel=1e-6)
    assert q.uncertainty_pct == pytest.approx(4.2460595, rel=1e-6)
    assert any("2 meter(s) without one (±2%)" in a for a in q.assumed)
    assert any("tw-grid-2025-industry (±5%, none published)" in a for a in q.assumed)
    # Ratings: grid 1/1, NG2 2/2 (default carbon content), all 2025 factors for 2026 → 2
    assert q.technological == pytest.approx((699 + 2 * 205.2) / 904.2)
    assert q.geographical == pytest.approx((699 + 2 * 205.2) / 904.2)
    assert q.temporal == 2.0
    # Per gas: only natural gas gives them; 100 m³ × 2.050028 kg CO2/m³
    assert q.gases_kg is not None and q.gases_kg["co2"] == pytest.approx(205.0028, rel=1e-6)
    assert q.gases_share == pytest.approx(205.2 / 904.2)


def test_a_factor_uncertainty_is_not_averaged_away_across_meters(example_config: Config) -> None:
    """Ten meters on one factor: the factor's ±5% stays ±5% (correlated), while ten meters'
    class errors shrink by √10 (independent)."""
    factors = {f.id: f for f in FactorLibrary.load().factors}
    meters = [month_of(example_config, "press-line", 100.0, 0.0, "tw-grid-2025-industry", 0.466)
              for _ in range(10)]  # fmt: skip
    q = data_quality(meters, factors, QualityAssumptions(25.0, 2.0, 5.0))
    assert q is not None
    assert q.factor_pct == pytest.approx(5.0)
    assert q.instrument_pct == pytest.approx(2.0 / 10**0.5)
    assert q.estimation_pct == 0.0 and not any("estimated" in a for a in q.assumed)


def test_temporal_rating_by_years_between_activity_and_factor() -> None:
    assert [temporal_rating(2026, y) for y in (2026, 2025, 2023, 2020, 2019, 2006)] == [
        1, 2, 3, 4, 5, 5]  # fmt: skip


def test_no_emissions_no_quality_figure(example_config: Config) -> None:
    m = month_of(example_config, "main", 0.0, 0.0, "tw-grid-2025-industry", 0.466)
    assert data_quality([m], {}, QualityAssumptions()) is None


def test_at_a_grid_metered_site_the_primary_share_is_the_grid_meters(
    example_config: Config,
) -> None:  # fmt: skip
    """taichung-1 has a grid meter: its purchase, 2,000 kWh of which 500 estimated (a gap in
    the utility meter's data), is scope 2 — 932 kg at 0.466. The consumption meters are fully
    measured but only say where the electricity went. Gas (205.2 kg) is measured.

    primary = (0.75 · 932 + 1 · 205.2) / (932 + 205.2) = 904.2 / 1,137.2 = 79.511 %
    (weighting the consumption meters instead would say 94.85 %)."""
    from processing.accounting.scope3 import site_month, supplier_month
    from supplymeter.records import SiteTotals

    meters = [
        month_of(example_config, "main", 1000.0, 100.0, "tw-grid-2025-industry", 0.466),
        month_of(example_config, "press-line", 500.0, 0.0, "tw-grid-2025-industry", 0.466),
        month_of(example_config, "billet-gas", 100.0, 0.0, "tw-ng-ng2-2025", 2.052),
    ]
    totals = SiteTotals(hours=744, consumption_kwh=1500.0, purchased_kwh=2000.0,
                        estimated_kwh=500.0, grid_import_kwh=2000.0, grid_export_kwh=0.0,
                        location_kgco2e=932.0, emission_hours=744,
                        factor_ids=("tw-grid-2025-industry",), factor_value=0.466)  # fmt: skip
    site = site_month("forge-a", "taichung-1", OCT, totals, None)
    assert site.primary_data_share == pytest.approx(0.75)
    supplier = example_config.registry.supplier("forge-a")
    assert supplier is not None
    s = supplier_month(supplier, OCT, meters, [site])
    assert s.emissions_kgco2e == pytest.approx(1137.2)
    assert s.primary_data_share == pytest.approx(904.2 / 1137.2)
    inferred = site_month("forge-a", "taichung-1", OCT,
                          SiteTotals(hours=744, consumption_kwh=1500.0, purchased_kwh=1500.0,
                                     inferred_hours=744, location_kgco2e=699.0), None)  # fmt: skip
    s = supplier_month(supplier, OCT, meters, [inferred])  # no grid meter data: the meters'
    assert s.primary_data_share == pytest.approx((0.9 * 466 + 233 + 205.2) / 904.2)
