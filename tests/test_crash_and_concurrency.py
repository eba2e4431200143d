"""Crashes, concurrent requests, an unreachable engine and event-driven discovery,
against a real Docker engine and, where the process matters, a real ``rsgo serve``.
"""

from __future__ import annotations

import threading
import time
from functools import wraps

import requests

from support import put_mode, wait_until


def slow_stopper(seconds: int) -> list[str]:
    """A PID 1 that notes SIGTERM in /tmp/term (so a test sees Docker began stopping it), then takes
    ``seconds`` to exit."""
    return ["sh", "-c", f"trap 'touch /tmp/term; sleep {seconds}; exit 0' TERM; while :; do sleep 0.1; done"]


MISSING_SOCKET = "unix:///tmp/rsgo-test-does-not-exist.sock"


# -- helpers for a real server -------------------------------------------------------------

def get(server, path: str) -> requests.Response:
    return requests.get(f"{server.url}{path}", headers=server.headers, timeout=30)


def wait_for_server_deployment(server, stack_name: str, containers: int, timeout: float = 15) -> dict:
    def seen():
        response = get(server, f"/api/deployments/{stack_name}")
        if response.status_code == 200 and response.json()["containerCounts"]["total"] == containers:
            return response.json()
        return None

    return wait_until(seen, timeout, interval=0.1, message=f"{stack_name} with {containers} containers")


def wait_for_transition_end(server, transition_id: int, timeout: float) -> dict:
    def ended():
        body = get(server, f"/api/transitions/{transition_id}").json()
        return body if body["outcome"] != "running" else None

    return wait_until(ended, timeout, interval=0.1, message=f"transition {transition_id} to finish")


def history(server, stack_name: str) -> list[dict]:
    response = get(server, f"/api/deployments/{stack_name}/history?limit=500")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def received_term(stack, short: str) -> bool:
    """Docker has sent SIGTERM to the container (it is still running its slow trap)."""
    return stack.containers[short].exec_run(["test", "-f", "/tmp/term"]).exit_code == 0


def in_parallel(*calls):
    """Run the calls in threads released together by a barrier; results in call order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request did not return within 120 s"
    if errors:
        raise errors[0]
    return results


# -- 1. crash safety -----------------------------------------------------------------------

def test_a_transition_killed_mid_way_is_resumed_and_finished_on_restart(make_server, make_stack):
    stack = make_stack("crash")
    shorts = [f"c{i}" for i in range(4)]
    for short in shorts:  # one dependency level, each takes ~4 s to stop
        stack.add(short, command=slow_stopper(4))
    names = sorted(stack.container_name(s) for s in shorts)
    server = make_server().start()
    wait_for_server_deployment(server, stack.name, 4)

    response = put_mode(server, stack.name, "Maintenance", reason="backup before crash", wait=False)
    assert response.status_code == 202, response.text
    location = response.headers["Location"]
    assert location.endswith(f"/api/transitions/{response.json()['transition']['id']}")
    transition_id = response.json()["transition"]["id"]

    def mid_way():
        body = get(server, f"/api/transitions/{transition_id}").json()
        return body if body["outcome"] == "running" and body["progress"]["total"] == 4 else None

    wait_until(mid_way, 10, message="the transition to be running")
    wait_until(lambda: any(received_term(stack, s) for s in shorts), 10,
               message="Docker to begin stopping a container")
    before_kill = mid_way()
    assert before_kill is not None, "the transition finished before the server could be killed"
    assert before_kill["progress"]["done"] < 4

    server.kill(9)

    assert server.process.returncode is not None
    restarted = make_server().start()  # same data dir

    finished = wait_for_transition_end(restarted, transition_id, 40)
    assert finished["outcome"] == "succeeded", finished
    assert finished["resumed"] is True
    assert {c["name"]: c["result"] for c in finished["containers"]} == {name: "stopped" for name in names}
    assert finished["finishedAt"] is not None
    assert all(not stack.is_running(s) for s in shorts)

    entries = history(restarted, stack.name)
    resumed = [e for e in entries if e["outcome"] == "resumed"]
    succeeded = [e for e in entries if e["outcome"] == "succeeded"]
    assert len(resumed) == 1 and len(succeeded) == 1, entries
    assert resumed[0]["source"] == "system" and resumed[0]["actor"] == "system"
    assert resumed[0]["transitionId"] == transition_id and succeeded[0]["transitionId"] == transition_id
    assert (resumed[0]["previousMode"], resumed[0]["newMode"]) == ("Normal", "Maintenance")
    assert (succeeded[0]["previousMode"], succeeded[0]["newMode"]) == ("Normal", "Maintenance")
    assert succeeded[0]["source"] == "api" and succeeded[0]["reason"] == "backup before crash"
    assert entries.index(succeeded[0]) < entries.index(resumed[0]), "newest first: succeeded after resumed"

    deployment = get(restarted, f"/api/deployments/{stack.name}").json()
    assert deployment["operationMode"] == "Maintenance"
    assert deployment["stoppedSet"] == names
    assert deployment["transitionInProgress"] is None

    response = put_mode(restarted, stack.name, "Normal", reason="after crash")

    assert response.status_code == 200, response.text
    assert {c["name"]: c["result"] for c in response.json()["transition"]["containers"]} == {
        name: "started" for name in names}
    assert all(stack.is_running(s) for s in shorts)
    assert get(restarted, f"/api/deployments/{stack.name}").json()["stoppedSet"] == []


# -- 2. one transition per deployment, deployments in parallel ------------------------------

def test_two_concurrent_puts_on_one_deployment_run_one_and_refuse_the_other(make_server, make_stack):
    stack = make_stack("race")
    shorts = ["a", "b", "c"]
    for short in shorts:
        stack.add(short, command=slow_stopper(3))
    server = make_server().start()
    wait_for_server_deployment(server, stack.name, 3)

    first, second = in_parallel(lambda: put_mode(server, stack.name, "Maintenance", reason="script one"),
                                lambda: put_mode(server, stack.name, "Maintenance", reason="script two"))

    assert sorted([first.status_code, second.status_code]) == [200, 409], (first.text, second.text)
    winner, loser = (first, second) if first.status_code == 200 else (second, first)
    loser_reason = "script two" if winner is first else "script one"
    transition = winner.json()["transition"]
    assert transition["outcome"] == "succeeded"
    assert {c["result"] for c in transition["containers"]} == {"stopped"}
    assert loser.headers["Content-Type"].startswith("application/problem+json")
    problem = loser.json()
    assert problem["code"] == "transition_in_progress" and problem["status"] == 409
    assert problem["transitionId"] == transition["id"]
    assert problem["transitionUrl"] == f"/api/transitions/{transition['id']}"
    assert get(server, problem["transitionUrl"]).json()["id"] == transition["id"]

    assert all(not stack.is_running(s) for s in shorts)
    entries = history(server, stack.name)
    assert sorted(e["outcome"] for e in entries) == ["rejected", "succeeded"], entries
    rejected = next(e for e in entries if e["outcome"] == "rejected")
    assert "transition_in_progress" in rejected["error"]
    assert rejected["reason"] == loser_reason
    assert (rejected["previousMode"], rejected["newMode"]) == ("Normal", "Normal")
    assert get(server, f"/api/deployments/{stack.name}").json()["operationMode"] == "Maintenance"


def test_a_put_during_a_background_transition_gets_409_with_its_url(make_server, make_stack):
    stack = make_stack("busy")
    stack.add("a", command=slow_stopper(3))
    stack.add("b", command=slow_stopper(3))
    server = make_server().start()
    wait_for_server_deployment(server, stack.name, 2)

    started = put_mode(server, stack.name, "Maintenance", wait=False)
    refused = put_mode(server, stack.name, "Stopped")

    assert started.status_code == 202, started.text
    transition_id = started.json()["transition"]["id"]
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "transition_in_progress"
    assert refused.json()["transitionUrl"] == f"/api/transitions/{transition_id}"
    assert refused.json()["transitionUrl"] == started.headers["Location"]
    done = wait_for_transition_end(server, transition_id, 30)
    assert done["outcome"] == "succeeded"
    assert get(server, f"/api/deployments/{stack.name}").json()["operationMode"] == "Maintenance"
    assert not stack.is_running("a") and not stack.is_running("b")


def test_two_deployments_transition_concurrently(make_server, make_stack):
    one, two = make_stack("par"), make_stack("par")
    for stack in (one, two):
        stack.add("a", command=slow_stopper(3))
        stack.add("b", command=slow_stopper(3))
    server = make_server().start()
    wait_for_server_deployment(server, one.name, 2)
    wait_for_server_deployment(server, two.name, 2)

    def timed_put(stack):
        began = time.monotonic()
        response = put_mode(server, stack.name, "Maintenance")
        return response, time.monotonic() - began

    (first, took_one), (second, took_two) = in_parallel(lambda: timed_put(one), lambda: timed_put(two))

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert took_one >= 2.9 and took_two >= 2.9, "each transition waits for its ~3 s stops"
    # Concurrency is the overlap of the two transitions as rsgo recorded them, not a wall-clock ratio.
    t1, t2 = first.json()["transition"], second.json()["transition"]
    assert t1["startedAt"] < t2["finishedAt"] and t2["startedAt"] < t1["finishedAt"], "the transitions overlap"
    assert all(not s.is_running(short) for s in (one, two) for short in ("a", "b"))


# -- 3. Docker unreachable -----------------------------------------------------------------

def test_docker_unreachable_answers_503_and_leaves_mode_and_containers_alone(make_server, make_stack):
    stack = make_stack("nodock")
    stack.add("api")
    stack.add("db")
    started_at = {s: stack.state(s)["StartedAt"] for s in ("api", "db")}
    discovering = make_server().start()
    deployment_id = wait_for_server_deployment(discovering, stack.name, 2)["id"]
    discovering.stop()

    server = make_server(DOCKER_HOST=MISSING_SOCKET).start()  # same data dir, no engine behind the socket

    def docker_check_failed():
        response = get(server, "/readyz")
        checks = response.json()["checks"]
        return (response.status_code, response.json()) if checks["docker"].startswith("error") else None

    status, ready = wait_until(docker_check_failed, 15, interval=0.1, message="/readyz to report Docker failing")
    assert status == 503
    assert ready["status"] == "not ready"
    assert "unreachable" in ready["checks"]["docker"]
    assert ready["checks"]["database"] == "ok"
    listing = get(server, "/api/deployments")
    assert listing.status_code == 200
    item = next(i for i in listing.json()["items"] if i["name"] == stack.name)
    assert item["id"] == deployment_id
    assert item["health"] == "Unknown"
    assert item["operationMode"] == "Normal"

    response = put_mode(server, stack.name, "Maintenance", reason="backup")

    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "docker_unreachable" and problem["status"] == 503
    assert "unreachable" in problem["detail"]
    deployment = get(server, f"/api/deployments/{stack.name}").json()
    assert deployment["operationMode"] == "Normal"
    assert deployment["stoppedSet"] == [] and deployment["transitionInProgress"] is None
    latest = history(server, stack.name)[0]
    assert latest["outcome"] == "failed"
    assert latest["previousMode"] == latest["newMode"] == "Normal"
    assert latest["requestedMode"] == "Maintenance"
    assert latest["source"] == "api" and latest["reason"] == "backup"
    assert "unreachable" in latest["error"]
    assert latest["transitionId"] is None
    for short in ("api", "db"):
        assert stack.is_running(short)
        assert stack.state(short)["StartedAt"] == started_at[short], f"{short} was restarted"


# -- 4. discovery through the events stream -------------------------------------------------

def test_the_events_stream_alone_reports_created_stopped_and_removed_containers(make_app, make_stack):
    # A 300 s resync cannot deliver anything during this test; only the events stream can.
    app = make_app(background=False, RSGO_RESYNC_INTERVAL="300s")
    runtime = app.extensions["rsgo"]
    full_resyncs = []
    discovery = runtime.environments.get(runtime.settings.environment).discovery
    original_resync = discovery.resync

    @wraps(original_resync)
    def counting_resync():
        original_resync()
        full_resyncs.append(time.monotonic())

    discovery.resync = counting_resync
    runtime.start()
    client = app.test_client()
    # The resync loop's first pass and the events thread's pass right after it subscribed.
    wait_until(lambda: len(full_resyncs) == 2, 10, message="both initial resyncs")
    stack = make_stack("events")

    stack.add("api")

    def detail():
        return client.get(f"/api/deployments/{stack.name}").json

    wait_until(lambda: client.get(f"/api/deployments/{stack.name}").status_code == 200
               and detail()["containerCounts"]["total"] == 1, 15, message="the new container to appear")
    assert detail()["containers"][0]["name"] == stack.container_name("api")
    wait_until(lambda: detail()["containers"][0]["state"] == "running", 15,
               message="the started container to show running")

    stack.containers["api"].stop(timeout=10)

    wait_until(lambda: detail()["containers"][0]["state"] == "exited", 15,
               message="the stopped container to show exited")
    assert detail()["containerCounts"] == {"running": 0, "total": 1}

    stack.containers["api"].remove(force=True)

    wait_until(lambda: detail()["containerCounts"]["total"] == 0, 15, message="the removed container to disappear")
    assert detail()["containers"] == [] and detail()["operationMode"] == "Normal", "the stack keeps its row"
    assert len(full_resyncs) == 2, "a full resync ran, so the events stream was not what delivered the changes"
