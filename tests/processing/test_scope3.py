from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from processing.accounting.scope3 import Month, meter_month, supplier_month
from processing.emissions import FactorLibrary, emissions_for
from processing.rollup import HOUR_NS
from supplymeter.config import Config
from supplymeter.records import HourlyConsumption, MeterTotals, datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")


def test_month_parse_and_local_bounds() -> None:
    month = Month.parse("2026-10")
    start, end = month.bounds(TPE)
    assert start == datetime_to_ns(datetime(2026, 9, 30, 16, tzinfo=ZoneInfo("UTC")))
    assert (end - start) // HOUR_NS == 31 * 24
    assert Month.parse("2026-12").bounds(TPE)[1] == datetime_to_ns(datetime(2027, 1, 1, tzinfo=TPE))
    for bad in ("2026-13", "2026-1", "26-10", "october"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            Month.parse(bad)


def hours_of(ref, start: int, n: int, kwh: float, coverage: float = 1.0) -> list[HourlyConsumption]:  # type: ignore[no-untyped-def]
    return [HourlyConsumption(*ref.key, ref.meter.carrier, ref.unit, start + i * HOUR_NS, kwh,
                              coverage, 4) for i in range(n)]  # fmt: skip


def month_of(ref, month: Month, hours: list[HourlyConsumption], library: FactorLibrary):  # type: ignore[no-untyped-def]
    """The meter's month from its hours and the emissions the rollup would have stored."""
    start, end = month.bounds(ref.tz)
    inside = [h for h in hours if start <= h.hour_start_ns < end]
    stored = [e for h in inside if (e := emissions_for(h, ref, library)) is not None]
    has_factor = library.covers(ref.carrier.factor_key, ref.supplier.country)
    return meter_month(ref, month, MeterTotals.of(inside, stored), has_factor)


def test_meter_month_sums_local_month_only_and_allocates(example_config: Config) -> None:
    ref = example_config.registry.meter("forge-a", "taichung-1", "press-line")
    assert ref is not None
    month = Month(2024, 1)
    start, _end = month.bounds(TPE)
    hours = hours_of(ref, start - 2 * HOUR_NS, 2 + 744 + 3, 10.0)  # spills both sides
    hours[5] = HourlyConsumption(*ref.key, "electricity", "kWh", hours[5].hour_start_ns, 10.0,
                                 0.5, 1, ("rollover",), estimated_consumption=4.0)  # fmt: skip
    m = month_of(ref, month, hours, FactorLibrary.load())
    assert m.consumption == pytest.approx(7440.0)
    assert m.measured == pytest.approx(7436.0) and m.estimated == pytest.approx(4.0)
    assert m.hours_expected == 744 and (m.hours_measured, m.hours_estimated) == (743, 1)
    assert m.completeness == 1.0 and m.flags["rollover"] == 1
    assert m.primary_data_share == pytest.approx(7436.0 / 7440.0)
    assert m.emissions_kgco2e == pytest.approx(7440.0 * 0.474)
    assert m.factor_ids == ("tw-grid-2024",) and not m.provisional
    assert m.location_kgco2e == pytest.approx(7440.0 * 0.474)  # no site rate applied yet


def test_supplier_month_names_carriers_without_factor(example_config: Config) -> None:
    supplier = example_config.registry.supplier("heat-c")
    assert supplier is not None
    month = Month(2026, 10)
    start, _ = month.bounds(TPE)
    library = FactorLibrary([f for f in FactorLibrary.load().factors if f.carrier != "water"])
    meters = [
        month_of(ref, month, hours_of(ref, start, 744 - 24, 2.0), library)
        for ref in example_config.registry.meters() if ref.supplier.id == "heat-c"
    ]  # fmt: skip
    s = supplier_month(supplier, month, meters)
    assert s.consumption == pytest.approx({"electricity": 1440.0, "natural_gas": 1440.0,
                                           "water": 1440.0})  # fmt: skip
    assert s.emissions_kgco2e == pytest.approx(
        1440.0 * (0.466 + 2.052)
    )  # no water factor; NG2 gas (heat-c)
    assert s.allocated_kgco2e == pytest.approx(s.emissions_kgco2e)  # dedicated: share 1
    assert s.carriers_without_factor == ("water",) and s.provisional
    # 24 hours without data at the meters' mean rate: completeness on energy 1440 / 1488
    assert s.completeness == pytest.approx(720 / 744)
    assert s.measured["water"] == pytest.approx(1440.0) and s.primary_data_share == 1.0


def test_a_supplier_without_gas_shows_no_gas_figure(example_config: Config) -> None:
    from processing.accounting.export import SUPPLIER_COLUMNS, supplier_row

    supplier = example_config.registry.supplier("cnc-d")
    assert supplier is not None
    month = Month(2026, 10)
    start, _ = month.bounds(TPE)
    library = FactorLibrary.load()
    meters = [month_of(ref, month, hours_of(ref, start, 744, 1.0), library)
              for ref in example_config.registry.meters() if ref.supplier.id == "cnc-d"
              and ref.meter.role == "consumption"]  # fmt: skip
    row = dict(zip(SUPPLIER_COLUMNS, supplier_row(supplier_month(supplier, month, meters)),
                   strict=True))  # fmt: skip
    assert row["natural_gas_m3"] == "" and row["steam_kg"] == ""
    assert float(row["electricity_kwh"]) > 0


def test_export_rows_report_energy_not_hours(example_config: Config) -> None:
    """20 of 60 kWh estimated: 33.33% estimated, 66.67% primary data, 100% complete."""
    ref = example_config.registry.meter("cnc-d", "tainan-1", "main")
    assert ref is not None
    month = Month(2026, 10)
    start, _ = month.bounds(TPE)
    hours = [HourlyConsumption(*ref.key, "electricity", "kWh", start + i * HOUR_NS, 60 / 744,
                               0.5 if i < 372 else 1.0, 4,
                               estimated_consumption=40 / 744 if i < 372 else 0.0)
             for i in range(744)]  # fmt: skip
    m = month_of(ref, month, hours, FactorLibrary.load())
    assert m.consumption == pytest.approx(60.0) and m.estimated == pytest.approx(20.0)
    assert m.measured + m.estimated == pytest.approx(m.consumption)
    assert round(100 * (1 - m.primary_data_share), 1) == 33.3 and m.completeness == 1.0


def test_scopes_are_split_before_allocation_and_registry_shares_show_their_inputs(
    example_config: Config,
) -> None:
    """heat-c: electricity (scope 2), gas (scope 1) and water (other), each allocated apart."""
    from processing.accounting.export import SUPPLIER_COLUMNS, supplier_row
    from supplymeter.config import Allocation

    supplier = example_config.registry.supplier("heat-c")
    assert supplier is not None
    share = Allocation(method="physical", share=0.25, numerator=250, denominator=1000,
                       unit="pieces", basis="pieces to the buyer / pieces produced")  # fmt: skip
    supplier = supplier.model_copy(update={"allocation": share})
    month = Month(2026, 10)
    start, _ = month.bounds(TPE)
    refs = [r for r in example_config.registry.meters() if r.supplier.id == "heat-c"]
    meters = [month_of(r, month, hours_of(r, start, 744, 2.0), FactorLibrary.load()) for r in refs]
    s = supplier_month(supplier, month, meters)
    row = dict(zip(SUPPLIER_COLUMNS, supplier_row(s), strict=True))
    assert float(row["scope2_kgco2e"]) == pytest.approx(1488 * 0.466)
    assert float(row["scope1_kgco2e"]) == pytest.approx(1488 * 2.052, abs=1e-3)
    assert float(row["allocated_scope1_kgco2e"]) == pytest.approx(0.25 * 1488 * 2.052, abs=1e-3)
    assert float(row["allocated_scope2_kgco2e"]) == pytest.approx(0.25 * 1488 * 0.466, abs=1e-3)
    assert (row["allocation_numerator"], row["allocation_denominator"],
            row["allocation_unit"]) == ("250.000000", "1000.000000", "pieces")  # fmt: skip


def test_a_registry_share_must_equal_its_inputs() -> None:
    from pydantic import ValidationError

    from supplymeter.config import Allocation

    with pytest.raises(ValidationError, match="is not numerator / denominator"):
        Allocation(method="physical", share=0.5, numerator=1, denominator=3)
    with pytest.raises(ValidationError, match="both numerator and denominator"):
        Allocation(method="physical", share=0.5, numerator=1)


def test_the_methodology_states_the_base_year_and_the_recalculation_policy(
    example_config: Config,
) -> None:
    from processing.accounting.export import base_year_policy
    from tests.conftest import with_settings

    [(topic, text)] = base_year_policy(example_config)
    assert topic == "Base year and recalculation" and "No base year declared" in text
    config = with_settings(example_config, "jobs", base_year=2025, recalculation_threshold_pct=5)
    [(_, text)] = base_year_policy(config)
    assert "Base year 2025" in text and "more than 5%" in text
