"""Does the simulator behave like real plants? The same statistics for simulated meters and
for each real series, side by side.

    bench/bench_realism.py [--series DIR] [--seed S] [--write DIR]

For each 15-minute series (real: ``data/real-loads`` in the format its README gives; simulated:
the example registry's larger consumption meters, one year): load factor (mean / max), night/day
ratio (00–05 against 10–15, workdays), Saturday and Sunday ratios (daily energy against
workdays), quantiles of the 15-min step (|Δ| / mean load: p50, p90, p99), autocorrelation at
15 min / 1 h / 24 h, autocorrelation at 15 min of the deviation from the hour-of-week median, the
median coefficient of variation per hour-of-week, and the CV of daily workday energy. A
simulator figure passes when it lies within the range of the real series (± 10 % of that
range's width, for rounding); the table says which do not. ``--write DIR`` also writes the
simulated series as CSVs + ``series.toml`` for ``bench_alerts_real.py --series DIR``.

Heavy industry (``--heavy DIR``, default ``bench/data/heavy``: a steel plant's load): the
simulated meters whose production load is a shop of large machines (``equipment = "machines"``:
the forge's and the heat-treatment plant's site meters) are judged on the figures of the load's
*shape* (:data:`SHAPE`: load factor, steps, short-lag autocorrelations, CV per hour of week)
against the heavy real series — within their range ± 25 % of its bounds, one real series being
a point — and on the figures of their *schedule* (night/day, weekends, 24-h autocorrelation,
day-to-day energy) against the other real series, as every simulated plant is. Those meters are
written as kind ``simulator-heavy``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from simulators.faults import FaultLog
from simulators.series import site_loads, with_interval
from supplymeter.calendar import public_holidays
from supplymeter.config import Config, load_config
from supplymeter.records import datetime_to_ns

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real-loads"
HEAVY = ROOT / "bench" / "data" / "heavy"
HEAVY_SLACK = 0.25
"""A simulated heavy plant's figure passes within this share of the heavy real figure(s)."""
SHAPE = ("load_factor", "step_p50", "step_p90", "step_p99", "acf_15min", "acf_1h",
         "dev_acf_15min", "cv_hour_of_week")  # fmt: skip
"""The figures of a load's shape (what its machines do), as against its schedule."""
TPE = ZoneInfo("Asia/Taipei")
SIMULATED = [  # (supplier, site, meter): the example plants' site meters — whole-site loads,
    # as the real series are (a single machine's sub-meter is spikier than any site)
    ("forge-a", "taichung-1", "main"),
    ("spring-b", "changhua-1", "main"),
    ("spring-b", "changhua-2", "main"),
    ("heat-c", "kaohsiung-1", "main"),
    ("cnc-d", "tainan-1", "main"),
]
NAMES = {
    "load_factor": "load factor",
    "night_day": "night/day",
    "saturday": "Saturday",
    "sunday": "Sunday",
    "step_p50": "step p50",
    "step_p90": "step p90",
    "step_p99": "step p99",
    "acf_15min": "ACF 15 min",
    "acf_1h": "ACF 1 h",
    "acf_24h": "ACF 24 h",
    "dev_acf_15min": "deviation ACF 15 min",
    "cv_hour_of_week": "CV hour-of-week",
    "cv_workday_energy": "CV workday energy",
}


def acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).sum() / (x * x).sum())


def statistics(local: pd.DatetimeIndex, kw: np.ndarray, country: str) -> dict[str, float]:
    """The figures of one series (``local``: interval starts in local time)."""
    mean = kw.mean()
    holidays = set()
    for year in sorted(set(local.year)):
        holidays |= set(public_holidays(country, int(year)))
    dates = np.array([d in holidays for d in local.date])
    weekday = np.asarray(local.weekday)
    workday = (weekday < 5) & ~dates
    hour = np.asarray(local.hour)
    frame = pd.DataFrame({"kw": kw, "day": local.date, "workday": workday, "weekday": weekday})
    daily = frame.groupby("day").agg(kw=("kw", "mean"), workday=("workday", "first"),
                                     weekday=("weekday", "first"))  # fmt: skip
    work_days = daily[daily.workday]
    how = weekday * 24 + hour
    medians = pd.Series(kw).groupby(how).transform("median").to_numpy()
    by_how = pd.Series(kw).groupby(how)
    cv = (by_how.std() / by_how.mean()).replace([np.inf, -np.inf], np.nan).median()
    steps = np.abs(np.diff(kw)) / mean
    sat = daily[(daily.weekday == 5) & ~daily.index.isin(holidays)].kw.mean()
    sun = daily[daily.weekday == 6].kw.mean()
    return {
        "load_factor": mean / kw.max(),
        "night_day": kw[workday & (hour < 5)].mean()
        / kw[workday & (hour >= 10) & (hour < 15)].mean(),
        "saturday": sat / work_days.kw.mean(),
        "sunday": sun / work_days.kw.mean(),
        "step_p50": float(np.quantile(steps, 0.5)),
        "step_p90": float(np.quantile(steps, 0.9)),
        "step_p99": float(np.quantile(steps, 0.99)),
        "acf_15min": acf(kw, 1),
        "acf_1h": acf(kw, 4),
        "acf_24h": acf(kw, 96),
        "dev_acf_15min": acf(kw - medians, 1),
        "cv_hour_of_week": float(cv),
        "cv_workday_energy": float(work_days.kw.std() / work_days.kw.mean()),
    }  # fmt: skip


def read_real(directory: Path) -> dict[str, tuple[pd.DatetimeIndex, np.ndarray, str]]:
    import tomllib

    meta = tomllib.loads((directory / "series.toml").read_text())
    out = {}
    for path in sorted(directory.glob("*.csv")):
        df = pd.read_csv(path)
        stamps = pd.to_datetime(df.iloc[:, 0], utc=True)
        country = meta.get(path.stem, {}).get("country", "DE")
        zone = meta.get(path.stem, {}).get("timezone") or {
            "DE": "Europe/Berlin", "TW": "Asia/Taipei"}.get(country, "UTC")  # fmt: skip
        out[path.stem] = (pd.DatetimeIndex(stamps.dt.tz_convert(zone)),
                          df.iloc[:, 1].to_numpy(float), country)  # fmt: skip
    return out


def heavy_meters(config: Config) -> set[str]:
    """Names (``sim:supplier/site/meter``) of the simulated meters whose production load is a
    shop of large machines."""
    return {f"sim:{'/'.join(r.key)}" for r in config.registry.meters()
            if r.key in SIMULATED and r.meter.simulation.equipment == "machines"}  # fmt: skip


def simulate(
    config: Config, seed: int, shifts: dict[str, list[list]] | None = None
) -> dict[str, tuple[pd.DatetimeIndex, np.ndarray, str]]:
    """The simulated site meters' year; ``shifts`` (if given) receives each meter's base-load
    shifts, the simulator's ground truth: ``[start (RFC 3339), factor before, factor after]``."""
    registry = with_interval(config, 900)
    start = datetime_to_ns(datetime(2025, 1, 1, tzinfo=TPE))
    end = datetime_to_ns(datetime(2026, 1, 1, tzinfo=TPE))
    out = {}
    for supplier, site in sorted({k[:2] for k in SIMULATED}):
        faults = FaultLog()
        loads = site_loads(registry, supplier, site, start, end, seed, faults=faults)
        if shifts is not None:
            for e in faults.of_type("base_shift"):
                shifts.setdefault(f"sim:{supplier}/{site}/{e.meter}", []).append(
                    [e.start, e.details["from"], e.details["to"]]
                )
        for key in SIMULATED:
            if key[:2] == (supplier, site) and key[2] in loads:
                rows = loads[key[2]]
                index = pd.DatetimeIndex([t for t, _ in rows])
                out[f"sim:{'/'.join(key)}"] = (index, np.array([v for _, v in rows]), "TW")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, default=REAL)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--heavy", type=Path, default=HEAVY, help="real heavy-industry series")
    parser.add_argument("--write", type=Path, help="also write the simulated series here")
    args = parser.parse_args()
    real = read_real(args.series)
    config = load_config(ROOT / "supplymeter.toml", {})
    shifts: dict[str, list[list]] = {}
    sim = simulate(config, args.seed, shifts)
    figures = {name: statistics(*v) for name, v in {**real, **sim}.items()}
    cols = list(NAMES)
    heavy = heavy_meters(config)
    lo = {c: min(figures[n][c] for n in real) for c in cols}
    hi = {c: max(figures[n][c] for n in real) for c in cols}
    print("| series | " + " | ".join(NAMES[c] for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    outside = []
    for name, f in figures.items():
        cells = []
        for c in cols:
            cell = f"{f[c]:.2f}"
            if name in sim and not (name in heavy and c in SHAPE):
                slack = 0.1 * (hi[c] - lo[c])
                if not lo[c] - slack <= f[c] <= hi[c] + slack:
                    cell += " ✗"
                    outside.append(f"{name} {NAMES[c]} {f[c]:.2f} (real {lo[c]:.2f}–{hi[c]:.2f})")
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **real range** | " + " | ".join(f"{lo[c]:.2f}–{hi[c]:.2f}" for c in cols) + " |")
    total = len(sim) * len(cols) - len(heavy) * len(SHAPE)
    print(f"\nsimulator figures inside the real range (the heavy plants' shape apart): "
          f"{total - len(outside)} of {total}")  # fmt: skip
    for line in outside:
        print(f"  outside: {line}")
    if args.heavy.is_dir() and heavy:
        compare_heavy(read_real(args.heavy), {n: figures[n] for n in sorted(heavy)})
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        toml = []
        for name, (index, kw, _) in sim.items():
            stem = name.split(":", 1)[1].replace("/", "-")
            pd.DataFrame({"datetime": [t.isoformat() for t in index], "load [kW]": kw}).to_csv(
                args.write / f"{stem}.csv", index=False
            )
            kind = "simulator-heavy" if name in heavy else "simulator"
            known = ", ".join(f'["{t}", {a}, {b}]' for t, a, b in shifts.get(name, []))
            toml.append(f'[{stem}]\nmean_kw = {kw.mean():.1f}\ncountry = "TW"\n'
                        f'kind = "{kind}"\ntimezone = "Asia/Taipei"\n'
                        f"base_shifts = [{known}]\n")  # fmt: skip
        (args.write / "series.toml").write_text("\n".join(toml))
        print(f"wrote {len(sim)} simulated series to {args.write}", file=sys.stderr)


def compare_heavy(real: dict, sim: dict[str, dict[str, float]]) -> None:
    """The simulated heavy plants beside the real heavy series: a figure passes within the
    real range ± :data:`HEAVY_SLACK` of its bounds."""
    figures = {name: statistics(*v) for name, v in real.items()}
    cols = list(SHAPE)
    lo = {c: min(f[c] for f in figures.values()) for c in cols}
    hi = {c: max(f[c] for f in figures.values()) for c in cols}
    print(
        "\nheavy industry: the shape of simulated shops of large machines against real "
        "heavy loads\n"
    )
    print("| series | " + " | ".join(NAMES[c] for c in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, f in figures.items():
        print(f"| {name} | " + " | ".join(f"{f[c]:.2f}" for c in cols) + " |")
    outside = []
    for name, f in sim.items():
        cells = []
        for c in cols:
            ok = lo[c] * (1 - HEAVY_SLACK) <= f[c] <= hi[c] * (1 + HEAVY_SLACK)
            cells.append(f"{f[c]:.2f}" + ("" if ok else " ✗"))
            if not ok:
                outside.append(f"{name} {NAMES[c]} {f[c]:.2f} (heavy {lo[c]:.2f}–{hi[c]:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    total = len(sim) * len(cols)
    print(f"\nheavy figures within ± {HEAVY_SLACK:.0%} of the real heavy range: "
          f"{total - len(outside)} of {total}")  # fmt: skip
    for line in outside:
        print(f"  outside: {line}")


if __name__ == "__main__":
    main()
