"""The transition service, the one place a mode changes (docs/design.md#transitions): it checks a
request against the mode table and ownership, reads the stack from Docker, writes the plan before the
first Docker call, runs the container actions level by level, and records and announces the end.

A transition whose bookkeeping cannot be written stops acting and is held in memory (its stack shown
Failed) until the database takes writes again. Interrupted transitions are resumed by
``rsgo.resumption``. The ownership hooks are assigned by the runtime (``rsgo/runtime.py``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from rsgo import audit, deployment_queries, events, resumption, transition_records
from rsgo.db import STORAGE_ERRORS, note_storage_failure, release_thread_connection, storage_error_text, utcnow
from rsgo.discovery import Unit
from rsgo.docker_ops import DockerError, DockerGateway, DockerUnreachable
from rsgo.environments import EnvironmentRemoved, Environments, EnvironmentUnavailable
from rsgo.events import EventBus
from rsgo.lifecycle import ActionResult, DependencyCycle, LevelRunner, PlannedAction, plan
from rsgo.mode_change import (
    DependencyCycleRefused,
    DockerUnavailable,
    EnvironmentRemovedRefused,
    ModeChange,
    ModeChangeRefused,
    ModeChangeRequest,
    ObserverOwnsMaintenance,
    StorageUnavailable,
    TransitionInProgress,
    TransitionNotAllowed,
)
from rsgo.models import AuditEntry, Deployment, Transition
from rsgo.modes import Mode, allowed_targets, is_allowed, needs_docker, parse_mode
from rsgo.transition_records import Finished, HeldFailure

log = logging.getLogger(__name__)


class TransitionService:
    def __init__(self, environments: Environments, bus: EventBus, settings, jobs):
        self.environments = environments
        self._bus = bus
        self._settings = settings
        self._jobs = jobs  # rsgo.jobs.Scheduler: background transitions and the resumption run there
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._held: dict[int, HeldFailure] = {}  # deployment id -> failure not yet written
        self._held_guard = threading.Lock()
        self._held_writing = threading.Lock()  # one writer of held failures at a time
        # Ownership (docs/design.md#modes-and-ownership), assigned by the runtime: does the observer that
        # entered Maintenance still read "maintenance"; an observer forced out; a schedule ended by others.
        self.observer_holds_maintenance: Callable[[Deployment], bool] = lambda deployment: True
        self.observer_overridden: Callable[[Deployment], None] = lambda deployment: None
        self.schedule_overridden: Callable[[Deployment], None] = lambda deployment: None
        # The upgrade that owns a stack (running, or left unfinished by a restart), assigned by the runtime.
        self.upgrade_in_progress: Callable[[int], int | None] = lambda deployment_id: None

    # -- locking ---------------------------------------------------------------------------

    def lock_for(self, deployment_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(deployment_id, threading.Lock())

    @contextlib.contextmanager
    def holding(self, deployment_id: int):
        """Hold the deployment's transition lock if it is free; yields whether it was."""
        lock = self.lock_for(deployment_id)
        acquired = lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()

    # -- requests --------------------------------------------------------------------------

    def change_mode(self, deployment_id: int, requested: str, *, source: str, actor: str, reason: str = "",
                    force: bool = False, observed_value: str | None = None, wait: bool = True,
                    address: str | None = None, recorded_refusal: str | None = None) -> ModeChange:
        request = ModeChangeRequest(target=parse_mode(requested), source=source, actor=actor, requested_at=utcnow(),
                                    reason=reason, force=force, observed_value=observed_value, address=address,
                                    recorded_refusal=recorded_refusal)
        upgrading = self.upgrade_in_progress(deployment_id)
        if upgrading is not None:
            deployment = Deployment.get_by_id(deployment_id)
            self._refuse(deployment, request, TransitionInProgress(
                f"{deployment.name} is being upgraded (upgrade {upgrading}); its mode changes when that ends",
                upgradeId=upgrading))
        lock = self.lock_for(deployment_id)
        if not lock.acquire(blocking=False):
            running = self._running_transition_once_written(deployment_id, lock)
            # Lock released without a transition (a no-op, a refusal, an enforcement): this request may go on.
            if running is not None or not lock.acquire(blocking=False):
                deployment = Deployment.get_by_id(deployment_id)
                self._refuse(deployment, request, TransitionInProgress(
                    f"{deployment.name} is already changing mode" + (f" (transition {running.id})" if running else ""),
                    transitionId=running.id if running else None))
        handed_over = False
        try:
            change, transition, gateway, containers, planned = self._prepare(deployment_id, request)
            if transition is None:
                return change
            if wait:
                self.execute(transition, gateway, containers, planned)
                return self._outcome(change, transition)
            self._jobs.run_once(f"transition-{transition.id}", f"transition {transition.id} of "
                                f"{change.deployment.name} to {request.target.value}",
                                self._in_background, lock, transition, gateway, containers, planned)
            handed_over = True
            return change
        finally:
            if not handed_over:
                lock.release()

    def _prepare(self, deployment_id: int, request: ModeChangeRequest):
        """Under the lock: refuse, answer a no-op, or write the transition. Returns the change, and for
        a written transition the transition, the gateway, the containers and services, and the plan."""
        self.refuse_while_held(deployment_id)
        deployment = Deployment.get_by_id(deployment_id)
        current = Mode(deployment.mode)
        awaiting = deployment_queries.running_transition(deployment_id)
        if awaiting is not None:
            # A transition a previous process left running: resumption owns this stack until it ends.
            self._refuse(deployment, request, TransitionInProgress(
                f"{deployment.name} is finishing transition {awaiting.id}, interrupted by a restart",
                transitionId=awaiting.id))
        if request.target is current:
            self.announce_audit(audit.record(deployment, previous_mode=current.value, new_mode=current.value,
                                             outcome="noop", **request.audit_fields()))
            return ModeChange(deployment, current, current, "noop"), None, None, [], []
        overrides_observer = self._check_allowed(deployment, current, request)
        containers: list[Unit] = []
        gateway = None
        if needs_docker(request.target):
            try:
                environment = self.environments.usable(deployment.environment)
                gateway = environment.gateway
                containers = environment.read_stack(deployment.name)
            except EnvironmentRemoved as removed:
                self._refuse(deployment, request, EnvironmentRemovedRefused(f"mode unchanged: {removed}"))
            except DockerError as error:
                if isinstance(error, DockerUnreachable) and not isinstance(error, EnvironmentUnavailable):
                    # Known at once: the next request fails fast instead of holding a thread for the
                    # engine's whole timeout again; discovery marks it reachable when it answers.
                    self.environments.mark_unreachable(deployment.environment, str(error))
                if request.recorded_refusal != DockerUnavailable.code:
                    self.announce_audit(audit.record(deployment, previous_mode=current.value, new_mode=current.value,
                                                     outcome="failed", error=str(error), **request.audit_fields()))
                raise DockerUnavailable(f"mode unchanged: {error}") from None
        try:
            planned = plan(request.target, containers, deployment_queries.stopped_set_names(deployment.id),
                           deployment_queries.stopped_set_memos(deployment.id))
        except DependencyCycle as cycle:
            self._refuse(deployment, request,
                         DependencyCycleRefused(f"nothing was touched: {cycle}", cycle=cycle.cycle))
        transition = transition_records.persist(deployment, current, request, planned)
        if overrides_observer:
            self.observer_overridden(deployment)
        if current is Mode.MAINTENANCE and deployment.trigger_source == "schedule" and request.source != "schedule":
            self.schedule_overridden(deployment)
        self._bus.publish(events.TRANSITION_STARTED, deployment_id=deployment.id, transition_id=transition.id)
        return (ModeChange(deployment, current, request.target, "running", transition), transition, gateway,
                containers, planned)

    def _outcome(self, change: ModeChange, transition: Transition) -> ModeChange:
        held = self._held.get(change.deployment.id)
        if held is not None and held.transition_id == transition.id:
            raise StorageUnavailable(f"{change.deployment.name}: {held.reason}", transitionId=transition.id)
        transition = Transition.get_by_id(transition.id)
        deployment = Deployment.get_by_id(change.deployment.id)
        return ModeChange(deployment, change.previous_mode, Mode(deployment.mode), transition.status, transition)

    @staticmethod
    def _running_transition_once_written(deployment_id: int, lock: threading.Lock, timeout: float = 5.0):
        """The lock's holder writes its transition only after reading the stack from Docker; wait for
        that row (or the lock's release) so a concurrent request's 409 can name the running transition."""
        deadline = time.monotonic() + timeout
        while True:
            running = deployment_queries.running_transition(deployment_id)
            if running is not None or not lock.locked() or time.monotonic() >= deadline:
                return running
            time.sleep(0.02)

    def _check_allowed(self, deployment: Deployment, current: Mode, request: ModeChangeRequest) -> bool:
        """Refuses what the table or ownership forbids; True if a forced request overrides an observer."""
        if not is_allowed(current, request.target):
            allowed = [m.value for m in allowed_targets(current)]
            self._refuse(deployment, request, TransitionNotAllowed(
                f"{deployment.name} cannot go from {current.value} to {request.target.value}; "
                f"allowed: {', '.join(allowed)}", currentMode=current.value, allowedModes=allowed))
        owned_by_observer = current is Mode.MAINTENANCE and deployment.trigger_source == "observer"
        held = owned_by_observer and request.source != "observer" and self.observer_holds_maintenance(deployment)
        if held and not request.force:
            self._refuse(deployment, request, ObserverOwnsMaintenance(
                f"{deployment.name} is in Maintenance because observer {deployment.trigger_actor} "
                "still reads maintenance; send \"force\": true to override", observer=deployment.trigger_actor))
        return held

    def _refuse(self, deployment: Deployment, request: ModeChangeRequest, refusal: ModeChangeRefused):
        if refusal.code != request.recorded_refusal:
            self.announce_audit(audit.record(deployment, previous_mode=deployment.mode, new_mode=deployment.mode,
                                             outcome="rejected", error=f"{refusal.code}: {refusal.detail}",
                                             **request.audit_fields()))
        raise refusal

    # -- execution -------------------------------------------------------------------------

    def _in_background(self, lock: threading.Lock, transition: Transition, gateway, containers, planned) -> None:
        """A one-off job on the scheduler: run the transition, then free the deployment's lock."""
        try:
            self.execute(transition, gateway, containers, planned)
        except Exception:
            log.exception("transition %s failed unexpectedly", transition.id)
        finally:
            lock.release()
            release_thread_connection()

    def execute(self, transition: Transition, gateway: DockerGateway | None, containers: list[Unit],
                planned: list[PlannedAction]) -> None:
        """Run the planned actions (``gateway`` is None when there are none) and record the end."""
        total = len(planned)
        done = sum(1 for a in planned if a.result)
        deployment_id = transition.deployment_id
        results: list[ActionResult] = []
        storage_failure: Exception | None = None
        runner = LevelRunner(gateway, containers, self._settings.action_concurrency,
                             self._settings.default_stop_timeout, self._settings.default_start_timeout)

        def on_result(result: ActionResult) -> None:
            nonlocal done, storage_failure
            done += 1
            results.append(result)
            if storage_failure is None:
                try:
                    transition_records.record_action(transition.id, deployment_id, result)
                except STORAGE_ERRORS as error:
                    # Acting on without a record would leave containers stopped that nobody knows of.
                    storage_failure = error
                    runner.abort()
            self._bus.publish(events.TRANSITION_PROGRESS, deployment_id=deployment_id, transition_id=transition.id,
                              container=result.container_name, result=result.result, error=result.error,
                              duration_ms=result.duration_ms, done=done, total=total)

        runner.run([a for a in planned if not a.result], on_result)
        if storage_failure is None:
            try:
                self.announce(transition_records.finish(transition.id))
                return
            except STORAGE_ERRORS as error:
                storage_failure = error
        note_storage_failure()
        self._hold(HeldFailure(transition.id, deployment_id, storage_error_text(storage_failure), results, utcnow()))

    def wait_idle(self, timeout: float) -> bool:
        """Wait for background transitions and the resumption (shutdown, tests); False if some still run."""
        return self._jobs.wait_for_one_off_jobs(timeout)

    # -- announcing what was committed ------------------------------------------------------

    def announce_audit(self, entry: AuditEntry) -> None:
        audit.announce(self._bus, entry)

    def announce(self, finished: Finished) -> None:
        deployment = finished.deployment
        log.info("deployment %r (id %s) transition %s: %s -> %s %s", deployment.name, deployment.id,
                 finished.transition_id, finished.previous_mode, finished.new_mode, finished.outcome)
        self.announce_audit(finished.entry)
        self._bus.publish(events.TRANSITION_FINISHED, deployment_id=deployment.id,
                          transition_id=finished.transition_id, outcome=finished.outcome)
        self._bus.publish(events.MODE_CHANGED, deployment_id=deployment.id, previous_mode=finished.previous_mode,
                          new_mode=finished.new_mode, transition_id=finished.transition_id, outcome=finished.outcome)

    # -- storage failures ------------------------------------------------------------------

    def _hold(self, held: HeldFailure) -> None:
        with self._held_guard:
            self._held[held.deployment_id] = held
        log.error("transition %s: the database cannot be written (%s); stopped acting after %d container "
                  "action(s); the deployment is Failed until the record can be written",
                  held.transition_id, held.error, len(held.results))
        if not self._write_held(held):
            # Pages show the stack Failed from memory now (see ``shown``); the record follows later.
            self._bus.publish(events.TRANSITION_FINISHED, deployment_id=held.deployment_id,
                              transition_id=held.transition_id, outcome="failed")

    def held_failure(self, deployment_id: int) -> HeldFailure | None:
        return self._held.get(deployment_id)

    def held_failures(self) -> list[HeldFailure]:
        with self._held_guard:
            return list(self._held.values())

    def shown(self, deployment: Deployment) -> Deployment:
        """The deployment as people must see it: Failed while a failure could not be written yet."""
        held = self._held.get(deployment.id)
        if held is not None:
            deployment.mode = Mode.FAILED.value
            deployment.trigger_source, deployment.trigger_actor = "system", "system"
            deployment.trigger_reason, deployment.trigger_observed_value = held.reason, None
            deployment.mode_changed_at = held.at
        return deployment

    def refuse_while_held(self, deployment_id: int) -> None:
        held = self._held.get(deployment_id)
        if held is not None and not self._write_held(held):
            raise StorageUnavailable(
                f"the database cannot be written ({held.error}); transition {held.transition_id} stopped "
                "half-way and no new transition starts on this stack until its record is written",
                transitionId=held.transition_id)

    def write_held_failures(self) -> int:
        """Write every held failure the database now takes; returns how many are still held.
        Runs on the scheduler every few seconds and before any request on a held stack."""
        for held in self.held_failures():
            self._write_held(held)
        return len(self._held)

    def _write_held(self, held: HeldFailure) -> bool:
        with self._held_writing:
            try:
                finished = transition_records.write_held_failure(held)
            except STORAGE_ERRORS as error:
                held.error = storage_error_text(error)
                note_storage_failure()
                return False
            with self._held_guard:
                if self._held.get(held.deployment_id) is held:
                    del self._held[held.deployment_id]
        if finished is not None:
            log.info("transition %s: its failure is recorded now that the database takes writes",
                     held.transition_id)
            self.announce(finished)
        return True

    # -- crash recovery --------------------------------------------------------------------

    def resume_interrupted(self, stopping: threading.Event) -> list[int]:
        return resumption.resume_interrupted(self, stopping)
