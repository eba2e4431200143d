"""Health in mode context (docs/design.md#health): what the containers report, read in the light
of the mode, and whether a person needs to look."""

from __future__ import annotations

from dataclasses import dataclass

from rsgo.docker_ops import ContainerInfo
from rsgo.modes import Mode


@dataclass(frozen=True)
class DeploymentHealth:
    status: str  # Healthy, Degraded, Unhealthy, Unknown
    needs_attention: bool
    problems: tuple[str, ...]


def completed(container: ContainerInfo, stopped_set: set[str]) -> bool:
    """A one-shot job that finished: it exited with 0 by itself (rsgo did not stop it, and nobody asked it
    to stop: a service stopped by hand that exits 0 is down, not done). That is its purpose, not a
    fault; any other exit code still needs a person."""
    return (container.kind == "container" and container.state == "exited" and container.exit_code == 0
            and container.name not in stopped_set and not container.stop_requested)


def _is_sick(container: ContainerInfo, stopped_set: set[str]) -> bool:
    if container.kind == "service":
        return not container.job and not container.ready  # fewer tasks running than the service wants
    if completed(container, stopped_set):
        return False
    return not container.running or container.health == "unhealthy"


def _down_as(unit: ContainerInfo) -> str:
    """What is wrong with a container, as the end of a sentence: "is unhealthy", "exited with code 3"."""
    if unit.running:
        return f"is {unit.health}"
    return f"exited with code {unit.exit_code}" if unit.exit_code is not None else f"is {unit.state}"


def _sickness(unit: ContainerInfo) -> str:
    if unit.kind == "service":
        return f"{unit.name} has {unit.running_tasks} of {unit.desired_tasks} tasks running"
    return f"{unit.name} {_down_as(unit)}"


def assess(mode: Mode, containers: list[ContainerInfo], stopped_set: set[str], engine_problem: str | None,
           observer_problem: str | None = None) -> DeploymentHealth:
    """The containers' health in the light of the mode. ``engine_problem`` says why the environment's
    view cannot be trusted (unreachable, disabled, removed): then nothing is known. A failing or
    disabled observer (``observer_problem``) always needs attention too, whatever the containers say."""
    health = _containers_health(mode, containers, stopped_set, engine_problem)
    if observer_problem is None:
        return health
    return DeploymentHealth(health.status, True, (*health.problems, observer_problem))


def _containers_health(mode: Mode, containers: list[ContainerInfo], stopped_set: set[str],
                       engine_problem: str | None) -> DeploymentHealth:
    if engine_problem is not None:
        return DeploymentHealth("Unknown", True, (engine_problem,))
    if not containers:
        return DeploymentHealth("Unknown", mode is Mode.FAILED, ("no containers",))
    problems: list[str] = []
    if mode in (Mode.NORMAL, Mode.FAILED, Mode.MIGRATING):
        # Ignored containers (databases) are expected to run too: outside Maintenance nothing should be down
        # (a finished job is done, not down).
        expected = [c for c in containers if not completed(c, stopped_set)]
        sick = [c for c in expected if _is_sick(c, stopped_set)]
        problems = [_sickness(c) for c in sick]
        if not sick:
            status = "Healthy"
        elif len(sick) == len(expected):
            status = "Unhealthy"
        else:
            status = "Degraded"
        # Migrating: degraded is expected while a migration runs.
        attention = mode is Mode.FAILED or (mode is Mode.NORMAL and bool(sick))
        return DeploymentHealth(status, attention, tuple(problems))
    # Maintenance and Stopped: stopped-set containers being down is the point.
    drift = [c for c in containers if c.name in stopped_set and c.running]
    problems += [f"{c.name} runs although rsgo stopped it (drift)" for c in drift]
    if mode is Mode.MAINTENANCE:
        sick_ignored = [c for c in containers if c.ignored and _is_sick(c, stopped_set)]
        problems += [f"{c.name} should keep running in Maintenance but {_down_as(c)}" for c in sick_ignored]
    status = "Degraded" if problems else "Healthy"
    return DeploymentHealth(status, bool(problems), tuple(problems))
