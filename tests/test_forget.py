"""Forgetting a stack whose containers are all gone (README "The dashboard", Stacks without
containers): ``DELETE /api/deployments/{id}`` and the dashboard's Forget button, against one real
``rsgo serve`` and the real Docker engine shared by this module; the button in real Chromium."""

from __future__ import annotations

import uuid

import pytest
import requests
import yaml
from playwright.sync_api import expect

from conftest import QUICK, SLOW_2S, Stack
from support import ServerProcess, put_mode, wait_until
from test_browser import browser, watched  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def estate(docker_client, tmp_path_factory):
    """One server; its config declares the stack ``declared`` (which has no container)."""
    root = tmp_path_factory.mktemp("forget")
    declared = f"fdecl{uuid.uuid4().hex[:6]}"
    config = root / "rsgo.yml"
    config.write_text(yaml.safe_dump({"stacks": {declared: {"maintenanceReminder": "1h"}}}))
    server = ServerProcess(root / "data", RSGO_CONFIG=str(config)).start()
    stacks: list[Stack] = []

    def make(prefix: str, *shorts: str, command=None) -> Stack:
        stack = Stack(docker_client, f"{prefix}{uuid.uuid4().hex[:6]}")
        stacks.append(stack)
        for short in shorts:
            stack.add(short, command=command)
        return stack

    yield server, make, declared
    server.stop()
    for stack in stacks:
        for container in docker_client.containers.list(all=True, filters={"label": f"rsgo.stack={stack.name}"}):
            container.remove(force=True)


def listed(server, name: str) -> dict | None:
    items = requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10).json()["items"]
    return next((d for d in items if d["name"] == name), None)


def seen_with(server, name: str, containers: int, timeout: float = 15) -> dict:
    return wait_until(lambda: (d := listed(server, name)) and d["containers"]["total"] == containers and d,
                      timeout, message=f"{name} listed with {containers} containers")


def remove_containers(stack: Stack) -> None:
    for container in stack.containers.values():
        container.remove(force=True)


def forget(server, ref, reason: str | None = "gone for good", **kwargs) -> requests.Response:
    body = {} if reason is None else {"reason": reason}
    return requests.delete(f"{server.url}/api/deployments/{ref}", headers=server.headers, json=body, timeout=60,
                           **kwargs)


def history(server, ref) -> list[dict]:
    answer = requests.get(f"{server.url}/api/deployments/{ref}/history", headers=server.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_a_stack_is_forgotten_only_once_its_containers_are_gone_and_comes_back_with_its_history(estate):
    server, make, _ = estate
    stack = make("fgone", "api", "worker")
    deployment_id = seen_with(server, stack.name, 2)["id"]
    # In Maintenance when it is forgotten: its stopped containers still count as containers.
    assert put_mode(server, deployment_id, "Maintenance", reason="before the move").status_code == 200

    refused = forget(server, deployment_id)
    assert refused.status_code == 409 and refused.headers["Content-Type"] == "application/problem+json"
    body = refused.json()
    assert body["code"] == "deployment_has_containers" and body["containers"] == 2, body
    assert "still has 2 containers" in body["detail"] and stack.container_name("api") in body["detail"]
    assert listed(server, stack.name) is not None

    remove_containers(stack)
    seen_with(server, stack.name, 0)
    answer = forget(server, stack.name, "moved to the new cluster")
    assert answer.status_code == 200, answer.text
    assert answer.json()["entry"]["outcome"] == "forgotten"

    # Gone from the list and from everything that acts on a stack, with a 404 that says why.
    assert listed(server, stack.name) is None
    gone = requests.get(f"{server.url}/api/deployments/{deployment_id}", headers=server.headers, timeout=10)
    assert gone.status_code == 404 and "was forgotten" in gone.json()["detail"], gone.text
    assert forget(server, deployment_id).status_code == 404
    assert put_mode(server, deployment_id, "Normal", reason="x").status_code == 404
    # Its history stays readable: the forgetting is in it with who, why and from where.
    entries = history(server, deployment_id)
    assert [e["outcome"] for e in entries[:2]] == ["forgotten", "succeeded"], entries
    assert entries[0]["actor"].startswith("token:") and entries[0]["actor"] == entries[1]["actor"]
    assert (entries[0]["source"], entries[0]["reason"]) == ("api", "moved to the new cluster")
    assert entries[0]["previousMode"] == entries[0]["newMode"] == "Maintenance"
    everyone = requests.get(f"{server.url}/api/history", params={"outcome": "forgotten"}, headers=server.headers,
                            timeout=10).json()["items"]
    assert stack.name in [e["deployment"] for e in everyone]
    session = server.login()
    assert stack.name in session.get(f"{server.url}/history", timeout=10).text
    page = session.get(f"{server.url}/deployments/{deployment_id}", timeout=10)
    assert page.status_code == 200 and "Forgotten" in page.text and "moved to the new cluster" in page.text

    # Its containers come back: the same row, in Normal (nothing stopped them), its history continued.
    stack.containers.clear()
    stack.add("api")
    back = seen_with(server, stack.name, 1)
    assert back["id"] == deployment_id and back["operationMode"] == "Normal", back
    entries = wait_until(lambda: (e := history(server, deployment_id)) and e[0]["outcome"] == "rediscovered" and e,
                         10, message="the rediscovered entry")
    assert [e["outcome"] for e in entries[:3]] == ["rediscovered", "forgotten", "succeeded"]
    assert (entries[0]["previousMode"], entries[0]["newMode"]) == ("Maintenance", "Normal")
    assert stack.is_running("api")  # enforcement of the old Maintenance did not stop the new container


def test_forgetting_is_refused_while_a_transition_runs_or_the_config_declares_the_stack(estate):
    server, make, declared = estate
    slow = make("fslow", "app", command=SLOW_2S)
    deployment_id = seen_with(server, slow.name, 1)["id"]
    started = put_mode(server, deployment_id, "Maintenance", reason="slow stop", wait=False)
    assert started.status_code == 202, started.text
    refused = forget(server, deployment_id)
    assert refused.status_code == 409 and refused.json()["code"] == "transition_in_progress", refused.text
    assert "changing mode" in refused.json()["detail"] or "unfinished" in refused.json()["detail"]

    assert seen_with(server, declared, 0)
    refused = forget(server, declared)
    assert refused.status_code == 409 and refused.json()["code"] == "declared_in_config", refused.text
    assert "remove it there" in refused.json()["detail"]
    # A body that is not ours is refused before anything is done.
    bad = requests.delete(f"{server.url}/api/deployments/{declared}", headers=server.headers,
                          json={"reason": "x", "force": True}, timeout=10)
    assert bad.status_code == 400 and bad.json()["field"] == "force"
    assert listed(server, declared) is not None


def test_the_forget_button_asks_for_a_reason_and_removes_the_row_in_every_browser(estate, watched):  # noqa: F811
    server, make, _ = estate
    stack = make("fbtn", "web", command=QUICK)
    keep = make("fkeep", "web", command=QUICK)
    deployment_id = seen_with(server, stack.name, 1)["id"]
    keep_id = seen_with(server, keep.name, 1)["id"]
    remove_containers(stack)
    seen_with(server, stack.name, 0)
    first = watched().open(server.url + "/")
    second = watched().open(server.url + "/")

    row = first.locator(f"#deployment-{deployment_id}")
    folded = first.locator("#without-containers")
    if folded.count():  # the stacks without containers are folded away (their buttons take no Tab)
        folded.locator("summary").click()
    # Only a stack without containers offers it.
    expect(first.locator(f"#deployment-{keep_id}").get_by_role("button", name=f"Forget {keep.name}")).to_have_count(0)
    row.get_by_role("button", name=f"Forget {stack.name}").click()
    form = first.get_by_role("form", name=f"Confirm forgetting {stack.name}")
    expect(form).to_be_visible()
    expect(form.get_by_label("Reason")).to_be_focused()
    form.get_by_label("Reason").fill("decommissioned last week")
    form.get_by_role("button", name=f"Forget {stack.name}").click()

    notice = first.locator("#stack-notices .stack-notice")
    expect(notice).to_contain_text(f"{stack.name} was forgotten", timeout=10_000)
    expect(notice).to_contain_text("decommissioned last week")
    expect(first.locator(f"#slot-{deployment_id}")).to_have_count(0)
    expect(second.locator(f"#slot-{deployment_id}")).to_have_count(0, timeout=15_000)  # pushed
    expect(second.locator(f"#deployment-{keep_id}")).to_be_visible()
    # The folded stacks without containers count one fewer (the config's declared stack is left).
    for page in (first, second):
        expect(page.locator("#without-containers summary")).to_have_text("1 stack without containers")
    # The history stays, naming the stack; the notice's link leads there.
    notice.get_by_role("link", name="Its history").click()
    expect(first.locator("h1")).to_contain_text(stack.name)
    expect(first.locator(".history tr", has_text="forgotten").first).to_contain_text("decommissioned last week")
