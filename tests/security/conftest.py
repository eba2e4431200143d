"""Who may see and change what (the README's security section), against real ``rsgo serve``
processes, the real Docker engine, a real websocket client and real Chromium; one file per concern:

- ``test_roles.py``: every route, every role (the route map drives it);
- ``test_tokens.py``: scopes, stack limits, expiry and revocation of API tokens;
- ``test_csrf.py``, ``test_websocket.py``: CSRF tokens; the websocket's session and Origin checks;
- ``test_xss_and_headers.py``: payloads render as text everywhere, CSP and the other headers;
- ``test_sign_in_and_setup.py``: throttling, the security log, the setup link, redirects;
- ``test_secrets.py``, ``test_session_cookie.py``: no secret leaks; the cookie's flags.

Every route the app has is looked up in its url_map, so a new route fails these tests until it is
classified in ``NEEDS`` (or ``PUBLIC``) below. Attack inputs tried: no credentials, unknown and
malformed bearer tokens, a session cookie signed with a guessed key, a viewer escalating its own
role, tokens of the wrong scope, tokens limited to another stack (API and pages), expired and
revoked tokens, missing / wrong / another session's CSRF token, websockets without a session,
with a bearer token, with a foreign / look-alike / ``null`` / missing Origin, a viewer asking the
hub for the operators' fragments, XSS payloads as reason, stack name (container label), observed
value, window name and in reflected query and form fields, login guessing per user name (also in
other letter case) and per address, X-Forwarded-For spoofing, open redirects in ``next``, reuse of
the one-time setup link, and secrets from the config in responses and the log.

This conftest holds what several of those files use: the route classification, ``Estate`` (a
server with stacks, an observer and an id for every kind of route argument), the ``routes``
fixture, websockets opened like pages (``live_pages``), and small readers of pages and the database.
"""

from __future__ import annotations

import re
import uuid
from functools import cached_property
from html import unescape

import pytest
import requests
import websocket
import yaml

from support import ADMIN_USER, LiveSocket, database_rows, put_mode, wait_until

PASSWORD = "correct horse battery"

# What each route needs beyond a sign-in. Views may check more inside (a viewer's PUT is refused
# and recorded there), so this is what the caller must be allowed to do for the route to *work*.
NEEDS = {
    "api.openapi": "read", "api.list_deployments": "read", "api.list_environments": "read",
    "api.show_deployment": "read",
    "api.show_observer": "read", "api.check_observer": "operate", "api.list_windows": "read",
    "api.add_window": "operate", "api.delete_window": "operate", "api.reload_config": "admin",
    "api.show_operation_mode": "read", "api.change_operation_mode": "operate", "api.deployment_history": "read",
    "api.global_history": "read", "api.show_transition": "read",
    "pages.dashboard": "read", "pages.deployment_page": "read", "pages.deployment_history": "read",
    "pages.history": "read", "pages.mode_change_form": "operate", "pages.change_mode": "operate",
    "pages.check_observer": "operate", "pages.add_adhoc_window": "operate", "pages.delete_window": "operate",
    "pages.window_removal_form": "operate",
    "auth.logout": "read",
    "admin.users": "admin", "admin.create_user": "admin", "admin.change_role": "admin", "admin.delete_user": "admin",
    "admin.tokens": "admin", "admin.create_token": "admin", "admin.revoke_token": "admin", "admin.security": "admin",
    "admin.webhooks": "admin", "admin.add_webhook": "admin", "admin.delete_webhook": "admin",
    "admin.test_webhook": "admin", "admin.test_notification": "admin",
    "metrics.scrape": "read",
    "api_upgrades.start_upgrade": "operate", "api_upgrades.start_rollback": "operate",
    "api_upgrades.show_upgrade": "read", "api_upgrades.list_upgrades": "read",
    "upgrade_pages.preview": "operate", "upgrade_pages.start_upgrade": "operate",
    "upgrade_pages.rollback_form": "operate", "upgrade_pages.rollback": "operate",
    "api_stacks.forget_deployment": "operate", "api_stacks.change_modes": "operate",
    "stack_pages.forget_form": "operate", "stack_pages.forget": "operate",
    "stack_pages.bulk_confirm": "operate", "stack_pages.bulk_change_modes": "operate",
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


def admin_page(server, path: str) -> str:
    response = requests.get(f"{server.url}{path}", headers=server.headers, timeout=10)
    assert response.status_code == 200, response.text[:300]
    return response.text


def token_row(server, name: str) -> list[str]:
    """The text of each cell of a token's row on the admin tokens page (name, scope, stacks, expires, last
    used, ...; a time is its server-rendered UTC text), then the row's HTML."""
    html = admin_page(server, "/admin/tokens")
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.DOTALL):
        cells = re.findall(r"<td>(.*?)</td>", row, re.DOTALL)
        if cells and re.match(rf"{re.escape(name)} <small", cells[0]):
            return [re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", c))).strip() for c in cells] + [row]
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
    # The first cell is the time (a <time> element, see the when macro); the others are plain text.
    row = r"<tr><td>(?:(?!</td>).)*</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>"
    return [tuple(unescape(c) for c in cells) for cells in re.findall(row, html)]


def no_controls(html: str) -> list[str]:
    """Anything on a page that would let its reader change something (the sign-out form aside)."""
    found = []
    for marker in ("mode-actions", "/mode-change", "Check now", "hx-post", "hx-delete", "hx-put",
                   "Start maintenance now", ">Remove<"):
        if marker in html:
            found.append(marker)
    return found


@pytest.fixture
def live_pages():
    """Websockets opened by a test, closed before its servers stop (open ones would hold their shutdown)."""
    opened = []

    def open_(*args, **kwargs) -> LiveSocket:
        page = LiveSocket(*args, **kwargs)
        opened.append(page)
        return page

    yield open_
    for page in opened:
        page.close()


def refused_handshake(server, topics="dashboard", **kwargs) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        LiveSocket(server, topics, **kwargs).close()
    return refused.value.status_code


@pytest.fixture
def routes(make_app, tmp_path):
    """(endpoint, method, rule) of every route of the app, taken from its url_map."""
    app = make_app(background=False, data_dir=tmp_path / "route-map")
    found = [(rule.endpoint, method, rule) for rule in app.url_map.iter_rules()
             for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    endpoints = {endpoint for endpoint, _, _ in found}
    unclassified = endpoints - set(NEEDS) - {e for e, _ in PUBLIC} - {LIVE}
    assert not unclassified, f"classify these new routes in NEEDS or PUBLIC of security/conftest.py: {unclassified}"
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
        done = put_mode(self.server, self.a_id, "Maintenance", self.server.headers, reason="setup")
        assert done.status_code == 200, done.text
        assert put_mode(self.server, self.a_id, "Normal", self.server.headers, reason="setup").status_code == 200
        return done.json()["transition"]["id"]

    @cached_property
    def window_id(self) -> int:
        window = requests.post(f"{self.server.url}/api/deployments/{self.a_id}/windows", headers=self.server.headers,
                               json={"name": "far away", "start": "2099-01-01T00:00:00+00:00",
                                     "end": "2099-01-01T01:00:00+00:00", "reason": "setup"}, timeout=10)
        assert window.status_code == 201, window.text
        return window.json()["id"]

    @cached_property
    def upgrade_id(self) -> int:
        """An upgrade that failed at its pull: a real row, and nothing of the stack was touched."""
        failed = requests.post(f"{self.server.url}/api/deployments/{self.a_id}/upgrade", headers=self.server.headers,
                               json={"images": {self.a.container_name("api"): "127.0.0.1:9/nowhere/api:1"},
                                     "reason": "setup"}, timeout=60)
        assert failed.status_code == 502, failed.text
        return failed.json()["upgrade"]["id"]

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
                  "upgrade_id": lambda: self.upgrade_id,
                  "token_id": lambda: self.admin_token_id, "webhook_id": lambda: self.webhook_id,
                  "user_id": lambda: user if user is not None else self.admin_id, "filename": lambda: "rsgo.css"}
        unknown = set(rule.arguments) - set(values)
        assert not unknown, f"{rule.rule}: give the test a real value for {unknown}"
        path = rule.rule
        for name in rule.arguments:
            path = re.sub(rf"<(?:[^:<>]+:)?{name}>", str(values[name]()), path)
        if endpoint == "stack_pages.bulk_confirm":
            return f"{path}?to=Maintenance&deployment={self.a_id}"
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
    elif endpoint == "api_upgrades.start_upgrade":
        kwargs["json"] = {"images": {"api": "rsgo-test/busybox:2"}, "reason": f"{tag} tries"}
    elif endpoint == "api_upgrades.start_rollback":
        kwargs["json"] = {"reason": f"{tag} tries"}
    elif endpoint in ("upgrade_pages.start_upgrade", "upgrade_pages.rollback"):
        kwargs["data"] = {"reason": f"{tag} tries"}
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


def cookie_flags(response: requests.Response) -> set[str]:
    header = response.headers.get("Set-Cookie", "")
    assert header.startswith("rsgo_session="), header
    return {part.strip().lower() for part in header.split(";")[1:]}
