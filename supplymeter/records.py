"""Records that cross stage boundaries: one reading, one rejection.

Timestamps are integer nanoseconds since the Unix epoch, UTC (``ts_ns``): device time at the
precision the device sent, which a ``datetime`` (microseconds) would truncate. Use
:func:`ns_to_datetime` where a timezone-aware ``datetime`` is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

QUANTITIES: tuple[str, ...] = (
    "energy_kwh",
    "energy_export_kwh",
    "power_kw",
    "voltage_v",
    "current_a",
    "power_factor",
    "volume_m3",
    "production_units",
)
"""Protocol v1 quantity fields; the unit is in the name."""

REGISTERS: frozenset[str] = frozenset(
    {"energy_kwh", "energy_export_kwh", "volume_m3", "production_units"}
)
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


class Reading(NamedTuple):
    """One meter reading as the gateway protocol v1 defines it. Units are in the names.

    A NamedTuple rather than a frozen dataclass: equally immutable, and built several times
    faster — the collector makes one per reading (about a third of its per-reading cost was a
    frozen dataclass's ``__init__``).
    """

    supplier: str
    site: str
    meter: str
    ts_ns: int
    seq: int | None = None
    energy_kwh: float | None = None
    energy_export_kwh: float | None = None
    power_kw: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    power_factor: float | None = None
    volume_m3: float | None = None
    production_units: float | None = None

    def quantities(self) -> dict[str, float]:
        """The quantity fields that are present."""
        return {q: v for q in QUANTITIES if (v := getattr(self, q)) is not None}


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
