"""Time at a glance, in real Chromium against a real `rsgo serve` and the real Docker engine (README "The
dashboard", Timelines and times): mode timelines on rows and on the deployment page, the "in Maintenance
for … · by …" line, times in the browser's time zone with UTC on hover, and the screenshot of a week.

One server and two stacks for the whole module: "week" has a week of history written before the
server starts, "live" changes mode for real during the tests.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from conftest import Stack
from support import ADMIN_PASSWORD, ADMIN_USER, ROOT, ServerProcess, launch_chromium, put_mode, wait_until

TIMEOUT = 10_000


def seed_week(data_dir: Path, name: str) -> None:
    """A week of mode changes of stack ``name``, written before the server starts. ``audit.record`` and
    ``transition_records`` stamp every row with the present time and accept no other, so these rows of
    the past are written directly through the models, with the fields those functions write."""
    from rsgo import db
    from rsgo.models import AuditEntry, Deployment, Transition
    from rsgo.settings import load_settings

    settings = load_settings({"RSGO_DATA_DIR": str(data_dir)})
    db.open_database(settings)
    db.migrate()
    now = db.utcnow()
    ago = lambda days=0, hours=0: now - dt.timedelta(days=days, hours=hours)  # noqa: E731
    history = [  # (when, from, to, outcome, source, actor, reason)
        (ago(6, 20), "Normal", "Maintenance", "succeeded", "ui", "alice", "kernel update"),
        (ago(6, 17), "Maintenance", "Normal", "succeeded", "ui", "alice", "kernel updated"),
        (ago(5, 3), "Normal", "Migrating", "succeeded", "api", "deploy-bot", "upgrade to 2.4"),
        (ago(5, 1), "Migrating", "Normal", "succeeded", "api", "deploy-bot", "upgrade to 2.4 done"),
        (ago(3, 14), "Normal", "Failed", "failed", "system", "system",
         "1 of 1 container actions failed entering Maintenance (requested by bob)"),
        (ago(3, 10), "Failed", "Stopped", "succeeded", "ui", "bob", "investigating the disk"),
        (ago(2, 20), "Stopped", "Normal", "succeeded", "ui", "bob", "disk replaced"),
        (ago(1, 3), "Normal", "Maintenance", "succeeded", "schedule", "schedule:nightly", "nightly backup"),
        (ago(1, 1), "Maintenance", "Normal", "succeeded", "schedule", "schedule:nightly",
         "maintenance window nightly ended"),
        (ago(0, 9), "Normal", "Maintenance", "succeeded", "ui", "alice", "database migration"),
        (ago(0, 6), "Maintenance", "Normal", "succeeded", "ui", "alice", "migration done"),
    ]
    try:
        with db.database.atomic():
            deployment = Deployment.create(environment=settings.environment, name=name, discovered_at=ago(8),
                                           mode_changed_at=ago(8))
            for at, previous, new, outcome, source, actor, reason in history:
                target = "Maintenance" if new == "Failed" else new
                transition = Transition.create(deployment=deployment, previous_mode=previous, target_mode=target,
                                               status=outcome, source=source, actor=actor, reason=reason,
                                               requested_at=at - dt.timedelta(seconds=20), finished_at=at)
                AuditEntry.create(deployment=deployment, previous_mode=previous, new_mode=new, requested_mode=target,
                                  outcome=outcome, source=source, actor=actor, reason=reason, transition=transition,
                                  requested_at=at - dt.timedelta(seconds=20), finished_at=at)
                deployment.mode, deployment.mode_changed_at = new, at
                deployment.trigger_source, deployment.trigger_actor, deployment.trigger_reason = source, actor, reason
            deployment.save()
    finally:
        db.database.close()


@pytest.fixture(scope="module")
def served(docker_client, tmp_path_factory):
    root = tmp_path_factory.mktemp("time")
    week, live = (Stack(docker_client, f"{prefix}{uuid.uuid4().hex[:6]}") for prefix in ("week", "live"))
    try:
        week.add("app")
        live.add("app")
        seed_week(root / "data", week.name)
        server = ServerProcess(root / "data").start()
        try:
            ids = {}
            for stack in (week, live):
                found = wait_until(lambda s=stack: _deployment(server, s.name), 20, message=f"discovery {stack.name}")
                ids[stack.name] = found["id"]
            yield server, week, live, ids
        finally:
            server.stop()
    finally:
        for stack in (week, live):
            for container in stack.containers.values():
                container.remove(force=True)


def _deployment(server, name):
    response = requests.get(f"{server.url}/api/deployments/{name}", headers=server.headers, timeout=5)
    body = response.json() if response.status_code == 200 else None
    return body if body and body["containerCounts"]["running"] == 1 else None


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, served):
    """Signed-in pages in contexts of their own (a time zone, a colour scheme); closed after the test."""
    server = served[0]
    contexts = []

    def open_(path: str, **options):
        context = browser.new_context(viewport=options.pop("viewport", {"width": 1280, "height": 900}), **options)
        contexts.append(context)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        page.goto(f"{server.url}/login")
        page.get_by_label("User name").fill(ADMIN_USER)
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(server.url + path)
        expect(page.locator("#live-status")).to_have_text("Live", timeout=TIMEOUT)
        return page

    yield open_
    for context in contexts:
        context.close()


def segments(page, scope: str, mode: str):
    return page.locator(f"{scope} svg.timeline-bar g.tl-seg[data-mode='{mode}']")


def test_real_mode_changes_appear_live_on_the_rows_timeline_with_who_and_why(served, open_page):
    server, _week, live, ids = served
    row = f"#deployment-{ids[live.name]}"
    first, second = open_page("/"), open_page("/")
    expect(segments(second, row, "Normal")).to_have_count(1)
    expect(segments(second, row, "Maintenance")).to_have_count(0)

    answer = put_mode(server, live.name, "Maintenance", reason="swap the disk")
    assert answer.status_code in (200, 202), answer.text
    for page in (first, second):  # the second browser did nothing: the push brought it
        maintenance = segments(page, row, "Maintenance")
        expect(maintenance).to_have_count(1, timeout=TIMEOUT)
        title = maintenance.locator("title")
        expect(title).to_contain_text(
            re.compile(r"^Maintenance · .+ – now \(.+\) · by token:tests-\w+ \(api\): “swap the disk”$"))
        # The stay line under the mode: how long, by whom (no end: nothing ends it by itself).
        stay = page.locator(f"{row} .stay-line")
        expect(stay).to_contain_text(re.compile(r"in Maintenance for \d+ s · by token:tests-\w+"), timeout=TIMEOUT)
        expect(stay).not_to_contain_text("ends")

    answer = put_mode(server, live.name, "Normal", reason="disk swapped")
    assert answer.status_code in (200, 202), answer.text
    expect(segments(second, row, "Normal")).to_have_count(2, timeout=TIMEOUT)
    ended = segments(second, row, "Maintenance").locator("title")
    expect(ended).not_to_contain_text("– now")
    expect(second.locator(f"{row} .stay-line")).to_have_count(0)
    assert not first.errors and not second.errors


def test_a_window_says_when_it_ends_and_who_started_it_in_one_time_format(served, open_page):
    _server, _week, live, ids = served
    deployment_id = ids[live.name]
    page = open_page(f"/deployments/{deployment_id}", timezone_id="America/New_York")
    form = page.get_by_role("form", name="Maintenance for a few hours")
    form.get_by_label("Maintenance for").fill("1")
    form.get_by_label("Reason").fill("firmware")
    form.get_by_role("button", name="Start maintenance now, end it by itself").click()

    windows = page.locator(f"#windows-{deployment_id}")
    expect(windows.locator(".window-ends")).to_contain_text(re.compile(r"ends \d\d:\d\d \(in (59 min|1 h 0 min)\)"),
                                                           timeout=TIMEOUT)
    expect(windows).to_contain_text(f"started by {ADMIN_USER} (ui)")
    text = windows.inner_text()
    assert not re.search(r"\.\d{3,}|\+00:00|T\d\d:\d\d", text), text  # no raw timestamp fragment
    stay = page.locator(f"#timeline-{deployment_id} .stay-line")
    expect(stay).to_contain_text(re.compile(r"in Maintenance for \d+ s · ends \d\d:\d\d \(in (59 min|1 h 0 min)\) · by "
                                            r"schedule:"), timeout=TIMEOUT)

    # The end is in New York time; UTC is on hover.
    end = windows.locator(".window-ends time")
    instant = dt.datetime.fromisoformat(end.get_attribute("datetime").replace("Z", "+00:00"))
    local = instant.astimezone(ZoneInfo("America/New_York"))
    expect(end).to_contain_text(local.strftime("%H:%M"))
    end.hover()
    expect(end).to_have_attribute("title", re.compile(instant.strftime("%Y-%m-%d %H:%M:%S UTC")))
    if local.strftime("%H:%M") != instant.strftime("%H:%M"):
        assert instant.strftime("%H:%M") not in end.inner_text()
    assert not page.errors


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_week_of_timeline_on_the_deployment_page(served, open_page, scheme):
    _server, week, _live, ids = served
    deployment_id = ids[week.name]
    page = open_page(f"/deployments/{deployment_id}", color_scheme=scheme, timezone_id="Europe/Berlin")
    region = f"#timeline-{deployment_id}"
    day, week_bar = (page.locator(f"{region} svg.timeline-bar[data-span='{span}']") for span in ("24 h", "7 d"))
    expect(day).to_be_visible()
    for mode in ("Normal", "Maintenance", "Migrating", "Failed", "Stopped"):
        expect(week_bar.locator(f"g.tl-seg[data-mode='{mode}']").first).to_be_attached()
    expect(day.locator("g.tl-seg[data-mode='Migrating']")).to_have_count(0)
    failed = week_bar.locator("g.tl-seg[data-mode='Failed'] title")
    expect(failed).to_contain_text("(4 h 0 min) · by system: “1 of 1 container actions failed")
    # Patterns, not colour alone: the hatched, dotted, cross-hatched and striped modes use their pattern.
    for mode in ("maintenance", "migrating", "failed", "stopped"):
        assert week_bar.locator(f"g.tl-{mode} rect[fill='url(#tl-{deployment_id}-2-{mode})']").count() >= 1
        assert page.locator(f"pattern#tl-{deployment_id}-2-{mode}").count() == 1
    expect(page.locator(f"{region} .timeline-legend")).to_contain_text("Stopped")
    # The history's times are the same format as every other.
    first_time = page.locator(f"#history-rows-{deployment_id} time").first
    expect(first_time).to_have_text(re.compile(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d \(.+ ago\)$"))
    name = "deployment-week.png" if scheme == "light" else "deployment-week-dark.png"
    page.locator(region).scroll_into_view_if_needed()
    page.screenshot(path=str(ROOT / "docs" / name), full_page=False)
    assert not page.errors
