"""The export's workbook (openpyxl) and chart (matplotlib).

The XLSX an auditor receives opens on a Summary a person reads (one row per supplier: what it
bought, location- and market-based kgCO2e, the buyer's share, primary data, completeness and
uncertainty, headers in words with units, number formats, filters, a total), then the same
tables as the CSVs — Sites (purchased electricity from the grid meter, PV, the unmetered rest,
certificates), Meter reads (each meter's register at the month's boundaries: the month
recomputed by hand), Detail (every meter, PV and grid meters with their role, the unmetered
line), Suppliers (all figures), Data quality & uncertainty, Reconciliation, Boundary, Factors —
then Methodology, Restatements (every version of the month and why) and the chart.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from openpyxl import Workbook
from openpyxl.drawing.image import Image
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

if TYPE_CHECKING:
    from processing.accounting.scope3 import Month, MonthFigures

METHODOLOGY = [
    ("Standard", "GHG Protocol Corporate Value Chain (Scope 3) Standard, Category 1 (purchased "
     "goods and services), hybrid method: the suppliers' own scope 1 and scope 2 emissions, "
     "measured by meters, allocated to the buyer's purchases (the 'supplier-specific' method "
     "would need product-level cradle-to-gate data); ISO 14064-1:2018 Category 4."),
    ("Boundary and exclusions", "Included: each supplier's metered scope 1 (fuels burnt on "
     "site) and scope 2 (purchased electricity, steam) at its metered sites, shown separately "
     "before allocation; purchased water as reported. Excluded from this figure (to be "
     "covered with secondary data in the buyer's inventory): the suppliers' upstream "
     "materials, transport and waste (their own scope 3); unmetered sources and sites. "
     "Material the buyer supplies to a tolling supplier is already in the buyer's own "
     "Category 1 and is not counted again here."),
    ("Activity data", "Measured by meters at the supplier's sites: cumulative registers, read "
     "at device time, turned into hourly consumption (CT multiplier applied). Calendar months "
     "in each site's timezone."),
    ("Register corrections", "Every register step is labelled and the counts are in the "
     "Detail sheet: rollover (wrap at the registry's rollover value), exchange and CT change "
     "(measured exactly from the meter events recorded in the registry), glitch (a momentary "
     "implausible leap left out), and - estimated, never measured - reset and fall (the "
     "register fell without a recorded meter event; a data-quality issue asks for the event) "
     "and implausible (faster than the meter's largest plausible load). Reset and implausible "
     "steps take the meter's mean measured rate over up to an hour on each side; a fall keeps "
     "the register's own path around the odd reading."),
    ("Measured and estimated", "Each hour's consumption is split into measured (from measured "
     "register steps no longer than two reading intervals) and estimated (apportioned across "
     "a longer gap in proportion to time, or estimated across a reset, fall or implausible "
     "step); measured + estimated = total, per meter, site and supplier. Primary-data share = "
     "measured / total (per supplier weighted by emissions). Completeness (on energy) = "
     "total / (total + the month's hours without any data at the meter's mean hourly rate)."),
    ("Emission factors", "Each row of the Factors sheet cites its announcement, the date it "
     "was retrieved and how it was verified; rows marked NOT VERIFIED must be checked against "
     "their publication before signing (the Data quality sheet lists them per supplier). "
     "CO2e uses IPCC AR5 GWP100 (CH4 28, N2O 265), the set Taiwan's MOENV adopted; per-gas "
     "kg CO2, CH4 and N2O are given where the factor gives them (fuels), not for electricity "
     "(published as CO2e). A factor is chosen by the hour's local year and the meter's use: "
     "since 2025 Taiwan's electricity factor is announced by tariff class (Energy "
     "Administration, 2026-06-02; MOENV GHG registry, 2026-06-17): the site's Taipower tariff "
     "picks the industry factor (commercial lighting, low, high and extra-high voltage power) "
     "or the residential one (non-commercial and street lighting); a site without a recorded "
     "tariff takes the industry factor, which companies use for inventories; the average of "
     "all sales is never used; natural gas takes the annual heating value of the gas type on "
     "the site's bill (NG1, NG2), else the standing 8,000 kcal/m3."),
    ("Location-based", "Consumption × the emission factor of the hour's local year (Factors "
     "sheet). Where the year's factor is not published yet, the latest earlier one is used and "
     "the figure is marked provisional; it is restated when the factor is published. "
     "Electricity counts as purchased electricity (GHG Protocol Scope 2 Guidance, 2015, ch. 5 "
     "and 6): where a site has a grid (utility) meter, its import, hour by hour; the "
     "consumption meters explain where it went, and what they do not explain is the "
     "'(unmetered)' line of the Detail sheet (import + PV self-consumption − Σ consumption "
     "meters; negative when meters disagree). Without a grid meter, purchased electricity is "
     "inferred from the consumption meters and the site says so (Sites sheet, "
     "purchased_from). PV generated and used on site (generation − export) is not scope 2. "
     "Each meter row carries its kWh at its site's kgCO2e per kWh used (purchased + PV "
     "self-consumption), so the rows of the Detail sheet add up to the supplier's figure."),
    ("Market-based", "GHG Protocol Scope 2 Guidance (2015) dual reporting: purchased "
     "electricity minus renewable energy certificates retired for the site and month, at the "
     "grid factor: Taiwan publishes no residual mix, so the grid average stands in for it (this "
     "overstates market-based emissions slightly). Other carriers as location-based. A "
     "certificate is applied only with the Scope 2 Quality Criteria's attributes (generation "
     "period in the consumption's year, technology, facility, retirement date, retired for "
     "the supplier); the others are listed in the Sites sheet, not applied. Certificates sold "
     "from a site's own PV take those kWh out of its self-consumption claim."),
    ("Boundary", "Each site lists its emission sources (Boundary sheet): metered ones are in "
     "the figures; excluded ones (refrigerant leaks, forklifts and generators, process "
     "atmospheres, unmetered buildings) carry a yearly estimate and its basis, a twelfth of "
     "which is the month's excluded estimate in the Suppliers sheet beside its share of "
     "metered + excluded emissions (ISO 14064-1 §5.2.3: exclusions listed and justified)."),
    ("Instrument uncertainty", "Each meter's accuracy class limit (IEC 62053-21/-22 for "
     "electricity meters, IEC 61869-2 for current transformers, OIML R 137 for gas meters) "
     "combined in quadrature with its CT's, weighted by the meter's emissions and combined "
     "across meters as independent (GUM, JCGM 100:2008). Instruments only — estimated energy "
     "and emission factors add their own uncertainty; class limits are bounds, so the figure "
     "is conservative. The Detail sheet lists serials, classes and calibration dates and flags "
     "overdue calibrations."),
    ("Uncertainty", "± % at 95% of each supplier's metered emissions, by error propagation "
     "(IPCC 2006 Guidelines Vol. 1 ch. 3, Approach 1; GHG Protocol 'Quantitative Inventory "
     "Uncertainty', 2011): per meter, activity uncertainty² = class limit² + (estimated share × "
     "the estimate's ±)²; meters independent (added in quadrature); a factor's uncertainty is "
     "shared by every meter using it (correlated, added linearly within the factor). Where the "
     "registry gives no class or a factor no uncertainty, the configured assumption is used "
     "and named in the Data quality sheet (column 'assumed'). Completeness is not in it: "
     "missing hours are a bias, shown as completeness."),
    ("Data quality ratings", "PACT v3 (DataQualityIndicators, 1 best – 5), weighted by "
     "emissions over the meters (coverage 100%): technological and geographical as rated per "
     "factor in the Factors sheet (the grid factor of the site's own grid 1; IPCC default "
     "carbon content with a national heating value 2; derived stand-ins 3); temporal from the "
     "years between the activity and the factor's data: same year 1, one year 2 (a "
     "provisional factor), 2–3 years 3, 4–6 years 4, older 5. Activity data are primary "
     "(meters); their share is the primary-data share."),
    ("Allocation", "The buyer's share of each supplier's emissions: physical (units shipped "
     "to the buyer / units produced), economic (purchase value / supplier revenue) or "
     "dedicated (1). Inputs and source per supplier are in the Suppliers sheet."),
    ("Carriers without factor", "Named in the Summary and Suppliers sheets and counted as "
     "unknown, never as zero."),
    ("Meter reads", "Per meter and month: the readings either side of the month's first and "
     "last instant as the meter sent them (device time, raw register), the register "
     "interpolated at each boundary in time, rollovers and exchanges: consumption = (register "
     "at end − register at start + rollovers × rollover value) × multiplier, beside the "
     "Detail figure. Each meter's hours are in hourly/<supplier>/<site>/<meter>.csv beside "
     "the workbook."),
    ("Reconciliation", "Each utility bill whose billing period ends in the month is compared "
     "with what the meters measured over that billing period (not the calendar month): the "
     "site's grid meter for electricity where it has one, else its consumption meters. The "
     "difference beyond the configured threshold (default 2%) is flagged 'CHECK'; hours of the "
     "period without any data are counted beside it."),
]  # fmt: skip


SHEETS = (
    ("Sites", "sites"), ("Meter reads", "reads"), ("Detail", "meters"),
    ("Suppliers (all figures)", "suppliers"), ("Data quality & uncertainty", "quality"),
    ("Reconciliation", "reconciliation"), ("Boundary", "boundary"), ("Factors", "factors"),
)  # fmt: skip
"""Workbook sheets after the Summary, in the order an auditor reads them, and the table each
shows (the CSV of the same name, column for column)."""
RESTATEMENT_COLUMNS = ("version", "written_utc", "restates", "supplier", "metric", "previous",
                       "new", "change", "change_pct", "why")  # fmt: skip


def write_chart(
    path: Path, month: Month, data: dict[Month, dict[str, float]], suppliers: list[str]
) -> Path:
    """Stacked bars: tCO2e (location-based) by supplier for ``month`` and the months before
    it in ``data``."""
    months = sorted(data)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    bottom = [0.0] * len(months)
    x = list(range(len(months)))
    for supplier in suppliers:
        # A month without data is left empty (no bar), not drawn as zero emissions.
        values = [data[m].get(supplier, math.nan) for m in months]
        ax.bar(x, values, bottom=bottom, label=supplier, width=0.7)
        bottom = [b + (0.0 if math.isnan(v) else v) for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(x, [str(m) for m in months])
    ax.set_xlim(-0.6, len(months) - 0.4)  # every month keeps its place, with or without data
    ax.set_ylabel("tCO2e (location-based)")
    ax.set_title(f"Monthly emissions by supplier, {len(months)} months to {month}", loc="left")
    ax.tick_params(axis="x", rotation=45)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


KWH, KG, PCT, NUM = "#,##0", "#,##0.0", "0.0", "#,##0.000"
"""Number formats: energy in whole units, kgCO2e to 0.1 kg, percent to 0.1, other tables'
figures to three decimals (as in the CSVs)."""


def _header(ws: Worksheet, columns: list[str], widths: list[int] | None = None) -> None:
    ws.append(columns)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A2"
    for i, name in enumerate(columns, start=1):
        width = widths[i - 1] if widths else max(10, min(40, len(name) + 2))
        ws.column_dimensions[get_column_letter(i)].width = width


def _sheet(wb: Workbook, title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    ws = wb.create_sheet(title)
    _header(ws, list(columns))
    for row in rows:
        ws.append([_number(v) for v in row])
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            if isinstance(cell.value, float):
                cell.number_format = NUM
    if rows:
        ws.auto_filter.ref = ws.dimensions
    else:
        ws.append(["no rows this month"])


def _number(text: str) -> float | str:
    """Numbers as numbers (so the sheet can sum them), text as text."""
    try:
        return float(text) if text and text.lstrip("-")[0].isdigit() else text
    except ValueError:
        return text


SUMMARY_CARRIERS = {"natural_gas": "Natural gas (m³)", "steam": "Steam (kg)",
                    "water": "Water (m³)"}  # fmt: skip


def summary_sheet(wb: Workbook, figures: MonthFigures) -> None:
    """The first sheet, for a person: one row per supplier with what it bought, its emissions
    both ways, the buyer's share and how far the figures can be trusted, then the total."""
    ws = wb.create_sheet("Summary")
    carriers = [c for c in SUMMARY_CARRIERS
                if any(c in s.consumption for s in figures.suppliers)]  # fmt: skip
    head: list[tuple[str, str, int]] = [
        ("Supplier", "", 14), ("Name", "", 28), ("Purchased electricity (kWh)", KWH, 16),
        ("PV used on site (kWh)", KWH, 13),
        *((SUMMARY_CARRIERS[c], KWH, 13) for c in carriers),
        ("Location-based (kg CO2e)", KG, 16), ("Market-based (kg CO2e)", KG, 16),
        ("Buyer's share (%)", PCT, 10),
        ("Allocated to the buyer, location-based (kg CO2e)", KG, 18),
        ("Allocated to the buyer, market-based (kg CO2e)", KG, 18),
        ("Primary data (%)", PCT, 10), ("Completeness (%)", PCT, 12),
        ("Uncertainty ± (%, 95 % confidence)", PCT, 14), ("Provisional factor", "", 11),
        ("Notes", "", 60),
    ]  # fmt: skip
    _header(ws, [h for h, _, _ in head], [w for _, _, w in head])
    ws.row_dimensions[1].height = 45
    for s in figures.suppliers:
        a = s.allocation
        notes = []
        if not s.has_data:
            notes.append("no data for the month")
        if s.inferred_sites:
            notes.append("purchased electricity inferred from consumption meters at "
                         + ", ".join(s.inferred_sites))  # fmt: skip
        if s.carriers_without_factor:
            notes.append("no emission factor for " + ", ".join(s.carriers_without_factor))
        if s.unmetered_kwh:
            notes.append(f"{s.unmetered_kwh:,.0f} kWh unmetered (Sites sheet)")
        q = s.quality
        ws.append([
            s.supplier.id, s.supplier.name, s.purchased_electricity_kwh, s.pv_self_kwh,
            *(s.consumption.get(c) for c in carriers), s.emissions_kgco2e, s.market_kgco2e,
            100 * a.share if a else None, s.allocated_kgco2e, s.allocated_market_kgco2e,
            100 * s.primary_data_share if s.has_data else None,
            100 * s.completeness if s.has_data else None,
            q.uncertainty_pct if q else None, "yes" if s.provisional else "no",
            "; ".join(notes),
        ])  # fmt: skip
    last = ws.max_row
    ws.append(["Total", f"{len(figures.suppliers)} suppliers"] + [
        _total(figures, h) for h, _, _ in head[2:]])  # fmt: skip
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
    for row in ws.iter_rows(min_row=2):
        for (_, fmt, _), cell in zip(head, row, strict=False):
            if fmt:
                cell.number_format = fmt
    ws.auto_filter.ref = f"A1:{get_column_letter(len(head))}{last}"


def _total(figures: MonthFigures, header: str) -> float | None:
    """The Summary's total row: sums of the additive columns, empty for the others."""
    sums = {
        "Purchased electricity (kWh)": [s.purchased_electricity_kwh for s in figures.suppliers],
        "PV used on site (kWh)": [s.pv_self_kwh for s in figures.suppliers],
        "Location-based (kg CO2e)": [s.emissions_kgco2e for s in figures.suppliers],
        "Market-based (kg CO2e)": [s.market_kgco2e or 0.0 for s in figures.suppliers],
        "Allocated to the buyer, location-based (kg CO2e)":
            [s.allocated_kgco2e for s in figures.suppliers],
        "Allocated to the buyer, market-based (kg CO2e)":
            [s.allocated_market_kgco2e or 0.0 for s in figures.suppliers],
        **{name: [s.consumption.get(c, 0.0) for s in figures.suppliers]
           for c, name in SUMMARY_CARRIERS.items()},
    }  # fmt: skip
    values = sums.get(header)
    return math.fsum(values) if values is not None else None


def write_xlsx(
    path: Path,
    figures: MonthFigures,
    tables: dict[str, tuple[tuple[str, ...], list[list[str]]]],
    chart: Path,
    version: int,
    diff_rows: list[list[str]],
    reasons: list[str] | None = None,
    policy: list[tuple[str, str]] | None = None,
    restatements: list[list[str]] | None = None,
) -> Path:
    wb = Workbook()
    wb.remove(wb.active)
    summary_sheet(wb, figures)
    for title, name in SHEETS:
        if name in tables:  # reconciliation: only with bills; boundary: when sites list one
            _sheet(wb, title, *tables[name])
    ws = wb.create_sheet("Methodology")
    ws.column_dimensions["A"].width = 26
    ws.column_dimensions["B"].width = 110
    ws.append([f"Scope 3 export {figures.month}, version {version}"])
    ws["A1"].font = Font(bold=True, size=13)
    for topic, text in [*METHODOLOGY, *(policy or [])]:
        ws.append([topic, text])
    ws.append([])
    ws.append(["Supplier", "completeness, primary-data share, provisional, allocation"])
    for s in figures.suppliers:
        a = s.allocation
        ws.append([s.supplier.id, (
            f"{100 * s.completeness:.2f}% complete (energy), {100 * s.primary_data_share:.2f}% "
            f"primary data ({100 * s.estimated_share:.2f}% estimated), "
            f"{'PROVISIONAL factor' if s.provisional else 'final factors'}; "
            f"{a.method if a else ''} share {a.share if a else ''} ({a.basis if a else ''}; "
            f"source {a.source if a else ''})"
        )])  # fmt: skip
    if diff_rows:
        ws.append([])
        ws.append(["Restated", f"this version restates v{version - 1}; changes:"])
        for row in diff_rows:
            pct = f" ({row[5]}%)" if row[5] else ""
            ws.append([row[0], f"{row[1]}: {row[2]} → {row[3]}{pct}"])
        for why in reasons or ():
            ws.append(["Why", why])
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    _sheet(wb, "Restatements", RESTATEMENT_COLUMNS, restatements or [])
    chart_ws = wb.create_sheet("Chart")
    chart_ws.add_image(Image(str(chart)), "A1")
    # Deterministic document properties: the same figures give the same workbook metadata.
    stamp = datetime(figures.month.year, figures.month.month, 1)
    wb.properties.created = wb.properties.modified = stamp
    wb.save(path)
    return path
