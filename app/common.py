"""What the command line and the demo share: output, clients on the configured services,
the export summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from supplymeter.config import Config

if TYPE_CHECKING:
    from processing.emissions import FactorLibrary
    from processing.export import ExportResult
    from supplymeter.influx import InfluxClient
    from supplymeter.store import Store

DEFAULT_TZ = "Asia/Taipei"


def say(text: str) -> None:
    print(text, flush=True)


# --- commands ---------------------------------------------------------------------------


def factors(config: Config) -> FactorLibrary:
    from processing.emissions import FactorLibrary

    return FactorLibrary.for_config(config)


def open_influx(config: Config) -> InfluxClient:
    from supplymeter.influx import InfluxClient

    client = InfluxClient.from_settings(config.influxdb, config.secrets)
    if config.influxdb.create_database:
        client.ensure_database()
    return client


def open_store(config: Config) -> Store:
    from supplymeter.store import Store

    return Store(open_influx(config))


def progress(label: str) -> Callable[[float, int], None]:
    def report(fraction: float, messages: int) -> None:
        say(f"  {label}: {fraction:6.1%}  {messages:,} messages acknowledged")

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
