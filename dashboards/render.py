"""PNGs of the dashboards' panels from the same queries, for places without Grafana
(reports, emails, the demo): ``supplymeter dashboards render --out DIR``.

Time-series panels become line charts (bar charts for the scope-3 bars), stat and bar-gauge
panels a bar per series; tables are left to Grafana.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dashboards.macros import panel_range, substitute
from dashboards.model import Dashboard, all_dashboards
from supplymeter.config import Config
from supplymeter.influx import Series
from supplymeter.records import ns_to_datetime
from supplymeter.store import Store

ALL = ["$__all"]


def run_panel(
    store: Store, panel: dict[str, Any], start_ns: int, end_ns: int, tz: str,
    interval: str = "1h", variables: dict[str, list[str]] | None = None,
) -> list[tuple[str, Series]]:  # fmt: skip
    """(legend, series) of every query of a panel, as Grafana would fetch them."""
    lo, hi = panel_range(panel, start_ns, end_ns, tz)
    out = []
    for target in panel["targets"]:
        query = substitute(target["query"], lo, hi, interval, variables)
        for series in store.panel_query(query):
            legend = target.get("alias", "") or series.name
            tags = series.tags
            legend = re.sub(r"\$tag_(\w+)", lambda m, tags=tags: tags.get(m[1], ""), legend)
            out.append((legend or series.name, series))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_panel(
    panel: dict[str, Any], results: list[tuple[str, Series]], path: Path, tz: str
) -> Path | None:
    if panel["type"] == "table" or not results:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.4))
    if panel["type"] == "heatmap":
        _weekday_hour(ax, results, tz)
    elif panel["type"] in ("bargauge", "stat"):
        labels = [legend for legend, _ in results]
        values = [next((v for v in reversed([row[1] for row in s.values]) if v is not None), 0)
                  for _, s in results]  # fmt: skip
        ax.bar(labels, [float(v) for v in values])
        ax.tick_params(axis="x", rotation=30)
    else:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(tz)
        for legend, s in results:
            points = [(ns_to_datetime(int(row[0])).astimezone(zone), row[1]) for row in s.values
                      if row[1] is not None]  # fmt: skip
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            if panel["type"] == "barchart":
                ax.bar([x.strftime("%Y-%m") for x in xs], ys, label=legend, alpha=0.7)
            else:
                ax.plot(xs, ys, label=legend, linewidth=1)
        fig.autofmt_xdate()
        if len(results) <= 12:
            ax.legend(fontsize=7, loc="upper left")
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    ax.set_title(panel["title"], loc="left", fontsize=10)
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _weekday_hour(ax: Any, results: list[tuple[str, Series]], tz: str) -> None:
    """Mean value by local weekday (rows) and hour of day (columns)."""
    from zoneinfo import ZoneInfo

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
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    ax.set_xticks(range(0, 24, 3))
    ax.set_xlabel(f"hour of day ({tz})")
    ax.figure.colorbar(image, ax=ax)


def render_all(
    config: Config, store: Store, start_ns: int, end_ns: int, out: Path,
    dashboards: list[Dashboard] | None = None,
) -> list[Path]:  # fmt: skip
    """Render every chartable panel of every dashboard for ``[start, end]``."""
    out.mkdir(parents=True, exist_ok=True)
    tz = config.jobs.timezone
    written = []
    for dashboard in dashboards or all_dashboards(config):
        variables = {v["name"]: ALL for v in dashboard["templating"]["list"]}
        for panel in dashboard["panels"]:
            results = run_panel(store, panel, start_ns, end_ns, tz, "1h", variables)
            path = out / f"{dashboard['uid']}-{panel['id']:02d}-{_slug(panel['title'])}.png"
            if render_panel(panel, results, path, tz):
                written.append(path)
    return written
