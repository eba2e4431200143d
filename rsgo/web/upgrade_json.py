"""The one shape of an upgrade (or rollback) in API answers and pushes (README "Upgrades")."""

from __future__ import annotations

import json

from flask import url_for

from rsgo.db import timestamp
from rsgo.models import Upgrade
from rsgo.upgrades import journal


def _image(ref: str | None, image_id: str | None) -> dict:
    return {"ref": ref or None, "id": image_id or None}


def upgrade_json(upgrade: Upgrade) -> dict:
    request = json.loads(upgrade.request or "{}")
    rollback = upgrade.kind == "rollback"
    containers = []
    for row in journal.containers(upgrade.id):
        before, after = _image(row.old_ref, row.old_image_id), _image(row.new_ref, row.new_image_id)
        if rollback:  # a rollback goes from the upgrade's new images back to its old ones
            before, after = after, before
        containers.append({
            "name": row.name, "role": row.role, "level": row.level, "wasRunning": row.was_running,
            "from": before if row.role != "stop" else None, "to": after if row.role != "stop" else None,
            "step": row.step, "error": row.error, "keptAsideAs": row.aside_name,
        })
    migration = request.get("migration")
    if migration is not None:
        migration = {**migration, "started": upgrade.migration_started, "exitCode": upgrade.migration_exit_code,
                     "timedOut": upgrade.migration_timed_out, "log": json.loads(upgrade.migration_log or "[]")}
    return {
        "id": upgrade.id,
        "url": url_for("api_upgrades.show_upgrade", upgrade_id=upgrade.id),
        "kind": upgrade.kind,
        "deploymentId": upgrade.deployment_id,
        "status": upgrade.status,
        "finished": upgrade.status in journal.TERMINAL,
        "rollbackOf" if rollback else "rolledBackBy": upgrade.rollback_of,
        "previousContainersKept": upgrade.kind == "upgrade" and upgrade.status == "succeeded"
        and not upgrade.aside_removed,
        "source": upgrade.source,
        "actor": upgrade.actor,
        "reason": upgrade.reason,
        "requestedAt": timestamp(upgrade.requested_at),
        "finishedAt": timestamp(upgrade.finished_at),
        "error": upgrade.error,
        "recoveredAfterRestart": upgrade.recovered,
        "pull": request.get("pull"),
        "healthTimeout": request.get("healthTimeout"),
        "stableFor": request.get("stableFor"),
        "containers": containers,
        "migration": migration,
        "steps": json.loads(upgrade.steps or "[]"),
    }
