"""Consumption × cited emission factor → kgCO2e, hour by hour.

Emission factors are data (``processing/data/emission_factors.csv``), not constants: each row
has its value, unit, region, year, basis, publisher, title, URL and notes, and every emission
record carries the id of the factor it used, so every number traces to a publication.

A reading uses the factor of its own year — the calendar year of the hour in the site's local
time — and of its meter's **use** (:attr:`MeterRef.factor_use`): since 2025 Taiwan's
electricity factor is announced by use (industry inventories, average, residential), and
natural gas by gas type (NG1, NG2). For a year, the row of the meter's use is taken, else the
row without a use. Where the year has none yet, the latest earlier one (same order) is used and
the result is marked ``provisional`` (to be restated once the year's factor appears). A row
marked ``inventory = no`` is kept for reference and never resolved: Taiwan's 2025 average
(0.467) is for managing utilities, not for a company's inventory (MOENV GHG registry,
2026-06-17; ``standards/tw-factors.md``).

A row may carry per-gas factors (kg CO2, CH4, N2O per unit) and the GWP set that turned them
into CO2e; its uncertainty (± %, 95 %), its technological and geographical data quality
ratings (1 best – 5, PACT v3 §DataQualityIndicators) and how it was verified.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from supplymeter.carriers import CARRIERS
from supplymeter.config import Config, MeterRef
from supplymeter.errors import ConfigError, Problem
from supplymeter.files import cell
from supplymeter.records import HourlyConsumption, HourlyEmissions, ns_to_datetime

FACTORS_FILE = "emission_factors.csv"


@dataclass(frozen=True, slots=True)
class EmissionFactor:
    """One published emission factor. ``value`` is in ``unit`` (kgCO2e per kWh or m³)."""

    id: str
    carrier: str
    region: str
    year: int
    value: float
    unit: str
    basis: str
    publisher: str
    title: str
    url: str
    retrieved: str
    note: str
    period: str = "annual"
    """``annual``: published for one year (a later year without its own factor is provisional);
    ``standing``: applies from ``year`` until a newer row replaces it (fuel properties)."""
    use: str = ""
    """The published variant (``industry``, ``average``, ``residential``; a gas type ``NG1``,
    ``NG2``); "" applies to every use."""
    co2_kg: float | None = None
    ch4_kg: float | None = None
    n2o_kg: float | None = None
    """Per-gas factors, kg of the gas per unit; ``None`` when published as CO2e only."""
    gwp: str = ""
    """The GWP set of the CO2e value (MOENV adopted IPCC AR5: CH4 28, N2O 265)."""
    uncertainty_pct: float | None = None
    """± % (95 % interval) of the value; ``None``: not published."""
    dqr_technological: int | None = None
    dqr_geographical: int | None = None
    """Data quality ratings of the factor for its intended use, 1 (best) – 5 (PACT v3)."""
    verification: str = ""
    """How the value was checked against its publication: ``verified: <notice>`` when the
    publisher's notice is cited, ``secondary: …`` or ``NOT VERIFIED …`` otherwise."""
    inventory: bool = True
    """Whether a GHG inventory may use the row; ``False`` rows are never resolved."""
    lhv_kcal: float | None = None
    """Lower heating value of a fuel the row was derived from [kcal per unit]; ``None`` for
    carriers that are not fuels."""

    def per_gas(self, quantity: float) -> dict[str, float] | None:
        """kg of CO2, CH4 and N2O for ``quantity`` units, when the row gives them."""
        if self.co2_kg is None or self.ch4_kg is None or self.n2o_kg is None:
            return None
        return {"co2": quantity * self.co2_kg, "ch4": quantity * self.ch4_kg,
                "n2o": quantity * self.n2o_kg}  # fmt: skip


GWP_AR5 = {"co2": 1.0, "ch4": 28.0, "n2o": 265.0}
"""GWP100 of IPCC AR5 (WG1, ch. 8, Table 8.7, without climate-carbon feedbacks), the set
Taiwan's MOENV adopted for GHG inventories; per-gas rows must add up to their CO2e with it."""


def _yes_no(text: str) -> bool:
    if text.strip().lower() not in ("yes", "no"):
        raise ValueError(f"column inventory: yes or no (got {text!r})")
    return text.strip().lower() == "yes"


def _optional_float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def _rating(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    value = int(text)
    if not 1 <= value <= 5:
        raise ValueError(f"a data quality rating is 1-5 (got {value})")
    return value


class FactorLibrary:
    """Emission factors by (carrier, region, year, use)."""

    def __init__(self, factors: list[EmissionFactor]) -> None:
        self.factors = factors
        self._by_key = {(f.carrier, f.region, f.year, f.use): f for f in factors if f.inventory}

    @classmethod
    def load(cls, path: Path | None = None) -> FactorLibrary:
        """Read and check the factor file (default: the one shipped in ``processing/data``)."""
        if path is None:
            text = resources.files("processing").joinpath("data", FACTORS_FILE).read_text("utf-8")
            name = f"processing/data/{FACTORS_FILE}"
        else:
            text, name = path.read_text("utf-8"), str(path)
        factors: list[EmissionFactor] = []
        problems: list[Problem] = []
        seen_ids: set[str] = set()
        seen_keys: set[tuple[str, str, int, str]] = set()
        for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            try:
                factor = EmissionFactor(
                    **{k: row[k] for k in ("id", "carrier", "region", "unit", "basis")},
                    **{k: row[k] for k in ("publisher", "title", "url", "retrieved", "note")},
                    year=cell(row, "year", int),
                    value=cell(row, "value", float),
                    period=row.get("period") or "annual",
                    use=(row.get("use") or "").strip(),
                    **{k: cell(row, k, _optional_float) if k in row else None for k in
                       ("co2_kg", "ch4_kg", "n2o_kg", "uncertainty_pct")},
                    gwp=row.get("gwp") or "",
                    dqr_technological=cell(row, "dqr_technological", _rating)
                    if row.get("dqr_technological") else None,
                    dqr_geographical=cell(row, "dqr_geographical", _rating)
                    if row.get("dqr_geographical") else None,
                    verification=row.get("verification") or "",
                    inventory=_yes_no(row.get("inventory") or "yes"),
                    lhv_kcal=cell(row, "lhv_kcal", _optional_float) if "lhv_kcal" in row else None,
                )  # fmt: skip
            except KeyError as exc:
                problems.append(Problem(name, line, f"column {exc.args[0]}: missing",
                                        "missing_column"))  # fmt: skip
                continue
            except (TypeError, ValueError) as exc:
                problems.append(Problem(name, line, str(exc), "invalid_value"))
                continue
            gases = factor.per_gas(1.0)
            if gases is not None:
                co2e = math.fsum(GWP_AR5[g] * v for g, v in gases.items())
                if abs(co2e - factor.value) > 1e-3 * factor.value:
                    problems.append(Problem(name, line, f"column value: per-gas factors give "
                                            f"{co2e:.6g} kgCO2e with AR5 GWPs, not "
                                            f"{factor.value:g}", "inconsistent"))  # fmt: skip
            if factor.uncertainty_pct is not None and not factor.uncertainty_pct >= 0:
                problems.append(Problem(name, line, "column uncertainty_pct: must be >= 0",
                                        "invalid_value"))  # fmt: skip
            units = {c.unit for c in CARRIERS.values() if c.factor_key == factor.carrier}
            expected_unit = f"kgCO2e/{units.pop() if len(units) == 1 else '?'}"
            if factor.unit != expected_unit:
                problems.append(Problem(name, line, f"column unit: must be {expected_unit} "
                                        f"(got {factor.unit!r})", "invalid_value"))  # fmt: skip
            if factor.period not in ("annual", "standing"):
                problems.append(Problem(name, line, "column period: must be annual or standing "
                                        f"(got {factor.period!r})", "invalid_value"))  # fmt: skip
            if factor.lhv_kcal is not None and not factor.lhv_kcal > 0:
                problems.append(Problem(name, line, "column lhv_kcal: must be > 0",
                                        "invalid_value"))  # fmt: skip
            if not factor.value > 0:
                problems.append(Problem(name, line, f"column value: must be > 0 (got "
                                        f"{factor.value})", "invalid_value"))  # fmt: skip
            key = (factor.carrier, factor.region, factor.year, factor.use)
            if factor.id in seen_ids or key in seen_keys:
                problems.append(Problem(name, line, f"duplicate factor {factor.id!r} or {key}",
                                        "duplicate_row"))  # fmt: skip
            seen_ids.add(factor.id)
            seen_keys.add(key)
            factors.append(factor)
        if problems:
            raise ConfigError(problems)
        return cls(factors)

    def resolutions(
        self, years: range, uses: Iterable[tuple[str, str]] = ()
    ) -> dict[str, tuple[str, float, bool]]:
        """What every (carrier, region, year, use) resolves to, as
        ``{"carrier/region/year/use": (factor id, value, provisional)}`` — for the uses in the
        file, "" and the (carrier, use) pairs in ``uses`` (the registry's): the job compares it
        between runs, and a changed entry (a new or corrected row) restates exactly the hours
        of that year and use."""
        out = {}
        keys = {(f.carrier, f.region) for f in self.factors}
        for carrier, region in sorted(keys):
            named = {f.use for f in self.factors if f.carrier == carrier and f.inventory}
            named.add("")
            named |= {u for c, u in uses if c == carrier}
            for use in sorted(named):
                for year in years:
                    found = self.lookup(carrier, region, year, use)
                    if found is not None:
                        f, provisional = found
                        out[f"{carrier}/{region}/{year}/{use}"] = (f.id, f.value, provisional)
        return out

    @classmethod
    def for_config(cls, config: Config) -> FactorLibrary:
        """The configured factor file (``[jobs] factors_file``), else the shipped one; parsed
        and checked again only when its bytes changed, so an email or a panel asking for a
        factor does not re-check the file each time."""
        path = config.jobs.factors_file
        resolved = config.resolve(path) if path else None
        try:
            data = resolved.read_bytes() if resolved else b""
        except OSError:
            return cls.load(resolved)  # says what is wrong with it
        key = (str(resolved), hashlib.sha256(data).hexdigest())
        library = _LOADED.get(key)
        if library is None:
            library = cls.load(resolved)
            _LOADED.clear()  # one version per process is enough
            _LOADED[key] = library
        return library

    def covers(self, carrier: str, region: str) -> bool:
        """Whether any factor exists for the carrier and region (else: "no factor yet")."""
        return any(f.carrier == carrier and f.region == region for f in self.factors)

    def _of_year(self, carrier: str, region: str, year: int, use: str) -> EmissionFactor | None:
        """The year's row for ``use``, else the one for every use (inventory rows only)."""
        for u in dict.fromkeys((use, "")):
            found = self._by_key.get((carrier, region, year, u))
            if found is not None:
                return found
        return None

    def lookup(
        self, carrier: str, region: str, year: int, use: str = ""
    ) -> tuple[EmissionFactor, bool] | None:
        """The factor for ``year`` and ``use``, or the latest earlier year's flagged
        provisional (True) unless that row is a standing one."""
        exact = self._of_year(carrier, region, year, use)
        if exact:
            return exact, False
        years = sorted({f.year for f in self.factors
                        if f.carrier == carrier and f.region == region and f.year < year},
                       reverse=True)  # fmt: skip
        for earlier in years:
            found = self._of_year(carrier, region, earlier, use)
            if found is not None:
                return found, found.period == "annual"
        return None


_LOADED: dict[tuple[str, str], FactorLibrary] = {}
"""The factor library last read by :meth:`FactorLibrary.for_config`, by (path, SHA-256)."""


def local_year(hour: HourlyConsumption, ref: MeterRef) -> int:
    """Calendar year of the hour's start in the site's timezone."""
    return ns_to_datetime(hour.hour_start_ns).astimezone(ref.tz).year


def to_emissions(
    hour: HourlyConsumption, factor: EmissionFactor, provisional: bool
) -> HourlyEmissions:
    """Location-based emissions of one meter-hour.

    Parameters
    ----------
    hour : HourlyConsumption
        Consumption in the hour, >= 0 in normal operation. [kWh, m³ or kg]
    factor : EmissionFactor
        Factor for the meter's carrier, region and year. [kgCO2e per unit]
    provisional : bool
        True when ``factor`` is an earlier year's, standing in for an unpublished one.

    Returns
    -------
    HourlyEmissions
        ``emissions_kgco2e = consumption × factor.value``, with the factor's id. [kgCO2e]

    References
    ----------
    .. [1] GHG Protocol Scope 2 Guidance (2015), location-based method.
    .. [2] Energy Administration, Ministry of Economic Affairs (Taiwan), annual electricity
       emission factor announcements (see the factor file for each year's row).
    """
    if factor.carrier != CARRIERS[hour.carrier].factor_key:
        raise ValueError(f"factor {factor.id} is for {factor.carrier}, not {hour.carrier}")
    return HourlyEmissions(
        hour.supplier, hour.site, hour.meter, hour.carrier, hour.hour_start_ns,
        hour.consumption * factor.value, factor.id, factor.value, provisional,
    )  # fmt: skip


def emissions_for(
    hour: HourlyConsumption, ref: MeterRef, library: FactorLibrary
) -> HourlyEmissions | None:
    """Emissions of a meter-hour with the factor of its local year; ``None`` when no factor
    exists for the carrier and region at all (reported as such, never as zero)."""
    found = library.lookup(ref.carrier.factor_key, ref.supplier.country, local_year(hour, ref),
                           ref.factor_use)  # fmt: skip
    if found is None:
        return None
    return to_emissions(hour, *found)
