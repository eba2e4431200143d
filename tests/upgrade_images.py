"""Images and stacks for the upgrade tests, made locally from the tests' busybox image (no registry).

Each version writes its version into the container's environment and labels; ``unhealthy`` has a
healthcheck that always fails, ``healthy`` one that passes at once. A stack is made as compose makes
one: service labels, depends_on, a restart policy, a named volume and a user network with the service alias.
"""

from __future__ import annotations

import io
import uuid

import docker

from support import TEST_IMAGE

REPOSITORY = "rsgo-test/upgrade-app"
RUN = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
_RUN_JSON = '["sh", "-c", "trap \'exit 0\' TERM; while :; do sleep 0.1; done"]'

VERSIONS = {
    "1": f"FROM {TEST_IMAGE}\nENV APP_VERSION=1\nLABEL app.version=1\nCMD {_RUN_JSON}\n",
    "2": f"FROM {TEST_IMAGE}\nENV APP_VERSION=2\nLABEL app.version=2\nCMD {_RUN_JSON}\n",
    "healthy": (f"FROM {TEST_IMAGE}\nENV APP_VERSION=healthy\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 "
                f"CMD true\nCMD {_RUN_JSON}\n"),
    "unhealthy": (f"FROM {TEST_IMAGE}\nENV APP_VERSION=unhealthy\nHEALTHCHECK --interval=1s --timeout=1s "
                  f"--retries=1 CMD false\nCMD {_RUN_JSON}\n"),
    "crashing": f"FROM {TEST_IMAGE}\nENV APP_VERSION=crashing\nCMD [\"sh\", \"-c\", \"sleep 0.3; exit 1\"]\n",
}


def ref(version: str) -> str:
    return f"{REPOSITORY}:{version}"


def build_images(client: docker.DockerClient) -> dict[str, str]:
    """Every version built (once per engine; the build cache makes a rebuild quick); tag -> image id."""
    ids = {}
    for version, dockerfile in VERSIONS.items():
        image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref(version), rm=True)
        ids[version] = image.id
    return ids


class ComposeLikeStack:
    """A stack of containers labelled as compose labels them, with its network and volume."""

    def __init__(self, client: docker.DockerClient, run_label: dict):
        self.client = client
        self.name = f"up{uuid.uuid4().hex[:6]}"
        self.network = f"{self.name}_default"
        self.volume = f"{self.name}_data"
        self._labels = run_label
        client.networks.create(self.network, labels=run_label)
        client.volumes.create(self.volume, labels=run_label)

    def add(self, service: str, version: str = "1", *, depends_on: str | None = None, ignore: bool = False,
            command=None, environment: dict | None = None, restart: str = "unless-stopped", start: bool = True,
            stop_signal_slow: bool = False, stop_seconds: int = 2, network_mode: str | None = None):
        labels = {"rsgo.stack": self.name, "com.docker.compose.project": self.name,
                  "com.docker.compose.service": service, "com.docker.compose.container-number": "1",
                  **self._labels}
        if depends_on:
            labels["com.docker.compose.depends_on"] = f"{depends_on}:service_started:false"
        if ignore:
            labels["rsgo.maintenance"] = "ignore"
        if stop_signal_slow:  # its TERM trap (noted in /tmp/term) takes ``stop_seconds``: a stop still under way
            command = ["sh", "-c", f"trap 'touch /tmp/term; sleep {stop_seconds}; exit 0' TERM; "
                       "while :; do sleep 0.1; done"]
        api = self.client.api
        name = f"{self.name}-{service}-1"
        created = api.create_container(
            ref(version), command, name=name, labels=labels, environment=environment or {},
            host_config=api.create_host_config(binds=[f"{self.volume}:/data"],
                                               restart_policy={"Name": restart} if restart else None,
                                               network_mode=network_mode),
            # ``network_mode`` ("container:<id>"): it shares that namespace and joins no network of its own.
            networking_config=None if network_mode else api.create_networking_config(
                {self.network: api.create_endpoint_config(aliases=[service])}))
        if start:
            api.start(created["Id"])
        return name

    def inspect(self, service: str) -> dict:
        return self.client.api.inspect_container(f"{self.name}-{service}-1")

    def remove(self) -> None:
        for container in self.client.containers.list(all=True, filters={"label": f"rsgo.stack={self.name}"}):
            container.remove(force=True)
        for container in self.client.containers.list(all=True, filters={"name": self.name}):
            container.remove(force=True)
        for network in self.client.networks.list(names=[self.network]):
            network.remove()
        for volume in self.client.volumes.list(filters={"name": self.volume}):
            volume.remove(force=True)
