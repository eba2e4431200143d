"""The mode-change confirmation in real Chromium against a real `rsgo serve` and a real Docker engine:
an observer's hold said before anyone clicks, Force (recorded as forced), focus on Reason, Escape,
Cancel apart from the confirm button, and Stopped looking destructive (README "The dashboard")."""

from __future__ import annotations

import textwrap
import uuid

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from conftest import Stack
from support import ROOT, ServerProcess, launch_chromium, wait_until
from test_browser import Watched

OBSERVER = "erp-flag"


def _stack(docker_client, prefix: str, shorts: tuple[str, ...]) -> Stack:
    stack = Stack(docker_client, f"{prefix}{uuid.uuid4().hex[:6]}")
    for short in shorts:
        stack.add(short)
    return stack


def _detail(server, name: str) -> dict | None:
    answer = requests.get(f"{server.url}/api/deployments/{name}", headers=server.headers, timeout=10)
    return answer.json() if answer.status_code == 200 else None


@pytest.fixture(scope="module")
def estate(docker_client, tmp_path_factory):
    """One server for the module: ``held`` in Maintenance held by a file observer reading "1", ``plain`` Normal."""
    root = tmp_path_factory.mktemp("confirm-flow")
    held_stack = _stack(docker_client, "held", ("api", "worker"))
    plain_stack = _stack(docker_client, "plain", ("api", "worker"))
    held, plain = held_stack.name, plain_stack.name
    flag = root / "erp-flag"
    flag.write_text("1")
    config = root / "rsgo.yml"
    config.write_text(textwrap.dedent(f"""\
        stacks:
          {held}:
            maintenanceObserver: {{type: file, name: {OBSERVER}, path: '{flag}', mode: content,
                                   maintenanceValue: "1", normalValue: "0", pollingInterval: 1s}}
        """))
    server = ServerProcess(root / "data", RSGO_CONFIG=str(config)).start()
    try:
        for name in (held, plain):
            wait_until(lambda n=name: (_detail(server, n) or {}).get("containerCounts", {}).get("total") == 2, 20,
                       message=f"discovery of {name}")
        wait_until(lambda: _detail(server, held)["operationMode"] == "Maintenance", 20,
                   message="the observer to put the held stack into Maintenance")
        yield {"server": server, "held": held, "plain": plain, "ids": {
            held: _detail(server, held)["id"], plain: _detail(server, plain)["id"]}}
    finally:
        server.stop()
        for name in (held, plain):
            for container in docker_client.containers.list(all=True, filters={"label": f"rsgo.stack={name}"}):
                container.remove(force=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    opened = []

    def make(url: str, viewport=None):
        watched = Watched(browser, viewport)
        opened.append(watched)
        return watched.open(url)

    yield make
    for watched in opened:
        assert not watched.errors, watched.errors
        assert not watched.dialogs, "the confirmation used window.confirm"
        watched.close()


HELD_LINE = "Held by observer {observer}, which reads “1”: Normal or Stopped will be refused unless forced."


@pytest.mark.parametrize("viewport", [None, {"width": 390, "height": 844}], ids=["desktop", "phone"])
def test_an_observers_hold_is_shown_before_anyone_clicks(estate, page, viewport):
    server, held, plain = estate["server"], estate["held"], estate["plain"]
    dashboard = page(server.url + "/", viewport)
    row = dashboard.locator(f"#deployment-{estate['ids'][held]}")
    expect(row.locator(".observer-hold")).to_contain_text(HELD_LINE.format(observer=OBSERVER))
    expect(dashboard.locator(f"#deployment-{estate['ids'][plain]} .observer-hold")).to_have_count(0)
    detail = page(f"{server.url}/deployments/{estate['ids'][held]}", viewport)
    expect(detail.locator(f"#mode-{estate['ids'][held]} .observer-hold")).to_contain_text(
        HELD_LINE.format(observer=OBSERVER))
    # The line wraps inside the row (the page's own width is the layout's test: other stacks may be wider).
    for shown in (row.locator(".observer-hold"), detail.locator(".observer-hold")):
        box = shown.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= shown.page.viewport_size["width"], box


def test_normal_is_refused_without_force_and_done_with_it_and_the_history_says_forced(estate, page):
    server, held = estate["server"], estate["held"]
    deployment_id = estate["ids"][held]
    dashboard = page(server.url + "/")

    dashboard.get_by_role("button", name=f"Change {held} to Normal").click()
    form = dashboard.get_by_role("form", name=f"Confirm the change of {held} to Normal")
    force = form.get_by_role("checkbox", name=f"Force: change to Normal although {OBSERVER} still reads maintenance")
    expect(force).not_to_be_checked()
    # The checkbox says what forcing does.
    expect(form.locator(".force-option")).to_contain_text("the history records the change as forced")
    form.get_by_label("Reason").fill("ERP is done, flag is stale")
    form.get_by_role("button", name="Change to Normal").click()
    problem = dashboard.locator(f"#mode-change-{deployment_id} .problem")
    expect(problem).to_contain_text(f"observer {OBSERVER} still reads maintenance")
    assert _detail(server, held)["operationMode"] == "Maintenance"

    problem.get_by_role("button", name="Dismiss").click()
    dashboard.get_by_role("button", name=f"Change {held} to Normal").click()
    form.get_by_label("Reason").fill("ERP is done, flag is stale")
    form.get_by_role("checkbox", name=f"Force: change to Normal although {OBSERVER} still reads maintenance").check()
    # For the README: the confirmation, with the observer's hold said and Force ticked.
    form.screenshot(path=str(ROOT / "docs" / "confirm-force.png"))
    form.get_by_role("button", name="Change to Normal").click()
    expect(dashboard.locator(f"#mode-change-{deployment_id}")).to_contain_text("(forced)")
    expect(dashboard.locator(f"#deployment-{deployment_id} .mode")).to_have_text("🟢 Normal", timeout=60_000)
    expect(dashboard.locator(f"#deployment-{deployment_id} .observer-hold")).to_have_count(0)

    history = requests.get(f"{server.url}/api/deployments/{held}/history", headers=server.headers, timeout=10)
    entries = history.json()["items"]
    assert [(e["outcome"], e["forced"]) for e in entries[:2]] == [("succeeded", True), ("rejected", False)]
    detail = page(f"{server.url}/deployments/{deployment_id}")
    first = detail.locator(f"#history-rows-{deployment_id} tr").first
    expect(first).to_contain_text("Maintenance → Normal")
    expect(first.locator(".forced-flag")).to_have_text("forced")


def test_the_confirmation_takes_focus_closes_on_escape_and_keeps_cancel_apart(estate, page):
    server, plain = estate["server"], estate["plain"]
    deployment_id = estate["ids"][plain]
    dashboard = page(server.url + "/")
    opener = dashboard.get_by_role("button", name=f"Change {plain} to Maintenance")
    opener.click()
    form = dashboard.get_by_role("form", name=f"Confirm the change of {plain} to Maintenance")
    expect(form.get_by_label("Reason")).to_be_focused()

    confirm = form.get_by_role("button", name="Change to Maintenance")
    cancel = form.get_by_role("button", name="Cancel")
    styles = "b => { const s = getComputedStyle(b); return [s.backgroundColor, s.borderColor]; }"
    assert confirm.evaluate(styles)[0] != cancel.evaluate(styles)[0], "Cancel looks like the confirm button"
    assert cancel.evaluate(styles)[0] in ("rgba(0, 0, 0, 0)", "transparent")
    # Its label must be seen: the colour of the text around it, not the white of a primary button's label.
    text_colour = "e => getComputedStyle(e).color"
    assert cancel.evaluate(text_colour) == form.evaluate(text_colour) != confirm.evaluate(text_colour)
    gap = form.evaluate("f => f.querySelector('.cancel').getBoundingClientRect().left"
                        " - f.querySelector('.confirm').getBoundingClientRect().right")
    assert gap >= 16, f"Cancel sits {gap}px from the confirm button"

    dashboard.keyboard.press("Escape")
    expect(form).to_have_count(0)
    expect(opener).to_be_focused()
    assert _detail(server, plain)["operationMode"] == "Normal"
    expect(dashboard.locator(f"#mode-change-{deployment_id}")).to_be_empty()


FAILED_RED = {"light": "rgb(180, 35, 24)", "dark": "rgb(255, 123, 114)"}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_stopped_looks_destructive_and_says_what_it_does(estate, page, scheme):
    server, plain = estate["server"], estate["plain"]
    dashboard = page(server.url + "/")
    dashboard.emulate_media(color_scheme=scheme)
    dashboard.get_by_role("button", name=f"Change {plain} to Stopped").click()
    form = dashboard.get_by_role("form", name=f"Confirm the change of {plain} to Stopped")
    confirm = form.get_by_role("button", name="Change to Stopped and stop 2 containers")
    expect(confirm).to_have_class("confirm danger")
    expect(form).to_have_class("mode-change-form destructive")
    expect(form.locator(".destructive-note")).to_contain_text("the ignored ones (a database) too")
    # --rsgo-failed (static/rsgo.css), the colour of Failed, in this scheme.
    assert confirm.evaluate("b => getComputedStyle(b).backgroundColor") == FAILED_RED[scheme]
    form.get_by_role("button", name="Cancel").click()
    expect(form).to_have_count(0)
