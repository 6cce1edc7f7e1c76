"""The web dashboard in a real browser (Debian's chromium driven by Playwright): sign in,
submit a task from the list page, watch its timeline change live, cancel it from its page and
see it compensate in reverse, filter the list, and stay blind to another tenant's task
(issue 10, item 4). Saves the screenshots of docs/dashboard.md (`make dashboard-screenshots`
writes them to docs/)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from localrun import REPO, local_token
from tests.e2e.conftest import System, running_system

CHROMIUM = os.environ.get("TASKSAGA_CHROMIUM", "/usr/bin/chromium")
# `make dashboard-screenshots` points this at docs/; a plain run keeps the tree clean.
SHOTS = Path(os.environ.get("TASKSAGA_DASHBOARD_SCREENSHOTS",
                            Path(REPO) / ".run" / "dashboard-screenshots"))
DASHBOARD_ENV = {"TASKSAGA_TASK_MODULES": "tests.e2e.dashboard_tasks"}


@pytest.fixture(scope="module")
def dashboard(stack_env: dict[str, str]) -> Iterator[System]:
    with running_system(stack_env, **DASHBOARD_ENV) as system:
        yield system


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: `tools/stack up` installs Debian's chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def tenant_of(system: System) -> str:
    """A tenant of this module's own: the projections are shared with every other run."""
    return f"dash-{system.prefix}"


def token(system: System, tenant: str) -> str:
    return local_token(tenant=tenant, subject="dashboard-e2e", roles=("tasksaga:operator",),
                       secret=system.env["TASKSAGA_AUTH_HS256_SECRET"])


@pytest.fixture(scope="module")
def api(dashboard: System) -> Iterator[httpx.Client]:
    """The API as this module's tenant."""
    headers = {"Authorization": f"Bearer {token(dashboard, tenant_of(dashboard))}"}
    with httpx.Client(base_url=dashboard.services.api_url, timeout=30,
                      headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def operator_tasks(api: httpx.Client) -> dict[str, str]:
    """Submitted first, so that they get where the tests want them while the first test
    runs: one waiting for its approval signal, one past its pivot in NeedsAttention, and a
    quick one that completes (for the list's filters)."""
    tasks = {kind: api.post(f"/tasks/{kind}", json={}).json()["task_id"]
             for kind in ("DashboardApproval", "DashboardShipment")}
    tasks["Completed"] = api.post("/tasks/DashboardRender", json={
        "prepare_s": 0.1, "ticks": 1, "interval_s": 0.05}).json()["task_id"]
    return tasks


def signed_in(browser: Browser, system: System, path: str,
              tenant: str) -> tuple[Page, list[str]]:
    """A new tab (its own sessionStorage) on ``path``, signed in with a token of ``tenant``;
    and the errors its scripts raise or log (a CSP refusal is one), which must stay none."""
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(system.services.api_url + path)
    page.fill("#credential", token(system, tenant))
    page.click("#sign-in-button")
    expect(page.locator("#who")).to_contain_text(f"tenant {tenant}")
    return page, errors


def bar(page: Page, step: str, outcome: str, kind: str = "run") -> str:
    return (f'#timeline g.lane[data-step="{step}"] '
            f'rect.bar[data-kind="{kind}"][data-outcome="{outcome}"]')


def test_dashboard_follows_a_task_live_and_cancels_it(
        dashboard: System, browser: Browser, api: httpx.Client,
        operator_tasks: dict[str, str]) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tenant = tenant_of(dashboard)
    page, errors = signed_in(browser, dashboard, "/ui/", tenant)
    # Submit from the list page: it opens the task's page.
    page.select_option("#submit-type", "DashboardRender")
    page.fill("#submit-body", json.dumps({"prepare_s": 3, "ticks": 60, "interval_s": 0.5}))
    page.click("#submit-button")
    page.wait_for_url("**/ui/tasks/*")
    task_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#task-id")).to_have_text(task_id)
    page.evaluate("window.notReloaded = true")

    # The first step's bar appears running, then turns completed with no reload.
    expect(page.locator(bar(page, "Prepare", "running"))).to_be_visible(timeout=10_000)
    expect(page.locator(bar(page, "Prepare", "completed"))).to_have_count(1, timeout=10_000)
    # The parallel group's members run side by side; Thumbnail fails once and is retried.
    expect(page.locator(bar(page, "Encode", "running"))).to_have_count(1, timeout=10_000)
    expect(page.locator(bar(page, "Thumbnail", "failed"))).to_have_count(1, timeout=10_000)
    expect(page.locator(bar(page, "Thumbnail", "completed"))).to_have_count(1, timeout=10_000)
    expect(page.locator("#timeline .group-label")).to_have_text("parallel group Render")
    expect(page.locator("#task-live")).to_have_text("live")
    expect(page.locator('#step-rows tr[data-step="Encode"] progress')).to_be_visible()
    expect(page.locator("#conditions .condition")).to_contain_text("the render has frames")
    assert page.evaluate("window.notReloaded") is True

    page.screenshot(path=str(SHOTS / "dashboard-task-live.png"), full_page=True)

    # Cancel from the button: Encode is stopped, Thumbnail then Prepare are undone.
    page.click("#cancel-button")
    page.fill("#cancel-reason", "seen enough")
    page.click("#cancel-confirm-button")
    expect(page.locator("#task-status")).to_have_text("Cancelled", timeout=20_000)
    expect(page.locator(bar(page, "Encode", "cancelled"))).to_have_count(1)
    expect(page.locator(bar(page, "Prepare", "compensated", "compensation"))).to_have_count(1)
    expect(page.locator(bar(page, "Thumbnail", "compensated", "compensation"))
           ).to_have_count(1)
    expect(page.locator("#compensation-order")).to_contain_text("Thumbnail → Prepare")
    expect(page.locator("#audit li[data-event=TaskCancelled]")).to_contain_text("seen enough")
    expect(page.locator("#cancel-button")).to_be_hidden()
    expect(page.locator("#task-live")).to_have_text("ended")
    assert page.evaluate("window.notReloaded") is True
    assert api.get(f"/tasks/{task_id}").json()["status"] == "Cancelled"
    page.locator("#task-card").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "dashboard-task.png"), full_page=True)
    assert errors == []

    # Another tenant opening the same page sees the API's 404, and nothing of the task.
    other, _ = signed_in(browser, dashboard, f"/ui/tasks/{task_id}", tenant="other-tenant")
    expect(other.locator("#task-error")).to_have_text(f"no task {task_id}")
    expect(other.locator("#task-card")).to_be_hidden()
    assert other.locator("#audit li").count() == 0
    other.close()

    # The list: a completed task beside the cancelled one; filters keep one or the other.
    done = operator_tasks["Completed"]
    assert dashboard.wait_terminal_with(api, done) == "Completed"
    page.goto(dashboard.services.api_url + "/ui/")
    rows = page.locator("#task-rows tr")
    expect(page.locator(f'#task-rows tr[data-task-id="{done}"]')).to_contain_text("Completed")
    page.select_option("#filter-type", "DashboardRender")
    page.select_option("#filter-status", "Cancelled")
    page.click("#apply-filters")
    expect(rows).to_have_count(1)
    expect(page.locator(f'#task-rows tr[data-task-id="{task_id}"]')).to_contain_text(
        "Cancelled")
    assert "status=Cancelled" in page.url  # the filter is in the address: shareable
    page.click("#reset-filters")
    expect(rows).to_have_count(4)  # with the two operator tasks, waiting for a person
    page.screenshot(path=str(SHOTS / "dashboard-list.png"), full_page=True)
    assert errors == []
    page.close()


def test_dashboard_buttons_send_a_signal_and_the_operators_retries(
        dashboard: System, browser: Browser, operator_tasks: dict[str, str]) -> None:
    # Retry forward first: its task goes on while the approval is answered on another page.
    shipment, shipment_errors = signed_in(
        browser, dashboard, "/ui/tasks/" + operator_tasks["DashboardShipment"],
        tenant_of(dashboard))
    expect(shipment.locator("#task-status")).to_have_text("NeedsAttention", timeout=20_000)
    shipment.click("#retry-forward-button")

    page, errors = signed_in(browser, dashboard,
                             "/ui/tasks/" + operator_tasks["DashboardApproval"],
                             tenant_of(dashboard))
    send = page.locator('button[data-signal="Approve"]')
    expect(send).to_be_visible(timeout=20_000)
    expect(page.locator(bar(page, "Approve", "running", "wait"))).to_have_count(1)
    page.fill('textarea[aria-label="Approve data"]',
              json.dumps({"approved": False, "note": "over budget"}))
    send.click()

    expect(shipment.locator("#task-status")).to_have_text("Completed", timeout=20_000)
    expect(shipment.locator(bar(shipment, "Notify", "completed"))).to_have_attribute(
        "data-attempt", "2")
    expect(shipment.locator("#retry-forward-button")).to_be_hidden()
    assert shipment_errors == []

    expect(page.locator("#task-status")).to_have_text("CompensationFailed", timeout=20_000)
    expect(page.locator(bar(page, "Approve", "completed", "wait"))).to_have_count(1)
    expect(send).to_be_hidden()
    page.click("#retry-compensation-button")
    expect(page.locator("#task-status")).to_have_text("Failed", timeout=20_000)
    expect(page.locator(bar(page, "Reserve", "failed", "compensation"))).to_have_count(1)
    expect(page.locator(bar(page, "Reserve", "compensated", "compensation"))).to_have_count(1)
    expect(page.locator("#audit li[data-event=StepFailed]")).to_contain_text("over budget")
    assert errors == []
    shipment.close()
    page.close()
