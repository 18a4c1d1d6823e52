"""History from files: a meter's past readings or interval data, validated like live
readings and stored beside them, so baselines and months can start before the gateway went
live.

Two CSV forms (UTF-8, a header row, one row per reading or interval):

* **register** — ``ts`` and any quantities of the gateway protocol (``energy_kwh``,
  ``energy_export_kwh``, ``volume_m3``, ``mass_kg``, ``power_kw``, ``production_units``...):
  what a meter or an older data logger recorded. Each row is checked by the collector's own
  :func:`~collector.payload.parse_reading` (carrier, ranges, rollover, service life).
* **interval** — ``interval_start``, optional ``interval_end``, and ``consumption`` in the
  meter's unit (kWh, m³, kg): a utility's interval export. Intervals must follow each other
  without gaps or overlaps; they become a cumulative register (the protocol's form), which
  ends where the meter's first live reading after them begins, so the hour where the history
  meets live data is exact too.

A time with an offset (``2026-01-05T00:15:00+08:00``, ``...Z``) or epoch milliseconds is
taken as is; a time without an offset is read in the site's timezone. Imported readings are
marked ``source = "import"`` and every hour they touch is marked for the rollup, which
recomputes it (and the export restates a month already exported) as for late data.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collector.payload import Limits, parse_reading, parse_timestamp
from supplymeter.config import MeterRef
from supplymeter.errors import BadReading, ConfigError, Problem
from supplymeter.records import Reading, datetime_to_ns
from supplymeter.store import HOUR_NS, Store, arrival_line, reading_line

IMPORT_LIMITS = Limits(max_past_ns=50 * 366 * 86_400 * 10**9, max_batch_readings=10**9)
"""The live limits, without the horizon that refuses old readings: history is the point."""

MAX_PROBLEMS = 50
"""Problems listed before the rest are only counted."""


@dataclass(frozen=True)
class History:
    readings: list[Reading]
    form: str
    """``register`` or ``interval``."""


def _time(text: str, ref: MeterRef) -> int:
    """A CSV time: with an offset or epoch ms as the protocol, otherwise site-local."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return parse_timestamp(int(text))
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadReading("invalid_timestamp", f"{text[:40]!r} is not a time") from None
    if at.tzinfo is None:
        return datetime_to_ns(at.replace(tzinfo=ref.tz))
    return parse_timestamp(text.replace(" ", "T"))


def _number(text: str, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadReading("invalid_value", f"{column} {text[:40]!r} is not a number") from None


def read_history(text: str, name: str, ref: MeterRef, now_ns: int) -> History:
    """Parse and validate a history file's text; :class:`ConfigError` lists every problem
    (``FILE:LINE: column X: ... [code]``) and nothing is imported."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        if "ts" in header:
            return History(_registers(reader, name, ref, now_ns), "register")
        if "interval_start" in header and "consumption" in header:
            return History(_intervals(reader, name, ref, now_ns), "interval")
    except csv.Error as exc:
        raise ConfigError([Problem(name, reader.line_num or None, f"not CSV: {exc}",
                                   "not_csv")]) from None  # fmt: skip
    raise ConfigError([Problem(name, 1, "the header needs ts and quantities (register form) or "
                               "interval_start and consumption (interval form), got "
                               f"{', '.join(header) or 'nothing'}", "missing_column")])  # fmt: skip


def _raise(problems: list[Problem], name: str) -> None:
    if problems:
        more = len(problems) - MAX_PROBLEMS
        shown = problems[:MAX_PROBLEMS]
        if more > 0:
            shown.append(Problem(name, None, f"… and {more} more", "truncated"))
        raise ConfigError(shown)


def _registers(reader: csv.DictReader, name: str, ref: MeterRef, now_ns: int) -> list[Reading]:
    out: list[Reading] = []
    problems: list[Problem] = []
    for line, row in enumerate(reader, start=2):
        try:
            ts_ns = _time(row.get("ts") or "", ref)
            obj: dict[str, object] = {"ts": ts_ns // 1_000_000}  # the protocol's epoch ms
            for column, text in row.items():
                if column in ("ts", None) or text is None or not text.strip():
                    continue
                value = _number(text, column)
                obj[column] = int(value) if column == "seq" else value
            reading = parse_reading(obj, ref, now_ns, IMPORT_LIMITS)
            out.append(reading._replace(ts_ns=ts_ns))
        except BadReading as exc:
            problems.append(Problem(name, line, exc.detail, exc.code))
    _raise(problems, name)
    return out


def _intervals(reader: csv.DictReader, name: str, ref: MeterRef, now_ns: int) -> list[Reading]:
    rows: list[tuple[int, int, float]] = []
    problems: list[Problem] = []
    interval_ns = ref.meter.interval_s * 10**9
    for line, row in enumerate(reader, start=2):
        try:
            start = _time(row.get("interval_start") or "", ref)
            end_text = (row.get("interval_end") or "").strip()
            end = _time(end_text, ref) if end_text else start + interval_ns
            value = _number((row.get("consumption") or "").strip(), "consumption")
            if end <= start:
                raise BadReading("invalid_value", "interval_end must be after interval_start")
            if value < 0:
                raise BadReading("invalid_value", "consumption cannot be negative")
            if rows and start != rows[-1][1]:
                what = "overlaps" if start < rows[-1][1] else "leaves a gap after"
                raise BadReading("not_contiguous", f"this interval {what} the previous one "
                                 "(intervals must follow each other)")  # fmt: skip
            rows.append((start, end, value))
        except BadReading as exc:
            problems.append(Problem(name, line, exc.detail, exc.code))
    _raise(problems, name)
    if not rows:
        raise ConfigError([Problem(name, None, "no intervals", "empty")])
    multiplier = ref.meter.multiplier
    register, field = 0.0, ref.register_field
    points = [(rows[0][0], 0.0)]
    for _, end, value in rows:
        register += value / multiplier
        points.append((end, register))
    return [Reading(*ref.key, ts, None, **{field: value}) for ts, value in points]


def anchored(history: History, ref: MeterRef, store: Store) -> History:
    """An interval history's register shifted to end at the first stored reading after it
    (within a day), wrapped at the meter's rollover: the hour where history meets live data
    then holds exactly what both say. Register histories are stored as read."""
    if history.form != "interval" or not history.readings:
        return history
    last = history.readings[-1]
    field = ref.register_field
    after = store.meter_readings(ref.key, last.ts_ns, last.ts_ns + 86_400 * 10**9 + 1,
                                 limit=10**6)  # fmt: skip
    firsts = [r for r in after if r.get(field) is not None]
    if not firsts:
        return history
    live = float(min(firsts, key=lambda r: int(r["time"]))[field])
    shift = live - getattr(last, field)
    rollover = ref.meter.rollover
    readings = []
    for r in history.readings:
        value = getattr(r, field) + shift
        if rollover:
            value %= rollover
        elif value < 0:
            raise ConfigError([f"the history's consumption ({getattr(last, field):,.3f} "
                               f"register units) exceeds the meter's first live register "
                               f"({live:,.3f}) and the meter has no rollover: the register "
                               "cannot be continued backwards"])  # fmt: skip
        readings.append(r._replace(**{field: value}))
    return History(readings, history.form)


def overlapping(history: History, ref: MeterRef, store: Store) -> int:
    """Stored readings inside the history's span (the import would overwrite them)."""
    if not history.readings:
        return 0
    first, last = history.readings[0].ts_ns, history.readings[-1].ts_ns
    found = store.meter_readings(ref.key, first, last + 1, limit=10**6)
    return sum(1 for r in found if r.get("source") != "import")


def write_history(store: Store, history: History, received_ns: int) -> tuple[int, int]:
    """Store the readings (marked imported) and mark their hours for the rollup; returns
    (readings, hours marked)."""
    hours: Counter[tuple[tuple[str, str, str], int]] = Counter()
    lines = []
    for r in history.readings:
        lines.append(_imported(reading_line(r)))
        hours[((r.supplier, r.site, r.meter), r.ts_ns - r.ts_ns % HOUR_NS)] += 1
    written = store.write(lines)
    store.write(arrival_line(key, hour, n, received_ns) for (key, hour), n in hours.items())
    return written, len(hours)


def _imported(line: str) -> str:
    """A reading's line with the ``source="import"`` field added (fields sit between the
    first and the last space: tags hold ids without spaces)."""
    head, fields, ts = line.rsplit(" ", 2)
    return f'{head} {fields},source="import" {ts}'


def read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), None, "file not found", "file_not_found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, f"not UTF-8 ({exc.reason})",
                                   "not_text")]) from None  # fmt: skip
