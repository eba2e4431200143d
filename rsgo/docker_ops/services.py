"""What rsgo knows of one Swarm service, and the two spec changes it makes to one.

A ``ServiceInfo`` duck-types ``ContainerInfo``: the lifecycle (levels, plans, readiness) reads the same
attributes from both. Maintenance takes a service out of service by changing one field of its spec and
nothing else: a replicated service is scaled to 0, a global one (which cannot be scaled) gets a
placement constraint no node satisfies, so the global orchestrator runs no task. Jobs are left alone
(Swarm refuses to scale them). The spec changes here are pure; the gateway sends them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

from rsgo.docker_ops.containers import MAINTENANCE_LABEL, STACK_LABEL

# No node has this id, so a global service carrying it has no node to run on.
UNSCHEDULABLE_CONSTRAINT = "node.id==rsgo-maintenance"
# Set by ``docker stack deploy``: the stack a service belongs to when it has no rsgo.stack label.
STACK_NAMESPACE_LABEL = "com.docker.stack.namespace"

_MODES = {"Replicated": "replicated", "Global": "global", "ReplicatedJob": "replicated-job",
          "GlobalJob": "global-job"}

@dataclass(frozen=True)
class ServiceInfo:
    """One Swarm service whose spec labels carry ``rsgo.stack`` or ``com.docker.stack.namespace``."""

    kind: ClassVar[str] = "service"
    # A service has no health or start time of its own (its tasks do): read as a container without them.
    health: ClassVar[str] = "none"
    has_healthcheck: ClassVar[bool] = False
    started_at: ClassVar[str | None] = None
    finished_at: ClassVar[str | None] = None

    id: str
    name: str
    image: str
    mode: str  # replicated, global, replicated-job, global-job
    replicas: int | None = None  # desired replicas; replicated services only
    constraints: tuple[str, ...] = ()
    running_tasks: int = 0
    desired_tasks: int = 0
    version: int = 0  # Spec Version.Index: changes with every update of the service
    labels: dict = field(default_factory=dict, compare=False, hash=False)  # the service spec's labels
    own_stop_timeout: float | None = None  # ContainerSpec.StopGracePeriod (compose stop_grace_period)

    @property
    def stack(self) -> str:
        return self.labels.get(STACK_LABEL) or self.labels.get(STACK_NAMESPACE_LABEL, "")

    @property
    def service(self) -> str:
        """The name within its stack (what ``rsgo.depends_on`` names): ``shop_api`` of stack shop is ``api``."""
        namespace = self.labels.get(STACK_NAMESPACE_LABEL, "")
        if namespace and self.name.startswith(f"{namespace}_"):
            return self.name[len(namespace) + 1:]
        return self.name

    @property
    def ignored(self) -> bool:
        """``rsgo.maintenance: ignore`` (any case) on the service keeps it running in Maintenance."""
        return self.labels.get(MAINTENANCE_LABEL, "").strip().lower() == "ignore"

    @property
    def job(self) -> bool:
        return self.mode.endswith("-job")

    @property
    def unschedulable(self) -> bool:
        """A global service rsgo has taken out of service."""
        return self.mode == "global" and UNSCHEDULABLE_CONSTRAINT in self.constraints

    @property
    def running(self) -> bool:
        """Running, or meant to run: a service scaled up whose tasks are still starting counts as running."""
        if self.running_tasks > 0:
            return True
        if self.mode == "replicated":
            return bool(self.replicas)
        return self.mode == "global" and not self.unschedulable

    @property
    def scheduled(self) -> bool:
        """Its spec asks for tasks (what starting it restores), whatever tasks still run or stop."""
        if self.mode == "replicated":
            return bool(self.replicas)
        return self.mode == "global" and not self.unschedulable

    @property
    def ready(self) -> bool:
        """Every desired task runs: what a dependent may start after."""
        return self.desired_tasks > 0 and self.running_tasks >= self.desired_tasks

    @property
    def state(self) -> str:
        return "running" if self.running_tasks else "stopped"

    def memo(self) -> dict:
        """What Normal must restore (JSON): the replica count, or the constraints without rsgo's own."""
        if self.mode == "replicated":
            return {"mode": self.mode, "replicas": self.replicas, "version": self.version}
        if self.mode == "global":
            return {"mode": self.mode, "constraints": [c for c in self.constraints if c != UNSCHEDULABLE_CONSTRAINT],
                    "version": self.version}
        return {"mode": self.mode, "version": self.version}


def _from_service(attrs: dict) -> ServiceInfo:
    """From a ``GET /services`` row (with ``status``, for the task counts) or a service inspect answer."""
    spec = attrs.get("Spec") or {}
    task_template = spec.get("TaskTemplate") or {}
    container_spec = task_template.get("ContainerSpec") or {}
    mode = _mode_of(spec)
    replicas = ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1) if mode == "replicated" else None
    grace_ns = container_spec.get("StopGracePeriod")
    status = attrs.get("ServiceStatus") or {}
    return ServiceInfo(
        id=attrs["ID"],
        name=spec.get("Name", ""),
        image=container_spec.get("Image", ""),
        mode=mode,
        replicas=replicas,
        constraints=tuple((task_template.get("Placement") or {}).get("Constraints") or ()),
        running_tasks=status.get("RunningTasks", 0),
        desired_tasks=status.get("DesiredTasks", 0),
        version=(attrs.get("Version") or {}).get("Index", 0),
        labels=dict(spec.get("Labels") or {}),
        own_stop_timeout=None if grace_ns is None else grace_ns / 1e9,
    )


def _is_stack_service(attrs: dict) -> bool:
    labels = (attrs.get("Spec") or {}).get("Labels") or {}
    return STACK_LABEL in labels or STACK_NAMESPACE_LABEL in labels


def _stopped_spec(spec: dict) -> dict | None:
    """``spec`` with only its replica count at 0 (replicated) or rsgo's constraint added (global);
    ``None`` when it is already so (stopping again changes nothing)."""
    changed = copy.deepcopy(spec)
    if "Replicated" in changed.get("Mode", {}):
        if changed["Mode"]["Replicated"].get("Replicas", 1) == 0:
            return None
        changed["Mode"]["Replicated"]["Replicas"] = 0
        return changed
    placement = changed.setdefault("TaskTemplate", {}).setdefault("Placement", {})
    constraints = placement.get("Constraints") or []
    if UNSCHEDULABLE_CONSTRAINT in constraints:
        return None
    placement["Constraints"] = [*constraints, UNSCHEDULABLE_CONSTRAINT]
    return changed


def _restored_spec(spec: dict, memo: dict) -> tuple[dict, str]:
    """``spec`` with only what ``memo`` recorded set back, and a phrase naming what that was."""
    changed = copy.deepcopy(spec)
    if memo["mode"] == "replicated":
        changed["Mode"]["Replicated"]["Replicas"] = memo["replicas"]
        return changed, f"replica count ({memo['replicas']})"
    placement = changed.setdefault("TaskTemplate", {}).setdefault("Placement", {})
    placement["Constraints"] = list(memo["constraints"])
    return changed, f"placement constraints ({', '.join(memo['constraints']) or 'none'})"


def _mode_of(spec: dict) -> str:
    mode_key = next(iter(spec.get("Mode") or {"Replicated": {}}))
    return _MODES.get(mode_key, mode_key.lower())
