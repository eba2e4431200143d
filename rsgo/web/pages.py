"""The browser pages: one view per page; an HTMX request for one live region gets that
region's partial, everything else the full page (Hypermedia Systems' "one endpoint, two answers").
"""

from __future__ import annotations

from flask import Blueprint, make_response, render_template, request, url_for
from markupsafe import Markup

from rsgo import audit
from rsgo.deployment_queries import find_deployment
from rsgo.models import Deployment, MaintenanceWindow
from rsgo.modes import TRIGGER_SOURCES, Mode, parse_mode
from rsgo.problems import Problem
from rsgo.security.principal import client_address, current, requires
from rsgo.web import current_runtime, dashboard_view, page_context, row_cache, time_context
from rsgo.web.api_input import clean_reason, int_param
from rsgo.web.api_json import audit_json, timestamp
from rsgo.web.operate_policy import observer_hold, require_operator
from rsgo.windows import WindowSpec

blueprint = Blueprint("pages", __name__)
# "Held by observer …: Normal will be refused" on every row, detail page and confirmation.
blueprint.add_app_template_global(observer_hold)
# The ``when`` macro's two renderings of an instant (rsgo/web/time_context.py).
blueprint.add_app_template_filter(time_context.iso_utc, "iso_utc")
blueprint.add_app_template_filter(time_context.utc_text, "utc_text")

HISTORY_PAGE_SIZE = 25


@blueprint.app_template_global()
def dashboard_slot(d: dict, can_operate: bool):
    """A dashboard row's slot, rendered once per change of its stack (rsgo/web/row_cache.py)."""
    runtime = current_runtime()
    cache = row_cache.cache_of(runtime)
    if cache is None:
        return Markup(render_template("dashboard/_slot.html", d=d, can_operate=can_operate, oob=None))
    return cache.slot(d, bool(can_operate))



@blueprint.app_context_processor
def config_failure():
    """A rejected config reload, for the banner every signed-in page shows until a reload succeeds."""
    failure = current_runtime().reload_failure
    if failure is None or current().anonymous:
        return {}
    return {"config_failure": {"at": timestamp(failure.at), "problems": failure.problems}}


def _asked_region() -> str | None:
    """The live region an HTMX request wants on its own (its ``HX-Target``), if any."""
    return request.htmx.target if request.htmx else None


@blueprint.get("/")
@requires("read")
def dashboard():
    """Every deployment, by environment, with the counts bar and the search (README "The dashboard"):
    ``?environment=NAME`` shows that environment only, ``?state=`` and ``?q=`` narrow the list."""
    context = dashboard_view.context(current_runtime(), request.args)
    if _asked_region() == "deployment-list":
        answer = make_response(render_template("dashboard/_list_answer.html", **context))
        # The address bar shows this view's own URL (no empty "q="): typing replaces the entry, a
        # click on a count adds one (Back returns to the previous filter). A refresh changes none.
        trigger = request.htmx.trigger or ""
        if trigger == "dashboard-search" or trigger.startswith("filter-"):
            history = "HX-Replace-Url" if trigger == "dashboard-search" else "HX-Push-Url"
            answer.headers[history] = context["filters"].url()
        return answer
    return render_template("dashboard/index.html", live_topics="dashboard", **context)


@blueprint.get("/deployments/<ref>")
@requires("read")
def deployment_page(ref: str):
    deployment = find_deployment(ref, request.args.get("environment") or None, forgotten=True)
    if deployment.forgotten_at is not None:  # gone but for its history (rsgo/forgetting.py)
        entries = audit.entries(deployment_id=deployment.id, limit=HISTORY_PAGE_SIZE + 1)
        return render_template("deployments/forgotten.html", deployment=deployment,
                               forgotten_at=timestamp(deployment.forgotten_at), **_history_context(
            entries, page_context.history_rows_id(deployment.id), "pages.deployment_history", ref=deployment.id))
    if _asked_region() == f"change-status-{deployment.id}":  # a started change asks how it went
        status = page_context.change_status(deployment, int_param("transition", 0), current_runtime())
        if status and status["outcome"] == "running":  # its text only: the line keeps listening
            return render_template("deployments/_change_started.html", status=status, inner=True)
        return render_template("deployments/_change_started.html", status=status), {"HX-Reswap": "outerHTML"}
    d = page_context.detail(deployment, current_runtime())
    regions = {f"{prefix}-{d['id']}": template for prefix, template in page_context.DEPLOYMENT_REGIONS.items()}
    context = {"d": d, "t": page_context.latest_transition(deployment.id)}
    if _asked_region() in regions:
        return render_template(regions[_asked_region()], **context)
    entries = audit.entries(deployment_id=deployment.id, limit=HISTORY_PAGE_SIZE + 1)
    rows_id = page_context.history_rows_id(deployment.id)
    if _asked_region() == rows_id:
        return render_template("history/_rows.html", entries=[audit_json(e) for e in entries[:HISTORY_PAGE_SIZE]])
    return render_template("deployments/show.html", **context, live_topics=f"deployment:{deployment.id}",
                           **_history_context(entries, rows_id,
                                              "pages.deployment_history", ref=deployment.id))


@blueprint.get("/deployments/<ref>/history")
@requires("read")
def deployment_history(ref: str):
    deployment = find_deployment(ref, request.args.get("environment") or None, forgotten=True)
    entries = audit.entries(deployment_id=deployment.id, before=int_param("before", None),
                            limit=HISTORY_PAGE_SIZE + 1)
    return render_template("history/_page.html", **_history_context(
        entries, f"history-rows-{deployment.id}", "pages.deployment_history", ref=deployment.id))


@blueprint.get("/history")
@requires("read")
def history():
    filters = {key: request.args.get(key) or None for key in ("deployment", "source", "actor")}
    deployment_id = find_deployment(filters["deployment"], forgotten=True).id if filters["deployment"] else None
    entries = audit.entries(deployment_id=deployment_id, source=filters["source"], actor=filters["actor"],
                            before=int_param("before", None), limit=HISTORY_PAGE_SIZE + 1)
    filtered = any(filters.values())
    rows_id = "history-rows-filtered" if filtered else page_context.history_rows_id(None)
    context = _history_context(entries, rows_id, "pages.history",
                               **{k: v for k, v in filters.items() if v})
    context.update(filters=filters, filtered=filtered, show_deployment=True)
    if request.args.get("before"):
        return render_template("history/_page.html", **context)
    if _asked_region() == "history-table":
        return render_template("history/_table.html", **context)
    if _asked_region() == rows_id:
        return render_template("history/_rows.html", **context)
    return render_template("history/index.html", **context, live_topics="history" if not filtered else "",
                           sources=TRIGGER_SOURCES, all_deployments=Deployment.select().order_by(Deployment.name))


def _history_context(entries, rows_id: str, endpoint: str, **url_args) -> dict:
    page = entries[:HISTORY_PAGE_SIZE]
    more = len(entries) > HISTORY_PAGE_SIZE
    next_url = url_for(endpoint, before=page[-1].id, **url_args) if more and page else None
    return {"entries": [audit_json(e) for e in page], "rows_id": rows_id, "more_id": f"more-{rows_id}",
            "next_url": next_url}


@blueprint.get("/deployments/<ref>/mode-change")
@requires("operate")
def mode_change_form(ref: str):
    """The confirmation step: what the change will do, and a reason. Without ``to``: nothing (cancel)."""
    deployment = find_deployment(ref)
    if not request.args.get("to"):
        return ""
    target = parse_mode(request.args["to"])
    d = page_context.detail(deployment, current_runtime())
    return render_template("deployments/_mode_change_form.html", d=d, target=target.value,
                           preview=page_context.preview(deployment, target, current_runtime()),
                           hold=observer_hold(d))


@blueprint.post("/deployments/<ref>/mode-change")
@requires("read")
def change_mode(ref: str):
    deployment = find_deployment(ref)
    # Checked before anything is done or recorded: an unknown mode or a bad reason is a 400 and no entry.
    target = parse_mode(request.form.get("newMode", ""))
    reason = clean_reason(request.form.get("reason"))
    # The confirmation's Force checkbox (shown while an observer holds Maintenance): the API's "force".
    force = request.form.get("force") == "true"
    require_operator(deployment, requested_mode=target.value, source="ui", reason=reason)
    if not reason:
        raise Problem(400, "invalid_request", "Give a reason: it is shown in the history.")
    change = current_runtime().transitions.change_mode(
        deployment.id, target.value, source="ui", actor=current().name, reason=reason, force=force, wait=False,
        address=client_address())
    if change.outcome == "noop":
        message = f"{deployment.name} is already in {change.new_mode.value}; nothing was done."
    else:
        message = f"Changing {deployment.name} to {change.new_mode.value}{' (forced)' if force else ''}…"
    # The message turns into the outcome by itself (page_context.change_status).
    status = change.transition and page_context.change_status(deployment, change.transition.id, current_runtime())
    return render_template("deployments/_change_started.html", message=message, status=status, first=True)


@blueprint.post("/deployments/<ref>/observer/check")
@requires("operate")
def check_observer(ref: str):
    deployment = find_deployment(ref)
    if current_runtime().observers.check(deployment.id) is None:
        raise Problem(404, "not_found", f"{deployment.name} has no observer")
    return render_template("deployments/_observer.html", d=page_context.detail(deployment, current_runtime()))


@blueprint.post("/deployments/<ref>/windows")
@requires("operate")
def add_adhoc_window(ref: str):
    """"Maintenance for N hours": a one-time window from now, so nobody forgets to end it."""
    deployment = find_deployment(ref)
    try:
        hours = float(request.form.get("hours", ""))
    except ValueError:
        raise Problem(400, "invalid_request", "hours must be a number") from None
    if not 0 < hours <= 24 * 7:
        raise Problem(400, "invalid_request", "hours must be more than 0 and at most a week (168)")
    reason = clean_reason(request.form.get("reason"))
    if not reason:
        raise Problem(400, "invalid_request", "Give a reason: it is shown in the history.")
    windows = current_runtime().windows
    windows.add(deployment, WindowSpec("ad hoc", reason, duration=hours * 3600), origin="ui",
                created_by=current().name)
    windows.evaluate()
    return render_template("deployments/_windows.html", d=page_context.detail(deployment, current_runtime()))


@blueprint.post("/deployments/<ref>/windows/<int:window_id>/delete")
@requires("operate")
def delete_window(ref: str, window_id: int):
    """Remove a window; one that alone holds the stack's Maintenance ends it, as the remover's change."""
    deployment, window = _removable_window(ref, window_id)
    runtime = current_runtime()
    reason = clean_reason(request.form.get("reason"))
    if runtime.windows.removal_ends_maintenance(window) and not reason:
        raise Problem(400, "invalid_request", f"Give a reason: removing {window.name} ends the Maintenance of "
                      f"{deployment.name} now, and the history records it as yours.")
    change = runtime.windows.remove(window, actor=current().name, source="ui", reason=reason, wait=False,
                                    address=client_address())
    d = page_context.detail(deployment, runtime)
    if _asked_region() != f"window-removal-{deployment.id}":
        return render_template("deployments/_windows.html", d=d)
    status = change and change.transition and page_context.change_status(deployment, change.transition.id, runtime)
    return render_template("deployments/_window_removed.html", d=d, status=status, first=True, window=window)


@blueprint.get("/deployments/<ref>/windows/<int:window_id>/delete")
@requires("operate")
def window_removal_form(ref: str, window_id: int):
    """The confirmation of a removal: whether it ends Maintenance, what starts then, and a reason."""
    deployment, window = _removable_window(ref, window_id)
    if request.args.get("cancel"):
        return ""
    runtime = current_runtime()
    return render_template("deployments/_window_removal_form.html", d=page_context.detail(deployment, runtime),
                           window=window, ends=runtime.windows.removal_ends_maintenance(window),
                           preview=page_context.preview(deployment, Mode.NORMAL, runtime))


def _removable_window(ref: str, window_id: int):
    deployment = find_deployment(ref)
    window = MaintenanceWindow.get_or_none((MaintenanceWindow.id == window_id)
                                           & (MaintenanceWindow.deployment == deployment.id))
    if window is None or window.origin == "config":
        raise Problem(404, "not_found", "no such window (windows from the config file are changed there)")
    return deployment, window
