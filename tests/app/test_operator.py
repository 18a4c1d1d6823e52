"""An operator's reads and imports on real Mosquitto and InfluxDB: a year of 15-minute
history imported from a file gives the same hours as the same readings sent live; one
meter's readings (refused ones with their reasons), its hours, and devices that publish
without being in the registry, without writing InfluxQL."""

from __future__ import annotations

import csv
import itertools
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.cli import build_parser
from collector.mqtt import make_client
from collector.payload import encode_readings, readings_topic
from collector.service import Collector
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from supplymeter.config import Config
from supplymeter.errors import ConfigError
from supplymeter.influx import InfluxClient
from supplymeter.records import Reading, datetime_to_ns
from supplymeter.store import Store
from tests.helpers import wait_until

TPE = ZoneInfo("Asia/Taipei")
KEY = ("forge-a", "plant-1", "main")  # 15-min, CT multiplier 40, rollover 100000


def run(config: Config, *argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(config, args))


def a_year(start: datetime) -> list[Reading]:
    """A year of 15-min register readings that wrap at the rollover, with quiet nights."""
    rng = random.Random(7)
    register, out = 99_000.0, []
    for k in range(365 * 96 + 1):
        ts = start + timedelta(minutes=15 * k)
        out.append(Reading(*KEY, datetime_to_ns(ts), None, energy_kwh=round(register, 3)))
        register = (register + rng.uniform(0, 0.2 if ts.hour < 6 else 6.0)) % 100_000
    return out


def hours_of(store: Store, start_ns: int, end_ns: int) -> dict[int, tuple[float, float, float]]:
    found, _ = store.hourly_consumption(start_ns, end_ns, supplier=KEY[0], site=KEY[1],
                                        meter=KEY[2])  # fmt: skip
    return {h.hour_start_ns: (h.consumption, h.estimated_consumption, h.coverage) for h in found}


def test_a_year_imported_gives_the_hours_of_the_same_data_sent_live(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    config = make_config()
    store, library = Store(influx), FactorLibrary.load()
    start = datetime(2025, 1, 1, tzinfo=TPE)
    readings = a_year(start)
    start_ns, end_ns = readings[0].ts_ns, readings[-1].ts_ns

    pub = make_client(config.mqtt, config.secrets, client_id="test-live")
    pub.connect(config.mqtt.host, config.mqtt.port)
    pub.loop_start()
    with Collector(config, client=influx) as collector:
        for i in range(0, len(readings), 1000):
            pub.publish(readings_topic(*KEY), encode_readings(readings[i : i + 1000]), qos=1)
        assert wait_until(lambda: collector.stats.readings_accepted >= len(readings), 60)
        assert collector.writer.flush(30)
    pub.loop_stop()
    pub.disconnect()
    run_rollup(config, store, start_ns, end_ns, library)
    live = hours_of(store, start_ns, end_ns)
    assert len(live) == 365 * 24

    store.delete_range(start_ns, end_ns)
    registers = tmp_path / "logger.csv"
    with registers.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ts", "energy_kwh"])
        writer.writerows(
            [datetime.fromtimestamp(r.ts_ns / 1e9, TPE).strftime("%Y-%m-%d %H:%M:%S"), r.energy_kwh]
            for r in readings
        )  # site-local, no offset
    assert run(config, "import", str(registers), "--meter", "forge-a/plant-1/main") == 0
    run_rollup(config, store, start_ns, end_ns, library)
    assert hours_of(store, start_ns, end_ns) == live
    stored = store.meter_readings(KEY, start_ns, start_ns + 1)
    assert stored[0]["source"] == "import"

    store.delete_range(start_ns, end_ns)
    intervals = tmp_path / "utility.csv"
    with intervals.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["interval_start", "interval_end", "consumption"])
        for a, b in itertools.pairwise(readings):
            step = (b.energy_kwh - a.energy_kwh) % 100_000
            writer.writerow([datetime.fromtimestamp(a.ts_ns / 1e9, TPE).isoformat(),
                             datetime.fromtimestamp(b.ts_ns / 1e9, TPE).isoformat(),
                             repr(step * 40)])  # fmt: skip
    assert run(config, "import", str(intervals), "--meter", "forge-a/plant-1/main") == 0
    run_rollup(config, store, start_ns, end_ns, library)
    imported = hours_of(store, start_ns, end_ns)
    assert imported.keys() == live.keys()
    for hour, (kwh, estimated, coverage) in live.items():
        assert imported[hour][0] == pytest.approx(kwh, abs=1e-6)
        assert imported[hour][1:] == (estimated, coverage)


def test_an_import_with_bad_rows_imports_nothing_and_lists_them(
    make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path
) -> None:
    config = make_config()
    path = tmp_path / "bad.csv"
    path.write_text("ts,energy_kwh,volume_m3\n2025-01-01T00:00:00+08:00,10,\n"
                    "yesterday,11,\n2025-01-01T00:30:00+08:00,-1,\n"
                    "2025-01-01T00:45:00+08:00,12,3\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        run(config, "import", str(path), "--meter", "forge-a/plant-1/main")
    found = caught.value.problems
    assert [(p.line, p.code) for p in found] == [
        (3, "invalid_timestamp"),
        (4, "invalid_value"),
        (5, "wrong_carrier"),
    ]
    assert Store(influx).count_readings(0, 2**62) == 0
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("interval_start,consumption\n2025-01-01T00:00,1\n2025-01-01T00:30,1\n")
    with pytest.raises(ConfigError, match="leaves a gap after the previous one"):
        run(config, "import", str(gaps), "--meter", "forge-a/plant-1/main")
    with pytest.raises(ConfigError, match="several meters have this id"):
        run(config, "import", str(gaps), "--meter", "main")


def test_operator_reads_without_influxql(
    make_config: Callable[..., Config], influx: InfluxClient,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config = make_config()
    now = datetime.now(TPE).replace(minute=0, second=0, microsecond=0)
    readings = [Reading(*KEY, datetime_to_ns(now - timedelta(minutes=15 * k)), 100 - k,
                        energy_kwh=1000.0 - k, power_kw=40.0) for k in range(8)]  # fmt: skip
    pub = make_client(config.mqtt, config.secrets, client_id="test-ops")
    pub.connect(config.mqtt.host, config.mqtt.port)
    pub.loop_start()
    with Collector(config, client=influx) as collector:
        pub.publish(readings_topic(*KEY), encode_readings(readings), qos=1)
        bad = json.dumps({"ts": now.isoformat(), "energy_kwh": -5}).encode()
        pub.publish(readings_topic(*KEY), bad, qos=1)
        pub.publish(
            readings_topic("forge-a", "plant-1", "new-press"),
            json.dumps({"ts": now.isoformat(), "energy_kwh": 5}).encode(),
            qos=1,
        )
        assert wait_until(lambda: collector.stats.messages >= 3, 30)
        assert collector.writer.flush(30)
    pub.loop_stop()
    pub.disconnect()
    capsys.readouterr()
    assert run(config, "readings", "forge-a/plant-1/main", "--since", "3h") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("forge-a/plant-1/main (electricity, kWh): 8 readings, 1 refused")
    assert out[1].split() == ["time", "status", "energy_kwh", "power_kw", "seq", "detail"]
    assert any("REJECTED invalid_value" in line and "energy_kwh cannot be negative" in line
               for line in out)  # fmt: skip
    assert f"{now:%Y-%m-%d %H:%M:%S}  stored" in "\n".join(out)
    assert run(config, "readings", "forge-a/plant-1/main", "--since", "3h", "--csv") == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert rows[0]["time"] == now.isoformat() or rows[0]["status"].startswith("REJECTED")
    assert sum(r["status"] == "stored" for r in rows) == 8

    run_rollup(config, Store(influx), datetime_to_ns(now - timedelta(hours=2)),
               datetime_to_ns(now), FactorLibrary.load())  # fmt: skip
    assert run(config, "hours", "forge-a/plant-1/main", "--since", "2h", "--csv") == 0
    hours = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [float(h["consumption_kWh"]) for h in hours] == [160.0]  # 4 kWh-steps × CT 40
    assert hours[0]["measured_kWh"] == "160.000" and hours[0]["coverage_pct"] == "100.0"

    assert run(config, "devices", "--unknown") == 0
    out = capsys.readouterr().out
    assert "1 topics from devices not in the registry" in out
    assert "energy/v1/forge-a/plant-1/new-press/readings  unknown_meter" in out
    assert '"energy_kwh": 5' in out
