"""Forgetting a stack whose containers are all gone, and its return (README "The dashboard",
Stacks without containers).

A forgotten deployment keeps its row, so its audit entries (and every link to them) stay; it is
only hidden from the dashboard, the list and the environments' counts, and nothing of rsgo acts on it
any more: its stopped-set, its ad hoc and API windows, a schedule's suppression, an overdue reminder
and an observer's status are removed with it. A stack the config file declares cannot be forgotten
(its observer or windows would go on acting on a hidden row): remove it there first. When its
containers (or the config file) name it again, discovery brings the same row back, in Normal, with a
"rediscovered" entry: its history reads on from where it stopped.
"""

from __future__ import annotations

from rsgo import audit, events
from rsgo.db import utcnow, write_transaction
from rsgo.docker_ops import DockerError
from rsgo.environments import EnvironmentRemoved
from rsgo.mode_change import DockerUnavailable, ModeChangeRefused, StorageUnavailable, TransitionInProgress
from rsgo.models import (
    AuditEntry,
    Deployment,
    MaintenanceReminder,
    MaintenanceWindow,
    ObserverStatus,
    ScheduleSuppression,
    StoppedSetEntry,
    Transition,
)
from rsgo.modes import Mode

SHOWN_CONTAINERS = 10  # a refusal names this many of the containers that are still there


class ForgetRefused(ModeChangeRefused):
    """The stack was not forgotten; ``code`` says why (a 409 problem)."""


class DeploymentHasContainers(ForgetRefused):
    code = "deployment_has_containers"


class DeclaredInConfig(ForgetRefused):
    code = "declared_in_config"


def forget(runtime, deployment_id: int, *, source: str, actor: str, reason: str = "",
           address: str | None = None) -> AuditEntry:
    """Forget the deployment, or raise a ``ModeChangeRefused`` saying why not. Holds the stack's
    transition lock throughout, so no mode change can start between the checks and the forgetting."""
    transitions = runtime.transitions
    with transitions.holding(deployment_id) as free:
        deployment = Deployment.get_by_id(deployment_id)
        name = deployment.name
        if not free:
            raise TransitionInProgress(f"{name} is changing mode; it can be forgotten once that has ended")
        upgrading = transitions.upgrade_in_progress(deployment_id)
        if upgrading is not None:
            raise TransitionInProgress(f"{name} is being upgraded (upgrade {upgrading}); it can be forgotten "
                                       "once that has ended", upgradeId=upgrading)
        running = Transition.get_or_none((Transition.deployment == deployment_id) & (Transition.status == "running"))
        if running is not None:
            raise TransitionInProgress(f"{name} has transition {running.id} unfinished; it can be forgotten once "
                                       "that has ended", transitionId=running.id)
        held = transitions.held_failure(deployment_id)
        if held is not None:
            raise StorageUnavailable(f"{name} has a failed transition ({held.transition_id}) whose record is not "
                                     "written yet; it can be forgotten once the database takes it")
        config = runtime.config
        if config is not None and config.stack(deployment.environment, name) is not None:
            raise DeclaredInConfig(f"{name} is declared in the config file ({config.path}); remove it there and "
                                   "reload, then forget it", configPath=config.path)
        units = _units(runtime, deployment)
        if units:
            shown = sorted(unit.name for unit in units)
            raise DeploymentHasContainers(
                f"{name} still has {len(units)} container{'' if len(units) == 1 else 's'} "
                f"({', '.join(shown[:SHOWN_CONTAINERS])}{', …' if len(shown) > SHOWN_CONTAINERS else ''}); "
                "only a stack whose containers are all removed can be forgotten",
                containers=len(units), containerNames=shown[:SHOWN_CONTAINERS])
        with write_transaction():
            entry = audit.record(deployment, previous_mode=deployment.mode, new_mode=deployment.mode,
                                 outcome="forgotten", source=source, actor=actor, reason=reason, address=address)
            _drop_what_acts_on(deployment_id)
            Deployment.update(forgotten_at=utcnow()).where(Deployment.id == deployment_id).execute()
    audit.announce(runtime.bus, entry)
    runtime.bus.publish(events.DEPLOYMENT_FORGOTTEN, deployment_id=deployment_id)
    return entry


def _units(runtime, deployment: Deployment) -> list:
    """The stack's containers (and services) as Docker says now: not the view, which may lag behind
    a container created a moment ago."""
    try:
        environment = runtime.environments.usable(deployment.environment)
    except EnvironmentRemoved:
        return []  # nothing to ask: rsgo no longer acts on that environment's stacks anyway
    except DockerError as error:
        raise DockerUnavailable(f"{deployment.name} was not forgotten: {error}") from None
    try:
        return environment.read_stack(deployment.name)
    except DockerError as error:
        raise DockerUnavailable(f"{deployment.name} was not forgotten: cannot tell whether it still has "
                                f"containers ({error})") from None


def _drop_what_acts_on(deployment_id: int) -> None:
    for model in (StoppedSetEntry, ScheduleSuppression, MaintenanceReminder, ObserverStatus):
        model.delete().where(model.deployment == deployment_id).execute()
    MaintenanceWindow.delete().where((MaintenanceWindow.deployment == deployment_id)
                                     & (MaintenanceWindow.origin != "config")).execute()


REDISCOVERED_REASON = "seen again after it was forgotten; it starts afresh in Normal"


def revive(deployment: Deployment) -> AuditEntry | None:
    """Bring a forgotten deployment back (its containers or the config file name it again): Normal,
    nothing stopped, discovered now. None if another thread brought it back first."""
    now = utcnow()
    with write_transaction():
        brought_back = Deployment.update(
            forgotten_at=None, mode=Mode.NORMAL.value, trigger_source="system", trigger_actor="system",
            trigger_reason=REDISCOVERED_REASON, trigger_observed_value=None, mode_changed_at=now, discovered_at=now,
        ).where((Deployment.id == deployment.id) & Deployment.forgotten_at.is_null(False)).execute()
        if not brought_back:
            return None
        StoppedSetEntry.delete().where(StoppedSetEntry.deployment == deployment.id).execute()
        return audit.record(deployment, previous_mode=deployment.mode, new_mode=Mode.NORMAL.value,
                            outcome="rediscovered", source="system", actor="system", reason=REDISCOVERED_REASON)
