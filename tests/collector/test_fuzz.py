"""Hostile input through the collector's message handler, into a real InfluxDB."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.service import Collector
from supplymeter.config import Config
from supplymeter.influx import InfluxClient

GOOD_TOPIC = b"energy/v1/forge-a/plant-1/main/readings"

segment = st.sampled_from(
    ["forge-a", "plant-1", "main", "gas", "gateway", "gw1", "readings", "status", "+", "#", "",
     "ÄÖ", "a/b", "\x00", "x" * 70, "cnc-d", "CNC"]
) | st.text(max_size=10)  # fmt: skip
topics = st.one_of(
    st.lists(segment, min_size=0, max_size=7).map(lambda s: ("energy/v1/" + "/".join(s)).encode()),
    st.binary(max_size=80),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(), st.text(max_size=30),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(["ts", "seq", "energy_kwh", "power_kw", "volume_m3", "power_factor",
                        "readings", "state", "voltage_v"])  # fmt: skip
payloads = st.one_of(
    st.binary(max_size=200),
    values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(keys, values, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b'{"ts": 1788220800000, "energy_kwh": NaN}', b"[" * 3000,
                     b'{"readings": [' + b'{"ts": 1788220800000, "energy_kwh": 1},' * 50 + b"1]}",
                     b'{"ts": 1788220800000, "energy_kwh": 1e400}']),
)  # fmt: skip


@pytest.fixture
def fuzz_config(make_config: Callable[..., Config]) -> Config:
    """Made once per test; every example builds a fresh collector on it."""
    return make_config()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=5))
def test_hostile_messages_never_crash_and_never_vanish(
    fuzz_config: Config, influx: InfluxClient, messages: list[tuple[bytes, bytes]]
) -> None:
    collector = Collector(fuzz_config, client=influx)
    for i, (topic, payload) in enumerate(messages):
        before = collector.writer.enqueued
        collector.handle(topic, payload)
        assert collector.writer.enqueued > before  # stored, or recorded as a rejection
        good = json.dumps({"ts": 1_788_220_800_000 + i * 1000, "energy_kwh": 1.0 + i}).encode()
        accepted = collector.stats.readings_accepted
        collector.handle(GOOD_TOPIC, good)  # valid traffic keeps flowing
        assert collector.stats.readings_accepted == accepted + 1
    assert "internal_error" not in collector.stats.rejected
    with collector.writer:
        assert collector.writer.flush(30)
    # Every line — readings, statuses, rejections of any input — was valid for InfluxDB.
    assert collector.writer.refused == 0
    assert collector.writer.written == collector.writer.enqueued
