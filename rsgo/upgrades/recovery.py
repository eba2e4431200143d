"""Upgrades a previous process left unfinished, settled at the next start (README "Upgrades"): an
upgrade is rolled back from its journal, a rollback is finished; the history says rsgo restarted.
Each waits while its engine does not answer; one whose environment is gone is left for a later start.
"""

from __future__ import annotations

import json
import logging
import threading

from rsgo import transition_records
from rsgo.db import STORAGE_ERRORS, release_thread_connection
from rsgo.docker_ops import DockerError
from rsgo.environments import EnvironmentRemoved, EnvironmentUnavailable
from rsgo.mode_change import ModeChangeRequest
from rsgo.models import Deployment, Upgrade
from rsgo.modes import Mode
from rsgo.upgrades import journal
from rsgo.upgrades.procedure import Procedure
from rsgo.upgrades.request import DEFAULT_HEALTH_TIMEOUT, DEFAULT_STABLE_FOR
from rsgo.upgrades.swarm_procedure import procedure_for

log = logging.getLogger(__name__)


def recover_unfinished(service, stopping: threading.Event) -> list[int]:
    """``service``: the UpgradeService, whose endings record and announce. Returns the ids settled."""
    recovered = []
    try:
        for upgrade in journal.unfinished():
            if stopping.is_set():
                break
            if _recover_one(service, upgrade, stopping):
                recovered.append(upgrade.id)
    except STORAGE_ERRORS as error:
        log.error("upgrades left unfinished are not settled: the database failed (%s); they are at the next start",
                  error)
    finally:
        release_thread_connection()
    return recovered


def _recover_one(service, upgrade: Upgrade, stopping: threading.Event) -> bool:
    deployment = Deployment.get_by_id(upgrade.deployment_id)
    with service.transitions.lock_for(deployment.id):
        gateway = _gateway_when_reachable(service.environments, deployment, stopping)
        if gateway is None:
            return False
        why = f"rsgo stopped during {upgrade.kind} {upgrade.id} (while {upgrade.status})"
        settle(service, upgrade, gateway, why, recovered=True)
        return True


def settle_after_error(service, upgrade_id: int, error: BaseException) -> None:
    """An upgrade (or rollback) whose own thread raised what it did not expect (a bug, a database that
    failed mid-way): settle it now, as a restart would, instead of leaving the stack in Migrating with
    half-done containers until then. The caller holds the deployment's transition lock. If settling
    fails too, the next start does it (the journal still says unfinished)."""
    upgrade = Upgrade.get_by_id(upgrade_id)
    deployment = Deployment.get_by_id(upgrade.deployment_id)
    if upgrade.finished_at is not None:
        return  # it had ended; what raised came after
    gateway = service.environments.usable(deployment.environment, known_unreachable_fails=False).gateway
    why = f"{upgrade.kind} {upgrade.id} stopped on an unexpected error while {upgrade.status}: {error!r}"
    settle(service, upgrade, gateway, why, recovered=False)


def settle(service, upgrade: Upgrade, gateway, why: str, *, recovered: bool) -> None:
    """Roll back an unfinished upgrade from its journal (or finish an unfinished rollback)."""
    deployment = Deployment.get_by_id(upgrade.deployment_id)
    settings = json.loads(upgrade.request)
    procedure = procedure_for(gateway, upgrade.id, journal.as_plan(journal.containers(upgrade.id)), units={},
                              default_stop_timeout=service.settings.default_stop_timeout,
                              health_timeout=settings.get("healthTimeout", DEFAULT_HEALTH_TIMEOUT),
                              stable_for=settings.get("stableFor", DEFAULT_STABLE_FOR))
    request = ModeChangeRequest(target=Mode.MIGRATING, source=upgrade.source, actor=upgrade.actor,
                                requested_at=upgrade.requested_at, reason=upgrade.reason, address=upgrade.address)
    log.warning("%s; settling it now", why)
    if upgrade.status == "pulling":
        # Nothing was stopped yet (the mode may already say Migrating): only the records are settled.
        if Mode(deployment.mode) is Mode.MIGRATING:
            service.transitions.announce(transition_records.record_mode_step(
                deployment.id, target=Mode.NORMAL, outcome="failed", source="system", actor="system",
                reason=f"{why}; nothing had been stopped", requested_at=upgrade.requested_at, error=why))
        service.announce_finished(deployment.id, journal.finish(
            upgrade.id, "failed", f"{why}; nothing had been stopped", recovered=recovered))
        return
    if Mode(deployment.mode) is not Mode.MIGRATING:
        service.enter_migrating(deployment, upgrade.id, f"recovery of {upgrade.kind}", request, "")
    if upgrade.kind == "rollback":
        _finish_rollback(service, deployment, upgrade, procedure, request, why, recovered)
    else:
        service.roll_back(deployment, procedure, request, why, "", recovered=recovered)


def _finish_rollback(service, deployment: Deployment, upgrade: Upgrade, procedure: Procedure,
                     request: ModeChangeRequest, why: str, recovered: bool) -> None:
    service.set_status(upgrade.id, deployment.id, "starting")
    problems = procedure.restore()
    if problems:
        service.fail(deployment, upgrade.id, request, f"{why}; finishing it failed: {'; '.join(problems)}",
                     recovered=recovered)
        return
    journal.mark_aside_removed(upgrade.rollback_of, rolled_back_by=upgrade.id)
    service.transitions.announce(transition_records.record_mode_step(
        deployment.id, target=Mode.NORMAL, outcome="succeeded", source="system", actor="system",
        reason=f"{why}; finished {'after the restart' if recovered else 'at once'}", requested_at=upgrade.requested_at))
    service.announce_finished(deployment.id, journal.finish(upgrade.id, "succeeded", recovered=recovered))


def _gateway_when_reachable(environments, deployment: Deployment, stopping: threading.Event):
    delay = 0.5
    while True:
        try:
            gateway = environments.usable(deployment.environment, known_unreachable_fails=False).gateway
            gateway.ping()  # usable() does not ask the engine: a down one is waited for here, not failed on later
            return gateway
        except (EnvironmentRemoved, EnvironmentUnavailable) as error:
            log.warning("unfinished upgrade of %r left for a later start: %s", deployment.name, error)
            return None
        except DockerError as error:
            log.warning("cannot settle an unfinished upgrade yet: %s", error)
            if stopping.wait(delay):
                return None
            delay = min(delay * 2, 10)
