"""Typed configuration and supplier registry, validated before anything connects.

One TOML file holds the services (``[mqtt]``, ``[influxdb]``, ``[collector]``, ``[smtp]``,
``[grafana]``, ``[jobs]``, ``[stack]``) and points at the supplier registry
(``registry = "suppliers.toml"``): suppliers → sites → meters. Relative paths are resolved
against the directory of the file that names them. Secrets never live in these files; they come
from environment variables (see :class:`Secrets`).

Every problem found is reported at once, each naming the file, the key, the rule and the value::

    supplymeter.toml: mqtt.qos: must be 0, 1 or 2 (got 3)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from supplymeter.carriers import CARRIERS, Carrier
from supplymeter.errors import ConfigError, Problem
from supplymeter.locate import Loc, key_lines, label, line_of

_log = logging.getLogger(__name__)
HOUR_NS = 3600 * 10**9

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
"""Ids of suppliers, sites, meters and gateways; they appear verbatim in MQTT topics."""

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")

CREDENTIALS_IN_URL = (
    "must not hold credentials (user:password@); use username and "
    "SUPPLYMETER_INFLUXDB_PASSWORD, or SUPPLYMETER_INFLUXDB_TOKEN"
)

DEFAULT_CONFIG = "supplymeter.toml"
CONFIG_ENV = "SUPPLYMETER_CONFIG"
INFLUXDB_USERNAME_ENV = "SUPPLYMETER_INFLUXDB_USERNAME"
"""Overrides ``[influxdb] username``: services sharing one config file log in as themselves."""


def _allows_text(annotation: Any, value: str) -> bool:
    """Whether ``annotation`` (``int | Literal["auto"]``) names ``value`` as a literal."""
    return any(value in getattr(a, "__args__", ()) for a in getattr(annotation, "__args__", ())
               if getattr(a, "__origin__", None) is Literal)  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _scalar_types(cls, data: Any) -> Any:
        """TOML has types: ``qos = true``, ``port = "11883"`` and ``create_database = "yes"``
        are mistakes, not values to coerce. Numbers may not be booleans or text; booleans must
        be booleans."""
        if not isinstance(data, dict):
            return data
        problems = []
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None:
                continue
            kinds = {a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                     if a in (int, float, bool)}  # fmt: skip
            if not kinds:
                continue
            if bool in kinds and not isinstance(value, bool):
                problems.append(f"{name}: must be true or false (got {value!r})")
            elif bool not in kinds and isinstance(value, bool | str):
                if isinstance(value, str) and _allows_text(field.annotation, value):
                    continue  # e.g. processes = "auto"
                problems.append(f"{name}: must be a number (got {value!r})")
        if problems:
            raise ValueError("; ".join(problems))
        return data


def _check_id(value: str) -> str:
    if not ID_RE.match(value):
        raise ValueError("must match [a-z0-9][a-z0-9_-]{0,63}")
    return value


def _check_tz(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA timezone such as Asia/Taipei") from exc
    return value


def _check_emails(value: list[str]) -> list[str]:
    bad = [address for address in value if not EMAIL_RE.match(address)]
    if bad:
        raise ValueError(f"not email addresses: {', '.join(repr(a) for a in bad)}")
    return value


# --- services ---------------------------------------------------------------------------


class MqttSettings(_Model):
    """How the collector reaches the broker. Password: ``SUPPLYMETER_MQTT_PASSWORD``."""

    host: str = "127.0.0.1"
    port: int = Field(11883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    qos: int = 1
    client_id: str = "supplymeter-collector"
    username: str | None = None
    keepalive_s: int = Field(60, ge=5, le=65535)
    session_expiry_s: int = Field(86400, ge=0)
    receive_maximum: int = Field(10_000, ge=1, le=65535)
    shared_group: str | None = None
    tls_ca_file: Path | None = None
    """CA certificate that signed the broker's; set it to connect over TLS."""

    @field_validator("shared_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None:
            _check_id(value)
        return value

    @field_validator("qos")
    @classmethod
    def _qos(cls, value: int) -> int:
        if value not in (0, 1, 2):
            raise ValueError("must be 0, 1 or 2")
        return value


class BrokerSettings(_Model):
    """The production Mosquitto that ``supplymeter deploy mosquitto`` configures."""

    port: int = Field(1883, ge=1, le=65535)
    tls_port: int = Field(8883, ge=1, le=65535)
    bind_address: str = "0.0.0.0"
    run_as_user: str = "mosquitto"
    """The user Mosquitto drops to when started as root; it must read passwd and acl."""
    persistence_dir: Path = Path("/var/lib/mosquitto")
    max_queued_bytes: int = Field(134_217_728, ge=0)
    """Each broker session's queue bound (Mosquitto ``max_queued_bytes``). With the
    collector's session per supplier the broker's memory bound is this × suppliers ×
    collector processes: 128 MiB holds days of a supplier's readings (docs/security.md)."""
    secrets_file: Path = Path("secrets/mqtt-passwords.toml")
    certfile: Path | None = None
    keyfile: Path | None = None
    cafile: Path | None = None
    plaintext_bind_address: str | None = None
    """Where the plaintext listener listens; unset: ``bind_address`` without TLS, 127.0.0.1
    with TLS configured (plaintext only for local tools). A container network may set
    0.0.0.0 when its host publishes the port on 127.0.0.1 only."""
    dynsec_plugin: str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
    """Mosquitto's Dynamic Security plugin as the broker sees it (Debian's path; the
    eclipse-mosquitto image: /usr/lib/mosquitto_dynamic_security.so)."""


class InfluxSettings(_Model):
    """The InfluxDB v1-compatible API (``/write``, ``/query``).

    Auth: ``SUPPLYMETER_INFLUXDB_TOKEN`` (2.x/3.x) or ``username`` plus
    ``SUPPLYMETER_INFLUXDB_PASSWORD`` (1.x).
    """

    url: str = "http://127.0.0.1:18086"
    database: str = "supplymeter"
    retention_policy: str | None = None
    username: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    retries: int = Field(5, ge=0, le=20)
    create_database: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            # Never echo the value: it holds a password.
            raise ValueError(CREDENTIALS_IN_URL)
        return value.rstrip("/")


class CollectorSettings(_Model):
    """Batching and input limits of the MQTT → InfluxDB collector."""

    batch_size: int = Field(5000, ge=1, le=100_000)
    flush_interval_s: float = Field(0.25, gt=0, le=60)
    queue_max_points: int = Field(200_000, ge=1)
    max_payload_bytes: int = Field(262_144, ge=64)
    max_batch_readings: int = Field(10_000, ge=1)
    max_future_s: float = Field(86_400.0, ge=0)
    max_past_days: float = Field(1830.0, gt=0)
    """Readings older than this are refused (``stale_timestamp``): a clock reset to a default
    date, not data. Five years by default, so a long backfill still passes."""
    max_power_factor: float = Field(10.0, gt=0)
    """``power_kw`` beyond this × the site's contract capacity is refused (physically
    impossible on that connection)."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
    """0 turns the /metrics + /healthz server off."""
    stats_interval_s: float = Field(10.0, gt=0)
    processes: int | Literal["auto"] = "auto"
    """Collector processes sharing one subscription (``mqtt.shared_group``); each gets
    ``client_id-N`` and ``metrics_port + N``. ``auto``: one per CPU core (at most
    :data:`AUTO_MAX_PROCESSES`) when the broker says it offers shared subscriptions (MQTT 5
    CONNACK), else one; the group is then ``mqtt.shared_group`` or ``supplymeter``."""
    session_per_supplier: bool = True
    """One MQTT session per registry supplier (client id ``client_id.<supplier>``, user
    ``username.<supplier>``, topics ``energy/v1/<supplier>/#``) instead of one for everyone.
    A broker's queue limits are per session (Mosquitto's ``max_queued_bytes``): with one
    session, a gateway flooding while the collector is away can make the broker drop every
    other supplier's acknowledged readings; with a session each, it fills only its own. Off:
    fewer connections, and topics of suppliers missing from the registry are received and
    recorded as ``unknown_supplier`` (with it on, nobody subscribes to them: the broker's ACL
    from ``deploy mosquitto`` refuses such publishers anyway)."""
    unhealthy_after_s: float = Field(60.0, gt=0)
    late_after_s: float = Field(3600.0, gt=0)
    """Readings older than this on arrival are *late*: the collector records their hours
    (``reading_arrival``) and the rollup job recomputes exactly those, however old. Must be
    shorter than ``jobs.trailing_window_h`` minus ``jobs.rollup_every_min``, which covers
    everything on time."""

    @field_validator("processes")
    @classmethod
    def _count(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError(f'must be 1-64 or "auto" (got {value})')
        return value


AUTO_MAX_PROCESSES = 8
"""Most collector processes ``processes = "auto"`` starts (and identities ``deploy mosquitto``
generates for it)."""
AUTO_SHARED_GROUP = "supplymeter"
"""The shared subscription group of ``processes = "auto"`` when ``mqtt.shared_group`` is unset."""


class SmtpSettings(_Model):
    """Outgoing mail for alerts. Password: ``SUPPLYMETER_SMTP_PASSWORD``."""

    host: str = "127.0.0.1"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    """``starttls`` (submission, port 587), ``ssl`` (implicit TLS, port 465) or ``none``."""
    ca_file: Path | None = None
    """PEM CA certificates the server's certificate must chain to (relative to the config
    file); unset: the system's trust store. The host name is always checked."""
    username: str | None = None
    from_addr: str = "supplymeter@localhost"
    admins: list[str] = Field(default_factory=list)

    _admins = field_validator("admins")(_check_emails)


def _check_per_carrier(
    value: dict[str, float], name: str, positive: bool = False
) -> dict[str, float]:
    """A table keyed by carrier names of the carrier table, with numbers ≥ 0 (> 0)."""
    bad = sorted(set(value) - set(CARRIERS))
    if bad:
        raise ValueError(f"{name}: unknown carrier {', '.join(bad)} (one of "
                         f"{', '.join(CARRIERS)})")  # fmt: skip
    low = sorted(c for c, v in value.items() if not (v > 0 if positive else v >= 0))
    if low:
        raise ValueError(f"{name}: {', '.join(low)} must be a number "
                         f"{'> 0' if positive else '>= 0'}")  # fmt: skip
    return value


class AlertSettings(_Model):
    """Alert detection and email (``[alerts]``)."""

    every_min: int = Field(5, ge=1, le=60)
    """How often the alert job runs."""
    window_min: int = Field(15, ge=5, le=60)
    """Consumption is judged in slots of this length (a divisor of 60). [min]"""
    baseline_weeks: int = Field(6, ge=2, le=12)
    """Weeks of slot history the comparable days are chosen from."""
    min_history_weeks: int = Field(2, ge=1, le=12)
    """Fewer comparable days than this × 7: the meter says 'not enough history' instead of
    guessing."""
    match_hours: float = Field(4.0, gt=0, le=24)
    """Comparable days are those whose load over this many hours before the time of day was
    closest to today's. [h]"""
    neighbours: int = Field(7, ge=3, le=30)
    """How many comparable days."""
    shift_tolerance_min: int = Field(60, ge=0, le=240)
    """Shifts that start or end this much earlier or later than on comparable days stay inside
    the upper envelope. [min]"""
    spike_min_pct: float = Field(30.0, gt=0)
    """A slot is unusual this much above the upper envelope [%] ..."""
    spike_min_abs: dict[str, float] = Field(default_factory=dict)
    """... and at least this much above it per slot, per carrier in its unit (kWh, m³, kg),
    e.g. ``{ electricity = 2.0, steam = 50 }``; a carrier not named takes the carrier table's
    ``spike_min_abs`` (``supplymeter/carriers.py``) ..."""
    spike_min_level_pct: float = Field(10.0, ge=0)
    """... and this share of the meter's median slot. [%]"""
    spike_return_pct: float = Field(40.0, ge=0)
    """A spike came and went: its mean stood this much above the slots just before and just
    after it. [%]"""
    shop_swing: float = Field(0.45, ge=0)
    """A meter whose load typically swings this much of its level from one quarter-hour to the
    next while it works (the 90th percentile) is a shop of large machines: its spikes (and
    regimes, over their first 2 h) are told only beyond anything it drew over the same length
    within 3 h of that time on any past day of the same kind — while it works: not a spike
    after an hour near its base load, nor a steady regime below its working level. 0: every
    meter; a large value: none. (Steel plant and simulated forge and heat treatment
    0.40–0.70; light industry 0.10–0.19, an office 0.26–0.44: ``bench/bench_alerts_real.py``.)"""
    spike_max_min: int = Field(75, ge=15)
    """Unusual for longer than this: a regime (one incident while it lasts), not a spike. [min]"""
    regime_min_min: int = Field(120, ge=30)
    """Unusual for this long: reported as a regime while it lasts. [min]"""
    quiet_min: int = Field(60, ge=10)
    """Unusual slots less than this apart belong to one event; a spike is reported once this
    long has passed without another. [min]"""
    level_shift_pct: float = Field(15.0, gt=0)
    """Smallest lasting change of the base load told as a level shift. [%]"""
    level_shift_min_days: int = Field(7, ge=2, le=28)
    """A level shift is told once it has lasted this many days. [d]"""
    budget_per_site_day: int = Field(4, ge=1)
    """Emails that open an incident (of any kind), per site and local day; the rest wait for
    the daily digest, so no configuration can flood a mailbox."""
    budget_per_meter_week: int = Field(3, ge=0)
    """The same per meter and ISO week (0: no weekly limit): a meter that keeps tripping goes
    to the digest instead of a fourth email that week."""
    tariff_ntd: dict[str, float] = Field(default_factory=dict)
    """Per carrier, the price for the NT$ estimate in spike emails, NT$ per the carrier's
    unit (electricity per kWh, gas and water per m³, steam per kg), e.g. the average rate on
    the suppliers' bills; a supplier's own ``tariff_ntd`` (registry) comes first. A carrier
    priced nowhere gets no NT$ figure."""

    LEGACY: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "spike_min_abs_kwh": ("spike_min_abs", ("electricity",)),
        "spike_min_abs_m3": ("spike_min_abs", ("natural_gas", "water")),
        "tariff_ntd_per_kwh": ("tariff_ntd", ("electricity",)),
        "tariff_ntd_per_m3": ("tariff_ntd", ("natural_gas", "water")),
    }
    """Keys of earlier versions, per unit, and the per-carrier tables they now fill."""

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """Earlier keys keep working: a per-unit value fills the carriers of that unit that
        the table does not name already (with a warning saying what to write instead)."""
        if not isinstance(data, dict) or not any(k in data for k in cls.LEGACY):
            return data
        data = dict(data)
        for key, (table, carriers) in cls.LEGACY.items():
            if key not in data:
                continue
            value = data.pop(key)
            merged = dict(data.get(table) or {})
            for c in carriers:
                merged.setdefault(c, value)
            data[table] = merged
            _log.warning("[alerts] %s is now %s = { %s }", key, table,
                         ", ".join(f"{c} = {value!r}" for c in carriers))  # fmt: skip
        return data

    _floors = field_validator("spike_min_abs")(lambda v: _check_per_carrier(v, "spike_min_abs"))
    _prices = field_validator("tariff_ntd")(lambda v: _check_per_carrier(v, "tariff_ntd", True))
    silent_after_min: float = Field(30.0, gt=0)
    """A gateway or meter without readings for this long is silent. [min]"""
    stuck_after_min: float = Field(60.0, gt=0)
    """A register flat for this long while power is reported is stuck. [min]"""
    stuck_min_kw: float = Field(1.0, ge=0)
    reject_per_hour: int = Field(30, ge=1)
    """Rejected messages per supplier per hour above which ingest trouble is alerted."""
    group_min_meters: int = Field(3, ge=2)
    """This many meters of one site tripping together become one grouped incident."""
    reminder_h: float = Field(24.0, ge=0)
    """Remind about an incident still open after this long (0: never)."""
    cooldown_min: float = Field(60.0, ge=0)
    """After a resolution, the same alert does not re-open (and mail) within this time."""
    digest: bool = False
    """Send one daily digest at ``digest_hour`` instead of one email per incident event."""
    digest_hour: int = Field(8, ge=0, le=23)
    state_dir: Path = Path("out/alerts")
    """Incident state and the outbox of emails not yet accepted by the SMTP server."""

    @field_validator("window_min")
    @classmethod
    def _divides_an_hour(cls, v: int) -> int:
        if 60 % v:
            raise ValueError("must divide 60 (slots sit on the hour grid)")
        return v


class GrafanaSettings(_Model):
    """Where dashboards are pushed. Token: ``SUPPLYMETER_GRAFANA_TOKEN``."""

    url: str = "http://127.0.0.1:3000"
    folder: str = "supplymeter"
    """Folder title; its uid is ``folder_uid``."""
    folder_uid: str = "supplymeter"
    datasource_uid: str = "supplymeter-influxdb"
    datasource_url: str | None = None
    """The InfluxDB URL as Grafana reaches it (default: ``[influxdb] url``)."""
    pathway_base_year: int = Field(2025, ge=2000, le=2100)
    pathway_base_tco2e: float | None = Field(None, gt=0)
    """Monthly tCO2e of all suppliers in the base year (location-based); unset: the pathway
    line is left off the scope-3 dashboard."""
    pathway_pct_per_year: float = Field(4.2, ge=0, le=100)
    """Reduction per year from the base year (4.2%: the SBTi 1.5 °C absolute contraction)."""


class JobsSettings(_Model):
    """Scheduled processing."""

    rollup_every_min: int = Field(15, ge=1, le=1440)
    trailing_window_h: int = Field(48, ge=1, le=24 * 62)
    lookaround_h: int = Field(6, ge=1, le=24 * 31)
    export_dir: Path = Path("out/exports")
    export_day: int = Field(3, ge=1, le=28)
    """Day of the month on which last month is exported (site-local calendar)."""
    export_hour: int = Field(6, ge=0, le=23)
    timezone: str = "Asia/Taipei"
    """Timezone of the schedule and of the calendar months of exports."""
    allocations_file: Path | None = None
    """CSV of monthly allocation shares (supplier, month, method, numerator, denominator,
    unit, basis); months not in it use the registry's share."""
    certificates_file: Path | None = None
    """CSV of renewable energy certificates per site and month (supplier, site, month, kwh,
    certificate_ids, issuer); they lower market-based emissions."""
    factors_file: Path | None = None
    """Emission factor CSV (columns of ``processing/data/emission_factors.csv``); unset: the
    file shipped with supplymeter. A new or corrected row restates exactly the hours it
    changes at the next rollup."""
    bills_file: Path | None = None
    """CSV of utility bills (supplier, site, carrier, account, period_start, period_end, billed,
    unit, bill_id): each export reconciles the bills whose period ends in its month with what
    the meters measured over the billing period."""
    reconcile_threshold_pct: float = Field(2.0, ge=0)
    """A bill whose metered quantity differs by more than this is flagged. [%]"""
    hourly_csv_max_meters: int = Field(2000, ge=0)
    """The export writes every meter's hours as its own CSV beside the workbook when the
    registry has at most this many meters (reading every meter-hour of the month costs about
    20 s per million at 10,000 meters on InfluxDB 1.6; the Meter reads sheet is always
    written). 0: never."""
    restate_threshold_pct: float = Field(0.1, ge=0)
    """Re-running an exported month writes a new version when a total moves by more than this."""
    base_year: int | None = Field(None, ge=2000, le=2100)
    """The scope-3 base year the buyer reports against (GHG Protocol Scope 3 Standard, ch. 9);
    unset: none declared (the export says so)."""
    recalculation_threshold_pct: float = Field(5.0, ge=0)
    """Significance threshold of the base-year recalculation policy: structural changes,
    methodology changes or errors that move the base year's emissions by more than this are
    recalculated back to the base year. [%]"""
    estimate_uncertainty_pct: float = Field(25.0, ge=0, le=100)
    """± % (95 %) assumed for estimated energy (spread across a gap, a reset or an implausible
    step): the register still measures a gap's total, so this is conservative. [%]"""
    unknown_meter_uncertainty_pct: float = Field(2.0, ge=0, le=100)
    """± % assumed for a meter without an accuracy class in the registry: the class 2 limit
    of IEC 62053-21, the least accurate class in common use for energy sub-meters. [%]"""
    unknown_factor_uncertainty_pct: float = Field(5.0, ge=0, le=100)
    """± % assumed for an emission factor published without an uncertainty (Taiwan's grid
    factor): an assumption the export names, to be replaced by a published figure. [%]"""
    job_retries: int = Field(3, ge=0, le=20)
    """Attempts after a failed scheduled job before it waits for its next run."""
    retry_delay_s: float = Field(60.0, ge=0)

    _tz = field_validator("timezone")(_check_tz)


SECRET_HASH_RE = re.compile(r"^pbkdf2_sha256\$\d{4,8}\$[A-Za-z0-9_-]{16,}\$[A-Za-z0-9_-]{43}\Z")
"""``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (url-safe base64, unpadded), as
``supplymeter pact hash-secret`` prints it."""


class PactCallback(_Model):
    """Where the host answers a data recipient's asynchronous requests: the recipient's own
    PACT Events endpoint and the credentials it issued us (PACT v3 §Action Events)."""

    events_url: str = Field(pattern=r"^https?://\S+/3/events$")
    auth_url: str = Field("", pattern=r"^(https?://\S+)?$")
    """Its token endpoint (default: ``/auth/token`` at the events URL's host)."""
    client_id: str = Field(min_length=1)
    secret_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    """The environment variable holding the secret it gave us (never in this file)."""
    attempts: int = Field(8, ge=1, le=30)
    """Tries per response event, backing off 2 s, 4 s, 8 s … (at most 10 minutes apart)."""


class PactClient(_Model):
    """A data recipient of the PACT API (e.g. the buyer's procurement system, a car maker):
    its OAuth2 client credentials and which footprints it may see."""

    id: str = Field(min_length=1, max_length=128)
    secret_hash: str
    """PBKDF2-SHA256 of the client secret (``supplymeter pact hash-secret``): the secret
    itself is never stored."""
    suppliers: list[str] = Field(min_length=1)
    """Supplier ids whose footprints it may see; ``["*"]`` for all."""
    products: list[str] = Field(default_factory=list)
    """Product ids it may see (empty: every product of its suppliers)."""
    callback: PactCallback | None = None
    """Its Events endpoint, to answer its RequestCreatedEvents (unset: they are recorded,
    not answered). Only this address is ever called, never an event's ``source``."""

    @field_validator("secret_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not SECRET_HASH_RE.match(value):
            raise ValueError("must be a pbkdf2_sha256 hash from `supplymeter pact hash-secret`")
        return value

    def may_see(self, supplier: str, product: str) -> bool:
        return ("*" in self.suppliers or supplier in self.suppliers) and (
            not self.products or product in self.products
        )


class PactSettings(_Model):
    """Product footprints and the PACT v3 host API (``supplymeter pact``)."""

    footprints_file: Path = Path("out/pact/footprints.jsonl")
    """Append-only log of published footprints and their deprecations."""
    events_file: Path = Path("out/pact/events.jsonl")
    """Events received on ``/3/events`` (requests from data recipients, notifications)."""
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    public_url: str = Field("", pattern=r"^(https?://[^/\s]+)?$")
    """The API's address as clients reach it (``https://pact.buyer.example``): pagination links,
    the OpenID issuer and the ``source`` of the events it sends are written with it, never
    with a request's Host. Required when serving beyond loopback; unset: ``host:port``."""
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    """PACT requires HTTPS: without both, ``pact serve`` only binds to a loopback address
    (behind a TLS-terminating proxy)."""
    token_lifetime_s: int = Field(3600, ge=60, le=86400)
    clients: list[PactClient] = Field(default_factory=list)
    not_found_code: Literal["NotFound", "NoSuchFootprint"] = "NotFound"
    """Error code of a 404: the OpenAPI schema of PACT v3.0.3 and the PACT conformance service
    (its test case 8) name it ``NotFound``; the spec's older error table ``NoSuchFootprint``."""
    page_size: int = Field(100, ge=1, le=1000)
    """ListFootprints page size when the request sets no ``limit``."""
    cbam_dir: Path = Path("out/cbam")
    """The CBAM workbooks, one versioned dataset per reference period."""
    footprints_dir: Path = Path("out/footprints")
    """The published footprints of each reference period as a versioned dataset (what was
    sent, with a diff and its reasons for every new version)."""

    @property
    def event_source(self) -> str:
        """The CloudEvents ``source`` of events this host sends (PACT v3: "the domain and
        endpoint of the application from which the event originates")."""
        base = (
            self.public_url.split("://", 1)[-1] if self.public_url else f"{self.host}:{self.port}"
        )
        return f"//{base}/3/events"

    @model_validator(mode="after")
    def _unique_clients(self) -> PactSettings:
        ids = [c.id for c in self.clients]
        if len(set(ids)) != len(ids):
            raise ValueError("pact.clients: client ids must be unique")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("give both tls_certfile and tls_keyfile, or neither")
        return self


class OperationsSettings(_Model):
    """The operations database: what people enter in the console (meter events, bills,
    acknowledgements, silences, month reviews, users) and its audit trail."""

    database: str = "out/operations.sqlite"
    """A SQLite file (relative to this file), or an SQLAlchemy URL for PostgreSQL in
    production (``postgresql+psycopg://supplymeter@db/supplymeter``; the password from
    ``SUPPLYMETER_OPERATIONS_PASSWORD``). Its schema is brought up to date at start."""

    def url(self, base: Path) -> str:
        """The SQLAlchemy URL, a relative SQLite path taken from ``base`` (the config's
        directory)."""
        if "://" in self.database:
            return self.database
        path = Path(self.database)
        return f"sqlite:///{path if path.is_absolute() else base / path}"


class ConsoleSettings(_Model):
    """The web console (``supplymeter console serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    """With both, the console serves HTTPS and its cookies are ``Secure``; without, it binds
    only to loopback unless ``behind_tls_proxy`` (a proxy terminates TLS in front of it)."""
    behind_tls_proxy: bool = False
    """Cookies are ``Secure`` and a non-loopback bind is allowed: a TLS proxy is in front."""
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    """A login lasts this long without use (sliding), then the user signs in again."""
    login_max_failures: int = Field(10, ge=1, le=1000)
    login_window_min: float = Field(15.0, gt=0)
    """After ``login_max_failures`` wrong passwords for one account (or from one address)
    within ``login_window_min``, logins are refused until the window has passed."""
    refresh_s: int = Field(15, ge=2, le=30)
    """How often the *Now* page asks for what changed."""
    page_size: int = Field(100, ge=10, le=1000)
    """Meters per page on *Now* (large programmes are paginated)."""

    @model_validator(mode="after")
    def _tls_pair(self) -> ConsoleSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("give both tls_certfile and tls_keyfile, or neither")
        return self

    @property
    def secure(self) -> bool:
        """Whether the browser reaches the console over TLS (cookies get ``Secure``)."""
        return self.tls_certfile is not None or self.behind_tls_proxy


class StackSettings(_Model):
    """The local Mosquitto + InfluxDB pair that ``supplymeter stack up`` runs."""

    dir: Path = Path(".stack")
    mqtt_port: int = Field(11883, ge=1, le=65535)
    influxdb_port: int = Field(18086, ge=1, le=65535)
    influxdb_rpc_port: int = Field(18088, ge=1, le=65535)


class FaultSettings(_Model):
    """Faults the simulator injects, each recorded in its ground truth. All off by default.

    Rates are expected counts: events arrive as a Poisson process per gateway or meter.
    """

    offline_per_day: float = Field(0.0, ge=0)
    """Gateway outages per gateway per day."""
    offline_minutes: tuple[float, float] = (10.0, 120.0)
    """Outage length, uniform between the two. [min]"""
    duplicate_rate: float = Field(0.0, ge=0, le=1)
    """Probability that a message is delivered twice."""
    out_of_order_rate: float = Field(0.0, ge=0, le=1)
    """Probability that a reading is sent after the meter's next reading."""
    clock_skew_rate: float = Field(0.0, ge=0, le=1)
    """Share of gateways whose clock is off."""
    clock_skew_s: float = Field(90.0, ge=0)
    """Largest skew of a skewed gateway's clock, either way. [s]"""
    malformed_rate: float = Field(0.0, ge=0, le=1)
    """Probability, per message, that a malformed message is sent beside it."""
    rollover_rate: float = Field(0.0, ge=0, le=1)
    """Share of meters with a ``rollover`` whose register starts close enough to wrap."""
    replacement_per_month: float = Field(0.0, ge=0)
    """Meter replacements per meter per 30 days (the register restarts near zero)."""
    stuck_per_month: float = Field(0.0, ge=0)
    """Stuck registers (flat while power is drawn) per meter per 30 days."""
    stuck_hours: tuple[float, float] = (1.0, 6.0)
    spike_per_week: float = Field(0.0, ge=0)
    """Consumption spikes per consumption meter per 7 days."""
    spike_pct: tuple[float, float] = (50.0, 200.0)
    """Spike size: extra load in % of the load it rides on."""
    spike_minutes: tuple[float, float] = (15.0, 60.0)
    step_per_month: float = Field(0.0, ge=0)
    """Step changes (a lasting level change) per consumption meter per 30 days."""
    step_pct: tuple[float, float] = (-30.0, 40.0)
    step_hours: tuple[float, float] = (24.0, 168.0)

    @field_validator(
        "offline_minutes", "stuck_hours", "spike_pct", "spike_minutes", "step_pct", "step_hours"
    )
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError("must be [low, high] with low <= high")
        return value


class SimulatorSettings(_Model):
    """How simulated gateways send (``[simulator]``); what goes wrong (``[simulator.faults]``)."""

    buffer_readings: int = Field(20_000, ge=1)
    """Store-and-forward capacity of a gateway; when full, the oldest reading is dropped."""
    flush_batch: int = Field(100, ge=1, le=10_000)
    """Readings per message when a gateway replays its buffer."""
    backfill_batch: int = Field(60, ge=1, le=10_000)
    """Readings per message in backfill (a gateway catching up); real time sends one."""
    faults: FaultSettings = FaultSettings()


class ServicesFile(_Model):
    registry: Path = Path("suppliers.toml")
    mqtt: MqttSettings = MqttSettings()
    broker: BrokerSettings = BrokerSettings()
    influxdb: InfluxSettings = InfluxSettings()
    collector: CollectorSettings = CollectorSettings()
    smtp: SmtpSettings = SmtpSettings()
    alerts: AlertSettings = AlertSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    jobs: JobsSettings = JobsSettings()
    stack: StackSettings = StackSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    pact: PactSettings = PactSettings()
    operations: OperationsSettings = OperationsSettings()
    console: ConsoleSettings = ConsoleSettings()

    @model_validator(mode="after")
    def _late_within_trailing(self) -> ServicesFile:
        covered_s = self.jobs.trailing_window_h * 3600 - self.jobs.rollup_every_min * 60
        if self.collector.late_after_s > covered_s:
            raise ValueError(
                f"collector.late_after_s ({self.collector.late_after_s:g} s) must not exceed "
                f"jobs.trailing_window_h minus jobs.rollup_every_min ({covered_s} s): readings "
                "between the two would be neither in the trailing window nor marked late"
            )
        return self

    @model_validator(mode="after")
    def _processes_share(self) -> ServicesFile:
        n = self.collector.processes
        if isinstance(n, int) and not 1 <= n <= 64:
            raise ValueError(f'collector.processes must be 1-64 or "auto" (got {n})')
        if isinstance(n, int) and n > 1 and not self.mqtt.shared_group:
            raise ValueError(
                "collector.processes > 1 needs mqtt.shared_group (the processes split one "
                "shared subscription)"
            )
        return self


# --- registry ---------------------------------------------------------------------------


Equipment = Literal["steady", "press", "induction", "furnace", "cnc", "compressor", "machines"]
"""How a simulated meter's production load moves within a shift (see simulators/profiles.py)."""


def _check_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-10-14T10:30:00+08:00")
    return value


class SimulatedSaving(_Model):
    """A simulated measure's effect on one meter: its load drops by ``share`` from ``start``."""

    start: datetime
    share: float = Field(ge=0, lt=1)
    """Fraction of the load the measure removes, e.g. 0.12 for −12 %."""

    @property
    def start_ns(self) -> int:
        return _datetime_ns(self.start)

    _aware = field_validator("start")(_check_aware)


class MeterSimulation(_Model):
    """Simulator parameters of one meter (ignored by everything but the simulator)."""

    mean_load: float = Field(50.0, gt=0)
    """Mean load over a working shift: kW for electricity, m³/h for gas and water. For a
    ``pv`` meter: the array's peak power. [kWp]"""
    base_fraction: float = Field(0.2, ge=0, le=1)
    """Share of the mean load drawn around the clock (compressors, furnace idle, lighting)."""
    noise: float = Field(0.1, ge=0, le=1)
    initial_register: float = Field(1000.0, ge=0)
    equipment: Equipment = "steady"
    """The production load's shape: press strokes, induction heating cycles, furnace
    heat-up/soak cycles, CNC utilisation changing by the hour, compressor load/unload, or
    ``machines``: a shop of large machines each switched on and off (heavy industry)."""
    cycle_min: float | None = Field(None, gt=0)
    """Period of the equipment's cycle [min]; default per equipment. For ``machines``: the mean
    length of one machine's run [min]."""
    machines: int = Field(4, ge=1, le=100)
    """For ``machines``: how many large machines share the production load."""
    ac_fraction: float = Field(0.0, ge=0, le=2)
    """Air conditioning at the hottest hour of the year, as a share of ``mean_load``."""
    production_per_hour: float | None = Field(None, gt=0)
    """Units produced per working hour; the meter then reports ``production_units``."""
    savings: list[SimulatedSaving] = []
    """Efficiency measures that really save: from ``start`` the load is ``1 − share`` of what
    it would have been (the ground-truth ledger records the energy saved, column ``saved``)."""


EventType = Literal["exchange", "ct_change", "commissioned", "decommissioned"]


class MeterEvent(_Model):
    """Something that happened to a meter and changes how its register is read.

    * ``exchange``: the meter was replaced at ``time``; the old meter's last register was
      ``old_final_register``, the new one started at ``new_first_register``. With the event
      the exchange is measured exactly: (old final − last old reading) + (first new reading −
      new first register).
    * ``ct_change``: the CT (or VT) ratio became ``new_multiplier`` at ``time``; the register
      at the change is interpolated unless ``old_final_register`` is given.
    * ``commissioned`` / ``decommissioned``: readings before / after are refused by the
      collector (``before_commissioning``, ``after_decommissioning``).
    """

    type: EventType
    time: datetime
    old_final_register: float | None = Field(None, ge=0)
    new_first_register: float | None = Field(None, ge=0)
    new_multiplier: float | None = Field(None, gt=0)
    new_rollover: float | None = Field(None, gt=0)
    note: str = ""
    recorded_by: str = ""
    """Who recorded the event (a console user; empty for a registry edit). Not part of what
    the event *is*: see :meth:`reading_digest`."""

    _aware = field_validator("time")(_check_aware)

    @model_validator(mode="after")
    def _fields(self) -> MeterEvent:
        if self.type == "exchange" and (
            self.old_final_register is None or self.new_first_register is None
        ):
            raise ValueError("an exchange needs old_final_register and new_first_register")
        if self.type == "ct_change" and self.new_multiplier is None:
            raise ValueError("a ct_change needs new_multiplier")
        return self

    @property
    def time_ns(self) -> int:
        return _datetime_ns(self.time)

    def reading_json(self) -> str:
        """The event as it changes how the register is read (who recorded it left out), for
        digests: recording the same event in the console instead of the registry changes no
        stored hour."""
        return self.model_dump_json(exclude={"recorded_by"})


def _datetime_ns(ts: datetime) -> int:
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


ACCURACY_CLASSES = {"0.1": 0.1, "0.2": 0.2, "0.2S": 0.2, "0.5": 0.5, "0.5S": 0.5, "1": 1.0,
                    "1.0": 1.0, "1.5": 1.5, "2": 2.0, "2.0": 2.0, "3": 3.0}  # fmt: skip
"""Accuracy class → its error limit at rated conditions [± %]: IEC 62053-21/-22 for
electricity meters, IEC 61869-2 for current transformers, OIML R 137 / EN 1359 for gas
meters (classes 1.0 and 1.5). The limit, not a measured error: an upper bound."""


class MeterInstrument(_Model):
    """What an auditor asks of a meter: which instrument, how accurate, calibrated when."""

    serial: str = ""
    accuracy_class: str | None = None
    """The meter's accuracy class (a key of :data:`ACCURACY_CLASSES`)."""
    ct_ratio: str = ""
    """Current transformer ratio as on its plate, e.g. ``2000/5`` (the register multiplier
    is ``multiplier``)."""
    ct_class: str | None = None
    calibrated_on: date | None = None
    calibration_due: date | None = None

    @field_validator("accuracy_class", "ct_class")
    @classmethod
    def _known_class(cls, value: str | None) -> str | None:
        if value is not None and value not in ACCURACY_CLASSES:
            raise ValueError(f"must be one of {', '.join(ACCURACY_CLASSES)}")
        return value

    @property
    def uncertainty_pct(self) -> float | None:
        """The meter's and its CT's class limits combined in quadrature [± %]; ``None``
        without an accuracy class."""
        if self.accuracy_class is None:
            return None
        ct = ACCURACY_CLASSES[self.ct_class] if self.ct_class else 0.0
        return (ACCURACY_CLASSES[self.accuracy_class] ** 2 + ct**2) ** 0.5


class Meter(_Model):
    id: str
    carrier: str
    """A carrier of the carrier table (``supplymeter/carriers.py``): electricity,
    natural_gas, water, steam."""
    events: list[MeterEvent] = Field(default_factory=list)
    """Exchanges, CT ratio changes, commissioning and decommissioning, in time order."""
    rollover: float | None = Field(None, gt=0)
    """Register value at which the register wraps to zero (e.g. 100000 for 99,999.9 kWh)."""
    multiplier: float = Field(1.0, gt=0)
    """CT/VT ratio: true quantity = register difference × multiplier."""
    interval_s: int = Field(900, ge=1, le=3600)
    """Nominal interval between readings."""
    role: Literal["consumption", "pv", "grid"] = "consumption"
    """``consumption``: a circuit of the plant; the site's consumption is the sum of these.
    ``pv``: a rooftop PV generation meter (register = kWh generated). ``grid``: the utility
    meter at the site's connection (``energy_kwh`` imported, ``energy_export_kwh`` fed back).
    PV and grid meters are never added to consumption; they give PV self-consumption."""
    max_power: float | None = Field(None, gt=0)
    """Largest plausible load [kW, or m³/h for gas and water, kg/h for steam]: a register step
    implying more is rejected as an implausible jump (estimated, flagged, and raised as an
    ``implausible_step`` quality issue). Unset: 3 × the site's contract capacity for
    electricity meters of sites that have one, otherwise the carrier table's
    ``max_flow_per_h`` (``supplymeter/carriers.py``)."""
    instrument: MeterInstrument = MeterInstrument()
    """Serial, accuracy classes and calibration (the export's meter register)."""
    simulation: MeterSimulation = MeterSimulation()

    _id = field_validator("id")(_check_id)

    @field_validator("carrier")
    @classmethod
    def _known_carrier(cls, value: str) -> str:
        if value not in CARRIERS:
            raise ValueError(f"must be one of {', '.join(CARRIERS)}")
        return value

    @field_validator("events")
    @classmethod
    def _ordered_events(cls, value: list[MeterEvent]) -> list[MeterEvent]:
        times = [e.time_ns for e in value]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("events must be in strictly increasing time order")
        kinds = [e.type for e in value]
        for kind in ("commissioned", "decommissioned"):
            if kinds.count(kind) > 1:
                raise ValueError(f"at most one {kind} event")
        if "commissioned" in kinds and kinds.index("commissioned") != 0:
            raise ValueError("commissioned must be the first event")
        if "decommissioned" in kinds and kinds.index("decommissioned") != len(kinds) - 1:
            raise ValueError("decommissioned must be the last event")
        return value

    @field_validator("interval_s")
    @classmethod
    def _divides_hour(cls, value: int) -> int:
        # Hourly rollups and the simulator's ground truth assume readings on hour boundaries.
        if 3600 % value:
            raise ValueError("must divide 3600 (readings fall on every hour boundary)")
        return value

    @field_validator("id")
    @classmethod
    def _not_gateway(cls, value: str) -> str:
        if value == "gateway":
            raise ValueError("'gateway' is reserved for status topics")
        return value

    @model_validator(mode="after")
    def _role_carrier(self) -> Meter:
        if self.role != "consumption" and self.carrier != "electricity":
            raise ValueError(f"role {self.role!r} needs carrier 'electricity'")
        return self

    def event_times(self, kind: str) -> list[int]:
        """Epoch-ns times of this meter's events of one type."""
        return [e.time_ns for e in self.events if e.type == kind]


DEFAULT_FACTOR_USE = {"electricity": "industry"}
"""A supplier's factor variants unless its registry entry says otherwise: the electricity
factor for industrial GHG inventories (Energy Administration, MOEA, from the 2025 factor on)."""

TariffClass = Literal[
    "lighting_commercial", "lighting_residential", "street_lighting",
    "low_voltage", "high_voltage", "extra_high_voltage",
]  # fmt: skip
TARIFF_FACTOR_USE: dict[str, str] = {
    "lighting_commercial": "industry",  # 表燈營業
    "low_voltage": "industry",  # 低壓電力
    "high_voltage": "industry",  # 高壓電力
    "extra_high_voltage": "industry",  # 特高壓電力
    "lighting_residential": "residential",  # 表燈非營業
    "street_lighting": "residential",  # 包燈
}
"""Which published electricity factor a Taipower tariff class takes (the factor file's ``use``).

Source: MOENV GHG registry news of 2026-06-17, citing MOEA news_id=122891 (Energy
Administration, 2026-06-02, 114年度電力排碳係數; ``standards/tw-factors.md``): the industry
factor (產業電力排碳係數, 0.466 kgCO2e/kWh for 2025) applies to commercial lighting and to
low, high and extra-high voltage power, the residential one (民生住宅電力排碳係數, 0.471) to
non-commercial lighting and street lighting. The average of all sales (0.467) is for managing
utilities and is never a class's factor."""

NOT_FOR_INVENTORY = {"electricity": frozenset({"average"})}
"""Published variants no inventory may name (see :data:`TARIFF_FACTOR_USE`)."""


def _check_factor_use(value: dict[str, str]) -> dict[str, str]:
    keys = {c.factor_key for c in CARRIERS.values()}
    for carrier, use in value.items():
        if carrier not in keys:
            raise ValueError(f"factor_use: unknown carrier {carrier!r} (one of {sorted(keys)})")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", use):
            raise ValueError(f"factor_use: {carrier} = {use!r} is not a use name")
        if use in NOT_FOR_INVENTORY.get(carrier, ()):
            raise ValueError(
                f"factor_use: {carrier} = {use!r} is the average of all utility sales, never a "
                "company inventory's factor; give the site's tariff_class instead"
            )
    return value


def factor_use(supplier: Supplier, site: Site, carrier: Carrier) -> str:
    """The variant of ``carrier``'s emission factor a site takes (the factor file's ``use``):
    the site's own ``factor_use``, else for electricity the one its ``tariff_class`` gives,
    else the supplier's, else "" (rows without a use)."""
    key = carrier.factor_key
    if key in site.factor_use:
        return site.factor_use[key]
    if key == "electricity" and site.tariff_class is not None:
        return TARIFF_FACTOR_USE[site.tariff_class]
    return supplier.factor_use.get(key, "")


class BoundarySource(_Model):
    """One emission source of a site and whether the export covers it (ISO 14064-1 §5.2.3:
    exclusions are listed and justified; GHG Protocol Scope 3 Standard ch. 7)."""

    source: str = Field(min_length=1)
    """What it is: "refrigerant leaks (R-410A chillers)", "diesel forklifts", "endothermic
    atmosphere (propane)", ...."""
    scope: Literal["1", "2", "3"]
    """The supplier's own scope of the source."""
    status: Literal["metered", "excluded"]
    """``metered``: in the figures through a meter; ``excluded``: not in them."""
    estimate_kgco2e_per_year: float | None = Field(None, ge=0)
    """For an excluded source: its estimated emissions (required). [kgCO2e/year]"""
    basis: str = ""
    """How the estimate was made (refill records × GWP, fuel purchases × factor, …)."""

    @model_validator(mode="after")
    def _excluded_has_estimate(self) -> BoundarySource:
        if self.status == "excluded" and self.estimate_kgco2e_per_year is None:
            raise ValueError("an excluded source needs estimate_kgco2e_per_year (0 if none)")
        return self


URN_RE = re.compile(r"^[uU][rR][nN]:[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+\Z")
"""A Uniform Resource Name (RFC 8141), as PACT v3 requires for company and product ids."""

CN_RE = re.compile(r"^\d{4}(\d{2}){0,3}\Z")
"""A Combined Nomenclature / HS code: 4, 6, 8 or 10 digits, no dots."""


def _check_cn(value: str) -> str:
    if value and not CN_RE.match(value):
        raise ValueError(f"{value!r} is not a CN code (4–10 digits)")
    return value


def _check_urns(value: list[str]) -> list[str]:
    for urn in value:
        if not URN_RE.match(urn):
            raise ValueError(f"{urn!r} is not a URN (urn:<namespace>:<id>, RFC 8141)")
    if len(set(value)) != len(value):
        raise ValueError("ids must be unique")
    return value


class ProductionLine(_Model):
    """A production line of a site: the consumption meters that serve only it, and the rule
    that splits their energy among the products it makes (shown in every footprint)."""

    id: str
    meters: list[str] = Field(min_length=1)
    """Ids of the site's consumption meters (sub-meters) serving the line."""
    rule: Literal["units", "mass", "machine_hours"] = "mass"
    """How the line's energy is shared among its products over a period: by pieces, by mass
    produced (pieces × piece mass), or by machine hours (pieces × ``cycle_s``). A line with
    one product takes all of it (the rule does not matter)."""
    basis: str = ""
    """Why the rule fits the line (e.g. "press energy scales with forged mass")."""

    _id = field_validator("id")(_check_id)


class MaterialInput(_Model):
    """An upstream input the supplier declares per piece of a product (e.g. the aluminium
    billet the buyer supplies, or wire rod): its mass and its cradle-to-gate footprint, with
    the source. Input data, not measured here."""

    material: str = Field(min_length=1)
    kg_per_unit: float = Field(gt=0)
    """Input mass per piece, scrap and yield losses included. [kg]"""
    kgco2e_per_kg: float = Field(ge=0)
    """The input's cradle-to-gate footprint. [kgCO2e/kg]"""
    source: str = Field(min_length=1)
    """Where the footprint comes from: the material supplier's PCF (its id), an EPD, a
    database with version."""
    primary: bool = False
    """Supplier-specific (the material supplier's own PCF): counts as primary data in the
    PACT primary data share (PACT Methodology v3 §4.2.2); database values do not."""
    dqr: tuple[float, float, float] = (3.0, 3.0, 3.0)
    """Technological, geographical and temporal data quality ratings of the value (1 best
    … 3 fair … 5 worst; PACT Methodology v3 §4.2.3)."""
    cn_code: str = ""
    """The input's CN code when it is a CBAM precursor (e.g. 7601 unwrought aluminium, 7213
    wire rod): its embedded emissions then enter the good's CBAM specific emissions."""
    cbam_direct_t_per_t: float | None = Field(None, ge=0)
    """The precursor's actual specific direct embedded emissions from its producer's CBAM
    communication [tCO2e/t]; unset: the CBAM default value for its CN code is used."""

    _cn = field_validator("cn_code")(_check_cn)

    @field_validator("dqr")
    @classmethod
    def _ratings(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(not 1 <= r <= 5 for r in value):
            raise ValueError("ratings are between 1 and 5")
        return value


class Product(_Model):
    """A product a supplier site makes: what it is, how it is counted, which line makes it."""

    id: str
    part_number: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    cn_code: str = ""
    """Combined Nomenclature code (CBAM goods: 7318 screws and bolts, 732611 forged steel,
    761610 aluminium fasteners, …)."""
    mass_kg: float = Field(gt=0)
    """Mass of one piece. [kg]"""
    declared_unit: Literal["piece", "kilogram"] = "piece"
    """The footprint's declared unit: one piece, or one kilogram of the product."""
    line: str
    """The production line making it."""
    counter: str
    """Id of the site's meter whose ``production_units`` counter (a pulse input) counts the
    product's pieces. A meter counts at most one product."""
    counter_rollover: float | None = Field(None, gt=0)
    """Counter value at which it wraps to 0 (unset: never)."""
    cycle_s: float | None = Field(None, gt=0)
    """Machine time per piece on its line [s]; needed when the line's rule is
    ``machine_hours``."""
    overhead_share: float | None = Field(None, ge=0, le=1)
    """The product's stated share of site overhead (consumption meters on no line); needed
    when the site's ``overhead`` is ``share``."""
    product_ids: list[str] = Field(default_factory=list)
    """More URNs for the product (GTIN, the buyer's part number, …) besides the supplier's."""
    inputs: list[MaterialInput] = Field(default_factory=list)

    _id = field_validator("id", "line", "counter")(_check_id)
    _urns = field_validator("product_ids")(_check_urns)

    _cn = field_validator("cn_code")(_check_cn)


class ProcessEmission(_Model):
    """A declared direct emission that no energy meter sees (CBAM "process emissions": e.g.
    carbonates in a flux, an endothermic atmosphere), per year."""

    source: str = Field(min_length=1)
    tco2e_per_year: float = Field(ge=0)
    basis: str = Field(min_length=1)
    """How it was determined (mass balance, purchase records × factor, …)."""
    line: str = ""
    """The production line it belongs to (empty: the site's overhead)."""


class Site(_Model):
    id: str
    name: str = ""
    timezone: str = "Asia/Taipei"
    gateway: str = "gw1"
    contract_capacity_kw: float | None = Field(None, gt=0)
    meters: list[Meter] = Field(min_length=1)
    boundary: list[BoundarySource] = Field(default_factory=list)
    """The site's emission sources in and out of the figures (the export's Boundary sheet)."""
    factor_use: dict[str, str] = Field(default_factory=dict)
    """Per carrier, which published variant of its emission factor applies at this site,
    over the supplier's (e.g. ``{natural_gas = "NG2"}``: the gas type on the gas bill)."""
    tariff_class: TariffClass | None = None
    """The site's Taipower tariff class (on its electricity bill): it picks the electricity
    factor (:data:`TARIFF_FACTOR_USE`). Unset: the supplier's ``factor_use`` (industry)."""
    lines: list[ProductionLine] = Field(default_factory=list)
    products: list[Product] = Field(default_factory=list)
    overhead: Literal["mass", "units", "share"] = "mass"
    """How site overhead (consumption meters on no line: lighting, compressed air, offices)
    reaches the products: by mass produced, by pieces, or by each product's stated
    ``overhead_share`` (the rest stays with output that has no footprint here)."""
    overhead_basis: str = ""
    """Why the overhead rule or shares fit the site."""
    process_emissions: list[ProcessEmission] = Field(default_factory=list)
    """Declared non-combustion direct emissions (CBAM: process emissions), per year."""

    _id = field_validator("id", "gateway")(_check_id)
    _use = field_validator("factor_use")(_check_factor_use)

    _tz = field_validator("timezone")(_check_tz)

    @model_validator(mode="after")
    def _tariff(self) -> Site:
        given = self.factor_use.get(CARRIERS["electricity"].factor_key)
        if self.tariff_class is not None and given not in (None, TARIFF_FACTOR_USE[
                self.tariff_class]):  # fmt: skip
            raise ValueError(
                f"site {self.id}: factor_use electricity = {given!r} contradicts tariff_class "
                f"{self.tariff_class!r} (which takes {TARIFF_FACTOR_USE[self.tariff_class]!r}); "
                "give one of them"
            )
        return self

    @model_validator(mode="after")
    def _products(self) -> Site:
        meters = {m.id: m for m in self.meters}
        problems: list[str] = []
        lines: dict[str, ProductionLine] = {}
        on_line: dict[str, str] = {}
        for line in self.lines:
            if line.id in lines:
                problems.append(f"line {line.id!r} appears more than once")
            lines[line.id] = line
            for m in line.meters:
                if m not in meters:
                    problems.append(f"line {line.id!r}: no meter {m!r} at this site")
                elif meters[m].role != "consumption":
                    problems.append(f"line {line.id!r}: meter {m!r} is not a consumption meter")
                elif m in on_line:
                    problems.append(f"meter {m!r} is on lines {on_line[m]!r} and {line.id!r}")
                on_line[m] = line.id
        ids: set[str] = set()
        counters: dict[str, str] = {}
        for p in self.products:
            if p.id in ids:
                problems.append(f"product {p.id!r} appears more than once")
            ids.add(p.id)
            line = lines.get(p.line)
            if line is None:
                problems.append(f"product {p.id!r}: no line {p.line!r} at this site")
            elif line.rule == "machine_hours" and p.cycle_s is None:
                problems.append(f"product {p.id!r}: line {line.id!r} shares by machine hours: "
                                "give cycle_s")  # fmt: skip
            if p.counter not in meters:
                problems.append(f"product {p.id!r}: no meter {p.counter!r} for its counter")
            elif p.counter in counters:
                problems.append(f"meter {p.counter!r} counts products {counters[p.counter]!r} "
                                f"and {p.id!r}: one counter per product")  # fmt: skip
            counters[p.counter] = p.id
            if self.overhead == "share" and p.overhead_share is None:
                problems.append(f"product {p.id!r}: overhead is 'share': give overhead_share")
        if self.overhead == "share":
            total = sum(p.overhead_share or 0.0 for p in self.products)
            if total > 1 + 1e-9:
                problems.append(f"overhead shares add up to {total:g} (more than 1)")
        unused = [line.id for line in self.lines if not any(p.line == line.id
                                                            for p in self.products)]  # fmt: skip
        if unused:
            problems.append(f"lines without products: {', '.join(unused)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def product_counted_by(self, meter: str) -> Product | None:
        """The product whose pieces ``meter``'s ``production_units`` counter counts."""
        return next((p for p in self.products if p.counter == meter), None)


class Allocation(_Model):
    """The buyer's share of a supplier's emissions (GHG Protocol scope 3, category 1)."""

    method: Literal["physical", "economic", "dedicated"]
    share: float = Field(gt=0, le=1)
    basis: str = ""
    """What the share was computed from, for the auditor (e.g. units shipped / produced, 2025)."""
    numerator: float | None = Field(None, ge=0)
    denominator: float | None = Field(None, gt=0)
    """The share's inputs, shown in the export (the share must equal their ratio)."""
    unit: str = ""

    @model_validator(mode="after")
    def _ratio(self) -> Allocation:
        if (self.numerator is None) != (self.denominator is None):
            raise ValueError("give both numerator and denominator, or neither")
        if self.numerator is not None and self.denominator is not None:
            ratio = self.numerator / self.denominator
            if abs(ratio - self.share) > 1e-4 * max(self.share, 1e-9):
                raise ValueError(f"share {self.share:g} is not numerator / denominator "
                                 f"({ratio:.6g})")  # fmt: skip
        return self


SupplierKind = Literal["forging", "springs", "heat_treatment", "machining", "other"]


class SupplierSimulation(_Model):
    """When a simulated plant works. Unset keys take the default of the supplier's kind
    (see ``simulators.profiles.SCHEDULES``)."""

    shifts: Literal[1, 2, 3] | None = None
    """1: 08:00–17:00; 2: 08:00–24:00; 3: around the clock."""
    saturday: Literal["off", "half", "full"] | None = None
    """``half``: 08:00–16:00."""
    sunday: bool | None = None
    holidays: bool | None = None
    """Whether the plant works on Taiwan's public holidays."""


class DatePeriod(_Model):
    """Local dates ``start`` to ``end`` (``end`` excluded)."""

    start: date
    end: date
    reason: str = ""

    @model_validator(mode="after")
    def _order(self) -> DatePeriod:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        return self


TargetMetric = Literal["tco2e", "kgco2e_per_unit", "kgco2e_per_tonne", "kwh_per_unit"]


class Target(_Model):
    """A reduction target on a straight-line pathway from ``base_year`` to ``target_year``.

    * ``tco2e``: absolute emissions (``basis`` location- or market-based, GHG Protocol Scope 2
      Guidance), the supplier's monthly scope-3 figures (whole supplier only);
    * ``kgco2e_per_unit`` / ``kgco2e_per_tonne`` / ``kwh_per_unit``: intensity on the pieces its
      production counters counted (tonnes from the products' ``mass_kg``; kWh: purchased
      electricity).

    ``base_value`` is the figure the plan states for the base year (what was filed, not
    recomputed); the pathway's value for year Y is base + (target − base)·(Y − base year) /
    (target year − base year)."""

    id: str
    metric: TargetMetric = "tco2e"
    basis: Literal["location", "market"] = "location"
    site: str | None = None
    """Only this site (intensity targets); none: the whole supplier."""
    base_year: int = Field(ge=2000, le=2100)
    base_value: float = Field(gt=0)
    target_year: int = Field(ge=2000, le=2100)
    target_value: float = Field(ge=0)
    reference: str = ""
    """The plan or programme the target belongs to, e.g. a voluntary reduction plan
    (自主減量計畫) under Taiwan's carbon fee, with its approval number."""

    _id = field_validator("id")(_check_id)

    @model_validator(mode="after")
    def _years(self) -> Target:
        if self.target_year <= self.base_year:
            raise ValueError(f"target_year ({self.target_year}) must come after base_year "
                             f"({self.base_year})")  # fmt: skip
        if self.metric == "tco2e" and self.site is not None:
            raise ValueError("an absolute target covers the whole supplier (its scope-3 "
                             "months); give intensity targets per site")  # fmt: skip
        return self

    def pathway(self, year: int) -> float:
        """The pathway's value for ``year`` (the base value before the base year, the target
        value after the target year)."""
        share = (year - self.base_year) / (self.target_year - self.base_year)
        share = min(1.0, max(0.0, share))
        return self.base_value + (self.target_value - self.base_value) * share


class Measure(_Model):
    """An efficiency measure whose savings are measured (IPMVP): ``meters`` it is behind
    (Option B, retrofit isolation) or, without meters, the whole site's purchased electricity
    (Option C). Savings are counted from ``installed``; the baseline is the ``baseline``
    period (default: the 365 days before ``installed``)."""

    id: str
    name: str
    site: str
    meters: list[str] = Field(default_factory=list)
    installed: date
    baseline: DatePeriod | None = None
    reporting_end: date | None = None
    """Last day (excluded) of the reporting period; default: as far as data goes."""
    drivers: list[Literal["production", "saturday", "off_day", "cdd", "hdd"]] | None = None
    """The baseline's drivers; none: chosen from the data (see processing/baselines.py)."""
    counters: list[str] = Field(default_factory=list)
    """Meters whose ``production_units`` drive the baseline; default: every counter of the
    site."""
    expected_saving_pct: float | None = Field(None, gt=-100, lt=100)
    non_routine: list[DatePeriod] = Field(default_factory=list)
    """Non-routine events (a shutdown week, a new line running in, a meter exchange) whose
    days are left out of the baseline and the savings; ``reason`` says what happened."""
    description: str = ""

    _id = field_validator("id")(_check_id)

    @model_validator(mode="after")
    def _periods(self) -> Measure:
        if self.baseline is not None and self.baseline.end > self.installed:
            raise ValueError(f"the baseline must end by the installation ({self.installed})")
        if self.reporting_end is not None and self.reporting_end <= self.installed:
            raise ValueError("reporting_end must come after installed")
        return self

    @property
    def option(self) -> str:
        return "B (retrofit isolation: sub-meters)" if self.meters else "C (whole site)"


class Supplier(_Model):
    id: str
    name: str = ""
    kind: SupplierKind = "other"
    country: str = "TW"
    allocation: Allocation
    alert_recipients: list[str] = Field(default_factory=list)
    sites: list[Site] = Field(min_length=1)
    simulation: SupplierSimulation = SupplierSimulation()
    factor_use: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_FACTOR_USE))
    """Per carrier, which published variant of its emission factor applies (the factor file's
    ``use`` column): Taiwan's electricity factor is published by use since 2025, and a
    supplier's GHG inventory takes the industry one. A carrier not named here takes the rows
    without a use."""

    domain: str = ""
    """The supplier's internet domain: it names the supplier's part numbers in product
    footprints (``urn:pact:<domain>:supplier-id:<part number>``, PACT v3 §Product
    Identifier URNs). Needed once a site has products."""
    company_ids: list[str] = Field(default_factory=list)
    """URNs identifying the supplier as the footprints' data owner (PACT ``companyIds``), e.g.
    its Taiwan unified business number as ``urn:pact:<domain>:company-id:<number>``."""
    targets: list[Target] = Field(default_factory=list)
    measures: list[Measure] = Field(default_factory=list)
    tariff_ntd: dict[str, float] = Field(default_factory=dict)
    """Per carrier, this supplier's price from its own bills, NT$ per the carrier's unit
    (steam per kg): the NT$ estimate of its spike emails, before ``[alerts] tariff_ntd``."""

    _id = field_validator("id")(_check_id)
    _tariffs = field_validator("tariff_ntd")(lambda v: _check_per_carrier(v, "tariff_ntd", True))
    _use = field_validator("factor_use")(_check_factor_use)
    _emails = field_validator("alert_recipients")(_check_emails)
    _urns = field_validator("company_ids")(_check_urns)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if value and not re.fullmatch(r"(?=.{1,253}\Z)([a-z0-9-]{1,63}\.)+[a-z]{2,63}", value):
            raise ValueError(f"{value!r} is not a domain name (lower case, e.g. forge-a.com.tw)")
        return value

    @model_validator(mode="after")
    def _improvement(self) -> Supplier:
        sites = {s.id: s for s in self.sites}
        for kind, items in (("target", self.targets), ("measure", self.measures)):
            ids = [i.id for i in items]
            if len(ids) != len(set(ids)):
                raise ValueError(f"{kind} ids must be unique (got {ids})")
        for t in self.targets:
            if t.site is not None and t.site not in sites:
                raise ValueError(f"target {t.id}: no site {t.site!r} (sites: {list(sites)})")
        for m in self.measures:
            site = sites.get(m.site)
            if site is None:
                raise ValueError(f"measure {m.id}: no site {m.site!r} (sites: {list(sites)})")
            known = {meter.id for meter in site.meters}
            for meter in (*m.meters, *m.counters):
                if meter not in known:
                    raise ValueError(f"measure {m.id}: site {m.site} has no meter {meter!r}")
        return self

    @model_validator(mode="after")
    def _owner_ids(self) -> Supplier:
        if any(site.products for site in self.sites) and not (self.domain and self.company_ids):
            raise ValueError("a supplier with products needs domain and company_ids (the "
                             "footprints' product and company URNs)")  # fmt: skip
        return self


class RegistryFile(_Model):
    suppliers: list[Supplier] = Field(min_length=1)


def gateway_username(supplier: str, site: str, gateway: str) -> str:
    """A site gateway's MQTT user name. Ids cannot hold a dot, so the name is unambiguous."""
    return f"{supplier}.{site}.{gateway}"


@dataclass(frozen=True)
class RegisterSegment:
    """A stretch of one meter's register life between exchanges or CT changes.

    ``start_ns``/``end_ns``: the events bounding it (``None``: open). ``first_register``: the
    register at ``start_ns`` when an event states it; ``final_register``: at ``end_ns``.
    """

    start_ns: int | None
    end_ns: int | None
    multiplier: float
    rollover: float | None
    first_register: float | None
    final_register: float | None


@dataclass(frozen=True)
class MeterRef:
    """A meter with everything it inherits from its site and supplier."""

    supplier: Supplier
    site: Site
    meter: Meter

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.supplier.id, self.site.id, self.meter.id)

    @property
    def carrier(self) -> Carrier:
        return CARRIERS[self.meter.carrier]

    @property
    def register_field(self) -> str:
        return self.carrier.register_field

    @property
    def factor_use(self) -> str:
        """The variant of the carrier's emission factor this meter takes: the site's, else the
        supplier's, else "" (rows without a use)."""
        return factor_use(self.supplier, self.site, self.carrier)

    @property
    def unit(self) -> str:
        return self.carrier.unit

    def segments(self) -> list[RegisterSegment]:
        """The meter's register life in segments split at exchanges and CT changes, each with
        the multiplier and rollover in force (the first from the meter's own settings)."""
        m = self.meter
        out = [RegisterSegment(None, None, m.multiplier, m.rollover, None, None)]
        for e in m.events:
            if e.type not in ("exchange", "ct_change"):
                continue
            prev = out[-1]
            out[-1] = dataclasses.replace(prev, end_ns=e.time_ns,
                                          final_register=e.old_final_register)  # fmt: skip
            out.append(RegisterSegment(
                e.time_ns, None, e.new_multiplier or prev.multiplier,
                e.new_rollover or prev.rollover if e.type == "exchange" else prev.rollover,
                e.new_first_register if e.type == "exchange" else e.old_final_register, None,
            ))  # fmt: skip
        return out

    @functools.cached_property
    def lineage_ranges(self) -> list[tuple[int | None, int | None, str]]:
        """``(start, end, lineage)``: the lineage every stored hour of the meter starting in
        ``[start, end)`` (ns, hour-aligned; ``None``: open) must carry — a digest of the
        meter's register settings and of its events up to the hour's end, so an event
        recorded, corrected or removed later changes the lineage of exactly the hours it
        governs (from its own hour on)."""
        m = self.meter
        digest = hashlib.sha256(json.dumps([m.multiplier, m.rollover]).encode())
        out: list[tuple[int | None, int | None, str]] = []
        start: int | None = None
        for e in sorted(m.events, key=lambda e: e.time_ns):
            hour = e.time_ns // HOUR_NS * HOUR_NS
            if start is None or hour > start:
                out.append((start, hour, digest.hexdigest()[:16]))
                start = hour
            digest.update(e.reading_json().encode())
        out.append((start, None, digest.hexdigest()[:16]))
        return out

    def lineage_at(self, hour_start_ns: int) -> str:
        """The lineage of the meter-hour starting at ``hour_start_ns`` (see
        :meth:`lineage_ranges`)."""
        for start, end, lineage in self.lineage_ranges:
            if (start is None or hour_start_ns >= start) and (end is None or hour_start_ns < end):
                return lineage
        raise AssertionError("lineage ranges cover every hour")

    def rollover_at(self, ts_ns: int) -> float | None:
        """The register's rollover value in force at ``ts_ns``."""
        if not self.meter.events:
            return self.meter.rollover
        for seg in self.segments():
            if seg.end_ns is None or ts_ns < seg.end_ns:
                return seg.rollover
        return self.meter.rollover

    @property
    def commissioned_ns(self) -> int | None:
        times = self.meter.event_times("commissioned")
        return times[0] if times else None

    @property
    def decommissioned_ns(self) -> int | None:
        times = self.meter.event_times("decommissioned")
        return times[0] if times else None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site.timezone)


@dataclass(frozen=True)
class Registry:
    """Suppliers → sites → meters, with O(1) lookup by topic ids."""

    suppliers: tuple[Supplier, ...]
    _meters: Mapping[tuple[str, str, str], MeterRef] = field(repr=False)
    _sites: Mapping[tuple[str, str], tuple[Supplier, Site]] = field(repr=False)
    _suppliers: Mapping[str, Supplier] = field(repr=False)

    @classmethod
    def build(cls, suppliers: list[Supplier]) -> Registry:
        meters: dict[tuple[str, str, str], MeterRef] = {}
        sites: dict[tuple[str, str], tuple[Supplier, Site]] = {}
        for supplier in suppliers:
            for site in supplier.sites:
                sites[(supplier.id, site.id)] = (supplier, site)
                for meter in site.meters:
                    meters[(supplier.id, site.id, meter.id)] = MeterRef(supplier, site, meter)
        return cls(tuple(suppliers), meters, sites, {s.id: s for s in suppliers})

    def meter(self, supplier: str, site: str, meter: str) -> MeterRef | None:
        return self._meters.get((supplier, site, meter))

    def site(self, supplier: str, site: str) -> tuple[Supplier, Site] | None:
        return self._sites.get((supplier, site))

    def supplier(self, supplier_id: str) -> Supplier | None:
        return self._suppliers.get(supplier_id)

    def meters(self) -> list[MeterRef]:
        return list(self._meters.values())


@dataclass(frozen=True)
class Secrets:
    """Credentials, read only from the environment and never logged (``SecretStr``)."""

    mqtt_password: SecretStr | None = None
    influxdb_token: SecretStr | None = None
    influxdb_password: SecretStr | None = None
    smtp_password: SecretStr | None = None
    grafana_token: SecretStr | None = None

    ENV: ClassVar[dict[str, str]] = {
        "mqtt_password": "SUPPLYMETER_MQTT_PASSWORD",
        "influxdb_token": "SUPPLYMETER_INFLUXDB_TOKEN",
        "influxdb_password": "SUPPLYMETER_INFLUXDB_PASSWORD",
        "smtp_password": "SUPPLYMETER_SMTP_PASSWORD",
        "grafana_token": "SUPPLYMETER_GRAFANA_TOKEN",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Secrets:
        values = {
            name: SecretStr(environ[var]) for name, var in cls.ENV.items() if environ.get(var)
        }
        return cls(**values)


@dataclass(frozen=True)
class Config:
    """Everything a service needs, validated. Build with :func:`load_config`."""

    path: Path
    services: ServicesFile
    registry: Registry
    secrets: Secrets

    @property
    def mqtt(self) -> MqttSettings:
        return self.services.mqtt

    @property
    def influxdb(self) -> InfluxSettings:
        return self.services.influxdb

    @property
    def collector(self) -> CollectorSettings:
        return self.services.collector

    @property
    def jobs(self) -> JobsSettings:
        return self.services.jobs

    @property
    def stack(self) -> StackSettings:
        return self.services.stack

    @property
    def grafana(self) -> GrafanaSettings:
        return self.services.grafana

    @property
    def alerts(self) -> AlertSettings:
        return self.services.alerts

    @property
    def smtp(self) -> SmtpSettings:
        return self.services.smtp

    @property
    def simulator(self) -> SimulatorSettings:
        return self.services.simulator

    @property
    def pact(self) -> PactSettings:
        return self.services.pact

    @property
    def operations(self) -> OperationsSettings:
        return self.services.operations

    @property
    def console(self) -> ConsoleSettings:
        return self.services.console

    @property
    def registry_path(self) -> Path:
        """The registry file this configuration was loaded from."""
        return self.resolve(self.services.registry)

    def resolve(self, path: Path) -> Path:
        """A path from the config file, relative to the file's directory."""
        return path if path.is_absolute() else self.path.parent / path


# --- loading ----------------------------------------------------------------------------


_CODES = {"extra_forbidden": "unknown_key", "missing": "missing_key"}
_REFERENCE = re.compile(r"\bno (meter|line) '")


def _walk(doc: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(doc, dict) and isinstance(part, str):
            doc = doc.get(part)
        elif isinstance(doc, list) and isinstance(part, int) and 0 <= part < len(doc):
            doc = doc[part]
        else:
            return None
    return doc


def _misspelt(errors: list[Any]) -> dict[Loc, str]:
    """Unknown keys that are a close spelling of a missing required key beside them
    (``carier`` for ``carrier``): loc of the unknown key → the key meant."""
    missing: dict[Loc, list[str]] = {}
    for err in errors:
        if err["type"] == "missing" and err["loc"] and isinstance(err["loc"][-1], str):
            missing.setdefault(tuple(err["loc"][:-1]), []).append(err["loc"][-1])
    meant = {}
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            close = difflib.get_close_matches(loc[-1], missing.get(loc[:-1], []), n=1)
            if close:
                meant[loc] = close[0]
    return meant


def _describe(
    file: str,
    exc: ValidationError,
    raw: Any = None,
    lines: dict[Loc, int] | None = None,
    skip: set[Loc] | frozenset[Loc] = frozenset(),
) -> list[Problem]:
    """Each validation error as a :class:`Problem`: its line, its key path by ids, the rule,
    the value found (never a secret), and a stable code. Errors at ``skip`` are left out."""
    problems = []
    lines = lines or {}
    meant = _misspelt(exc.errors())
    for err in exc.errors():
        if tuple(err["loc"]) in skip:
            continue
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        name = label(raw, loc) if raw is not None else _format_loc(loc)
        code = _CODES.get(err["type"], "invalid_value")
        if err["type"] == "extra_forbidden":
            msg = (f"unknown key (did you mean {meant[loc]!r}?)" if loc in meant else
                   "unknown key (misspelt? secrets come from SUPPLYMETER_* environment "
                   "variables)")  # fmt: skip
        if err["type"] == "missing" and any(loc[:-1] == m[:-1] and v == loc[-1]
                                            for m, v in meant.items()):  # fmt: skip
            continue  # said once, as the misspelt key
        if isinstance(err["input"], dict) and err["type"] == "value_error":
            # A table-level check: one problem per rule broken, on the line of its key.
            for m in msg.split("; "):
                name = m.split(":", 1)[0]
                field = name if name in err["input"] else None
                kind = (
                    "invalid_value"
                    if field
                    else "unknown_reference"
                    if _REFERENCE.search(m)
                    else "inconsistent"
                )
                at = loc + ((field,) if field else ())
                if field:
                    m = m.split(":", 1)[1].lstrip()
                    name = label(raw, at) if raw is not None else _format_loc(at)
                problems.append(Problem(file, line_of(lines, at),
                                        f"{name}: {m}" if name else m, kind))  # fmt: skip
            continue
        hidden = err["type"] in ("missing", "extra_forbidden") or msg == CREDENTIALS_IN_URL
        got = "" if hidden else f" (got {err['input']!r})"
        text = f"{name}: {msg}{got}" if name else f"{msg}{got}"
        problems.append(Problem(file, line_of(lines, loc), text, code))
    return problems


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _read_toml(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """The parsed file and the line of each of its keys."""
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), key_lines(text)
    except FileNotFoundError as exc:
        raise ConfigError([Problem(str(path), None, "file not found", "file_not_found")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, f"not UTF-8 text ({exc.reason})",
                                   "not_toml")]) from exc  # fmt: skip
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"at line (\d+)", str(exc))
        raise ConfigError([Problem(str(path), int(at.group(1)) if at else None,
                                   f"not valid TOML: {exc}", "not_toml")]) from exc  # fmt: skip


def _pruned(doc: Any, errors: list[Any]) -> tuple[Any, bool]:
    """``doc`` without the keys that failed validation (a misspelt key renamed to the one
    meant), so that a second validation reaches the checks the failures stood in front of."""
    doc = copy.deepcopy(doc)
    changed = False
    meant = _misspelt(errors)
    for err in errors:
        loc = tuple(err["loc"])
        if not loc or err["type"] == "missing":
            continue
        node = _walk(doc, loc)
        if isinstance(err["input"], dict) and err["type"] == "value_error" and isinstance(
                node, dict):  # fmt: skip
            for m in str(err["msg"]).removeprefix("Value error, ").split("; "):
                name = m.split(":", 1)[0]
                if name in node:
                    del node[name]
                    changed = True
            continue
        parent = _walk(doc, loc[:-1])
        if isinstance(parent, dict) and isinstance(loc[-1], str) and loc[-1] in parent:
            value = parent.pop(loc[-1])
            if loc in meant:
                parent[meant[loc]] = value
            changed = True
    return doc, changed


def _validate_registry(
    file: str, raw: dict[str, Any], lines: dict[Loc, int]
) -> tuple[list[Supplier], list[Problem]]:
    """The registry's suppliers and every problem, found in one pass: after a failed
    validation the failing keys are set aside and the rest validated again (up to four
    rounds), so a type error in one meter does not hide a reference error beside it. Only a
    registry without problems is returned whole; otherwise the suppliers that validate (for
    the duplicate checks)."""
    problems: list[Problem] = []
    seen: set[Loc] = set()
    doc: Any = raw
    for _ in range(4):
        try:
            suppliers = RegistryFile.model_validate(doc).suppliers
            return suppliers, problems
        except ValidationError as exc:
            problems += _describe(file, exc, raw, lines, skip=seen)
            fresh = {tuple(e["loc"]) for e in exc.errors()} - seen
            seen |= fresh
            doc, changed = _pruned(doc, exc.errors())
            if not changed or not fresh:
                break
    valid = []
    for item in doc.get("suppliers", []) if isinstance(doc, dict) else []:
        with contextlib.suppress(ValidationError):
            valid.append(Supplier.model_validate(item))
    return valid, problems


def _duplicates(
    file: str, suppliers: list[Supplier], raw: Any = None, lines: dict[Loc, int] | None = None
) -> list[Problem]:
    problems: list[Problem] = []
    lines = lines or {}
    index = {s.get("id"): i for i, s in enumerate((raw or {}).get("suppliers", []))
             if isinstance(s, dict)}  # fmt: skip

    def problem(loc: Loc, text: str, code: str = "inconsistent") -> None:
        name = label(raw, loc) if raw is not None else _format_loc(loc)
        problems.append(Problem(file, line_of(lines, loc), f"{name}: {text}", code))

    def check(loc: Loc, ids: list[str]) -> None:
        seen = set()
        for n, item in enumerate(ids):
            if item in seen:
                problem((*loc, n, "id"), f"id {item!r} appears more than once", "duplicate_id")
            seen.add(item)

    check(("suppliers",), [s.id for s in suppliers])
    for supplier in suppliers:
        i = index.get(supplier.id, 0)
        check(("suppliers", i, "sites"), [s.id for s in supplier.sites])
        for j, site in enumerate(supplier.sites):
            at = ("suppliers", i, "sites", j)
            check((*at, "meters"), [m.id for m in site.meters])
            if sum(m.role == "grid" for m in site.meters) > 1:
                problem((*at, "meters"), "more than one 'grid' meter")
            if site.contract_capacity_kw is None:
                continue
            if not any(m.carrier == "electricity" for m in site.meters):
                problem((*at, "contract_capacity_kw"),
                        "set on a site without an electricity meter")  # fmt: skip
        if supplier.allocation.method == "dedicated" and supplier.allocation.share != 1:
            share = supplier.allocation.share
            problem(
                ("suppliers", i, "allocation", "share"),
                f"must be 1 when method is 'dedicated' (got {share!r})",
                "invalid_value",
            )
    return problems


@dataclass(frozen=True)
class Inspection:
    """What :func:`inspect_config` found: every problem, and what could be read despite them
    (the parsed files, for checks of the other input files against the registry's ids)."""

    path: Path
    problems: list[str]
    services: dict[str, Any]
    registry_path: Path | None
    registry: dict[str, Any]
    config: Config | None
    """The loaded configuration; ``None`` when there are problems."""


def load_registry(path: Path) -> Registry:
    """The registry file alone (a live reload), or :class:`ConfigError` with every problem."""
    raw, lines = _read_toml(path)
    suppliers, problems = _validate_registry(str(path), raw, lines)
    problems += _duplicates(str(path), suppliers, raw, lines)
    if problems:
        raise ConfigError(problems)
    return Registry.build(suppliers)


class RegistryWatch:
    """The registry file, re-read when it changes (its modification time, size or inode):
    services that run for months take a new meter, gateway or supplier without a restart. A
    bad edit is reported once, with every problem, and the last good registry stays in force
    until the file is fixed."""

    CODE = "registry_reload_failed"

    def __init__(self, path: Path, registry: Registry) -> None:
        self.path, self.registry = path, registry
        self._seen = self._stamp()
        self.problems: list[str] = []

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def poll(self) -> Registry | None:
        """The new registry when the file changed and is valid; ``None`` otherwise."""
        stamp = self._stamp()
        if stamp == self._seen or stamp is None:
            return None
        self._seen = stamp
        try:
            new = load_registry(self.path)
        except ConfigError as exc:
            if exc.problems != self.problems:
                _log.error("%s: %s has %d problem(s); the last good registry stays in force "
                           "until it is fixed:\n  %s", self.CODE, self.path, len(exc.problems),
                           "\n  ".join(exc.problems))  # fmt: skip
            self.problems = exc.problems
            return None
        self.problems = []
        if new == self.registry:
            return None
        before = {r.key for r in self.registry.meters()}
        after = {r.key for r in new.meters()}
        _log.warning("registry %s reloaded: %d suppliers, %d meters (%d added, %d removed)",
                     self.path, len(new.suppliers), len(after), len(after - before),
                     len(before - after))  # fmt: skip
        self.registry = new
        return new


def inspect_config(path: Path | str | None = None,
                   environ: Mapping[str, str] | None = None) -> Inspection:  # fmt: skip
    """Read and validate the services file, its registry and the secrets, collecting every
    problem of every layer in one pass (nothing is raised)."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    problems: list[str] = []
    raw: dict[str, Any] = {}
    lines: dict[Loc, int] = {}
    try:
        raw, lines = _read_toml(path)
    except ConfigError as exc:
        problems += exc.problems
    services: ServicesFile | None = None
    try:
        services = ServicesFile.model_validate(raw)
    except ValidationError as exc:
        problems += _describe(str(path), exc, raw, lines)
    # Even with errors above, check the registry too: report every problem in one go.
    raw_registry = services.registry if services else raw.get("registry", "suppliers.toml")
    if not isinstance(raw_registry, str | Path):
        problems.append(Problem(str(path), line_of(lines, ("registry",)), "registry: must be "
                                f"the path of the registry file (got {raw_registry!r})",
                                "invalid_value"))  # fmt: skip
        return Inspection(path, problems, raw, None, {}, None)
    registry_path = Path(raw_registry)
    if not registry_path.is_absolute():
        registry_path = path.parent / registry_path
    suppliers: list[Supplier] = []
    registry: dict[str, Any] = {}
    try:
        registry, reg_lines = _read_toml(registry_path)
        suppliers, found = _validate_registry(str(registry_path), registry, reg_lines)
        problems += found
        problems += _duplicates(str(registry_path), suppliers, registry, reg_lines)
    except ConfigError as exc:
        problems += exc.problems
    if problems or services is None:
        return Inspection(path, problems, raw, registry_path, registry, None)
    user = environ.get(INFLUXDB_USERNAME_ENV)
    if user:  # one config file for several services, each with its own database user
        influxdb = services.influxdb.model_copy(update={"username": user})
        services = services.model_copy(update={"influxdb": influxdb})
    ca = services.mqtt.tls_ca_file
    if ca is not None and not ca.is_absolute():
        mqtt = services.mqtt.model_copy(update={"tls_ca_file": path.parent / ca})
        services = services.model_copy(update={"mqtt": mqtt})
    config = Config(
        path=path,
        services=services,
        registry=Registry.build(suppliers),
        secrets=Secrets.from_env(environ),
    )
    return Inspection(path, [], raw, registry_path, registry, config)


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the services file, its registry and the secrets.

    ``path`` defaults to ``$SUPPLYMETER_CONFIG`` or ``./supplymeter.toml``; ``environ``
    to ``os.environ``. Raises :class:`ConfigError` listing every problem found.
    """
    found = inspect_config(path, environ)
    if found.config is None:
        raise ConfigError(found.problems)
    return found.config
