"""The console over HTTP against real InfluxDB and a real SQLite operations database:
sign-in, scoping (a supplier sees nothing of another), CSRF, throttling, and the records
people enter reaching the jobs (restatement naming who recorded the event)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.accounting.versions import latest_manifest
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from supplymeter.store import Store
from tests.app.console_setup import (
    OCTOBER_KWH,
    PASSWORD,
    Env,
    app_of,
    at,
    make_env,
    served,
)


@pytest.fixture
def env(make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path) -> Env:
    return make_env(make_config(), Store(influx), tmp_path)


@pytest.fixture
def base(env: Env) -> Iterator[str]:
    with served(app_of(env)) as url:
        yield url


def login(base: str, username: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    page = client.get("/login")
    pre = re.search(r'name="pre" value="([^"]+)"', page.text)
    assert pre
    r = client.post("/login", data={"username": username, "password": password,
                                    "pre": pre.group(1)})  # fmt: skip
    if r.status_code == 303:
        client.csrf = csrf_of(client.get("/now").text)  # type: ignore[attr-defined]
    client.last = r  # type: ignore[attr-defined]
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def test_a_supplier_sees_its_own_plant_and_nothing_of_another(env: Env, base: str) -> None:
    alice = login(base, "alice")
    assert alice.last.status_code == 303  # type: ignore[attr-defined]
    now = alice.get("/now").text
    assert "forge-a" in now and "cnc-d" not in now
    meter = alice.get("/meter/forge-a/plant-1/main")
    assert meter.status_code == 200 and "Hourly consumption" in meter.text
    months = alice.get("/months").text
    assert "2026-10" in months and "cnc-d" not in months
    quality = alice.get("/quality").text
    assert "forge-a / plant-1 / main" in quality  # the unexplained fall offers a form
    incidents = alice.get("/incidents").text
    assert "spike/forge-a" in incidents and "cnc-d" not in incidents
    erin = login(base, "erin")
    both = erin.get("/now").text
    assert "forge-a" in both and "cnc-d" in both


def test_every_route_with_another_suppliers_ids_is_a_bare_404(env: Env, base: str) -> None:
    """alice (forge-a) asks for everything of cnc-d, and for guessed ids: 404 each time,
    nothing of cnc-d in any body; her posts on cnc-d's records change nothing."""
    alice = login(base, "alice")
    bob = login(base, "bob")
    token = alice.csrf  # type: ignore[attr-defined]
    # bob's records, to be aimed at
    r = bob.post("/quality/bill", data={
        "csrf": bob.csrf, "site": "cnc-d/plant-1", "carrier": "electricity",  # type: ignore[attr-defined]
        "account": "99-1234", "period_start": "2026-09-18", "period_end": "2026-10-18",
        "billed": "360", "bill_id": "B-CNC-1"})  # fmt: skip
    assert r.status_code == 303
    bill_id = env.ops.bills("cnc-d")[0].id
    gets = ["/meter/cnc-d/plant-1/main", "/meter/cnc-d/plant-1/nope", "/meter/zz/plant-1/main",
            "/months/2026-10/v1/scope3-2026-10-suppliers.csv".replace("suppliers", "nothing"),
            "/months/2026-10/v1/scope3-2026-10.xlsx", "/months/2026-10/v1/manifest.json",
            "/months/2026-10/v1/../../operations.sqlite", "/months/1999-01/v1/x.csv",
            "/admin"]  # fmt: skip
    for path in gets:
        r = alice.get(path)
        assert r.status_code == 404, path
        assert "cnc-d" not in r.text and "B-CNC-1" not in r.text, path
    posts = [
        ("/incidents/acknowledge", {"incident": f"spike/cnc-d/plant-1/main@{env.now[0]}",
                                    "comment": "mine now"}),
        ("/incidents/silence", {"site_key": "cnc-d/plant-1", "meter": "",
                                "starts_at": "2026-11-05T09:00", "ends_at": "2026-11-05T12:00",
                                "reason": "x"}),
        ("/incidents/test", {"site_key": "cnc-d/plant-1"}),
        ("/quality/event", {"meter": "cnc-d/plant-1/main", "type": "ct_change",
                            "time": "2026-10-10T00:00", "new_multiplier": "60"}),
        ("/quality/bill", {"site": "cnc-d/plant-1", "carrier": "electricity", "account": "1",
                           "period_start": "2026-09-18", "period_end": "2026-10-18",
                           "billed": "1", "bill_id": "X"}),
        (f"/quality/bill/{bill_id}/remove", {"reason": "not mine"}),
        ("/quality/event/999/remove", {"reason": "guess"}),
        ("/incidents/silence/999/cancel", {"reason": "guess"}),
        ("/admin/users/bob", {"active": "off"}),
    ]  # fmt: skip
    for path, data in posts:
        r = alice.post(path, data={"csrf": token, **data})
        assert r.status_code == 404, path
        assert "cnc-d" not in r.text, path
    supplier_csv = alice.get("/months/2026-10/v1/scope3-2026-10-suppliers.csv")
    assert supplier_csv.status_code == 200
    assert "forge-a" in supplier_csv.text and "cnc-d" not in supplier_csv.text
    audit = alice.get("/audit.csv").text
    assert "cnc-d" not in audit and "B-CNC-1" not in audit
    assert [b.bill_id for b in env.ops.bills()] == ["B-CNC-1"]  # nothing of alice's landed
    assert not env.ops.meter_events() and not env.ops.silences()
    assert env.ops.acknowledgements() == {}
    changes = alice.post("/now/changes", json={"rows": {}},
                         headers={"X-CSRF-Token": token, "Accept": "application/json"})  # fmt: skip
    assert changes.status_code == 200 and "cnc-d" not in changes.text


def test_posts_without_the_csrf_token_are_refused(env: Env, base: str) -> None:
    alice = login(base, "alice")
    r = alice.post("/quality/bill", data={
        "site": "forge-a/plant-1", "carrier": "electricity", "account": "1",
        "period_start": "2026-09-18", "period_end": "2026-10-18", "billed": "1",
        "bill_id": "X"})  # fmt: skip
    assert r.status_code == 404
    r = alice.post("/quality/bill", data={"csrf": "forged", "site": "forge-a/plant-1"})
    assert r.status_code == 404
    r = alice.post("/now/changes", json={"rows": {}})
    assert r.status_code == 404
    anonymous = httpx.Client(base_url=base, follow_redirects=False)
    assert anonymous.get("/now").status_code == 303  # to the sign-in page
    r = anonymous.post("/login", data={"username": "alice", "password": PASSWORD})
    assert r.status_code == 404  # no sign-in without the form's own token
    assert not env.ops.bills()


def test_ten_wrong_passwords_throttle_the_account(env: Env, base: str) -> None:
    for _ in range(10):
        assert login(base, "alice", "wrong password").last.status_code == 401  # type: ignore[attr-defined]
    throttled = login(base, "alice")  # the right password, too soon
    assert throttled.last.status_code == 429  # type: ignore[attr-defined]
    assert int(throttled.last.headers["Retry-After"]) > 0  # type: ignore[attr-defined]
    assert login(base, "erin").last.status_code == 303  # type: ignore[attr-defined]


def test_a_recorded_exchange_recomputes_and_restates_naming_the_user(env: Env, base: str) -> None:
    """alice records the exchange the register fall asks for; the next rollup measures the
    hour again (October: 744 h × 40 kWh, exact), the export restates v2 with the reason
    "meter event recorded by alice", she confirms v2 and the next export shows her review."""
    alice = login(base, "alice")
    r = alice.post("/quality/event", data={
        "csrf": alice.csrf, "meter": "forge-a/plant-1/main", "type": "exchange",  # type: ignore[attr-defined]
        "time": "2026-10-20T12:07:30", "old_final_register": "1468.125",
        "new_first_register": "0", "note": "meter replaced by Taipower"})  # fmt: skip
    assert r.status_code == 303, r.text
    jobs = env.jobs()
    assert jobs.run("rollup") and "meter events" in jobs.last_summary
    start, end = at(2026, 10, 1), at(2026, 11, 1)
    hours, _ = env.store.hourly_consumption(start, end, supplier="forge-a", site="plant-1")
    main = [h for h in hours if h.meter == "main"]
    assert sum(h.consumption for h in main) == pytest.approx(OCTOBER_KWH, abs=1e-6)
    assert sum(h.estimated for h in main) == pytest.approx(0.0, abs=1e-9)
    assert jobs.run("export")
    v2 = latest_manifest(env.tmp / "exports" / "2026-10")
    assert v2 and v2["version"] == 2
    assert any("meter event recorded by alice" in why for why in v2["reasons"])
    assert "forge-a / plant-1 / main" not in alice.get("/quality").text.split("Recorded")[0]
    months = alice.get("/months").text
    assert "meter event recorded by alice" in months
    r = alice.post("/months/2026-10/review", data={"csrf": alice.csrf, "status": "confirmed",  # type: ignore[attr-defined]
                                                   "comment": "matches our bill"})  # fmt: skip
    assert r.status_code == 303
    assert jobs.run("rollup") and jobs.run("export")
    v3 = latest_manifest(env.tmp / "exports" / "2026-10")
    assert v3 and v3["version"] == 3
    assert any("forge-a confirmed 2026-10 v2 (alice)" in why for why in v3["reasons"])
    from openpyxl import load_workbook

    wb = load_workbook(env.tmp / "exports" / "2026-10" / "v3" / "scope3-2026-10.xlsx")
    texts = [str(c.value) for row in wb["Methodology"].iter_rows() for c in row if c.value]
    assert any("confirmed v2 by alice" in t and "matches our bill" in t for t in texts)
    trail = env.ops.audit_trail()
    assert [(e.username, e.entity, e.action) for e in trail if e.username == "alice"] == [
        ("alice", "meter_event", "create"), ("alice", "month", "confirmed")]  # fmt: skip
    assert all(e.at is not None and e.reason for e in trail)


def test_an_auditor_reads_everything_and_changes_nothing(env: Env, base: str) -> None:
    audrey = login(base, "audrey")
    assert "cnc-d" in audrey.get("/now").text
    xlsx = audrey.get("/months/2026-10/v1/scope3-2026-10.xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    r = audrey.post("/incidents/acknowledge", data={
        "csrf": audrey.csrf, "incident": f"spike/cnc-d/plant-1/main@{env.now[0]}",  # type: ignore[attr-defined]
        "comment": "seen"})  # fmt: skip
    assert r.status_code == 404
    assert env.ops.acknowledgements() == {}
    assert audrey.get("/audit.csv").text.startswith("id,at_utc,user")


def test_a_silence_mutes_the_detector_and_an_acknowledgement_the_reminders(
    env: Env, base: str
) -> None:
    """erin silences cnc-d's meter for a maintenance window and acknowledges forge-a's spike:
    the silenced incident is held (no reminder, no resolution email), the acknowledged one
    sends no reminder."""
    from processing.alerts import IncidentBook, Muting

    erin = login(base, "erin")
    r = erin.post("/incidents/silence", data={
        "csrf": erin.csrf, "site_key": "cnc-d/plant-1", "meter": "main",  # type: ignore[attr-defined]
        "starts_at": "2026-11-05T08:00", "ends_at": "2026-11-05T18:00",
        "reason": "annual maintenance"})  # fmt: skip
    assert r.status_code == 303, r.text
    forge = f"spike/forge-a/plant-1/main@{env.now[0]}"
    r = erin.post("/incidents/acknowledge", data={"csrf": erin.csrf, "incident": forge,  # type: ignore[attr-defined]
                                                  "comment": "press 3 overhauled"})  # fmt: skip
    assert r.status_code == 303
    muting = Muting.load(env.ops, env.now[0])
    book = IncidentBook.load(env.tmp / "alerts" / "incidents.json")
    cnc = book.open["spike/cnc-d/plant-1/main"]
    assert muting.silenced(cnc) and not muting.silenced(book.open["spike/forge-a/plant-1/main"])
    assert forge in muting.acknowledged
    later = Muting.load(env.ops, at(2026, 11, 5, 19))
    assert not later.silenced(cnc)
    page = erin.get("/incidents").text
    assert "press 3 overhauled" in page and "annual maintenance" in page


def test_the_console_speaks_traditional_chinese(env: Env, base: str) -> None:
    alice = login(base, "alice")
    r = alice.post("/language", data={"csrf": alice.csrf, "language": "zh-TW",  # type: ignore[attr-defined]
                                      "next": "/now"})  # fmt: skip
    assert r.status_code == 303
    page = alice.get("/now").text
    assert "即時" in page and "目前功率" in page and 'lang="zh-TW"' in page
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", page)


def test_every_template_string_has_a_translation() -> None:
    """Each t("…") in the templates is in the Traditional Chinese table."""
    from app.console.i18n import ZH_TW

    root = Path(__file__).parents[2] / "app" / "console" / "templates"
    found = set()
    for path in root.glob("*.html"):
        found |= set(re.findall(r'\bt\("([^"]+)"', path.read_text()))
        found |= set(re.findall(r"\bt\('([^']+)'", path.read_text()))
    assert len(found) > 80
    missing = sorted(s for s in found if s not in ZH_TW)
    assert not missing, missing


def test_a_bill_entered_in_the_console_is_reconciled_by_the_next_export(
    env: Env, base: str
) -> None:
    """bob enters cnc-d's Taipower bill for 18 Sep – 18 Oct; the next export restates
    October naming the bill and who entered it, and its reconciliation table carries it."""
    bob = login(base, "bob")
    r = bob.post("/quality/bill", data={
        "csrf": bob.csrf, "site": "cnc-d/plant-1", "carrier": "electricity",  # type: ignore[attr-defined]
        "account": "07-12-3456-78", "period_start": "2026-09-18",
        "period_end": "2026-10-18", "billed": "212", "bill_id": "TPC-2026-10"})  # fmt: skip
    assert r.status_code == 303
    jobs = env.jobs()
    assert jobs.run("rollup") and "console records" in jobs.last_summary
    assert jobs.run("export")
    v2 = latest_manifest(env.tmp / "exports" / "2026-10")
    assert v2 and v2["version"] == 2
    assert any("bill TPC-2026-10 (plant-1) entered by bob" in why for why in v2["reasons"])
    table = env.tmp / "exports" / "2026-10" / "v2" / "scope3-2026-10-reconciliation.csv"
    assert "TPC-2026-10" in table.read_text()
    r = bob.post("/quality/bill", data={"csrf": bob.csrf, "site": "cnc-d/plant-1",  # type: ignore[attr-defined]
                                        "carrier": "electricity", "account": "x",
                                        "period_start": "2026-10-18",
                                        "period_end": "2026-09-18", "billed": "1",
                                        "bill_id": "BAD"})  # fmt: skip
    assert r.status_code == 422 and "period_end: must be after period_start" in r.text


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_the_language_form_goes_back_only_to_a_page_of_the_console(text: str) -> None:
    """Whatever ``next`` says, the redirect stays on this console (no open redirect)."""
    from urllib.parse import urljoin, urlparse

    from app.console.server import _local_path

    target = _local_path(text)
    assert urlparse(urljoin("https://console.example/now", target)).netloc == "console.example"
    assert target == text or target == "/now"


def test_malformed_ids_are_a_bare_404(env: Env, base: str) -> None:
    alice = login(base, "alice")
    for path in ("/months/2026-10/vcnc-d/x.csv", "/now?page=cnc-d"):
        r = alice.get(path)
        assert r.status_code == 404 and "cnc-d" not in r.text, path


def test_a_supplier_downloads_only_its_own_footprints(
    example_config: Config, tmp_path: Path
) -> None:
    """The month's footprints as published, cut for a supplier to the documents whose
    companyIds are its own; the buyer's roles get them all."""
    from app.console.views import footprints_file
    from supplymeter.operations import User
    from tests.conftest import with_settings

    config = with_settings(example_config, "pact", footprints_dir=tmp_path)
    owners = [s for s in config.registry.suppliers if s.company_ids][:2]
    assert len(owners) == 2
    docs = [{"id": f"pf-{s.id}", "companyIds": s.company_ids} for s in owners]
    folder = tmp_path / "2026-10--2026-10" / "v1"
    folder.mkdir(parents=True)
    (folder / "footprints-2026-10-2026-10.json").write_text(json.dumps(docs))
    mine = User(1, "alice", "supplier", owners[0].id, "en", True)
    got = json.loads(footprints_file(config, config.registry, mine, "2026-10", 1) or b"[]")
    assert [d["id"] for d in got] == [f"pf-{owners[0].id}"]
    buyer = User(2, "erin", "energy_manager", None, "en", True)
    got = json.loads(footprints_file(config, config.registry, buyer, "2026-10", 1) or b"[]")
    assert len(got) == 2
    assert footprints_file(config, config.registry, mine, "2026-10", 2) is None
    assert footprints_file(config, config.registry, mine, "../x", 1) is None


def test_an_admin_changes_a_role_and_it_is_audited(env: Env, base: str) -> None:
    root = login(base, "root")
    assert "alice" in root.get("/admin").text
    r = root.post("/admin/users/alice", data={"csrf": root.csrf, "role": "supplier",  # type: ignore[attr-defined]
                                              "supplier": "cnc-d",
                                              "reason": "moved to the CNC plant"})  # fmt: skip
    assert r.status_code == 303
    assert env.ops.user("alice").supplier == "cnc-d"  # type: ignore[union-attr]
    last = env.ops.audit_trail()[-1]
    assert (last.username, last.entity, last.reason) == ("root", "user", "moved to the CNC plant")
    assert '"supplier": "forge-a"' in (last.before or "")
    assert '"supplier": "cnc-d"' in (last.after or "")
    alice = login(base, "alice")
    assert "cnc-d" in alice.get("/now").text and "forge-a" not in alice.get("/now").text
    assert login(base, "erin").get("/admin").status_code == 404
