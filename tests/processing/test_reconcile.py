"""Metered energy reconciled to utility bills, on billing periods that span two months."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from processing.accounting.inputs import load_bills
from processing.accounting.runner import export_month
from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary, emissions_for
from processing.jobs import rebuild_site_hours
from supplymeter.config import Config
from supplymeter.errors import ConfigError
from supplymeter.influx import InfluxClient
from supplymeter.records import HourlyConsumption, datetime_to_ns
from supplymeter.store import HOUR_NS, Store, consumption_line, emissions_line
from tests.conftest import with_settings

TPE = ZoneInfo("Asia/Taipei")

REGISTRY = """
[[suppliers]]
id = "cnc-d"
kind = "machining"
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
    [[suppliers.sites.meters]]
    id = "line-a"
    carrier = "electricity"
    [[suppliers.sites.meters]]
    id = "line-b"
    carrier = "electricity"
    [[suppliers.sites.meters]]
    id = "grid"
    carrier = "electricity"
    role = "grid"
    [[suppliers.sites.meters]]
    id = "gas"
    carrier = "natural_gas"
"""

HEADER = "supplier,site,carrier,account,period_start,period_end,billed,unit,bill_id\n"


def local_ns(day: str) -> int:
    return datetime_to_ns(datetime.fromisoformat(day).replace(tzinfo=TPE))


def write_hours(influx: InfluxClient, config: Config, meter: str, per_hour: float,
                start: str, end: str, skip_day: str | None = None) -> None:  # fmt: skip
    """Hourly rollups (and their emissions) of one meter, [start, end) local dates."""
    ref = config.registry.meter("cnc-d", "plant-1", meter)
    assert ref is not None
    lo, hi = local_ns(start), local_ns(end)
    skip = local_ns(skip_day) if skip_day else None
    lines = []
    library = FactorLibrary.load()
    for hour in range(lo, hi, HOUR_NS):
        if skip is not None and skip <= hour < skip + 24 * HOUR_NS:
            continue
        h = HourlyConsumption(*ref.key, ref.meter.carrier, ref.unit, hour, per_hour, 1.0, 4)
        lines.append(consumption_line(h))
        if ref.meter.role == "consumption" and (e := emissions_for(h, ref, library)):
            lines.append(emissions_line(e))
    Store(influx).write(lines)
    rebuild_site_hours(config, Store(influx), {("cnc-d", "plant-1"): [(lo, hi)]}, library)


def test_bills_are_reconciled_on_their_own_billing_period(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """Taipower bills 18 Sep - 17 Oct (720 h): the grid meter measured 10 kWh/h = 7,200 kWh
    against 7,000 billed (+2.86%: flagged); the gas bill 1-31 Oct against the gas meter, 1 m3/h
    with one day missing: 720 m3 metered, 744 billed (-3.23%: flagged, 24 h without data).
    The consumption meters (6 kWh/h together) are not what the utility bills: not used."""
    bills = tmp_path / "bills.csv"
    bills.write_text(
        HEADER
        + "cnc-d,plant-1,electricity,TP-01,2026-09-18,2026-10-18,7000,kWh,B-1\n"
        + "cnc-d,plant-1,natural_gas,GAS-9,2026-10-01,2026-11-01,744,m3,G-1\n"
        + "cnc-d,plant-1,electricity,TP-01,2026-08-18,2026-09-18,7200,kWh,B-0\n"
    )
    config = with_settings(make_config(REGISTRY), "jobs", bills_file=bills)
    for meter, kwh in (("grid", 10.0), ("line-a", 4.0), ("line-b", 2.0)):
        write_hours(influx, config, meter, kwh, "2026-09-01", "2026-11-01")
    write_hours(influx, config, "gas", 1.0, "2026-09-01", "2026-11-01", skip_day="2026-10-10")
    result = export_month(config, Store(influx), Month(2026, 10), tmp_path / "out",
                          FactorLibrary.load())  # fmt: skip
    rows = {
        r["bill_id"]: r
        for r in csv.DictReader(
            next(p for p in result.paths if p.name.endswith("-reconciliation.csv")).open()
        )
    }
    assert set(rows) == {"B-1", "G-1"}  # B-0 ends in September: September's export
    b1, g1 = rows["B-1"], rows["G-1"]
    assert (b1["metered"], b1["billed"], b1["difference"]) == ("7200.000", "7000.000", "200.000")
    assert b1["difference_pct"] == "2.86" and b1["flag"].startswith("CHECK")
    assert b1["meters"] == "grid" and b1["hours_without_data"] == "0"
    assert (g1["metered"], g1["difference"], g1["difference_pct"]) == ("720.000", "-24.000",
                                                                        "-3.23")  # fmt: skip
    assert g1["meters"] == "gas" and g1["hours_without_data"] == "24"
    assert g1["flag"].startswith("CHECK")
    assert "Reconciliation" in load_workbook(result.paths[4]).sheetnames
    # A corrected bill is a changed input: the month is restated.
    bills.write_text(bills.read_text().replace(",7000,kWh,B-1", ",7180,kWh,B-1"))
    again = export_month(config, Store(influx), Month(2026, 10), tmp_path / "out",
                         FactorLibrary.load())  # fmt: skip
    assert again.written and again.version == 2
    row = {
        r["bill_id"]: r
        for r in csv.DictReader(
            next(p for p in again.paths if p.name.endswith("-reconciliation.csv")).open()
        )
    }["B-1"]
    assert row["difference_pct"] == "0.28" and row["flag"] == "ok"


def test_bad_bills_are_all_reported(tmp_path: Path) -> None:
    bills = tmp_path / "bills.csv"
    bills.write_text(HEADER
                     + "cnc-d,plant-1,electricity,TP,2026-10-18,2026-09-18,7000,kWh,B-1\n"
                     + "cnc-d,plant-1,electricity,TP,2026-09-18,2026-10-18,7000,m3,B-2\n"
                     + "cnc-d,plant-1,hydrogen,TP,2026-09-18,2026-10-18,7000,kg,B-3\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_bills(bills)
    text = "\n".join(caught.value.problems)
    assert ":2: column period_end: must be after period_start" in text
    assert ":3: column unit: must be kWh" in text and ":4: column carrier: must be one of" in text
    assert {p.code for p in caught.value.problems} == {"invalid_value"}
    ok = tmp_path / "ok.csv"
    ok.write_text(HEADER + "cnc-d,plant-1,steam,S,2026-10-01,2026-11-01,5000,kg,S-1\n")
    [bill] = load_bills(ok)
    assert (bill.period_start, bill.period_end) == (date(2026, 10, 1), date(2026, 11, 1))
