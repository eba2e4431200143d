"""Container lifecycle (docs/design.md#lifecycle, README "Labels"): dependency order, the plan
for a target mode, and running one dependency level at a time with the containers of a level
in parallel. A unit is a container or, on a Swarm manager, a service: a service is stopped by
scaling it to 0 (or, when global, by an unsatisfiable placement constraint) and started by
restoring what was recorded before (README "Swarm").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from rsgo.docker_ops import (
    COMPOSE_DEPENDS_ON_LABEL,
    DEPENDS_ON_LABEL,
    START_TIMEOUT_LABEL,
    STOP_TIMEOUT_LABEL,
    ContainerInfo,
    ContainerNotFound,
    DockerError,
    DockerGateway,
    ServiceStillStopping,
)
from rsgo.modes import Mode
from rsgo.settings import parse_duration

log = logging.getLogger(__name__)


class DependencyCycle(ValueError):
    def __init__(self, cycle: list[str]):
        super().__init__(f"dependency cycle between containers: {' -> '.join(cycle)}")
        self.cycle = cycle


def dependency_names(container: ContainerInfo) -> list[str]:
    """Names from ``rsgo.depends_on`` (``a,b``) and compose's ``service:condition:restart,...``."""
    names = [part.strip() for part in container.labels.get(DEPENDS_ON_LABEL, "").split(",")]
    names += [part.split(":")[0].strip() for part in container.labels.get(COMPOSE_DEPENDS_ON_LABEL, "").split(",")]
    return [name for name in dict.fromkeys(names) if name]


def resolve_dependencies(containers: list[ContainerInfo]) -> dict[str, set[str]]:
    """Container name → names of the stack's containers it depends on (by service or container name).

    Dependencies outside the stack are not ours to order and are left out.
    """
    by_key: dict[str, set[str]] = {}
    for c in containers:
        by_key.setdefault(c.name, set()).add(c.name)
        if c.service:
            by_key.setdefault(c.service, set()).add(c.name)
    return {
        c.name: {dep for name in dependency_names(c) for dep in by_key.get(name, ()) if dep != c.name}
        for c in containers
    }


def dependency_levels(containers: list[ContainerInfo]) -> dict[str, int]:
    """Level 0 depends on nothing; level n on something at level n-1. Raises DependencyCycle."""
    depends = resolve_dependencies(containers)
    levels: dict[str, int] = {}
    visiting: list[str] = []

    def level_of(name: str) -> int:
        if name in levels:
            return levels[name]
        if name in visiting:
            raise DependencyCycle(visiting[visiting.index(name):] + [name])
        visiting.append(name)
        level = 1 + max((level_of(dep) for dep in depends[name]), default=-1)
        visiting.pop()
        levels[name] = level
        return level

    for name in sorted(depends):
        level_of(name)
    return levels


@dataclass
class PlannedAction:
    container_name: str  # or a service's name
    action: str  # stop, start, none
    level: int
    result: str | None = None  # set now for actions that need no Docker call
    kind: str = "container"  # container, service
    memo: dict | None = None  # a service's: recorded before it is stopped, what starting it restores


def plan(target: Mode, containers: list[ContainerInfo], stopped_set: set[str],
         memos: dict[str, dict | None] | None = None) -> list[PlannedAction]:
    """What entering ``target`` does to each container and service, in the order it is done.
    ``memos``: what the stopped-set recorded of its services (name -> memo), for Normal to restore."""
    levels = dependency_levels(containers)
    present = {c.name: c for c in containers}
    memos = memos or {}
    actions: list[PlannedAction] = []
    if target in (Mode.MAINTENANCE, Mode.STOPPED):
        for c in containers:
            if target is Mode.MAINTENANCE and c.ignored:
                actions.append(PlannedAction(c.name, "none", levels[c.name], "ignored", c.kind))
            elif c.kind == "service" and c.job:
                actions.append(PlannedAction(c.name, "none", levels[c.name], "left-alone", c.kind))
            elif not c.running:
                actions.append(PlannedAction(c.name, "none", levels[c.name], "already-stopped", c.kind))
            else:
                # A service's replica count (or constraints) is recorded with the plan, before it changes.
                actions.append(PlannedAction(c.name, "stop", levels[c.name], None, c.kind,
                                             c.memo() if c.kind == "service" else None))
    elif target is Mode.NORMAL:
        for name in sorted(stopped_set):
            if name in present:
                unit = present[name]
                actions.append(PlannedAction(name, "start", levels[name], None, unit.kind, memos.get(name)))
            else:
                actions.append(PlannedAction(name, "none", 0, "missing"))
    return actions


def _duration_label(container: ContainerInfo, name: str) -> float | None:
    """The duration a label gives (``30s``, ``2m``); None if it is missing, or unreadable (with a warning)."""
    label = container.labels.get(name)
    if not label:
        return None
    try:
        return parse_duration(label)
    except ValueError:
        log.warning("%s: ignoring bad %s=%r", container.name, name, label)
        return None


def stop_grace(container: ContainerInfo, default: float) -> float:
    """``rsgo.stop_timeout``, else the container's own stop timeout, else the default."""
    label = _duration_label(container, STOP_TIMEOUT_LABEL)
    if label is not None:
        return label
    if container.own_stop_timeout is not None:
        return float(container.own_stop_timeout)
    return default


def start_timeout(container: ContainerInfo, default: float) -> float:
    """``rsgo.start_timeout``, else the default."""
    label = _duration_label(container, START_TIMEOUT_LABEL)
    return default if label is None else label


@dataclass
class ActionResult:
    container_name: str
    result: str
    error: str | None  # or, for a result that is not "failed", a warning (a service changed meanwhile)
    duration_ms: int
    memo: dict | None = None  # a stopped service's memo with the spec version its stop left


class LevelRunner:
    """Runs planned stop/start actions level by level, each level's containers concurrently."""

    def __init__(self, gateway: DockerGateway, containers: list[ContainerInfo], concurrency: int,
                 default_stop_timeout: float, default_start_timeout: float):
        self._gateway = gateway
        self._containers = {c.name: c for c in containers}
        self._depends = resolve_dependencies(containers)
        self._concurrency = concurrency
        self._default_stop_timeout = default_stop_timeout
        self._default_start_timeout = default_start_timeout
        self._failed: set[str] = set()
        self._to_start: set[str] = set()
        self._aborted = threading.Event()

    def abort(self) -> None:
        """Begin no further action (those under way finish): the transition can no longer be recorded."""
        self._aborted.set()

    def run(self, actions: list[PlannedAction], on_result: Callable[[ActionResult], None]) -> None:
        pending = [a for a in actions if a.action in ("stop", "start")]
        self._to_start = {a.container_name for a in pending if a.action == "start"}
        stopping = any(a.action == "stop" for a in pending)
        # Dependents stop before their dependencies; dependencies start before their dependents.
        for level in sorted({a.level for a in pending}, reverse=stopping):
            if self._aborted.is_set():
                return
            batch = [a for a in pending if a.level == level]
            # A level goes out at once (0, the default) or in batches of the setting.
            workers = len(batch) if self._concurrency == 0 else min(self._concurrency, len(batch))
            with ThreadPoolExecutor(max_workers=workers,
                                    thread_name_prefix="rsgo-action") as pool:
                for future in as_completed([pool.submit(self._perform, a) for a in batch]):
                    result = future.result()
                    if result is None:
                        continue  # not begun: the runner was aborted
                    if result.result == "failed":
                        self._failed.add(result.container_name)
                    on_result(result)

    def _perform(self, action: PlannedAction) -> ActionResult | None:
        if self._aborted.is_set():
            return None
        began = time.monotonic()
        memo = warning = None
        try:
            if action.action == "stop":
                outcome, memo = self._stop(action)
            else:
                outcome, warning = self._start(action)
            error = warning
        except ServiceStillStopping as failure:
            # Failed, but its spec says stopped now: the memo goes to the stopped-set, so Normal restores it.
            outcome, error, memo = "failed", str(failure), self._stopped_memo(action, failure.service)
        except (DockerError, TimeoutError) as failure:
            outcome, error = "failed", str(failure)
        return ActionResult(action.container_name, outcome, error, int((time.monotonic() - began) * 1000), memo)

    def _stop(self, action: PlannedAction) -> tuple[str, dict | None]:
        name = action.container_name
        unit = self._containers.get(name)
        if unit is None:
            return "missing", None  # removed since the plan was made (a resumed transition)
        try:
            if action.kind == "service":
                after = self._gateway.stop_service(name, stop_grace(unit, self._default_stop_timeout))
                return "stopped", self._stopped_memo(action, after)
            self._gateway.stop(name, stop_grace(unit, self._default_stop_timeout))
        except ContainerNotFound:
            return "missing", None
        return "stopped", None

    def _stopped_memo(self, action: PlannedAction, after) -> dict:
        """What Normal restores, with the version rsgo's stop left: a later difference means someone changed it."""
        return {**(action.memo or self._containers[action.container_name].memo()), "version": after.version}

    def _start(self, action: PlannedAction) -> tuple[str, str | None]:
        name = action.container_name
        for dependency in sorted(self._depends.get(name, ())):
            self._wait_until_ready(dependency)
        try:
            current = self._inspect(name)
        except ContainerNotFound:
            return "missing", None
        # A service by its spec: tasks still ending after rsgo scaled it to 0 do not make it started.
        if current.scheduled if current.kind == "service" else current.running:
            return "already-running", None
        if current.kind == "service":
            if not action.memo:
                raise DockerError(f"starting {name}: rsgo has no record of its replica count or constraints")
            _, warning = self._gateway.start_service(name, action.memo)
            return "started", warning
        self._gateway.start(name)
        return "started", None

    def _inspect(self, name: str):
        unit = self._containers.get(name)
        if unit is not None and unit.kind == "service":
            return self._gateway.inspect_service(name)
        return self._gateway.inspect(name)

    def _wait_until_ready(self, dependency: str) -> None:
        if dependency in self._failed:
            raise DockerError(f"not started: its dependency {dependency} failed to start")
        timeout = start_timeout(self._containers[dependency], self._default_start_timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                current = self._inspect(dependency)
            except ContainerNotFound:
                return  # gone: nothing left to wait for
            if current.ready:
                return
            if not current.running and dependency not in self._to_start:
                return  # rsgo does not start it (a finished one-shot job), so nobody waits for it
            if time.monotonic() >= deadline:
                state = current.state if current.health == "none" else f"{current.state}, {current.health}"
                raise TimeoutError(f"not started: dependency {dependency} not ready after {timeout:g}s ({state})")
            time.sleep(0.2)

