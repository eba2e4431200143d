"""The Swarm side of an upgrade (README "Upgrades"): each service's image changed in place by Swarm's
own rolling update with ``failure_action: rollback``, one service after the other in dependency order.
Swarm rolls back only the service that failed, and keeps a single previous spec per service (a second
``docker service rollback`` toggles forward again), so the services updated before it are put back by
re-submitting the spec the journal stored for each, never by ``?rollback=previous``. Nothing is kept
aside and nothing is stopped by rsgo: Swarm replaces the tasks.
"""

from __future__ import annotations

import logging
import time

from rsgo.docker_ops import DockerError, DockerGateway, DockerUnreachable, NotFound, service_updates
from rsgo.docker_ops.service_updates import UPDATE_UNDER_WAY, progress
from rsgo.models import Upgrade
from rsgo.upgrades import journal
from rsgo.upgrades.planning import PlannedContainer, is_service_row
from rsgo.upgrades.procedure import Procedure, StepFailed, container_states

log = logging.getLogger(__name__)

NS = 10**9
MONITOR_FLOOR = 5.0  # seconds: Swarm's own default monitor period
SWARM_STOP_GRACE = 10.0  # a task's stop grace period when its spec names none (Swarm's default)
DEADLINE_MARGIN = 30.0  # for the orchestrator and the agents, beyond what the tasks themselves may take
POLL_INTERVAL = 0.25


def procedure_for(gateway: DockerGateway, upgrade_id: int, rows: list[PlannedContainer], **settings) -> Procedure:
    """The steps for these rows: Swarm's when they are services (an upgrade names one kind only)."""
    kind = SwarmProcedure if any(is_service_row(row) for row in rows) else Procedure
    return kind(gateway, upgrade_id, rows, **settings)


def unit_states(gateway: DockerGateway, rows: list[PlannedContainer]) -> str:
    """"api running, worker exited", or for a service "shop_api 1/1 running shop/api:2 (update completed)"."""
    states = []
    for row in rows:
        if not is_service_row(row):
            states.append(container_states(gateway, [row.name]))
            continue
        try:
            states.append(progress(gateway, row.old_id).describe(row.name))
        except NotFound:
            states.append(f"{row.name} missing")
    return ", ".join(states)


def _spec_seconds(inspect: dict, *path: str, default: float) -> float:
    value = inspect.get("Spec") or {}
    for key in path:
        value = (value or {}).get(key)
    return value / NS if isinstance(value, (int, float)) and value > 0 else default


class SwarmProcedure(Procedure):
    """``rows``: the services (``old_id`` the service's id, ``inspect`` its inspect answer at the plan,
    ``old_ref`` and ``new_ref`` the images). ``resolve_images`` is the containers' one: every new image
    present on the manager (pulled when missing); the other nodes pull it as Swarm asks them to."""

    swarm = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._known: dict[str, set[str]] = {}  # service name -> its task ids before rsgo changed its spec

    def monitor(self) -> float:
        """How long a new task must run without failing (Swarm's Monitor): ``stableFor``, at least 5 s."""
        return max(self.stable_for, MONITOR_FLOOR)

    def update_config(self) -> dict:
        return {"FailureAction": "rollback", "Monitor": int(self.monitor() * NS), "Order": "stop-first",
                "Parallelism": 1}

    def update_one(self, row: PlannedContainer) -> None:
        """The service's image changed (only that, and its UpdateConfig), against the version of the plan;
        returns once Swarm completed the update and every desired task runs the new image."""
        try:
            self._known[row.name] = service_updates.task_ids(self.gateway, row.old_id)
            self._note(row.name, "updating")
            service_updates.update_image(self.gateway, row.inspect, row.new_ref, self.update_config())
        except DockerError as error:
            # An engine's answer means the spec was not changed ("refused": nothing to put back); a lost
            # connection may have delivered it.
            self._note(row.name, "failed" if isinstance(error, DockerUnreachable) else "refused", str(error))
            raise
        problem = self._settle(row, row.new_ref, self._known[row.name], self.monitor())
        if problem:
            self._note(row.name, "failed", problem)
            raise StepFailed(problem)
        self._note(row.name, "healthy")
        log.info("upgrade %s: %s runs %s", self.upgrade_id, row.name, row.new_ref)

    def verify(self) -> None:
        """Every updated service still has all its desired tasks on the new image, none of them ended."""
        errors = []
        for row in self.rows:
            now = progress(self.gateway, row.old_id, self._known.get(row.name, set()))
            if now.image != row.new_ref or now.state in UPDATE_UNDER_WAY or not now.converged:
                errors.append(now.describe(row.name) + (f"; {', '.join(now.ended)}" if now.ended else ""))
        if errors:
            raise StepFailed("; ".join(errors))

    def _settle(self, row: PlannedContainer, image: str, known: set[str], monitor: float) -> str | None:
        """Waits until Swarm is done with the service; None when every desired task runs ``image`` and
        none started since ``known`` ended, else what went wrong (Swarm rolled back or paused, or the
        deadline: each task may take the health timeout and its stop grace period, one after the other)."""
        grace = _spec_seconds(row.inspect, "TaskTemplate", "ContainerSpec", "StopGracePeriod",
                              default=SWARM_STOP_GRACE)
        started, limit, why = time.monotonic(), None, ""
        while True:
            now = progress(self.gateway, row.old_id, known)
            if now.state == "rollback_started" and now.message:
                why = now.message  # "update rolled back due to failure or early termination of task …"
            if limit is None:
                limit = max(1, now.desired) * (self.health_timeout + grace) + monitor + DEADLINE_MARGIN
            failures = f" ({', '.join(now.ended)})" if now.ended else ""
            if now.state in ("paused", "rollback_paused"):
                doing = "rolling it back" if now.state == "rollback_paused" else "the update"
                return f"{row.name}: Swarm paused {doing}: {now.message}{failures}"
            if now.state not in UPDATE_UNDER_WAY:
                if now.image != image and now.state == "rollback_completed":
                    return f"{row.name}: Swarm rolled the update back: {why or now.message}{failures}"
                if now.image != image:
                    return f"{row.name}: its spec names {now.image}, not {image}"
                if now.converged:
                    return None
                if now.ended:
                    return f"{row.name}: tasks ended after the update{failures}"
            if time.monotonic() - started >= limit:
                return f"{row.name}: not settled within {limit:g}s: {now.describe(row.name)}{failures}"
            time.sleep(POLL_INTERVAL)

    # -- putting the previous specs back ------------------------------------------------------------

    def restore(self) -> list[str]:
        """The stored spec of every service this upgrade changed (for a rollback: every one), newest first,
        re-submitted when the service's image differs from it (or Swarm left it paused), then waited for.
        Idempotent: a service already back is only checked. Returns the problems."""
        rollback = Upgrade.get_by_id(self.upgrade_id).kind == "rollback"
        touched = {row.name for row in journal.containers(self.upgrade_id) if row.step not in ("planned", "refused")}
        problems: list[str] = []
        waiting: list[tuple[PlannedContainer, set[str]]] = []
        for row in [row for row in reversed(self.rows) if rollback or row.name in touched]:
            try:
                known = service_updates.task_ids(self.gateway, row.old_id)
                now = progress(self.gateway, row.old_id)
                if now.image != row.old_ref or now.state in ("paused", "rollback_paused"):
                    self._note(row.name, "restoring")
                    service_updates.resubmit(self.gateway, row.inspect, force=now.image == row.old_ref)
                waiting.append((row, known))
            except DockerError as error:
                self._note(row.name, "failed", str(error))
                problems.append(str(error) if row.name in str(error) else f"{row.name}: {error}")
        for row, known in waiting:
            monitor = _spec_seconds(row.inspect, "UpdateConfig", "Monitor", default=MONITOR_FLOOR)
            try:
                problem = self._settle(row, row.old_ref, known, monitor)
            except DockerError as error:
                problem = str(error) if row.name in str(error) else f"{row.name}: {error}"
            self._note(row.name, "failed" if problem else "restored", problem)
            if problem:
                problems.append(problem)
        return problems

    def remove_aside(self, rows: list[PlannedContainer], upgrade_id: int) -> list[str]:
        """Only an earlier container upgrade of the stack kept anything aside."""
        return super().remove_aside([row for row in rows if not is_service_row(row)], upgrade_id)
