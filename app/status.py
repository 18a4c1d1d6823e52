"""``supplymeter status``: one screen an operator on call reads first.

A summary that fits an 80×24 terminal — the local stack, the collector's health and backlog,
the last run of each job, gateways down, open incidents, what the sites were told over the
last week, months waiting for their first export or a restatement, data-quality issues — with
every detail behind ``-v``. One time convention: the jobs' timezone, named once in the
heading. Each section says what it could not find out instead of failing.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter
from zoneinfo import ZoneInfo

from app.common import open_store, say
from supplymeter.config import Config
from supplymeter.errors import SupplymeterError
from supplymeter.records import ns_to_datetime

DAY_NS = 86_400 * 10**9
WIDTH = 80
SHOWN = 3
"""Items listed per section in the summary (all of them with ``-v``)."""


def _ago(ts_ns: int, now_ns: int) -> str:
    seconds = max(0, (now_ns - ts_ns) // 10**9)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86_400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} days ago"


def _local(ts_ns: int, tz: str, now_ns: int) -> str:
    """``15:23`` today, ``12-04 15:23`` this year, else the full date (in ``tz``)."""
    at, now = (ns_to_datetime(t).astimezone(ZoneInfo(tz)) for t in (ts_ns, now_ns))
    if at.date() == now.date():
        return f"{at:%H:%M}"
    return f"{at:%m-%d %H:%M}" if at.year == now.year else f"{at:%Y-%m-%d %H:%M}"


def collector_health(config: Config) -> str:
    """The collector's ``/healthz`` answer, or why it could not be asked."""
    c = config.collector
    if not c.metrics_port:
        return "health endpoint off ([collector] metrics_port = 0)"
    url = f"http://{c.metrics_host}:{c.metrics_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3):
            return f"healthy ({url})"
    except urllib.error.HTTPError as exc:
        return f"UNHEALTHY ({url}): {exc.read().decode('utf-8', 'replace')[:300].strip()}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"not answering at {url} ({getattr(reason, 'strerror', None) or reason})"


class Screen:
    """Lines of the status screen: sections of ``name  text``, with indented items that
    only ``-v`` shows beyond :data:`SHOWN`; every line cut to :data:`WIDTH`."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text if len(text) <= WIDTH else text[: WIDTH - 1] + "…")

    def section(self, name: str, text: str) -> None:
        self.line(f"{name:<11}{text}")

    def items(self, items: list[str]) -> None:
        shown = items if self.verbose else items[:SHOWN]
        for item in shown:
            self.line(f"  {item}")
        if len(items) > len(shown):
            self.line(f"  … {len(items) - len(shown)} more (supplymeter status -v)")


def cmd_status(config: Config, now_ns: int | None = None, verbose: bool = False) -> int:
    """Print the status screen; 1 when something needs the operator, else 0."""
    from deploy.stack import stack_from_config
    from processing.accounting.versions import versions
    from processing.alerts import IncidentBook
    from processing.jobs import JOB_NAMES, JobState

    now = now_ns or time.time_ns()
    tz = config.jobs.timezone
    screen = Screen(verbose)
    attention = False
    zone = ns_to_datetime(now).astimezone(ZoneInfo(tz))
    screen.line(f"supplymeter status {zone:%Y-%m-%d %H:%M} {zone:%Z} (UTC{zone:%z}, {tz}; "
                "all times)")  # fmt: skip
    stored, unreachable = None, ""
    try:
        with open_store(config, retries=0) as store:
            stored = (store.collector_stats(now - DAY_NS, now + 1), store.gateway_states(now),
                      store.quality_issues(now - 31 * DAY_NS, now + 1),
                      store.alert_openings(now - 7 * DAY_NS, now + 1))  # fmt: skip
    except SupplymeterError as exc:
        unreachable = getattr(exc, "reason", "") or str(exc)
    stack = stack_from_config(config).status()
    screen.section("stack", " · ".join(
        f"{s.name} {'up' if s.pid and s.answering else 'DOWN'} :{s.port}" for s in stack)
        + " (local [stack])")  # fmt: skip
    health = collector_health(config)
    attention |= health.startswith(("UNHEALTHY", "not answering"))
    screen.section("collector", health)
    if stored is not None:
        stats = stored[0]
        if not stats:
            screen.line("  no collector stats in the last 24 h (is a collector running?)")
            attention = True
        attention |= not all(values.get("healthy") for _, values in stats.values())
        screen.items([
            f"{name}: {_ago(ts, now)}, backlog {values.get('backlog_lines', 0):,.0f} lines, "
            f"ack lag {values.get('ack_lag_s', 0.0):.1f} s, "
            f"{values.get('messages', 0):,.0f} messages, "
            f"{'healthy' if values.get('healthy') else 'UNHEALTHY'}"
            for name, (ts, values) in sorted(stats.items())
        ])  # fmt: skip
    state = JobState.load(config.resolve(config.jobs.export_dir) / "jobs-state.json")
    runs = []
    for name in JOB_NAMES:
        last = state.last_success_ns.get(name)
        runs.append(f"{name} {_local(last, tz, now) if last else 'never'}")
    screen.section("jobs", " · ".join(runs))
    book = IncidentBook.load(config.resolve(config.alerts.state_dir) / "incidents.json")
    incidents = sorted(book.open.values(), key=lambda i: i.opened_ns, reverse=True)
    if stored is not None:
        silent = {(i.supplier, i.site): i.opened_ns for i in incidents
                  if i.type == "gateway_silent"}  # fmt: skip
        attention |= _gateways(screen, stored[1], silent, tz, now)
    kinds = Counter(i.type for i in incidents)
    screen.section("incidents", f"{len(incidents)} open" + (
        f" ({', '.join(f'{n} {k}' for k, n in kinds.most_common())}), newest first"
        if incidents else ""))  # fmt: skip
    attention |= bool(incidents)
    screen.items([
        f"{i.type} {'/'.join(x for x in (i.supplier, i.site, i.subject) if x)} since "
        f"{_local(i.opened_ns, tz, now)}: {i.detail}" for i in incidents
    ])  # fmt: skip
    if stored is not None:
        _messages(screen, stored[3], config)
    exported = config.resolve(config.jobs.export_dir)
    first = sorted(m for m in state.pending if not versions(exported / m))
    restate = sorted(m for m in state.pending if m not in first)
    attention |= bool(restate)
    screen.section("months", f"{len(restate)} to restate" + (f": {', '.join(restate)}"
                   if restate else "") + (f" · first export due: {', '.join(first)}"
                   if first else ""))  # fmt: skip
    screen.items([f"{m}: {'; '.join(state.pending[m])}" for m in restate])
    if stored is not None:
        issues = stored[2]
        codes = Counter(code for code, _, _, _ in issues)
        screen.section("quality", f"{len(issues)} issues in 31 days" + (
            f" ({', '.join(f'{n} {c}' for c, n in codes.most_common())}), newest first"
            if issues else ""))  # fmt: skip
        attention |= bool(issues)
        screen.items([f"{code} {'/'.join(key)} at {_local(ts, tz, now)}: {detail}"
                      for code, key, ts, detail in reversed(issues)])  # fmt: skip
    else:
        screen.section("InfluxDB", f"UNREACHABLE at {config.influxdb.url}: {unreachable}")
        attention = True
    for line in screen.lines:
        say(line)
    return 1 if attention else 0


def _messages(
    screen: Screen, openings: list[tuple[int, str, str, str, str, bool | None, str]],
    config: Config,
) -> None:  # fmt: skip
    """What the sites were told over the last 7 days, every kind of alert together (the alert
    issue's one budget): emails (spikes on several meters of a site are one), how many the
    budget sent to the digest, incidents opened per consumption meter and week, and the
    busiest site-day (local days in the jobs' timezone); with ``-v`` each kind and site-day."""
    tz = ZoneInfo(config.jobs.timezone)
    meters = sum(1 for ref in config.registry.meters() if ref.meter.role == "consumption")
    messages: dict[str, tuple[bool, str]] = {}
    for at, _kind, supplier, site, _subject, emailed, message in openings:
        day = f"{ns_to_datetime(at).astimezone(tz):%m-%d}"
        where = "/".join(x for x in (supplier, site) if x)  # a supplier's own: no site
        messages.setdefault(message, (emailed is not False, f"{where} {day}"))
    digest = sum(1 for mail, _ in messages.values() if not mail)
    site_days = Counter(where for _, where in messages.values())
    text = f"{len(messages)} in 7 days" + (f", {digest} to digest" if digest else "")
    if meters:
        text += f" · {len(openings) / meters:.2f}/meter-week"
    if site_days:
        text += f" · max {site_days.most_common(1)[0][1]}/site-day"
    screen.section("messages", text)
    if screen.verbose and openings:
        kinds = Counter(kind for _, kind, *_ in openings)
        screen.items([f"{len(openings)} incidents opened over {meters} consumption meters: "
                      + ", ".join(f"{n} {k}" for k, n in kinds.most_common())]
                     + [f"{where}: {n}" for where, n in site_days.most_common()])  # fmt: skip


def _gateways(screen: Screen, states: list[tuple[str, str, str, int]],
              silent: dict[tuple[str, str], int], tz: str, now: int) -> bool:  # fmt: skip
    """Gateways down: a last status other than online, or an open ``gateway_silent``
    incident (so the count agrees with the incidents below it). True when any is down."""
    down: dict[tuple[str, str], str] = {}
    for supplier, site, state, ts in states:
        if state != "online":
            down[(supplier, site)] = f"{supplier}/{site} {state} since {_local(ts, tz, now)}"
    for (supplier, site), ts in silent.items():
        if (supplier, site) not in down:
            down[(supplier, site)] = (f"{supplier}/{site} silent since "
                                      f"{_local(ts, tz, now)}")  # fmt: skip
    known = len({(s, site) for s, site, _, _ in states} | set(silent))
    screen.section("gateways", f"{len(down)} of {known} down" if known else
                   "none has reported a status yet")  # fmt: skip
    screen.items(sorted(down.values()))
    return bool(down)
