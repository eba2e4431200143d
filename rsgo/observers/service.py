"""Running observers: check a source, decide, act with ownership, keep status
(docs/design.md#observers and #modes-and-ownership).

Each deployment's observer is one job of the service's own timer (``rsgo.observers.timer``). A
check's result is kept in memory (``rsgo.observers.status_store``) and every change of it is written
to ``ObserverStatus``, so a restart or a config reload keeps the failure count, the confirmation
streak and a suppression, while a check that reads what the last one read touches no database.
Acting goes through the transition service like every other caller, with trigger ``observer``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from rsgo import deployment_queries, events
from rsgo.db import release_if_stale, utcnow
from rsgo.events import EventBus
from rsgo.mode_change import ModeChangeRefused
from rsgo.models import Deployment
from rsgo.modes import Mode
from rsgo.observers import ObserverError
from rsgo.observers.decision import MAINTENANCE, NORMAL, UnexpectedValue, decide
from rsgo.observers.mode_memory import DeploymentModes
from rsgo.observers.status_store import StatusRecord, StatusStore
from rsgo.observers.timer import CheckTimer
from rsgo.stack_config import Config, ObserverConfig
from rsgo.transitions import TransitionService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObserverState:
    """An observer's configuration and its last result (the API and the pages build their shapes
    from it: ``rsgo.web.api_json.observer_json``)."""

    config: ObserverConfig
    row: StatusRecord | None  # the ObserverStatus row as last written
    state: str  # ok, error, suppressed, disabled, pending
    error: str | None
    last_check_at: object  # datetime or None
    next_check_at: object

    @property
    def failing(self) -> bool:
        return bool(self.row and self.row.failing)

    @property
    def problem(self) -> str | None:
        """Why a person should look at this observer (failing or disabled), or None."""
        if self.state == "disabled":
            return f"observer {self.config.name} is disabled: {self.error}"
        if self.failing:
            return f"observer {self.config.name} is failing: {self.error}"
        return None


def _job_id(deployment_id: int) -> str:
    return f"observer-{deployment_id}"


class ObserverService:
    def __init__(self, transitions: TransitionService, bus: EventBus, threads: int):
        self._transitions = transitions
        self._bus = bus
        self._timer = CheckTimer(threads)  # runs checks once started (``start``)
        self._configs: dict[int, ObserverConfig] = {}  # deployment id → its observer
        self._names: dict[int, str] = {}
        self._check_locks: dict[int, threading.Lock] = {}
        self._last_check_at: dict = {}  # newer than the database's when readings did not change
        self._guard = threading.Lock()
        self._store = StatusStore()
        self._modes = DeploymentModes(bus)

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin checking (the runtime calls it after the scheduler started: one per process)."""
        self._timer.start()

    def pause(self) -> None:
        """Start no more checks (those under way go on): the first step of shutting down."""
        self._timer.pause()

    def stop(self) -> None:
        self._timer.shutdown()
        self._modes.close()

    # -- configuration ---------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        """Take the observers of a (re)loaded config; unchanged ones keep their status."""
        wanted: dict[int, ObserverConfig] = {}
        names: dict[int, str] = {}  # deployment id -> the deployment's name (the config's key may differ)
        for environment in {stack.environment for stack in config.stacks.values()}:
            deployment_queries.ensure_deployments(
                environment, {stack.name for stack in config.stacks.values() if stack.environment == environment})
        for stack in config.stacks.values():
            if stack.observer is None:
                continue
            deployment = Deployment.get((Deployment.environment == stack.environment)
                                        & (Deployment.name == stack.name))
            wanted[deployment.id] = stack.observer
            names[deployment.id] = deployment.name
        with self._guard:
            previous = self._configs
            removed = set(self._configs) - set(wanted)
            self._configs = wanted
            self._names = names
        self._modes.forget_all()  # a reload is rare: read every mode afresh
        for deployment_id in removed:
            old = self._store.drop(deployment_id)
            self._timer.remove(_job_id(deployment_id))
            self._cleared_by_reload(old, previous[deployment_id], "removed")
            self._bus.publish(events.OBSERVER_CHECKED, deployment_id=deployment_id)  # its panel goes
        self._store.load(wanted)
        for deployment_id, observer in wanted.items():
            status = self._store.get(deployment_id)
            unchanged = status.fingerprint == observer.fingerprint
            if not unchanged:
                # A changed observer is a different observer: its old readings say nothing now.
                self._store.reset(deployment_id, observer.fingerprint)
                if deployment_id in previous:
                    self._cleared_by_reload(status, previous[deployment_id], "changed")
            if not (unchanged and self._timer.next_run(_job_id(deployment_id))):
                if observer.disabled:
                    self._timer.remove(_job_id(deployment_id))
                else:
                    self._timer.every(_job_id(deployment_id), observer.interval, self.run_scheduled_check,
                                          deployment_id)
            self._bus.publish(events.OBSERVER_CHECKED, deployment_id=deployment_id)

    def _cleared_by_reload(self, old: StatusRecord | None, config: ObserverConfig, cause: str) -> None:
        """A reload that removed or changed a failing observer ends its failure, announced like a source
        that reads again (``observer.recovered``): whoever was told it failed is told it no longer does.
        If the changed one fails too, it is announced failing again at its threshold."""
        if old is None or not old.failing:
            return
        log.info("observer %s of %s is no longer failing: the config reload %s it", config.name, config.stack, cause)
        self._bus.publish(events.OBSERVER_RECOVERED, deployment_id=old.deployment_id, observer=config.name,
                          cause=cause)

    def observer_for(self, deployment_id: int) -> ObserverConfig | None:
        with self._guard:
            return self._configs.get(deployment_id)

    # -- ownership hooks for the transition service -----------------------------------------

    def holds_maintenance(self, deployment: Deployment) -> bool:
        """Does the observer that put this deployment into Maintenance still read "maintenance"?"""
        if self.observer_for(deployment.id) is None:
            return False  # removed from the config: nobody holds it any more
        status = self._store.get(deployment.id)
        return status is None or status.last_decision != NORMAL

    def suppress(self, deployment: Deployment) -> None:
        """A person forced the deployment out of the observer's Maintenance: the observer
        must not put it straight back, until its source has read normal once."""
        self._store.change(deployment.id, lambda status: None if status.suppressed else {"suppressed": True})
        self._bus.publish(events.OBSERVER_CHECKED, deployment_id=deployment.id)

    # -- checking --------------------------------------------------------------------------

    def run_scheduled_check(self, deployment_id: int) -> None:
        # The scheduler's threads live as long as the process: each keeps its database connection
        # (closing it after every check made the next one reconnect and redo the PRAGMAs).
        release_if_stale()
        try:
            self._check_once(deployment_id)
        except Exception:
            log.exception("observer check of deployment %s failed unexpectedly", deployment_id)

    def check(self, deployment_id: int) -> ObserverState | None:
        """Read the source once, decide, act; returns the new status (None: no observer)."""
        if self.observer_for(deployment_id) is None:
            return None
        self._check_once(deployment_id)
        return self.status(deployment_id)

    def _check_once(self, deployment_id: int) -> None:
        observer = self.observer_for(deployment_id)
        if observer is None or observer.disabled:
            return
        with self._check_lock(deployment_id):
            value, decision, error = None, None, None
            try:
                value = observer.observer.check().value
                decision = decide(value, observer.maintenance_value, observer.normal_value)
            except (ObserverError, UnexpectedValue) as failure:
                error = str(failure)
            changed, after = self._record(observer, deployment_id, value, decision, error)
            if decision is not None and after is not None:
                self._act(deployment_id, observer, value, decision, after)
            self._bus.publish(events.OBSERVER_CHECK_FINISHED, deployment_id=deployment_id,
                              stack=self._names.get(deployment_id, observer.stack), ok=error is None)  # metrics
            if changed:
                self._bus.publish(events.OBSERVER_CHECKED, deployment_id=deployment_id)

    def _check_lock(self, deployment_id: int) -> threading.Lock:
        with self._guard:
            return self._check_locks.setdefault(deployment_id, threading.Lock())

    def _record(self, observer: ObserverConfig, deployment_id: int, value, decision,
                error) -> tuple[bool, StatusRecord | None]:
        """Keep the result. Returns whether anything but the check time changed, and the status now
        (None: the observer went away meanwhile).

        A source that keeps reading the same is the common case: then only the in-memory check time
        moves, and nothing is read or written (hundreds of observers at 1 s must not queue up on the
        database).
        """
        now = utcnow()
        self._last_check_at[deployment_id] = now

        def compute(status: StatusRecord) -> dict | None:
            if error is not None:
                failures = status.failures + 1
                after = {"last_error": error, "failures": failures, "failing": failures >= observer.failure_threshold}
            else:
                # The streak only needs to reach the number of confirmations; counting further changes nothing.
                streak = (min(status.streak_count + 1, observer.confirmations) if status.streak_decision == decision
                          else 1)
                after = {"last_value": value, "last_decision": decision, "last_error": None, "failures": 0,
                         "failing": False, "streak_decision": decision, "streak_count": streak,
                         # Reading normal once ends a suppression: the next "maintenance" is a new one.
                         "suppressed": status.suppressed and decision != NORMAL}
            if status.last_check_at is not None and all(getattr(status, key) == new for key, new in after.items()):
                return None
            return {**after, "last_check_at": now}

        stored = self._store.change(deployment_id, compute)
        if error is not None:
            failures = stored[1].failures if stored else "?"
            log.warning("observer %s of %s failed (%s in a row): %s", observer.name, observer.stack, failures, error)
        if stored is None:
            return False, self._store.get(deployment_id)
        status, after = stored
        # Announced once stored, so listeners (webhooks) read the new status.
        if after.failing and not status.failing:
            self._bus.publish(events.OBSERVER_FAILING, deployment_id=deployment_id, observer=observer.name,
                              failures=after.failures, error=error)
        elif status.failing and not after.failing:
            self._bus.publish(events.OBSERVER_RECOVERED, deployment_id=deployment_id, observer=observer.name,
                              cause="read")
            log.info("observer %s of %s recovered: it read %r", observer.name, observer.stack, value)
        return True, after

    def _act(self, deployment_id: int, observer: ObserverConfig, value, decision: str, status: StatusRecord) -> None:
        if status.streak_count < observer.confirmations or status.suppressed:
            return
        # The mode as last read (``rsgo.observers.mode_memory``): most checks find nothing to do, and
        # must not read the deployment to find that out.
        known = self._modes.get(deployment_id)
        if known is None:
            return
        mode, trigger_source = Mode(known[0]), known[1]
        if decision == MAINTENANCE and mode is Mode.NORMAL:
            target, reason = Mode.MAINTENANCE, f"{observer.name} read {value!r}: maintenance"
        elif decision == NORMAL and mode is Mode.MAINTENANCE and trigger_source == "observer":
            # Level-triggered, but only ever ending the observer's own Maintenance.
            target, reason = Mode.NORMAL, f"{observer.name} read {value!r}: normal"
        else:
            return  # in any other mode the observer only reports
        try:
            self._transitions.change_mode(deployment_id, target.value, source="observer", actor=observer.name,
                                          reason=reason, observed_value=value)
        except ModeChangeRefused as refusal:
            log.info("observer %s of %s could not act: %s", observer.name, observer.stack, refusal)

    # -- status ----------------------------------------------------------------------------

    def status(self, deployment_id: int) -> ObserverState | None:
        """What the observer of a deployment is and last saw (None: it has none)."""
        observer = self.observer_for(deployment_id)
        if observer is None:
            return None
        row = self._store.get(deployment_id)
        next_run = self._timer.next_run(_job_id(deployment_id))
        if observer.disabled:
            state = "disabled"
        elif row is None or row.last_check_at is None:
            state = "pending"
        elif row.suppressed:
            state = "suppressed"
        elif row.failures:
            state = "error"
        else:
            state = "ok"
        return ObserverState(
            config=observer, row=row, state=state,
            error=observer.error if observer.disabled else (row.last_error if row else None),
            last_check_at=self._last_check_at.get(deployment_id) or (row.last_check_at if row else None),
            next_check_at=next_run)
