"""Admin pages: users, API tokens, webhooks and their deliveries, and the security log."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from rsgo import notifications as notification_service
from rsgo import webhook_trial
from rsgo import webhooks as webhook_service
from rsgo.models import ApiToken, NotificationDelivery, User, Webhook, WebhookDelivery
from rsgo.observers.http import mask_url
from rsgo.security import accounts, event_log
from rsgo.security import tokens as api_tokens  # the module; ``tokens`` is the Tokens page's view
from rsgo.security.principal import client_address, current, requires
from rsgo.stack_config import WEBHOOK_EVENTS
from rsgo.web import current_runtime, ws

blueprint = Blueprint("admin", __name__, url_prefix="/admin")


@blueprint.get("/users")
@requires("admin")
def users(error: str | None = None, status: int = 200):
    return render_template("admin/users.html", users=User.select().order_by(User.username), roles=accounts.ROLES,
                           error=error), status


@blueprint.post("/users")
@requires("admin")
def create_user():
    try:
        user = accounts.create_user(request.form.get("username", ""), request.form.get("password", ""),
                                    request.form.get("role", ""))
    except accounts.AccountError as error:
        return users(str(error), 400)
    event_log.record("user.created", actor=current().name, address=client_address(),
                        detail=f"{user.username} ({user.role})")
    return redirect(url_for("admin.users"))


@blueprint.post("/users/<int:user_id>/role")
@requires("admin")
def change_role(user_id: int):
    user = User.get_or_none(User.id == user_id)
    if user is None:
        return users("no such user", 404)
    try:
        ended = accounts.set_role(user, request.form.get("role", ""))
    except accounts.AccountError as error:
        return users(str(error), 400)
    ws.end_sessions(ended)  # a new role takes a new sign-in; open websockets close now
    event_log.record("user.changed", actor=current().name, address=client_address(),
                        detail=f"{user.username} is now {user.role}")
    return redirect(url_for("admin.users"))


@blueprint.post("/users/<int:user_id>/delete")
@requires("admin")
def delete_user(user_id: int):
    user = User.get_or_none(User.id == user_id)
    if user is None:
        return users("no such user", 404)
    try:
        ended = accounts.delete_user(user)
    except accounts.AccountError as error:
        return users(str(error), 400)
    ws.end_sessions(ended)
    event_log.record("user.deleted", actor=current().name, address=client_address(), detail=user.username)
    return redirect(url_for("admin.users"))


@blueprint.get("/tokens")
@requires("admin")
def tokens(error: str | None = None, created: str | None = None, status: int = 200):
    return render_template("admin/tokens.html", tokens=ApiToken.select().order_by(ApiToken.id.desc()),
                           scopes=api_tokens.SCOPES, error=error, created=created), status


@blueprint.post("/tokens")
@requires("admin")
def create_token():
    try:
        row, clear = api_tokens.create_token(
            request.form.get("name", ""), request.form.get("scope", ""), created_by=current().name,
            stacks=(request.form.get("stacks") or "").split(","),
            expires_at=api_tokens.expiry(request.form.get("expires_in")))
    except api_tokens.TokenError as error:
        return tokens(str(error), status=400)
    event_log.record("token.created", actor=current().name, address=client_address(),
                        detail=f"{row.name} ({row.scope})")
    # Shown once, in this answer only; the database keeps only its hash.
    return tokens(created=clear)


@blueprint.post("/tokens/<int:token_id>/revoke")
@requires("admin")
def revoke_token(token_id: int):
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None:
        return tokens("no such token", status=404)
    api_tokens.revoke(row)
    event_log.record("token.revoked", actor=current().name, address=client_address(), detail=row.name)
    return redirect(url_for("admin.tokens"))


@blueprint.get("/security")
@requires("admin")
def security():
    return render_template("admin/security.html", events=event_log.recent())


DELIVERIES_SHOWN = 100


@blueprint.get("/webhooks")
@requires("admin")
def webhooks(error: str | None = None, status: int = 200):
    hooks = [{"id": hook.id, "name": hook.name, "url": mask_url(hook.url), "events": hook.event_list,
              "origin": hook.origin, "signed": bool(hook.secret), "created_by": hook.created_by}
             for hook in Webhook.select().order_by(Webhook.origin, Webhook.name)]
    deliveries = [{"row": row, "webhook": row.webhook.name, "attempts": webhook_service.attempts_of(row)}
                  for row in WebhookDelivery.select(WebhookDelivery, Webhook).join(Webhook)
                  .order_by(WebhookDelivery.id.desc()).limit(DELIVERIES_SHOWN)]
    runtime = current_runtime()
    notifications = [{"name": entry.name, "url": entry.shown_url, "events": entry.events, "stacks": entry.stacks}
                     for entry in runtime.notifications.entries.values()]
    sent = [{"row": row, "attempts": notification_service.attempts_of(row)}
            for row in NotificationDelivery.select().order_by(NotificationDelivery.id.desc()).limit(DELIVERIES_SHOWN)]
    return render_template("admin/webhooks.html", webhooks=hooks, deliveries=deliveries, events=WEBHOOK_EVENTS,
                           secret_mask=webhook_service.SECRET_MASK, test_event=webhook_trial.TEST_EVENT,
                           notifications=notifications, notification_deliveries=sent,
                           notification_test_event=notification_service.TEST_EVENT, error=error), status


@blueprint.post("/webhooks")
@requires("admin")
def add_webhook():
    try:
        hook = current_runtime().webhooks.add(
            request.form.get("name", ""), request.form.get("url", ""), request.form.get("secret"),
            request.form.getlist("events"), created_by=current().name)
    except webhook_service.WebhookError as error:
        return webhooks(str(error), 400)
    event_log.record("webhook.created", actor=current().name, address=client_address(),
                        detail=f"{hook.name} ({hook.events})")
    return redirect(url_for("admin.webhooks"))


@blueprint.post("/webhooks/<int:webhook_id>/delete")
@requires("admin")
def delete_webhook(webhook_id: int):
    hook = Webhook.get_or_none(Webhook.id == webhook_id)
    if hook is None:
        return webhooks("no such webhook", 404)
    try:
        webhook_service.WebhookDispatcher.remove(hook)
    except webhook_service.WebhookError as error:
        return webhooks(str(error), 400)
    event_log.record("webhook.deleted", actor=current().name, address=client_address(), detail=hook.name)
    return redirect(url_for("admin.webhooks"))


@blueprint.post("/webhooks/<int:webhook_id>/test")
@requires("admin")
def test_webhook(webhook_id: int):
    """"Send test": a signed ``webhook.test`` event now; the answer (HTML, in place) says how it went."""
    hook = Webhook.get_or_none(Webhook.id == webhook_id)
    if hook is None:
        return render_template("admin/_webhook_test_result.html", missing=True), 404
    runtime = current_runtime()
    result = webhook_trial.send_test(runtime.webhooks, hook, actor=current().name,
                                     environment=runtime.settings.environment)
    return render_template("admin/_webhook_test_result.html", result=result, hook=hook)


@blueprint.post("/notifications/test")
@requires("admin")
def test_notification():
    """"Send test" of one ``notifications:`` entry (form field ``name``): sent now, its result in place."""
    entry = current_runtime().notifications.entries.get(request.form.get("name", ""))
    if entry is None:
        return render_template("admin/_notification_test_result.html", missing=True), 404
    row = current_runtime().notifications.send_test(entry, current().name)
    return render_template("admin/_notification_test_result.html", row=row)
