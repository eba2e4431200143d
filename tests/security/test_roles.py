"""Every route of the app, for every role: anonymous callers, viewers, operators and admins.

The routes come from the app's url_map (the ``routes`` fixture), so a new route fails here until it
is classified in ``NEEDS`` or ``PUBLIC`` (conftest.py).
"""

from __future__ import annotations

import uuid
from urllib.parse import quote, urlsplit

import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from support import ADMIN_USER, put_mode, wait_until

from .conftest import (
    LIVE,
    NEEDS,
    PASSWORD,
    PUBLIC,
    ROLE_PERMISSIONS,
    assert_problem,
    assert_refused_page,
    call,
    create_user,
    csrf_in,
    database_rows,
    mode_of,
    no_controls,
    refused_handshake,
    role_of,
    security_events,
    sign_in,
    user_id,
)


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
    # The webhook form was among the refused routes (asserted, so a rename cannot drop this check silently).
    assert "admin.add_webhook" in {endpoint for endpoint, _, _ in routes}
    assert database_rows(server, "SELECT name FROM webhooks") == [("estate hook",)]  # none made, none removed
    assert requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10).status_code == 200
    windows = requests.get(f"{server.url}/api/deployments/{estate.a_id}/windows", headers=server.headers, timeout=10)
    assert [w["id"] for w in windows.json()["items"]] == [estate.window_id]
    # Both refused mode changes are in the audit trail with who asked and from where.
    # (Maintenance: the mode changes; Migrating: an upgrade and a rollback, each through the API and a page.)
    refused = database_rows(server, "SELECT source, actor, address, outcome, requested_mode FROM audit_entries "
                                    "WHERE deployment_id = ? AND actor = ? ORDER BY source, requested_mode",
                            estate.a_id, name)
    assert refused == [("api", name, "127.0.0.1", "rejected", "Maintenance"),
                       *[("api", name, "127.0.0.1", "rejected", "Migrating")] * 2,
                       ("ui", name, "127.0.0.1", "rejected", "Maintenance"),
                       *[("ui", name, "127.0.0.1", "rejected", "Migrating")] * 2]
    history = requests.get(f"{server.url}/api/history", params={"actor": name}, headers=server.headers,
                           timeout=10).json()["items"]
    assert sorted((e["source"], e["outcome"], e["deployment"]) for e in history) == [
        *[("api", "rejected", estate.a.name)] * 3, *[("ui", "rejected", estate.a.name)] * 3]

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
    changed = put_mode(server, estate.a_id, "Maintenance", session=operator, reason="operator via api")
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
