"""Benchmark: the collector with one MQTT session per supplier against one session for all
(``collector.session_per_supplier``), side by side on one stack.

The registry's four suppliers' electricity meters publish round-robin; each contender drains
the same backlog (queued while it was away) of single-reading messages and of 100-reading
batches, alternating, ``BENCH_ROUNDS`` times (default 3); medians are printed with the
readings stored (all of them, or the line says not). The per-supplier sessions are there for
isolation (docs/security.md); this shows what they cost in throughput — the ceiling is "no
worse than 10 % below one session".

``python bench/bench_sessions.py`` (part of ``make bench``).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_collector import drain, line, payloads

from deploy.stack import LocalStack

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "50000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CEILING = 0.90
"""Per-supplier sessions must drain at least this share of one session's rate."""


def main() -> None:
    print(f"collector sessions: per supplier vs one for all ({MESSAGES:,} messages, {ROUNDS} "
          "rounds, MQTT 5, 1 process, 4 suppliers)", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as name, LocalStack.on_free_ports(Path(name)) as stack:
        tmp = Path(name)
        kinds = {
            "single-reading messages": (payloads(MESSAGES, 1, 0), MESSAGES),
            "100-reading batches": (payloads(MESSAGES // 20, 100, 0), MESSAGES * 5),
        }
        only = os.environ.get("BENCH_KIND")
        kinds = {k: v for k, v in kinds.items() if not only or k.startswith(only)}
        for kind, (messages, readings) in kinds.items():
            rates: dict[bool, list[float]] = {True: [], False: []}
            lost = []
            for k in range(ROUNDS):
                for per_supplier in (True, False):
                    database = f"sess_{int(per_supplier)}_{k}_{len(messages)}"
                    extra = f"session_per_supplier = {str(per_supplier).lower()}"
                    rate, _, stored = drain(tmp, stack, database, "5", messages,
                                            collector_toml=extra)  # fmt: skip
                    rates[per_supplier].append(rate * readings / len(messages))
                    if stored != readings:
                        lost.append(f"{database}: {stored}/{readings}")
            per, one = statistics.median(rates[True]), statistics.median(rates[False])
            line(f"{kind}: one session for all (median)", f"{one:,.0f} readings/s")
            line(f"{kind}: a session per supplier (median)", f"{per:,.0f} readings/s",
                 f"{per / one:.0%} of one session, ceiling >= {CEILING:.0%}: "
                 f"{'OK' if per >= CEILING * one else 'NOT MET'}; "
                 f"{'all stored' if not lost else 'LOST ' + ', '.join(lost)}")  # fmt: skip


if __name__ == "__main__":
    main()
