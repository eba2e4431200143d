"""Discovery (docs/design.md#discovery): the in-memory view of every labelled container (and, on a
Swarm manager, every labelled service) of one environment, kept current by Docker's events stream
plus a periodic full resync.

Every page and API read uses this view, so no request ever waits on Docker.
Stacks seen here get a deployment row, which outlives their containers.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import replace

from rsgo import audit, deployment_queries, events
from rsgo.db import release_thread_connection
from rsgo.docker_ops import (
    ASIDE_MARK,
    STACK_LABEL,
    ContainerInfo,
    ContainerNotFound,
    DockerError,
    DockerGateway,
    EngineFacts,
    ServiceInfo,
)
from rsgo.events import EventBus

log = logging.getLogger(__name__)


# Docker puts these on a Swarm task's container: such a container belongs to its service, never to a stack.
SWARM_SERVICE_NAME_LABEL = "com.docker.swarm.service.name"

Unit = ContainerInfo | ServiceInfo  # what rsgo stops and starts: a container, or a Swarm service


class Inventory:
    """Thread-safe map of name → ``ContainerInfo`` or ``ServiceInfo`` for one environment."""

    def __init__(self, environment: str, bus: EventBus):
        self.environment = environment
        self._bus = bus
        self._lock = threading.Lock()
        self._by_name: dict[str, ContainerInfo] = {}
        # Built on the first read after a change: pages ask for every stack's containers, changes are rare.
        self._by_stack: dict[str, list[ContainerInfo]] | None = None
        self.reachable: bool | None = None  # None until the first sync
        self.last_error: str | None = None
        self.synced_at: dt.datetime | None = None
        self.last_event_at: dt.datetime | None = None
        self.facts: EngineFacts | None = None  # version and Swarm role, from the last connect

    def containers_of(self, stack: str) -> list[ContainerInfo]:
        with self._lock:
            if self._by_stack is None:
                index: dict[str, list[ContainerInfo]] = {}
                for container in sorted(self._by_name.values(), key=lambda c: c.name):
                    index.setdefault(container.stack, []).append(container)
                self._by_stack = index
            return list(self._by_stack.get(stack, ()))

    def all_containers(self) -> list[ContainerInfo]:
        with self._lock:
            return list(self._by_name.values())

    def replace_all(self, containers: list[ContainerInfo]) -> None:
        """A full resync: swap in the new list and announce every difference."""
        new = {c.name: c for c in containers}
        with self._lock:
            old = self._by_name
            self._by_name = new
            self._by_stack = None
            came_back = self.reachable is not True
            self.reachable = True
            self.last_error = None
            self.synced_at = dt.datetime.now(dt.UTC)
        if came_back:
            self._bus.publish(events.ENVIRONMENT_CHANGED, environment=self.environment)
        self._ensure_deployments({c.stack for c in containers if c.stack})
        for name in set(old) | set(new):
            if _differs(old.get(name), new.get(name)):
                self._announce(old.get(name), new.get(name))

    def update(self, container: ContainerInfo) -> None:
        if container.stack:
            self._ensure_deployments({container.stack})
        with self._lock:
            old = self._by_name.get(container.name)
            # A container recreated under the same name replaces the old one: identity is the name.
            self._by_name[container.name] = container
            self._by_stack = None
        if _differs(old, container):
            self._announce(old, container)

    def remove(self, name: str, container_id: str | None = None) -> None:
        with self._lock:
            old = self._by_name.get(name)
            if old is None or (container_id and old.id != container_id):
                return  # already replaced by a newer container of the same name
            del self._by_name[name]
            self._by_stack = None
        self._announce(old, None)

    def mark_unreachable(self, error: str) -> None:
        with self._lock:
            changed = self.reachable is not False
            self.reachable = False
            self.last_error = error
        if changed:
            self._bus.publish(events.ENVIRONMENT_CHANGED, environment=self.environment)

    def note_facts(self, facts: EngineFacts) -> None:
        """The engine's version and Swarm role, asked at every (re)connect."""
        changed, self.facts = facts != self.facts, facts
        if changed:
            self._bus.publish(events.ENVIRONMENT_CHANGED, environment=self.environment)

    def _ensure_deployments(self, stacks: set[str]) -> None:
        try:
            created = deployment_queries.ensure_deployments(self.environment, stacks)
        finally:
            release_thread_connection()  # the events and resync threads live long: no connection kept
        for deployment in created:
            self._bus.publish(events.DEPLOYMENT_DISCOVERED, deployment_id=deployment.id)
            revived = getattr(deployment, "revived", None)  # a forgotten stack back: its history says so
            if revived is not None:
                audit.announce(self._bus, revived)

    def _announce(self, old: ContainerInfo | None, new: ContainerInfo | None) -> None:
        self._bus.publish(events.CONTAINER_CHANGED, environment=self.environment, old=old, new=new)


def _differs(old: Unit | None, new: Unit | None) -> bool:
    if old is None or new is None:
        return old is not new
    return _shown(old) != _shown(new)


def _shown(unit: Unit) -> tuple:
    """What of a unit the pages show and enforcement reacts to."""
    common = (unit.kind, unit.id, unit.state, unit.health, unit.labels, unit.running)
    if isinstance(unit, ServiceInfo):
        return (*common, unit.replicas, unit.constraints, unit.running_tasks, unit.desired_tasks, unit.version)
    return (*common, unit.exit_code)  # a finished job (0) reads otherwise than a crash


class DiscoveryService:
    """Two daemon threads: one follows the events stream, one resyncs periodically."""

    def __init__(self, gateway: DockerGateway, inventory: Inventory, resync_interval: float,
                 conflict=lambda facts: None):
        self._gateway = gateway
        self._inventory = inventory
        self._conflict = conflict  # the environments' check that no other name manages this engine
        self._resync_interval = resync_interval
        self._stopping = threading.Event()
        self._stream = None
        self._threads: list[threading.Thread] = []
        self.first_sync = threading.Event()
        # Containers asked to stop (a kill or stop event) since they last started: Docker keeps no trace of
        # it, so a hand-stopped service that exits 0 would pass for a finished job (rsgo.health.completed).
        # Known from this process's events only: after a restart, the exit code alone decides.
        self._stop_requested: set[str] = set()

    def start(self) -> None:
        for target, name in ((self._follow_events, "rsgo-docker-events"), (self._resync_loop, "rsgo-resync")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, wait: bool = True) -> None:
        """Stop both threads; ``wait`` for them (at shutdown), or not (an environment removed on
        reload: a call to a hung engine must not hold the reload for its timeout)."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        for thread in self._threads if wait else ():
            thread.join(timeout=5)

    @property
    def _swarm(self) -> bool:
        facts = self._inventory.facts
        return facts is not None and facts.swarm_manager

    def resync(self) -> None:
        try:
            if self._inventory.facts is None:
                self._inventory.note_facts(self._gateway.engine_facts())
            self._refuse_conflict()
            units: list[Unit] = [self._with_stop_request(c) for c in self._gateway.list_stack_containers()]
            if self._swarm:
                units += self._gateway.list_stack_services()
            self._inventory.replace_all(units)
        except DockerError as error:
            self._inventory.mark_unreachable(str(error))
            log.warning("resync failed: %s", error)
        finally:
            self.first_sync.set()

    def _refuse_conflict(self) -> None:
        problem = self._conflict(self._inventory.facts)
        if problem:
            raise DockerError(problem)  # shown as this environment's error; its view stays empty

    def _resync_loop(self) -> None:
        while not self._stopping.is_set():
            self.resync()
            self._stopping.wait(self._resync_interval)

    def _follow_events(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                # Asked at every (re)connect: the engine may have been upgraded, or joined or left a swarm.
                self._inventory.note_facts(self._gateway.engine_facts())
                self._refuse_conflict()
                self._stream = self._gateway.event_stream(services=self._swarm)
                # Events between the last resync and this subscription are caught by a resync now.
                self.resync()
                backoff = 0.5
                for event in self._stream:
                    if self._stopping.is_set():
                        return
                    self._apply(event)
                raise DockerError("the Docker events stream ended")
            except DockerError as error:
                if self._stopping.is_set():
                    return
                self._inventory.mark_unreachable(str(error))
                log.warning("events stream lost (%s); reconnecting in %.1fs", error, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10)

    def _apply(self, event: dict) -> None:
        self._inventory.last_event_at = dt.datetime.now(dt.UTC)
        labels = event.get("labels") or {}
        if event.get("type") == "service":
            self._refresh_service(event["name"] or event["id"], event["action"] == "remove")
        elif SWARM_SERVICE_NAME_LABEL in labels:
            # A task of a service started or stopped: the service's running count changed.
            if self._swarm:
                self._refresh_service(labels[SWARM_SERVICE_NAME_LABEL], False)
        elif event.get("type", "container") == "container" and (STACK_LABEL in labels or not self._swarm):
            self._refresh_container(event)

    def _with_stop_request(self, container: ContainerInfo) -> ContainerInfo:
        return replace(container, stop_requested=container.id in self._stop_requested)

    def _refresh_container(self, event: dict) -> None:
        action = event["action"]
        if action in ("kill", "stop"):
            self._stop_requested.add(event["id"])
        elif action in ("start", "destroy"):
            self._stop_requested.discard(event["id"])
        if action == "destroy":
            self._inventory.remove(event["name"], event["id"])
            return
        try:
            container = self._with_stop_request(self._gateway.inspect(event["id"]))
            if ASIDE_MARK in container.name:
                # Kept aside by an upgrade (renamed): no longer the stack's; its old name's entry stays
                # until the container that replaces it (or the one put back) takes the name.
                self._inventory.remove(container.name, container.id)
                return
            self._inventory.update(container)
        except ContainerNotFound:
            self._inventory.remove(event["name"], event["id"])
        except DockerError as error:
            log.warning("cannot inspect %s after %s: %s", event["name"], event["action"], error)

    def _refresh_service(self, name: str, removed: bool) -> None:
        try:
            if not removed:
                service = self._gateway.inspect_service(name)
                if service.stack:
                    self._inventory.update(service)
                    return
            self._inventory.remove(name)
        except ContainerNotFound:
            self._inventory.remove(name)
        except DockerError as error:
            log.warning("cannot inspect service %s: %s", name, error)
