from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.payload import (
    Limits,
    ReadingsTopic,
    StatusTopic,
    encode_readings,
    format_ts,
    parse_readings,
    parse_status,
    parse_timestamp,
    parse_topic,
    resolve_meter,
)
from supplymeter.config import Config, MeterRef
from supplymeter.errors import BadReading
from supplymeter.records import Reading

NOW_NS = 1_790_000_000 * 10**9  # 2026-09-21
LIMITS = Limits()


@pytest.fixture(scope="module")
def elec(example_config: Config) -> MeterRef:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None
    return ref


@pytest.fixture(scope="module")
def gas(example_config: Config) -> MeterRef:
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "carburizing-gas")
    assert ref is not None
    return ref


def code_of(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(BadReading) as caught:
        fn(*args)
    return caught.value.code


# --- topics -------------------------------------------------------------------------------


def test_topics_split_into_ids() -> None:
    assert parse_topic("energy/v1/forge-a/taichung-1/main/readings") == ReadingsTopic(
        "forge-a", "taichung-1", "main"
    )
    assert parse_topic("energy/v1/forge-a/taichung-1/gateway/gw1/status") == StatusTopic(
        "forge-a", "taichung-1", "gw1"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "energy/v2/a/b/c/readings",
        "energy/v1/a/b/readings",
        "energy/v1/a/b/c/d/readings",
        "energy/v1/A/b/c/readings",
        "energy/v1/a/b/c/status",
        "energy/v1/a/b/+/readings",
        "energy/v1/a//c/readings",
        "energy/v1/a/b/gateway/gw/state",
        "energy/v1/ä/b/c/readings",
        "energy/v1/" + "a" * 65 + "/b/c/readings",
    ],
)
def test_malformed_topics_are_invalid_topic(topic: str) -> None:
    assert code_of(parse_topic, topic) == "invalid_topic"


def test_unknown_ids_are_named_by_level(example_config: Config) -> None:
    registry = example_config.registry
    assert code_of(resolve_meter, ReadingsTopic("nobody", "x", "y"), registry) == "unknown_supplier"
    assert code_of(resolve_meter, ReadingsTopic("heat-c", "x", "y"), registry) == "unknown_site"
    topic = ReadingsTopic("heat-c", "kaohsiung-1", "y")
    assert code_of(resolve_meter, topic, registry) == "unknown_meter"


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        ("2026-11-22T08:15:00Z", 1_795_335_300 * 10**9),
        ("2026-11-22T16:15:00+08:00", 1_795_335_300 * 10**9),
        ("2026-11-22t08:15:00.5z", 1_795_335_300 * 10**9 + 500_000_000),
        ("2026-11-22T08:15:00.123456789Z", 1_795_335_300 * 10**9 + 123_456_789),
        (1_795_335_300_123, 1_795_335_300_123 * 10**6),
    ],
)
def test_timestamps_keep_device_time_at_full_precision(text: str | int, expected_ns: int) -> None:
    assert parse_timestamp(text) == expected_ns


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T08:15:00",  # no offset: local time of what?
        "2026-11-22",
        "2026-02-30T00:00:00Z",
        "2026-11-22T08:15:60Z",
        "2026-11-22T08:15:00+25:00",
        "1970-01-01T00:00:00Z",  # gateway clock never set
        1_795_335_300.5,
        True,
        None,
        [],
        0,
        "2026-11-22T08:15:00.1234567890Z",
    ],
)
def test_bad_timestamps_are_refused(value: object) -> None:
    assert code_of(parse_timestamp, value) == "invalid_timestamp"


@given(st.integers(min_value=946_684_800 * 10**9, max_value=4_102_444_799 * 10**9))
def test_formatted_timestamps_parse_back_exactly(ts_ns: int) -> None:
    assert parse_timestamp(format_ts(ts_ns)) == ts_ns


# --- payloads -------------------------------------------------------------------------------


def test_single_reading_and_batch(elec: MeterRef) -> None:
    one = b'{"ts": "2026-09-01T00:00:00Z", "seq": 7, "energy_kwh": 123.5, "power_kw": 41}'
    readings, rejected = parse_readings(one, elec, NOW_NS, LIMITS)
    assert rejected == []
    assert readings == [
        Reading("heat-c", "kaohsiung-1", "main", 1_788_220_800 * 10**9, 7, energy_kwh=123.5,
                power_kw=41.0)
    ]  # fmt: skip
    batch = {
        "readings": [{"ts": 1_788_220_800_000 + i * 900_000, "energy_kwh": i} for i in range(3)]
    }
    readings, rejected = parse_readings(json.dumps(batch).encode(), elec, NOW_NS, LIMITS)
    assert [r.energy_kwh for r in readings] == [0.0, 1.0, 2.0] and rejected == []


def test_bad_reading_in_a_batch_costs_only_itself(elec: MeterRef) -> None:
    batch = {"readings": [
        {"ts": "2026-09-01T00:00:00Z", "energy_kwh": 1.0},
        {"ts": "2026-09-01T00:15:00Z", "energy_kwh": "2.0"},
        {"ts": "2026-09-01T00:30:00Z", "energy_kwh": 3.0},
    ]}  # fmt: skip
    readings, rejected = parse_readings(json.dumps(batch).encode(), elec, NOW_NS, LIMITS)
    assert [r.energy_kwh for r in readings] == [1.0, 3.0]
    assert [r.code for r in rejected] == ["invalid_value"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": NaN}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": Infinity}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": 1e999}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": ' + b"9" * 400 + b"}", "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": -1}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": true}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kwh": 100000}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "power_factor": 1.5}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "seq": -1, "energy_kwh": 1}', "invalid_value"),
        (b'{"ts": "2026-09-01T00:00:00Z", "volume_m3": 1}', "wrong_carrier"),
        (b'{"ts": "2026-09-01T00:00:00Z", "energy_kvarh": 1}', "unknown_field"),
        (b'{"ts": "2026-09-01T00:00:00Z"}', "no_quantity"),
        (b'{"energy_kwh": 1}', "missing_field"),
        (b'{"ts": "2030-01-01T00:00:00Z", "energy_kwh": 1}', "future_timestamp"),
        (b"42", "invalid_payload"),
        (b'{"readings": []}', "invalid_payload"),
        (b'{"readings": {}}', "invalid_payload"),
        (b'{"readings": [1], "extra": 1}', "invalid_payload"),
    ],
)
def test_protocol_violations_carry_a_reason(elec: MeterRef, payload: bytes, code: str) -> None:
    try:
        readings, rejected = parse_readings(payload, elec, NOW_NS, LIMITS)
    except BadReading as exc:
        assert exc.code == code
    else:
        assert readings == [] and [r.code for r in rejected] == [code]


def test_size_limits(elec: MeterRef) -> None:
    limits = Limits(max_payload_bytes=100, max_batch_readings=2)
    assert code_of(parse_readings, b" " * 101, elec, NOW_NS, limits) == "payload_too_large"
    batch = json.dumps({"readings": [{"ts": 1_788_220_800_000, "energy_kwh": 1}] * 3}).encode()
    assert code_of(parse_readings, batch, elec, NOW_NS, Limits(max_batch_readings=2)) == (
        "batch_too_large"
    )


def test_gas_meter_takes_volume(gas: MeterRef) -> None:
    readings, _ = parse_readings(b'{"ts": 1788220800000, "volume_m3": 61000.25}', gas, NOW_NS,
                                 LIMITS)  # fmt: skip
    assert readings[0].volume_m3 == 61000.25


def test_status_payloads(example_config: Config) -> None:
    registry = example_config.registry
    topic = StatusTopic("heat-c", "kaohsiung-1", "gw1")
    status = parse_status(b'{"state": "offline"}', topic, registry, NOW_NS, LIMITS)
    assert (status.state, status.received_ns, status.ts_ns) == ("offline", NOW_NS, None)
    wrong_gw = StatusTopic("heat-c", "kaohsiung-1", "gw9")
    assert code_of(parse_status, b'{"state":"online"}', wrong_gw, registry, NOW_NS, LIMITS) == (
        "unknown_gateway"
    )
    assert code_of(parse_status, b'{"state":"up"}', topic, registry, NOW_NS, LIMITS) == (
        "invalid_payload"
    )


# --- properties -----------------------------------------------------------------------------

finite = st.floats(min_value=0, max_value=99_999.999, allow_nan=False, allow_infinity=False)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=NOW_NS - LIMITS.max_past_ns, max_value=NOW_NS), finite,
            st.none() | st.integers(min_value=0, max_value=2**53),
        ),
        min_size=1, max_size=20,
    )
)  # fmt: skip
def test_encoded_readings_parse_back_unchanged(elec: MeterRef, rows: list) -> None:  # type: ignore[type-arg]
    readings = [Reading(*elec.key, ts, seq, energy_kwh=kwh) for ts, kwh, seq in rows]
    parsed, rejected = parse_readings(encode_readings(readings), elec, NOW_NS, LIMITS)
    assert rejected == [] and parsed == readings


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
reading_keys = st.sampled_from(["ts", "seq", "energy_kwh", "power_kw", "volume_m3", "readings"])


@settings(max_examples=300)
@given(
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(reading_keys, json_values, max_size=5).map(lambda v: json.dumps(v).encode())
)
def test_any_payload_parses_or_is_rejected_with_a_code(elec: MeterRef, payload: bytes) -> None:
    try:
        readings, rejected = parse_readings(payload, elec, NOW_NS, LIMITS)
    except BadReading as exc:
        assert exc.code and exc.detail
        return
    for r in readings:
        assert all(math.isfinite(v) for v in r.quantities().values())
        assert r.energy_kwh is None or 0 <= r.energy_kwh < 100_000
    assert all(r.code for r in rejected)


@given(st.text(max_size=120))
def test_any_topic_parses_or_is_invalid_topic(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except BadReading as exc:
        assert exc.code == "invalid_topic"
    else:
        assert topic.startswith("energy/v1/") and "+" not in topic and "#" not in topic
        assert isinstance(parsed, ReadingsTopic | StatusTopic)


def test_clock_resets_impossible_power_and_huge_numbers_are_refused_with_a_reason(
    elec: MeterRef,
) -> None:
    """A gateway whose clock reset to 2000-01-01, a power beyond the connection, a sequence
    number InfluxDB cannot store, a 5,000-digit number: each refused with its code, never an
    internal error."""

    def code(body: dict | bytes) -> str:  # type: ignore[type-arg]
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        readings, rejected = [], []
        try:
            readings, rejected = parse_readings(payload, elec, NOW_NS, LIMITS)
        except BadReading as exc:
            return exc.code
        assert not readings
        return rejected[0].code

    assert code({"ts": "2000-01-01T00:00:00Z", "energy_kwh": 1.0}) == "stale_timestamp"
    capacity = elec.site.contract_capacity_kw
    assert capacity is not None
    ts = NOW_NS // 10**6
    assert code({"ts": ts, "energy_kwh": 1.0, "power_kw": 11 * capacity}) == "invalid_value"
    assert code({"ts": ts, "energy_kwh": 1.0, "seq": 2**63}) == "invalid_value"
    assert code({"ts": ts, "energy_kwh": 1.0, "voltage_v": 1e308}) == "invalid_value"
    assert code(b'{"ts": 1, "energy_kwh": 1' + b"0" * 5000 + b"}") == "invalid_json"


def test_a_batch_of_bad_readings_is_one_rejection_naming_them(elec: MeterRef) -> None:
    ts = NOW_NS // 10**6
    batch = [{}] * 9_998 + [{"ts": ts, "energy_kwh": 1.0}, {"ts": "x", "energy_kwh": 1.0}]
    readings, rejected = parse_readings(json.dumps({"readings": batch}).encode(), elec, NOW_NS,
                                        LIMITS)  # fmt: skip
    assert len(readings) == 1 and len(rejected) == 1
    [one] = rejected
    assert one.code == "missing_field"
    assert "9999 of 10000 readings" in one.detail and "missing_field: 0-9997" in one.detail
    assert "invalid_timestamp: 9999" in one.detail


def test_a_gateway_status_from_the_future_is_refused(example_config: Config) -> None:
    registry = example_config.registry
    topic = StatusTopic("heat-c", "kaohsiung-1", "gw1")
    body = json.dumps({"state": "online", "ts": "2099-01-01T00:00:00Z"}).encode()
    assert code_of(parse_status, body, topic, registry, NOW_NS, LIMITS) == "future_timestamp"
    body = json.dumps({"state": "online", "ts": "2000-01-01T00:00:00Z"}).encode()
    assert code_of(parse_status, body, topic, registry, NOW_NS, LIMITS) == "stale_timestamp"


def _outcome(payload: bytes, ref: MeterRef) -> object:
    try:
        readings, rejected = parse_readings(payload, ref, NOW_NS, LIMITS)
    except BadReading as exc:
        return exc.code
    return readings, [r.code for r in rejected]


@settings(max_examples=400)
@given(
    payload=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(reading_keys, json_values, max_size=5).map(
        lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    | st.fixed_dictionaries({"ts": st.integers(0, 2**70) | st.floats(),
                             "seq": st.integers(-1, 2**70),
                             "energy_kwh": st.integers(-(2**70), 2**70) | st.floats()}
                            ).map(lambda v: json.dumps(v).encode())
    | st.sampled_from([b'{"ts": 1788220800000, "energy_kwh": NaN}', b'{"a": 1, "a": 2}',
                       b"\xef\xbb\xbf{}", b'"\\ud800"', b"[1,]", b'{"ts": "\x01"}', b"[" * 2000,
                       b'{"ts": 1788220800000, "energy_kwh": 1' + b"0" * 5000 + b"}"])
)  # fmt: skip
def test_the_fast_json_decoder_decides_exactly_as_the_standard_library(
    elec: MeterRef, payload: bytes
) -> None:
    """orjson on the hot path: for any payload, the same readings or the same reason code as
    the standard library's decoder (which still names the reason when orjson refuses)."""
    from unittest import mock

    import orjson

    fast = _outcome(payload, elec)

    def refuse(_: bytes) -> object:
        raise orjson.JSONDecodeError("forced", "", 0)

    with mock.patch.object(orjson, "loads", refuse):
        careful = _outcome(payload, elec)
    assert fast == careful
