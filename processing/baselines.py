"""Energy baselines and measured savings: what a site or meter would have used, and what a
measure saved, with the uncertainty of the claim.

Method (pure; the progress job feeds it stored hours):

* **Daily data.** Hourly consumption is summed into the site's local days. A day with less
  than :data:`MIN_DAY_COVERAGE` of its hours measured (missing or estimated hours) is left out
  of fitting and of savings and counted in the data completeness — a model is not fitted on
  the estimates it would then be judged against.
* **Baseline model** (ISO 50006:2014 energy baselines and EnPIs; ASHRAE Guideline 14-2014
  §5.2 and Annex D, inverse models; the same form as the CalTRACK 2.0 daily methods): ordinary
  least squares of daily energy on the drivers the data has — production (pieces counted that
  day), day type (``saturday``, ``off_day`` = Sunday or public holiday; weekdays are the
  reference), cooling and heating degree days from a daily mean temperature file. With
  ``drivers = "auto"`` every subset of the available drivers is fitted and the one with the
  highest adjusted R² is kept among those whose every coefficient is significant
  (p < :data:`DRIVER_P_MAX`, the CalTRACK 2.0 §3.4.3.2 screen); the cooling and heating balance
  points are searched over :data:`BALANCE_POINTS_C` the same way (CalTRACK §3.4.3). Fitted
  with ``statsmodels`` OLS.
* **Statistics** (ASHRAE Guideline 14-2014 §4.1.3 and Annex B): R²; CV(RMSE) =
  √(Σ(y−ŷ)²/(n−p)) / ȳ; NMBE = Σ(y−ŷ) / ((n−p)·ȳ); lag-1 autocorrelation ρ of the residuals
  and the effective number of points n′ = n(1−ρ)/(1+ρ) (ρ < 0 taken as 0, conservative).
  Guideline 14 gives limits for monthly data (CV(RMSE) ≤ 15 %, |NMBE| ≤ 5 %) and hourly data
  (≤ 30 %, ≤ 10 %). A daily model is judged by both: its daily residuals against the hourly
  limits (daily data are finer than monthly), and its calendar-month sums against the monthly
  limits. A model that fails either is reported with the reason and gives no savings.
* **Avoided energy** (IPMVP Core Concepts 2022, Option B for sub-metered measures and
  Option C for a whole site): adjusted baseline (the model on the reporting period's drivers)
  − measured use, over the reporting days with complete data that no non-routine exclusion
  covers.
* **Savings uncertainty** at 90 % confidence, two parts combined in quadrature. The model's
  scatter (ASHRAE Guideline 14-2014 Annex B, after Reddy & Claridge 2000)::

      ΔE_scatter = 1.26 · t(0.95, n′−p) · CV · √((n/n′)·(1 + 2/n′)/m) · E_adjusted

  with m the reporting days; and the base load's drift between the periods, which
  Guideline 14 does not cover (see :func:`base_drift`)::

      ΔE_drift = z(0.95) · m · √(q · (n/3 + gap + m/3))

  The fractional savings uncertainty is FSU = ΔE_save / E_save. Savings inside ±ΔE_save are
  *not significant*: the data cannot tell them from zero.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from supplymeter.calendar import public_holidays

MIN_DAY_COVERAGE = 0.95
"""Share of a day's hours that must be measured (not missing, not estimated) for the day to
enter a model or a savings sum."""
DRIVER_P_MAX = 0.1
"""A driver is kept only if its coefficient's p-value is below this (CalTRACK 2.0 §3.4.3.2)."""
BALANCE_POINTS_C = tuple(range(14, 29))
"""Candidate degree-day balance points [°C], searched when a temperature file is given
(CalTRACK 2.0 §3.4.3 searches 30–90 °F; Taiwan's climate needs the upper part)."""
CONFIDENCE = 0.90
"""Confidence level of every stated savings uncertainty (two-sided)."""
FSU_COEFFICIENT = 1.26
"""Empirical coefficient of ASHRAE Guideline 14-2014 Annex B's savings-uncertainty formula."""
GUIDELINE_14 = {"monthly": (15.0, 5.0), "hourly": (30.0, 10.0)}
"""ASHRAE Guideline 14-2014 calibration limits: (CV(RMSE) %, |NMBE| %) by data interval."""
DRIVERS = ("production", "saturday", "off_day", "cdd", "hdd")
"""Drivers a baseline can use (``cdd``/``hdd`` only with a temperature file)."""


@dataclass(frozen=True)
class Period:
    """Local dates ``[start, end)``."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"a period must end after it starts ({self.start} → {self.end})")

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day < self.end

    def __str__(self) -> str:
        return f"{self.start.isoformat()} – {(self.end - timedelta(days=1)).isoformat()}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def daily_frame(
    hours: Iterable[tuple[int, float, float]],
    timezone: str,
    period: Period,
    *,
    production: Iterable[tuple[int, float]] = (),
    temperature: dict[date, float] | None = None,
    country: str = "TW",
) -> pd.DataFrame:
    """One row per local day of ``period``: ``energy`` (sum of the day's hours), ``coverage``
    (measured hours / hours the day has), ``base`` (the day at its lowest hour's rate),
    ``production`` (pieces), ``saturday``, ``off_day``
    and, with ``temperature`` (daily mean °C by local date), ``temp_c``.

    ``hours`` are (hour start ns, consumption, estimated part of it); ``production`` is
    (hour start ns, pieces).
    """
    tz = ZoneInfo(timezone)
    days = [period.start + timedelta(days=i) for i in range(period.days)]
    index = pd.Index(days, name="day")
    day_index = pd.DatetimeIndex(pd.to_datetime(days))
    rows = np.array(list(hours), dtype=float).reshape(-1, 3)
    local = _local_days(rows[:, 0], timezone)
    value, estimated = rows[:, 1], rows[:, 2]
    measured = np.clip(1.0 - estimated / np.where(value > 0, value, 1.0), 0.0, 1.0)
    share = np.where((value > 0) & (estimated > 0), measured, 1.0)
    by_day = pd.DataFrame({"energy": value, "lowest": value, "measured": share}, index=local)
    grouped = by_day.groupby(level=0).agg({"energy": "sum", "lowest": "min", "measured": "sum"})
    grouped = grouped.reindex(day_index)
    counted = np.array(list(production), dtype=float).reshape(-1, 2)
    pieces = (pd.Series(counted[:, 1], index=_local_days(counted[:, 0], timezone))
              .groupby(level=0).sum().reindex(day_index).fillna(0.0))  # fmt: skip
    lengths = np.array([_hours_in(d, tz) for d in days])
    holidays: set[date] = set()
    for year in {d.year for d in days}:
        holidays |= public_holidays(country, year)
    frame = pd.DataFrame(
        {
            "energy": grouped["energy"].fillna(0.0).to_numpy(),
            "coverage": grouped["measured"].fillna(0.0).to_numpy() / lengths,
            "base": grouped["lowest"].to_numpy() * lengths,
            "production": pieces.to_numpy(),
            "saturday": [float(d.weekday() == 5 and d not in holidays) for d in days],
            "off_day": [float(d.weekday() == 6 or d in holidays) for d in days],
        },
        index=index,
    )
    if temperature is not None:
        frame["temp_c"] = [temperature.get(d, math.nan) for d in days]
    return frame


def _local_days(ns: np.ndarray, timezone: str) -> pd.DatetimeIndex:
    """Each epoch-ns instant's local calendar day (midnight, naive)."""
    stamps = pd.to_datetime(ns.astype("int64"), utc=True).tz_convert(timezone)
    return stamps.tz_localize(None).normalize()


def _hours_in(day: date, tz: ZoneInfo) -> float:
    """Hours of a local day (23 or 25 on a daylight-saving change)."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return (end.timestamp() - start.timestamp()) / 3600.0


@dataclass(frozen=True)
class Fit:
    """Goodness of fit of a model on its own data, in ASHRAE Guideline 14's terms."""

    n: int
    p: int
    r2: float
    cv_rmse_pct: float
    nmbe_pct: float
    rho: float
    """Lag-1 autocorrelation of the residuals in date order (≥ 0 as used)."""
    monthly_cv_rmse_pct: float | None
    monthly_nmbe_pct: float | None
    months: int
    drift_per_day: float = 0.0
    """Growth per day of the variance of the level the model misses (its random-walk part):
    the larger of :func:`residual_drift` and :func:`base_drift` over the baseline period.
    [unit²/day² per day]"""

    @property
    def n_effective(self) -> float:
        return self.n * (1 - self.rho) / (1 + self.rho)


@dataclass(frozen=True)
class Baseline:
    """A fitted baseline model: energy per day = intercept + Σ coefficient × driver."""

    period: Period
    drivers: tuple[str, ...]
    intercept: float
    coefficients: dict[str, float]
    p_values: dict[str, float]
    fit: Fit
    cooling_base_c: float | None = None
    heating_base_c: float | None = None
    days_used: int = 0
    days_excluded: int = 0
    problems: tuple[str, ...] = ()
    """Why the model may not be used for savings (empty: it passes Guideline 14)."""

    @property
    def valid(self) -> bool:
        return not self.problems

    def formula(self, unit: str = "kWh") -> str:
        parts = [f"{self.intercept:,.1f}"]
        for name in self.drivers:
            parts.append(f"{self.coefficients[name]:+,.4g} × {driver_label(name, self)}")
        return f"{unit}/day = " + " ".join(parts)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = design(frame, self.drivers, self.cooling_base_c, self.heating_base_c)
        beta = np.array([self.intercept, *(self.coefficients[d] for d in self.drivers)])
        return np.asarray(x @ beta, dtype=float)


def driver_label(name: str, model: Baseline | None = None) -> str:
    if name == "cdd" and model is not None and model.cooling_base_c is not None:
        return f"CDD({model.cooling_base_c:g} °C)"
    if name == "hdd" and model is not None and model.heating_base_c is not None:
        return f"HDD({model.heating_base_c:g} °C)"
    return {"production": "pieces", "saturday": "Saturday", "off_day": "Sunday/holiday",
            "cdd": "CDD", "hdd": "HDD"}.get(name, name)  # fmt: skip


def design(
    frame: pd.DataFrame,
    drivers: Sequence[str],
    cooling_base_c: float | None = None,
    heating_base_c: float | None = None,
) -> np.ndarray:
    """The regression's design matrix: a constant, then each driver's column."""
    columns = [np.ones(len(frame))]
    for name in drivers:
        if name == "cdd":
            columns.append(np.maximum(0.0, frame["temp_c"].to_numpy() - float(cooling_base_c)))
        elif name == "hdd":
            columns.append(np.maximum(0.0, float(heating_base_c) - frame["temp_c"].to_numpy()))
        else:
            columns.append(frame[name].to_numpy(dtype=float))
    return np.column_stack(columns)


def usable(frame: pd.DataFrame, excluded: Sequence[Period] = ()) -> pd.Series:
    """Days that enter a model or a savings sum: complete data, no exclusion, a temperature
    where the frame has temperatures."""
    ok = frame["coverage"] >= MIN_DAY_COVERAGE
    if "temp_c" in frame:
        ok &= frame["temp_c"].notna()
    if excluded:
        ok &= [not any(d in p for p in excluded) for d in frame.index]
    return ok


def fit_baseline(
    frame: pd.DataFrame,
    period: Period,
    drivers: Sequence[str] | None = None,
    excluded: Sequence[Period] = (),
) -> Baseline:
    """Fit the baseline on the usable days of ``period`` in ``frame`` (see the module).

    ``drivers=None`` chooses among the available ones; an explicit list is fitted as given.
    """
    days = frame[[d in period for d in frame.index]]
    ok = usable(days, excluded)
    data = days[ok]
    available = [d for d in DRIVERS if d not in ("cdd", "hdd") or "temp_c" in data]
    available = [d for d in available if d in ("cdd", "hdd") or data[d].std() > 0]
    candidates: list[tuple[tuple[str, ...], float | None, float | None]] = []
    if drivers is not None:
        unknown = [d for d in drivers if d not in DRIVERS]
        if unknown:
            raise ValueError(f"unknown drivers {unknown}; choose from {list(DRIVERS)}")
        candidates = _with_balance_points(tuple(drivers))
    else:
        for k in range(len(available) + 1):
            for subset in itertools.combinations(available, k):
                if {"cdd", "hdd"} <= set(subset):
                    continue  # one temperature slope is enough on daily industrial data
                candidates += _with_balance_points(subset)
    best: tuple[float, tuple[str, ...], np.ndarray, np.ndarray, float | None, float | None]
    best = None  # type: ignore[assignment]
    for subset, cooling, heating in candidates:
        if len(data) <= len(subset) + 2:
            continue
        model = _ols(data, subset, cooling, heating)
        if model is None:
            continue
        result, beta, pvalues = model
        if drivers is None and any(p >= DRIVER_P_MAX for p in pvalues[1:]):
            continue
        score = float(result.rsquared_adj) if subset else 0.0
        if best is None or score > best[0] + 1e-12:
            best = (score, subset, beta, pvalues, cooling, heating)
    if best is None:
        return Baseline(
            period, (), math.nan, {}, {},
            Fit(len(data), 1, math.nan, math.nan, math.nan, 0.0, None, None, 0),
            days_used=len(data), days_excluded=int((~ok).sum()),
            problems=(f"too few usable days to fit ({len(data)} of {len(days)})",),
        )  # fmt: skip
    return _baseline(data, period, *best[1:], len(data), int((~ok).sum()))


def _with_balance_points(
    subset: tuple[str, ...],
) -> list[tuple[tuple[str, ...], float | None, float | None]]:
    cooling = BALANCE_POINTS_C if "cdd" in subset else (None,)
    heating = BALANCE_POINTS_C if "hdd" in subset else (None,)
    return [(subset, c, h) for c in cooling for h in heating]


def _ols(
    data: pd.DataFrame, subset: tuple[str, ...], cooling: float | None, heating: float | None
) -> tuple[object, np.ndarray, np.ndarray] | None:
    x = design(data, subset, cooling, heating)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        return None  # a driver constant over the period (e.g. no day above the balance point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sm.OLS(data["energy"].to_numpy(dtype=float), x).fit()
    return result, np.asarray(result.params, dtype=float), np.asarray(result.pvalues, dtype=float)


def _baseline(
    data: pd.DataFrame, period: Period, subset: tuple[str, ...], beta: np.ndarray,
    pvalues: np.ndarray, cooling: float | None, heating: float | None, used: int, excluded: int,
) -> Baseline:  # fmt: skip
    """The chosen model with its statistics, drift and Guideline 14 verdict."""
    y = data["energy"].to_numpy(dtype=float)
    y_hat = design(data, subset, cooling, heating) @ beta
    fit = goodness(y, y_hat, len(subset) + 1, list(data.index))
    drift = residual_drift(pd.Series(y - y_hat, data.index))
    if "base" in data:
        drift = max(drift, base_drift(data["base"]))
    fit = dataclasses.replace(fit, drift_per_day=drift)
    return Baseline(
        period, subset, float(beta[0]), dict(zip(subset, map(float, beta[1:]), strict=True)),
        dict(zip(subset, map(float, pvalues[1:]), strict=True)), fit, cooling, heating, used,
        excluded, judge(fit),
    )  # fmt: skip


def goodness(y: np.ndarray, y_hat: np.ndarray, p: int, days: Sequence[date]) -> Fit:
    """Guideline 14's statistics of predictions ``y_hat`` of ``y`` by a ``p``-parameter model
    (see the module), daily and on calendar-month sums."""
    n = len(y)
    mean = float(np.mean(y))
    resid = y - y_hat
    dof = max(n - p, 1)
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((y - mean) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    cv = 100.0 * math.sqrt(ss_res / dof) / mean if mean else math.nan
    nmbe = 100.0 * float(np.sum(resid)) / (dof * mean) if mean else math.nan
    rho = 0.0
    if n > 2 and np.std(resid) > 0:
        centred = resid - resid.mean()
        rho = max(0.0, float(np.sum(centred[1:] * centred[:-1]) / np.sum(centred**2)))
    rho = min(rho, 0.99)
    months: dict[tuple[int, int], list[float]] = {}
    for d, a, b in zip(days, y, y_hat, strict=True):
        got = months.setdefault((d.year, d.month), [0.0, 0.0])
        got[0] += a
        got[1] += b
    m_cv = m_nmbe = None
    if len(months) > p:
        actual = np.array([v[0] for v in months.values()])
        predicted = np.array([v[1] for v in months.values()])
        m_dof = len(months) - p
        m_mean = float(actual.mean())
        if m_mean:
            m_cv = 100.0 * math.sqrt(float(np.sum((actual - predicted) ** 2)) / m_dof) / m_mean
            m_nmbe = 100.0 * float(np.sum(actual - predicted)) / (m_dof * m_mean)
    return Fit(n, p, r2, cv, nmbe, rho, m_cv, m_nmbe, len(months))


DRIFT_LAGS = (7, 56)
"""Lags [days] between which the base load's variogram is differenced (see :func:`base_drift`)."""


RESIDUAL_WINDOW = 28
"""Days over which residuals are averaged before their drift is measured."""
RESIDUAL_LAGS = (28, 56, 84, 112, 140)
"""Lags [days] of the residual means' variogram (see :func:`residual_drift`)."""


def _variogram(daily: pd.Series, lags: Sequence[int], least: int = 1) -> dict[int, float]:
    """Lag → mean squared difference at that lag, of a series indexed by local date (days
    without a value skipped), for each lag with at least ``least`` pairs."""
    by_day = daily.copy()
    by_day.index = pd.to_datetime(by_day.index)
    full = by_day.asfreq("D")
    out = {}
    for lag in lags:
        diff = (full.shift(-lag) - full).dropna()
        if len(diff) >= least:
            out[lag] = float(np.mean(diff.to_numpy() ** 2))
    return out


def residual_drift(resid: pd.Series) -> float:
    """How fast the model's error wanders: q from the slope of Var(r̄(t+L) − r̄(t)) ≈ c + q·L
    over :data:`RESIDUAL_LAGS`, with r̄ the residuals' :data:`RESIDUAL_WINDOW`-day means
    (days without data skipped). Anything that moves the level without a driver moving — not
    only the base load — shows here. [unit²/day² per day]"""
    by_day = resid.copy()
    by_day.index = pd.to_datetime(by_day.index)
    means = by_day.asfreq("D").rolling(RESIDUAL_WINDOW, min_periods=RESIDUAL_WINDOW // 2).mean()
    gamma = _variogram(means, RESIDUAL_LAGS, least=RESIDUAL_WINDOW)
    lags = list(itertools.takewhile(lambda lag: lag in gamma, RESIDUAL_LAGS))
    if len(lags) < 3:
        return 0.0
    gammas = [gamma[lag] for lag in lags]
    slope = float(np.polyfit(np.array(lags, float), np.array(gammas), 1)[0])
    return max(0.0, slope)


def base_drift(base: pd.Series) -> float:
    """How fast a meter's base load wanders: q in Var(b(t+L) − b(t)) = 2σ² + q·L, from the
    variogram of the daily base load b (energy per day at the day's lowest hourly rate) at
    the two :data:`DRIFT_LAGS` (the difference cancels the day-to-day noise σ²). [unit²/day²
    per day]

    Why: Guideline 14's uncertainty covers the model's scatter, and its n′ the residuals'
    lag-1 autocorrelation. Industrial base loads also step up and down every few weeks with
    no driver moving (a compressor left running, a furnace relined, a line idling hot), and
    that error grows with the distance between baseline and reporting days. Measured on the
    simulator's plants, whose base loads shift like the real series: without this term, four
    of six 90 % intervals on an unchanged meter missed zero.
    """
    values = base.dropna()
    if len(values) < 3 * DRIFT_LAGS[-1]:
        return 0.0
    gamma = _variogram(values, DRIFT_LAGS)
    near, far = DRIFT_LAGS
    return max(0.0, (gamma.get(far, 0.0) - gamma.get(near, 0.0)) / (far - near))


def judge(fit: Fit) -> tuple[str, ...]:
    """Why the fit fails ASHRAE Guideline 14 (see the module); empty when it passes."""
    problems = []
    cv_max, nmbe_max = GUIDELINE_14["hourly"]
    if not fit.cv_rmse_pct <= cv_max:
        problems.append(f"daily CV(RMSE) {fit.cv_rmse_pct:.1f} % > {cv_max:g} %")
    if not abs(fit.nmbe_pct) <= nmbe_max:
        problems.append(f"daily NMBE {fit.nmbe_pct:+.1f} % outside ±{nmbe_max:g} %")
    cv_max, nmbe_max = GUIDELINE_14["monthly"]
    if fit.monthly_cv_rmse_pct is None:
        problems.append(f"{fit.months} months of data: too few to judge the monthly sums")
    else:
        if not fit.monthly_cv_rmse_pct <= cv_max:
            problems.append(f"monthly CV(RMSE) {fit.monthly_cv_rmse_pct:.1f} % > {cv_max:g} %")
        if not abs(fit.monthly_nmbe_pct or 0.0) <= nmbe_max:
            problems.append(
                f"monthly NMBE {fit.monthly_nmbe_pct:+.1f} % outside ±{nmbe_max:g} %")  # fmt: skip
    return tuple(problems)


@dataclass(frozen=True)
class Savings:
    """Avoided energy over a reporting period, with its uncertainty (see the module)."""

    period: Period
    days_used: int
    days_excluded: int
    adjusted_baseline: float
    """The baseline model on the reporting period's drivers. [unit]"""
    actual: float
    """Measured use over the same days. [unit]"""
    uncertainty: float
    """± half-width of the savings' 90 % interval. [unit]"""
    daily: pd.DataFrame = field(repr=False, compare=False)
    """Per used day: ``actual``, ``adjusted``, ``saved``."""
    scatter_uncertainty: float = math.nan
    """The Guideline 14 part of :attr:`uncertainty` (the model's scatter). [unit]"""
    drift_uncertainty: float = math.nan
    """The base-load drift part of :attr:`uncertainty` (see :func:`base_drift`). [unit]"""

    @property
    def saved(self) -> float:
        return self.adjusted_baseline - self.actual

    @property
    def saved_pct(self) -> float:
        return 100.0 * self.saved / self.adjusted_baseline if self.adjusted_baseline else math.nan

    @property
    def fsu_pct(self) -> float:
        """Fractional savings uncertainty at 90 % confidence. [%]"""
        return 100.0 * self.uncertainty / abs(self.saved) if self.saved else math.inf

    @property
    def significant(self) -> bool:
        return abs(self.saved) > self.uncertainty


def savings(
    model: Baseline, frame: pd.DataFrame, period: Period, excluded: Sequence[Period] = ()
) -> Savings:
    """Avoided energy over the usable days of ``period`` (see the module). The model must be
    valid; asking an invalid one is a programming error."""
    if not model.valid:
        raise ValueError(f"the baseline fails Guideline 14: {'; '.join(model.problems)}")
    days = frame[[d in period for d in frame.index]]
    ok = usable(days, excluded)
    data = days[ok]
    adjusted = model.predict(data)
    actual = data["energy"].to_numpy(dtype=float)
    m = len(data)
    uncertainty = math.nan
    parts = (math.nan, math.nan)
    if m:
        fit = model.fit
        n_eff = max(fit.n_effective, float(fit.p) + 1.0)
        t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n_eff - fit.p))
        scatter = (
            FSU_COEFFICIENT * t * fit.cv_rmse_pct / 100.0
            * math.sqrt((fit.n / n_eff) * (1 + 2 / n_eff) / m) * float(adjusted.sum())
        )  # fmt: skip
        # The base load's random walk between the two periods: Var(mean_R − mean_B) =
        # q·(n/3 + gap + m/3) for a walk of variance q per day (see base_drift).
        gap = max(0, (period.start - model.period.end).days)
        level = fit.drift_per_day * (model.period.days / 3 + gap + period.days / 3)
        drift = float(stats.norm.ppf(0.5 + CONFIDENCE / 2)) * m * math.sqrt(level)
        uncertainty = math.hypot(scatter, drift)
        parts = (scatter, drift)
    daily = pd.DataFrame(
        {"actual": actual, "adjusted": adjusted, "saved": adjusted - actual}, index=data.index
    )
    return Savings(period, m, int((~ok).sum()), float(adjusted.sum()), float(actual.sum()),
                   uncertainty, daily, *parts)  # fmt: skip


def read_temperature(text: str) -> dict[date, float]:
    """A daily mean outdoor temperature file: CSV ``date,mean_c`` (ISO dates, °C; a header
    line is optional). Raises :class:`ValueError` naming the line of a bad row."""
    out: dict[date, float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split(",")]
        if number == 1 and cells[0].lower() == "date":
            continue
        if len(cells) != 2:
            raise ValueError(f"line {number}: expected 'date,mean_c' (got {line[:60]!r})")
        try:
            day = date.fromisoformat(cells[0])
            value = float(cells[1])
        except ValueError:
            problem = f"line {number}: expected an ISO date and °C (got {line[:60]!r})"
            raise ValueError(problem) from None
        if not -60.0 <= value <= 60.0:
            raise ValueError(f"line {number}: {value} °C is not a daily mean air temperature")
        if day in out:
            raise ValueError(f"line {number}: {day} appears twice")
        out[day] = value
    return out
