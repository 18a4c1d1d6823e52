"""What an operator looks at without InfluxQL: one meter's readings as stored and the
messages refused for it (``supplymeter readings``), its hours with their measured and
estimated parts (``supplymeter hours``), and devices that publish without being in the
registry (``supplymeter devices --unknown``). Tables for a terminal, or CSV with ``--csv``.

Times are shown in the site's timezone (the meter's) with the zone named in the heading;
CSV gives RFC 3339 with the offset.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from supplymeter.config import Config, MeterRef
from supplymeter.errors import ConfigError
from supplymeter.records import ns_to_datetime
from supplymeter.store import Store

UNKNOWN = ("unknown_supplier", "unknown_site", "unknown_meter")
"""Reasons for which a message came from a device the registry does not have."""

READING_COLUMNS = ("energy_kwh", "energy_export_kwh", "volume_m3", "mass_kg", "power_kw",
                   "voltage_v", "current_a", "power_factor", "production_units", "seq")  # fmt: skip


def find_meter(config: Config, text: str) -> MeterRef:
    """``supplier/site/meter``, or a meter id the registry has only once."""
    parts = text.split("/")
    if len(parts) == 3:
        ref = config.registry.meter(*parts)
        if ref is None:
            raise ConfigError([f"{text}: no such meter in the registry"])
        return ref
    if len(parts) != 1:
        raise ConfigError([f"{text}: give SUPPLIER/SITE/METER or a meter id"])
    found = [r for r in config.registry.meters() if r.meter.id == text]
    if not found:
        raise ConfigError([f"{text}: no meter with this id in the registry"])
    if len(found) > 1:
        raise ConfigError([f"{text}: several meters have this id; give one of "
                           + ", ".join("/".join(r.key) for r in found)])  # fmt: skip
    return found[0]


def find_site(config: Config, text: str) -> tuple[str, str]:
    """``supplier/site``, or a site id only one supplier has: (supplier, site)."""
    supplier, _, site = text.rpartition("/")
    if not supplier:
        owners = [s.id for s in config.registry.suppliers if any(x.id == site for x in s.sites)]
        if len(owners) != 1:
            where = f"suppliers {', '.join(owners)}" if owners else "no supplier"
            raise ConfigError([f"--site {site}: {where} has it; give SUPPLIER/SITE"])
        supplier = owners[0]
    if config.registry.site(supplier, site) is None:
        raise ConfigError([f"--site {text}: no such site in the registry"])
    return supplier, site


def _time(ts_ns: int, tz: ZoneInfo, as_csv: bool) -> str:
    at = ns_to_datetime(ts_ns).astimezone(tz)
    return at.isoformat() if as_csv else f"{at:%Y-%m-%d %H:%M:%S}"


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return str(value)


def print_table(header: Sequence[str], rows: list[list[str]], as_csv: bool,
                right: Sequence[bool] | None = None) -> None:  # fmt: skip
    """Rows as CSV, or as aligned columns (numbers right-aligned)."""
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
        return
    right = right or [False] * len(header)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for row in [list(header), *rows]:
        cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right,
                                                                     strict=True)]  # fmt: skip
        print("  ".join(cells).rstrip())


def readings(config: Config, store: Store, ref: MeterRef, start_ns: int, end_ns: int,
             limit: int, as_csv: bool) -> int:  # fmt: skip
    """The meter's stored readings and the messages refused on its topic, newest first."""
    from collector.payload import readings_topic

    tz = ref.tz
    stored = store.meter_readings(ref.key, start_ns, end_ns, limit)
    refused = store.rejections(start_ns, end_ns, topic=readings_topic(*ref.key), limit=limit)
    columns = [c for c in READING_COLUMNS if any(c in r for r in stored)]
    header = ["time", "status", *columns, "detail"]
    rows: list[tuple[int, list[str]]] = []
    for r in stored:
        status = "imported" if r.get("source") == "import" else "stored"
        rows.append((int(r["time"]), [_time(int(r["time"]), tz, as_csv), status,
                                      *(_number(r[c]) if c in r else "" for c in columns),
                                      ""]))  # fmt: skip
    for x in refused:
        detail = f"{x.detail} (received; sent: {x.excerpt[:60]})"
        rows.append((x.received_ns, [_time(x.received_ns, tz, as_csv), f"REJECTED {x.code}",
                                     *([""] * len(columns)), detail]))  # fmt: skip
    rows.sort(key=lambda item: item[0], reverse=True)
    if not as_csv:
        print(f"{'/'.join(ref.key)} ({ref.meter.carrier}, {ref.unit}): {len(stored)} readings, "
              f"{len(refused)} refused; device time, except refused messages (received time); "
              f"times in {ref.site.timezone}")  # fmt: skip
    print_table(header, [r for _, r in rows[:limit]], as_csv,
                [False, False, *([True] * len(columns)), False])  # fmt: skip
    return 0


def hours(config: Config, store: Store, ref: MeterRef, start_ns: int, end_ns: int,
          as_csv: bool) -> int:  # fmt: skip
    """The meter's hours: consumption, its measured and estimated parts, coverage, flags."""
    tz = ref.tz
    found, _ = store.hourly_consumption(start_ns, end_ns, supplier=ref.key[0], site=ref.key[1],
                                        meter=ref.key[2])  # fmt: skip
    unit = ref.unit
    header = ["hour", f"consumption_{unit}", f"measured_{unit}", f"estimated_{unit}",
              "coverage_pct", "readings", "flags"]  # fmt: skip
    rows = [[_time(h.hour_start_ns, tz, as_csv), f"{h.consumption:.3f}",
             f"{h.measured_consumption:.3f}", f"{h.estimated_consumption:.3f}",
             f"{100 * h.coverage:.1f}", str(h.readings), " ".join(h.flags)]
            for h in sorted(found, key=lambda h: h.hour_start_ns)]  # fmt: skip
    if not as_csv:
        expected = (end_ns - start_ns) // (3600 * 10**9)
        total = sum(h.consumption for h in found)
        estimated = sum(h.estimated_consumption for h in found)
        print(f"{'/'.join(ref.key)} ({ref.meter.carrier}): {len(found)} of {expected} hours "
              f"stored, {total:,.3f} {unit} of which {estimated:,.3f} estimated; hours start "
              f"in {ref.site.timezone}")  # fmt: skip
    print_table(header, rows, as_csv, [False, True, True, True, True, True, False])
    return 0


def unknown_devices(store: Store, start_ns: int, end_ns: int, tz: str, as_csv: bool) -> int:
    """Topics refused because the registry lacks their supplier, site or meter: what they
    sent, how often, first and last seen (received time)."""
    zone = ZoneInfo(tz)
    seen: dict[str, list] = {}
    for x in store.rejections(start_ns, end_ns, reasons=UNKNOWN):
        entry = seen.get(x.topic)
        if entry is None:
            seen[x.topic] = [x.code, 1, x.received_ns, x.received_ns, x.excerpt]
        else:
            entry[1] += 1
            entry[2] = min(entry[2], x.received_ns)
    rows = [[topic, code, str(n), _time(first, zone, as_csv), _time(last, zone, as_csv),
             excerpt[:60]]
            for topic, (code, n, first, last, excerpt) in sorted(seen.items())]  # fmt: skip
    if not as_csv:
        print(f"{len(rows)} topics from devices not in the registry (received time, {tz}); add "
              "them to the registry, or see docs/operations.md")  # fmt: skip
    print_table(["topic", "reason", "messages", "first_seen", "last_seen", "last_payload"],
                rows, as_csv, [False, False, True, False, False, False])  # fmt: skip
    return 0


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``, ``36h``, ``90m`` before ``now``, or an ISO date/time."""
    from datetime import timedelta

    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[-1:] in units and text[:-1].isdigit():
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError([f"--since {text!r}: give 7d, 36h, 90m or a time like "
                           "2026-10-01T08:00+08:00"]) from None  # fmt: skip
    return at if at.tzinfo else at.replace(tzinfo=now.tzinfo)
