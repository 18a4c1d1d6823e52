from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from processing.emissions import FactorLibrary, emissions_for, to_emissions
from processing.rollup import HourlyConsumption
from supplymeter.carriers import CARRIERS
from supplymeter.config import Config, Registry, RegistryFile
from supplymeter.errors import ConfigError
from supplymeter.records import datetime_to_ns

TPE = ZoneInfo("Asia/Taipei")
ISSUE_FACTORS = {2017: 0.554, 2018: 0.533, 2019: 0.509, 2020: 0.502, 2021: 0.509, 2022: 0.495,
                 2023: 0.494, 2024: 0.474}  # fmt: skip


def hour_at(local: datetime, kwh: float = 100.0, carrier: str = "electricity") -> HourlyConsumption:
    return HourlyConsumption("heat-c", "kaohsiung-1", "main", carrier, "kWh",
                             datetime_to_ns(local), kwh, 1.0, 4)  # fmt: skip


def test_shipped_factors_are_taiwan_grid_by_year_and_use_and_cite_a_source() -> None:
    library = FactorLibrary.load()
    grid = {f.year: f.value for f in library.factors if f.carrier == "electricity" and not f.use}
    assert grid == ISSUE_FACTORS
    by_use = {f.use: f.value for f in library.factors if f.carrier == "electricity" and f.use}
    assert by_use == {"industry": 0.466, "average": 0.467, "residential": 0.471}  # 2025
    for f in library.factors:
        assert f.unit == f"kgCO2e/{CARRIERS[f.carrier].unit}"  # the carrier table's unit
        assert f.region == "TW" and f.basis == "location"
        assert f.publisher and f.title and f.url.startswith("https://")
        assert f.verification and f.gwp.startswith("IPCC AR5")  # the set MOENV adopted
        assert "issue" not in f.note  # a publication, never a ticket
        assert f.dqr_technological and f.dqr_geographical
    # standards/tw-factors.md: a value is verified only where its notice is cited, and the
    # 2025 average of all sales is never an inventory's factor.
    verified = {f.id for f in library.factors if f.verification.startswith("verified: ")}
    assert verified == {"tw-grid-2023", "tw-grid-2024", "tw-grid-2025-industry",
                        "tw-grid-2025-average", "tw-grid-2025-residential", "tw-ng-ng1-2025",
                        "tw-ng-ng2-2025"}  # fmt: skip
    assert all("2026-06-02" in f.verification for f in library.factors
               if f.id.startswith("tw-grid-2025"))  # fmt: skip
    assert {f.id for f in library.factors if not f.inventory} == {"tw-grid-2025-average"}
    heating = {f.id: f.lhv_kcal for f in library.factors if f.lhv_kcal is not None}
    assert heating == {"tw-ng-ipcc2006-8000kcal": 8000, "tw-ng-ng1-2025": 8067,
                       "tw-ng-ng2-2025": 8728}  # fmt: skip


def test_factor_use_picks_the_variant_and_falls_back_in_a_stated_order(
    example_config: Config,
) -> None:  # fmt: skip
    """Suppliers take the industry factor by default; a year without the use takes the row for
    every use; a later year without its factor is provisional; the average is never taken."""
    library = FactorLibrary.load()

    def pick(year: int, use: str, carrier: str = "electricity") -> tuple[str, float, bool]:
        found = library.lookup(carrier, "TW", year, use)
        assert found is not None
        return found[0].id, found[0].value, found[1]

    assert pick(2025, "industry") == ("tw-grid-2025-industry", 0.466, False)
    assert pick(2025, "residential") == ("tw-grid-2025-residential", 0.471, False)
    assert pick(2026, "industry") == ("tw-grid-2025-industry", 0.466, True)
    assert pick(2025, "") == ("tw-grid-2024", 0.474, True)  # no 2025 row for every use
    assert pick(2025, "average") == ("tw-grid-2024", 0.474, True)  # not for inventories
    assert all(not k.endswith("/average") for k in library.resolutions(range(2024, 2027)))
    assert pick(2024, "industry") == ("tw-grid-2024", 0.474, False)  # one value for every use
    ref = example_config.registry.meter("forge-a", "taichung-1", "main")
    assert ref is not None and ref.factor_use == "industry"  # the suppliers' default
    gas = example_config.registry.meter("heat-c", "kaohsiung-1", "carburizing-gas")
    assert gas is not None and gas.factor_use == "NG2"  # the site's, from its gas bill
    record = emissions_for(hour_at(datetime(2025, 3, 1, tzinfo=TPE), carrier="natural_gas"),
                           gas, library)  # fmt: skip
    assert record and record.factor_id == "tw-ng-ng2-2025" and not record.provisional


def test_natural_gas_by_gas_type_from_annual_heating_values() -> None:
    """NG2's 8,728 kcal/m³ (2025) against the standing 8,000: the gas factor was ~9% low."""
    library = FactorLibrary.load()
    per_tj = {"co2": 56_100, "ch4": 1, "n2o": 0.1}  # IPCC 2006 Vol. 2 Table 2.3
    for use, kcal in (("NG1", 8_067), ("NG2", 8_728)):
        factor, provisional = library.lookup("natural_gas", "TW", 2025, use) or (None, None)
        assert factor is not None and not provisional and factor.use == use
        tj = kcal * 4.1868e-9
        assert factor.per_gas(1000.0) == pytest.approx(
            {g: 1000 * v * tj for g, v in per_tj.items()}, rel=1e-4
        )
        assert factor.value == pytest.approx((56_100 + 28 + 26.5) * tj, abs=1e-4)
        assert factor.uncertainty_pct == 4
    ng2, _ = library.lookup("natural_gas", "TW", 2025, "NG2") or (None, None)
    old, _ = library.lookup("natural_gas", "TW", 2024, "NG2") or (None, None)
    assert ng2 and old and ng2.value / old.value - 1 == pytest.approx(0.091, abs=0.001)


def test_steam_factor_is_derived_as_its_note_says() -> None:
    factor, provisional = FactorLibrary.load().lookup("steam", "TW", 2026) or (None, None)
    assert factor is not None and not provisional
    # (2,773 - 335) kJ/kg / 0.80 boiler efficiency x 56.155 kgCO2e/GJ natural gas
    assert factor.value == pytest.approx((2773 - 335) / 0.80 * 56.155e-6, abs=5e-4)


def test_natural_gas_factor_is_derived_as_its_note_says_and_never_provisional() -> None:
    library = FactorLibrary.load()
    found = library.lookup("natural_gas", "TW", 2026)
    assert found is not None
    factor, provisional = found
    assert not provisional and factor.period == "standing"
    # IPCC 2006 Table 2.3 defaults, AR5 GWPs, 8,000 kcal/m³ (see the row's note)
    derived = (56_100 + 1 * 28 + 0.1 * 265) * 8_000 * 4.1868e-9
    assert factor.value == pytest.approx(derived, abs=5e-4)
    water, provisional = library.lookup("water", "TW", 2026) or (None, None)
    assert water is not None and not provisional
    assert water.value == pytest.approx(0.30 * 0.533, abs=5e-4)  # TWC kWh/m³ × 2018 grid


def test_each_hour_uses_its_local_years_factor(example_config: Config) -> None:
    """2024-01-01 00:00 in Taipei is still 2023 in UTC: the local year decides."""
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None
    library = FactorLibrary.load()
    last_2023 = emissions_for(hour_at(datetime(2023, 12, 31, 23, tzinfo=TPE)), ref, library)
    first_2024 = emissions_for(hour_at(datetime(2024, 1, 1, 0, tzinfo=TPE)), ref, library)
    assert last_2023 and first_2024
    assert (last_2023.factor_id, last_2023.emissions_kgco2e) == (
        "tw-grid-2023",
        pytest.approx(49.4),
    )
    assert (first_2024.factor_id, first_2024.emissions_kgco2e) == (
        "tw-grid-2024",
        pytest.approx(47.4),
    )
    assert not last_2023.provisional and not first_2024.provisional


def test_unpublished_year_uses_latest_factor_marked_provisional(example_config: Config) -> None:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None
    record = emissions_for(hour_at(datetime(2026, 10, 1, tzinfo=TPE)), ref, FactorLibrary.load())
    assert record and record.factor_id == "tw-grid-2025-industry" and record.provisional


def test_no_factor_is_none_not_zero(example_config: Config) -> None:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "quench-water")
    assert ref is not None
    water = hour_at(datetime(2024, 5, 1, tzinfo=TPE), carrier="water")
    grid_only = FactorLibrary([f for f in FactorLibrary.load().factors if f.carrier != "water"])
    assert emissions_for(water, ref, grid_only) is None
    assert FactorLibrary.load().lookup("electricity", "TW", 2016) is None


def test_factor_must_match_carrier() -> None:
    library = FactorLibrary.load()
    factor, _ = library.lookup("electricity", "TW", 2024) or (None, None)
    assert factor is not None
    with pytest.raises(ValueError, match="is for electricity, not water"):
        to_emissions(hour_at(datetime(2024, 5, 1, tzinfo=TPE), carrier="water"), factor, False)


def test_bad_factor_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "factors.csv"
    header = "id,carrier,region,year,value,unit,basis,publisher,title,url,retrieved,note\n"
    path.write_text(
        header
        + "a,electricity,TW,2024,0.474,kgCO2e/m3,location,p,t,u,,\n"
        + "b,electricity,TW,2024,-1,kgCO2e/kWh,location,p,t,u,,\n"
        + "c,electricity,TW,twenty,1,kgCO2e/kWh,location,p,t,u,,\n"
    )
    with pytest.raises(ConfigError) as caught:
        FactorLibrary.load(path)
    text = "\n".join(caught.value.problems)
    assert ":2: column unit: must be kgCO2e/kWh" in text
    assert ":3: column value: must be > 0" in text
    assert ":3: duplicate factor" in text and ":4: column year: cannot read 'twenty'" in text


def test_per_gas_factors_must_add_up_to_the_co2e_value(tmp_path: Path) -> None:
    path = tmp_path / "factors.csv"
    header = ("id,carrier,region,year,use,value,unit,basis,co2_kg,ch4_kg,n2o_kg,"
              "dqr_technological,publisher,title,url,retrieved,note\n")  # fmt: skip
    path.write_text(
        header
        + "a,natural_gas,TW,2025,NG2,2.052,kgCO2e/m3,location,2.050028,3.6542e-05,3.6542e-06,"
          "2,p,t,u,,\n"
        + "b,natural_gas,TW,2025,NG1,2.5,kgCO2e/m3,location,2.050028,3.6542e-05,3.6542e-06,"
          "7,p,t,u,,\n"
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        FactorLibrary.load(path)
    text = "\n".join(caught.value.problems)
    assert ":2:" not in text  # consistent with AR5 GWPs
    assert ":3: column dqr_technological: cannot read '7' (a data quality rating is 1-5" in text


def registry_data(config: Config) -> dict[str, Any]:
    """The example registry as plain data, to edit and validate again."""
    return {"suppliers": [s.model_dump(exclude_unset=True) for s in config.registry.suppliers]}


@pytest.mark.parametrize(
    ("tariff", "use", "value"),
    [(None, "industry", 0.466), ("high_voltage", "industry", 0.466),
     ("extra_high_voltage", "industry", 0.466), ("low_voltage", "industry", 0.466),
     ("lighting_commercial", "industry", 0.466), ("lighting_residential", "residential", 0.471),
     ("street_lighting", "residential", 0.471)],
)  # fmt: skip
def test_the_site_tariff_class_picks_the_2025_electricity_factor(
    example_config: Config, tariff: str | None, use: str, value: float
) -> None:
    """The 2025 notice (MOENV registry 2026-06-17): industry 0.466 for 表燈營業 and 低壓/高壓/
    特高壓電力, residential 0.471 for 表燈非營業 and 包燈; unset takes the supplier's (industry)."""
    data = registry_data(example_config)
    site = data["suppliers"][2]["sites"][0]
    site["tariff_class"] = tariff
    site["factor_use"] = {k: v for k, v in site.get("factor_use", {}).items() if k != "electricity"}
    registry = Registry.build(RegistryFile.model_validate(data).suppliers)
    ref = registry.meter(data["suppliers"][2]["id"], site["id"], site["meters"][0]["id"])
    assert ref is not None and ref.factor_use == use
    hour = hour_at(datetime(2025, 7, 1, tzinfo=TPE))
    record = emissions_for(hour, ref, FactorLibrary.load())
    assert record is not None and record.emissions_kgco2e == pytest.approx(100.0 * value)


def test_a_registry_cannot_take_the_average_or_contradict_its_tariff(
    example_config: Config,
) -> None:  # fmt: skip
    data = registry_data(example_config)
    data["suppliers"][0]["factor_use"] = {"electricity": "average"}
    with pytest.raises(ValueError, match="never a company inventory's factor"):
        RegistryFile.model_validate(data)
    data = registry_data(example_config)
    site = data["suppliers"][0]["sites"][0]
    site["tariff_class"], site["factor_use"] = "lighting_residential", {"electricity": "industry"}
    with pytest.raises(ValueError, match="contradicts tariff_class"):
        RegistryFile.model_validate(data)
