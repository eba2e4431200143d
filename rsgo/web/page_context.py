"""What the pages show, built from the API's representations plus a few display-only facts
(progress text, the preview of a mode change). Pages, HTMX answers and websocket pushes all
build their template context here, so the three always agree.
"""

from __future__ import annotations

from flask import url_for

from rsgo import deployment_queries
from rsgo.lifecycle import DependencyCycle, plan
from rsgo.models import Deployment, Transition
from rsgo.modes import Mode
from rsgo.web import time_context, upgrade_context
from rsgo.web.api_json import (
    deployment_detail,
    deployment_list,
    deployment_summary_for,
    environment_list,
    transition_json,
    units_of,
)

_VERBS = {"stop": "stopped", "start": "started"}

# The live regions of a deployment page: region id prefix (the id is "<prefix>-<deployment id>") ->
# its partial template. The page view answers an HTMX request for one of them with its partial, and
# the live push sends them all when the deployment changes: a new panel is one line here.
DEPLOYMENT_REGIONS = {
    "mode": "deployments/_mode.html",
    "timeline": "deployments/_timeline.html",
    "progress": "deployments/_progress.html",
    "containers": "deployments/_containers.html",
    "observer": "deployments/_observer.html",
    "silence": "deployments/_silence.html",
    "windows": "deployments/_windows.html",
    "upgrades": "deployments/_upgrade_status.html",
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


def progress_bar(transition: dict) -> dict:
    """The bar's numbers, the same as the text's: containers stopped or started of those to stop or
    start (ignored and already-stopped ones are in neither, so "0 of 2 stopped" is an empty bar)."""
    acted = [c for c in transition["containers"] if c["action"] in _VERBS]
    return {"done": sum(1 for c in acted if c["result"] and c["result"] != "failed"), "total": len(acted)}


def latest_transition(deployment_id: int) -> dict | None:
    transition = (Transition.select().where(Transition.deployment == deployment_id)
                  .order_by(Transition.id.desc()).first())
    if transition is None:
        return None
    body = transition_json(transition)
    body["progressText"] = progress_text(body)
    body["progressBar"] = progress_bar(body)
    return body


def change_status(deployment: Deployment, transition_id: int, runtime) -> dict | None:
    """The line under a row (or on the detail page) where a person started a change: "Changing shop to
    Maintenance… 1 of 2 stopped" while it runs, then its outcome ("✓ Maintenance — 2 of 2 stopped",
    "✗ Failed — see details"). None for a transition that is not this deployment's."""
    transition = Transition.get_or_none((Transition.id == transition_id) & (Transition.deployment == deployment.id))
    if transition is None:
        return None
    body = transition_json(transition)
    held = runtime.transitions.held_failure(deployment.id)
    outcome = "failed" if held is not None and held.transition_id == transition.id else body["outcome"]
    forced = " (forced)" if body["force"] else ""
    text = {"running": f"Changing {deployment.name} to {body['targetMode']}{forced}… {progress_text(body)}",
            "succeeded": f"✓ {body['targetMode']} — {progress_text(body)}",
            "failed": "✗ Failed — see details"}.get(outcome, f"{body['targetMode']}: {outcome}")
    return {"deploymentId": deployment.id, "transitionId": transition.id, "outcome": outcome, "text": text,
            "pageUrl": url_for("pages.deployment_page", ref=deployment.id)}


def dashboard_item(summary: dict, running: Transition | None) -> dict:
    """A dashboard row: the API's summary plus the page link and the progress line."""
    # Built once per row: the row's links and buttons extend it (url_for per button costs a lot at 300 rows).
    summary["pageUrl"] = url_for("pages.deployment_page", ref=summary["id"])
    summary["progressText"] = None
    if running is not None:
        body = transition_json(running)
        summary["progressText"] = f"Changing to {body['targetMode']}: {progress_text(body)}"
    return summary


def dashboard_items(runtime, keep=lambda deployment: True) -> list[dict]:
    """The dashboard's rows; from the runtime's cache (rsgo/web/row_cache.py) when it has one: then
    read-only, shared with the next requests."""
    cache = getattr(runtime, "deployment_cache", None)
    if cache is not None:
        return cache.items(runtime, keep)
    return time_context.add_to_rows(
        [dashboard_item(summary, running) for summary, running in deployment_list(runtime, keep)], runtime)


def environment_anchor(name: str) -> str:
    """An id part for an environment's group on the dashboard: only letters, digits and '-', one to one
    (a '.' in an id would need escaping in the selector of an out-of-band swap)."""
    return "".join(c if c.isalnum() or c == "-" else f"_{ord(c):x}" for c in name)


def dashboard_groups(runtime, environment: str | None = None) -> tuple[list[dict], list[str]]:
    """The dashboard's rows by environment, each group with its environment's state (one group when
    there is one environment), and every environment's name; ``environment`` shows that group only."""
    environments = environment_list(runtime)
    items = dashboard_items(runtime, keep=lambda d: environment is None or d.environment == environment)
    groups = []
    for view in environments:
        if environment is not None and view["name"] != environment:
            continue
        groups.append({"environment": view, "anchor": environment_anchor(view["name"]),
                       "items": [item for item in items if item["environment"] == view["name"]]})
    return groups, [view["name"] for view in environments]


def environment_group(runtime, name: str) -> dict | None:
    """One environment's header (without its rows), for a live push when its state changes."""
    view = next((view for view in environment_list(runtime) if view["name"] == name), None)
    return None if view is None else {"environment": view, "anchor": environment_anchor(name), "items": []}


def dashboard_item_for(deployment: Deployment, runtime) -> dict:
    return time_context.add_to_row(dashboard_item(*deployment_summary_for(runtime, deployment)), runtime)


def detail(deployment: Deployment, runtime) -> dict:
    """The deployment page's context: the API's detail plus the page link."""
    body = deployment_detail(runtime, deployment)
    body["pageUrl"] = url_for("pages.deployment_page", ref=deployment.id)
    body["upgrades"] = upgrade_context.panel(deployment.id, body["containers"])
    return time_context.add_to_detail(body, runtime)


def preview(deployment: Deployment, target: Mode, runtime) -> dict:
    """What a mode change would do, from the in-memory view (no Docker call)."""
    containers, _ = units_of(runtime, deployment)
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
