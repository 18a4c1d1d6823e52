"""CBAM: specific embedded emissions per CN code from meter data, beside the default values.

For each installation (a supplier site with products that carry a CN code) and reporting
period, after Regulation (EU) 2023/956 Annex IV and Implementing Regulation (EU) 2023/1773
Annex III (the methodology the definitive period keeps):

* **direct emissions** of the installation: fuel meters (natural gas m³ × the factor of its
  gas type, whose heating value and IPCC 2006 CO2 factor the factor file states) and the
  declared process emissions; attributed to the production processes (one per CN code) by the
  same line and overhead rules as the product footprints (:mod:`.products`);
* **activity level** AL: tonnes of good produced (pieces counted × piece mass);
* **precursors** (Annex II, complex goods): each declared input with a CN code, its mass and
  its specific direct embedded emissions — the producer's actual value when the supplier has
  it, else the CBAM default of its CN code for the year;
* **SEE** (specific direct embedded emissions) = (AttrEm_direct + Σ M_precursor ×
  SEE_precursor) / AL, in tCO2e per tonne. Electricity (MWh/t) and the indirect emissions are
  reported as information: for iron, steel and aluminium goods only direct emissions are
  charged.

Direct emissions are the stored CO2e of the fuel (CO2 + CH4 + N2O); CBAM monitors CO2 only for
iron and steel, so the figure is high by the CH4 and N2O share of natural gas (≈ 0.05 %).

Default values: ``processing/data/cbam_defaults_tw.csv`` — the values for Taiwan of the
Commission's default-value implementing act C(2025) 8552 (annex), as tabulated in MIRDC's
metal-industry monthly, appendix table 1 (2025-12; the project's seed document), with the
mark-up phased in from 2026 (+10 %, +20 %, +30 % for 2026, 2027, 2028; the loader checks each
row against it). A CN code takes its own row, else the row of its longest prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from processing.accounting.footprints import product_periods
from processing.accounting.inputs import MARK_UP, DefaultValue, load_defaults
from processing.accounting.products import ProductPeriod
from processing.accounting.scope3 import MeterMonth, Month, MonthFigures
from processing.accounting.versions import publish_if_changed
from processing.emissions import FactorLibrary
from supplymeter.config import Config, Site, Supplier
from supplymeter.errors import SupplymeterError


class CbamError(SupplymeterError):
    pass


def default_for(cn_code: str, defaults: dict[str, DefaultValue]) -> DefaultValue | None:
    """The row of ``cn_code`` or of its longest tabulated prefix."""
    for k in range(len(cn_code), 3, -1):
        if cn_code[:k] in defaults:
            return defaults[cn_code[:k]]
    return None


@dataclass(frozen=True)
class Precursor:
    product: str
    material: str
    cn_code: str
    tonnes: float
    see_direct: float
    """[tCO2e/t]"""
    actual: bool
    source: str

    @property
    def embedded_t(self) -> float:
        return self.tonnes * self.see_direct


@dataclass
class GoodsCategory:
    """One CN code of one installation over the period: its production process."""

    cn_code: str
    products: list[ProductPeriod] = field(default_factory=list)
    precursors: list[Precursor] = field(default_factory=list)
    default: DefaultValue | None = None

    @property
    def tonnes(self) -> float:
        """Activity level AL. [t]"""
        return math.fsum(p.mass_kg for p in self.products) / 1000

    @property
    def direct_t(self) -> float:
        """Attributed direct emissions. [tCO2e]"""
        return math.fsum(p.direct_kgco2e for p in self.products) / 1000

    @property
    def indirect_t(self) -> float:
        return math.fsum(p.indirect_kgco2e for p in self.products) / 1000

    @property
    def electricity_mwh(self) -> float:
        return math.fsum(p.electricity_kwh for p in self.products) / 1000

    @property
    def see_direct(self) -> float | None:
        """Specific direct embedded emissions incl. precursors. [tCO2e/t]"""
        if self.tonnes <= 0:
            return None
        return (self.direct_t + math.fsum(p.embedded_t for p in self.precursors)) / self.tonnes

    def saving_t(self, year: int) -> float | None:
        """Embedded emissions the actual figure avoids against the year's default. [tCO2e]"""
        see = self.see_direct
        if see is None or self.default is None:
            return None
        return (self.default.for_year(year) - see) * self.tonnes


@dataclass
class Installation:
    supplier: Supplier
    site: Site
    first: Month
    last: Month
    meters: list[MeterMonth]
    goods: list[GoodsCategory]


def installations(
    config: Config, library: FactorLibrary, figures: list[MonthFigures], first: Month,
    last: Month, defaults: dict[str, DefaultValue] | None = None,
) -> list[Installation]:  # fmt: skip
    """Every site with CN-coded products, over ``first``–``last`` (``figures``: those months,
    computed once by the runner)."""
    defaults = load_defaults() if defaults is None else defaults
    meters: dict[tuple[str, str], list[MeterMonth]] = {}
    periods = product_periods(config, library, figures, meters)
    out: dict[tuple[str, str], Installation] = {}
    for pp in periods:
        if not pp.product.cn_code:
            continue
        key = (pp.supplier.id, pp.site.id)
        inst = out.get(key)
        if inst is None:
            inst = out[key] = Installation(pp.supplier, pp.site, first, last,
                                           meters.get(key, []), [])  # fmt: skip
        goods = next((g for g in inst.goods if g.cn_code == pp.product.cn_code), None)
        if goods is None:
            goods = GoodsCategory(pp.product.cn_code,
                                  default=default_for(pp.product.cn_code, defaults))  # fmt: skip
            inst.goods.append(goods)
        goods.products.append(pp)
        for i in pp.product.inputs:
            if not i.cn_code:
                continue
            tonnes = pp.units * i.kg_per_unit / 1000
            if i.cbam_direct_t_per_t is not None:
                actual = i.cbam_direct_t_per_t
                goods.precursors.append(Precursor(pp.product.id, i.material, i.cn_code, tonnes,
                                                  actual, True, i.source))  # fmt: skip
                continue
            d = default_for(i.cn_code, defaults)
            if d is None:
                raise CbamError(f"{pp.supplier.id}/{pp.product.id}: precursor {i.material} "
                                f"(CN {i.cn_code}) has no actual value and no default")  # fmt: skip
            goods.precursors.append(Precursor(
                pp.product.id, i.material, i.cn_code, tonnes, d.for_year(last.year), False,
                f"CBAM default {d.cn_code} for {last.year}"))  # fmt: skip
    return list(out.values())


# --- the workbook ------------------------------------------------------------------------------

SHEETS = ("Summary_Products", "A_InstData", "B_EmInst", "D_Processes", "E_PurchPrec",
          "Methodology")  # fmt: skip
"""Laid out after the sheets of the EU's communication template for installation operators
(A installation data, B emission sources, D production processes, E purchased precursors,
and the summary of products), one workbook for all installations."""


def _num(value: float | None, digits: int = 3) -> float | str:
    return round(value, digits) if value is not None else ""


def _per_t(value: float, tonnes: float) -> float | None:
    return value / tonnes if tonnes > 0 else None


def cbam_totals(found: list[Installation]) -> dict[str, dict[str, float | None]]:
    """What a new CBAM version is judged on, per installation and CN code."""
    return {
        f"{inst.supplier.id}/{inst.site.id}/{g.cn_code}": {
            "tonnes": g.tonnes, "direct_tco2e": g.direct_t, "indirect_tco2e": g.indirect_t,
            "electricity_mwh": g.electricity_mwh, "see_direct_tco2e_per_t": g.see_direct,
            "precursors_tco2e": math.fsum(p.embedded_t for p in g.precursors),
        }
        for inst in found for g in inst.goods
    }  # fmt: skip


def publish_workbook(
    directory: Path, found: list[Installation], year: int, first: Month, last: Month,
    threshold_pct: float, reasons: list[str] | None = None,
) -> tuple[Path, bool]:  # fmt: skip
    """The CBAM workbook as a versioned dataset in ``directory`` (the policy of
    :mod:`.versions`, as the scope-3 export and the footprints): a version is never rewritten;
    a new one appears only when a figure moved beyond ``threshold_pct`` (or the defaults'
    year changed), with a diff whose rows carry their reasons. Returns (the standing
    workbook, written now)."""
    name = f"cbam-{first}-{last}.xlsx"
    done = publish_if_changed(
        directory, cbam_totals(found),
        lambda staging, _v: write_workbook(staging / name, found, year), threshold_pct,
        reasons, {"first": str(first), "last": str(last), "defaults_year": year},
    )  # fmt: skip
    return done.directory / name, done.written


def write_workbook(path: Path, found: list[Installation], year: int) -> Path:
    """The CBAM communication workbook; ``year`` chooses the defaults compared (imports in
    that year)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    bold = Font(bold=True)

    def sheet(name: str, header: list[str], rows: list[list[object]]) -> None:
        ws = wb.create_sheet(name)
        ws.append(header)
        for cell in ws[1]:
            cell.font = bold
        for row in rows:
            ws.append(row)
        for column in ws.columns:
            width = max(len(str(c.value or "")) for c in column)
            ws.column_dimensions[column[0].column_letter].width = min(max(10, width + 2), 70)

    summary: list[list[object]] = []
    inst_rows: list[list[object]] = []
    sources: list[list[object]] = []
    processes: list[list[object]] = []
    precursors: list[list[object]] = []
    for inst in found:
        name = f"{inst.supplier.name or inst.supplier.id} — {inst.site.name or inst.site.id}"
        inst_rows.append([inst.supplier.id, inst.site.id, name, inst.supplier.country,
                          inst.site.timezone, f"{inst.first}–{inst.last}",
                          ", ".join(inst.supplier.company_ids)])  # fmt: skip
        for m in inst.meters:
            if m.ref.carrier.scope != "1" or not m.emissions_kgco2e:
                continue
            factor = m.emissions_kgco2e / m.consumption if m.consumption else None
            estimated = 100 * m.estimated / m.consumption if m.consumption else 0.0
            sources.append([inst.site.id, f"{m.ref.meter.id} ({m.month})", m.ref.meter.carrier,
                            "metered fuel", _num(m.consumption), m.ref.unit,
                            ", ".join(m.factor_ids), _num(factor, 6), f"kgCO2e/{m.ref.unit}",
                            _num(m.emissions_kgco2e / 1000, 4), _num(estimated, 2)])  # fmt: skip
        hours = (
            sum(
                m.hours_expected
                for m in inst.meters
                if m.ref.meter.id == inst.meters[0].ref.meter.id
            )
            if inst.meters
            else 0
        )
        for pe in inst.site.process_emissions:
            sources.append(
                [
                    inst.site.id,
                    pe.source,
                    "process emissions",
                    "declared",
                    "",
                    "",
                    pe.basis,
                    "",
                    "",
                    _num(pe.tco2e_per_year * hours / 8760, 4),
                    "",
                ]
            )
        for g in inst.goods:
            see, d = g.see_direct, g.default
            embedded = math.fsum(p.embedded_t for p in g.precursors)
            processes.append([inst.site.id, g.cn_code, ", ".join(p.product.id for p in g.products),
                              _num(g.tonnes, 4), _num(g.direct_t, 4), _num(embedded, 4),
                              _num(see, 4), _num(g.electricity_mwh, 4),
                              _num(_per_t(g.electricity_mwh, g.tonnes), 4), _num(g.indirect_t, 4),
                              _num(_per_t(g.indirect_t, g.tonnes), 4)])  # fmt: skip
            for pr in g.precursors:
                precursors.append([inst.site.id, g.cn_code, pr.product, pr.material, pr.cn_code,
                                   _num(pr.tonnes, 4), _num(pr.see_direct, 4),
                                   "actual" if pr.actual else "default", pr.source])  # fmt: skip
            summary.append([
                inst.supplier.id, inst.site.id, g.cn_code, d.description if d else "",
                _num(g.tonnes, 4), _num(see, 4), _num(_per_t(g.indirect_t, g.tonnes), 4),
                _num(_per_t(g.electricity_mwh, g.tonnes), 4), _num(d.base if d else None),
                *(_num(d.by_year[y] if d else None) for y in sorted(MARK_UP)),
                _num(d.for_year(year) if d else None), _num(g.saving_t(year), 3),
                "" if d else "no default value tabulated for this CN code",
            ])  # fmt: skip
    sheet("Summary_Products", [
        "supplier", "installation", "cn_code", "goods", "production_t",
        "see_direct_tco2e_per_t", "see_indirect_tco2e_per_t (information)",
        "electricity_mwh_per_t (information)", "default_tco2e_per_t",
        *(f"default_{y}_with_markup" for y in sorted(MARK_UP)), f"default_used_{year}",
        f"embedded_tco2e_avoided_{year} = (default - actual) x t", "note"], summary)  # fmt: skip
    sheet("A_InstData", ["supplier", "installation", "name", "country", "timezone",
                         "reporting_period", "operator_ids"], inst_rows)  # fmt: skip
    sheet("B_EmInst", ["installation", "source_stream", "carrier", "method", "activity_data",
                       "unit", "emission_factor_ids", "emission_factor", "factor_unit",
                       "emissions_tco2e", "estimated_pct"], sources)  # fmt: skip
    sheet("D_Processes", ["installation", "cn_code (production process)", "products",
                          "activity_level_t", "attributed_direct_tco2e",
                          "precursors_embedded_tco2e", "see_direct_tco2e_per_t",
                          "electricity_mwh", "electricity_mwh_per_t", "indirect_tco2e",
                          "see_indirect_tco2e_per_t"], processes)  # fmt: skip
    sheet("E_PurchPrec", ["installation", "cn_code of good", "product", "precursor",
                          "precursor_cn_code", "mass_t", "see_direct_tco2e_per_t",
                          "actual_or_default", "source"], precursors)  # fmt: skip
    sheet("Methodology", ["topic", "how"], [[k, v] for k, v in METHODOLOGY])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


METHODOLOGY = (
    ("Standard", "Regulation (EU) 2023/956 Annex IV; Implementing Regulation (EU) 2023/1773 "
     "Annex III: SEE = (AttrEm_direct + sum of M_precursor x SEE_precursor) / AL."),
    ("Direct emissions", "Fuel meters (hourly rollups) x the factor of the gas type (heating "
     "value x IPCC 2006 factors, see the factor ids); declared process emissions prorated "
     "over the period. CO2e (CO2 + CH4 + N2O): CBAM monitors CO2 only for iron and steel, so "
     "the figure is high by the CH4/N2O share (about 0.05 % for natural gas)."),
    ("Attribution to processes", "One production process per CN code. Line sub-meters go to "
     "the line's products by the registry's rule (pieces, mass or machine hours); site "
     "overhead by the site's overhead rule: the same attribution as the product footprints."),
    ("Activity level", "Pieces from each product's production counter x piece mass."),
    ("Precursors", "Declared inputs with a CN code: the producer's actual SEE where the "
     "supplier holds it, else the CBAM default for its CN code and the year."),
    ("Default values", "C(2025) 8552 annex, values for Taiwan as tabulated in MIRDC's "
     "metal-industry monthly (appendix table 1), with the 2026-2028 mark-up (+10/20/30 %)."),
    ("Indirect emissions", "Electricity (after on-site PV) x Taiwan's grid factor, reported as "
     "information: not charged for iron, steel and aluminium goods."),
)  # fmt: skip
