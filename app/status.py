"""``supplymeter status``: one screen an operator on call reads first.

The local stack, the collector's health and backlog, the last run of each job, gateways
offline, open incidents, months waiting to be restated and data-quality issues to act on —
each section says what it could not find out instead of failing.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import datetime

from app.common import open_store, say
from supplymeter.config import Config
from supplymeter.errors import SupplymeterError
from supplymeter.records import ns_to_datetime

DAY_NS = 86_400 * 10**9


def _ago(ts_ns: int, now_ns: int) -> str:
    seconds = max(0, (now_ns - ts_ns) // 10**9)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86_400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} days ago"


def _local(ts_ns: int, tz: str) -> str:
    from zoneinfo import ZoneInfo

    return f"{ns_to_datetime(ts_ns).astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M}"


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
        return f"not answering at {url} ({getattr(exc, 'reason', exc)})"


def cmd_status(config: Config, now_ns: int | None = None) -> int:
    """Print the status screen; 1 when something needs the operator, else 0."""
    from deploy.stack import stack_from_config
    from processing.alerts import IncidentBook
    from processing.jobs import JOB_NAMES, JobState

    now = now_ns or time.time_ns()
    tz = config.jobs.timezone
    attention = False
    say(f"supplymeter status, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    say("stack (local, [stack]):")
    for line in stack_from_config(config).status():
        say(f"  {line}")
    health = collector_health(config)
    attention |= health.startswith(("UNHEALTHY", "not answering"))
    say(f"collector: {health}")
    state = JobState.load(config.resolve(config.jobs.export_dir) / "jobs-state.json")
    say("jobs (last success):")
    for name in JOB_NAMES:
        last = state.last_success_ns.get(name)
        say(f"  {name:<11} " + (f"{_local(last, tz)} ({_ago(last, now)})" if last else "never"))
    if state.pending:
        attention = True
        say("months waiting to be restated by the export job:")
        for month, reasons in sorted(state.pending.items()):
            say(f"  {month}: {'; '.join(reasons)[:200]}")
    else:
        say("months waiting to be restated: none")
    book = IncidentBook.load(config.resolve(config.alerts.state_dir) / "incidents.json")
    say(f"open incidents: {len(book.open) or 'none'}")
    for incident in sorted(book.open.values(), key=lambda i: i.opened_ns):
        attention = True
        where = "/".join(x for x in (incident.supplier, incident.site, incident.subject) if x)
        say(f"  {incident.type:<10} {where} since {_local(incident.opened_ns, tz)}: "
            f"{incident.detail[:120]}")  # fmt: skip
    try:
        with open_store(config, retries=0) as store:
            attention |= _from_influxdb(store, now, tz)
    except SupplymeterError as exc:
        say(f"InfluxDB: unreachable ({exc})")
        return 1
    return 1 if attention else 0


def _from_influxdb(store, now: int, tz: str) -> bool:  # type: ignore[no-untyped-def]
    attention = False
    stats = store.collector_stats(now - DAY_NS, now + 1)
    if not stats:
        say("collector stats: none in the last 24 h (is a collector running?)")
        attention = True
    for name, (ts, values) in sorted(stats.items()):
        say(f"  {name}: {_ago(ts, now)}: backlog {values.get('backlog_lines', 0):,.0f} lines, "
            f"ack lag {values.get('ack_lag_s', 0.0):.1f} s, "
            f"{values.get('messages', 0):,.0f} messages, "
            f"{'healthy' if values.get('healthy') else 'UNHEALTHY'}")  # fmt: skip
        attention |= not values.get("healthy")
    offline = [(s, site, ts) for s, site, state, ts in store.gateway_states(now)
               if state != "online"]  # fmt: skip
    say(f"gateways offline: {len(offline) or 'none'}")
    for supplier, site, ts in offline:
        attention = True
        say(f"  {supplier}/{site} since {_local(ts, tz)} ({_ago(ts, now)})")
    issues = store.quality_issues(now - 31 * DAY_NS, now + 1)
    say(f"data-quality issues, last 31 days: {len(issues) or 'none'}")
    for code, key, ts, detail in issues[-10:]:
        attention = True
        say(f"  {code} {'/'.join(key)} at {_local(ts, tz)}: {detail[:100]}")
    return attention
