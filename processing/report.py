"""The export's workbook (openpyxl) and chart (matplotlib).

The XLSX an auditor receives holds the same tables as the CSVs — Summary (scope 1, scope 2
location/market, allocated, data quality), Sites, Reconciliation, Boundary, Data quality &
uncertainty, Factors (with retrieval dates), Detail — then Methodology (how every number was
made, method names per GHG Protocol), Restatements (every version of the month and why) and
the chart of monthly tCO2e by supplier with the previous 12 months.
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

if TYPE_CHECKING:
    from processing.scope3 import Month, MonthFigures

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
     "since 2025 Taiwan's electricity factor is announced by use, and suppliers' inventories "
     "take the industry factor; natural gas takes the annual heating value of the gas type on "
     "the site's bill (NG1, NG2), else the standing 8,000 kcal/m3."),
    ("Location-based", "Consumption × the emission factor of the hour's local year (Factors "
     "sheet). Where the year's factor is not published yet, the latest earlier one is used and "
     "the figure is marked provisional; it is restated when the factor is published. "
     "Electricity counts as purchased electricity: a site's PV self-consumption (PV generated "
     "− exported) is not scope 2 (GHG Protocol Scope 2 Guidance, 2015, ch. 5 — electricity "
     "generated and used on site is scope 1, zero for PV), so the supplier's location-based "
     "total is the meters' sum less the Sites sheet's pv_self_consumption_kgco2e."),
    ("Market-based", "GHG Protocol Scope 2 Guidance (2015) dual reporting: electricity minus "
     "on-site PV self-consumption (PV generated − exported to the grid, from the PV and grid "
     "meters) minus renewable energy certificates retired for the site and month, at the grid "
     "factor: Taiwan publishes no residual mix, so the grid average stands in for it (this "
     "overstates market-based emissions slightly). Other carriers as location-based. A "
     "certificate is applied only with the Scope 2 Quality Criteria's attributes (generation "
     "period in the consumption's year, technology, facility, retirement date, retired for "
     "the supplier); the others are listed in the Sites sheet, not applied. Certificates sold "
     "from a site's own PV take those kWh out of its self-consumption claim."),
    ("Boundary", "Each site lists its emission sources (Boundary sheet): metered ones are in "
     "the figures; excluded ones (refrigerant leaks, forklifts and generators, process "
     "atmospheres, unmetered buildings) carry a yearly estimate and its basis, a twelfth of "
     "which is the month's excluded estimate in the Summary sheet beside its share of metered "
     "+ excluded emissions (ISO 14064-1 §5.2.3: exclusions listed and justified)."),
    ("Instrument uncertainty", "Each meter's accuracy class limit (IEC 62053-21/-22 for "
     "electricity meters, IEC 61869-2 for current transformers, OIML R 137 for gas meters) "
     "combined in quadrature with its CT's, weighted by the meter's emissions and combined "
     "across meters as independent (GUM, JCGM 100:2008). Instruments only — estimated energy "
     "and emission factors add their own uncertainty; class limits are bounds, so the figure "
     "is conservative. The Meters sheet lists serials, classes and calibration dates and flags "
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
     "dedicated (1). Inputs and source per supplier are in the Summary sheet."),
    ("Carriers without factor", "Named in the Summary sheet and counted as unknown, never as "
     "zero."),
    ("Reconciliation", "Each utility bill whose billing period ends in the month is compared "
     "with what the meters measured over that billing period (not the calendar month): the "
     "site's grid meter for electricity where it has one, else its consumption meters. The "
     "difference beyond the configured threshold (default 2%) is flagged 'CHECK'; hours of the "
     "period without any data are counted beside it."),
]  # fmt: skip


SHEETS = (
    ("Summary", "suppliers"), ("Sites", "sites"), ("Reconciliation", "reconciliation"),
    ("Boundary", "boundary"), ("Data quality & uncertainty", "quality"), ("Factors", "factors"),
    ("Detail", "meters"),
)  # fmt: skip
"""Workbook sheets in the order an auditor reads them, and the table each shows."""
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


def _sheet(wb: Workbook, title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    ws = wb.create_sheet(title)
    ws.append(list(columns))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([_number(v) for v in row])
    ws.freeze_panes = "A2"
    for i, name in enumerate(columns, start=1):
        ws.column_dimensions[ws.cell(1, i).column_letter].width = max(10, min(40, len(name) + 2))


def _number(text: str) -> float | str:
    """Numbers as numbers (so the sheet can sum them), text as text."""
    try:
        return float(text) if text and text.lstrip("-")[0].isdigit() else text
    except ValueError:
        return text


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
