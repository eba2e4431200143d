"""Stacks as a whole under /api (README "API"): forgetting a stack whose containers are gone, and one
mode change for several stacks at once (each its own transition and result)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for

from rsgo import bulk_change, deployment_queries, forgetting
from rsgo.deployment_queries import AmbiguousDeployment, DeploymentNotFound
from rsgo.problems import Problem
from rsgo.security.principal import client_address, current, requires, visible
from rsgo.web import current_runtime
from rsgo.web.api_input import clean_reason, json_object, mode_change_body
from rsgo.web.api_json import audit_json

blueprint = Blueprint("api_stacks", __name__, url_prefix="/api")

_BULK_FIELDS = ("deployments", "newMode", "mode", "reason", "force", "source")


@blueprint.delete("/deployments/<ref>")
@requires("operate")
def forget_deployment(ref: str):
    """Forget a stack whose containers are all removed: 200 with the audit entry that records it."""
    deployment = deployment_queries.find_deployment(ref, request.args.get("environment") or None, visible=visible)
    body = json_object() if request.get_data(cache=True) else {}
    unknown = sorted(set(body) - {"reason", "source"})
    if unknown:
        raise Problem(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}; allowed: reason, source",
                      field=unknown[0])
    source = body.get("source", "api")
    if source not in ("api", "cli"):
        raise Problem(400, "invalid_request", "source must be one of api, cli", field="source")
    entry = forgetting.forget(current_runtime(), deployment.id, source=source, actor=current().name,
                              reason=clean_reason(body.get("reason")), address=client_address())
    return jsonify(forgotten=True, deploymentId=deployment.id, name=deployment.name,
                   environment=deployment.environment, entry=audit_json(entry),
                   historyUrl=url_for("api.deployment_history", ref=deployment.id))


@blueprint.post("/deployments/operation-mode")
@requires("operate")
def change_modes():
    """One mode change for several stacks: 207 with one result per stack, in the order asked."""
    body = json_object()
    unknown = sorted(set(body) - set(_BULK_FIELDS))
    if unknown:
        raise Problem(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}; allowed: "
                                              f"{', '.join(_BULK_FIELDS)}", field=unknown[0])
    refs = body.get("deployments")
    if not isinstance(refs, list) or not refs or len(refs) > bulk_change.MAX_STACKS or not all(
            isinstance(ref, str | int) and not isinstance(ref, bool) for ref in refs):
        raise Problem(400, "invalid_request", f"deployments must be a list of 1 to {bulk_change.MAX_STACKS} stack "
                                              "names or ids", field="deployments")
    change = mode_change_body({key: value for key, value in body.items() if key != "deployments"})
    targets = resolve([str(ref) for ref in refs], request.args.get("environment") or None)
    results = bulk_change.change_modes(current_runtime(), targets, change.new_mode,
                                       source=change.source, actor=current().name, reason=change.reason,
                                       force=change.force, address=client_address())
    items = [result_json(result) for result in results]
    counts = {kind: sum(1 for item in items if item["result"] == kind) for kind in ("started", "unchanged", "refused")}
    return jsonify(mode=change.new_mode, reason=change.reason, **counts, items=items), 207


def resolve(refs: list[str], environment: str | None = None) -> list[tuple]:
    """Each ref with its deployment, or None and why not (unknown, forgotten, ambiguous), as
    ``bulk_change.change_modes`` takes them."""
    resolved = []
    for ref in refs:
        try:
            resolved.append((ref, deployment_queries.find_deployment(ref, environment, visible=visible), None))
        except DeploymentNotFound as error:
            resolved.append((ref, None, (404, "not_found", str(error))))
        except AmbiguousDeployment as error:
            resolved.append((ref, None, (409, "ambiguous_deployment", str(error))))
    return resolved


def result_json(result: bulk_change.BulkResult) -> dict:
    deployment = result.deployment
    transition = None
    if result.transition_id is not None:
        transition = {"id": result.transition_id,
                      "url": url_for("api.show_transition", transition_id=result.transition_id)}
    return {
        "ref": result.ref,
        "deploymentId": deployment.id if deployment else None,
        "deployment": deployment.name if deployment else None,
        "environment": deployment.environment if deployment else None,
        "result": result.result,
        "status": result.status,
        "code": result.code,
        "message": result.message,
        "transition": transition,
        **{key: value for key, value in result.extra.items() if key not in ("transition",)},
    }
