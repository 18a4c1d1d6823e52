"""A simulated December + January through real Mosquitto and InfluxDB, checked against the
simulator's ground-truth ledger. December 2023 and January 2024 (Taipei time) straddle a factor
change (0.494 → 0.474 kgCO2e/kWh) at local midnight, 2023-12-31T16:00Z."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.service import Collector
from processing.accounting.runner import export_month
from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from simulators.run import simulate
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store
from tests.helpers import wait_until

TPE = ZoneInfo("Asia/Taipei")
FACTOR = {Month(2023, 12): Decimal("0.494"), Month(2024, 1): Decimal("0.474")}
GAS = Decimal("1.881")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_exported_months_equal_ground_truth(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    config = make_config()
    start, end = datetime(2023, 12, 1, tzinfo=TPE), datetime(2024, 2, 1, tzinfo=TPE)
    with Collector(config, client=influx) as collector:
        sim = simulate(config, start=start, end=end, seed=11, ledger_path=tmp_path / "ledger.csv")
        assert wait_until(lambda: collector.stats.reading_messages >= sim.messages, 120)
        assert collector.writer.flush(60)
    assert collector.stats.rejected_total == 0 and collector.stats.readings_accepted == sim.readings

    library = FactorLibrary.load()
    report = run_rollup(config, Store(influx), datetime_to_ns(start), datetime_to_ns(end), library)
    assert report.flags["rollover"] > 0 and report.meters_without_data == []
    truth = sim.ledger.consumption()
    for month in FACTOR:
        result = export_month(config, Store(influx), month, tmp_path / "out", library)
        assert result.written and result.version == 1
        lo, hi = month.bounds(TPE)
        meters = read_csv(result.paths[2])
        assert len(meters) == 3
        for row in meters:
            key = (row["supplier"], row["site"], row["meter"])
            expected = sum(v for h, v in truth[key].items() if lo <= h < hi)
            assert abs(Decimal(row["consumption"]) - expected) <= Decimal("0.001"), key
            assert row["completeness_pct"] == "100.00" and row["hours_estimated"] == "0"
            assert row["estimated"] == "0.000" and row["primary_data_share_pct"] == "100.00"
            factor, factor_id = (
                (FACTOR[month], f"tw-grid-{month.year}")
                if row["carrier"] == "electricity"
                else (GAS, "tw-ng-ipcc2006-8000kcal")
            )
            kgco2e = expected * factor
            assert abs(Decimal(row["metered_kgco2e"]) - kgco2e) <= Decimal("0.001"), key
            assert abs(Decimal(row["location_kgco2e"]) - kgco2e) <= Decimal("0.001"), key
            assert row["factor_ids"] == factor_id
            share = Decimal(row["allocation_share_pct"]) / 100
            assert abs(Decimal(row["allocated_kgco2e"]) - kgco2e * share) <= Decimal("0.001")
        suppliers = {r["supplier"]: r for r in read_csv(result.paths[0])}
        forge_kwh = sum(v for h, v in truth[("forge-a", "plant-1", "main")].items() if lo <= h < hi)
        assert abs(Decimal(suppliers["forge-a"]["electricity_kwh"]) - forge_kwh) <= Decimal("0.001")
        assert suppliers["forge-a"]["carriers_without_factor"] == ""
        # No PV, no certificates: market-based equals location-based.
        assert suppliers["forge-a"]["market_kgco2e"] == suppliers["forge-a"]["location_kgco2e"]
        assert suppliers["cnc-d"]["allocation_method"] == "dedicated"
        factors = read_csv(result.paths[3])
        assert [f["id"] for f in factors] == [f"tw-grid-{month.year}", "tw-ng-ipcc2006-8000kcal"]
        assert result.paths[4].stat().st_size > 5000  # the workbook
        check_meter_reads_by_hand(result.paths[4], meters)
        hourly = result.directory / "hourly" / "forge-a" / "plant-1" / "main.csv"
        hours = read_csv(hourly)
        assert len(hours) == (hi - lo) // (3600 * 10**9)
        assert abs(sum(Decimal(h["consumption"]) for h in hours)
                   - Decimal(meters[0]["consumption"])) <= Decimal("0.001")  # fmt: skip

    # Recomputing changes nothing: no new version, the same files.
    before = result.paths[2].read_text()
    run_rollup(config, Store(influx), datetime_to_ns(start), datetime_to_ns(end), library)
    again = export_month(config, Store(influx), Month(2024, 1), tmp_path / "out", library)
    assert not again.written and again.version == 1 and again.paths[2].read_text() == before


def check_meter_reads_by_hand(workbook: Path, detail: list[dict[str, str]]) -> None:
    """From the Meter reads sheet alone: each meter's register at the month's boundaries,
    interpolated in time between the readings either side, then (end − start + rollovers ×
    rollover value) × multiplier — the Detail sheet's consumption to 0.001."""
    from openpyxl import load_workbook

    ws = load_workbook(workbook)["Meter reads"]
    head = [c.value for c in ws[1]]
    rows = [dict(zip(head, (c.value for c in r), strict=True)) for r in ws.iter_rows(min_row=2)]
    assert len(rows) == len(detail)

    def at(row: dict, boundary: str, t: datetime) -> float:
        before, after = row[f"register_before_{boundary}"], row[f"register_after_{boundary}"]
        if before is None or after is None:
            return float(before if before is not None else after)
        t0 = datetime.fromisoformat(row[f"read_before_{boundary}_utc"].replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(row[f"read_after_{boundary}_utc"].replace("Z", "+00:00"))
        if after < before:  # the register wrapped between the two readings
            after += float(row["rollover_value"])
        value = before + (after - before) * (t - t0) / (t1 - t0)
        rollover = row["rollover_value"]
        return value - float(rollover) if rollover and value >= float(rollover) else value

    consumption = {(r["supplier"], r["site"], r["meter"]): Decimal(r["consumption"])
                   for r in detail}  # fmt: skip
    for row in rows:
        month = Month.parse(row["month"])
        lo, hi = (datetime.fromtimestamp(b / 1e9, TPE) for b in month.bounds(TPE))
        wraps = row["rollovers"] * float(row["rollover_value"] or 0)
        by_hand = (at(row, "end", hi) - at(row, "start", lo) + wraps) * float(row["multiplier"])
        key = (row["supplier"], row["site"], row["meter"])
        assert abs(Decimal(repr(by_hand)) - consumption[key]) <= Decimal("0.001"), key


FAULTY_REGISTRY = """
[[suppliers]]
id = "forge-a"
kind = "forging"
allocation = { method = "physical", share = 0.5 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
  contract_capacity_kw = 1500
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    multiplier = 40
    rollover = 100000
    simulation = { mean_load = 800, initial_register = 99990, equipment = "press" }
    [[suppliers.sites.meters]]
    id = "gas"
    carrier = "natural_gas"
    interval_s = 3600
    simulation = { mean_load = 20, equipment = "furnace" }

[[suppliers]]
id = "cnc-d"
kind = "machining"
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
  contract_capacity_kw = 400
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    interval_s = 300
    rollover = 1000
    simulation = { mean_load = 120, initial_register = 900, equipment = "cnc" }
"""


def test_a_month_with_faults_exports_the_ground_truth(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """Outages with store-and-forward, duplicates, out-of-order and malformed messages, spikes,
    rollovers and meter replacements, through the real broker, collector, rollup and export:
    every meter's month equals what its registers counted, except across a replacement, where
    the step is estimated (flagged) and stays within 1%."""
    from simulators.faults import read_faults
    from simulators.ledger import read_ledger
    from simulators.run import faults_path_for
    from supplymeter.config import FaultSettings, SimulatorSettings

    config = make_config(FAULTY_REGISTRY)
    faults = FaultSettings(
        offline_per_day=1.0, offline_minutes=(10.0, 180.0), duplicate_rate=0.02,
        out_of_order_rate=0.02, malformed_rate=0.01, replacement_per_month=1.5,
        spike_per_week=2.0,
    )  # fmt: skip
    month = Month(2026, 10)
    lo, hi = month.bounds(TPE)
    start, end = datetime(2026, 10, 1, tzinfo=TPE), datetime(2026, 11, 1, tzinfo=TPE)
    with Collector(config, client=influx) as collector:
        sim = simulate(config, start=start, end=end, seed=21, ledger_path=tmp_path / "ledger.csv",
                       settings=SimulatorSettings(faults=faults))  # fmt: skip
        assert wait_until(lambda: collector.stats.reading_messages >= sim.messages, 120)
        assert collector.writer.flush(60)
    events = read_faults(faults_path_for(tmp_path / "ledger.csv"))
    kinds = {e["type"] for e in events}
    assert {"offline", "duplicate", "out_of_order", "malformed", "replacement"} <= kinds
    assert collector.stats.rejected_total == sum(e["type"] == "malformed" for e in events)

    library = FactorLibrary.load()
    report = run_rollup(config, Store(influx), lo, hi, library)
    result = export_month(config, Store(influx), month, tmp_path / "out", library)
    metered = read_ledger(tmp_path / "ledger.csv", "metered")
    issues = Store(influx).quality_issues(lo, hi)
    assert report.falls == len(issues) >= 1  # every fall without a meter event asks for one
    assert {code for code, *_ in issues} == {"register_fall_without_event"}
    replaced = {(e["supplier"], e["site"], e["meter"]) for e in events
                if e["type"] == "replacement"}  # fmt: skip
    for m in result.meters:
        truth = sum(v for h, v in metered[m.ref.key].items() if lo <= h < hi)
        if m.ref.key in replaced:
            assert m.flags["reset"] + m.flags["fall"] >= 1 and m.hours_estimated >= 1
            assert m.ref.key in {key for _, key, *_ in issues}
            assert m.estimated > 0 and m.measured + m.estimated == pytest.approx(m.consumption)
            assert abs(m.consumption - float(truth)) <= 0.01 * float(truth), m.ref.key
        else:
            assert not m.flags["reset"] and m.hours_estimated == 0, m.ref.key
            assert abs(Decimal(str(m.consumption)) - truth) <= Decimal("0.001"), m.ref.key
    assert any(m.flags["rollover"] for m in result.meters)
