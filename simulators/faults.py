"""Fault plans: when each gateway and meter misbehaves, drawn from seeded generators.

Every fault the simulator injects becomes an :class:`Event` in the ground truth (JSONL beside
the ledger), so tests and the alert benchmark can score what the pipeline made of it. Rates are
expected counts per unit of *normal* operation: windows of one kind never overlap on one
entity, so the next one starts an exponential wait after the previous one ended.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collector.payload import format_ts

NS = 10**9
DAY_S = 86_400


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int
    value: float = 0.0
    """Size of the fault where it has one (spike/step: extra load in %)."""

    def covers(self, ts_ns: int) -> bool:
        return self.start_ns <= ts_ns < self.end_ns

    def overlap_s(self, t0_ns: int, t1_ns: int) -> float:
        return max(0, min(self.end_ns, t1_ns) - max(self.start_ns, t0_ns)) / NS


def windows(
    rng: random.Random,
    start_ns: int,
    end_ns: int,
    per_s: float,
    length_s: tuple[float, float],
    value: tuple[float, float] = (0.0, 0.0),
) -> list[Window]:
    """Non-overlapping windows starting at rate ``per_s`` (per second of normal operation)."""
    out: list[Window] = []
    if per_s <= 0:
        return out
    t = start_ns
    while True:
        t += round(rng.expovariate(per_s) * NS)
        if t >= end_ns:
            return out
        end = min(end_ns, t + round(rng.uniform(*length_s) * NS))
        out.append(Window(t, end, round(rng.uniform(*value), 1)))
        t = end


@dataclass(frozen=True)
class Event:
    """One fault or anomaly, as the ground truth records it."""

    type: str
    supplier: str
    site: str
    start: str
    """RFC 3339 UTC: true time, not the (possibly skewed) gateway's."""
    meter: str | None = None
    gateway: str | None = None
    end: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class FaultLog:
    """The fault/anomaly list of one run."""

    events: list[tuple[int, Event]] = field(default_factory=list)

    def add(self, ts_ns: int, event: Event) -> None:
        self.events.append((ts_ns, event))

    def of_type(self, kind: str) -> list[Event]:
        return [e for _, e in sorted(self.events, key=_order) if e.type == kind]

    def write_jsonl(self, path: Path, append: bool = False, before_ns: int | None = None) -> None:
        """One JSON object per fault; ``append`` to the log of the run this one continues;
        only faults starting before ``before_ns`` (an interrupted run)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w") as fh:
            for ts, event in sorted(self.events, key=_order):
                if before_ns is not None and ts >= before_ns:
                    continue
                row = {k: v for k, v in asdict(event).items() if v not in (None, {})}
                fh.write(json.dumps(row, sort_keys=True) + "\n")


def _order(item: tuple[int, Event]) -> tuple[int, str, str, str, str]:
    ts, e = item
    return (ts, e.type, e.site, e.meter or "", e.gateway or "")


def read_faults(path: Path) -> list[dict[str, Any]]:
    """A fault JSONL file back as dicts."""
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def window_event(
    kind: str, w: Window, supplier: str, site: str, meter: str | None = None,
    gateway: str | None = None, **details: Any,
) -> Event:  # fmt: skip
    return Event(
        type=kind,
        supplier=supplier,
        site=site,
        meter=meter,
        gateway=gateway,
        start=format_ts(w.start_ns),
        end=format_ts(w.end_ns),
        details=details,
    )
