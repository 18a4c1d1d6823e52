"""What each console page shows, read through the store and the operations database and
scoped to what the signed-in user may see. Every function takes the user and returns only
that user's suppliers' data: scoping happens here, in every read, never only in templates."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from collector.payload import readings_topic
from processing.accounting.versions import versions
from processing.alerts import Incident, IncidentBook
from processing.jobs import FALL_CODE
from supplymeter.config import Config, MeterRef, Registry
from supplymeter.operations import Operations, User
from supplymeter.records import ns_to_datetime
from supplymeter.store import Store

HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS
USUAL_WEEKS = 4
"""Today's energy is compared with the same hours of the same weekday over this many weeks —
the comparable-day idea of the alert detector's envelope, at the hourly resolution the
console reads."""
UNKNOWN = ("unknown_meter", "unknown_gateway", "unknown_supplier", "unknown_site")


def visible_meters(registry: Registry, user: User) -> list[MeterRef]:
    """The meters ``user`` may see, in a stable order (supplier, site, meter)."""
    return sorted((r for r in registry.meters() if user.sees(r.supplier.id)), key=lambda r: r.key)


def find_meter(
    registry: Registry, user: User, supplier: str, site: str, meter: str
) -> MeterRef | None:
    """A meter the user may see, else ``None`` (the page says 404 either way: the answer
    does not tell a supplier whether another supplier's meter exists)."""
    if not user.sees(supplier):
        return None
    return registry.meter(supplier, site, meter)


def site_visible(registry: Registry, user: User, supplier: str, site: str) -> bool:
    return user.sees(supplier) and registry.site(supplier, site) is not None


# --- Now -----------------------------------------------------------------------------------------


@dataclass
class MeterNow:
    id: str
    key: tuple[str, str, str]
    carrier: str
    unit: str
    last_ns: int | None
    power_kw: float | None
    today: float | None
    usual: tuple[float, float] | None
    state: str
    """``above``, ``below``, ``within`` or ``unknown`` (no history)."""

    def cells(self) -> dict[str, Any]:
        return {
            "last_ns": self.last_ns,
            "power_kw": self.power_kw,
            "today": self.today,
            "usual": self.usual,
            "state": self.state,
        }

    @property
    def digest(self) -> str:
        return _digest(self.cells())


@dataclass
class SiteNow:
    id: str
    supplier: str
    site: str
    timezone: str
    gateway: str
    gateway_state: str
    gateway_ns: int | None
    incidents: int
    quality: int
    meters: list[MeterNow] = field(default_factory=list)

    def cells(self) -> dict[str, Any]:
        return {
            "gateway_state": self.gateway_state,
            "gateway_ns": self.gateway_ns,
            "incidents": self.incidents,
            "quality": self.quality,
        }

    @property
    def digest(self) -> str:
        return _digest(self.cells())


def _digest(cells: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cells, sort_keys=True, default=str).encode()).hexdigest()[:12]


class UsualRanges:
    """Per meter, the min and max energy of the same weekday's hours up to the current hour
    over the last :data:`USUAL_WEEKS` weeks; kept per site and hour (it changes hourly)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, int], dict[str, tuple[float, float]]] = {}

    def of_site(
        self, store: Store, supplier: str, site: str, midnight_ns: int, hour_ns: int
    ) -> dict[str, tuple[float, float]]:
        key = (supplier, site, hour_ns)
        if key not in self._cache:
            if len(self._cache) > 10_000:
                self._cache.clear()
            start = midnight_ns - USUAL_WEEKS * 7 * DAY_NS
            hours, _ = store.hourly_consumption(start, midnight_ns, supplier=supplier, site=site)
            span = hour_ns - midnight_ns
            days: dict[str, list[float]] = {}
            by_day: dict[tuple[str, int], float] = {}
            for week in range(1, USUAL_WEEKS + 1):
                day0 = midnight_ns - week * 7 * DAY_NS
                for h in hours:
                    if day0 <= h.hour_start_ns < day0 + span:
                        k = (h.meter, week)
                        by_day[k] = by_day.get(k, 0.0) + h.consumption
            for (meter, _), total in by_day.items():
                days.setdefault(meter, []).append(total)
            self._cache[key] = {m: (min(v), max(v)) for m, v in days.items() if len(v) >= 2}
        return self._cache[key]


def open_incidents(config: Config, user: User) -> list[Incident]:
    """The incidents open now that ``user`` may see, newest first."""
    book = IncidentBook.load(config.resolve(config.alerts.state_dir) / "incidents.json")
    return sorted(
        (i for i in book.open.values() if user.sees(i.supplier)), key=lambda i: -i.opened_ns
    )


def fall_issues(
    config: Config, store: Store, registry: Registry, user: User, now_ns: int, days: int = 62
) -> list[dict[str, Any]]:
    """Register falls without a recorded meter event the user may see: a fall counts as
    explained once an exchange or CT change is recorded in the two hours before it."""
    out = []
    for code, key, t, detail in store.quality_issues(now_ns - days * DAY_NS, now_ns + 1):
        if code != FALL_CODE or not user.sees(key[0]):
            continue
        ref = registry.meter(*key)
        if ref is None:
            continue
        explained = any(
            e.type in ("exchange", "ct_change") and t - 2 * HOUR_NS <= e.time_ns <= t
            for e in ref.meter.events
        )
        if not explained:
            out.append({"key": key, "ref": ref, "ts": t, "detail": detail})
    return sorted(out, key=lambda x: -x["ts"])


def now_page(
    config: Config,
    store: Store,
    registry: Registry,
    user: User,
    page: int,
    now_ns: int,
    usual: UsualRanges,
) -> tuple[list[SiteNow], int]:
    """The sites and meters of one page of *Now* (``config.console.page_size`` meters a
    page), and the number of pages."""
    meters = visible_meters(registry, user)
    size = config.console.page_size
    pages = max(1, -(-len(meters) // size))
    page = min(max(page, 1), pages)
    chosen = meters[(page - 1) * size : page * size]
    supplier = user.scope
    latest = store.latest_readings(now_ns - 2 * HOUR_NS, now_ns + 1, supplier=supplier)
    gateways = {(s, si): (state, ts) for s, si, state, ts in store.gateway_states(now_ns)}
    incidents: dict[tuple[str, str], int] = {}
    for i in open_incidents(config, user):
        incidents[(i.supplier, i.site)] = incidents.get((i.supplier, i.site), 0) + 1
    quality: dict[tuple[str, str], int] = {}
    for f in fall_issues(config, store, registry, user, now_ns, days=7):
        quality[f["key"][:2]] = quality.get(f["key"][:2], 0) + 1
    sites: dict[tuple[str, str], SiteNow] = {}
    today_cache: dict[tuple[str, str], dict[str, float]] = {}
    for ref in chosen:
        sk = (ref.supplier.id, ref.site.id)
        tz = ZoneInfo(ref.site.timezone)
        local = ns_to_datetime(now_ns).astimezone(tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        midnight_ns = int(midnight.timestamp()) * 10**9
        hour_ns = now_ns - now_ns % HOUR_NS
        if sk not in sites:
            state, ts = gateways.get(sk, ("never", None))
            sites[sk] = SiteNow(
                f"{sk[0]}/{sk[1]}",
                sk[0],
                sk[1],
                ref.site.timezone,
                ref.site.gateway,
                state,
                ts,
                incidents.get(sk, 0),
                quality.get(sk, 0),
            )
            hours, _ = store.hourly_consumption(midnight_ns, now_ns + 1, supplier=sk[0], site=sk[1])
            totals: dict[str, float] = {}
            for h in hours:
                totals[h.meter] = totals.get(h.meter, 0.0) + h.consumption
            today_cache[sk] = totals
        ranges = usual.of_site(store, sk[0], sk[1], midnight_ns, hour_ns)
        today = today_cache[sk].get(ref.meter.id)
        rng = ranges.get(ref.meter.id)
        if today is None or rng is None:
            state = "unknown"
        elif today > rng[1] * 1.1:
            state = "above"
        elif today < rng[0] * 0.9:
            state = "below"
        else:
            state = "within"
        last = latest.get(ref.key)
        sites[sk].meters.append(
            MeterNow(
                "/".join(ref.key),
                ref.key,
                ref.carrier.name,
                ref.unit,
                last[0] if last else None,
                last[1] if last else None,
                today,
                rng,
                state,
            )
        )
    return list(sites.values()), pages


# --- Meter ---------------------------------------------------------------------------------------


def meter_page(store: Store, ref: MeterRef, now_ns: int) -> dict[str, Any]:
    """What the *Meter* page shows: latest readings, rejections with their codes, 48 hours of
    hourly consumption (measured and estimated parts), events, quality issues."""
    readings = store.meter_readings(ref.key, now_ns - 7 * DAY_NS, now_ns + HOUR_NS, limit=50)
    rejected = store.rejections(
        now_ns - 7 * DAY_NS, now_ns + 1, topic=readings_topic(*ref.key), limit=50
    )
    hours, _ = store.hourly_consumption(
        now_ns - 48 * HOUR_NS,
        now_ns + HOUR_NS,
        supplier=ref.key[0],
        site=ref.key[1],
        meter=ref.key[2],
    )
    issues = [
        (code, t, detail)
        for code, key, t, detail in store.quality_issues(now_ns - 62 * DAY_NS, now_ns + 1)
        if key == ref.key
    ]
    hours.sort(key=lambda h: h.hour_start_ns)
    return {
        "readings": readings,
        "rejected": rejected,
        "hours": hours,
        "issues": sorted(issues, key=lambda x: -x[1]),
        "chart": hours_svg(hours),
    }


def hours_svg(hours: list[Any], width: int = 720, height: int = 160) -> str:
    """Hourly consumption as an inline SVG bar chart: measured dark, estimated light (no
    script, no third-party library: it renders on any phone, offline)."""
    if not hours:
        return ""
    top = max(h.consumption for h in hours) or 1.0
    bar = width / len(hours)
    parts = [f'<svg viewBox="0 0 {width} {height + 14}" role="img" class="chart">']
    for n, h in enumerate(hours):
        est = min(max(h.estimated, 0.0), h.consumption)
        meas = h.consumption - est
        x = n * bar
        hm, he = height * meas / top, height * est / top
        parts.append(
            f'<rect class="measured" x="{x:.1f}" y="{height - hm:.1f}" '
            f'width="{max(bar - 1, 1):.1f}" height="{hm:.1f}"/>'
        )
        if he > 0:
            parts.append(
                f'<rect class="estimated" x="{x:.1f}" y="{height - hm - he:.1f}" '
                f'width="{max(bar - 1, 1):.1f}" height="{he:.1f}"/>'
            )
    parts.append(
        f'<text x="0" y="{height + 12}">0</text><text x="{width}" y="12" '
        f'text-anchor="end">{top:,.1f}</text></svg>'
    )
    return "".join(parts)


# --- Months --------------------------------------------------------------------------------------


@dataclass
class MonthView:
    month: str
    version: int
    written: str
    totals: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    reviews: list[Any]
    files: list[str]
    footprints: int | None = None
    """The standing version of the month's published footprints (``None``: none)."""


def months(config: Config, ops: Operations, user: User) -> list[MonthView]:
    """Every exported month, newest first, with the standing version's totals of the
    suppliers the user may see, each version's reasons, and the suppliers' reviews."""
    root = config.resolve(config.jobs.export_dir)
    out = []
    if not root.exists():
        return out
    for month_dir in sorted(
        (p for p in root.iterdir() if p.is_dir() and _is_month(p.name)), reverse=True
    ):
        found = versions(month_dir)
        if not found:
            continue
        history = []
        for v in found:
            m = json.loads((month_dir / f"v{v}" / "manifest.json").read_text())
            history.append(
                {
                    "version": v,
                    "written": m.get("written_utc", ""),
                    "reasons": m.get("reasons", []),
                    "suppliers": sorted(s for s in m.get("totals", {}) if user.sees(s)),
                }
            )
        latest = json.loads((month_dir / f"v{found[-1]}" / "manifest.json").read_text())
        totals = {s: t for s, t in latest.get("totals", {}).items() if user.sees(s)}
        supplier = user.scope
        reviews = ops.month_reviews(month=month_dir.name, supplier=supplier)
        fp_dir = config.resolve(config.pact.footprints_dir) / f"{month_dir.name}--{month_dir.name}"
        fp = versions(fp_dir) if fp_dir.exists() else []
        out.append(
            MonthView(
                month_dir.name,
                found[-1],
                latest.get("written_utc", ""),
                totals,
                history,
                reviews,
                downloads(month_dir / f"v{found[-1]}", user),
                fp[-1] if fp else None,
            )
        )
    return out


def footprints_file(config: Config, registry: Registry, user: User, month: str,
                    version: int) -> bytes | None:  # fmt: skip
    """The month's published footprints (PACT v3 documents as sent) the user may have: a
    supplier gets only the documents whose ``companyIds`` are its own; ``None``: none."""
    if not _is_month(month):
        return None
    path = (config.resolve(config.pact.footprints_dir) / f"{month}--{month}" / f"v{version}"
            / f"footprints-{month}-{month}.json")  # fmt: skip
    if not path.is_file():
        return None
    docs = json.loads(path.read_text())
    if user.scope is not None:
        supplier = registry.supplier(user.scope)
        own = set(supplier.company_ids) if supplier else set()
        docs = [d for d in docs if own & set(d.get("companyIds", []))]
    return json.dumps(docs, indent=1, ensure_ascii=False).encode()


def _is_month(name: str) -> bool:
    return len(name) == 7 and name[4] == "-" and name[:4].isdigit() and name[5:].isdigit()


def downloads(version_dir: Path, user: User) -> list[str]:
    """The files of a version the user may download: everything for the buyer's roles; for a
    supplier, the CSV tables (cut to its own rows when served)."""
    names = sorted(
        p.name for p in version_dir.iterdir() if p.is_file() and p.name != "manifest.json"
    )
    if user.role == "supplier":
        return [n for n in names if n.endswith(".csv")]
    return names


def month_file(
    config: Config, user: User, month: str, version: int, name: str
) -> tuple[bytes, str] | None:
    """A file of a month's version as the user may have it: (bytes, media type); ``None``
    when there is no such file or the user may not have it. A supplier's CSV holds only the
    rows of its own supplier (and tables without a supplier column, such as factors)."""
    if not _is_month(month) or "/" in name or name.startswith("."):
        return None
    path = config.resolve(config.jobs.export_dir) / month / f"v{version}" / name
    if not path.is_file() or name == "manifest.json" or name not in downloads(path.parent, user):
        return None
    media = {
        ".csv": "text/csv; charset=utf-8",
        ".png": "image/png",
        ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".json": "application/json",
    }.get(path.suffix, "application/octet-stream")
    if user.role != "supplier":
        return path.read_bytes(), media
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    if rows and "supplier" in rows[0]:
        col = rows[0].index("supplier")
        rows = [rows[0]] + [r for r in rows[1:] if len(r) > col and r[col] == user.supplier]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode(), media


def local(ts: datetime | None, tz: str) -> str:
    return "" if ts is None else ts.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")


def since(now_ns: int, days: int) -> int:
    return now_ns - int(timedelta(days=days).total_seconds()) * 10**9
