"""Gateway protocol v1: topics and payloads, parsed strictly and without I/O.

Topics (DESIGN.md, "Gateway protocol (v1)")::

    energy/v1/{supplier}/{site}/{meter}/readings            one reading or {"readings": [...]}
    energy/v1/{supplier}/{site}/gateway/{gateway}/status    {"state": "online"|"offline", "ts": ...}

Everything here either returns typed records or raises :class:`BadReading` with a stable
reason code; nothing is dropped without one. The simulator uses :func:`encode_readings` so it
speaks exactly what this module parses.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from supplymeter.config import ID_RE, MeterRef, Registry
from supplymeter.errors import BadReading
from supplymeter.records import QUANTITIES, REGISTERS, Reading

PREFIX = "energy/v1/"

MIN_TS_NS = 946_684_800 * 10**9
"""2000-01-01T00:00:00Z. Earlier timestamps come from gateways whose clock was never set
(a dead RTC battery boots at 1970) and are refused rather than stored decades away."""
MAX_TS_NS = 4_102_444_800 * 10**9
"""2100-01-01T00:00:00Z."""

NON_NEGATIVE = REGISTERS | {"voltage_v", "current_a"}

ABSOLUTE_LIMITS: dict[str, float] = {
    "power_kw": 1e6, "voltage_v": 1e6, "current_a": 1e6,
    **dict.fromkeys(REGISTERS, 1e15),
}  # fmt: skip
"""Magnitudes no meter of a metal-working plant reports, whatever its site: 1 GW, 1 MV,
1 MA; registers beyond 10^15 lose the precision of a float's 53-bit mantissa at 0.1 units.
A value beyond them is refused as ``invalid_value`` (the contract capacity bounds power more
tightly where it is known)."""
"""Registers only rise (or wrap); voltage and current magnitudes are never negative."""

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True, slots=True)
class ReadingsTopic:
    supplier: str
    site: str
    meter: str


@dataclass(frozen=True, slots=True)
class StatusTopic:
    supplier: str
    site: str
    gateway: str


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """A gateway's last will or birth message. ``ts_ns`` is the device's time, if sent."""

    supplier: str
    site: str
    gateway: str
    state: str
    received_ns: int
    ts_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits; see ``[collector]`` in the example config."""

    max_payload_bytes: int = 262_144
    max_batch_readings: int = 10_000
    max_future_ns: int = 86_400 * 10**9
    max_past_ns: int = 5 * 366 * 86_400 * 10**9
    """Readings older than this are refused (``stale_timestamp``): a gateway whose clock
    reset to a default date, not a backfill."""
    max_power_factor: float = 10.0
    """``power_kw`` above this × the site's contract capacity is refused."""


def readings_topic(supplier: str, site: str, meter: str) -> str:
    return f"{PREFIX}{supplier}/{site}/{meter}/readings"


def status_topic(supplier: str, site: str, gateway: str) -> str:
    return f"{PREFIX}{supplier}/{site}/gateway/{gateway}/status"


def parse_topic(topic: str) -> ReadingsTopic | StatusTopic:
    """Split a topic into its ids; raise ``BadReading('invalid_topic')`` if it is not v1."""
    if not topic.startswith(PREFIX):
        raise BadReading("invalid_topic", "topic does not start with energy/v1/")
    parts = topic[len(PREFIX) :].split("/")
    if len(parts) == 4 and parts[3] == "readings":
        ids, kind = parts[:3], "readings"
    elif len(parts) == 5 and parts[2] == "gateway" and parts[4] == "status":
        ids, kind = [parts[0], parts[1], parts[3]], "status"
    else:
        raise BadReading("invalid_topic", "topic is neither .../readings nor .../status")
    for part in ids:
        if not ID_RE.match(part):
            raise BadReading("invalid_topic", "an id in the topic is not [a-z0-9][a-z0-9_-]{0,63}")
    if kind == "readings":
        return ReadingsTopic(*ids)
    return StatusTopic(*ids)


def resolve_meter(topic: ReadingsTopic, registry: Registry) -> MeterRef:
    """The registry entry for a readings topic, or ``BadReading('unknown_...')``."""
    ref = registry.meter(topic.supplier, topic.site, topic.meter)
    if ref is not None:
        return ref
    if registry.supplier(topic.supplier) is None:
        raise BadReading("unknown_supplier", f"supplier {topic.supplier!r} is not in the registry")
    if registry.site(topic.supplier, topic.site) is None:
        raise BadReading("unknown_site", f"site {topic.site!r} is not in the registry")
    raise BadReading("unknown_meter", f"meter {topic.meter!r} is not in the registry")


def _reject_constant(name: str) -> Any:
    raise BadReading("invalid_value", f"{name} is not a number the protocol allows")


def decode_json(payload: bytes, limits: Limits) -> Any:
    """Bytes → JSON value, refusing oversize, non-UTF-8, malformed JSON and NaN/Infinity."""
    if len(payload) > limits.max_payload_bytes:
        raise BadReading(
            "payload_too_large",
            f"payload is {len(payload)} bytes, limit is {limits.max_payload_bytes}",
        )
    try:
        # The fast path: orjson parses strict RFC 8259 JSON (UTF-8 validated, no NaN or
        # Infinity, no lone surrogates, no BOM) into the same values as the standard library
        # (integers beyond 64 bits become floats, which the reading checks refuse alike: a
        # property test holds the two decoders to the same outcomes).
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass  # the careful path below names the exact reason
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadReading("invalid_utf8", f"payload is not UTF-8: {exc.reason}") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadReading("invalid_json", f"payload is not JSON: {exc.msg}") from exc
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise BadReading("invalid_json", f"payload is not usable JSON: {str(exc)[:120]}") from exc
    except RecursionError as exc:
        raise BadReading("invalid_json", "payload is nested too deeply") from exc


def parse_timestamp(value: Any) -> int:
    """RFC 3339 with offset, or integer epoch milliseconds → epoch nanoseconds (UTC)."""
    if isinstance(value, bool) or value is None:
        raise BadReading("invalid_timestamp", "ts must be RFC 3339 text or epoch milliseconds")
    if isinstance(value, int):
        if not MIN_TS_NS // 10**6 <= value < MAX_TS_NS // 10**6:
            raise BadReading("invalid_timestamp", "ts in epoch ms is outside 2000–2100")
        return value * 1_000_000
    if not isinstance(value, str):
        raise BadReading("invalid_timestamp", "ts must be RFC 3339 text or integer epoch ms")
    match = _RFC3339.fullmatch(value)
    if not match:
        raise BadReading("invalid_timestamp", "ts is not RFC 3339 with an offset")
    year, month, day, hour, minute, second, frac, offset = match.groups()
    offset_s = 0
    if offset not in ("Z", "z"):
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise BadReading("invalid_timestamp", "ts has an impossible UTC offset")
        offset_s = (1 if offset[0] == "+" else -1) * (hours * 3600 + minutes * 60)
    h, mi, sec = int(hour), int(minute), int(second)
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError as exc:
        raise BadReading("invalid_timestamp", f"ts is not a real date: {exc}") from exc
    if h > 23 or mi > 59 or sec > 59:  # no leap seconds: Unix time has none either
        raise BadReading("invalid_timestamp", "ts is not a real time of day")
    # Integer arithmetic instead of datetime objects: this runs for every reading.
    seconds = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s
    ts_ns = seconds * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
    if not MIN_TS_NS <= ts_ns < MAX_TS_NS:
        raise BadReading("invalid_timestamp", "ts is outside 2000–2100")
    return ts_ns


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadReading("invalid_value", f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError as exc:
        raise BadReading("invalid_value", f"{name} is too large") from exc
    if not math.isfinite(number):
        raise BadReading("invalid_value", f"{name} must be finite")
    return number


def parse_reading(obj: Any, ref: MeterRef, now_ns: int, limits: Limits) -> Reading:
    """One reading object → :class:`Reading`, checked against what the meter measures."""
    if not isinstance(obj, dict):
        raise BadReading("invalid_payload", "a reading must be a JSON object")
    if "ts" not in obj:
        raise BadReading("missing_field", "reading has no ts")
    ts_ns = parse_timestamp(obj["ts"])
    if ts_ns > now_ns + limits.max_future_ns:
        raise BadReading(
            "future_timestamp",
            f"ts is further ahead of the collector's clock than {limits.max_future_ns // 10**9} s",
        )
    if ts_ns < now_ns - limits.max_past_ns:
        days = limits.max_past_ns // 86_400 // 10**9
        raise BadReading("stale_timestamp",
                         f"ts is older than the collector's horizon ({days} days)")  # fmt: skip
    seq = obj.get("seq")
    if seq is not None and (
        isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63
    ):
        raise BadReading("invalid_value", "seq must be an integer in [0, 2^63)")
    if ref.meter.events:
        _check_service_life(ref, ts_ns)
    allowed = ref.carrier.quantities
    register, rollover = ref.register_field, ref.rollover_at(ts_ns)
    values: dict[str, float] = {}
    # The collector's hot path: the common case (an allowed field holding a plain float)
    # takes the fewest checks; everything else falls through to the careful ones.
    for name, raw in obj.items():
        if name not in allowed:
            if name in ("ts", "seq"):
                continue
            if name in QUANTITIES:
                raise BadReading(
                    "wrong_carrier", f"{name} is not measured by a {ref.meter.carrier} meter"
                )
            raise BadReading("unknown_field", f"{str(name)[:64]!r} is not a protocol v1 field")
        number = raw if type(raw) is float and math.isfinite(raw) else _number(name, raw)
        if number < 0 and name in NON_NEGATIVE:
            raise BadReading("invalid_value", f"{name} cannot be negative")
        if abs(number) > ABSOLUTE_LIMITS.get(name, math.inf):
            raise BadReading("invalid_value", f"{name} is beyond any meter's range")
        if name == "power_factor" and not -1 <= number <= 1:
            raise BadReading("invalid_value", "power_factor must be within [-1, 1]")
        if name == register and rollover and number >= rollover:
            raise BadReading("invalid_value", f"{name} is at or above the meter's rollover value")
        if (
            name == "power_kw"
            and ref.site.contract_capacity_kw
            and (abs(number) > limits.max_power_factor * ref.site.contract_capacity_kw)
        ):
            limit = limits.max_power_factor
            raise BadReading("invalid_value", f"power_kw is beyond {limit:g} × the site's "
                             "contract capacity")  # fmt: skip
        values[name] = number
    if not values:
        raise BadReading("no_quantity", "reading carries no quantity")
    return Reading(ref.supplier.id, ref.site.id, ref.meter.id, ts_ns, seq, **values)


def _check_service_life(ref: MeterRef, ts_ns: int) -> None:
    """Refuse readings dated before the meter's commissioning or after its decommissioning
    (registry events): they belong to no register this meter had."""
    start, end = ref.commissioned_ns, ref.decommissioned_ns
    if start is not None and ts_ns < start:
        raise BadReading("before_commissioning", "ts is before the meter was commissioned")
    if end is not None and ts_ns > end:
        raise BadReading("after_decommissioning", "ts is after the meter was decommissioned")


def parse_readings(
    payload: bytes, ref: MeterRef, now_ns: int, limits: Limits
) -> tuple[list[Reading], list[BadReading]]:
    """A readings payload → the valid readings and a rejection for each invalid one.

    A payload that cannot be parsed at all raises :class:`BadReading`; inside a gateway's
    batch, one bad reading does not cost the others.
    """
    obj = decode_json(payload, limits)
    if isinstance(obj, dict) and "readings" in obj:
        if len(obj) != 1:
            raise BadReading("invalid_payload", "a batch object holds only 'readings'")
        batch = obj["readings"]
        if not isinstance(batch, list) or not batch:
            raise BadReading("invalid_payload", "'readings' must be a non-empty list")
        if len(batch) > limits.max_batch_readings:
            raise BadReading(
                "batch_too_large",
                f"batch of {len(batch)} readings, limit is {limits.max_batch_readings}",
            )
    else:
        batch = [obj]
    readings: list[Reading] = []
    failed: list[tuple[int, BadReading]] = []
    for i, item in enumerate(batch):
        try:
            readings.append(parse_reading(item, ref, now_ns, limits))
        except BadReading as exc:
            failed.append((i, exc))
    if len(batch) == 1 or not failed:
        return readings, [exc for _, exc in failed]
    return readings, [batch_rejection(failed, len(batch))]


def batch_rejection(failed: list[tuple[int, BadReading]], size: int) -> BadReading:
    """One rejection for a batch's bad readings: the commonest reason's code, and which
    readings failed why (indices into the batch), so 10,000 bad readings are one row."""
    by_code: dict[str, list[int]] = {}
    for i, exc in failed:
        by_code.setdefault(exc.code, []).append(i)
    code = max(by_code, key=lambda c: len(by_code[c]))
    parts = [f"{c}: {_indices(ix)}" for c, ix in sorted(by_code.items())]
    first = failed[0][1].detail
    return BadReading(code, f"{len(failed)} of {size} readings in the batch refused — "
                      f"{'; '.join(parts)} (first: {first})"[:500])  # fmt: skip


def _indices(ix: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``."""
    runs, start = [], ix[0]
    for a, b in zip(ix, [*ix[1:], None], strict=True):
        if b != a + 1:
            runs.append(f"{start}-{a}" if a != start else str(a))
            start = b if b is not None else start
    return ",".join(runs)


def parse_status(
    payload: bytes, topic: StatusTopic, registry: Registry, now_ns: int, limits: Limits
) -> GatewayStatus:
    """A gateway status payload → :class:`GatewayStatus`."""
    found = registry.site(topic.supplier, topic.site)
    if found is None:
        code = "unknown_supplier" if registry.supplier(topic.supplier) is None else "unknown_site"
        raise BadReading(code, f"{topic.supplier}/{topic.site} is not in the registry")
    if found[1].gateway != topic.gateway:
        raise BadReading("unknown_gateway", f"gateway {topic.gateway!r} is not this site's")
    obj = decode_json(payload, limits)
    if not isinstance(obj, dict) or obj.get("state") not in ("online", "offline"):
        raise BadReading("invalid_payload", "status must be {'state': 'online'|'offline'}")
    unknown = set(obj) - {"state", "ts"}
    if unknown:
        raise BadReading("unknown_field", f"status has unknown fields {sorted(unknown)[:5]}")
    ts_ns = parse_timestamp(obj["ts"]) if "ts" in obj else None
    if ts_ns is not None and ts_ns > now_ns + limits.max_future_ns:
        raise BadReading("future_timestamp", "status ts is further ahead of the collector's "
                         f"clock than {limits.max_future_ns // 10**9} s")  # fmt: skip
    if ts_ns is not None and ts_ns < now_ns - limits.max_past_ns:
        raise BadReading("stale_timestamp", "status ts is older than the collector's horizon")
    return GatewayStatus(topic.supplier, topic.site, topic.gateway, obj["state"], now_ns, ts_ns)


def format_ts(ts_ns: int) -> str:
    """RFC 3339 UTC text with as many fraction digits as needed (0, 3, 6 or 9)."""
    seconds, frac = divmod(ts_ns, 10**9)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    digits = f"{frac:09d}".rstrip("0")
    width = 3 if len(digits) <= 3 else 6 if len(digits) <= 6 else 9
    return f"{base}.{digits.ljust(width, '0')}Z"


def encode_reading(reading: Reading) -> dict[str, Any]:
    """A reading as its protocol v1 JSON object."""
    obj: dict[str, Any] = {"ts": format_ts(reading.ts_ns)}
    if reading.seq is not None:
        obj["seq"] = reading.seq
    obj.update(reading.quantities())
    return obj


def encode_readings(readings: list[Reading]) -> bytes:
    """One reading, or a ``{"readings": [...]}`` batch, as a UTF-8 payload."""
    if len(readings) == 1:
        body: Any = encode_reading(readings[0])
    else:
        body = {"readings": [encode_reading(r) for r in readings]}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def encode_status(state: str, ts_ns: int | None = None) -> bytes:
    """A gateway status payload."""
    obj: dict[str, Any] = {"state": state}
    if ts_ns is not None:
        obj["ts"] = format_ts(ts_ns)
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")
