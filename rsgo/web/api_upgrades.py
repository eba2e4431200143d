"""Upgrades and rollbacks under /api (README "Upgrades"): start one, follow it, list a stack's."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for

from rsgo import deployment_queries
from rsgo.models import Upgrade
from rsgo.problems import Problem
from rsgo.security.principal import client_address, current, requires, visible
from rsgo.upgrades import journal
from rsgo.upgrades.request import UpgradeRequestInvalid, parse_upgrade_request
from rsgo.web import current_runtime
from rsgo.web.api_input import CALLER_SOURCES, clean_reason, int_param, json_object
from rsgo.web.operate_policy import require_operator
from rsgo.web.upgrade_json import upgrade_json

blueprint = Blueprint("api_upgrades", __name__, url_prefix="/api")


def _load_deployment(ref: str):
    return deployment_queries.find_deployment(ref, request.args.get("environment") or None, visible=visible)


def _source(body: dict) -> str:
    source = body.get("source", "api")
    if source not in CALLER_SOURCES:
        raise Problem(400, "invalid_request", f"source must be one of {', '.join(CALLER_SOURCES)}", field="source")
    return source


def _answer(upgrade: Upgrade, waited: bool):
    """200 succeeded; 202 still running (not waited for); 502 failed, saying whether anything had stopped."""
    body = upgrade_json(upgrade)
    location = {"Location": body["url"]}
    if not waited and not body["finished"]:
        return jsonify(body), 202, location
    if upgrade.status == "succeeded":
        return jsonify(body), 200, location
    if any(step["step"] == "pull" and step["result"] == "failed" for step in body["steps"]):
        raise Problem(502, "image_pull_failed", f"upgrade {upgrade.id}: {upgrade.error}", upgrade=body)
    code = "rollback_failed" if upgrade.kind == "rollback" else "upgrade_failed"
    if upgrade.status == "rolled-back":
        detail = (f"upgrade {upgrade.id} failed and was rolled back: {upgrade.error}; the previous containers run "
                  "again and the stack is Normal")
    else:  # failed: the stored error names the upgrade and says what a person must check
        detail = upgrade.error or f"{upgrade.kind} {upgrade.id} failed"
    raise Problem(502, code, detail, upgrade=body)


@blueprint.post("/deployments/<ref>/upgrade")
@requires("read")
def start_upgrade(ref: str):
    deployment = _load_deployment(ref)
    body = json_object()
    reason = clean_reason(body.get("reason"))
    source = _source(body)
    try:
        upgrade_request = parse_upgrade_request({k: v for k, v in body.items() if k != "source"}, reason)
    except UpgradeRequestInvalid as invalid:
        raise Problem(400, "invalid_request", invalid.detail, field=invalid.field) from None
    require_operator(deployment, requested_mode="Migrating", source=source, reason=reason)
    try:
        upgrade = current_runtime().upgrades.upgrade(deployment.id, upgrade_request, source=source,
                                                     actor=current().name, address=client_address())
    except UpgradeRequestInvalid as invalid:  # a name the stack does not have: nothing was touched
        raise Problem(400, "invalid_request", invalid.detail, field=invalid.field) from None
    return _answer(upgrade, upgrade_request.wait)


@blueprint.post("/deployments/<ref>/rollback")
@requires("read")
def start_rollback(ref: str):
    deployment = _load_deployment(ref)
    body = json_object() if request.get_data(cache=True) else {}
    unknown = sorted(set(body) - {"reason", "wait", "source"})
    if unknown:
        raise Problem(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}; allowed: reason, wait, source",
                      field=unknown[0])
    wait = body.get("wait", True)
    if not isinstance(wait, bool):
        raise Problem(400, "invalid_request", "wait must be true or false", field="wait")
    reason, source = clean_reason(body.get("reason")), _source(body)
    require_operator(deployment, requested_mode="Migrating", source=source, reason=reason)
    upgrade = current_runtime().upgrades.rollback(deployment.id, reason=reason, source=source, actor=current().name,
                                                  address=client_address(), wait=wait)
    return _answer(upgrade, wait)


@blueprint.get("/upgrades/<int:upgrade_id>")
@requires("read")
def show_upgrade(upgrade_id: int):
    upgrade = Upgrade.get_or_none(Upgrade.id == upgrade_id)
    if upgrade is None or not visible(upgrade.deployment):  # the same answer for one the caller may not see
        raise Problem(404, "not_found", f"no upgrade {upgrade_id}")
    return jsonify(upgrade_json(upgrade))


@blueprint.get("/deployments/<ref>/upgrades")
@requires("read")
def list_upgrades(ref: str):
    deployment = _load_deployment(ref)
    limit = int_param("limit", 50, 1, 500)
    return jsonify(items=[upgrade_json(upgrade) for upgrade in journal.of_deployment(deployment.id, limit)],
                   rollbackAvailable=journal.last_rollback_candidate(deployment.id) is not None,
                   deploymentUrl=url_for("api.show_deployment", ref=deployment.id))
