"""Dashboards: the push against Grafana's documented HTTP API, and every panel query against a
real InfluxDB holding five simulated weeks up to now."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.service import Collector
from dashboards.macros import panel_range, substitute
from dashboards.model import all_dashboards, panel_queries
from dashboards.push import connect, export, push
from dashboards.render import render_all
from processing.accounting.export import ExportResult, previous_month
from processing.accounting.runner import export_month
from processing.accounting.scope3 import Month
from processing.alerts import Event, IncidentBook, alert_lines
from processing.detect import Condition
from processing.emissions import FactorLibrary
from processing.jobs import run_rollup
from simulators.run import simulate
from supplymeter.config import Config, FaultSettings, SimulatorSettings, load_config
from supplymeter.errors import ConfigError
from supplymeter.influx import InfluxClient
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store
from tests.conftest import pointed_at, with_settings, write_config
from tests.dashboards.consistency import compare, undeclared
from tests.helpers import wait_until

TPE = ZoneInfo("Asia/Taipei")
TOKEN = "glsa_test_token"


class FakeGrafana(BaseHTTPRequestHandler):
    """Grafana's documented endpoints for datasources, folders, dashboards and search, with
    bearer-token auth and dashboard versions; records every call."""

    state: dict[str, Any]

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        st = self.state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        st["calls"].append((method, self.path))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(401, {"message": "Unauthorized"})
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if method == "GET" and parts[:3] == ["api", "datasources", "uid"]:
            ds = st["datasources"].get(parts[3])
            return self._reply(200, ds) if ds else self._reply(404, {"message": "not found"})
        if method == "POST" and path == "/api/datasources":
            st["datasources"][body["uid"]] = body
            return self._reply(200, {"datasource": body, "message": "Datasource added"})
        if method == "PUT" and parts[:3] == ["api", "datasources", "uid"]:
            st["datasources"][parts[3]] = body
            return self._reply(200, {"message": "Datasource updated"})
        if method == "GET" and parts[:2] == ["api", "folders"]:
            folder = st["folders"].get(parts[2])
            return self._reply(200, folder) if folder else self._reply(404, {"message": "nf"})
        if method == "POST" and path == "/api/folders":
            st["folders"][body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 1}
            return self._reply(200, st["folders"][body["uid"]])
        if method == "GET" and parts[:3] == ["api", "dashboards", "uid"]:
            found = st["dashboards"].get(parts[3])
            return self._reply(200, found) if found else self._reply(404, {"message": "nf"})
        if method == "POST" and path == "/api/dashboards/db":
            dash = body["dashboard"]
            old = st["dashboards"].get(dash["uid"])
            if old and not body.get("overwrite"):
                return self._reply(412, {"status": "version-mismatch"})
            version = old["dashboard"]["version"] + 1 if old else 1
            stored = {**dash, "id": 7, "version": version}
            st["dashboards"][dash["uid"]] = {
                "dashboard": stored, "meta": {"folderUid": body.get("folderUid")}}  # fmt: skip
            return self._reply(200, {"status": "success", "uid": dash["uid"], "version": version})
        if method == "GET" and path == "/api/search":
            return self._reply(200, [{"uid": u, "type": "dash-db"} for u in st["dashboards"]])
        return self._reply(404, {"message": f"no route {method} {path}"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")


@pytest.fixture
def grafana() -> Iterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"calls": [], "datasources": {}, "folders": {}, "dashboards": {}}
    handler = type("Handler", (FakeGrafana,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def grafana_config(tmp_path: Path, url: str, **grafana: object) -> Config:
    from tests.conftest import ROOT

    env = {"SUPPLYMETER_GRAFANA_TOKEN": TOKEN, "SUPPLYMETER_INFLUXDB_TOKEN": "influx-t"}
    config = load_config(ROOT / "supplymeter.toml", env)
    return with_settings(config, "grafana", url=url, **grafana)


def writes(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [c for c in state["calls"] if c[0] in ("POST", "PUT")]


def test_push_creates_then_changes_nothing_then_updates_with_a_new_version(
    grafana: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, state = grafana
    config = grafana_config(tmp_path, url)
    api = connect(config)
    plan = push(config, api, dry_run=True)
    assert all(line.endswith("create") for line in plan) and writes(state) == []
    plan = push(config, api)
    assert plan == ["datasource supplymeter-influxdb: create", "folder supplymeter: create",
                    "dashboard sm-overview: create", "dashboard sm-supplier: create",
                    "dashboard sm-scope3: create", "dashboard sm-ingest: create"]  # fmt: skip
    ds = state["datasources"]["supplymeter-influxdb"]
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token influx-t"}
    assert {d["meta"]["folderUid"] for d in state["dashboards"].values()} == {"supplymeter"}
    before = len(writes(state))
    assert all(line.endswith("unchanged") for line in push(config, api))  # idempotent
    assert len(writes(state)) == before
    changed = grafana_config(tmp_path, url, pathway_pct_per_year=7.0, datasource_url="http://x")
    plan = push(changed, connect(changed))
    assert "datasource supplymeter-influxdb: update" in plan
    assert state["dashboards"]["sm-scope3"]["dashboard"]["version"] == 1  # pathway is data
    changed = with_settings(changed, "jobs", timezone="Asia/Tokyo")
    plan = push(changed, connect(changed))
    assert "dashboard sm-supplier: update" in plan
    assert state["dashboards"]["sm-supplier"]["dashboard"]["version"] == 2


def test_push_needs_a_token_and_grafana_refusal_is_reported(
    grafana: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, _ = grafana
    from tests.conftest import ROOT

    config = with_settings(load_config(ROOT / "supplymeter.toml", {}), "grafana", url=url)
    with pytest.raises(ConfigError, match="SUPPLYMETER_GRAFANA_TOKEN"):
        connect(config)
    wrong = load_config(ROOT / "supplymeter.toml", {"SUPPLYMETER_GRAFANA_TOKEN": "nope"})
    wrong = with_settings(wrong, "grafana", url=url)
    from supplymeter.errors import SourceUnavailable

    with pytest.raises(SourceUnavailable, match="Grafana refused"):
        push(wrong, connect(wrong))


def test_export_for_file_provisioning(tmp_path: Path) -> None:
    from tests.conftest import ROOT

    config = load_config(ROOT / "supplymeter.toml", {})
    paths = export(config, tmp_path)
    uids = sorted(json.loads(p.read_text())["uid"] for p in paths)
    assert uids == ["sm-ingest", "sm-overview", "sm-scope3", "sm-supplier"]
    shipped = sorted(p.name for p in (ROOT / "deploy/compose/grafana/dashboards").glob("*.json"))
    assert shipped == sorted(p.name for p in paths), "run `supplymeter dashboards export`"
    for p in paths:
        assert p.read_text() == (ROOT / "deploy/compose/grafana/dashboards" / p.name).read_text()


# --- every panel on real data ----------------------------------------------------------------

REGISTRY = """
[[suppliers]]
id = "cnc-d"
kind = "machining"
allocation = { method = "physical", share = 0.65 }
  [[suppliers.sites]]
  id = "tainan-1"
  gateway = "gw1"
  contract_capacity_kw = 750
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    simulation = { mean_load = 310, base_fraction = 0.12, equipment = "cnc", ac_fraction = 0.2 }
    [[suppliers.sites.meters]]
    id = "gas"
    carrier = "natural_gas"
    interval_s = 3600
    simulation = { mean_load = 20 }
    [[suppliers.sites.meters]]
    id = "rooftop-pv"
    carrier = "electricity"
    role = "pv"
    simulation = { mean_load = 420 }
    [[suppliers.sites.meters]]
    id = "grid"
    carrier = "electricity"
    role = "grid"
    [[suppliers.sites.meters]]
    id = "steam"
    carrier = "steam"
    simulation = { mean_load = 300 }
"""


@pytest.fixture(scope="module")
def filled(
    tmp_path_factory: pytest.TempPathFactory, influx_server: Any
) -> Iterator[tuple[Config, InfluxClient, int, int, dict[str, ExportResult]]]:
    """Five weeks up to now and two days a year ago, through broker, collector (with its
    self-metrics), rollup, monthly export and an alert."""
    from deploy.stack import Mosquitto, free_port

    tmp = tmp_path_factory.mktemp("dash")
    broker = Mosquitto(root=tmp / "mqtt", port=free_port())
    broker.start(detach=False)
    client = InfluxClient(url=influx_server.url, database="dashboards")
    client.ensure_database()
    try:
        config = pointed_at(load_config(write_config(tmp / "cfg", REGISTRY), {}), broker, client)
        config = with_settings(config, "collector", stats_interval_s=0.5)
        config = with_settings(config, "grafana", pathway_base_tco2e=100.0)
        now = time.time_ns()
        end = datetime.fromtimestamp(now // 10**9, TPE).replace(minute=0, second=0)
        start = end - timedelta(days=35)
        # Malformed messages for the rejects panel, meter replacements for the quality issues.
        settings = SimulatorSettings(
            faults=FaultSettings(malformed_rate=0.05, replacement_per_month=2.0)
        )
        with Collector(config, client=client) as collector:
            sims = [simulate(config, start=start, end=end, seed=3, settings=settings),
                    simulate(config, start=end - timedelta(days=367),
                             end=end - timedelta(days=365), seed=4)]  # fmt: skip
            total = sum(s.messages for s in sims)
            assert wait_until(lambda: collector.stats.reading_messages >= total, 120)
            assert collector.writer.flush(60)
            time.sleep(1.2)  # at least two self-metrics points
        library = FactorLibrary.load()
        run_rollup(config, Store(client), datetime_to_ns(start), datetime_to_ns(end), library)
        run_rollup(config, Store(client), datetime_to_ns(end - timedelta(days=367)),
                   datetime_to_ns(end - timedelta(days=365)), library)  # fmt: skip
        last = previous_month(now, "Asia/Taipei")
        this = Month(datetime.fromtimestamp(now / 1e9, TPE).year,
                     datetime.fromtimestamp(now / 1e9, TPE).month)  # fmt: skip
        a_year_ago = Month(this.year - 1, this.month)
        exports = {str(month): export_month(config, Store(client), month, tmp / "exports",
                                            library)
                   for month in (a_year_ago, last, this)}  # fmt: skip
        condition = Condition("spike", "cnc-d", "tainan-1", "main", 30.0, 10.0, "kWh",
                              now - 15 * 60 * 10**9, now, "+200%")  # fmt: skip
        [event] = IncidentBook(tmp / "b.json").update([condition], now, 24, 60, 3)
        client.write_lines(alert_lines(Event("open", now, event.incidents)))
        yield config, client, datetime_to_ns(start), time.time_ns(), exports
    finally:
        client.execute("DROP DATABASE dashboards")
        broker.stop()


def test_every_panel_query_runs_and_returns_data(
    filled: tuple[Config, InfluxClient, int, int, dict[str, ExportResult]],
) -> None:
    config, client, _, now, _ = filled
    # The data ends at the start of this hour. A panel of "today" or "this month" is viewed
    # there: in the first hour of a day (Taipei) today has no complete hour yet, and Grafana
    # rightly shows no data.
    data_end = now - now % (3600 * 10**9)
    failures = []
    checked = 0
    for dashboard in all_dashboards(config):
        start = now - 400 * 86_400 * 10**9  # wider than any dashboard's default range
        variables = {v["name"]: ["$__all"] for v in dashboard["templating"]["list"]}
        for title, query, panel in panel_queries(dashboard):
            view = data_end if panel and panel.get("timeFrom") in ("now/d", "now/M") else now
            lo, hi = panel_range(panel, start, view, "Asia/Taipei") if panel else (start, now)
            sent = substitute(query, lo, hi, "5m", variables)
            try:
                result = client.query(sent)
            except Exception as exc:  # a query InfluxDB refuses is a failing panel
                failures.append(f"{dashboard['uid']} / {title}: {exc}")
                continue
            if not any(s.values for s in result):
                failures.append(f"{dashboard['uid']} / {title}: no data for {sent}")
            checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 25


def test_panels_with_one_supplier_site_and_meter_selected(
    filled: tuple[Config, InfluxClient, int, int, dict[str, ExportResult]],
) -> None:
    config, client, start, now, _ = filled
    [supplier] = [d for d in all_dashboards(config) if d["uid"] == "sm-supplier"]
    [variable] = [v for v in supplier["templating"]["list"] if v["name"] == "supplier"]
    assert variable["current"]["value"] == "cnc-d" and not variable["includeAll"]
    chosen = {"supplier": ["cnc-d"], "site": ["tainan-1"], "meter": ["$__all"]}
    [power] = [p for p in supplier["panels"] if p["title"].startswith("$supplier — power")]
    result = client.query(substitute(power["targets"][0]["query"], start, now, "1h", chosen))
    # consumption meters only, each named by supplier, site and meter: never averaged
    assert [s.tags for s in result] == [{"supplier": "cnc-d", "site": "tainan-1", "meter": "main"}]
    assert len(result[0].values) > 24 * 30


def test_every_month_figure_on_every_dashboard_equals_the_export(
    filled: tuple[Config, InfluxClient, int, int, dict[str, ExportResult]],
) -> None:
    config, client, _, now, exports = filled
    failures, compared = compare(config, Store(client), now, exports)
    assert not failures, "\n".join(failures)
    assert compared >= 20


def test_a_month_panel_without_its_export_figure_is_found(example_config: Config) -> None:
    from dashboards import model

    assert undeclared(example_config) == []

    def extra(config: Config) -> model.Built:
        b = model.Builder("ds")
        b.add("Gas this month", "bargauge", [model.q("A", 'SELECT sum("volume_m3") FROM x')],
              timeFrom="now/M")  # fmt: skip
        return model._dashboard("sm-extra", "extra", b)

    original = model.BUILDERS
    model.BUILDERS = (*original, extra)
    try:
        assert undeclared(example_config) == ["sm-extra / Gas this month"]
    finally:
        model.BUILDERS = original


def test_render_writes_one_png_per_dashboard(
    filled: tuple[Config, InfluxClient, int, int, dict[str, ExportResult]], tmp_path: Path
) -> None:
    config, client, start, now, _ = filled
    paths = render_all(config, Store(client), start, now, tmp_path)
    assert [p.name for p in paths] == ["sm-overview.png", "sm-supplier.png", "sm-scope3.png",
                                       "sm-ingest.png"]  # fmt: skip
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_dashboards_are_stable_and_uniquely_identified(example_config: Config) -> None:
    first, second = all_dashboards(example_config), all_dashboards(example_config)
    assert first == second
    uids = [d["uid"] for d in first]
    assert len(set(uids)) == len(uids)
    for d in first:
        ids = [p["id"] for p in d["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for p in d["panels"]:
            assert p["datasource"]["uid"] == example_config.grafana.datasource_uid
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


def test_every_panel_says_its_unit_in_words_and_why_it_may_be_empty(
    example_config: Config,
) -> None:
    from dashboards.render import unit_words

    for dashboard in all_dashboards(example_config):
        for panel in dashboard["panels"]:
            defaults = panel["fieldConfig"]["defaults"]
            where = f"{dashboard['uid']} / {panel['title']}"
            assert defaults.get("noValue", "").strip(), f"{where}: no note for an empty panel"
            unit = defaults.get("unit", "")
            if panel["type"] not in ("table", "stat"):  # a stat maps values to words
                assert unit and unit_words(unit) not in ("", unit.split(":")[0]), where
                assert unit_words(unit) in (
                    "kWh",
                    "kW",
                    "m³",
                    "kg",
                    "kgCO2e",
                    "tCO2e",
                    "%",
                    "count",
                    "seconds",
                    "messages per second",
                ), where
