"""Finishing what a previous process left ``running`` (docs/design.md#transitions).

Stop and start are idempotent, so actions without a recorded result are simply done again.
Resumption waits (retrying) while Docker is unreachable, because half-done must not stay
half-done; each environment resumes on a thread of its own, so an engine that is down delays only
its own stacks. A transition of an environment no longer configured (or disabled) is left for the
next start: rsgo never acts on it. A transition that something later superseded is never replayed: it is closed as
failed and the stack goes to Failed with what Docker shows, for a person to decide.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from rsgo import transition_records
from rsgo.db import STORAGE_ERRORS, note_storage_failure, release_thread_connection, storage_error_text
from rsgo.discovery import Unit
from rsgo.docker_ops import DockerError
from rsgo.environments import EngineClaimPending, EnvironmentRemoved, EnvironmentUnavailable
from rsgo.lifecycle import PlannedAction
from rsgo.models import AuditEntry, Deployment, Transition

log = logging.getLogger(__name__)


def resume_interrupted(service, stopping: threading.Event) -> list[int]:
    """Resume (or close as superseded) every ``running`` transition, oldest first within each
    environment, the environments side by side; the ids resumed."""
    try:
        pending = list(Transition.select(Transition, Deployment).join(Deployment)
                       .where(Transition.status == "running").order_by(Transition.id))
        environments = sorted({transition.deployment.environment for transition in pending})
    except STORAGE_ERRORS:
        environments = [None]  # the loop below waits for the database, then sorts it out
    finally:
        release_thread_connection()
    resumed: list[int] = []

    def resume(environment: str | None) -> None:
        try:
            resumed.extend(_resume_environment(service, environment, stopping))
        finally:
            release_thread_connection()

    threads = [threading.Thread(target=resume, args=(environment,), name=f"rsgo-resume-{environment or 'all'}",
                                daemon=True) for environment in environments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(resumed)


def _resume_environment(service, environment: str | None, stopping: threading.Event) -> list[int]:
    """The ``running`` transitions of one environment (None: all), oldest first. While the database
    cannot be written (rsgo restarted on a read-only or full disk), it retries with backoff: meanwhile
    the stack answers 409 transition_in_progress and nothing acts on it."""
    resumed = []
    delay = 0.5
    while True:
        try:
            query = Transition.select().join(Deployment).where(Transition.status == "running")
            if environment is not None:
                query = query.where(Deployment.environment == environment)
            for transition in list(query.order_by(Transition.id)):
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
        found = _stack_when_reachable(service.environments, transition.deployment, stopping)
        if found is None:
            return False  # shutting down, or its environment is gone: it resumes at a later start
        gateway, containers = found
        why = superseded_by(transition, containers)
        if why:
            log.warning("transition %s of %r not resumed: %s", transition.id, transition.deployment.name, why)
            service.announce(transition_records.close_superseded(
                transition, {c.name for c in containers if c.running}, {c.name for c in containers}, why))
            return False
        if not transition.resumed:
            service.announce_audit(transition_records.mark_resumed(transition))
        planned = [PlannedAction(a.container_name, a.action, a.level, a.result, a.kind,
                                 transition_records.load_memo(a.memo)) for a in transition.actions]
        log.info("resuming transition %s of %r", transition.id, transition.deployment.name)
        service.execute(transition, gateway, containers, planned)
        return True


def superseded_by(transition: Transition, containers: list[Unit]) -> str | None:
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


def _stack_when_reachable(environments, deployment: Deployment, stopping: threading.Event):
    """The environment's gateway and the stack's units, waiting while the engine does not answer;
    None when shutting down or when the environment is removed or disabled (left for a later start)."""
    delay = 0.5
    while True:
        try:
            environment = environments.usable(deployment.environment, known_unreachable_fails=False)
            return environment.gateway, environment.read_stack(deployment.name)
        except (EnvironmentRemoved, EnvironmentUnavailable) as error:
            if not isinstance(error, EngineClaimPending):  # waiting for an earlier environment: seconds
                log.warning("transition of %r left for a later start: %s", deployment.name, error)
                return None
            log.warning("cannot resume yet: %s", error)
        except DockerError as error:
            log.warning("cannot resume yet: %s", error)
        if stopping.wait(delay):
            return None
        delay = min(delay * 2, 10)
