"""Scope 2 from the grid meter, through the real store, against figures computed by hand.

A PV site whose consumption meter misses an 80 kWh/h office circuit, with PV feeding the grid
by day: purchased electricity is the grid meter's import, the unmetered rest is a line of its
own, and the export, ``scope3_monthly``, the stored site-hours and the product footprint all
carry the same figures."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from processing.accounting.runner import export_month, product_periods
from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from supplymeter.records import Reading
from supplymeter.store import HOUR_NS, Store, reading_line
from tests.conftest import with_settings
from tests.dashboards.consistency import compare

pytestmark = pytest.mark.integration

TPE = ZoneInfo("Asia/Taipei")
OCT = Month(2025, 10)
FACTOR = 0.466
"""The 2025 industry grid factor (tw-grid-2025-industry). [kgCO2e/kWh]"""

REGISTRY = """
[[suppliers]]
id = "pv-co"
name = "PV Forge"
domain = "pv-co.example"
company_ids = ["urn:pact:pv-co.example:company-id:1"]
allocation = { method = "physical", share = 0.5, numerator = 1, denominator = 2, unit = "t", basis = "half" }
  [[suppliers.sites]]
  id = "plant-1"
  overhead = "mass"
  lines = [ { id = "press", meters = ["line"], rule = "mass", basis = "one product" } ]
  products = [ { id = "blank", part_number = "B-1", name = "Blank", cn_code = "761699", mass_kg = 2.0, line = "press", counter = "line" } ]
    [[suppliers.sites.meters]]
    id = "line"
    carrier = "electricity"
    interval_s = 3600
    [[suppliers.sites.meters]]
    id = "pv"
    carrier = "electricity"
    role = "pv"
    interval_s = 3600
    [[suppliers.sites.meters]]
    id = "grid"
    carrier = "electricity"
    role = "grid"
    interval_s = 3600
"""  # noqa: E501

CERT_HEADER = ("supplier,site,month,kwh,certificate_ids,issuer,generation_start,generation_end,"
               "technology,facility,retired_on,beneficiary\n")  # fmt: skip


def write_readings(store: Store) -> None:
    """Every hour from a day before October 2025 (Taipei) to a day after: the line 100 kWh
    and 10 pieces; the office 80 kWh (no meter); PV 30 kWh from 06:00 to 18:00 local, 10 of
    it exported; the grid meter's import is what the site drew: 180 − PV self-consumption."""
    start, end = OCT.bounds(TPE)
    regs = {"line": 0.0, "pv": 0.0, "import": 0.0, "export": 0.0, "pieces": 0.0}
    lines = []
    for t in range(start - 24 * HOUR_NS, end + 25 * HOUR_NS, HOUR_NS):
        lines += [
            reading_line(Reading("pv-co", "plant-1", "line", t, None, energy_kwh=regs["line"],
                                 production_units=regs["pieces"])),
            reading_line(Reading("pv-co", "plant-1", "pv", t, None, energy_kwh=regs["pv"])),
            reading_line(Reading("pv-co", "plant-1", "grid", t, None, energy_kwh=regs["import"],
                                 energy_export_kwh=regs["export"])),
        ]  # fmt: skip
        day = 6 <= datetime.fromtimestamp(t / 1e9, UTC).astimezone(TPE).hour < 18
        pv, export = (30.0, 10.0) if day else (0.0, 0.0)
        regs["line"] += 100.0
        regs["pieces"] += 10.0
        regs["pv"] += pv
        regs["export"] += export
        regs["import"] += 100.0 + 80.0 - (pv - export)
    store.write(lines)


def test_purchased_electricity_is_the_grid_meter_everywhere(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    certs = tmp_path / "certs.csv"
    certs.write_text(CERT_HEADER + "pv-co,plant-1,2025-10,10000,T-1..T-10,T-REC,2025-01-01,"
                     "2025-06-30,solar PV,Farm Z,2025-11-03,pv-co\n")  # fmt: skip
    config = with_settings(make_config(REGISTRY), "jobs", certificates_file=certs)
    config = with_settings(config, "pact", footprints_file=tmp_path / "pf.jsonl")
    store = Store(influx)
    library = FactorLibrary.load()
    write_readings(store)
    start, end = OCT.bounds(TPE)
    run_rollup(config, store, start - 6 * HOUR_NS, end + 6 * HOUR_NS, library)

    # By hand: 372 day hours (import 160 kWh) and 372 night hours (180 kWh).
    purchased = 372 * 160 + 372 * 180  # 126,480 kWh
    pv_self = 372 * 20  # 7,440 kWh
    unmetered = 744 * 80  # 59,520 kWh = purchased + PV self − the line's 74,400
    location = purchased * FACTOR  # 58,939.68 kg
    market = (purchased - 10_000) * FACTOR  # 54,279.68 kg
    rate = location / (purchased + pv_self)  # per kWh used on site

    stored = store.site_totals(start, end, supplier="pv-co")[("pv-co", "plant-1")]
    assert stored.hours == 744 and stored.inferred_hours == 0
    assert stored.purchased_kwh == pytest.approx(purchased, abs=1e-6)
    assert stored.pv_self_kwh == pytest.approx(pv_self, abs=1e-6)
    assert stored.unmetered_kwh == pytest.approx(unmetered, abs=1e-6)
    assert stored.location_kgco2e == pytest.approx(location, abs=1e-6)

    result = export_month(config, store, OCT, tmp_path / "out", library)
    [site] = csv.DictReader(result.paths[1].open())
    assert float(site["purchased_electricity_kwh"]) == pytest.approx(purchased, abs=1e-3)
    assert site["purchased_from"] == "grid meter"
    assert float(site["unmetered_electricity_kwh"]) == pytest.approx(unmetered, abs=1e-3)
    assert float(site["location_kgco2e"]) == pytest.approx(location, abs=1e-3)
    assert float(site["market_kgco2e"]) == pytest.approx(market, abs=1e-3)
    [supplier] = csv.DictReader(result.paths[0].open())
    assert float(supplier["purchased_electricity_kwh"]) == pytest.approx(purchased, abs=1e-3)
    assert float(supplier["location_kgco2e"]) == pytest.approx(location, abs=1e-3)
    assert float(supplier["market_kgco2e"]) == pytest.approx(market, abs=1e-3)
    assert float(supplier["allocated_kgco2e"]) == pytest.approx(location / 2, abs=1e-3)
    assert float(supplier["allocated_market_kgco2e"]) == pytest.approx(market / 2, abs=1e-3)
    assert supplier["allocation_share_pct"] == "50"

    # The meter rows — PV and grid listed with their role, the unmetered line of its own —
    # add up to the supplier's figures.
    meters = {r["meter"]: r for r in csv.DictReader(result.paths[2].open())}
    assert {m: r["role"] for m, r in meters.items()} == {
        "line": "consumption",
        "pv": "pv",
        "grid": "grid",
        "(unmetered)": "unmetered",
    }
    assert float(meters["grid"]["consumption"]) == pytest.approx(purchased, abs=1e-3)
    assert float(meters["(unmetered)"]["consumption"]) == pytest.approx(unmetered, abs=1e-3)
    assert float(meters["line"]["location_kgco2e"]) == pytest.approx(74_400 * rate, abs=1e-3)
    assert float(meters["(unmetered)"]["location_kgco2e"]) == pytest.approx(unmetered * rate,
                                                                             abs=1e-3)  # fmt: skip
    allocated = sum(float(r["allocated_kgco2e"] or 0) for r in meters.values())
    assert allocated == pytest.approx(location / 2, abs=2e-3)

    [monthly] = store.monthly_totals(start, end)
    assert monthly.location_kgco2e == pytest.approx(location, abs=1e-3)
    assert monthly.market_kgco2e == pytest.approx(market, abs=1e-3)
    assert monthly.allocated_kgco2e == pytest.approx(location / 2, abs=1e-3)
    assert monthly.purchased_electricity_kwh == pytest.approx(purchased, abs=1e-3)
    assert monthly.allocation_share_pct == 50

    # The footprint: the one product takes the line and, by the overhead rule, the unmetered
    # rest — the site's whole scope 2.
    [blank] = product_periods(config, store, library, [OCT])
    assert blank.units == pytest.approx(7_440)
    assert blank.site_kgco2e == pytest.approx(location, abs=1e-3)
    assert blank.gate_kgco2e == pytest.approx(location, abs=1e-3)
    assert blank.electricity_kwh == pytest.approx(74_400 + unmetered, abs=1e-3)

    # Every month figure on the dashboards, "now" the month's last millisecond: the same numbers.
    failures, compared = compare(config, store, end - 10**6, {str(OCT): result})
    assert not failures, "\n".join(failures)
    assert compared >= 12
