"""The simulator's ground truth: exact consumption per meter per UTC hour.

Kept as integers of 0.001 register units and converted with :class:`~decimal.Decimal`, so the
ledger is exact and tests can compare the pipeline's totals against it to the last digit they
choose. CSV columns: ``supplier, site, meter, carrier, unit, hour_start_utc, consumption``
(consumption in the carrier's unit, CT multiplier applied).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from supplymeter.config import MeterRef
from supplymeter.records import datetime_to_ns, ns_to_datetime

HOUR_NS = 3600 * 10**9
FIELDS = ("supplier", "site", "meter", "carrier", "unit", "hour_start_utc", "consumption")

MeterKey = tuple[str, str, str]


@dataclass
class Ledger:
    """Accumulates true consumption per meter and hour as the simulator generates it."""

    _milli: dict[MeterKey, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    _refs: dict[MeterKey, MeterRef] = field(default_factory=dict)

    def add(self, ref: MeterRef, interval_start_ns: int, increment_milli: int) -> None:
        """Book a register increment to the hour in which its interval starts."""
        hour = interval_start_ns - interval_start_ns % HOUR_NS
        hours = self._milli[ref.key]
        hours[hour] = hours.get(hour, 0) + increment_milli
        self._refs[ref.key] = ref

    def consumption(self) -> dict[MeterKey, dict[int, Decimal]]:
        """True consumption per meter per hour start (epoch ns). [kWh or m³]"""
        return {
            key: {
                hour: Decimal(milli) / 1000 * Decimal(str(self._refs[key].meter.multiplier))
                for hour, milli in sorted(hours.items())
            }
            for key, hours in self._milli.items()
        }

    def write_csv(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(FIELDS)
            for key, hours in sorted(self.consumption().items()):
                ref = self._refs[key]
                for hour, amount in hours.items():
                    start = ns_to_datetime(hour).strftime("%Y-%m-%dT%H:%M:%SZ")
                    writer.writerow([*key, ref.meter.carrier, ref.unit, start, str(amount)])


def read_ledger(path: Path) -> dict[MeterKey, dict[int, Decimal]]:
    """A ledger CSV back as {meter key: {hour start (epoch ns): consumption}}."""
    out: dict[MeterKey, dict[int, Decimal]] = defaultdict(dict)
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            start = datetime.strptime(row["hour_start_utc"], "%Y-%m-%dT%H:%M:%SZ")
            hour = datetime_to_ns(start.replace(tzinfo=UTC))
            out[(row["supplier"], row["site"], row["meter"])][hour] = Decimal(row["consumption"])
    return dict(out)
