"""What rsgo knows of one labelled container, read from a list row or an inspect answer, and the
labels it reads (README "Labels")."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

STACK_LABEL = "rsgo.stack"
MAINTENANCE_LABEL = "rsgo.maintenance"
DEPENDS_ON_LABEL = "rsgo.depends_on"
STOP_TIMEOUT_LABEL = "rsgo.stop_timeout"
START_TIMEOUT_LABEL = "rsgo.start_timeout"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_DEPENDS_ON_LABEL = "com.docker.compose.depends_on"
# Swarm puts it on the containers of its tasks: they belong to a service, never to a stack of containers.
SWARM_TASK_LABEL = "com.docker.swarm.task.id"
# In the name of a container an upgrade replaced and keeps for a rollback: no longer part of its stack.
ASIDE_MARK = ".rsgo-aside-"


def aside_name(name: str, upgrade_id: int) -> str:
    """The name a container replaced by upgrade ``upgrade_id`` is kept under (``ASIDE_MARK`` marks it)."""
    return f"{name}{ASIDE_MARK}{upgrade_id}"



@dataclass(frozen=True)
class ContainerInfo:
    """What rsgo knows of one container carrying the ``rsgo.stack`` label."""

    kind: ClassVar[str] = "container"  # a ServiceInfo says "service"; the lifecycle handles both
    id: str
    name: str
    image: str
    state: str  # created, running, paused, restarting, removing, exited, dead
    health: str  # healthy, unhealthy, starting, none
    labels: dict = field(default_factory=dict, compare=False, hash=False)
    own_stop_timeout: float | None = None  # Config.StopTimeout (compose stop_grace_period)
    has_healthcheck: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0  # how often Docker's restart policy restarted it (inspect only)
    # Its exit code once it exited (None while it never ran or runs): 0 from a one-shot job means done.
    exit_code: int | None = None
    # A stop or kill was asked of it (docker stop, docker kill, a stop by rsgo) since it last started, as
    # seen on the events stream: its exit, whatever the code, is not a job's own end.
    stop_requested: bool = field(default=False, compare=False)

    @property
    def stack(self) -> str:
        return self.labels.get(STACK_LABEL, "")

    @property
    def service(self) -> str:
        return self.labels.get(COMPOSE_SERVICE_LABEL, "")

    @property
    def ignored(self) -> bool:
        """``rsgo.maintenance: ignore`` (any case) keeps a container running in Maintenance."""
        return self.labels.get(MAINTENANCE_LABEL, "").strip().lower() == "ignore"

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")

    @property
    def ready(self) -> bool:
        """Running, and healthy if it has a healthcheck: what a dependent may start after."""
        return self.state == "running" and (not self.has_healthcheck or self.health == "healthy")


_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EXIT_IN_STATUS = re.compile(r"^Exited \((-?\d+)\)")


def _is_stack_member(summary: dict) -> bool:
    """A list row of a container rsgo stops and starts with its stack: not a Swarm task's (its service is
    what rsgo acts on), not one an upgrade keeps aside (rsgo must not plan, show or start it)."""
    name = (summary.get("Names") or [""])[0]
    return SWARM_TASK_LABEL not in (summary.get("Labels") or {}) and ASIDE_MARK not in name


def _from_summary(summary: dict) -> ContainerInfo:
    """From a ``GET /containers/json`` row: cheap, but without stop timeout or healthcheck config."""
    match = _HEALTH_IN_STATUS.search(summary.get("Status") or "")
    health = "none" if not match else match.group(1).replace("health: ", "")
    exited = _EXIT_IN_STATUS.match(summary.get("Status") or "")
    return ContainerInfo(
        id=summary["Id"],
        name=(summary.get("Names") or ["/" + summary["Id"][:12]])[0].lstrip("/"),
        image=summary.get("Image", ""),
        state=summary.get("State", "unknown"),
        health=health,
        labels=dict(summary.get("Labels") or {}),
        has_healthcheck=match is not None,
        exit_code=int(exited.group(1)) if exited and summary.get("State") == "exited" else None,
    )


def _from_inspect(attrs: dict) -> ContainerInfo:
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    healthcheck = (config.get("Healthcheck") or {}).get("Test") or []
    return ContainerInfo(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        image=config.get("Image", ""),
        state=state.get("Status", "unknown"),
        health=(state.get("Health") or {}).get("Status", "none"),
        labels=dict(config.get("Labels") or {}),
        own_stop_timeout=config.get("StopTimeout"),
        has_healthcheck=bool(healthcheck) and healthcheck[0] != "NONE",
        started_at=state.get("StartedAt"),
        finished_at=state.get("FinishedAt"),
        restart_count=attrs.get("RestartCount") or 0,
        # Docker says 0 for a container that never started too: only an exited one has an exit code.
        exit_code=state.get("ExitCode") if state.get("Status") == "exited" else None,
    )


