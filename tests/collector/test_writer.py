from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.payload import GatewayStatus
from collector.writer import (
    BatchWriter,
    reading_line,
    reading_point,
    rejection_line,
    status_line,
)
from deploy.stack import InfluxDB, free_port
from supplymeter.influx import InfluxClient
from supplymeter.records import Reading, Rejection


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
    line = status_line(GatewayStatus("s", "p", "gw1", "offline", 10, None))
    assert line == 'gateway_status,gateway=gw1,site=p,supplier=s online=false,state="offline" 10'


def test_influxdb_outage_holds_lines_and_writes_them_when_it_returns(tmp_path: Path) -> None:
    server = InfluxDB(root=tmp_path, port=free_port(), rpc_port=free_port())
    client = InfluxClient(url=server.url, database="outage", retries=0)
    lines = [f"m v={i} {i}" for i in range(1, 101)]
    with BatchWriter(client=client, batch_size=30, flush_interval_s=0.05, retry_wait_s=0.1) as w:
        w.put(lines)
        assert not w.flush(timeout_s=0.5)  # nothing to write to: held, not dropped
        assert w.backlog == 100 and w.unavailable_since is not None
        server.start(detach=False)
        try:
            client.ensure_database()
            assert w.flush(timeout_s=20)
            assert w.written == 100 and w.refused == 0 and w.unavailable_since is None
            assert client.query("SELECT count(v) FROM m")[0].values[0][1] == 100
        finally:
            server.stop()


def test_a_refused_line_costs_only_itself(influx: InfluxClient) -> None:
    refused: list[str] = []
    with BatchWriter(
        client=influx, batch_size=10, on_refused=lambda line, why: refused.append(line)
    ) as w:
        w.put(["m v=1 1", "m v=2 2", 'm v="text" 3', "m v=4 4"])  # type conflict on line 3
        assert w.flush(timeout_s=20)
    assert refused == ['m v="text" 3'] and w.written == 3
    assert [r[1] for r in influx.query("SELECT v FROM m")[0].values] == [1.0, 2.0, 4.0]


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
    st.lists(maybe_float, min_size=8, max_size=8).filter(lambda v: any(x is not None for x in v)),
)  # fmt: skip
def test_hand_written_serializer_equals_influxdb_client_point(
    supplier: str, site: str, meter: str, ts_ns: int, seq: int | None, values: list
) -> None:  # type: ignore[type-arg]
    reading = Reading(supplier, site, meter, ts_ns, seq, *values)
    assert reading_line(reading) == reading_point(reading).to_line_protocol()
