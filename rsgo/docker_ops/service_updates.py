"""Swarm's own rolling update of one service's image, and a stored spec put back (README "Upgrades").

Every call goes through the gateway's client and error translation (``gateway`` is the only module here
that talks to the SDK). A spec is always sent whole against a version rsgo read, as ``stop_service``
sends one: a change someone made meanwhile makes Swarm refuse ("update out of sequence") instead of
rsgo overwriting it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from rsgo.docker_ops.errors import NotFound
from rsgo.docker_ops.gateway import DockerGateway, _service_translated

# UpdateStatus.State while Swarm is still working on the spec it was given last.
UPDATE_UNDER_WAY = ("updating", "rollback_started")
# A task of the new spec that ended one of these ways failed or was restarted by Swarm.
TASK_ENDED = ("failed", "rejected", "complete", "orphaned", "remove")


@dataclass(frozen=True)
class UpdateProgress:
    """One service as a rolling update sees it."""

    image: str  # what its spec says now (TaskTemplate.ContainerSpec.Image)
    state: str | None  # UpdateStatus.State; None: no update recorded since the spec last changed
    message: str  # UpdateStatus.Message
    desired: int  # tasks the service should have running (ServiceStatus.DesiredTasks)
    running: int  # tasks running, whatever their image
    running_image: int  # of those, running the spec's image
    ended: tuple[str, ...]  # tasks not in ``known`` that failed or ended: "task 3 of shop/api:2 failed: …"

    @property
    def converged(self) -> bool:
        """Every desired task runs the spec's image, none of another image runs, none of the new ones ended."""
        return self.running_image == self.desired == self.running and not self.ended

    def describe(self, name: str) -> str:
        state = self.state or "none"
        detail = f": {self.message}" if self.message and self.state not in (None, "completed") else ""
        return f"{name} {self.running}/{self.desired} running {self.image} (update {state}{detail})"


def service_inspect(gateway: DockerGateway, service_id: str) -> dict:
    """The service's inspect answer (``ID``, ``Version``, ``Spec``, ``UpdateStatus``...)."""
    return gateway._inspect_service_spec(service_id, f"inspecting service {service_id}")


def task_ids(gateway: DockerGateway, service_id: str) -> set[str]:
    with _service_translated(f"listing the tasks of {service_id}"):
        return {task["ID"] for task in gateway._api().tasks(filters={"service": service_id})}


def update_image(gateway: DockerGateway, read: dict, image: str, update_config: dict) -> None:
    """``read`` (an inspect answer) with only its image and UpdateConfig changed, sent against ``read``'s version."""
    spec = copy.deepcopy(read["Spec"])
    spec.setdefault("TaskTemplate", {}).setdefault("ContainerSpec", {})["Image"] = image
    spec["UpdateConfig"] = update_config
    gateway._update_service_spec(read, spec, f"updating {spec.get('Name') or read['ID']} to {image}")


def resubmit(gateway: DockerGateway, stored: dict, *, force: bool = False) -> None:
    """``stored["Spec"]`` whole, against the service's current version. ``force`` raises ForceUpdate above
    the current one, so that Swarm replaces the tasks even when the spec it has is the stored one already
    (an update or rollback left paused)."""
    name = stored["Spec"].get("Name") or stored["ID"]
    current = service_inspect(gateway, stored["ID"])
    spec = copy.deepcopy(stored["Spec"])
    if force:
        now = ((current.get("Spec") or {}).get("TaskTemplate") or {}).get("ForceUpdate", 0)
        spec.setdefault("TaskTemplate", {})["ForceUpdate"] = now + 1
    gateway._update_service_spec(current, spec, f"putting back the previous spec of {name}")


def progress(gateway: DockerGateway, service_id: str, known: set[str] | frozenset = frozenset()) -> UpdateProgress:
    """Where the service's update stands; ``known``: the task ids it had before rsgo changed its spec."""
    doing = f"reading the update of {service_id}"
    with _service_translated(doing):
        rows = gateway._api().services(filters={"id": service_id}, status=True)
        tasks = gateway._api().tasks(filters={"service": service_id})
    row = next((row for row in rows if row["ID"] == service_id), None)
    if row is None:
        raise NotFound(f"{doing}: no such service")  # removed meanwhile
    image = (((row.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
    update = row.get("UpdateStatus") or {}
    running = [task for task in tasks if task.get("DesiredState") == "running"
               and (task.get("Status") or {}).get("State") == "running"]
    ended = []
    for task in tasks:
        status = task.get("Status") or {}
        if task["ID"] not in known and status.get("State") in TASK_ENDED:
            ended.append(f"task {task.get('Slot') or task['ID'][:12]} of {_task_image(task)} {status.get('State')}"
                         + (f": {status['Err']}" if status.get("Err") else ""))
    return UpdateProgress(
        image=image, state=update.get("State"), message=update.get("Message", ""),
        desired=(row.get("ServiceStatus") or {}).get("DesiredTasks", 0), running=len(running),
        running_image=sum(1 for task in running if _task_image(task) == image), ended=tuple(ended))


def _task_image(task: dict) -> str:
    return (((task.get("Spec") or {}).get("ContainerSpec")) or {}).get("Image", "")

