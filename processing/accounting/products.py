"""Meter energy → products: which meter's energy each product carries, and per piece.

A site's consumption meters fall in two kinds (``[[suppliers.sites.lines]]`` of the registry):

* **line meters** serve one production line. Their energy goes to the line's products: all of
  it to the product if the line makes one, else shared by the line's ``rule`` — pieces
  (``units``), mass produced (pieces × piece mass, ``mass``) or machine hours (pieces ×
  ``cycle_s``, ``machine_hours``) counted over the same period;
* **overhead meters** are on no line (lighting, compressed air, offices). Their energy goes to
  the site's products by the site's ``overhead`` rule: mass, pieces, or each product's stated
  ``overhead_share`` (the rest stays with output that has no footprint here).

This follows the allocation hierarchy of ISO 14067:2018 §6.4.6 and the PACT Methodology v3
§3.3.1.3: subdivide first (sub-meters per line), then share by a physical relationship (mass,
machine time); every choice is named in the output. Meters of carriers outside the supplier's
scope 1 and 2 (purchased water) carry no footprint here.

Emissions come from the one emissions path (stored hourly emissions summed per meter and
month); electricity is the location-based figure after PV self-consumption (the site's
purchased share of its metered electricity, as in the scope-3 export), spread pro rata over
the site's electricity meters. Months are computed one by one and then added, so a period
spanning two factor years stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from processing.accounting.scope3 import MeterMonth, SiteMonth, temporal_rating
from processing.emissions import EmissionFactor
from supplymeter.carriers import CARRIERS
from supplymeter.config import Product, Site, Supplier

HOURS_PER_YEAR = 8760
"""Hours a declared yearly process emission is spread over (365 days)."""


@dataclass(frozen=True)
class MeterShare:
    """How one meter's energy over one month reaches the products.

    ``shares`` maps product id → fraction of the meter's energy; ``1 − Σ shares`` stays
    unattributed (overhead shares below 1, or a line that counted no pieces)."""

    meter: str
    line: str
    """The line's id; "" for an overhead meter."""
    rule: str
    """``direct`` (one product), ``units``, ``mass``, ``machine_hours`` or ``share``."""
    shares: dict[str, float]

    @property
    def unattributed(self) -> float:
        return max(0.0, 1.0 - math.fsum(self.shares.values()))


def _weights(rule: str, products: list[Product], units: dict[str, float]) -> dict[str, float]:
    if rule == "units":
        return {p.id: units.get(p.id, 0.0) for p in products}
    if rule == "mass":
        return {p.id: units.get(p.id, 0.0) * p.mass_kg for p in products}
    if rule == "machine_hours":
        return {p.id: units.get(p.id, 0.0) * (p.cycle_s or 0.0) / 3600 for p in products}
    raise ValueError(f"unknown rule {rule!r}")


def _split(rule: str, products: list[Product], units: dict[str, float]) -> dict[str, float]:
    weights = _weights(rule, products, units)
    total = math.fsum(weights.values())
    return {k: w / total for k, w in weights.items()} if total > 0 else {}


def meter_shares(site: Site, units: dict[str, float]) -> list[MeterShare]:
    """Each scope 1/2 consumption meter's shares for one period with ``units`` pieces counted
    per product id."""
    out: list[MeterShare] = []
    on_line: dict[str, str] = {m: line.id for line in site.lines for m in line.meters}
    lines = {line.id: line for line in site.lines}
    for meter in site.meters:
        if meter.role != "consumption" or CARRIERS[meter.carrier].scope not in ("1", "2"):
            continue
        line_id = on_line.get(meter.id, "")
        if line_id:
            line = lines[line_id]
            made = [p for p in site.products if p.line == line_id]
            if len(made) == 1:
                counted = units.get(made[0].id, 0.0) > 0
                out.append(MeterShare(meter.id, line_id, "direct",
                                      {made[0].id: 1.0} if counted else {}))  # fmt: skip
            else:
                out.append(MeterShare(meter.id, line_id, line.rule,
                                      _split(line.rule, made, units)))  # fmt: skip
        elif site.products:
            out.append(MeterShare(meter.id, "", site.overhead, _overhead_split(site, units)))
    return out


def _overhead_split(site: Site, units: dict[str, float]) -> dict[str, float]:
    """Product id → fraction of an overhead (no line's) energy, by the site's overhead rule."""
    if site.overhead == "share":
        return {p.id: p.overhead_share or 0.0 for p in site.products if units.get(p.id, 0.0) > 0}
    return _split(site.overhead, site.products, units)


@dataclass
class ProductPeriod:
    """One product's footprint inputs over a reference period (months added up)."""

    supplier: Supplier
    site: Site
    product: Product
    units: float = 0.0
    """Pieces counted. [pieces]"""
    estimated_units: float = 0.0
    energy: dict[str, float] = field(default_factory=dict)
    """Attributed energy by carrier. [carrier unit]"""
    direct_kgco2e: float = 0.0
    """Scope 1 of the supplier: fuels burnt on site and declared process emissions. [kgCO2e]"""
    indirect_kgco2e: float = 0.0
    """Scope 2 of the supplier: purchased electricity (after PV) and steam. [kgCO2e]"""
    electricity_kwh: float = 0.0
    process_kgco2e: float = 0.0
    """The declared process emissions inside ``direct_kgco2e``. [kgCO2e]"""
    estimated_kgco2e: float = 0.0
    """Emissions of estimated energy (gaps, resets) inside direct + indirect. [kgCO2e]"""
    unattributed_kgco2e: float = 0.0
    """The site's emissions that reached none of its products (the same figure for every
    product of the site). [kgCO2e]"""
    site_kgco2e: float = 0.0
    """All of the site's scope 1 + 2 emissions over the period. [kgCO2e]"""
    dqr_weighted: list[tuple[float, float, float, float]] = field(default_factory=list)
    """(technological, temporal, geographical, kgCO2e) of each attributed meter-month."""
    factor_ids: set[str] = field(default_factory=set)
    provisional: bool = False

    @property
    def mass_kg(self) -> float:
        """Mass produced. [kg]"""
        return self.units * self.product.mass_kg

    @property
    def gate_kgco2e(self) -> float:
        """Gate-to-gate scope 1 + 2 emissions of the pieces counted. [kgCO2e]"""
        return self.direct_kgco2e + self.indirect_kgco2e

    @property
    def declared_units(self) -> float:
        """How many declared units the period produced (pieces, or kg)."""
        return self.units if self.product.declared_unit == "piece" else self.mass_kg

    def per_unit(self, kgco2e: float) -> float | None:
        """``kgco2e`` per declared unit; ``None`` when nothing was counted."""
        return kgco2e / self.declared_units if self.declared_units > 0 else None

    @property
    def materials_kgco2e_per_piece(self) -> float:
        """Declared upstream inputs per piece. [kgCO2e/piece]"""
        return math.fsum(i.kg_per_unit * i.kgco2e_per_kg for i in self.product.inputs)

    @property
    def materials_primary_kgco2e_per_piece(self) -> float:
        return math.fsum(i.kg_per_unit * i.kgco2e_per_kg for i in self.product.inputs
                         if i.primary)  # fmt: skip

    def per_declared_unit(self) -> float | None:
        """Cradle-to-gate footprint per declared unit: gate-to-gate + declared inputs."""
        gate = self.per_unit(self.gate_kgco2e)
        if gate is None:
            return None
        materials = self.materials_kgco2e_per_piece
        if self.product.declared_unit == "kilogram":
            materials /= self.product.mass_kg
        return gate + materials

    def primary_data_share(self) -> float | None:
        """Share of the footprint from primary data, % (PACT Methodology v3 §4.2.2): metered
        and measured energy, and inputs whose value is the material supplier's own."""
        total_pc = self.per_declared_unit()
        if total_pc is None or total_pc <= 0:
            return None
        scale = 1.0 if self.product.declared_unit == "piece" else 1 / self.product.mass_kg
        measured = self.per_unit(self.gate_kgco2e - self.estimated_kgco2e - self.process_kgco2e)
        primary = (measured or 0.0) + self.materials_primary_kgco2e_per_piece * scale
        return 100.0 * min(1.0, max(0.0, primary / total_pc))

    def dqr(self) -> tuple[float, float, float]:
        """Technological, temporal and geographical DQRs weighted by emissions per piece over
        the meters' factors and the declared inputs (1 best – 5; PACT Methodology §4.2.3)."""
        rows = list(self.dqr_weighted)
        pieces = self.units or 1.0
        for i in self.product.inputs:
            t, g, tmp = i.dqr
            rows.append((t, tmp, g, i.kg_per_unit * i.kgco2e_per_kg * pieces))
        weight = math.fsum(r[3] for r in rows)
        if weight <= 0:
            return (3.0, 3.0, 3.0)
        return tuple(math.fsum(r[k] * r[3] for r in rows) / weight  # type: ignore[return-value]
                     for k in range(3))  # fmt: skip


def _ratings(used: list[EmissionFactor], year: int) -> tuple[float, float, float]:
    """(technological, temporal, geographical) of the factors behind one energy figure: the
    worst of each (3 where a factor gives none, or none is known)."""
    return (max((f.dqr_technological or 3 for f in used), default=3),
            max((temporal_rating(year, f.year) for f in used), default=3),
            max((f.dqr_geographical or 3 for f in used), default=3))  # fmt: skip


def add_month(
    periods: dict[str, ProductPeriod], supplier: Supplier, site: Site, month: str,
    meters: Iterable[MeterMonth], units: dict[str, tuple[float, float]],
    electricity: SiteMonth | None, factors: dict[str, EmissionFactor], hours: int,
) -> None:  # fmt: skip
    """Add one month of one site to its products' periods.

    ``meters``: the site's meter-months (stored emissions); ``units``: product id → (pieces,
    estimated pieces); ``electricity``: the site's month of electricity — each electricity
    meter carries its kWh at the site's location-based rate per kWh used (purchased
    electricity shared with own PV), and the unmetered rest goes to the products by the
    site's overhead rule, so the products and the unattributed rest add up to the site's
    scope 2; ``hours``: the month's length, for declared yearly process emissions."""
    for p in site.products:
        periods.setdefault(p.id, ProductPeriod(supplier, site, p))
        got = units.get(p.id, (0.0, 0.0))
        periods[p.id].units += got[0]
        periods[p.id].estimated_units += got[1]
    counted = {pid: u for pid, (u, _) in units.items()}
    by_meter = {m.ref.meter.id: m for m in meters}
    unattributed = 0.0
    site_kg = 0.0
    year = int(month[:4])
    rate = electricity.kgco2e_per_used_kwh if electricity is not None else None
    for share in meter_shares(site, counted):
        m = by_meter.get(share.meter)
        if m is None or not m.emissions_kgco2e:
            continue
        carrier = CARRIERS[m.ref.meter.carrier]
        electric = carrier.name == "electricity" and rate is not None
        kg = m.consumption * rate if electric else m.emissions_kgco2e  # type: ignore[operator]
        site_kg += kg
        estimated_kg = kg * (m.estimated / m.consumption) if m.consumption > 0 else 0.0
        used = [factors[f] for f in m.factor_ids if f in factors]
        rating = _ratings(used, year)
        unattributed += kg * share.unattributed
        for pid, fraction in share.shares.items():
            pp = periods[pid]
            part = kg * fraction
            pp.energy[carrier.name] = pp.energy.get(carrier.name, 0.0) + m.consumption * fraction
            if carrier.name == "electricity":
                pp.electricity_kwh += m.consumption * fraction
            if carrier.scope == "1":
                pp.direct_kgco2e += part
            else:
                pp.indirect_kgco2e += part
            pp.estimated_kgco2e += estimated_kg * fraction
            pp.dqr_weighted.append((*rating, part))
            pp.factor_ids.update(m.factor_ids)
            pp.provisional = pp.provisional or m.provisional
    if electricity is not None and electricity.unmetered_kwh:
        kwh, kg = electricity.unmetered_kwh, electricity.unmetered_kgco2e
        site_kg += kg
        split = _overhead_split(site, counted)
        unattributed += kg * max(0.0, 1 - math.fsum(split.values()))
        used = [factors[f] for f in electricity.factor_ids if f in factors]
        rating = _ratings(used, year)
        for pid, fraction in split.items():
            pp = periods[pid]
            pp.energy["electricity"] = pp.energy.get("electricity", 0.0) + kwh * fraction
            pp.electricity_kwh += kwh * fraction
            pp.indirect_kgco2e += kg * fraction
            pp.dqr_weighted.append((*rating, abs(kg * fraction)))
            pp.factor_ids.update(electricity.factor_ids)
            pp.provisional = pp.provisional or electricity.provisional
    for pe in site.process_emissions:
        kg = pe.tco2e_per_year * 1000 * hours / HOURS_PER_YEAR
        site_kg += kg
        made = [p for p in site.products if (p.line == pe.line if pe.line else True)]
        rule = next((line.rule for line in site.lines if line.id == pe.line), site.overhead)
        if len(made) == 1:
            split = {made[0].id: 1.0} if counted.get(made[0].id, 0.0) > 0 else {}
        elif rule == "share":
            split = {p.id: p.overhead_share or 0.0 for p in made if counted.get(p.id, 0.0) > 0}
        else:
            split = _split(rule, made, counted)
        unattributed += kg * max(0.0, 1 - math.fsum(split.values()))
        for pid, fraction in split.items():
            periods[pid].direct_kgco2e += kg * fraction
            periods[pid].process_kgco2e += kg * fraction
            periods[pid].dqr_weighted.append((3.0, 1.0, 2.0, kg * fraction))
    for p in site.products:
        periods[p.id].unattributed_kgco2e += unattributed
        periods[p.id].site_kgco2e += site_kg
