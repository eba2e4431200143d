"""Who is asking, and may they (docs/design.md#security): sessions for people, bearer tokens for
scripts, CSRF for browsers.

Every request gets a ``Principal`` in ``g.principal`` before its view runs. Views declare
what they need with ``@requires("read" | "operate" | "admin")``; a token limited to some
stacks is checked with ``visible``. Only the endpoints in ``PUBLIC_ENDPOINTS`` answer
anonymous callers.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app, g, redirect, request, session, url_for

from rsgo.problems import Problem
from rsgo.security import accounts, permissions, tokens

# Orchestrators' probes: answered without looking at any credential, so a stray or bad
# Authorization header can neither be needed nor get them refused.
PROBE_ENDPOINTS = {"probes.healthz", "probes.readyz"}
PUBLIC_ENDPOINTS = {"auth.login", "auth.setup", "static", *PROBE_ENDPOINTS}
SESSION_KEY = "session_key"  # the cookie field naming the signed-in user
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Principal:
    kind: str  # user, token, anonymous
    name: str  # the actor the audit trail records
    permissions: frozenset = frozenset()
    stacks: frozenset | None = None  # a token limited to these stacks
    via_session: bool = False
    role: str | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal("anonymous", "anonymous")


def current() -> Principal:
    return getattr(g, "principal", ANONYMOUS)


def client_address() -> str:
    return request.remote_addr or "unknown"


def _from_request() -> Principal:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Problem(401, "unauthorized", "use Authorization: Bearer <token>")
        try:
            token = tokens.authenticate(credential.strip())
        except tokens.TokenRejected as rejected:
            raise Problem(401, "unauthorized", str(rejected)) from None
        stacks = tokens.stacks_of(token)
        return Principal("token", f"token:{token.name}", permissions.of_scope(token.scope),
                         frozenset(stacks) if stacks is not None else None)
    key = session.get(SESSION_KEY)
    if key is not None:
        # The cookie names its user by the user's session key (see accounts): a sign-out, a role change
        # or a deletion replaces or removes that key, which ends every session that carries it.
        user = accounts.user_of_session(key)
        if user is not None:
            return Principal("user", user.username, permissions.of_role(user.role), via_session=True,
                             role=user.role)
        session.clear()
    return ANONYMOUS


def sign_in(user) -> None:
    """Start a browser session for ``user``; the cookie carries the user's session key."""
    session.clear()  # a new session for a new identity (no fixation)
    session.permanent = True
    session[SESSION_KEY] = user.session_key


def session_key() -> str | None:
    """The session key of this request's signed-in browser session (None for tokens and anonymous)."""
    return session.get(SESSION_KEY) if current().via_session else None


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token", "")
    return bool(expected) and hmac.compare_digest(expected, sent)


def same_origin() -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return False
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme in ("http", "https")


def before_request():
    if request.endpoint in PROBE_ENDPOINTS:
        g.principal = ANONYMOUS
        return None
    g.principal = _from_request()
    public = request.endpoint in PUBLIC_ENDPOINTS or request.endpoint in current_app.config.get(
        "RSGO_PUBLIC_ENDPOINTS", ())  # per app: /metrics with RSGO_METRICS_PUBLIC=true
    live = request.endpoint == "__flask_sock.live_updates"
    if g.principal.anonymous and not public and not live:
        # Nobody is signed in: say how to authenticate (401 for the API, the sign-in page for people),
        # whatever the method; a CSRF refusal would hide that.
        if request.path.startswith("/api/") or request.path == "/metrics":
            raise Problem(401, "unauthorized", "sign in, or send Authorization: Bearer <token>",
                          headers={"WWW-Authenticate": 'Bearer realm="rsgo"'})
        if request.headers.get("HX-Request"):
            # An HTMX request whose session ended: send the whole page to the login form.
            return "", 401, {"HX-Redirect": url_for("auth.login", next=request.referrer or "/")}
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if g.principal.stacks is not None and not public and not request.path.startswith("/api/"):
        # Only the API checks a token's stacks on every route; the pages show and change every stack.
        raise Problem(403, "forbidden", f"{g.principal.name} is limited to some stacks and works only on /api/")
    bearer = g.principal.kind == "token"
    if request.method not in SAFE_METHODS and not bearer and not _csrf_ok():
        # Browsers send cookies on their own; only a page of ours knows the session's CSRF token.
        raise Problem(403, "csrf_failed", "missing or wrong CSRF token; reload the page and try again")
    if live:
        if not g.principal.via_session:
            raise Problem(401, "unauthorized", "the live connection needs a signed-in browser session")
        if not same_origin():
            raise Problem(403, "forbidden", "the live connection must come from this site's own pages")
    return None


def requires(permission: str):
    """The view needs ``permission`` (read, operate, admin) — 403 otherwise."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = current()
            if not principal.can(permission):
                raise Problem(403, "forbidden", f"{principal.name} may not do this (needs {permission})")
            return view(*args, **kwargs)

        wrapper.required_permission = permission
        return wrapper

    return decorate


def visible(deployment) -> bool:
    """A token limited to some stacks sees only those; to it, the others do not exist (the API's
    lookups answer the unknown-stack 404, so it cannot even learn their names)."""
    principal = current()
    return principal.stacks is None or deployment.name in principal.stacks
