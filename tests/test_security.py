"""Who may see and change what (§11), against real ``rsgo serve`` processes, the real Docker engine,
a real websocket client and real Chromium.

Every route the app has is looked up in its url_map, so a new route fails these tests until it is
classified in ``NEEDS`` (or ``PUBLIC``). Attack inputs tried here: no credentials, unknown and
malformed bearer tokens, a session cookie signed with a guessed key, a viewer escalating its own
role, tokens of the wrong scope, tokens limited to another stack (API and pages), expired and
revoked tokens, missing / wrong / another session's CSRF token, websockets without a session,
with a bearer token, with a foreign / look-alike / ``null`` / missing Origin, a viewer asking the
hub for the operators' fragments, XSS payloads as reason, stack name (container label), observed
value, window name and in reflected query and form fields, login guessing per user name (also in
other letter case) and per address, X-Forwarded-For spoofing, open redirects in ``next``, reuse of
the one-time setup link, and secrets from the config in responses and the log.
"""

from __future__ import annotations

import http.server
import re
import sqlite3
import threading
import time
import uuid
from functools import cached_property
from html import unescape
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
import websocket
import yaml
from conftest import ADMIN_PASSWORD, ADMIN_USER, Stack, wait_until
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from markupsafe import escape
from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = '"><script>alert(1)</script>'
RAW_MARKERS = ("<img src=x", "<script>alert(1)")  # either in a response means a payload got through unescaped
PASSWORD = "correct horse battery"

# What each route needs beyond a sign-in. Views may check more inside (a viewer's PUT is refused
# and recorded there), so this is what the caller must be allowed to do for the route to *work*.
NEEDS = {
    "api.openapi": "read", "api.list_deployments": "read", "api.show_deployment": "read",
    "api.show_observer": "read", "api.check_observer": "operate", "api.list_windows": "read",
    "api.add_window": "operate", "api.delete_window": "operate", "api.reload_config": "admin",
    "api.show_operation_mode": "read", "api.change_operation_mode": "operate", "api.deployment_history": "read",
    "api.global_history": "read", "api.show_transition": "read",
    "pages.dashboard": "read", "pages.deployment_page": "read", "pages.deployment_history": "read",
    "pages.history": "read", "pages.mode_change_form": "operate", "pages.change_mode": "operate",
    "pages.check_observer": "operate", "pages.add_adhoc_window": "operate", "pages.delete_window": "operate",
    "auth.logout": "read",
    "admin.users": "admin", "admin.create_user": "admin", "admin.change_role": "admin", "admin.delete_user": "admin",
    "admin.tokens": "admin", "admin.create_token": "admin", "admin.revoke_token": "admin", "admin.security": "admin",
    "admin.webhooks": "admin", "admin.add_webhook": "admin", "admin.delete_webhook": "admin",
    "metrics.scrape": "read",
}
CHECKED_INSIDE = {"metrics.scrape"}  # views that check the caller themselves instead of with @requires
# Public, and what an anonymous caller gets there (a POST without the CSRF token is refused even here).
PUBLIC = {("static", "GET"): 200, ("probes.healthz", "GET"): 200, ("probes.readyz", "GET"): 200,
          ("auth.login", "GET"): 200, ("auth.login", "POST"): 403,
          ("auth.setup", "GET"): 404, ("auth.setup", "POST"): 403}
LIVE = "__flask_sock.live_updates"
ROLE_PERMISSIONS = {"viewer": {"read"}, "operator": {"read", "operate"}, "admin": {"read", "operate", "admin"}}
# Routes that act on the stack with an observer (the others act on the plain stack).
OBSERVER_ROUTES = {"api.show_observer", "api.check_observer", "pages.check_observer"}


# -- helpers ---------------------------------------------------------------------------------

def deployment(server, name: str, containers: int, timeout: float = 15) -> dict:
    """Found by name in the list (a name may hold a "/", which no path segment can)."""
    def seen():
        items = requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10).json()["items"]
        found = [d for d in items if d["name"] == name]
        if found and found[0]["containers"]["total"] == containers:
            return requests.get(f"{server.url}/api/deployments/{found[0]['id']}", headers=server.headers,
                                timeout=10).json()
        return None

    return wait_until(seen, timeout, interval=0.1, message=f"discovery of {name!r} with {containers} containers")


def api_put(server, ref, mode: str, headers=None, session=None, **body) -> requests.Response:
    caller = session or requests
    return caller.put(f"{server.url}/api/deployments/{ref}/operation-mode", json={"newMode": mode, **body},
                      headers=headers if session is None else None, timeout=60)


def mode_of(server, ref) -> str:
    return requests.get(f"{server.url}/api/deployments/{ref}", headers=server.headers, timeout=10).json()[
        "operationMode"]


def create_user(server, role: str, name: str | None = None) -> str:
    name = name or f"{role}-{uuid.uuid4().hex[:6]}"
    server.cli("user", "create", name, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
    return name


def create_token(server, scope: str, *args: str) -> tuple[str, str]:
    name = f"{scope}-{uuid.uuid4().hex[:6]}"
    return name, server.cli("token", "create", name, "--scope", scope, *args)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def csrf_in(html: str) -> str:
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', html) or re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def sign_in(server, username: str, password: str = PASSWORD, headers: dict | None = None):
    """A fresh browser-like session posting the login form; returns (session, the POST's answer)."""
    session = requests.Session()
    session.headers.update(headers or {})
    form = session.get(f"{server.url}/login", timeout=10)
    answer = session.post(f"{server.url}/login", data={"username": username, "password": password,
                                                       "csrf_token": csrf_in(form.text)},
                          timeout=30, allow_redirects=False)
    if answer.status_code == 302:
        session.headers["X-CSRF-Token"] = csrf_in(session.get(f"{server.url}/", timeout=10).text)
    return session, answer


def assert_problem(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.request.method, response.url, response.status_code,
                                            response.text[:500])
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["code"] == code and body["status"] == status, body
    return body


def assert_refused_page(response: requests.Response, status: int = 403):
    assert response.status_code == status, (response.request.method, response.url, response.status_code,
                                            response.text[:500])


def database_rows(server, query: str, *params) -> list[tuple]:
    connection = sqlite3.connect(f"file:{server.env['RSGO_DATA_DIR']}/rsgo.sqlite3?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(query, params).fetchall()
    finally:
        connection.close()


def admin_page(server, path: str) -> str:
    response = requests.get(f"{server.url}{path}", headers=server.headers, timeout=10)
    assert response.status_code == 200, response.text[:300]
    return response.text


def token_row(server, name: str) -> list[str]:
    """The cells of a token's row on the admin tokens page (name, scope, stacks, expires, last used, ...)."""
    html = admin_page(server, "/admin/tokens")
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.DOTALL):
        cells = re.findall(r"<td>(.*?)</td>", row, re.DOTALL)
        if cells and re.match(rf"{re.escape(name)} <small", cells[0]):
            return [re.sub(r"\s+", " ", unescape(c)).strip() for c in cells] + [row]
    raise AssertionError(f"no row for token {name} on /admin/tokens")


def token_id(server, name: str) -> int:
    return int(re.search(r'action="/admin/tokens/(\d+)/revoke"', token_row(server, name)[-1]).group(1))


def token_id_by_hint(server, token: str) -> int:
    html = admin_page(server, "/admin/tokens")
    row = next(r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.DOTALL) if f"rsgo_{token[5:9]}…" in r)
    return int(re.search(r'action="/admin/tokens/(\d+)/revoke"', row).group(1))


def user_id(server, name: str) -> int:
    html = admin_page(server, "/admin/users")
    return int(re.search(rf'action="/admin/users/(\d+)/role" class="inline-form" aria-label="Role of '
                         rf'{re.escape(name)}"', html).group(1))


def role_of(server, name: str) -> str | None:
    rows = database_rows(server, "SELECT role FROM users WHERE username = ?", name)
    return rows[0][0] if rows else None


def security_events(server) -> list[tuple[str, str, str, str]]:
    """(what, who, from, detail) of every row on the security log page, newest first."""
    html = admin_page(server, "/admin/security")
    return [tuple(unescape(c) for c in row) for row in
            re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", html)]


def no_controls(html: str) -> list[str]:
    """Anything on a page that would let its reader change something (the sign-out form aside)."""
    found = []
    for marker in ("mode-actions", "/mode-change", "Check now", "hx-post", "hx-delete", "hx-put",
                   "Start maintenance now", ">Remove<"):
        if marker in html:
            found.append(marker)
    return found


class Live:
    """A websocket to /ws like a page opens, whose reader thread keeps every fragment."""

    def __init__(self, server, topics: str, session: requests.Session | None = None, origin: str | None = "same",
                 headers: list[str] | None = None):
        options = {"timeout": 30, "header": list(headers or [])}
        if session is not None:
            options["cookie"] = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        if origin is None:
            options["suppress_origin"] = True
        else:
            options["origin"] = server.url if origin == "same" else origin
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?topics={topics}", **options)
        self.messages: list[str] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:  # noqa: BLE001 - closed
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            with self._arrived:
                self.messages.append(data.decode() if isinstance(data, bytes) else data)
                self._arrived.notify_all()

    def wait_for(self, predicate, timeout: float = 15, what: str = "a matching fragment") -> str:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for text in self.messages:
                    if predicate(text):
                        return text
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {timeout}s among {len(self.messages)} messages: "
                                         + "\n---\n".join(m[:300] for m in self.messages[-4:]))
                self._arrived.wait(remaining)

    def close(self):
        try:
            self.ws.close(timeout=2)
        except Exception:  # noqa: BLE001, S110 - already closed
            pass
        self._reader.join(timeout=5)


@pytest.fixture
def live_pages():
    """Websockets opened by a test, closed before its servers stop (open ones would hold their shutdown)."""
    opened = []

    def open_(*args, **kwargs) -> Live:
        page = Live(*args, **kwargs)
        opened.append(page)
        return page

    yield open_
    for page in opened:
        page.close()


def refused_handshake(server, topics="dashboard", **kwargs) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Live(server, topics, **kwargs).close()
    return refused.value.status_code


@pytest.fixture
def routes(make_app, tmp_path):
    """(endpoint, method, rule) of every route of the app, taken from its url_map."""
    app = make_app(background=False, data_dir=tmp_path / "route-map")
    found = [(rule.endpoint, method, rule) for rule in app.url_map.iter_rules()
             for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    endpoints = {endpoint for endpoint, _, _ in found}
    unclassified = endpoints - set(NEEDS) - {e for e, _ in PUBLIC} - {LIVE}
    assert not unclassified, f"classify these new routes in NEEDS or PUBLIC of test_security.py: {unclassified}"
    for endpoint, _, _ in found:  # every non-public view declares what it needs (the checks below test it)
        if endpoint in NEEDS and endpoint not in CHECKED_INSIDE:
            assert getattr(app.view_functions[endpoint], "required_permission", None), endpoint
    return found


class Estate:
    """A server with a plain stack (``a``, two containers) and one watched by a file observer (``o``),
    a real transition, a real window, and ids for every kind of route argument."""

    def __init__(self, make_server, make_stack, tmp_path, **environ):
        self.a = make_stack("sa")
        self.a.add("api")
        self.a.add("worker")
        self.o = make_stack("so")
        self.o.add("app")
        self.flag = tmp_path / "maintenance.flag"
        config = tmp_path / "rsgo.yml"
        config.write_text(yaml.safe_dump({"stacks": {self.o.name: {"maintenanceObserver": {
            "type": "file", "path": str(self.flag), "mode": "exists", "maintenanceValue": "true",
            "pollingInterval": "1s"}}},
            "webhooks": [{"name": "estate hook", "url": "http://127.0.0.1:9/hook", "events": ["mode.changed"]}]}))
        self.server = make_server(RSGO_CONFIG=str(config), **environ).start()
        server = self.server
        self.a_id = deployment(server, self.a.name, 2)["id"]
        self.o_id = deployment(server, self.o.name, 1)["id"]

    # The rest is made when a route first needs it.
    @cached_property
    def transition_id(self) -> int:
        done = api_put(self.server, self.a_id, "Maintenance", self.server.headers, reason="setup")
        assert done.status_code == 200, done.text
        assert api_put(self.server, self.a_id, "Normal", self.server.headers, reason="setup").status_code == 200
        return done.json()["transition"]["id"]

    @cached_property
    def window_id(self) -> int:
        window = requests.post(f"{self.server.url}/api/deployments/{self.a_id}/windows", headers=self.server.headers,
                               json={"name": "far away", "start": "2099-01-01T00:00:00+00:00",
                                     "end": "2099-01-01T01:00:00+00:00", "reason": "setup"}, timeout=10)
        assert window.status_code == 201, window.text
        return window.json()["id"]

    @cached_property
    def admin_id(self) -> int:
        return user_id(self.server, ADMIN_USER)

    @cached_property
    def admin_token_id(self) -> int:
        return token_id_by_hint(self.server, self.server.token)

    @cached_property
    def webhook_id(self) -> int:
        """The webhook from the config file."""
        return wait_until(lambda: database_rows(self.server, "SELECT id FROM webhooks WHERE name = 'estate hook'"),
                          10, message="the config's webhook")[0][0]

    def path(self, rule, endpoint: str, user: int | None = None) -> str:
        values = {"ref": lambda: self.o_id if endpoint in OBSERVER_ROUTES else self.a_id,
                  "transition_id": lambda: self.transition_id, "window_id": lambda: self.window_id,
                  "token_id": lambda: self.admin_token_id, "webhook_id": lambda: self.webhook_id,
                  "user_id": lambda: user if user is not None else self.admin_id, "filename": lambda: "rsgo.css"}
        unknown = set(rule.arguments) - set(values)
        assert not unknown, f"{rule.rule}: give the test a real value for {unknown}"
        path = rule.rule
        for name in rule.arguments:
            path = re.sub(rf"<(?:[^:<>]+:)?{name}>", str(values[name]()), path)
        return path + ("?to=Maintenance" if endpoint == "pages.mode_change_form" else "")


def call(server, caller, method: str, endpoint: str, path: str, tag: str, headers=None) -> requests.Response:
    """The request a real client of the route would send: a valid body, so a refusal is about who asks."""
    kwargs = {"timeout": 60, "allow_redirects": False, "headers": headers}
    if endpoint == "api.change_operation_mode":
        kwargs["json"] = {"newMode": "Maintenance", "reason": f"{tag} tries"}
    elif endpoint == "api.add_window":
        kwargs["json"] = {"duration": "1h", "reason": f"{tag} tries"}
    elif endpoint == "pages.change_mode":
        kwargs["data"] = {"newMode": "Maintenance", "reason": f"{tag} tries"}
    elif endpoint == "pages.add_adhoc_window":
        kwargs["data"] = {"hours": "1", "reason": f"{tag} tries"}
    elif endpoint == "admin.create_user":
        kwargs["data"] = {"username": f"made-by-{tag}", "password": PASSWORD, "role": "admin"}
    elif endpoint == "admin.change_role":
        kwargs["data"] = {"role": "admin"}
    elif endpoint == "admin.create_token":
        kwargs["data"] = {"name": f"made-by-{tag}", "scope": "admin"}
    elif endpoint == "admin.add_webhook":
        kwargs["data"] = {"name": f"made-by-{tag}", "url": "http://127.0.0.1:9/x", "events": ["mode.changed"]}
    elif method in ("POST", "PUT") and path.startswith("/api/"):
        kwargs["json"] = {}
    return caller.request(method, f"{server.url}{path}", **kwargs)


@pytest.fixture
def estate(make_server, make_stack, tmp_path):
    return Estate(make_server, make_stack, tmp_path)


# -- 1. every route, every role --------------------------------------------------------------

def test_anonymous_callers_get_401_from_the_api_and_the_sign_in_page_everywhere_else(estate, routes):
    server = estate.server
    anonymous = requests.Session()
    for endpoint, method, rule in routes:
        path = estate.path(rule, endpoint)
        if endpoint == LIVE:  # the route matches websocket handshakes only
            assert refused_handshake(server) == 401
            continue
        response = call(server, anonymous, method, endpoint, path, "anonymous")
        if (endpoint, method) in PUBLIC:
            assert response.status_code == PUBLIC[(endpoint, method)], (method, path, response.text[:300])
        elif path.startswith("/api/") or path == "/metrics":
            body = assert_problem(response, 401, "unauthorized")
            assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), path
            assert "Authorization: Bearer" in body["detail"]
        else:
            assert response.status_code == 302, (method, path, response.status_code, response.text[:300])
            location = urlsplit(response.headers["Location"])
            assert location.path == "/login", (path, response.headers["Location"])
            assert quote(path.split("?")[0], safe="") in location.query or path.split("?")[0] in location.query
        if path.startswith("/api/") or path == "/metrics":
            # Credentials that are not a valid token are refused the same way, never ignored.
            for header in (f"Bearer rsgo_{uuid.uuid4().hex}", f"Bearer {server.token[:-2]}xx", "Bearer ",
                           f"Basic {server.token}", server.token, f"Bearer {server.token[5:]}"):
                forged = call(server, requests, method, endpoint, path, "forged", headers={"Authorization": header})
                assert_problem(forged, 401, "unauthorized")

    # An HTMX request of a page whose session ended is sent to the sign-in page as a whole.
    htmx = requests.get(f"{server.url}/", headers={"HX-Request": "true", "HX-Target": "deployment-list"}, timeout=10)
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")
    # A session cookie signed with a guessed key is no session.
    guess = Flask("guess")
    guess.secret_key = "changeme"
    forged = SecureCookieSessionInterface().get_signing_serializer(guess).dumps(
        {"user_id": estate.admin_id, "version": 1, "csrf": "x"})
    response = requests.get(f"{server.url}/admin/users", cookies={"rsgo_session": forged}, timeout=10,
                            allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    # Nothing anyone anonymous sent changed anything.
    assert mode_of(server, estate.a_id) == "Normal" and estate.a.is_running("api") and estate.a.is_running("worker")
    assert database_rows(server, "SELECT count(*) FROM audit_entries WHERE actor LIKE '%anonymous%' "
                                 "OR reason LIKE '%anonymous%' OR reason LIKE '%forged%'") == [(0,)]
    assert database_rows(server, "SELECT count(*) FROM users") == [(1,)]


def test_a_viewer_reads_every_page_and_route_but_sees_no_controls_and_is_refused_every_change(estate, routes):
    server = estate.server
    name = create_user(server, "viewer")
    viewer, answer = sign_in(server, name)
    assert answer.status_code == 302
    own_id = user_id(server, name)

    for endpoint, method, rule in routes:
        if (endpoint, method) in PUBLIC or endpoint in (LIVE, "auth.logout"):
            continue
        # The viewer tries to make itself admin, and to delete the admin and revoke the admin's token.
        path = estate.path(rule, endpoint, user=own_id if endpoint == "admin.change_role" else None)
        response = call(server, viewer, method, endpoint, path, "viewer")
        if NEEDS[endpoint] in ROLE_PERMISSIONS["viewer"]:
            assert response.status_code == 200, (method, path, response.status_code, response.text[:300])
        elif path.startswith("/api/") or path == "/metrics":
            assert_problem(response, 403, "forbidden")
        else:
            assert_refused_page(response)

    # Refused, and nothing happened: the stack runs, the viewer is still a viewer, no user or token was made.
    assert mode_of(server, estate.a_id) == "Normal"
    assert estate.a.is_running("api") and estate.a.is_running("worker") and estate.o.is_running("app")
    assert role_of(server, name) == "viewer" and role_of(server, ADMIN_USER) == "admin"
    assert role_of(server, "made-by-viewer") is None
    assert database_rows(server, "SELECT count(*) FROM api_tokens WHERE name = 'made-by-viewer'") == [(0,)]
    if "admin.add_webhook" in {endpoint for endpoint, _, _ in routes}:
        assert database_rows(server, "SELECT name FROM webhooks") == [("estate hook",)]  # none made, none removed
    assert requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10).status_code == 200
    windows = requests.get(f"{server.url}/api/deployments/{estate.a_id}/windows", headers=server.headers, timeout=10)
    assert [w["id"] for w in windows.json()["items"]] == [estate.window_id]
    # Both refused mode changes are in the audit trail with who asked and from where.
    refused = database_rows(server, "SELECT source, actor, address, outcome, requested_mode FROM audit_entries "
                                    "WHERE deployment_id = ? AND actor = ? ORDER BY source", estate.a_id, name)
    assert refused == [("api", name, "127.0.0.1", "rejected", "Maintenance"),
                       ("ui", name, "127.0.0.1", "rejected", "Maintenance")]
    history = requests.get(f"{server.url}/api/history", params={"actor": name}, headers=server.headers,
                           timeout=10).json()["items"]
    assert sorted((e["source"], e["outcome"], e["deployment"]) for e in history) == [
        ("api", "rejected", estate.a.name), ("ui", "rejected", estate.a.name)]

    # The pages show the viewer no control at all: no mode buttons, no "Check now", no window form.
    for path in ("/", f"/deployments/{estate.a_id}", f"/deployments/{estate.o_id}", "/history"):
        html = viewer.get(f"{server.url}{path}", timeout=10).text
        assert name in html and not no_controls(html), (path, no_controls(html))
    observer_region = viewer.get(f"{server.url}/deployments/{estate.o_id}", timeout=10,
                                 headers={"HX-Request": "true", "HX-Target": f"observer-{estate.o_id}"}).text
    assert "Observer" in observer_region and "Check now" not in observer_region
    operator, _ = sign_in(server, create_user(server, "operator"))
    assert "Check now" in operator.get(f"{server.url}/deployments/{estate.o_id}", timeout=10).text
    assert "mode-actions" in operator.get(f"{server.url}/", timeout=10).text


def test_an_operator_changes_modes_and_checks_observers_but_cannot_manage_users_or_tokens(estate, routes):
    server = estate.server
    name = create_user(server, "operator")
    operator, _ = sign_in(server, name)

    for endpoint, method, rule in routes:
        if (endpoint, method) in PUBLIC or endpoint in (LIVE, "auth.logout"):
            continue
        needed = NEEDS[endpoint]
        if method != "GET" and needed != "admin":
            continue  # the allowed changes follow, one by one, with their effects checked
        path = estate.path(rule, endpoint)
        response = call(server, operator, method, endpoint, path, "operator")
        if needed in ROLE_PERMISSIONS["operator"]:
            assert response.status_code == 200, (method, path, response.status_code, response.text[:300])
        elif path.startswith("/api/") or path == "/metrics":
            assert_problem(response, 403, "forbidden")
        else:
            assert_refused_page(response)
    assert role_of(server, "made-by-operator") is None and role_of(server, name) == "operator"
    assert database_rows(server, "SELECT count(*) FROM api_tokens WHERE name = 'made-by-operator'") == [(0,)]

    # A mode change through the API with the session: the containers really stop.
    changed = api_put(server, estate.a_id, "Maintenance", session=operator, reason="operator via api")
    assert changed.status_code == 200, changed.text
    assert not estate.a.is_running("api") and not estate.a.is_running("worker")
    assert changed.json()["deployment"]["trigger"]["actor"] == name
    # And back through the page's form: they start again.
    form = operator.post(f"{server.url}/deployments/{estate.a_id}/mode-change",
                         data={"newMode": "Normal", "reason": "operator via form"}, timeout=30)
    assert form.status_code == 200 and "Changing" in form.text, form.text
    wait_until(lambda: estate.a.is_running("api") and estate.a.is_running("worker"), 20,
               message="the containers to start again")
    wait_until(lambda: mode_of(server, estate.a_id) == "Normal", 20, message="Normal")
    # Observers: check now, through the API and the page.
    checked = operator.post(f"{server.url}/api/deployments/{estate.o_id}/observer/check", timeout=30)
    assert checked.status_code == 200 and checked.json()["lastCheckAt"], checked.text
    region = operator.post(f"{server.url}/deployments/{estate.o_id}/observer/check", timeout=30)
    assert region.status_code == 200 and "Check now" in region.text
    # Windows: add one, remove it through the page.
    window = operator.post(f"{server.url}/api/deployments/{estate.a_id}/windows", timeout=30,
                           json={"name": "op window", "start": "2098-01-01T00:00:00+00:00",
                                 "end": "2098-01-01T01:00:00+00:00"})
    assert window.status_code == 201, window.text
    removed = operator.post(f"{server.url}/deployments/{estate.a_id}/windows/{window.json()['id']}/delete", timeout=30)
    assert removed.status_code == 200 and "op window" not in removed.text


def test_an_admin_reaches_every_page_and_creates_a_user_with_the_form(estate, routes):
    server = estate.server
    admin = server.login()
    for endpoint, method, rule in routes:
        if method == "GET" and (endpoint, method) not in PUBLIC and endpoint != LIVE:
            path = estate.path(rule, endpoint)
            response = call(server, admin, method, endpoint, path, "admin")
            assert response.status_code == 200, (path, response.status_code, response.text[:300])

    form = admin.get(f"{server.url}/admin/users", timeout=10).text
    created = admin.post(f"{server.url}/admin/users", timeout=30, allow_redirects=False,
                         data={"username": "made-by-admin", "password": PASSWORD, "role": "operator",
                               "csrf_token": csrf_in(form)})
    assert created.status_code == 302, created.text
    assert role_of(server, "made-by-admin") == "operator"
    assert "made-by-admin" in admin.get(f"{server.url}/admin/users", timeout=10).text
    _, answer = sign_in(server, "made-by-admin")
    assert answer.status_code == 302
    reloaded = admin.post(f"{server.url}/api/config/reload", timeout=30)
    assert reloaded.status_code == 200 and reloaded.json()["observers"] == 1
    assert ("user.created", ADMIN_USER, "127.0.0.1", "made-by-admin (operator)") in security_events(server)


# -- 2. tokens -------------------------------------------------------------------------------

def test_each_token_scope_allows_exactly_its_routes(estate):
    server = estate.server
    read_name, read = create_token(server, "read")
    operate_name, operate = create_token(server, "operate")
    _, admin = create_token(server, "admin")
    reload_url = f"{server.url}/api/config/reload"
    check_url = f"{server.url}/api/deployments/{estate.o_id}/observer/check"

    assert requests.get(f"{server.url}/api/deployments/{estate.a_id}", headers=bearer(read), timeout=10).ok
    assert_problem(api_put(server, estate.a_id, "Maintenance", bearer(read), reason="read token"), 403, "forbidden")
    assert_problem(requests.post(check_url, headers=bearer(read), timeout=10), 403, "forbidden")
    assert_problem(requests.post(reload_url, headers=bearer(read), timeout=10), 403, "forbidden")
    assert estate.a.is_running("api")
    entry = requests.get(f"{server.url}/api/deployments/{estate.a_id}/history", headers=bearer(read),
                         timeout=10).json()["items"][0]
    assert (entry["outcome"], entry["actor"], entry["reason"]) == ("rejected", f"token:{read_name}", "read token")

    changed = api_put(server, estate.a_id, "Maintenance", bearer(operate), reason="operate token")
    assert changed.status_code == 200, changed.text
    assert changed.json()["deployment"]["trigger"]["actor"] == f"token:{operate_name}"
    assert not estate.a.is_running("api") and not estate.a.is_running("worker")
    assert requests.post(check_url, headers=bearer(operate), timeout=30).status_code == 200
    assert_problem(requests.post(reload_url, headers=bearer(operate), timeout=10), 403, "forbidden")
    # Admin pages are admin-only for tokens too.
    assert requests.get(f"{server.url}/admin/tokens", headers=bearer(operate), timeout=10).status_code == 403

    reloaded = requests.post(reload_url, headers=bearer(admin), timeout=30)
    assert reloaded.status_code == 200 and reloaded.json()["stacks"] == [estate.o.name]


def test_a_token_limited_to_stack_a_can_neither_see_nor_touch_stack_b(estate, make_stack):
    server = estate.server
    a, b = estate.a, estate.o  # b: the observed stack, with an observer, a history and a transition
    b_change = api_put(server, estate.o_id, "Migrating", server.headers, reason="b history")
    assert b_change.status_code == 200
    b_transition = b_change.json()["transition"]["id"]
    assert api_put(server, estate.o_id, "Normal", server.headers, reason="b history").status_code == 200
    _, token = create_token(server, "operate", "--stacks", a.name)
    headers = bearer(token)

    def get(path):
        return requests.get(f"{server.url}{path}", headers=headers, timeout=10)

    history_before = len(database_rows(server, "SELECT id FROM audit_entries WHERE deployment_id = ?", estate.o_id))
    # To a token limited to A, stack B does not exist: the same 404 as an unknown stack (by name and by
    # id), so it cannot even learn which stacks there are.
    for ref in (b.name, estate.o_id):
        for suffix in ("", "/operation-mode", "/history", "/observer", "/windows"):
            assert_problem(get(f"/api/deployments/{ref}{suffix}"), 404, "not_found")
        assert_problem(api_put(server, ref, "Maintenance", headers, reason="limited token on b"), 404, "not_found")
        assert_problem(requests.post(f"{server.url}/api/deployments/{ref}/observer/check", headers=headers,
                                     timeout=10), 404, "not_found")
        assert_problem(requests.post(f"{server.url}/api/deployments/{ref}/windows", headers=headers, timeout=10,
                                     json={"duration": "1h", "reason": "limited token on b"}), 404, "not_found")
    assert_problem(get(f"/api/transitions/{b_transition}"), 404, "not_found")
    assert_problem(get(f"/api/history?deployment={estate.o_id}"), 404, "not_found")
    assert len(database_rows(server, "SELECT id FROM audit_entries WHERE deployment_id = ?",
                             estate.o_id)) == history_before, "the refused requests were written to B's history"
    # The pages show and change every stack: a token limited to some may not use them at all.
    for path in ("/", f"/deployments/{estate.o_id}", "/history", f"/deployments/{estate.o_id}/history"):
        assert_refused_page(get(path))
    assert_refused_page(requests.post(f"{server.url}/deployments/{estate.o_id}/mode-change", headers=headers,
                                      data={"newMode": "Maintenance", "reason": "limited token via page"}, timeout=10))
    assert b.is_running("app") and mode_of(server, estate.o_id) == "Normal"
    assert [w for w in requests.get(f"{server.url}/api/deployments/{estate.o_id}/windows", headers=server.headers,
                                    timeout=10).json()["items"]] == []

    # Stack A works, and the lists show only A.
    assert get(f"/api/deployments/{a.name}").status_code == 200
    changed = api_put(server, a.name, "Maintenance", headers, reason="limited token on a")
    assert changed.status_code == 200 and not a.is_running("api")
    listed = get("/api/deployments").json()["items"]
    assert [d["name"] for d in listed] == [a.name]
    history = get("/api/history").json()["items"]
    assert history and {e["deployment"] for e in history} == {a.name}


def test_expired_and_revoked_tokens_are_refused_and_the_database_keeps_no_token_in_clear(estate):
    server = estate.server
    expiring_name, expiring = create_token(server, "read", "--expires-in", "1s")
    revoked_name, revoked = create_token(server, "operate")
    fresh_name, fresh = create_token(server, "read", "--stacks", estate.a.name, "--expires-in", "1h")

    def status(token):
        return requests.get(f"{server.url}/api/deployments", headers=bearer(token), timeout=10).status_code

    # Expired: refused once its second has passed (the deadline only bounds the wait).
    wait_until(lambda: status(expiring) == 401, 10, interval=0.2, message="the token to expire")
    body = assert_problem(requests.get(f"{server.url}/api/deployments", headers=bearer(expiring), timeout=10),
                          401, "unauthorized")
    assert "expired" in body["detail"]
    assert token_row(server, expiring_name)[3] != "never"

    # Last used: "never" until the token is used, then a time.
    assert token_row(server, fresh_name)[4] == "never"
    assert status(fresh) == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", token_row(server, fresh_name)[4])

    # Revoked through the admin page (a signed-in admin, the form with its CSRF token).
    assert status(revoked) == 200
    admin = server.login()
    page = admin.get(f"{server.url}/admin/tokens", timeout=10).text
    answer = admin.post(f"{server.url}/admin/tokens/{token_id(server, revoked_name)}/revoke", timeout=10,
                        data={"csrf_token": csrf_in(page)}, allow_redirects=False)
    assert answer.status_code == 302
    body = assert_problem(api_put(server, estate.a_id, "Maintenance", bearer(revoked), reason="revoked"),
                          401, "unauthorized")
    assert "revoked" in body["detail"]
    assert status(revoked) == 401 and estate.a.is_running("api")
    assert token_row(server, revoked_name)[6].startswith("revoked")
    assert ("token.revoked", ADMIN_USER, "127.0.0.1", revoked_name) in security_events(server)

    # The database: no token, nor the random part of one, in any column of any table, nor in the files.
    tokens = [expiring, revoked, fresh, server.token]
    needles = [t for token in tokens for t in (token, token[5:], token[9:])]
    data_dir = Path(server.env["RSGO_DATA_DIR"])
    tables = [row[0] for row in database_rows(server, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert "api_tokens" in tables
    for table in tables:
        columns = [row[1] for row in database_rows(server, f'PRAGMA table_info("{table}")')]
        for column in columns:
            for needle in needles:
                hits = database_rows(server, f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0',
                                     needle)
                assert hits == [(0,)], f"{table}.{column} holds a token in clear"
    stored = database_rows(server, "SELECT token_hash FROM api_tokens")
    assert len(stored) >= 4 and all(re.fullmatch(r"[0-9a-f]{64}", h) for (h,) in stored)
    files = [p for p in data_dir.iterdir() if p.name.startswith("rsgo.sqlite3")]
    assert files
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, f"{path.name} holds a token in clear"


# -- 3. CSRF ---------------------------------------------------------------------------------

def test_state_changing_browser_requests_need_the_sessions_csrf_token(estate):
    server = estate.server
    session = server.login()
    good = session.headers.pop("X-CSRF-Token")
    other = server.login().headers["X-CSRF-Token"]  # a real token, of somebody else's session
    put_url = f"{server.url}/api/deployments/{estate.a_id}/operation-mode"
    form_url = f"{server.url}/deployments/{estate.a_id}/mode-change"

    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": other},
                    {"X-CSRF-Token": good[:-1]}):
        refused = session.put(put_url, json={"newMode": "Maintenance", "reason": "csrf"}, headers=headers, timeout=10)
        assert_problem(refused, 403, "csrf_failed")
    for fields in ({}, {"csrf_token": ""}, {"csrf_token": "wrong"}, {"csrf_token": other}):
        refused = session.post(form_url, data={"newMode": "Maintenance", "reason": "csrf", **fields}, timeout=10)
        assert refused.status_code == 403 and "CSRF" in refused.text
        refused = session.post(f"{server.url}/logout", data=fields, timeout=10, allow_redirects=False)
        assert refused.status_code == 403
    assert estate.a.is_running("api") and mode_of(server, estate.a_id) == "Normal"
    assert session.get(f"{server.url}/", timeout=10, allow_redirects=False).status_code == 200  # still signed in
    # The login form itself needs it too (no signing somebody in to the attacker's account).
    assert requests.post(f"{server.url}/login", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
                         timeout=10).status_code == 403

    done = session.put(put_url, json={"newMode": "Maintenance", "reason": "with csrf"},
                       headers={"X-CSRF-Token": good}, timeout=60)
    assert done.status_code == 200, done.text
    assert not estate.a.is_running("api")
    form = session.post(form_url, data={"newMode": "Normal", "reason": "with csrf", "csrf_token": good}, timeout=30)
    assert form.status_code == 200, form.text
    wait_until(lambda: estate.a.is_running("api"), 20, message="the form's change to start the containers")
    out = session.post(f"{server.url}/logout", data={"csrf_token": good}, timeout=10, allow_redirects=False)
    assert out.status_code == 302
    after = session.get(f"{server.url}/", timeout=10, allow_redirects=False)
    assert after.status_code == 302 and after.headers["Location"].startswith("/login")


# -- 4. websocket ----------------------------------------------------------------------------

def test_the_websocket_needs_a_session_and_this_sites_origin(estate, live_pages):
    server = estate.server
    a_id = estate.a_id
    viewer_session, _ = sign_in(server, create_user(server, "viewer"))
    operator_session, _ = sign_in(server, create_user(server, "operator"))

    assert refused_handshake(server) == 401  # no session
    assert refused_handshake(server, headers=[f"Authorization: Bearer {server.token}"]) == 401  # tokens are no session
    assert refused_handshake(server, session=operator_session, origin="http://evil.example") == 403
    assert refused_handshake(server, session=operator_session, origin=f"{server.url}.evil.example") == 403
    assert refused_handshake(server, session=operator_session, origin=f"http://localhost:{server.port}") == 403
    assert refused_handshake(server, session=operator_session, origin="null") == 403
    assert refused_handshake(server, session=operator_session, origin=None) == 403  # no Origin at all

    topics = f"dashboard,deployment:{a_id}"
    operator = live_pages(server, topics, session=operator_session)
    viewer = live_pages(server, topics, session=viewer_session)
    # A viewer asking for the operators' fragments gets its own (or nothing), never theirs.
    sneaky = live_pages(server, f"dashboard|operate,deployment:{a_id}|operate,dashboard", session=viewer_session)

    def settled(mode):
        return lambda text: f'id="mode-{a_id}"' in text and f'data-mode="{mode}"' in text and "Changing mode" not in text

    for mode in ("Maintenance", "Normal"):
        assert api_put(server, a_id, mode, server.headers, reason=f"push {mode}").status_code == 200
        pushed = operator.wait_for(settled(mode), what=f"the operator's {mode} fragment")
        assert "mode-actions" in pushed and "/mode-change" in pushed
        viewer.wait_for(settled(mode), what=f"the viewer's {mode} fragment")
        sneaky.wait_for(lambda text, mode=mode: f'id="deployment-{a_id}"' in text and f'data-mode="{mode}"' in text,
                        what=f"the viewer's dashboard fragment ({mode})")
    operator.wait_for(lambda text: f'id="deployment-{a_id}"' in text and "mode-actions" in text,
                      what="the operator's dashboard row with buttons")
    for page in (viewer, sneaky):
        assert page.messages
        for text in page.messages:
            assert not no_controls(text), no_controls(text)


# -- 5. XSS and the headers ------------------------------------------------------------------

def test_payloads_in_reasons_names_and_observed_values_render_as_text_everywhere_with_no_csp_violation(
        make_server, make_stack, tmp_path, live_pages, docker_client):
    uid = uuid.uuid4().hex[:6]
    stack_name = f"x{uid}{XSS_IMG}{XSS_SCRIPT}"  # a label value may hold any of these characters
    observed = f"{XSS_IMG}{XSS_SCRIPT}{uid}"
    reason = f"why {XSS_IMG} {XSS_SCRIPT}"
    window_name = f"w{XSS_IMG}"
    x = Stack(docker_client, f"xss{uid}")
    try:
        x.add("app", stack_label=stack_name)
        plain = make_stack("sr")
        plain.add("api")
        value_file = tmp_path / "observed.txt"
        config = tmp_path / "rsgo.yml"
        config.write_text(yaml.safe_dump({"stacks": {stack_name: {"maintenanceObserver": {
            "type": "file", "path": str(value_file), "mode": "content", "maintenanceValue": observed,
            "pollingInterval": "1s"}}}}))
        server = make_server(RSGO_CONFIG=str(config)).start()
        x_id = deployment(server, stack_name, 1)["id"]
        r_id = deployment(server, plain.name, 1)["id"]
        operator_name = create_user(server, "operator")
        operator, _ = sign_in(server, operator_name)
        live = live_pages(server, f"dashboard,history,deployment:{x_id},deployment:{r_id}", session=operator)

        value_file.write_text(observed)  # the observer reads the payload and puts the stack into Maintenance
        wait_until(lambda: mode_of(server, x_id) == "Maintenance", 15, message="the observer's Maintenance")
        assert not x.is_running("app")
        assert api_put(server, r_id, "Maintenance", session=operator, reason=reason).status_code == 200
        form = operator.post(f"{server.url}/deployments/{r_id}/mode-change", timeout=30,
                             data={"newMode": "Normal", "reason": reason})
        assert form.status_code == 200
        wait_until(lambda: mode_of(server, r_id) == "Normal", 20, message="Normal again")
        window = operator.post(f"{server.url}/api/deployments/{r_id}/windows", timeout=30,
                               json={"name": window_name, "reason": reason, "start": "2099-01-01T00:00:00+00:00",
                                     "end": "2099-01-01T01:00:00+00:00"})
        assert window.status_code == 201, window.text

        stored = {"stack name": escape(stack_name), "observed value": escape(observed), "reason": escape(reason),
                  "window name": escape(window_name)}

        def safe(html: str, where: str, *expected: str) -> None:
            for marker in RAW_MARKERS:
                assert marker not in html, f"{where}: unescaped {marker!r}"
            for what in expected:
                assert stored[what] in html, f"{where}: the {what} is missing (escaped)"

        # Full pages.
        pages = {"/": ("stack name", "observed value", "reason"),
                 f"/deployments/{x_id}": ("stack name", "observed value"),
                 f"/deployments/{r_id}": ("reason", "window name"),
                 "/history": ("stack name", "observed value", "reason"),
                 f"/deployments/{x_id}/history": ("observed value",)}
        for path, expected in pages.items():
            safe(operator.get(f"{server.url}{path}", timeout=10).text, path, *expected)
        # HTMX fragments of the live regions.
        regions = {("/", "deployment-list"): ("stack name", "observed value", "reason"),
                   (f"/deployments/{x_id}", f"mode-{x_id}"): ("observed value",),
                   (f"/deployments/{x_id}", f"observer-{x_id}"): ("observed value",),
                   (f"/deployments/{x_id}", f"history-rows-{x_id}"): ("observed value",),
                   (f"/deployments/{r_id}", f"history-rows-{r_id}"): ("reason",),
                   (f"/deployments/{r_id}", f"windows-{r_id}"): ("window name", "reason"),
                   ("/history", "history-table"): ("stack name", "reason")}
        for (path, target), expected in regions.items():
            fragment = operator.get(f"{server.url}{path}", headers={"HX-Request": "true", "HX-Target": target},
                                    timeout=10).text
            assert "<html" not in fragment, (path, target)
            safe(fragment, f"{path} #{target}", *expected)
        confirm = operator.get(f"{server.url}/deployments/{x_id}/mode-change?to=Normal",
                               headers={"HX-Request": "true"}, timeout=10).text
        safe(confirm, "the confirmation form", "stack name")
        checked = operator.post(f"{server.url}/deployments/{x_id}/observer/check", timeout=30,
                                headers={"HX-Request": "true", "HX-Target": f"observer-{x_id}"}).text
        safe(checked, "the observer's check-now answer", "observed value")
        # Reflected input: query strings, a wrong path, the login form.
        attack = quote(XSS_IMG + XSS_SCRIPT, safe="")
        for path in (f"/history?actor={attack}&source={attack}", f"/deployments/{attack}",
                     f"/deployments/{x_id}/mode-change?to={attack}", f"/login?next={attack}"):
            for html in (operator.get(f"{server.url}{path}", timeout=10).text,
                         requests.get(f"{server.url}{path}", timeout=10).text):
                safe(html, path)
        login_form = requests.Session()
        failed = login_form.post(f"{server.url}/login", timeout=10, data={
            "username": XSS_IMG + XSS_SCRIPT, "password": "x", "next": XSS_SCRIPT,
            "csrf_token": csrf_in(login_form.get(f"{server.url}/login", timeout=10).text)})
        assert failed.status_code == 401
        safe(failed.text, "the failed login form")
        # The websocket's fragments.
        live.wait_for(lambda t: stored["observed value"] in t and f'id="mode-{x_id}"' in t,
                      what="the observed value in a pushed mode region")
        live.wait_for(lambda t: stored["stack name"] in t and f'id="deployment-{x_id}"' in t,
                      what="the stack name in a pushed dashboard row")
        live.wait_for(lambda t: stored["reason"] in t and "<tr" in t, what="the reason in a pushed history row")
        assert "&lt;img" in "".join(live.messages)
        for text in live.messages:
            safe(text, "a websocket fragment")

        # The headers of every kind of answer.
        answers = [operator.get(f"{server.url}{p}", timeout=10) for p in
                   ("/", f"/deployments/{x_id}", "/login", "/api/deployments", "/api/nothing", "/static/rsgo.css",
                    "/healthz")] + [requests.get(f"{server.url}/", timeout=10, allow_redirects=False)]
        for answer in answers:
            csp = answer.headers["Content-Security-Policy"]
            directives = {d.strip().split()[0]: d.strip().split()[1:] for d in csp.split(";") if d.strip()}
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, csp
            assert directives["frame-ancestors"] == ["'none'"] and directives["script-src"] == ["'self'"], csp
            assert directives["object-src"] == ["'none'"] and "base-uri" in directives, csp
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert answer.headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin",
                                                         "strict-origin-when-cross-origin")
            assert answer.headers["X-Frame-Options"] == "DENY"

        _in_chromium(server, operator_name, x_id, r_id, stack_name, observed, reason)
    finally:
        for container in x.containers.values():
            container.remove(force=True)


def websocket_open(page) -> None:
    """The page's websocket is open: its indicator left "connecting" (it may still be re-fetching its regions)."""
    expect(page.locator("#live-status")).to_have_attribute("data-state", re.compile(r"^(live|syncing)$"),
                                                           timeout=10_000)


CSP_RECORDER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
});
"""


def _in_chromium(server, operator_name, x_id, r_id, stack_name, observed, reason):
    """Every page in real Chromium: no dialog, no injected element, no CSP violation (even while
    HTMX swaps fragments and the websocket pushes them)."""
    admin_name = create_user(server, "admin")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            dialogs, console, violations = [], [], []

            def watch(context):
                context.add_init_script(CSP_RECORDER)
                page = context.new_page()
                page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
                page.on("console", lambda message: console.append(message.text)
                        if "Content Security Policy" in message.text else None)
                return page

            def collect(page, where):
                assert page.locator('img[src="x"]').count() == 0, where
                assert page.evaluate("() => [...document.scripts].filter(s => s.textContent.includes('alert')).length") == 0
                violations.extend(f"{where}: {v}" for v in page.evaluate("() => window.__csp"))

            def sign_in_as(page, name, password):
                page.goto(f"{server.url}/login")
                page.get_by_label("User name").fill(name)
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{server.url}/")

            anonymous = browser.new_context()
            page = watch(anonymous)
            for path in ("/login", f"/login?next={quote(XSS_SCRIPT, safe='')}", "/setup?token=nothing"):
                page.goto(server.url + path)
                collect(page, path)
            page.goto(f"{server.url}/login")
            page.get_by_label("User name").fill(XSS_IMG + XSS_SCRIPT)
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
            collect(page, "failed login")
            anonymous.close()

            context = browser.new_context()
            page = watch(context)
            sign_in_as(page, operator_name, PASSWORD)
            websocket_open(page)
            row = page.locator(f"#deployment-{x_id}")
            expect(row.get_by_role("link").first).to_have_text(stack_name)  # the payload is the name, as text
            expect(row).to_contain_text(observed)
            # An HTMX swap (the confirmation form) and a websocket push while the page is open.
            page.get_by_role("button", name=f"Change {stack_name} to Normal").click()
            expect(page.get_by_role("form", name=f"Confirm the change of {stack_name} to Normal")).to_be_visible()
            assert api_put(server, r_id, "Migrating", server.headers, reason=reason).status_code == 200
            expect(page.locator(f"#deployment-{r_id}")).to_contain_text(reason, timeout=10_000)
            expect(page.locator(f"#deployment-{r_id} .mode")).to_contain_text("Migrating", timeout=10_000)
            collect(page, "dashboard")
            for path in (f"/deployments/{x_id}", f"/deployments/{r_id}", "/history",
                         f"/history?actor={quote(XSS_IMG, safe='')}", f"/deployments/{quote(XSS_IMG, safe='')}"):
                page.goto(server.url + path)
                if "?" not in path and "%3C" not in path:
                    websocket_open(page)
                collect(page, path)
            page.goto(f"{server.url}/deployments/{x_id}")
            websocket_open(page)
            page.get_by_role("button", name=f"Check the observer of {stack_name} now").click()
            expect(page.locator(f"#observer-{x_id}")).to_contain_text(observed)
            expect(page.locator(f"#history-rows-{x_id}")).to_contain_text(observed)
            collect(page, "detail page after check now")
            context.close()

            context = browser.new_context()
            page = watch(context)
            sign_in_as(page, admin_name, PASSWORD)
            for path in ("/admin/users", "/admin/tokens", "/admin/security"):
                page.goto(server.url + path)
                collect(page, path)
            page.goto(f"{server.url}/admin/security")
            expect(page.locator("table")).to_contain_text(XSS_IMG + XSS_SCRIPT)  # the failed login's user name
            collect(page, "security log")

            assert dialogs == [] and violations == [] and console == [], (dialogs, violations, console)

            # The recorder itself works: an inline script (what an injection would be) is reported.
            page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'alert(2)';"
                          " document.body.appendChild(s); }")
            wait_until(lambda: page.evaluate("() => window.__csp.length"), 5, message="the CSP recorder to fire")
            assert dialogs == []
            context.close()
        finally:
            browser.close()


# -- 6. login throttling, the security log, the setup link ------------------------------------

def test_the_sixth_wrong_password_is_429_per_user_name_and_per_address_and_the_log_shows_them(make_server):
    server = make_server(RSGO_TRUSTED_PROXIES="1").start()  # one proxy: X-Forwarded-For is the address
    alice, bob = create_user(server, "operator"), create_user(server, "viewer")

    def attempt(name, password, address):
        return sign_in(server, name, password, headers={"X-Forwarded-For": address})[1]

    # Per user name: five wrong passwords from five addresses; the sixth is refused, and so is the right one.
    for n in range(1, 6):
        assert attempt(alice, "wrong password", f"10.1.0.{n}").status_code == 401
    throttled = attempt(alice, "wrong password", "10.1.0.6")
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in throttled.text
    assert attempt(alice, PASSWORD, "10.1.0.7").status_code == 429
    assert attempt(alice.upper(), PASSWORD, "10.1.0.8").status_code == 429  # the name in other letter case
    assert attempt(f" {alice} ", PASSWORD, "10.1.0.8").status_code == 429
    assert attempt(bob, PASSWORD, "10.1.0.9").status_code == 302  # another user is not affected

    # Per address: five wrong guesses at five names from one address; then even bob's right password.
    for n in range(5):
        assert attempt(f"nobody{n}", "wrong password", "10.2.0.1").status_code == 401
    assert attempt(bob, PASSWORD, "10.2.0.1").status_code == 429
    assert attempt(bob, PASSWORD, "10.2.0.2").status_code == 302

    events = security_events(server)
    for n in range(1, 6):
        assert ("login.failed", alice, f"10.1.0.{n}", "") in events
    assert ("login.throttled", alice, "10.1.0.6", "") in events
    assert ("login.throttled", alice, "10.1.0.7", "") in events
    assert ("login.succeeded", bob, "10.1.0.9", "") in events
    assert ("login.failed", "nobody0", "10.2.0.1", "") in events
    assert ("login.throttled", bob, "10.2.0.1", "") in events
    assert not any(e[0] == "login.succeeded" and e[1] == alice for e in events)
    # Behind the trusted proxy, X-Forwarded-Proto: https makes the cookie Secure (RSGO_SECURE_COOKIES=auto).
    over_https = requests.get(f"{server.url}/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "secure" in cookie_flags(over_https)


def test_the_setup_link_creates_the_first_admin_once_and_never_again(make_server):
    server = make_server(RSGO_ADMIN_PASSWORD="")
    server.start()
    link = wait_until(lambda: re.search(r"http://127\.0\.0\.1:\d+/setup\?token=([\w-]+)", server.log()), 10,
                      message="the setup link in the log")
    token = link.group(1)
    assert database_rows(server, "SELECT count(*) FROM users") == [(0,)]
    assert database_rows(server, "SELECT count(*) FROM setup_tokens WHERE token_hash = ?", token) == [(0,)]

    # Nobody becomes admin by being first: the dashboard asks for a sign-in, not a setup.
    first = requests.get(f"{server.url}/", timeout=10, allow_redirects=False)
    assert first.status_code == 302 and urlsplit(first.headers["Location"]).path == "/login"
    for wrong in ("", "?token=", f"?token={token[:-1]}", f"?token={token}x", f"?token={token} "):
        assert requests.get(f"{server.url}/setup{wrong}", timeout=10).status_code == 404, wrong
    guesser = requests.Session()
    csrf = csrf_in(guesser.get(f"{server.url}/login", timeout=10).text)
    refused = guesser.post(f"{server.url}/setup", timeout=10, data={
        "token": "guess", "username": "intruder", "password": PASSWORD, "password_again": PASSWORD,
        "csrf_token": csrf})
    assert refused.status_code == 404

    browser = requests.Session()
    form = browser.get(f"{server.url}/setup?token={token}", timeout=10)
    assert form.status_code == 200 and "Create the first admin" in form.text
    fields = {"token": token, "username": "first-admin", "password": PASSWORD, "password_again": PASSWORD}
    assert browser.post(f"{server.url}/setup", data=fields, timeout=10).status_code == 403  # no CSRF token
    created = browser.post(f"{server.url}/setup", data={**fields, "csrf_token": csrf_in(form.text)}, timeout=30,
                           allow_redirects=False)
    assert created.status_code == 302 and urlsplit(created.headers["Location"]).path == "/"
    assert browser.get(f"{server.url}/admin/users", timeout=10).status_code == 200  # signed in, as admin
    assert database_rows(server, "SELECT username, role FROM users") == [("first-admin", "admin")]

    def link_refused():
        again = requests.Session()
        page = again.get(f"{server.url}/setup?token={token}", timeout=10)
        assert page.status_code == 404 and "not valid" in page.text
        answer = again.post(f"{server.url}/setup", timeout=30, data={
            "token": token, "username": "second-admin", "password": PASSWORD, "password_again": PASSWORD,
            "csrf_token": csrf_in(again.get(f"{server.url}/login", timeout=10).text)})
        assert answer.status_code == 404

    link_refused()
    server.stop()
    server.start()  # not even after a restart, and no new link is printed
    link_refused()
    assert database_rows(server, "SELECT username FROM users") == [("first-admin",)]
    assert server.log().count("create the first admin at") == 1
    assert ("setup.completed", "first-admin", "127.0.0.1", "") in security_events(server)
    _, signed_in = sign_in(server, "first-admin")
    assert signed_in.status_code == 302

    # Without a trusted proxy, a forged X-Forwarded-For changes nothing: the sixth guess is throttled anyway.
    for n in range(5):
        assert sign_in(server, "first-admin", "wrong password",
                       headers={"X-Forwarded-For": f"10.9.0.{n}"})[1].status_code == 401
    assert sign_in(server, "first-admin", PASSWORD, headers={"X-Forwarded-For": "10.9.9.9"})[1].status_code == 429
    assert {e[2] for e in security_events(server) if e[0] == "login.failed"} == {"127.0.0.1"}


def test_a_sign_in_goes_only_to_local_pages_afterwards(make_server):
    server = make_server().start()
    session, answer = sign_in(server, ADMIN_USER, ADMIN_PASSWORD)
    assert answer.headers["Location"] == "/"
    for target in ("//evil.example", "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example",
                   "/\\evil.example", "\\\\evil.example", "https://evil.example", "http:/evil.example",
                   " //evil.example", "/\x00/evil.example"):
        # Signing in with the target, and opening the sign-in page with it while signed in.
        fresh = requests.Session()
        csrf = csrf_in(fresh.get(f"{server.url}/login", timeout=10).text)
        answer = fresh.post(f"{server.url}/login", timeout=30, allow_redirects=False, data={
            "username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrf_token": csrf, "next": target})
        assert answer.status_code == 302
        assert answer.headers["Location"] == "/", (target, answer.headers["Location"])
        again = session.get(f"{server.url}/login?next={quote(target, safe='')}", timeout=10, allow_redirects=False)
        assert again.headers["Location"] == "/", (target, again.headers["Location"])
    local = session.get(f"{server.url}/login?next=/history", timeout=10, allow_redirects=False)
    assert local.headers["Location"] == "/history"


# -- 7. secrets ------------------------------------------------------------------------------

class _FlagServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _flag_handler(seen_headers):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen_headers.append(self.headers.get("Authorization"))
            body = b"off"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def test_secrets_from_the_config_appear_in_no_answer_fragment_or_log_line(make_server, make_stack, tmp_path,
                                                                          live_pages):
    db_secret = f"db-secret-{uuid.uuid4().hex}"
    http_secret = f"another-secret-{uuid.uuid4().hex}"
    url_secret = f"url-secret-{uuid.uuid4().hex[:12]}"
    hook_secret = f"hook-secret-{uuid.uuid4().hex}"
    secrets = (db_secret, http_secret, url_secret, hook_secret)
    database = tmp_path / "flags.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE flags (value TEXT)")
        connection.execute("INSERT INTO flags VALUES ('off')")
    seen_headers: list[str] = []
    flag_server = _FlagServer(("127.0.0.1", 0), _flag_handler(seen_headers))
    threading.Thread(target=flag_server.serve_forever, daemon=True).start()
    try:
        sql, broken, web = make_stack("sq"), make_stack("sb"), make_stack("sh")
        for stack in (sql, broken, web):
            stack.add("app")
        connection_string = f"Driver=SQLite3;Database={database};UID=rsgo;PWD=${{DBPASS}}"
        config = tmp_path / "rsgo.yml"
        config.write_text(yaml.safe_dump({
            "stacks": {
                sql.name: {"maintenanceObserver": {"type": "sqlQuery", "connectionString": connection_string,
                                                   "query": "SELECT value FROM flags", "maintenanceValue": "on",
                                                   "pollingInterval": "1s"}},
                broken.name: {"maintenanceObserver": {"type": "sqlQuery", "connectionString": connection_string,
                                                      "query": "SELECT value FROM no_such_table",
                                                      "maintenanceValue": "on", "pollingInterval": "1s"}},
                web.name: {"maintenanceObserver": {
                    "type": "http", "url": f"http://127.0.0.1:{flag_server.server_port}/flag?token={url_secret}",
                    "headers": {"Authorization": f"Bearer {http_secret}"}, "maintenanceValue": "on",
                    "pollingInterval": "1s"}}},
            "webhooks": [{"name": "chat", "url": "http://127.0.0.1:9/hook", "secret": "${HOOKSECRET}"}]}))
        server = make_server(RSGO_CONFIG=str(config), DBPASS=db_secret, HOOKSECRET=hook_secret,
                             RSGO_LOG_LEVEL="DEBUG").start()
        ids = [deployment(server, stack.name, 1)["id"] for stack in (sql, broken, web)]
        operator, _ = sign_in(server, create_user(server, "operator"))
        live = live_pages(server, ",".join(["dashboard", "history"] + [f"deployment:{i}" for i in ids]),
                          session=operator)
        answers: list[str] = []

        def keep(response: requests.Response) -> requests.Response:
            answers.append(response.text)
            answers.append("\n".join(f"{k}: {v}" for k, v in response.headers.items()))
            return response

        def observer(i):
            return keep(requests.get(f"{server.url}/api/deployments/{i}/observer", headers=server.headers,
                                     timeout=10)).json()

        # The observers run, and the failing one fails (its error message is a place a secret could leak).
        wait_until(lambda: observer(ids[0])["lastValue"] == "off", 15, message="the SQL observer's reading")
        wait_until(lambda: observer(ids[2])["lastValue"] == "off", 15, message="the http observer's reading")
        wait_until(lambda: observer(ids[1])["error"], 15, message="the broken SQL observer's error")
        assert seen_headers and seen_headers[-1] == f"Bearer {http_secret}"  # it really sent the secret
        for i in ids:
            keep(operator.post(f"{server.url}/api/deployments/{i}/observer/check", timeout=30))
            keep(operator.post(f"{server.url}/deployments/{i}/observer/check", timeout=30,
                               headers={"HX-Request": "true", "HX-Target": f"observer-{i}"}))
            for path in (f"/api/deployments/{i}", f"/api/deployments/{i}/observer", f"/api/deployments/{i}/history",
                         f"/deployments/{i}"):
                keep(operator.get(f"{server.url}{path}", timeout=10))
            for region in (f"observer-{i}", f"mode-{i}"):
                keep(operator.get(f"{server.url}/deployments/{i}", timeout=10,
                                  headers={"HX-Request": "true", "HX-Target": region}))
        for path in ("/", "/history", "/api/deployments", "/api/history", "/api/openapi.json", "/admin/users",
                     "/admin/tokens", "/admin/security"):
            keep(requests.get(f"{server.url}{path}", headers=server.headers, timeout=10))
        keep(requests.post(f"{server.url}/api/config/reload", headers=server.headers, timeout=30))
        keep(operator.get(f"{server.url}/", headers={"HX-Request": "true", "HX-Target": "deployment-list"},
                          timeout=10))
        # A change makes every region push, the observer panels included.
        assert api_put(server, ids[0], "Maintenance", session=operator, reason="push all").status_code == 200
        live.wait_for(lambda t: f'id="observer-{ids[0]}"' in t, what="a pushed observer panel")
        live.wait_for(lambda t: f'id="observer-{ids[1]}"' in t and "no_such_table" in t,
                      what="the broken observer's pushed error")

        # The masked forms are there, so the places that could leak were really rendered.
        everything = "\n".join(answers)
        assert "PWD=***" in everything and "Authorization" in everything and "no_such_table" in everything
        live.close()  # an open websocket would hold the server's graceful stop
        server.stop()
        log = server.log()
        assert "GET /api/deployments" in log and "observer" in log  # the log is the real one, at DEBUG
        for secret in secrets:
            for where, text in (("an answer", everything), ("a websocket fragment", "\n".join(live.messages)),
                                ("the server log", log)):
                assert secret not in text, f"{secret[:12]}… appears in {where}"
    finally:
        flag_server.shutdown()
        flag_server.server_close()


# -- 8. the session cookie -------------------------------------------------------------------

def cookie_flags(response: requests.Response) -> set[str]:
    header = response.headers.get("Set-Cookie", "")
    assert header.startswith("rsgo_session="), header
    return {part.strip().lower() for part in header.split(";")[1:]}


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_when_configured(make_server):
    plain = make_server().start()
    secure = make_server(Path(plain.env["RSGO_DATA_DIR"]).parent / "secure-data", RSGO_SECURE_COOKIES="true").start()
    for server, want_secure in ((plain, False), (secure, True)):
        form = requests.get(f"{server.url}/login", timeout=10)
        flags = cookie_flags(form)
        assert {"httponly", "samesite=lax", "path=/"} <= flags, flags
        assert ("secure" in flags) is want_secure, flags
        # The cookie of the signed-in session too (sent by hand: a client keeps Secure cookies off plain http).
        signed_in = requests.post(f"{server.url}/login", timeout=30, allow_redirects=False,
                                  headers={"Cookie": form.headers["Set-Cookie"].split(";")[0]},
                                  data={"username": ADMIN_USER, "password": ADMIN_PASSWORD,
                                        "csrf_token": csrf_in(form.text)})
        assert signed_in.status_code == 302, signed_in.text
        flags = cookie_flags(signed_in)
        assert {"httponly", "samesite=lax"} <= flags and ("secure" in flags) is want_secure, flags
        assert any(f.startswith("expires=") for f in flags)
    key = Path(plain.env["RSGO_DATA_DIR"]) / "secret_key"
    assert key.stat().st_mode & 0o777 == 0o600
