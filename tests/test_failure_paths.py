"""Failure paths of a transition against a real Docker engine (README "Modes", docs/design.md): a stop the
engine refuses, leaving Failed, modes that touch no container, a dependency that fails or is never ready.
The engine's refusal is injected by tests/docker_fault_proxy.py, in front of the real engine's socket."""

from __future__ import annotations

import time

import pytest

from conftest import wait_for_deployment
from docker_fault_proxy import FaultProxy
from support import put_mode

NEVER_HEALTHY = {"test": ["CMD", "false"], "interval": 200_000_000, "retries": 1}  # 0.2 s, in nanoseconds


@pytest.fixture
def proxy():
    front = FaultProxy()
    yield front
    front.close()


@pytest.fixture
def proxied_client(make_app, proxy, monkeypatch):
    """An app whose Docker calls go through ``proxy`` (to the real engine)."""

    def make(**environ):
        monkeypatch.setenv("DOCKER_HOST", proxy.url)
        app = make_app(**environ)
        return app.test_client()

    return make


def results_of(response) -> dict[str, dict]:
    return {c["name"]: c for c in response.json["transition"]["containers"]}


def test_a_container_that_fails_to_stop_makes_the_deployment_failed_and_leaving_failed_restarts_the_rest(
        make_stack, proxy, proxied_client):
    stack = make_stack()
    stack.add("api")
    stack.add("worker")
    client = proxied_client()
    wait_for_deployment(client, stack.name, 2)
    proxy.fail_stop(stack.container_name("worker"))

    response = put_mode(client, stack.name, "Maintenance", reason="backup")

    assert response.status_code == 502, response.json
    assert response.json["code"] == "container_action_failed"
    results = results_of(response)
    assert results[stack.container_name("api")]["result"] == "stopped"
    assert results[stack.container_name("worker")]["result"] == "failed"
    assert "injected failure" in results[stack.container_name("worker")]["error"]
    detail = client.get(f"/api/deployments/{stack.name}").json
    assert detail["operationMode"] == "Failed"
    assert detail["stoppedSet"] == [stack.container_name("api")]  # what the partial Maintenance stopped
    assert not stack.is_running("api") and stack.is_running("worker")
    latest = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (latest["outcome"], latest["previousMode"], latest["newMode"]) == ("failed", "Normal", "Failed")
    assert "injected failure" in latest["error"]

    # Leaving Failed to Normal starts what the partial Maintenance left stopped (the engine answers again).
    proxy._rules.clear()
    response = put_mode(client, stack.name, "Normal", reason="fixed")

    assert response.status_code == 200, response.json
    assert results_of(response)[stack.container_name("api")]["result"] == "started"
    assert stack.is_running("api") and stack.is_running("worker")
    detail = client.get(f"/api/deployments/{stack.name}").json
    assert (detail["operationMode"], detail["stoppedSet"]) == ("Normal", [])


@pytest.mark.parametrize("target", ["Maintenance", "Stopped"])
def test_leaving_failed_for_maintenance_or_stopped_stops_what_still_runs(make_stack, proxy, proxied_client, target):
    stack = make_stack()
    stack.add("api")
    stack.add("worker")
    client = proxied_client()
    wait_for_deployment(client, stack.name, 2)
    proxy.fail_stop(stack.container_name("worker"))
    assert put_mode(client, stack.name, "Maintenance").status_code == 502
    proxy._rules.clear()

    response = put_mode(client, stack.name, target, reason="try again")

    assert response.status_code == 200, response.json
    results = results_of(response)
    assert results[stack.container_name("worker")]["result"] == "stopped"
    assert results[stack.container_name("api")]["result"] == "already-stopped"
    assert not stack.is_running("api") and not stack.is_running("worker")
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == target
    # Both are rsgo's to start again: the one the failed attempt stopped and the one stopped now.
    assert put_mode(client, stack.name, "Normal").status_code == 200
    assert stack.is_running("api") and stack.is_running("worker")


def test_migrating_and_failed_touch_no_container(make_stack, proxy, proxied_client):
    stack = make_stack()
    stack.add("api")
    stack.add("done", running=False)  # a stopped one stays stopped too
    client = proxied_client()
    wait_for_deployment(client, stack.name, 2)
    started_at = stack.state("api")["StartedAt"]
    before = len(proxy.seen)

    for target in ("Migrating", "Failed"):
        response = put_mode(client, stack.name, target, reason=f"bookkeeping: {target}")
        assert response.status_code == 200, response.json
        assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == target

    assert [line for line in proxy.container_actions() if line in proxy.seen[before:]] == []
    assert stack.is_running("api") and stack.state("api")["StartedAt"] == started_at
    assert not stack.is_running("done")


def test_dependents_are_not_started_after_their_dependency_fails(client, make_stack):
    stack = make_stack()
    stack.add("db")
    stack.add("api", labels={"rsgo.depends_on": stack.container_name("db")})
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    # The dependency can no longer start: its command does not exist (same name, as compose recreates).
    stack.containers["db"].remove(force=True)
    stack.add("db", command=["/does/not/exist"], running=False)

    response = put_mode(client, stack.name, "Normal")

    assert response.status_code == 502, response.json
    results = results_of(response)
    assert results[stack.container_name("db")]["result"] == "failed"
    assert results[stack.container_name("api")]["result"] == "failed"
    assert results[stack.container_name("api")]["error"] == (
        f"not started: its dependency {stack.container_name('db')} failed to start")
    assert not stack.is_running("api"), "a dependent was started without its dependency"
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Failed"


def test_a_dependency_never_ready_within_its_start_timeout_fails_its_dependent(client, make_stack):
    stack = make_stack()
    stack.add("db", healthcheck=NEVER_HEALTHY, labels={"rsgo.start_timeout": "2s"})
    stack.add("api", labels={"rsgo.depends_on": stack.container_name("db")})
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    began = time.monotonic()
    response = put_mode(client, stack.name, "Normal")
    took = time.monotonic() - began

    assert response.status_code == 502, response.json
    results = results_of(response)
    assert results[stack.container_name("db")]["result"] == "started"  # it runs, it is just never healthy
    error = results[stack.container_name("api")]["error"]
    assert results[stack.container_name("api")]["result"] == "failed"
    assert error.startswith(f"not started: dependency {stack.container_name('db')} not ready after 2s"), error
    assert not stack.is_running("api")
    # The label's 2 s, not the default start timeout (60 s), bounded the wait.
    assert 2 <= took < 15, took
