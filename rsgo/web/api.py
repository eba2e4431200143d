"""The JSON API under /api (README "API"; the OpenAPI document is rsgo/web/openapi.py)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from rsgo import audit, deployment_queries
from rsgo.models import Deployment, MaintenanceWindow, Transition
from rsgo.problems import Problem
from rsgo.security.principal import client_address, current, requires, visible
from rsgo.stack_config import ConfigRejected
from rsgo.web import current_runtime, row_cache
from rsgo.web.api_input import clean_reason, int_param, json_object, mode_change_body
from rsgo.web.api_json import (
    audit_json,
    deployment_detail,
    deployment_list,
    deployment_summary_for,
    environment_list,
    observer_json,
    transition_json,
    window_json,
)
from rsgo.web.openapi import openapi_document
from rsgo.web.operate_policy import require_operator
from rsgo.windows import WindowError, parse_window

blueprint = Blueprint("api", __name__, url_prefix="/api")


def _load_deployment(ref: str, forgotten: bool = False) -> Deployment:
    """A token limited to some stacks gets the unknown-stack 404 for any other: it cannot tell them apart.
    A forgotten stack is found only by its history's routes (``forgotten``): elsewhere it is a 404."""
    return deployment_queries.find_deployment(ref, request.args.get("environment") or None, visible=visible,
                                              forgotten=forgotten)


@blueprint.get("/openapi.json")
@requires("read")
def openapi():
    return jsonify(openapi_document())


@blueprint.get("/deployments")
@requires("read")
def list_deployments():
    runtime = current_runtime()
    cache = row_cache.cache_of(runtime)
    if cache is not None:
        # Compact, as jsonify writes it outside debug mode.
        texts = cache.summaries_encoded(runtime, lambda summary: current_app.json.dumps(summary, separators=(",", ":")),
                                        keep=visible)
        return current_app.response_class('{"items":[' + ",".join(texts) + "]}\n", mimetype="application/json")
    return jsonify(items=[summary for summary, _running in deployment_list(runtime, keep=visible)])


@blueprint.get("/environments")
@requires("read")
def list_environments():
    return jsonify(items=environment_list(current_runtime(), keep=visible))


@blueprint.get("/deployments/<ref>")
@requires("read")
def show_deployment(ref: str):
    return jsonify(deployment_detail(current_runtime(), _load_deployment(ref)))


def _no_observer(deployment: Deployment) -> Problem:
    return Problem(404, "not_found", f"{deployment.name} has no observer (configure one in the stack config file)")


@blueprint.get("/deployments/<ref>/observer")
@requires("read")
def show_observer(ref: str):
    deployment = _load_deployment(ref)
    status = current_runtime().observers.status(deployment.id)
    if status is None:
        raise _no_observer(deployment)
    return jsonify(observer_json(status))


@blueprint.post("/deployments/<ref>/observer/check")
@requires("operate")
def check_observer(ref: str):
    """Check now, at once, and act on the result like a scheduled check would."""
    deployment = _load_deployment(ref)
    status = current_runtime().observers.check(deployment.id)
    if status is None:
        raise _no_observer(deployment)
    return jsonify(observer_json(status))


@blueprint.get("/deployments/<ref>/windows")
@requires("read")
def list_windows(ref: str):
    deployment = _load_deployment(ref)
    return jsonify(items=[window_json(view) for view in current_runtime().windows.listing(deployment.id)])


@blueprint.post("/deployments/<ref>/windows")
@requires("operate")
def add_window(ref: str):
    """A one-time (start, end) or recurring (cron, duration, timezone) window, or ``{"duration": "2h"}``:
    maintenance from now for that long, so nobody has to remember to end it."""
    deployment = _load_deployment(ref)
    body = json_object()
    if "reason" in body:
        body["reason"] = clean_reason(body["reason"])
    try:
        spec = parse_window(body, default_name="ad hoc" if set(body) <= {"duration", "reason", "name"}
                            else "window")
    except WindowError as error:
        field, _, message = str(error).partition(": ")
        raise Problem(400, "invalid_request", str(error), field=field if message else None) from None
    runtime = current_runtime()
    window = runtime.windows.add(deployment, spec, origin="api", created_by=current().name)
    runtime.windows.evaluate()  # a window that contains now takes effect at once
    created = next(view for view in runtime.windows.listing(deployment.id) if view.window.id == window.id)
    location = url_for("api.list_windows", ref=deployment.id) + f"/{window.id}"
    return jsonify(window_json(created)), 201, {"Location": location}


@blueprint.delete("/deployments/<ref>/windows/<int:window_id>")
@requires("operate")
def delete_window(ref: str, window_id: int):
    deployment = _load_deployment(ref)
    window = MaintenanceWindow.get_or_none((MaintenanceWindow.id == window_id)
                                           & (MaintenanceWindow.deployment == deployment.id))
    if window is None:
        raise Problem(404, "not_found", f"{deployment.name} has no window {window_id}")
    if window.origin == "config":
        raise Problem(409, "window_from_config", f"window {window.name} comes from the config file; change it there")
    # A window that alone holds the stack's Maintenance ends it now (waited for), credited to the caller
    # with this reason (README "Maintenance windows"): ?reason=… or a JSON body {"reason": "…"}.
    body = json_object() if request.content_length else {}
    if set(body) - {"reason"} or ("reason" in body and "reason" in request.args):
        raise Problem(400, "invalid_request", "the only field is reason, in the body or as ?reason=, not both",
                      field="reason")
    reason = clean_reason(body.get("reason", request.args.get("reason")))
    current_runtime().windows.remove(window, actor=current().name, source="api", reason=reason,
                                     address=client_address())
    return "", 204


@blueprint.post("/config/reload")
@requires("admin")
def reload_config():
    """Read the stack config file again (like SIGHUP); observers whose config is unchanged keep their status."""
    if current().stacks is not None:
        raise Problem(403, "forbidden", f"{current().name} is limited to some stacks; a reload affects all")
    try:
        config = current_runtime().reload_config()
    except ConfigRejected as rejected:
        problems = rejected.config.problems
        raise Problem(422, "invalid_config",
                      f"config reload failed: {len(problems)} problem(s) in {rejected.config.path}; "
                      "nothing was changed, the running config stays",
                      problems=[{"file": p.file, "path": p.path, "message": p.message} for p in problems]) from None
    return jsonify(path=config.path, stacks=sorted(config.stacks),
                   environments=sorted(config.environments or current_runtime().environments.names()),
                   observers=sum(1 for stack in config.stacks.values() if stack.observer),
                   problems=[{"path": p.path, "message": p.message} for p in config.problems])


@blueprint.get("/deployments/<ref>/operation-mode")
@requires("read")
def show_operation_mode(ref: str):
    summary, _running = deployment_summary_for(current_runtime(), _load_deployment(ref))
    return jsonify(deploymentId=summary["id"], operationMode=summary["operationMode"], trigger=summary["trigger"],
                   modeChangedAt=summary["modeChangedAt"], transitionInProgress=summary["transitionInProgress"])


@blueprint.put("/deployments/<ref>/operation-mode")
@requires("read")
def change_operation_mode(ref: str):
    deployment = _load_deployment(ref)
    change_request = mode_change_body(json_object())  # an invalid request is refused and not recorded
    require_operator(deployment, requested_mode=change_request.new_mode, source=change_request.source,
                     reason=change_request.reason)
    change = current_runtime().transitions.change_mode(
        deployment.id, change_request.new_mode, source=change_request.source, actor=current().name,
        reason=change_request.reason,
        force=change_request.force, wait=change_request.wait, address=client_address())
    body = {
        "success": change.outcome in ("noop", "succeeded", "running"),
        "message": _message(change),
        "deploymentId": change.deployment.id,
        "deployment": deployment_detail(current_runtime(), change.deployment),
        "previousMode": change.previous_mode.value,
        "newMode": change.new_mode.value,
        "triggerSource": "api",
        "outcome": change.outcome,
        "transition": transition_json(change.transition) if change.transition else None,
    }
    if change.outcome == "running":
        location = url_for("api.show_transition", transition_id=change.transition.id)
        return jsonify(body), 202, {"Location": location}
    if change.outcome == "failed":
        raise Problem(502, "container_action_failed", body["message"], **{k: v for k, v in body.items()
                                                                         if k not in ("message",)})
    return jsonify(body)


def _message(change) -> str:
    name = change.deployment.name
    if change.outcome == "noop":
        return f"{name} is already in {change.new_mode.value}; nothing was done"
    if change.outcome == "running":
        return f"{name} is changing from {change.previous_mode.value}; follow the transition for progress"
    if change.outcome == "failed":
        return f"{name} is now Failed: {change.transition.error}"
    return f"{name} changed from {change.previous_mode.value} to {change.new_mode.value}"


@blueprint.get("/deployments/<ref>/history")
@requires("read")
def deployment_history(ref: str):
    deployment = _load_deployment(ref, forgotten=True)
    return _history_page(deployment_id=deployment.id)


@blueprint.get("/history")
@requires("read")
def global_history():
    deployment_id = None
    if request.args.get("deployment"):
        deployment_id = _load_deployment(request.args["deployment"], forgotten=True).id
    return _history_page(deployment_id=deployment_id, stacks=current().stacks,
                         source=request.args.get("source") or None,
                         actor=request.args.get("actor") or None, outcome=request.args.get("outcome") or None)


def _history_page(**filters):
    limit = int_param("limit", 50, 1, 500)
    before = int_param("before", None)
    entries = audit.entries(limit=limit + 1, before=before, **filters)
    page, more = entries[:limit], len(entries) > limit
    next_before = page[-1].id if more and page else None
    next_url = None
    if next_before is not None:
        args = {**request.args.to_dict(), "before": next_before, "limit": limit}
        next_url = url_for(request.endpoint, **(request.view_args or {}), **args)
    return jsonify(items=[audit_json(e) for e in page], nextBefore=next_before, next=next_url)


@blueprint.get("/transitions/<int:transition_id>")
@requires("read")
def show_transition(transition_id: int):
    transition = Transition.get_or_none(Transition.id == transition_id)
    if transition is None:
        raise Problem(404, "not_found", f"no transition {transition_id}")
    if not visible(transition.deployment):  # the same answer as for an unknown transition
        raise Problem(404, "not_found", f"no transition {transition_id}")
    body = transition_json(transition)
    held = current_runtime().transitions.held_failure(transition.deployment_id)
    if held is not None and held.transition_id == transition.id:
        # Failed, though the database could not take that yet: say so rather than "running".
        body.update(outcome="failed", error=f"storage failure (not recorded yet): {held.error}")
    return jsonify(body)
