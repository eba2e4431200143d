"""A restart of rsgo during an upgrade, against the real engine and a real ``rsgo serve`` (README "Upgrades"):
rsgo is SIGKILLed while an upgrade stops, migrates or gates its new container, and the next start rolls
the upgrade back from its journal; also a kept-aside container that vanished meanwhile, and a container
that shares the upgraded container's network namespace (``network_mode: container:``).

Each moment is reached by polling ``GET /api/upgrades/{id}`` of an upgrade started with ``"wait": false``:
a container that takes seconds to stop, a migration that sleeps, a new image whose healthcheck stays
``starting`` so the start gate holds (the old image has none, so the rollback's own gate is quick).
"""

from __future__ import annotations

import io

import pytest
import requests

from conftest import RUN_ID, RUN_LABEL
from support import TEST_IMAGE, ServerProcess, wait_until
from upgrade_images import ComposeLikeStack, build_images, ref

ASIDE_MARK = ".rsgo-aside-"
# Its healthcheck fails inside a long start period: health stays "starting", the start gate waits on it.
PENDING = "pending"
PENDING_DOCKERFILE = (f"FROM {TEST_IMAGE}\nENV APP_VERSION=pending\nHEALTHCHECK --interval=1s --timeout=1s "
                      "--start-period=600s --retries=1 CMD test -f /tmp/ready\n"
                      "CMD [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n")
QUICK_GATE = {"stableFor": "1s", "healthTimeout": "300s"}
RECOVERY = 120  # seconds for a restarted rsgo to settle the upgrade (generous: a loaded 2-core box)


@pytest.fixture(scope="module")
def images(docker_client):
    ids = build_images(docker_client)
    image, _ = docker_client.images.build(fileobj=io.BytesIO(PENDING_DOCKERFILE.encode()), tag=ref(PENDING), rm=True)
    return {**ids, PENDING: image.id}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("upgrade-recovery") / "data")
    yield server
    server.stop()


@pytest.fixture
def server(shared_server):
    """The module's ``rsgo serve``, running: the tests kill and restart it (one that failed half-way may
    have left it down; an upgrade it left unfinished is settled by the next start, as in production)."""
    if shared_server.process is None or shared_server.process.poll() is not None:
        shared_server.start(timeout=90)
    return shared_server


@pytest.fixture
def make_stack(docker_client):
    stacks = []

    def make() -> ComposeLikeStack:
        stack = ComposeLikeStack(docker_client, {RUN_LABEL: RUN_ID})
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.remove()


# -- talking to the server ----------------------------------------------------------------------

def call(server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{server.url}{path}", headers=server.headers, timeout=120, **kwargs)


def fetch(server, path: str) -> dict:
    answer = call(server, "GET", path)
    assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text[:500]}"
    return answer.json()


def discovered(server, stack: ComposeLikeStack, containers: int) -> dict:
    def seen():
        answer = call(server, "GET", f"/api/deployments/{stack.name}")
        if answer.status_code == 200 and answer.json()["containerCounts"]["total"] == containers:
            return answer.json()
        return None

    return wait_until(seen, 60, interval=0.2, message=f"discovery of {stack.name} with {containers} containers")


def start_upgrade(server, stack: ComposeLikeStack, **body) -> int:
    answer = call(server, "POST", f"/api/deployments/{stack.name}/upgrade", json={**QUICK_GATE, **body, "wait": False})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def upgrade_at(server, upgrade_id: int, status: str, step: str, container_step: tuple[str, str] | None = None,
               timeout: float = 90) -> dict:
    """Wait until the upgrade is in ``status`` with ``step`` running (and a container at its step)."""

    def there():
        body = fetch(server, f"/api/upgrades/{upgrade_id}")
        assert not body["finished"], f"upgrade {upgrade_id} ended before rsgo was killed: {body}"
        last = body["steps"][-1] if body["steps"] else {}
        steps = {c["name"]: c["step"] for c in body["containers"]}
        if body["status"] == status and last.get("step") == step and last.get("result") == "running" and (
                container_step is None or steps.get(container_step[0]) == container_step[1]):
            return body
        return None

    return wait_until(there, timeout, interval=0.1, message=f"upgrade {upgrade_id} {status} in step {step!r}")


def settled(server, upgrade_id: int) -> dict:
    def finished():
        body = fetch(server, f"/api/upgrades/{upgrade_id}")
        return body if body["finished"] else None

    return wait_until(finished, RECOVERY, interval=0.2, message=f"upgrade {upgrade_id} settled after the restart")


def kill_and_restart(server) -> None:
    server.kill(9)
    server.start(timeout=90)


def mode(server, stack: ComposeLikeStack) -> str:
    return fetch(server, f"/api/deployments/{stack.name}")["operationMode"]


def history(server, stack: ComposeLikeStack) -> list[dict]:
    return fetch(server, f"/api/deployments/{stack.name}/history")["items"]


# -- what Docker shows ----------------------------------------------------------------------------

def assert_old_container_back(stack: ComposeLikeStack, service: str, old: dict) -> None:
    """The service's container under its name is the old one, running, with its old restart policy."""
    now = stack.inspect(service)
    assert now["Id"] == old["Id"], f"{service}: {now['Id'][:12]} is not the previous {old['Id'][:12]}"
    assert now["Name"] == old["Name"]
    assert now["State"]["Running"], now["State"]
    assert now["HostConfig"]["RestartPolicy"] == old["HostConfig"]["RestartPolicy"]


def assert_nothing_left(stack: ComposeLikeStack, upgrade_id: int) -> None:
    client = stack.client
    aside = [c.name for c in client.containers.list(all=True, filters={"name": stack.name}) if ASIDE_MARK in c.name]
    assert aside == [], f"containers still kept aside: {aside}"
    migrations = [c.name for c in client.containers.list(all=True, filters={"label": f"rsgo.upgrade={upgrade_id}"})
                  if c.labels.get("rsgo.migration-of") == stack.name]
    assert migrations == [], f"the migration's container is left: {migrations}"


def assert_recovered(body: dict, upgrade_id: int, status: str) -> None:
    assert body["status"] == status, body
    assert body["recoveredAfterRestart"] is True, body
    assert f"rsgo stopped during upgrade {upgrade_id}" in body["error"], body["error"]
    assert body["steps"][-1]["step"] == "roll back" and body["steps"][-1]["result"] == "succeeded", body["steps"]


def assert_history_says_rolled_back(server, stack: ComposeLikeStack, upgrade_id: int, new_mode: str) -> None:
    entries = history(server, stack)
    assert [(e["previousMode"], e["newMode"]) for e in entries[:2]] == [("Migrating", new_mode),
                                                                       ("Normal", "Migrating")], entries[:2]
    assert entries[0]["outcome"] == "failed", entries[0]
    assert f"rsgo stopped during upgrade {upgrade_id}" in entries[0]["reason"], entries[0]
    assert f"upgrade {upgrade_id}" in entries[1]["reason"], entries[1]


def running(stack: ComposeLikeStack, service: str) -> dict | None:
    current = stack.inspect(service)
    return current if current["State"]["Running"] else None


def received_term(stack: ComposeLikeStack, service: str) -> bool:
    container = stack.client.containers.get(f"{stack.name}-{service}-1")
    return container.exec_run(["test", "-f", "/tmp/term"]).exit_code == 0


def network_namespace(stack: ComposeLikeStack, container_id: str) -> str:
    """The container's network namespace ("net:[4026532...]"), as its own processes see it."""
    result = stack.client.containers.get(container_id).exec_run(["ls", "-l", "/proc/self/ns/net"])
    assert result.exit_code == 0, result.output
    return result.output.decode().rpartition("->")[2].strip()


# -- a restart during each step -------------------------------------------------------------------

def test_sigkill_during_stop_rolls_the_upgrade_back_at_the_next_start(server, make_stack, images):
    stack = make_stack()
    stack.add("api", stop_signal_slow=True, stop_seconds=6)  # still stopping when rsgo is back
    stack.add("worker", depends_on="api")
    old = {service: stack.inspect(service) for service in ("api", "worker")}
    discovered(server, stack, 2)

    upgrade_id = start_upgrade(server, stack, images={"api": ref("2")})
    upgrade_at(server, upgrade_id, "stopping", "stop", (f"{stack.name}-api-1", "stopping"))
    wait_until(lambda: received_term(stack, "api"), 30, interval=0.1, message="Docker to begin stopping api")
    kill_and_restart(server)

    assert_recovered(settled(server, upgrade_id), upgrade_id, "rolled-back")
    assert_old_container_back(stack, "api", old["api"])
    assert_old_container_back(stack, "worker", old["worker"])
    api = stack.inspect("api")
    assert api["Image"] == images["1"]
    # Started again once the stop under way had ended: not merely seen running while its TERM trap ran.
    assert api["State"]["StartedAt"] > old["api"]["State"]["StartedAt"], api["State"]
    assert_nothing_left(stack, upgrade_id)
    assert mode(server, stack) == "Normal", "no migration had started"
    assert_history_says_rolled_back(server, stack, upgrade_id, "Normal")


def test_sigkill_during_the_migration_rolls_the_upgrade_back_and_leaves_the_stack_failed(server, make_stack,
                                                                                     images):
    stack = make_stack()
    stack.add("api")
    old = stack.inspect("api")
    discovered(server, stack, 1)

    upgrade_id = start_upgrade(server, stack, images={"api": ref("2")},
                               migration={"service": "api", "command": ["sleep", "60"]})
    upgrade_at(server, upgrade_id, "migrating", "migrate")
    wait_until(lambda: stack.client.containers.list(filters={"label": f"rsgo.upgrade={upgrade_id}",
                                                             "name": stack.name, "status": "running"}),
               60, interval=0.1, message="the migration's container to run")
    kept = stack.client.api.inspect_container(f"{stack.name}-api-1{ASIDE_MARK}{upgrade_id}")
    assert kept["Id"] == old["Id"] and kept["HostConfig"]["RestartPolicy"]["Name"] == "no"
    kill_and_restart(server)

    body = settled(server, upgrade_id)
    assert_recovered(body, upgrade_id, "failed")
    assert body["migration"]["started"] is True
    assert "schema may already be migrated" in body["error"], body["error"]
    assert_old_container_back(stack, "api", old)
    assert_nothing_left(stack, upgrade_id)
    assert mode(server, stack) == "Failed", "the migration had started: a person decides"
    assert_history_says_rolled_back(server, stack, upgrade_id, "Failed")


def test_sigkill_during_the_start_gate_rolls_the_upgrade_back_at_the_next_start(server, make_stack, images):
    stack = make_stack()
    stack.add("db", ignore=True)
    stack.add("api", depends_on="db", environment={"SHOP_SETTING": "kept"})
    stack.add("worker", depends_on="api")
    old = {service: stack.inspect(service) for service in ("db", "api", "worker")}
    discovered(server, stack, 3)

    upgrade_id = start_upgrade(server, stack, images={"api": ref(PENDING)})
    upgrade_at(server, upgrade_id, "starting", "start", (f"{stack.name}-api-1", "starting"))
    new = wait_until(lambda: running(stack, "api"), 30, interval=0.1, message="the new api container to run")
    assert new["Id"] != old["api"]["Id"] and new["Image"] == images[PENDING]
    kill_and_restart(server)

    assert_recovered(settled(server, upgrade_id), upgrade_id, "rolled-back")
    for service in ("db", "api", "worker"):
        assert_old_container_back(stack, service, old[service])
    assert stack.inspect("db")["State"]["StartedAt"] == old["db"]["State"]["StartedAt"], "the ignored db kept running"
    assert stack.client.containers.list(all=True, filters={"id": new["Id"]}) == [], "the new container is removed"
    assert_nothing_left(stack, upgrade_id)
    assert mode(server, stack) == "Normal", "no migration had started"
    assert_history_says_rolled_back(server, stack, upgrade_id, "Normal")


def test_a_kept_aside_container_that_vanished_is_recreated_from_the_journal(server, make_stack, images):
    stack = make_stack()
    stack.add("api", environment={"SHOP_SETTING": "kept"})
    old = stack.inspect("api")
    discovered(server, stack, 1)

    upgrade_id = start_upgrade(server, stack, images={"api": ref(PENDING)})
    body = upgrade_at(server, upgrade_id, "starting", "start", (f"{stack.name}-api-1", "starting"))
    aside = f"{stack.name}-api-1{ASIDE_MARK}{upgrade_id}"
    assert body["containers"][0]["keptAsideAs"] == aside
    server.kill(9)
    stack.client.api.remove_container(aside, force=True)  # someone cleaned up while rsgo was down
    server.start(timeout=90)

    body = settled(server, upgrade_id)
    assert_recovered(body, upgrade_id, "rolled-back")
    again = stack.inspect("api")
    assert again["Id"] != old["Id"], "a new container, made from what the journal stored"
    assert again["Image"] == images["1"] and again["State"]["Running"], again["State"]
    assert again["HostConfig"]["RestartPolicy"] == old["HostConfig"]["RestartPolicy"]
    assert "SHOP_SETTING=kept" in again["Config"]["Env"] and "APP_VERSION=1" in again["Config"]["Env"]
    assert again["Config"]["Labels"]["com.docker.compose.service"] == "api"
    assert set(again["NetworkSettings"]["Networks"]) == {stack.network}
    assert "api" in again["NetworkSettings"]["Networks"][stack.network]["Aliases"]
    assert [m["Name"] for m in again["Mounts"] if m["Type"] == "volume"] == [stack.volume]
    assert_nothing_left(stack, upgrade_id)
    assert mode(server, stack) == "Normal"
    assert_history_says_rolled_back(server, stack, upgrade_id, "Normal")


# -- a container in the upgraded one's network namespace --------------------------------------------

def test_a_network_namespace_dependent_follows_the_new_api_and_after_a_rollback_the_old_one(server, make_stack,
                                                                                     images):
    stack = make_stack()
    stack.add("api")
    old_api = stack.inspect("api")
    stack.add("sidecar", depends_on="api", network_mode=f"container:{old_api['Id']}")
    old_sidecar = stack.inspect("sidecar")
    assert network_namespace(stack, old_sidecar["Id"]) == network_namespace(stack, old_api["Id"])
    discovered(server, stack, 2)

    answer = call(server, "POST", f"/api/deployments/{stack.name}/upgrade",
                  json={"images": {"api": ref("2")}, "stableFor": "1s", "healthTimeout": "60s"})
    assert answer.status_code == 200, answer.text
    roles = {c["name"]: c["role"] for c in answer.json()["containers"]}
    assert roles == {f"{stack.name}-api-1": "recreate", f"{stack.name}-sidecar-1": "rejoin"}, roles
    api, sidecar = stack.inspect("api"), stack.inspect("sidecar")
    assert api["Id"] != old_api["Id"] and api["Image"] == images["2"] and api["State"]["Running"]
    assert sidecar["Id"] != old_sidecar["Id"] and sidecar["State"]["Running"], sidecar["State"]
    assert sidecar["HostConfig"]["NetworkMode"] == f"container:{api['Id']}"
    assert sidecar["Image"] == images["1"], "it keeps its own image"
    assert network_namespace(stack, sidecar["Id"]) == network_namespace(stack, api["Id"])
    assert mode(server, stack) == "Normal"

    answer = call(server, "POST", f"/api/deployments/{stack.name}/rollback", json={"reason": "back"})
    assert answer.status_code == 200, answer.text
    assert_old_container_back(stack, "api", old_api)
    assert_old_container_back(stack, "sidecar", old_sidecar)
    sidecar = stack.inspect("sidecar")
    assert sidecar["HostConfig"]["NetworkMode"] == f"container:{old_api['Id']}"
    assert network_namespace(stack, sidecar["Id"]) == network_namespace(stack, old_api["Id"])
    assert_nothing_left(stack, answer.json()["id"])
    assert_nothing_left(stack, answer.json()["rollbackOf"])
    assert mode(server, stack) == "Normal"
