"""The console in a real Chromium (Debian's ``chromium``, driven by Playwright): a supplier's
plant manager signs in, sees only her plant, records the meter exchange the data-quality
page asks for, the rollup recomputes, the month restates with her name as the reason, and
she confirms it; the buyer's energy manager acknowledges and silences an incident. The
screenshots are the README's."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processing.accounting.versions import latest_manifest
from supplymeter.config import Config
from supplymeter.influx import InfluxClient
from supplymeter.store import Store
from tests.app.console_setup import PASSWORD, Env, app_of, make_env, served

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("SUPPLYMETER_SCREENSHOTS", "")) if os.environ.get(
    "SUPPLYMETER_SCREENSHOTS") else None  # fmt: skip
"""Where to save the screenshots besides the test's own folder (``make screenshots``:
docs/console/)."""


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: make setup installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ])  # fmt: skip
        yield b
        b.close()


def shoot(page: Any, tmp: Path, name: str) -> None:
    page.screenshot(path=str(tmp / f"{name}.png"), full_page=True)
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/now")


@pytest.fixture
def env(make_config: Callable[..., Config], influx: InfluxClient, tmp_path: Path) -> Env:
    return make_env(make_config(), Store(influx), tmp_path)


def test_a_plant_manager_fixes_her_data_and_confirms_the_month(
    env: Env, browser: Any, tmp_path: Path
) -> None:
    with served(app_of(env)) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, base, "alice")
        assert page.locator("[data-row='site:forge-a/plant-1']").count() == 1
        assert page.locator("[data-row^='site:cnc-d']").count() == 0
        assert "cnc-d" not in page.content()
        page.wait_for_selector("#now[data-polls]", state="attached", timeout=20_000)  # refreshed
        shoot(page, tmp_path, "now")

        page.click("text=Data quality")
        fall = page.locator("section.fall[data-meter='forge-a/plant-1/main']")
        assert fall.count() == 1
        form = fall.locator("form.event-form")
        form.locator("select[name=type]").select_option("exchange")
        form.locator("input[name=time]").fill("2026-10-20T12:07:30")
        form.locator("input[name=old_final_register]").fill("1468.125")
        form.locator("input[name=new_first_register]").fill("0")
        form.locator("input[name=note]").fill("meter replaced by Taipower")
        shoot(page, tmp_path, "data-quality")
        form.locator("button").click()
        page.wait_for_selector(".flash")
        assert "alice" in page.locator("#recorded").inner_text()

        jobs = env.jobs()  # the scheduled jobs, run now
        assert jobs.run("rollup") and "meter events" in jobs.last_summary
        assert jobs.run("export")
        v2 = latest_manifest(env.tmp / "exports" / "2026-10")
        assert v2 and v2["version"] == 2

        page.click("text=Months")
        month = page.locator("section.month[data-month='2026-10']")
        assert "v2" in month.locator("h2").inner_text()
        assert "meter event recorded by alice" in month.locator(".versions").inner_text()
        month.locator("input[name=comment]").fill("matches our Taipower bill")
        month.locator("button[value=confirmed]").click()
        page.wait_for_selector(".flash")
        review = page.locator("section.month[data-month='2026-10'] td.review").inner_text()
        assert "confirmed" in review and "alice" in review
        shoot(page, tmp_path, "months")

        page.click("text=Audit trail")
        audit = page.locator("#audit").inner_text()
        assert "meter_event" in audit and "confirmed month forge-a/2026-10/v2" in audit

        page.goto(f"{base}/meter/forge-a/plant-1/main")
        assert "alice" in page.locator("#events").inner_text()
        shoot(page, tmp_path, "meter")
        response = page.goto(f"{base}/meter/cnc-d/plant-1/main")
        assert response.status == 404 and "cnc-d" not in page.content()

        manager = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(manager, base, "erin")
        assert manager.locator("[data-row^='site:cnc-d']").count() == 1
        manager.click("text=Incidents")
        card = manager.locator("section.incident[data-incident^='spike/cnc-d']")
        card.locator("input[name=comment]").fill("compressor 2 on test run")
        card.locator("button").click()
        manager.wait_for_selector(".flash")
        silence = manager.locator("#silence-form form")
        silence.locator("select[name=site_key]").select_option("cnc-d/plant-1")
        silence.locator("select[name=meter]").select_option("main")
        silence.locator("input[name=starts_at]").fill("2026-11-05T08:00")
        silence.locator("input[name=ends_at]").fill("2026-11-05T18:00")
        silence.locator("input[name=reason]").fill("annual maintenance")
        silence.locator("button").click()
        manager.wait_for_selector(".flash")
        assert "compressor 2 on test run" in manager.content()
        assert "annual maintenance" in manager.locator("#silences").inner_text()
        shoot(manager, tmp_path, "incidents")

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        sign_in(phone, base, "alice")
        with phone.expect_navigation():
            phone.select_option("select[name=language]", "zh-TW")  # submits itself
        assert "即時" in phone.content()
        shoot(phone, tmp_path, "now-phone-zh")

    trail = env.ops.audit_trail()
    assert {(e.username, e.entity, e.action) for e in trail} >= {
        ("alice", "meter_event", "create"), ("alice", "month", "confirmed"),
        ("erin", "acknowledgement", "create"), ("erin", "silence", "create")}  # fmt: skip
    assert all(e.at and e.reason for e in trail)
