"""The dashboards, as Grafana's dashboard JSON model built from the config and registry.

Plain dicts (Grafana's JSON model, schemaVersion 39): the grafana-foundation-sdk would add a
dependency for builders of the same JSON, and the model must be inspected by the tests anyway.
Every dashboard and panel has a stable ``uid``/``id`` so a push updates in place. Queries are
InfluxQL on the ``[grafana] datasource_uid`` datasource; they use Grafana's ``$timeFilter``
and ``$__interval`` macros and the dashboards' template variables.

============================  ===============================================================
dashboard (uid)               panels
============================  ===============================================================
Programme overview            electricity today and month to date by supplier, kgCO2e month
(``sm-overview``)             to date against the same month last year, gateways online,
                              data completeness, open alerts
Supplier detail               power, hourly energy, gas and water, PV generation and export
(``sm-supplier``)             (self-consumption), hourly load heatmap; supplier → site → meter
                              variables; alerts as annotations
Scope 3 (``sm-scope3``)       monthly tCO2e by supplier, location- and market-based; allocated
                              share; total against the reduction pathway
Ingest health (``sm-ingest``) messages/s, rejects by reason, write latency, backlog
============================  ===============================================================
"""

from __future__ import annotations

from typing import Any

from supplymeter import store as schema
from supplymeter.config import Config

Panel = dict[str, Any]
Dashboard = dict[str, Any]

SUPPLIER = '"supplier" =~ /^$supplier$/'
SITE = '"site" =~ /^$site$/'
METER = '"meter" =~ /^$meter$/'


def q(ref: str, query: str, fmt: str = "time_series", alias: str = "") -> dict[str, Any]:
    target = {"refId": ref, "query": query, "rawQuery": True, "resultFormat": fmt}
    if alias:
        target["alias"] = alias
    return target


class Builder:
    """Lays panels out on Grafana's 24-column grid and numbers them."""

    def __init__(self, datasource_uid: str, tz: str = "Asia/Taipei") -> None:
        self.ds = {"type": "influxdb", "uid": datasource_uid}
        self.tz = tz
        self.panels: list[Panel] = []
        self.x = self.y = self.row_h = 0

    def add(self, title: str, kind: str, targets: list[dict[str, Any]], w: int = 12,
            h: int = 8, unit: str = "", **extra: Any) -> Panel:  # fmt: skip
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        panel: Panel = {
            "id": len(self.panels) + 1,
            "title": title,
            "type": kind,
            "datasource": self.ds,
            "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
            "targets": [
                {
                    **t,
                    "query": t["query"].replace("{TZ}", f"tz('{self.tz}')"),
                    "datasource": self.ds,
                }
                for t in targets
            ],  # daily buckets follow the plants' calendar days
            "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
            "options": {},
        }
        panel.update(extra)
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel


def _dashboard(uid: str, title: str, b: Builder, time_from: str = "now-7d",
               variables: list[dict[str, Any]] | None = None,
               annotations: list[dict[str, Any]] | None = None) -> Dashboard:  # fmt: skip
    return {
        "uid": uid,
        "title": title,
        "tags": ["supplymeter"],
        "timezone": "browser",
        "schemaVersion": 39,
        "editable": False,
        "time": {"from": time_from, "to": "now"},
        "refresh": "1m",
        "panels": b.panels,
        "templating": {"list": variables or []},
        "annotations": {"list": annotations or []},
    }


def _variable(name: str, query: str, ds: dict[str, str], label: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": ds, "query": query,
        "refresh": 1, "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"text": "All", "value": "$__all"}, "sort": 1,
    }  # fmt: skip


def overview(config: Config) -> Dashboard:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    hc, he = schema.HOURLY_CONSUMPTION, schema.HOURLY_EMISSIONS
    elec = f'SELECT sum("energy_kwh") FROM "{hc}" WHERE "carrier" = \'electricity\' AND $timeFilter GROUP BY "supplier"'  # noqa: E501
    b.add("Electricity today by supplier (kWh)", "bargauge", [q("A", elec, alias="$tag_supplier")],
          w=8, unit="kwatth", timeFrom="now/d")  # fmt: skip
    b.add("Electricity month to date (kWh)", "bargauge", [q("A", elec, alias="$tag_supplier")],
          w=8, unit="kwatth", timeFrom="now/M")  # fmt: skip
    co2 = f'SELECT sum("emissions_kgco2e") FROM "{he}" WHERE $timeFilter GROUP BY "supplier"'
    b.add("kgCO2e month to date", "bargauge", [q("A", co2, alias="$tag_supplier")], w=4,
          unit="masskg", timeFrom="now/M")  # fmt: skip
    b.add("kgCO2e same month last year", "bargauge", [q("A", co2, alias="$tag_supplier")],
          w=4, unit="masskg", timeFrom="now/M", timeShift="1y")  # fmt: skip
    b.add("Gateways online (1) / offline (0)", "stat", [q("A", (
        f'SELECT last("online") FROM "{schema.GATEWAY_STATUS}" WHERE $timeFilter '
        'GROUP BY "supplier", "site"'), alias="$tag_supplier/$tag_site")], w=8)  # fmt: skip
    b.add("Data completeness (%)", "bargauge", [q("A", (
        f'SELECT mean("coverage") * 100 FROM "{hc}" WHERE $timeFilter GROUP BY "supplier"'),
        alias="$tag_supplier")], w=8, unit="percent")  # fmt: skip
    b.add("Alerts (last state per incident)", "table", [q("A", (
        f'SELECT last("open") AS "open", last("title") AS "alert", last("detail") AS "detail" '
        f'FROM "{schema.ALERT}" WHERE $timeFilter GROUP BY "supplier", "site", "subject"'),
        fmt="table")], w=8)  # fmt: skip
    return _dashboard("sm-overview", "supplymeter — programme overview", b, "now/M")


def supplier_detail(config: Config) -> Dashboard:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    ds = b.ds
    r, hc = schema.READING, schema.HOURLY_CONSUMPTION
    where = f"{SUPPLIER} AND {SITE} AND {METER} AND $timeFilter"
    b.add("Power (kW)", "timeseries", [q("A", (
        f'SELECT mean("power_kw") FROM "{r}" WHERE {where} '
        'GROUP BY time($__interval), "meter" fill(none)'), alias="$tag_meter")],
        w=24, unit="kwatt")  # fmt: skip
    b.add("Electricity per hour (kWh)", "timeseries", [q("A", (
        f'SELECT sum("energy_kwh") FROM "{hc}" WHERE {where} AND "carrier" = \'electricity\' '
        'GROUP BY time(1h), "meter" fill(none)'), alias="$tag_meter")],
        unit="kwatth")  # fmt: skip
    b.add("Gas and water per day (m³)", "timeseries", [q("A", (
        f'SELECT sum("volume_m3") FROM "{hc}" WHERE {where} '
        'GROUP BY time(1d), "meter" fill(none) {TZ}'), alias="$tag_meter")], unit="m3")  # fmt: skip
    b.add("Purchased steam per day (kg)", "timeseries", [q("A", (
        f'SELECT sum("steam_kg") FROM "{hc}" WHERE {where} '
        'GROUP BY time(1d), "meter" fill(none) {TZ}'), alias="$tag_meter")],
        unit="masskg")  # fmt: skip
    pv = [m.id for s in config.registry.suppliers for site in s.sites for m in site.meters
          if m.role == "pv"] or ["none"]  # fmt: skip
    grid = [m.id for s in config.registry.suppliers for site in s.sites for m in site.meters
            if m.role == "grid"] or ["none"]  # fmt: skip
    base = f"{SUPPLIER} AND {SITE} AND $timeFilter"
    b.add("PV generation and export to the grid (kWh per day)", "timeseries", [
        q("A", f'SELECT sum("energy_kwh") FROM "{hc}" WHERE {base} AND "meter" =~ '
               f'/^({"|".join(sorted(set(pv)))})$/ GROUP BY time(1d) fill(none) {{TZ}}',
          alias="PV generated"),
        q("B", f'SELECT sum("energy_export_kwh") FROM "{hc}" WHERE {base} AND "meter" =~ '
               f'/^({"|".join(sorted(set(grid)))})$/ GROUP BY time(1d) fill(none) {{TZ}}',
          alias="exported"),
    ], unit="kwatth", description="Self-consumption = generated − exported.")  # fmt: skip
    # Grafana's heatmap buckets by time; the PNG renderer folds it into weekday × hour.
    b.add("Electricity by weekday and hour (heatmap)", "heatmap", [q("A", (
        f'SELECT sum("energy_kwh") FROM "{hc}" WHERE {where} AND "carrier" = \'electricity\' '
        "GROUP BY time(1h) fill(none)"))], unit="kwatth")  # fmt: skip
    variables = [
        _variable("supplier", f'SHOW TAG VALUES FROM "{r}" WITH KEY = "supplier"', ds,
                  "Supplier"),
        _variable("site", f'SHOW TAG VALUES FROM "{r}" WITH KEY = "site" WHERE {SUPPLIER}',
                  ds, "Site"),
        _variable("meter", f'SHOW TAG VALUES FROM "{r}" WITH KEY = "meter" WHERE {SUPPLIER} '
                  f"AND {SITE}", ds, "Meter"),
    ]  # fmt: skip
    annotations = [{
        "name": "Alerts", "datasource": ds, "enable": True, "iconColor": "red",
        "query": f'SELECT "title", "detail" FROM "{schema.ALERT}" WHERE {SUPPLIER} AND '
                 "$timeFilter",
        "textColumn": "detail", "titleColumn": "title", "tagsColumn": "event",
    }]  # fmt: skip
    return _dashboard("sm-supplier", "supplymeter — supplier detail", b, "now-7d", variables,
                      annotations)  # fmt: skip


def scope3(config: Config) -> Dashboard:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    m = schema.SCOPE3_MONTHLY
    b.add("Monthly tCO2e by supplier, location-based", "barchart", [q("A", (
        f'SELECT last("location_kgco2e") / 1000 FROM "{m}" WHERE $timeFilter '
        'GROUP BY time(1d), "supplier" fill(none) {TZ}'), alias="$tag_supplier")],
        unit="none")  # fmt: skip
    b.add("Monthly tCO2e by supplier, market-based", "barchart", [q("A", (
        f'SELECT last("market_kgco2e") / 1000 FROM "{m}" WHERE $timeFilter '
        'GROUP BY time(1d), "supplier" fill(none) {TZ}'), alias="$tag_supplier")],
        unit="none")  # fmt: skip
    b.add("Buyer's allocated share", "table", [q("A", (
        f'SELECT last("allocation_share_pct") AS "share %", '
        'last("allocated_kgco2e") / 1000 AS "allocated tCO2e" '
        f'FROM "{m}" WHERE $timeFilter GROUP BY "supplier"'), fmt="table")])  # fmt: skip
    b.add("All suppliers against the reduction pathway (tCO2e per month)", "timeseries", [
        q("A", f'SELECT sum("location_kgco2e") / 1000 FROM "{m}" WHERE $timeFilter '
               "GROUP BY time(1d) fill(none) {TZ}", alias="actual"),
        q("B", f'SELECT last("tco2e") FROM "{schema.SCOPE3_PATHWAY}" WHERE $timeFilter '
               "GROUP BY time(1d) fill(none) {TZ}", alias="pathway"),
    ])  # fmt: skip
    return _dashboard("sm-scope3", "supplymeter — scope 3", b, "now-13M")


def ingest(config: Config) -> Dashboard:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    cs = schema.COLLECTOR_STATS
    b.add("Messages per second", "timeseries", [q("A", (
        # raw points (one per stats_interval_s): a derivative needs two per bucket otherwise
        f'SELECT non_negative_derivative("messages", 1s) FROM "{cs}" WHERE $timeFilter '
        'GROUP BY "collector"'), alias="$tag_collector")],
        unit="reqps")  # fmt: skip
    b.add("Rejected messages by reason", "timeseries", [q("A", (
        f'SELECT sum("count") FROM "{schema.REJECTED}" WHERE $timeFilter '
        'GROUP BY time($__interval), "reason" fill(none)'), alias="$tag_reason")])  # fmt: skip
    b.add("Last write latency (s)", "timeseries", [q("A", (
        f'SELECT max("last_write_s") FROM "{cs}" WHERE $timeFilter '
        'GROUP BY time($__interval), "collector" fill(none)'), alias="$tag_collector")],
        unit="s")  # fmt: skip
    b.add("Backlog (lines waiting) and ack lag", "timeseries", [
        q("A", f'SELECT max("backlog_lines") FROM "{cs}" WHERE $timeFilter '
               'GROUP BY time($__interval), "collector" fill(none)', alias="backlog"),
        q("B", f'SELECT max("ack_lag_s") FROM "{cs}" WHERE $timeFilter '
               'GROUP BY time($__interval), "collector" fill(none)', alias="ack lag s"),
    ])  # fmt: skip
    b.add("Data-quality issues to act on (e.g. a register fall without a meter event)", "table",
          [q("A", (f'SELECT last("detail") AS "detail", count("detail") AS "times" '
                   f'FROM "{schema.QUALITY_ISSUE}" WHERE $timeFilter '
                   'GROUP BY "code", "supplier", "site", "meter"'), fmt="table")],
          w=24)  # fmt: skip
    return _dashboard("sm-ingest", "supplymeter — ingest health", b, "now-6h")


def all_dashboards(config: Config) -> list[Dashboard]:
    return [overview(config), supplier_detail(config), scope3(config), ingest(config)]


def datasource(config: Config) -> dict[str, Any]:
    """The InfluxDB datasource, InfluxQL over the v1 API (token or user/password in
    ``secureJsonData``, filled from the environment at push time)."""
    influx = config.influxdb
    return {
        "uid": config.grafana.datasource_uid,
        "name": "supplymeter InfluxDB",
        "type": "influxdb",
        "access": "proxy",
        "url": config.grafana.datasource_url or influx.url,
        "database": influx.database,
        "user": influx.username or "",
        "jsonData": {
            "version": "InfluxQL",
            "dbName": influx.database,
            "httpMode": "POST",
            "timeInterval": "1m",
        },
    }


def panel_queries(dashboard: Dashboard) -> list[tuple[str, str, dict[str, Any]]]:
    """(panel title, query, panel) for every query of a dashboard, annotations included."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            out.append((panel["title"], target["query"], panel))
    for annotation in dashboard["annotations"]["list"]:
        out.append((f"annotation {annotation['name']}", annotation["query"], {}))
    for variable in dashboard["templating"]["list"]:
        out.append((f"variable {variable['name']}", variable["query"], {}))
    return out
