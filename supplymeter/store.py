"""The store: the only code that knows InfluxDB's measurements, line protocol and InfluxQL.

Everything supplymeter keeps in InfluxDB goes through here, both ways: line encoders for
writes, typed reads (records from :mod:`supplymeter.records`) for the jobs, and pandas
DataFrames (units in the column names) where a table is consumed — the export, the dashboard
renders and analysts in a notebook::

    from supplymeter.config import load_config
    from supplymeter.store import Store

    with Store.from_config(load_config()) as store:
        hourly = store.hourly_frame(start="2026-10-01", end="2026-11-01", supplier="forge-a")
        monthly = store.monthly_frame(start="2026-01-01", end="2026-11-01")

=====================  ===============================  ==========================================
measurement            tags                             fields
=====================  ===============================  ==========================================
reading                supplier, site, meter            seq (int) and the protocol quantities
                                                        (:data:`supplymeter.records.QUANTITIES`)
reading_arrival        supplier, site, meter            hour_ns (int), readings (int): readings
                                                        that arrived late for an hour (receipt
                                                        time; the rollup job's dirty list)
rejected_message       reason[, supplier]               count (int, 1), topic, detail, excerpt,
                                                        payload_bytes (int)
gateway_status         supplier, site, gateway          state ("online"/"offline"), online (bool),
                                                        device_ts_ns (int)
hourly_consumption     supplier, site, meter, carrier   the carrier's register field (consumption)
                                                        and ``estimated_<unit>``, coverage,
                                                        estimated (bool), flags, readings (int),
                                                        energy_export_kwh (grid meters)
hourly_emissions       supplier, site, meter, carrier   emissions_kgco2e, factor_id, factor_value,
                                                        provisional (bool)
site_hourly            supplier, site                   consumption_kwh, purchased_kwh,
                                                        estimated_kwh, inferred (bool),
                                                        grid_import_kwh, grid_export_kwh,
                                                        pv_generation_kwh, pv_self_kwh,
                                                        unmetered_kwh, location_kgco2e,
                                                        factor_id, factor_value, provisional
                                                        (:class:`~supplymeter.records.SiteHour`)
quality_issue          code, supplier, site, meter      detail, open (bool): data problems that
                                                        need a person (a register fall without a
                                                        recorded meter event)
alert                  type, supplier, site, subject,   incident, title, detail, value,
                       event (open/reminder/resolved)   baseline, open (bool)
scope3_monthly         supplier                         location_kgco2e, market_kgco2e,
                                                        allocated_kgco2e, allocated_market_kgco2e,
                                                        allocation_share_pct, completeness_pct,
                                                        primary_data_share_pct (percent, as in
                                                        every file), purchased_electricity_kwh,
                                                        provisional (bool), version (int)
scope3_pathway         —                                tco2e (the reduction pathway's month)
collector_stats        collector                        the collector's counters and gauges
=====================  ===============================  ==========================================

Timestamps: ``reading`` at device time (ns); ``rejected_message``, ``gateway_status`` and
``reading_arrival`` at the collector's receipt time (ns, unique per line); hourly rollups at
the start of the UTC hour they cover; monthly points at the month's first instant.

Why ``factor_id`` is a field, not a tag: a point is keyed by measurement + tags + time, so a
factor tag would make a restated hour a *second* point beside the old one (and sums would
count both). As a field, recomputing an hour with a new factor overwrites it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from supplymeter.carriers import CARRIERS, COUNTERS, register_fields
from supplymeter.influx import InfluxClient, Series, quote_ident, quote_literal
from supplymeter.records import (
    QUANTITIES,
    HourlyConsumption,
    HourlyEmissions,
    MeterTotals,
    Reading,
    Rejection,
    SiteHour,
    SiteTotals,
    datetime_to_ns,
)

if TYPE_CHECKING:
    import pandas as pd
    from influxdb_client import Point

    from supplymeter.config import Config

READING = "reading"
READING_ARRIVAL = "reading_arrival"
REJECTED = "rejected_message"
GATEWAY_STATUS = "gateway_status"
HOURLY_CONSUMPTION = "hourly_consumption"
HOURLY_EMISSIONS = "hourly_emissions"
QUALITY_ISSUE = "quality_issue"
COLLECTOR_STATS = "collector_stats"
ALERT = "alert"
SCOPE3_MONTHLY = "scope3_monthly"
SCOPE3_PATHWAY = "scope3_pathway"
HOURLY_PRODUCTION = "hourly_production"
LAST_NS = 9_000_000_000 * 10**9
"""An upper time bound beyond any stored hour (2255; InfluxDB's own limit is 2262) [ns]."""
SITE_HOURLY = "site_hourly"

HOUR_NS = 3600 * 10**9
NS = "ns"
"""Line-protocol timestamp precision of every point written here (``WritePrecision.NS``)."""
WRITE_CHUNK = 5000
METERS_PER_QUERY = 200
"""Meters named in one query at most (the query text grows with them)."""

MeterKey = tuple[str, str, str]


# --- line encoders ----------------------------------------------------------------------


_FLOAT_FIELDS = tuple((name, Reading._fields.index(name)) for name in sorted(QUANTITIES))
"""(quantity name, index in :class:`Reading`) in the order influxdb-client's ``Point`` writes
fields (sorted). Always floats: an integer register written as int would fix the field's type
for the whole shard and every later float write would be refused."""


def _float(value: float) -> str:
    # Point's float format: str(), with the ".0" of whole numbers trimmed.
    text = str(value)
    return text[:-2] if text.endswith(".0") else text


def reading_line(reading: Reading) -> str:
    """A reading as one line of line protocol, at device time (ns).

    The collector's hot path, so written out by hand: ``tests/supplymeter/test_store.py``
    proves it byte-identical to influxdb-client's ``Point`` serialization, which it outpaces
    about sevenfold (BENCHMARKS.md). No escaping is needed: the tags are ids that matched
    ``[a-z0-9][a-z0-9_-]*`` and the field names are fixed.
    """
    fields = [
        f"{name}={_float(float(value))}"
        for name, index in _FLOAT_FIELDS
        if (value := reading[index]) is not None
    ]
    if reading.seq is not None:
        # Sorted position of "seq" among the field names, as Point writes it.
        at = sum(1 for f in fields if f < "seq")
        fields.insert(at, f"seq={int(reading.seq)}i")
    return (
        f"{READING},meter={reading.meter},site={reading.site},"
        f"supplier={reading.supplier} {','.join(fields)} {reading.ts_ns}"
    )


def arrival_line(key: MeterKey, hour_ns: int, readings: int, received_ns: int) -> str:
    """A late arrival for one meter-hour, at receipt time (the rollup job's dirty list)."""
    supplier, site, meter = key
    return (
        f"{READING_ARRIVAL},meter={meter},site={site},supplier={supplier} "
        f"hour_ns={hour_ns}i,readings={readings}i {received_ns}"
    )


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with control characters escaped (``\\x0a``).

    A raw newline in a string field would end the line-protocol line mid-point and make
    InfluxDB refuse the whole batch around it; outside input must never be able to do that.
    """
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])


def _point(measurement: str) -> Point:
    """influxdb-client's ``Point``, imported on first use: it costs ~0.2 s of the collector's
    start-up, and a collector draining a backlog may never need it (BENCHMARKS.md)."""
    from influxdb_client import Point

    return Point(measurement)


def rejection_line(rejection: Rejection) -> str:
    """A rejected message as one line of line protocol, at receipt time (ns)."""
    point = _point(REJECTED).tag("reason", rejection.code)
    if rejection.supplier:
        point.tag("supplier", rejection.supplier)
    return (
        point.field("count", 1)
        .field("topic", printable(rejection.topic, 256))
        .field("detail", printable(rejection.detail, 512))
        .field("excerpt", printable(rejection.excerpt, 120))
        .field("payload_bytes", int(rejection.payload_bytes))
        .time(rejection.received_ns, NS)
        .to_line_protocol()
    )


def status_line(
    supplier: str, site: str, gateway: str, state: str, received_ns: int, device_ts_ns: int | None
) -> str:
    """A gateway status change as one line of line protocol, at receipt time (ns)."""
    point = (
        _point(GATEWAY_STATUS)
        .tag("supplier", supplier)
        .tag("site", site)
        .tag("gateway", gateway)
        .field("state", state)
        .field("online", state == "online")
        .time(received_ns, NS)
    )
    if device_ts_ns is not None:
        point.field("device_ts_ns", int(device_ts_ns))
    return point.to_line_protocol()


def stats_line(collector: str, fields: dict[str, float | int | bool], ts_ns: int) -> str:
    """A collector's counters and gauges as one ``collector_stats`` point."""
    point = _point(COLLECTOR_STATS).tag("collector", collector)
    for name, value in fields.items():
        point.field(name, value)
    return point.time(ts_ns, NS).to_line_protocol()


def _field(value: float | int | bool | str) -> str | None:
    """One field value as influxdb-client's ``Point`` writes it (``None``: left out, as
    ``Point`` leaves out non-finite floats)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return _float(value) if math.isfinite(value) else None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _meter_hour_line(
    measurement: str, supplier: str, site: str, meter: str, carrier: str, hour_ns: int,
    fields: dict[str, float | int | bool | str],
) -> str:  # fmt: skip
    """A meter-hour point, written out by hand: the rollup writes two per meter-hour, and
    ``Point`` took a third of its time. Tags are registry ids and carrier names (nothing to
    escape); fields sorted by name, values as ``Point`` writes them —
    ``tests/supplymeter/test_store.py`` proves the lines byte-identical."""
    parts = [f"{name}={text}" for name in sorted(fields)
             if (text := _field(fields[name])) is not None]  # fmt: skip
    return (f"{measurement},carrier={carrier},meter={meter},site={site},supplier={supplier} "
            f"{','.join(parts)} {hour_ns}")  # fmt: skip


def consumption_line(hour: HourlyConsumption, lineage: str = "") -> str:
    """An hourly rollup as line protocol (the consumption field is the carrier's register
    field; the estimated part is ``estimated_<unit>``); ``lineage`` (else the hour's own) is
    what it was computed from."""
    lineage = lineage or hour.lineage
    c = CARRIERS[hour.carrier]
    return _meter_hour_line(HOURLY_CONSUMPTION, hour.supplier, hour.site, hour.meter,
                            hour.carrier, hour.hour_start_ns, {
        c.register_field: float(hour.consumption),
        c.estimated_field: float(hour.estimated_consumption),
        "coverage": float(hour.coverage),
        "estimated": hour.estimated,
        "flags": ",".join(hour.flags),
        "readings": int(hour.readings),
        **({"lineage": lineage} if lineage else {}),
    })  # fmt: skip


def export_line(hour: HourlyConsumption) -> str:
    """A grid meter's hourly export (``energy_export_kwh``), a field of the same
    ``hourly_consumption`` point as its import (InfluxDB merges fields of one point)."""
    return _meter_hour_line(HOURLY_CONSUMPTION, hour.supplier, hour.site, hour.meter,
                            hour.carrier, hour.hour_start_ns,
                            {"energy_export_kwh": float(hour.consumption)})  # fmt: skip


def production_line(hour: HourlyConsumption, product: str) -> str:
    """Pieces of ``product`` counted in an hour by its counter meter's ``production_units``
    (``hour.consumption``: pieces, interpolated at the hour's boundaries)."""
    fields = {"units": float(hour.consumption), "estimated_units":
              float(hour.estimated_consumption), "coverage": float(hour.coverage),
              "flags": ",".join(hour.flags), "readings": int(hour.readings)}  # fmt: skip
    parts = [f"{name}={text}" for name in sorted(fields)
             if (text := _field(fields[name])) is not None]  # fmt: skip
    return (f"{HOURLY_PRODUCTION},meter={hour.meter},product={product},site={hour.site},"
            f"supplier={hour.supplier} {','.join(parts)} {hour.hour_start_ns}")  # fmt: skip


@dataclass(frozen=True)
class ProductTotals:
    """A product's counted pieces over a period (from ``hourly_production``)."""

    units: float = 0.0
    estimated_units: float = 0.0
    """The part of ``units`` spread across counter gaps or resets. [pieces]"""
    hours: int = 0


def emissions_line(record: HourlyEmissions) -> str:
    """Emissions of a meter-hour with the factor used (id and value as fields)."""
    return _meter_hour_line(HOURLY_EMISSIONS, record.supplier, record.site, record.meter,
                            record.carrier, record.hour_start_ns, {
        "emissions_kgco2e": float(record.emissions_kgco2e),
        "factor_id": record.factor_id,
        "factor_value": float(record.factor_value),
        "provisional": record.provisional,
    })  # fmt: skip


def site_hour_line(h: SiteHour) -> str:
    """A site-hour point (absent fields: what the site does not have, e.g. no grid meter)."""
    fields: dict[str, float | int | bool | str] = {
        "consumption_kwh": float(h.consumption_kwh), "purchased_kwh": float(h.purchased_kwh),
        "estimated_kwh": float(h.estimated_kwh), "inferred": h.inferred,
        "pv_self_kwh": float(h.pv_self_kwh), "provisional": h.provisional,
    }  # fmt: skip
    optional = {"grid_import_kwh": h.grid_import_kwh, "grid_export_kwh": h.grid_export_kwh,
                "pv_generation_kwh": h.pv_generation_kwh, "unmetered_kwh": h.unmetered_kwh,
                "location_kgco2e": h.location_kgco2e}  # fmt: skip
    fields.update({k: float(v) for k, v in optional.items() if v is not None})
    if h.location_kgco2e is not None:
        fields["factor_id"] = h.factor_id
        fields["factor_value"] = float(h.factor_value)
    parts = [f"{name}={text}" for name in sorted(fields)
             if (text := _field(fields[name])) is not None]  # fmt: skip
    return (f"{SITE_HOURLY},site={h.site},supplier={h.supplier} {','.join(parts)} "
            f"{h.hour_start_ns}")  # fmt: skip


def quality_issue_line(code: str, key: MeterKey, at_ns: int, detail: str, is_open: bool) -> str:
    """A data problem that needs a person, e.g. a register fall without a meter event."""
    supplier, site, meter = key
    return (
        _point(QUALITY_ISSUE).tag("code", code).tag("supplier", supplier).tag("site", site)
        .tag("meter", meter).field("detail", printable(detail, 512)).field("open", is_open)
        .time(at_ns, NS).to_line_protocol()
    )  # fmt: skip


@dataclass(frozen=True)
class MonthlyTotals:
    """One supplier's month as the dashboards read it (the standing export version's)."""

    supplier: str
    month_start_ns: int
    location_kgco2e: float
    market_kgco2e: float | None
    allocated_kgco2e: float
    allocated_market_kgco2e: float | None
    allocation_share_pct: float
    completeness_pct: float
    primary_data_share_pct: float
    provisional: bool
    version: int
    purchased_electricity_kwh: float | None = None


def monthly_line(t: MonthlyTotals) -> str:
    point = (
        _point(SCOPE3_MONTHLY).tag("supplier", t.supplier)
        .field("location_kgco2e", float(t.location_kgco2e))
        .field("allocated_kgco2e", float(t.allocated_kgco2e))
        .field("allocation_share_pct", float(t.allocation_share_pct))
        .field("completeness_pct", float(t.completeness_pct))
        .field("primary_data_share_pct", float(t.primary_data_share_pct))
        .field("provisional", t.provisional)
        .field("version", int(t.version))
        .time(t.month_start_ns, NS)
    )  # fmt: skip
    if t.purchased_electricity_kwh is not None:
        point = point.field("purchased_electricity_kwh", float(t.purchased_electricity_kwh))
    if t.market_kgco2e is not None:
        point = point.field("market_kgco2e", float(t.market_kgco2e))
        point = point.field("allocated_market_kgco2e", float(t.allocated_market_kgco2e or 0.0))
    return point.to_line_protocol()


def pathway_line(month_start_ns: int, tco2e: float) -> str:
    return (
        _point(SCOPE3_PATHWAY)
        .field("tco2e", float(tco2e))
        .time(month_start_ns, NS)
        .to_line_protocol()
    )


def alert_line(
    *, at_ns: int, type_: str, supplier: str, site: str, subject: str, event: str,
    incident: str, title: str, detail: str, value: float, baseline: float | None,
    emailed: bool | None = None, message: str | None = None,
) -> str:  # fmt: skip
    """One incident event, for Grafana annotations and the count of messages a site receives:
    ``emailed`` true when it went out as an email of its own, false when the alert budget or
    digest mode sent it to the daily digest (``None``: not recorded); ``message``: the id of
    the email it is part of (spikes on several meters of a site are one)."""
    point = (
        _point(ALERT)
        .tag("type", type_).tag("supplier", supplier).tag("site", site or "-")
        .tag("subject", subject or "-").tag("event", event)
        .field("incident", incident).field("title", title)
        .field("detail", detail).field("value", float(value))
        .field("open", event != "resolved")
        .time(at_ns, NS)
    )  # fmt: skip
    if baseline is not None:
        point = point.field("baseline", float(baseline))
    if emailed is not None:
        point = point.field("emailed", emailed)
    if message is not None:
        point = point.field("message", message)
    return point.to_line_protocol()


# --- reads ------------------------------------------------------------------------------


def _time_range(start_ns: int, end_ns: int, *, inclusive_end: bool = False) -> str:
    return f"time >= {int(start_ns)} AND time {'<=' if inclusive_end else '<'} {int(end_ns)}"


def _tags(**tags: str | None) -> str:
    return "".join(f" AND {quote_ident(k)} = {quote_literal(v)}" for k, v in tags.items() if v)


def _meters_clause(meters: Iterable[str]) -> str:
    ids = sorted(set(meters))
    if not ids:
        return ""
    return " AND (" + " OR ".join(f'"meter" = {quote_literal(m)}' for m in ids) + ")"


def _flags(text: Any) -> tuple[str, ...]:
    return tuple(f for f in (text or "").split(",") if f)


class Store:
    """supplymeter's data in InfluxDB, through the v1-compatible API. A context manager."""

    def __init__(self, client: InfluxClient) -> None:
        self.client = client

    @classmethod
    def from_config(cls, config: Config) -> Store:
        """A store on the configured database (credentials from the environment)."""
        return cls(InfluxClient.from_settings(config.influxdb, config.secrets))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    # --- writes ---------------------------------------------------------------------------

    def write(self, lines: Iterable[str]) -> int:
        """Write line-protocol lines in chunks; returns how many."""
        batch: list[str] = []
        written = 0
        for line in lines:
            batch.append(line)
            if len(batch) >= WRITE_CHUNK:
                written += self.client.write_lines(batch)
                batch = []
        if batch:
            written += self.client.write_lines(batch)
        return written

    def delete_range(self, start_ns: int, end_ns: int) -> None:
        """Remove everything in [start, end] (the demo starts its month clean)."""
        self.client.execute(f"DELETE WHERE {_time_range(start_ns, end_ns, inclusive_end=True)}")

    # --- readings -------------------------------------------------------------------------

    def registers(
        self, supplier: str, start_ns: int, end_ns: int, meters: Iterable[str] | None = None,
        *, site: str | None = None, fields: Iterable[str] | None = None,
    ) -> dict[tuple[str, str], dict[str, list[tuple[int, float]]]]:  # fmt: skip
        """Register readings of a supplier's meters in [start, end], per (site, meter) and
        register field: ``{(site, meter): {"energy_kwh": [(ts_ns, value), ...]}}``.

        ``meters`` (ids) and ``site`` narrow the selection, ``fields`` the registers read (all by
        default); long meter lists are asked for in chunks of :data:`METERS_PER_QUERY`."""
        fields = tuple(fields or (*register_fields(), "energy_export_kwh", *COUNTERS))
        ids = sorted(set(meters or ()))
        chunks = [ids[i : i + METERS_PER_QUERY] for i in range(0, len(ids), METERS_PER_QUERY)]
        out: dict[tuple[str, str], dict[str, list[tuple[int, float]]]] = {}
        for chunk in chunks or [[]]:
            q = (
                f"SELECT {', '.join(quote_ident(f) for f in fields)} FROM {quote_ident(READING)} "
                f"WHERE {_time_range(start_ns, end_ns, inclusive_end=True)}"
                f"{_tags(supplier=supplier, site=site)}{_meters_clause(chunk)} GROUP BY site, meter"
            )
            for s in self.client.query(q):
                by_field = out.setdefault((s.tags["site"], s.tags["meter"]), {})
                values = s.values
                for i, name in enumerate(fields, start=1):
                    points = [(row[0], float(row[i])) for row in values if row[i] is not None]
                    if points:
                        by_field.setdefault(name, []).extend(points)
        return out

    def register_edges(
        self, supplier: str, field: str, before_ns: int, after_ns: int, meters: Iterable[str]
    ) -> dict[tuple[str, str], tuple[int | None, int | None]]:
        """Per (site, meter): the time of the last reading of ``field`` before ``before_ns``
        and of the first after ``after_ns`` (``None`` where there is none)."""
        where = f"{_tags(supplier=supplier)}{_meters_clause(meters)}"
        out: dict[tuple[str, str], list[int | None]] = {}
        for i, (fn, cond) in enumerate(
            (("last", f"time < {int(before_ns)}"), ("first", f"time > {int(after_ns)}"))
        ):
            q = (f"SELECT {fn}({quote_ident(field)}) FROM {quote_ident(READING)} "
                 f"WHERE {cond}{where} GROUP BY site, meter")  # fmt: skip
            for s in self.client.query(q):
                key = (s.tags["site"], s.tags["meter"])
                out.setdefault(key, [None, None])[i] = int(s.values[0][0])
        return {k: (v[0], v[1]) for k, v in out.items()}

    def boundary_reads(
        self, supplier: str, site: str, field: str, at_ns: int, window_ns: int
    ) -> dict[tuple[str, str], tuple[tuple[int, float] | None, tuple[int, float] | None]]:
        """Per (site, meter): the last reading of ``field`` at or before ``at_ns`` and the first
        after it, each within ``window_ns`` (``None`` where there is none) — what a month's
        register at its boundary is interpolated from."""
        out: dict[tuple[str, str], list[tuple[int, float] | None]] = {}
        for i, (fn, cond) in enumerate((
            ("last", f"time <= {int(at_ns)} AND time > {int(at_ns - window_ns)}"),
            ("first", f"time > {int(at_ns)} AND time <= {int(at_ns + window_ns)}"),
        )):  # fmt: skip
            q = (f"SELECT {fn}({quote_ident(field)}) FROM {quote_ident(READING)} "
                 f"WHERE {cond}{_tags(supplier=supplier, site=site)} "
                 "GROUP BY site, meter")  # fmt: skip
            for s in self.client.query(q):
                row = s.values[0]
                if row[1] is not None:
                    key = (s.tags["site"], s.tags["meter"])
                    out.setdefault(key, [None, None])[i] = (int(row[0]), float(row[1]))
        return {k: (v[0], v[1]) for k, v in out.items()}

    def readings_window(
        self, start_ns: int, end_ns: int
    ) -> Iterator[tuple[MeterKey, int, float | None, float | None]]:
        """Every meter's (key, ts_ns, register, power_kw) in [start, end)."""
        fields = (*register_fields(), "power_kw")
        q = (f"SELECT {', '.join(quote_ident(f) for f in fields)} FROM {quote_ident(READING)} "
             f"WHERE {_time_range(start_ns, end_ns)} GROUP BY supplier, site, meter")  # fmt: skip
        for s in self.client.query(q):
            key = (s.tags["supplier"], s.tags["site"], s.tags["meter"])
            for row in s.values:
                register = next((v for v in row[1:-1] if v is not None), None)
                yield key, int(row[0]), register, row[-1]

    def meter_readings(
        self, key: MeterKey, start_ns: int, end_ns: int, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """One meter's stored readings in [start, end), newest first, at most ``limit``: every
        field as stored (``time`` is the device time, epoch ns)."""
        supplier, site, meter = key
        q = (f"SELECT * FROM {quote_ident(READING)} WHERE {_time_range(start_ns, end_ns)}"
             f"{_tags(supplier=supplier, site=site, meter=meter)} "
             f"ORDER BY time DESC LIMIT {int(limit)}")  # fmt: skip
        rows = [row for s in self.client.query(q) for row in s.rows()]
        return [{k: v for k, v in row.items() if v is not None and k not in (
            "supplier", "site", "meter")} for row in rows]  # fmt: skip

    def rejections(
        self, start_ns: int, end_ns: int, *, topic: str | None = None,
        reasons: Iterable[str] = (), limit: int = 10_000,
    ) -> list[Rejection]:  # fmt: skip
        """Rejected messages received in [start, end), newest first, at most ``limit``; only
        those on ``topic`` and with one of ``reasons`` when given."""
        where = _time_range(start_ns, end_ns)
        if topic is not None:
            where += f" AND topic = {quote_literal(topic)}"
        codes = list(reasons)
        if codes:
            where += " AND (" + " OR ".join(f"reason = {quote_literal(c)}" for c in codes) + ")"
        q = (f"SELECT * FROM {quote_ident(REJECTED)} WHERE {where} "
             f"ORDER BY time DESC LIMIT {int(limit)}")  # fmt: skip
        return [
            Rejection(code=row.get("reason") or "", detail=row.get("detail") or "",
                      topic=row.get("topic") or "", received_ns=int(row["time"]),
                      supplier=row.get("supplier"), payload_bytes=int(
                          row.get("payload_bytes") or 0), excerpt=row.get("excerpt") or "")
            for s in self.client.query(q) for row in s.rows()
        ]  # fmt: skip

    def register_samples(
        self, start_ns: int, end_ns: int, step_ns: int
    ) -> Iterator[tuple[MeterKey, list[int], list[float]]]:
        """Every meter's first register reading in each ``step_ns`` bucket of [start, end),
        dated at the bucket's start (exact for meters read on the bucket grid; otherwise late by
        less than one reading interval) — decimated history for the alert baselines, one
        value per slot instead of every reading."""
        fields = register_fields()
        q = (f"SELECT {', '.join(f'first({quote_ident(f)})' for f in fields)} "
             f"FROM {quote_ident(READING)} WHERE {_time_range(start_ns, end_ns)} "
             f"GROUP BY time({step_ns // 10**9}s), supplier, site, meter fill(none)")  # fmt: skip
        for s in self.client.query(q):
            key = (s.tags["supplier"], s.tags["site"], s.tags["meter"])
            ts, registers = [], []
            for row in s.values:
                register = next((v for v in row[1:] if v is not None), None)
                if register is not None:
                    ts.append(int(row[0]))
                    registers.append(float(register))
            yield key, ts, registers

    def count_readings(self, start_ns: int, end_ns: int) -> int:
        """Stored readings with a register in [start, end]."""
        fields = register_fields()
        q = (f"SELECT {', '.join(f'count({quote_ident(f)})' for f in fields)} "
             f"FROM {quote_ident(READING)} "
             f"WHERE {_time_range(start_ns, end_ns, inclusive_end=True)}")  # fmt: skip
        series = self.client.query(q)
        return int(sum(n or 0 for n in series[0].values[0][1:])) if series else 0

    def arrivals(self, after_ns: int, until_ns: int) -> dict[MeterKey, set[int]]:
        """Meter-hours that received late readings with receipt time in (after, until]."""
        q = (f"SELECT hour_ns FROM {quote_ident(READING_ARRIVAL)} WHERE time > {int(after_ns)} "
             f"AND time <= {int(until_ns)} GROUP BY supplier, site, meter")  # fmt: skip
        out: dict[MeterKey, set[int]] = defaultdict(set)
        for s in self.client.query(q):
            key = (s.tags["supplier"], s.tags["site"], s.tags["meter"])
            out[key].update(int(row[1]) for row in s.values)
        return dict(out)

    def gateway_states(self, until_ns: int) -> list[tuple[str, str, str, int]]:
        """(supplier, site, last state, its receipt ns) of every site's gateway."""
        q = (f"SELECT last(state) FROM {quote_ident(GATEWAY_STATUS)} "
             f"WHERE time <= {int(until_ns)} GROUP BY supplier, site")  # fmt: skip
        return [
            (s.tags["supplier"], s.tags["site"], s.values[0][1], int(s.values[0][0]))
            for s in self.client.query(q)
        ]

    def reject_counts(self, after_ns: int, until_ns: int) -> dict[str, int]:
        """Rejected messages per supplier with receipt time in (after, until]."""
        q = (f"SELECT count(count) FROM {quote_ident(REJECTED)} "
             f"WHERE time > {int(after_ns)} AND time <= {int(until_ns)} "
             "GROUP BY supplier")  # fmt: skip
        return {
            s.tags["supplier"]: int(s.values[0][1] or 0)
            for s in self.client.query(q)
            if s.tags.get("supplier")
        }

    def quality_issues(self, start_ns: int, end_ns: int) -> list[tuple[str, MeterKey, int, str]]:
        """(code, meter, time, detail) of the data-quality issues raised in [start, end)."""
        q = (f"SELECT detail FROM {quote_ident(QUALITY_ISSUE)} "
             f"WHERE {_time_range(start_ns, end_ns)} "
             "GROUP BY code, supplier, site, meter")  # fmt: skip
        return [
            (s.tags["code"], (s.tags["supplier"], s.tags["site"], s.tags["meter"]), int(row[0]),
             str(row[1]))
            for s in self.client.query(q) for row in s.values
        ]  # fmt: skip

    def alert_openings(
        self, start_ns: int, end_ns: int
    ) -> list[tuple[int, str, str, str, str, bool | None, str]]:
        """Incidents opened in [start, end) — what the sites were told, of every kind: (time
        [ns], type, supplier, site, meter or gateway, whether it went out as its own email
        (``False``: to the digest) and the id of the message it was part of — ``None`` and
        the incident's id for events written before these were recorded)."""
        q = (f"SELECT \"incident\", \"emailed\", \"message\" FROM {quote_ident(ALERT)} "
             f"WHERE \"event\" = 'open' AND {_time_range(start_ns, end_ns)} "
             "GROUP BY \"type\", \"supplier\", \"site\", \"subject\"")  # fmt: skip
        return [
            (int(row[0]), s.tags["type"], s.tags["supplier"],
             "" if s.tags["site"] == "-" else s.tags["site"],
             "" if s.tags["subject"] == "-" else s.tags["subject"], row[2],
             str(row[3] or row[1]))
            for s in self.client.query(q) for row in s.values
        ]  # fmt: skip

    def latest_readings(
        self, start_ns: int, end_ns: int, *, supplier: str | None = None,
        site: str | None = None,
    ) -> dict[MeterKey, tuple[int, float | None]]:  # fmt: skip
        """Each meter's last reading in [start, end): (its device time [ns], its power
        [kW], ``None`` when the meter reports none) — what the console's *Now* page shows."""
        out: dict[MeterKey, tuple[int, float | None]] = {}
        power: dict[MeterKey, tuple[int, float]] = {}
        for name in (*register_fields(), "power_kw"):
            q = (f"SELECT last({quote_ident(name)}) FROM {quote_ident(READING)} "
                 f"WHERE {_time_range(start_ns, end_ns)}{_tags(supplier=supplier, site=site)} "
                 "GROUP BY supplier, site, meter")  # fmt: skip
            for s in self.client.query(q):
                key = (s.tags["supplier"], s.tags["site"], s.tags["meter"])
                ts, value = int(s.values[0][0]), s.values[0][1]
                if name == "power_kw":
                    power[key] = (ts, float(value))
                elif key not in out or ts > out[key][0]:
                    out[key] = (ts, None)
        for key, (ts, kw) in power.items():
            seen = out.get(key, (ts, None))[0]
            out[key] = (max(seen, ts), kw if ts >= seen else None)
        return out

    def alert_history(
        self, start_ns: int, end_ns: int, *, supplier: str | None = None, limit: int = 500,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Incident events (open, reminder, resolved) told in [start, end), newest first:
        ``time``, ``type``, ``supplier``, ``site``, ``subject``, ``event``, ``incident``,
        ``title``, ``detail``, ``value``, ``baseline``."""
        q = (f"SELECT * FROM {quote_ident(ALERT)} WHERE {_time_range(start_ns, end_ns)}"
             f"{_tags(supplier=supplier)} ORDER BY time DESC LIMIT {int(limit)}")  # fmt: skip
        rows = [row for s in self.client.query(q) for row in s.rows()]
        for row in rows:
            row["site"] = "" if row.get("site") == "-" else row.get("site")
            row["subject"] = "" if row.get("subject") == "-" else row.get("subject")
        return rows

    # --- hourly rollups -------------------------------------------------------------------

    def hourly_consumption(
        self, start_ns: int, end_ns: int, *, supplier: str | None = None,
        site: str | None = None, meter: str | None = None,
    ) -> tuple[list[HourlyConsumption], dict[MeterKey, float]]:  # fmt: skip
        """Hourly consumption in [start, end), and each grid meter's exported kWh over it."""
        q = (f"SELECT * FROM {quote_ident(HOURLY_CONSUMPTION)} "
             f"WHERE {_time_range(start_ns, end_ns)}"
             f"{_tags(supplier=supplier, site=site, meter=meter)} "
             "GROUP BY supplier, site, meter, carrier")  # fmt: skip
        hours: list[HourlyConsumption] = []
        exported: dict[MeterKey, float] = {}
        for s in self.client.query(q):
            key = (s.tags["supplier"], s.tags["site"], s.tags["meter"])
            c = CARRIERS.get(s.tags["carrier"])
            if c is None:
                continue
            col = {name: i for i, name in enumerate(s.columns)}
            t, value_i, est_i = col["time"], col.get(c.register_field), col.get(c.estimated_field)
            names = ("coverage", "readings", "flags", "energy_export_kwh")
            cov_i, n_i, flags_i, exp_i = (col.get(k) for k in names)
            supplier_, site_, meter_ = key
            for row in s.values:
                if exp_i is not None and row[exp_i] is not None:
                    exported[key] = exported.get(key, 0.0) + float(row[exp_i])
                value = row[value_i] if value_i is not None else None
                if value is None:
                    continue
                hours.append(HourlyConsumption(
                    supplier_, site_, meter_, c.name, c.unit, int(row[t]), float(value),
                    float(row[cov_i]) if cov_i is not None else 1.0,
                    int(row[n_i] or 0) if n_i is not None else 0,
                    _flags(row[flags_i]) if flags_i is not None else (),
                    float(row[est_i] or 0.0) if est_i is not None else 0.0,
                ))  # fmt: skip
        return hours, exported

    def hourly_exports(
        self, start_ns: int, end_ns: int, *, supplier: str, site: str
    ) -> dict[int, float]:
        """A site's grid export per hour start in [start, end). [kWh]"""
        q = (f'SELECT "energy_export_kwh" FROM {quote_ident(HOURLY_CONSUMPTION)} '
             f"WHERE {_time_range(start_ns, end_ns)}"
             f"{_tags(supplier=supplier, site=site)}")  # fmt: skip
        return {int(r[0]): float(r[1]) for s in self.client.query(q) for r in s.values
                if r[1] is not None}  # fmt: skip

    def site_hours(
        self, start_ns: int, end_ns: int, *, supplier: str | None = None, site: str | None = None
    ) -> list[SiteHour]:
        """Stored site-hours in [start, end)."""
        q = (f"SELECT * FROM {quote_ident(SITE_HOURLY)} WHERE {_time_range(start_ns, end_ns)}"
             f"{_tags(supplier=supplier, site=site)} GROUP BY supplier, site")  # fmt: skip
        out = []
        for s in self.client.query(q):
            for r in s.rows():
                out.append(SiteHour(
                    s.tags["supplier"], s.tags["site"], int(r["time"]),
                    float(r["consumption_kwh"] or 0.0), float(r["purchased_kwh"] or 0.0),
                    float(r.get("estimated_kwh") or 0.0), bool(r.get("inferred")),
                    _opt(r.get("grid_import_kwh")), _opt(r.get("grid_export_kwh")),
                    _opt(r.get("pv_generation_kwh")), float(r.get("pv_self_kwh") or 0.0),
                    _opt(r.get("unmetered_kwh")), _opt(r.get("location_kgco2e")),
                    str(r.get("factor_id") or ""), float(r.get("factor_value") or 0.0),
                    bool(r.get("provisional")),
                ))  # fmt: skip
        return out

    def site_totals(
        self, start_ns: int, end_ns: int, *, supplier: str, site: str | None = None
    ) -> dict[tuple[str, str], SiteTotals]:
        """Each site's site-hours in [start, end) summed by InfluxDB, per (supplier, site)."""
        where = f"WHERE {_time_range(start_ns, end_ns)}{_tags(supplier=supplier, site=site)}"
        sh = quote_ident(SITE_HOURLY)
        sums = ("consumption_kwh", "purchased_kwh", "estimated_kwh", "grid_import_kwh",
                "grid_export_kwh", "pv_generation_kwh", "pv_self_kwh", "unmetered_kwh",
                "location_kgco2e")  # fmt: skip
        fields: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)

        def collect(q: str, names: tuple[str, ...]) -> None:
            for series in self.client.query(q):
                row = series.values[0]
                key = (series.tags["supplier"], series.tags["site"])
                for i, name in enumerate(names, start=1):
                    fields[key][name] = row[i]

        group = "GROUP BY supplier, site"
        collect(f"SELECT {', '.join(f'sum({quote_ident(f)})' for f in sums)}, "
                f'count("purchased_kwh"), count("location_kgco2e"), max("factor_value") '
                f"FROM {sh} {where} {group}",
                (*sums, "hours", "emission_hours", "factor_value"))  # fmt: skip
        collect(f'SELECT count("purchased_kwh") FROM {sh} {where} AND "inferred" = true {group}',
                ("inferred_hours",))  # fmt: skip
        collect(f'SELECT count("purchased_kwh") FROM {sh} {where} AND "provisional" = true '
                f"{group}", ("provisional_hours",))  # fmt: skip
        ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        for series in self.client.query(f'SELECT distinct("factor_id") FROM {sh} {where} {group}'):
            ids[(series.tags["supplier"], series.tags["site"])].update(
                str(r[1]) for r in series.values if r[1]
            )
        return {key: SiteTotals(
            hours=int(f.get("hours") or 0),
            consumption_kwh=float(f.get("consumption_kwh") or 0.0),
            purchased_kwh=float(f.get("purchased_kwh") or 0.0),
            estimated_kwh=float(f.get("estimated_kwh") or 0.0),
            inferred_hours=int(f.get("inferred_hours") or 0),
            grid_import_kwh=_opt(f.get("grid_import_kwh")),
            grid_export_kwh=_opt(f.get("grid_export_kwh")),
            pv_generation_kwh=_opt(f.get("pv_generation_kwh")),
            pv_self_kwh=float(f.get("pv_self_kwh") or 0.0),
            unmetered_kwh=_opt(f.get("unmetered_kwh")),
            location_kgco2e=float(f.get("location_kgco2e") or 0.0),
            emission_hours=int(f.get("emission_hours") or 0),
            factor_ids=tuple(sorted(ids.get(key, ()))),
            factor_value=_opt(f.get("factor_value")),
            provisional_hours=int(f.get("provisional_hours") or 0),
        ) for key, f in fields.items()}  # fmt: skip

    def stored_factors(
        self, start_ns: int, end_ns: int
    ) -> dict[tuple[str, ...], tuple[set[str], set[float]]]:
        """The factor ids and values the stored hours in [start, end) were computed with:
        per (supplier, site, meter) of ``hourly_emissions`` and per (supplier, site) of
        ``site_hourly`` — what lineage checks compare with today's resolution."""
        out: dict[tuple[str, ...], tuple[set[str], set[float]]] = {}
        where = f"WHERE {_time_range(start_ns, end_ns)}"
        for measurement, group in ((HOURLY_EMISSIONS, ("supplier", "site", "meter")),
                                   (SITE_HOURLY, ("supplier", "site"))):  # fmt: skip
            m = quote_ident(measurement)
            for i, fname in enumerate(("factor_id", "factor_value")):
                q = f'SELECT distinct("{fname}") FROM {m} {where} GROUP BY {", ".join(group)}'
                for series in self.client.query(q):
                    key = tuple(series.tags[g] for g in group)
                    entry = out.setdefault(key, (set(), set()))
                    entry[i].update(  # type: ignore[attr-defined]
                        (str(r[1]) if i == 0 else float(r[1])) for r in series.values
                        if r[1] is not None)  # fmt: skip
        return out

    def hours_not_of(
        self, key: MeterKey, ranges: list[tuple[int | None, int | None, str]]
    ) -> set[int]:
        """Hour starts (ns) of a meter's stored consumption hours whose ``lineage`` is not the
        one given for their range ``[start, end)`` (``None``: open). An hour written without
        a lineage counts as computed before any event: right in the first range, stale in
        the others."""
        tags = " AND ".join(
            f'"{k}" = {quote_literal(v)}'
            for k, v in zip(("supplier", "site", "meter"), key, strict=True)
        )

        def select(what: str, start: int | None, end: int | None, extra: str = "") -> list:
            conds = [
                tags,
                *([f"time >= {start}"] if start is not None else []),
                *([f"time < {end}"] if end is not None else []),
                *([extra] if extra else []),
            ]
            q = (f"SELECT {what} FROM {quote_ident(HOURLY_CONSUMPTION)} "
                 f"WHERE {' AND '.join(conds)}")  # fmt: skip
            return [r for s in self.client.query(q, epoch="ns") for r in s.values]

        def times(start: int | None, end: int | None, extra: str = "") -> set[int]:
            return {int(r[0]) for r in select('"coverage"', start, end, extra)}

        def count(start: int | None, end: int | None, extra: str = "") -> int:
            # An aggregate without an upper time bound stops at now(): hours written ahead
            # of the clock (a simulated month) would not be counted.
            rows = select('count("coverage")', start, LAST_NS if end is None else end, extra)
            return int(rows[0][1]) if rows else 0

        out: set[int] = set()
        for start, end, lineage in ranges:
            if start is None:
                out |= times(start, end, f'"lineage" != {quote_literal(lineage)} AND '
                                         "\"lineage\" != ''")  # fmt: skip
                continue
            same = f'"lineage" = {quote_literal(lineage)}'
            # Counted first: at every start, a meter whose hours are right costs two counts,
            # not a read of every hour since its event.
            if count(start, end) != count(start, end, same):
                out |= times(start, end) - times(start, end, same)
        return out

    def meters_with_hours(self, start_ns: int, end_ns: int) -> set[MeterKey]:
        """Meters with stored consumption hours in [start, end)."""
        q = (f'SELECT count("coverage") FROM {quote_ident(HOURLY_CONSUMPTION)} '
             f"WHERE {_time_range(start_ns, end_ns)} GROUP BY supplier, site, meter")  # fmt: skip
        return {(s.tags["supplier"], s.tags["site"], s.tags["meter"])
                for s in self.client.query(q)}  # fmt: skip

    def first_hour(self, measurement: str = HOURLY_CONSUMPTION) -> int | None:
        """The earliest stored hour of consumption or of site-hours (``None``: none)."""
        field = "coverage" if measurement == HOURLY_CONSUMPTION else "purchased_kwh"
        q = f'SELECT first("{field}") FROM {quote_ident(measurement)}'
        for series in self.client.query(q):
            return int(series.values[0][0])
        return None

    def hourly_emissions(
        self, start_ns: int, end_ns: int, *, supplier: str | None = None,
        site: str | None = None, meter: str | None = None,
    ) -> list[HourlyEmissions]:  # fmt: skip
        """Stored hourly emissions in [start, end)."""
        q = (f"SELECT * FROM {quote_ident(HOURLY_EMISSIONS)} "
             f"WHERE {_time_range(start_ns, end_ns)}"
             f"{_tags(supplier=supplier, site=site, meter=meter)} "
             "GROUP BY supplier, site, meter, carrier")  # fmt: skip
        out = []
        for s in self.client.query(q):
            supplier_, site_, meter_ = s.tags["supplier"], s.tags["site"], s.tags["meter"]
            carrier = s.tags["carrier"]
            col = {name: i for i, name in enumerate(s.columns)}
            t, e_i, f_i, v_i, p_i = (col["time"], col["emissions_kgco2e"], col.get("factor_id"),
                                     col["factor_value"], col["provisional"])  # fmt: skip
            for row in s.values:
                out.append(HourlyEmissions(
                    supplier_, site_, meter_, carrier, int(row[t]), float(row[e_i]),
                    str(row[f_i] or "") if f_i is not None else "", float(row[v_i]),
                    bool(row[p_i]),
                ))  # fmt: skip
        return out

    def meter_totals(
        self, start_ns: int, end_ns: int, *, supplier: str, site: str | None = None
    ) -> dict[MeterKey, MeterTotals]:
        """Each meter's rollups and stored emissions in [start, end) summed by InfluxDB: a
        handful of aggregate queries, one row per meter each, whatever the period's length
        (the same sums as :meth:`MeterTotals.of` over the hourly records)."""
        where = f"WHERE {_time_range(start_ns, end_ns)}{_tags(supplier=supplier, site=site)}"
        group = "GROUP BY supplier, site, meter"
        hc, he = quote_ident(HOURLY_CONSUMPTION), quote_ident(HOURLY_EMISSIONS)
        fields: dict[str, dict[str, Any]] = defaultdict(dict)

        def collect(q: str, names: tuple[str, ...]) -> None:
            for series in self.client.query(q):
                key = (series.tags["supplier"], series.tags["site"], series.tags["meter"])
                row = series.values[0]
                for i, name in enumerate(names, start=1):
                    fields[key][name] = row[i]  # type: ignore[index]

        registers = register_fields()
        estimated = tuple(dict.fromkeys(c.estimated_field for c in CARRIERS.values()))
        sums = (*registers, *estimated, "energy_export_kwh")
        collect(f"SELECT {', '.join(f'sum({quote_ident(f)})' for f in sums)}, "
                f'count("coverage") FROM {hc} {where} {group}', (*sums, "hours"))  # fmt: skip
        collect(f'SELECT count("coverage") FROM {hc} {where} AND "coverage" >= {1 - 1e-9!r} '
                f"{group}", ("hours_measured",))  # fmt: skip
        collect(f'SELECT sum("emissions_kgco2e"), count("emissions_kgco2e") FROM {he} {where} '
                f"{group}", ("emissions", "emission_hours"))  # fmt: skip
        collect(f'SELECT count("emissions_kgco2e") FROM {he} {where} AND "provisional" = true '
                f"{group}", ("provisional_hours",))  # fmt: skip
        flags: dict[MeterKey, Counter[str]] = defaultdict(Counter)
        events: dict[MeterKey, Counter[str]] = defaultdict(Counter)
        for series in self.client.query(f'SELECT "flags" FROM {hc} {where} AND "flags" != \'\' '
                                        f"{group}"):  # fmt: skip
            key = (series.tags["supplier"], series.tags["site"], series.tags["meter"])
            previous: tuple[int, tuple[str, ...]] = (0, ())
            for row in series.values:
                labels = _flags(row[1])
                flags[key].update(labels)
                t = int(row[0])
                follows = t - previous[0] == HOUR_NS
                events[key].update(x for x in set(labels)
                                   if not (follows and x in previous[1]))  # fmt: skip
                previous = (t, labels)
        factor_ids: dict[MeterKey, set[str]] = defaultdict(set)
        for series in self.client.query(f'SELECT distinct("factor_id") FROM {he} {where} {group}'):
            key = (series.tags["supplier"], series.tags["site"], series.tags["meter"])
            factor_ids[key].update(str(row[1]) for row in series.values if row[1])
        out = {}
        for key, f in fields.items():
            consumption = next((f[r] for r in registers if f.get(r) is not None), None)
            est = next((f[e] for e in estimated if f.get(e) is not None), None)
            out[key] = MeterTotals(
                consumption=float(consumption or 0.0), estimated=float(est or 0.0),
                hours=int(f.get("hours") or 0), hours_measured=int(f.get("hours_measured") or 0),
                flags=flags.get(key, Counter()), emissions_kgco2e=float(f.get("emissions") or 0.0),
                emission_hours=int(f.get("emission_hours") or 0),
                factor_ids=tuple(sorted(factor_ids.get(key, ()))),
                provisional_hours=int(f.get("provisional_hours") or 0),
                exported_kwh=float(f.get("energy_export_kwh") or 0.0),
                events=events.get(key, Counter()),
            )  # fmt: skip
        return out

    def product_totals(
        self, start_ns: int, end_ns: int, *, supplier: str, site: str | None = None
    ) -> dict[tuple[str, str], ProductTotals]:
        """Each product's counted pieces in [start, end), per (site, product)."""
        q = (f'SELECT sum("units"), sum("estimated_units"), count("units") '
             f"FROM {quote_ident(HOURLY_PRODUCTION)} WHERE {_time_range(start_ns, end_ns)}"
             f"{_tags(supplier=supplier, site=site)} GROUP BY site, product")  # fmt: skip
        return {
            (s.tags["site"], s.tags["product"]): ProductTotals(
                float(s.values[0][1] or 0.0), float(s.values[0][2] or 0.0),
                int(s.values[0][3] or 0))
            for s in self.client.query(q)
        }  # fmt: skip

    def hourly_production(
        self, start_ns: int, end_ns: int, *, supplier: str, site: str | None = None
    ) -> dict[tuple[str, str], list[tuple[int, float]]]:
        """(hour start ns, pieces) of each product in [start, end), per (site, product)."""
        q = (f'SELECT "units" FROM {quote_ident(HOURLY_PRODUCTION)} '
             f"WHERE {_time_range(start_ns, end_ns)}{_tags(supplier=supplier, site=site)} "
             "GROUP BY site, product")  # fmt: skip
        return {(s.tags["site"], s.tags["product"]): [(int(r[0]), float(r[1])) for r in s.values]
                for s in self.client.query(q)}  # fmt: skip

    def emissions_by_supplier(self, start_ns: int, end_ns: int) -> dict[str, float]:
        """Location-based emissions per supplier over [start, end): the sites' purchased
        electricity (site-hours) and every other carrier's meters. [kgCO2e]"""
        where = f"WHERE {_time_range(start_ns, end_ns)}"
        out: dict[str, float] = defaultdict(float)
        for q in (f'SELECT sum("emissions_kgco2e") FROM {quote_ident(HOURLY_EMISSIONS)} {where} '
                  "AND \"carrier\" != 'electricity' GROUP BY supplier",
                  f'SELECT sum("location_kgco2e") FROM {quote_ident(SITE_HOURLY)} {where} '
                  "GROUP BY supplier"):  # fmt: skip
            for s in self.client.query(q):
                out[s.tags["supplier"]] += float(s.values[0][1] or 0.0)
        return dict(out)

    def monthly_totals(self, start_ns: int, end_ns: int) -> list[MonthlyTotals]:
        """``scope3_monthly`` points in [start, end)."""
        q = (f"SELECT * FROM {quote_ident(SCOPE3_MONTHLY)} WHERE {_time_range(start_ns, end_ns)} "
             "GROUP BY supplier")  # fmt: skip
        out = []
        for s in self.client.query(q):
            for row in s.rows():
                out.append(MonthlyTotals(
                    supplier=s.tags["supplier"], month_start_ns=int(row["time"]),
                    location_kgco2e=float(row["location_kgco2e"]),
                    market_kgco2e=_opt(row.get("market_kgco2e")),
                    allocated_kgco2e=float(row["allocated_kgco2e"]),
                    allocated_market_kgco2e=_opt(row.get("allocated_market_kgco2e")),
                    allocation_share_pct=_pct(row, "allocation_share_pct", "share"),
                    completeness_pct=_pct(row, "completeness_pct", "completeness"),
                    primary_data_share_pct=_pct(row, "primary_data_share_pct",
                                                "primary_data_share"),
                    purchased_electricity_kwh=_opt(row.get("purchased_electricity_kwh")),
                    provisional=bool(row["provisional"]), version=int(row.get("version") or 0),
                ))  # fmt: skip
        return out

    def collector_stats(self, start_ns: int, end_ns: int) -> dict[str, tuple[int, dict[str, Any]]]:
        """Each collector's last ``collector_stats`` point in [start, end): (time, fields)."""
        q = (f"SELECT last(*) FROM {quote_ident(COLLECTOR_STATS)} "
             f"WHERE {_time_range(start_ns, end_ns)} GROUP BY collector")  # fmt: skip
        out = {}
        for s in self.client.query(q):
            row = dict(zip(s.columns, s.values[-1], strict=True))
            # last(*) returns the newest value of each field; its time column is the query's
            # start, so the newest point's own time comes from a second look.
            last = self.client.query(
                f'SELECT last("messages") FROM {quote_ident(COLLECTOR_STATS)} '
                f"WHERE {_time_range(start_ns, end_ns)}"
                f"{_tags(collector=s.tags['collector'])}"
            )
            ts = int(last[0].values[0][0]) if last else int(row["time"])
            out[s.tags["collector"]] = (ts, {k.removeprefix("last_"): v for k, v in row.items()})
        return out

    def legacy_emission_series(self) -> bool:
        """Whether ``hourly_emissions`` still has series tagged with ``factor_id`` (written
        before the factor id became a field): they would be summed beside the new points."""
        q = f"SHOW TAG KEYS FROM {quote_ident(HOURLY_EMISSIONS)}"
        return any(row[0] == "factor_id" for s in self.client.query(q) for row in s.values)

    def panel_query(self, influxql: str) -> list[Series]:
        """Run a dashboard panel's query as Grafana would (macros already substituted).

        Panel queries are part of the dashboards' JSON (``dashboards/model.py``): Grafana runs
        them, so they are InfluxQL by nature — the one place outside this module that spells
        it, built from the measurement names here."""
        return self.client.query(influxql)

    # --- DataFrames for analysts, the export and renders ----------------------------------

    def hourly_frame(
        self, *, start: datetime | str, end: datetime | str, supplier: str | None = None,
        site: str | None = None, meter: str | None = None, tz: str = "Asia/Taipei",
    ) -> pd.DataFrame:  # fmt: skip
        """Hourly consumption and emissions as a DataFrame, one row per meter-hour.

        ``start``/``end`` are datetimes or ISO strings (read in ``tz`` without an offset).
        Columns: ``hour_start`` (UTC), supplier, site, meter, carrier, unit, ``consumption``,
        ``measured``, ``estimated`` (in ``unit``), ``coverage``, ``flags``,
        ``metered_kgco2e``, ``factor_id``, ``provisional``.
        """
        import pandas as pd

        start_ns, end_ns = _ns(start, tz), _ns(end, tz)
        hours, _ = self.hourly_consumption(start_ns, end_ns, supplier=supplier, site=site,
                                           meter=meter)  # fmt: skip
        emissions = {
            (e.supplier, e.site, e.meter, e.hour_start_ns): e
            for e in self.hourly_emissions(
                start_ns, end_ns, supplier=supplier, site=site, meter=meter
            )
        }
        rows = []
        for h in hours:
            e = emissions.get((h.supplier, h.site, h.meter, h.hour_start_ns))
            rows.append({
                "hour_start": pd.Timestamp(h.hour_start_ns, unit="ns", tz="UTC"),
                "supplier": h.supplier, "site": h.site, "meter": h.meter,
                "carrier": h.carrier, "unit": h.unit, "consumption": h.consumption,
                "measured": h.measured_consumption, "estimated": h.estimated_consumption,
                "coverage": h.coverage, "flags": ",".join(h.flags),
                "metered_kgco2e": e.emissions_kgco2e if e else math.nan,
                "factor_id": e.factor_id if e else "",
                "provisional": e.provisional if e else False,
            })  # fmt: skip
        columns = ["hour_start", "supplier", "site", "meter", "carrier", "unit", "consumption",
                   "measured", "estimated", "coverage", "flags", "metered_kgco2e",
                   "factor_id", "provisional"]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

    def monthly_frame(
        self, *, start: datetime | str, end: datetime | str, supplier: str | None = None,
        tz: str = "Asia/Taipei",
    ) -> pd.DataFrame:  # fmt: skip
        """Monthly consumption and emissions per meter (calendar months in ``tz``), summed
        from the hourly rollups: columns ``month``, supplier, site, meter, carrier, unit,
        ``consumption``, ``measured``, ``estimated``, ``metered_kgco2e`` (consumption × factor,
        before a site's PV self-consumption: the meter's, not the site's scope 2)."""
        hourly = self.hourly_frame(start=start, end=end, supplier=supplier, tz=tz)
        if hourly.empty:
            hourly["month"] = []
        else:
            local = hourly["hour_start"].dt.tz_convert(ZoneInfo(tz))
            hourly["month"] = local.dt.strftime("%Y-%m")
        keys = ["month", "supplier", "site", "meter", "carrier", "unit"]
        sums = ["consumption", "measured", "estimated", "metered_kgco2e"]
        return hourly.groupby(keys, as_index=False)[sums].sum(min_count=1)


def _pct(row: dict[str, Any], name: str, fraction: str) -> float:
    """A percent field, or the fraction field points written before shares were percent."""
    if row.get(name) is not None:
        return float(row[name])
    return 100 * float(row.get(fraction) or 0.0)


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _ns(value: datetime | str, tz: str) -> int:
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=ZoneInfo(tz))
    return datetime_to_ns(ts)
