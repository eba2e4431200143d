"""The transition service: validates a mode change against the table and ownership,
persists it before the first Docker call, runs the container actions, and records
the outcome. It also resumes transitions a crash left ``running``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from dataclasses import dataclass

from rsgo import audit, deployments
from rsgo.db import database, utcnow, write_transaction
from rsgo.docker_ops import ContainerInfo, DockerError, DockerGateway
from rsgo.events import EventBus
from rsgo.lifecycle import ActionResult, DependencyCycle, LevelRunner, PlannedAction, plan
from rsgo.models import Deployment, StoppedSetEntry, Transition, TransitionAction
from rsgo.modes import Mode, allowed_targets, is_allowed, needs_docker, parse_mode

log = logging.getLogger(__name__)

# The network address of the request being handled, for the audit entries it causes.
_caller_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller_address", default=None)


class ModeChangeRefused(Exception):
    """A mode change that was not carried out; ``code`` and ``status`` become the API's problem."""

    status = 409
    code = "transition_not_allowed"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class TransitionNotAllowed(ModeChangeRefused):
    code = "transition_not_allowed"


class TransitionInProgress(ModeChangeRefused):
    code = "transition_in_progress"


class ObserverOwnsMaintenance(ModeChangeRefused):
    code = "observer_owns_maintenance"


class DependencyCycleRefused(ModeChangeRefused):
    code = "dependency_cycle"


class DockerUnavailable(ModeChangeRefused):
    status = 503
    code = "docker_unreachable"


@dataclass
class ModeChange:
    """What a mode-change request led to."""

    deployment: Deployment
    previous_mode: Mode
    new_mode: Mode
    outcome: str  # noop, succeeded, failed, running
    transition: Transition | None = None


class TransitionService:
    def __init__(self, gateway: DockerGateway, bus: EventBus, settings):
        self._gateway = gateway
        self._bus = bus
        self._settings = settings
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._background: set[threading.Thread] = set()
        # Observers (their own issue) replace this: does the owning observer still read "maintenance"?
        # Until one can answer, an observer's Maintenance is treated as still held.
        self.observer_holds_maintenance = lambda deployment: True
        # ...and is told when a forced request overrides it, so it stays quiet until it reads normal.
        self.observer_overridden = lambda deployment: None
        # The window service is told when someone else ends a schedule's Maintenance.
        self.schedule_overridden = lambda deployment: None

    # -- locking ---------------------------------------------------------------------------

    def _lock_for(self, deployment_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(deployment_id, threading.Lock())

    @contextlib.contextmanager
    def holding(self, deployment_id: int):
        """Hold the deployment's transition lock if it is free; yields whether it was."""
        lock = self._lock_for(deployment_id)
        acquired = lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()

    def is_busy(self, deployment_id: int) -> bool:
        return self._lock_for(deployment_id).locked()

    # -- requests --------------------------------------------------------------------------

    def change_mode(self, deployment_id: int, requested: str, *, source: str, actor: str, reason: str = "",
                    force: bool = False, observed_value: str | None = None, wait: bool = True,
                    address: str | None = None) -> ModeChange:
        target = parse_mode(requested)
        requested_at = utcnow()
        address_token = _caller_address.set(address)
        try:
            return self._change_mode(deployment_id, target, requested_at, source=source, actor=actor, reason=reason,
                                     force=force, observed_value=observed_value, wait=wait)
        finally:
            _caller_address.reset(address_token)

    def _change_mode(self, deployment_id: int, target: Mode, requested_at, *, source: str, actor: str, reason: str,
                     force: bool, observed_value: str | None, wait: bool) -> ModeChange:
        lock = self._lock_for(deployment_id)
        if not lock.acquire(blocking=False):
            running = self._running_transition_once_written(deployment_id, lock)
            # Lock released without a transition (a no-op, a refusal, an enforcement): this request may go on.
            if running is not None or not lock.acquire(blocking=False):
                deployment = Deployment.get_by_id(deployment_id)
                self._refuse(deployment, target, source, actor, reason, observed_value, requested_at,
                             TransitionInProgress(
                                 f"{deployment.name} is already changing mode"
                                 + (f" (transition {running.id})" if running else ""),
                                 transitionId=running.id if running else None,
                                 transitionUrl=f"/api/transitions/{running.id}" if running else None))
        handed_over = False
        try:
            deployment = Deployment.get_by_id(deployment_id)
            current = Mode(deployment.mode)
            if target is current:
                audit.record(deployment, previous_mode=current.value, new_mode=current.value, outcome="noop",
                             source=source, actor=actor, reason=reason, requested_mode=target.value,
                             observed_value=observed_value, requested_at=requested_at, bus=self._bus,
                             address=_caller_address.get())
                return ModeChange(deployment, current, current, "noop")
            overrides_observer = self._check_allowed(deployment, current, target, force, source, actor, reason,
                                                     observed_value, requested_at)
            containers: list[ContainerInfo] = []
            if needs_docker(target):
                try:
                    containers = self._gateway.inspect_stack(deployment.name)
                except DockerError as error:
                    audit.record(deployment, previous_mode=current.value, new_mode=current.value, outcome="failed",
                                 source=source, actor=actor, reason=reason, requested_mode=target.value,
                                 observed_value=observed_value, error=str(error), requested_at=requested_at, bus=self._bus,
                                 address=_caller_address.get())
                    raise DockerUnavailable(f"mode unchanged: {error}") from None
            try:
                planned = plan(target, containers, deployments.stopped_set_names(deployment.id))
            except DependencyCycle as cycle:
                self._refuse(deployment, target, source, actor, reason, observed_value, requested_at,
                             DependencyCycleRefused(f"nothing was touched: {cycle}", cycle=cycle.cycle))
            transition = self._persist(deployment, current, target, planned, source, actor, reason, force,
                                       observed_value, requested_at)
            if overrides_observer:
                self.observer_overridden(deployment)
            if current is Mode.MAINTENANCE and deployment.trigger_source == "schedule" and source != "schedule":
                self.schedule_overridden(deployment)
            self._bus.publish("transition.started", deployment_id=deployment.id, transition_id=transition.id)
            if wait:
                self._execute(transition, containers, planned)
            else:
                self._in_background(self._execute, lock, transition, containers, planned)
                handed_over = True
                return ModeChange(deployment, current, target, "running", transition)
            transition = Transition.get_by_id(transition.id)
            deployment = Deployment.get_by_id(deployment_id)
            return ModeChange(deployment, current, Mode(deployment.mode), transition.status, transition)
        finally:
            if not handed_over:
                lock.release()

    @staticmethod
    def _running_transition_once_written(deployment_id: int, lock: threading.Lock, timeout: float = 5.0):
        """The lock's holder writes its transition only after reading the stack from Docker; wait for
        that row (or the lock's release) so a concurrent request's 409 can name the running transition."""
        deadline = time.monotonic() + timeout
        while True:
            running = deployments.running_transition(deployment_id)
            if running is not None or not lock.locked() or time.monotonic() >= deadline:
                return running
            time.sleep(0.02)

    def _check_allowed(self, deployment, current, target, force, source, actor, reason, observed_value,
                       requested_at) -> bool:
        """Refuses what the table or ownership forbids; True if a forced request overrides an observer."""
        if not is_allowed(current, target):
            allowed = [m.value for m in allowed_targets(current)]
            self._refuse(deployment, target, source, actor, reason, observed_value, requested_at,
                         TransitionNotAllowed(
                             f"{deployment.name} cannot go from {current.value} to {target.value}; "
                             f"allowed: {', '.join(allowed)}",
                             currentMode=current.value, allowedModes=allowed))
        owned_by_observer = current is Mode.MAINTENANCE and deployment.trigger_source == "observer"
        held = owned_by_observer and source != "observer" and self.observer_holds_maintenance(deployment)
        if held and not force:
            self._refuse(deployment, target, source, actor, reason, observed_value, requested_at,
                         ObserverOwnsMaintenance(
                             f"{deployment.name} is in Maintenance because observer {deployment.trigger_actor} "
                             "still reads maintenance; send \"force\": true to override",
                             observer=deployment.trigger_actor))
        return held

    def _refuse(self, deployment, target, source, actor, reason, observed_value, requested_at, refusal):
        audit.record(deployment, previous_mode=deployment.mode, new_mode=deployment.mode, outcome="rejected",
                     source=source, actor=actor, reason=reason, requested_mode=target.value,
                     observed_value=observed_value, error=f"{refusal.code}: {refusal.detail}",
                     requested_at=requested_at, bus=self._bus, address=_caller_address.get())
        raise refusal

    def _persist(self, deployment, current, target, planned: list[PlannedAction], source, actor, reason, force,
                 observed_value, requested_at) -> Transition:
        # Written before the first Docker call: a crash from here on is resumed at the next start.
        with write_transaction():
            transition = Transition.create(
                deployment=deployment, previous_mode=current.value, target_mode=target.value, source=source,
                actor=actor, reason=reason, force=force, observed_value=observed_value, requested_at=requested_at,
                address=_caller_address.get())
            for action in planned:
                TransitionAction.create(
                    transition=transition, container_name=action.container_name, action=action.action,
                    level=action.level, result=action.result, duration_ms=0 if action.result else None,
                    finished_at=utcnow() if action.result else None)
                if action.result == "missing":
                    self._forget_stopped(deployment.id, action.container_name)
        return transition

    # -- execution -------------------------------------------------------------------------

    def _in_background(self, function, lock: threading.Lock, *args) -> None:
        def run():
            try:
                function(*args)
            except Exception:
                log.exception("transition failed unexpectedly")
            finally:
                lock.release()
                self._background.discard(threading.current_thread())
                database.close() if not database.is_closed() else None

        thread = threading.Thread(target=run, name="rsgo-transition", daemon=True)
        self._background.add(thread)
        thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Wait for background transitions (shutdown, tests); False if some still run."""
        deadline = time.monotonic() + timeout
        for thread in list(self._background):
            thread.join(max(0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._background)

    def _execute(self, transition: Transition, containers: list[ContainerInfo], planned: list[PlannedAction]) -> None:
        total = len(planned)
        done = sum(1 for a in planned if a.result)
        deployment_id = transition.deployment_id

        def on_result(result: ActionResult) -> None:
            nonlocal done
            done += 1
            self._record_action(transition, deployment_id, result)
            self._bus.publish("transition.progress", deployment_id=deployment_id, transition_id=transition.id,
                              container=result.container_name, result=result.result, error=result.error,
                              duration_ms=result.duration_ms, done=done, total=total)

        runner = LevelRunner(self._gateway, containers, self._settings.action_concurrency,
                             self._settings.default_stop_timeout, self._settings.default_start_timeout)
        runner.run([a for a in planned if not a.result], on_result)
        self._finish(transition)

    def _record_action(self, transition: Transition, deployment_id: int, result: ActionResult) -> None:
        with write_transaction():
            (TransitionAction.update(result=result.result, error=result.error, duration_ms=result.duration_ms,
                                     finished_at=utcnow())
             .where((TransitionAction.transition == transition.id)
                    & (TransitionAction.container_name == result.container_name))
             .execute())
            if result.result == "stopped":
                StoppedSetEntry.insert(deployment=deployment_id, container_name=result.container_name,
                                       transition=transition.id).on_conflict_ignore().execute()
            elif result.result in ("started", "already-running", "missing"):
                self._forget_stopped(deployment_id, result.container_name)

    @staticmethod
    def _forget_stopped(deployment_id: int, container_name: str) -> None:
        StoppedSetEntry.delete().where((StoppedSetEntry.deployment == deployment_id)
                                       & (StoppedSetEntry.container_name == container_name)).execute()

    def _finish(self, transition: Transition) -> None:
        transition = Transition.get_by_id(transition.id)
        actions = list(transition.actions)
        failures = [a for a in actions if a.result == "failed"]
        target = Mode(transition.target_mode)
        with write_transaction():
            deployment = Deployment.get_by_id(transition.deployment_id)
            previous = deployment.mode
            if failures:
                errors = "; ".join(f"{a.container_name}: {a.error}" for a in failures)
                new_mode, outcome = Mode.FAILED, "failed"
                transition.error = errors
                deployment.trigger_source, deployment.trigger_actor = "system", "system"
                deployment.trigger_reason = (f"{len(failures)} of {len(actions)} container actions failed entering "
                                             f"{target.value} (requested by {transition.actor})")
                deployment.trigger_observed_value = None
            else:
                new_mode, outcome = target, "succeeded"
                deployment.trigger_source, deployment.trigger_actor = transition.source, transition.actor
                deployment.trigger_reason = transition.reason
                deployment.trigger_observed_value = transition.observed_value
            deployment.mode = new_mode.value
            deployment.mode_changed_at = utcnow()
            deployment.save()
            transition.status = outcome
            transition.finished_at = utcnow()
            transition.save()
            entry = audit.record(deployment, previous_mode=transition.previous_mode, new_mode=new_mode.value, outcome=outcome,
                         source=transition.source, actor=transition.actor, reason=transition.reason,
                         requested_mode=target.value, observed_value=transition.observed_value,
                         error=transition.error, requested_at=transition.requested_at, transition=transition,
                         address=transition.address)
        log.info("deployment %s (id %s) transition %s: %s -> %s %s", deployment.name, deployment.id, transition.id,
                 previous, new_mode.value, outcome)
        # Announced after the commit, so every listener reads the finished state.
        self._bus.publish("audit.recorded", entry_id=entry.id, deployment_id=deployment.id)
        self._bus.publish("transition.finished", deployment_id=deployment.id, transition_id=transition.id,
                          outcome=outcome)
        self._bus.publish("mode.changed", deployment_id=deployment.id, previous_mode=previous,
                          new_mode=new_mode.value, transition_id=transition.id, outcome=outcome)

    # -- crash recovery --------------------------------------------------------------------

    def resume_interrupted(self, stopping: threading.Event | None = None) -> list[int]:
        """Finish every transition a previous process left ``running``; returns their ids.

        Stop and start are idempotent, so actions without a recorded result are simply done again.
        Waits (retrying) while Docker is unreachable, because half-done must not stay half-done.
        """
        resumed = []
        for transition in Transition.select().where(Transition.status == "running").order_by(Transition.id):
            lock = self._lock_for(transition.deployment_id)
            with lock:
                deployment = transition.deployment
                transition.resumed = True
                transition.save()
                audit.record(deployment, previous_mode=transition.previous_mode, new_mode=transition.target_mode,
                             outcome="resumed", source="system", actor="system",
                             reason=f"resuming transition {transition.id} interrupted by a restart "
                                    f"(requested by {transition.actor}: {transition.reason or 'no reason'})",
                             requested_mode=transition.target_mode, transition=transition, bus=self._bus)
                containers = self._containers_when_reachable(deployment.name, stopping)
                if containers is None:
                    return resumed
                planned = [PlannedAction(a.container_name, a.action, a.level, a.result) for a in transition.actions]
                log.info("resuming transition %s of %s", transition.id, deployment.name)
                self._execute(transition, containers, planned)
                resumed.append(transition.id)
        return resumed

    def _containers_when_reachable(self, stack: str, stopping: threading.Event | None):
        delay = 0.5
        while True:
            try:
                return self._gateway.inspect_stack(stack)
            except DockerError as error:
                log.warning("cannot resume yet: %s", error)
                if stopping is not None and stopping.wait(delay):
                    return None
                if stopping is None:
                    time.sleep(delay)
                delay = min(delay * 2, 10)
