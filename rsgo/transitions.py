"""The transition service: validates a mode change against the table and ownership,
persists it before the first Docker call, runs the container actions, and records
the outcome. It also resumes transitions a crash left ``running``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

from rsgo import audit
from rsgo import deployment_queries
from rsgo.db import STORAGE_ERRORS, database, storage_error_text, utcnow, write_transaction
from rsgo.docker_ops import ContainerInfo, DockerError, DockerGateway
from rsgo.events import EventBus
from rsgo.lifecycle import ActionResult, DependencyCycle, LevelRunner, PlannedAction, plan
from rsgo.models import AuditEntry, Deployment, StoppedSetEntry, Transition, TransitionAction
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


class StorageUnavailable(ModeChangeRefused):
    """The database cannot be written: nothing new may start where bookkeeping could not be kept."""

    status = 503
    code = "storage_unavailable"


@dataclass
class HeldFailure:
    """A transition whose bookkeeping could not be written. It stopped acting; until the database takes
    writes again, what it did lives here (and the deployment is shown Failed from it), then it is
    written as a failed transition and this goes away."""

    transition_id: int
    deployment_id: int
    error: str
    results: list[ActionResult]
    at: object  # when the write failed (naive UTC)

    @property
    def reason(self) -> str:
        return (f"rsgo could not record transition {self.transition_id} ({self.error}); it stopped acting "
                f"after {len(self.results)} container action(s); choose a mode once the database is writable")


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
        self._held: dict[int, HeldFailure] = {}  # deployment id -> failure not yet written
        self._held_guard = threading.Lock()
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
            self._refuse_while_held(deployment_id)
            deployment = Deployment.get_by_id(deployment_id)
            current = Mode(deployment.mode)
            awaiting = deployment_queries.running_transition(deployment_id)
            if awaiting is not None:
                # A transition a previous process left running: resumption owns this stack until it ends.
                self._refuse(deployment, target, source, actor, reason, observed_value, requested_at,
                             TransitionInProgress(
                                 f"{deployment.name} is finishing transition {awaiting.id}, interrupted by a "
                                 "restart", transitionId=awaiting.id,
                                 transitionUrl=f"/api/transitions/{awaiting.id}"))
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
                planned = plan(target, containers, deployment_queries.stopped_set_names(deployment.id))
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
                held = self._held.get(deployment_id)
                if held is not None and held.transition_id == transition.id:
                    raise StorageUnavailable(f"{deployment.name}: {held.reason}", transitionId=transition.id,
                                             transitionUrl=f"/api/transitions/{transition.id}")
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
            running = deployment_queries.running_transition(deployment_id)
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
        results: list[ActionResult] = []
        storage_failure: Exception | None = None
        runner = LevelRunner(self._gateway, containers, self._settings.action_concurrency,
                             self._settings.default_stop_timeout, self._settings.default_start_timeout)

        def on_result(result: ActionResult) -> None:
            nonlocal done, storage_failure
            done += 1
            results.append(result)
            if storage_failure is None:
                try:
                    self._record_action(transition, deployment_id, result)
                except STORAGE_ERRORS as error:
                    # Acting on without a record would leave containers stopped that nobody knows of.
                    storage_failure = error
                    runner.abort()
            self._bus.publish("transition.progress", deployment_id=deployment_id, transition_id=transition.id,
                              container=result.container_name, result=result.result, error=result.error,
                              duration_ms=result.duration_ms, done=done, total=total)

        runner.run([a for a in planned if not a.result], on_result)
        if storage_failure is None:
            try:
                self._finish(transition)
                return
            except STORAGE_ERRORS as error:
                storage_failure = error
        self._hold(transition, results, storage_failure)

    # -- storage failures ------------------------------------------------------------------

    def _hold(self, transition: Transition, results: list[ActionResult], error: Exception) -> None:
        held = HeldFailure(transition.id, transition.deployment_id, storage_error_text(error), results, utcnow())
        with self._held_guard:
            self._held[transition.deployment_id] = held
        log.error("transition %s: the database cannot be written (%s); stopped acting after %d container "
                  "action(s); the deployment is Failed until the record can be written",
                  transition.id, held.error, len(results))
        if not self._write_held(held):
            # Pages show the stack Failed from memory now (see ``shown``); the record follows later.
            self._bus.publish("transition.finished", deployment_id=transition.deployment_id,
                              transition_id=transition.id, outcome="failed")

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

    def _refuse_while_held(self, deployment_id: int) -> None:
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
        try:
            entry, deployment, previous = self._write_failed_transition(held)
        except STORAGE_ERRORS as error:
            held.error = storage_error_text(error)
            return False
        with self._held_guard:
            if self._held.get(held.deployment_id) is held:
                del self._held[held.deployment_id]
        log.info("transition %s: its failure is recorded now that the database takes writes", held.transition_id)
        self._announce_finished(entry, deployment, previous, Mode.FAILED.value, held.transition_id, "failed")
        return True

    def _write_failed_transition(self, held: HeldFailure):
        with write_transaction():
            transition = Transition.get_by_id(held.transition_id)
            for result in held.results:
                self._record_action(transition, held.deployment_id, result)
            (TransitionAction.update(result="skipped", duration_ms=0, finished_at=utcnow(),
                                     error="not attempted: rsgo stopped acting when its database failed")
             .where((TransitionAction.transition == transition.id) & TransitionAction.result.is_null())
             .execute())
            deployment = Deployment.get_by_id(held.deployment_id)
            previous = deployment.mode
            transition.status, transition.finished_at = "failed", utcnow()
            transition.error = f"storage failure: {held.error}"
            transition.save()
            deployment.mode, deployment.mode_changed_at = Mode.FAILED.value, held.at
            deployment.trigger_source, deployment.trigger_actor = "system", "system"
            deployment.trigger_reason, deployment.trigger_observed_value = held.reason, None
            deployment.save()
            entry = audit.record(deployment, previous_mode=transition.previous_mode, new_mode=Mode.FAILED.value,
                                 outcome="failed", source=transition.source, actor=transition.actor,
                                 reason=transition.reason, requested_mode=transition.target_mode,
                                 observed_value=transition.observed_value, error=transition.error,
                                 requested_at=transition.requested_at, transition=transition,
                                 address=transition.address)
        return entry, deployment, previous

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
        self._announce_finished(entry, deployment, previous, new_mode.value, transition.id, outcome)

    def _announce_finished(self, entry, deployment: Deployment, previous: str, new_mode: str, transition_id: int,
                           outcome: str) -> None:
        log.info("deployment %r (id %s) transition %s: %s -> %s %s", deployment.name, deployment.id, transition_id,
                 previous, new_mode, outcome)
        # Announced after the commit, so every listener reads the finished state.
        self._bus.publish("audit.recorded", entry_id=entry.id, deployment_id=deployment.id)
        self._bus.publish("transition.finished", deployment_id=deployment.id, transition_id=transition_id,
                          outcome=outcome)
        self._bus.publish("mode.changed", deployment_id=deployment.id, previous_mode=previous,
                          new_mode=new_mode, transition_id=transition_id, outcome=outcome)

    # -- crash recovery --------------------------------------------------------------------

    def resume_interrupted(self, stopping: threading.Event | None = None) -> list[int]:
        """Finish every transition a previous process left ``running``; returns their ids.

        Stop and start are idempotent, so actions without a recorded result are simply done again.
        Waits (retrying) while Docker is unreachable, because half-done must not stay half-done.
        A transition that later events superseded (see ``_superseded_by``) is never replayed: it is
        closed as failed, and the stack goes to Failed with what Docker shows, for a person to decide.
        """
        resumed = []
        for transition in Transition.select().where(Transition.status == "running").order_by(Transition.id):
            lock = self._lock_for(transition.deployment_id)
            with lock:
                deployment = transition.deployment
                containers = self._containers_when_reachable(deployment.name, stopping)
                if containers is None:
                    return resumed
                superseded = self._superseded_by(transition, containers)
                if superseded:
                    self._close_superseded(transition, containers, superseded)
                    continue
                transition.resumed = True
                transition.save()
                audit.record(deployment, previous_mode=transition.previous_mode, new_mode=transition.target_mode,
                             outcome="resumed", source="system", actor="system",
                             reason=f"resuming transition {transition.id} interrupted by a restart "
                                    f"(requested by {transition.actor}: {transition.reason or 'no reason'})",
                             requested_mode=transition.target_mode, transition=transition, bus=self._bus)
                planned = [PlannedAction(a.container_name, a.action, a.level, a.result) for a in transition.actions]
                log.info("resuming transition %s of %r", transition.id, deployment.name)
                self._execute(transition, containers, planned)
                resumed.append(transition.id)
        return resumed

    @staticmethod
    def _superseded_by(transition: Transition, containers: list[ContainerInfo]) -> str | None:
        """Why replaying ``transition`` would undo something that happened after it was requested, or None.

        Later requests: a newer transition of the stack, or a request for another mode recorded after it.
        Docker: a container it was to stop was started again after the request, or one it was to start
        was stopped again after the request. A plain crash mid-transition shows none of these.
        """
        newer = (Transition.select(Transition.id)
                 .where((Transition.deployment == transition.deployment_id) & (Transition.id > transition.id))
                 .first())
        if newer is not None:
            return f"transition {newer.id} was requested after it"
        later = (AuditEntry.select()
                 .where((AuditEntry.deployment == transition.deployment_id)
                        & (AuditEntry.requested_at > transition.requested_at)
                        & ((AuditEntry.transition.is_null()) | (AuditEntry.transition != transition.id))
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
            if action == "start" and not container.running and _after(container.finished_at,
                                                                       transition.requested_at):
                return f"{container.name} was stopped again after it was requested"
        return None

    def _close_superseded(self, transition: Transition, containers: list[ContainerInfo], why: str) -> None:
        """Reconcile with Docker instead of replaying: the stopped-set keeps the containers this
        transition was to stop that are stopped now (so leaving Failed starts them), and forgets
        every container that runs; the stack goes to Failed for a person to choose its mode."""
        running = {c.name for c in containers if c.running}
        present = {c.name for c in containers}
        with write_transaction():
            deployment = Deployment.get_by_id(transition.deployment_id)
            previous = deployment.mode
            for action in transition.actions:
                name = action.container_name
                if name in running or name not in present:
                    self._forget_stopped(deployment.id, name)
                elif action.action == "stop":
                    StoppedSetEntry.insert(deployment=deployment.id, container_name=name,
                                           transition=transition.id).on_conflict_ignore().execute()
            running_now = sorted(running & {a.container_name for a in transition.actions if a.action != "none"})
            transition.status, transition.finished_at = "failed", utcnow()
            transition.error = f"not resumed after a restart: {why}"
            transition.save()
            deployment.mode, deployment.mode_changed_at = Mode.FAILED.value, utcnow()
            deployment.trigger_source, deployment.trigger_actor = "system", "system"
            deployment.trigger_reason = (
                f"transition {transition.id} to {transition.target_mode} was interrupted and not resumed: {why}; "
                f"running now: {', '.join(running_now) or 'none of its containers'}; choose a mode")
            deployment.trigger_observed_value = None
            deployment.save()
            entry = audit.record(deployment, previous_mode=previous, new_mode=Mode.FAILED.value, outcome="failed",
                                 source="system", actor="system", reason=deployment.trigger_reason,
                                 requested_mode=transition.target_mode, error=transition.error,
                                 transition=transition)
        log.warning("transition %s of %r not resumed: %s", transition.id, deployment.name, why)
        self._announce_finished(entry, deployment, previous, Mode.FAILED.value, transition.id, "failed")

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


def _after(docker_time: str | None, instant) -> bool:
    """Whether Docker's ``2026-12-02T05:20:01.123456789Z`` is later than ``instant`` (naive UTC)."""
    if not docker_time or docker_time.startswith("0001-"):
        return False
    try:
        moment = dt.datetime.fromisoformat(docker_time[:26].rstrip("Z"))
    except ValueError:
        return False
    return moment > instant
