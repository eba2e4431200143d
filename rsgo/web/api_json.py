"""The JSON shapes of the API (camelCase), built from models and the inventory view."""

from __future__ import annotations

from collections import Counter

from flask import url_for

from rsgo import deployment_queries
from rsgo.db import read_snapshot, timestamp, utcnow
from rsgo.environments import EnvironmentView
from rsgo.health import assess, completed
from rsgo.models import AuditEntry, Deployment, Transition, TransitionAction
from rsgo.modes import Mode, allowed_targets


def units_of(runtime, deployment: Deployment) -> tuple[list, str | None]:
    """The deployment's containers (and services) from its environment's view, and why that view
    cannot be trusted now (None when it can)."""
    env = runtime.environments.get(deployment.environment)
    if env is None:
        return [], "environment removed"
    if env.disabled:
        return [], f"environment {env.name} is disabled: {env.spec.error}"
    if env.inventory.reachable is False:
        single = len(runtime.environments.names()) == 1
        return [], "Docker is unreachable" if single else f"environment {env.name} is unreachable"
    return env.inventory.containers_of(deployment.name), None


def deployment_summary(runtime, deployment: Deployment, stopped_set: set[str],
                       running_transition: Transition | None) -> dict:
    """One deployment as the list shows it. ``deployment`` as ``runtime.transitions.shown`` gives it."""
    containers, engine_problem = units_of(runtime, deployment)
    observer = runtime.observers.status(deployment.id)
    held = runtime.transitions.held_failure(deployment.id)
    if held is not None and running_transition is not None and running_transition.id == held.transition_id:
        running_transition = None  # it stopped; its record waits for the database (the stack shows Failed)
    health = assess(Mode(deployment.mode), containers, stopped_set, engine_problem,
                    observer.problem if observer else None)
    overdue = runtime.overdue.status(deployment)  # forgotten maintenance needs attention too
    return {
        "id": deployment.id,
        "name": deployment.name,
        "environment": deployment.environment,
        "operationMode": deployment.mode,
        "health": health.status,
        "needsAttention": health.needs_attention or overdue is not None,
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
        "overdue": None if overdue is None else {"mode": overdue.mode, "since": timestamp(overdue.since),
                                                 "for": overdue.seconds(utcnow()), "by": overdue.by},
        "transitionInProgress": None if running_transition is None else {
            "id": running_transition.id, "url": _transition_url(running_transition.id)},
        "observer": observer_json(observer) if observer else None,
        "allowedModes": [m.value for m in allowed_targets(Mode(deployment.mode))],
    }


def deployment_list(runtime, keep=lambda deployment: True) -> list[tuple[dict, Transition | None]]:
    """Every deployment's summary (with its running transition, for the pages' progress line), read
    in one database snapshot so a row never mixes states from before and after a transition's end."""
    with read_snapshot():
        stopped_sets = deployment_queries.stopped_sets_by_deployment()
        running = deployment_queries.running_transitions()
        rows = [d for d in Deployment.select().where(Deployment.forgotten_at.is_null())  # forgotten: history only
                .order_by(Deployment.name, Deployment.environment) if keep(d)]
        return [(deployment_summary(runtime, runtime.transitions.shown(d), stopped_sets.get(d.id, set()),
                                    running.get(d.id)), running.get(d.id)) for d in rows]


def deployment_summary_for(runtime, deployment: Deployment) -> tuple[dict, Transition | None]:
    """One deployment's summary and running transition, read in one snapshot (what a list row shows)."""
    with read_snapshot():
        running = deployment_queries.running_transition(deployment.id)
        summary = deployment_summary(runtime, runtime.transitions.shown(Deployment.get_by_id(deployment.id)),
                                     deployment_queries.stopped_set_names(deployment.id), running)
    return summary, running


def deployment_detail(runtime, deployment: Deployment) -> dict:
    """One deployment with its containers, stopped-set, observer and windows, in one snapshot."""
    with read_snapshot():
        deployment = runtime.transitions.shown(Deployment.get_by_id(deployment.id))
        stopped_set = deployment_queries.stopped_set_names(deployment.id)
        held = runtime.transitions.held_failure(deployment.id)
        if held is not None:  # what the unwritten transition stopped is rsgo's to start again, too
            stopped_set |= {result.container_name for result in held.results if result.result == "stopped"}
        body = deployment_summary(runtime, deployment, stopped_set,
                                  deployment_queries.running_transition(deployment.id))
        windows = runtime.windows.listing(deployment.id)
    containers, _ = units_of(runtime, deployment)
    body["containerCounts"] = body["containers"]
    body["containers"] = [
        {
            "name": c.name,
            "kind": c.kind,
            # A service's tasks (running / wanted); None for a container.
            "tasks": {"running": c.running_tasks, "desired": c.desired_tasks} if c.kind == "service" else None,
            "service": c.service or None,
            "image": c.image,
            "state": c.state,
            "health": c.health,
            "ignored": c.ignored,
            "inStoppedSet": c.name in stopped_set,
            # Its exit code once it exited; "completed": a job that exited 0 by itself (rsgo/health.py).
            "exitCode": getattr(c, "exit_code", None),
            "completed": completed(c, stopped_set),
        }
        for c in containers
    ]
    body["stoppedSet"] = sorted(stopped_set)
    body["windows"] = [window_json(view) for view in windows]
    body["silence"] = runtime.silences.status(deployment.id)  # README "Alertmanager"
    return body


def environment_list(runtime, keep=lambda deployment: True, deployments=None) -> list[dict]:
    """Every configured environment, then every removed one that still has deployments (their history).
    ``deployments``: the listed ones (id, name, environment), when the caller has them already."""
    if deployments is None:
        deployments = (Deployment.select(Deployment.id, Deployment.name, Deployment.environment)
                       .where(Deployment.forgotten_at.is_null()))
    counts = Counter(d.environment for d in deployments if keep(d))
    views = [env.view() for env in runtime.environments.all()]
    configured = {view.name for view in views}
    views += [EnvironmentView(name=name, kind=None, url=None, state="removed", reachable=None,
                              last_error="removed from the config: its stacks keep their history and rsgo no "
                                         "longer acts on them", engine_version=None, last_event_at=None)
              for name in sorted(set(counts) - configured)]
    return [environment_json(view, counts.get(view.name, 0)) for view in views]


def environment_json(view: EnvironmentView, deployments: int) -> dict:
    return {
        "name": view.name,
        "kind": view.kind,
        "url": view.url,
        "state": view.state,
        "reachable": view.reachable,
        "lastError": view.last_error,
        "engineVersion": view.engine_version,
        "deployments": deployments,
        "lastEventAt": timestamp(view.last_event_at),
    }


def observer_json(observer) -> dict:
    """An observer's status (``rsgo.observers.service.ObserverState``)."""
    config, row = observer.config, observer.row
    return {
        "type": config.type,
        "name": config.name,
        "target": config.target(),
        "state": observer.state,
        "error": observer.error,
        "lastValue": row.last_value if row else None,
        "lastDecision": row.last_decision if row else None,
        "lastCheckAt": timestamp(observer.last_check_at),
        "nextCheckAt": timestamp(observer.next_check_at),
        "failures": row.failures if row else 0,
        "failureThreshold": config.failure_threshold,
        "failing": observer.failing,
        "suppressed": bool(row and row.suppressed),
        "maintenanceValue": config.maintenance_value,
        "normalValue": config.normal_value,
        "pollingIntervalSeconds": config.interval,
        "confirmations": config.confirmations,
    }


def window_json(view) -> dict:
    """A maintenance window (``rsgo.windows.WindowView``). Instants are UTC like every other answer;
    a recurring window's next occurrences are in its own zone, with the offset, as people plan them."""
    window = view.window
    return {
        "id": window.id,
        "name": window.name,
        "kind": "recurring" if window.cron else "one-time",
        "start": timestamp(window.starts_at),
        "end": timestamp(window.ends_at),
        "cron": window.cron,
        "timezone": window.timezone if window.cron else None,
        "durationSeconds": window.duration_seconds,
        "reason": window.reason,
        "origin": window.origin,
        "createdBy": window.created_by,
        "active": view.active,
        "nextOccurrences": [{"start": start.isoformat(), "end": end.isoformat()} for start, end in view.upcoming],
    }


def _transition_url(transition_id: int) -> str:
    return url_for("api.show_transition", transition_id=transition_id)


def transition_json(transition: Transition) -> dict:
    actions = list(transition.actions.order_by(TransitionAction.id))
    return {
        "id": transition.id,
        "url": _transition_url(transition.id),
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
        # Forced past an observer that still held Maintenance (the request's "force").
        "forced": bool(entry.transition_id and entry.transition.force),
    }
