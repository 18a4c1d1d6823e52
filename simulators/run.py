"""Run the simulator: every registry site and its gateway over a time range.

:func:`generate` is the whole simulation without I/O — sites advance tick by tick, gateways
turn readings into sends — so a seed fixes every byte. :func:`simulate` carries the sends out
over MQTT: in backfill (``speed=None``) as fast as the broker acknowledges, in real time each
when its timestamp comes round, ``speed`` simulated seconds per wall second.

Readings fall on multiples of each meter's ``interval_s`` from ``start`` to ``end`` inclusive,
so every hour in ``[start, end)`` is bracketed by readings; the ledger holds the exact
consumption of each of those hours, the fault log every injected fault and anomaly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from collector.payload import format_ts
from simulators.faults import NS, FaultLog
from simulators.gateway import Action, Gateway, GatewayLogic, Link, Send
from simulators.ledger import HOUR_NS, Ledger
from simulators.plant import SiteModel
from supplymeter.config import Config, SimulatorSettings, gateway_username
from supplymeter.files import write_json_atomic
from supplymeter.records import datetime_to_ns

Progress = Callable[[float, int], None]
"""Called now and then with (fraction of the range done, messages acknowledged)."""

SiteKey = tuple[str, str]


@dataclass(frozen=True)
class SimulationResult:
    messages: int
    """Reading messages the broker acknowledged (batches count once; duplicates twice)."""
    readings: int
    """Readings in those messages."""
    ledger: Ledger
    faults: FaultLog
    ledger_path: Path | None
    faults_path: Path | None
    wall_s: float
    end_ns: int = 0
    """Where the run ended: its ``end``, or the last whole hour before an interruption (the
    ledger covers the hours before it, the state file holds the registers at it)."""
    interrupted: bool = False
    continued_from_ns: int | None = None
    """The end of the earlier run whose registers this one continued, if any."""


STATE_VERSION = 1


def state_path_for(ledger_path: Path) -> Path:
    """Where a ledger's run state goes: ``ledger.csv`` → ``ledger-state.json``."""
    return ledger_path.with_name(f"{ledger_path.stem}-state.json")


@dataclass(frozen=True)
class RunState:
    """The registers every meter showed at the end of a run, so the next run on the same
    ledger continues them instead of starting the meters over (which the pipeline would see
    as register falls without a meter event)."""

    end_ns: int
    meters: dict[str, dict[str, float]]
    """``supplier/site/meter`` → ``register_milli``, ``export_milli``, ``production``,
    ``seq`` (the sequence number before the reading at ``end_ns``)."""

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: simulator state version {data.get('version')!r}, "
                             f"expected {STATE_VERSION}")  # fmt: skip
        return cls(int(data["end_ns"]), data["meters"])

    def save(self, path: Path) -> None:
        write_json_atomic(path, {"version": STATE_VERSION, "end_ns": self.end_ns,
                                 "end_utc": format_ts(self.end_ns),
                                 "meters": self.meters}, indent=1)  # fmt: skip


@dataclass
class Run:
    """A prepared simulation: sites, gateways, and the ground truth they fill."""

    sites: dict[SiteKey, SiteModel]
    gateways: dict[SiteKey, GatewayLogic]
    start_ns: int
    end_ns: int
    ledger: Ledger = field(default_factory=Ledger)
    faults: FaultLog = field(default_factory=FaultLog)
    marks: dict[SiteKey, dict[int, dict[str, dict[str, float]]]] = field(default_factory=dict)
    """Per site, its meters' registers at the last two whole hours it reached."""

    def mark(self, key: SiteKey, ts_ns: int) -> None:
        """Remember the site's registers at the whole hour ``ts_ns`` (its readings at
        ``ts_ns`` taken, the next interval not yet counted)."""
        marks = self.marks.setdefault(key, {})
        marks[ts_ns] = {
            "/".join(m.ref.key): {"register_milli": m.register_milli,
                                  "export_milli": m.export_milli,
                                  "production": m.production, "seq": m.seq - 1}
            for m in self.sites[key].meters
        }  # fmt: skip
        for old in sorted(marks)[:-2]:
            del marks[old]

    def checkpoint(self) -> RunState:
        """The latest whole hour every site has reached, and the registers there."""
        reached = [max(m) for m in self.marks.values() if m]
        if len(reached) < len(self.sites):
            return RunState(self.start_ns, {})
        hour = min(reached)
        meters: dict[str, dict[str, float]] = {}
        for marks in self.marks.values():
            meters.update(marks.get(hour, marks[max(marks)]))
        return RunState(hour, meters)


def check_range(start: datetime, end: datetime) -> tuple[int, int]:
    """``start``/``end`` as epoch ns; both timezone-aware, on hour boundaries, start < end."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a UTC offset, e.g. 2026-10-01T00:00:00+08:00")
    start_ns, end_ns = datetime_to_ns(start), datetime_to_ns(end)
    if start_ns % HOUR_NS or end_ns % HOUR_NS:
        raise ValueError("start and end must fall on whole hours")
    if start_ns >= end_ns:
        raise ValueError("start must be before end")
    return start_ns, end_ns


def prepare(
    config: Config, start_ns: int, end_ns: int, seed: int, batch: int = 1,
    settings: SimulatorSettings | None = None, resume: RunState | None = None,
) -> Run:  # fmt: skip
    """Build every site and gateway of the registry, with their faults planned; ``resume``
    sets the registers of the meters it knows (meters added since start at their
    ``initial_register``)."""
    settings = settings or config.simulator
    ledger, log = Ledger(), FaultLog()
    sites: dict[SiteKey, SiteModel] = {}
    gateways: dict[SiteKey, GatewayLogic] = {}
    refs = config.registry.meters()
    for supplier in config.registry.suppliers:
        for site in supplier.sites:
            key = (supplier.id, site.id)
            site_refs = [r for r in refs if r.key[:2] == key]
            model = SiteModel(supplier, site, site_refs, seed, ledger, log)
            model.plan_faults(settings.faults, start_ns, end_ns)
            for m in model.meters if resume else []:
                saved = resume.meters.get("/".join(m.ref.key)) if resume else None
                if saved:
                    m.register_milli = int(saved["register_milli"])
                    m.export_milli = int(saved["export_milli"])
                    m.production = float(saved["production"])
                    m.seq = int(saved["seq"])
            sites[key] = model
            gateways[key] = GatewayLogic(
                supplier.id, site.id, site.gateway, settings, seed, start_ns, end_ns, log, batch
            )
    return Run(sites, gateways, start_ns, end_ns, ledger, log)


def generate(run: Run) -> Iterator[tuple[SiteKey, Action]]:
    """Every gateway action of the run, in time order (sends of one instant in site order)."""
    step_s = math.gcd(*(s.step_s for s in run.sites.values()))
    for key, gw in run.gateways.items():
        for action in gw.start(run.start_ns):
            yield key, action
    for ts_ns in range(run.start_ns, run.end_ns + 1, step_s * NS):
        second = ts_ns // NS
        for key, site in run.sites.items():
            if second % site.step_s:
                continue
            readings = [r for _, r in site.readings(ts_ns, first=ts_ns == run.start_ns)]
            if ts_ns % HOUR_NS == 0:
                run.mark(key, ts_ns)
            for action in run.gateways[key].readings(ts_ns, readings):
                yield key, action
            if ts_ns < run.end_ns:
                site.advance(ts_ns)
    for key, gw in run.gateways.items():
        for action in gw.finish(run.end_ns):
            yield key, action


def simulate(
    config: Config,
    *,
    start: datetime,
    end: datetime,
    seed: int,
    speed: float | None = None,
    ledger_path: Path | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    gateway_passwords: Mapping[str, str] | None = None,
    batch: int | None = None,
    settings: SimulatorSettings | None = None,
    tick: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Simulate ``[start, end]`` for every meter in the registry and publish it over MQTT.

    ``batch`` readings per message (default: ``[simulator] backfill_batch`` in backfill, 1 in
    real time). ``clock`` and ``sleep`` pace real-time mode (injected by tests).
    ``gateway_passwords`` (user name → password, as ``supplymeter deploy mosquitto`` generates
    them) makes each gateway log in as itself; without it they connect anonymously. ``tick``
    is told the simulated time reached (epoch ns) after each message: the alert job judges
    simulated time through it (``simulate --alerts``). The ledger
    CSV goes to ``ledger_path``, the fault list beside it (``<stem>-faults.jsonl``).
    """
    start_ns, end_ns = check_range(start, end)
    if speed is not None and speed <= 0:
        raise ValueError("speed must be > 0")
    settings = settings or config.simulator
    if batch is None:
        batch = settings.backfill_batch if speed is None else 1
    resume = None
    if ledger_path is not None:
        resume = RunState.load(state_path_for(ledger_path))
        if resume is None and ledger_path.exists():
            ledger_path = numbered(ledger_path)
        elif resume is not None and start_ns < resume.end_ns:
            raise ValueError(
                f"{ledger_path} continues a run that ended at {format_ts(resume.end_ns)}: "
                f"start at or after it (registers only go forward), or give another --ledger "
                "for a separate run"
            )
    run = prepare(config, start_ns, end_ns, seed, batch, settings, resume)
    clients: dict[SiteKey, Gateway] = {}
    wall_start = clock()
    messages = readings = 0
    last_report = wall_start
    reached_ns = start_ns
    interrupted = False
    try:
        for supplier in config.registry.suppliers:
            for site in supplier.sites:
                user = gateway_username(supplier.id, site.id, site.gateway)
                gw = Gateway(
                    settings=config.mqtt,
                    secrets=config.secrets,
                    supplier=supplier.id,
                    site=site.id,
                    gateway=site.gateway,
                    password=(gateway_passwords or {}).get(user),
                )
                gw.connect(announce=False)
                clients[(supplier.id, site.id)] = gw
        for key, action in generate(run):
            if speed is not None:
                wait = wall_start + (action.due_ns - start_ns) / NS / speed - clock()
                if wait > 0:
                    sleep(wait)
            client = clients[key]
            reached_ns = max(reached_ns, action.due_ns)
            if isinstance(action, Link):
                client.link(action.up)
                continue
            assert isinstance(action, Send)
            client.publish(action.topic, action.payload, action.retain)
            if action.readings:
                messages += 1
                readings += action.readings
            if tick is not None:
                tick(reached_ns)
            now = clock()
            if progress and now - last_report >= 2.0:
                progress((action.due_ns - start_ns) / (end_ns - start_ns), messages)
                last_report = now
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # The offline status carries when the gateway really stopped: the simulated time
        # reached, never later than now (a status from the future is refused).
        stopped_ns = min(reached_ns, time.time_ns())
        for gw in clients.values():
            gw.close(stopped_ns)
    # A run that finished marked every site at ``end`` (a whole hour): its checkpoint is there.
    checkpoint = run.checkpoint()
    if not interrupted and progress:
        progress(1.0, messages)
    run.ledger.truncate(checkpoint.end_ns)
    faults_path = None
    if ledger_path is not None:
        run.ledger.write_csv(ledger_path, append=resume is not None)
        faults_path = faults_path_for(ledger_path)
        run.faults.write_jsonl(faults_path, append=resume is not None, before_ns=checkpoint.end_ns)
        if checkpoint.meters or resume is None:
            carried = dict(resume.meters) if resume else {}
            carried.update(checkpoint.meters)
            RunState(checkpoint.end_ns, carried).save(state_path_for(ledger_path))
    return SimulationResult(
        messages, readings, run.ledger, run.faults, ledger_path, faults_path,
        clock() - wall_start, checkpoint.end_ns, interrupted,
        resume.end_ns if resume else None,
    )  # fmt: skip


def numbered(path: Path) -> Path:
    """``ledger.csv`` → the first free ``ledger-2.csv``, ``ledger-3.csv``... (a ledger
    without a state file is never overwritten)."""
    n = 2
    while (candidate := path.with_name(f"{path.stem}-{n}{path.suffix}")).exists():
        n += 1
    return candidate


def faults_path_for(ledger_path: Path) -> Path:
    """Where the fault list of a ledger goes: ``ledger.csv`` → ``ledger-faults.jsonl``."""
    return ledger_path.with_name(f"{ledger_path.stem}-faults.jsonl")
