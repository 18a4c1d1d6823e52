"""Every input file of the monthly accounting has its one reader here — allocations,
certificates, bills — and ``check`` calls the same readers. Each reports every problem of its
file at once (:class:`ConfigError`, ``FILE:LINE: column: problem``) and returns the typed
records the pure calculations take (:mod:`.scope3`, :mod:`.reconcile`).
A record's ``source`` names its file and line, never the machine's path."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from processing.accounting.reconcile import Bill
from processing.accounting.scope3 import AllocationShare, Certificates, Month
from supplymeter.carriers import CARRIERS
from supplymeter.config import Config, Registry, Supplier
from supplymeter.errors import ConfigError, Problem
from supplymeter.files import cell

if TYPE_CHECKING:
    from supplymeter.operations import MonthReview

ALLOCATION_COLUMNS = ("supplier", "month", "method", "numerator", "denominator", "unit", "basis")


def csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV input file whose header must hold ``columns``."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise ConfigError([Problem(str(path), 1, f"missing columns {sorted(missing)} "
                                       f"(the header needs {', '.join(columns)})",
                                       "missing_column")])  # fmt: skip
        return list(enumerate(reader, start=2))


def _problem(path: Path, line: int, exc: Exception) -> Problem:
    """A row's failure: ``column X: ...`` messages are invalid values, the rest duplicates or
    rules across columns."""
    text = f"column {exc.args[0]}: missing" if isinstance(exc, KeyError) else str(exc)
    code = ("duplicate_row" if "appears twice" in text else
            "invalid_value" if text.startswith("column ") else "inconsistent")  # fmt: skip
    return Problem(str(path), line, text, code)


def unknown_references(path: Path, sites: Mapping[str, Collection[str]]) -> list[Problem]:
    """Rows of an input CSV whose ``supplier`` (and ``site``, where the file has that column)
    are not in the registry: ``sites`` maps each supplier id to its site ids. Such a row would
    otherwise be ignored without a word."""
    problems = []
    for line, row in csv_rows(path, ("supplier",)):
        supplier, site = (row.get("supplier") or "").strip(), row.get("site")
        if supplier not in sites:
            problems.append(Problem(str(path), line, f"column supplier: {supplier!r} is not a "
                                    "supplier of the registry", "unknown_reference"))  # fmt: skip
        elif site is not None and site.strip() not in sites[supplier]:
            problems.append(Problem(str(path), line, f"column site: {site!r} is not a site of "
                                    f"supplier {supplier}", "unknown_reference"))  # fmt: skip
    return problems


def load_allocations(path: Path) -> dict[tuple[str, Month], AllocationShare]:
    """Monthly shares from a CSV (columns :data:`ALLOCATION_COLUMNS`); share = numerator /
    denominator, 1 for ``dedicated``. Every problem is reported at once (ConfigError)."""
    out: dict[tuple[str, Month], AllocationShare] = {}
    problems: list[Problem] = []
    for line, row in csv_rows(path, ALLOCATION_COLUMNS):
        try:
            month = cell(row, "month", Month.parse)
            method = row["method"]
            if method not in ("physical", "economic", "dedicated"):
                raise ValueError(f"column method: must be physical, economic or dedicated "
                                 f"(got {method!r})")  # fmt: skip
            if method == "dedicated":
                num = den = None
                share = 1.0
            else:
                num, den = cell(row, "numerator", float), cell(row, "denominator", float)
                if not (num >= 0 and den > 0 and num <= den):
                    raise ValueError(f"columns numerator, denominator: need 0 <= numerator "
                                     f"<= denominator, denominator > 0 (got {num:g}, "
                                     f"{den:g})")  # fmt: skip
                share = num / den
            key = (row["supplier"], month)
            if key in out:
                raise ValueError(f"supplier {row['supplier']} {month} appears twice")
            out[key] = AllocationShare(method, share, row["basis"], f"{path.name}:{line}", num,
                                       den, row["unit"])  # fmt: skip
        except (ValueError, KeyError) as exc:
            problems.append(_problem(path, line, exc))
    if problems:
        raise ConfigError(problems)
    return out


CERTIFICATE_COLUMNS = ("supplier", "site", "month", "kwh", "certificate_ids", "issuer")
CERTIFICATE_ATTRIBUTES = (
    "generation_start", "generation_end", "technology", "facility", "retired_on", "beneficiary",
)  # fmt: skip
"""What a certificate must say to count (GHG Protocol Scope 2 Guidance, 2015, ch. 7.1, Scope 2
Quality Criteria: the generation it stands for — vintage, technology, facility — and its
retirement on behalf of the consumer). Optional columns in the file: a retired row without
them is listed, not applied. A ``use`` column says ``retired`` (the default: claimed for this
site's consumption) or ``sold`` (issued for this site's own PV and sold to someone else)."""
T_REC_KWH = 1000.0
"""One T-REC stands for 1,000 kWh (BSMI National Renewable Energy Certification Center,
Taiwan)."""


def _certificate_issues(row: dict[str, str], month: Month, supplier: Supplier | None) -> list[str]:
    """Why a retired row cannot count (empty: it counts)."""
    missing = [c for c in CERTIFICATE_ATTRIBUTES if not (row.get(c) or "").strip()]
    if missing:
        return [f"missing {', '.join(missing)}"]
    issues = []
    start = cell(row, "generation_start", date.fromisoformat)
    end = cell(row, "generation_end", date.fromisoformat)
    if end < start:
        raise ValueError("column generation_end: before generation_start")
    if not start.year <= month.year <= end.year:
        issues.append(f"vintage {start}–{end} outside {month.year}")
    cell(row, "retired_on", date.fromisoformat)
    beneficiary = row["beneficiary"].strip()
    if supplier is not None and beneficiary not in (supplier.id, supplier.name):
        issues.append(f"retired for {beneficiary!r}, not {supplier.id}")
    return issues


def load_certificates(
    path: Path, registry: Registry | None = None
) -> dict[tuple[str, str, Month], Certificates]:
    """Certificates per site and month from a CSV (columns :data:`CERTIFICATE_COLUMNS`, and
    :data:`CERTIFICATE_ATTRIBUTES` to be applied). A T-REC row must be whole certificates."""
    out: dict[tuple[str, str, Month], Certificates] = {}
    problems: list[Problem] = []
    for line, row in csv_rows(path, CERTIFICATE_COLUMNS):
        try:
            kwh = cell(row, "kwh", float)
            if not kwh > 0:
                raise ValueError(f"column kwh: must be > 0 (got {kwh:g})")
            issuer = row["issuer"]
            if ("T-REC" in issuer or "Renewable Energy Certification Center" in issuer) and (
                    kwh % T_REC_KWH):  # fmt: skip
                raise ValueError(f"column kwh: {kwh:g} kWh is not whole T-RECs of "
                                 f"{T_REC_KWH:g} kWh")  # fmt: skip
            month = cell(row, "month", Month.parse)
            key = (row["supplier"], row["site"], month)
            use = (row.get("use") or "retired").strip()
            if use not in ("retired", "sold"):
                raise ValueError(f"column use: must be retired or sold (got {use!r})")
            supplier = registry.supplier(row["supplier"]) if registry else None
            issues = [] if use == "sold" else _certificate_issues(row, month, supplier)
            prev = out.get(key) or Certificates(0.0, "", issuer, "")
            applied = kwh if use == "retired" and not issues else 0.0
            ids = ";".join(x for x in (prev.ids, row["certificate_ids"]) if x)
            out[key] = Certificates(
                prev.kwh + applied, ids, issuer,
                f"{path.name}:{line}" if not prev.source else f"{prev.source},{line}",
                rejected_kwh=prev.rejected_kwh + (kwh if use == "retired" and issues else 0.0),
                sold_kwh=prev.sold_kwh + (kwh if use == "sold" else 0.0),
                issues=prev.issues + tuple(f"line {line}: {i}" for i in issues),
            )  # fmt: skip
        except (ValueError, KeyError) as exc:
            problems.append(_problem(path, line, exc))
    if problems:
        raise ConfigError(problems)
    return out


BILL_COLUMNS = ("supplier", "site", "carrier", "account", "period_start", "period_end",
                "billed", "unit", "bill_id")  # fmt: skip


def load_bills(path: Path) -> list[Bill]:
    """Bills from a CSV with :data:`BILL_COLUMNS`; every problem reported at once."""
    bills: list[Bill] = []
    problems: list[Problem] = []
    for line, row in csv_rows(path, BILL_COLUMNS):
        try:
            carrier = CARRIERS.get(row["carrier"])
            if carrier is None:
                raise ValueError(f"column carrier: must be one of {', '.join(CARRIERS)} "
                                 f"(got {row['carrier']!r})")  # fmt: skip
            if row["unit"] != carrier.unit:
                raise ValueError(f"column unit: must be {carrier.unit} for {carrier.name} "
                                 f"(got {row['unit']!r})")  # fmt: skip
            start = cell(row, "period_start", date.fromisoformat)
            end = cell(row, "period_end", date.fromisoformat)
            if end <= start:
                raise ValueError("column period_end: must be after period_start (end is "
                                 "exclusive)")  # fmt: skip
            billed = cell(row, "billed", float)
            if not billed >= 0:
                raise ValueError(f"column billed: must be >= 0 (got {billed:g})")
            bills.append(Bill(row["supplier"], row["site"], carrier.name, row["account"],
                              start, end, billed, row["bill_id"],
                              f"{path.name}:{line}"))  # fmt: skip
        except (KeyError, ValueError) as exc:
            problems.append(_problem(path, line, exc))
    if problems:
        raise ConfigError(problems)
    return bills


@dataclass(frozen=True)
class Inputs:
    """The month's inputs besides the meters: allocation shares and certificates."""

    allocations: dict[tuple[str, Month], AllocationShare]
    certificates: dict[tuple[str, str, Month], Certificates]
    bills: list[Bill] = field(default_factory=list)
    reviews: list[MonthReview] = field(default_factory=list)
    """Suppliers' confirmations and disputes of months (the console's records)."""

    @classmethod
    def load(cls, config: Config) -> Inputs:
        j = config.jobs
        return cls(
            load_allocations(config.resolve(j.allocations_file)) if j.allocations_file else {},
            load_certificates(config.resolve(j.certificates_file), config.registry)
            if j.certificates_file else {},
            load_bills(config.resolve(j.bills_file)) if j.bills_file else [],
        )  # fmt: skip

    def bills_of(self, month: Month) -> list[Bill]:
        """The bills whose billing period ends (its last day) in ``month``."""
        return [b for b in self.bills
                if Month((b.period_end - timedelta(days=1)).year,
                         (b.period_end - timedelta(days=1)).month) == month]  # fmt: skip

    def reviews_of(self, month: Month) -> list[MonthReview]:
        """The suppliers' reviews of ``month``, oldest first."""
        return [r for r in self.reviews if r.month == str(month)]

    def digest(self, month: Month) -> str:
        """A fingerprint of this month's allocation, certificate, bill and review rows."""
        rows = sorted(
            [repr((k[0], a.method, a.share, a.numerator, a.denominator, a.basis))
             for k, a in self.allocations.items() if k[1] == month]
            + [repr((k[0], k[1], c.kwh, c.ids, c.issuer))
               for k, c in self.certificates.items() if k[2] == month]
            + [repr((b.supplier, b.site, b.carrier, b.account, b.period_start, b.period_end,
                     b.billed, b.bill_id)) for b in self.bills_of(month)]
            + [repr((r.supplier, r.version, r.status, r.comment, r.recorded_by,
                     r.recorded_at.isoformat())) for r in self.reviews_of(month)]
        )  # fmt: skip
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


# --- CBAM default values --------------------------------------------------------------------

CBAM_DEFAULTS_FILE = Path(__file__).parents[1] / "data" / "cbam_defaults_tw.csv"
MARK_UP = {2026: 0.10, 2027: 0.20, 2028: 0.30}
"""Mark-up on the default values by year (C(2025) 8552; the seed table's columns)."""


@dataclass(frozen=True)
class DefaultValue:
    cn_code: str
    description: str
    base: float
    """Default specific embedded emissions without mark-up. [tCO2e/t]"""
    by_year: dict[int, float]
    """With the year's mark-up. [tCO2e/t]"""

    def for_year(self, year: int) -> float:
        """The value a declarant uses for goods imported in ``year`` (the last tabulated
        year's value after 2028)."""
        if year in self.by_year:
            return self.by_year[year]
        return self.by_year[max(self.by_year)] if year > max(self.by_year) else self.base


def load_defaults(path: Path = CBAM_DEFAULTS_FILE) -> dict[str, DefaultValue]:
    """The CBAM default values by CN code (``processing/data/cbam_defaults_tw.csv``: the
    Commission's default values with the yearly mark-ups of C(2025) 8552); a mark-up that does
    not follow from the base value is refused as a transcription error."""
    out: dict[str, DefaultValue] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            base = float(row["default_tco2e_per_t"])
            years = {y: float(row[f"y{y}"]) for y in MARK_UP}
            for y, up in MARK_UP.items():
                if abs(years[y] - base * (1 + up)) > 0.0015:
                    raise ConfigError([f"{path}:{n}: {row['cn_code']} {y} is {years[y]}, not "
                                    f"{base} × {1 + up:g} (a transcription error?)"])  # fmt: skip
            out[row["cn_code"]] = DefaultValue(row["cn_code"], row["description"], base, years)
    return out
