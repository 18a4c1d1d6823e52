"""Job runners: the I/O around the pure calculations, and the scheduler that runs them.

Derived data has one path: readings → ``hourly_consumption`` → ``hourly_emissions`` (with the
factor id) → months, exports, dashboards. Anything that changes an input marks what it
touches, and the jobs recompute and restate exactly that:

* **late data** — the collector records the meter-hours of every reading that arrives later
  than ``[collector] late_after_s`` (``reading_arrival``); each rollup run reads the marks
  since its cursor and recomputes those hours, however old, with their neighbours;
* **a meter event** recorded in the registry (exchange, CT change) — the hours around it;
* **a factor row** added or corrected — the stored emissions of exactly the hours whose
  (carrier, region, local year) now resolves differently, from the stored consumption;
* each of these adds a *pending restatement* to the months it touched, with the reason; the
  export job restates those months (new version, diff naming the reason) and the dashboards'
  monthly totals follow.

Rollup points are keyed by meter tags + hour, so recomputing overwrites: re-running any job
never double-counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

from processing.accounting.scope3 import Month
from processing.emissions import FactorLibrary, emissions_for
from processing.rollup import (
    HOUR_NS,
    RegisterSeries,
    counter_ref,
    hourly_consumption,
    max_power,
    measure,
)
from processing.sitehours import SiteHourInputs, site_factor_use, site_hours
from supplymeter.carriers import CARRIERS, COUNTERS
from supplymeter.config import Config, Meter, MeterRef, RegistryWatch, Site, Supplier
from supplymeter.errors import ConfigError
from supplymeter.files import locked, write_atomic, write_json_atomic
from supplymeter.operations import Operations, misfits, with_recorded_events
from supplymeter.records import ns_to_datetime
from supplymeter.store import (
    SITE_HOURLY,
    Store,
    consumption_line,
    emissions_line,
    export_line,
    production_line,
    quality_issue_line,
    site_hour_line,
)

if TYPE_CHECKING:
    from processing.accounting.export import ExportResult
    from processing.accounting.inputs import Inputs

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_GAP_INTERVALS = 2
"""Readings more than this many nominal intervals apart leave the hours between estimated."""

ARRIVAL_OVERLAP_NS = 300 * 10**9
"""Arrival marks are re-read this far behind the cursor (clock differences between the
collector and the job; recomputing an hour twice is harmless)."""

ROLLUP_CHUNK = 100
"""Meters whose readings one rollup query fetches at most."""

MERGE_GAP_H = 3
"""Dirty hours of one meter at most this far apart are recomputed as one range."""

SITE_HOURS_CHUNK_H = 31 * 24
"""Site-hours are rebuilt from stored meter-hours at most this many hours per query."""

FALL_CODE = "register_fall_without_event"
IMPLAUSIBLE_CODE = "implausible_step"
"""A register step faster than the meter's largest plausible flow (estimated instead)."""


@dataclass
class RollupReport:
    meters: int = 0
    hours: int = 0
    estimated_hours: int = 0
    flags: Counter[str] = field(default_factory=Counter)
    meters_without_data: list[str] = field(default_factory=list)
    falls: int = 0
    """Register falls without a meter event (each raised as a quality issue)."""
    fallen: list[str] = field(default_factory=list)
    """The meters (``supplier/site/meter``) whose register fell without an event."""
    implausible: int = 0
    """Register steps faster than the meter can go (each raised as a quality issue)."""
    touched: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(month, supplier) → meter paths whose hours were recomputed."""
    emissions_hours: int = 0
    production_hours: int = 0
    """Product-hours of counted pieces written."""
    site_hours: int = 0
    """Site-hours of electricity (purchased, PV, unmetered) written."""
    ranges: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    """(supplier, site) → the [start, end) ranges of hours recomputed."""

    def add(self, other: RollupReport) -> None:
        self.meters += other.meters
        self.hours += other.hours
        self.estimated_hours += other.estimated_hours
        self.flags.update(other.flags)
        self.meters_without_data += other.meters_without_data
        self.falls += other.falls
        self.fallen += [m for m in other.fallen if m not in self.fallen]
        self.implausible += other.implausible
        self.emissions_hours += other.emissions_hours
        self.production_hours += other.production_hours
        self.site_hours += other.site_hours
        for key, ranges in other.ranges.items():
            self.ranges.setdefault(key, []).extend(ranges)
        for key, meters in other.touched.items():
            self.touched.setdefault(key, set()).update(meters)


def _month_of(ns: int, tz: ZoneInfo) -> str:
    local = ns_to_datetime(ns).astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def rollup_meter(
    ref: MeterRef,
    registers: dict[str, list[tuple[int, float]]],
    start_ns: int,
    end_ns: int,
    library: FactorLibrary,
    report: RollupReport,
    site_inputs: SiteHourInputs | None = None,
) -> list[str]:
    """One meter's hours in [start, end) as line protocol: consumption, emissions (consumption
    meters), a grid meter's export, and a quality issue for each unexplained fall. An
    electricity meter's hours are also added to ``site_inputs`` (the site-hours)."""
    meter = ref.meter
    max_gap_ns = MAX_GAP_INTERVALS * meter.interval_s * 10**9
    series = RegisterSeries.from_points(ref, registers.get(ref.register_field, []))
    measured = measure(series)
    hours = hourly_consumption(series, start_ns, end_ns, max_gap_ns, measured)
    report.meters += 1
    lines: list[str] = []
    if not hours:
        report.meters_without_data.append("/".join(ref.key))
    for t, label in measured.falls():
        if start_ns <= t < end_ns:
            report.falls += 1
            if "/".join(ref.key) not in report.fallen:
                report.fallen.append("/".join(ref.key))
            lines.append(quality_issue_line(
                FALL_CODE, ref.key, t, f"register fell ({label}) without a recorded meter event: "
                "the hours are estimated; record the exchange (console: Data quality, or the "
                "registry)", True,
            ))  # fmt: skip
    for t0, t1 in measured.implausible():
        if start_ns <= t1 < end_ns:
            report.implausible += 1
            lines.append(quality_issue_line(
                IMPLAUSIBLE_CODE, ref.key, t1,
                f"{'/'.join(ref.key)}: the register rose faster than {max_power(ref):g} "
                f"{ref.unit}/h between {ns_to_datetime(t0):%Y-%m-%d %H:%M} and "
                f"{ns_to_datetime(t1):%H:%M} UTC: the step is estimated, not measured; check "
                "the meter's readings, or set its max_power in the registry", True,
            ))  # fmt: skip
    report.ranges.setdefault((ref.supplier.id, ref.site.id), []).append((start_ns, end_ns))
    if meter.role == "grid":
        exported = RegisterSeries.from_points(ref, registers.get("energy_export_kwh", []))
        for h in hourly_consumption(exported, start_ns, end_ns, max_gap_ns):
            lines.append(export_line(h))
            if site_inputs is not None:
                site_inputs.add_export(h.hour_start_ns, h.consumption)
    product = ref.site.product_counted_by(meter.id)
    if product is not None:
        counter = counter_ref(ref, product.counter_rollover)
        counted = RegisterSeries.from_points(counter, registers.get("production_units", []))
        for h in hourly_consumption(counted, start_ns, end_ns, max_gap_ns):
            lines.append(production_line(h, product.id))
            report.production_hours += 1
    # Lineage is written for meters with events (the only ones whose hours it is checked
    # for); a meter's hours without one count as computed before any event.
    with_events = len(ref.lineage_ranges) > 1
    for hour in hours:
        lines.append(consumption_line(hour, ref.lineage_at(hour.hour_start_ns)
                                      if with_events else ""))  # fmt: skip
        report.hours += 1
        report.estimated_hours += hour.estimated
        report.flags.update(hour.flags)
        month = _month_of(hour.hour_start_ns, ref.tz)
        report.touched.setdefault((month, ref.supplier.id), set()).add("/".join(ref.key))
        if site_inputs is not None:
            site_inputs.add(meter.role, hour)
        # PV generation and grid import are not the plant's consumption.
        if meter.role == "consumption":
            record = emissions_for(hour, ref, library)
            if record is not None:
                lines.append(emissions_line(record))
                report.emissions_hours += 1
    return lines


def run_rollup(
    config: Config,
    store: Store,
    start_ns: int,
    end_ns: int,
    library: FactorLibrary,
    progress: Callable[[int, int, str], None] | None = None,
) -> RollupReport:
    """Recompute hourly consumption and emissions for every meter, hours in [start, end).

    ``progress(done, total, note)`` is told after each chunk of meters."""
    start_ns -= start_ns % HOUR_NS
    look = config.jobs.lookaround_h * HOUR_NS
    report = RollupReport()
    suppliers = config.registry.suppliers
    # A site's meters at a time, in chunks: memory stays bounded by a few chunks' readings,
    # whatever the registry's size. The next chunk is fetched and the last one's lines are
    # written while this one is computed (InfluxDB works while Python does).
    chunks = [
        (supplier, site, site.meters[i : i + ROLLUP_CHUNK], len(site.meters) > ROLLUP_CHUNK)
        for supplier in suppliers for site in supplier.sites
        for i in range(0, len(site.meters), ROLLUP_CHUNK)
    ]  # fmt: skip

    def fetch(k: int) -> dict[tuple[str, str], dict[str, list[tuple[int, float]]]]:
        supplier, site, meters, partial = chunks[k]
        ids = [m.id for m in meters] if partial else None
        return store.registers(supplier.id, start_ns - look, end_ns + look, ids, site=site.id,
                               fields=_register_fields(meters, bool(site.products)))  # fmt: skip

    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        pending = reader.submit(fetch, 0) if chunks else None
        written: list[Future[int]] = []
        site_inputs = SiteHourInputs()
        for k, (supplier, site, meters, _) in enumerate(chunks):
            assert pending is not None
            by_meter = pending.result()
            pending = reader.submit(fetch, k + 1) if k + 1 < len(chunks) else None
            lines: list[str] = []
            for meter in meters:
                ref = config.registry.meter(supplier.id, site.id, meter.id)
                assert ref is not None
                registers = by_meter.pop((site.id, meter.id), {})
                lines += rollup_meter(ref, registers, start_ns, end_ns, library, report,
                                      site_inputs)  # fmt: skip
            # A site's chunks are consecutive: its hours are whole after its last one.
            if k + 1 == len(chunks) or chunks[k + 1][1] is not site:
                made = site_hours(supplier, site, site_inputs, library)
                lines += [site_hour_line(h) for h in made]
                report.site_hours += len(made)
                site_inputs = SiteHourInputs()
            while len(written) > 1:  # at most one write in flight behind this chunk
                written.pop(0).result()
            written.append(writer.submit(store.write, lines))
            if progress:
                progress(k + 1, len(chunks), f"{supplier.id}/{site.id}")
        for future in written:
            future.result()
    return report


def _register_fields(meters: Iterable[Meter], counting: bool = False) -> list[str]:
    """The registers the rollup reads for these meters (a grid meter's export too; the
    production counters when one of them counts a product)."""
    fields = {CARRIERS[m.carrier].register_field for m in meters}
    if any(m.role == "grid" for m in meters):
        fields.add("energy_export_kwh")
    if counting:
        fields.update(COUNTERS)
    return sorted(fields)


def _ranges(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted hour starts → [start, end) ranges, merging hours at most MERGE_GAP_H apart."""
    out: list[list[int]] = []
    for h in sorted(set(hours)):
        if out and h - out[-1][1] <= MERGE_GAP_H * HOUR_NS:
            out[-1][1] = h + HOUR_NS
        else:
            out.append([h, h + HOUR_NS])
    return [(a, b) for a, b in out]


def run_dirty(
    config: Config,
    store: Store,
    dirty: dict[tuple[str, str, str], set[int]],
    library: FactorLibrary,
    progress: Callable[[int, int, str], None] | None = None,
) -> RollupReport:
    """Recompute exactly the dirty meter-hours and the hours their new readings reach: for a
    range of dirty hours, every hour from the meter's last reading before the range to its
    first reading after it (a filled gap changes the interpolation on both sides)."""
    report = RollupReport()
    look = config.jobs.lookaround_h * HOUR_NS
    by_supplier: dict[str, dict[tuple[int, int], list[str]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for (supplier, site, meter), hours in dirty.items():
        if config.registry.meter(supplier, site, meter) is None:
            continue  # a meter since removed from the registry
        for rng in _ranges(hours):
            by_supplier[supplier][rng].append(f"{site}\x00{meter}")
    total = sum(len(r) for r in by_supplier.values())
    done = 0
    for supplier, ranges in by_supplier.items():
        for (a, b), site_meters in sorted(ranges.items()):
            done += 1
            pairs = [tuple(x.split("\x00")) for x in site_meters]
            for i in range(0, len(pairs), ROLLUP_CHUNK):  # bounded memory, as the rollup
                chunk = pairs[i : i + ROLLUP_CHUNK]
                lines = _recompute_range(config, store, supplier, chunk, a, b, look, library,
                                         report)  # fmt: skip
                store.write(lines)
            if progress:
                progress(done, total, supplier)
    rebuild_site_hours(config, store, report.ranges, library, report)
    return report


def rebuild_site_hours(
    config: Config, store: Store, ranges: dict[tuple[str, str], list[tuple[int, int]]],
    library: FactorLibrary, report: RollupReport | None = None,
) -> int:  # fmt: skip
    """Recompute the site-hours of ``ranges`` ((supplier, site) → [start, end) ranges) from
    the stored meter-hours, after those were rewritten. Returns the site-hours written."""
    written = 0
    for (supplier_id, site_id), spans in sorted(ranges.items()):
        found = config.registry.site(supplier_id, site_id)
        if found is None or not any(m.carrier == "electricity" for m in found[1].meters):
            continue
        supplier, site = found
        roles = {m.id: m.role for m in site.meters}
        chunks = [(t, min(t + SITE_HOURS_CHUNK_H * HOUR_NS, b)) for a, b in _merge(spans)
                  for t in range(a, b, SITE_HOURS_CHUNK_H * HOUR_NS)]  # fmt: skip
        for a, b in chunks:
            hours, _ = store.hourly_consumption(a, b, supplier=supplier_id, site=site_id)
            inputs = SiteHourInputs()
            for hour in hours:
                if hour.meter in roles:
                    inputs.add(roles[hour.meter], hour)
            if any(r == "grid" for r in roles.values()):
                for t, kwh in store.hourly_exports(a, b, supplier=supplier_id,
                                                   site=site_id).items():  # fmt: skip
                    inputs.add_export(t, kwh)
            made = site_hours(supplier, site, inputs, library)
            store.write([site_hour_line(h) for h in made])
            written += len(made)
            if report is not None:
                tz = ZoneInfo(site.timezone)
                for month in {_month_of(h.hour_start_ns, tz) for h in made}:
                    report.touched.setdefault((month, supplier_id), set()).add(
                        f"{supplier_id}/{site_id} (site electricity)"
                    )
    if report is not None:
        report.site_hours += written
    return written


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching [start, end) ranges merged."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _recompute_range(
    config: Config, store: Store, supplier: str, pairs: list[tuple[str, ...]], a: int, b: int,
    look: int, library: FactorLibrary, report: RollupReport,
) -> list[str]:  # fmt: skip
    meters = [m for _, m in pairs]
    fetched = store.registers(supplier, a - look, b + look, meters)
    lines: list[str] = []
    for site, meter in pairs:
        ref = config.registry.meter(supplier, site, meter)
        assert ref is not None
        registers = fetched.get((site, meter), {})
        points = registers.get(ref.register_field, [])
        # Strictly before: a new reading exactly on the range's first hour boundary splits the
        # step that also covers the hour before it.
        before = [t for t, _ in points if t < a]
        after = [t for t, _ in points if t >= b]
        lo, hi = (max(before) if before else None), (min(after) if after else None)
        if lo is None or hi is None:  # the neighbours lie further out: find them, refetch
            edges = store.register_edges(supplier, ref.register_field, a - look, b + look,
                                         [meter]).get((site, meter), (None, None))  # fmt: skip
            lo = lo if lo is not None else edges[0]
            hi = hi if hi is not None else edges[1]
            wide = store.registers(supplier, (lo or a) - look, (hi or b) + look, [meter])
            registers = wide.get((site, meter), {})
        start = (lo if lo is not None else a) // HOUR_NS * HOUR_NS
        end = -(-(hi if hi is not None else b) // HOUR_NS) * HOUR_NS
        lines += rollup_meter(ref, registers, start, end, library, report)
    return lines


def restate_emissions(
    config: Config, store: Store, library: FactorLibrary, changed: Iterable[str]
) -> RollupReport:
    """Recompute the stored emissions of every hour whose (carrier, region, local year, use)
    now resolves to another factor (``changed`` keys ``"carrier/region/year/use"``), from the
    stored consumption — the registers are not re-read."""
    report = RollupReport()
    # "carrier/region/year" (no use) restates the year for every use.
    keys = {(*k.split("/"), None)[:4] for k in changed}
    electricity = CARRIERS["electricity"].factor_key
    site_ranges: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for supplier in config.registry.suppliers:
        for site in supplier.sites:
            for carrier, region, year, use in keys:
                if (carrier == electricity and region == supplier.country
                        and use in (None, site_factor_use(supplier, site))):  # fmt: skip
                    tz = ZoneInfo(site.timezone)
                    site_ranges.setdefault((supplier.id, site.id), []).append(
                        (
                            int(datetime(int(year), 1, 1, tzinfo=tz).timestamp()) * 10**9,
                            int(datetime(int(year) + 1, 1, 1, tzinfo=tz).timestamp()) * 10**9,
                        )
                    )
            refs = [r for m in site.meters
                    if (r := config.registry.meter(supplier.id, site.id, m.id)) is not None
                    and m.role == "consumption"]  # fmt: skip
            for carrier, region, year, use in sorted(keys, key=str):
                mine = [r for r in refs if r.carrier.factor_key == carrier
                        and supplier.country == region and use in (None, r.factor_use)]  # fmt: skip
                if not mine:
                    continue
                tz = mine[0].tz
                start = int(datetime(int(year), 1, 1, tzinfo=tz).timestamp()) * 10**9
                end = int(datetime(int(year) + 1, 1, 1, tzinfo=tz).timestamp()) * 10**9
                hours, _ = store.hourly_consumption(start, end, supplier=supplier.id,
                                                    site=site.id)  # fmt: skip
                lines = []
                by_meter = {r.meter.id: r for r in mine}
                for hour in hours:
                    ref = by_meter.get(hour.meter)
                    record = emissions_for(hour, ref, library) if ref else None
                    if record is None:
                        continue
                    lines.append(emissions_line(record))
                    report.emissions_hours += 1
                    month = _month_of(hour.hour_start_ns, tz)
                    report.touched.setdefault((month, supplier.id), set()).add("/".join(ref.key))  # type: ignore[union-attr]
                store.write(lines)
    rebuild_site_hours(config, store, site_ranges, library, report)
    return report


def stale_factor_keys(
    config: Config, store: Store, library: FactorLibrary, now_ns: int
) -> dict[str, str]:
    """The ``"carrier/region/year/use"`` keys whose stored hours (meter emissions or
    site-hours) were computed with another factor than today's resolution, or have none
    where a factor now exists; each with what the stored hours used (for the reason)."""
    first = store.first_hour()
    if first is None:
        return {}
    electricity = CARRIERS["electricity"].factor_key
    by_tz: dict[str, list[tuple[Supplier, Site]]] = defaultdict(list)
    for supplier in config.registry.suppliers:
        for site in supplier.sites:
            by_tz[site.timezone].append((supplier, site))
    out: dict[str, str] = {}
    for tz_name, sites in by_tz.items():
        tz = ZoneInfo(tz_name)
        mine = {(su.id, si.id) for su, si in sites}
        for year in range(ns_to_datetime(first).astimezone(tz).year,
                          ns_to_datetime(now_ns).astimezone(tz).year + 1):  # fmt: skip
            start = int(datetime(year, 1, 1, tzinfo=tz).timestamp()) * 10**9
            end = int(datetime(year + 1, 1, 1, tzinfo=tz).timestamp()) * 10**9
            stored = store.stored_factors(start, end)
            with_hours = store.meters_with_hours(start, end)
            expected: list[tuple[tuple[str, ...], str, str, str]] = []
            for supplier, site in sites:
                if any(m.carrier == "electricity" for m in site.meters):
                    expected.append(((supplier.id, site.id), electricity, supplier.country,
                                     site_factor_use(supplier, site)))  # fmt: skip
                for m in site.meters:
                    ref = config.registry.meter(supplier.id, site.id, m.id)
                    if ref is not None and m.role == "consumption":
                        expected.append((ref.key, ref.carrier.factor_key, supplier.country,
                                         ref.factor_use))  # fmt: skip
            for key, carrier, region, use in expected:
                if key[:2] not in mine:
                    continue
                ids, values = stored.get(key, (set(), set()))
                found = library.lookup(carrier, region, year, use)
                site_key = len(key) == 2
                has_hours = (key in with_hours if not site_key
                             else any(k[:2] == key for k in with_hours))  # fmt: skip
                if found is None:
                    stale = bool(ids)
                else:
                    f = found[0]
                    stale = (ids, values) != ({f.id}, {f.value}) if ids else has_hours
                if stale:
                    name = f"{carrier}/{region}/{year}/{use}"
                    used = ", ".join(sorted(ids)) or "no factor"
                    out[name] = f"{name} was {used}"
    return out


# --- scheduled jobs ------------------------------------------------------------------------

JOB_NAMES = ("rollup", "export", "alerts", "dashboards")

MAX_CATCH_UP_H = 31 * 24
"""A rollup after downtime recomputes at most this far back in one go; the arrival marks and
the export's restatements take care of anything older."""


@dataclass
class JobState:
    """What the jobs must remember across restarts, in one JSON file."""

    path: Path
    last_success_ns: dict[str, int] = field(default_factory=dict)
    last_export_month: str | None = None
    arrivals_cursor_ns: int | None = None
    """Receipt time up to which late-arrival marks have been recomputed."""
    factor_resolutions: dict[str, list] = field(default_factory=dict)
    """What each carrier/region/year resolved to at the last rollup (id, value, provisional)."""
    meter_events: dict[str, list[str]] = field(default_factory=dict)
    """Each meter's events as last applied (to find new or corrected ones)."""
    pending: dict[str, list[str]] = field(default_factory=dict)
    """Month → reasons it must be restated (late data, events, factors)."""
    operations_cursor: int = 0
    """The last audit-trail entry of the operations database taken up (bills and month
    reviews entered in the console mark their month for restatement)."""

    FIELDS = ("last_success_ns", "last_export_month", "arrivals_cursor_ns",
              "factor_resolutions", "meter_events", "pending", "operations_cursor")  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> JobState:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, **{k: data[k] for k in cls.FIELDS if k in data})

    def save(self) -> None:
        """Replace the state file atomically (a crash leaves the previous state whole)."""
        write_json_atomic(self.path, {k: getattr(self, k) for k in self.FIELDS}, indent=2)

    @property
    def lock_path(self) -> Path:
        """The lock every job holds while it runs: one job at a time on this state, whichever
        process runs it (the scheduler, a one-shot ``run-job``)."""
        return self.path.with_name("jobs.lock")

    def add_pending(self, touched: dict[tuple[str, str], set[str]], why: str) -> None:
        """Record ``why`` for every month in ``touched`` (once per month and reason)."""
        by_month: dict[str, set[str]] = defaultdict(set)
        for (month, _), meters in touched.items():
            by_month[month].update(meters)
        for month, meters in by_month.items():
            shown = ", ".join(sorted(meters)[:5]) + (" and more" if len(meters) > 5 else "")
            reasons = self.pending.setdefault(month, [])
            text = f"{why}: {shown}"
            if text not in reasons:
                reasons.append(text)


class LastGood:
    """Input files as last read without a problem. A bad row added to a file the jobs re-read
    (factors, allocations, certificates, bills) is reported with its code, file, line and
    column, and the jobs go on with the file's last good version instead of stopping; a copy
    of that version is kept under ``keep_dir``, so a restart finds it too."""

    CODE = "bad_input_file"

    def __init__(self, keep_dir: Path) -> None:
        self.dir = keep_dir
        self.kept: dict[str, object] = {}
        self.problems: dict[str, list[str]] = {}

    def load(self, name: str, path: Path | None, read: Callable[[Path | None], T],
             fallback: T | None = None) -> T:  # fmt: skip
        """``read(path)``; on a ConfigError the last good version (kept in memory, else the
        copy on disk, else ``fallback``); the error again when there is none."""
        try:
            value = read(path)
        except ConfigError as exc:
            kept = self.kept.get(name, fallback)
            copy = self.dir / name
            if kept is None and copy.exists():
                kept = read(copy)
            if kept is None:
                raise
            if self.problems.get(name) != exc.problems:
                log.error("%s: %s has %d problem(s); the jobs go on with its last good version "
                          "until it is fixed:\n  %s", self.CODE, path, len(exc.problems),
                          "\n  ".join(exc.problems))  # fmt: skip
            self.problems[name] = exc.problems
            return kept  # type: ignore[return-value]
        if path is not None:
            data = path.read_bytes()
            copy = self.dir / name
            if not copy.exists() or copy.read_bytes() != data:
                write_atomic(copy, data)
        self.kept[name] = value
        self.problems.pop(name, None)
        return value

    def note(self) -> str:
        """For a job's summary: which files were skipped for their last good version."""
        if not self.problems:
            return ""
        return "; " + ", ".join(f"{n}: {len(p)} problem(s), last good version used"
                                for n, p in sorted(self.problems.items()))  # fmt: skip


def _event_digests(config: Config) -> dict[str, list[str]]:
    out = {}
    for ref in config.registry.meters():
        if ref.meter.events:
            out["/".join(ref.key)] = [
                f"{e.time_ns}:" + hashlib.sha256(e.reading_json().encode()).hexdigest()[:12]
                for e in ref.meter.events
            ]
    return out


class Jobs:
    """The job bodies, with the state and services they share.

    ``push_dashboards`` is the dashboards push (wired in by the application layer; ``None``:
    the dashboards job says it is not configured). ``reload_factors``: re-read the factor
    file at every rollup.
    """

    def __init__(
        self, config: Config, store: Store, library: FactorLibrary,
        clock: Callable[[], int] = time.time_ns,
        push_dashboards: Callable[[], str] | None = None,
        reload_factors: bool = False,
        on_footprints: Callable[[list[str]], str] | None = None,
        operations: Operations | None = None,
    ) -> None:  # fmt: skip
        """``on_footprints(ids)`` is told the ids of newly published footprints (the PACT
        host notifies the recipients) and returns a note for the job's summary.
        ``operations``: the operations database (``None``: the configured one) — meter
        events, bills, silences, acknowledgements and month reviews entered in the console."""
        self.config, self.store, self.library, self.clock = config, store, library, clock
        self.ops = operations or Operations.from_config(config)
        self._base_registry = config.registry
        self._recorded: tuple[int, ...] = ()
        self.push_dashboards = push_dashboards
        self.on_footprints = on_footprints
        self.reload_factors = reload_factors
        self._checked_layout = False
        self._checked_lineage = False
        self._checked_events = False
        export_dir = config.resolve(config.jobs.export_dir)
        self.state = JobState.load(export_dir / "jobs-state.json")
        self.last_good = LastGood(export_dir / ".last-good")
        path = config.registry_path
        self._registry = RegistryWatch(path, config.registry) if path.exists() else None
        self._alerts = None
        self.step: Callable[[str], None] = lambda name: None
        """Told each step boundary of the rollup's change tracking (``late``, ``events``,
        ``factors``) and of the export (``export:written``, ``export:published``,
        ``restate:written``, ``restate:published``): a test stops the job there as a kill
        would. The export records a month as done (its pending reasons cleared) only when the
        job's state is saved at its end, so a kill before repeats the export, which finds
        the version already written and leaves it as it is."""

    def dashboards(self) -> str:
        """Push the dashboards (daily: a registry change reaches Grafana within a day)."""
        if self.push_dashboards is None:
            return "no dashboards push configured"
        return self.push_dashboards()

    def alerts(self) -> str:
        """Detect, update incidents, email (see :mod:`processing.alerts`)."""
        from processing.alerts import AlertRunner

        if self._alerts is None:
            self._alerts = AlertRunner(self.config, self.store, operations=self.ops)
        summary = self._alerts.run(self.clock())
        self.state.last_success_ns["alerts"] = self.clock()
        self.state.save()
        return summary

    def rollup(self) -> str:
        """The trailing window (further back after downtime), then late arrivals, new meter
        events and changed factors — each recomputed exactly and marked for restatement.
        With ``reload_factors`` (the scheduler) the factor file is re-read first, so a row
        added to it is taken up without a restart."""
        if self.reload_factors:
            path = self.config.jobs.factors_file
            self.library = self.last_good.load(
                "emission_factors.csv", self.config.resolve(path) if path else None,
                FactorLibrary.load, fallback=self.library)  # fmt: skip
        if not self._checked_layout:
            self._checked_layout = True
            self._build_site_hours()
            if self.store.legacy_emission_series():
                log.warning("hourly_emissions holds series tagged with factor_id from an older "
                            "version: they are summed beside the new points. Drop them and "
                            "rebuild (docs/operations.md, Upgrade step 5)")  # fmt: skip
        now = self.clock()
        end = now - now % HOUR_NS + HOUR_NS  # include the running hour as far as it goes
        trailing = self.config.jobs.trailing_window_h * HOUR_NS
        start = end - trailing
        last = self.state.last_success_ns.get("rollup")
        if last is not None:
            start = max(min(start, last - trailing), end - MAX_CATCH_UP_H * HOUR_NS)
            start -= start % HOUR_NS
        report = run_rollup(self.config, self.store, start, end, self.library)
        if last is not None and now - last > trailing:
            self.state.add_pending(report.touched, "rollup caught up after downtime")
        parts = [f"{report.meters} meters, {report.hours} hours from {(end - start) // HOUR_NS} h "
                 f"back"]  # fmt: skip
        parts += self._late(now)
        parts += self._events()
        parts += self._operations()
        parts += self._factors(now)
        falls = report.falls
        if falls:
            log.warning("rollup: %d register falls without a recorded meter event; the hours "
                        "are estimated until the exchange is recorded", falls)  # fmt: skip
        if report.implausible:
            log.warning("rollup: %d register steps faster than their meters can go; estimated "
                        "and raised as implausible_step quality issues",
                        report.implausible)  # fmt: skip
        self.state.last_success_ns["rollup"] = now
        self.state.save()
        return "; ".join(parts)

    def _build_site_hours(self) -> None:
        """Site-hours for every stored hour, once, when a store from before them has none
        (an upgrade): the months they change are restated with the reason."""
        first = self.store.first_hour()
        if first is None or self.store.first_hour(SITE_HOURLY) is not None:
            return
        log.info("building site-hours (purchased electricity per site and hour) from the "
                 "stored hourly consumption since %s", ns_to_datetime(first))  # fmt: skip
        end = self.clock() // HOUR_NS * HOUR_NS + HOUR_NS
        ranges = {(su.id, si.id): [(first, end)] for su in self.config.registry.suppliers
                  for si in su.sites}  # fmt: skip
        report = RollupReport()
        rebuild_site_hours(self.config, self.store, ranges, self.library, report)
        self.state.add_pending(report.touched, "purchased electricity taken from the site's "
                               "grid meter where it has one (site-hours built)")  # fmt: skip
        self.state.save()

    def _late(self, now: int) -> list[str]:
        cursor = self.state.arrivals_cursor_ns
        after = (cursor - ARRIVAL_OVERLAP_NS) if cursor is not None else 0
        dirty = self.store.arrivals(after, now)
        out = []
        if dirty:
            report = run_dirty(self.config, self.store, dirty, self.library)
            self.state.add_pending(report.touched, "late data recomputed")
            n = sum(len(h) for h in dirty.values())
            out = [f"late data: {n} meter-hours of {len(dirty)} meters → {report.hours} hours "
                   "recomputed"]  # fmt: skip
        # Effects before state: the cursor moves (with the months to restate) only once the
        # hours are rewritten; a run that fails or is killed before reads the marks again.
        self.state.arrivals_cursor_ns = now
        self.state.save()
        self.step("late")
        return out

    def _events(self) -> list[str]:
        """Meter events recorded, corrected or removed since the last run: each one's hours
        are recomputed from its time to the meter's next event (or now) — a CT ratio or a
        new meter's multiplier applies to every hour after it, not only the hour it
        happened in — and the months they fall in are restated."""
        current = _event_digests(self.config)
        previous = self.state.meter_events
        dirty: dict[tuple[str, str, str], set[int]] = {}
        now = self.clock()
        if not self._checked_events:
            # At the first run of the process, the stored hours themselves: a database
            # restored from before an event was recorded, or hours written by a run that
            # did not know it, carry another lineage than the registry gives today.
            for key in sorted(set(current) | set(previous)):
                ref = self.config.registry.meter(*key.split("/"))
                if ref is not None:
                    stale = self.store.hours_not_of(ref.key, ref.lineage_ranges)
                    if stale:
                        dirty[ref.key] = stale
            self._checked_events = True
        for key in set(current) | set(previous):
            new, old = set(current.get(key, [])), set(previous.get(key, []))
            changed = new ^ old
            if changed:
                times = sorted({int(d.split(":")[0]) for d in new | old})
                hours: set[int] = set()
                for t in {int(d.split(":")[0]) for d in changed}:
                    stop = next((x for x in times if x > t), max(now, t))
                    hours.update(range(t // HOUR_NS * HOUR_NS, stop // HOUR_NS * HOUR_NS + 1,
                                       HOUR_NS))  # fmt: skip
                dirty.setdefault(tuple(key.split("/")), set()).update(hours)  # type: ignore[arg-type]
        out = []
        if dirty:
            by_reason: dict[str, dict[tuple[str, str, str], set[int]]] = {}
            for key, hours in dirty.items():
                by_reason.setdefault(self._event_reason(key, current, previous), {})[key] = hours
            n = 0
            for why, part in sorted(by_reason.items()):
                report = run_dirty(self.config, self.store, part, self.library)
                self.state.add_pending(report.touched, why)
                n += report.hours
            out = [f"meter events: {len(dirty)} meters, {n} hours recomputed"]
        self.state.meter_events = current  # only after the hours are rewritten
        self.state.save()
        self.step("events")
        return out

    def _event_reason(self, key: tuple[str, str, str], current: dict[str, list[str]],
                      previous: dict[str, list[str]]) -> str:  # fmt: skip
        """Why a meter's hours are recomputed: who recorded the new event when the console
        did, else the registry's change."""
        name = "/".join(key)
        new = set(current.get(name, [])) - set(previous.get(name, []))
        ref = self.config.registry.meter(*key)
        times = {int(d.split(":")[0]) for d in new}
        users = sorted({e.recorded_by for e in (ref.meter.events if ref else [])
                        if e.time_ns in times and e.recorded_by})  # fmt: skip
        if users:
            return f"meter event recorded by {', '.join(users)}"
        return "meter event recorded or corrected"

    def _factors(self, now: int) -> list[str]:
        """Hours whose stored factor is not what the factor file says today are recomputed
        and their months restated, naming the factor. The stored hours themselves are
        compared (each carries its factor id and value) at the first run of the process and
        whenever the file resolves differently from the last run, so a first run, a restored
        backup or a file edited while nothing ran all find the same hours."""
        year = ns_to_datetime(now).year
        uses = {(r.carrier.factor_key, r.factor_use) for r in self.config.registry.meters()}
        resolved = self.library.resolutions(range(2000, year + 2), uses)
        current = {k: list(v) for k, v in resolved.items()}
        # State written before factors had a use keyed "carrier/region/year": the use was "".
        previous = {(k if k.count("/") == 3 else f"{k}/"): v
                    for k, v in self.state.factor_resolutions.items()}  # fmt: skip
        changed = {k: "" for k in current if previous and previous.get(k) != current[k]}
        if not self._checked_lineage or changed or not previous:
            changed.update(stale_factor_keys(self.config, self.store, self.library, now))
            self._checked_lineage = True
        out = []
        if changed:
            report = restate_emissions(self.config, self.store, self.library, changed)
            names = ", ".join(
                f"{k} → {current[k][0]} ({current[k][1]:g})" if k in current else f"{k} → none"
                for k in sorted(changed))  # fmt: skip
            was = "; ".join(sorted({w for w in changed.values() if w}))
            why = f"emission factor changed: {names}" + (f" (stored: {was})" if was else "")
            self.state.add_pending(report.touched, why)
            out = [f"factors changed ({names}): {report.emissions_hours} hours of emissions and "
                   f"{report.site_hours} site-hours recomputed"]  # fmt: skip
        # Recorded only now: a restatement whose reads failed is found again by the retry.
        self.state.factor_resolutions = current
        self.state.save()
        self.step("factors")
        return out

    def export(self, month: Month | None = None) -> str:
        """Export last month (or ``month``) once its day has come, and restate every exported
        month with pending changes (late data, meter events, factors) or a provisional
        factor."""
        from processing.accounting.export import previous_month
        from processing.accounting.runner import export_month
        from processing.accounting.versions import latest_manifest

        out = self.config.resolve(self.config.jobs.export_dir)
        inputs = self.inputs()
        target = month or previous_month(self.clock(), self.config.jobs.timezone)
        done = []
        first_time = self.state.last_export_month != str(target)
        if month is not None or (self._export_day_reached() and first_time):
            reasons = self.state.pending.pop(str(target), [])
            result = export_month(self.config, self.store, target, out, self.library, reasons,
                                  inputs=inputs)  # fmt: skip
            self.step("export:written")
            done.append(f"{target} v{result.version}{'' if result.written else ' (unchanged)'}"
                        + self._footprints(target, result))  # fmt: skip
            self.step("export:published")
            if month is None:
                self.state.last_export_month = str(target)
        for month_dir in sorted(out.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]")):
            latest = latest_manifest(month_dir)
            if latest is None or (month_dir.name == str(target) and done):
                continue
            reasons = self.state.pending.get(month_dir.name, [])
            provisional = any(t.get("provisional") for t in latest["totals"].values())
            if not reasons and not provisional:
                continue
            again = export_month(self.config, self.store, Month.parse(month_dir.name), out,
                                 self.library, reasons, inputs=inputs)  # fmt: skip
            self.step("restate:written")
            self.state.pending.pop(month_dir.name, None)
            done.append(
                f"{month_dir.name} "
                + (f"restated as v{again.version}" if again.written else "unchanged")
                + self._footprints(Month.parse(month_dir.name), again)
            )
            self.step("restate:published")
        self.state.last_success_ns["export"] = self.clock()
        self.state.save()
        return "; ".join(done) or "nothing due"

    def inputs(self) -> Inputs:
        """Allocations, certificates and bills, each file at its last good version, with the
        bills and month reviews entered in the console."""
        from processing.accounting.inputs import (
            Inputs,
            load_allocations,
            load_bills,
            load_certificates,
        )
        from processing.accounting.reconcile import Bill

        j, resolve, keep = self.config.jobs, self.config.resolve, self.last_good.load
        return Inputs(
            keep("allocations.csv", resolve(j.allocations_file), load_allocations)
            if j.allocations_file else {},
            keep("certificates.csv", resolve(j.certificates_file),
                 lambda p: load_certificates(p, self.config.registry))
            if j.certificates_file else {},
            (keep("bills.csv", resolve(j.bills_file), load_bills) if j.bills_file else [])
            + [Bill(b.supplier, b.site, b.carrier, b.account, b.period_start, b.period_end,
                    b.billed, b.bill_id, f"console: bill {b.id} entered by {b.recorded_by}")
               for b in self.ops.bills()],
            self.ops.month_reviews(),
        )  # fmt: skip

    def _footprints(self, month: Month, result: ExportResult) -> str:
        """Publish the month's product footprints when the registry has products: a new
        footprint (deprecating the old) only where the content changed, from the figures the
        export just computed (not computed again), with the export's reasons."""
        if not any(site.products for s in self.config.registry.suppliers for site in s.sites):
            return ""
        from processing.accounting.runner import publish_period

        published, skipped = publish_period(
            self.config, self.store, self.library, month, month, inputs=self.inputs(),
            computed={month: result.figures} if result.figures is not None else None,
            reasons=list(result.reasons))  # fmt: skip
        for reason in skipped:
            log.warning("footprints %s: %s", month, reason)
        note = ""
        if published.created and self.on_footprints is not None:
            note = "; " + self.on_footprints([pf["id"] for pf in published.created])
        return (f", footprints {len(published.created)} new, {len(published.deprecated)} "
                f"deprecated{note}")  # fmt: skip

    def _export_day_reached(self) -> bool:
        local = ns_to_datetime(self.clock()).astimezone(ZoneInfo(self.config.jobs.timezone))
        j = self.config.jobs
        return (local.day, local.hour) >= (j.export_day, j.export_hour)

    def export_due(self) -> bool:
        """Whether last month's export is missing and its day has come (catch-up at start)."""
        from processing.accounting.export import previous_month

        target = previous_month(self.clock(), self.config.jobs.timezone)
        return self._export_day_reached() and self.state.last_export_month != str(target)

    def run(self, name: str, sleep: Callable[[float], None] = time.sleep, **kwargs: object) -> bool:
        """Run one job, retrying ``[jobs] job_retries`` times; never raises. True on success."""
        if name not in JOB_NAMES:
            raise ValueError(f"no job {name!r}; jobs: {', '.join(JOB_NAMES)}")
        body = getattr(self, name)
        new = self._registry.poll() if self._registry else None
        if new is not None:  # an edited registry: the next job runs on it, no restart
            self._base_registry = new
        attempts = 1 + self.config.jobs.job_retries
        for attempt in range(1, attempts + 1):
            try:
                began = time.monotonic()
                with locked(self.state.lock_path, what="(a job runs elsewhere: waiting)"):
                    # Start from the state on disk: a job run by another process (a one-shot
                    # beside the scheduler, or the scheduler beside it) may have moved it on,
                    # and a failed attempt's half-changed copy must not be saved.
                    self.state = JobState.load(self.state.path)
                    # The console's meter events join the registry (an operations database
                    # that cannot be read fails the attempt, like any source).
                    self._take_recorded_events(changed=new is not None)
                    summary = body(**kwargs)  # type: ignore[operator]
                summary += self.last_good.note()
                log.info("job %s done in %.1f s: %s", name, time.monotonic() - began, summary)
                self.last_summary = summary
                return True
            except Exception:  # a job's failure must not stop the scheduler or other jobs
                log.exception("job %s failed (attempt %d of %d)", name, attempt, attempts)
                if attempt < attempts:
                    sleep(self.config.jobs.retry_delay_s)
        log.error("job %s gave up after %d attempts; next scheduled run will try again", name,
                  attempts)  # fmt: skip
        return False

    last_summary: str = ""

    def _take_recorded_events(self, changed: bool) -> None:
        """The registry the jobs run on: the file's, with the meter events recorded in the
        console (rebuilt only when either changed)."""
        recorded = self.ops.meter_events()
        ids = tuple(r.id for r in recorded)
        if not changed and ids == self._recorded:
            return
        for problem in misfits(self._base_registry, recorded):
            log.warning("operations database: %s (left out until corrected)", problem)
        registry = with_recorded_events(self._base_registry, recorded)
        self.config = dataclasses.replace(self.config, registry=registry)
        self._recorded = ids
        self._alerts = None

    def _operations(self) -> list[str]:
        """Bills and month reviews entered in the console since the last run: each marks its
        month for restatement, naming who entered what (the export reconciles the bill, and
        its Methodology sheet lists the review)."""
        entries = self.ops.audit_trail(after_id=self.state.operations_cursor)
        marked = 0
        for e in entries:
            record = json.loads(e.after or e.before or "{}")
            if e.entity == "bill":
                end = date.fromisoformat(record["period_end"]) - timedelta(days=1)
                month = f"{end:%Y-%m}"
                verb = "entered" if e.action == "create" else "withdrawn"
                why = f"bill {record['bill_id']} ({record['site']}) {verb} by {e.username}"
            elif e.entity == "month":
                month = record["month"]
                why = (f"{record['supplier']} {e.action} {month} v{record['version']} "
                       f"({e.username})")  # fmt: skip
            else:
                continue
            reasons = self.state.pending.setdefault(month, [])
            if why not in reasons:
                reasons.append(why)
                marked += 1
        if entries:
            self.state.operations_cursor = entries[-1].id
            self.state.save()
        return [f"console records: {marked} month restatement(s) marked"] if marked else []


def run_scheduler(
    config: Config,
    push_dashboards: Callable[[], str] | None = None,
    on_footprints: Callable[[list[str]], str] | None = None,
) -> None:  # pragma: no cover - runs until interrupted
    """Run the jobs on schedule until interrupted (Ctrl-C / SIGTERM).

    Rollups every ``rollup_every_min``; alerts every ``[alerts] every_min``; the export daily
    at ``export_hour`` (last month once ``export_day`` has come; pending restatements every
    day); the dashboards push daily when configured. Late runs are never skipped (a backlog of
    runs coalesces into one), and at start the jobs catch up on downtime.
    """
    from apscheduler.schedulers.blocking import BlockingScheduler

    jobs = Jobs(config, Store.from_config(config), FactorLibrary.for_config(config),
                push_dashboards=push_dashboards, reload_factors=True,
                on_footprints=on_footprints)  # fmt: skip
    scheduler = BlockingScheduler(timezone=config.jobs.timezone)
    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    scheduler.add_job(jobs.run, "interval", args=["rollup"],
                      minutes=config.jobs.rollup_every_min, id="rollup", **common)  # fmt: skip
    scheduler.add_job(jobs.run, "interval", args=["alerts"], minutes=config.alerts.every_min,
                      id="alerts", **common)  # fmt: skip
    if push_dashboards is not None:
        scheduler.add_job(jobs.run, "cron", args=["dashboards"], hour=5, minute=30,
                          id="dashboards", **common)  # fmt: skip
    else:
        log.info("jobs: no SUPPLYMETER_GRAFANA_TOKEN, the daily dashboards push is off")
    scheduler.add_job(jobs.run, "cron", args=["export"], hour=config.jobs.export_hour,
                      id="export", **common)  # fmt: skip
    j = config.jobs
    log.info("jobs: rollup every %d min; export daily at %02d:00 %s (last month from day %d)",
             j.rollup_every_min, j.export_hour, j.timezone, j.export_day)  # fmt: skip
    jobs.run("rollup")
    if jobs.export_due():
        jobs.run("export")
    scheduler.start()
