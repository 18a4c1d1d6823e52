"""Grafana's query macros, substituted the way Grafana does for InfluxQL, so the tests and the
PNG renderer run exactly the queries a dashboard sends.

``$timeFilter`` → ``time >= <from>ms and time <= <to>ms``; ``$__interval`` → the interval;
``$var`` → the variable's value, and inside a regex ``/^$var$/`` a ``(a|b)`` alternation of the
regex-escaped values (``.*`` for All). Panel ``timeFrom`` (``now/d``, ``now/M``, ``7d``) and
``timeShift`` (``1y``, ``7d``) move the range as Grafana's relative-time overrides do.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from supplymeter.calendar import add_years
from supplymeter.records import datetime_to_ns, ns_to_datetime

_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "M": 30 * 86_400, "y": 365 * 86_400}


def span_s(text: str) -> int:
    """Seconds of a Grafana relative span (``7d``, ``13M``: a month counted as 30 days)."""
    match = re.fullmatch(r"(\d+)([mhdwMy])", text)
    if not match:
        raise ValueError(f"unsupported relative time {text!r}")
    return int(match[1]) * _UNITS[match[2]]


def panel_range(panel: dict[str, Any], start_ns: int, end_ns: int, tz: str) -> tuple[int, int]:
    """The range a panel queries, given the dashboard's, after timeFrom/timeShift."""
    time_from = panel.get("timeFrom")
    if time_from:
        local = ns_to_datetime(end_ns - 1).astimezone(ZoneInfo(tz))  # "now" is inside
        if time_from == "now/d":
            start_ns = datetime_to_ns(local.replace(hour=0, minute=0, second=0, microsecond=0))
        elif time_from == "now/M":
            first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            start_ns = datetime_to_ns(first)
        else:
            start_ns = end_ns - span_s(time_from) * 10**9
    shift = panel.get("timeShift")
    if shift:
        if shift.endswith("y"):  # calendar years, as Grafana does
            years = int(shift[:-1])

            def back(ts: int) -> int:
                local = ns_to_datetime(ts).astimezone(ZoneInfo(tz))
                return datetime_to_ns(add_years(local, -years))

            start_ns, end_ns = back(start_ns), back(end_ns)
        else:
            delta = span_s(shift) * 10**9
            start_ns, end_ns = start_ns - delta, end_ns - delta
    return start_ns, end_ns


def substitute(
    query: str, start_ns: int, end_ns: int, interval: str = "1h",
    variables: dict[str, list[str]] | None = None,
) -> str:  # fmt: skip
    """The query as Grafana would send it. ``variables`` values ``["$__all"]`` mean All."""
    out = query.replace(
        "$timeFilter", f"time >= {start_ns // 10**6}ms and time <= {end_ns // 10**6}ms"
    )
    out = out.replace("$__interval", interval)
    for name, values in (variables or {}).items():
        escaped = "|".join(re.escape(v) for v in values)
        regex = ".*" if values == ["$__all"] else f"({escaped})"
        out = out.replace(f"/^${name}$/", f"/^{regex}$/")
        out = out.replace(f"${name}", values[0] if values and values != ["$__all"] else "")
    return out


def local_bounds(month: str, tz: str) -> tuple[int, int]:
    """Epoch-ns bounds of ``YYYY-MM`` in ``tz``."""
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=ZoneInfo(tz))
    end = (start + timedelta(days=32)).replace(day=1)
    return datetime_to_ns(start), datetime_to_ns(end)
