"""Upgrades and rollbacks of a stack's containers, in Migrating (README "Upgrades").

An upgrade holds the deployment's transition lock from its plan to its end, so no mode change, observer
or window acts on the stack meanwhile. Its sequence: plan and resolve every image while Normal (nothing
stops when an image is missing), Normal → Migrating, stop, keep the old containers aside, migrate,
recreate, start level by level through the health gate, → Normal. A failure puts the previous containers
back; the mode then says whether the stack may be trusted (Normal) or needs a person (Failed). A restart
during an upgrade rolls it back at the next start, from the journal (``rsgo.upgrades.journal``).
"""

from __future__ import annotations

import json
import logging
import threading
from functools import partial

from rsgo import audit, deployment_queries, events, transition_records
from rsgo.db import release_thread_connection, utcnow
from rsgo.docker_ops import DockerError, DockerUnreachable
from rsgo.environments import EnvironmentRemoved, EnvironmentUnavailable
from rsgo.lifecycle import DependencyCycle, dependency_levels
from rsgo.mode_change import (
    DependencyCycleRefused,
    DockerUnavailable,
    EnvironmentRemovedRefused,
    ModeChangeRefused,
    ModeChangeRequest,
    TransitionInProgress,
    TransitionNotAllowed,
)
from rsgo.models import Deployment, Upgrade
from rsgo.modes import Mode
from rsgo.upgrades import journal, recovery
from rsgo.upgrades.planning import UpgradePlan, describe_changes, plan_upgrade
from rsgo.upgrades.procedure import Procedure, StepFailed, inspect_all
from rsgo.upgrades.request import DEFAULT_HEALTH_TIMEOUT, DEFAULT_STABLE_FOR, UpgradeRequest
from rsgo.upgrades.swarm_procedure import procedure_for, unit_states

log = logging.getLogger(__name__)


class NothingToRollBack(ModeChangeRefused):
    code = "nothing_to_roll_back"


class UpgradeService:
    def __init__(self, environments, transitions, bus, settings, jobs):
        self.environments = environments
        self.transitions = transitions
        self._bus = bus
        self.settings = settings
        self._jobs = jobs
        self._active: dict[int, int] = {}  # deployment id -> the upgrade running in this process
        self._guard = threading.Lock()

    # -- what others ask ------------------------------------------------------------------------

    def in_progress(self, deployment_id: int) -> int | None:
        """The upgrade that owns the stack now: running here, or left unfinished by a restart."""
        with self._guard:
            running = self._active.get(deployment_id)
        if running is not None:
            return running
        unfinished = journal.unfinished_for(deployment_id)
        return unfinished.id if unfinished is not None else None

    # -- requests -------------------------------------------------------------------------------

    def upgrade(self, deployment_id: int, request: UpgradeRequest, *, source: str, actor: str,
                address: str | None = None) -> Upgrade:
        mode_request = self._mode_request(request.reason, source, actor, address)
        lock = self._acquire(deployment_id, mode_request)
        handed_over = False
        try:
            deployment, environment, units = self._prepare(deployment_id, mode_request, (Mode.NORMAL,))
            try:
                inspects = inspect_all(environment.gateway, units)
            except DockerError as error:
                self._refuse(deployment, mode_request, DockerUnavailable(f"nothing was touched: {error}"))
            plan = plan_upgrade(units, inspects, request)
            upgrade = journal.create(deployment, kind="upgrade", request=request.stored(), source=source, actor=actor,
                                     reason=request.reason, address=address, plan=plan)
            procedure = self._procedure(environment.gateway, upgrade.id, plan.containers, units, request.health_timeout,
                                        request.stable_for)
            run = (self._run_upgrade, deployment, procedure, request, plan, mode_request)
            handed_over = self._start(lock, deployment, upgrade, run, request.wait)
            return Upgrade.get_by_id(upgrade.id)
        finally:
            if not handed_over:
                lock.release()

    def rollback(self, deployment_id: int, *, reason: str, source: str, actor: str, address: str | None = None,
                 wait: bool = True) -> Upgrade:
        """The last succeeded upgrade's previous containers back in place of its new ones."""
        mode_request = self._mode_request(reason, source, actor, address)
        lock = self._acquire(deployment_id, mode_request)
        handed_over = False
        try:
            deployment, environment, units = self._prepare(deployment_id, mode_request, (Mode.NORMAL, Mode.FAILED))
            candidate = journal.last_rollback_candidate(deployment.id)
            if candidate is None:
                self._refuse(deployment, mode_request, NothingToRollBack(
                    f"{deployment.name} has no upgrade whose previous containers rsgo still keeps; an upgrade keeps "
                    "them until the next one succeeds"))
            running = {unit.name for unit in units if unit.running}
            rows = journal.as_plan(journal.containers(candidate.id))
            for row in rows:
                row.was_running = row.name in running
            plan = UpgradePlan(rows, [], None)
            stored = {**json.loads(candidate.request), "rollbackOf": candidate.id}
            upgrade = journal.create(deployment, kind="rollback", request=stored, source=source, actor=actor,
                                     reason=reason, address=address, plan=plan, rollback_of=candidate.id)
            settings = json.loads(candidate.request)
            procedure = self._procedure(environment.gateway, upgrade.id, rows, units,
                                        settings.get("healthTimeout", DEFAULT_HEALTH_TIMEOUT),
                                        settings.get("stableFor", DEFAULT_STABLE_FOR))
            run = (self._run_rollback, deployment, procedure, candidate.id, mode_request)
            handed_over = self._start(lock, deployment, upgrade, run, wait)
            return Upgrade.get_by_id(upgrade.id)
        finally:
            if not handed_over:
                lock.release()

    @staticmethod
    def _mode_request(reason: str, source: str, actor: str, address: str | None) -> ModeChangeRequest:
        return ModeChangeRequest(target=Mode.MIGRATING, source=source, actor=actor, requested_at=utcnow(),
                                 reason=reason, address=address)

    def _acquire(self, deployment_id: int, mode_request: ModeChangeRequest) -> threading.Lock:
        lock = self.transitions.lock_for(deployment_id)
        if not lock.acquire(blocking=False):
            deployment = Deployment.get_by_id(deployment_id)
            running = self.in_progress(deployment_id)
            what = f"upgrade {running}" if running else "a mode change"
            self._refuse(deployment, mode_request, TransitionInProgress(
                f"{deployment.name} is busy with {what}; try again when it has ended"))
        return lock

    def _start(self, lock, deployment: Deployment, upgrade: Upgrade, run: tuple, wait: bool) -> bool:
        """Run now (True: the lock went with it to the background)."""
        with self._guard:
            self._active[deployment.id] = upgrade.id
        if wait:
            self._execute(upgrade.id, deployment.id, run)
            return False
        self._jobs.run_once(f"upgrade-{upgrade.id}", f"{upgrade.kind} {upgrade.id} of {deployment.name}",
                            self._in_background, lock, upgrade.id, deployment.id, run)
        return True

    def _in_background(self, lock, upgrade_id: int, deployment_id: int, run: tuple) -> None:
        try:
            self._execute(upgrade_id, deployment_id, run)
        finally:
            lock.release()
            release_thread_connection()

    def _execute(self, upgrade_id: int, deployment_id: int, run: tuple) -> None:
        try:
            function, *arguments = run
            function(*arguments)
        except Exception as error:
            # Settled now, as the next start would (the journal keeps what happened): nothing stays half-done.
            log.exception("upgrade %s stopped unexpectedly; rolling it back now", upgrade_id)
            try:
                recovery.settle_after_error(self, upgrade_id, error)
            except Exception:
                log.exception("upgrade %s could not be rolled back now; it is at the next start", upgrade_id)
        finally:
            with self._guard:
                self._active.pop(deployment_id, None)

    def _prepare(self, deployment_id: int, mode_request: ModeChangeRequest, allowed: tuple[Mode, ...]):
        self.transitions.refuse_while_held(deployment_id)
        deployment = Deployment.get_by_id(deployment_id)
        current = Mode(deployment.mode)
        awaiting = deployment_queries.running_transition(deployment_id)
        unfinished = journal.unfinished_for(deployment_id)
        if awaiting is not None or unfinished is not None:
            what = f"transition {awaiting.id}" if awaiting else f"upgrade {unfinished.id}"
            self._refuse(deployment, mode_request, TransitionInProgress(
                f"{deployment.name} is finishing {what}, interrupted by a restart"))
        if current not in allowed:
            self._refuse(deployment, mode_request, TransitionNotAllowed(
                f"{deployment.name} is in {current.value}; upgrades and rollbacks start only from "
                f"{' or '.join(mode.value for mode in allowed)}", currentMode=current.value,
                allowedModes=[mode.value for mode in allowed]))
        try:
            environment = self.environments.usable(deployment.environment)
            units = environment.read_stack(deployment.name)
        except EnvironmentRemoved as removed:
            self._refuse(deployment, mode_request, EnvironmentRemovedRefused(f"nothing was touched: {removed}"))
        except DockerError as error:
            if isinstance(error, DockerUnreachable) and not isinstance(error, EnvironmentUnavailable):
                self.environments.mark_unreachable(deployment.environment, str(error))
            self._refuse(deployment, mode_request, DockerUnavailable(f"nothing was touched: {error}"))
        try:
            dependency_levels(units)
        except DependencyCycle as cycle:
            self._refuse(deployment, mode_request,
                         DependencyCycleRefused(f"nothing was touched: {cycle}", cycle=cycle.cycle))
        return deployment, environment, units

    def _procedure(self, gateway, upgrade_id, rows, units, health_timeout, stable_for) -> Procedure:
        return procedure_for(gateway, upgrade_id, rows, units={unit.name: unit for unit in units},
                             default_stop_timeout=self.settings.default_stop_timeout,
                             health_timeout=health_timeout, stable_for=stable_for)

    def _refuse(self, deployment: Deployment, request: ModeChangeRequest, refusal: ModeChangeRefused):
        self.transitions.announce_audit(audit.record(
            deployment, previous_mode=deployment.mode, new_mode=deployment.mode, outcome="rejected",
            error=f"{refusal.code}: {refusal.detail}", **request.audit_fields()))
        raise refusal

    # -- the sequences ----------------------------------------------------------------------------

    def set_status(self, upgrade_id: int, deployment_id: int, status: str) -> None:
        journal.set_status(upgrade_id, status)
        self._bus.publish(events.UPGRADE_PROGRESS, deployment_id=deployment_id, upgrade_id=upgrade_id, status=status)

    def _step(self, upgrade_id: int, deployment_id: int, step: str, work):
        journal.begin_step(upgrade_id, step)
        self._bus.publish(events.UPGRADE_PROGRESS, deployment_id=deployment_id, upgrade_id=upgrade_id, status=step)
        try:
            result = work()
        except (DockerError, StepFailed) as error:
            journal.end_step(upgrade_id, "failed", str(error))
            raise
        journal.end_step(upgrade_id, "succeeded")
        return result

    def enter_migrating(self, deployment: Deployment, upgrade_id: int, kind: str, request: ModeChangeRequest,
                         changes: str) -> None:
        what = f"{kind} {upgrade_id}" + (f": {changes}" if changes else "")
        reason = f"{request.reason} ({what})" if request.reason else what
        self.transitions.announce(transition_records.record_mode_step(
            deployment.id, target=Mode.MIGRATING, outcome="succeeded", source=request.source, actor=request.actor,
            reason=reason, requested_at=request.requested_at, address=request.address))

    def _run_upgrade(self, deployment: Deployment, procedure: Procedure, request: UpgradeRequest, plan: UpgradePlan,
                     mode_request: ModeChangeRequest) -> None:
        upgrade_id = procedure.upgrade_id
        migration = request.migration
        extra = [migration.image] if migration is not None and migration.image else []
        try:
            images = self._step(upgrade_id, deployment.id, "pull",
                                lambda: procedure.resolve_images(request.pull, extra))
        except (DockerError, StepFailed) as error:
            self.transitions.announce_audit(audit.record(
                deployment, previous_mode=deployment.mode, new_mode=deployment.mode, outcome="failed",
                error=f"upgrade {upgrade_id}: {error}; nothing was stopped", **mode_request.audit_fields()))
            self.announce_finished(deployment.id, journal.finish(upgrade_id, "failed", f"{error}; nothing was stopped"))
            return
        changes = describe_changes(procedure.rows)
        self.enter_migrating(deployment, upgrade_id, "upgrade", mode_request, changes)
        try:
            if procedure.swarm:  # Swarm's rolling update, service after service (rsgo.upgrades.swarm_procedure)
                self.set_status(upgrade_id, deployment.id, "starting")
                for row in procedure.rows:
                    self._step(upgrade_id, deployment.id, f"update {row.name}", partial(procedure.update_one, row))
            else:
                self.set_status(upgrade_id, deployment.id, "stopping")
                self._step(upgrade_id, deployment.id, "create", procedure.create)
                self._step(upgrade_id, deployment.id, "stop", procedure.stop)
                self._step(upgrade_id, deployment.id, "set aside", procedure.set_aside)
                if migration is not None:
                    self._migrate(deployment, procedure, plan, migration, images)
                self.set_status(upgrade_id, deployment.id, "starting")
                self._step(upgrade_id, deployment.id, "start", procedure.start_and_gate)
            self.set_status(upgrade_id, deployment.id, "verifying")
            self._step(upgrade_id, deployment.id, "verify", procedure.verify)
        except (DockerError, StepFailed) as error:
            self.roll_back(deployment, procedure, mode_request, str(error), changes)
            return
        self._succeeded(deployment, procedure, mode_request, f"upgrade {upgrade_id} succeeded: {changes}")

    def _migrate(self, deployment: Deployment, procedure: Procedure, plan: UpgradePlan, migration, images) -> None:
        upgrade_id = procedure.upgrade_id
        source = plan.by_name(plan.migration_source) if plan.migration_source else None
        if migration.image:
            ref = migration.image
        else:
            ref = source.new_ref
        journal.migration_started(upgrade_id)
        self._bus.publish(events.UPGRADE_PROGRESS, deployment_id=deployment.id, upgrade_id=upgrade_id,
                          status="migrating")

        def run() -> None:
            outcome = procedure.migrate(migration, source, ref, images[ref], deployment.name)
            journal.migration_ended(upgrade_id, outcome.exit_code, outcome.timed_out, outcome.log_tail)
            if outcome.timed_out:
                raise StepFailed(f"the migration did not end within {migration.timeout:g}s and was killed")
            if outcome.exit_code != 0:
                raise StepFailed(f"the migration exited with code {outcome.exit_code}")

        self._step(upgrade_id, deployment.id, "migrate", run)

    def _run_rollback(self, deployment: Deployment, procedure: Procedure, candidate_id: int,
                      mode_request: ModeChangeRequest) -> None:
        upgrade_id = procedure.upgrade_id
        changes = describe_changes(procedure.rows, backwards=True)
        self.enter_migrating(deployment, upgrade_id, f"rollback of upgrade {candidate_id}", mode_request, changes)
        try:
            if not procedure.swarm:  # Swarm replaces a service's tasks itself
                self._step(upgrade_id, deployment.id, "stop", procedure.stop)
            self.set_status(upgrade_id, deployment.id, "starting")

            def restore() -> None:
                problems = procedure.restore()
                if problems:
                    raise StepFailed("; ".join(problems))

            self._step(upgrade_id, deployment.id, "restore", restore)
        except (DockerError, StepFailed) as error:
            self.fail(deployment, upgrade_id, mode_request, f"rollback {upgrade_id} failed: {error}")
            return
        journal.mark_aside_removed(candidate_id, rolled_back_by=upgrade_id)
        self._succeeded(deployment, procedure, mode_request,
                        f"rollback {upgrade_id} of upgrade {candidate_id} succeeded: {changes}", remove_old=False)

    # -- endings ------------------------------------------------------------------------------------

    def _succeeded(self, deployment: Deployment, procedure: Procedure, mode_request: ModeChangeRequest, reason: str,
                   remove_old: bool = True) -> None:
        upgrade_id = procedure.upgrade_id
        if remove_old:
            # The previous upgrade's kept containers go now: only the newest set is kept for a rollback.
            for older in journal.previous_sets_to_remove(deployment.id, keep=upgrade_id):
                problems = procedure.remove_aside(journal.as_plan(journal.containers(older.id)), older.id)
                if problems:
                    log.warning("upgrade %s: could not remove what upgrade %s kept: %s", upgrade_id, older.id,
                                "; ".join(problems))
                else:
                    journal.mark_aside_removed(older.id)
        self.transitions.announce(transition_records.record_mode_step(
            deployment.id, target=Mode.NORMAL, outcome="succeeded", source=mode_request.source,
            actor=mode_request.actor, reason=reason, requested_at=mode_request.requested_at,
            address=mode_request.address))
        self.announce_finished(deployment.id, journal.finish(upgrade_id, "succeeded"))

    def roll_back(self, deployment: Deployment, procedure: Procedure, mode_request: ModeChangeRequest, why: str,
                   changes: str, *, recovered: bool = False) -> None:
        upgrade_id = procedure.upgrade_id
        self.set_status(upgrade_id, deployment.id, "rolling-back")
        journal.begin_step(upgrade_id, "roll back")
        problems = procedure.restore()
        journal.end_step(upgrade_id, "failed" if problems else "succeeded", "; ".join(problems) or None)
        migrated = Upgrade.get_by_id(upgrade_id).migration_started
        if problems:
            self.fail(deployment, upgrade_id, mode_request,
                      f"upgrade {upgrade_id} failed ({why}); the rollback failed: {'; '.join(problems)}",
                      recovered=recovered)
            return
        if migrated:
            self.fail(deployment, upgrade_id, mode_request,
                      f"upgrade {upgrade_id} failed ({why}); previous containers restored; the migration had "
                      "started, so the schema may already be migrated: check it before choosing a mode",
                      recovered=recovered)
            return
        self.transitions.announce(transition_records.record_mode_step(
            deployment.id, target=Mode.NORMAL, outcome="failed", source="system", actor="system",
            reason=f"upgrade {upgrade_id} failed and was rolled back ({changes}): {why}",
            requested_at=mode_request.requested_at, error=why))
        self.announce_finished(deployment.id, journal.finish(upgrade_id, "rolled-back", why, recovered=recovered))

    def fail(self, deployment: Deployment, upgrade_id: int, mode_request: ModeChangeRequest, reason: str, *,
                recovered: bool = False) -> None:
        try:
            gateway = self.environments.usable(deployment.environment, known_unreachable_fails=False).gateway
            states = unit_states(gateway, journal.as_plan(journal.containers(upgrade_id)))
        except (EnvironmentRemoved, DockerError):
            states = "unknown (Docker did not answer)"
        self.transitions.announce(transition_records.record_mode_step(
            deployment.id, target=Mode.FAILED, outcome="failed", source="system", actor="system",
            reason=f"{reason}; containers: {states}", requested_at=mode_request.requested_at, error=reason))
        self.announce_finished(deployment.id, journal.finish(upgrade_id, "failed", reason, recovered=recovered))

    def announce_finished(self, deployment_id: int, upgrade: Upgrade) -> None:
        log.info("%s %s of deployment %s: %s", upgrade.kind, upgrade.id, deployment_id, upgrade.status)
        self._bus.publish(events.UPGRADE_FINISHED, deployment_id=deployment_id, upgrade_id=upgrade.id,
                          outcome=upgrade.status)

    def recover(self, stopping: threading.Event) -> list[int]:
        """Roll back (or, for a rollback, finish) every upgrade a previous process left unfinished."""
        return recovery.recover_unfinished(self, stopping)

    def preview(self, deployment_id: int, request: UpgradeRequest) -> UpgradePlan:
        """The plan ``upgrade`` would follow now: the stack read and planned, nothing changed or recorded."""
        deployment = Deployment.get_by_id(deployment_id)
        try:
            environment = self.environments.usable(deployment.environment)
            units = environment.read_stack(deployment.name)
            return plan_upgrade(units, inspect_all(environment.gateway, units), request)
        except EnvironmentRemoved as removed:
            raise EnvironmentRemovedRefused(f"nothing was touched: {removed}") from None
        except DockerError as error:
            raise DockerUnavailable(f"nothing was touched: {error}") from None
        except DependencyCycle as cycle:
            raise DependencyCycleRefused(f"nothing was touched: {cycle}", cycle=cycle.cycle) from None
