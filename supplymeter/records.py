"""Records that cross stage boundaries: one reading, one rejection.

Timestamps are integer nanoseconds since the Unix epoch, UTC (``ts_ns``): device time at the
precision the device sent, which a ``datetime`` (microseconds) would truncate. Use
:func:`ns_to_datetime` where a timezone-aware ``datetime`` is wanted.
"""

from __future__ import annotations

import math
from collections import Counter, namedtuple
from dataclasses import dataclass, field
from datetime import UTC, datetime

from supplymeter.carriers import QUANTITIES as _QUANTITIES
from supplymeter.carriers import REGISTERS as _REGISTERS

QUANTITIES = _QUANTITIES
"""Protocol v1 quantity fields (from the carrier table); the unit is in the name."""

REGISTERS = _REGISTERS
"""Cumulative registers: never negative, may wrap at the meter's rollover value."""


def ns_to_datetime(ts_ns: int) -> datetime:
    """UTC ``datetime`` of an epoch-nanosecond timestamp (truncated to microseconds)."""
    return datetime.fromtimestamp(ts_ns // 1000 / 1_000_000, tz=UTC)


def datetime_to_ns(ts: datetime) -> int:
    """Epoch nanoseconds of a timezone-aware ``datetime``."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_BASE_FIELDS = ("supplier", "site", "meter", "ts_ns", "seq")

# collections.namedtuple: typing.NamedTuple's functional form takes no defaults. The quantity
# fields come from the carrier table, so adding a carrier adds its register here.
Reading = namedtuple(
    "Reading", (*_BASE_FIELDS, *QUANTITIES), defaults=(None,) * (1 + len(QUANTITIES))
)
Reading.__doc__ = """One meter reading as gateway protocol v1 defines it; units are in the names.

Fields: ``supplier, site, meter, ts_ns, seq`` and one optional float per protocol quantity
(:data:`QUANTITIES`, which the carrier table declares). A NamedTuple rather than a frozen
dataclass: equally immutable, and built several times faster — the collector makes one per
reading (about a third of its per-reading cost was a frozen dataclass's ``__init__``).
"""


def _quantities(self: Reading) -> dict[str, float]:
    """The quantity fields that are present."""
    return {q: v for q in QUANTITIES if (v := getattr(self, q)) is not None}


Reading.quantities = _quantities  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input that was refused, with a stable reason ``code`` and a human ``detail``.

    ``supplier`` is set only when the topic named a supplier in the registry (tags built from
    unvalidated input would let garbage explode the database's series count).
    """

    code: str
    detail: str
    topic: str
    received_ns: int
    supplier: str | None = None
    payload_bytes: int = 0
    excerpt: str = ""


@dataclass(frozen=True, slots=True)
class HourlyConsumption:
    """Consumption of one meter in one UTC hour. ``consumption`` is in ``unit`` (the carrier's),
    CT multiplier applied; ``estimated_consumption`` is the part of it not measured (apportioned
    across a gap, or estimated across a reset or an unexplained fall). [unit]"""

    supplier: str
    site: str
    meter: str
    carrier: str
    unit: str
    hour_start_ns: int
    consumption: float
    coverage: float
    """Fraction of the hour spanned by measured register steps at most ``max_gap`` apart, 0–1."""
    readings: int
    """Readings with timestamps inside the hour."""
    flags: tuple[str, ...] = ()
    """Labels of non-normal register steps touching the hour (``rollover``, ``reset``...)."""
    estimated_consumption: float = 0.0
    lineage: str = ""
    """What the hour was computed from: a digest of the meter's register settings and of its
    events up to the hour's end (:meth:`MeterRef.lineage_at`), written for meters with
    events; "" counts as computed before any event."""

    @property
    def estimated(self) -> bool:
        return self.coverage < 1.0 - 1e-9

    @property
    def measured_consumption(self) -> float:
        """Consumption read from measured register steps. [unit]"""
        return self.consumption - self.estimated_consumption


@dataclass(frozen=True, slots=True)
class HourlyEmissions:
    """Location-based emissions of one meter-hour, with the factor that produced them."""

    supplier: str
    site: str
    meter: str
    carrier: str
    hour_start_ns: int
    emissions_kgco2e: float
    """[kgCO2e]"""
    factor_id: str
    factor_value: float
    """[kgCO2e per unit of the carrier]"""
    provisional: bool


@dataclass(frozen=True)
class MeterTotals:
    """One meter's hourly rollups and stored emissions summed over a period.

    The store computes it in InfluxDB (a month of a meter is one row, not 744);
    :meth:`of` is the same sum in Python, over records.
    """

    consumption: float = 0.0
    """[unit]"""
    estimated: float = 0.0
    """The estimated part of ``consumption``. [unit]"""
    hours: int = 0
    """Hours with a rollup."""
    hours_measured: int = 0
    """Hours fully covered by measured steps."""
    flags: Counter[str] = field(default_factory=Counter)
    """Hours carrying each correction label."""
    emissions_kgco2e: float = 0.0
    emission_hours: int = 0
    factor_ids: tuple[str, ...] = ()
    provisional_hours: int = 0
    exported_kwh: float = 0.0
    """A grid meter's export. [kWh]"""
    events: Counter[str] = field(default_factory=Counter)
    """Runs of consecutive hours carrying each correction label: one fall or rollover that
    spans two hours is one event."""

    @classmethod
    def of(cls, hours: list[HourlyConsumption], emissions: list[HourlyEmissions]) -> MeterTotals:
        """The totals of these records."""
        return cls(
            consumption=math.fsum(h.consumption for h in hours),
            estimated=math.fsum(h.estimated_consumption for h in hours),
            hours=len(hours),
            hours_measured=sum(not h.estimated for h in hours),
            flags=Counter(flag for h in hours for flag in h.flags),
            emissions_kgco2e=math.fsum(e.emissions_kgco2e for e in emissions),
            emission_hours=len(emissions),
            factor_ids=tuple(sorted({e.factor_id for e in emissions})),
            provisional_hours=sum(e.provisional for e in emissions),
        )


@dataclass(frozen=True, slots=True)
class SiteHour:
    """A site's electricity in one UTC hour, from its meters' stored hours: where the power
    came from (grid import, PV), where it went (consumption meters, the unmetered rest) and
    the purchased electricity's location-based emissions (GHG Protocol Scope 2 Guidance,
    2015: scope 2 is the electricity bought from the grid). [kWh, kgCO2e]"""

    supplier: str
    site: str
    hour_start_ns: int
    consumption_kwh: float
    """Σ the site's electricity consumption meters. [kWh]"""
    purchased_kwh: float
    """The grid meter's import; without one (or in an hour it has no data), inferred from
    the consumption meters (``inferred``). [kWh]"""
    estimated_kwh: float
    """The estimated part of ``purchased_kwh`` (gaps, resets). [kWh]"""
    inferred: bool
    grid_import_kwh: float | None = None
    """``None``: the site has no grid meter, or it has no data for the hour."""
    grid_export_kwh: float | None = None
    pv_generation_kwh: float | None = None
    """``None``: the site has no PV meter."""
    pv_self_kwh: float = 0.0
    """PV generated and used on site: generation − export (0 without a grid meter, where
    the export cannot be measured). [kWh]"""
    unmetered_kwh: float | None = None
    """import + PV self-consumption − Σ consumption meters: the circuits without a meter
    (negative when the meters disagree); ``None`` when purchased electricity is inferred."""
    location_kgco2e: float | None = None
    """purchased × the grid factor of the hour's local year; ``None``: no factor. [kgCO2e]"""
    factor_id: str = ""
    factor_value: float = 0.0
    """[kgCO2e/kWh]"""
    provisional: bool = False


@dataclass(frozen=True)
class SiteTotals:
    """A site's stored site-hours summed over a period (see :class:`SiteHour`)."""

    hours: int = 0
    consumption_kwh: float = 0.0
    purchased_kwh: float = 0.0
    estimated_kwh: float = 0.0
    inferred_hours: int = 0
    grid_import_kwh: float | None = None
    grid_export_kwh: float | None = None
    pv_generation_kwh: float | None = None
    pv_self_kwh: float = 0.0
    unmetered_kwh: float | None = None
    location_kgco2e: float = 0.0
    emission_hours: int = 0
    factor_ids: tuple[str, ...] = ()
    factor_value: float | None = None
    """The largest factor value of the period (for kWh without any purchased kWh to
    weigh, e.g. sold certificates at a site that bought nothing). [kgCO2e/kWh]"""
    provisional_hours: int = 0

    @classmethod
    def of(cls, hours: list[SiteHour]) -> SiteTotals:
        """The totals of these site-hours (what :meth:`Store.site_totals` sums in InfluxDB)."""

        def opt(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return math.fsum(known) if known else None

        return cls(
            hours=len(hours),
            consumption_kwh=math.fsum(h.consumption_kwh for h in hours),
            purchased_kwh=math.fsum(h.purchased_kwh for h in hours),
            estimated_kwh=math.fsum(h.estimated_kwh for h in hours),
            inferred_hours=sum(h.inferred for h in hours),
            grid_import_kwh=opt([h.grid_import_kwh for h in hours]),
            grid_export_kwh=opt([h.grid_export_kwh for h in hours]),
            pv_generation_kwh=opt([h.pv_generation_kwh for h in hours]),
            pv_self_kwh=math.fsum(h.pv_self_kwh for h in hours),
            unmetered_kwh=opt([h.unmetered_kwh for h in hours]),
            location_kgco2e=math.fsum(h.location_kgco2e or 0.0 for h in hours),
            emission_hours=sum(h.location_kgco2e is not None for h in hours),
            factor_ids=tuple(sorted({h.factor_id for h in hours if h.factor_id})),
            factor_value=max((h.factor_value for h in hours if h.factor_id), default=None),
            provisional_hours=sum(h.provisional for h in hours),
        )
