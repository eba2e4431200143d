"""The database side of a transition: the rows written before the first Docker call, each
container's result with the stopped-set, and the end (the mode, the outcome, the audit entry) in one
database transaction (docs/design.md#transitions). Nothing here talks to Docker or to the bus: the
transition service announces what these functions committed.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from rsgo import audit
from rsgo.db import utcnow, write_transaction
from rsgo.lifecycle import ActionResult, PlannedAction
from rsgo.mode_change import ModeChangeRequest
from rsgo.models import AuditEntry, Deployment, StoppedSetEntry, Transition, TransitionAction
from rsgo.modes import Mode


@dataclass
class Finished:
    """A committed end of a transition, for the announcement that follows it."""

    entry: AuditEntry
    deployment: Deployment
    previous_mode: str
    new_mode: str
    transition_id: int
    outcome: str


@dataclass
class HeldFailure:
    """A transition whose bookkeeping could not be written. It stopped acting; until the database takes
    writes again, what it did lives here (and the deployment is shown Failed from it), then it is
    written as a failed transition and this goes away."""

    transition_id: int
    deployment_id: int
    error: str
    results: list[ActionResult]
    at: dt.datetime  # when the write failed (naive UTC)

    @property
    def reason(self) -> str:
        return (f"rsgo could not record transition {self.transition_id} ({self.error}); it stopped acting "
                f"after {len(self.results)} container action(s); choose a mode once the database is writable")


def persist(deployment: Deployment, current: Mode, request: ModeChangeRequest,
            planned: list[PlannedAction]) -> Transition:
    """Written before the first Docker call: a crash from here on is resumed at the next start."""
    with write_transaction():
        transition = Transition.create(
            deployment=deployment, previous_mode=current.value, target_mode=request.target.value,
            source=request.source, actor=request.actor, reason=request.reason, force=request.force,
            observed_value=request.observed_value, requested_at=request.requested_at, address=request.address)
        for action in planned:
            TransitionAction.create(
                transition=transition, container_name=action.container_name, action=action.action,
                level=action.level, result=action.result, duration_ms=0 if action.result else None,
                finished_at=utcnow() if action.result else None, kind=action.kind, memo=dump_memo(action.memo))
            if action.result == "missing":
                forget_stopped(deployment.id, action.container_name)
    return transition


def dump_memo(memo: dict | None) -> str | None:
    return None if memo is None else json.dumps(memo, sort_keys=True)


def load_memo(text: str | None) -> dict | None:
    return None if not text else json.loads(text)


def record_action(transition_id: int, deployment_id: int, result: ActionResult) -> None:
    with write_transaction():
        action = TransitionAction.get((TransitionAction.transition == transition_id)
                                      & (TransitionAction.container_name == result.container_name))
        action.result, action.error, action.duration_ms = result.result, result.error, result.duration_ms
        action.finished_at = utcnow()
        action.save()
        if result.result == "stopped" or (result.result == "failed" and result.memo is not None):
            # A failed stop with a memo is a service rsgo scaled down whose tasks outlasted the wait:
            # half-stopped, and only the stopped-set keeps the replica count Normal must restore.
            remember_stopped(deployment_id, action, result.memo)
        elif result.result in ("started", "already-running", "missing"):
            forget_stopped(deployment_id, result.container_name)


def remember_stopped(deployment_id: int, action: TransitionAction, memo: dict | None = None) -> None:
    """Into the stopped-set; a service's entry keeps what Normal restores (``memo``, else the plan's)."""
    (StoppedSetEntry.insert(deployment=deployment_id, container_name=action.container_name,
                            transition=action.transition_id, kind=action.kind,
                            memo=dump_memo(memo) if memo is not None else action.memo)
     .on_conflict_ignore().execute())


def forget_stopped(deployment_id: int, container_name: str) -> None:
    StoppedSetEntry.delete().where((StoppedSetEntry.deployment == deployment_id)
                                   & (StoppedSetEntry.container_name == container_name)).execute()


def note_service_version(deployment_id: int, name: str, version: int) -> None:
    """Enforcement scaled a service down again: its stopped-set entry takes the version that left."""
    with write_transaction():
        entry = StoppedSetEntry.get_or_none((StoppedSetEntry.deployment == deployment_id)
                                            & (StoppedSetEntry.container_name == name))
        if entry is not None and entry.memo:
            entry.memo = dump_memo({**load_memo(entry.memo), "version": version})
            entry.save()


def _set_mode(deployment: Deployment, mode: Mode, *, source: str, actor: str, reason: str,
              observed_value: str | None, at: dt.datetime | None = None) -> None:
    deployment.mode, deployment.mode_changed_at = mode.value, at or utcnow()
    deployment.trigger_source, deployment.trigger_actor = source, actor
    deployment.trigger_reason, deployment.trigger_observed_value = reason, observed_value
    deployment.save()


def _request_fields(transition: Transition) -> dict:
    return {"source": transition.source, "actor": transition.actor, "reason": transition.reason,
            "requested_mode": transition.target_mode, "observed_value": transition.observed_value,
            "requested_at": transition.requested_at, "address": transition.address}


def finish(transition_id: int) -> Finished:
    """The end of a transition whose actions all ran: its target mode, or Failed if any action failed."""
    with write_transaction():
        transition = Transition.get_by_id(transition_id)
        actions = list(transition.actions)
        failures = [a for a in actions if a.result == "failed"]
        target = Mode(transition.target_mode)
        deployment = Deployment.get_by_id(transition.deployment_id)
        previous = deployment.mode
        if failures:
            new_mode, outcome = Mode.FAILED, "failed"
            transition.error = "; ".join(f"{a.container_name}: {a.error}" for a in failures)
            _set_mode(deployment, Mode.FAILED, source="system", actor="system", observed_value=None,
                      reason=f"{len(failures)} of {len(actions)} container actions failed entering "
                             f"{target.value} (requested by {transition.actor})")
        else:
            new_mode, outcome = target, "succeeded"
            _set_mode(deployment, target, source=transition.source, actor=transition.actor,
                      reason=transition.reason, observed_value=transition.observed_value)
            # A service someone changed while rsgo had it stopped: restored, and the history says how.
            warnings = [a.error for a in actions if a.error]
            if warnings:
                transition.error = "warning: " + "; ".join(warnings)
        transition.status, transition.finished_at = outcome, utcnow()
        transition.save()
        entry = audit.record(deployment, previous_mode=transition.previous_mode, new_mode=new_mode.value,
                             outcome=outcome, error=transition.error, transition=transition,
                             **_request_fields(transition))
    return Finished(entry, deployment, previous, new_mode.value, transition.id, outcome)


def write_held_failure(held: HeldFailure) -> Finished | None:
    """A failure that could not be written when it happened: what ran, what was skipped, Failed.
    None if it was written already (the retry job and a request may both try)."""
    with write_transaction():
        transition = Transition.get_by_id(held.transition_id)
        if transition.status != "running":
            return None
        for result in held.results:
            record_action(transition.id, held.deployment_id, result)
        (TransitionAction.update(result="skipped", duration_ms=0, finished_at=utcnow(),
                                 error="not attempted: rsgo stopped acting when its database failed")
         .where((TransitionAction.transition == transition.id) & TransitionAction.result.is_null())
         .execute())
        deployment = Deployment.get_by_id(held.deployment_id)
        previous = deployment.mode
        transition.status, transition.finished_at = "failed", utcnow()
        transition.error = f"storage failure: {held.error}"
        transition.save()
        _set_mode(deployment, Mode.FAILED, source="system", actor="system", reason=held.reason,
                  observed_value=None, at=held.at)
        entry = audit.record(deployment, previous_mode=transition.previous_mode, new_mode=Mode.FAILED.value,
                             outcome="failed", error=transition.error, transition=transition,
                             **_request_fields(transition))
    return Finished(entry, deployment, previous, Mode.FAILED.value, transition.id, "failed")


def mark_resumed(transition: Transition) -> AuditEntry:
    with write_transaction():
        transition.resumed = True
        transition.save()
        return audit.record(transition.deployment, previous_mode=transition.previous_mode,
                            new_mode=transition.target_mode, outcome="resumed", source="system", actor="system",
                            reason=f"resuming transition {transition.id} interrupted by a restart "
                                   f"(requested by {transition.actor}: {transition.reason or 'no reason'})",
                            requested_mode=transition.target_mode, transition=transition)


def close_superseded(transition: Transition, running: set[str], present: set[str], why: str) -> Finished:
    """Reconcile with Docker instead of replaying: the stopped-set keeps the containers this
    transition was to stop that are stopped now (so leaving Failed starts them), and forgets every
    container that runs or is gone; the stack goes to Failed for a person to choose its mode."""
    with write_transaction():
        deployment = Deployment.get_by_id(transition.deployment_id)
        previous = deployment.mode
        acted = [a for a in transition.actions if a.action != "none"]
        for action in transition.actions:
            name = action.container_name
            if name in running or name not in present:
                forget_stopped(deployment.id, name)
            elif action.action == "stop":
                remember_stopped(deployment.id, action)
        running_now = sorted(running & {a.container_name for a in acted})
        transition.status, transition.finished_at = "failed", utcnow()
        transition.error = f"not resumed after a restart: {why}"
        transition.save()
        reason = (f"transition {transition.id} to {transition.target_mode} was interrupted and not resumed: {why}; "
                  f"running now: {', '.join(running_now) or 'none of its containers'}; choose a mode")
        _set_mode(deployment, Mode.FAILED, source="system", actor="system", reason=reason, observed_value=None)
        entry = audit.record(deployment, previous_mode=previous, new_mode=Mode.FAILED.value, outcome="failed",
                             source="system", actor="system", reason=reason, requested_mode=transition.target_mode,
                             error=transition.error, transition=transition)
    return Finished(entry, deployment, previous, Mode.FAILED.value, transition.id, "failed")


def record_mode_step(deployment_id: int, *, target: Mode, outcome: str, source: str, actor: str, reason: str,
                     requested_at: dt.datetime, address: str | None = None, error: str | None = None) -> Finished:
    """A mode change that acts on no container itself (an upgrade's entering or leaving Migrating):
    written whole, with its audit entry, in one database transaction."""
    with write_transaction():
        deployment = Deployment.get_by_id(deployment_id)
        previous = deployment.mode
        transition = Transition.create(
            deployment=deployment, previous_mode=previous, target_mode=target.value, status=outcome, source=source,
            actor=actor, reason=reason, requested_at=requested_at, finished_at=utcnow(), error=error, address=address)
        _set_mode(deployment, target, source=source, actor=actor, reason=reason, observed_value=None)
        entry = audit.record(deployment, previous_mode=previous, new_mode=target.value, outcome=outcome,
                             source=source, actor=actor, reason=reason, requested_mode=target.value, error=error,
                             requested_at=requested_at, transition=transition, address=address)
    return Finished(entry, deployment, previous, target.value, transition.id, outcome)
