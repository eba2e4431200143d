"""The gateway's Swarm services and remote engines, against real engines: a single-node Swarm
(``swarm_engine``), a plain second engine, a TLS engine that cannot be reached, and one that hangs.

Stopping a service changes one field of its spec and nothing else; starting sets back only what was
recorded, and says so when someone changed the service in between.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass

import docker
import pytest

from conftest import QUICK, RUN_ID, RUN_LABEL
from rsgo.docker_ops import (
    UNSCHEDULABLE_CONSTRAINT,
    DockerError,
    DockerGateway,
    DockerUnreachable,
    NotFound,
    ServiceInfo,
)
from support import TEST_IMAGE, wait_until

CONVERGE = 90  # seconds: task start and stop on a loaded 2-core CI machine

# A PID 1 that ignores SIGTERM: only Swarm's kill at the end of the stop grace period ends it.
STUBBORN = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def gateway(swarm_engine):
    return DockerGateway(swarm_engine.url)


def spec_of(engine, service_id: str) -> dict:
    return engine.client.api.inspect_service(service_id)["Spec"]


def without_mode(spec: dict) -> dict:
    return {key: value for key, value in spec.items() if key != "Mode"}


def without_constraints(spec: dict) -> dict:
    placement = {k: v for k, v in spec["TaskTemplate"].get("Placement", {}).items() if k != "Constraints"}
    return {**spec, "TaskTemplate": {**spec["TaskTemplate"], "Placement": placement}}


def converged(gateway: DockerGateway, name: str, running: int) -> ServiceInfo:
    def check():
        info = gateway.inspect_service(name)
        return info if info.running_tasks == running else None

    return wait_until(check, CONVERGE, interval=0.2, message=f"{name} with {running} running task(s)")


def test_a_replicated_service_is_scaled_to_zero_and_back_with_nothing_else_changed(gateway, make_service,
                                                                                   swarm_engine):
    stack = unique("rep")
    name = f"{stack}-api"
    service = make_service(name, labels={"rsgo.stack": stack, "rsgo.depends_on": "db"}, env=["GREETING=hello"],
                           constraints=["node.role==manager"], mode=docker.types.ServiceMode("replicated", replicas=3))
    running = converged(gateway, name, 3)
    listed = {info.name: info for info in gateway.list_stack_services(stack)}
    assert set(listed) == {name}
    info = listed[name]
    assert (info.id, info.kind, info.mode, info.replicas, info.running_tasks, info.desired_tasks) == (
        service.id, "service", "replicated", 3, 3, 3)
    assert info.stack == stack and info.service == name and info.running and info.ready and info.state == "running"
    assert info.labels["rsgo.depends_on"] == "db" and info.image == TEST_IMAGE
    assert info.constraints == ("node.role==manager",) and not info.ignored and not info.job
    before = spec_of(swarm_engine, service.id)

    stopped = gateway.stop_service(name, grace_seconds=5)

    assert (stopped.replicas, stopped.running_tasks, stopped.running, stopped.state) == (0, 0, False, "stopped")
    after = spec_of(swarm_engine, service.id)
    assert after["Mode"] == {"Replicated": {"Replicas": 0}}
    assert without_mode(after) == without_mode(before)  # image, env, labels, constraints, everything
    assert after["TaskTemplate"]["ContainerSpec"]["Env"] == ["GREETING=hello"]
    assert gateway.stop_service(name, grace_seconds=5).version == stopped.version  # stopping again changes nothing

    memo = {**running.memo(), "version": stopped.version}
    assert memo == {"mode": "replicated", "replicas": 3, "version": stopped.version}
    started, warning = gateway.start_service(name, memo)

    assert warning is None
    assert started.replicas == 3 and started.running
    assert spec_of(swarm_engine, service.id) == before
    assert converged(gateway, name, 3).ready


def test_a_global_service_gets_rsgos_constraint_and_then_exactly_its_own_back(gateway, make_service, swarm_engine):
    stack = unique("glob")
    name = f"{stack}-agent"
    service = make_service(name, labels={"rsgo.stack": stack}, constraints=["node.role==manager"],
                           mode=docker.types.ServiceMode("global"))
    running = converged(gateway, name, 1)
    assert (running.mode, running.replicas, running.desired_tasks, running.ready) == ("global", None, 1, True)
    before = spec_of(swarm_engine, service.id)

    stopped = gateway.stop_service(name, grace_seconds=5)
    again = gateway.stop_service(name, grace_seconds=5)

    assert stopped.constraints == ("node.role==manager", UNSCHEDULABLE_CONSTRAINT)
    assert again.constraints == stopped.constraints and again.version == stopped.version  # never added twice
    assert stopped.unschedulable and not stopped.running and stopped.running_tasks == 0
    assert without_constraints(spec_of(swarm_engine, service.id)) == without_constraints(before)
    memo = {**running.memo(), "version": stopped.version}
    assert memo == {"mode": "global", "constraints": ["node.role==manager"], "version": stopped.version}

    started, warning = gateway.start_service(name, memo)

    assert warning is None
    assert started.constraints == ("node.role==manager",) and not started.unschedulable and started.running
    assert spec_of(swarm_engine, service.id) == before
    converged(gateway, name, 1)


def test_a_service_changed_while_stopped_gets_its_replicas_back_and_keeps_the_change(gateway, make_service,
                                                                                    swarm_engine):
    stack = unique("chg")
    name = f"{stack}-web"
    service = make_service(name, labels={"rsgo.stack": stack}, mode=docker.types.ServiceMode("replicated", replicas=2))
    running = converged(gateway, name, 2)
    stopped = gateway.stop_service(name, grace_seconds=5)
    swarm_engine.client.services.get(service.id).update(env=["ADDED=1"])  # someone else's change, meanwhile
    changed_version = gateway.inspect_service(name).version
    assert changed_version != stopped.version

    started, warning = gateway.start_service(name, {**running.memo(), "version": stopped.version})

    assert warning == (f"{name} was changed while rsgo had it stopped (spec version {stopped.version} → "
                       f"{changed_version}): only its replica count (2) was restored; the change was kept")
    assert started.replicas == 2
    assert spec_of(swarm_engine, service.id)["TaskTemplate"]["ContainerSpec"]["Env"] == ["ADDED=1"]
    converged(gateway, name, 2)


def test_a_change_racing_rsgos_own_update_is_refused_not_overwritten(gateway, make_service, swarm_engine):
    """rsgo sends the whole spec against the version it read: a stale version is refused by Swarm."""
    from rsgo.docker_ops.gateway import _stopped_spec  # the spec rsgo would send, read before the other change

    name = unique("race")
    service = make_service(name, labels={"rsgo.stack": name}, mode=docker.types.ServiceMode("replicated", replicas=1))
    read_by_rsgo = swarm_engine.client.api.inspect_service(service.id)
    swarm_engine.client.services.get(service.id).update(env=["RACED=1"])

    with pytest.raises(DockerError, match="out of sequence"):
        gateway._update_service_spec(read_by_rsgo, _stopped_spec(read_by_rsgo["Spec"]), f"stopping {name}")

    assert spec_of(swarm_engine, service.id)["TaskTemplate"]["ContainerSpec"]["Env"] == ["RACED=1"]


def test_a_job_is_left_alone(gateway, make_service, swarm_engine):
    name = unique("job")
    service = make_service(name, command=["true"], labels={"rsgo.stack": name},
                           mode=docker.types.ServiceMode("replicated-job", replicas=1, concurrency=1),
                           restart_policy=docker.types.RestartPolicy(condition="none"))
    info = gateway.inspect_service(name)
    assert info.mode == "replicated-job" and info.job and info.replicas is None
    before = swarm_engine.client.api.inspect_service(service.id)

    with pytest.raises(DockerError, match=f"stopping {name}: {name} is a job: left alone"):
        gateway.stop_service(name, grace_seconds=5)
    with pytest.raises(DockerError, match=f"starting {name}: {name} is a job: left alone"):
        gateway.start_service(name, info.memo())

    assert swarm_engine.client.api.inspect_service(service.id)["Version"] == before["Version"]


def test_a_service_still_running_after_the_grace_period_and_margin_is_an_error(gateway, make_service,
                                                                             swarm_engine):
    name = unique("slow")
    make_service(name, command=STUBBORN, labels={"rsgo.stack": name}, stop_grace_period=60 * 10**9,
                 mode=docker.types.ServiceMode("replicated", replicas=1))
    assert gateway.inspect_service(name).own_stop_timeout == 60
    converged(gateway, name, 1)

    try:
        with pytest.raises(DockerError, match=rf"stopping {name}: 1 task\(s\) still running after 10s"):
            gateway.stop_service(name, grace_seconds=0)  # rsgo waits 0 + 10 s; Swarm gives the task 60 s
    finally:
        # Not left to its 60 s grace period: the engine's shutdown at the end of the session would wait for it.
        for task in swarm_engine.client.containers.list(filters={"label": f"com.docker.swarm.service.name={name}"}):
            task.kill()


def test_a_stack_deployed_by_docker_stack_is_named_by_its_namespace(gateway, make_service):
    namespace = unique("shop")
    make_service(f"{namespace}_api", labels={"com.docker.stack.namespace": namespace},
                 mode=docker.types.ServiceMode("replicated", replicas=1))
    make_service(f"{namespace}_api2", labels={"com.docker.stack.namespace": namespace, "rsgo.maintenance": "IGNORE"},
                 mode=docker.types.ServiceMode("replicated", replicas=1))
    unlabelled = make_service(unique("unlabelled"), mode=docker.types.ServiceMode("replicated", replicas=1))

    listed = {info.name: info for info in gateway.list_stack_services(namespace)}

    assert set(listed) == {f"{namespace}_api", f"{namespace}_api2"}
    api = gateway.inspect_service(f"{namespace}_api")  # an exact name, though the list filter matches prefixes
    assert (api.stack, api.service, api.ignored) == (namespace, "api", False)
    assert listed[f"{namespace}_api2"].ignored
    assert gateway.inspect_service(api.id).name == f"{namespace}_api"
    assert unlabelled.name not in {info.name for info in gateway.list_stack_services()}
    with pytest.raises(NotFound, match=f"inspecting service {namespace}_nothing: no such service"):
        gateway.inspect_service(f"{namespace}_nothing")


def test_the_containers_of_a_services_tasks_are_never_listed_as_stack_containers(gateway, make_service,
                                                                               swarm_engine):
    stack = unique("tasks")
    make_service(f"{stack}-svc", labels={"rsgo.stack": stack}, container_labels={"rsgo.stack": stack},
                 mode=docker.types.ServiceMode("replicated", replicas=2))
    converged(gateway, f"{stack}-svc", 2)
    plain = swarm_engine.client.containers.run(TEST_IMAGE, QUICK, name=f"{stack}-plain", detach=True,
                                               labels={"rsgo.stack": stack, RUN_LABEL: RUN_ID})
    try:
        labelled = swarm_engine.client.containers.list(all=True, filters={"label": f"rsgo.stack={stack}"})
        assert len(labelled) == 3  # the two task containers do carry the label

        assert [info.name for info in gateway.list_stack_containers(stack)] == [f"{stack}-plain"]
        assert [info.name for info in gateway.inspect_stack(stack)] == [f"{stack}-plain"]
        assert gateway.list_stack_containers(stack)[0].kind == "container"
    finally:
        plain.remove(force=True)


def test_service_and_container_events_carry_their_type_and_labels(gateway, make_service):
    name = unique("events")
    stream = gateway.event_stream(services=True)
    seen = []

    def read():
        with contextlib.suppress(DockerError):  # close() ends the stream from this side
            for event in stream:
                seen.append(event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        make_service(name, labels={"rsgo.stack": name}, container_labels={"rsgo.stack": name},
                     mode=docker.types.ServiceMode("replicated", replicas=1))

        created = wait_until(lambda: [e for e in seen if e["type"] == "service" and e["name"] == name],
                             CONVERGE, message=f"the create event of service {name}")
        started = wait_until(lambda: [e for e in seen if e["type"] == "container" and e["action"] == "start"
                                      and e["labels"].get("rsgo.stack") == name],
                             CONVERGE, message=f"the start event of a task container of {name}")
    finally:
        stream.close()
        reader.join(timeout=10)
    assert created[0]["action"] == "create" and "name" not in created[0]["labels"]
    assert started[0]["labels"]["com.docker.swarm.service.name"] == name


def test_engine_facts_say_which_engine_manages_a_swarm(gateway, second_engine):
    swarm = gateway.engine_facts()
    plain = DockerGateway(second_engine.url).engine_facts()

    assert swarm.swarm_manager and not plain.swarm_manager
    assert plain.version and plain.api_version == second_engine.client.api.version()["ApiVersion"]


def test_a_plain_engine_has_no_services_to_list(second_engine):
    with pytest.raises(DockerError, match="listing services: Docker answered 503"):
        DockerGateway(second_engine.url).list_stack_services()


@dataclass(frozen=True)
class TlsFiles:
    ca: str | None
    cert: str | None
    key: str | None


def test_tls_files_that_do_not_exist_fail_as_a_docker_error_on_first_use(tmp_path):
    missing = TlsFiles(ca=str(tmp_path / "ca.pem"), cert=str(tmp_path / "cert.pem"), key=str(tmp_path / "key.pem"))
    gateway = DockerGateway("tcp://127.0.0.1:2376", tls=missing, timeout=5)  # the constructor does not connect

    with pytest.raises(DockerError, match="connecting to Docker"):
        gateway.ping()
    assert gateway.endpoint == "tcp://127.0.0.1:2376"


def test_an_engine_that_never_answers_is_unreachable_within_the_timeout(hung_engine):
    gateway = DockerGateway(hung_engine, timeout=2)
    began = time.monotonic()

    with pytest.raises(DockerUnreachable):
        gateway.list_stack_services()

    assert time.monotonic() - began < 5
