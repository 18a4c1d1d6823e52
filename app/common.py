"""What the command line and the demo share: output, clients on the configured services,
the export summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from supplymeter.config import Config

if TYPE_CHECKING:
    from processing.accounting.export import ExportResult
    from processing.emissions import FactorLibrary
    from supplymeter.influx import InfluxClient
    from supplymeter.store import Store

DEFAULT_TZ = "Asia/Taipei"

QUIET = False
"""``--quiet``: the one-line summaries are not printed (warnings still are, by logging)."""


def say(text: str) -> None:
    """A line for the operator on standard output (not with ``--quiet``)."""
    if not QUIET:
        print(text, flush=True)


# --- commands ---------------------------------------------------------------------------


def factors(config: Config) -> FactorLibrary:
    from processing.emissions import FactorLibrary

    return FactorLibrary.for_config(config)


def open_influx(config: Config, retries: int | None = None) -> InfluxClient:
    from supplymeter.influx import InfluxClient

    client = InfluxClient.from_settings(config.influxdb, config.secrets)
    if retries is not None:  # a status screen must not wait out the service's retries
        client.retries = retries
    if config.influxdb.create_database:
        client.ensure_database()
    return client


def open_store(config: Config, retries: int | None = None) -> Store:
    from supplymeter.store import Store

    return Store(open_influx(config, retries))


class Progress:
    """Progress of long work: a bar (tqdm) on a terminal, otherwise a plain line at most every
    ``every_s`` seconds (logs and CI stay readable); nothing with ``--quiet``. Call it with
    (done, total, note); ``close()`` ends the bar. A context manager."""

    def __init__(self, label: str, unit: str = "", every_s: float = 10.0) -> None:
        self.label, self.unit, self.every_s = label, unit, every_s
        self._bar: Any = None
        self._last = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, done: float, total: float, note: str = "") -> None:
        if QUIET:
            return
        if sys.stderr.isatty():
            if self._bar is None:
                from tqdm import tqdm

                # No rate: it would read "119837.26chunks/s" while a step's time says more.
                self._bar = tqdm(total=total, desc=f"  {self.label}", unit=f" {self.unit}",
                                 leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                 "{n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}]"
                                 "{postfix}")  # fmt: skip
            self._bar.total = total
            self._bar.n = done
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last >= self.every_s or done >= total:
            self._last = now
            share = done / total if total else 1.0
            say(f"  {self.label}: {share:6.1%}" + (f"  {note}" if note else ""))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress(label: str) -> Callable[[float, int], None]:
    """The simulator's progress (fraction of simulated time, messages acknowledged)."""
    bar = Progress(label, every_s=2.0)

    def report(fraction: float, messages: int) -> None:
        bar(round(fraction * 1000), 1000, f"{messages:,} messages acknowledged")
        if fraction >= 1.0:
            bar.close()

    return report


def print_summary(result: ExportResult) -> None:
    from supplymeter.carriers import CARRIERS

    carriers = [c for c in CARRIERS.values() if any(c.name in s.consumption
                                                     for s in result.suppliers)]  # fmt: skip
    heads = [f"{c.name.replace('_', ' ')} {c.unit}" for c in carriers]
    widths = [max(len(h), 13) for h in heads]
    say(f"\nScope 3 (GHG Protocol cat. 1), {result.month}:")
    say(
        f"  {'supplier':<10} "
        + " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
        + f" {'location kg':>13} {'market kg':>13} {'share':>6} {'buyer kg':>13} "
        f"{'complete':>9} {'primary':>8}"
    )
    for s in result.suppliers:
        flag = " (provisional factor)" if s.provisional else ""
        missing = (
            f" [no factor yet: {', '.join(s.carriers_without_factor)}]"
            if s.carriers_without_factor
            else ""
        )
        share = s.allocation.share if s.allocation else s.supplier.allocation.share
        amounts = " ".join(
            f"{s.consumption[c.name]:>{w},.3f}" if c.name in s.consumption else f"{'—':>{w}}"
            for c, w in zip(carriers, widths, strict=True)
        )
        say(
            f"  {s.supplier.id:<10} {amounts} "
            f"{s.emissions_kgco2e:>13,.3f} {s.market_kgco2e or 0.0:>13,.3f} {share:>6.2f} "
            f"{s.allocated_kgco2e:>13,.3f} {s.completeness:>9.1%} "
            f"{s.primary_data_share:>8.1%}{flag}{missing}"
        )
    if result.written:
        restated = f" (restates v{result.version - 1})" if result.version > 1 else ""
        say(f"  wrote version {result.version}{restated}: {result.directory}")
        if result.diff_path:
            say(f"  changes: {result.diff_path}")
        for why in result.reasons:
            say(f"  why: {why}")
    else:
        say(f"  unchanged since version {result.version}: {result.directory} (nothing written)")
