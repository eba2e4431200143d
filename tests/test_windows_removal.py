"""Ad-hoc maintenance windows (README "Maintenance windows"): the window check's retries stay out of the
history, and removing a window that holds the stack's Maintenance ends it as the remover's change, asked
first in the page (what starts again, and why). Real Docker engine; the page in real Chromium."""

from __future__ import annotations

import threading

import pytest
import requests
from playwright.sync_api import expect

from conftest import SLOW_2S, wait_for_deployment
from rsgo.models import MaintenanceWindow
from support import put_mode, wait_until
from test_browser import browser, watched  # noqa: F401 - fixtures

# A PID 1 whose TERM trap takes 4 s: a stop (a transition) that runs long enough to be asked into.
SLOW_4S = ["sh", "-c", "trap 'sleep 4; exit 0' TERM; while :; do sleep 0.1; done"]


def history(client, name) -> list[dict]:
    return client.get(f"/api/deployments/{name}/history?limit=50").json["items"]


def schedule_entries(client, name) -> list[tuple]:
    return [(e["outcome"], e["requestedMode"], (e["error"] or "").split(":")[0])
            for e in history(client, name) if e["source"] == "schedule"]


@pytest.fixture
def served(make_app, make_stack):
    """An app without background jobs (the test runs the window check itself) and a stack whose api stops slowly."""
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api", command=SLOW_4S)
    app = make_app(background=False)
    client = app.test_client()
    app.extensions["rsgo"].environments.resync_all()
    wait_for_deployment(client, stack.name, 2)
    return stack, app, client


def while_changing(client, name, mode: str, during) -> None:
    """Run ``during()`` while a person's change of ``name`` to ``mode`` runs (its transition is written)."""
    answer = {}
    person = threading.Thread(target=lambda: answer.update(response=put_mode(client, name, mode, reason="by hand")))
    person.start()
    try:
        wait_until(lambda: client.get(f"/api/deployments/{name}").json["transitionInProgress"], 20,
                   message="the person's transition to start")
        during()
    finally:
        person.join(60)
    assert answer["response"].status_code == 200, answer["response"].json


def test_the_window_checks_retries_are_not_recorded_each_time(served):
    stack, app, client = served
    windows = app.extensions["rsgo"].windows

    def add_window_and_check_three_times():
        added = client.post(f"/api/deployments/{stack.name}/windows", json={"duration": "1h", "reason": "patch"})
        assert added.status_code == 201, added.json
        for _ in range(3):  # what the periodic check does every few seconds
            windows.evaluate()

    # A person's change to Stopped runs: the window cannot start Maintenance. Said once, not at every check.
    while_changing(client, stack.name, "Stopped", add_window_and_check_three_times)
    assert schedule_entries(client, stack.name) == [("rejected", "Maintenance", "transition_in_progress")]

    # Back in Normal, the window (still active) takes the stack into Maintenance at the next check.
    windows.evaluate()
    assert put_mode(client, stack.name, "Normal", reason="done").status_code == 200
    windows.evaluate()  # a person ended Stopped; the window now starts Maintenance: its own, recorded
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance"
    assert schedule_entries(client, stack.name)[0] == ("succeeded", "Maintenance", "")


def test_a_retry_while_a_transition_already_goes_there_is_not_recorded_at_all(served):
    stack, app, client = served
    windows = app.extensions["rsgo"].windows

    def add_window_and_check_three_times():
        added = client.post(f"/api/deployments/{stack.name}/windows", json={"duration": "1h", "reason": "patch"})
        assert added.status_code == 201, added.json
        for _ in range(3):
            windows.evaluate()

    # The person's change to Maintenance does what the window wants: asking again would be a no-op.
    while_changing(client, stack.name, "Maintenance", add_window_and_check_three_times)
    assert schedule_entries(client, stack.name) == []
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance"


def test_removing_a_window_through_the_api_ends_its_maintenance_as_the_callers_change(served):
    stack, app, client = served
    windows = app.extensions["rsgo"].windows
    added = client.post(f"/api/deployments/{stack.name}/windows", json={"duration": "2h", "reason": "patch"}).json
    assert client.get(f"/api/deployments/{stack.name}").json["trigger"]["source"] == "schedule"
    assert not stack.is_running("api")
    path = f"/api/deployments/{stack.name}/windows/{added['id']}"

    twice = client.delete(f"{path}?reason=a", json={"reason": "b"})
    assert twice.status_code == 400 and twice.json["field"] == "reason"
    removed = client.delete(path, json={"reason": "patched early"})

    assert removed.status_code == 204
    assert stack.is_running("api")
    latest = history(client, stack.name)[0]
    assert (latest["newMode"], latest["source"], latest["actor"], latest["reason"]) == (
        "Normal", "api", app.config["TEST_ACTOR"], "patched early")
    assert not MaintenanceWindow.select().where(MaintenanceWindow.id == added["id"]).exists()
    # The removal left no suppression behind: a new window acts at once.
    again = client.post(f"/api/deployments/{stack.name}/windows?reason=x", json={"duration": "1h"}).json
    windows.evaluate()
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance"
    assert client.delete(f"/api/deployments/{stack.name}/windows/{again['id']}?reason=by query").status_code == 204
    assert history(client, stack.name)[0]["reason"] == "by query"


def test_removing_an_active_window_in_the_page_asks_says_what_starts_and_records_the_person(
        make_stack, make_server, watched):  # noqa: F811 - fixture
    stack = make_stack("shop")
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api", command=SLOW_2S)
    stack.add("worker")
    server = make_server().start()
    deployment_id = wait_until(lambda: _deployment(server, stack.name, 3), 15, message="discovery")["id"]
    page = watched().open(f"{server.url}/deployments/{deployment_id}")

    adhoc = page.get_by_role("form", name="Maintenance for a few hours")
    adhoc.get_by_role("spinbutton").fill("0.5")
    adhoc.get_by_label("Reason").fill("disk swap")
    adhoc.get_by_role("button", name="Start maintenance now, end it by itself").click()
    windows = page.locator(f"#windows-{deployment_id}")
    expect(windows.get_by_text("active now")).to_be_visible(timeout=30_000)
    wait_until(lambda: _deployment(server, stack.name)["operationMode"] == "Maintenance", 30, message="Maintenance")

    page.get_by_role("button", name="Remove window ad hoc").click()
    form = page.get_by_role("form", name="Remove window ad hoc")
    expect(form).to_be_visible()
    expect(form).to_contain_text(f"Leaving Maintenance starts {stack.container_name('api')}, "
                                 f"{stack.container_name('worker')}")
    expect(form.get_by_label("Reason")).to_be_focused()
    form.get_by_role("button", name="End Maintenance and remove the window").click()
    expect(form.get_by_label("Reason")).to_have_js_property("validity.valueMissing", True)  # required: not sent
    assert _deployment(server, stack.name)["operationMode"] == "Maintenance"

    form.get_by_label("Reason").fill("done early")
    form.get_by_role("button", name="End Maintenance and remove the window").click()
    expect(windows).to_contain_text("No windows", timeout=10_000)
    wait_until(lambda: _deployment(server, stack.name)["operationMode"] == "Normal", 30, message="Normal")
    assert stack.is_running("api") and stack.is_running("worker")
    latest = requests.get(f"{server.url}/api/deployments/{deployment_id}/history", headers=server.headers,
                          timeout=10).json()["items"][0]
    assert (latest["newMode"], latest["source"], latest["actor"], latest["reason"]) == (
        "Normal", "ui", "admin", "done early")
    expect(page.locator(f"#history-rows-{deployment_id}")).to_contain_text("done early", timeout=10_000)


def _deployment(server, name, containers=None):
    response = requests.get(f"{server.url}/api/deployments/{name}", headers=server.headers, timeout=10)
    body = response.json() if response.status_code == 200 else None
    if body is None or (containers is not None and body["containerCounts"]["total"] != containers):
        return None
    return body
