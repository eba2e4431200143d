"""One mode change for several stacks (README "The dashboard", Bulk changes): the API's per-stack
results and the dashboard's selection bar in real Chromium, against one real ``rsgo serve`` and the
real Docker engine shared by this module. Each stack gets its own transition; a refusal refuses only
its stack."""

from __future__ import annotations

import uuid

import pytest
import requests
from playwright.sync_api import expect

from conftest import Stack
from support import ServerProcess, put_mode, wait_until
from test_browser import browser, watched  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def estate(docker_client, tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("bulk") / "data").start()
    stacks: list[Stack] = []

    def make(prefix: str) -> tuple[Stack, int]:
        """A stack of two running containers, once the server lists it."""
        stack = Stack(docker_client, f"{prefix}{uuid.uuid4().hex[:6]}")
        stacks.append(stack)
        stack.add("api")
        stack.add("worker")
        found = wait_until(lambda: next((d for d in requests.get(
            f"{server.url}/api/deployments", headers=server.headers, timeout=10).json()["items"]
            if d["name"] == stack.name and d["containers"]["total"] == 2), None), 15, message=f"{stack.name} listed")
        return stack, found["id"]

    yield server, make
    server.stop()
    for stack in stacks:
        for container in docker_client.containers.list(all=True, filters={"label": f"rsgo.stack={stack.name}"}):
            container.remove(force=True)


def bulk(server, headers=None, **body) -> requests.Response:
    return requests.post(f"{server.url}/api/deployments/operation-mode", json=body,
                         headers=headers or server.headers, timeout=60)


def mode_of(server, deployment_id: int) -> str:
    return requests.get(f"{server.url}/api/deployments/{deployment_id}", headers=server.headers,
                        timeout=10).json()["operationMode"]


def stopped(stack: Stack) -> bool:
    return not stack.is_running("api") and not stack.is_running("worker")


def test_the_api_changes_each_stack_on_its_own_and_answers_each_result(estate):
    server, make = estate
    (a, a_id), (b, b_id), (c, c_id) = make("ba"), make("bb"), make("bc")
    assert put_mode(server, c_id, "Stopped", reason="retired").status_code == 200

    answer = bulk(server, deployments=[a.name, b_id, c.name, "no-such-stack", a_id], mode="Maintenance",
                  reason="bulk backup")
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert (body["mode"], body["started"], body["unchanged"], body["refused"]) == ("Maintenance", 2, 0, 3), body
    items = body["items"]
    assert [(i["ref"], i["result"], i["status"], i["code"]) for i in items] == [
        (a.name, "started", 202, None), (str(b_id), "started", 202, None),
        (c.name, "refused", 409, "transition_not_allowed"), ("no-such-stack", "refused", 404, "not_found"),
        (str(a_id), "refused", 409, "duplicate")]
    assert f"{c.name} cannot go from Stopped to Maintenance" in items[2]["message"]
    assert items[2]["allowedModes"] == ["Normal"] and items[2]["deploymentId"] == c_id
    assert items[0]["transition"]["url"] == f"/api/transitions/{items[0]['transition']['id']}"

    # The two started changes really ran, each its own transition; the refused stack was not touched.
    wait_until(lambda: stopped(a) and stopped(b), 30, message="both stacks' containers to stop")
    wait_until(lambda: mode_of(server, a_id) == mode_of(server, b_id) == "Maintenance", 15, message="Maintenance")
    assert mode_of(server, c_id) == "Stopped"
    for deployment_id, outcome in ((a_id, "succeeded"), (b_id, "succeeded"), (c_id, "rejected")):
        latest = requests.get(f"{server.url}/api/deployments/{deployment_id}/history", headers=server.headers,
                              timeout=10).json()["items"][0]
        assert (latest["outcome"], latest["reason"], latest["source"]) == (outcome, "bulk backup", "api"), latest

    # Already there: unchanged, not refused.
    again = bulk(server, deployments=[a_id], newMode="maintenance").json()
    assert (again["unchanged"], again["items"][0]["result"], again["items"][0]["status"]) == (1, "unchanged", 200)


def test_a_bad_request_or_a_caller_without_operate_changes_nothing(estate):
    server, make = estate
    stack, deployment_id = make("bx")
    for body, field in (({"deployments": [], "mode": "Maintenance"}, "deployments"),
                        ({"deployments": [deployment_id], "mode": "Maintenance", "wait": True}, "wait"),
                        ({"deployments": [[deployment_id]], "mode": "Maintenance"}, "deployments")):
        refused = bulk(server, **body)
        assert refused.status_code == 400 and refused.json()["field"] == field, refused.text
    assert bulk(server, deployments=[deployment_id], mode="Sleeping").json()["code"] == "invalid_mode"
    reader = {"Authorization": f"Bearer {server.create_token('read')}"}
    refused = bulk(server, reader, deployments=[deployment_id], mode="Maintenance")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert mode_of(server, deployment_id) == "Normal" and stack.is_running("api")


def test_selecting_three_stacks_starts_two_changes_and_shows_the_refusal(estate, watched):  # noqa: F811
    server, make = estate
    (x, x_id), (y, y_id), (z, z_id) = make("bsx"), make("bsy"), make("bsz")
    assert put_mode(server, z_id, "Stopped", reason="retired").status_code == 200
    page = watched().open(server.url + "/")

    bar = page.get_by_role("form", name="Change the mode of the selected stacks")
    expect(bar).to_be_hidden()
    for stack in (x, y, z):
        page.get_by_role("checkbox", name=f"Select {stack.name}").check()
    expect(bar).to_be_visible()
    expect(bar.locator("#bulk-count")).to_have_text("3 selected")
    # Meanwhile a container of x stops and starts again: pushes replace x's row, which stays selected.
    x.containers["worker"].stop(timeout=1)
    expect(page.locator(f"#deployment-{x_id} .containers-count")).to_contain_text("1/2", timeout=10_000)
    x.containers["worker"].start()
    expect(page.locator(f"#deployment-{x_id} .containers-count")).to_contain_text("2/2", timeout=10_000)
    expect(page.get_by_role("checkbox", name=f"Select {x.name}")).to_be_checked()
    expect(bar.locator("#bulk-count")).to_have_text("3 selected")
    bar.get_by_role("button", name="Maintenance").click()

    confirm = page.get_by_role("form", name="Confirm the change of 3 stacks to Maintenance")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(f"{z.name}")
    expect(confirm).to_contain_text("will be refused: Stopped cannot go to Maintenance")
    expect(confirm.get_by_label("Reason")).to_be_focused()
    confirm.get_by_label("Reason").fill("quarterly patching")
    confirm.get_by_role("button", name="Change 3 stacks to Maintenance").click()

    result = page.get_by_role("status", name="Results of the change to Maintenance")
    expect(result).to_contain_text("2 started, 1 refused", timeout=10_000)
    expect(result.locator("li[data-result=started]")).to_have_count(2)
    refused = result.locator("li[data-result=refused]")
    expect(refused).to_contain_text(z.name)
    expect(refused).to_contain_text(f"{z.name} cannot go from Stopped to Maintenance")
    # Each started change goes on in its own row, live; the selection is cleared.
    for deployment_id in (x_id, y_id):
        expect(page.locator(f"#deployment-{deployment_id} .mode")).to_contain_text("Maintenance", timeout=15_000)
    expect(page.locator(f"#deployment-{z_id} .mode")).to_contain_text("Stopped")
    expect(bar).to_be_hidden()
    expect(page.get_by_role("checkbox", name=f"Select {x.name}")).not_to_be_checked()
    wait_until(lambda: stopped(x) and stopped(y), 30, message="the containers to really stop")
    assert mode_of(server, z_id) == "Stopped"
    # Clear selection hides the bar again. On a phone the bar and the results fit the window.
    page.get_by_role("checkbox", name=f"Select {z.name}").check()
    expect(bar.locator("#bulk-count")).to_have_text("1 selected")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(bar.get_by_role("button", name="Stopped")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate("document.querySelector('.bulk-result').getBoundingClientRect().right") <= 390
    bar.get_by_role("button", name="Clear selection").click()
    expect(bar).to_be_hidden()
    expect(page.get_by_role("checkbox", name=f"Select {z.name}")).not_to_be_checked()
