"""Entering and leaving modes against a real Docker engine, checked by inspecting containers."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from conftest import SLOW_2S, wait_for_deployment
from support import put_mode, wait_until


def _finished_at(stack, short) -> dt.datetime:
    return _parse(stack.state(short)["FinishedAt"])


def _started_at(stack, short) -> dt.datetime:
    return _parse(stack.state(short)["StartedAt"])


def _parse(text: str) -> dt.datetime:
    # Docker gives nanoseconds; datetime takes microseconds.
    head, _, tail = text.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(f"{head}.{(tail + '000000')[:6]}")


def test_it_stops_all_but_ignored_and_restores_exactly_the_stopped_set(client, make_stack):
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "IGNORE"})
    stack.add("api")
    stack.add("worker")
    stack.add("migrate", running=False)  # a one-shot job that already finished
    wait_for_deployment(client, stack.name, 4)

    response = put_mode(client, stack.name, "Maintenance", reason="backup")

    assert response.status_code == 200, response.json
    assert response.json["newMode"] == "Maintenance"
    results = {c["name"]: c["result"] for c in response.json["transition"]["containers"]}
    assert results == {stack.container_name("db"): "ignored", stack.container_name("api"): "stopped",
                       stack.container_name("worker"): "stopped", stack.container_name("migrate"): "already-stopped"}
    assert stack.is_running("db")
    assert not stack.is_running("api") and not stack.is_running("worker")
    assert sorted(response.json["deployment"]["stoppedSet"]) == sorted(
        [stack.container_name("api"), stack.container_name("worker")])

    response = put_mode(client, stack.name, "normal")

    assert response.status_code == 200, response.json
    assert stack.is_running("api") and stack.is_running("worker") and stack.is_running("db")
    assert not stack.is_running("migrate"), "a container stopped before rsgo acted must stay stopped"
    assert response.json["deployment"]["stoppedSet"] == []


def test_it_stops_ignored_containers_too_when_stopped_and_restores_them(client, make_stack):
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api")
    stack.add("job", running=False)
    wait_for_deployment(client, stack.name, 3)

    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    assert stack.is_running("db") and not stack.is_running("api")

    response = put_mode(client, stack.name, "Stopped", reason="decommission test")

    assert response.status_code == 200, response.json
    assert not stack.is_running("db")
    assert sorted(response.json["deployment"]["stoppedSet"]) == sorted(
        [stack.container_name("api"), stack.container_name("db")])

    response = put_mode(client, stack.name, "Normal")

    assert response.status_code == 200, response.json
    assert stack.is_running("db") and stack.is_running("api")
    assert not stack.is_running("job")


def test_it_orders_by_rsgo_depends_on_label(client, make_stack):
    stack = make_stack()
    stack.add("db", command=SLOW_2S)
    stack.add("api", labels={"rsgo.depends_on": stack.container_name("db")}, command=SLOW_2S)
    stack.add("web", labels={"rsgo.depends_on": f" {stack.container_name('api')} "}, command=SLOW_2S)
    wait_for_deployment(client, stack.name, 3)

    assert put_mode(client, stack.name, "Stopped").status_code == 200

    assert _finished_at(stack, "web") < _finished_at(stack, "api") < _finished_at(stack, "db")

    assert put_mode(client, stack.name, "Normal").status_code == 200

    assert _started_at(stack, "db") < _started_at(stack, "api") < _started_at(stack, "web")


def test_it_orders_by_compose_depends_on_and_waits_for_healthy(client, make_stack):
    stack = make_stack()
    # The dependency reports healthy only a second after it starts.
    healthcheck = {"test": ["CMD", "sh", "-c", "test -f /tmp/ready"], "interval": 200_000_000,
                   "timeout": 1_000_000_000, "retries": 50}
    stack.add("db", labels={"com.docker.compose.service": "db"}, healthcheck=healthcheck,
              command=["sh", "-c", "trap 'exit 0' TERM; rm -f /tmp/ready; (sleep 1; touch /tmp/ready) & "
                                   "while :; do sleep 0.1; done"])
    # api takes ~2 s to stop: stopped together with db, it would finish after it; in order, before db begins.
    stack.add("api", labels={"com.docker.compose.service": "api",
                             "com.docker.compose.depends_on": "db:service_healthy:false"}, command=SLOW_2S)
    wait_until(lambda: stack.state("db").get("Health", {}).get("Status") == "healthy", 20,
               message="db healthy")
    wait_for_deployment(client, stack.name, 2)

    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    assert _finished_at(stack, "api") < _finished_at(stack, "db")

    assert put_mode(client, stack.name, "Normal").status_code == 200

    db_started = _started_at(stack, "db")
    api_started = _started_at(stack, "api")
    assert api_started - db_started >= dt.timedelta(seconds=0.9), "api must wait until db is healthy"
    assert stack.state("db")["Health"]["Status"] == "healthy"


def test_a_dependency_cycle_is_a_clear_error_and_touches_nothing(client, make_stack):
    stack = make_stack()
    stack.add("a", labels={"rsgo.depends_on": stack.container_name("b")})
    stack.add("b", labels={"rsgo.depends_on": stack.container_name("a")})
    wait_for_deployment(client, stack.name, 2)

    response = put_mode(client, stack.name, "Maintenance")

    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "dependency_cycle"
    assert "cycle" in response.json["detail"] and stack.container_name("a") in response.json["detail"]
    assert stack.is_running("a") and stack.is_running("b")
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Normal"


@pytest.mark.parametrize("concurrency, count, batches", [(None, 20, 1), ("3", 10, 4)])
def test_one_levels_containers_stop_in_parallel_batches_of_the_action_concurrency(make_app, make_stack,
                                                                                  concurrency, count, batches):
    """Containers of ~2 s each on one level: the default stops all twenty at once (the old default, 16,
    took two waves), RSGO_ACTION_CONCURRENCY=3 stops ten in four waves (3, 3, 3, 1). The waves are read
    from Docker's own FinishedAt times."""
    client = make_app(**({"RSGO_ACTION_CONCURRENCY": concurrency} if concurrency else {})).test_client()
    stack = make_stack()
    for index in range(count):
        stack.add(f"c{index}", command=SLOW_2S)
    wait_for_deployment(client, stack.name, count)

    response = put_mode(client, stack.name, "Maintenance")

    assert response.status_code == 200
    assert all(not stack.is_running(f"c{index}") for index in range(count))
    finished = sorted(_finished_at(stack, f"c{index}") for index in range(count))
    # A wave ends ~2 s after the one before it; containers of one wave end within a fraction of that.
    gaps = [later - earlier for earlier, later in zip(finished, finished[1:], strict=False)]
    waves = 1 + sum(gap > dt.timedelta(seconds=1.2) for gap in gaps)
    assert waves == batches, f"finish times {[t.strftime('%S.%f') for t in finished]}"


def test_stop_timeout_label_bounds_the_grace_period(client, make_stack):
    stack = make_stack()
    stack.add("stubborn", labels={"rsgo.stop_timeout": "1s"},
              command=["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    wait_for_deployment(client, stack.name, 1)

    began = time.monotonic()
    response = put_mode(client, stack.name, "Maintenance")

    assert response.status_code == 200
    assert time.monotonic() - began < 4, "the 1 s grace, not the default 10 s (nor 5 s), applies"
    assert stack.state("stubborn")["ExitCode"] == 137  # killed after the grace period


def test_a_container_that_fails_to_start_makes_the_deployment_failed(client, make_stack):
    stack = make_stack()
    stack.add("api")
    stack.add("broken")
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    # Replace the stopped container by one whose command does not exist, under the same name.
    stack.containers["broken"].remove(force=True)
    stack.add("broken", command=["/does/not/exist"], running=False)

    response = put_mode(client, stack.name, "Normal", reason="after backup")

    assert response.status_code == 502
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "container_action_failed"
    results = {c["name"]: c for c in response.json["transition"]["containers"]}
    assert results[stack.container_name("api")]["result"] == "started"
    assert results[stack.container_name("broken")]["result"] == "failed"
    assert "/does/not/exist" in results[stack.container_name("broken")]["error"]
    assert stack.is_running("api")
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Failed"
    latest = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (latest["outcome"], latest["previousMode"], latest["newMode"]) == ("failed", "Maintenance", "Failed")
    assert "/does/not/exist" in latest["error"]


def test_a_recreated_container_with_the_same_name_is_started_on_leaving(client, make_stack, docker_client):
    stack = make_stack()
    stack.add("api")
    wait_for_deployment(client, stack.name, 1)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    old_id = stack.containers["api"].id
    stack.containers["api"].remove(force=True)
    stack.add("api", running=False)  # what `docker compose up --no-start` does: new id, same name

    response = put_mode(client, stack.name, "Normal")

    assert response.status_code == 200, response.json
    assert stack.containers["api"].id != old_id
    assert stack.is_running("api")


def test_enforcement_stops_a_stopped_set_container_started_by_hand(client, make_stack):
    stack = make_stack()
    stack.add("api")
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    stack.add("migration", running=True)  # new, never in the stopped-set: left alone

    stack.containers["api"].start()

    wait_until(lambda: not stack.is_running("api"), 10, message="rsgo to stop api again")

    def enforced_entries():
        # rsgo records the entry after Docker reports the container stopped: wait for it.
        entries = client.get(f"/api/deployments/{stack.name}/history").json["items"]
        return [e for e in entries if e["outcome"] == "enforced"]

    enforced = wait_until(enforced_entries, 15, message="the enforced history entry")
    assert stack.container_name("api") in enforced[0]["reason"]
    assert enforced[0]["source"] == "system"
    assert stack.is_running("migration")
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance"


def test_enforcement_is_off_with_rsgo_enforce_modes_false(make_app, make_stack):
    app = make_app(RSGO_ENFORCE_MODES="false")
    client = app.test_client()
    inventory = app.extensions["rsgo"].environments.inventory_for("local")
    stack = make_stack()
    stack.add("api")
    wait_for_deployment(client, stack.name, 1)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    stack.containers["api"].start()

    wait_until(lambda: client.get(f"/api/deployments/{stack.name}").json["containerCounts"]["running"] == 1, 10,
               message="discovery to see api running")
    # Two more full resyncs (every 2 s here): enforcement, if it were on, acts within one of them.
    seen = {inventory.synced_at}

    def two_more_resyncs():
        seen.add(inventory.synced_at)
        return len(seen) > 2

    wait_until(two_more_resyncs, 10, message="two more resyncs")
    assert app.extensions["rsgo"].enforcer is None
    assert stack.is_running("api")
    assert not [e for e in client.get(f"/api/deployments/{stack.name}/history").json["items"]
                if e["outcome"] == "enforced"]
