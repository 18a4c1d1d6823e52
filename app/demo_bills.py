"""Simulated utility bills for the demo: what the utility would bill over a billing period
(application layer: it joins the simulator's ledger with the reconciliation's meter choice).

Real bills come from the suppliers (``[jobs] bills_file``). The demo has none, so it writes
bills from the simulator's ground truth over billing periods that do not follow calendar
months (a Taipower period 18 Sep – 17 Oct), each off by the small difference a utility's
meter shows against the site's own (a seeded normal draw, ``spread_pct``), rounded to whole
units as bills are. Every bill id starts ``SIM-`` so a simulated bill is never mistaken for
a real one.
"""

from __future__ import annotations

import csv
import dataclasses
import random
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from processing.accounting.inputs import BILL_COLUMNS
from processing.accounting.reconcile import billed_meters
from processing.accounting.scope3 import Month
from simulators.ledger import Ledger
from supplymeter.carriers import CARRIERS
from supplymeter.config import Config
from supplymeter.records import datetime_to_ns


def billing_periods(month: Month) -> dict[str, tuple[date, date]]:
    """The demo's billing periods ending in ``month`` (end exclusive): electricity the 18th of
    the month before to the 17th (Taipower reads meters on a fixed day), gas the 22nd to the
    21st."""
    before = month.previous()
    return {
        "electricity": (date(before.year, before.month, 18), date(month.year, month.month, 18)),
        "natural_gas": (date(before.year, before.month, 22), date(month.year, month.month, 22)),
    }


def with_bills(config: Config, path: Path) -> Config:
    """``config`` reconciling the bills in ``path``."""
    jobs = config.services.jobs.model_copy(update={"bills_file": path})
    return dataclasses.replace(config, services=config.services.model_copy(update={"jobs": jobs}))


def write_bills(
    config: Config, ledger: Ledger, periods: dict[str, tuple[date, date]], path: Path,
    seed: int = 0, spread_pct: float = 0.3,
) -> int:  # fmt: skip
    """Write one bill per site and carrier in ``periods`` (carrier → [start, end) local dates)
    to ``path`` (columns of
    :data:`processing.accounting.reconcile.BILL_COLUMNS`); returns the count."""
    rng = random.Random(seed)
    truth = ledger.metered()
    rows = []
    for supplier in config.registry.suppliers:
        for site in supplier.sites:
            tz = ZoneInfo(site.timezone)
            for carrier, (first, end) in periods.items():
                meters = billed_meters(site, carrier)
                if not meters:
                    continue
                lo = datetime_to_ns(datetime.combine(first, datetime.min.time(), tz))
                hi = datetime_to_ns(datetime.combine(end, datetime.min.time(), tz))
                metered = sum(float(v) for m in meters
                              for h, v in truth.get((supplier.id, site.id, m.id), {}).items()
                              if lo <= h < hi)  # fmt: skip
                billed = round(metered * (1 + rng.gauss(0.0, spread_pct / 100)))
                account = f"{'TPC' if carrier == 'electricity' else 'GAS'}-{site.id}"
                rows.append([supplier.id, site.id, carrier, account, first.isoformat(),
                             end.isoformat(), str(billed), CARRIERS[carrier].unit,
                             f"SIM-{supplier.id}-{site.id}-{carrier}-{end:%Y%m}"])  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(BILL_COLUMNS)
        writer.writerows(rows)
    return len(rows)
