"""Wiring the security of the web surface (docs/design.md#security): sessions, the auth hook,
response headers, template helpers, and what happens on the very first start (no users yet)."""

from __future__ import annotations

import datetime as dt
import logging

from flask import request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from rsgo.security import accounts, principal

log = logging.getLogger(__name__)


CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",  # no inline script, no eval: htmx runs with allowEval off
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # the websocket is same-origin
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookies behind HTTPS even when RSGO_SECURE_COOKIES is ``auto``."""

    def __init__(self, secure: str):
        self._secure = secure

    def get_cookie_secure(self, app) -> bool:
        if self._secure == "auto":
            return request.is_secure
        return self._secure == "true"


def register(app, settings) -> None:
    app.config.update(
        SESSION_COOKIE_NAME="rsgo_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(seconds=settings.session_lifetime),
    )
    app.session_interface = _SessionInterface(settings.secure_cookies)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
                                x_host=settings.trusted_proxies)
    app.before_request(principal.before_request)

    @app.after_request
    def security_headers(response):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def principal_helpers():
        who = principal.current()
        return {"csrf_token": principal.csrf_token, "principal": who, "can_operate": who.can("operate"),
                "can_admin": who.can("admin")}


SETUP_LINK_JOB = "setup-link"


def first_start(settings, scheduler=None) -> None:
    """No users yet: create the admin from RSGO_ADMIN_PASSWORD, or print a one-time setup link.
    Never "the first visitor becomes admin". The link is printed again every RSGO_SETUP_LINK_INTERVAL
    on ``scheduler`` until it is used: a line printed once scrolls out of view within a minute."""
    if accounts.has_users():
        return
    if settings.admin_password:
        accounts.create_user(settings.admin_user, settings.admin_password, "admin")
        log.info("created the admin %r from RSGO_ADMIN_PASSWORD", settings.admin_user)
        return
    token = accounts.new_setup_token()
    host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    link = f"http://{host}:{settings.port}/setup?token={token}"
    _print_setup_link(link)
    if scheduler is not None:
        interval = settings.setup_link_interval
        scheduler.every(SETUP_LINK_JOB, interval, _remind_of_setup_link, scheduler, link, token,
                        first_run=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=interval))


def _print_setup_link(link: str) -> None:
    log.warning("no users yet: create the first admin at %s (works once)", link)


def _remind_of_setup_link(scheduler, link: str, token: str) -> None:
    from rsgo.db import release_thread_connection

    try:
        if accounts.setup_token_valid(token):
            _print_setup_link(link)
            return
        scheduler.remove(SETUP_LINK_JOB)
        log.info("the setup link was used (or an admin was made otherwise): it is no longer printed")
    finally:
        release_thread_connection()
