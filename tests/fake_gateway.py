"""A Docker gateway without Docker, for requests rsgo must refuse before anything reaches the engine.

Only the input-validation tests use it (``fake_app`` in conftest.py): everything that touches Docker
behaviour runs on the real engine. It answers the ``DockerGateway`` methods that discovery and a
transition call, from a dict of containers; a stop or start changes that dict and is recorded, so
"the container still runs" stays a real check: a refused request that reached Docker would show.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

from rsgo.docker_ops import STACK_LABEL, ContainerInfo, ContainerNotFound, EngineFacts


class FakeGateway:
    def __init__(self):
        self._lock = threading.Lock()
        self._containers: dict[str, ContainerInfo] = {}
        self.actions: list[tuple[str, str]] = []  # ("stop" | "start", container name), in order

    def add(self, name: str, stack: str, running: bool = True) -> ContainerInfo:
        container = ContainerInfo(id=uuid.uuid4().hex * 2, name=name, image="rsgo-test/fake",
                                  state="running" if running else "exited", health="none",
                                  labels={STACK_LABEL: stack})
        with self._lock:
            self._containers[name] = container
        return container

    # -- what rsgo calls ------------------------------------------------------------------------

    endpoint = "fake://"

    def engine_facts(self) -> EngineFacts:
        return EngineFacts(version="fake", api_version="1.41", swarm_manager=False)

    def list_stack_containers(self, stack: str | None = None) -> list[ContainerInfo]:
        with self._lock:
            return [c for c in self._containers.values() if stack is None or c.stack == stack]

    def inspect(self, name_or_id: str) -> ContainerInfo:
        with self._lock:
            found = [c for c in self._containers.values() if name_or_id in (c.name, c.id)]
        if not found:
            raise ContainerNotFound(f"inspecting {name_or_id}: no such container")
        return found[0]

    def inspect_stack(self, stack: str) -> list[ContainerInfo]:
        return self.list_stack_containers(stack)

    def stop(self, name: str, grace_seconds: float) -> None:
        self._act("stop", name, "exited")

    def start(self, name: str) -> None:
        self._act("start", name, "running")

    def _act(self, action: str, name: str, state: str) -> None:
        with self._lock:
            if name not in self._containers:
                raise ContainerNotFound(f"{action} {name}: no such container")
            self._containers[name] = replace(self._containers[name], state=state)
            self.actions.append((action, name))


class FakeStack:
    """A stack of fake containers with the ``Stack`` methods the validation tests use; each ``add``
    is seen by the app's discovery at once (``resync``)."""

    def __init__(self, gateway: FakeGateway, name: str, resync):
        self.gateway = gateway
        self.name = name
        self._resync = resync

    def container_name(self, short: str) -> str:
        return f"{self.name}-{short}"

    def add(self, short: str, running: bool = True) -> ContainerInfo:
        container = self.gateway.add(self.container_name(short), self.name, running)
        self._resync()
        return container

    def is_running(self, short: str) -> bool:
        return self.gateway.inspect(self.container_name(short)).running
