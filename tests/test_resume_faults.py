"""Resuming after a crash when the engine is not what it was (README "Crash safety", docs/design.md): the
engine does not answer at the next start, and a container was removed while rsgo was down. A real
`rsgo serve` killed with SIGKILL, a real engine behind tests/docker_fault_proxy.py (cut, then restored)."""

from __future__ import annotations

import pytest

from docker_fault_proxy import FaultProxy
from support import put_mode, wait_until
from test_crash_and_concurrency import get, received_term, slow_stopper, wait_for_server_deployment


@pytest.fixture
def proxy():
    front = FaultProxy()
    yield front
    front.close()


def test_a_resume_waits_for_an_unreachable_engine_and_a_container_removed_meanwhile_is_missing(
        make_stack, make_server, proxy):
    stack = make_stack("resume")
    stack.add("db")
    # api stops first (it depends on db) and slowly: rsgo is killed while it stops, before db's turn.
    stack.add("api", command=slow_stopper(3), labels={"rsgo.depends_on": stack.container_name("db")})
    server = make_server(DOCKER_HOST=proxy.url).start()
    wait_for_server_deployment(server, stack.name, 2)
    accepted = put_mode(server, stack.name, "Maintenance", reason="before the crash", wait=False, timeout=10)
    assert accepted.status_code == 202, accepted.text
    transition_path = accepted.headers["Location"]
    wait_until(lambda: received_term(stack, "api"), 15, message="Docker to begin stopping api")

    server.kill()
    # While rsgo is down: db is removed, and the engine stops answering rsgo.
    stack.containers["db"].remove(force=True)
    proxy.cut()
    requests_before = len(proxy.seen)
    server.start()

    # rsgo is up, the transition is still running: it waits for the engine instead of giving up or guessing.
    wait_until(lambda: "cannot resume yet" in server.log(), 20, message="the resume to wait for the engine")
    waiting = get(server, transition_path).json()
    assert waiting["outcome"] == "running", waiting
    assert len(proxy.seen) == requests_before, "nothing reached the engine while it was cut off"
    refused = put_mode(server, stack.name, "Normal", reason="meanwhile", timeout=10)
    assert refused.status_code == 409 and refused.json()["code"] == "transition_in_progress", refused.text

    proxy.restore()

    def finished():
        body = get(server, transition_path).json()
        return body if body["outcome"] != "running" else None

    done = wait_until(finished, 30, interval=0.2, message="the resumed transition to finish once the engine answers")
    assert (done["outcome"], done["resumed"]) == ("succeeded", True), done
    results = {c["name"]: c["result"] for c in done["containers"]}
    assert results[stack.container_name("db")] == "missing"
    assert results[stack.container_name("api")] in ("stopped", "already-stopped")
    assert not stack.is_running("api")
    assert get(server, f"/api/deployments/{stack.name}").json()["operationMode"] == "Maintenance"
