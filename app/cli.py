"""``supplymeter``: the command line, the one place (with :mod:`app.demo`) that wires the
services together. Nothing imports this package.

Service packages are imported lazily inside each command, so ``supplymeter --help`` and a
config check stay fast.

Exit codes: 0 success, 1 runtime failure (a server unreachable, a refused request), 2 bad
configuration or arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from app import common
from app.common import (
    DEFAULT_TZ,
    Progress,
    factors,
    open_influx,
    open_store,
    print_summary,
    progress,
    say,
)
from supplymeter.config import Config, SimulatorSettings, load_config
from supplymeter.errors import ConfigError, SupplymeterError

if TYPE_CHECKING:
    from collections.abc import Callable

    from supplymeter.store import Store


log = logging.getLogger("supplymeter")


class JsonFormatter(logging.Formatter):
    """Structured logs: ``{"ts", "level", "logger", "msg"[, "exc"]}`` per line.

    Nothing here adds secrets to a log: credentials live in ``SecretStr`` and are never
    interpolated into messages.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created).astimezone().isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def parse_time(text: str, tz: str = DEFAULT_TZ) -> datetime:
    """RFC 3339 / ISO 8601 with an offset, or a bare ``YYYY-MM-DD[THH:MM]`` read in ``tz``."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time like 2026-10-01 or 2026-10-01T00:00:00+08:00"
        ) from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=ZoneInfo(tz))


def cmd_check(config: Config | None, args: argparse.Namespace) -> int:
    """Every file and every layer in one pass; exit 2 listing every problem."""
    from app.check import run_check

    report = run_check(args.config)
    if report.problems:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        files = len({getattr(p, "file", p) for p in report.problems})
        print(f"{len(report.problems)} problems in {files} files", file=sys.stderr)
        return 2
    assert report.config is not None
    config = report.config
    meters = config.registry.meters()
    events = sum(len(r.meter.events) for r in meters)
    say(f"{config.path}: OK — {len(config.registry.suppliers)} suppliers, {len(meters)} meters, "
         f"{events} meter events; {', '.join(report.checked)}")  # fmt: skip
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from app.status import cmd_status as status

    return status(config, verbose=args.details or args.verbose > 0)


def cmd_readings(config: Config, args: argparse.Namespace) -> int:
    from app import reads

    ref = reads.find_meter(config, args.meter)
    now = datetime.now(ref.tz)
    start = reads.parse_since(args.since, now)
    end = reads.parse_since(args.until, now) if args.until else now
    with open_store(config) as store:
        return reads.readings(config, store, ref, *_ns(start, end), args.limit, args.csv)


def cmd_hours(config: Config, args: argparse.Namespace) -> int:
    from app import reads
    from processing.accounting.scope3 import Month

    ref = reads.find_meter(config, args.meter)
    if args.month:
        start_ns, end_ns = Month.parse(args.month).bounds(ref.tz)
    else:
        now = datetime.now(ref.tz)
        start_ns, end_ns = _ns(reads.parse_since(args.since, now), now)
    with open_store(config) as store:
        return reads.hours(config, store, ref, start_ns, end_ns, args.csv)


def cmd_devices(config: Config, args: argparse.Namespace) -> int:
    from app import reads

    now = datetime.now(ZoneInfo(config.jobs.timezone))
    start = reads.parse_since(args.since, now)
    with open_store(config) as store:
        return reads.unknown_devices(store, *_ns(start, now), config.jobs.timezone, args.csv)


def cmd_import(config: Config, args: argparse.Namespace) -> int:
    from app import reads
    from collector import importer

    ref = reads.find_meter(config, args.meter)
    text = importer.read_file(args.file)
    history = importer.read_history(text, str(args.file), ref, time.time_ns())
    if not history.readings:
        say(f"{args.file}: no rows; nothing imported")
        return 0
    with open_store(config) as store:
        clash = importer.overlapping(history, ref, store)
        if clash and not args.replace:
            raise ConfigError([f"{args.file}: {clash} readings the meter sent live lie inside "
                               "the file's span; import only what the meter did not send, or "
                               "give --replace to overwrite them"])  # fmt: skip
        history = importer.anchored(history, ref, store)
        written, hours = importer.write_history(store, history, time.time_ns())
    first, last = (datetime.fromtimestamp(r.ts_ns / 1e9, ref.tz) for r in
                   (history.readings[0], history.readings[-1]))  # fmt: skip
    say(f"imported {written:,} readings ({history.form} form) for {'/'.join(ref.key)}, "
        f"{first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} {ref.site.timezone}; {hours:,} hours "
        "marked: the rollup job recomputes them (or now: supplymeter rollup --start "
        f"{first:%Y-%m-%dT%H:00%z} --end {last:%Y-%m-%dT%H:00%z} plus one hour)")  # fmt: skip
    return 0


def _ns(start: datetime, end: datetime) -> tuple[int, int]:
    from supplymeter.records import datetime_to_ns

    if end <= start:
        raise ConfigError([f"the end ({end:%Y-%m-%d %H:%M}) must be after the start "
                           f"({start:%Y-%m-%d %H:%M})"])  # fmt: skip
    return datetime_to_ns(start), datetime_to_ns(end)


def cmd_stack(config: Config, args: argparse.Namespace) -> int:
    from deploy.stack import stack_from_config

    stack = stack_from_config(config)
    if args.action == "up":
        stack.up(detach=True)
        say(f"stack up under {stack.root}")
    elif args.action == "down":
        stack.down()
        say("stack down")
    for status in stack.status():
        say(str(status))
    return 0 if args.action != "status" or stack.running() else 1


def dashboards_pusher(config: Config) -> Callable[[], str] | None:
    """The daily dashboards push for the jobs, or ``None`` without a Grafana token."""
    if config.secrets.grafana_token is None:
        return None

    def push() -> str:
        from dashboards.push import connect, push

        plan = push(config, connect(config))
        changed = [line for line in plan if not line.endswith("unchanged")]
        return f"{len(plan)} items, {len(changed)} changed" + (f": {changed}" if changed else "")

    return push


def cmd_collect(config: Config, args: argparse.Namespace) -> int:
    """The collector: one process, or a supervisor (process 0) with workers 1..N-1."""
    if args.worker is not None:
        return _collect(config, args)
    import hashlib
    import tempfile

    from supplymeter.files import single_instance

    # Two collectors with one client id would take each other's session off the broker in
    # turns (and fight over the metrics port): the second one stops here, at once.
    m = config.mqtt
    key = hashlib.sha256(f"{m.host}:{m.port}/{m.client_id}".encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"supplymeter-collect-{key}.lock"
    with single_instance(lock, f"a collector as client id {m.client_id!r} on {m.host}:{m.port}"):
        return _collect(config, args)


WORKER_GRACE_S = 30.0
"""How long a worker whose supervisor died may take to stop cleanly (writes, then acks)
before it exits hard — safe either way: unacknowledged messages stay with the broker."""


def _set_soon(event: threading.Event) -> None:
    """Set ``event`` from a signal handler or a watcher without waiting on its lock here: a
    handler runs in the main thread between bytecodes, possibly while that thread holds the
    event's (non-reentrant) lock inside ``wait`` — setting it there deadlocked a worker whose
    supervisor was killed (the watcher then blocked on the same lock and never exited)."""
    threading.Thread(target=event.set, name="stop", daemon=True).start()


def _follow_supervisor(pid: int | None, stop: threading.Event) -> None:
    """A worker ends with its supervisor, from its first instant (also while it is still
    connecting): the kernel sends SIGTERM when the parent dies (Linux), and a watcher checks
    the parent's pid; after ``WORKER_GRACE_S`` the worker exits hard."""
    if pid is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # Linux only; the watcher covers others
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != pid:
        log.warning("collector worker: supervisor %d already gone; not starting", pid)
        raise SystemExit(1)

    def watch() -> None:
        # Watched for as long as the worker lives, its own shutdown included: a worker told
        # to stop that is still draining (e.g. into an InfluxDB refusing writes) when its
        # supervisor is gone must not outlive it by more than the grace.
        while os.getppid() == pid:
            time.sleep(0.2)
        if not stop.is_set():
            log.warning("collector worker: supervisor %d gone; stopping", pid)
            _set_soon(stop)
        time.sleep(WORKER_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _collect(config: Config, args: argparse.Namespace) -> int:
    from collector.service import Collector, resolve_processes, retire_sessions, worker_config

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: _set_soon(stop))
    if args.worker is not None:
        _follow_supervisor(args.supervisor, stop)
        # a worker takes the count and group its supervisor resolved
        collector_ = config.collector.model_copy(update={"processes": args.processes})
        mqtt = config.mqtt.model_copy(update={"shared_group": args.shared_group})
        config = dataclasses.replace(config, services=config.services.model_copy(
            update={"collector": collector_, "mqtt": mqtt}))  # fmt: skip
    auto = ""
    if args.worker is None and config.collector.processes == "auto":
        config = resolve_processes(config)
        shares = "offered" if config.collector.processes != 1 else "not offered or unknown"
        auto = f" (processes = auto: {os.cpu_count()} cores, shared subscriptions {shares})"
    processes = config.collector.processes
    assert isinstance(processes, int)
    if args.worker is None:
        # Sessions of collector processes this config no longer runs (processes lowered, or
        # raised from one): drain them into InfluxDB and end them before starting.
        with open_influx(config) as client:
            retired = retire_sessions(config, client)
        if retired:
            say(f"retired the sessions of {', '.join(retired)} (drained, then deleted)")
    workers = None
    if args.worker is None and processes > 1:
        workers = _spawn_workers(config, args, processes, stop)
    config = worker_config(config, args.worker or 0)
    with open_influx(config) as client, Collector(config, client=client) as collector:
        say(f"collecting from {config.mqtt.host}:{config.mqtt.port} into {client.url}"
            + (f" with {processes} processes" if workers else "") + auto)  # fmt: skip
        while not stop.wait(1.0):
            pass
    if workers:
        workers.join()
    say(f"collector stopped: {collector.stats}")
    return 0


def _spawn_workers(
    config: Config, args: argparse.Namespace, processes: int, stop: threading.Event
) -> threading.Thread:
    """Run collector processes 1..N-1 beside this one (process 0), restarting any that dies
    (its persistent session may hold messages the broker queued for it); on ``stop``, pass
    SIGTERM on and wait for them."""
    import subprocess

    argv = [sys.executable, "-m", "app.cli", "--config", str(config.path)]
    argv += ["--log-json"] if args.log_json else []
    argv += ["-v"] * args.verbose
    resolved = ["--processes", str(processes), "--shared-group", config.mqtt.shared_group or "",
                "--supervisor", str(os.getpid())]  # fmt: skip

    def supervise() -> None:
        procs = {i: subprocess.Popen([*argv, "collect", "--worker", str(i), *resolved])
                 for i in range(1, processes)}  # fmt: skip
        while not stop.wait(1.0):
            for i, proc in procs.items():
                if proc.poll() is not None:
                    log.error("collector process %d exited (%s); restarting", i, proc.returncode)
                    procs[i] = subprocess.Popen([*argv, "collect", "--worker", str(i),
                                                 *resolved])  # fmt: skip
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(60)

    thread = threading.Thread(target=supervise, name="workers")
    thread.start()
    return thread


def _fault_overrides(config: Config, pairs: list[str]) -> SimulatorSettings:
    """``[simulator]`` with ``--fault NAME=VALUE`` overrides (ranges as ``LOW,HIGH``)."""
    from pydantic import ValidationError

    from supplymeter.config import FaultSettings

    values: dict[str, object] = config.simulator.faults.model_dump()
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in FaultSettings.model_fields:
            known = ", ".join(FaultSettings.model_fields)
            raise ConfigError([f"--fault {pair}: expected NAME=VALUE with NAME one of {known}"])
        try:  # command-line text → numbers: the config checks types strictly
            parts = [float(v) for v in value.split(",")]
        except ValueError:
            raise ConfigError([f"--fault {pair}: {name} takes a number or LOW,HIGH"]) from None
        values[name] = parts if "," in value else parts[0]
    try:
        faults = FaultSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError([f"--fault: {'.'.join(map(str, e['loc'])) or 'faults'}: {e['msg']}"
                           for e in exc.errors()]) from exc  # fmt: skip
    return config.simulator.model_copy(update={"faults": faults})


def cmd_load_test(config: Config, args: argparse.Namespace) -> int:
    from simulators.loadtest import LOADTEST_DATABASE, load_test, write_registry

    if not args.meters or not args.rate:
        raise ConfigError(["--load-test needs --meters M and --rate R"])
    services = write_registry(args.registry_out, args.meters, config)
    say(f"synthetic registry of {args.meters:,} meters: {args.registry_out}; their readings "
        f"belong in their own database {LOADTEST_DATABASE!r} — collect them with: "
        f"supplymeter -c {services} collect")  # fmt: skip
    log.warning("a collector on the main registry will reject the synthetic meters' messages "
                "as unknown_supplier; run the load test against a broker without one, or "
                "stop it for the test")  # fmt: skip
    result = load_test(config, args.meters, args.rate, args.duration, progress("load test"))
    say(
        f"target {result.target_rate:,.0f} readings/s, achieved {result.achieved_rate:,.0f}/s "
        f"({result.acknowledged:,} acknowledged in {result.wall_s:.1f} s)"
    )
    return 0 if result.achieved_rate >= 0.95 * result.target_rate else 1


def simulated_alerts(config: Config, store: Store) -> Callable[[int], None]:
    """The alert job on simulated time: every ``[alerts] every_min`` of it, one run judged at
    the simulated instant (the collector stores what the simulator publishes; slots whose
    readings have not arrived yet wait for the next run). Events are printed as they come."""
    from processing.alerts import AlertRunner

    runner = AlertRunner(config, store)
    every_ns = config.alerts.every_min * 60 * 10**9
    last = [0]

    def tick(now_ns: int) -> None:
        if now_ns - last[0] < every_ns:
            return
        last[0] = now_ns - now_ns % every_ns
        summary = runner.run(now_ns)
        if " 0 events" not in summary:
            from collector.payload import format_ts

            say(f"alerts at {format_ts(now_ns)} (simulated): {summary}")

    return tick


def cmd_simulate(config: Config, args: argparse.Namespace) -> int:
    from simulators.run import simulate

    if args.load_test:
        return cmd_load_test(config, args)
    settings = _fault_overrides(config, args.fault or [])
    if args.backfill:
        start, end, speed = args.backfill[0], args.backfill[1], None
    else:
        now = datetime.now(ZoneInfo(args.tz)).replace(minute=0, second=0, microsecond=0)
        start = args.start or now
        end = args.end or start + timedelta(days=365)
        speed = args.speed
    passwords = None
    if args.gateway_passwords:
        from deploy.mosquitto import load_passwords

        passwords = load_passwords(args.gateway_passwords)
    store = open_store(config) if args.alerts else None
    try:
        result = simulate(
            config,
            start=start,
            end=end,
            seed=args.seed,
            speed=speed,
            ledger_path=args.ledger,
            progress=progress("simulate"),
            gateway_passwords=passwords,
            batch=args.batch,
            settings=settings,
            tick=simulated_alerts(config, store) if store is not None else None,
        )
    finally:
        if store is not None:
            store.client.close()
    from collector.payload import format_ts

    if result.continued_from_ns is not None:
        say(f"continued the registers of the run that ended at "
            f"{format_ts(result.continued_from_ns)}")  # fmt: skip
    say(
        f"published {result.readings:,} readings in {result.messages:,} messages in "
        f"{result.wall_s:.1f} s; ledger: {result.ledger_path}, faults: {result.faults_path} "
        f"({len(result.faults.events):,} events)"
    )
    if result.interrupted:
        say(f"interrupted: the ledger covers the hours before {format_ts(result.end_ns)}; "
            f"continue with --start {format_ts(result.end_ns)} (same --ledger)")  # fmt: skip
        return 130
    return 0


def _hour_range(args: argparse.Namespace) -> tuple[int, int]:
    from supplymeter.records import datetime_to_ns

    return datetime_to_ns(args.start), datetime_to_ns(args.end)


def cmd_rollup(config: Config, args: argparse.Namespace) -> int:
    from processing.jobs import run_rollup

    start_ns, end_ns = _hour_range(args)
    if end_ns <= start_ns:
        raise ConfigError([f"--end must be after --start (got {args.start} .. {args.end})"])
    with open_store(config) as store, Progress("rollup", "chunks") as bar:
        report = run_rollup(config, store, start_ns, end_ns, factors(config), bar)
    say(
        f"{report.hours:,} meter-hours from {report.meters} meters; "
        f"{report.estimated_hours} estimated; corrections {dict(report.flags) or 'none'}"
    )
    if report.falls:
        say(
            f"WARNING: {report.falls} register falls without a recorded meter event, on "
            f"{', '.join(report.fallen)}: those hours are estimated; record the exchange in "
            "the registry (meter events; `supplymeter readings METER` shows the fall)"
        )
    if report.meters_without_data:
        say(f"no data for: {', '.join(report.meters_without_data)}")
    return 0


def cmd_export(config: Config, args: argparse.Namespace) -> int:
    from processing.accounting.runner import export_month
    from processing.accounting.scope3 import Month

    month = Month.parse(args.month)
    begin, end = month.bounds(ZoneInfo(config.jobs.timezone))
    if begin > time.time_ns():
        raise ConfigError([f"--month {month}: has not begun yet; nothing to export"])
    if end > time.time_ns():
        log.warning("%s is not over yet: this export is partial and will be restated", month)
    out = args.out or config.resolve(config.jobs.export_dir)
    with open_store(config) as store, Progress("export", "sites") as bar:
        result = export_month(config, store, month, out, factors(config), progress=bar)
    print_summary(result)
    return 0


def cmd_progress(config: Config, args: argparse.Namespace) -> int:
    from processing.baselines import read_temperature
    from processing.progress import build_report, write_report

    temperature = None
    if args.temperature is not None:
        try:
            temperature = read_temperature(args.temperature.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError([f"--temperature {args.temperature}: {e}"]) from None
    today = datetime.now(ZoneInfo(config.jobs.timezone)).date()
    until = min(date(args.year + 1, 1, 1), today)
    if until <= date(args.year, 1, 1):
        raise ConfigError([f"--year {args.year}: has not begun yet"])
    out = args.out or config.resolve(config.jobs.export_dir).parent / "progress"
    known = [s.id for s in config.registry.suppliers]
    if args.supplier not in known:
        raise ConfigError([f"no supplier {args.supplier!r} in the registry (suppliers: "
                           f"{', '.join(known)})"])  # fmt: skip
    say = lambda text: log.info("%s", text)  # noqa: E731
    try:
        with open_store(config) as store:
            report = build_report(config, store, factors(config), args.supplier, args.year,
                                  until, temperature, progress=say)  # fmt: skip
    except ValueError as e:
        raise ConfigError([str(e)]) from None
    version, directory, written = write_report(config, report, out)
    for t, months in report.targets:
        last = next((m for m in reversed(months) if m.ytd is not None), None)
        if last is None:
            print(f"target {t.id}: no data for {args.year} yet")
        else:
            state = "on track" if last.on_track else "behind"
            print(f"target {t.id}: year to date {last.ytd:,.3f} vs {last.allowed_ytd:,.3f} "
                  f"allowed ({state}, {last.gap_pct or 0:+.1f} %)")  # fmt: skip
    for r in report.measures:
        if r.result is not None:
            print(f"measure {r.measure.id}: avoided {r.result.saved:,.0f} ± "
                  f"{r.result.uncertainty:,.0f} {r.unit} (90 %), {r.status}")  # fmt: skip
        else:
            print(f"measure {r.measure.id}: {r.status}{': ' + r.note if r.note else ''}")
    print(f"{'wrote' if written else 'unchanged:'} v{version} {directory}")
    return 0


def cmd_pact(config: Config, args: argparse.Namespace) -> int:
    if args.action == "hash-secret":
        import getpass

        from app.pact import hash_secret

        secret = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else (
            getpass.getpass("client secret: "))  # fmt: skip
        if len(secret) < 16:
            raise ConfigError(["a client secret needs at least 16 characters (use a random one, "
                               "e.g. `openssl rand -base64 24`)"])  # fmt: skip
        print(hash_secret(secret))
        return 0
    if args.action == "publish":
        from processing.accounting.runner import publish_period
        from processing.accounting.scope3 import Month

        if not args.month:
            raise ConfigError(["pact publish: give --month YYYY-MM (and --to for a longer "
                               "reference period)"])  # fmt: skip
        first = Month.parse(args.month)
        last = Month.parse(args.to) if args.to else first
        with open_store(config) as store, Progress("footprints", "months") as bar:
            published, skipped = publish_period(config, store, factors(config), first, last,
                                                progress=bar)  # fmt: skip
        for pf in published.created:
            say(
                f"published {pf['id']}  {pf['productNameCompany']}: "
                f"{pf['pcf']['pcfExcludingBiogenicUptake']} kgCO2e per "
                f"{pf['pcf']['declaredUnitOfMeasurement']}"
                + (f" (restates {pf['precedingPfIds'][0]})" if "precedingPfIds" in pf else "")
            )
        say(
            f"{len(published.created)} new, {len(published.deprecated)} deprecated, "
            f"{published.unchanged} unchanged → {config.resolve(config.pact.footprints_file)}"
        )
        for reason in skipped:
            log.warning("skipped: %s", reason)
        notify = footprint_notifier(config, wait=True)
        if notify is not None and published.created:
            say(notify([pf["id"] for pf in published.created]))
        return 0
    if args.action == "serve":
        return _serve_pact(config, args)
    raise AssertionError(args.action)


def footprint_notifier(config: Config, wait: bool = False) -> Callable[[list[str]], str] | None:
    """Tells the PACT clients with a callback about newly published footprints
    (``PublishedEvent``); ``None`` when no client has one. ``wait``: until delivered or
    abandoned (one-shot commands); otherwise in the background."""
    if not any(c.callback for c in config.pact.clients):
        return None
    from app.pact import delivery_dir, events_recorder, notify_published
    from app.pact_delivery import Responder
    from processing.accounting.footprints import FootprintLog

    s = config.pact
    events_file = config.resolve(s.events_file)
    responder = Responder(events_recorder(events_file), delivery_dir(events_file))
    log_ = FootprintLog(config.resolve(s.footprints_file))

    def notify(ids: list[str]) -> str:
        sent = notify_published(s, log_, ids, responder, s.event_source)
        if wait:
            delivered = sum(bool(f.result()) for f in sent)
            return f"PublishedEvent delivered to {delivered} of {len(sent)} clients"
        return f"PublishedEvent to {len(sent)} clients under way"

    return notify


def cmd_cbam(config: Config, args: argparse.Namespace) -> int:
    from processing.accounting.cbam import publish_workbook, write_workbook
    from processing.accounting.runner import installations
    from processing.accounting.scope3 import Month

    first = Month.parse(args.month)
    last = Month.parse(args.to) if args.to else first
    year = args.year or last.year
    with open_store(config) as store, Progress("cbam", "months") as bar:
        found = installations(config, store, factors(config), first, last, progress=bar)
    if not found:
        say("no installation has products with a CN code: nothing to report")
        return 0
    if args.out:
        out = write_workbook(args.out, found, year)
    else:
        directory = config.resolve(config.pact.cbam_dir) / f"{first}--{last}"
        out, written = publish_workbook(directory, found, year, first, last,
                                        config.jobs.restate_threshold_pct)  # fmt: skip
        if not written:
            say(f"unchanged since {out.parent.name}: nothing new written")
    for inst in found:
        for g in inst.goods:
            see = "n/a (nothing counted)" if g.see_direct is None else f"{g.see_direct:.3f}"
            d = f"{g.default.for_year(year):.3f}" if g.default else "none tabulated"
            say(
                f"{inst.supplier.id}/{inst.site.id} CN {g.cn_code}: {g.tonnes:,.1f} t, "
                f"SEE direct {see} tCO2e/t (default {year}: {d})"
            )
    say(f"wrote {out}")
    return 0


def _serve_pact(config: Config, args: argparse.Namespace) -> int:
    import ipaddress

    import uvicorn

    from app.pact import Tokens, create_app, token_key
    from processing.accounting.footprints import FootprintLog

    s = config.pact
    host, port = args.host or s.host, s.port if args.port is None else args.port
    tls = s.tls_certfile is not None and s.tls_keyfile is not None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not tls and not loopback:
        raise ConfigError([f"pact: PACT requires HTTPS: serving on {host} needs tls_certfile and "
                           "tls_keyfile (or a loopback address behind a TLS proxy)"])  # fmt: skip
    if not loopback and not s.public_url:
        raise ConfigError([f"pact.public_url: serving on {host} needs the address clients use "
                           "(e.g. https://pact.buyer.example): links, the OpenID issuer and "
                           "event sources are written with it, never with a request's "
                           "Host"])  # fmt: skip
    base_url = s.public_url or f"{'https' if tls else 'http'}://{host}:{port}"
    if not s.clients:
        log.warning("pact: no [[pact.clients]]: every request will be refused")
    app = create_app(
        s,
        FootprintLog(config.resolve(s.footprints_file)),
        config.resolve(s.events_file),
        Tokens(token_key(), s.token_lifetime_s),
        base_url=base_url,
    )
    say(f"PACT v3 host on {'https' if tls else 'http'}://{host}:{port} ({len(s.clients)} clients)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=True,
        ssl_certfile=str(config.resolve(s.tls_certfile)) if tls else None,
        ssl_keyfile=str(config.resolve(s.tls_keyfile)) if tls else None,
    )  # type: ignore[arg-type]
    return 0


def cmd_deploy(config: Config, args: argparse.Namespace) -> int:
    from deploy.mosquitto import write_mosquitto

    files = write_mosquitto(config, args.out, args.runtime_dir)
    say(f"wrote {files.conf}, {files.passwd} (mode 0600), {files.acl}: {len(files.users)} users")
    secrets_file = config.resolve(config.services.broker.secrets_file)
    if files.generated:
        say(f"generated passwords for {len(files.generated)} users into {secrets_file} "
             "(mode 0600; not shown here)")  # fmt: skip
    if args.apply:
        from deploy.mosquitto import apply_dynsec, load_passwords

        changes = apply_dynsec(config, load_passwords(secrets_file))
        say(f"applied to the running broker at {config.mqtt.host}:{config.mqtt.port}: "
            + (f"{len(changes)} changes" if changes else "already up to date"))  # fmt: skip
        for change in changes:
            say(f"  {change}")
    return 0


def cmd_scheduler(config: Config, args: argparse.Namespace) -> int:
    from processing.jobs import run_scheduler

    run_scheduler(config, dashboards_pusher(config), footprint_notifier(config))
    return 0


def cmd_dashboards(config: Config, args: argparse.Namespace) -> int:
    from dashboards import push as dash

    if args.action == "export":
        for path in dash.export(config, args.dir or Path("deploy/compose/grafana/dashboards")):
            say(f"wrote {path}")
        return 0
    if args.action == "provision":
        out = args.out or Path("out/grafana")
        for path in dash.provision(config, out, args.reader, args.dashboards_path):
            say(f"wrote {path}")
        say(f"copy {out / 'dashboards'}/*.json to {args.dashboards_path} and the provisioning "
            f"files into Grafana's provisioning directory; Grafana needs "
            f"{dash.READER_PASSWORD_ENV} in its environment (docs/operations.md)")  # fmt: skip
        return 0
    if args.action == "reader":
        password = os.environ.get(dash.READER_PASSWORD_ENV, "")
        if not password:
            raise ConfigError([f"{dash.READER_PASSWORD_ENV} is not set (the read-only user's "
                               "password, also given to Grafana)"])  # fmt: skip
        from app.common import open_influx

        with open_influx(config) as client:
            client.create_reader(args.reader, password)
        say(f"InfluxDB user {args.reader!r} can read {config.influxdb.database!r} and nothing "
            "else")  # fmt: skip
        return 0
    if args.action == "render":
        from dashboards.macros import local_bounds
        from dashboards.render import render_all
        from processing.accounting.export import previous_month

        month = args.month or str(previous_month(time.time_ns(), config.jobs.timezone))
        start, end = local_bounds(month, config.jobs.timezone)
        with open_store(config) as store:
            out = args.out or Path("out/dashboards")
            paths = render_all(config, store, start, end, out)
        say(f"rendered {len(paths)} dashboards for {month} into {out}")
        return 0
    plan = dash.push(config, dash.connect(config), dry_run=args.dry_run)
    for line in plan:
        say(("would " if args.dry_run else "") + line if "unchanged" not in line else line)
    return 0


def cmd_alerts(config: Config, args: argparse.Namespace) -> int:
    """``alerts test --site S``: one test alert through the outbox and ``[smtp]``."""
    from app.reads import find_site
    from processing.alerts import send_test

    supplier, site = find_site(config, args.site)
    people, sent, waiting = send_test(config, supplier, site, time.time_ns())
    say(f"test alert for {supplier}/{site} to {', '.join(people) or 'nobody (no recipients)'}: "
        f"{sent} sent, {waiting} waiting in the outbox")  # fmt: skip
    return 0 if waiting == 0 else 1


def cmd_run_job(config: Config, args: argparse.Namespace) -> int:
    from processing.accounting.scope3 import Month
    from processing.jobs import Jobs

    kwargs: dict[str, object] = {}
    if args.month:
        if args.name != "export":
            raise ConfigError(["--month applies to the export job only"])
        kwargs["month"] = Month.parse(args.month)
    with open_store(config) as store:
        jobs = Jobs(
            config,
            store,
            factors(config),
            push_dashboards=dashboards_pusher(config),
            reload_factors=True,
            on_footprints=footprint_notifier(config, wait=True),
        )
        ok = jobs.run(args.name, **kwargs)
    if ok:
        say(f"{args.name}: {jobs.last_summary}")
    return 0 if ok else 1


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supplymeter",
        description="Suppliers' meters over MQTT into InfluxDB, hourly consumption and "
        "emissions, alerts, and the monthly scope-3, PACT and CBAM figures. Start with "
        "`check`, then `status`; exit codes: 0 ok, 1 a runtime failure, 2 bad "
        "configuration or arguments.",
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="services file (default: $SUPPLYMETER_CONFIG or ./supplymeter.toml)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v for INFO logs, -vv for DEBUG"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="only warnings and errors (services and one-shot commands alike)",
    )  # fmt: skip
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="one JSON object per log line (for journald, Loki, ELK)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser(
        "check",
        help="check every input file at once: services, registry, factors, allocations, "
        "certificates, bills, and the ids they name",
        description="Read every input file, past every problem, and list each problem as "
        "FILE:LINE: where: rule (got value) [code]. Exit 0 when all is well, 2 otherwise.",
    ).set_defaults(func=cmd_check)

    p = sub.add_parser(
        "status",
        help="one screen: stack, collector health and backlog, last "
        "job runs, gateways down, open incidents, months awaiting restatement",
        description="A summary that fits 80×24; -v lists every item. Exit 1 when something "
        "needs the operator.",
    )
    p.add_argument("-v", "--verbose", dest="details", action="store_true",
                   help="every incident, month and issue, not only the newest")  # fmt: skip
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "readings",
        help="one meter's stored readings and refused messages, newest first",
        description="METER is SUPPLIER/SITE/METER, or a meter id the registry has once.",
    )
    p.add_argument("meter")
    p.add_argument("--since", default="1d", help="7d, 36h, 90m or a time (default 1d)")
    p.add_argument("--until", help="end, same forms (default now)")
    p.add_argument("--limit", type=int, default=50, help="rows at most (default 50)")
    p.add_argument("--csv", action="store_true", help="CSV on stdout, RFC 3339 times")
    p.set_defaults(func=cmd_readings)

    p = sub.add_parser(
        "hours",
        help="one meter's hourly consumption with its measured and estimated parts",
        description="METER is SUPPLIER/SITE/METER, or a meter id the registry has once.",
    )
    p.add_argument("meter")
    p.add_argument("--month", help="YYYY-MM in the site's timezone")
    p.add_argument("--since", default="1d", help="without --month: 7d, 36h or a time (1d)")
    p.add_argument("--csv", action="store_true", help="CSV on stdout, RFC 3339 times")
    p.set_defaults(func=cmd_hours)

    p = sub.add_parser(
        "progress",
        help="a supplier's annual progress report: targets against their pathway, measured "
        "savings per measure with their uncertainty (versioned workbook)",
        description="Targets and measures come from the registry (suppliers.targets, "
        "suppliers.measures). See docs/operations.md, 'Targets and measured savings'.",
    )
    p.add_argument("supplier")
    p.add_argument("--year", type=int, required=True, help="the report's calendar year")
    p.add_argument(
        "--temperature",
        type=Path,
        help="daily mean outdoor temperature, CSV date,mean_c (degree days)",
    )
    p.add_argument("--out", type=Path, help="directory (default: beside the exports)")
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser(
        "import",
        help="a meter's history from a CSV (register or interval form), validated like live "
        "readings, marked imported, recomputed by the rollup",
        description="Register form: ts + protocol quantities (energy_kwh, volume_m3, ...). "
        "Interval form: interval_start[, interval_end], consumption (the meter's unit). Times "
        "without an offset are site-local. See docs/operations.md, 'Import history'.",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--meter", required=True, help="SUPPLIER/SITE/METER or a unique meter id")
    p.add_argument("--replace", action="store_true",
                   help="overwrite live readings inside the file's span")  # fmt: skip
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("devices", help="devices publishing without being in the registry")
    p.add_argument("--unknown", action="store_true", required=True,
                   help="topics refused as unknown supplier, site or meter")  # fmt: skip
    p.add_argument("--since", default="7d", help="7d, 36h or a time (default 7d)")
    p.add_argument("--csv", action="store_true", help="CSV on stdout, RFC 3339 times")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("stack", help="local Mosquitto + InfluxDB under .stack/")
    p.add_argument("action", choices=("up", "down", "status"))
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser(
        "collect",
        help="run the MQTT → InfluxDB collector",
        description="Subscribe to every supplier's readings and statuses, validate them, "
        "store them in InfluxDB and acknowledge them once stored; takes registry edits "
        "while running. Until interrupted (SIGINT/SIGTERM: drains, then stops).",
    )
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--shared-group", default=None, help=argparse.SUPPRESS)
    p.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("simulate", help="publish simulated meter readings over MQTT")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--load-test",
        action="store_true",
        help="publish --rate single readings/s from --meters synthetic meters for --duration",
    )
    mode.add_argument(
        "--backfill",
        nargs=2,
        metavar=("START", "END"),
        type=parse_time,
        help="simulate START..END as fast as the broker acknowledges",
    )
    mode.add_argument(
        "--speed", type=float, help="real time: N simulated seconds per second (1 = wall clock)"
    )
    p.add_argument("--start", type=parse_time, help="with --speed: first instant (default now)")
    p.add_argument("--end", type=parse_time, help="with --speed: last instant (default +1 year)")
    p.add_argument("--seed", type=int, default=1, help="same seed, same readings (default 1)")
    p.add_argument(
        "--ledger",
        type=Path,
        default=Path("out/simulation/ledger.csv"),
        help="the ground-truth ledger (default out/simulation/ledger.csv); a later run on the "
        "same ledger continues its registers and appends its hours",
    )
    p.add_argument("--tz", default=DEFAULT_TZ, help="timezone of times given without offset")
    p.add_argument(
        "--gateway-passwords",
        type=Path,
        default=None,
        help="secrets file of `deploy mosquitto`: each gateway logs in as itself",
    )
    p.add_argument(
        "--fault",
        action="append",
        metavar="NAME=VALUE",
        help="override [simulator.faults], e.g. spike_per_week=2 or offline_minutes=10,60",
    )
    p.add_argument(
        "--batch", type=int, default=None,
        help="readings per message (default: [simulator] backfill_batch; real time 1)",
    )  # fmt: skip
    p.add_argument(
        "--alerts", action="store_true",
        help="run the alert job on the simulated clock as readings are published (emails "
        "through [smtp], state in [alerts] state_dir): try alerts out at --speed 60 or more",
    )  # fmt: skip
    p.add_argument("--meters", type=int, help="--load-test: synthetic meters")
    p.add_argument("--rate", type=float, help="--load-test: target readings per second")
    p.add_argument("--duration", type=float, default=30.0, help="--load-test: seconds (30)")
    p.add_argument(
        "--registry-out", type=Path, default=Path("out/loadtest/suppliers.toml"),
        help="--load-test: where the synthetic registry goes",
    )  # fmt: skip
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("rollup", help="recompute hourly consumption and emissions over a range")
    p.add_argument("--start", type=parse_time, required=True,
                   help="first hour: 2026-10-01, 2026-10-01T08:00 (Asia/Taipei) or with an "
                   "offset, 2026-10-01T00:00:00+08:00")  # fmt: skip
    p.add_argument("--end", type=parse_time, required=True,
                   help="end (exclusive), same forms as --start")  # fmt: skip
    p.set_defaults(func=cmd_rollup)

    p = sub.add_parser(
        "export",
        help="write a month's scope-3 export (CSVs, XLSX, chart, "
        "manifest) as a new version when it changed",
    )
    p.add_argument("--month", required=True, help="YYYY-MM, calendar month in site local time")
    p.add_argument("--out", type=Path, help="directory (default: [jobs] export_dir)")
    p.set_defaults(func=cmd_export)

    sub.add_parser(
        "jobs",
        aliases=["scheduler"],
        help="run the scheduled jobs (rollup with late data, events and factors; "
        "alerts; export and restatements; dashboards push) until interrupted",
        description="The scheduled jobs, in one process, until interrupted: rollup every "
        "[jobs] rollup_every_min, alerts every [alerts] every_min, the monthly export and "
        "its restatements, the daily dashboards push. Registry edits are taken at the next "
        "job.",
    ).set_defaults(func=cmd_scheduler)
    p = sub.add_parser(
        "dashboards",
        help="Grafana dashboards: push, export, render, provision (files for the buyer's "
        "Grafana), reader (a read-only InfluxDB user for it)",
    )
    p.add_argument("action", choices=("push", "export", "render", "provision", "reader"))
    p.add_argument(
        "--reader",
        default="grafana",
        help="provision/reader: the read-only InfluxDB user (default grafana)",
    )
    p.add_argument("--dashboards-path", default="/var/lib/grafana/dashboards/supplymeter",
                   help="provision: where Grafana reads the dashboard JSON files")  # fmt: skip
    p.add_argument("dir", nargs="?", type=Path, help="export: target directory")
    p.add_argument("--dry-run", action="store_true", help="push: show what would change")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/dashboards"),
        help="render: PNG dir; provision: output dir (default out/grafana)",
    )
    p.add_argument("--month", help="render: YYYY-MM (default last month)")
    p.set_defaults(func=cmd_dashboards)

    p = sub.add_parser("alerts", help="alerts: send a test alert for a site (test)")
    p.add_argument("action", choices=("test",))
    p.add_argument("--site", required=True,
                   help="SUPPLIER/SITE, or a site id that only one supplier has")  # fmt: skip
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("run-job", help="run one scheduled job once, now")
    p.add_argument("name", choices=("rollup", "export", "alerts", "dashboards"))
    p.add_argument("--month", help="export: YYYY-MM instead of last month")
    p.set_defaults(func=cmd_run_job)

    p = sub.add_parser("deploy", help="generate deployment files from the registry")
    p.add_argument("target", choices=("mosquitto",))
    p.add_argument(
        "--out",
        type=Path,
        default=Path("out/mosquitto"),
        help="directory for mosquitto.conf, passwd and acl (default out/mosquitto)",
    )
    p.add_argument("--apply", action="store_true",
                   help="also apply the identities to the running broker ([mqtt] host:port) "
                   "through its Dynamic Security control API: no restart")  # fmt: skip
    p.add_argument("--runtime-dir", type=Path, default=None,
                   help="where Mosquitto will read passwd and acl, if not --out "
                   "(e.g. /mosquitto/config in the compose stack)")  # fmt: skip
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("pact", help="product footprints: publish them, serve the PACT v3 API")
    p.add_argument(
        "action",
        choices=("publish", "serve", "hash-secret"),
        help="publish: compute and publish footprints for --month [--to]; serve: "
        "the PACT v3 host API; hash-secret: a client secret (stdin) → secret_hash",
    )
    p.add_argument("--month", help="first month of the reference period, YYYY-MM (publish)")
    p.add_argument("--to", help="last month of the reference period (default: --month)")
    p.add_argument("--host", help="address to serve on (default: [pact] host)")
    p.add_argument("--port", type=int, help="port (default: [pact] port)")
    p.set_defaults(func=cmd_pact)

    p = sub.add_parser("cbam", help="CBAM specific embedded emissions per CN code (XLSX)")
    p.add_argument("--month", required=True, help="first month of the reporting period")
    p.add_argument("--to", help="last month (default: --month)")
    p.add_argument("--year", type=int, help="import year of the defaults compared "
                   "(default: the year of the period)")  # fmt: skip
    p.add_argument(
        "--out",
        type=Path,
        help="write one workbook here, unversioned (default: a "
        "new version under [pact] cbam_dir/FIRST--LAST/ when a figure changed)",
    )
    p.set_defaults(func=cmd_cbam)

    p = sub.add_parser("console", help="the web console: serve it, manage its users")
    p.add_argument(
        "action", choices=("serve", "add-user", "set-password", "users", "audit", "export"),
        help="serve: the console on [console] host:port; add-user NAME --role R [--supplier "
        "S]: a new account (password from stdin, or asked); set-password NAME; users: list "
        "the accounts; audit: the audit trail as CSV on stdout; export --out DIR: the "
        "console's meter events (registry TOML) and bills (bills CSV), for those who keep files",
    )  # fmt: skip
    p.add_argument("name", nargs="?", help="add-user, set-password: the username")
    p.add_argument("--role", choices=("admin", "energy_manager", "supplier", "auditor"))
    p.add_argument("--supplier", help="add-user --role supplier: the supplier it sees")
    p.add_argument("--language", choices=("zh-TW", "en"), default="zh-TW")
    p.add_argument("--host", help="serve: address (default: [console] host)")
    p.add_argument("--port", type=int, help="serve: port (default: [console] port)")
    p.add_argument("--out", type=Path, help="export: the directory to write into")
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("demo", help="stack → simulate a month → collect → process → export")
    p.add_argument("--month", help="YYYY-MM (default: last complete month in Asia/Taipei)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave the stack running afterwards, to explore the data (prints how)",
    )
    p.add_argument(
        "--use-stack", action="store_true",
        help="use the [stack] of the config (`supplymeter stack up`) instead of the demo's own "
        "stack on free ports under --out",
    )  # fmt: skip
    p.add_argument(
        "--console", action="store_true",
        help="then serve the web console on the demo's data (keeps the stack; prints the "
        "accounts it made; Ctrl-C stops both)",
    )  # fmt: skip
    p.add_argument(
        "--samples", type=Path, default=None, metavar="DIR",
        help="also copy the workbook and a dashboard panel into DIR (`make docs`: docs/)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_demo)
    return parser


def _password(prompt: str) -> str:
    """A password from stdin (a pipe), or asked twice on a terminal."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"{prompt}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def cmd_console(config: Config, args: argparse.Namespace) -> int:
    from supplymeter.operations import Operations, Refused

    if args.action == "serve":
        from app.console.server import serve

        update = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        if update:
            console = config.console.model_copy(update=update)
            services = config.services.model_copy(update={"console": console})
            config = dataclasses.replace(config, services=services)
        serve(config)
        return 0
    with Operations.from_config(config) as ops:
        try:
            if args.action == "add-user":
                if not args.name or not args.role:
                    raise ValueError("console add-user NAME --role ROLE [--supplier S]")
                user = ops.add_user(args.name, _password(f"password for {args.name}"),
                                    args.role, supplier=args.supplier, language=args.language,
                                    by="cli", registry=config.registry)  # fmt: skip
                scope = f", {user.supplier}" if user.supplier else ""
                print(f"user {user.username} ({user.role}{scope}) added to {ops.url}")
            elif args.action == "set-password":
                if not args.name:
                    raise ValueError("console set-password NAME")
                ops.update_user(args.name, by="cli", reason="password set from the command line",
                                password=_password(f"new password for {args.name}"))  # fmt: skip
                print(f"password of {args.name} changed; its sessions ended")
            elif args.action == "export":
                from supplymeter.operations import bills_csv, events_toml

                if args.out is None:
                    raise ValueError("console export --out DIR")
                args.out.mkdir(parents=True, exist_ok=True)
                events, bills = ops.meter_events(), ops.bills()
                (args.out / "meter-events.toml").write_text(events_toml(events))
                (args.out / "bills.csv").write_text(bills_csv(bills))
                print(
                    f"{len(events)} meter events → {args.out / 'meter-events.toml'}; "
                    f"{len(bills)} bills → {args.out / 'bills.csv'}"
                )
            elif args.action == "users":
                for u in ops.users():
                    print(f"{u.username}\t{u.role}\t{u.supplier or '-'}\t{u.language}\t"
                          f"{'active' if u.active else 'inactive'}")  # fmt: skip
            else:
                import csv

                w = csv.writer(sys.stdout, lineterminator="\n")
                w.writerow(["id", "at_utc", "user", "action", "entity", "entity_id", "supplier",
                            "before", "after", "reason"])  # fmt: skip
                for e in ops.audit_trail():
                    w.writerow([e.id, f"{e.at:%Y-%m-%dT%H:%M:%SZ}", e.username, e.action,
                                e.entity, e.entity_id, e.supplier or "", e.before or "",
                                e.after or "", e.reason])  # fmt: skip
        except Refused as exc:
            raise ValueError(str(exc)) from exc
    return 0


def _cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from app.demo import cmd_demo

    return cmd_demo(config, args)


SERVICES = frozenset({"collect", "jobs", "scheduler"})
"""Long-running commands: they log at INFO by default."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if args.log_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    # Services (collect, jobs) say what they do at INFO by default, one-shot commands print
    # their own one-line summaries; -v/-vv add detail, --quiet leaves warnings and errors.
    service = args.command in SERVICES
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose + service, 2)]
    logging.basicConfig(level=logging.WARNING if args.quiet else level, handlers=[handler])
    if args.quiet:
        common.QUIET = True
    try:
        if args.func is cmd_check:  # reads the files itself, past every problem
            return cmd_check(None, args)
        config = load_config(args.config)
        return int(args.func(config, args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"supplymeter: {exc}", file=sys.stderr)
        return 2
    except SupplymeterError as exc:
        print(f"supplymeter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
