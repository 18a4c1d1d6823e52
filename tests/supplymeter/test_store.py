"""The store: line encoders (byte-exact), typed reads and DataFrames on a real InfluxDB."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision

from supplymeter.carriers import CARRIERS
from supplymeter.influx import InfluxClient
from supplymeter.records import (
    QUANTITIES,
    HourlyConsumption,
    HourlyEmissions,
    MeterTotals,
    Reading,
    Rejection,
    SiteHour,
    datetime_to_ns,
)
from supplymeter.store import (
    HOUR_NS,
    Store,
    arrival_line,
    consumption_line,
    emissions_line,
    reading_line,
    rejection_line,
    site_hour_line,
    status_line,
)
from tests.helpers import reading_point

TPE = ZoneInfo("Asia/Taipei")


def test_reading_fields_are_always_floats_and_seq_an_integer() -> None:
    line = reading_line(Reading("s", "p", "m", 1_700_000_000_000_000_001, 7, energy_kwh=5))
    # No "i" suffix on the register: line protocol reads a bare number as a float.
    assert line == "reading,meter=m,site=p,supplier=s energy_kwh=5,seq=7i 1700000000000000001"


def test_rejection_text_is_escaped_and_bounded() -> None:
    rejection = Rejection("invalid_json", 'bad "quote"\n', "t o,p=ic", 5, None, 9, 'x"y\\')
    line = rejection_line(rejection)
    assert line.startswith("rejected_message,reason=invalid_json count=1i")
    assert '\\"quote\\"' in line and "payload_bytes=9i" in line and line.endswith(" 5")
    assert "\n" not in line and "\\x0a" in line


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=200), st.text(max_size=200))
def test_any_rejection_text_is_stored_as_one_point(
    influx: InfluxClient, topic: str, excerpt: str
) -> None:
    influx.execute("DROP MEASUREMENT rejected_message")
    lines = [rejection_line(Rejection("invalid_json", excerpt, topic, 7, "s", 1, excerpt))]
    influx.write_lines(lines)
    assert influx.query("SELECT count(count) FROM rejected_message")[0].values[0][1] == 1


def test_status_line() -> None:
    line = status_line("s", "p", "gw1", "offline", 10, None)
    assert line == 'gateway_status,gateway=gw1,site=p,supplier=s online=false,state="offline" 10'


ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
maybe_float = (
    st.none()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=0, max_value=10**15)
)


@given(
    ids, ids, ids,
    st.integers(min_value=0, max_value=4_102_444_799 * 10**9),
    st.none() | st.integers(min_value=0, max_value=2**62),
    # A reading always has a quantity (the parser refuses one without).
    st.lists(maybe_float, min_size=len(QUANTITIES), max_size=len(QUANTITIES)).filter(
        lambda v: any(x is not None for x in v)
    ),
)  # fmt: skip
def test_hand_written_serializer_equals_influxdb_client_point(
    supplier: str, site: str, meter: str, ts_ns: int, seq: int | None, values: list
) -> None:  # type: ignore[type-arg]
    reading = Reading(supplier, site, meter, ts_ns, seq, *values)
    assert reading_line(reading) == reading_point(reading).to_line_protocol()


def test_rollups_round_trip_through_the_store(influx: InfluxClient) -> None:
    store = Store(influx)
    t0 = datetime_to_ns(datetime(2026, 10, 1, tzinfo=TPE))
    hours = [HourlyConsumption("s", "p", "m", "electricity", "kWh", t0 + i * HOUR_NS, 10.0 + i,
                               0.5 if i == 1 else 1.0, 4, ("fall",) if i == 1 else (),
                               estimated_consumption=5.5 if i == 1 else 0.0)
             for i in range(3)]  # fmt: skip
    steam = HourlyConsumption("s", "p", "boiler", "steam", "kg", t0, 800.0, 1.0, 4)
    emissions = [HourlyEmissions("s", "p", "m", "electricity", h.hour_start_ns,
                                 h.consumption * 0.474, "tw-grid-2024", 0.474, True)
                 for h in hours]  # fmt: skip
    store.write([consumption_line(h) for h in [*hours, steam]]
                + [emissions_line(e) for e in emissions])  # fmt: skip
    back, exported = store.hourly_consumption(t0, t0 + 3 * HOUR_NS)
    assert sorted(back, key=lambda h: (h.meter, h.hour_start_ns)) == [steam, *hours]
    assert exported == {}
    assert store.hourly_emissions(t0, t0 + 3 * HOUR_NS, meter="m") == emissions
    # A restated hour overwrites: the factor id is a field, not a tag of a second series.
    store.write([emissions_line(HourlyEmissions("s", "p", "m", "electricity", t0, 4.66,
                                                "tw-grid-2025", 0.466, False))])  # fmt: skip
    again = store.hourly_emissions(t0, t0 + HOUR_NS)
    assert [(e.factor_id, e.emissions_kgco2e) for e in again] == [("tw-grid-2025", 4.66)]
    # Location-based per supplier: electricity from the site-hours (what the site bought),
    # every other carrier from its meters.
    assert store.emissions_by_supplier(t0, t0 + 3 * HOUR_NS) == {}
    store.write([site_hour_line(SiteHour("s", "p", t0 + i * HOUR_NS, 10.0 + i, 12.0, 0.0,
                                         False, 12.0, location_kgco2e=12.0 * 0.466,
                                         factor_id="tw-grid-2025", factor_value=0.466))
                 for i in range(3)])  # fmt: skip
    steam_kg = HourlyEmissions("s", "p", "boiler", "steam", t0, 136.8, "steam-ng", 0.171, False)
    store.write([emissions_line(steam_kg)])
    assert store.emissions_by_supplier(t0, t0 + 3 * HOUR_NS) == {"s": pytest.approx(
        3 * 12.0 * 0.466 + 136.8)}  # fmt: skip
    [site] = store.site_hours(t0, t0 + HOUR_NS)
    assert site.purchased_kwh == 12.0 and site.unmetered_kwh is None and not site.inferred


def test_frames_for_analysts_carry_units_and_months(influx: InfluxClient) -> None:
    store = Store(influx)
    t0 = datetime_to_ns(datetime(2026, 10, 31, 23, tzinfo=TPE))  # last hour of October
    hours = [HourlyConsumption("s", "p", "m", "electricity", "kWh", t0 + i * HOUR_NS, 10.0,
                               1.0, 4) for i in range(2)]  # fmt: skip
    store.write([consumption_line(h) for h in hours] + [emissions_line(HourlyEmissions(
        "s", "p", "m", "electricity", h.hour_start_ns, 4.74, "tw-grid-2024", 0.474, True))
        for h in hours])  # fmt: skip
    frame = store.hourly_frame(start="2026-10-31", end="2026-11-02", supplier="s")
    assert list(frame["consumption"]) == [10.0, 10.0] and set(frame["unit"]) == {"kWh"}
    monthly = store.monthly_frame(start="2026-10-01", end="2026-12-01")
    assert list(monthly["month"]) == ["2026-10", "2026-11"]
    assert list(monthly["metered_kgco2e"]) == [4.74, 4.74]


def test_late_arrivals_are_read_by_receipt_time(influx: InfluxClient) -> None:
    store = Store(influx)
    store.write([arrival_line(("s", "p", "m"), 3 * HOUR_NS, 4, 1000),
                 arrival_line(("s", "p", "m"), 5 * HOUR_NS, 1, 1001),
                 arrival_line(("s", "p", "n"), 3 * HOUR_NS, 1, 2000)])  # fmt: skip
    assert store.arrivals(0, 1500) == {("s", "p", "m"): {3 * HOUR_NS, 5 * HOUR_NS}}
    assert store.arrivals(1001, 5000) == {("s", "p", "n"): {3 * HOUR_NS}}


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(st.tuples(
    st.floats(min_value=0, max_value=1e5), st.floats(min_value=0, max_value=1),
    st.sampled_from([(), ("rollover",), ("fall",), ("exchange", "reset")]), st.booleans(),
), min_size=1, max_size=60))  # fmt: skip
def test_meter_totals_summed_by_influxdb_equal_the_records_summed_in_python(
    influx: InfluxClient, hours: list[tuple[float, float, tuple[str, ...], bool]]
) -> None:
    """The export's month comes from InfluxDB's sums; they equal the records' own sums."""
    # A database per example: InfluxDB 1.6 can lose points written right after a DROP.
    db = InfluxClient(url=influx.url, database=f"{influx.database}_t{next(_examples)}")
    db.ensure_database()
    try:
        check_totals(Store(db), hours)
    finally:
        db.execute(f'DROP DATABASE "{db.database}"')


_examples = itertools.count()


def check_totals(store: Store, hours: list[tuple[float, float, tuple[str, ...], bool]]) -> None:
    t0 = datetime_to_ns(datetime(2026, 10, 1, tzinfo=TPE))
    records = [HourlyConsumption("s", "p", "m", "natural_gas", "m3", t0 + i * HOUR_NS, v,
                                 1.0 if share == 0 else 1 - share, 4, flags,
                                 estimated_consumption=v * share)
               for i, (v, share, flags, _) in enumerate(hours)]  # fmt: skip
    emissions = [HourlyEmissions("s", "p", "m", "natural_gas", h.hour_start_ns,
                                 h.consumption * 1.881, "tw-ng", 1.881, provisional)
                 for h, (*_, provisional) in zip(records, hours, strict=True)]  # fmt: skip
    store.write([consumption_line(h) for h in records] + [emissions_line(e) for e in emissions])
    got = store.meter_totals(t0, t0 + 61 * HOUR_NS, supplier="s")[("s", "p", "m")]
    want = MeterTotals.of(records, emissions)
    assert got.consumption == pytest.approx(want.consumption, rel=1e-12, abs=1e-9)
    assert got.estimated == pytest.approx(want.estimated, rel=1e-12, abs=1e-9)
    assert got.emissions_kgco2e == pytest.approx(want.emissions_kgco2e, rel=1e-12, abs=1e-9)
    assert (got.hours, got.hours_measured, got.flags, got.emission_hours, got.factor_ids,
            got.provisional_hours) == (want.hours, want.hours_measured, want.flags,
                                       want.emission_hours, want.factor_ids,
                                       want.provisional_hours)  # fmt: skip


def test_series_from_before_the_factor_id_field_are_detected(influx: InfluxClient) -> None:
    store = Store(influx)
    assert not store.legacy_emission_series()
    store.write(
        [
            "hourly_emissions,carrier=electricity,factor_id=tw-grid-2024,meter=m,site=p,"
            "supplier=s emissions_kgco2e=1,factor_value=0.474,provisional=true 0"
        ]
    )
    assert store.legacy_emission_series()


def point_of(measurement: str, tags: dict[str, str], fields: dict, ts: int) -> str:  # type: ignore[type-arg]
    point = Point(measurement)
    for k, v in tags.items():
        point.tag(k, v)
    for k, v in fields.items():
        point.field(k, v)
    return point.time(ts, WritePrecision.NS).to_line_protocol()


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(ids, ids, ids, st.sampled_from(sorted(CARRIERS)), st.integers(0, 2**62), finite,
       st.floats(), st.floats(min_value=0, max_value=1), st.integers(0, 10**6),
       st.lists(st.sampled_from(["rollover", "fall", "exchange", 'x"y\\z']), max_size=3),
       st.text(max_size=30), st.booleans())  # fmt: skip
def test_hand_written_rollup_lines_equal_influxdb_client_points(
    supplier: str, site: str, meter: str, carrier: str, ts: int, value: float,
    estimated: float, coverage: float, readings: int, flags: list[str], factor_id: str,
    provisional: bool,
) -> None:  # fmt: skip
    c = CARRIERS[carrier]
    tags = {"supplier": supplier, "site": site, "meter": meter, "carrier": carrier}
    hour = HourlyConsumption(supplier, site, meter, carrier, c.unit, ts, value, coverage,
                             readings, tuple(flags), estimated_consumption=estimated)  # fmt: skip
    assert consumption_line(hour) == point_of("hourly_consumption", tags, {
        c.register_field: value, c.estimated_field: estimated, "coverage": coverage,
        "estimated": hour.estimated, "flags": ",".join(flags), "readings": readings,
    }, ts)  # fmt: skip
    record = HourlyEmissions(supplier, site, meter, carrier, ts, value, factor_id, estimated,
                             provisional)  # fmt: skip
    assert emissions_line(record) == point_of("hourly_emissions", tags, {
        "emissions_kgco2e": value, "factor_id": factor_id, "factor_value": estimated,
        "provisional": provisional,
    }, ts)  # fmt: skip
