"""Replacing a container with one of a new image and putting the old one back, against the real engine:
``recreation_request`` and ``migration_request`` (rsgo/docker_ops/recreate.py) sent by the gateway's
upgrade calls, in the order an upgrade uses them (stop, set aside, create, start; rollback: remove the
new one, rename the old one back, restore its restart policy, start it).

Two images, v1 and v2, differ in an ENV default, CMD, a LABEL, the HEALTHCHECK and a VOLUME (v2 no longer
declares /legacy, so every volume a test makes belongs to a container still there at its end); the
containers are made as compose makes them (its labels, a restart policy, binds, ports, network aliases).
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import uuid

import docker
import pytest

from conftest import RUN_ID, RUN_LABEL
from rsgo.docker_ops import (
    STACK_LABEL,
    ContainerNotFound,
    CreationRequest,
    DockerError,
    DockerGateway,
    aside_name,
    migration_request,
    recreation_request,
)
from support import TEST_IMAGE, free_port, wait_until

CASE_LABEL = "rsgo.test.recreate"  # the scene a container, network or volume belongs to
LOOP = """["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]"""
V2_LOOP = """["sh", "-c", "trap 'exit 0' TERM; echo v2; while :; do sleep 0.1; done"]"""
V1 = f"""FROM {TEST_IMAGE}
ENV MODE=v1 SHARED=both
LABEL app.version=1 app.vendor=rsgo
HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD ["true"]
VOLUME /cache /legacy
EXPOSE 7000
CMD {LOOP}
"""
V2 = f"""FROM {TEST_IMAGE}
ENV MODE=v2 SHARED=both
LABEL app.version=2 app.vendor=rsgo
HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["test", "-d", "/cache"]
VOLUME /cache
EXPOSE 7000
CMD {V2_LOOP}
"""
# Complete: Docker fills the fields a container's healthcheck leaves out from its image's.
USER_HEALTHCHECK = {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Timeout": 2_000_000_000, "Retries": 5}
ALWAYS = {"Name": "always", "MaximumRetryCount": 0}


@pytest.fixture(scope="module")
def gateway():
    return DockerGateway()


@pytest.fixture(scope="module")
def images(docker_client):
    """v1 and v2 refs, built once for the module (no RUN step: only metadata, so quick)."""
    refs = {}
    for version, dockerfile in (("v1", V1), ("v2", V2)):
        refs[version] = f"rsgo-test/recreate:{RUN_ID}-{version}"
        docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=refs[version], rm=True)
    yield refs
    for ref in refs.values():
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.images.remove(ref, force=True)


class Scene:
    """Containers made as compose makes them, with their networks and volumes; all removed at the end."""

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.project = f"rc{uuid.uuid4().hex[:6]}"
        self.labels = {RUN_LABEL: RUN_ID, CASE_LABEL: self.project}

    def network(self, short: str) -> str:
        name = f"{self.project}_{short}"
        self.client.networks.create(name, labels=self.labels)
        return name

    def volume(self, short: str) -> str:
        return self.client.volumes.create(f"{self.project}_{short}", labels=self.labels).name

    def service(self, service: str, image: str, *, networks: dict | None = None, network_mode: str | None = None,
                binds=None, ports: dict | None = None, command=None, entrypoint=None, environment=None,
                healthcheck=None, labels: dict | None = None) -> str:
        """Created and started; ``networks`` maps each network to the aliases on it (the first one at create)."""
        api, networks = self.client.api, networks or {}
        name = f"{self.project}-{service}-1"
        first = network_mode or next(iter(networks), None)
        all_labels = {**self.labels, STACK_LABEL: self.project, "com.docker.compose.project": self.project,
                      "com.docker.compose.service": service, "team": "ops",
                      "com.docker.compose.image": self.client.images.get(image).id, **(labels or {})}
        created = api.create_container(
            image, command, name=name, entrypoint=entrypoint, environment=environment, healthcheck=healthcheck,
            labels=all_labels, ports=list(ports or {}),
            host_config=api.create_host_config(binds=binds, port_bindings=ports, network_mode=first,
                                               restart_policy=ALWAYS),
            networking_config=api.create_networking_config(
                {first: api.create_endpoint_config(aliases=networks[first])}) if networks else None)
        for network, aliases in list(networks.items())[1:]:
            api.connect_container_to_network(created["Id"], network, aliases=aliases)
        api.start(created["Id"])
        return name

    def remove(self) -> None:
        label = {"label": f"{CASE_LABEL}={self.project}"}
        containers = self.client.containers.list(all=True, filters=label)
        volumes = {mount["Name"] for container in containers for mount in container.attrs["Mounts"]
                   if mount["Type"] == "volume"} | {volume.name for volume in self.client.volumes.list(filters=label)}
        for container in containers:
            container.remove(force=True, v=True)
        for network in self.client.networks.list(filters=label):
            network.remove()
        for volume in volumes:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(volume).remove(force=True)


@pytest.fixture
def scene(docker_client):
    made = Scene(docker_client)
    yield made
    made.remove()


# -- what an upgrade and its rollback do to one container ------------------------------------------

def set_aside(gateway: DockerGateway, name: str, upgrade_id: int) -> dict:
    """Stop it, rename it aside, no restart policy; its inspect from before."""
    old = gateway.inspect_raw(name)
    gateway.stop(name, 5)
    gateway.rename(name, aside_name(name, upgrade_id))
    gateway.set_restart_policy(aside_name(name, upgrade_id), {"Name": "no", "MaximumRetryCount": 0})
    return old


def recreate(gateway: DockerGateway, old: dict, new_ref: str, **kwargs) -> str:
    request = recreation_request(old, gateway.image_inspect(old["Image"]), new_ref, gateway.image_inspect(new_ref),
                                 **kwargs)
    return gateway.create(request)


def upgrade(gateway: DockerGateway, name: str, new_ref: str, upgrade_id: int = 1) -> tuple[dict, dict]:
    """The old container's inspect and the running new one's."""
    old = set_aside(gateway, name, upgrade_id)
    gateway.start(recreate(gateway, old, new_ref))
    return old, running(gateway, name)


def roll_back(gateway: DockerGateway, old: dict, upgrade_id: int = 1) -> dict:
    """The old container back under its name, running; its inspect."""
    name = old["Name"].lstrip("/")
    gateway.remove(name)
    gateway.rename(aside_name(name, upgrade_id), name)
    gateway.set_restart_policy(name, old["HostConfig"]["RestartPolicy"])
    gateway.start(name)
    return running(gateway, name)


def running(gateway: DockerGateway, name: str) -> dict:
    return wait_until(lambda: (attrs := gateway.inspect_raw(name))["State"]["Running"] and attrs,
                      message=f"{name} running")


def run_in(client: docker.DockerClient, name: str, *command: str) -> str:
    result = client.containers.get(name).exec_run(list(command))
    assert result.exit_code == 0, (command, result.output)
    return result.output.decode()


def resolves(client: docker.DockerClient, probe: str, host: str) -> set[str]:
    """The addresses ``host`` resolves to from the container ``probe`` (Docker's embedded DNS)."""
    result = client.containers.get(probe).exec_run(["busybox", "nslookup", host])
    return set(re.findall(r"^Address: ([0-9.]+)$", result.output.decode(), re.MULTILINE))


def volumes(attrs: dict) -> dict[str, str]:
    """Mount point -> volume name."""
    return {mount["Destination"]: mount["Name"] for mount in attrs["Mounts"] if mount["Type"] == "volume"}


def volumes_mounted_for(client: docker.DockerClient, container_id: str, since: float) -> dict[str, str]:
    """Mount point -> volume name of each volume the engine mounted for a container since then (from its events:
    the container itself is gone)."""
    events = client.api.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                               filters={"type": "volume", "event": "mount"})
    return {event["Actor"]["Attributes"]["destination"]: event["Actor"]["ID"] for event in events
            if event["Actor"]["Attributes"].get("container") == container_id}


def volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        return False
    return True


def address(attrs: dict, network: str) -> str:
    return attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def aliases(attrs: dict, network: str) -> list[str]:
    return attrs["NetworkSettings"]["Networks"][network]["Aliases"] or []


# -- upgrade and rollback --------------------------------------------------------------------------

def test_the_new_image_defaults_apply_the_user_settings_stay_and_a_rollback_restores_the_old_container(
        scene, images, gateway, docker_client):
    name = scene.service("app", images["v1"], networks={scene.network("default"): ["app"]},
                         environment={"USER_SET": "mine"})
    v2 = gateway.image_inspect(images["v2"])

    old, new = upgrade(gateway, name, images["v2"])

    config = new["Config"]
    assert new["Id"] != old["Id"] and config["Image"] == images["v2"]
    assert "USER_SET=mine" in config["Env"] and "MODE=v2" in config["Env"] and "MODE=v1" not in config["Env"]
    assert config["Cmd"] == v2["Config"]["Cmd"]  # the old image's CMD was a default: the new one's applies
    assert config["Healthcheck"] == v2["Config"]["Healthcheck"]
    assert wait_until(lambda: gateway.inspect(name).health == "healthy", message="v2's healthcheck passing")
    labels = config["Labels"]
    kept = {STACK_LABEL: scene.project, "com.docker.compose.project": scene.project,
            "com.docker.compose.service": "app", "team": "ops"}
    assert kept.items() <= labels.items()
    assert labels["com.docker.compose.image"] == v2["Id"]
    assert labels["app.version"] == "2"
    assert new["HostConfig"]["RestartPolicy"] == ALWAYS
    assert gateway.inspect_raw(aside_name(name, 1))["HostConfig"]["RestartPolicy"]["Name"] == "no"
    # The one kept aside still has the stack's label, but is no longer part of the stack.
    assert [info.id for info in gateway.list_stack_containers(scene.project)] == [new["Id"]]

    back = roll_back(gateway, old)

    assert back["Id"] == old["Id"] and back["Config"]["Image"] == images["v1"]
    assert back["HostConfig"]["RestartPolicy"] == ALWAYS


def test_a_user_set_command_and_healthcheck_are_kept(scene, images, gateway):
    command = ["sh", "-c", "trap 'exit 0' TERM; echo mine; while :; do sleep 0.1; done"]
    name = scene.service("worker", images["v1"], command=command, healthcheck=USER_HEALTHCHECK)

    _, new = upgrade(gateway, name, images["v2"])

    assert new["Config"]["Cmd"] == command
    assert new["Config"]["Healthcheck"] == USER_HEALTHCHECK


def test_named_and_anonymous_volumes_survive_the_upgrade_and_the_rollback(scene, images, gateway, docker_client):
    data = scene.volume("data")
    name = scene.service("db", images["v1"], binds=[f"{data}:/data"])
    run_in(docker_client, name, "sh", "-c", "echo named > /data/file && echo anonymous > /cache/file")

    old, new = upgrade(gateway, name, images["v2"])

    # The images' VOLUMEs: the same volumes again, also the one v2 no longer declares.
    assert volumes(new) == volumes(old) and set(volumes(new)) == {"/data", "/cache", "/legacy"}
    assert volumes(new)["/data"] == data
    assert run_in(docker_client, name, "cat", "/data/file", "/cache/file") == "named\nanonymous\n"
    run_in(docker_client, name, "sh", "-c", "echo from-v2 > /data/v2 && echo from-v2 > /cache/v2")

    roll_back(gateway, old)

    assert run_in(docker_client, name, "cat", "/data/file", "/data/v2", "/cache/file", "/cache/v2") == (
        "named\nfrom-v2\nanonymous\nfrom-v2\n")


def test_aliases_resolve_on_both_networks_after_the_upgrade_and_the_rollback(scene, images, gateway, docker_client):
    front, back = scene.network("front"), scene.network("back")
    name = scene.service("api", images["v1"], networks={front: ["api", "api-extra"], back: ["api-internal"]})
    probe = scene.service("probe", TEST_IMAGE, networks={front: ["probe"], back: []},
                          command=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])

    old, new = upgrade(gateway, name, images["v2"])

    assert set(new["NetworkSettings"]["Networks"]) == {front, back}
    for network, alias in ((front, "api"), (front, "api-extra"), (back, "api-internal")):
        assert wait_until(lambda n=network, a=alias: resolves(docker_client, probe, a) == {address(new, n)},
                          message=f"{alias} resolving to the new container on {network}")
    assert old["Id"][:12] in aliases(old, front)
    assert old["Id"][:12] not in aliases(new, front) + aliases(new, back)
    assert {"api", "api-extra"} <= set(aliases(new, front))

    back_attrs = roll_back(gateway, old)

    for network, alias in ((front, "api"), (front, "api-extra"), (back, "api-internal")):
        assert wait_until(lambda n=network, a=alias: resolves(docker_client, probe, a) == {address(back_attrs, n)},
                          message=f"{alias} resolving to the old container again on {network}")


def test_a_container_on_the_default_bridge_keeps_its_published_port(scene, images, gateway):
    port = free_port()
    name = scene.service("web", images["v1"], ports={"7000/tcp": ("127.0.0.1", port)})
    published = {"7000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}

    old, new = upgrade(gateway, name, images["v2"])

    assert list(new["NetworkSettings"]["Networks"]) == ["bridge"]
    assert new["HostConfig"]["PortBindings"] == published
    assert new["NetworkSettings"]["Ports"]["7000/tcp"] == published["7000/tcp"]

    back = roll_back(gateway, old)

    assert back["NetworkSettings"]["Ports"]["7000/tcp"] == published["7000/tcp"]


def test_a_container_in_another_ones_network_namespace_follows_the_new_one(scene, images, gateway):
    owner = scene.service("vpn", images["v1"], networks={scene.network("default"): ["vpn"]})
    owner_id = gateway.inspect_raw(owner)["Id"]
    follower = scene.service("app", images["v1"], network_mode=f"container:{owner_id}")

    old_follower = set_aside(gateway, follower, 1)  # dependents first, as the upgrade stops them
    old_owner = set_aside(gateway, owner, 1)
    new_owner = recreate(gateway, old_owner, images["v2"])
    new_follower = recreate(gateway, old_follower, images["v2"],
                            network_container_ids={old_owner["Id"]: new_owner, owner: new_owner})
    gateway.start(new_owner)
    gateway.start(new_follower)

    # (Docker refuses a hostname with a container: network mode: the create would have failed with the old one's)
    assert running(gateway, follower)["HostConfig"]["NetworkMode"] == f"container:{new_owner}"

    gateway.remove(follower)
    roll_back(gateway, old_owner)
    gateway.rename(aside_name(follower, 1), follower)
    gateway.start(follower)
    assert running(gateway, follower)["HostConfig"]["NetworkMode"] == f"container:{old_owner['Id']}"


def test_a_failed_network_connect_removes_the_half_made_container(scene, gateway):
    request = one_off(scene, "half", TEST_IMAGE, ["true"])
    # Refused at connect. (A network that does not exist is not: the engine records it for a container not
    # yet running, and the start fails.)
    request.later_networks["bridge"] = {"Aliases": ["half"]}

    with pytest.raises(DockerError, match=rf"^connecting {request.name} to bridge: Docker answered 400: .*alias"):
        gateway.create(request)

    assert not gateway.containers_labelled(f"{CASE_LABEL}={scene.project}")


def test_a_missing_container_is_said_so(gateway):
    for call in (gateway.inspect_raw, gateway.remove, lambda name: gateway.rename(name, f"{name}-2")):
        with pytest.raises(ContainerNotFound):
            call(f"rsgo-test-never-made-{RUN_ID}")


# -- one-off containers ------------------------------------------------------------------------------

def test_a_migration_container_is_not_part_of_the_stack_and_sees_the_services_volume(
        scene, images, gateway, docker_client):
    data = scene.volume("data")
    network = scene.network("default")
    name = scene.service("api", images["v1"], networks={network: ["api"]}, binds=[f"{data}:/data"],
                         ports={"7000/tcp": ("127.0.0.1", free_port())})
    run_in(docker_client, name, "sh", "-c", "echo schema-1 > /data/version")
    source = gateway.inspect_raw(name)
    labels = {**scene.labels, "rsgo.role": "migration"}

    v2 = gateway.image_inspect(images["v2"])

    def request(command):
        return migration_request(source, gateway.image_inspect(images["v1"]), images["v2"], v2,
                                 name=f"{scene.project}-migrate", command=command, labels=labels)

    created = docker_client.api.inspect_container(gateway.create(request(["true"])))
    gateway.remove(created["Id"])
    # Its own and its image's: nothing of rsgo.stack or compose, so it does not look like part of the stack.
    assert created["Config"]["Labels"] == {**v2["Config"]["Labels"], **labels}
    assert not created["HostConfig"]["PortBindings"] and not created["HostConfig"]["PublishAllPorts"]
    assert created["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert created["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert not aliases(created, network)  # (Docker adds the short id only when it starts)
    assert "MODE=v2" in created["Config"]["Env"]

    started = time.time()
    outcome = gateway.run_once(request(["sh", "-c", "cat /data/version; echo $MODE"]), timeout=30)

    assert (outcome.exit_code, outcome.timed_out, outcome.log_tail) == (0, False, ["schema-1", "v2"])
    assert [row["Id"] for row in gateway.containers_labelled(f"{CASE_LABEL}={scene.project}")] == [source["Id"]]
    # The service's volumes, named and anonymous, were the run's and outlive it.
    assert volumes_mounted_for(docker_client, outcome.container_id, started) == volumes(source)
    assert all(volume_exists(docker_client, volume) for volume in volumes(source).values())


def one_off(scene: Scene, short: str, image: str, command: list[str]) -> CreationRequest:
    return CreationRequest(name=f"{scene.project}-{short}", later_networks={},
                           body={"Image": image, "Cmd": command, "Labels": scene.labels, "HostConfig": {}})


def test_run_once_reports_the_exit_code_and_the_last_lines_then_removes_the_container_and_its_empty_volumes(
        scene, images, gateway, docker_client):
    request = one_off(scene, "exit", images["v1"], ["sh", "-c", "for i in 1 2 3 4 5; do echo out-$i; done; exit 3"])
    started = time.time()

    outcome = gateway.run_once(request, timeout=30, log_lines=3)

    assert (outcome.exit_code, outcome.timed_out, outcome.log_tail) == (3, False, ["out-3", "out-4", "out-5"])
    assert not gateway.containers_labelled(f"{CASE_LABEL}={scene.project}")
    made_for_it = volumes_mounted_for(docker_client, outcome.container_id, started)
    assert set(made_for_it) == {"/cache", "/legacy"}  # v1's VOLUMEs, created empty for the run
    assert not any(volume_exists(docker_client, volume) for volume in made_for_it.values())


def test_run_once_kills_a_run_at_its_deadline_and_removes_the_container(scene, gateway):
    request = one_off(scene, "slow", TEST_IMAGE, ["sh", "-c", "echo started >&2; sleep 60"])
    started = time.monotonic()

    outcome = gateway.run_once(request, timeout=2)

    assert time.monotonic() - started < 2 + 5
    assert outcome.timed_out and outcome.exit_code is None
    assert outcome.log_tail == ["started"]  # stderr too
    assert not gateway.containers_labelled(f"{CASE_LABEL}={scene.project}")


# -- images and listing ------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["127.0.0.1:9/nope/missing:1", f"127.0.0.1:9/nope/missing@sha256:{'ab' * 32}"])
def test_pulling_from_an_unreachable_registry_fails_at_once_with_the_reference(gateway, ref):
    started = time.monotonic()
    # The engine tried the registry at 127.0.0.1:9: the reference was split where it should be.
    with pytest.raises(DockerError, match=rf"^pulling {re.escape(ref)}: .*127\.0\.0\.1:9.*connection refused"):
        gateway.pull(ref)
    assert time.monotonic() - started < 10


def test_inspecting_an_image_the_engine_does_not_have_gives_none(gateway):
    assert gateway.image_inspect(f"rsgo-test/never-built:{RUN_ID}") is None


def test_the_restart_count_is_read_from_inspect(scene, gateway, docker_client):
    api = docker_client.api
    created = api.create_container(TEST_IMAGE, ["sh", "-c", "exit 1"], name=f"{scene.project}-crashing",
                                   labels=scene.labels, host_config=api.create_host_config(
                                       restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}))
    api.start(created["Id"])

    assert wait_until(lambda: gateway.inspect(created["Id"]).restart_count == 2, message="two restarts")


# -- the requests themselves: what the engine tests above do not reach --------------------------------

OLD_ID = "a" * 64
OLD_IMAGE = {"Id": "sha256:old", "Config": {"Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["PATH=/bin"]}}
NEW_IMAGE = {"Id": "sha256:new", "Config": {}}


def old_container(config: dict | None = None, host_config: dict | None = None, **attrs) -> dict:
    return {"Id": OLD_ID, "Name": "/app", "Config": {"Image": "app:1", **(config or {})},
            "HostConfig": host_config or {}, **attrs}


def test_a_users_entrypoint_keeps_its_cmd_even_where_it_equals_the_images():
    users = recreation_request(old_container({"Entrypoint": ["/mine"], "Cmd": ["serve"]}), OLD_IMAGE, "app:2",
                               NEW_IMAGE).body
    images = recreation_request(old_container({"Entrypoint": ["/entry"], "Cmd": ["serve"]}), OLD_IMAGE, "app:2",
                                NEW_IMAGE).body

    # Docker applies an image's Cmd only under the image's Entrypoint: with the user's, the Cmd is theirs too.
    assert (users["Entrypoint"], users["Cmd"]) == (["/mine"], ["serve"])
    assert "Entrypoint" not in images and "Cmd" not in images


def test_one_endpoint_goes_into_the_create_the_network_modes_and_the_others_are_connected_later():
    runtime = {"NetworkID": "n", "EndpointID": "e", "IPAddress": "10.0.0.9", "MacAddress": "02:42:0a:00:00:09"}
    networks = {"front": {**runtime, "Aliases": ["web", OLD_ID[:12]], "IPAMConfig": {"IPv4Address": ""}},
                "back": {**runtime, "Aliases": ["web-internal"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}
    old = old_container(host_config={"NetworkMode": "back"}, NetworkSettings={"Networks": networks})

    request = recreation_request(old, OLD_IMAGE, "app:2", NEW_IMAGE)

    assert request.body["NetworkingConfig"] == {"EndpointsConfig": {"back": {
        "Aliases": ["web-internal"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}}
    assert request.later_networks == {"front": {"Aliases": ["web"]}}


def test_a_network_namespace_given_by_an_id_prefix_follows_the_new_container():
    old = old_container({"Hostname": "vpn-host"}, {"NetworkMode": f"container:{'b' * 12}"})

    body = recreation_request(old, OLD_IMAGE, "app:2", NEW_IMAGE, network_container_ids={"b" * 64: "c" * 64}).body

    assert body["HostConfig"]["NetworkMode"] == f"container:{'c' * 64}"
    assert "Hostname" not in body and "NetworkingConfig" not in body


def test_an_anonymous_volume_in_mounts_gets_the_old_volumes_name_and_one_from_binds_keeps_read_only():
    mounts = [{"Type": "volume", "Name": "anon-1", "Destination": "/v", "RW": True},
              {"Type": "volume", "Name": "anon-2", "Destination": "/w", "RW": False},
              {"Type": "volume", "Name": "named", "Destination": "/data", "RW": True}]
    old = old_container(host_config={"Mounts": [{"Type": "volume", "Target": "/v"}], "Binds": ["named:/data:z"]},
                        Mounts=mounts)

    host_config = recreation_request(old, OLD_IMAGE, "app:2", NEW_IMAGE).body["HostConfig"]

    assert host_config["Mounts"] == [{"Type": "volume", "Target": "/v", "Source": "anon-1"}]
    assert host_config["Binds"] == ["named:/data:z", "anon-2:/w:ro"]
