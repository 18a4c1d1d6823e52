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
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from processing.detect import LOOKBACK_NS, MIN_NS, Condition
from supplymeter.config import Config
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


@dataclass(frozen=True)
class Event:
    """Something to tell people: ``open``, ``reminder`` or ``resolved``; a grouped event
    carries several incidents of one site."""

    kind: str
    at_ns: int
    incidents: tuple[Incident, ...]

    @property
    def id(self) -> str:
        ids = ",".join(sorted(i.id for i in self.incidents))
        return hashlib.sha256(f"{self.kind}:{ids}:{self.at_ns}".encode()).hexdigest()[:24]


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {"open": {k: asdict(v) for k, v in self.open.items()},
                "cooldown_until": self.cooldown_until}  # fmt: skip
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def update(
        self, conditions: list[Condition], now_ns: int, reminder_h: float, cooldown_min: float,
        group_min: int,
    ) -> list[Event]:  # fmt: skip
        """Apply one evaluation's conditions; return the events to tell."""
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
                    window_end_ns=c.window_end_ns, peak=c.value,
                )  # fmt: skip
                self.open[key] = incident
                opened.append(incident)
                continue
            incident.last_seen_ns, incident.misses = now_ns, 0
            incident.value, incident.detail = c.value, c.detail
            incident.window_end_ns = c.window_end_ns
            incident.peak = max(incident.peak, c.value)
            if reminder_h and now_ns - incident.last_notified_ns >= reminder_h * 3600 * 10**9:
                incident.last_notified_ns = now_ns
                events.append(Event("reminder", now_ns, (incident,)))
        for key, incident in list(self.open.items()):
            if key in seen:
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
    14:15–14:30``."""
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
        return f"{prefix}Spike +{pct:.0f}% at {where}, {span}"
    if first.type == "over_capacity":
        return f"{prefix}Demand {first.value:,.0f} kW over {first.baseline:,.0f} kW contract at {where}, {span}"  # noqa: E501
    return f"{prefix}{TITLES[first.type]} at {where}: {first.detail}"


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
        rows.append((" / ".join(x for x in (i.supplier, i.site, i.subject) if x), TITLES[i.type],
                     f"{i.value:,.3f} {i.unit}", base, i.detail,
                     f"{_local(i.window_start_ns, tz):%Y-%m-%d %H:%M}–"
                     f"{_local(i.window_end_ns, tz):%H:%M}"))  # fmt: skip
    headline = {"open": "New alert", "reminder": "Alert still open",
                "resolved": "Alert resolved"}[event.kind]  # fmt: skip
    text = [f"{headline} ({tz} time)", ""]
    for where, what, value, base, detail, when in rows:
        text += [f"{what} at {where}", f"  window:   {when}", f"  measured: {value}"]
        if base:
            text.append(f"  baseline: {base} (median of comparable days)")
        text += [f"  {detail}", ""]
    text.append("Sent by supplymeter. The chart of the last 24 h is in the HTML part.")
    msg.set_content("\n".join(text))
    cid = make_msgid(domain=domain)
    cells = "".join(
        "<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in rows
    )  # fmt: skip
    image = f'<p><img src="cid:{cid[1:-1]}" alt="last 24 h against the baseline"></p>'
    html = (
        f"<html><body><h2>{headline}</h2>"
        "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        "<tr><th>where</th><th>what</th><th>measured</th><th>baseline</th><th>detail</th>"
        f"<th>window ({tz})</th></tr>{cells}</table>"
        f"{image if chart_png else ''}<p>Sent by supplymeter.</p></body></html>"
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
    meds = [b.median if b is not None else None for _, _, b in history]
    fig, ax = plt.subplots(figsize=(7, 2.6))
    band = [(x, lo, hi) for x, lo, hi in zip(xs, lows, highs, strict=True) if lo is not None]
    if band:
        ax.fill_between([b[0] for b in band], [b[1] for b in band], [b[2] for b in band],
                        alpha=0.25, label="baseline (median ± 3σ)")  # fmt: skip
        ax.plot([b[0] for b in band], [m for m in meds if m is not None], linewidth=0.8)
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
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bytes(msg))
        os.replace(tmp, path)
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
                        with self.sent_log.open("a") as fh:
                            fh.write(mid + "\n")
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
        tries_path.write_text(json.dumps(tries))

    def _refused_recipients(self, mid: str, refused: dict) -> None:  # type: ignore[type-arg]
        who = {rcpt: [code, msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg]
               for rcpt, (code, msg) in refused.items()}  # fmt: skip
        log.warning("SMTP server refused recipients of %s: %s", mid, who)
        with (self.dir.parent / "refused.log").open("a") as fh:
            fh.write(json.dumps({"message_id": mid, "refused": who}) + "\n")


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
    meters' recent data; a restart reloads ``baseline_weeks`` of readings once)."""

    REFRESH_NS = LOOKBACK_NS
    """Each run re-reads the detector's look-back (6 h): late and replayed readings are taken
    in."""

    def __init__(self, config: Config, store: Store) -> None:
        from processing.detect import Detector

        self.config, self.store = config, store
        self.detector = Detector(config.registry, config.alerts)
        state_dir = config.resolve(config.alerts.state_dir)
        self.book = IncidentBook.load(state_dir / "incidents.json")
        self.outbox = Outbox(state_dir)
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
        days = self.config.alerts.baseline_weeks * 7 + 1
        start = now_ns - (days * 86_400 * 10**9 if not self.loaded else self.REFRESH_NS)
        # In slices of at most the refresh span: the first load after a start reads weeks of
        # every meter, which must not sit in memory as one query result.
        slices = range(start, now_ns + 1, self.REFRESH_NS)
        for n, t0 in enumerate(slices, 1):
            t1 = min(t0 + self.REFRESH_NS, now_ns + 1)
            if not self.loaded and (n % 20 == 0 or n == len(slices)):
                log.info("alerts: loading %d days of readings for the baselines: %d/%d slices",
                         days, n, len(slices))  # fmt: skip
            for key, ts, register, power in self.store.readings_window(t0, t1):
                self.detector.add_reading(key, ts, register, power)
            self.detector.prune(now_ns)  # power_kw is kept for the last day only
        for supplier, site, state, ts in self.store.gateway_states(now_ns):
            self.detector.set_gateway(supplier, site, state, ts)
        self.detector.rejects = self.store.reject_counts(now_ns - 3600 * 10**9, now_ns)
        self.loaded = True

    def run(self, now_ns: int) -> str:
        a = self.config.alerts
        self.load(now_ns)
        evaluation = self.detector.evaluate(now_ns)
        events = self.book.update(evaluation.conditions, now_ns, a.reminder_h, a.cooldown_min,
                                  a.group_min_meters)  # fmt: skip
        self.book.save()
        judged = {"/".join(k): t.judged_ns for k, t in self.detector.tracks.items()
                  if t.judged_ns is not None}  # fmt: skip
        tmp = self.judged_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(judged, sort_keys=True))
        os.replace(tmp, self.judged_path)
        if events:
            self.store.write([line for e in events for line in alert_lines(e)])
        for event in events:
            if a.digest:
                row = {"kind": event.kind, "at_ns": event.at_ns,
                       "incidents": [asdict(i) for i in event.incidents]}  # fmt: skip
                with self.digest_path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            else:
                self.outbox.put(render(self.config, event, self._chart(event, now_ns)))
        if a.digest:
            self._maybe_digest(now_ns)
        sent, waiting = self.outbox.flush(self.config)
        self.detector.prune(now_ns)
        lacking = len(evaluation.lacking_history)
        return (f"{len(evaluation.conditions)} conditions, {len(events)} events, "
                f"{len(self.book.open)} open; emails sent {sent}, waiting {waiting}; "
                f"{lacking} meters lack history")  # fmt: skip

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
            return
        rows = [json.loads(line) for line in self.digest_path.read_text().splitlines() if line]
        by_supplier: dict[str, list[Incident]] = {}
        for row in rows:
            for i in row["incidents"]:
                by_supplier.setdefault(i["supplier"], []).append(Incident(**i))
        for incidents in by_supplier.values():
            event = Event("open", now_ns, tuple(incidents))
            msg = render(self.config, event, None)
            n = len(incidents)
            events = f"{n} event{'s' if n != 1 else ''}"
            msg.replace_header("Subject", f"Daily alert digest {local:%Y-%m-%d}: "
                               f"{events} at {incidents[0].supplier}")  # fmt: skip
            self.outbox.put(msg)
        self.digest_path.unlink()


def alert_lines(event: Event) -> list[str]:
    """Line protocol for Grafana annotations: one point per incident and event."""
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
        )
        for n, i in enumerate(event.incidents)
    ]
