"""Upgrades of Swarm services end to end (README "Upgrades"): a real ``rsgo serve`` managing the
single-node Swarm (``swarm_engine``), images built there from the tests' busybox image.

Swarm's own rolling update changes each service in place with ``failure_action: rollback``; when a later
service fails, rsgo re-submits the stored spec of each one it had already updated. Each test checks the
engine (spec, tasks) and rsgo's answer. The services' own update and rollback monitor periods are 1 s,
so that Swarm's rollback and rsgo's re-submitted specs settle quickly; rsgo's own updates use 5 s.
"""

from __future__ import annotations

import docker
import pytest
import requests

from support import TEST_IMAGE, wait_until
from test_swarm import CONVERGE, SWARM, api, history, replicated, spec_of, start_server, unique, wait_for_stack
from upgrade_images import RUN, build_images, ref

__all__ = ["start_server"]  # the fixture, shared with test_swarm.py

FAST = {"stableFor": "1s", "healthTimeout": "20s"}
SECOND = 10**9


@pytest.fixture(scope="module")
def images(swarm_engine):
    return build_images(swarm_engine.client)


@pytest.fixture
def make_app(swarm_engine, images):
    """``make_app(name, **labels)``: a one-replica service of image version 1, removed after the test."""
    created = []

    def make(name: str, **labels):
        service = swarm_engine.client.services.create(
            ref("1"), name=name, labels=labels, mode=replicated(1),
            update_config=docker.types.UpdateConfig(monitor=SECOND),
            rollback_config=docker.types.RollbackConfig(monitor=SECOND))
        created.append(service.id)
        return service

    yield make
    for service_id in created:
        try:
            swarm_engine.client.api.remove_service(service_id)
        except docker.errors.NotFound:
            pass


def running_images(engine, service_id: str) -> list[str]:
    """The image of every task Swarm runs and means to keep running."""
    return sorted(task["Spec"]["ContainerSpec"]["Image"] for task in engine.client.api.tasks(
        filters={"service": service_id}) if task["DesiredState"] == "running" and task["Status"]["State"] == "running")


def runs(engine, service_id: str, image: str) -> None:
    wait_until(lambda: running_images(engine, service_id) == [image], CONVERGE, interval=0.2,
               message=f"service {service_id[:12]} running one task of {image}")


def post(server, path: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, headers=server.headers, timeout=300)


def app_stack(start_server, make_app, swarm_engine):
    """api ← worker (``rsgo.depends_on``), both on version 1, known to rsgo: (server, id, names, services)."""
    stack = unique("sup")
    names = {"api": f"{stack}-api", "worker": f"{stack}-worker"}
    services = {"api": make_app(names["api"], **{"rsgo.stack": stack}),
                "worker": make_app(names["worker"], **{"rsgo.stack": stack, "rsgo.depends_on": names["api"]})}
    for service in services.values():
        runs(swarm_engine, service.id, ref("1"))
    server = start_server()
    deployment_id = wait_for_stack(server, stack, set(names.values()))["id"]
    return server, deployment_id, names, services


def test_an_upgrade_of_two_services_updates_each_in_dependency_order_with_swarms_rolling_update(
        start_server, make_app, swarm_engine):
    server, deployment_id, names, services = app_stack(start_server, make_app, swarm_engine)
    before = {short: spec_of(swarm_engine, service.id) for short, service in services.items()}

    answer = post(server, f"/api/deployments/{deployment_id}/upgrade",
                  {**FAST, "images": {names["api"]: ref("2"), names["worker"]: ref("2")}, "reason": "release 2"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "succeeded" and body["kind"] == "upgrade" and body["error"] is None
    assert [step["step"] for step in body["steps"]] == [
        "pull", f"update {names['api']}", f"update {names['worker']}", "verify"]
    assert all(step["result"] == "succeeded" for step in body["steps"])
    assert {c["name"]: (c["role"], c["level"], c["step"], c["from"]["ref"], c["to"]["ref"])
            for c in body["containers"]} == {
        names["api"]: ("recreate", 0, "healthy", ref("1"), ref("2")),
        names["worker"]: ("recreate", 1, "healthy", ref("1"), ref("2"))}
    for short, service in services.items():
        spec = spec_of(swarm_engine, service.id)
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == ref("2"), short
        assert spec["UpdateConfig"] == {"Parallelism": 1, "FailureAction": "rollback", "Monitor": 5 * SECOND,
                                        "MaxFailureRatio": 0, "Order": "stop-first"}, short
        # Only the image and the update settings changed.
        spec["TaskTemplate"]["ContainerSpec"]["Image"], spec["UpdateConfig"] = ref("1"), before[short]["UpdateConfig"]
        assert spec == before[short], short
        assert running_images(swarm_engine, service.id) == [ref("2")], short
    entries = history(server, deployment_id)[:2]
    assert [(e["previousMode"], e["newMode"], e["outcome"]) for e in entries] == [
        ("Migrating", "Normal", "succeeded"), ("Normal", "Migrating", "succeeded")]
    assert f"{names['api']}: {ref('1')} → 2" in entries[1]["reason"] and "release 2" in entries[1]["reason"]
    assert api(server, f"/api/deployments/{deployment_id}")["operationMode"] == "Normal"


def test_a_later_service_failing_its_healthcheck_is_rolled_back_by_swarm_and_the_earlier_one_by_rsgo(
        start_server, make_app, swarm_engine):
    server, deployment_id, names, services = app_stack(start_server, make_app, swarm_engine)
    before = {short: spec_of(swarm_engine, service.id) for short, service in services.items()}

    answer = post(server, f"/api/deployments/{deployment_id}/upgrade",
                  {**FAST, "images": {names["api"]: ref("2"), names["worker"]: ref("unhealthy")}})

    assert answer.status_code == 502 and answer.json()["code"] == "upgrade_failed", answer.text
    body = answer.json()["upgrade"]
    assert body["status"] == "rolled-back", body
    assert "Swarm rolled the update back" in body["error"] and names["worker"] in body["error"]
    steps = {step["step"]: step["result"] for step in body["steps"]}
    assert steps == {"pull": "succeeded", f"update {names['api']}": "succeeded",
                     f"update {names['worker']}": "failed", "roll back": "succeeded"}
    assert {c["name"]: c["step"] for c in body["containers"]} == {names["api"]: "restored",
                                                                    names["worker"]: "restored"}
    for short, service in services.items():
        assert spec_of(swarm_engine, service.id) == before[short], f"{short}: exactly its previous spec"
        runs(swarm_engine, service.id, ref("1"))
    detail = api(server, f"/api/deployments/{deployment_id}")
    assert detail["operationMode"] == "Normal" and detail["transitionInProgress"] is None
    latest = history(server, deployment_id)[0]
    assert (latest["previousMode"], latest["newMode"], latest["outcome"]) == ("Migrating", "Normal", "failed")


def test_a_manual_rollback_puts_the_stored_specs_back(start_server, make_app, swarm_engine):
    server, deployment_id, names, services = app_stack(start_server, make_app, swarm_engine)
    api_id = services["api"].id
    before = spec_of(swarm_engine, api_id)
    first = post(server, f"/api/deployments/{deployment_id}/upgrade", {**FAST, "images": {names["api"]: ref("2")}})
    assert first.status_code == 200, first.text
    listed = api(server, f"/api/deployments/{deployment_id}/upgrades")
    assert listed["rollbackAvailable"] is True

    answer = post(server, f"/api/deployments/{deployment_id}/rollback", {"reason": "2 is slow"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["kind"], body["status"], body["rollbackOf"]) == ("rollback", "succeeded", first.json()["id"])
    assert [step["step"] for step in body["steps"]] == ["restore"]
    assert [(c["name"], c["from"]["ref"], c["to"]["ref"], c["step"]) for c in body["containers"]] == [
        (names["api"], ref("2"), ref("1"), "restored")]
    assert spec_of(swarm_engine, api_id) == before
    runs(swarm_engine, api_id, ref("1"))
    assert running_images(swarm_engine, services["worker"].id) == [ref("1")], "the worker was not touched"
    assert api(server, f"/api/deployments/{deployment_id}")["operationMode"] == "Normal"
    again = post(server, f"/api/deployments/{deployment_id}/rollback", {})
    assert again.status_code == 409 and again.json()["code"] == "nothing_to_roll_back"


def test_rsgo_killed_during_an_upgrade_puts_the_stored_specs_back_at_the_next_start(
        start_server, make_app, swarm_engine):
    server, deployment_id, names, services = app_stack(start_server, make_app, swarm_engine)
    before = {short: spec_of(swarm_engine, service.id) for short, service in services.items()}
    answer = post(server, f"/api/deployments/{deployment_id}/upgrade",
                  {**FAST, "images": {names["api"]: ref("2"), names["worker"]: ref("2")}, "wait": False})
    assert answer.status_code == 202, answer.text
    upgrade_id = answer.json()["id"]

    def worker_updating():
        steps = {c["name"]: c["step"] for c in api(server, f"/api/upgrades/{upgrade_id}")["containers"]}
        return steps[names["api"]] == "healthy" and steps[names["worker"]] == "updating"

    wait_until(worker_updating, CONVERGE, interval=0.1, message="rsgo to be updating the worker")
    server.kill(9)

    restarted = start_server()

    finished = wait_until(lambda: (lambda body: body if body["finished"] else None)(
        api(restarted, f"/api/upgrades/{upgrade_id}")), CONVERGE, interval=0.2,
        message=f"upgrade {upgrade_id} to be settled after the restart")
    assert (finished["status"], finished["recoveredAfterRestart"]) == ("rolled-back", True), finished
    for short, service in services.items():
        assert spec_of(swarm_engine, service.id) == before[short], short
        runs(swarm_engine, service.id, ref("1"))
    assert api(restarted, f"/api/deployments/{deployment_id}")["operationMode"] == "Normal"


def test_a_missing_image_fails_before_anything_changes_and_what_swarm_cannot_do_is_refused(
        start_server, make_app, make_service, swarm_engine):
    stack = unique("sref")
    name, job_name, box = f"{stack}-api", f"{stack}-migrate", f"{stack}-box"
    service = make_app(name, **{"rsgo.stack": stack})
    make_service(job_name, command=["true"], labels={"rsgo.stack": stack},
                 mode=docker.types.ServiceMode("replicated-job", replicas=1, concurrency=1),
                 restart_policy=docker.types.RestartPolicy(condition="none"))
    container = swarm_engine.client.containers.run(TEST_IMAGE, RUN, name=box, labels={"rsgo.stack": stack},
                                                   detach=True)
    try:
        runs(swarm_engine, service.id, ref("1"))
        version = swarm_engine.client.api.inspect_service(service.id)["Version"]["Index"]
        server = start_server()
        deployment_id = wait_for_stack(server, stack, {name, job_name, box}, running={name, box})["id"]
        path = f"/api/deployments/{deployment_id}/upgrade"

        missing = post(server, path, {**FAST, "images": {name: "127.0.0.1:9/nowhere/api:404"}})

        assert missing.status_code == 502 and missing.json()["code"] == "image_pull_failed", missing.text
        assert missing.json()["upgrade"]["status"] == "failed"
        assert swarm_engine.client.api.inspect_service(service.id)["Version"]["Index"] == version, "untouched"
        assert api(server, f"/api/deployments/{deployment_id}")["operationMode"] == "Normal"
        assert history(server, deployment_id)[0]["newMode"] != "Migrating"

        refusals = {
            "migration": {"images": {name: ref("2")}, "migration": {"service": name, "command": "true"}},
            "job": {"images": {job_name: ref("2")}},
            "mixed": {"images": {name: ref("2"), box: ref("2")}},
        }
        for case, body in refusals.items():
            refused = post(server, path, body)
            assert refused.status_code == 400 and refused.json()["code"] == "invalid_request", (case, refused.text)
        assert "not supported for Swarm services" in post(server, path, refusals["migration"]).json()["detail"]
        assert "job" in post(server, path, refusals["job"]).json()["detail"]
        assert "separate requests" in post(server, path, refusals["mixed"]).json()["detail"]
        assert swarm_engine.client.api.inspect_service(service.id)["Version"]["Index"] == version
        assert api(server, f"/api/deployments/{deployment_id}")["environment"] == SWARM
    finally:
        container.remove(force=True)
