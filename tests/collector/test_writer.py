from __future__ import annotations

from pathlib import Path

from collector.writer import BatchWriter
from deploy.stack import InfluxDB, free_port
from supplymeter.influx import InfluxClient


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


def test_a_refused_line_costs_only_itself_and_keeps_its_source(influx: InfluxClient) -> None:
    refused: list[tuple[str, str]] = []
    with BatchWriter(
        client=influx, batch_size=10,
        on_refused=lambda line, why, source: refused.append((line, source)),
    ) as w:  # fmt: skip
        w.put(["m v=1 1", "m v=2 2"], source="energy/v1/a/p/m1/readings")
        w.put(['m v="text" 3', "m v=4 4"], source="energy/v1/b/p/m2/readings")  # type conflict
        assert w.flush(timeout_s=20)
    assert refused == [('m v="text" 3', "energy/v1/b/p/m2/readings")] and w.written == 3
    assert [r[1] for r in influx.query("SELECT v FROM m")[0].values] == [1.0, 2.0, 4.0]
