"""The simulator's load as plain 15-minute series, for calibration against real loads.

:func:`site_loads` runs one site's model (the same :class:`~simulators.plant.SiteModel` the
gateways publish from, with every meter read each ``step_s``) without MQTT and returns each
consumption meter's mean load per step — the format of ``data/real-loads``, so the realism
statistics and the alert bench read simulated and real series alike.
"""

from __future__ import annotations

from datetime import datetime

from simulators.faults import NS, FaultLog
from simulators.ledger import Ledger
from simulators.plant import SiteModel
from supplymeter.config import Config, MeterRef, Registry
from supplymeter.records import ns_to_datetime


def with_interval(config: Config, step_s: int) -> Registry:
    """The config's registry with every meter read every ``step_s`` seconds."""
    suppliers = [
        supplier.model_copy(update={"sites": [
            site.model_copy(update={"meters": [
                m.model_copy(update={"interval_s": step_s}) for m in site.meters
            ]})
            for site in supplier.sites
        ]})
        for supplier in config.registry.suppliers
    ]  # fmt: skip
    return Registry.build(suppliers)


def site_loads(
    registry: Registry, supplier_id: str, site_id: str, start_ns: int, end_ns: int,
    seed: int, step_s: int = 900, ledger: Ledger | None = None, faults: FaultLog | None = None,
) -> dict[str, list[tuple[datetime, float]]]:  # fmt: skip
    """Each consumption meter's (local interval start, mean load [kW or m³/h]) of one site;
    ``ledger`` (if given) receives the ground truth (pieces counted, energy saved), ``faults``
    the anomalies drawn (``base_shift``: a meter's base load changed and stayed)."""
    supplier = next(s for s in registry.suppliers if s.id == supplier_id)
    site = next(s for s in supplier.sites if s.id == site_id)
    refs: list[MeterRef] = [r for r in registry.meters() if r.key[:2] == (supplier_id, site_id)]
    model = SiteModel(supplier, site, refs, seed, ledger or Ledger(),
                      FaultLog() if faults is None else faults)  # fmt: skip
    assert model.step_s == step_s, "every meter must be read each step"
    out: dict[str, list[tuple[datetime, float]]] = {
        m.ref.meter.id: [] for m in model.meters if m.ref.meter.role == "consumption"
    }
    for ts in range(start_ns, end_ns, step_s * NS):
        before = {m.ref.meter.id: m.interval_kwh for m in model.meters}
        model.advance(ts)
        local = ns_to_datetime(ts).astimezone(model.tz)
        for m in model.meters:
            if m.ref.meter.id in out:
                energy = m.interval_kwh - before[m.ref.meter.id]
                out[m.ref.meter.id].append((local, energy * 3600 / step_s))
        for m in model.meters:  # what readings() would do: start the next interval
            m.interval_kwh, m.interval_s = 0.0, 0.0
    return out
