"""Products: counters rolled up per product, energy attributed by line and overhead rules, and
the footprint per piece — by hand, to the gram, through the real store."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processing.accounting.footprints import FootprintLog, footprint_content
from processing.accounting.products import meter_shares
from processing.accounting.runner import product_periods, publish_period
from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from supplymeter.config import Config, load_config
from supplymeter.errors import ConfigError
from supplymeter.influx import InfluxClient
from supplymeter.records import Reading, datetime_to_ns
from supplymeter.store import Store, reading_line
from tests.conftest import pointed_at, write_config
from tests.pact_schema import load_spec, validate_at

pytestmark = pytest.mark.integration

HOUR = 3600 * 10**9

# Two products on one heading line with one sub-meter, each with its own counter; the main
# meter is the site's overhead, shared by stated shares (30 % / 20 %; the rest is other output).
REGISTRY = """
[[suppliers]]
id = "bolt-e"
name = "Tainan Bolt Works"
domain = "bolt-e.example"
company_ids = ["urn:pact:bolt-e.example:company-id:12345678"]
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  overhead = "share"
  overhead_basis = "floor space of the heading hall"
  boundary = [
    { source = "electricity", scope = "2", status = "metered" },
    { source = "diesel forklift", scope = "1", status = "excluded", estimate_kgco2e_per_year = 876, basis = "example" },
  ]
  lines = [ { id = "heading", meters = ["header"], rule = "mass", basis = "forming energy scales with mass" } ]
  products = [
    { id = "m8-bolt", part_number = "M8x30 8.8", name = "Hex bolt M8x30", cn_code = "731815", mass_kg = 0.05, line = "heading", counter = "header", overhead_share = 0.3 },
    { id = "m16-bolt", part_number = "M16x60 10.9", name = "Hex bolt M16x60", cn_code = "731815", mass_kg = 0.2, line = "heading", counter = "main", overhead_share = 0.2, inputs = [ { material = "wire rod SWRCH35K", kg_per_unit = 0.21, kgco2e_per_kg = 2.0, source = "mill PCF 2025 (example)", primary = true, dqr = [2, 2, 1] } ] },
  ]
    [[suppliers.sites.meters]]
    id = "header"
    carrier = "electricity"
    interval_s = 3600
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    interval_s = 3600
"""  # noqa: E501


def _config(tmp_path: Path, influx: InfluxClient, registry: str = REGISTRY) -> Config:
    services = f'[pact]\nfootprints_file = "{tmp_path / "pf.jsonl"}"\n'
    return pointed_at(load_config(write_config(tmp_path / "cfg", registry, services), {}),
                      None, influx)  # fmt: skip


def _write_constant_month(store: Store) -> None:
    """October 2025 in Taipei (744 h) and a day either side, read on every hour: header
    100 kWh/h counting 120 M8 bolts/h, main 50 kWh/h counting 60 M16 bolts/h."""
    start = datetime_to_ns(datetime(2025, 9, 29, tzinfo=UTC))
    lines = []
    for k in range(24 * 35):
        ts = start + k * HOUR
        lines.append(reading_line(Reading("bolt-e", "plant-1", "header", ts, None,
                                          energy_kwh=1000 + 100.0 * k,
                                          production_units=120.0 * k)))  # fmt: skip
        lines.append(reading_line(Reading("bolt-e", "plant-1", "main", ts, None,
                                          energy_kwh=5000 + 50.0 * k,
                                          production_units=60.0 * k)))  # fmt: skip
    store.write(lines)


def test_footprint_per_piece_by_hand(tmp_path: Path, influx: InfluxClient) -> None:
    config = _config(tmp_path, influx)
    store = Store(influx)
    library = FactorLibrary.load()
    _write_constant_month(store)
    tz_start = datetime_to_ns(datetime(2025, 9, 30, 16, tzinfo=UTC))  # 1 Oct 00:00 Taipei
    report = run_rollup(config, store, tz_start - 6 * HOUR, tz_start + 750 * HOUR, library)
    assert report.production_hours > 0
    month = Month(2025, 10)
    start, end = month.bounds(config.registry.meters()[0].tz)
    counted = store.product_totals(start, end, supplier="bolt-e")
    assert counted[("plant-1", "m8-bolt")].units == pytest.approx(744 * 120)
    assert counted[("plant-1", "m16-bolt")].units == pytest.approx(744 * 60)

    (m8, m16) = sorted(product_periods(config, store, library, [month]),
                       key=lambda p: p.product.mass_kg)  # fmt: skip
    # By hand: 2025 industry grid factor 0.466 kgCO2e/kWh; header 74,400 kWh, main 37,200.
    # Mass on the line: 89,280 × 0.05 = 4,464 kg and 44,640 × 0.2 = 8,928 kg → 1/3 and 2/3.
    header_kg, main_kg = 74_400 * 0.466, 37_200 * 0.466
    m8_kg = header_kg / 3 + 0.3 * main_kg  # 11,556.8 + 5,200.56 = 16,757.36
    m16_kg = header_kg * 2 / 3 + 0.2 * main_kg  # 23,113.6 + 3,467.04 = 26,580.64
    assert m8.gate_kgco2e == pytest.approx(16_757.36, abs=1e-6)
    assert m16.gate_kgco2e == pytest.approx(26_580.64, abs=1e-6)
    assert m8.per_declared_unit() == pytest.approx(m8_kg / 89_280, abs=5e-4)  # to the gram
    assert round(m8.per_declared_unit() * 1000) == 188  # g CO2e per M8 bolt (187.694)
    # The M16 bolt adds its wire rod: 0.21 kg × 2.0 = 0.42 kg per piece.
    assert m16.per_declared_unit() == pytest.approx(m16_kg / 44_640 + 0.42, abs=5e-4)
    assert round(m16.per_declared_unit() * 1000) == 1015  # 595.444 + 420 g
    # Half of the overhead goes to output without a footprint here: shown, not lost.
    assert m8.unattributed_kgco2e == pytest.approx(0.5 * main_kg, abs=1e-6)

    factors = {f.id: f for f in library.factors}
    doc = footprint_content(m16, month, month, factors)
    pcf = doc["pcf"]
    assert pcf["pcfExcludingBiogenicUptake"] == f"{m16_kg / 44_640 + 0.42:.6f}".rstrip("0")
    assert pcf["productMassPerDeclaredUnit"] == "0.2"
    assert pcf["declaredUnitOfMeasurement"] == "piece"
    assert pcf["referencePeriodStart"] == "2025-09-30T16:00:00Z"
    assert pcf["referencePeriodEnd"] == "2025-10-31T16:00:00Z"
    assert doc["productIds"][0] == "urn:pact:bolt-e.example:supplier-id:M16x60%2010.9"
    assert doc["productClassifications"] == ["urn:pact:taxation-customs.ec.europa.eu:cn:731815"]
    # Measured electricity and the mill's own PCF are primary data: 100 %.
    assert pcf["primaryDataShare"] == "100"
    # Forklift 876 kg/year over 744 h = 74.4 kg against the site's 52,005.6 + 74.4 kg.
    assert float(pcf["exemptedEmissionsPercent"]) == pytest.approx(
        100 * 74.4 / (header_kg + main_kg + 74.4), abs=1e-3)  # fmt: skip
    assert "mass" in pcf["allocationRulesDescription"]
    assert "30 %" in footprints_text(m8, month, factors)


def footprints_text(pp: object, month: Month, factors: dict) -> str:
    return footprint_content(pp, month, month, factors)["pcf"]["allocationRulesDescription"]  # type: ignore[arg-type]


def test_restatement_is_a_new_footprint(tmp_path: Path, influx: InfluxClient) -> None:
    """Publishing again without a change adds nothing; a change (late readings) makes a new
    footprint that names its predecessor, and the old one is deprecated — never edited. The
    period's footprints are also a versioned dataset (the export's policy): v1, nothing new
    while nothing changed, v2 with a diff whose rows carry the reason."""
    config = _config(tmp_path, influx)
    store = Store(influx)
    library = FactorLibrary.load()
    _write_constant_month(store)
    t0 = datetime_to_ns(datetime(2025, 9, 30, 10, tzinfo=UTC))
    run_rollup(config, store, t0, t0 + 760 * HOUR, library)
    month = Month(2025, 10)
    first, skipped = publish_period(config, store, library, month, month)
    assert len(first.created) == 2 and not skipped
    spec = load_spec()
    for pf in first.created if spec is not None else ():  # every mandatory field, valid
        validate_at(spec, "#/components/schemas/ProductFootprint", pf)
    again, _ = publish_period(config, store, library, month, month)
    assert again.created == [] and again.unchanged == 2
    log = FootprintLog(config.resolve(config.pact.footprints_file))
    before = {pf["id"]: pf for pf, _ in log.footprints()}
    # A corrected reading: the header ran harder on 15 Oct (its register 50 kWh higher from
    # then on), so the line's energy grows.
    ts0 = datetime_to_ns(datetime(2025, 10, 15, tzinfo=UTC))
    start = datetime_to_ns(datetime(2025, 9, 29, tzinfo=UTC))
    k0 = (ts0 - start) // HOUR
    store.write([reading_line(Reading("bolt-e", "plant-1", "header", start + k * HOUR, None,
                                      energy_kwh=1050 + 100.0 * k, production_units=120.0 * k))
                 for k in range(k0, 24 * 35)])  # fmt: skip
    run_rollup(config, store, ts0 - HOUR, ts0 + 2 * HOUR, library)
    third, _ = publish_period(config, store, library, month, month,
                              reasons=["late data recomputed: bolt-e/plant-1/header"])  # fmt: skip
    assert len(third.created) == 2 and sorted(third.deprecated) == sorted(before)
    dataset = config.resolve(config.pact.footprints_dir) / "2025-10--2025-10"
    assert sorted(p.name for p in dataset.iterdir()) == ["v1", "v2"]
    sent = json.loads((dataset / "v2" / "footprints-2025-10-2025-10.json").read_text())
    assert {pf["id"] for pf in sent} == {pf["id"] for pf in third.created}
    diff = list(csv.DictReader((dataset / "v2" / "diff-v1.csv").open()))
    moved = {(r["supplier"].split("/")[2], r["metric"]) for r in diff}
    assert {("m8-bolt", "pcf_kgco2e_per_unit"), ("m8-bolt", "content_sha256")} <= moved
    assert all(r["why"] == "late data recomputed: bolt-e/plant-1/header" for r in diff)
    for pf in third.created:
        assert pf["precedingPfIds"][0] in before
        assert pf["status"] == "Active"
    after = {pf["id"]: pf for pf, _ in log.footprints()}
    for pid, old in before.items():  # immutable except for the status
        assert after[pid] == {**old, "status": "Deprecated"}


def test_shares_by_machine_hours_and_units(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path,
                                      REGISTRY.replace('rule = "mass"', 'rule = "machine_hours"')
                                      .replace('counter = "header"', 'counter = "header", '
                                               "cycle_s = 2")
                                      .replace('counter = "main"', 'counter = "main", '
                                               "cycle_s = 6")), {})  # fmt: skip
    site = config.registry.suppliers[0].sites[0]
    shares = {s.meter: s for s in meter_shares(site, {"m8-bolt": 300, "m16-bolt": 100})}
    # 300 × 2 s = 600 s against 100 × 6 s = 600 s: half each.
    assert shares["header"].shares == pytest.approx({"m8-bolt": 0.5, "m16-bolt": 0.5})
    assert shares["main"].shares == {"m8-bolt": 0.3, "m16-bolt": 0.2}
    assert shares["main"].unattributed == pytest.approx(0.5)
    # Nothing counted on the line: its energy stays unattributed, not divided by zero.
    idle = {s.meter: s for s in meter_shares(site, {})}
    assert idle["header"].shares == {} and idle["header"].unattributed == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('counter = "main"', 'counter = "header"'), "one counter per product"),
        (
            ('line = "heading", counter = "main"', 'line = "pressing", counter = "main"'),
            "no line 'pressing'",
        ),
        (('meters = ["header"]', 'meters = ["nope"]'), "no meter 'nope'"),
        (("overhead_share = 0.2", "overhead_share = 0.8"), "add up to 1.1"),
        (
            ('cn_code = "731815", mass_kg = 0.05', 'cn_code = "73.18", mass_kg = 0.05'),
            "not a CN code",
        ),
        (('domain = "bolt-e.example"\n', ""), "needs domain and company_ids"),
    ],
)
def test_registry_mistakes_are_named(tmp_path: Path, change: tuple[str, str],
                                     message: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, REGISTRY.replace(*change)), {})
    assert message in str(err.value)


def _write_february_2024(store: Store) -> None:
    """February 2024 in Taipei (a leap month, 29 days) and a day either side, hourly."""
    start = datetime_to_ns(datetime(2024, 1, 30, tzinfo=UTC))
    store.write([line for k in range(24 * 33) for line in (
        reading_line(Reading("bolt-e", "plant-1", "header", start + k * HOUR, None,
                             energy_kwh=1000 + 100.0 * k, production_units=120.0 * k)),
        reading_line(Reading("bolt-e", "plant-1", "main", start + k * HOUR, None,
                             energy_kwh=5000 + 50.0 * k, production_units=60.0 * k)))])  # fmt: skip


def test_a_leap_february_publishes_with_a_validity_ending_on_28_february(
    tmp_path: Path, influx: InfluxClient
) -> None:
    """February 2024 ends on 29 February (16:00 UTC, midnight in Taipei): three years on
    there is no 29 February, and publishing failed with "day is out of range for month". The
    validity ends on 28 February 2027 (the earlier day: never longer than three years)."""
    config = _config(tmp_path, influx)
    store = Store(influx)
    library = FactorLibrary.load()
    _write_february_2024(store)
    t0 = datetime_to_ns(datetime(2024, 1, 31, tzinfo=UTC))
    run_rollup(config, store, t0, t0 + 31 * 24 * HOUR, library)
    month = Month(2024, 2)
    published, skipped = publish_period(config, store, library, month, month)
    assert len(published.created) == 2 and not skipped
    for pf in published.created:
        assert pf["pcf"]["referencePeriodEnd"] == "2024-02-29T16:00:00Z"
        assert pf["validityPeriodEnd"] == "2027-02-28T16:00:00Z"


def test_a_torn_footprint_log_record_is_skipped_then_cut_off(
    tmp_path: Path, influx: InfluxClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A publish interrupted by a full disk left half a line: reading skips it (and says so),
    the next publish removes it and appends whole records (before: every publish and export
    failed with "footprints.jsonl:2: not JSON" for good)."""
    config = _config(tmp_path, influx)
    store = Store(influx)
    library = FactorLibrary.load()
    _write_constant_month(store)
    t0 = datetime_to_ns(datetime(2025, 9, 30, 10, tzinfo=UTC))
    run_rollup(config, store, t0, t0 + 760 * HOUR, library)
    path = config.resolve(config.pact.footprints_file)
    month = Month(2025, 10)
    publish_period(config, store, library, month, month)
    whole = path.read_bytes()
    with path.open("ab") as f:  # what a write cut short leaves
        f.write(b'{"footprint": {"id": "0c0c", "companyName": "Tainan Bo')
    log = FootprintLog(path)
    assert len(log.footprints()) == 2
    assert "partial last record" in caplog.text
    # a late reading changes the month: a new publish must land whole after the torn tail
    start = datetime_to_ns(datetime(2025, 9, 29, tzinfo=UTC))
    k0 = (datetime_to_ns(datetime(2025, 10, 15, tzinfo=UTC)) - start) // HOUR
    store.write([reading_line(Reading("bolt-e", "plant-1", "header", start + k * HOUR, None,
                                      energy_kwh=1050 + 100.0 * k, production_units=120.0 * k))
                 for k in range(k0, 24 * 35)])  # fmt: skip
    run_rollup(config, store, start + (k0 - 1) * HOUR, start + (k0 + 2) * HOUR, library)
    again, _ = publish_period(config, store, library, month, month)
    assert len(again.created) == 2
    text = path.read_bytes()
    assert text.startswith(whole) and text.endswith(b"\n") and b"Tainan Bo\n" not in text
    assert len(FootprintLog(path).footprints()) == 4


def test_a_full_disk_publishes_nothing_and_says_so(tmp_path: Path) -> None:
    """A footprint log that cannot grow (the file size limit stands in for a full disk) is a
    clear error, the log keeps only whole records, and publishing after space returns works."""
    import subprocess
    import sys

    path = tmp_path / "pf.jsonl"
    path.write_text('{"op": "noop"}\n')
    script = f"""
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))
from processing.accounting.footprints import FootprintLog, FootprintError
from supplymeter.files import StorageError
content = {{"specVersion": "3.0.3", "productDescription": "x" * 200}}
try:
    FootprintLog(Path({str(path)!r})).publish([("s", "p", "k", content)])
except StorageError as exc:
    print(exc)
    sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "could not append" in done.stdout and "nothing was written" in done.stdout
    assert path.read_text() == '{"op": "noop"}\n'
    published = FootprintLog(path).publish([("s", "p", "k", {"specVersion": "3.0.3"})])
    assert len(published.created) == 1 and path.read_text().count("\n") == 2
