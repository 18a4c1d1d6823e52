"""PNGs of the dashboards from the same queries, for places without Grafana (reports, emails,
the demo): ``supplymeter dashboards render --out DIR`` writes one PNG per dashboard.

Each PNG lays the panels out as Grafana's grid does, under the dashboard's title, the period
and the variables shown. Time series become lines, or bars (stacked where the panel stacks),
bar gauges horizontal bars with their values, stats coloured boxes with their value mappings,
tables a table; axes carry units in words; a panel without data shows its "no data" note.

:func:`run_panel` is what a panel draws: its queries as Grafana sends them (macros, panel
time overrides), the aliases as legends and the panel's transformations (Grafana's "Merge" and
"Group by"), so the tests compare exactly that with the export.
"""

from __future__ import annotations

import re
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from dashboards.macros import panel_range, span_s, substitute
from dashboards.model import Dashboard, all_dashboards
from supplymeter.config import Config
from supplymeter.influx import Series
from supplymeter.records import ns_to_datetime
from supplymeter.store import Store

ALL = ["$__all"]

UNIT_WORDS = {
    "kwatth": "kWh", "kwatt": "kW", "percent": "%", "m3": "m³", "masskg": "kg",
    "reqps": "messages per second", "s": "seconds", "short": "count", "none": "",
}  # fmt: skip
"""Grafana's unit codes as a reader says them (``suffix: X`` is X)."""


def unit_words(unit: str) -> str:
    if unit.startswith("suffix:"):
        return unit.split(":", 1)[1].strip()
    return UNIT_WORDS.get(unit, unit)


def variables_of(dashboard: Dashboard) -> dict[str, list[str]]:
    """Each variable at its default: the one chosen value, or All."""
    out = {}
    for v in dashboard["templating"]["list"]:
        value = v.get("current", {}).get("value", "$__all")
        out[v["name"]] = [value] if isinstance(value, str) else list(value)
    return out


def interpolate(text: str, variables: dict[str, list[str]]) -> str:
    """``$var`` in a title as Grafana shows it (All → "all")."""
    for name, values in variables.items():
        shown = "all" if values == ALL else ", ".join(values)
        text = text.replace(f"${name}", shown)
    return text


def run_panel(
    store: Store, panel: dict[str, Any], start_ns: int, end_ns: int, tz: str,
    interval: str = "1h", variables: dict[str, list[str]] | None = None,
) -> list[tuple[str, Series]]:  # fmt: skip
    """(legend, series) of a panel, as Grafana would fetch and transform them."""
    lo, hi = panel_range(panel, start_ns, end_ns, tz)
    out = []
    for target in panel["targets"]:
        query = substitute(target["query"], lo, hi, interval, variables)
        for series in store.panel_query(query):
            legend = target.get("alias", "") or series.name
            tags = series.tags
            legend = re.sub(r"\$tag_(\w+)", lambda m, tags=tags: tags.get(m[1], ""), legend)
            out.append((legend or series.name, series))
    return transform(panel, out)


def transform(panel: dict[str, Any], results: list[tuple[str, Series]]) -> list[tuple[str, Series]]:
    """Grafana's "Merge" + "Group by" (sum): rows of every query summed per group key; one
    series per group, its legend the key's values joined by " / "."""
    steps = [t["id"] for t in panel.get("transformations", [])]
    if not steps:
        return results
    if steps != ["merge", "groupBy"]:
        raise ValueError(f"transformations {steps} are not reproduced here")
    fields = panel["transformations"][1]["options"]["fields"]
    keys = [k for k, f in fields.items() if f["operation"] == "groupby"]
    [value] = [k for k, f in fields.items() if f["operation"] == "aggregate"]
    sums: dict[tuple[str, ...], float | None] = {}
    for _, series in results:
        for row in series.rows():
            row = {**series.tags, **row}
            key = tuple(str(row.get(k, "")) for k in keys)
            v = row.get(value)
            if v is not None:
                sums[key] = (sums.get(key) or 0.0) + float(v)
            else:
                sums.setdefault(key, None)
    name = f"{value} (sum)"
    return [(" / ".join(key), Series("", dict(zip(keys, key, strict=True)), ["time", name],
                                     [[0, total]]))
            for key, total in sorted(sums.items())]  # fmt: skip


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _last(series: Series) -> float | None:
    for row in reversed(series.values):
        if row[-1] is not None:
            return float(row[-1])
    return None


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _thousands(axis: Any) -> None:
    """Plain numbers with thousands separators on a value axis (no "1e6" offsets)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 10 else f"{v:g}"))


def _no_data(ax: Any, panel: dict[str, Any]) -> None:
    note = panel["fieldConfig"]["defaults"].get("noValue", "No data")
    ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=9, color="#777777", wrap=True,
            transform=ax.transAxes)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(ax: Any, panel: dict[str, Any], results: list[tuple[str, Series]], unit: str) -> None:
    labels = [legend for legend, _ in results]
    values = [_last(s) or 0.0 for _, s in results]
    ax.barh(range(len(labels)), values, 0.6, color="#3274D9")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(max(len(labels), 4) - 0.5, -0.5)  # a lone bar stays a bar
    for i, v in enumerate(values):
        ax.text(v, i, f" {_fmt(v)} {unit}", va="center", fontsize=8)
    ax.set_xlabel(unit)
    _thousands(ax.xaxis)
    ax.margins(x=0.25)
    ax.tick_params(axis="y", labelsize=8)


def _stat(ax: Any, panel: dict[str, Any], results: list[tuple[str, Series]]) -> None:
    mapping: dict[str, dict[str, str]] = {}
    for m in panel["fieldConfig"]["defaults"].get("mappings", []):
        mapping.update(m.get("options", {}))
    n = len(results)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    for i, (legend, s) in enumerate(results):
        v = _last(s)
        key = str(int(v)) if v is not None and v == int(v) else str(v)
        shown = mapping.get(key, {"text": "–" if v is None else _fmt(v), "color": "grey"})
        x, y = (i % cols) / cols, 1 - (i // cols + 1) / rows
        color = {"green": "#56A64B", "red": "#E02F44"}.get(shown.get("color", ""), "#888888")
        ax.add_patch(plt.Rectangle((x + 0.01, y + 0.03), 1 / cols - 0.02, 1 / rows - 0.06,
                                   color=color, transform=ax.transAxes))  # fmt: skip
        ax.text(x + 0.5 / cols, y + 0.62 / rows, legend, ha="center", fontsize=8, color="white",
                transform=ax.transAxes)  # fmt: skip
        ax.text(x + 0.5 / cols, y + 0.25 / rows, shown["text"], ha="center", fontsize=11,
                color="white", weight="bold", transform=ax.transAxes)  # fmt: skip
    ax.set_axis_off()


def _table(ax: Any, results: list[tuple[str, Series]]) -> None:
    tag_keys: list[str] = []
    value_cols: list[str] = []
    order = ["supplier", "site", "meter"]
    for _, s in results:
        tag_keys += [k for k in s.tags if k not in tag_keys]
    tag_keys.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
    for _, s in results:
        value_cols += [c for c in s.columns if c != "time" and c not in value_cols]
    header = tag_keys + value_cols
    cells = []
    for _, s in results:
        for row in s.rows():
            out = [s.tags.get(k, "") for k in tag_keys]
            for c in value_cols:
                v = row.get(c)
                if isinstance(v, bool) or v is None:
                    out.append("" if v is None else ("yes" if v else "no"))
                elif isinstance(v, int | float):
                    out.append(f"{v:,.0f}" if float(v).is_integer() else _fmt(v))
                else:
                    out.append(str(v)[:60])
            cells.append(out)
    ax.set_axis_off()
    shown = cells[:12]
    row_h = min(0.12, 1 / (len(shown) + 1))
    table = ax.table(
        cellText=shown,
        colLabels=header,
        cellLoc="left",
        bbox=(0, 1 - row_h * (len(shown) + 1), 1, row_h * (len(shown) + 1)),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor("#cccccc")
        if r == 0:
            cell.set_text_props(weight="bold")
    if len(cells) > len(shown):
        ax.text(0, 0, f"… and {len(cells) - len(shown)} more rows", fontsize=7,
                transform=ax.transAxes)  # fmt: skip


def _timeseries(ax: Any, panel: dict[str, Any], results: list[tuple[str, Series]], tz: str,
                unit: str, span: tuple[int, int] | None = None) -> None:  # fmt: skip
    zone = ZoneInfo(tz)
    custom = panel["fieldConfig"]["defaults"].get("custom", {})
    bars = custom.get("drawStyle") == "bars"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    drawn = [(legend, [(ns_to_datetime(int(r[0])).astimezone(zone), float(r[1]))
                       for r in s.values if r[1] is not None])
             for legend, s in results]  # fmt: skip
    drawn = [(legend, points) for legend, points in drawn if points]
    as_line = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]
               if {"id": "custom.drawStyle", "value": "line"} in o["properties"]}  # fmt: skip
    lines = [(legend, points) for legend, points in drawn if legend in as_line]
    drawn = [(legend, points) for legend, points in drawn if legend not in as_line]
    if bars:
        slots = sorted({x for _, points in drawn + lines for x, _ in points})
        monthly = all(x.day == 1 and x.hour == 0 for x in slots)
        if monthly and span:  # every month of the period, so one month is one bar of many
            first = ns_to_datetime(span[0]).astimezone(zone)
            month = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            if month < first:
                month = (month + timedelta(days=32)).replace(day=1)
            last = ns_to_datetime(span[1]).astimezone(zone)
            every = []
            while month <= last:
                every.append(month)
                month = (month + timedelta(days=32)).replace(day=1)
            slots = sorted(set(slots) | set(every))
        labels = [x.strftime("%Y-%m" if monthly else "%m-%d") for x in slots]
        index = {x: i for i, x in enumerate(slots)}
        bottom = [0.0] * len(slots)
        width = 0.8 if stacked else 0.8 / max(1, len(drawn))
        for n, (legend, points) in enumerate(drawn):
            heights = [0.0] * len(slots)
            for x, y in points:
                heights[index[x]] += y
            xs = [i if stacked else i - 0.4 + width * (n + 0.5) for i in range(len(slots))]
            ax.bar(xs, heights, width, bottom=bottom if stacked else None, label=legend)
            if stacked:
                bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        for legend, points in lines:  # e.g. a pathway over the bars
            xy = sorted((index[x], y) for x, y in points if x in index)
            if xy:
                ax.plot(*zip(*xy, strict=True), color="black", linewidth=1.5, marker="o",
                        markersize=3, label=legend)  # fmt: skip
        step = max(1, len(slots) // 12)
        ax.set_xticks(range(0, len(slots), step), labels[::step], fontsize=7, rotation=30)
    else:
        for legend, points in drawn + lines:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=legend, linewidth=1, marker="o" if len(xs) < 30 else None,
                    markersize=3)  # fmt: skip
        locator = mdates.AutoDateLocator(tz=zone)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone))
        if span:  # the panel's period, not just where its points are
            ax.set_xlim(ns_to_datetime(span[0]).astimezone(zone),
                        ns_to_datetime(span[1]).astimezone(zone))  # fmt: skip
        ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel(unit, fontsize=8)
    _thousands(ax.yaxis)
    ax.tick_params(axis="y", labelsize=7)
    if len(drawn) <= 12:
        ax.legend(fontsize=6, loc="upper left")
    else:
        ax.text(0.99, 0.97, f"{len(drawn)} series", ha="right", va="top", fontsize=7,
                transform=ax.transAxes)  # fmt: skip


def _weekday_hour(ax: Any, results: list[tuple[str, Series]], tz: str, unit: str) -> None:
    """Mean value by local weekday (rows) and hour of day (columns)."""
    zone = ZoneInfo(tz)
    sums = [[0.0] * 24 for _ in range(7)]
    counts = [[0] * 24 for _ in range(7)]
    for _, s in results:
        for row in s.values:
            if row[1] is None:
                continue
            local = ns_to_datetime(int(row[0])).astimezone(zone)
            sums[local.weekday()][local.hour] += float(row[1])
            counts[local.weekday()][local.hour] += 1
    grid = [[sums[d][h] / counts[d][h] if counts[d][h] else 0.0 for h in range(24)]
            for d in range(7)]  # fmt: skip
    image = ax.imshow(grid, aspect="auto", cmap="Oranges")
    ax.set_yticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], fontsize=7)
    ax.set_xticks(range(0, 24, 3))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"hour of day ({tz}); colour: mean {unit} per hour", fontsize=8)
    ax.figure.colorbar(image, ax=ax)


def draw_panel(ax: Any, panel: dict[str, Any], results: list[tuple[str, Series]], tz: str,
               variables: dict[str, list[str]], span: tuple[int, int] | None = None,
               ) -> None:  # fmt: skip
    unit = unit_words(panel["fieldConfig"]["defaults"].get("unit", ""))
    width_in = ax.get_position().width * ax.figure.get_figwidth() + 1.2
    title = textwrap.fill(interpolate(panel["title"], variables), max(20, int(width_in * 13)))
    ax.set_title(title, loc="left", fontsize=9, pad=4)
    has = [(legend, s) for legend, s in results if any(
        v is not None for row in s.values for v in row[1:])]  # fmt: skip
    if not has:
        _no_data(ax, panel)
    elif panel["type"] == "table":
        _table(ax, has)
    elif panel["type"] == "heatmap":
        _weekday_hour(ax, has, tz, unit)
    elif panel["type"] == "bargauge":
        _bars(ax, panel, has, unit)
    elif panel["type"] == "stat":
        _stat(ax, panel, has)
    else:
        _timeseries(ax, panel, has, tz, unit, span)
    if panel["type"] not in ("table", "stat"):
        ax.grid(alpha=0.3)


def render_dashboard(
    store: Store, dashboard: Dashboard, start_ns: int, end_ns: int, tz: str, path: Path,
    interval: str = "1h",
) -> Path:  # fmt: skip
    """One PNG of a whole dashboard over ``[start, end)`` with its variables at default."""
    variables = variables_of(dashboard)
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width_in, row_in, head_in = 18.0, 0.42, 0.9  # inches: page, one grid row, heading
    height_in = rows * row_in + head_in
    fig = plt.figure(figsize=(width_in, height_in))
    zone = ZoneInfo(tz)
    first = datetime.fromtimestamp(start_ns / 1e9, zone)
    last = datetime.fromtimestamp((end_ns - 1) / 1e9, zone)
    chosen = ", ".join(f"{k}: {'all' if v == ALL else ', '.join(v)}"
                       for k, v in variables.items())  # fmt: skip
    fig.text(0.01, 1 - 0.3 / height_in, interpolate(dashboard["title"], variables),
             fontsize=13, weight="bold", va="center")  # fmt: skip
    fig.text(0.01, 1 - 0.65 / height_in, f"{first:%d %b %Y %H:%M} – {last:%d %b %Y %H:%M} "
             f"({tz}){'; ' + chosen if chosen else ''}. A panel naming its own period "
             "(today, this month to date, last exported month) shows that period.",
             fontsize=8, color="#555555", va="center")  # fmt: skip
    for panel in panels:
        g = panel["gridPos"]
        # the panel's box in inches, less room for its title, axis labels and ticks
        box_left, box_w = g["x"] / 24 * width_in, g["w"] / 24 * width_in
        box_top = head_in + g["y"] * row_in
        inner = {"table": (0.1, 0.1, 0.35, 0.1), "stat": (0.1, 0.1, 0.35, 0.1)}.get(
            panel["type"], (1.3, 0.35, 0.4, 0.75)
        )  # left, right, top, bottom
        left = (box_left + inner[0]) / width_in
        w = (box_w - inner[0] - inner[1]) / width_in
        top = 1 - (box_top + inner[2]) / height_in
        h = (g["h"] * row_in - inner[2] - inner[3]) / height_in
        ax = fig.add_axes((left, top - h, w, h))
        results = run_panel(store, panel, start_ns, end_ns, tz, interval, variables)
        draw_panel(ax, panel, results, tz, variables,
                   panel_range(panel, start_ns, end_ns, tz))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def render_all(
    config: Config, store: Store, start_ns: int, end_ns: int, out: Path,
    dashboards: list[Dashboard] | None = None,
) -> list[Path]:  # fmt: skip
    """One PNG per dashboard for ``[start, end)``: ``<uid>.png`` in ``out``. A dashboard whose
    own default range is longer (scope 3: 13 months of monthly bars) keeps it, ending at
    ``end``; one about the live system (default under a day: ingest health) shows its default
    range up to the wall clock's now, whatever period the others show."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in dashboards or all_dashboards(config):
        start, end = start_ns, end_ns
        default = d["time"]["from"]
        if default.startswith("now-"):
            span = span_s(default[4:]) * 10**9
            if span < 86_400 * 10**9:
                end = time.time_ns()
                start = end - span
            else:
                start = min(start, end - span)
        paths.append(render_dashboard(store, d, start, end, config.jobs.timezone,
                                      out / f"{d['uid']}.png"))  # fmt: skip
    return paths
