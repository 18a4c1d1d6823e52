"""Consumption × cited emission factor → kgCO2e, hour by hour.

Emission factors are data (``processing/data/emission_factors.csv``), not constants: each row
has its value, unit, region, year, basis, publisher, title, URL and notes, and every emission
record carries the id of the factor it used, so every number traces to a publication.

A reading uses the factor of its own year — the calendar year of the hour in the site's local
time. Where that year's factor is not published yet, the latest earlier one is used and the
result is marked ``provisional`` (to be restated once the year's factor appears).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from supplymeter.carriers import CARRIERS
from supplymeter.config import Config, MeterRef
from supplymeter.errors import ConfigError
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


class FactorLibrary:
    """Emission factors by (carrier, region, year)."""

    def __init__(self, factors: list[EmissionFactor]) -> None:
        self.factors = factors
        self._by_key = {(f.carrier, f.region, f.year): f for f in factors}

    @classmethod
    def load(cls, path: Path | None = None) -> FactorLibrary:
        """Read and check the factor file (default: the one shipped in ``processing/data``)."""
        if path is None:
            text = resources.files("processing").joinpath("data", FACTORS_FILE).read_text("utf-8")
            name = f"processing/data/{FACTORS_FILE}"
        else:
            text, name = path.read_text("utf-8"), str(path)
        factors: list[EmissionFactor] = []
        problems: list[str] = []
        seen_ids: set[str] = set()
        seen_keys: set[tuple[str, str, int]] = set()
        for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            try:
                factor = EmissionFactor(
                    **{k: row[k] for k in ("id", "carrier", "region", "unit", "basis")},
                    **{k: row[k] for k in ("publisher", "title", "url", "retrieved", "note")},
                    year=int(row["year"]),
                    value=float(row["value"]),
                    period=row.get("period") or "annual",
                )
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(f"{name}:{line}: cannot read row: {exc}")
                continue
            units = {c.unit for c in CARRIERS.values() if c.factor_key == factor.carrier}
            expected_unit = f"kgCO2e/{units.pop() if len(units) == 1 else '?'}"
            if factor.unit != expected_unit:
                problems.append(
                    f"{name}:{line}: unit must be {expected_unit} (got {factor.unit!r})"
                )
            if factor.period not in ("annual", "standing"):
                problems.append(f"{name}:{line}: period must be annual or standing")
            if not factor.value > 0:
                problems.append(f"{name}:{line}: value must be > 0 (got {factor.value})")
            key = (factor.carrier, factor.region, factor.year)
            if factor.id in seen_ids or key in seen_keys:
                problems.append(f"{name}:{line}: duplicate factor {factor.id!r} or {key}")
            seen_ids.add(factor.id)
            seen_keys.add(key)
            factors.append(factor)
        if problems:
            raise ConfigError(problems)
        return cls(factors)

    def resolutions(self, years: range) -> dict[str, tuple[str, float, bool]]:
        """What every (carrier, region, year) resolves to, as ``{"carrier/region/year":
        (factor id, value, provisional)}``: the job compares it between runs, and a changed
        entry (a new or corrected row) restates exactly the hours of that year."""
        out = {}
        keys = {(f.carrier, f.region) for f in self.factors}
        for carrier, region in sorted(keys):
            for year in years:
                found = self.lookup(carrier, region, year)
                if found is not None:
                    f, provisional = found
                    out[f"{carrier}/{region}/{year}"] = (f.id, f.value, provisional)
        return out

    @classmethod
    def for_config(cls, config: Config) -> FactorLibrary:
        """The configured factor file (``[jobs] factors_file``), else the shipped one."""
        path = config.jobs.factors_file
        return cls.load(config.resolve(path) if path else None)

    def covers(self, carrier: str, region: str) -> bool:
        """Whether any factor exists for the carrier and region (else: "no factor yet")."""
        return any(f.carrier == carrier and f.region == region for f in self.factors)

    def lookup(self, carrier: str, region: str, year: int) -> tuple[EmissionFactor, bool] | None:
        """The factor for ``year``, or the latest earlier one flagged provisional (True)."""
        exact = self._by_key.get((carrier, region, year))
        if exact:
            return exact, False
        earlier = [
            f for f in self.factors if f.carrier == carrier and f.region == region and f.year < year
        ]
        if not earlier:
            return None
        latest = max(earlier, key=lambda f: f.year)
        return latest, latest.period == "annual"


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
    found = library.lookup(ref.carrier.factor_key, ref.supplier.country, local_year(hour, ref))
    if found is None:
        return None
    return to_emissions(hour, *found)
