"""CSRF: state-changing browser requests need the session's own token."""

from __future__ import annotations

import requests

from support import ADMIN_PASSWORD, ADMIN_USER, wait_until

from .conftest import assert_problem, mode_of


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
