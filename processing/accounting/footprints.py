"""Product carbon footprints as PACT v3 ProductFootprints, published immutably.

``product_periods`` reads a reference period (calendar months) through the one emissions path
(the scope-3 month figures: stored hourly emissions per meter, PV self-consumption per site)
and the counted pieces (``hourly_production``), and attributes them to products
(:mod:`.products`). ``footprint`` turns one product's period into a PACT Technical
Specifications v3 ``ProductFootprint``; :class:`FootprintLog` keeps them.

Lifecycle (PACT v3 §Product Footprint Lifecycle): a footprint never changes after it is
created, except its ``status`` to ``Deprecated``. Publishing a period again compares the new
footprint's content with the active one of the same product and period: equal, nothing
happens; different, a new footprint (new id) lists the old id and its predecessors in
``precedingPfIds`` and the old one is deprecated. The log is append-only JSON lines: each
footprint once as created, each deprecation as its own line.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from processing.accounting.products import HOURS_PER_YEAR, ProductPeriod, add_month
from processing.accounting.scope3 import MeterMonth, Month, MonthFigures
from processing.accounting.versions import publish_if_changed
from processing.emissions import EmissionFactor, FactorLibrary
from supplymeter.calendar import add_years
from supplymeter.config import Config
from supplymeter.errors import SupplymeterError
from supplymeter.files import append_json, locked, read_json_lines

SPEC_VERSION = "3.0.3"
"""The PACT Technical Specifications version the footprints follow (openapi.yaml 3.0.3)."""

CN_URN = "urn:pact:taxation-customs.ec.europa.eu:cn:{}"
"""Product classification URN of a Combined Nomenclature code (PACT v3 §Product
Classification URNs, ``urn:pact:$domain-of-issuer$:$type$:$value$``; the issuer is the
European Commission's DG TAXUD)."""

CROSS_SECTORAL = ["ISO14067", "GHGP-Product", "PACT-3.0"]


class FootprintError(SupplymeterError):
    """A footprint cannot be made (registry gaps, nothing counted)."""


def months_between(first: Month, last: Month) -> list[Month]:
    if (last.year, last.month) < (first.year, first.month):
        raise ValueError(f"{last} is before {first}")
    out = [first]
    while (out[-1].year, out[-1].month) != (last.year, last.month):
        m = out[-1]
        out.append(Month(m.year + m.month // 12, m.month % 12 + 1))
    return out


def product_periods(
    config: Config, library: FactorLibrary, figures: list[MonthFigures],
    meters_out: dict[tuple[str, str], list[MeterMonth]] | None = None,
) -> list[ProductPeriod]:  # fmt: skip
    """Every product's period over the months of ``figures`` (site-local calendar months,
    computed once by the runner); ``meters_out`` collects the meter-months of each (supplier,
    site) with products."""
    by_id = {f.id: f for f in library.factors}
    periods: dict[tuple[str, str], dict[str, ProductPeriod]] = {}
    for month_figures in figures:
        month = month_figures.month
        for supplier in config.registry.suppliers:
            for site in supplier.sites:
                if not site.products:
                    continue
                start, end = month.bounds(ZoneInfo(site.timezone))
                units = month_figures.products.get((supplier.id, site.id), {})
                meters = [
                    m
                    for m in month_figures.meters
                    if m.ref.supplier.id == supplier.id and m.ref.site.id == site.id
                ]
                if meters_out is not None:
                    meters_out.setdefault((supplier.id, site.id), []).extend(meters)
                sm = next(s for s in month_figures.sites
                          if s.supplier == supplier.id and s.site == site.id)  # fmt: skip
                bucket = periods.setdefault((supplier.id, site.id), {})
                add_month(bucket, supplier, site, str(month), meters, units, sm, by_id,
                          (end - start) // (3600 * 10**9))  # fmt: skip
    return [pp for bucket in periods.values() for pp in bucket.values()]


# --- the PACT document ------------------------------------------------------------------------


def decimal(value: float, places: int = 6) -> str:
    """A PACT ``Decimal`` string (``^[+-]?\\d+(\\.\\d+)?$``): fixed point, no exponent, no
    trailing zeros, never ``-0``."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def iso(ns_or_dt: int | datetime) -> str:
    """RFC 3339 UTC with seconds, ``Z``."""
    dt = (ns_or_dt if isinstance(ns_or_dt, datetime)
          else datetime.fromtimestamp(ns_or_dt / 1e9, tz=UTC))  # fmt: skip
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def product_urn(domain: str, part_number: str) -> str:
    """``urn:pact:<domain>:supplier-id:<part number>`` (PACT v3 §Product Identifier URNs;
    characters outside a URN's NSS percent-encoded, RFC 8141)."""
    return f"urn:pact:{domain}:supplier-id:{quote(part_number, safe='-._~!$&()*+,;=:@')}"


def _factor_sources(ids: Iterable[str], factors: dict[str, EmissionFactor]) -> list[dict[str, str]]:
    out = []
    for fid in sorted(set(ids)):
        f = factors.get(fid)
        if f is not None:
            out.append({"name": f"{f.publisher}: {f.title} ({f.id})", "version": str(f.year)})
    return out


def footprint_content(
    pp: ProductPeriod, first: Month, last: Month, factors: dict[str, EmissionFactor]
) -> dict[str, Any]:
    """The ProductFootprint of ``pp`` without ``id``, ``created``, ``status`` and
    ``precedingPfIds`` — the part whose change makes a new footprint."""
    supplier, site, product = pp.supplier, pp.site, pp.product
    if not supplier.domain or not supplier.company_ids:
        raise FootprintError(f"{supplier.id}: give domain and company_ids in the registry")
    total = pp.per_declared_unit()
    if total is None:
        raise FootprintError(f"{supplier.id}/{site.id}/{product.id}: no pieces counted in "
                             f"{first}–{last}: no footprint")  # fmt: skip
    tz = ZoneInfo(site.timezone)
    start, _ = first.bounds(tz)
    _, end = last.bounds(tz)
    ref_end = datetime.fromtimestamp(end / 1e9, tz=UTC)
    valid_end = add_years(ref_end, 3)
    hours = (end - start) / (3600 * 10**9)
    site_kg = pp.site_kgco2e
    excluded = [b for b in site.boundary if b.status == "excluded"]
    per_year = math.fsum(b.estimate_kgco2e_per_year or 0.0 for b in excluded)
    excluded_kg = per_year * hours / HOURS_PER_YEAR
    whole = site_kg + excluded_kg
    exempted_pct = 100.0 * excluded_kg / whole if whole > 0 else 0.0
    lines = {line.id: line for line in site.lines}
    line = lines[product.line]
    made = [p.id for p in site.products if p.line == product.line]
    rule_text = ("all of it (the line makes only this product)" if len(made) == 1 else
                 f"shared among {', '.join(made)} by {line.rule.replace('_', ' ')}"
                 + (f" ({line.basis})" if line.basis else ""))  # fmt: skip
    overhead = ("by each product's stated share: this product "
                f"{(product.overhead_share or 0) * 100:g} %" if site.overhead == "share"
                else f"by {site.overhead} produced over all products of the site")  # fmt: skip
    allocation = (
        f"Line {line.id} (sub-meters {', '.join(line.meters)}): {rule_text}. Site overhead "
        f"(consumption meters on no line): {overhead}"
        + (f" ({site.overhead_basis})" if site.overhead_basis else "")
        + ". Pieces from the product's production counter (meter "
        f"{product.counter}), per hour; energy from the meters' hourly rollups, per month."
    )  # fmt: skip
    materials = "; ".join(f"{i.material} {i.kg_per_unit:g} kg/piece × {i.kgco2e_per_kg:g} "
                          f"kgCO2e/kg ({i.source})" for i in product.inputs)  # fmt: skip
    boundary = (
        "Cradle-to-gate. Gate-to-gate at the supplier's site "
        f"{site.name or site.id}: measured energy of the production line and the site's "
        "overhead (electricity location-based after on-site PV self-consumption × the "
        "published grid factor of the year; natural gas × heating value × IPCC 2006 "
        "factors; purchased steam); declared process emissions. Upstream: "
        + (materials or "none declared")
        + ". Excluded: packaging, transport, "
        + ("; ".join(b.source for b in excluded) or "no further sources")
        + "."
    )
    estimated_share = pp.estimated_kgco2e / pp.gate_kgco2e if pp.gate_kgco2e > 0 else 0.0
    comment = (
        f"Computed by supplymeter from hourly primary meter data, "
        f"{first if first == last else f'{first}–{last}'}: "
        f"{pp.units:,.0f} pieces counted ({pp.mass_kg / 1000:,.3f} t"
        + (f"; {pp.estimated_units:,.0f} of them estimated across counter gaps"
           if pp.estimated_units >= 0.5 else "")
        + "), gate-to-gate "
        f"{pp.gate_kgco2e:,.3f} kgCO2e ({pp.direct_kgco2e:,.3f} direct, "
        f"{pp.indirect_kgco2e:,.3f} purchased energy), electricity {pp.electricity_kwh:,.1f} "
        f"kWh; {estimated_share * 100:.2f} % of it from estimated energy (meter gaps)."
        + (" Provisional: a factor of the reference year is not yet published; the latest "
           "earlier one stands in, and the footprint is restated when it is."
           if pp.provisional else "")
        + " Fossil carbon content of the product not determined (reported as 0)."
    )  # fmt: skip
    tech, temporal, geo = pp.dqr()
    pds = pp.primary_data_share()
    declared = product.declared_unit
    pcf: dict[str, Any] = {
        "declaredUnitOfMeasurement": declared,
        "declaredUnitAmount": "1",
        "productMassPerDeclaredUnit": decimal(product.mass_kg if declared == "piece" else 1.0),
        "referencePeriodStart": iso(start),
        "referencePeriodEnd": iso(end),
        "geographyCountry": supplier.country,
        "boundaryProcessesDescription": boundary,
        "pcfExcludingBiogenicUptake": decimal(total),
        "pcfIncludingBiogenicUptake": decimal(total),
        "fossilGhgEmissions": decimal(total),
        "fossilCarbonContent": "0",
        "biogenicCarbonContent": "0",
        "landUseChangeGhgEmissions": "0",
        "biogenicCO2Uptake": "0",
        "packagingEmissionsIncluded": False,
        "ipccCharacterizationFactors": ["AR5"],
        "crossSectoralStandards": CROSS_SECTORAL,
        "exemptedEmissionsPercent": decimal(exempted_pct, 3),
        "exemptedEmissionsDescription": (
            "Site sources outside the meters, estimated per year and prorated: "
            + "; ".join(
                f"{b.source} ({b.estimate_kgco2e_per_year:g} kgCO2e/year)" for b in excluded
            )
            if excluded
            else "none"
        ),
        "allocationRulesDescription": allocation,
        "dqi": {
            "technologicalDQR": decimal(tech, 2),
            "geographicalDQR": decimal(geo, 2),
            "temporalDQR": decimal(temporal, 2),
        },
    }
    sources = _factor_sources(pp.factor_ids, factors)
    if sources:
        pcf["secondaryEmissionFactorSources"] = sources
    if pds is not None:
        pcf["primaryDataShare"] = decimal(pds, 2)
    doc: dict[str, Any] = {
        "specVersion": SPEC_VERSION,
        "validityPeriodStart": iso(ref_end),
        "validityPeriodEnd": iso(valid_end),
        "companyName": supplier.name or supplier.id,
        "companyIds": list(supplier.company_ids),
        "productDescription": (product.description or product.name)
        + f" ({product.mass_kg:g} kg per piece; made at {site.name or site.id})",
        "productIds": [product_urn(supplier.domain, product.part_number), *product.product_ids],
        "productNameCompany": product.name,
        "comment": comment,
        "pcf": pcf,
    }
    if product.cn_code:
        doc["productClassifications"] = [CN_URN.format(product.cn_code)]
    return doc


# --- the log ----------------------------------------------------------------------------------


@dataclass
class Published:
    created: list[dict[str, Any]]
    deprecated: list[str]
    unchanged: int


class FootprintLog:
    """Footprints in an append-only JSON-lines file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._footprints: dict[str, dict[str, Any]] = {}
        self._meta: dict[str, dict[str, str]] = {}

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._footprints, self._meta, self._mtime = {}, {}, None
            return
        if mtime == self._mtime:
            return
        footprints: dict[str, dict[str, Any]] = {}
        meta: dict[str, dict[str, str]] = {}
        try:
            entries = list(read_json_lines(self.path))
        except ValueError as exc:
            raise FootprintError(str(exc)) from exc
        for _, entry in entries:
            if entry.get("op") == "create":
                pf = entry["footprint"]
                footprints[pf["id"]] = pf
                meta[pf["id"]] = {"supplier": entry["supplier"], "product": entry["product"],
                                  "key": entry["key"]}  # fmt: skip
            elif entry.get("op") == "deprecate" and entry["id"] in footprints:
                footprints[entry["id"]] = {**footprints[entry["id"]], "status": "Deprecated"}
        self._footprints, self._meta, self._mtime = footprints, meta, mtime

    def footprints(self) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """(footprint, {supplier, product, key}) in publication order."""
        with self._lock:
            self._load()
            return [(pf, self._meta[i]) for i, pf in self._footprints.items()]

    def get(self, pf_id: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        with self._lock:
            self._load()
            pf = self._footprints.get(pf_id)
            return (pf, self._meta[pf_id]) if pf is not None else None

    def _append(self, entries: Iterator[dict[str, Any]]) -> None:
        """Whole records or none (a full disk is a clear error; a torn last record left by an
        earlier crash is removed first)."""
        append_json(self.path, entries)

    def publish(
        self, contents: list[tuple[str, str, str, dict[str, Any]]], now: datetime | None = None
    ) -> Published:
        """Publish ``(supplier, product, key, content)``: ``key`` names the product's footprint
        series (product and reference period). New or changed content only."""
        now = now or datetime.now(UTC)
        # One publisher at a time across processes too (``pact publish`` beside the export
        # job): each decides from the log as the other left it, so nothing is published twice.
        with self._lock, locked(self.path.with_name(f".{self.path.name}.lock")):
            self._mtime = None
            self._load()
            active: dict[str, dict[str, Any]] = {}
            for pid, pf in self._footprints.items():
                if pf["status"] == "Active":
                    active[self._meta[pid]["key"]] = pf
            entries: list[dict[str, Any]] = []
            created: list[dict[str, Any]] = []
            deprecated: list[str] = []
            unchanged = 0
            for supplier, product, key, content in contents:
                old = active.get(key)
                if old is not None and _content(old) == content:
                    unchanged += 1
                    continue
                pf: dict[str, Any] = {"id": str(uuid.uuid4()),
                                      "specVersion": content["specVersion"],
                                      "created": iso(now), "status": "Active"}  # fmt: skip
                if old is not None:
                    pf["precedingPfIds"] = [old["id"], *old.get("precedingPfIds", [])]
                pf.update({k: v for k, v in content.items() if k != "specVersion"})
                entries.append({"op": "create", "supplier": supplier, "product": product,
                                "key": key, "footprint": pf})  # fmt: skip
                created.append(pf)
                if old is not None:
                    entries.append({"op": "deprecate", "id": old["id"], "at": iso(now)})
                    deprecated.append(old["id"])
            if entries:
                self._append(iter(entries))
            self._mtime = None  # reload on next read
            return Published(created, deprecated, unchanged)


_LIFECYCLE = ("id", "created", "status", "precedingPfIds")


def _content(pf: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pf.items() if k not in _LIFECYCLE}


def footprint_totals(contents: list[tuple[str, str, str, dict[str, Any]]]) -> dict[str, dict]:
    """What a new footprints version is judged on, per product series: the footprint per
    declared unit, its primary-data share and the content's digest (PACT republishes on any
    change of content, so the digest makes every change a new version)."""
    out: dict[str, dict[str, Any]] = {}
    for _, _, key, content in contents:
        pcf = content["pcf"]
        out[key] = {
            "pcf_kgco2e_per_unit": float(pcf["pcfExcludingBiogenicUptake"]),
            "primary_data_share_pct": float(pcf.get("primaryDataShare", "nan"))
            if "primaryDataShare" in pcf else None,
            "content_sha256": hashlib.sha256(json.dumps(content, sort_keys=True).encode())
            .hexdigest(),
        }  # fmt: skip
    return out


def publish_period(
    config: Config, library: FactorLibrary, figures: list[MonthFigures], first: Month,
    last: Month, now: datetime | None = None, reasons: list[str] | None = None,
) -> tuple[Published, list[str]]:  # fmt: skip
    """Publish every product's footprint over ``first``–``last`` from the months' figures
    (computed once by the runner): into the PACT log (lifecycle above) and as a versioned
    dataset ``[pact] footprints_dir/FIRST--LAST/vN/footprints-FIRST-LAST.json`` under the
    policy of :mod:`.versions` (a new version only when a footprint's content changed, with a
    diff whose rows carry ``reasons``). Returns what was published and the products skipped,
    each with its reason."""
    periods = product_periods(config, library, figures)
    factors = {f.id: f for f in library.factors}
    contents, skipped = [], []
    for pp in periods:
        try:
            content = footprint_content(pp, first, last, factors)
        except FootprintError as exc:
            skipped.append(str(exc))
            continue
        key = f"{pp.supplier.id}/{pp.site.id}/{pp.product.id}/{first}/{last}"
        contents.append((pp.supplier.id, pp.product.id, key, content))
    log = FootprintLog(config.resolve(config.pact.footprints_file))
    published = log.publish(contents, now)
    if contents:
        active = {meta["key"]: pf for pf, meta in log.footprints() if pf["status"] == "Active"}
        documents = [active[key] for _, _, key, _ in contents if key in active]
        name = f"footprints-{first}-{last}.json"

        def build(staging: Path, _version: int) -> None:
            (staging / name).write_text(json.dumps(documents, indent=2, ensure_ascii=False))

        publish_if_changed(config.resolve(config.pact.footprints_dir) / f"{first}--{last}",
                           footprint_totals(contents), build, 0.0, reasons)  # fmt: skip
    return published, skipped
