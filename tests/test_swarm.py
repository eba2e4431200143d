"""Swarm services end to end: a real ``rsgo serve`` with two environments, the single-node Swarm
(``swarm_engine``) and the main engine, taking stacks of services through Maintenance and back.

Each test checks the services through the engine itself (spec and tasks) and rsgo's answer through
its API (and, where the API does not show it, its database: the stopped-set's memo, per-action times).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

import docker
import pytest
import requests

from support import database_rows, put_mode, wait_until

CONVERGE = 90  # seconds: task start and stop on a loaded 2-core CI machine
SWARM = "swarm"
RSGO_CONSTRAINT = "node.id==rsgo-maintenance"


def slow_stopper(seconds: int) -> list[str]:
    """A PID 1 that takes ``seconds`` to exit after SIGTERM."""
    return ["sh", "-c", f"trap 'sleep {seconds}; exit 0' TERM; while :; do sleep 0.1; done"]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def replicated(replicas: int) -> docker.types.ServiceMode:
    return docker.types.ServiceMode("replicated", replicas=replicas)


@pytest.fixture
def start_server(make_server, swarm_engine, tmp_path):
    """``start_server()``: ``rsgo serve`` managing the main engine ("local") and the swarm ("swarm");
    called again after a kill, it restarts on the same data dir."""
    config = tmp_path / "rsgo.yml"
    main_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    config.write_text(json.dumps({"environments": {  # JSON is YAML
        "local": {"url": main_url}, SWARM: {"url": swarm_engine.url, "timeout": "30s"}}}))

    def start():
        return make_server(RSGO_CONFIG=str(config)).start()

    return start


# -- the engine's side ----------------------------------------------------------------------------

def spec_of(engine, service_id: str) -> dict:
    return engine.client.api.inspect_service(service_id)["Spec"]


def version_of(engine, service_id: str) -> int:
    return engine.client.api.inspect_service(service_id)["Version"]["Index"]


def replicas_of(engine, service_id: str) -> int:
    return spec_of(engine, service_id)["Mode"]["Replicated"]["Replicas"]


def constraints_of(engine, service_id: str) -> list[str]:
    return (spec_of(engine, service_id)["TaskTemplate"].get("Placement") or {}).get("Constraints") or []


def running_tasks(engine, service_id: str) -> int:
    tasks = engine.client.api.tasks(filters={"service": service_id})
    return sum(1 for task in tasks if task["Status"]["State"] == "running")


def converge(engine, service_id: str, running: int) -> None:
    wait_until(lambda: running_tasks(engine, service_id) == running, CONVERGE, interval=0.2,
               message=f"service {service_id[:12]} with {running} running task(s)")


# -- rsgo's side ---------------------------------------------------------------------------------------

def api(server, path: str) -> dict:
    response = requests.get(f"{server.url}{path}", headers=server.headers, timeout=30)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    return response.json()


def wait_for_stack(server, stack: str, names: set[str], running: set[str] | None = None) -> dict:
    """The swarm deployment's detail once rsgo lists exactly ``names`` with ``running`` (default: all) running."""
    running = names if running is None else running

    def seen():
        response = requests.get(f"{server.url}/api/deployments/{stack}?environment={SWARM}", headers=server.headers,
                                timeout=30)
        if response.status_code != 200:
            return None
        units = {unit["name"]: unit for unit in response.json()["containers"]}
        if set(units) == names and {name for name, unit in units.items() if unit["state"] == "running"} == running:
            return response.json()
        return None

    return wait_until(seen, CONVERGE, interval=0.2, message=f"rsgo to list {sorted(names)} of {stack}")


def wait_for_state(server, deployment_id: int, name: str, state: str) -> dict:
    def seen():
        detail = api(server, f"/api/deployments/{deployment_id}")
        return detail if any(u["name"] == name and u["state"] == state for u in detail["containers"]) else None

    return wait_until(seen, CONVERGE, interval=0.2, message=f"rsgo to show {name} {state}")


def history(server, deployment_id: int) -> list[dict]:
    return api(server, f"/api/deployments/{deployment_id}/history?limit=500")["items"]  # newest first


def changed(server, deployment_id: int, mode: str, **body) -> dict:
    """PUT the mode, waiting for the transition; its JSON, which must have succeeded."""
    response = put_mode(server, deployment_id, mode, **body)
    assert response.status_code == 200, response.text
    transition = response.json()["transition"]
    assert transition["outcome"] == "succeeded", transition
    return transition


def results(transition: dict) -> dict[str, tuple[str, str]]:
    return {unit["name"]: (unit["action"], unit["result"]) for unit in transition["containers"]}


def stopped_set_rows(server, deployment_id: int) -> dict[str, tuple[str, dict | None]]:
    rows = database_rows(server, "SELECT container_name, kind, memo FROM stopped_set WHERE deployment_id = ?",
                         deployment_id)
    return {name: (kind, json.loads(memo) if memo else None) for name, kind, memo in rows}


def action_times(server, transition_id: int) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Each action's (began, finished): finished as recorded, less its duration."""
    rows = database_rows(server, "SELECT container_name, finished_at, duration_ms FROM transition_actions "
                                 "WHERE transition_id = ?", transition_id)
    times = {}
    for name, finished_at, duration_ms in rows:
        finished = dt.datetime.fromisoformat(str(finished_at))
        times[name] = (finished - dt.timedelta(milliseconds=duration_ms), finished)
    return times


# -- 1. replicated --------------------------------------------------------------------------------------------

def test_maintenance_scales_a_replicated_service_to_zero_and_normal_restores_exactly_its_replicas(
        start_server, make_service, swarm_engine):
    stack = unique("rep")
    name = f"{stack}-api"
    service = make_service(name, labels={"rsgo.stack": stack}, env=["GREETING=hello"], mode=replicated(3))
    converge(swarm_engine, service.id, 3)
    before = spec_of(swarm_engine, service.id)
    server = start_server()
    deployment_id = wait_for_stack(server, stack, {name})["id"]

    transition = changed(server, deployment_id, "Maintenance", reason="database upgrade")

    assert results(transition) == {name: ("stop", "stopped")} and transition["error"] is None
    assert replicas_of(swarm_engine, service.id) == 0
    assert running_tasks(swarm_engine, service.id) == 0
    detail = wait_for_state(server, deployment_id, name, "stopped")
    assert detail["operationMode"] == "Maintenance" and detail["environment"] == SWARM
    assert [(u["name"], u["kind"], u["inStoppedSet"]) for u in detail["containers"]] == [(name, "service", True)]
    assert detail["stoppedSet"] == [name]
    assert stopped_set_rows(server, deployment_id) == {name: ("service", {
        "mode": "replicated", "replicas": 3, "version": version_of(swarm_engine, service.id)})}
    latest = history(server, deployment_id)[0]
    assert (latest["outcome"], latest["previousMode"], latest["newMode"]) == ("succeeded", "Normal", "Maintenance")
    assert latest["transitionId"] == transition["id"] and latest["error"] is None
    assert latest["reason"] == "database upgrade"

    transition = changed(server, deployment_id, "Normal")

    assert results(transition) == {name: ("start", "started")} and transition["error"] is None
    assert replicas_of(swarm_engine, service.id) == 3
    assert spec_of(swarm_engine, service.id) == before  # the replica count back, and nothing else changed
    converge(swarm_engine, service.id, 3)
    detail = wait_for_state(server, deployment_id, name, "running")
    assert detail["operationMode"] == "Normal" and detail["stoppedSet"] == []
    assert stopped_set_rows(server, deployment_id) == {}
    latest = history(server, deployment_id)[0]
    assert (latest["outcome"], latest["newMode"], latest["error"]) == ("succeeded", "Normal", None)


# -- 2. global --------------------------------------------------------------------------------------------------

def test_a_global_service_gets_rsgos_constraint_in_maintenance_and_exactly_its_own_back_in_normal(
        start_server, make_service, swarm_engine):
    stack = unique("glob")
    name = f"{stack}-agent"
    service = make_service(name, labels={"rsgo.stack": stack}, constraints=["node.role==manager"],
                           mode=docker.types.ServiceMode("global"))
    converge(swarm_engine, service.id, 1)
    server = start_server()
    deployment_id = wait_for_stack(server, stack, {name})["id"]

    transition = changed(server, deployment_id, "Maintenance")

    assert results(transition) == {name: ("stop", "stopped")}
    assert running_tasks(swarm_engine, service.id) == 0
    assert constraints_of(swarm_engine, service.id) == ["node.role==manager", RSGO_CONSTRAINT]
    kind, memo = stopped_set_rows(server, deployment_id)[name]
    assert (kind, memo["mode"], memo["constraints"]) == ("service", "global", ["node.role==manager"])

    transition = changed(server, deployment_id, "Normal")

    assert results(transition) == {name: ("start", "started")} and transition["error"] is None
    assert constraints_of(swarm_engine, service.id) == ["node.role==manager"]
    converge(swarm_engine, service.id, 1)
    assert api(server, f"/api/deployments/{deployment_id}")["stoppedSet"] == []


# -- 3. changed meanwhile --------------------------------------------------------------------------------------

def test_a_service_changed_during_maintenance_gets_its_replicas_back_keeps_the_change_and_is_warned_about(
        start_server, make_service, swarm_engine):
    stack = unique("chg")
    name = f"{stack}-web"
    service = make_service(name, labels={"rsgo.stack": stack}, mode=replicated(2))
    converge(swarm_engine, service.id, 2)
    server = start_server()
    deployment_id = wait_for_stack(server, stack, {name})["id"]
    changed(server, deployment_id, "Maintenance")
    stopped_version = version_of(swarm_engine, service.id)
    swarm_engine.client.services.get(service.id).update(env=["ADDED=1"])  # someone's change, meanwhile
    changed_version = version_of(swarm_engine, service.id)
    assert changed_version != stopped_version

    transition = changed(server, deployment_id, "Normal")

    assert results(transition) == {name: ("start", "started")}
    assert replicas_of(swarm_engine, service.id) == 2
    assert spec_of(swarm_engine, service.id)["TaskTemplate"]["ContainerSpec"]["Env"] == ["ADDED=1"]
    converge(swarm_engine, service.id, 2)
    warning = (f"{name} was changed while rsgo had it stopped (spec version {stopped_version} → {changed_version}): "
               "only its replica count (2) was restored; the change was kept")
    assert transition["error"] == f"warning: {warning}"
    assert [unit["error"] for unit in transition["containers"]] == [warning]
    latest = history(server, deployment_id)[0]
    assert (latest["outcome"], latest["newMode"]) == ("succeeded", "Normal")
    assert latest["error"] == f"warning: {warning}" and latest["transitionId"] == transition["id"]
    assert api(server, f"/api/deployments/{deployment_id}")["operationMode"] == "Normal"


# -- 4. enforcement --------------------------------------------------------------------------------------------

def test_a_service_scaled_up_by_hand_during_maintenance_is_scaled_down_again_and_normal_restores_the_original(
        start_server, make_service, swarm_engine):
    stack = unique("enf")
    name = f"{stack}_api"
    service = make_service(name, labels={"rsgo.stack": stack}, mode=replicated(3))
    converge(swarm_engine, service.id, 3)
    server = start_server()
    deployment_id = wait_for_stack(server, stack, {name})["id"]
    changed(server, deployment_id, "Maintenance")
    wait_for_state(server, deployment_id, name, "stopped")

    swarm_engine.client.services.get(service.id).scale(2)  # docker service scale <name>=2

    enforced = wait_until(lambda: [e for e in history(server, deployment_id) if e["outcome"] == "enforced"],
                          CONVERGE, interval=0.2, message=f"an enforced entry for {name}")
    wait_until(lambda: replicas_of(swarm_engine, service.id) == 0 and running_tasks(swarm_engine, service.id) == 0,
               CONVERGE, interval=0.2, message=f"{name} scaled back to 0 with no running task")
    entry = enforced[-1]
    assert (entry["previousMode"], entry["newMode"], entry["source"], entry["actor"]) == (
        "Maintenance", "Maintenance", "system", "system")
    assert entry["reason"] == f"{name} started while the stack is in Maintenance; stopped it again"
    assert entry["error"] is None
    assert stopped_set_rows(server, deployment_id)[name][1]["replicas"] == 3  # still the count before Maintenance
    assert api(server, f"/api/deployments/{deployment_id}")["operationMode"] == "Maintenance"

    transition = changed(server, deployment_id, "Normal")

    assert results(transition) == {name: ("start", "started")}
    assert replicas_of(swarm_engine, service.id) == 3
    assert transition["error"] is None, "a scale-up rsgo undid is not a change to keep and warn about"
    converge(swarm_engine, service.id, 3)


# -- 5. crash safety -------------------------------------------------------------------------------------------

def test_a_swarm_transition_killed_mid_way_is_resumed_at_the_next_start_and_ends_as_asked(
        start_server, make_service, swarm_engine):
    stack = unique("crash")
    # c depends on b, b on a: stopped c, then b, then a. b's tasks take ~8 s to stop: the kill lands then.
    counts = {"a": 1, "b": 2, "c": 3}
    services = {}
    for short, depends in (("a", None), ("b", "a"), ("c", "b")):
        labels = {"rsgo.stack": stack, **({"rsgo.depends_on": f"{stack}-{depends}"} if depends else {})}
        services[short] = make_service(f"{stack}-{short}", command=slow_stopper(8) if short == "b" else None,
                                       labels=labels, stop_grace_period=30 * 10**9, mode=replicated(counts[short]))
    for short, service in services.items():
        converge(swarm_engine, service.id, counts[short])
    names = {short: f"{stack}-{short}" for short in services}
    server = start_server()
    deployment_id = wait_for_stack(server, stack, set(names.values()))["id"]

    response = put_mode(server, deployment_id, "Maintenance", reason="backup", wait=False)
    assert response.status_code == 202, response.text
    transition_id = response.json()["transition"]["id"]

    def b_being_stopped():
        """c stopped and recorded; b scaled to 0 by rsgo but its tasks still stopping, not recorded."""
        body = api(server, f"/api/transitions/{transition_id}")
        got = {unit["name"]: unit["result"] for unit in body["containers"]}
        return body if (body["outcome"] == "running" and got[names["c"]] == "stopped" and got[names["b"]] is None
                        and replicas_of(swarm_engine, services["b"].id) == 0) else None

    wait_until(b_being_stopped, CONVERGE, interval=0.1, message="rsgo to be stopping b")
    server.kill(9)
    assert server.process.returncode is not None
    assert replicas_of(swarm_engine, services["a"].id) == 1, "a was stopped before the kill"

    restarted = start_server()  # same data dir and config

    finished = wait_until(lambda: (lambda body: body if body["outcome"] != "running" else None)(
        api(restarted, f"/api/transitions/{transition_id}")), CONVERGE, interval=0.2,
        message=f"transition {transition_id} to finish after the restart")
    assert finished["outcome"] == "succeeded" and finished["resumed"] is True, finished
    assert results(finished) == {name: ("stop", "stopped") for name in names.values()}
    for short, service in services.items():
        assert replicas_of(swarm_engine, service.id) == 0, short
        assert running_tasks(swarm_engine, service.id) == 0, short
    detail = api(restarted, f"/api/deployments/{deployment_id}")
    assert detail["operationMode"] == "Maintenance" and detail["transitionInProgress"] is None
    assert detail["stoppedSet"] == sorted(names.values())
    memos = stopped_set_rows(restarted, deployment_id)
    assert {name: memo["replicas"] for name, (_, memo) in memos.items()} == {
        names[short]: count for short, count in counts.items()}, "each records its count before the stop"
    outcomes = [e["outcome"] for e in history(restarted, deployment_id) if e["transitionId"] == transition_id]
    assert outcomes == ["succeeded", "resumed"]  # newest first

    transition = changed(restarted, deployment_id, "Normal")

    assert results(transition) == {name: ("start", "started") for name in names.values()}
    assert transition["error"] is None
    for short, service in services.items():
        assert replicas_of(swarm_engine, service.id) == counts[short], short
        converge(swarm_engine, service.id, counts[short])


# -- 6. a stack deployed by docker stack, with an order ----------------------------------------------------------

def test_a_docker_stack_namespace_forms_the_stack_and_depends_on_orders_its_services(
        start_server, make_service, swarm_engine):
    namespace = unique("shop")
    api_name, worker_name = f"{namespace}_api", f"{namespace}_worker"
    stack_label = {"com.docker.stack.namespace": namespace}  # as `docker stack deploy` labels and names them
    api_service = make_service(api_name, labels=stack_label, mode=replicated(1))
    worker = make_service(worker_name, labels={**stack_label, "rsgo.depends_on": "api"}, mode=replicated(1))
    converge(swarm_engine, api_service.id, 1)
    converge(swarm_engine, worker.id, 1)
    server = start_server()
    detail = wait_for_stack(server, namespace, {api_name, worker_name})
    deployment_id = detail["id"]
    assert detail["name"] == namespace
    assert {u["name"]: (u["kind"], u["service"]) for u in detail["containers"]} == {
        api_name: ("service", "api"), worker_name: ("service", "worker")}

    down = changed(server, deployment_id, "Maintenance")

    assert {u["name"]: (u["level"], u["result"]) for u in down["containers"]} == {
        api_name: (0, "stopped"), worker_name: (1, "stopped")}
    times = action_times(server, down["id"])
    assert times[worker_name][1] <= times[api_name][0], f"worker stopped before api began stopping: {times}"

    up = changed(server, deployment_id, "Normal")

    assert {u["name"]: (u["level"], u["result"]) for u in up["containers"]} == {
        api_name: (0, "started"), worker_name: (1, "started")}
    times = action_times(server, up["id"])
    assert times[api_name][1] <= times[worker_name][0], f"api restored before worker began: {times}"
    converge(swarm_engine, api_service.id, 1)
    converge(swarm_engine, worker.id, 1)


# -- 7. jobs -------------------------------------------------------------------------------------------------

def test_a_job_service_is_left_alone_by_maintenance(start_server, make_service, swarm_engine):
    stack = unique("jobs")
    job_name, web_name = f"{stack}-migrate", f"{stack}-web"
    job = make_service(job_name, command=["true"], labels={"rsgo.stack": stack},
                       mode=docker.types.ServiceMode("replicated-job", replicas=1, concurrency=1),
                       restart_policy=docker.types.RestartPolicy(condition="none"))
    web = make_service(web_name, labels={"rsgo.stack": stack}, mode=replicated(1))
    converge(swarm_engine, web.id, 1)
    wait_until(lambda: any(t["Status"]["State"] == "complete"
                           for t in swarm_engine.client.api.tasks(filters={"service": job.id})),
               CONVERGE, interval=0.2, message=f"{job_name} to complete")
    job_version = version_of(swarm_engine, job.id)
    server = start_server()
    deployment_id = wait_for_stack(server, stack, {job_name, web_name}, running={web_name})["id"]

    transition = changed(server, deployment_id, "Maintenance")

    assert results(transition) == {job_name: ("none", "left-alone"), web_name: ("stop", "stopped")}
    assert version_of(swarm_engine, job.id) == job_version, "the job's spec was not touched"
    assert replicas_of(swarm_engine, web.id) == 0
    assert api(server, f"/api/deployments/{deployment_id}")["stoppedSet"] == [web_name]

    transition = changed(server, deployment_id, "Normal")

    assert results(transition) == {web_name: ("start", "started")}
    assert version_of(swarm_engine, job.id) == job_version


# -- a stop that outlasts rsgo's wait ----------------------------------------------------------------------------

STUBBORN = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]  # only Swarm's kill ends it


def test_a_service_whose_tasks_outlast_the_stop_wait_leaves_failed_and_normal_still_restores_its_replicas(
        start_server, make_service, swarm_engine):
    stack = unique("slow")
    name = f"{stack}-api"
    # Swarm gives each task 60 s; rsgo waits 1 s + its 10 s margin, then the stop fails with the spec at 0.
    service = make_service(name, command=STUBBORN, labels={"rsgo.stack": stack, "rsgo.stop_timeout": "1s"},
                           stop_grace_period=60 * 10**9, mode=replicated(2))
    converge(swarm_engine, service.id, 2)
    server = start_server()
    deployment_id = wait_for_stack(server, stack, {name})["id"]
    try:
        response = put_mode(server, deployment_id, "Maintenance")

        assert response.status_code == 502, response.text
        transition = response.json()["transition"]
        assert transition["outcome"] == "failed"
        assert transition["error"] == f"{name}: stopping {name}: 2 task(s) still running after 11s"
        assert replicas_of(swarm_engine, service.id) == 0 and running_tasks(swarm_engine, service.id) == 2
        detail = api(server, f"/api/deployments/{deployment_id}")
        assert detail["operationMode"] == "Failed"
        assert detail["stoppedSet"] == [name], "half-stopped by rsgo: still rsgo's to restore"
        assert stopped_set_rows(server, deployment_id)[name] == ("service", {
            "mode": "replicated", "replicas": 2, "version": version_of(swarm_engine, service.id)})

        transition = changed(server, deployment_id, "Normal")  # while the old tasks are still ending

        assert results(transition) == {name: ("start", "started")} and transition["error"] is None
        assert replicas_of(swarm_engine, service.id) == 2
        assert api(server, f"/api/deployments/{deployment_id}")["stoppedSet"] == []
    finally:
        # Not left to their 60 s: the engine's shutdown at the end of the session would wait for them.
        swarm_engine.client.api.remove_service(service.id)
        for task in swarm_engine.client.containers.list(filters={"label": f"com.docker.swarm.service.name={name}"}):
            task.kill()


# -- ignored services --------------------------------------------------------------------------------------------

def test_an_ignored_service_runs_through_maintenance_stops_in_stopped_and_normal_restores_both(
        start_server, make_service, swarm_engine):
    stack = unique("ign")
    db_name, api_name = f"{stack}-db", f"{stack}-api"
    db = make_service(db_name, labels={"rsgo.stack": stack, "rsgo.maintenance": "ignore"}, mode=replicated(1))
    api_service = make_service(api_name, labels={"rsgo.stack": stack, "rsgo.depends_on": db_name},
                               mode=replicated(2))
    converge(swarm_engine, db.id, 1)
    converge(swarm_engine, api_service.id, 2)
    server = start_server()
    deployment_id = wait_for_stack(server, stack, {db_name, api_name})["id"]

    maintenance = changed(server, deployment_id, "Maintenance")
    assert results(maintenance) == {db_name: ("none", "ignored"), api_name: ("stop", "stopped")}
    assert (replicas_of(swarm_engine, db.id), running_tasks(swarm_engine, db.id)) == (1, 1)
    assert replicas_of(swarm_engine, api_service.id) == 0

    stopped = changed(server, deployment_id, "Stopped")
    assert results(stopped) == {db_name: ("stop", "stopped"), api_name: ("none", "already-stopped")}
    assert replicas_of(swarm_engine, db.id) == 0 and running_tasks(swarm_engine, db.id) == 0
    assert {name: memo["replicas"] for name, (_, memo) in stopped_set_rows(server, deployment_id).items()} == {
        db_name: 1, api_name: 2}

    normal = changed(server, deployment_id, "Normal")

    assert results(normal) == {db_name: ("start", "started"), api_name: ("start", "started")}
    assert (replicas_of(swarm_engine, db.id), replicas_of(swarm_engine, api_service.id)) == (1, 2)
    converge(swarm_engine, db.id, 1)
    converge(swarm_engine, api_service.id, 2)
    assert api(server, f"/api/deployments/{deployment_id}")["stoppedSet"] == []


# -- 8. environments -------------------------------------------------------------------------------------------

def test_the_environments_api_lists_the_swarm_and_the_main_engine_both_reachable(start_server, swarm_engine,
                                                                                docker_client):
    server = start_server()

    def both_known():
        items = {item["name"]: item for item in api(server, "/api/environments")["items"]}
        return items if all(item["kind"] and item["state"] == "reachable" for item in items.values()) else None

    items = wait_until(both_known, CONVERGE, interval=0.2, message="both environments to be reachable")

    assert set(items) == {"local", SWARM}
    assert (items[SWARM]["kind"], items[SWARM]["reachable"], items[SWARM]["url"]) == (
        "swarm", True, swarm_engine.url)
    assert (items["local"]["kind"], items["local"]["reachable"]) == ("engine", True)
    assert items[SWARM]["engineVersion"] == swarm_engine.client.version()["Version"]
    assert items["local"]["engineVersion"] == docker_client.version()["Version"]
    assert items[SWARM]["lastError"] is None and items["local"]["lastError"] is None
