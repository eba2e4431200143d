"""What the pages show, built from the API's representations plus a few display-only facts
(progress text, the preview of a mode change). Pages, HTMX answers and websocket pushes all
build their template context here, so the three always agree.
"""

from __future__ import annotations

from flask import url_for

from rsgo import deployment_queries
from rsgo.discovery import Inventory
from rsgo.lifecycle import DependencyCycle, plan
from rsgo.models import Deployment, Transition
from rsgo.modes import Mode, allowed_targets
from rsgo.web.api_json import deployment_detail, deployment_summary, transition_json

_VERBS = {"stop": "stopped", "start": "started"}

# The live regions of a deployment page: region id prefix (the id is "<prefix>-<deployment id>") ->
# its partial template. The page view answers an HTMX request for one of them with its partial, and
# the live push sends them all when the deployment changes: a new panel is one line here.
DEPLOYMENT_REGIONS = {
    "mode": "deployments/_mode.html",
    "progress": "deployments/_progress.html",
    "containers": "deployments/_containers.html",
    "observer": "deployments/_observer.html",
    "windows": "deployments/_windows.html",
}


def history_rows_id(deployment_id: int | None) -> str:
    """The id of the history table body that live pushes prepend rows to (None: the global history)."""
    return "history-rows-all" if deployment_id is None else f"history-rows-{deployment_id}"


def progress_text(transition: dict) -> str:
    """"12 of 30 stopped" for the container actions of a transition."""
    acted = [c for c in transition["containers"] if c["action"] in _VERBS]
    if not acted:
        return f"{transition['targetMode']}: no container is stopped or started"
    parts = []
    for action, verb in _VERBS.items():
        planned = [c for c in acted if c["action"] == action]
        if planned:
            done = sum(1 for c in planned if c["result"] and c["result"] != "failed")
            parts.append(f"{done} of {len(planned)} {verb}")
    failed = sum(1 for c in acted if c["result"] == "failed")
    return ", ".join(parts) + (f", {failed} failed" if failed else "")


def latest_transition(deployment_id: int) -> dict | None:
    transition = (Transition.select().where(Transition.deployment == deployment_id)
                  .order_by(Transition.id.desc()).first())
    if transition is None:
        return None
    body = transition_json(transition)
    body["progressText"] = progress_text(body)
    return body


def dashboard_item(deployment: Deployment, runtime, stopped_set: set[str], running: Transition | None) -> dict:
    deployment = runtime.transitions.shown(deployment)
    item = deployment_summary(deployment, runtime.inventory, stopped_set, running)
    # Built once per row: the row's links and buttons extend it (url_for per button costs a lot at 300 rows).
    item["pageUrl"] = url_for("pages.deployment_page", ref=deployment.id)
    item["observer"] = observer = runtime.observers.status(deployment.id)
    if observer and (observer["failing"] or observer["state"] == "disabled"):
        item["needsAttention"] = True
        item["problems"].append(f"observer {observer['name']} is "
                                + ("failing" if observer["failing"] else "disabled") + f": {observer['error']}")
    item["allowedModes"] = [m.value for m in allowed_targets(Mode(deployment.mode))]
    item["progressText"] = None
    if running is not None:
        body = transition_json(running)
        item["progressText"] = f"Changing to {body['targetMode']}: {progress_text(body)}"
    return item


def dashboard_items(runtime) -> list[dict]:
    stopped_sets = deployment_queries.stopped_sets_by_deployment()
    running = {t.deployment_id: t for t in Transition.select().where(Transition.status == "running")}
    return [dashboard_item(d, runtime, stopped_sets.get(d.id, set()), running.get(d.id))
            for d in Deployment.select().order_by(Deployment.name, Deployment.environment)]


def dashboard_item_for(deployment: Deployment, runtime) -> dict:
    return dashboard_item(deployment, runtime, deployment_queries.stopped_set_names(deployment.id),
                          deployment_queries.running_transition(deployment.id))


def detail(deployment: Deployment, runtime) -> dict:
    body = deployment_detail(runtime.transitions.shown(deployment), runtime.inventory,
                             runtime.observers.status(deployment.id),
                             runtime.windows.windows_json(deployment.id))
    body["pageUrl"] = url_for("pages.deployment_page", ref=deployment.id)
    return body


def preview(deployment: Deployment, target: Mode, inventory: Inventory) -> dict:
    """What a mode change would do, from the in-memory view (no Docker call)."""
    containers = inventory.containers_of(deployment.name)
    result = {"stop": [], "start": [], "ignored": [], "untouched": [], "missing": [], "error": None}
    try:
        actions = plan(target, containers, deployment_queries.stopped_set_names(deployment.id))
    except DependencyCycle as cycle:
        result["error"] = f"This change would be refused: {cycle}"
        return result
    buckets = {"stop": "stop", "start": "start", "ignored": "ignored", "already-stopped": "untouched",
               "missing": "missing"}
    for action in actions:
        key = action.action if action.action in ("stop", "start") else buckets.get(action.result or "")
        if key:
            result[key].append(action.container_name)
    return result
