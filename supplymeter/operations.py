"""The operations database: what people enter, and who entered it.

Meter events, utility bills, incident acknowledgements, maintenance silences, month reviews
(confirmations and disputes) and the console's users live here — a SQLite file by default,
PostgreSQL in production — with an append-only audit trail: every change is one row of
``audit`` (who, when, what before and after, why), written in the same transaction as the
change, and the database refuses to update or delete an audit row (triggers in migration 0001).

This module is the only code that knows the tables, as :mod:`supplymeter.store` is for
InfluxDB: the console writes through it, the jobs read through it. The schema is managed by
Alembic migrations (``supplymeter/migrations``), applied when an :class:`Operations` opens.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from supplymeter.carriers import CARRIERS
from supplymeter.config import Config, Meter, MeterEvent, Registry

MIGRATIONS = Path(__file__).parent / "migrations"

Role = Literal["admin", "energy_manager", "supplier", "auditor"]
ROLES: tuple[str, ...] = ("admin", "energy_manager", "supplier", "auditor")
"""admin: users and roles, and everything an energy manager does. energy_manager: the
buyer's staff — every supplier, every record. supplier: one supplier's own sites only.
auditor: every supplier, read-only, with the audit trail and downloads."""
LANGUAGES = ("en", "zh-TW")

HASHER = PasswordHasher()
"""Argon2id with argon2-cffi's defaults (RFC 9106's second recommended option: t=3,
m=64 MiB, p=4), a memory-hard hash: a stolen database does not give the passwords away."""

ADDRESS_FACTOR = 5
"""Failed sign-ins from one address throttle it at this many times the per-account limit."""

_DUMMY_HASH = HASHER.hash("not a password")
"""Verified against when the user does not exist, so the answer takes the same time."""

R = TypeVar("R")

md = sa.MetaData()
TS = sa.DateTime(timezone=True)


def _recorded() -> list[sa.Column[Any]]:
    return [
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    ]


def _standing(table: sa.Table, supplier: str | None = None) -> sa.Select:
    """The table's records not withdrawn, oldest first (``supplier``: only its own)."""
    q = sa.select(table).where(table.c.removed_at.is_(None)).order_by(table.c.id)
    return q if supplier is None else q.where(table.c.supplier == supplier)


def _removed() -> list[sa.Column[Any]]:
    return [sa.Column("removed_by", sa.String(64)), sa.Column("removed_at", TS)]


users = sa.Table(
    "users",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("supplier", sa.String(64)),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)
sessions = sa.Table(
    "sessions",
    md,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
)
login_failures = sa.Table(
    "login_failures",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("address", sa.String(64), nullable=False, index=True),
    sa.Column("at", TS, nullable=False),
)
meter_events = sa.Table(
    "meter_events",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("supplier", sa.String(64), nullable=False, index=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("meter", sa.String(64), nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    *_recorded(),
    *_removed(),
)
bills = sa.Table(
    "bills",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("supplier", sa.String(64), nullable=False, index=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("carrier", sa.String(32), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("period_end", sa.Date, nullable=False),
    sa.Column("billed", sa.Float, nullable=False),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("bill_id", sa.String(64), nullable=False),
    *_recorded(),
    *_removed(),
)
acknowledgements = sa.Table(
    "acknowledgements",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("incident", sa.String(300), nullable=False, index=True),
    sa.Column("supplier", sa.String(64), nullable=False, index=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    *_recorded(),
)
silences = sa.Table(
    "silences",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("supplier", sa.String(64), nullable=False, index=True),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("meter", sa.String(64)),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    *_recorded(),
    *_removed(),
)
month_reviews = sa.Table(
    "month_reviews",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("supplier", sa.String(64), nullable=False, index=True),
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    *_recorded(),
)
audit = sa.Table(
    "audit",
    md,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.String(300), nullable=False),
    sa.Column("supplier", sa.String(64), index=True),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
)


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    supplier: str | None
    language: str
    active: bool

    def sees(self, supplier: str) -> bool:
        """Whether this user may see ``supplier``'s data (scoping on the server)."""
        return self.role != "supplier" or self.supplier == supplier

    @property
    def scope(self) -> str | None:
        """The one supplier this user is confined to (``None``: every supplier)."""
        return self.supplier if self.role == "supplier" else None

    @property
    def can_write(self) -> bool:
        """Auditors read; everyone else records."""
        return self.role != "auditor"


@dataclass(frozen=True)
class RecordedEvent:
    id: int
    supplier: str
    site: str
    meter: str
    event: MeterEvent
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class BillRecord:
    id: int
    supplier: str
    site: str
    carrier: str
    account: str
    period_start: date
    period_end: date
    billed: float
    unit: str
    bill_id: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class Acknowledgement:
    id: int
    incident: str
    supplier: str
    site: str
    comment: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class Silence:
    id: int
    supplier: str
    site: str
    meter: str | None
    """``None``: the whole site."""
    starts_at: datetime
    ends_at: datetime
    reason: str
    recorded_by: str
    recorded_at: datetime

    def covers(self, supplier: str, site: str, meter: str | None, at: datetime) -> bool:
        """Whether this silence mutes ``supplier/site/meter`` at ``at`` (a site silence mutes
        every meter and gateway of the site)."""
        return (
            self.supplier == supplier
            and self.site == site
            and (self.meter is None or self.meter == meter)
            and self.starts_at <= at < self.ends_at
        )


@dataclass(frozen=True)
class MonthReview:
    id: int
    supplier: str
    month: str
    version: int
    status: str
    """``confirmed`` or ``disputed``."""
    comment: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    username: str
    action: str
    entity: str
    entity_id: str
    supplier: str | None
    before: str | None
    after: str | None
    reason: str


class Throttled(Exception):
    """Too many wrong passwords for this account or from this address: try again later."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Refused(ValueError):
    """A record that would be wrong (names the rule), or that does not exist for this user."""


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: they were written in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _record(cls: type[R], row: Any, **override: Any) -> R:
    """A record dataclass from a database row, field by field by name (the columns carry the
    fields' names); times come back in UTC (SQLite returns them naive)."""
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = override[f.name] if f.name in override else row._mapping[f.name]
        values[f.name] = _utc(value) if isinstance(value, datetime) else value
    return cls(**values)


def _row(record: object) -> dict[str, Any]:
    out = asdict(record)  # type: ignore[call-overload]
    if isinstance(out.get("event"), dict):
        out["event"] = json.loads(record.event.model_dump_json())  # type: ignore[attr-defined]
    return out


# --- the database ------------------------------------------------------------------------------


class Operations:
    """One operations database. Open with :meth:`from_config` (or a SQLAlchemy URL); the
    schema is migrated to the newest revision on open. Thread-safe (one engine, a connection
    per call)."""

    def __init__(self, url: str, *, password: str | None = None) -> None:
        sa_url = sa.make_url(url)
        if password and sa_url.password is None:
            sa_url = sa_url.set(password=password)
        if sa_url.get_backend_name() == "sqlite" and sa_url.database:
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(sa_url, future=True)
        if sa_url.get_backend_name() == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.url = sa_url.render_as_string(hide_password=True)
        self.upgrade()

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> Operations:
        import os

        env = os.environ if environ is None else environ
        return cls(
            config.operations.url(config.path.parent),
            password=env.get("SUPPLYMETER_OPERATIONS_PASSWORD"),
        )

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Operations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @staticmethod
    def _audit(
        conn: Connection,
        *,
        by: str,
        action: str,
        entity: str,
        entity_id: object,
        supplier: str | None,
        before: object,
        after: object,
        reason: str,
        at: datetime,
    ) -> None:
        conn.execute(
            audit.insert().values(
                at=at,
                username=by,
                action=action,
                entity=entity,
                entity_id=str(entity_id),
                supplier=supplier,
                before=_json(before),
                after=_json(after),
                reason=reason,
            )
        )

    # --- users and sessions -------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password: str,
        role: str,
        *,
        supplier: str | None = None,
        language: str = "en",
        by: str = "cli",
        reason: str = "",
        registry: Registry | None = None,
        now: datetime | None = None,
    ) -> User:
        """A new active account. A supplier user needs its supplier (one of ``registry``'s,
        when given); others have none."""
        _check_user(username, role, supplier, language, registry)
        if len(password) < 10:
            raise Refused("password: at least 10 characters")
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
                raise Refused(f"user {username!r} exists already")
            uid = conn.execute(
                users.insert().values(
                    username=username,
                    password_hash=HASHER.hash(password),
                    role=role,
                    supplier=supplier if role == "supplier" else None,
                    language=language,
                    active=True,
                    created_at=now,
                )
            ).inserted_primary_key[0]
            user = User(
                uid, username, role, supplier if role == "supplier" else None, language, True
            )
            self._audit(
                conn,
                by=by,
                action="create",
                entity="user",
                entity_id=username,
                supplier=user.supplier,
                before=None,
                after=_public(user),
                reason=reason or "account created",
                at=now,
            )
        return user

    def update_user(
        self,
        username: str,
        *,
        by: str,
        reason: str = "",
        role: str | None = None,
        supplier: str | None = None,
        language: str | None = None,
        active: bool | None = None,
        password: str | None = None,
        registry: Registry | None = None,
        now: datetime | None = None,
    ) -> User:
        """Change an account (role, supplier, language, active, password); audited. A
        deactivated user's sessions end at once."""
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
            if row is None:
                raise Refused(f"no user {username!r}")
            before = _user(row)
            new_role = role or before.role
            new_supplier = supplier if supplier is not None else before.supplier
            if new_role != "supplier":
                new_supplier = None
            new_language = language or before.language
            _check_user(username, new_role, new_supplier, new_language, registry)
            values: dict[str, Any] = {
                "role": new_role,
                "supplier": new_supplier,
                "language": new_language,
            }
            if active is not None:
                values["active"] = active
            if password is not None:
                if len(password) < 10:
                    raise Refused("password: at least 10 characters")
                values["password_hash"] = HASHER.hash(password)
            conn.execute(users.update().where(users.c.id == before.id).values(**values))
            after = _user(conn.execute(sa.select(users).where(users.c.id == before.id)).one())
            if not after.active or password is not None:
                conn.execute(sessions.delete().where(sessions.c.user_id == before.id))
            shown = _public(after) | ({"password": "changed"} if password is not None else {})
            self._audit(
                conn,
                by=by,
                action="update",
                entity="user",
                entity_id=username,
                supplier=after.supplier or before.supplier,
                before=_public(before),
                after=shown,
                reason=reason or "account changed",
                at=now,
            )
        return after

    def users(self) -> list[User]:
        with self._tx() as conn:
            return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.username))]

    def user(self, username: str) -> User | None:
        with self._tx() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
            return _user(row) if row else None

    def login(
        self,
        username: str,
        password: str,
        address: str,
        *,
        max_failures: int,
        window: timedelta,
        now: datetime | None = None,
    ) -> User | None:
        """The user when the password is right and the account active; ``None`` otherwise
        (the failure is recorded). Raises :class:`Throttled` — before looking at the
        password — once ``max_failures`` wrong passwords for this account (or
        :data:`ADDRESS_FACTOR` times as many from this address) fell within ``window``."""
        now = now or datetime.now(UTC)
        since = now - window
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(login_failures.c.at, login_failures.c.username).where(
                    login_failures.c.at > since,
                    sa.or_(
                        login_failures.c.username == username,
                        login_failures.c.address == address,
                    ),
                )
            ).all()
            mine = [_utc(r.at) for r in rows if r.username == username]
            # One address may try several accounts (a plant's NAT): it is stopped at
            # ADDRESS_FACTOR times the account limit, so one person's typos lock no one else.
            for times, limit in (
                (mine, max_failures),
                ([_utc(r.at) for r in rows], max_failures * ADDRESS_FACTOR),
            ):
                if len(times) >= limit:
                    oldest = sorted(t for t in times if t is not None)[-limit]
                    raise Throttled(max(1, int((oldest + window - now).total_seconds()) + 1))
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
            stored = row.password_hash if row is not None else _DUMMY_HASH
            try:
                ok = HASHER.verify(stored, password) and row is not None and bool(row.active)
            except (VerificationError, InvalidHashError):
                ok = False
            if not ok:
                conn.execute(
                    login_failures.insert().values(
                        username=username[:64], address=address[:64], at=now
                    )
                )
                return None
            conn.execute(login_failures.delete().where(login_failures.c.username == username))
            conn.execute(login_failures.delete().where(login_failures.c.at <= since))
            if HASHER.check_needs_rehash(stored):
                conn.execute(
                    users.update()
                    .where(users.c.id == row.id)
                    .values(password_hash=HASHER.hash(password))
                )
            return _user(row)

    def start_session(
        self, user: User, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[str, str]:
        """A new session: (token for the cookie, CSRF token for its forms). Only the token's
        SHA-256 is stored, so a copy of the database opens no session."""
        now = now or datetime.now(UTC)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._tx() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at < now))
            conn.execute(
                sessions.insert().values(
                    token_sha256=_sha(token),
                    user_id=user.id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=now + lifetime,
                )
            )
        return token, csrf

    def session(
        self, token: str, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[User, str] | None:
        """(user, CSRF token) of a live session, its expiry moved on (sliding); ``None`` for
        an unknown, expired or deactivated one."""
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            row = conn.execute(
                sa.select(sessions, users)
                .join(users, users.c.id == sessions.c.user_id)
                .where(sessions.c.token_sha256 == _sha(token))
            ).first()
            if row is None or not row.active or (_utc(row.expires_at) or now) <= now:
                return None
            conn.execute(
                sessions.update()
                .where(sessions.c.token_sha256 == _sha(token))
                .values(expires_at=now + lifetime)
            )
            return _user(row), row.csrf

    def end_session(self, token: str) -> None:
        with self._tx() as conn:
            conn.execute(sessions.delete().where(sessions.c.token_sha256 == _sha(token)))

    # --- meter events ------------------------------------------------------------------------

    def record_meter_event(
        self,
        registry: Registry,
        key: tuple[str, str, str],
        event: MeterEvent,
        *,
        by: str,
        reason: str = "",
        now: datetime | None = None,
    ) -> RecordedEvent:
        """Record an exchange, CT change, commissioning or decommissioning for a meter of
        ``registry``. Validated as the registry validates it, together with the meter's
        other events (order, one commissioning...). The next rollup recomputes the hours it
        governs and the months restate naming who recorded it."""
        ref = registry.meter(*key)
        if ref is None:
            raise Refused(f"no meter {'/'.join(key)}")
        event = event.model_copy(update={"recorded_by": by})
        merged_meter(ref.meter, [event])  # raises Refused with the registry's own rules
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            current = [e.event for e in self._events(conn, key)]
            merged_meter(ref.meter, [*current, event])
            eid = conn.execute(
                meter_events.insert().values(
                    supplier=key[0],
                    site=key[1],
                    meter=key[2],
                    event=event.model_dump_json(),
                    recorded_by=by,
                    recorded_at=now,
                )
            ).inserted_primary_key[0]
            record = RecordedEvent(eid, *key, event, by, now)
            self._audit(
                conn,
                by=by,
                action="create",
                entity="meter_event",
                entity_id=eid,
                supplier=key[0],
                before=None,
                after=_row(record),
                reason=reason or f"{event.type} recorded",
                at=now,
            )
        return record

    def remove_meter_event(
        self,
        event_id: int,
        *,
        by: str,
        reason: str,
        supplier: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Withdraw an event recorded in the console (kept, marked removed; audited).
        ``supplier``: the caller may only touch that supplier's records."""
        self._remove(meter_events, "meter_event", event_id, by, reason, supplier, now)

    def _events(
        self, conn: Connection, key: tuple[str, str, str] | None = None, supplier: str | None = None
    ) -> list[RecordedEvent]:
        q = _standing(meter_events, supplier)
        if key is not None:
            q = q.where(
                meter_events.c.supplier == key[0],
                meter_events.c.site == key[1],
                meter_events.c.meter == key[2],
            )
        return [
            _record(RecordedEvent, r, event=MeterEvent.model_validate_json(r.event))
            for r in conn.execute(q)
        ]

    def meter_events(self, supplier: str | None = None) -> list[RecordedEvent]:
        """Every event recorded in the console and not removed (``supplier``: its only)."""
        with self._tx() as conn:
            return self._events(conn, supplier=supplier)

    # --- bills ----------------------------------------------------------------------------------

    def add_bill(
        self,
        registry: Registry,
        *,
        supplier: str,
        site: str,
        carrier: str,
        account: str,
        period_start: date,
        period_end: date,
        billed: float,
        bill_id: str,
        by: str,
        reason: str = "",
        now: datetime | None = None,
    ) -> BillRecord:
        """A utility bill, checked as the bills file is (carrier, unit, period, amount); the
        next export reconciles it with the metered quantity of its period."""
        if registry.site(supplier, site) is None:
            raise Refused(f"no site {supplier}/{site}")
        spec = CARRIERS.get(carrier)
        if spec is None:
            raise Refused(f"carrier: must be one of {', '.join(CARRIERS)}")
        if period_end <= period_start:
            raise Refused("period_end: must be after period_start (end is exclusive)")
        if not billed >= 0 or billed == float("inf"):
            raise Refused("billed: must be a number >= 0")
        if not bill_id.strip() or not account.strip():
            raise Refused("bill_id and account: required (as printed on the bill)")
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            bid = conn.execute(
                bills.insert().values(
                    supplier=supplier,
                    site=site,
                    carrier=carrier,
                    account=account.strip(),
                    period_start=period_start,
                    period_end=period_end,
                    billed=billed,
                    unit=spec.unit,
                    bill_id=bill_id.strip(),
                    recorded_by=by,
                    recorded_at=now,
                )
            ).inserted_primary_key[0]
            record = BillRecord(
                bid,
                supplier,
                site,
                carrier,
                account.strip(),
                period_start,
                period_end,
                billed,
                spec.unit,
                bill_id.strip(),
                by,
                now,
            )
            self._audit(
                conn,
                by=by,
                action="create",
                entity="bill",
                entity_id=bid,
                supplier=supplier,
                before=None,
                after=_row(record),
                reason=reason or "bill entered",
                at=now,
            )
        return record

    def bills(self, supplier: str | None = None) -> list[BillRecord]:
        with self._tx() as conn:
            return [_record(BillRecord, r) for r in conn.execute(_standing(bills, supplier))]

    def remove_bill(
        self,
        bill: int,
        *,
        by: str,
        reason: str,
        supplier: str | None = None,
        now: datetime | None = None,
    ) -> None:
        self._remove(bills, "bill", bill, by, reason, supplier, now)

    # --- incidents: acknowledgements and silences ----------------------------------------------

    def acknowledge(
        self,
        incident: str,
        *,
        supplier: str,
        site: str,
        comment: str,
        by: str,
        now: datetime | None = None,
    ) -> Acknowledgement:
        """Someone has seen the incident and says what is being done; reminders stop."""
        if not comment.strip():
            raise Refused("comment: say what is being done about it")
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            aid = conn.execute(
                acknowledgements.insert().values(
                    incident=incident,
                    supplier=supplier,
                    site=site,
                    comment=comment.strip(),
                    recorded_by=by,
                    recorded_at=now,
                )
            ).inserted_primary_key[0]
            record = Acknowledgement(aid, incident, supplier, site, comment.strip(), by, now)
            self._audit(
                conn,
                by=by,
                action="create",
                entity="acknowledgement",
                entity_id=incident,
                supplier=supplier,
                before=None,
                after=_row(record),
                reason=comment.strip(),
                at=now,
            )
        return record

    def acknowledgements(self, supplier: str | None = None) -> dict[str, Acknowledgement]:
        """Incident id → its latest acknowledgement."""
        q = sa.select(acknowledgements).order_by(acknowledgements.c.id)
        if supplier is not None:
            q = q.where(acknowledgements.c.supplier == supplier)
        with self._tx() as conn:
            return {r.incident: _record(Acknowledgement, r) for r in conn.execute(q)}

    def silence(
        self,
        registry: Registry,
        *,
        supplier: str,
        site: str,
        meter: str | None,
        starts_at: datetime,
        ends_at: datetime,
        reason: str,
        by: str,
        now: datetime | None = None,
    ) -> Silence:
        """Mute a meter (or a whole site) for a maintenance window: the detector opens no
        incident there and the mailer sends nothing about it until ``ends_at``."""
        if registry.site(supplier, site) is None:
            raise Refused(f"no site {supplier}/{site}")
        if meter and registry.meter(supplier, site, meter) is None:
            raise Refused(f"no meter {supplier}/{site}/{meter}")
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise Refused("starts_at, ends_at: need a UTC offset")
        if ends_at <= starts_at:
            raise Refused("ends_at: must be after starts_at")
        if ends_at - starts_at > timedelta(days=31):
            raise Refused(
                "a maintenance window is at most 31 days (a longer one hides "
                "a meter: decommission it instead)"
            )
        if not reason.strip():
            raise Refused("reason: say what the maintenance is")
        # Stored in UTC: SQLite keeps no offset, so every time in the database is UTC.
        starts_at, ends_at = starts_at.astimezone(UTC), ends_at.astimezone(UTC)
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            sid = conn.execute(
                silences.insert().values(
                    supplier=supplier,
                    site=site,
                    meter=meter or None,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    reason=reason.strip(),
                    recorded_by=by,
                    recorded_at=now,
                )
            ).inserted_primary_key[0]
            record = Silence(
                sid,
                supplier,
                site,
                meter or None,
                starts_at.astimezone(UTC),
                ends_at.astimezone(UTC),
                reason.strip(),
                by,
                now,
            )
            self._audit(
                conn,
                by=by,
                action="create",
                entity="silence",
                entity_id=sid,
                supplier=supplier,
                before=None,
                after=_row(record),
                reason=reason.strip(),
                at=now,
            )
        return record

    def silences(
        self,
        supplier: str | None = None,
        active_at: datetime | None = None,
    ) -> list[Silence]:
        """Silences not cancelled (``active_at``: only those covering that time)."""
        q = _standing(silences, supplier)
        if active_at is not None:
            active_at = active_at.astimezone(UTC)
            q = q.where(silences.c.starts_at <= active_at, silences.c.ends_at > active_at)
        with self._tx() as conn:
            return [_record(Silence, r) for r in conn.execute(q)]

    def cancel_silence(
        self,
        silence: int,
        *,
        by: str,
        reason: str,
        supplier: str | None = None,
        now: datetime | None = None,
    ) -> None:
        self._remove(silences, "silence", silence, by, reason, supplier, now)

    # --- months ---------------------------------------------------------------------------------

    def review_month(
        self,
        *,
        supplier: str,
        month: str,
        version: int,
        status: str,
        comment: str,
        by: str,
        now: datetime | None = None,
    ) -> MonthReview:
        """The supplier confirms a month's standing version, or disputes it with a comment;
        the export's Restatements sheet shows the review."""
        if status not in ("confirmed", "disputed"):
            raise Refused("status: confirmed or disputed")
        if status == "disputed" and not comment.strip():
            raise Refused("comment: say what is wrong in the month")
        if version < 1:
            raise Refused("version: the month has no published version yet")
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            rid = conn.execute(
                month_reviews.insert().values(
                    supplier=supplier,
                    month=month,
                    version=version,
                    status=status,
                    comment=comment.strip(),
                    recorded_by=by,
                    recorded_at=now,
                )
            ).inserted_primary_key[0]
            record = MonthReview(rid, supplier, month, version, status, comment.strip(), by, now)
            self._audit(
                conn,
                by=by,
                action=status,
                entity="month",
                entity_id=f"{supplier}/{month}/v{version}",
                supplier=supplier,
                before=None,
                after=_row(record),
                reason=comment.strip() or status,
                at=now,
            )
        return record

    def month_reviews(
        self, month: str | None = None, supplier: str | None = None
    ) -> list[MonthReview]:
        q = sa.select(month_reviews).order_by(month_reviews.c.id)
        if month is not None:
            q = q.where(month_reviews.c.month == month)
        if supplier is not None:
            q = q.where(month_reviews.c.supplier == supplier)
        with self._tx() as conn:
            return [_record(MonthReview, r) for r in conn.execute(q)]

    def record_note(
        self,
        *,
        by: str,
        entity: str,
        entity_id: str,
        supplier: str | None,
        reason: str,
        now: datetime | None = None,
    ) -> None:
        """An action that changes no record but belongs in the trail (a test alert sent)."""
        with self._tx() as conn:
            self._audit(
                conn,
                by=by,
                action="note",
                entity=entity,
                entity_id=entity_id,
                supplier=supplier,
                before=None,
                after=None,
                reason=reason,
                at=now or datetime.now(UTC),
            )

    # --- audit ----------------------------------------------------------------------------------

    def audit_trail(
        self, supplier: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[AuditEntry]:
        """The audit trail, oldest first (``supplier``: entries about it; ``after_id``: only
        newer entries — the jobs read what changed since their cursor)."""
        q = sa.select(audit).where(audit.c.id > after_id).order_by(audit.c.id)
        if supplier is not None:
            q = q.where(audit.c.supplier == supplier)
        if limit is not None:
            q = q.limit(limit)
        with self._tx() as conn:
            return [_record(AuditEntry, r) for r in conn.execute(q)]

    def _remove(
        self,
        table: sa.Table,
        entity: str,
        record_id: int,
        by: str,
        reason: str,
        supplier: str | None,
        now: datetime | None,
    ) -> None:
        if not reason.strip():
            raise Refused("reason: say why it is withdrawn")
        now = now or datetime.now(UTC)
        with self._tx() as conn:
            row = conn.execute(
                sa.select(table).where(table.c.id == record_id, table.c.removed_at.is_(None))
            ).first()
            if row is None or (supplier is not None and row.supplier != supplier):
                raise Refused(f"no {entity.replace('_', ' ')} {record_id}")
            conn.execute(
                table.update().where(table.c.id == record_id).values(removed_by=by, removed_at=now)
            )
            before = {
                k: v for k, v in row._mapping.items() if k not in ("removed_by", "removed_at")
            }
            self._audit(
                conn,
                by=by,
                action="remove",
                entity=entity,
                entity_id=record_id,
                supplier=row.supplier,
                before=before,
                after=None,
                reason=reason.strip(),
                at=now,
            )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # the console reads while a job writes
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(row.id, row.username, row.role, row.supplier, row.language, bool(row.active))


def _public(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "supplier": user.supplier,
        "language": user.language,
        "active": user.active,
    }


def _check_user(
    username: str, role: str, supplier: str | None, language: str, registry: Registry | None
) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", username):
        raise Refused("username: letters, digits, '.', '_', '@', '-' (at most 64)")
    if role not in ROLES:
        raise Refused(f"role: one of {', '.join(ROLES)}")
    if language not in LANGUAGES:
        raise Refused(f"language: one of {', '.join(LANGUAGES)}")
    if role == "supplier":
        if not supplier:
            raise Refused("a supplier user needs its supplier")
        if registry is not None and registry.supplier(supplier) is None:
            raise Refused(f"supplier: no supplier {supplier!r} in the registry")


# --- what the jobs read --------------------------------------------------------------------------


def merged_meter(meter: Meter, extra: Iterable[MeterEvent]) -> Meter:
    """``meter`` with ``extra`` events added in time order, validated as the registry
    validates a meter (strictly increasing times, one commissioning first...). Raises
    :class:`Refused` naming the rule broken."""
    events = sorted([*meter.events, *extra], key=lambda e: e.time_ns)
    try:
        return Meter.model_validate(meter.model_dump() | {"events": events})
    except ValidationError as exc:
        raise Refused(
            "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        ) from exc


def with_recorded_events(registry: Registry, recorded: list[RecordedEvent]) -> Registry:
    """The registry with the console's meter events added to its meters' own. An event
    that no longer fits (the registry changed under it) is left out, with the problem
    returned by :func:`misfits`."""
    if not recorded:
        return registry
    by_meter: dict[tuple[str, str, str], list[MeterEvent]] = {}
    for r in recorded:
        by_meter.setdefault((r.supplier, r.site, r.meter), []).append(r.event)
    suppliers = []
    for supplier in registry.suppliers:
        sites = []
        for site in supplier.sites:
            meters = []
            for m in site.meters:
                extra = by_meter.get((supplier.id, site.id, m.id))
                if extra:
                    try:
                        m = merged_meter(m, extra)
                    except Refused:
                        m = _fitting(m, extra)
                meters.append(m)
            sites.append(site.model_copy(update={"meters": meters}))
        suppliers.append(supplier.model_copy(update={"sites": sites}))
    return Registry.build(suppliers)


def _fitting(meter: Meter, extra: list[MeterEvent]) -> Meter:
    """As many of ``extra`` (oldest first) as fit the meter's registry events."""
    for event in extra:
        try:
            meter = merged_meter(meter, [event])
        except Refused:
            continue
    return meter


def misfits(registry: Registry, recorded: list[RecordedEvent]) -> list[str]:
    """Console events that no longer fit their meter (a registry edit since), for a warning."""
    out = []
    for r in recorded:
        ref = registry.meter(r.supplier, r.site, r.meter)
        if ref is None:
            out.append(f"meter event {r.id}: no meter {r.supplier}/{r.site}/{r.meter}")
            continue
        try:
            merged_meter(ref.meter, [r.event])
        except Refused as exc:
            out.append(f"meter event {r.id} ({r.supplier}/{r.site}/{r.meter}): {exc}")
    return out


# --- the file formats, for those who keep files ----------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return json.dumps(str(value), ensure_ascii=False)


def events_toml(recorded: list[RecordedEvent]) -> str:
    """The console's meter events in the registry's own form: one ``[[meters]]`` table per
    meter naming it, with ``events`` as the registry writes them (paste them into the meter
    in ``suppliers.toml`` to keep them in the file instead)."""
    by_meter: dict[tuple[str, str, str], list[MeterEvent]] = {}
    for r in recorded:
        by_meter.setdefault((r.supplier, r.site, r.meter), []).append(r.event)
    out = [
        "# Meter events recorded in the supplymeter console (supplymeter console export).",
        "# Each entry's events go into that meter's `events` in suppliers.toml.",
        "",
    ]
    for (supplier, site, meter), events in sorted(by_meter.items()):
        out += [
            "[[meters]]",
            f"supplier = {_toml_value(supplier)}",
            f"site = {_toml_value(site)}",
            f"meter = {_toml_value(meter)}",
            "events = [",
        ]
        for e in sorted(events, key=lambda e: e.time_ns):
            fields = e.model_dump(exclude_none=True, exclude_defaults=False)
            if not fields.get("note"):
                fields.pop("note", None)
            body = ", ".join(f"{k} = {_toml_value(v)}" for k, v in fields.items())
            out.append(f"  {{ {body} }},")
        out += ["]", ""]
    return "\n".join(out)


def bills_csv(records: list[BillRecord]) -> str:
    """The console's bills in the ``[jobs] bills_file`` format."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "supplier",
            "site",
            "carrier",
            "account",
            "period_start",
            "period_end",
            "billed",
            "unit",
            "bill_id",
        ]
    )
    for b in records:
        w.writerow(
            [
                b.supplier,
                b.site,
                b.carrier,
                b.account,
                b.period_start.isoformat(),
                b.period_end.isoformat(),
                repr(b.billed),
                b.unit,
                b.bill_id,
            ]
        )
    return buf.getvalue()
