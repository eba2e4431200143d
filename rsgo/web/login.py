"""Signing in and out, and the one-time setup of the first admin."""

from __future__ import annotations

import logging

from flask import Blueprint, redirect, render_template, request, session, url_for

from rsgo.security import accounts, event_log
from rsgo.security.principal import client_address, current, requires, session_key, sign_in
from rsgo.web import current_runtime, ws

blueprint = Blueprint("auth", __name__)
log = logging.getLogger(__name__)


def _limiter():
    return current_runtime().login_limiter


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send people elsewhere."""
    # Browsers drop tabs and newlines from a Location ("/\t/evil.example" is "//evil.example") and read
    # "\\" as "/": such a target is refused, not cleaned.
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target)):
        return target
    return url_for("pages.dashboard")


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if not current().anonymous:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("auth/login.html", next=request.args.get("next", ""), error=None)
    username = (request.form.get("username") or "").strip()
    address = client_address()
    keys = (f"user:{username.lower()}", f"address:{address}")
    wait = _limiter().attempt(*keys)  # counted as a failure until the password proves right
    if wait:
        event_log.record("login.throttled", actor=username or "?", address=address)
        return render_template("auth/login.html", next=request.form.get("next", ""), username=username,
                               error=f"Too many failed sign-ins. Try again in {int(wait) + 1} seconds."), 429, \
            {"Retry-After": str(int(wait) + 1)}
    user = accounts.authenticate(username, request.form.get("password") or "")
    if user is None:
        event_log.record("login.failed", actor=username or "?", address=address)
        log.info("failed sign-in for %r from %s", username, address)
        return render_template("auth/login.html", next=request.form.get("next", ""), username=username,
                               error="Wrong user name or password."), 401
    _limiter().succeeded(*keys)
    _limiter().clear(keys[0])
    sign_in(user)
    event_log.record("login.succeeded", actor=user.username, address=address)
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
@requires("read")
def logout():
    """Ends every session of this user: a copied cookie must not outlive a sign-out (cookies are
    signed, not stored, so the user's session key is what a cookie is checked against). A token
    caller has no session to end."""
    user = accounts.user_of_session(session_key())
    if user is not None:
        ws.end_sessions(accounts.end_sessions(user))  # its open websockets close now, too
    event_log.record("logout", actor=current().name, address=client_address())
    session.clear()
    return redirect(url_for("auth.login"))


@blueprint.route("/setup", methods=["GET", "POST"])
def setup():
    """The first admin, created with the token rsgo printed to its log. Works once."""
    token = request.values.get("token", "")
    if not accounts.setup_token_valid(token):
        return render_template("auth/setup_used.html"), 404
    if request.method == "GET":
        return render_template("auth/setup.html", token=token, error=None)
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    if password != request.form.get("password_again", ""):
        return render_template("auth/setup.html", token=token, username=username,
                               error="The two passwords differ."), 400
    try:
        user = accounts.complete_setup(token, username, password)
    except accounts.AccountError as error:
        return render_template("auth/setup.html", token=token, username=username, error=str(error)), 400
    event_log.record("setup.completed", actor=user.username, address=client_address())
    sign_in(user)
    return redirect(url_for("pages.dashboard"))
