"""The JSON shapes of the API (camelCase), built from models and the inventory view."""

from __future__ import annotations


from rsgo import deployment_queries
from rsgo.db import timestamp
from rsgo.health import assess
from rsgo.discovery import Inventory
from rsgo.models import AuditEntry, Deployment, Transition, TransitionAction
from rsgo.modes import Mode, allowed_targets


def deployment_summary(deployment: Deployment, inventory: Inventory, stopped_set: set[str],
                       running_transition: Transition | None) -> dict:
    containers = inventory.containers_of(deployment.name) if deployment.environment == inventory.environment else []
    health = assess(Mode(deployment.mode), containers, stopped_set, inventory.reachable is not False)
    return {
        "id": deployment.id,
        "name": deployment.name,
        "environment": deployment.environment,
        "operationMode": deployment.mode,
        "health": health.status,
        "needsAttention": health.needs_attention,
        "problems": list(health.problems),
        "containers": {"running": sum(1 for c in containers if c.running), "total": len(containers)},
        "trigger": {
            "source": deployment.trigger_source,
            "actor": deployment.trigger_actor,
            "reason": deployment.trigger_reason,
            "observedValue": deployment.trigger_observed_value,
            "at": timestamp(deployment.mode_changed_at),
        },
        "modeChangedAt": timestamp(deployment.mode_changed_at),
        "transitionInProgress": None if running_transition is None else {
            "id": running_transition.id, "url": f"/api/transitions/{running_transition.id}"},
    }


def deployment_detail(deployment: Deployment, inventory: Inventory, observer_status: dict | None = None,
                      windows: list[dict] | None = None) -> dict:
    stopped_set = deployment_queries.stopped_set_names(deployment.id)
    body = deployment_summary(deployment, inventory, stopped_set, deployment_queries.running_transition(deployment.id))
    containers = inventory.containers_of(deployment.name) if deployment.environment == inventory.environment else []
    body["containerCounts"] = body["containers"]
    body["containers"] = [
        {
            "name": c.name,
            "service": c.service or None,
            "image": c.image,
            "state": c.state,
            "health": c.health,
            "ignored": c.ignored,
            "inStoppedSet": c.name in stopped_set,
        }
        for c in containers
    ]
    body["stoppedSet"] = sorted(stopped_set)
    body["allowedModes"] = [m.value for m in allowed_targets(Mode(deployment.mode))]
    body["observer"] = observer_status
    body["windows"] = windows or []
    return body


def transition_json(transition: Transition) -> dict:
    actions = list(transition.actions.order_by(TransitionAction.id))
    return {
        "id": transition.id,
        "url": f"/api/transitions/{transition.id}",
        "deploymentId": transition.deployment_id,
        "previousMode": transition.previous_mode,
        "targetMode": transition.target_mode,
        "outcome": transition.status,
        "source": transition.source,
        "actor": transition.actor,
        "reason": transition.reason,
        "observedValue": transition.observed_value,
        "force": transition.force,
        "resumed": transition.resumed,
        "error": transition.error,
        "startedAt": timestamp(transition.requested_at),
        "finishedAt": timestamp(transition.finished_at),
        "progress": {"done": sum(1 for a in actions if a.result), "total": len(actions)},
        "containers": [
            {
                "name": a.container_name,
                "action": a.action,
                "level": a.level,
                "result": a.result,
                "error": a.error,
                "durationMs": a.duration_ms,
            }
            for a in actions
        ],
    }


def audit_json(entry: AuditEntry) -> dict:
    return {
        "id": entry.id,
        "deploymentId": entry.deployment_id,
        "deployment": entry.deployment.name,
        "environment": entry.deployment.environment,
        "previousMode": entry.previous_mode,
        "newMode": entry.new_mode,
        "requestedMode": entry.requested_mode,
        "outcome": entry.outcome,
        "source": entry.source,
        "actor": entry.actor,
        "reason": entry.reason,
        "observedValue": entry.observed_value,
        "error": entry.error,
        "requestedAt": timestamp(entry.requested_at),
        "finishedAt": timestamp(entry.finished_at),
        "transitionId": entry.transition_id,
    }
