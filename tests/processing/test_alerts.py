"""Alert detection, incidents and email, with a real SMTP server (aiosmtpd) and InfluxDB."""

from __future__ import annotations

import dataclasses
import email
import json
import ssl
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from deploy.stack import free_port
from processing.alerts import AlertRunner, Budget, Event, IncidentBook, Outbox, render, subject
from processing.detect import MIN_NS, Condition, Detector
from supplymeter.config import AlertSettings, Config, Registry, load_config
from supplymeter.influx import InfluxClient
from supplymeter.records import datetime_to_ns
from supplymeter.store import Store
from tests.conftest import pointed_at, with_settings, write_config
from tests.helpers import Killed, kill_at

TPE = ZoneInfo("Asia/Taipei")
ROOT = Path(__file__).resolve().parents[2]
WEEK_NS = 7 * 86_400 * 10**9
HOUR_NS = 3600 * 10**9

REGISTRY = """
[[suppliers]]
id = "spring-b"
kind = "springs"
allocation = { method = "economic", share = 0.2 }
alert_recipients = ["energy@spring-b.example"]
  [[suppliers.sites]]
  id = "changhua-1"
  gateway = "gw1"
  contract_capacity_kw = 100
    [[suppliers.sites.meters]]
    id = "furnace-2"
    carrier = "electricity"
    interval_s = 300
    [[suppliers.sites.meters]]
    id = "coiling"
    carrier = "electricity"
    interval_s = 300
    [[suppliers.sites.meters]]
    id = "press"
    carrier = "electricity"
    interval_s = 300
"""
FURNACE = ("spring-b", "changhua-1", "furnace-2")
NOW = datetime_to_ns(datetime(2026, 10, 28, 14, 30, tzinfo=TPE))  # a Wednesday


def at_kw(ts: int) -> float:
    """A plausible load: 20 kW at night, 40 kW by day, a little wobble. [kW]"""
    hour = datetime.fromtimestamp(ts / 1e9, TPE).hour
    return (40.0 if 8 <= hour < 18 else 20.0) * (1 + 0.03 * ((ts // (300 * 10**9)) % 3 - 1))


def feed(
    detector: Detector, key: tuple[str, str, str], start: int, end: int,
    kw: Callable[[int], float] = at_kw, power: bool = True, frozen_after: int | None = None,
) -> None:  # fmt: skip
    """5-minute readings of a meter drawing ``kw(t)`` from ``start`` to ``end``."""
    register = 1000.0
    for ts in range(start, end + 1, 300 * 10**9):
        detector.add_reading(key, ts, register, kw(ts) if power else None)
        if frozen_after is None or ts < frozen_after:
            register += kw(ts) * 300 / 3600


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path / "cfg", REGISTRY), {})


def detector_for(config: Config, **settings: object) -> Detector:
    return Detector(config.registry, AlertSettings(**settings))


def test_demand_over_contract_capacity(config: Config) -> None:
    d = detector_for(config)
    for meter in ("furnace-2", "coiling", "press"):  # 3 × 40 kW = 120 kW > 100 kW
        feed(d, ("spring-b", "changhua-1", meter), NOW - 3600 * 10**9, NOW + 5 * MIN_NS)
    over = [c for c in d.evaluate(NOW).conditions if c.type == "over_capacity"]
    assert len(over) == 1 and over[0].value == pytest.approx(120.0, rel=0.05)
    assert over[0].baseline == 100


def test_silent_gateway_and_no_false_silent_meter_during_a_replay(config: Config) -> None:
    d = detector_for(config, silent_after_min=30)
    for meter in ("furnace-2", "coiling", "press"):
        feed(d, ("spring-b", "changhua-1", meter), NOW - 3 * 3600 * 10**9, NOW - 40 * MIN_NS)
    silent = [c for c in d.evaluate(NOW).conditions if c.type.endswith("silent")]
    assert [c.type for c in silent] == ["gateway_silent"]
    # The gateway is back and replaying its buffer: two meters caught up, one not yet.
    d.set_gateway("spring-b", "changhua-1", "online", NOW - 2 * MIN_NS)
    for meter in ("furnace-2", "coiling"):
        feed(d, ("spring-b", "changhua-1", meter), NOW - 40 * MIN_NS, NOW)
    assert not [c for c in d.evaluate(NOW).conditions if c.type.endswith("silent")]
    # Half an hour later the press still sends nothing: now it is a silent meter.
    later = NOW + 31 * MIN_NS
    for meter in ("furnace-2", "coiling"):
        feed(d, ("spring-b", "changhua-1", meter), NOW, later)
    silent = [c for c in d.evaluate(later).conditions if c.type.endswith("silent")]
    assert [(c.type, c.subject) for c in silent] == [("meter_silent", "press")]


def test_stuck_register_while_power_is_reported(config: Config) -> None:
    d = detector_for(config, stuck_after_min=60)
    feed(d, FURNACE, NOW - 3 * 3600 * 10**9, NOW, frozen_after=NOW - 70 * MIN_NS)
    stuck = [c for c in d.evaluate(NOW).conditions if c.type == "stuck"]
    assert len(stuck) == 1 and stuck[0].subject == "furnace-2"
    d2 = detector_for(config, stuck_after_min=60)
    feed(d2, FURNACE, NOW - 3 * 3600 * 10**9, NOW, frozen_after=NOW - 70 * MIN_NS, power=False)
    assert not [c for c in d2.evaluate(NOW).conditions if c.type == "stuck"]


def cond(meter: str, kind: str = "spike", value: float = 20.0) -> Condition:
    return Condition(kind, "spring-b", "changhua-1", meter, value, 10.0, "kWh",
                     NOW - 15 * MIN_NS, NOW, "+100%")  # fmt: skip


def test_incident_lifecycle_cooldown_grouping_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "incidents.json"
    book = IncidentBook.load(path)
    step = 5 * MIN_NS
    events = book.update([cond("furnace-2")], NOW, reminder_h=1, cooldown_min=60, group_min=3)
    assert [(e.kind, len(e.incidents)) for e in events] == [("open", 1)]
    book.save()
    book = IncidentBook.load(path)  # a restart keeps the open incident: no second email
    assert book.update([cond("furnace-2")], NOW + step, 1, 60, 3) == []
    reminder = book.update([cond("furnace-2")], NOW + 12 * step, 1, 60, 3)
    assert [e.kind for e in reminder] == ["reminder"]
    assert book.update([], NOW + 13 * step, 1, 60, 3) == []  # one miss is not a resolution
    resolved = book.update([], NOW + 14 * step, 1, 60, 3)
    assert [e.kind for e in resolved] == ["resolved"]
    assert book.update([cond("furnace-2")], NOW + 15 * step, 1, 60, 3) == []  # cooldown
    grouped = book.update([cond(m) for m in ("coiling", "press", "x")], NOW + 16 * step, 1, 60, 3)
    assert [(e.kind, len(e.incidents)) for e in grouped] == [("open", 3)]


def test_a_held_incident_is_neither_reminded_of_nor_resolved(tmp_path: Path) -> None:
    """During a maintenance window the open incident is held: hours without its condition
    neither resolve it nor remind of it; after the window, two misses resolve it."""
    book = IncidentBook.load(tmp_path / "incidents.json")
    step = 5 * MIN_NS
    book.update([cond("furnace-2")], NOW, reminder_h=1, cooldown_min=60, group_min=3)
    [key] = book.open
    for n in range(1, 20):  # 95 min held, past the reminder hour
        assert book.update([], NOW + n * step, 1, 60, 3, held=frozenset({key})) == []
    assert key in book.open and book.open[key].misses == 0
    assert book.update([], NOW + 20 * step, 1, 60, 3) == []
    assert [e.kind for e in book.update([], NOW + 21 * step, 1, 60, 3)] == ["resolved"]


@pytest.fixture
def smtp() -> Iterator[tuple[list, int]]:
    received: list = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield received, port
    finally:
        controller.stop()


def mail_config(config: Config, port: int, tmp_path: Path) -> Config:
    config = with_settings(config, "smtp", port=port, security="none",
                           admins=["programme@buyer.example"])  # fmt: skip
    return with_settings(config, "alerts", state_dir=tmp_path / "alerts")


def test_email_has_what_where_how_much_both_parts_and_the_inline_chart(
    config: Config, smtp: tuple[list, int], tmp_path: Path
) -> None:
    received, port = smtp
    cfg = with_settings(mail_config(config, port, tmp_path), "alerts",
                        tariff_ntd={"electricity": 3.5})  # fmt: skip
    d = detector_for(cfg)
    kw = lambda ts: at_kw(ts) * (2.8 if NOW - 15 * MIN_NS <= ts < NOW else 1.0)  # noqa: E731
    feed(d, FURNACE, NOW - 4 * WEEK_NS - 86_400 * 10**9, NOW + 75 * MIN_NS, kw)
    found = []
    for now in range(NOW, NOW + 75 * MIN_NS, 5 * MIN_NS):  # reported once it came and went
        found += [c for c in d.evaluate(now).conditions if c.type == "spike"]
    [spike] = found
    [event] = IncidentBook(tmp_path / "b.json").update([spike], NOW, 24, 60, 3)
    from processing.alerts import chart

    png = chart(d.history(FURNACE, NOW), "furnace-2", "kWh", "Asia/Taipei")
    outbox = Outbox(tmp_path / "alerts")
    outbox.put(render(cfg, event, png))
    assert outbox.flush(cfg) == (1, 0)
    [envelope] = received
    assert sorted(envelope.rcpt_tos) == ["energy@spring-b.example", "programme@buyer.example"]
    msg = email.message_from_bytes(envelope.content, policy=policy.default)
    assert msg["Subject"].startswith("Spike +18")
    assert "at spring-b / changhua-1 / furnace-2, 14:15–14:30 (" in msg["Subject"]
    assert msg["Subject"].endswith(" kWh above usual)")
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "usual (median of the most similar past days)" in plain and "14:15" in plain
    severity = next(line for line in plain.splitlines() if "severity:" in line)
    excess = spike.excess
    assert f"{excess:,.1f} kWh above usual" in severity
    assert f"≈ NT${excess * 3.5:,.0f} at 3.5 NT$/kWh" in severity
    assert (
        f"≈ {excess * 0.466:,.1f} kgCO2e" in severity
    )  # the 2025 industry factor, provisional in 2026
    assert "Why: Consumption rose to" in plain and "came back down" in plain
    assert "came back down" in html
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0].get_content()[:4] == b"\x89PNG"
    cid = images[0]["Content-ID"].strip("<>")
    assert f"cid:{cid}" in html


def test_smtp_down_queues_and_sends_later_exactly_once(config: Config, tmp_path: Path) -> None:
    port = free_port()
    cfg = mail_config(config, port, tmp_path)
    [event] = IncidentBook(tmp_path / "b.json").update([cond("press")], NOW, 24, 60, 3)
    outbox = Outbox(tmp_path / "alerts")
    outbox.put(render(cfg, event, None))
    assert outbox.flush(cfg) == (0, 1)  # nobody listening: it waits
    outbox.put(render(cfg, event, None))  # the same event again: still one in the outbox
    assert len(outbox.pending()) == 1
    received: list = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope)
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert outbox.flush(cfg) == (1, 0)
        outbox.put(render(cfg, event, None))  # already sent: not queued again
        assert outbox.flush(cfg) == (0, 0)
    finally:
        controller.stop()
    assert len(received) == 1


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA and a certificate for 127.0.0.1 (deploy/make-test-ca.sh)."""
    ca = tmp_path_factory.mktemp("ca")
    subprocess.run(["bash", str(ROOT / "deploy" / "make-test-ca.sh"), str(ca)], check=True,
                   capture_output=True)  # fmt: skip
    return ca


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_login(
    security: str, test_ca: Path, tmp_path: Path
) -> None:  # fmt: skip
    """STARTTLS (587-style) and implicit TLS (465-style) against a server that demands a login
    over TLS: the certificate is verified with ``ca_file`` and the password comes from the
    environment. Against the system's trust store the same server is refused and the email
    stays queued."""
    config = load_config(write_config(tmp_path / "cfg", REGISTRY),
                         {"SUPPLYMETER_SMTP_PASSWORD": "s3cret"})  # fmt: skip
    port = free_port()
    cfg = with_settings(mail_config(config, port, tmp_path), "smtp", security=security,
                        username="alerts", host="127.0.0.1")  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(test_ca / "server.crt", test_ca / "server.key")
    received: list = []
    logins: list[tuple[bytes, bytes, bool]] = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth):  # type: ignore[no-untyped-def]
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        logins.append((auth.login, auth.password, encrypted))
        return AuthResult(success=(auth.login, auth.password) == (b"alerts", b"s3cret"))

    # aiosmtpd's auth_require_tls only knows STARTTLS; with implicit TLS the whole session is
    # encrypted from the first byte (the authenticator below checks it).
    tls = ({"tls_context": server_ctx, "require_starttls": True} if security == "starttls"
           else {"ssl_context": server_ctx, "auth_require_tls": False})  # fmt: skip
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        auth_required=True,
        authenticator=authenticator,
        **tls,
    )  # type: ignore[arg-type]
    controller.start()
    try:
        [event] = IncidentBook(tmp_path / "b.json").update([cond("press")], NOW, 24, 60, 3)
        outbox = Outbox(tmp_path / "alerts")
        outbox.put(render(cfg, event, None))
        assert outbox.flush(cfg) == (0, 1)  # the test CA is not in the system's trust store
        assert not received and not logins
        trusted = with_settings(cfg, "smtp", ca_file=test_ca / "ca.crt")
        assert outbox.flush(trusted) == (1, 0)
    finally:
        controller.stop()
    assert logins == [(b"alerts", b"s3cret", True)]
    [envelope] = received
    message = email.message_from_bytes(envelope.content, policy=policy.default)
    assert message["Subject"].startswith("Spike")


def write_spike(influx: InfluxClient) -> None:
    """Three weeks of furnace readings, doubled over the 15 minutes before NOW."""
    lines = []
    register = 1000.0
    start = NOW - 3 * WEEK_NS - 86_400 * 10**9
    for ts in range(start, NOW + 95 * MIN_NS + 1, 300 * 10**9):
        kw = at_kw(ts) * (2.0 if NOW - 15 * MIN_NS <= ts < NOW else 1.0)  # 80 kW: < contract
        lines.append(f"reading,meter=furnace-2,site=changhua-1,supplier=spring-b "
                     f"energy_kwh={register:.3f},power_kw={kw:.3f} {ts}")  # fmt: skip
        register += kw * 300 / 3600
    influx.write_lines(lines)


def test_alert_job_end_to_end_on_influxdb(
    influx: InfluxClient, smtp: tuple[list, int], tmp_path: Path
) -> None:
    """Readings in InfluxDB → the job opens one incident, emails once, writes annotations;
    when the spike is over it resolves and says so."""
    received, port = smtp
    config = pointed_at(load_config(write_config(tmp_path / "cfg", REGISTRY), {}), None, influx)
    config = mail_config(config, port, tmp_path)
    write_spike(influx)
    runner = AlertRunner(config, Store(influx))
    assert "0 meters lack history" in runner.run(NOW)  # weeks of history loaded as slots
    assert received == []  # the spike may still be going on
    for now in range(NOW + 5 * MIN_NS, NOW + 95 * MIN_NS, 5 * MIN_NS):
        runner.run(now)
    [message] = [email.message_from_bytes(r.content, policy=policy.default) for r in received]
    assert message["Subject"].startswith("Spike +100% at spring-b / changhua-1 / furnace-2, "
                                         "14:15–14:30")  # fmt: skip
    text = message.get_body(("plain",)).get_content()
    assert "after the fact" not in text  # its readings came on time
    points = influx.query("SELECT count(incident) FROM alert GROUP BY event")
    assert {s.tags["event"]: s.values[0][1] for s in points} == {"open": 1}
    # What the site was told, as `supplymeter status` counts it: one email of its own.
    [opened] = Store(influx).alert_openings(NOW - 86_400 * 10**9, NOW + 95 * MIN_NS)
    assert opened[1:6] == ("spike", "spring-b", "changhua-1", "furnace-2", True)


def test_a_restarted_alert_job_judges_the_windows_it_missed(
    influx: InfluxClient, smtp: tuple[list, int], tmp_path: Path
) -> None:
    """The job ran at 14:00, was down for the spike (14:15–14:30) and restarts at 15:40: it
    carries on from the last slot it judged and still reports the spike, once."""
    received, port = smtp
    config = pointed_at(load_config(write_config(tmp_path / "cfg", REGISTRY), {}), None, influx)
    config = mail_config(config, port, tmp_path)
    write_spike(influx)
    AlertRunner(config, Store(influx)).run(NOW - 30 * MIN_NS)
    assert not received
    restarted = AlertRunner(config, Store(influx))
    restarted.run(NOW + 70 * MIN_NS)
    restarted.run(NOW + 80 * MIN_NS)
    [message] = [email.message_from_bytes(r.content, policy=policy.default) for r in received]
    assert message["Subject"].startswith("Spike +100% at spring-b / changhua-1 / furnace-2, "
                                         "14:15–14:30")  # fmt: skip


def test_subject_formats(tmp_path: Path) -> None:
    book = IncidentBook(tmp_path / "b.json")
    [event] = book.update([cond("furnace-2", "over_capacity", 130.0)], NOW, 24, 60, 3)
    text = subject(event, "Asia/Taipei")
    assert text.startswith("Demand 130 kW over 10 kW contract at spring-b / changhua-1")
    assert isinstance(Event("open", NOW, event.incidents).id, str)


def test_daily_digest_replaces_single_emails(
    influx: InfluxClient, smtp: tuple[list, int], tmp_path: Path
) -> None:
    received, port = smtp
    config = pointed_at(load_config(write_config(tmp_path / "cfg", REGISTRY), {}), None, influx)
    config = with_settings(mail_config(config, port, tmp_path), "alerts", digest=True,
                           digest_hour=16)  # fmt: skip
    write_spike(influx)
    runner = AlertRunner(config, Store(influx))
    for now in range(NOW, NOW + 90 * MIN_NS, 5 * MIN_NS):  # the spike is found at 15:30
        runner.run(now)
    assert received == []
    runner.run(NOW + 90 * MIN_NS)  # 16:00: the digest goes out
    assert len(received) == 1
    msg = email.message_from_bytes(received[0].content, policy=policy.default)
    assert msg["Subject"] == "Daily alert digest 2026-10-28: 1 event at spring-b"
    assert "Spike" in msg.get_body(("plain",)).get_content()
    assert not list(runner.outbox.pending())
    [opened] = Store(influx).alert_openings(NOW - 86_400 * 10**9, NOW + 95 * MIN_NS)
    assert opened[1] == "spike" and opened[5] is False  # told in the digest, not on its own


def test_a_refused_email_is_set_aside_and_never_blocks_the_others(
    config: Config, tmp_path: Path
) -> None:
    """A server that refuses one message for good (554) and one recipient (550): the other
    emails are sent at once; the refused one is retried, then set aside with its error; the
    refused recipient is logged and recorded."""
    received: list = []

    class Picky:
        async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
            if address.startswith("energy@spring-b"):
                return "550 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            if b"press" in envelope.content and b"Spike" in envelope.content:
                return "554 message refused (content)"
            received.append(envelope)
            return "250 OK"

    port = free_port()
    cfg = mail_config(config, port, tmp_path)
    outbox = Outbox(tmp_path / "alerts")
    book = IncidentBook(tmp_path / "b.json")
    [poison] = book.update([cond("press")], NOW, 24, 60, 3)
    outbox.put(render(cfg, poison, None))
    for n, meter in enumerate(("coiling", "furnace-2")):
        [event] = IncidentBook(tmp_path / f"c{n}.json").update([cond(meter)], NOW, 24, 60, 3)
        outbox.put(render(cfg, event, None))
    controller = Controller(Picky(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert outbox.flush(cfg) == (2, 1)  # the poison waits, the others went
        assert outbox.flush(cfg) == (0, 1)
        assert outbox.flush(cfg) == (0, 0)  # third refusal: set aside
    finally:
        controller.stop()
    assert len(received) == 2
    assert all(r.rcpt_tos == ["programme@buyer.example"] for r in received)
    aside = list((tmp_path / "alerts" / "rejected").glob("*.eml"))
    assert len(aside) == 1
    assert "554" in aside[0].with_suffix(".error").read_text()
    refused = [json.loads(line) for line in
               (tmp_path / "alerts" / "refused.log").read_text().splitlines()]  # fmt: skip
    assert len(refused) == 2 and all("energy@spring-b.example" in r["refused"] for r in refused)


def test_the_weekly_budget_per_meter_counts_every_kind_together(tmp_path: Path) -> None:
    """Three emails per meter and week whatever their kind (spike, regime, stuck); the fourth
    goes to the digest, another meter still has its own; a new ISO week starts afresh."""
    budget = Budget.load(tmp_path / "budget.json", per_day=99, per_week=3)
    book = IncidentBook(tmp_path / "b.json")
    allowed = []
    for n, kind in enumerate(("spike", "regime", "stuck", "level_shift")):
        events = book.update([cond("m0", kind)], NOW + n * HOUR_NS, 0, 0, 99)
        [event] = [e for e in events if e.kind == "open"]
        allowed.append(budget.allows(event, "Asia/Taipei"))
    assert allowed == [True, True, True, False]
    [other] = [e for e in book.update([cond("m1", "spike")], NOW + 5 * HOUR_NS, 0, 0, 99)
               if e.kind == "open"]  # fmt: skip
    assert budget.allows(other, "Asia/Taipei")
    budget.save()
    budget = Budget.load(tmp_path / "budget.json", per_day=99, per_week=3)
    events = book.update([cond("m0", "meter_silent")], NOW + 7 * 86_400 * 10**9, 0, 0, 99)
    [next_week] = [e for e in events if e.kind == "open"]
    assert budget.allows(next_week, "Asia/Taipei")


def test_the_daily_budget_sends_the_rest_to_the_digest(tmp_path: Path) -> None:
    """Four incident emails per site and day; the fifth incident and its later events wait for
    the digest; the next day the budget is new."""
    budget = Budget.load(tmp_path / "budget.json", per_day=4)
    book = IncidentBook(tmp_path / "b.json")
    allowed = []
    for n in range(5):
        conditions = [cond(f"m{k}", "stuck") for k in range(n + 1)]
        [event] = book.update(conditions, NOW + n * MIN_NS, 0, 60, 99)
        allowed.append(budget.allows(event, "Asia/Taipei"))
    assert allowed == [True, True, True, True, False]
    budget.save()
    budget = Budget.load(tmp_path / "budget.json", per_day=4)  # survives a restart
    fifth = book.open["stuck/spring-b/changhua-1/m4"]
    assert not budget.allows(Event("resolved", NOW + HOUR_NS, (fifth,)), "Asia/Taipei")
    events = book.update([cond("other", "stuck")], NOW + 86_400 * 10**9, 0, 60, 99)
    [tomorrow] = [e for e in events if e.kind == "open"]
    assert budget.allows(tomorrow, "Asia/Taipei")


SILENT_SITES = "".join(f"""
  [[suppliers.sites]]
  id = "plant-{n}"
  gateway = "gw{n}"
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
    interval_s = 300
""" for n in range(4))  # fmt: skip


@pytest.mark.parametrize("step", ["evaluated", "annotated", "queued", "saved", "digested"])
def test_a_killed_alert_job_sends_every_email_exactly_once(
    step: str, influx: InfluxClient, smtp: tuple[list, int], tmp_path: Path
) -> None:
    """Four sites fall silent; the job is killed at a step boundary of its first run that
    finds them. The next runs send each incident's email exactly once (the incident book was
    saved before its emails reached the outbox: 4 incidents open, 0 emails, for good)."""
    received, port = smtp
    registry = REGISTRY.split("  [[suppliers.sites]]")[0] + SILENT_SITES
    config = pointed_at(load_config(write_config(tmp_path / "cfg", registry), {}), None, influx)
    config = mail_config(config, port, tmp_path)
    lines = []
    for n in range(4):
        register = 1000.0
        for ts in range(NOW - 2 * WEEK_NS, NOW - 3 * HOUR_NS, 300 * 10**9):
            lines.append(f"reading,meter=main,site=plant-{n},supplier=spring-b "
                         f"energy_kwh={register:.3f},power_kw=20 {ts}")  # fmt: skip
            register += 20 * 300 / 3600
        lines.append(f"gateway,gateway=gw{n},site=plant-{n},supplier=spring-b state=\"online\" "
                     f"{NOW - 3 * HOUR_NS}")  # fmt: skip
    influx.write_lines(lines)
    with pytest.raises(Killed):
        AlertRunner(config, Store(influx), step=kill_at(step)).run(NOW)
    runner = AlertRunner(config, Store(influx))
    for k in range(1, 4):
        runner.run(NOW + k * 5 * MIN_NS)
    AlertRunner(config, Store(influx)).run(NOW + 20 * MIN_NS)  # and after a restart
    messages = [email.message_from_bytes(r.content, policy=policy.default) for r in received]
    opened = sorted(m["X-Supplymeter-Incident"].strip() for m in messages)
    assert len(opened) == 4, [m["Subject"] for m in messages]
    assert len(set(opened)) == 4  # one email per incident, none twice
    assert [i.split("@")[0] for i in opened] == [
        f"gateway_silent/spring-b/plant-{n}/gw{n}" for n in range(4)
    ]


def test_a_test_alert_for_a_site_goes_through_the_real_mail_path(
    config: Config, smtp: tuple[list, int], tmp_path: Path
) -> None:
    """``supplymeter alerts test --site S``: rendered like an alert, to the site's recipients
    and the admins, through the outbox to the SMTP server; a wrong site is a clear error."""
    import argparse

    from app.cli import cmd_alerts
    from supplymeter.errors import ConfigError

    received, port = smtp
    cfg = mail_config(config, port, tmp_path)
    assert cmd_alerts(cfg, argparse.Namespace(site="changhua-1")) == 0
    [envelope] = received
    assert sorted(envelope.rcpt_tos) == ["energy@spring-b.example", "programme@buyer.example"]
    msg = email.message_from_bytes(envelope.content, policy=policy.default)
    assert msg["Subject"].startswith("Test alert at spring-b / changhua-1: ")
    assert "nothing is wrong at this site" in msg.get_body(("plain",)).get_content()
    assert list((tmp_path / "alerts" / "outbox").glob("*.eml")) == []
    with pytest.raises(ConfigError, match="no supplier has it"):
        cmd_alerts(cfg, argparse.Namespace(site="nowhere"))


def test_prices_and_floors_are_per_carrier_and_steam_is_priced_per_kg(
    example_config: Config, tmp_path: Path
) -> None:
    """The carrier table names what a price or a floor is for: steam in NT$ per kg (not the
    m³ price of gas and water), a supplier's own bill before the programme's price, and the
    keys of earlier versions still read (per unit, into the carriers of that unit)."""
    from processing.alerts import Incident, severity

    def spike(supplier: str, site: str, meter: str, unit: str, excess: float) -> Incident:
        t = datetime_to_ns(datetime(2026, 3, 2, 10, tzinfo=TPE))
        return Incident("i", "k", "spike", supplier, site, meter, t, t, t, 1.0, 0.5, unit, "",
                        t, t + 15 * MIN_NS, excess=excess)  # fmt: skip

    cfg = with_settings(
        example_config, "alerts", tariff_ntd={"electricity": 3.5, "steam": 0.9, "natural_gas": 15.0}
    )
    steam = severity(cfg, spike("spring-b", "changhua-1", "process-steam", "kg", 400.0))
    assert steam == "400.0 kg above usual ≈ 68.4 kgCO2e ≈ NT$360 at 0.9 NT$/kg"  # 0.171 kg/kg
    gas = severity(cfg, spike("heat-c", "kaohsiung-1", "carburizing-gas", "m3", 10.0))
    assert gas is not None and gas.endswith("≈ NT$150 at 15 NT$/m3")
    water = severity(cfg, spike("heat-c", "kaohsiung-1", "quench-water", "m3", 10.0))
    assert water is not None and "NT$" not in water  # water has no price of its own
    suppliers = [s.model_copy(update={"tariff_ntd": {"electricity": 4.2}})
                 if s.id == "forge-a" else s for s in cfg.registry.suppliers]  # fmt: skip
    cfg = dataclasses.replace(cfg, registry=Registry.build(suppliers))
    main = severity(cfg, spike("forge-a", "taichung-1", "main", "kWh", 100.0))
    assert main is not None and main.endswith("≈ NT$420 at 4.2 NT$/kWh")  # its own bill

    old = AlertSettings.model_validate({"spike_min_abs_kwh": 5.0, "spike_min_abs_m3": 0.5,
                                        "tariff_ntd_per_m3": 12.0,
                                        "spike_min_abs": {"water": 1.0}})  # fmt: skip
    assert old.spike_min_abs == {"water": 1.0, "electricity": 5.0, "natural_gas": 0.5}
    assert old.tariff_ntd == {"natural_gas": 12.0, "water": 12.0}
    from processing.detect import spike_floor

    ref = example_config.registry.meter("spring-b", "changhua-1", "process-steam")
    assert ref is not None and spike_floor(old, ref) == 50.0  # the carrier table's kg floor
    with pytest.raises(ValueError, match="unknown carrier steem"):
        AlertSettings.model_validate({"tariff_ntd": {"steem": 1.0}})
    with pytest.raises(ValueError, match="must be a number > 0"):
        AlertSettings.model_validate({"tariff_ntd": {"steam": 0}})
