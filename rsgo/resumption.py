"""Finishing what a previous process left ``running`` (docs/design.md#transitions).

Stop and start are idempotent, so actions without a recorded result are simply done again.
Resumption waits (retrying) while Docker is unreachable, because half-done must not stay
half-done. A transition that something later superseded is never replayed: it is closed as
failed and the stack goes to Failed with what Docker shows, for a person to decide.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from rsgo import transition_records
from rsgo.db import STORAGE_ERRORS, note_storage_failure, release_thread_connection, storage_error_text
from rsgo.docker_ops import ContainerInfo, DockerError
from rsgo.lifecycle import PlannedAction
from rsgo.models import AuditEntry, Transition

log = logging.getLogger(__name__)


def resume_interrupted(service, stopping: threading.Event) -> list[int]:
    """Resume (or close as superseded) every ``running`` transition, oldest first; their ids resumed.
    While the database cannot be written (rsgo restarted on a read-only or full disk), it retries with
    backoff: meanwhile the stack answers 409 transition_in_progress and nothing acts on it."""
    resumed = []
    delay = 0.5
    while True:
        try:
            pending = list(Transition.select().where(Transition.status == "running").order_by(Transition.id))
            for transition in pending:
                if _resume_one(service, transition, stopping):
                    resumed.append(transition.id)
                if stopping.is_set():
                    return resumed
            return resumed
        except STORAGE_ERRORS as error:
            log.warning("cannot resume yet: the database cannot be written (%s)", storage_error_text(error))
            note_storage_failure()
            release_thread_connection()
            if stopping.wait(delay):
                return resumed  # shutting down: the rest resume at the next start
            delay = min(delay * 2, 10)


def _resume_one(service, transition: Transition, stopping: threading.Event) -> bool:
    """Resume one transition (True), or close it as superseded, or leave it for the next start."""
    with service.lock_for(transition.deployment_id):
        transition = Transition.get_by_id(transition.id)
        if transition.status != "running":
            return False  # finished by an earlier attempt of this loop
        containers = _containers_when_reachable(service.gateway, transition.deployment.name, stopping)
        if containers is None:
            return False  # shutting down: it resumes at the next start
        why = superseded_by(transition, containers)
        if why:
            log.warning("transition %s of %r not resumed: %s", transition.id, transition.deployment.name, why)
            service.announce(transition_records.close_superseded(
                transition, {c.name for c in containers if c.running}, {c.name for c in containers}, why))
            return False
        if not transition.resumed:
            service.announce_audit(transition_records.mark_resumed(transition))
        planned = [PlannedAction(a.container_name, a.action, a.level, a.result) for a in transition.actions]
        log.info("resuming transition %s of %r", transition.id, transition.deployment.name)
        service.execute(transition, containers, planned)
        return True


def superseded_by(transition: Transition, containers: list[ContainerInfo]) -> str | None:
    """Why replaying ``transition`` would undo something that happened after it was requested, or None.

    Later requests: a newer transition of the stack, or a request for another mode that was carried
    out or found the stack already there. Docker: a container it was to stop was started again after
    the request, or one it was to start was stopped again after it. A plain crash shows none of these.
    """
    newer = (Transition.select(Transition.id)
             .where((Transition.deployment == transition.deployment_id) & (Transition.id > transition.id))
             .first())
    if newer is not None:
        return f"transition {newer.id} was requested after it"
    later = (AuditEntry.select()
             .where((AuditEntry.deployment == transition.deployment_id)
                    & (AuditEntry.requested_at > transition.requested_at)
                    & (AuditEntry.transition.is_null() | (AuditEntry.transition != transition.id))
                    & (AuditEntry.requested_mode != transition.target_mode)
                    # Refusals and failed attempts changed nothing; a no-op took the stored mode as true.
                    & AuditEntry.outcome.in_(("noop", "succeeded")))
             .order_by(AuditEntry.id).first())
    if later is not None:
        return f"{later.actor} asked for {later.requested_mode} after it ({later.outcome})"
    actions = {a.container_name: a.action for a in transition.actions}
    for container in containers:
        action = actions.get(container.name)
        if action == "stop" and container.running and _after(container.started_at, transition.requested_at):
            return f"{container.name} was started again after it was requested"
        if action == "start" and not container.running and _after(container.finished_at, transition.requested_at):
            return f"{container.name} was stopped again after it was requested"
    return None


def _after(docker_time: str | None, instant: dt.datetime) -> bool:
    """Whether Docker's ``2026-12-02T05:20:01.123456789Z`` is later than ``instant`` (naive UTC)."""
    if not docker_time or docker_time.startswith("0001-"):
        return False
    try:
        moment = dt.datetime.fromisoformat(docker_time[:26].rstrip("Z"))
    except ValueError:
        return False
    return moment > instant


def _containers_when_reachable(gateway, stack: str, stopping: threading.Event) -> list[ContainerInfo] | None:
    delay = 0.5
    while True:
        try:
            return gateway.inspect_stack(stack)
        except DockerError as error:
            log.warning("cannot resume yet: %s", error)
            if stopping.wait(delay):
                return None
            delay = min(delay * 2, 10)
