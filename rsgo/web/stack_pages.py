"""The dashboard's actions on stacks as a whole (README "The dashboard"): forgetting a stack without
containers, and one mode change for the stacks selected with their checkboxes. Operators only; the
same domain calls as the API (rsgo/forgetting.py, rsgo/bulk_change.py)."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from rsgo import bulk_change, forgetting
from rsgo.deployment_queries import find_deployment
from rsgo.modes import Mode, is_allowed, parse_mode
from rsgo.problems import Problem
from rsgo.security.principal import client_address, current, requires
from rsgo.web import current_runtime
from rsgo.web.api_input import clean_reason
from rsgo.web.api_stacks import resolve

blueprint = Blueprint("stack_pages", __name__)

BULK_MODES = (Mode.MAINTENANCE, Mode.NORMAL, Mode.STOPPED)  # what the bar offers (Migrating is an upgrade's)


def _reason() -> str:
    reason = clean_reason(request.form.get("reason"))
    if not reason:
        raise Problem(400, "invalid_request", "Give a reason: it is shown in the history.")
    return reason


@blueprint.get("/deployments/<ref>/forget")
@requires("operate")
def forget_form(ref: str):
    """The confirmation of a forget, with a reason; without ``confirm``: nothing (cancel)."""
    deployment = find_deployment(ref)
    if not request.args.get("confirm"):
        return ""
    return render_template("dashboard/_forget_form.html", d=deployment)


@blueprint.post("/deployments/<ref>/forget")
@requires("operate")
def forget(ref: str):
    deployment = find_deployment(ref)
    reason = _reason()
    forgetting.forget(current_runtime(), deployment.id, source="ui", actor=current().name, reason=reason,
                      address=client_address())
    return render_template("dashboard/_forgotten.html", d=deployment, reason=reason,
                           history_url=url_for("pages.deployment_page", ref=deployment.id))


def _selected() -> list[str]:
    refs = request.values.getlist("deployment")
    if not refs:
        raise Problem(400, "invalid_request", "Select at least one stack.")
    if len(refs) > bulk_change.MAX_STACKS:
        raise Problem(400, "invalid_request", f"Select at most {bulk_change.MAX_STACKS} stacks at once.")
    return refs


def _bulk_mode(value: str | None) -> Mode:
    mode = parse_mode(value or "")
    if mode not in BULK_MODES:
        raise Problem(400, "invalid_request", f"{mode.value} is not offered for several stacks at once; "
                                              f"choose {', '.join(m.value for m in BULK_MODES)}")
    return mode


@blueprint.get("/bulk/mode-change")
@requires("operate")
def bulk_confirm():
    """The confirmation: every selected stack, what it will do (or why it will be refused), one reason."""
    target = _bulk_mode(request.args.get("to"))
    items = []
    for ref, deployment, missing in resolve(_selected()):
        if deployment is None:
            items.append({"ref": ref, "d": None, "note": missing[2]})
            continue
        current_mode = Mode(current_runtime().transitions.shown(deployment).mode)
        note = None
        if current_mode is target:
            note = f"already in {target.value}: nothing will be done"
        elif not is_allowed(current_mode, target):
            note = f"will be refused: {current_mode.value} cannot go to {target.value}"
        items.append({"ref": ref, "d": deployment, "mode": current_mode.value, "note": note})
    return render_template("dashboard/_bulk_confirm.html", items=items, target=target.value)


@blueprint.post("/bulk/mode-change")
@requires("operate")
def bulk_change_modes():
    target = _bulk_mode(request.form.get("newMode"))
    refs = _selected()
    reason = _reason()
    results = bulk_change.change_modes(current_runtime(), resolve(refs), target.value, source="ui",
                                       actor=current().name, reason=reason, address=client_address())
    counts = {kind: sum(1 for r in results if r.result == kind) for kind in ("started", "unchanged", "refused")}
    return render_template("dashboard/_bulk_result.html", results=results, target=target.value, counts=counts)
