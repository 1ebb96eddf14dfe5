"""A real browser (Playwright + Debian's Chromium) on a real run: the operator's path, end to end.

Log into the admin, find the run in the list, open it, read its timeline, watch it live in a
second tab, press "Cancel run", and see the cancel go through the Celery task to the simulator
and back as ``cancelled`` (in the admin and, without a reload, on the live page). Screenshots go
to docs/screenshots/ (README shows them).

Playwright's own browser download is not reachable here, so the test uses Debian's Chromium
(``apt-get install chromium``; ``.ci/run`` installs it) and skips, saying so, where none exists.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from django.db import connections

from runs.models import Run
from runs.services import create_run
from runs.tasks import start_run

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
TIMEOUT_MS = 20_000


@pytest.fixture
def browser(monkeypatch):
    if CHROMIUM is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium); browser test skipped")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # With a loop running, Django keeps this test's connection apart from the thread's
        # usual one; close it here, or the test database cannot be dropped at the end.
        connections.close_all()


def wait_for_status(run_id: int, *statuses: str, timeout: float = 30.0) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(pk=run_id)
        if run.status in statuses:
            return run
        time.sleep(0.1)
    pytest.fail(f"run {run_id} is {run.status} ({run.last_error}), expected one of {statuses}")


def test_an_operator_finds_watches_and_cancels_a_run(
    browser, live_server, admin_user, worker, simulator, pubsub_url
):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    finished = create_run(
        "Summarise ticket T-1", metadata={"sim_duration_s": "0.5", "sim_outcome": "completed"}
    )
    start_run.delay(finished.pk)
    run = create_run(
        "A long analysis",
        metadata={"sim_duration_s": "120", "sim_outcome": "completed", "ticket": "T-2"},
    )
    start_run.delay(run.pk)
    wait_for_status(finished.pk, "completed")
    wait_for_status(run.pk, "in_progress")

    context = browser.new_context(viewport={"width": 1600, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/runs/run/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")

    # The list: coloured statuses; searching by metadata finds the run.
    page.wait_for_selector("#result_list")
    page.click("#toggle-nav-sidebar")  # more room for the columns (remembered by the browser)
    assert page.locator(".run-status-completed").count() == 1  # the finished run, one row
    page.screenshot(path=str(SCREENSHOTS / "admin-run-list.png"))
    page.fill("#searchbar", "ticket=T-2")
    page.press("#searchbar", "Enter")
    page.wait_for_selector(f"#result_list a[href*='/runs/run/{run.pk}/change/']")

    # The run page: its timeline so far.
    page.click(f"#result_list a[href*='/runs/run/{run.pk}/change/']")
    timeline = page.locator("#run-timeline")
    timeline.wait_for()
    for change in ("pending → queued", "queued → in_progress"):
        assert change in timeline.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "admin-run-page.png"), full_page=True)

    # The live page in a second tab, connected before the cancel.
    live = context.new_page()
    live.goto(f"{live_server.url}/runs/{run.pk}/live/")
    live.wait_for_function("document.getElementById('run-connection').textContent === 'live'")
    assert live.inner_text("#run-status") == "in_progress"

    # Cancel: the request only moves the run to cancelling; a task asks the simulator.
    page.click("#run-cancel")
    page.wait_for_selector(".messagelist")
    assert f"run {run.pk}: cancelling" in page.inner_text(".messagelist").lower()
    cancelled = wait_for_status(run.pk, "cancelled")
    assert simulator.stats()["objects"][cancelled.remote_id]["cancel"] == 1

    # The live page saw it without a reload; the admin timeline shows who asked.
    live.wait_for_function("document.getElementById('run-status').textContent === 'cancelled'")
    assert live.inner_text("#run-connection") == "finished"
    live.screenshot(path=str(SCREENSHOTS / "live-status.png"))
    page.reload()
    text = page.inner_text("#run-timeline")
    assert "in_progress → cancelling" in text and "cancelling → cancelled" in text
    assert "requested_by: admin:admin" in text
    assert page.locator("#run-retry").count() == 1  # an ended run offers a retry instead
    page.screenshot(path=str(SCREENSHOTS / "admin-run-cancelled.png"), full_page=True)
    context.close()
