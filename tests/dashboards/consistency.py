"""Every month figure on every dashboard against the signed export's CSVs (to 0.001).

A panel *shows a month figure* when it reads a month (``timeFrom`` ``now/M``, a month time
shift, ``scope3_monthly``) or says so in its title; each such panel must declare the export
figure it equals (:class:`dashboards.model.Figure`), or :func:`undeclared` names it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dashboards.model import Figure, built
from dashboards.render import ALL, run_panel
from processing.accounting.export import ExportResult
from processing.accounting.scope3 import Month
from supplymeter import store as schema
from supplymeter.config import Config
from supplymeter.records import ns_to_datetime
from supplymeter.store import Store

TOLERANCE = 0.001
"""Beyond the export CSV's own rounding (half its last decimal: 3 decimals for kWh and kgCO2e,
2 for shares in percent)."""


def undeclared(config: Config) -> list[str]:
    """Panels that show a month figure without naming the export figure they equal."""
    out = []
    for b in built(config):
        for panel in b.dashboard["panels"]:
            monthish = (
                panel.get("timeFrom") == "now/M"
                or "month" in panel["title"].lower()
                or any(schema.SCOPE3_MONTHLY in t["query"] for t in panel["targets"])
            )
            if monthish and panel["id"] not in b.figures:
                out.append(f"{b.dashboard['uid']} / {panel['title']}")
    return out


def export_rows(result: ExportResult, table: str) -> list[dict[str, str]]:
    path = result.directory / f"scope3-{result.month}-{table}.csv"
    with Path(path).open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _number(text: Any) -> float | None:
    if text is None or text == "":
        return None
    return float(text)


def _same(a: float | None, b: float | None, decimals: int) -> bool:
    return abs((a or 0.0) - (b or 0.0)) <= TOLERANCE + 0.5 * 10.0**-decimals


def _decimals(column: str) -> int:
    """The export writes shares in percent to 2 decimals, kWh and kgCO2e to 3."""
    return 2 if column.endswith("_pct") else 3


def panel_values(
    results: list[tuple[str, Any]], figure: Figure, tz: str
) -> dict[tuple[tuple[str, ...], str, str], float | None]:
    """(group key, month, value name) → value, from a panel's (transformed) results."""
    zone = ZoneInfo(tz)
    out: dict[tuple[tuple[str, ...], str, str], float | None] = {}
    for legend, series in results:
        key = tuple(series.tags.get(k, "") for k in figure.by)
        for row in series.rows():
            month = ns_to_datetime(int(row["time"])).astimezone(zone).strftime("%Y-%m")
            for name in (c for c in series.columns if c != "time"):
                wanted = name if name in figure.columns else ""
                if figure.by == () and legend in figure.columns:
                    wanted = legend
                if wanted in figure.columns:
                    value = _number(row[name])
                    scale = figure.scales.get(wanted, 1.0)
                    out[(key, month, wanted)] = None if value is None else value * scale
    return out


def compare(
    config: Config, store: Store, now_ns: int, exports: dict[str, ExportResult]
) -> tuple[list[str], int]:
    """Failures (one line each) and the number of figures compared. ``now_ns``: the
    dashboards' "now" (month to date is its month); ``exports``: by ``YYYY-MM``, every month
    exported (a month panel's month missing here must show nothing)."""
    tz = config.jobs.timezone
    zone = ZoneInfo(tz)
    local_now = ns_to_datetime(now_ns - 1).astimezone(zone)  # "now" is inside the range
    this = Month(local_now.year, local_now.month)
    start = now_ns - 400 * 86_400 * 10**9  # wider than any panel's range
    failures: list[str] = []
    compared = 0
    for b in built(config):
        d = b.dashboard
        names = [v["name"] for v in d["templating"]["list"]]
        choices = [{n: ALL for n in names}]
        if "supplier" in names:  # per supplier, as the dashboard shows one at a time
            choices = [{**{n: ALL for n in names}, "supplier": [s.id]}
                       for s in config.registry.suppliers]  # fmt: skip
        for panel in d["panels"]:
            figure = b.figures.get(panel["id"])
            if figure is None:
                continue
            for variables in choices:
                results = run_panel(store, panel, start, now_ns, tz, "1h", variables)
                got = panel_values(results, figure, tz)
                if figure.period == "month to date":
                    months = [str(this)]
                elif figure.period == "same month last year":
                    months = [f"{this.year - 1}-{this.month:02d}"]
                elif figure.period == "last month":
                    months = [max(exports)]
                else:
                    months = sorted(exports)
                for month in months:
                    table = "sites" if figure.table == "sites" else "suppliers"
                    # a month never exported has no figure: its panel must show none
                    rows = export_rows(exports[month], table) if month in exports else []
                    if "supplier" in variables and variables["supplier"] != ALL:
                        rows = [r for r in rows if r["supplier"] in variables["supplier"]]
                    for name, column in figure.columns.items():
                        wanted: dict[tuple[str, ...], float] = {}
                        decimals = _decimals(column)
                        for r in rows:
                            key = tuple(r[k] for k in figure.by)
                            wanted[key] = (wanted.get(key) or 0.0) + (_number(r[column]) or 0)
                        # one value per key, except "months": one per key and month
                        mine = {
                            (k, n): v
                            for (k, m, n), v in got.items()
                            if n == name and (figure.period != "months" or m == month)
                        }
                        keys = set(wanted) | {k for (k, _) in mine}
                        for key in keys:
                            shown = [v for (k, _), v in mine.items() if k == key]
                            value = sum(v or 0.0 for v in shown) if shown else None
                            compared += 1
                            if not _same(value, wanted.get(key), decimals):
                                failures.append(
                                    f"{d['uid']} / {panel['title']} / {name or column} / "
                                    f"{'/'.join(key) or 'all'} / {month}: panel {value} != "
                                    f"export {column} {wanted.get(key)}")  # fmt: skip
    return failures, compared
