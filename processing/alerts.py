"""Incidents and their emails: one email per incident event, grouped, cooled down, never lost.

A :class:`~processing.detect.Condition` seen by the detector opens an *incident* (unless the
same alert resolved less than ``cooldown_min`` ago); the incident stays open while the condition
is seen, sends a reminder after ``reminder_h``, and resolves after two evaluations without it.
Spikes of ``group_min_meters`` or more meters of one site that open together become one grouped
email. Every event (open, reminder, resolved) is

* written to InfluxDB (measurement ``alert``) for Grafana annotations, and
* rendered as an email (plain text + HTML with an inline chart) into an *outbox* on disk
  before anything is sent; the outbox is flushed to the SMTP server, and a message leaves the
  outbox only once the server accepted it. SMTP down: messages wait and go out later.

Incident state and the outbox live in ``[alerts] state_dir`` and survive restarts. Each email
has a Message-ID derived from the incident and event, and a log of sent Message-IDs keeps a
re-run from sending one twice. (A crash between the server's acceptance and the log entry can
still repeat one message; the stable Message-ID lets mail clients fold it.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape
from pathlib import Path

from processing.detect import LOOKBACK_NS, MIN_NS, Condition
from supplymeter.carriers import CARRIERS
from supplymeter.config import Config
from supplymeter.files import (
    append_json,
    append_lines,
    read_json_lines,
    write_atomic,
    write_json_atomic,
)
from supplymeter.operations import Operations, Silence
from supplymeter.records import ns_to_datetime
from supplymeter.store import Store, alert_line

log = logging.getLogger(__name__)

RESOLVE_AFTER = 2
"""Evaluations without the condition before an incident resolves (no flapping on one miss)."""

TITLES = {
    "spike": "Spike",
    "over_capacity": "Demand over contract capacity",
    "gateway_silent": "Gateway silent",
    "meter_silent": "Meter silent",
    "stuck": "Meter stuck",
    "ingest_rejects": "Ingest trouble",
    "regime": "Unusual load",
    "level_shift": "Base load changed",
    "test": "Test alert",
}


@dataclass
class Incident:
    id: str
    key: str
    type: str
    supplier: str
    site: str
    subject: str
    opened_ns: int
    last_seen_ns: int
    last_notified_ns: int
    value: float
    baseline: float | None
    unit: str
    detail: str
    window_start_ns: int
    window_end_ns: int
    misses: int = 0
    peak: float = 0.0
    excess: float | None = None
    """Energy or volume above the usual [unit of the meter]."""
    reason: str = ""
    over: bool = False
    """Reported once, already over when found (a spike that came and went, a notice)."""


@dataclass(frozen=True)
class Event:
    """Something to tell people: ``open``, ``reminder`` or ``resolved``; a grouped event
    carries several incidents of one site."""

    kind: str
    at_ns: int
    incidents: tuple[Incident, ...]
    seq: int = 0
    """Tells apart events of one kind for the same incidents: a reminder's is the time of the
    notice before it, a digest's its local date (YYYYMMDD); 0 for open and resolved."""

    @property
    def id(self) -> str:
        """Stable across a re-run: a run killed after queueing its emails but before saving the
        incidents makes the same events again, and the outbox recognises them by this id
        (so it does not depend on the evaluation's time)."""
        ids = ",".join(sorted(i.id for i in self.incidents))
        return hashlib.sha256(f"{self.kind}:{ids}:{self.seq}".encode()).hexdigest()[:24]


write_json = write_json_atomic
"""Replace a state file with JSON, atomically (a crash leaves the old file)."""


@dataclass
class IncidentBook:
    """Open incidents and cooldowns, persisted as JSON."""

    path: Path
    open: dict[str, Incident] = field(default_factory=dict)
    cooldown_until: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> IncidentBook:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(
            path,
            {k: Incident(**v) for k, v in data["open"].items()},
            {k: int(v) for k, v in data["cooldown_until"].items()},
        )

    def save(self) -> None:
        data = {"open": {k: asdict(v) for k, v in self.open.items()},
                "cooldown_until": self.cooldown_until}  # fmt: skip
        write_json(self.path, data, indent=1)

    def update(
        self, conditions: list[Condition], now_ns: int, reminder_h: float, cooldown_min: float,
        group_min: int, held: frozenset[str] = frozenset(),
    ) -> list[Event]:  # fmt: skip
        """Apply one evaluation's conditions; return the events to tell. Open incidents whose
        key is in ``held`` (a maintenance window) stay as they are: not reminded of, not
        resolved."""
        seen = {c.key: c for c in conditions}
        opened: list[Incident] = []
        events: list[Event] = []
        for key, c in seen.items():
            incident = self.open.get(key)
            if incident is None:
                if self.cooldown_until.get(key, 0) > now_ns:
                    continue
                incident = Incident(
                    id=f"{key}@{c.window_start_ns}", key=key, type=c.type, supplier=c.supplier,
                    site=c.site, subject=c.subject, opened_ns=now_ns, last_seen_ns=now_ns,
                    last_notified_ns=now_ns, value=c.value, baseline=c.baseline, unit=c.unit,
                    detail=c.detail, window_start_ns=c.window_start_ns,
                    window_end_ns=c.window_end_ns, peak=c.value, excess=c.excess,
                    reason=c.reason, over=c.over,
                )  # fmt: skip
                opened.append(incident)
                if c.over:  # told once; the same alert does not re-open within the cooldown
                    self.cooldown_until[key] = now_ns + round(cooldown_min * MIN_NS)
                else:
                    self.open[key] = incident
                continue
            incident.last_seen_ns, incident.misses = now_ns, 0
            incident.value, incident.detail = c.value, c.detail
            incident.excess, incident.reason = c.excess, c.reason
            incident.window_end_ns = c.window_end_ns
            incident.peak = max(incident.peak, c.value)
            if reminder_h and now_ns - incident.last_notified_ns >= reminder_h * 3600 * 10**9:
                previous, incident.last_notified_ns = incident.last_notified_ns, now_ns
                events.append(Event("reminder", now_ns, (incident,), seq=previous))
        for key, incident in list(self.open.items()):
            if key in seen or key in held:
                continue
            incident.misses += 1
            if incident.misses >= RESOLVE_AFTER:
                del self.open[key]
                self.cooldown_until[key] = now_ns + round(cooldown_min * MIN_NS)
                events.append(Event("resolved", now_ns, (incident,)))
        self.cooldown_until = {k: v for k, v in self.cooldown_until.items() if v > now_ns}
        by_site: dict[tuple[str, str], list[Incident]] = {}
        for incident in opened:
            by_site.setdefault((incident.supplier, incident.site), []).append(incident)
        for group in by_site.values():
            spikes = [i for i in group if i.type == "spike"]
            if len(spikes) >= group_min:
                events.append(Event("open", now_ns, tuple(spikes)))
                group = [i for i in group if i.type != "spike"]
            events += [Event("open", now_ns, (i,)) for i in group]
        return events


# --- email -------------------------------------------------------------------------------------


def _local(ts_ns: int, tz: str) -> datetime:
    from zoneinfo import ZoneInfo

    return ns_to_datetime(ts_ns).astimezone(ZoneInfo(tz))


def subject(event: Event, tz: str) -> str:
    """What, where and how much, e.g. ``Spike +180% at spring-b / changhua-1 / furnace,
    14:15–14:45 (42 kWh above usual)``."""
    first = event.incidents[0]
    prefix = {"open": "", "reminder": "Still open: ", "resolved": "Resolved: "}[event.kind]
    t0, t1 = _local(first.window_start_ns, tz), _local(first.window_end_ns, tz)
    span = f"{t0:%H:%M}–{t1:%H:%M}"
    where = " / ".join(x for x in (first.supplier, first.site, first.subject) if x)
    if len(event.incidents) > 1:
        meters = ", ".join(i.subject for i in event.incidents)
        return (f"{prefix}Spikes on {len(event.incidents)} meters at {first.supplier} / "
                f"{first.site} ({meters}), {span}")  # fmt: skip
    if first.type == "spike" and first.baseline:
        pct = 100 * (first.value - first.baseline) / first.baseline
        excess = f" ({first.excess:,.0f} {first.unit} above usual)" if first.excess else ""
        return f"{prefix}Spike +{pct:.0f}% at {where}, {span}{excess}"
    if first.type == "regime":
        so_far = "" if event.kind == "resolved" else " so far"
        return (f"{prefix}Unusual load at {where} since {t0:%a %H:%M}: "
                f"{first.excess or 0:,.0f} {first.unit} above usual{so_far}")  # fmt: skip
    if first.type == "level_shift":
        return f"{prefix}At {where}: {first.detail}"
    if first.type == "over_capacity":
        return f"{prefix}Demand {first.value:,.0f} kW over {first.baseline:,.0f} kW contract at {where}, {span}"  # noqa: E501
    return f"{prefix}{TITLES[first.type]} at {where}: {first.detail}"


BASELINE_WORDS = {
    "spike": "usual (median of the most similar past days)",
    "regime": "usual (median of the most similar past days)",
    "level_shift": "before (median base load of the comparable days before the change)",
    "over_capacity": "contract capacity",
    "gateway_silent": "threshold",
    "meter_silent": "threshold",
    "ingest_rejects": "threshold",
}
"""What an email calls the number a condition was compared with."""


def severity(config: Config, incident: Incident) -> str | None:
    """Excess energy in its unit, kgCO2e (the factor of the meter's carrier, country and
    year) and NT$ (the supplier's ``tariff_ntd`` for the carrier, else ``[alerts]
    tariff_ntd``; steam per kg), e.g. ``42.0 kWh above usual ≈ 19.9 kgCO2e ≈ NT$151``;
    ``None`` for conditions without an excess."""
    if incident.excess is None or incident.type == "level_shift":
        return None
    from processing.emissions import FactorLibrary

    found = config.registry.meter(incident.supplier, incident.site, incident.subject)
    parts = [f"{incident.excess:,.1f} {incident.unit} above usual"]
    if found is not None:
        year = _local(incident.window_start_ns, found.site.timezone).year
        factor = FactorLibrary.for_config(config).lookup(
            found.carrier.factor_key, found.supplier.country, year, found.factor_use
        )
        if factor is not None:
            parts.append(f"≈ {incident.excess * factor[0].value:,.1f} kgCO2e")
    # A grouped incident names no meter: its unit names the carrier when only one has it.
    of_unit = [c.name for c in CARRIERS.values() if c.unit == incident.unit]
    carrier = found.carrier.name if found else (of_unit[0] if len(of_unit) == 1 else "")
    supplier = config.registry.supplier(incident.supplier)
    tariff = (
        supplier.tariff_ntd.get(carrier) if supplier else None
    ) or config.alerts.tariff_ntd.get(carrier)
    if tariff:
        parts.append(f"≈ NT${incident.excess * tariff:,.0f} at {tariff:g} NT$/{incident.unit}")
    return " ".join(parts)


def recipients(config: Config, event: Event) -> list[str]:
    """The supplier's alert recipients plus the programme admins."""
    supplier = config.registry.supplier(event.incidents[0].supplier)
    people = list(supplier.alert_recipients) if supplier else []
    return sorted(set(people) | set(config.smtp.admins))


def render(config: Config, event: Event, chart_png: bytes | None) -> EmailMessage:
    """The email of one event: plain text and HTML alternatives, the chart inline (cid)."""
    tz = config.jobs.timezone
    msg = EmailMessage()
    msg["Subject"] = subject(event, tz)
    msg["From"] = config.smtp.from_addr
    msg["To"] = ", ".join(recipients(config, event))
    msg["Date"] = format_datetime(_local(event.at_ns, tz))
    domain = config.smtp.from_addr.rpartition("@")[2] or "supplymeter.local"
    msg["Message-ID"] = f"<{event.id}@{domain}>"
    msg["X-Supplymeter-Incident"] = ",".join(i.id for i in event.incidents)
    rows = []
    for i in event.incidents:
        base = "" if i.baseline is None else f"{i.baseline:,.3f} {i.unit}"
        if i.type in ("gateway_silent", "meter_silent"):
            base = f"{i.baseline:,.0f} min without readings"
        rows.append((" / ".join(x for x in (i.supplier, i.site, i.subject) if x), TITLES[i.type],
                     f"{i.value:,.3f} {i.unit}", base, i.detail,
                     f"{_local(i.window_start_ns, tz):%Y-%m-%d %H:%M}–"
                     f"{_local(i.window_end_ns, tz):%H:%M}", i))  # fmt: skip
    headline = {"open": "New alert", "reminder": "Alert still open",
                "resolved": "Alert resolved"}[event.kind]  # fmt: skip
    text = [f"{headline} ({tz} time)", ""]
    for where, what, value, base, detail, when, incident in rows:
        text += [f"{what} at {where}", f"  window:   {when}", f"  measured: {value}"]
        if base:
            text.append(f"  {BASELINE_WORDS.get(incident.type, 'compared with')}: {base}")
        how_much = severity(config, incident)
        if how_much:
            text.append(f"  severity: {how_much}")
        text.append(f"  {detail}")
        if incident.reason:
            text.append(f"  Why: {incident.reason}")
        text.append("")
    rows = [r[:6] for r in rows]
    msg.set_content("\n".join(text))
    cid = make_msgid(domain=domain)
    cells = "".join(
        "<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in rows
    )  # fmt: skip
    image = f'<p><img src="cid:{cid[1:-1]}" alt="last 24 h against the usual"></p>'
    notes = "".join(
        f"<p>{escape(' — '.join(x for x in (severity(config, i), i.reason) if x))}</p>"
        for i in event.incidents
        if i.reason or severity(config, i)
    )
    html = (
        f"<html><body><h2>{headline}</h2>"
        "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        "<tr><th>where</th><th>what</th><th>measured</th><th>baseline</th><th>detail</th>"
        f"<th>window ({tz})</th></tr>{cells}</table>"
        f"{notes}{image if chart_png else ''}<p>Sent by supplymeter.</p></body></html>"
    )
    msg.add_alternative(html, subtype="html")
    if chart_png:
        msg.get_payload()[1].add_related(chart_png, "image", "png", cid=cid)
    return msg


def chart(history: list[tuple[int, float | None, object]], title: str, unit: str, tz: str) -> bytes:
    """PNG: each window's consumption over the last 24 h against the baseline band."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [_local(t, tz) for t, _, _ in history]
    ys = [v for _, v, _ in history]
    lows = [b.band()[0] if b is not None else None for _, _, b in history]
    highs = [b.band()[1] if b is not None else None for _, _, b in history]
    fig, ax = plt.subplots(figsize=(7, 2.6))
    band = [(x, lo, hi) for x, lo, hi in zip(xs, lows, highs, strict=True) if lo is not None]
    if band:
        ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                        alpha=0.25, label="usual … alert threshold")  # fmt: skip
        ax.plot([b[0] for b in band], [b[1] for b in band], linewidth=0.8)
    ax.plot(xs, [float("nan") if y is None else y for y in ys], color="#d62728",
            linewidth=1.2, label="measured")  # fmt: skip
    ax.set_ylabel(f"{unit} per window")
    ax.set_title(title, loc="left", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


# --- budget -------------------------------------------------------------------------------


@dataclass
class Budget:
    """One budget for everything a person receives about a site: incident emails of every
    kind (spike, regime, level shift, silent, stuck, capacity, …) count together, per site and
    local day (``[alerts] budget_per_site_day``) and per meter and ISO week
    (``budget_per_meter_week``). An event that would open one more goes to the daily digest,
    and so do the later events of its incident."""

    path: Path
    per_day: int
    per_week: int = 0
    """Per meter and week; 0: no weekly limit."""
    sent: dict[str, int] = field(default_factory=dict)
    """``"YYYY-MM-DD supplier/site"`` and ``"YYYY-Www supplier/site/meter"`` → emails that
    opened an incident."""
    deferred: dict[str, None] = field(default_factory=dict)
    """Incidents whose opening went to the digest (insertion-ordered: the oldest are dropped
    first)."""

    @classmethod
    def load(cls, path: Path, per_day: int, per_week: int = 0) -> Budget:
        if not path.exists():
            return cls(path, per_day, per_week)
        data = json.loads(path.read_text())
        return cls(path, per_day, per_week, dict(data["sent"]),
                   dict.fromkeys(data["deferred"]))  # fmt: skip

    def allows(self, event: Event, tz: str) -> bool:
        first = event.incidents[0]
        ids = {i.id for i in event.incidents}
        if event.kind != "open":
            return not any(i in self.deferred for i in ids)
        local = _local(event.at_ns, tz)
        day = f"{local:%Y-%m-%d} {first.supplier}/{first.site}"
        year, week, _ = local.isocalendar()
        weeks = {f"{year}-W{week:02d} {i.supplier}/{i.site}/{i.subject}"
                 for i in event.incidents if i.subject}  # fmt: skip
        over_week = self.per_week and any(self.sent.get(w, 0) >= self.per_week for w in weeks)
        if self.sent.get(day, 0) >= self.per_day or over_week:
            self.deferred.update(dict.fromkeys(sorted(ids)))
            return False
        for key in (day, *weeks):
            self.sent[key] = self.sent.get(key, 0) + 1
        return True

    def save(self) -> None:
        days = sorted({k.split(" ")[0] for k in self.sent if "-W" not in k})[-3:]
        weeks = sorted({k.split(" ")[0] for k in self.sent if "-W" in k})[-2:]
        self.sent = {k: v for k, v in self.sent.items() if k.split(" ")[0] in (*days, *weeks)}
        self.deferred = dict.fromkeys(list(self.deferred)[-10_000:])
        write_json(self.path, {"sent": self.sent, "deferred": list(self.deferred)})


# --- outbox -------------------------------------------------------------------------------


class Outbox:
    """Emails written to disk before sending; removed only once the server accepted them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory / "outbox"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sent_log = directory / "sent.log"

    def put(self, msg: EmailMessage) -> Path:
        name = msg["Message-ID"].strip("<>").replace("@", "_") + ".eml"
        path = self.dir / name
        if path.exists() or msg["Message-ID"] in self.sent():
            return path  # already queued or sent: never twice
        write_atomic(path, bytes(msg))  # durable before the incident that asked for it is saved
        return path

    def sent(self) -> set[str]:
        if not self.sent_log.exists():
            return set()
        return set(self.sent_log.read_text().split())

    def pending(self) -> list[Path]:
        return sorted(self.dir.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)

    def flush(self, config: Config) -> tuple[int, int]:
        """Send what waits; returns (sent, still waiting). Never raises for SMTP trouble.

        A message the server refuses for good (5xx) is retried on the next ``MAX_TRIES - 1``
        runs, then set aside in ``rejected/`` with its error — the others go on either way.
        Recipients the server refused while accepting the message are logged (WARNING) and
        recorded in ``refused.log``. A connection problem or a 4xx leaves everything queued.
        """
        from email import policy
        from email.parser import BytesParser

        waiting = self.pending()
        if not waiting:
            return 0, 0
        sent_ids = self.sent()
        done = 0
        try:
            with connect(config) as smtp:
                for path in waiting:
                    msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
                    mid = msg["Message-ID"]
                    if mid not in sent_ids:
                        try:
                            refused = smtp.send_message(msg)
                        except (smtplib.SMTPDataError, smtplib.SMTPRecipientsRefused,
                                smtplib.SMTPSenderRefused) as exc:  # fmt: skip
                            if not _permanent(exc):
                                raise
                            self._refused_message(path, mid, exc)
                            continue
                        append_lines(self.sent_log, [mid])
                        if refused:
                            self._refused_recipients(mid, refused)
                    path.unlink()
                    done += 1
        except (OSError, smtplib.SMTPException) as exc:
            s = config.smtp
            left = len(self.pending())
            log.warning("SMTP %s:%d unavailable (%s): %d email(s) wait in %s",
                        s.host, s.port, exc, left, self.dir)  # fmt: skip
        return done, len(self.pending())

    MAX_TRIES = 3
    """Runs a message the server refuses for good is offered before it is set aside."""

    def _refused_message(self, path: Path, mid: str, exc: smtplib.SMTPException) -> None:
        tries_path = self.dir.parent / "tries.json"
        tries = json.loads(tries_path.read_text()) if tries_path.exists() else {}
        tries[mid] = tries.get(mid, 0) + 1
        if tries[mid] >= self.MAX_TRIES:
            aside = self.dir.parent / "rejected"
            aside.mkdir(exist_ok=True)
            os.replace(path, aside / path.name)
            (aside / path.with_suffix(".error").name).write_text(f"{exc!r}\n")
            tries.pop(mid)
            log.warning("SMTP server refused %s %d times (%s): set aside in %s",
                        mid, self.MAX_TRIES, exc, aside)  # fmt: skip
        else:
            log.warning("SMTP server refused %s (%s): try %d of %d", mid, exc, tries[mid],
                        self.MAX_TRIES)  # fmt: skip
        write_json(tries_path, tries)

    def _refused_recipients(self, mid: str, refused: dict) -> None:  # type: ignore[type-arg]
        who = {rcpt: [code, msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg]
               for rcpt, (code, msg) in refused.items()}  # fmt: skip
        log.warning("SMTP server refused recipients of %s: %s", mid, who)
        append_json(self.dir.parent / "refused.log", [{"message_id": mid, "refused": who}])


def _permanent(exc: smtplib.SMTPException) -> bool:
    """A 5xx answer: the same message will be refused again."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return getattr(exc, "smtp_code", 0) >= 500


def connect(config: Config) -> smtplib.SMTP:
    """A logged-in SMTP connection as ``[smtp]`` says: certificates verified against
    ``ca_file`` or the system's trust store, the host name checked, login only after TLS
    unless ``security = "none"``."""
    s = config.smtp
    cafile = str(config.resolve(s.ca_file)) if s.ca_file else None
    if s.security == "ssl":
        context = ssl.create_default_context(cafile=cafile)
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=10, context=context)
    else:
        smtp = smtplib.SMTP(s.host, s.port, timeout=10)
        if s.security == "starttls":
            smtp.starttls(context=ssl.create_default_context(cafile=cafile))
    password = config.secrets.smtp_password
    if s.username and password is not None:
        smtp.login(s.username, password.get_secret_value())
    return smtp


# --- the job ----------------------------------------------------------------------------------


class AlertRunner:
    """The alert job: read what is new, evaluate, tell. Keep one per process (it holds the
    meters' slot history; a restart reloads ``baseline_weeks`` of it once)."""

    REFRESH_NS = LOOKBACK_NS
    """Each run re-reads the detector's look-back (6 h): late and replayed readings are taken
    in."""

    def __init__(
        self, config: Config, store: Store, step: Callable[[str], None] | None = None,
        operations: Operations | None = None,
    ) -> None:  # fmt: skip
        """``step(name)`` is told each step boundary of a run (``evaluated``, ``annotated``,
        ``queued``, ``saved``, ``digested``): a test stops the run there as a kill would.
        ``operations``: where the console's maintenance silences and acknowledgements are
        (``None``: none are honoured)."""
        from processing.detect import Detector

        self.config, self.store, self.ops = config, store, operations
        self.step = step or (lambda name: None)
        self.detector = Detector(config.registry, config.alerts)
        state_dir = config.resolve(config.alerts.state_dir)
        self.book = IncidentBook.load(state_dir / "incidents.json")
        self.outbox = Outbox(state_dir)
        self.budget = Budget.load(state_dir / "budget.json", config.alerts.budget_per_site_day,
                                  config.alerts.budget_per_meter_week)  # fmt: skip
        self.digest_path = state_dir / "digest.jsonl"
        self.judged_path = state_dir / "judged.json"
        """Each meter's last window judged: a restart carries on from there, so windows that
        completed while the job was down (up to the detector's look-back) are judged too."""
        if self.judged_path.exists():
            for name, end_ns in json.loads(self.judged_path.read_text()).items():
                track = self.detector.tracks.get(tuple(name.split("/")))  # type: ignore[arg-type]
                if track is not None:
                    track.judged_ns = int(end_ns)
        self.loaded = False

    def load(self, now_ns: int) -> None:
        """After a start: ``baseline_weeks`` of decimated history (one register per slot,
        from InfluxDB's ``first()`` per slot) and the last hours of raw readings; later runs:
        the raw readings of the detector's look-back (late and replayed ones included)."""
        from processing.detect import RAW_KEEP_NS

        d = self.detector
        raw_from = now_ns - (RAW_KEEP_NS if not self.loaded else self.REFRESH_NS)
        if not self.loaded:
            days = self.config.alerts.baseline_weeks * 7 + 1
            start = now_ns - days * 86_400 * 10**9
            # A day at a time: weeks of every meter must not sit in memory as one result.
            chunks = range(start, raw_from, 86_400 * 10**9)
            for n, t0 in enumerate(chunks, 1):
                t1 = min(t0 + 86_400 * 10**9 + d.slot_ns, raw_from)
                for key, ts, registers in self.store.register_samples(t0, t1, d.slot_ns):
                    d.add_history(key, ts, registers)
                if n % 7 == 0 or n == len(chunks):
                    log.info("alerts: loading %d days of slot history for the baselines: "
                             "%d/%d days", days, n, len(chunks))  # fmt: skip
        for t0 in range(raw_from, now_ns + 1, self.REFRESH_NS):
            t1 = min(t0 + self.REFRESH_NS, now_ns + 1)
            for key, ts, register, power in self.store.readings_window(t0, t1):
                self.detector.add_reading(key, ts, register, power)
        self.detector.prune(now_ns)
        for supplier, site, state, ts in self.store.gateway_states(now_ns):
            self.detector.set_gateway(supplier, site, state, ts)
        self.detector.rejects = self.store.reject_counts(now_ns - 3600 * 10**9, now_ns)
        self.loaded = True

    def run(self, now_ns: int) -> str:
        """One evaluation. Effects before state: the events' emails reach the outbox (or the
        digest) before the incident book, the budget and the judged windows are saved, so a
        run killed at any point repeats its events on the next run — and the outbox, which
        knows them by their stable ids, queues each email once."""
        a = self.config.alerts
        # Another process (a one-shot ``run-job alerts`` beside the scheduler) may have moved
        # the state on: start from what is on disk.
        self.book = IncidentBook.load(self.book.path)
        self.budget = Budget.load(self.budget.path, a.budget_per_site_day,
                                  a.budget_per_meter_week)  # fmt: skip
        self.load(now_ns)
        evaluation = self.detector.evaluate(now_ns)
        muted = Muting.load(self.ops, now_ns)
        conditions = [c for c in evaluation.conditions if not muted.silenced(c)]
        silenced = len(evaluation.conditions) - len(conditions)
        # A silenced meter's open incident is neither resolved nor reminded of while the
        # maintenance lasts: the book holds it as it is.
        held = frozenset(k for k, i in self.book.open.items() if muted.silenced(i))
        events = self.book.update(conditions, now_ns, a.reminder_h, a.cooldown_min,
                                  a.group_min_meters, held)  # fmt: skip
        events = [e for e in events if not muted.quiet(e)]
        self.step("evaluated")
        # Which events go out as emails of their own (the budget is saved only after they are
        # queued, so a run killed before that decides the same way again).
        emailed = [not a.digest and self.budget.allows(e, self.config.jobs.timezone)
                   for e in events]  # fmt: skip
        if events:
            self.store.write([line for e, mail in zip(events, emailed, strict=True)
                              for line in alert_lines(e, mail)])  # fmt: skip
        self.step("annotated")
        digest_rows = []
        for event, mail in zip(events, emailed, strict=True):
            if not mail:
                digest_rows.append({"id": event.id, "kind": event.kind, "at_ns": event.at_ns,
                                    "incidents": [asdict(i) for i in event.incidents]})  # fmt: skip
            else:
                self.outbox.put(render(self.config, event, self._chart(event, now_ns)))
        append_json(self.digest_path, digest_rows)
        self.step("queued")
        self.budget.save()
        self.book.save()
        judged = {"/".join(k): t.judged_ns for k, t in self.detector.tracks.items()
                  if t.judged_ns is not None}  # fmt: skip
        write_json(self.judged_path, judged)
        self.step("saved")
        self._maybe_digest(now_ns)
        self.step("digested")
        sent, waiting = self.outbox.flush(self.config)
        self.detector.prune(now_ns)
        lacking = len(evaluation.lacking_history)
        return (f"{len(evaluation.conditions)} conditions, {len(events)} events, "
                f"{len(self.book.open)} open; emails sent {sent}, waiting {waiting}; "
                f"{lacking} meters lack history"
                + (f"; {silenced} silenced" if silenced else ""))  # fmt: skip

    def _chart(self, event: Event, now_ns: int) -> bytes | None:
        first = event.incidents[0]
        key = (first.supplier, first.site, first.subject)
        if key not in self.detector.tracks:
            return None
        ref = self.detector.tracks[key].ref
        title = f"{'/'.join(key)}: last 24 h, {self.config.alerts.window_min}-min windows"
        return chart(self.detector.history(key, now_ns), title, ref.unit, self.config.jobs.timezone)

    def _maybe_digest(self, now_ns: int) -> None:
        """At ``digest_hour``, one email per supplier with the events since the last digest."""
        local = _local(now_ns, self.config.jobs.timezone)
        if local.hour != self.config.alerts.digest_hour or not self.digest_path.exists():
            return  # (events over the day's budget wait here too, also without digest mode)
        rows = {}
        for n, row in read_json_lines(self.digest_path):
            rows[row.get("id", n)] = row  # a run killed before its state was saved: once
        by_supplier: dict[str, list[Incident]] = {}
        for row in rows.values():
            for i in row["incidents"]:
                by_supplier.setdefault(i["supplier"], []).append(Incident(**i))
        for incidents in by_supplier.values():
            event = Event("open", now_ns, tuple(incidents), seq=int(f"{local:%Y%m%d}"))
            msg = render(self.config, event, None)
            n = len(incidents)
            events = f"{n} event{'s' if n != 1 else ''}"
            msg.replace_header("Subject", f"Daily alert digest {local:%Y-%m-%d}: "
                               f"{events} at {incidents[0].supplier}")  # fmt: skip
            self.outbox.put(msg)
        self.digest_path.unlink()


@dataclass(frozen=True)
class Muting:
    """What people said in the console: maintenance windows (no incident opens on a
    silenced meter or site, none is reminded of or resolved by email) and acknowledgements
    (an acknowledged incident sends no reminders: someone is on it)."""

    silences: tuple[Silence, ...] = ()
    acknowledged: frozenset[str] = frozenset()
    at: datetime | None = None

    @classmethod
    def load(cls, ops: Operations | None, now_ns: int) -> Muting:
        if ops is None:
            return cls()
        now = ns_to_datetime(now_ns)
        return cls(tuple(ops.silences(active_at=now)), frozenset(ops.acknowledgements()), now)

    def silenced(self, c: Condition | Incident) -> bool:
        if not self.silences or self.at is None:
            return False
        return any(s.covers(c.supplier, c.site, c.subject or None, self.at)
                   for s in self.silences)  # fmt: skip

    def quiet(self, event: Event) -> bool:
        """Nothing to tell: every incident of the event silenced, or a reminder of an
        acknowledged incident."""
        if all(self.silenced(i) for i in event.incidents):
            return True
        return event.kind == "reminder" and all(i.id in self.acknowledged
                                                for i in event.incidents)  # fmt: skip


def send_test(config: Config, supplier: str, site: str, now_ns: int) -> tuple[list[str], int, int]:
    """A test alert for one site through the real path — rendered like any alert, queued in
    the outbox, flushed to ``[smtp]`` — so a plant manager sees what an alert looks like and an
    operator sees that mail leaves. Returns (recipients, sent, still waiting)."""
    found = config.registry.site(supplier, site)
    if found is None:
        raise KeyError(f"no site {supplier}/{site} in the registry")
    incident = Incident(
        id=f"test/{supplier}/{site}@{now_ns}", key=f"test/{supplier}/{site}/", type="test",
        supplier=supplier, site=site, subject="", opened_ns=now_ns, last_seen_ns=now_ns,
        last_notified_ns=now_ns, value=0.0, baseline=None, unit="", detail="a test alert, "
        "sent on request: nothing is wrong at this site", window_start_ns=now_ns,
        window_end_ns=now_ns, reason="Sent with `supplymeter alerts test` to check that alert "
        "emails reach their recipients.", over=True,
    )  # fmt: skip
    event = Event("open", now_ns, (incident,))
    outbox = Outbox(config.resolve(config.alerts.state_dir))
    outbox.put(render(config, event, None))
    sent, waiting = outbox.flush(config)
    return recipients(config, event), sent, waiting


def alert_lines(event: Event, emailed: bool | None = None) -> list[str]:
    """Line protocol for Grafana annotations and the messages count: one point per incident
    and event; ``emailed``: whether the event went out as its own email (else the digest)."""
    return [
        alert_line(
            at_ns=event.at_ns + n,
            type_=i.type,
            supplier=i.supplier,
            site=i.site,
            subject=i.subject,
            event=event.kind,
            incident=i.id,
            title=TITLES[i.type],
            detail=i.detail,
            value=i.value,
            baseline=i.baseline,
            emailed=emailed,
            message=event.id,
        )
        for n, i in enumerate(event.incidents)
    ]
