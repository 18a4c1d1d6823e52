"""The simulator's ground truth: exact consumption per meter per UTC hour.

Kept as integers of 0.001 register units and converted with :class:`~decimal.Decimal`, so the
ledger is exact and tests can compare the pipeline's totals against it to the last digit they
choose. CSV columns (quantities in the carrier's unit, CT multiplier applied):

``consumption``
    what the circuit truly drew (a ``pv`` meter: generated; a ``grid`` meter: imported)
``metered``
    what the meter's register counted: less than ``consumption`` while the register was stuck
``export``
    a ``grid`` meter's export register (PV fed back to the grid); empty for other meters
``pieces``
    whole pieces its ``production_units`` counter counted; empty for meters without one
``saved``
    what a simulated efficiency measure removed from the circuit's draw in the hour (the
    counterfactual minus ``consumption``); empty for meters without one
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
FIELDS = (
    "supplier", "site", "meter", "carrier", "unit", "role", "hour_start_utc",
    "consumption", "metered", "export", "pieces", "saved",
)  # fmt: skip
COLUMNS = ("consumption", "metered", "export", "saved")

MeterKey = tuple[str, str, str]


@dataclass
class Ledger:
    """Accumulates true and metered consumption per meter and hour as the simulator runs."""

    _milli: dict[MeterKey, dict[int, list[int]]] = field(default_factory=lambda: defaultdict(dict))
    _refs: dict[MeterKey, MeterRef] = field(default_factory=dict)
    _pieces: dict[MeterKey, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    _saved: dict[MeterKey, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    """0.001 units (true, multiplier applied) a simulated measure saved, per hour."""

    def add(
        self,
        ref: MeterRef,
        interval_start_ns: int,
        increment_milli: int,
        metered_milli: int | None = None,
        export_milli: int = 0,
    ) -> None:
        """Book register increments (0.001 register units) to the hour in which the
        interval starts. ``metered_milli`` defaults to the true increment."""
        hour = interval_start_ns - interval_start_ns % HOUR_NS
        hours = self._milli[ref.key]
        row = hours.get(hour)
        if row is None:
            row = hours[hour] = [0, 0, 0]
            self._refs[ref.key] = ref
        row[0] += increment_milli
        row[1] += increment_milli if metered_milli is None else metered_milli
        row[2] += export_milli

    def add_pieces(self, ref: MeterRef, step_start_ns: int, pieces: int) -> None:
        """Book whole pieces a meter's production counter counted to the hour the step
        starts in."""
        hour = step_start_ns - step_start_ns % HOUR_NS
        hours = self._pieces[ref.key]
        hours[hour] = hours.get(hour, 0) + pieces

    def add_saved(self, ref: MeterRef, step_start_ns: int, amount: float) -> None:
        """Book energy (kWh or m³, true) a simulated measure removed in a step."""
        hour = step_start_ns - step_start_ns % HOUR_NS
        hours = self._saved[ref.key]
        hours[hour] = hours.get(hour, 0) + round(amount * 1000)

    def saved(self) -> dict[MeterKey, dict[int, Decimal]]:
        """Energy saved by simulated measures per meter per hour start. [kWh or m³]"""
        return {key: {h: Decimal(v) / 1000 for h, v in sorted(hours.items())}
                for key, hours in self._saved.items()}  # fmt: skip

    def pieces(self) -> dict[MeterKey, dict[int, int]]:
        """Whole pieces counted per counting meter per hour start (epoch ns)."""
        return {key: dict(sorted(hours.items())) for key, hours in self._pieces.items()}

    def _column(self, index: int) -> dict[MeterKey, dict[int, Decimal]]:
        return {
            key: {
                hour: Decimal(row[index]) / 1000 * Decimal(str(self._refs[key].meter.multiplier))
                for hour, row in sorted(hours.items())
            }
            for key, hours in self._milli.items()
        }

    def consumption(self) -> dict[MeterKey, dict[int, Decimal]]:
        """True consumption per meter per hour start (epoch ns). [kWh or m³]"""
        return self._column(0)

    def metered(self) -> dict[MeterKey, dict[int, Decimal]]:
        """What the registers counted per meter per hour start. [kWh or m³]"""
        return self._column(1)

    def exported(self) -> dict[MeterKey, dict[int, Decimal]]:
        """Grid meters' export per hour start. [kWh]"""
        return self._column(2)

    def ref(self, key: MeterKey) -> MeterRef:
        return self._refs[key]

    def truncate(self, before_ns: int) -> None:
        """Forget the hours from ``before_ns`` on (an interrupted run: those hours are not
        whole)."""
        for hours in (*self._milli.values(), *self._pieces.values(), *self._saved.values()):
            for hour in [h for h in hours if h >= before_ns]:
                del hours[hour]

    def write_csv(self, path: Path, append: bool = False) -> None:
        """The ledger as CSV; ``append`` adds its rows to an existing ledger of an earlier
        run that this one continued (its hours come after that run's)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = [self._column(i) for i in range(3)]
        append = append and path.exists() and path.stat().st_size > 0
        with path.open("a" if append else "w", newline="") as fh:
            writer = csv.writer(fh)
            if not append:
                writer.writerow(FIELDS)
            for key in sorted(self._milli):
                ref = self._refs[key]
                grid = ref.meter.role == "grid"
                for hour in sorted(self._milli[key]):
                    start = ns_to_datetime(hour).strftime("%Y-%m-%dT%H:%M:%SZ")
                    values = [str(c[key][hour]) for c in columns]
                    counted = self._pieces.get(key)
                    saved = self._saved.get(key)
                    writer.writerow([
                        *key, ref.meter.carrier, ref.unit, ref.meter.role, start,
                        values[0], values[1], values[2] if grid else "",
                        counted.get(hour, 0) if counted is not None else "",
                        str(Decimal(saved.get(hour, 0)) / 1000) if saved is not None else "",
                    ])  # fmt: skip


def read_ledger(path: Path, column: str = "metered") -> dict[MeterKey, dict[int, Decimal]]:
    """A ledger CSV back as {meter key: {hour start (epoch ns): quantity}}; ``column`` is one
    of ``consumption`` (true), ``metered`` (what the registers counted), ``export`` or
    ``saved`` (what simulated measures removed)."""
    if column not in COLUMNS:
        raise ValueError(f"column must be one of {COLUMNS}")
    out: dict[MeterKey, dict[int, Decimal]] = defaultdict(dict)
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if not row.get(column):
                continue
            start = datetime.strptime(row["hour_start_utc"], "%Y-%m-%dT%H:%M:%SZ")
            hour = datetime_to_ns(start.replace(tzinfo=UTC))
            out[(row["supplier"], row["site"], row["meter"])][hour] = Decimal(row[column])
    return dict(out)
