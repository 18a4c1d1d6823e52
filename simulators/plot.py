"""A simulated week per supplier kind, as a PNG: so a reader can judge the load profiles.

``python -m simulators.plot [--start 2026-07-06] [--out docs/simulated-week.png]`` runs the
simulator in memory (no broker needed) over seven days from a Monday, site local time, and
draws each supplier's electricity (sum of its consumption meters, hourly mean kW), its gas
(m³/h) and, where it has rooftop PV, the PV output.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from simulators.ledger import HOUR_NS
from simulators.run import generate, prepare
from supplymeter.config import Config, load_config
from supplymeter.records import datetime_to_ns


def plot_week(config: Config, monday: date, out: Path, seed: int = 1, tz: str = "Asia/Taipei"):
    """Simulate ``monday`` + 7 days and write the figure to ``out``. Returns ``out``."""
    zone = ZoneInfo(tz)
    start = datetime_to_ns(datetime(monday.year, monday.month, monday.day, tzinfo=zone))
    run = prepare(config, start, start + 7 * 24 * HOUR_NS, seed, batch=60)
    for _ in generate(run):
        pass
    truth = run.ledger.consumption()
    series: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for key, hours in truth.items():
        ref = config.registry.meter(*key)
        assert ref is not None
        if ref.meter.role == "grid":
            continue
        label = {"electricity": "electricity [kW]", "natural_gas": "gas [m³/h]"}.get(
            ref.meter.carrier
        )
        if ref.meter.role == "pv":
            label = "rooftop PV [kW]"
        if label is None:
            continue
        for hour, amount in hours.items():
            row = series[key[0]][label]
            row[hour] = row.get(hour, 0.0) + float(amount)
    suppliers = config.registry.suppliers
    fig, axes = plt.subplots(len(suppliers), 1, figsize=(11, 2.3 * len(suppliers)), sharex=True)
    colours = {"electricity [kW]": "#1f77b4", "rooftop PV [kW]": "#f2a900", "gas [m³/h]": "#d62728"}
    for ax, supplier in zip(axes, suppliers, strict=True):
        for label, hours in sorted(series[supplier.id].items()):
            xs = [datetime.fromtimestamp(h / 1e9, zone) for h in sorted(hours)]
            ys = [hours[h] for h in sorted(hours)]
            target = ax if label != "gas [m³/h]" else ax.twinx()
            target.plot(xs, ys, label=label, color=colours[label], linewidth=1.1)
            if label == "gas [m³/h]":
                target.set_ylabel("m³/h", color=colours[label])
                target.set_ylim(bottom=0)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("kW")
        ax.set_title(f"{supplier.id} — {supplier.kind.replace('_', ' ')}", loc="left", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%a %d", tz=zone))
    end = monday + timedelta(days=6)
    fig.suptitle(f"Simulated week {monday:%Y-%m-%d} – {end:%Y-%m-%d} ({tz}), seed {seed}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 7, 6))
    parser.add_argument("--out", type=Path, default=Path("docs/simulated-week.png"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(plot_week(load_config(args.config), args.start, args.out, args.seed))


if __name__ == "__main__":
    main()
