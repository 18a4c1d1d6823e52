"""The dashboards, as Grafana's dashboard JSON model built from the config and registry.

Plain dicts (Grafana's JSON model, schemaVersion 39), checked in ``make test`` against the
JSON Schema generated from Grafana's own published types (``@grafana/schema``, see
``dashboards/grafana_schema``). Every dashboard and panel has a stable ``uid``/``id`` so a push
updates in place. Queries are InfluxQL on the ``[grafana] datasource_uid`` datasource; they
use Grafana's ``$timeFilter`` and ``$__interval`` macros and the dashboards' variables.

**One path.** Purchased electricity and its emissions come from the stored site-hours
(``site_hourly``: the grid meter's import, PV self-consumption, the unmetered rest), fuels,
steam and water from the stored meter-hours, months from ``scope3_monthly`` (the standing
export version) — never re-derived in a query. A panel that shows a month or month-to-date
figure says which export figure it equals (:class:`Figure`); the tests run it against a real
InfluxDB and compare with the export, and a month panel without a :class:`Figure` fails them.

============================  ===============================================================
dashboard (uid)               panels
============================  ===============================================================
Programme overview            purchased electricity today and month to date, location-based
(``sm-overview``)             kgCO2e month to date and the same month last year, by supplier;
                              gateways; the last exported month's data quality; alert
                              messages per site and day (every kind); alerts
Supplier detail               one supplier (variable, default the first): electricity balance
(``sm-supplier``)             by site month to date, purchased/PV/unmetered per hour, power and
                              energy per consumption meter, gas, water, steam, weekday × hour
Scope 3 (``sm-scope3``)       per month and supplier (stacked): location-, market-based and
                              allocated tCO2e; the latest month's shares; the pathway
Ingest health (``sm-ingest``) messages/s, rejects by reason, write latency, backlog, quality
============================  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from supplymeter import store as schema
from supplymeter.config import Config

Panel = dict[str, Any]
Dashboard = dict[str, Any]

SUPPLIER = '"supplier" =~ /^$supplier$/'
SITE = '"site" =~ /^$site$/'
METER = '"meter" =~ /^$meter$/'
LEGEND = "$tag_supplier / $tag_site / $tag_meter"

KWH, KG, TONNE, PCT = "kwatth", "suffix: kgCO2e", "suffix: tCO2e", "percent"
"""Grafana units: ``kwatth`` scales to MWh/GWh; CO2e as a suffix (Grafana's ``masskg``
would call it plain kg)."""


@dataclass(frozen=True)
class Figure:
    """Which export figure a panel's values equal (for the consistency test and the docs).

    ``table``: ``suppliers`` or ``sites`` (the export's CSVs of the month) or ``months`` (one
    value per supplier and exported month); ``columns``: the panel's value name → the export
    column (one entry for a single-valued panel: key ``""``); ``scales``: per value name,
    panel value × scale = export value (tCO2e → kgCO2e: 1000; default 1); ``period``:
    ``month to date``, ``same month last year``, ``months`` (every month in range) or
    ``last month`` (the latest exported)."""

    table: str
    columns: dict[str, str]
    period: str
    scales: dict[str, float] = field(default_factory=dict)
    by: tuple[str, ...] = ("supplier",)


@dataclass
class Built:
    """A dashboard and the export figure each of its month panels equals (by panel id)."""

    dashboard: Dashboard
    figures: dict[int, Figure] = field(default_factory=dict)


def q(ref: str, query: str, fmt: str = "time_series", alias: str = "") -> dict[str, Any]:
    target = {"refId": ref, "query": query, "rawQuery": True, "resultFormat": fmt}
    if alias:
        target["alias"] = alias
    return target


def _legend(placement: str = "bottom") -> dict[str, Any]:
    return {"showLegend": True, "displayMode": "list", "placement": placement, "calcs": []}


def _options(kind: str, stacked: bool = False) -> dict[str, Any]:
    """Every option Grafana's panel type declares required, at Grafana's defaults."""
    reduce = {"values": False, "calcs": ["lastNotNull"], "fields": ""}
    if kind == "timeseries":
        tooltip = {"mode": "multi" if stacked else "single", "sort": "desc" if stacked else "none"}
        return {"legend": _legend(), "tooltip": tooltip}
    if kind == "bargauge":
        return {"displayMode": "basic", "legend": _legend(), "maxVizHeight": 300,
                "minVizHeight": 16, "minVizWidth": 8, "namePlacement": "left",
                "orientation": "horizontal", "reduceOptions": reduce, "showUnfilled": True,
                "sizing": "auto", "valueMode": "text"}  # fmt: skip
    if kind == "stat":
        return {"colorMode": "background", "graphMode": "none", "justifyMode": "auto",
                "orientation": "auto", "percentChangeColorMode": "standard",
                "reduceOptions": reduce, "showPercentChange": False,
                "textMode": "value_and_name", "wideLayout": True}  # fmt: skip
    if kind == "table":
        return {"frameIndex": 0, "showHeader": True, "cellHeight": "sm"}
    if kind == "heatmap":
        return {
            "calculate": True, "cellGap": 1, "showValue": "never",
            "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange",
                      "scale": "exponential", "exponent": 0.5, "steps": 64, "reverse": False},
            "exemplars": {"color": "rgba(255,0,255,0.7)"}, "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
            "yAxis": {"axisPlacement": "left", "reverse": False},
        }  # fmt: skip
    raise ValueError(f"no options for panel type {kind!r}")


def _custom(kind: str, bars: bool, stacked: bool) -> dict[str, Any]:
    if kind != "timeseries":
        return {}
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line", "lineWidth": 1,
        "fillOpacity": 85 if bars else 10, "showPoints": "never", "spanNulls": False,
    }  # fmt: skip
    if stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return custom


def _as_line(name: str) -> dict[str, Any]:
    """A field override: the series ``name`` drawn as a line (over bars)."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "custom.drawStyle", "value": "line"},
                       {"id": "custom.lineWidth", "value": 2}],
    }  # fmt: skip


class Builder:
    """Lays panels out on Grafana's 24-column grid, numbers them and records their figures."""

    def __init__(self, datasource_uid: str, tz: str = "Asia/Taipei") -> None:
        self.ds = {"type": "influxdb", "uid": datasource_uid}
        self.tz = tz
        self.panels: list[Panel] = []
        self.figures: dict[int, Figure] = {}
        self.x = self.y = self.row_h = 0

    def add(self, title: str, kind: str, targets: list[dict[str, Any]], w: int = 12,
            h: int = 8, unit: str = "", *, figure: Figure | None = None, no_data: str = "",
            bars: bool = False, stacked: bool = False, description: str = "",
            transformations: list[dict[str, Any]] | None = None,
            options: dict[str, Any] | None = None, mappings: list[dict[str, Any]] | None = None,
            lines: tuple[str, ...] = (), **extra: Any) -> Panel:  # fmt: skip
        """``no_data``: what the panel says when its query returns nothing, and why;
        ``lines``: series drawn as a line over bars (e.g. a pathway)."""
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        defaults: dict[str, Any] = {"unit": unit} if unit else {}
        custom = _custom(kind, bars, stacked)
        if custom:
            defaults["custom"] = custom
        defaults["noValue"] = no_data or "No data in this period"
        if mappings:
            defaults["mappings"] = mappings
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
            "fieldConfig": {"defaults": defaults, "overrides": [_as_line(n) for n in lines]},
            "options": {**_options(kind, stacked), **(options or {})},
        }
        if description:
            panel["description"] = description
        if transformations:
            panel["transformations"] = transformations
        panel.update(extra)
        self.panels.append(panel)
        if figure is not None:
            self.figures[panel["id"]] = figure
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel


def _dashboard(uid: str, title: str, b: Builder, time_from: str = "now-7d",
               variables: list[dict[str, Any]] | None = None,
               annotations: list[dict[str, Any]] | None = None,
               description: str = "") -> Built:  # fmt: skip
    dashboard = {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["supplymeter"],
        "timezone": "browser",
        "schemaVersion": 39,
        "editable": False,
        "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"},
        "refresh": "1m",
        "panels": b.panels,
        "templating": {"list": variables or []},
        "annotations": {"list": annotations or []},
    }
    return Built(dashboard, b.figures)


def _variable(name: str, query: str, ds: dict[str, str], label: str,
              default: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A query variable: ``default`` set → one value, no "All" (one supplier at a time)."""
    if default is not None:
        return {
            "name": name, "label": label, "type": "query", "datasource": ds, "query": query,
            "refresh": 1, "includeAll": False, "multi": False, "sort": 1,
            "current": {"text": default, "value": default},
        }  # fmt: skip
    return {
        "name": name, "label": label, "type": "query", "datasource": ds, "query": query,
        "refresh": 1, "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"text": "All", "value": "$__all"}, "sort": 1,
    }  # fmt: skip


def _groupby_sum(value: str, *keys: str) -> list[dict[str, Any]]:
    """Grafana's "Merge" then "Group by" transformations: rows of several queries (e.g. the
    site-hours' electricity and the meter-hours' fuels) summed per ``keys``."""
    fields: dict[str, Any] = {k: {"operation": "groupby", "aggregations": []} for k in keys}
    fields[value] = {"operation": "aggregate", "aggregations": ["sum"]}
    return [{"id": "merge", "options": {}}, {"id": "groupBy", "options": {"fields": fields}}]


def role_meters(config: Config) -> list[tuple[str, str, str]]:
    """(supplier, site, meter) of every grid and PV meter: they explain purchased
    electricity and are not consumption."""
    return [(s.id, site.id, m.id) for s in config.registry.suppliers for site in s.sites
            for m in site.meters if m.role != "consumption"]  # fmt: skip


def consumption_only(config: Config) -> str:
    """An InfluxQL condition keeping consumption meters only (``" AND …"``, or ``""``)."""
    parts = [f"(\"supplier\" != '{s}' OR \"site\" != '{site}' OR \"meter\" != '{m}')"
             for s, site, m in role_meters(config)]  # fmt: skip
    return "".join(f" AND {p}" for p in parts)


def _location_queries(by: str, alias: str = "kgCO2e") -> list[dict[str, Any]]:
    """Location-based kgCO2e: the stored site-hours' purchased electricity (after PV
    self-consumption) plus every other carrier's stored meter-hours — as the export."""
    sh, he = schema.SITE_HOURLY, schema.HOURLY_EMISSIONS
    return [
        q("A", f'SELECT sum("location_kgco2e") AS "{alias}" FROM "{sh}" WHERE $timeFilter '
               f"GROUP BY {by}", fmt="table"),
        q("B", f'SELECT sum("emissions_kgco2e") AS "{alias}" FROM "{he}" WHERE "carrier" != '
               f"'electricity' AND $timeFilter GROUP BY {by}", fmt="table"),
    ]  # fmt: skip


def _overview(config: Config) -> Built:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    sh, m = schema.SITE_HOURLY, schema.SCOPE3_MONTHLY
    purchased = (f'SELECT sum("purchased_kwh") FROM "{sh}" WHERE $timeFilter '
                 'GROUP BY "supplier"')  # fmt: skip
    note = "No stored site-hours in this period: has the rollup run?"
    b.add("Purchased electricity today, by supplier (kWh)", "bargauge",
          [q("A", purchased, alias="$tag_supplier")], w=8, unit=KWH, timeFrom="now/d",
          no_data=note,
          description="The grid meters' import (inferred from the consumption meters where a "
                      "site has none), from the stored site-hours.")  # fmt: skip
    b.add("Purchased electricity this month to date, by supplier (kWh)", "bargauge",
          [q("A", purchased, alias="$tag_supplier")], w=8, unit=KWH, timeFrom="now/M",
          no_data=note, figure=Figure("suppliers", {"": "purchased_electricity_kwh"},
                                      "month to date"))  # fmt: skip
    kg_options = {"reduceOptions": {"values": True, "calcs": [], "fields": "/kgCO2e/"}}
    b.add("Location-based kgCO2e this month to date, by supplier", "bargauge",
          _location_queries('"supplier"'), w=8, unit=KG, timeFrom="now/M", no_data=note,
          transformations=_groupby_sum("kgCO2e", "supplier"), options=kg_options,
          figure=Figure("suppliers", {"": "location_kgco2e"}, "month to date"),
          description="Purchased electricity after PV self-consumption, fuels, steam and "
                      "water, as the monthly export (before allocation to the buyer).",
          )  # fmt: skip
    b.add("Location-based kgCO2e, same month last year to the same day, by supplier",
          "bargauge", _location_queries('"supplier"'), w=8, unit=KG, timeFrom="now/M",
          timeShift="1y", transformations=_groupby_sum("kgCO2e", "supplier"),
          options=kg_options, no_data="No data stored for this month a year ago",
          figure=Figure("suppliers", {"": "location_kgco2e"}, "same month last year"),
          )  # fmt: skip
    b.add("Gateways now, by supplier / site", "stat", [q("A", (
        f'SELECT last("online") FROM "{schema.GATEWAY_STATUS}" WHERE $timeFilter '
        'GROUP BY "supplier", "site"'), alias="$tag_supplier / $tag_site")], w=8,
        no_data="No gateway status in this period", mappings=[{"type": "value", "options": {
            "1": {"text": "online", "color": "green", "index": 0},
            "0": {"text": "offline", "color": "red", "index": 1}}}])  # fmt: skip
    b.add("Last exported month: data quality by supplier (%)", "table", [q("A", (
        'SELECT last("completeness_pct") AS "completeness %", '
        'last("primary_data_share_pct") AS "primary data %", last("version") AS "version" '
        f'FROM "{m}" WHERE $timeFilter GROUP BY "supplier"'), fmt="table")], w=8,
        timeFrom="13M", no_data="No month exported in the last 13 months",
        figure=Figure("months", {"completeness %": "completeness_pct",
                                 "primary data %": "primary_data_share_pct"},
                      "last month"))  # fmt: skip
    b.add("Alert messages per site and day, every kind (count)", "timeseries", [q("A", (
        f'SELECT count(distinct("message")) FROM "{schema.ALERT}" WHERE "event" = \'open\' '
        'AND $timeFilter GROUP BY time(1d), "supplier", "site" fill(none) {TZ}'),
        alias="$tag_supplier / $tag_site")], w=24, unit="short", bars=True,
        description="What each site was told: incidents opened of every kind (spike, regime, "
        "level shift, silent gateway or meter, stuck register, over capacity), emailed or "
        "sent to the daily digest; spikes on several meters of a site in one email count "
        "once. `[alerts] budget_per_site_day` caps the emails; `supplymeter status` shows "
        "the last 7 days per meter-week.",
        no_data="No alert opened in this period")  # fmt: skip
    b.add("Alerts (last state per incident)", "table", [q("A", (
        f'SELECT last("open") AS "open", last("title") AS "alert", last("detail") AS "detail" '
        f'FROM "{schema.ALERT}" WHERE $timeFilter GROUP BY "supplier", "site", "subject"'),
        fmt="table")], w=24, no_data="No alert in this period")  # fmt: skip
    return _dashboard("sm-overview", "supplymeter — programme overview, all suppliers", b,
                      "now/M", description="Month to date in the plants' time zone "
                      f"({config.jobs.timezone}); figures as the monthly export computes "
                      "them.")  # fmt: skip


def _supplier_detail(config: Config) -> Built:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    ds = b.ds
    r, hc, sh = schema.READING, schema.HOURLY_CONSUMPTION, schema.SITE_HOURLY
    sites = f"{SUPPLIER} AND {SITE} AND $timeFilter"
    where = f"{SUPPLIER} AND {SITE} AND {METER} AND $timeFilter"
    consumers = consumption_only(config)
    b.add("$supplier — electricity by site, this month to date", "table", [q("A", (
        'SELECT sum("purchased_kwh") AS "purchased kWh", sum("pv_self_kwh") AS '
        '"PV self-consumed kWh", sum("consumption_kwh") AS "metered consumption kWh", '
        'sum("unmetered_kwh") AS "unmetered kWh", sum("location_kgco2e") AS '
        f'"location-based kgCO2e" FROM "{sh}" WHERE {sites} GROUP BY "supplier", "site"'),
        fmt="table")], w=24, h=4, timeFrom="now/M",
        no_data="No stored site-hours this month: has the rollup run?",
        description="From the stored site-hours. Purchased: the grid meter's import (inferred "
                    "from the consumption meters without one). Unmetered: import + PV "
                    "self-consumption − the consumption meters.",
        figure=Figure("sites", {
            "purchased kWh": "purchased_electricity_kwh",
            "PV self-consumed kWh": "pv_self_consumption_kwh",
            "metered consumption kWh": "metered_consumption_kwh",
            "unmetered kWh": "unmetered_electricity_kwh",
            "location-based kgCO2e": "location_kgco2e"}, "month to date",
            by=("supplier", "site")))  # fmt: skip
    b.add("$supplier — purchased, PV and unmetered electricity per hour (kWh)", "timeseries", [
        q(ref, f'SELECT sum("{fld}") FROM "{sh}" WHERE {sites} '
               'GROUP BY time(1h), "supplier", "site" fill(none)',
          alias=f"$tag_supplier / $tag_site {what}")
        for ref, fld, what in (("A", "purchased_kwh", "purchased"),
                               ("B", "pv_self_kwh", "PV self-consumed"),
                               ("C", "unmetered_kwh", "unmetered"))
    ], w=24, unit=KWH, no_data="No stored site-hours in this period")  # fmt: skip
    b.add("$supplier — power by consumption meter (kW)", "timeseries", [q("A", (
        f'SELECT mean("power_kw") FROM "{r}" WHERE {where}{consumers} '
        'GROUP BY time($__interval), "supplier", "site", "meter" fill(none)'), alias=LEGEND)],
        unit="kwatt", no_data="No power readings in this period")  # fmt: skip
    b.add("$supplier — electricity per hour by consumption meter (kWh)", "timeseries",
          [q("A", (f'SELECT sum("energy_kwh") FROM "{hc}" WHERE {where}{consumers} AND '
                   "\"carrier\" = 'electricity' GROUP BY time(1h), \"supplier\", \"site\", "
                   '"meter" fill(none)'), alias=LEGEND)], unit=KWH,
          no_data="No electricity meter-hours in this period")  # fmt: skip
    b.add("$supplier — gas and water per day (m³)", "timeseries", [q("A", (
        f'SELECT sum("volume_m3") FROM "{hc}" WHERE {where} '
        'GROUP BY time(1d), "supplier", "site", "meter", "carrier" fill(none) {TZ}'),
        alias=f"{LEGEND} ($tag_carrier)")], unit="m3", bars=True,
        no_data="No gas or water meter at the selected sites")  # fmt: skip
    b.add("$supplier — purchased steam per day (kg)", "timeseries", [q("A", (
        f'SELECT sum("steam_kg") FROM "{hc}" WHERE {where} '
        'GROUP BY time(1d), "supplier", "site", "meter" fill(none) {TZ}'), alias=LEGEND)],
        unit="masskg", bars=True,
        no_data="No steam meter at the selected sites")  # fmt: skip
    # Grafana's heatmap buckets by time; the PNG renderer folds it into weekday × hour.
    b.add("$supplier — electricity used per hour, all consumption meters of the selected "
          "sites (kWh)", "heatmap", [q("A", (
              f'SELECT sum("consumption_kwh") FROM "{sh}" WHERE {sites} '
              "GROUP BY time(1h) fill(none)"))], w=24, unit=KWH,
          no_data="No stored site-hours in this period")  # fmt: skip
    first = next((s.id for s in config.registry.suppliers), "")
    variables = [
        _variable("supplier", f'SHOW TAG VALUES FROM "{sh}" WITH KEY = "supplier"', ds,
                  "Supplier", default=first),
        _variable("site", f'SHOW TAG VALUES FROM "{sh}" WITH KEY = "site" WHERE {SUPPLIER}',
                  ds, "Site"),
        _variable("meter", f'SHOW TAG VALUES FROM "{hc}" WITH KEY = "meter" WHERE {SUPPLIER} '
                  f"AND {SITE}", ds, "Meter"),
    ]  # fmt: skip
    annotations = [{
        "name": "Alerts", "datasource": ds, "enable": True, "iconColor": "red",
        "target": {
            "refId": "Anno", "rawQuery": True, "fromAnnotations": True,
            "query": f'SELECT "title", "detail" FROM "{schema.ALERT}" WHERE {SUPPLIER} AND '
                     "$timeFilter",
            "textColumn": "detail", "titleColumn": "title", "tagsColumn": "event",
        },
    }]  # fmt: skip
    return _dashboard("sm-supplier", "supplymeter — supplier detail: $supplier", b, "now-7d",
                      variables, annotations,
                      description="One supplier's sites and meters; grid and PV meters "
                      "explain purchased electricity and are not consumption.")  # fmt: skip


def _scope3(config: Config) -> Built:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    m = schema.SCOPE3_MONTHLY
    note = "No month exported in this period"
    for what, fld in (("Location-based", "location_kgco2e"), ("Market-based", "market_kgco2e"),
                      ("Allocated to the buyer (scope 3, Category 1), location-based",
                       "allocated_kgco2e")):  # fmt: skip
        b.add(f"{what} tCO2e per month, by supplier", "timeseries", [q("A", (
            f'SELECT last("{fld}") / 1000 FROM "{m}" WHERE $timeFilter '
            'GROUP BY time(1d), "supplier" fill(none) {TZ}'), alias="$tag_supplier")],
            w=12 if fld != "allocated_kgco2e" else 24, unit=TONNE, bars=True, stacked=True,
            no_data=note if fld != "market_kgco2e" else
            "No market-based figure: no supplier has certificates or a residual mix factor",
            figure=Figure("months", {"": fld}, "months", {"": 1000.0}))  # fmt: skip
    b.add("Latest exported month: the buyer's allocated share, by supplier", "table", [q("A", (
        'SELECT last("allocation_share_pct") AS "share %", '
        'last("allocated_kgco2e") / 1000 AS "allocated tCO2e" '
        f'FROM "{m}" WHERE $timeFilter GROUP BY "supplier"'), fmt="table")], no_data=note,
        figure=Figure("months", {"share %": "allocation_share_pct",
                                 "allocated tCO2e": "allocated_kgco2e"}, "last month",
                      {"allocated tCO2e": 1000.0}))  # fmt: skip
    b.add("All suppliers, location-based tCO2e per month, against the reduction pathway",
          "timeseries", [
        q("A", f'SELECT sum("location_kgco2e") / 1000 FROM "{m}" WHERE $timeFilter '
               "GROUP BY time(1d) fill(none) {TZ}", alias="all suppliers"),
        q("B", f'SELECT last("tco2e") FROM "{schema.SCOPE3_PATHWAY}" WHERE $timeFilter '
               "GROUP BY time(1d) fill(none) {TZ}", alias="pathway"),
    ], unit=TONNE, bars=True, no_data=note, lines=("pathway",),
        description="The pathway: [grafana] pathway_base_tco2e less pathway_pct_per_year "
                    "a year from pathway_base_year, written with each export (without a base "
                    "only the actual bars are shown).",
        figure=Figure("months", {"all suppliers": "location_kgco2e"}, "months",
                      {"all suppliers": 1000.0}, by=()))  # fmt: skip
    return _dashboard("sm-scope3", "supplymeter — scope 3, Category 1, all suppliers", b,
                      "now-13M", description="Months as the standing export version states "
                      "them (restatements included).")  # fmt: skip


def _ingest(config: Config) -> Built:
    b = Builder(config.grafana.datasource_uid, config.jobs.timezone)
    cs = schema.COLLECTOR_STATS
    b.add("Messages per second, by collector", "timeseries", [q("A", (
        # raw points (one per stats_interval_s): a derivative needs two per bucket otherwise
        f'SELECT non_negative_derivative("messages", 1s) FROM "{cs}" WHERE $timeFilter '
        'GROUP BY "collector"'), alias="$tag_collector")], unit="reqps",
        no_data="No rate: under two collector reports in this period (is it running?)")  # fmt: skip
    b.add("Rejected messages by reason (count)", "timeseries", [q("A", (
        f'SELECT sum("count") FROM "{schema.REJECTED}" WHERE $timeFilter '
        'GROUP BY time($__interval), "reason" fill(none)'), alias="$tag_reason")],
        unit="short", bars=True, stacked=True,
        no_data="No message rejected in this period")  # fmt: skip
    b.add("Last write latency (s)", "timeseries", [q("A", (
        f'SELECT max("last_write_s") FROM "{cs}" WHERE $timeFilter '
        'GROUP BY time($__interval), "collector" fill(none)'), alias="$tag_collector")],
        unit="s", no_data="No collector reported in this period")  # fmt: skip
    b.add("Backlog (lines waiting) and ack lag (s)", "timeseries", [
        q("A", f'SELECT max("backlog_lines") FROM "{cs}" WHERE $timeFilter '
               'GROUP BY time($__interval), "collector" fill(none)',
          alias="$tag_collector backlog lines"),
        q("B", f'SELECT max("ack_lag_s") FROM "{cs}" WHERE $timeFilter '
               'GROUP BY time($__interval), "collector" fill(none)',
          alias="$tag_collector ack lag s"),
    ], unit="short", no_data="No collector reported in this period")  # fmt: skip
    b.add("Data-quality issues to act on (e.g. a register fall without a meter event)", "table",
          [q("A", (f'SELECT last("detail") AS "detail", count("detail") AS "times" '
                   f'FROM "{schema.QUALITY_ISSUE}" WHERE $timeFilter '
                   'GROUP BY "code", "supplier", "site", "meter"'), fmt="table")],
          w=24, no_data="No data-quality issue in this period")  # fmt: skip
    return _dashboard("sm-ingest", "supplymeter — ingest health", b, "now-6h")


BUILDERS = (_overview, _supplier_detail, _scope3, _ingest)


def built(config: Config) -> list[Built]:
    """Every dashboard with its month panels' export figures."""
    return [make(config) for make in BUILDERS]


def all_dashboards(config: Config) -> list[Dashboard]:
    return [b.dashboard for b in built(config)]


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
        out.append((f"annotation {annotation['name']}", annotation["target"]["query"], {}))
    for variable in dashboard["templating"]["list"]:
        out.append((f"variable {variable['name']}", variable["query"], {}))
    return out
