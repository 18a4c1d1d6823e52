"""Metered energy reconciled to the utility's bills: the auditor's first test.

A supplier's monthly bills (electricity per Taipower account and billing period, gas m³ per
gas utility account) come as a CSV (``[jobs] bills_file``). Billing periods do not follow
calendar months — a Taipower period may run 2026-09-18 to 2026-10-17 — so each bill is
compared with what the meters measured over **its own period**, never over a calendar month:

* the period is ``period_start`` 00:00 to ``period_end`` 00:00 in the site's timezone (end
  exclusive: a bill "18 Sep – 17 Oct" is written ``2026-09-18,2026-10-18``);
* metered = the site's grid meter (``role = "grid"``: what the utility's own meter sees) for
  electricity where the site has one, else the sum of its consumption meters of the carrier;
* difference = metered − billed, and its share of billed; above ``[jobs]
  reconcile_threshold_pct`` (default 2%) the row is flagged for the auditor, with the hours
  of the period that had no data at all (a gap makes metered fall short).

An export lists the bills whose period ends in its month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from supplymeter.carriers import CARRIERS
from supplymeter.config import Meter, Site
from supplymeter.records import datetime_to_ns


@dataclass(frozen=True)
class Bill:
    """One utility bill: ``billed`` in the carrier's unit over [period_start, period_end)."""

    supplier: str
    site: str
    carrier: str
    account: str
    period_start: date
    period_end: date
    billed: float
    bill_id: str
    source: str
    """``FILE:LINE`` of the bill's row."""

    def bounds(self, tz: object) -> tuple[int, int]:
        """The period as UTC epoch ns in the site's timezone ``tz``. [ns]"""
        start = datetime(self.period_start.year, self.period_start.month,
                         self.period_start.day, tzinfo=tz)  # type: ignore[arg-type]  # fmt: skip
        end = datetime(self.period_end.year, self.period_end.month, self.period_end.day,
                       tzinfo=tz)  # type: ignore[arg-type]  # fmt: skip
        return datetime_to_ns(start), datetime_to_ns(end)


@dataclass(frozen=True)
class Reconciliation:
    """One bill against the meters over its billing period."""

    bill: Bill
    metered: float
    """[the carrier's unit]"""
    meters: tuple[str, ...]
    """The meters summed (the grid meter, or the consumption meters)."""
    hours_without_data: int
    threshold_pct: float

    @property
    def difference(self) -> float:
        """metered − billed. [unit]"""
        return self.metered - self.bill.billed

    @property
    def difference_pct(self) -> float | None:
        """The difference as a share of billed, in %; ``None`` for a zero bill."""
        return 100 * self.difference / self.bill.billed if self.bill.billed else None

    @property
    def flagged(self) -> bool:
        """Beyond the threshold (or anything metered against a zero bill)."""
        pct = self.difference_pct
        return abs(pct) > self.threshold_pct if pct is not None else self.metered > 0


def billed_meters(site: Site, carrier: str) -> list[Meter]:
    """What a bill of ``carrier`` is compared with: the site's grid meter (what the utility's
    own meter sees) where it has one for the carrier, else its consumption meters."""
    of_carrier = [m for m in site.meters if m.carrier == carrier]
    return [m for m in of_carrier if m.role == "grid"] or [
        m for m in of_carrier if m.role == "consumption"]  # fmt: skip


RECONCILIATION_COLUMNS = (
    "supplier", "site", "carrier", "unit", "account", "bill_id", "period_start",
    "period_end_exclusive", "billed", "metered", "difference", "difference_pct", "flag",
    "meters", "hours_without_data", "source",
)  # fmt: skip


def reconciliation_row(r: Reconciliation) -> list[str]:
    pct = r.difference_pct
    return [
        r.bill.supplier, r.bill.site, r.bill.carrier, CARRIERS[r.bill.carrier].unit,
        r.bill.account, r.bill.bill_id, r.bill.period_start.isoformat(),
        r.bill.period_end.isoformat(), f"{r.bill.billed:.3f}", f"{r.metered:.3f}",
        f"{r.difference:.3f}", "" if pct is None else f"{pct:.2f}",
        f"CHECK: beyond {r.threshold_pct:g}%" if r.flagged else "ok", ";".join(r.meters),
        str(r.hours_without_data), r.bill.source,
    ]  # fmt: skip
