"""CBAM: a forging line's gas and electricity meters and its counted output give the specific
direct embedded emissions by hand, beside the 732611 default and its mark-ups."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from processing.accounting.cbam import SHEETS, default_for, load_defaults, write_workbook
from processing.accounting.runner import installations
from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from supplymeter.config import Config, load_config
from supplymeter.errors import SupplymeterError
from supplymeter.influx import InfluxClient
from supplymeter.records import Reading, datetime_to_ns
from supplymeter.store import Store, reading_line
from tests.conftest import pointed_at, with_settings, write_config

HOUR = 3600 * 10**9

REGISTRY = """
[[suppliers]]
id = "forge-s"
name = "Taichung Steel Forging"
domain = "forge-s.example"
company_ids = ["urn:pact:forge-s.example:company-id:24681357"]
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  lines = [ { id = "forging", meters = ["furnace-gas", "press"] } ]
  products = [
    { id = "knuckle", part_number = "KN-45", name = "Steering knuckle blank", cn_code = "732611", mass_kg = 2.5, line = "forging", counter = "press", inputs = [ { material = "S45C bar", kg_per_unit = 2.8, kgco2e_per_kg = 2.3, source = "example", cn_code = "7215" } ] },
  ]
    [[suppliers.sites.meters]]
    id = "furnace-gas"
    carrier = "natural_gas"
    interval_s = 3600
    [[suppliers.sites.meters]]
    id = "press"
    carrier = "electricity"
    interval_s = 3600
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    interval_s = 3600
"""  # noqa: E501


def _config(tmp_path: Path, influx: InfluxClient, registry: str = REGISTRY) -> Config:
    return pointed_at(load_config(write_config(tmp_path / "cfg", registry), {}), None, influx)


def _month_of_readings(store: Store, library: FactorLibrary, config: Config) -> None:
    """October 2025 in Taipei and a day either side, hourly: furnace gas 30 m³/h, press 400
    kWh/h counting 200 knuckles/h, main (overhead) 100 kWh/h."""
    start = datetime_to_ns(datetime(2025, 9, 29, tzinfo=UTC))
    lines = []
    for k in range(24 * 35):
        ts = start + k * HOUR
        lines += [
            reading_line(Reading("forge-s", "plant-1", "furnace-gas", ts, None,
                                 volume_m3=500 + 30.0 * k)),
            reading_line(Reading("forge-s", "plant-1", "press", ts, None,
                                 energy_kwh=10_000 + 400.0 * k, production_units=200.0 * k)),
            reading_line(Reading("forge-s", "plant-1", "main", ts, None,
                                 energy_kwh=2_000 + 100.0 * k)),
        ]  # fmt: skip
    store.write(lines)
    run_rollup(config, store, start + 12 * HOUR, start + 34 * 24 * HOUR, library)


@pytest.mark.integration
def test_specific_direct_emissions_by_hand(tmp_path: Path, influx: InfluxClient) -> None:
    config = _config(tmp_path, influx)
    store, library = Store(influx), FactorLibrary.load()
    _month_of_readings(store, library, config)
    month = Month(2025, 10)
    (inst,) = installations(config, store, library, month, month)
    (goods,) = inst.goods
    # By hand: 744 h × 200 pieces × 2.5 kg = 372 t of 732611 forgings.
    assert goods.tonnes == pytest.approx(372.0, abs=1e-9)
    # Gas 744 × 30 = 22,320 m³ × 1.881 kgCO2e/m³ (8,000 kcal/m³, IPCC 2006) = 41.98392 t.
    assert goods.direct_t == pytest.approx(41.98392, abs=1e-6)
    # Precursor S45C bar, no actual value: the 7215 default for 2025 (before the mark-up),
    # 148,800 × 2.8 kg = 416.64 t × 2.298 = 957.43872 t.
    (bar,) = goods.precursors
    assert (bar.tonnes, bar.see_direct, bar.actual) == (pytest.approx(416.64), 2.298, False)
    assert goods.see_direct == pytest.approx((41.98392 + 957.43872) / 372, abs=1e-3)
    assert round(goods.see_direct, 3) == 2.687
    # Electricity: press 297.6 MWh + overhead 74.4 MWh, all to the one product: 1 MWh/t.
    assert goods.electricity_mwh / goods.tonnes == pytest.approx(1.0, abs=1e-9)
    # The 732611 default: 2.453 t/t, 2.698 with the 2026 mark-up.
    assert goods.default is not None and goods.default.base == 2.453
    assert goods.saving_t(2026) == pytest.approx((2.698 - goods.see_direct) * 372, abs=1e-3)

    # With the bar mill's actual value (1.2 t/t) the good is far under its default.
    actual = REGISTRY.replace('cn_code = "7215" }', 'cn_code = "7215", cbam_direct_t_per_t = 1.2 }')
    config = _config(tmp_path / "actual", influx, actual)
    (inst,) = installations(config, store, library, month, month)
    (goods,) = inst.goods
    assert round(goods.see_direct, 3) == round((41.98392 + 416.64 * 1.2) / 372, 3) == 1.457
    assert goods.saving_t(2026) == pytest.approx((2.698 - 1.456860) * 372, abs=0.01)

    path = write_workbook(tmp_path / "cbam.xlsx", [inst], 2026)
    wb = load_workbook(path)
    assert tuple(wb.sheetnames) == SHEETS
    rows = list(wb["Summary_Products"].iter_rows(values_only=True))
    header, row = rows[0], rows[1]
    assert row[header.index("cn_code")] == "732611"
    assert row[header.index("see_direct_tco2e_per_t")] == pytest.approx(1.4569, abs=1e-4)
    assert row[header.index("default_2026_with_markup")] == 2.698
    gas = [r for r in wb["B_EmInst"].iter_rows(values_only=True) if r[2] == "natural_gas"]
    assert gas and gas[0][4] == pytest.approx(22_320.0)


def test_defaults_table() -> None:
    defaults = load_defaults()
    # The seed table's examples (MIRDC monthly, appendix table 1).
    assert defaults["7318"].by_year == {2026: 2.978, 2027: 3.249, 2028: 3.519}
    assert defaults["732611"].base == 2.453 and defaults["732611"].for_year(2028) == 3.189
    assert defaults["761610"].for_year(2027) == 1.380
    assert defaults["7213"].base == 2.298 and defaults["7601"].base == 0.36
    # A full CN code takes its heading's row; a code outside the table has none.
    assert default_for("73181590", defaults) is defaults["7318"]
    assert default_for("8708", defaults) is None


def test_a_mistyped_default_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "d.csv"
    bad.write_text("cn_code,description,default_tco2e_per_t,y2026,y2027,y2028,note\n"
                   "7318,bolts,2.707,2.978,3.294,3.519,\n")  # fmt: skip
    with pytest.raises(SupplymeterError, match=r"3\.294"):
        load_defaults(bad)


@pytest.mark.integration
def test_one_computation_of_the_month_feeds_export_footprints_and_cbam_each_versioned(
    tmp_path: Path, influx: InfluxClient
) -> None:
    """The export computes the month once; footprints and CBAM take the same figures. The
    CBAM workbook is a versioned dataset as the export: a run with nothing changed writes
    nothing, a changed figure writes v2 beside v1 with a diff naming its reasons."""
    import csv

    from processing.accounting.cbam import publish_workbook
    from processing.accounting.runner import COMPUTED, export_month, publish_period

    config = _config(tmp_path, influx)
    config = with_settings(config, "pact", footprints_file=tmp_path / "pf.jsonl")
    store, library = Store(influx), FactorLibrary.load()
    _month_of_readings(store, library, config)
    month = Month(2025, 10)
    COMPUTED.clear()
    result = export_month(config, store, month, tmp_path / "out", library)
    figures = {month: result.figures}
    published, _ = publish_period(config, store, library, month, month, computed=figures)
    found = installations(config, store, library, month, month, computed=figures)
    assert {month: 1} == COMPUTED and published.created  # one computation, three outputs
    cbam = tmp_path / "cbam" / "2025-10--2025-10"
    first, written = publish_workbook(cbam, found, 2026, month, month, 0.1)
    assert written and first.parent.name == "v1"
    same, written = publish_workbook(cbam, found, 2026, month, month, 0.1)
    assert not written and same == first
    found[0].goods[0].precursors.clear()  # e.g. the bar mill's actual value arrives
    second, written = publish_workbook(cbam, found, 2026, month, month, 0.1,
                                       ["precursor actual value recorded"])  # fmt: skip
    assert written and second.parent.name == "v2" and first.exists()
    diff = list(csv.DictReader((second.parent / "diff-v1.csv").open()))
    assert {r["metric"] for r in diff} == {"precursors_tco2e", "see_direct_tco2e_per_t"}
    assert all(r["why"] == "precursor actual value recorded" for r in diff)
