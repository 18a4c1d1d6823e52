"""``supplymeter demo``: stack → simulate a month → collect → process → export, checked
against the simulator's ground truth."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from app.common import DEFAULT_TZ, factors, open_store, print_summary, progress, say
from app.demo_bills import billing_periods, with_bills, write_bills
from supplymeter.config import Config
from supplymeter.errors import SupplymeterError
from supplymeter.records import datetime_to_ns

if TYPE_CHECKING:
    from collector.service import Collector
    from deploy.stack import LocalStack
    from processing.accounting.export import ExportResult
    from processing.accounting.scope3 import Month, MonthFigures
    from processing.emissions import FactorLibrary
    from simulators.run import SimulationResult
    from supplymeter.store import Store


def _wait_collected(
    collector: Collector, store: Store, span: tuple[int, int], readings: int,
    timeout_s: float,
) -> None:  # fmt: skip
    """Wait until InfluxDB holds this run's ``readings`` in ``span`` (epoch ns, inclusive).

    Counted in the database, not in the collector: a broker session may hold messages of
    earlier runs, which the collector counts too."""
    deadline = time.monotonic() + timeout_s
    last = 0.0
    while True:
        collector.writer.flush(min(30.0, timeout_s))
        stored = store.count_readings(*span)
        if stored >= readings:
            return
        if time.monotonic() > deadline:
            raise SupplymeterError(
                f"InfluxDB holds {stored:,} of {readings:,} readings after {timeout_s:.0f} s"
            )
        if time.monotonic() - last > 2:
            say(f"  collect: {stored:,}/{readings:,} readings stored")
            last = time.monotonic()
        time.sleep(0.5)


def _check_ledger(result: ExportResult, sim: SimulationResult) -> float:
    """Largest |export − ground truth| over meters for the month. [kWh or m³]"""
    truth = sim.ledger.metered()
    worst = 0.0
    for m in result.meters:
        start, end = result.month.bounds(m.ref.tz)
        expected = sum(v for h, v in truth.get(m.ref.key, {}).items() if start <= h < end)
        worst = max(worst, abs(m.consumption - float(expected)))
    return worst


def _check_pieces(config: Config, month: Month, sim: SimulationResult,
                  counted: dict[tuple[str, str, str], float]) -> float:  # fmt: skip
    """Largest |pieces counted in the month − the ledger's| over products. [pieces]"""
    truth = sim.ledger.pieces()
    worst = 0.0
    for (supplier, site, product), units in counted.items():
        found = config.registry.site(supplier, site)
        assert found is not None
        p = next(x for x in found[1].products if x.id == product)
        ref = config.registry.meter(supplier, site, p.counter)
        assert ref is not None
        start, end = month.bounds(ref.tz)
        expected = sum(n for h, n in truth.get(ref.key, {}).items() if start <= h < end)
        worst = max(worst, abs(units - expected))
    return worst


def _write_kept_config(config: Config, stack: LocalStack, out: Path) -> Path:
    """A services file pointing at the demo's kept stack, so every command can explore it."""
    path = out / "supplymeter.toml"
    registry = config.resolve(config.services.registry).resolve()
    path.write_text(
        f"# Written by `supplymeter demo --keep-stack`: the demo's own stack.\n"
        f'registry = "{registry}"\n'
        f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "supplymeter-demo-explore"\n'
        f'[influxdb]\nurl = "{stack.influxdb.url}"\n'
        f'[jobs]\nexport_dir = "{out.resolve()}"\n'
        f'[alerts]\nstate_dir = "{(out / "alerts").resolve()}"\n'
        f'[operations]\ndatabase = "{(out / "operations.sqlite").resolve()}"\n'
        f'[stack]\ndir = "{stack.root.resolve()}"\nmqtt_port = {stack.mosquitto.port}\n'
        f"influxdb_port = {stack.influxdb.port}\n"
        f"influxdb_rpc_port = {stack.influxdb.rpc_port}\n"
    )
    return path


def _products(config: Config, store: Store, library: FactorLibrary, month: Month,
              out: Path, figures: MonthFigures | None = None) -> list[Path]:  # fmt: skip
    """Footprints per product (PACT v3, published to a log under ``out``) and the CBAM
    workbook of the month, from the month's ``figures`` as the export computed them."""
    import dataclasses

    from processing.accounting.cbam import publish_workbook
    from processing.accounting.runner import installations, publish_period

    pact = config.pact.model_copy(update={"footprints_file": (out / "pact" / "footprints.jsonl")
                                          .resolve()})  # fmt: skip
    cfg = dataclasses.replace(config, services=config.services.model_copy(update={"pact": pact}))
    computed = {month: figures} if figures is not None else None
    published, skipped = publish_period(cfg, store, library, month, month, computed=computed)
    for pf in published.created:
        c = pf["pcf"]
        say(
            f"  footprint {pf['productNameCompany']}: {float(c['pcfExcludingBiogenicUptake']):.3f}"
            f" kgCO2e per {c['declaredUnitOfMeasurement']} cradle-to-gate "
            f"(primary data {c.get('primaryDataShare', '?')} %)"
        )
    for reason in skipped:
        say(f"  no footprint: {reason}")
    say(
        f"  {len(published.created)} PACT v3 footprints: {pact.footprints_file} "
        "(serve them: supplymeter pact serve)"
    )
    found = installations(cfg, store, library, month, month, computed=computed)
    path, _ = publish_workbook(out / "cbam" / f"{month}--{month}", found, month.year, month,
                               month, cfg.jobs.restate_threshold_pct)  # fmt: skip
    for inst in found:
        for g in inst.goods:
            if g.see_direct is None:
                continue
            d = f"{g.default.for_year(month.year):.3f}" if g.default else "none tabulated"
            say(
                f"  CBAM {inst.supplier.id} CN {g.cn_code}: {g.see_direct:.3f} tCO2e/t direct "
                f"incl. precursors (default {month.year}: {d})"
            )
    say(f"  CBAM workbook: {path}")
    sample = out / "pact" / "sample-product-footprint.json"
    if published.created:
        sample.write_text(json.dumps(published.created[0], indent=2, ensure_ascii=False) + "\n")
    return [path, sample]


def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from collector.service import Collector
    from deploy.stack import LocalStack, configure_for, stack_from_config
    from processing.accounting.export import previous_month
    from processing.accounting.runner import export_month
    from processing.accounting.scope3 import Month
    from processing.jobs import run_rollup
    from simulators.run import simulate, state_path_for

    began = time.monotonic()
    if args.console:
        args.keep_stack = True  # the console reads the demo's InfluxDB
    month = Month.parse(args.month) if args.month else previous_month(time.time_ns(), DEFAULT_TZ)
    tz = ZoneInfo(DEFAULT_TZ)
    start_ns, end_ns = month.bounds(tz)
    end = datetime.fromtimestamp(end_ns / 1e9, tz)
    # Billing periods do not follow calendar months: the simulation starts at the billing
    # period that ends in the month (a Taipower period 18th – 17th), so its bills reconcile.
    periods = billing_periods(month)
    sim_start = datetime.combine(min(a for a, _ in periods.values()), datetime.min.time(), tz)
    sim_start_ns = datetime_to_ns(sim_start)
    out = args.out
    # A rerun starts clean: its own stack below, and no versions left from an earlier run
    # (the demo shows a first export, and `make docs` copies it).
    shutil.rmtree(out / str(month), ignore_errors=True)
    shutil.rmtree(out / "pact", ignore_errors=True)
    # Its own stack on free ports by default: the demo runs beside any other local stack or
    # collector (another checkout, another user) and never shares their ports or client id.
    own = LocalStack.on_free_ports(out / "stack")
    stack = stack_from_config(config) if args.use_stack else own
    started_stack = not stack.running()
    say(
        f"1/5 stack: {'starting' if started_stack else 'reusing'} Mosquitto "
        f":{stack.mosquitto.port} + InfluxDB :{stack.influxdb.port} under {stack.root}"
    )
    if started_stack:
        stack.up(detach=args.keep_stack)
    try:
        cfg = configure_for(config, stack, client_id=f"supplymeter-demo-{os.getpid()}")
        library = factors(config)
        with open_store(cfg) as store:
            with Collector(cfg, client=store.client) as collector:
                say(
                    f"2/5 simulate {month} and its billing periods ({sim_start:%Y-%m-%d %H:%M} "
                    f"→ {end:%Y-%m-%d %H:%M} {DEFAULT_TZ}) for {len(cfg.registry.meters())} "
                    f"meters, seed {args.seed}"
                )
                # A rerun starts clean: this month's readings, rollups and statuses go, and
                # so does the ledger the simulator would otherwise continue.
                store.delete_range(sim_start_ns, end_ns)
                for stale in (out / "ledger.csv", state_path_for(out / "ledger.csv")):
                    stale.unlink(missing_ok=True)
                sim = simulate(
                    cfg,
                    start=sim_start,
                    end=end,
                    seed=args.seed,
                    ledger_path=out / "ledger.csv",
                    progress=progress("simulate"),
                )
                say(f"3/5 collect: waiting for {sim.readings:,} readings to be stored")
                _wait_collected(collector, store, (sim_start_ns, end_ns), sim.readings, 300)
                rejected = collector.stats.rejected_total
            say("4/5 process: hourly consumption and emissions")
            report = run_rollup(cfg, store, sim_start_ns, end_ns, library)
            say(
                f"  {report.hours:,} meter-hours; register corrections: "
                f"{dict(report.flags) or 'none'}"
            )
            say("5/5 export, dashboards")
            bills = out / "bills.csv"
            count = write_bills(cfg, sim.ledger, periods, bills, seed=args.seed)
            say(f"  {count} simulated utility bills (ids SIM-…) to reconcile: {bills}")
            cfg = with_bills(cfg, bills.resolve())
            result = export_month(cfg, store, month, out, library)
            from dashboards.render import render_all

            shutil.rmtree(out / "dashboards", ignore_errors=True)  # no stale renders beside
            pngs = render_all(cfg, store, start_ns, end_ns, out / "dashboards")
            say(
                f"  rendered {len(pngs)} dashboards into {out / 'dashboards'}: "
                + ", ".join(p.name for p in pngs)
            )
            example = [p for p in pngs if p.name == "sm-supplier.png"]
            product_files = _products(cfg, store, library, month, out, result.figures)
            product_totals = {
                (s.id, site.id, pid): t.units
                for s in cfg.registry.suppliers for site in s.sites if site.products
                for (_, pid), t in store.product_totals(
                    *month.bounds(tz), supplier=s.id, site=site.id).items()
            }  # fmt: skip
    finally:
        if started_stack and not args.keep_stack:
            stack.down()
    print_summary(result)
    if args.samples is not None:  # `make docs`: refresh the samples the README shows
        args.samples.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.paths[4], args.samples / "sample-scope3-export.xlsx")
        say(f"  sample workbook: {args.samples / 'sample-scope3-export.xlsx'}")
        shutil.copyfile(product_files[0], args.samples / "sample-cbam.xlsx")
        if product_files[1].exists():
            shutil.copyfile(product_files[1], args.samples / "sample-product-footprint.json")
        say(
            f"  samples: {args.samples / 'sample-cbam.xlsx'}, "
            f"{args.samples / 'sample-product-footprint.json'}"
        )
        if example:
            shutil.copyfile(example[0], args.samples / "dashboard-example.png")
            say(f"  sample dashboard: {args.samples / 'dashboard-example.png'}")
    if args.keep_stack and started_stack and not args.use_stack:
        kept = _write_kept_config(config, stack, out)
        say(f"  stack left running; explore it with: supplymeter -c {kept} ...; "
            f"stop it with: supplymeter -c {kept} stack down")  # fmt: skip
    worst = _check_ledger(result, sim)
    pieces_off = _check_pieces(cfg, month, sim, product_totals)
    say(
        f"\n  ground truth: largest |export − simulator ledger| over "
        f"{len(result.meters)} meters = {worst:.6f} (kWh or m³); rejected messages: {rejected}"
    )
    say(
        f"  ground truth, pieces: largest |counted − simulator ledger| over "
        f"{len(product_totals)} products = {pieces_off:g}"
    )
    say(f"  ledger: {sim.ledger_path}")
    say(f"done in {time.monotonic() - began:.0f} s; results under {out}")
    ok = worst < 0.001 and pieces_off < 0.001
    if not args.console:
        say("  web console on these data: supplymeter demo --console (then open the address "
            "it prints)")  # fmt: skip
        return 0 if ok else 1
    if started_stack and not args.use_stack:
        _serve_console(config, stack, out)
    return 0 if ok else 1


def _serve_console(config: Config, stack: LocalStack, out: Path) -> None:
    """``demo --console``: accounts for the demo (one per role, one per supplier), then the
    console on the demo's data until Ctrl-C; the stack stops with it."""
    import secrets

    from app.console.server import serve
    from deploy.stack import free_port
    from supplymeter.config import load_config
    from supplymeter.operations import Operations

    kept = _write_kept_config(config, stack, out)
    port = free_port()
    with kept.open("a") as f:
        f.write(f"[console]\nport = {port}\n")
    demo = load_config(kept)
    made = []
    with Operations.from_config(demo) as ops:
        wanted = [
            ("demo-admin", "admin", None),
            ("demo-energy", "energy_manager", None),
            ("demo-auditor", "auditor", None),
        ]
        wanted += [(f"demo-{s.id}", "supplier", s.id) for s in demo.registry.suppliers]
        for name, role, supplier in wanted:
            password = secrets.token_urlsafe(12)
            if ops.user(name) is None:
                ops.add_user(name, password, role, supplier=supplier, language="zh-TW",
                             by="demo", registry=demo.registry)  # fmt: skip
            else:
                ops.update_user(name, by="demo", reason="demo restarted", password=password)
            made.append((name, role, supplier, password))
    say(f"\nconsole: http://127.0.0.1:{port}/  (Ctrl-C stops it and the stack)")
    for name, role, supplier, password in made:
        say(f"  {name:<22} {password}  {role}{' ' + supplier if supplier else ''}")
    # uvicorn re-raises the SIGTERM it caught once it has shut down: with this handler that
    # becomes an exit through the ``finally`` below, so the stack stops too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(demo)
    except KeyboardInterrupt:
        pass
    finally:
        stack.down()
