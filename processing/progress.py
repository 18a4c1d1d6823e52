"""Targets and measured savings through the store, and the annual progress report.

For one supplier and year:

* **Targets** (:class:`~supplymeter.config.Target`): each month's figure (absolute tCO2e from
  the standing version of the monthly scope-3 export — the same figures the dashboards and the
  signed file show — or an intensity on the pieces the production counters counted), the year
  to date against the straight-line pathway's value for the year (absolute: pro rata of the
  year's days; intensity: the year's value itself), on track or behind and by how much.
* **Measures** (:class:`~supplymeter.config.Measure`): the baseline model and the avoided
  energy of :mod:`processing.baselines`, in the carrier's unit and in kgCO2e (each day's
  saving × that day's consumption-weighted stored factor, so the factor of each hour counts).
* **The annual progress report**: a workbook with the fields of the voluntary reduction plan's
  annual progress report under Taiwan's carbon fee (自主減量計畫 執行進度報告, due 30 April:
  purchased electricity, fuels with their heating values, the year's emissions against the
  plan's target, each measure's savings with the evidence behind it), versioned like the
  monthly export (:mod:`processing.accounting.versions`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from processing.accounting.scope3 import Month
from processing.accounting.versions import differences, latest_manifest, publish, version_rows
from processing.baselines import (
    Baseline,
    Period,
    Savings,
    daily_frame,
    driver_label,
    fit_baseline,
    savings,
)
from processing.emissions import FactorLibrary
from supplymeter.carriers import CARRIERS
from supplymeter.config import Config, Measure, Site, Supplier, Target, factor_use
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store

KCAL_TO_GJ = 4.1868e-6
"""GJ per kcal (International Table calorie, 4.1868 J; ISO 80000-5)."""


def _ns(day: date, tz: ZoneInfo) -> int:
    return datetime_to_ns(datetime(day.year, day.month, day.day, tzinfo=tz))


# --- measures -----------------------------------------------------------------------------


@dataclass
class MeasureResult:
    """A measure's baseline, savings and the evidence behind them."""

    measure: Measure
    unit: str
    carrier: str
    baseline_period: Period
    reporting_period: Period | None
    model: Baseline | None = None
    result: Savings | None = None
    saved_kgco2e: float | None = None
    uncertainty_kgco2e: float | None = None
    completeness_pct: float = 0.0
    """Days with complete measured data / days of both periods. [%]"""
    events: list[str] = field(default_factory=list)
    """Non-routine events: declared exclusions and the meters' recorded events."""
    note: str = ""

    @property
    def status(self) -> str:
        if self.model is None or not self.model.valid:
            return "no valid baseline"
        if self.result is None:
            return "no reporting data yet"
        return "significant" if self.result.significant else "not significant"


def measure_savings(
    store: Store,
    supplier: Supplier,
    measure: Measure,
    until: date,
    temperature: dict[date, float] | None = None,
) -> MeasureResult:
    """Fit the measure's baseline and measure its savings up to local day ``until``
    (excluded), from stored hours (see the module)."""
    site = next(s for s in supplier.sites if s.id == measure.site)
    tz = ZoneInfo(site.timezone)
    baseline = (
        Period(measure.baseline.start, measure.baseline.end)
        if measure.baseline is not None
        else Period(measure.installed - timedelta(days=365), measure.installed)
    )
    end = min(until, measure.reporting_end or until)
    reporting = Period(measure.installed, end) if end > measure.installed else None
    span = Period(baseline.start, reporting.end if reporting else baseline.end)
    start_ns, end_ns = _ns(span.start, tz), _ns(span.end, tz)
    hours, factors, carrier = _hours(store, supplier, site, measure, start_ns, end_ns)
    unit = CARRIERS[carrier].unit
    production = _production(store, supplier, site, measure, start_ns, end_ns)
    frame = daily_frame(hours, site.timezone, span, production=production,
                        temperature=temperature, country=supplier.country)  # fmt: skip
    excluded = [Period(p.start, p.end) for p in measure.non_routine]
    out = MeasureResult(measure, unit, carrier, baseline, reporting)
    out.events = [f"{p.start} – {p.end - timedelta(days=1)}: {p.reason or 'excluded'} "
                  "(left out)" for p in measure.non_routine]  # fmt: skip
    meters = {m.id: m for m in site.meters}
    for meter_id in measure.meters or [m.id for m in site.meters]:
        for event in meters[meter_id].events:
            local = event.time.astimezone(tz).date()
            if local in span:
                out.events.append(f"{local}: {meter_id} {event.type.replace('_', ' ')}"
                                  f"{' — ' + event.note if event.note else ''} "
                                  "(measured across by the rollup)")  # fmt: skip
    model = fit_baseline(frame, baseline, measure.drivers, excluded)
    out.model = model
    used = model.days_used
    if model.valid and reporting is not None:
        result = savings(model, frame, reporting, excluded)
        out.result = result
        used += result.days_used
        day_factor = _day_factors(factors, tz)
        if result.days_used:
            kg = [saved * day_factor.get(day, math.nan) for day, saved in
                  zip(result.daily.index, result.daily["saved"], strict=True)]  # fmt: skip
            known = [k for k in kg if not math.isnan(k)]
            if len(known) == len(kg):
                out.saved_kgco2e = math.fsum(known)
                mean_factor = (
                    out.saved_kgco2e / result.saved
                    if result.saved
                    else math.fsum(day_factor.get(d, 0.0) for d in result.daily.index)
                    / result.days_used
                )
                out.uncertainty_kgco2e = result.uncertainty * abs(mean_factor)
            else:
                out.note = "some days have no stored emission factor: kgCO2e not stated"
    elif not model.valid:
        out.note = "; ".join(model.problems)
    total_days = baseline.days + (reporting.days if reporting else 0)
    out.completeness_pct = 100.0 * used / total_days if total_days else 0.0
    return out


def _hours(
    store: Store, supplier: Supplier, site: Site, measure: Measure, start_ns: int, end_ns: int
) -> tuple[list[tuple[int, float, float]], dict[int, list[float]], str]:
    """(hour, consumption, estimated) summed over the measure's meters (or the site's
    purchased electricity), each hour's [consumption, kgCO2e], and the carrier."""
    by_hour: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    factors: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    if not measure.meters:
        for h in store.site_hours(start_ns, end_ns, supplier=supplier.id, site=site.id):
            by_hour[h.hour_start_ns][0] += h.purchased_kwh
            by_hour[h.hour_start_ns][1] += h.estimated_kwh
            if h.location_kgco2e is not None:
                factors[h.hour_start_ns][0] += h.purchased_kwh
                factors[h.hour_start_ns][1] += h.location_kgco2e
        return [(k, v[0], v[1]) for k, v in by_hour.items()], factors, "electricity"
    meters = {m.id: m for m in site.meters}
    carriers = {meters[m].carrier for m in measure.meters}
    if len(carriers) != 1:
        raise ValueError(f"measure {measure.id}: its meters measure different carriers "
                         f"({sorted(carriers)}); record one measure per carrier")  # fmt: skip
    for meter in measure.meters:
        hours, _ = store.hourly_consumption(start_ns, end_ns, supplier=supplier.id,
                                            site=site.id, meter=meter)  # fmt: skip
        for h in hours:
            by_hour[h.hour_start_ns][0] += h.consumption
            by_hour[h.hour_start_ns][1] += h.estimated_consumption
        for e in store.hourly_emissions(start_ns, end_ns, supplier=supplier.id, site=site.id,
                                        meter=meter):  # fmt: skip
            if e.factor_value:
                factors[e.hour_start_ns][0] += e.emissions_kgco2e / e.factor_value
                factors[e.hour_start_ns][1] += e.emissions_kgco2e
    return [(k, v[0], v[1]) for k, v in by_hour.items()], factors, carriers.pop()


def _production(
    store: Store, supplier: Supplier, site: Site, measure: Measure, start_ns: int, end_ns: int
) -> list[tuple[int, float]]:
    counters = set(measure.counters) or {p.counter for p in site.products}
    products = {p.id for p in site.products if p.counter in counters}
    got = store.hourly_production(start_ns, end_ns, supplier=supplier.id, site=site.id)
    return [pair for (_, product), rows in got.items() if product in products for pair in rows]


def _day_factors(factors: dict[int, list[float]], tz: ZoneInfo) -> dict[date, float]:
    """Each local day's consumption-weighted emission factor. [kgCO2e per unit]"""
    days: dict[date, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for hour, (amount, kg) in factors.items():
        day = datetime.fromtimestamp(hour / 1e9, tz).date()
        days[day][0] += amount
        days[day][1] += kg
    return {d: v[1] / v[0] for d, v in days.items() if v[0] > 0}


# --- targets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthProgress:
    """One month of a target's year: the month's figure and the year to date."""

    month: int
    value: float | None
    """The month's emissions [tCO2e] or intensity [per unit]; ``None``: no data."""
    ytd: float | None
    allowed_ytd: float | None
    """What the pathway allows for the year to date (same unit as ``ytd``)."""

    @property
    def on_track(self) -> bool | None:
        if self.ytd is None or self.allowed_ytd is None:
            return None
        return self.ytd <= self.allowed_ytd

    @property
    def gap(self) -> float | None:
        """Year to date minus allowed (positive: behind). [unit]"""
        if self.ytd is None or self.allowed_ytd is None:
            return None
        return self.ytd - self.allowed_ytd

    @property
    def gap_pct(self) -> float | None:
        gap = self.gap
        return 100.0 * gap / self.allowed_ytd if gap is not None and self.allowed_ytd else None


TARGET_UNITS = {"tco2e": "tCO2e", "kgco2e_per_unit": "kgCO2e/piece",
                "kgco2e_per_tonne": "kgCO2e/t", "kwh_per_unit": "kWh/piece"}  # fmt: skip


def target_progress(
    target: Target, year: int, monthly: dict[int, tuple[float, float]], tz: ZoneInfo
) -> list[MonthProgress]:
    """Month by month progress of ``target`` in ``year``. ``monthly`` is month → (numerator,
    denominator): tCO2e and 1 for an absolute target; kgCO2e (or kWh) and pieces (or tonnes)
    for an intensity. Absolute: the pathway's year value × the share of the year's days up to
    the month's end; intensity: the pathway's year value (see the module)."""
    pathway = target.pathway(year)
    start = datetime(year, 1, 1, tzinfo=tz)
    year_days = (datetime(year + 1, 1, 1, tzinfo=tz) - start).days
    out = []
    num = den = 0.0
    seen = False
    for month in range(1, 13):
        got = monthly.get(month)
        if got is not None:
            seen = True
            num += got[0]
            den += got[1]
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
        elapsed = (end - start).days
        value = None
        if got is not None and got[1]:
            value = got[0] / got[1]
        if target.metric == "tco2e":
            ytd = num if seen else None
            allowed = pathway * elapsed / year_days
        else:
            ytd = num / den if den else None
            allowed = pathway
        out.append(MonthProgress(month, value, ytd if got is not None else None,
                                 allowed if got is not None else None))  # fmt: skip
    return out


def monthly_figures(
    store: Store, supplier: Supplier, target: Target, year: int
) -> dict[int, tuple[float, float]]:
    """The (numerator, denominator) of each month of ``year`` with data (see
    :func:`target_progress`), from the stored monthly export and hours."""
    tz = ZoneInfo(supplier.sites[0].timezone)
    out: dict[int, tuple[float, float]] = {}
    for month in range(1, 13):
        start, end = Month(year, month).bounds(tz)
        if target.metric == "tco2e":
            rows = [t for t in store.monthly_totals(start, end) if t.supplier == supplier.id]
            if not rows:
                continue
            kg = rows[0].market_kgco2e if target.basis == "market" else rows[0].location_kgco2e
            if kg is None:
                continue
            out[month] = (kg / 1000.0, 1.0)
            continue
        sites = [s for s in supplier.sites if target.site in (None, s.id)]
        pieces = tonnes = 0.0
        for s in sites:
            mass = {p.id: p.mass_kg for p in s.products}
            totals = store.product_totals(start, end, supplier=supplier.id, site=s.id)
            for (_, product), t in totals.items():
                pieces += t.units
                tonnes += t.units * mass.get(product, 0.0) / 1000.0
        if not pieces:
            continue
        if target.metric == "kwh_per_unit":
            kwh = math.fsum(t.purchased_kwh for s in sites for t in store.site_totals(
                start, end, supplier=supplier.id, site=s.id).values())  # fmt: skip
            out[month] = (kwh, pieces)
            continue
        kg = _site_emissions(store, supplier, sites, start, end)
        out[month] = (kg, tonnes if target.metric == "kgco2e_per_tonne" else pieces)
    return out


def _site_emissions(store: Store, supplier: Supplier, sites: list[Site], start: int,
                    end: int) -> float:  # fmt: skip
    """Location-based kgCO2e of ``sites``: purchased electricity (site-hours) and every other
    carrier's meters, summed by InfluxDB."""
    kg = 0.0
    for s in sites:
        carrier_of = {m.id: m.carrier for m in s.meters}
        kg += math.fsum(t.location_kgco2e for t in store.site_totals(
            start, end, supplier=supplier.id, site=s.id).values())  # fmt: skip
        kg += math.fsum(t.emissions_kgco2e for key, t in store.meter_totals(
            start, end, supplier=supplier.id, site=s.id).items()
            if carrier_of.get(key[2]) != "electricity")  # fmt: skip
    return kg


# --- the annual report --------------------------------------------------------------------


@dataclass
class ProgressReport:
    supplier: Supplier
    year: int
    energy: list[list[str]]
    """Per site and carrier: purchased quantity, unit, heating value, energy [GJ], factor."""
    targets: list[tuple[Target, list[MonthProgress]]]
    measures: list[MeasureResult]
    until: date


def build_report(
    config: Config,
    store: Store,
    library: FactorLibrary,
    supplier_id: str,
    year: int,
    until: date | None = None,
    temperature: dict[date, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProgressReport:
    """Everything the annual progress report of ``supplier_id`` for ``year`` states."""
    supplier = next((s for s in config.registry.suppliers if s.id == supplier_id), None)
    if supplier is None:
        known = ", ".join(s.id for s in config.registry.suppliers)
        raise ValueError(f"no supplier {supplier_id!r} in the registry (suppliers: {known})")
    until = until or date(year + 1, 1, 1)
    say = progress or (lambda _text: None)
    say("energy bought")
    energy = _energy_rows(store, library, supplier, year)
    targets = []
    for t in supplier.targets:
        say(f"target {t.id}")
        tz = ZoneInfo(supplier.sites[0].timezone)
        targets.append((t, target_progress(t, year, monthly_figures(store, supplier, t, year),
                                           tz)))  # fmt: skip
    measures = []
    for m in supplier.measures:
        say(f"measure {m.id}")
        measures.append(measure_savings(store, supplier, m, until, temperature))
    return ProgressReport(supplier, year, energy, targets, measures, until)


def _energy_rows(
    store: Store, library: FactorLibrary, supplier: Supplier, year: int
) -> list[list[str]]:
    rows = []
    for site in supplier.sites:
        tz = ZoneInfo(site.timezone)
        start, end = _ns(date(year, 1, 1), tz), _ns(date(year + 1, 1, 1), tz)
        for t in store.site_totals(start, end, supplier=supplier.id, site=site.id).values():
            kwh, est = t.purchased_kwh, t.estimated_kwh
            rows.append([site.id, "electricity (purchased)", f"{kwh:.3f}", "kWh", "",
                         f"{kwh * 0.0036:.3f}", f"{est:.3f}", ", ".join(t.factor_ids)])  # fmt: skip
        totals = store.meter_totals(start, end, supplier=supplier.id, site=site.id)
        by_carrier: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        carrier_of = {m.id: m.carrier for m in site.meters}
        for key, t in totals.items():
            carrier = carrier_of.get(key[2])
            if carrier in (None, "electricity") or key[1] != site.id:
                continue
            by_carrier[carrier][0] += t.consumption
            by_carrier[carrier][1] += t.estimated
        for carrier, (amount, est) in sorted(by_carrier.items()):
            c = CARRIERS[carrier]
            found = library.lookup(c.factor_key, supplier.country, year,
                                   factor_use(supplier, site, c))  # fmt: skip
            heating, gj, factor = "", "", ""
            if found is not None:
                factor = found[0].id
                value = found[0].lhv_kcal
                if value is not None:
                    heating = f"{value:g} kcal/{c.unit} ({found[0].title})"
                    gj = f"{amount * value * KCAL_TO_GJ:.3f}"
            rows.append([site.id, carrier.replace("_", " "), f"{amount:.3f}", c.unit, heating,
                         gj, f"{est:.3f}", factor])  # fmt: skip
    return rows


ENERGY_COLUMNS = ("Site", "Energy", "Quantity", "Unit", "Lower heating value (source)",
                  "Energy (GJ)", "of which estimated", "Emission factor")  # fmt: skip
TARGET_COLUMNS = ("Target", "Metric", "Basis", "Month", "Month's figure", "Year to date",
                  "Pathway allows (year to date)", "Gap", "Gap (%)", "Status")  # fmt: skip
MEASURE_COLUMNS = (
    "Measure", "What", "Site", "Meters (IPMVP option)", "Installed", "Baseline period",
    "Reporting period", "Drivers", "Model", "Days in model", "R²", "CV(RMSE) daily (%)",
    "NMBE daily (%)", "CV(RMSE) monthly (%)", "NMBE monthly (%)", "Guideline 14",
    "Adjusted baseline", "Measured", "Avoided", "± (90 %)", "Unit", "Avoided (%)",
    "FSU 90 % (%)", "Avoided (kgCO2e)", "± kgCO2e (90 %)", "Status", "Data completeness (%)",
    "Non-routine events", "Expected saving (%)", "Note",
)  # fmt: skip


def _f(value: float | None, digits: int = 3) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.{digits}f}")  # fmt: skip


def target_rows(report: ProgressReport) -> list[list[str]]:
    rows = []
    for t, months in report.targets:
        unit = TARGET_UNITS[t.metric]
        for m in months:
            status = {True: "on track", False: "behind", None: "no data"}[m.on_track]
            rows.append([t.id, f"{t.metric} ({unit})", t.basis if t.metric == "tco2e" else "",
                         f"{report.year}-{m.month:02d}", _f(m.value), _f(m.ytd),
                         _f(m.allowed_ytd), _f(m.gap), _f(m.gap_pct, 2), status])  # fmt: skip
    return rows


def measure_rows(report: ProgressReport) -> list[list[str]]:
    rows = []
    for r in report.measures:
        m, model, s = r.measure, r.model, r.result
        fit = model.fit if model is not None else None
        rows.append([
            m.id, m.name, m.site, f"{', '.join(m.meters) or 'purchased electricity'} "
            f"({m.option})", m.installed.isoformat(), str(r.baseline_period),
            str(r.reporting_period) if r.reporting_period else "not started",
            ", ".join(driver_label(d, model) for d in model.drivers) if model else "",
            model.formula(r.unit) if model is not None and model.valid else "",
            str(model.days_used) if model else "", _f(fit.r2 if fit else None, 4),
            _f(fit.cv_rmse_pct if fit else None, 2), _f(fit.nmbe_pct if fit else None, 2),
            _f(fit.monthly_cv_rmse_pct if fit else None, 2),
            _f(fit.monthly_nmbe_pct if fit else None, 2),
            "passes" if model is not None and model.valid else "fails: " + "; ".join(
                model.problems if model else ()),
            _f(s.adjusted_baseline if s else None), _f(s.actual if s else None),
            _f(s.saved if s else None), _f(s.uncertainty if s else None), r.unit,
            _f(s.saved_pct if s else None, 2),
            _f(s.fsu_pct if s and s.saved else None, 1), _f(r.saved_kgco2e),
            _f(r.uncertainty_kgco2e), r.status, _f(r.completeness_pct, 2),
            "; ".join(r.events) or "none recorded", _f(m.expected_saving_pct, 1), r.note,
        ])  # fmt: skip
    return rows


def totals(report: ProgressReport) -> dict[str, dict[str, object]]:
    """The figures a new version of the report is judged on (see processing.accounting.versions)."""
    out: dict[str, dict[str, object]] = {}
    for row in report.energy:
        out.setdefault(report.supplier.id, {})[f"energy_{row[0]}_{row[1]}"] = float(row[2])
    for t, months in report.targets:
        last = next((m for m in reversed(months) if m.ytd is not None), None)
        out.setdefault(report.supplier.id, {})[f"target_{t.id}_ytd"] = (
            last.ytd if last else None)  # fmt: skip
    for r in report.measures:
        got = out.setdefault(report.supplier.id, {})
        got[f"measure_{r.measure.id}_avoided"] = r.result.saved if r.result else None
        got[f"measure_{r.measure.id}_status"] = r.status
    return out


def write_report(config: Config, report: ProgressReport, out_dir: Path,
                 reasons: list[str] | None = None) -> tuple[int, Path, bool]:  # fmt: skip
    """Write a new version of the report under ``out_dir/<supplier>/<year>/`` when its figures
    differ from the latest one's; returns (version, its directory, whether written)."""
    directory = out_dir / report.supplier.id / str(report.year)
    latest = latest_manifest(directory)
    new_totals = totals(report)
    why = list(reasons or [])
    diff_rows: list[list[str]] = []
    if latest is not None:
        diff_rows = differences(latest["totals"], new_totals, config.jobs.restate_threshold_pct)
        if not diff_rows and not why:
            version = int(latest["version"])
            return version, directory / f"v{version}", False
        why = why or ["figures changed (late data, a restated month, a new measure)"]
    restatements = version_rows(directory, diff_rows, why)

    def build(staging: Path, version: int) -> None:
        _workbook(staging / f"progress-{report.supplier.id}-{report.year}.xlsx", report,
                  version, restatements)  # fmt: skip

    manifest = {"supplier": report.supplier.id, "year": report.year, "totals": new_totals,
                "data_until": report.until.isoformat()}  # fmt: skip
    published = publish(directory, manifest, build, diff_rows, why)
    return published.version, published.directory, True


def _workbook(path: Path, report: ProgressReport, version: int,
              restatements: list[list[str]]) -> None:  # fmt: skip
    from processing.accounting.report import RESTATEMENT_COLUMNS, _sheet

    wb = Workbook()
    ws = wb.active
    ws.title = "Summary"
    s = report.supplier
    ws.append([f"Annual progress report {report.year}: {s.name or s.id}"])
    ws["A1"].font = Font(bold=True, size=13)
    lines = [
        ("Supplier", f"{s.id} — {s.name}"),
        ("Year", str(report.year)),
        ("Data up to", f"{report.until - timedelta(days=1)} (local days)"),
        ("Version", str(version)),
        ("Form", "Fields of the annual progress report of a voluntary reduction plan "
         "(自主減量計畫) under Taiwan's carbon fee: purchased electricity, fuels with their "
         "heating values, the year's emissions against the plan's target, each measure's "
         "progress with its supporting evidence (due 30 April; records kept six years)."),
    ]  # fmt: skip
    for t, months in report.targets:
        last = next((m for m in reversed(months) if m.ytd is not None), None)
        if last is None:
            lines.append((f"Target {t.id}", "no data for the year yet"))
            continue
        verdict = "on track" if last.on_track else "behind"
        pathway = (f"{t.base_value:g} in {t.base_year} → {t.target_value:g} in "
                   f"{t.target_year}; {t.pathway(report.year):,.3f} for {report.year}")  # fmt: skip
        gap = f"{abs(last.gap or 0):,.3f} ({abs(last.gap_pct or 0):.1f} %)"
        lines.append((f"Target {t.id}", (
            f"{TARGET_UNITS[t.metric]}: year to date {last.ytd:,.3f} against "
            f"{last.allowed_ytd:,.3f} allowed by the pathway ({pathway}) — {verdict} by {gap}. "
            f"{t.reference}")))  # fmt: skip
    for r in report.measures:
        if r.result is not None:
            text = (f"avoided {r.result.saved:,.0f} ± {r.result.uncertainty:,.0f} {r.unit} "
                    f"(90 %), {r.status}")  # fmt: skip
        else:
            text = f"{r.status}: {r.note}" if r.note else r.status
        lines.append((f"Measure {r.measure.id}", f"{r.measure.name}: {text}"))
    for key, text in lines:
        ws.append([key, text])
    ws.column_dimensions["A"].width = 24
    ws.column_dimensions["B"].width = 120
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    _sheet(wb, "Energy", ENERGY_COLUMNS, report.energy)
    _sheet(wb, "Targets", TARGET_COLUMNS, target_rows(report))
    _sheet(wb, "Measures", MEASURE_COLUMNS, measure_rows(report))
    method = wb.create_sheet("Methodology")
    method.column_dimensions["A"].width = 110
    from processing import baselines

    for paragraph in (baselines.__doc__ or "").strip().split("\n\n"):
        method.append([" ".join(paragraph.split())])
        method.cell(method.max_row, 1).alignment = Alignment(wrap_text=True, vertical="top")
    _sheet(wb, "Restatements", RESTATEMENT_COLUMNS, restatements)
    stamp = datetime(report.year, 12, 31)
    wb.properties.created = wb.properties.modified = stamp
    wb.save(path)
