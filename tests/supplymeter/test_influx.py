from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from deploy.stack import free_port
from supplymeter.errors import RequestRejected, SourceUnavailable
from supplymeter.influx import InfluxClient, quote_literal


def test_write_and_query_round_trip_at_nanosecond_precision(influx: InfluxClient) -> None:
    influx.write_lines(
        ["m,meter=a v=1.5 1700000000123456789", "m,meter=b v=2.5 1700000000000000001"]
    )
    series = influx.query("SELECT v FROM m GROUP BY meter")
    got = {s.tags["meter"]: s.values for s in series}
    assert got == {"a": [[1700000000123456789, 1.5]], "b": [[1700000000000000001, 2.5]]}


def test_rewriting_a_point_overwrites_it(influx: InfluxClient) -> None:
    """Idempotent writes: a replayed reading cannot double-count."""
    for _ in range(3):
        influx.write_lines(["m,meter=a v=7 1700000000000000000"])
    assert influx.query("SELECT count(v), sum(v) FROM m")[0].values == [[0, 1, 7.0]]


def test_chunked_results_are_merged(influx: InfluxClient) -> None:
    lines = [f"m,meter=a v={i} {1700000000000000000 + i * 10**9}" for i in range(2500)]
    influx.write_lines(lines)
    series = influx.query("SELECT v FROM m", chunk_size=1000)
    assert len(series) == 1
    assert [row[1] for row in series[0].values] == list(range(2500))


def test_bad_query_and_bad_line_are_refused_not_retried(influx: InfluxClient) -> None:
    with pytest.raises(RequestRejected, match="found SELEC"):
        influx.query("SELEC v FROM m")
    with pytest.raises(RequestRejected, match="HTTP 400"):
        influx.write_lines(["not line protocol"])


def test_unreachable_server_is_retryable_after_bounded_attempts() -> None:
    waits: list[float] = []
    client = InfluxClient(
        url=f"http://127.0.0.1:{free_port()}", database="x", retries=3, sleep=waits.append
    )
    with pytest.raises(SourceUnavailable, match="after 4 attempts") as caught:
        client.write_lines(["m v=1 1"])
    assert caught.value.retryable
    assert waits == [0.5, 1.0, 2.0]
    assert client.ping() is False


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # A tag value cannot end in a backslash in line protocol (it would escape the separator;
    # influxdb-client appends a space). Our tags are registry ids, which never do.
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(
        lambda v: not v.endswith("\\")
    )
)
def test_quoted_literals_select_exactly_the_tag(influx: InfluxClient, value: str) -> None:
    """Quotes and backslashes in a literal cannot change what a query selects."""
    influx.execute("DROP SERIES FROM q")
    influx.write_lines(
        [
            Point("q").tag("k", value).field("v", 1.0).time(1).to_line_protocol(),
            Point("q").tag("k", value + "'").field("v", 2.0).time(1).to_line_protocol(),
        ]
    )
    series = influx.query(f"SELECT v FROM q WHERE k = {quote_literal(value)}")
    assert [s.values for s in series] == [[[1, 1.0]]]
