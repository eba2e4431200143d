"""The database side of an upgrade: the rows written before the first Docker call, each step and each
container's progress, the end. Nothing here talks to Docker or to the bus."""

from __future__ import annotations

import datetime as dt
import json

from rsgo.db import timestamp, utcnow, write_transaction
from rsgo.models import Deployment, Upgrade, UpgradeContainer
from rsgo.upgrades.planning import PlannedContainer, UpgradePlan

TERMINAL = ("succeeded", "rolled-back", "failed")
MIGRATION_LOG_LINES = 100


def create(deployment: Deployment, *, kind: str, request: dict, source: str, actor: str, reason: str,
           address: str | None, plan: UpgradePlan, rollback_of: int | None = None) -> Upgrade:
    with write_transaction():
        upgrade = Upgrade.create(deployment=deployment, kind=kind, request=json.dumps(request, sort_keys=True),
                                 source=source, actor=actor, reason=reason, address=address,
                                 rollback_of=rollback_of, status="pulling" if kind == "upgrade" else "stopping")
        for planned in plan.containers:
            UpgradeContainer.create(
                upgrade=upgrade, name=planned.name, role=planned.role, level=planned.level,
                was_running=planned.was_running, old_id=planned.old_id, old_ref=planned.old_ref,
                old_image_id=planned.old_image_id, new_ref=planned.new_ref,
                restart_policy=json.dumps(planned.restart_policy), inspect=json.dumps(planned.inspect))
    return upgrade


def containers(upgrade_id: int) -> list[UpgradeContainer]:
    return list(UpgradeContainer.select().where(UpgradeContainer.upgrade == upgrade_id)
                .order_by(UpgradeContainer.level, UpgradeContainer.name))


def as_plan(rows: list[UpgradeContainer]) -> list[PlannedContainer]:
    return [PlannedContainer(name=row.name, role=row.role, level=row.level, was_running=row.was_running,
                             old_id=row.old_id, old_ref=row.old_ref, old_image_id=row.old_image_id,
                             new_ref=row.new_ref, restart_policy=json.loads(row.restart_policy or "{}"),
                             inspect=json.loads(row.inspect or "{}")) for row in rows]


def set_status(upgrade_id: int, status: str) -> None:
    with write_transaction():
        Upgrade.update(status=status).where(Upgrade.id == upgrade_id).execute()


def begin_step(upgrade_id: int, step: str) -> None:
    with write_transaction():
        upgrade = Upgrade.get_by_id(upgrade_id)
        steps = json.loads(upgrade.steps)
        steps.append({"step": step, "result": "running", "startedAt": timestamp(utcnow()), "finishedAt": None,
                      "durationMs": None, "error": None})
        upgrade.steps = json.dumps(steps)
        upgrade.save()


def end_step(upgrade_id: int, result: str, error: str | None = None) -> None:
    """Ends the step begun last (``result``: succeeded, failed, skipped)."""
    with write_transaction():
        upgrade = Upgrade.get_by_id(upgrade_id)
        steps = json.loads(upgrade.steps)
        if steps and steps[-1]["result"] == "running":
            now = utcnow()
            began = steps[-1]["startedAt"]
            steps[-1].update(result=result, error=error, finishedAt=timestamp(now))
            if began:
                started = dt.datetime.fromisoformat(began.replace("Z", "+00:00")).replace(tzinfo=None)
                steps[-1]["durationMs"] = int((now - started).total_seconds() * 1000)
            upgrade.steps = json.dumps(steps)
            upgrade.save()


def container_step(upgrade_id: int, name: str, step: str, error: str | None = None, **fields) -> None:
    """A container's progress: written before the Docker call it announces (``created`` after, with its id)."""
    with write_transaction():
        (UpgradeContainer.update(step=step, error=error, **fields)
         .where((UpgradeContainer.upgrade == upgrade_id) & (UpgradeContainer.name == name)).execute())


def note_new_image(upgrade_id: int, name: str, new_ref: str, image_id: str) -> None:
    with write_transaction():
        (UpgradeContainer.update(new_ref=new_ref, new_image_id=image_id)
         .where((UpgradeContainer.upgrade == upgrade_id) & (UpgradeContainer.name == name)).execute())


def migration_started(upgrade_id: int) -> None:
    """Written before the migration's container starts: from here on the schema may have changed."""
    with write_transaction():
        Upgrade.update(migration_started=True, status="migrating").where(Upgrade.id == upgrade_id).execute()


def migration_ended(upgrade_id: int, exit_code: int | None, timed_out: bool, log_tail: list[str]) -> None:
    with write_transaction():
        (Upgrade.update(migration_exit_code=exit_code, migration_timed_out=timed_out,
                        migration_log=json.dumps(log_tail[-MIGRATION_LOG_LINES:]))
         .where(Upgrade.id == upgrade_id).execute())


def finish(upgrade_id: int, status: str, error: str | None = None, *, recovered: bool = False) -> Upgrade:
    with write_transaction():
        upgrade = Upgrade.get_by_id(upgrade_id)
        upgrade.status, upgrade.error, upgrade.finished_at = status, error, utcnow()
        upgrade.recovered = upgrade.recovered or recovered
        upgrade.save()
    return upgrade


def previous_sets_to_remove(deployment_id: int, keep: int) -> list[Upgrade]:
    """Succeeded upgrades of the deployment, other than ``keep``, whose kept-aside containers still exist."""
    return list(Upgrade.select().where((Upgrade.deployment == deployment_id) & (Upgrade.kind == "upgrade")
                                       & (Upgrade.status == "succeeded") & (Upgrade.aside_removed == False)  # noqa: E712
                                       & (Upgrade.id != keep)))


def mark_aside_removed(upgrade_id: int, rolled_back_by: int | None = None) -> None:
    with write_transaction():
        fields = {"aside_removed": True}
        if rolled_back_by is not None:
            fields["rollback_of"] = rolled_back_by
        Upgrade.update(**fields).where(Upgrade.id == upgrade_id).execute()


def last_rollback_candidate(deployment_id: int) -> Upgrade | None:
    """The newest succeeded upgrade whose previous containers are still kept aside."""
    return (Upgrade.select().where((Upgrade.deployment == deployment_id) & (Upgrade.kind == "upgrade")
                                   & (Upgrade.status == "succeeded") & (Upgrade.aside_removed == False))  # noqa: E712
            .order_by(Upgrade.id.desc()).first())


def unfinished() -> list[Upgrade]:
    return list(Upgrade.select().where(Upgrade.status.not_in(TERMINAL)).order_by(Upgrade.id))


def unfinished_for(deployment_id: int) -> Upgrade | None:
    return (Upgrade.select().where((Upgrade.deployment == deployment_id) & Upgrade.status.not_in(TERMINAL))
            .order_by(Upgrade.id.desc()).first())


def of_deployment(deployment_id: int, limit: int = 50) -> list[Upgrade]:
    return list(Upgrade.select().where(Upgrade.deployment == deployment_id).order_by(Upgrade.id.desc()).limit(limit))
