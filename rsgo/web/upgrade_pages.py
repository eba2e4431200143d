"""The Upgrade panel of a deployment page (README "Upgrades"): preview an upgrade, start it without
waiting for it, roll the last one back. Its progress reaches the page through the live push (the
``upgrades-<id>`` region); these views only answer the operator's own requests.
"""

from __future__ import annotations

from contextlib import contextmanager

from flask import Blueprint, render_template, request

from rsgo.deployment_queries import find_deployment
from rsgo.problems import Problem
from rsgo.security.principal import client_address, current, requires
from rsgo.upgrades import journal
from rsgo.upgrades.request import UpgradeRequestInvalid
from rsgo.web import current_runtime, page_context, upgrade_context
from rsgo.web.api_input import clean_reason
from rsgo.web.operate_policy import require_operator
from rsgo.web.upgrade_json import upgrade_json

blueprint = Blueprint("upgrade_pages", __name__)

NO_REASON = "Give a reason: it is shown in the history."


@contextmanager
def _invalid_is_400():
    """An upgrade rsgo cannot carry out is a message next to the form (nothing was touched)."""
    try:
        yield
    except UpgradeRequestInvalid as invalid:
        raise Problem(400, "invalid_request", invalid.detail, field=invalid.field) from None


@blueprint.post("/deployments/<ref>/upgrade/preview")
@requires("operate")
def preview(ref: str):
    """What the form's upgrade would pull, stop, migrate, recreate and keep running (no Docker change)."""
    deployment = find_deployment(ref)
    with _invalid_is_400():
        upgrade_request = upgrade_context.read_form(request.form, "")
        plan = current_runtime().upgrades.preview(deployment.id, upgrade_request)
    return render_template("deployments/_upgrade_preview.html",
                           d=page_context.detail(deployment, current_runtime()),
                           plan=upgrade_context.plan_view(plan, upgrade_request),
                           digest=upgrade_context.digest(upgrade_request))


@blueprint.post("/deployments/<ref>/upgrade")
@requires("read")
def start_upgrade(ref: str):
    """The previewed upgrade, started in the background: its steps arrive over the websocket."""
    deployment = find_deployment(ref)
    reason = clean_reason(request.form.get("reason"))
    require_operator(deployment, requested_mode="Migrating", source="ui", reason=reason)
    with _invalid_is_400():
        upgrade_request = upgrade_context.read_form(request.form, reason)
    if request.form.get("previewed") != upgrade_context.digest(upgrade_request):
        raise Problem(409, "preview_outdated", "The form changed after its preview: preview it again, then start.")
    if not reason:
        raise Problem(400, "invalid_request", NO_REASON)
    with _invalid_is_400():
        upgrade = current_runtime().upgrades.upgrade(deployment.id, upgrade_request, source="ui",
                                                     actor=current().name, address=client_address())
    message = f"Upgrade {upgrade.id} started: its steps appear above as they happen."
    # In place of the preview (errors stay under the Start button, next to what they are about).
    return (render_template("deployments/_change_started.html", message=message),
            {"HX-Retarget": f"#upgrade-result-{deployment.id}"})


@blueprint.get("/deployments/<ref>/upgrade/rollback")
@requires("operate")
def rollback_form(ref: str):
    """The confirmation of a rollback, with its reason. Without ``confirm``: nothing (cancel)."""
    deployment = find_deployment(ref)
    if not request.args.get("confirm"):
        return ""
    candidate = journal.last_rollback_candidate(deployment.id)
    if candidate is None:
        raise Problem(409, "nothing_to_roll_back", f"{deployment.name} has no upgrade to roll back any more.")
    return render_template("deployments/_upgrade_rollback_form.html",
                           d=page_context.detail(deployment, current_runtime()), candidate=upgrade_json(candidate))


@blueprint.post("/deployments/<ref>/upgrade/rollback")
@requires("read")
def rollback(ref: str):
    deployment = find_deployment(ref)
    reason = clean_reason(request.form.get("reason"))
    require_operator(deployment, requested_mode="Migrating", source="ui", reason=reason)
    if not reason:
        raise Problem(400, "invalid_request", NO_REASON)
    upgrade = current_runtime().upgrades.rollback(deployment.id, reason=reason, source="ui", actor=current().name,
                                                  address=client_address(), wait=False)
    return render_template("deployments/_change_started.html",
                           message=f"Rollback {upgrade.id} of upgrade {upgrade.rollback_of} started: "
                                   "its steps appear above as they happen.")
