"""Enforcement's edges against a real engine (docs/design.md#enforcement): it holds in Stopped as in
Maintenance, keeps out of a running transition's way, and records a re-stop the engine refuses."""

from __future__ import annotations

import threading

import pytest

from conftest import wait_for_deployment
from docker_fault_proxy import FaultProxy
from support import put_mode, wait_until
from test_crash_and_concurrency import received_term, slow_stopper


@pytest.fixture
def fault_proxy():
    front = FaultProxy()
    yield front
    front.close()


def enforced_entries(client, stack_name: str) -> list[dict]:
    return [e for e in client.get(f"/api/deployments/{stack_name}/history").json["items"] if e["outcome"] == "enforced"]


def test_a_container_started_by_hand_in_stopped_mode_is_stopped_again(client, make_stack):
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})  # Stopped stops ignored containers too
    stack.add("api")
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Stopped", reason="decommissioned").status_code == 200

    stack.containers["db"].start()

    [entry] = wait_until(lambda: enforced_entries(client, stack.name), 15, message="the enforced entry")
    assert entry["reason"] == f"{stack.container_name('db')} started while the stack is in Stopped; stopped it again"
    assert (entry["previousMode"], entry["newMode"], entry["error"]) == ("Stopped", "Stopped", None)
    wait_until(lambda: not stack.is_running("db"), 15, message="db stopped again")
    assert not stack.is_running("api")


def test_enforcement_never_acts_while_a_transition_holds_the_stack(client, make_stack):
    stack = make_stack()
    stack.add("db", command=slow_stopper(3), labels={"rsgo.maintenance": "ignore"})  # Stopped stops it, slowly
    stack.add("api")
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    assert not stack.is_running("api") and stack.is_running("db")

    # Maintenance -> Stopped: both modes are enforced, and api is in the stopped-set all along.
    answers = []
    change = threading.Thread(target=lambda: answers.append(put_mode(client, stack.name, "Stopped")))
    change.start()
    wait_until(lambda: received_term(stack, "db"), 15, message="the transition to begin stopping db")
    stack.containers["api"].start()  # by hand, while the transition holds the stack
    change.join(timeout=60)

    assert answers and answers[0].status_code == 200, answers
    assert not stack.is_running("db")
    # The transition owned the stack while api started: enforcement left it alone (no entry, still running).
    wait_until(lambda: enforced_entries(client, stack.name)
               or client.get(f"/api/deployments/{stack.name}").json["containerCounts"]["running"] == 1, 15,
               message="discovery to have seen api start (or enforcement to have acted)")
    assert enforced_entries(client, stack.name) == []
    assert stack.is_running("api")


def test_a_re_stop_the_engine_refuses_is_recorded_with_its_error(make_app, make_stack, fault_proxy, monkeypatch):
    stack = make_stack()
    stack.add("api")
    monkeypatch.setenv("DOCKER_HOST", fault_proxy.url)
    client = make_app().test_client()
    wait_for_deployment(client, stack.name, 1)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    fault_proxy.fail_stop(stack.container_name("api"))

    stack.containers["api"].start()

    [entry] = wait_until(lambda: enforced_entries(client, stack.name), 15, message="the enforced entry")
    assert entry["reason"] == (f"{stack.container_name('api')} started while the stack is in Maintenance; "
                               "stopping it again failed")
    assert "injected failure" in entry["error"]
    assert stack.is_running("api")  # the engine refused: it runs, and the history says so
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance"
