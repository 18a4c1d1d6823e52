"""The operations database on a real SQLite file and a real PostgreSQL (a throwaway cluster):
the migrated schema is the one the code declares, the audit trail is append-only in the
database itself, records are validated as the registry validates them, and sign-in is
throttled and sessions end."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.stack import free_port
from supplymeter.config import MeterEvent, Registry, load_registry
from supplymeter.operations import (
    Operations,
    Refused,
    Throttled,
    md,
    merged_meter,
    with_recorded_events,
)
from tests.conftest import SMALL_REGISTRY

T0 = datetime(2026, 11, 5, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    path = tmp_path_factory.mktemp("reg") / "suppliers.toml"
    path.write_text(SMALL_REGISTRY)
    return load_registry(path)


def _postgres() -> Iterator[str]:
    """A PostgreSQL cluster of its own on a free port (as the ``postgres`` user when run as
    root: initdb refuses root), dropped afterwards."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail("PostgreSQL is not installed: make setup installs it")
    bindir = Path(bins[-1])
    root = Path(tempfile.mkdtemp(prefix="supplymeter-pg-"))
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "supplymeter",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "-l",
                    str(root / "log"), "start"], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://supplymeter@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def ops(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Operations]:
    if request.param == "sqlite":
        with Operations(f"sqlite:///{tmp_path / 'ops.sqlite'}") as o:
            yield o
        return
    for url in _postgres():
        with Operations(url) as o:
            yield o


def test_the_migrated_schema_is_the_declared_one(ops: Operations) -> None:
    """Alembic's comparison of the migrated database with the code's tables finds nothing:
    a column added in code without a migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with ops.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), md)
    assert diff == []
    ops.upgrade()  # again: nothing to do, nothing broken


def test_the_audit_trail_refuses_updates_and_deletes(ops: Operations, registry: Registry) -> None:
    ops.add_user("alice", "correct horse battery", "supplier", supplier="forge-a",
                 registry=registry, by="root", now=T0)  # fmt: skip
    entry = ops.audit_trail()[0]
    assert (entry.username, entry.action, entry.entity, entry.entity_id) == (
        "root", "create", "user", "alice")  # fmt: skip
    assert "password" not in (entry.after or "") and "argon2" not in (entry.after or "")
    for statement in ("UPDATE audit SET reason = 'edited'", "DELETE FROM audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), ops.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert ops.audit_trail()[0].reason == entry.reason


def test_a_meter_event_is_validated_as_the_registry_validates_it(
    ops: Operations, registry: Registry
) -> None:
    key = ("forge-a", "plant-1", "main")
    ct = MeterEvent(type="ct_change", time=datetime(2026, 10, 10, tzinfo=UTC), new_multiplier=60)
    recorded = ops.record_meter_event(registry, key, ct, by="alice", now=T0)
    assert recorded.event.recorded_by == "alice"
    with pytest.raises(Refused, match="strictly increasing"):
        ops.record_meter_event(registry, key, ct, by="alice")  # the same time twice
    commissioned = MeterEvent(type="commissioned", time=datetime(2026, 11, 1, tzinfo=UTC))
    with pytest.raises(Refused, match="commissioned must be the first event"):
        ops.record_meter_event(registry, key, commissioned, by="alice")
    with pytest.raises(Refused, match="no meter"):
        ops.record_meter_event(registry, ("forge-a", "plant-1", "nope"), ct, by="alice")
    merged = with_recorded_events(registry, ops.meter_events())
    ref = merged.meter(*key)
    assert ref is not None and [e.new_multiplier for e in ref.meter.events] == [60]
    assert registry.meter(*key).meter.events == []  # type: ignore[union-attr]
    ops.remove_meter_event(recorded.id, by="erin", reason="recorded on the wrong meter")
    assert ops.meter_events() == []
    with pytest.raises(Refused, match="no meter event"):
        ops.remove_meter_event(recorded.id, by="erin", reason="again")
    actions = [(e.username, e.action) for e in ops.audit_trail() if e.entity == "meter_event"]
    assert actions == [("alice", "create"), ("erin", "remove")]


def test_sign_in_is_throttled_and_sessions_end(ops: Operations, registry: Registry) -> None:
    ops.add_user("alice", "correct horse battery", "supplier", supplier="forge-a",
                 registry=registry)  # fmt: skip
    window = timedelta(minutes=15)
    for n in range(3):
        assert ops.login("alice", "wrong", "10.0.0.1", max_failures=3, window=window,
                         now=T0 + timedelta(seconds=n)) is None  # fmt: skip
    with pytest.raises(Throttled) as caught:
        ops.login("alice", "correct horse battery", "10.0.0.2", max_failures=3, window=window,
                  now=T0 + timedelta(minutes=1))  # fmt: skip
    assert 13 * 60 < caught.value.retry_after_s <= 15 * 60
    user = ops.login("alice", "correct horse battery", "10.0.0.2", max_failures=3,
                     window=window, now=T0 + timedelta(minutes=16))  # fmt: skip
    assert user is not None and user.supplier == "forge-a"
    token, csrf = ops.start_session(user, timedelta(hours=1))
    found = ops.session(token, timedelta(hours=1))
    assert found is not None and found[1] == csrf
    assert ops.session(token + "x", timedelta(hours=1)) is None
    ops.update_user("alice", by="root", active=False, reason="left the company")
    assert ops.session(token, timedelta(hours=1)) is None
    assert ops.login("alice", "correct horse battery", "10.0.0.3", max_failures=3,
                     window=window, now=T0 + timedelta(minutes=40)) is None  # fmt: skip


def test_unknown_users_cost_the_same_verification() -> None:
    """An unknown name is verified against a dummy hash: the time does not tell whether the
    account exists (within a factor of two, over several tries)."""
    with tempfile.TemporaryDirectory() as d:
        ops = Operations(f"sqlite:///{d}/ops.sqlite")
        ops.add_user("alice", "correct horse battery", "admin")
        kw = {"max_failures": 1000, "window": timedelta(minutes=1)}

        def cost(name: str) -> float:
            began = time.perf_counter()
            for _ in range(3):
                ops.login(name, "wrong password", "127.0.0.1", **kw)  # type: ignore[arg-type]
            return time.perf_counter() - began

        known, unknown = cost("alice"), cost("nobody")
        ops.close()
    assert unknown > known / 2 > 0.001  # both paths run Argon2


def test_users_and_silences_refuse_what_would_be_wrong(ops: Operations, registry: Registry) -> None:
    with pytest.raises(Refused, match="needs its supplier"):
        ops.add_user("bob", "correct horse battery", "supplier")
    with pytest.raises(Refused, match="no supplier 'zz'"):
        ops.add_user("bob", "correct horse battery", "supplier", supplier="zz", registry=registry)
    with pytest.raises(Refused, match="at least 10"):
        ops.add_user("bob", "short", "auditor")
    with pytest.raises(Refused, match="role: one of"):
        ops.add_user("bob", "correct horse battery", "owner")
    common = {"supplier": "forge-a", "site": "plant-1", "meter": None, "by": "erin"}
    with pytest.raises(Refused, match="after starts_at"):
        ops.silence(registry, starts_at=T0, ends_at=T0, reason="x", **common)  # type: ignore[arg-type]
    with pytest.raises(Refused, match="at most 31 days"):
        ops.silence(registry, starts_at=T0, ends_at=T0 + timedelta(days=40), reason="x",
                    **common)  # type: ignore[arg-type]  # fmt: skip
    s = ops.silence(registry, starts_at=T0, ends_at=T0 + timedelta(hours=4),
                    reason="furnace relining", **common)  # type: ignore[arg-type]  # fmt: skip
    assert [x.id for x in ops.silences(active_at=T0 + timedelta(hours=1))] == [s.id]
    assert ops.silences(active_at=T0 + timedelta(hours=5)) == []
    assert s.covers("forge-a", "plant-1", "gas", T0) and not s.covers("cnc-d", "plant-1", "", T0)


@settings(max_examples=40, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(["exchange", "ct_change", "commissioned",
                                           "decommissioned"]),
                          st.integers(0, 60 * 24 * 30)), max_size=4))  # fmt: skip
def test_merging_events_either_validates_or_refuses_with_a_rule(
    events: list[tuple[str, int]], registry: Registry
) -> None:
    """Any list of console events on a meter either merges into a meter the registry would
    accept, or is refused naming the rule broken — never an exception of another kind."""
    meter = registry.meter("forge-a", "plant-1", "main").meter  # type: ignore[union-attr]
    extra = []
    for kind, minutes in events:
        fields: dict[str, object] = {"type": kind,
                                     "time": datetime(2026, 10, 1, tzinfo=UTC)
                                     + timedelta(minutes=minutes)}  # fmt: skip
        if kind == "exchange":
            fields |= {"old_final_register": 10.0, "new_first_register": 0.0}
        if kind == "ct_change":
            fields["new_multiplier"] = 60.0
        extra.append(MeterEvent.model_validate(fields))
    try:
        merged = merged_meter(meter, extra)
    except Refused as exc:
        assert str(exc)
    else:
        times = [e.time_ns for e in merged.events]
        assert times == sorted(set(times)) and len(merged.events) == len(extra)


def test_console_records_export_to_the_file_formats_and_read_back(
    ops: Operations, registry: Registry, tmp_path: Path
) -> None:
    """``console export``: the meter events read back as the registry's events, the bills
    through the bills-file reader, unchanged."""
    import tomllib
    from datetime import date

    from processing.accounting.inputs import load_bills
    from supplymeter.operations import bills_csv, events_toml

    key = ("forge-a", "plant-1", "main")
    exchange = MeterEvent(type="exchange", time=datetime(2026, 10, 20, 4, 7, 30, tzinfo=UTC),
                          old_final_register=1468.125, new_first_register=0.0,
                          note='replaced "by" Taipower')  # fmt: skip
    ops.record_meter_event(registry, key, exchange, by="alice")
    ops.add_bill(registry, supplier="cnc-d", site="plant-1", carrier="electricity",
                 account="07-12", period_start=date(2026, 9, 18), period_end=date(2026, 10, 18),
                 billed=212.5, bill_id="TPC-1", by="bob")  # fmt: skip
    [entry] = tomllib.loads(events_toml(ops.meter_events()))["meters"]
    assert (entry["supplier"], entry["site"], entry["meter"]) == key
    [back] = [MeterEvent.model_validate(e) for e in entry["events"]]
    assert back.reading_json() == exchange.reading_json() and back.recorded_by == "alice"
    merged = merged_meter(registry.meter(*key).meter, [back])  # type: ignore[union-attr]
    assert merged.events == [back]
    path = tmp_path / "bills.csv"
    path.write_text(bills_csv(ops.bills()))
    [bill] = load_bills(path)
    assert (bill.supplier, bill.site, bill.billed, bill.bill_id, bill.period_end) == (
        "cnc-d", "plant-1", 212.5, "TPC-1", date(2026, 10, 18))  # fmt: skip
