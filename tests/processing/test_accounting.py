"""Market-based figures, monthly allocation shares and restatement, on hand-computed cases."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from processing.accounting.inputs import load_allocations, load_certificates
from processing.accounting.runner import export_month
from processing.accounting.scope3 import Certificates, Month, site_month, supplier_month
from processing.emissions import FactorLibrary, emissions_for
from processing.jobs import rebuild_site_hours, restate_emissions
from processing.rollup import HOUR_NS
from processing.sitehours import SiteHourInputs, site_hours
from supplymeter.config import Config
from supplymeter.errors import ConfigError
from supplymeter.influx import InfluxClient
from supplymeter.records import HourlyConsumption, SiteTotals
from supplymeter.store import Store, consumption_line, emissions_line
from tests.processing.test_scope3 import hours_of, month_of

TPE = ZoneInfo("Asia/Taipei")
OCT = Month(2026, 10)


def electricity_month(config: Config, kwh_per_hour: float = 1000 / 744):
    """forge-a/press-line: 1,000 kWh in October 2026 (factor 0.466, provisional)."""
    ref = config.registry.meter("forge-a", "taichung-1", "press-line")
    start, _ = OCT.bounds(TPE)
    return month_of(ref, OCT, hours_of(ref, start, 744, kwh_per_hour), FactorLibrary.load())


def electricity_site(
    config: Config, supplier: str, site: str, consumed: float, imported: float | None = None,
    pv: float | None = None, export: float = 0.0,
) -> SiteTotals:  # fmt: skip
    """October's site-hours (744, even per hour) from the pure site-hour calculation: the
    consumption meters ``consumed`` kWh, the grid meter ``imported`` (``None``: no grid data),
    the PV meter ``pv``, the grid meter's ``export``."""
    found = config.registry.site(supplier, site)
    assert found is not None
    start, _ = OCT.bounds(TPE)
    inputs = SiteHourInputs()
    for i in range(744):
        t = start + i * HOUR_NS

        def hour(kwh: float, t: int = t) -> HourlyConsumption:
            return HourlyConsumption(supplier, site, "x", "electricity", "kWh", t, kwh / 744,
                                     1.0, 4)  # fmt: skip

        inputs.add("consumption", hour(consumed))
        if imported is not None:
            inputs.add("grid", hour(imported))
            inputs.add_export(t, export / 744)
        if pv is not None:
            inputs.add("pv", hour(pv))
    return SiteTotals.of(site_hours(*found, inputs, FactorLibrary.load()))


def test_pv_self_consumption_leaves_scope_2_and_certificates_lower_market_based(
    example_config: Config,
) -> None:  # fmt: skip
    """Scope 2 is purchased electricity (GHG Protocol Scope 2 Guidance, ch. 5): the grid
    meter's import; what the site's own panels supplied leaves the location-based figure;
    certificates lower the market-based one only."""
    m = electricity_month(example_config)
    certs = Certificates(100.0, "TW-REC-1..100", "T-REC", "x.csv:2")
    totals = electricity_site(example_config, "forge-a", "taichung-1", 1000.0, imported=750.0,
                              pv=300.0, export=50.0)  # fmt: skip
    s = site_month("forge-a", "taichung-1", OCT, totals, certs, has_pv=True)
    assert s.electricity_kwh == pytest.approx(1000.0)
    assert s.pv_self_kwh == pytest.approx(250.0)  # generated 300, fed back 50
    assert s.purchased_kwh == pytest.approx(750.0)
    assert s.unmetered_kwh == pytest.approx(0.0, abs=1e-9)  # 750 + 250 − 1000
    assert s.location_kgco2e == pytest.approx(750.0 * 0.466)
    assert s.market_kwh == pytest.approx(650.0)  # 750 − 100
    assert s.market_kgco2e == pytest.approx(650.0 * 0.466)
    assert s.unused_certificates_kwh == 0 and not s.inferred
    supplier = example_config.registry.supplier("forge-a")
    assert supplier is not None
    month = supplier_month(supplier, OCT, [m], [s])
    assert month.emissions_kgco2e == pytest.approx(750.0 * 0.466)  # location-based, scope 2
    assert month.by_scope["2"] == pytest.approx(750.0 * 0.466)
    assert month.market_kgco2e == pytest.approx(650.0 * 0.466)
    assert month.allocated_kgco2e == pytest.approx(750.0 * 0.466 * supplier.allocation.share)


def test_the_grid_meter_is_purchased_electricity_and_the_unmetered_rest_is_its_own_line(
    example_config: Config,
) -> None:  # fmt: skip
    """A PV site whose consumption meters miss an 80 kWh office circuit: purchased = the grid
    meter's 160 kWh, not consumption − PV self-consumption (80 kWh)."""
    totals = electricity_site(example_config, "forge-a", "taichung-1", 100.0, imported=160.0,
                              pv=30.0, export=10.0)  # fmt: skip
    s = site_month("forge-a", "taichung-1", OCT, totals, None, has_pv=True)
    assert s.purchased_kwh == pytest.approx(160.0)
    assert s.location_kgco2e == pytest.approx(160.0 * 0.466)  # 74.56 kg
    assert s.pv_self_kwh == pytest.approx(20.0)
    assert s.unmetered_kwh == pytest.approx(80.0)  # 160 + 20 − 100
    # Meters and the unmetered line carry the site's scope 2 at one rate per kWh used.
    assert s.kgco2e_per_used_kwh * (100.0 + 80.0) == pytest.approx(s.location_kgco2e)
    assert s.unmetered_kgco2e == pytest.approx(80.0 * 160.0 * 0.466 / 180.0)


def test_without_a_grid_meter_purchased_electricity_is_inferred_and_said_so(
    example_config: Config,
) -> None:  # fmt: skip
    totals = electricity_site(example_config, "spring-b", "changhua-1", 1000.0)
    s = site_month("spring-b", "changhua-1", OCT, totals, None)
    assert s.purchased_kwh == pytest.approx(1000.0) and s.inferred_hours == 744
    assert s.unmetered_kwh is None and "inferred" in s.note


def test_certificates_beyond_consumption_are_not_negative_emissions(
    example_config: Config,
) -> None:
    certs = Certificates(900.0, "", "T-REC", "x")
    totals = electricity_site(example_config, "forge-a", "taichung-1", 1000.0, imported=750.0,
                              pv=300.0, export=50.0)  # fmt: skip
    s = site_month("forge-a", "taichung-1", OCT, totals, certs, has_pv=True)
    assert s.market_kwh == 0 and s.market_kgco2e == 0
    assert s.unused_certificates_kwh == pytest.approx(150.0)  # 900 − 750


def test_pv_without_a_grid_meter_is_said_not_guessed(example_config: Config) -> None:
    totals = electricity_site(example_config, "forge-a", "taichung-1", 1000.0, pv=300.0)
    s = site_month("forge-a", "taichung-1", OCT, totals, None, has_pv=True)
    assert s.pv_self_kwh == 0 and s.market_kwh == pytest.approx(1000.0)
    assert "not measurable" in s.note


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


ALLOC_HEADER = ["supplier", "month", "method", "numerator", "denominator", "unit", "basis"]


def test_monthly_allocation_shares_by_method(example_config: Config, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "alloc.csv", [
        ALLOC_HEADER,
        ["forge-a", "2026-10", "physical", 11020, 25100, "wheels", "shipped / forged"],
        ["spring-b", "2026-10", "economic", 4.15e6, 22.6e6, "TWD", "purchases / revenue"],
        ["heat-c", "2026-10", "dedicated", "", "", "", "vacuum line for the buyer only"],
    ])  # fmt: skip
    shares = load_allocations(path)
    physical = shares[("forge-a", OCT)]
    assert physical.share == pytest.approx(11020 / 25100) and physical.source == "alloc.csv:2"
    assert shares[("spring-b", OCT)].share == pytest.approx(4.15 / 22.6)
    assert shares[("heat-c", OCT)].share == 1 and shares[("heat-c", OCT)].method == "dedicated"
    m = electricity_month(example_config)
    s = supplier_month(example_config.registry.supplier("forge-a"), OCT, [m], None, physical)
    assert s.allocated_kgco2e == pytest.approx(466.0 * 11020 / 25100)
    assert s.allocation is physical


def test_bad_allocation_rows_are_all_reported(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "alloc.csv", [
        ALLOC_HEADER,
        ["forge-a", "2026-10", "physical", 30000, 25100, "wheels", ""],  # more than produced
        ["forge-a", "2026-13", "physical", 1, 2, "", ""],
        ["spring-b", "2026-10", "guesswork", 1, 2, "", ""],
        ["cnc-d", "2026-10", "economic", 1, 0, "", ""],
    ])  # fmt: skip
    with pytest.raises(ConfigError) as exc:
        load_allocations(path)
    assert len(exc.value.problems) == 4
    assert all(str(path) in p for p in exc.value.problems)


ATTRS = ["generation_start", "generation_end", "technology", "facility", "retired_on",
         "beneficiary", "use"]  # fmt: skip


def test_certificates_file_adds_up_per_site_month(
    tmp_path: Path, example_config: Config
) -> None:  # fmt: skip
    good = ["2026-07-01", "2026-09-30", "solar PV", "Plant X", "2026-11-05", "cnc-d", "retired"]
    path = write_csv(tmp_path / "certs.csv", [
        ["supplier", "site", "month", "kwh", "certificate_ids", "issuer", *ATTRS],
        ["cnc-d", "tainan-1", "2026-10", 1000, "A1..A1", "T-REC", *good],
        ["cnc-d", "tainan-1", "2026-10", 2000, "B1..B2", "T-REC", *good],
    ])  # fmt: skip
    certs = load_certificates(path, example_config.registry)[("cnc-d", "tainan-1", OCT)]
    assert certs.kwh == 3000 and certs.ids == "A1..A1;B1..B2" and not certs.issues
    bad = write_csv(tmp_path / "bad.csv", [["supplier", "site", "month", "kwh"]])
    with pytest.raises(ConfigError, match="missing columns"):
        load_certificates(bad)
    half = write_csv(tmp_path / "half.csv", [
        ["supplier", "site", "month", "kwh", "certificate_ids", "issuer"],
        ["cnc-d", "tainan-1", "2026-10", 1500, "A1", "BSMI National Renewable Energy "
         "Certification Center (T-REC)"],
    ])  # fmt: skip
    with pytest.raises(ConfigError, match="not whole T-RECs"):
        load_certificates(half)


def test_certificates_that_fail_the_quality_criteria_are_listed_not_applied(
    tmp_path: Path, example_config: Config
) -> None:  # fmt: skip
    """Scope 2 Quality Criteria: a certificate counts with its generation period in the
    consumption's year, its facility and technology, and retired for this supplier."""
    path = write_csv(tmp_path / "certs.csv", [
        ["supplier", "site", "month", "kwh", "certificate_ids", "issuer", *ATTRS],
        ["cnc-d", "tainan-1", "2026-10", 1000, "OK", "T-REC",
         "2026-07-01", "2026-09-30", "solar PV", "Plant X", "2026-11-05", "cnc-d", ""],
        ["cnc-d", "tainan-1", "2026-10", 2000, "OLD", "T-REC",
         "2024-01-01", "2024-12-31", "wind", "Farm Y", "2026-11-05", "cnc-d", "retired"],
        ["cnc-d", "tainan-1", "2026-10", 3000, "OTHER", "T-REC",
         "2026-01-01", "2026-03-31", "solar PV", "Plant X", "2026-11-05", "someone-else", ""],
        ["cnc-d", "tainan-1", "2026-10", 4000, "BARE", "T-REC", "", "", "", "", "", "", ""],
    ])  # fmt: skip
    certs = load_certificates(path, example_config.registry)[("cnc-d", "tainan-1", OCT)]
    assert certs.kwh == 1000 and certs.rejected_kwh == 9000
    assert any("vintage 2024-01-01–2024-12-31 outside 2026" in i for i in certs.issues)
    assert any("retired for 'someone-else'" in i for i in certs.issues)
    assert any("missing generation_start" in i for i in certs.issues)
    totals = electricity_site(example_config, "cnc-d", "tainan-1", 1000.0)
    s = site_month("cnc-d", "tainan-1", OCT, totals, certs)
    assert s.market_kwh == pytest.approx(1000.0 - 1000.0)  # only the valid 1,000 kWh
    assert "certificates not applied" in s.note


def test_pv_certificates_sold_cannot_also_be_claimed_as_self_consumed(
    example_config: Config,
) -> None:  # fmt: skip
    """The site used 250 kWh of its own PV but sold T-RECs for 200 kWh of that generation:
    market-based, those 200 kWh count at the grid factor; location-based is physical."""
    sold = Certificates(0.0, "TW-REC-9", "T-REC", "x", sold_kwh=200.0)
    totals = electricity_site(example_config, "forge-a", "taichung-1", 1000.0, imported=750.0,
                              pv=300.0, export=50.0)  # fmt: skip
    s = site_month("forge-a", "taichung-1", OCT, totals, sold, has_pv=True)
    assert s.location_kgco2e == pytest.approx(750.0 * 0.466)
    assert s.market_kwh == pytest.approx(950.0)  # 750 + 200
    assert s.market_kgco2e == pytest.approx(950.0 * 0.466)


# --- restatement (real InfluxDB) --------------------------------------------------------------


def write_month(config: Config, influx: InfluxClient, kwh: float, estimated: float = 0.0) -> None:
    """Hourly rollups of October for every SMALL_REGISTRY meter, ``kwh`` per hour (of which
    ``estimated``), with the emissions the rollup stores."""
    lines = []
    library = FactorLibrary.load()
    for ref in config.registry.meters():
        start, end = OCT.bounds(TPE)
        for hour in range(start, end, HOUR_NS):
            h = HourlyConsumption(*ref.key, ref.meter.carrier, ref.unit, hour, kwh,
                                  0.5 if estimated else 1.0, 4,
                                  estimated_consumption=estimated)  # fmt: skip
            lines.append(consumption_line(h))
            if (e := emissions_for(h, ref, library)) is not None:
                lines.append(emissions_line(e))
    influx.write_lines(lines)
    start, end = OCT.bounds(TPE)
    sites = {(r.supplier.id, r.site.id): [(start, end)] for r in config.registry.meters()}
    rebuild_site_hours(config, Store(influx), sites, library)


def test_restatement_writes_a_new_version_with_a_diff_and_keeps_the_old(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    config = make_config()
    out = tmp_path / "exports"
    library = FactorLibrary.load()
    write_month(config, influx, 10.0)
    first = export_month(config, Store(influx), OCT, out, library)
    assert first.written and first.version == 1 and first.diff_path is None
    v1 = {p.name: p.read_bytes() for p in first.directory.rglob("*") if p.is_file()}

    write_month(config, influx, 10.004)  # +0.04%: within the 0.1% threshold
    same = export_month(config, Store(influx), OCT, out, library)
    assert not same.written and same.version == 1

    write_month(config, influx, 10.5)  # +5%: late data arrived
    second = export_month(config, Store(influx), OCT, out, library)
    assert second.written and second.version == 2 and second.diff_path is not None
    diff = list(csv.DictReader(second.diff_path.open()))
    assert {r["supplier"] for r in diff} == {"forge-a", "cnc-d"}
    moved = [r for r in diff if r["metric"].endswith("kgco2e")]
    assert moved and all(float(r["change_pct"]) == pytest.approx(5.0) for r in moved)
    files = {p.name: p.read_bytes() for p in first.directory.rglob("*") if p.is_file()}
    assert files == v1  # v1 untouched
    assert json.loads((second.directory / "manifest.json").read_text())["restates"] == 1

    # The year's factor gets published: the stored emissions are recomputed (the one emissions
    # path), and the provisional figures are restated.
    grid_2024 = next(f for f in library.factors if f.id == "tw-grid-2024")
    published = FactorLibrary(
        [*library.factors, replace(grid_2024, id="tw-grid-2026", year=2026, value=0.470)]
    )
    restate_emissions(config, Store(influx), published, ["electricity/TW/2026"])
    third = export_month(config, Store(influx), OCT, out, published)
    assert third.written and third.version == 3
    suppliers = {r["supplier"]: r for r in csv.DictReader(third.paths[0].open())}
    assert suppliers["cnc-d"]["provisional"] == "false"
    rows = list(csv.DictReader(third.diff_path.open()))
    assert any(r["metric"] == "provisional" for r in rows)
    # The workbook an auditor receives: its sheets in reading order, every version and why.
    from openpyxl import load_workbook

    wb = load_workbook(third.paths[4])
    assert wb.sheetnames == [
        "Summary", "Sites", "Meter reads", "Detail", "Suppliers (all figures)",
        "Data quality & uncertainty", "Factors", "Methodology", "Restatements", "Chart",
    ]  # fmt: skip
    history = [[c.value for c in r] for r in wb["Restatements"].iter_rows(min_row=2)]
    assert [r[0] for r in history if r[4] == "first version"] == [1]
    assert {r[0] for r in history} == {1, 2, 3}
    assert any(r[0] == 2 and r[4] == "location_kgco2e" and r[8] == 5 for r in history)
    assert any(r[0] == 3 and r[1] == "this version" and r[4] == "provisional" for r in history)
    path = third.directory / f"scope3-{OCT}-quality.csv"
    quality = {r["supplier"]: r for r in csv.DictReader(path.open())}
    assert float(quality["cnc-d"]["uncertainty_pct"]) > 0
    assert quality["cnc-d"]["dqr_temporal"] == "1.0"  # the 2026 factor for 2026
    topics = [r[0].value for r in wb["Methodology"].iter_rows(min_row=2) if r[0].value]
    assert {"Emission factors", "Uncertainty", "Data quality ratings"} <= set(topics)


def test_example_month_has_market_based_and_monthly_shares(
    example_config: Config, tmp_path: Path
) -> None:
    """The shipped allocations.csv and certificates.csv are valid and cover October 2026."""
    shares = load_allocations(example_config.resolve(example_config.jobs.allocations_file))
    assert shares[("forge-a", OCT)].method == "physical"
    certs = load_certificates(example_config.resolve(example_config.jobs.certificates_file),
                              example_config.registry)  # fmt: skip
    assert certs[("cnc-d", "tainan-1", OCT)].kwh == 20000
    assert not certs[("cnc-d", "tainan-1", OCT)].issues


def test_a_change_of_quality_alone_makes_a_new_version(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """Late data turns estimated kWh into measured kWh: same totals, new version."""
    config = make_config()
    out = tmp_path / "exports"
    library = FactorLibrary.load()
    write_month(config, influx, 10.0, estimated=4.0)
    first = export_month(config, Store(influx), OCT, out, library)
    write_month(config, influx, 10.0, estimated=0.0)
    second = export_month(config, Store(influx), OCT, out, library, ["late data recomputed: x"])
    assert second.written and second.version == 2
    rows = list(csv.DictReader(second.diff_path.open()))
    assert {r["metric"] for r in rows} >= {"estimated_electricity_kwh", "primary_data_share_pct"}
    assert not any(r["metric"] == "location_kgco2e" for r in rows)  # totals did not move
    assert all(r["why"] == "late data recomputed: x" for r in rows)  # each row says why
    meters = list(csv.DictReader(second.paths[2].open()))
    assert all(float(m["estimated"]) == 0 and float(m["measured"]) == float(m["consumption"])
               for m in meters)  # fmt: skip
    before = {r["meter"]: r for r in csv.DictReader(first.paths[2].open())}
    main = before["main"]
    assert float(main["estimated"]) == pytest.approx(0.4 * float(main["consumption"]), rel=1e-6)


def test_a_version_written_with_an_earlier_method_is_restated_naming_the_change(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    """Same data, same inputs, but v1 was written before scope 2 became purchased electricity:
    the next export writes v2 and says why; the one after writes nothing."""
    import json

    from processing.accounting.export import METHOD

    config = make_config()
    out = tmp_path / "exports"
    library = FactorLibrary.load()
    write_month(config, influx, 10.0, estimated=0.0)
    first = export_month(config, Store(influx), OCT, out, library)
    manifest_path = first.directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["method"] == METHOD
    del manifest["method"]  # as written by the method before
    manifest_path.write_text(json.dumps(manifest))
    second = export_month(config, Store(influx), OCT, out, library)
    assert second.written and second.version == 2
    assert any(r.startswith("methodology changed: scope 2 counts purchased electricity")
               for r in second.reasons)  # fmt: skip
    third = export_month(config, Store(influx), OCT, out, library)
    assert not third.written and third.version == 2


def test_meter_register_and_instrument_uncertainty(example_config: Config) -> None:
    """forge-a main: a class 0.5S meter on a class 0.5S CT (± 0.71 %); the press line has no
    class. The supplier's instrument uncertainty covers the metered share it knows, and an
    overdue calibration is flagged in the meter row."""
    from processing.accounting.export import METER_COLUMNS, meter_row
    from processing.accounting.scope3 import instrument_uncertainty

    start, _ = OCT.bounds(TPE)
    library = FactorLibrary.load()
    main = example_config.registry.meter("forge-a", "taichung-1", "main")
    press = example_config.registry.meter("forge-a", "taichung-1", "press-line")
    assert main is not None and press is not None
    a = month_of(main, OCT, hours_of(main, start, 744, 3.0), library)  # 2,232 kWh
    b = month_of(press, OCT, hours_of(press, start, 744, 1.0), library)  # 744 kWh
    spread, coverage = instrument_uncertainty([a, b])
    assert spread == pytest.approx(0.5 * 2**0.5)
    assert coverage == pytest.approx(0.75)
    assert instrument_uncertainty([b]) == (None, 0.0)
    row = dict(zip(METER_COLUMNS, meter_row(a, 0.44), strict=True))
    assert row["accuracy_class"] == "0.5S" and row["ct_ratio"] == "2000/5"
    assert row["calibration_due"] == "2027-05-10" and row["calibration_overdue"] == "false"
    cnc = example_config.registry.meter("cnc-d", "tainan-1", "main")
    assert cnc is not None
    c = month_of(cnc, OCT, hours_of(cnc, start, 744, 1.0), library)
    assert (
        dict(zip(METER_COLUMNS, meter_row(c, 0.65), strict=True))["calibration_overdue"] == "true"
    )


def test_the_boundary_lists_sources_and_estimates_what_is_excluded(
    example_config: Config,
) -> None:  # fmt: skip
    """heat-c lists its metered and excluded sources; the month's excluded estimate is a
    twelfth of the yearly ones, shown beside its share of metered + excluded emissions."""
    from pydantic import ValidationError

    from processing.accounting.export import BOUNDARY_COLUMNS, boundary_rows
    from supplymeter.config import BoundarySource

    supplier = example_config.registry.supplier("heat-c")
    assert supplier is not None
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None
    start, _ = OCT.bounds(TPE)
    m = month_of(ref, OCT, hours_of(ref, start, 744, 10.0), FactorLibrary.load())
    month = supplier_month(supplier, OCT, [m])
    assert month.excluded_kgco2e == pytest.approx((4810 + 10700) / 12)
    whole = month.emissions_kgco2e + month.excluded_kgco2e
    assert month.excluded_pct == pytest.approx(100 * month.excluded_kgco2e / whole)
    rows = [dict(zip(BOUNDARY_COLUMNS, r, strict=True)) for r in boundary_rows(month)]
    assert [r["status"] for r in rows].count("excluded") == 3
    assert {r["scope"] for r in rows} == {"1", "2"}
    with pytest.raises(ValidationError, match="needs estimate_kgco2e_per_year"):
        BoundarySource(source="generator", scope="1", status="excluded")
