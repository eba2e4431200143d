"""What sign-out, deleting and demoting a user are for: sessions that end on the server, not only in the
browser that asked. A copied cookie, the user's other browsers and its API calls with the cookie are
refused afterwards (pages: 302 to the sign-in page, API: 401).

Each check sends the old cookie by hand from a fresh client: the answer to the sign-out drops the cookie
from the client that signed out, so asking again with that client would prove nothing.
"""

from __future__ import annotations

import re

import requests

from support import cookie_header

PASSWORD = "a long enough password 42"


def _as_cookie(server, cookie: str, path: str) -> requests.Response:
    return requests.get(f"{server.url}{path}", headers={"Cookie": cookie}, timeout=10, allow_redirects=False)


def assert_signed_in(server, cookie: str, what: str) -> None:
    page = _as_cookie(server, cookie, "/")
    assert page.status_code == 200, f"{what}: the page answered {page.status_code} before the change"
    api = _as_cookie(server, cookie, "/api/deployments")
    assert api.status_code == 200, f"{what}: the API answered {api.status_code} before the change"


def assert_signed_out(server, cookie: str, what: str) -> None:
    page = _as_cookie(server, cookie, "/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login"), \
        f"{what}: the page still answered {page.status_code}"
    api = _as_cookie(server, cookie, "/api/deployments")
    assert api.status_code == 401, f"{what}: the API still answered {api.status_code}: {api.text[:200]}"


def _user_id(admin: requests.Session, server, username: str) -> int:
    """The id in the user's own forms (``/users/<id>/role``) on the users page."""
    page = admin.get(f"{server.url}/admin/users", timeout=10).text
    ids = {int(match.group(1)) for match in re.finditer(r"/admin/users/(\d+)/role", page)
           if username in page[match.end():match.end() + 600].split("/admin/users/")[0]}
    assert len(ids) == 1, f"{username}'s forms on the users page: {ids}"
    return ids.pop()


def _new_user(server, username: str, role: str) -> None:
    server.cli("user", "create", username, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")


def test_sign_out_ends_a_copied_cookie_and_the_users_other_sessions(make_server):
    server = make_server().start()
    browser, other_browser = server.login(), server.login()
    copied, other = cookie_header(browser), cookie_header(other_browser)
    assert_signed_in(server, copied, "the copied cookie")
    assert_signed_in(server, other, "the other session")

    out = browser.post(f"{server.url}/logout", data={"csrf_token": browser.headers["X-CSRF-Token"]},
                       timeout=10, allow_redirects=False)
    assert out.status_code == 302, out.text

    assert_signed_out(server, copied, "a copy of the signed-out cookie")
    assert_signed_out(server, other, "the same user's other session")
    assert_signed_in(server, cookie_header(server.login()), "a new sign-in after the sign-out")


def test_deleting_a_user_ends_its_sessions(make_server):
    server = make_server().start()
    _new_user(server, "leaving", "operator")
    leaving = cookie_header(server.login("leaving", PASSWORD))
    assert_signed_in(server, leaving, "the user about to be deleted")
    admin = server.login()

    deleted = admin.post(f"{server.url}/admin/users/{_user_id(admin, server, 'leaving')}/delete",
                         data={"csrf_token": admin.headers["X-CSRF-Token"]}, timeout=10, allow_redirects=False)
    assert deleted.status_code == 302, deleted.text

    assert_signed_out(server, leaving, "the deleted user's session")
    assert "leaving" not in admin.get(f"{server.url}/admin/users", timeout=10).text


def test_demoting_a_user_ends_its_sessions_and_the_next_sign_in_has_the_new_role(make_server):
    server = make_server().start()
    _new_user(server, "demoted", "operator")
    session = server.login("demoted", PASSWORD)
    operator_cookie = cookie_header(session)
    assert_signed_in(server, operator_cookie, "the operator before the demotion")
    admin = server.login()

    changed = admin.post(f"{server.url}/admin/users/{_user_id(admin, server, 'demoted')}/role",
                         data={"role": "viewer", "csrf_token": admin.headers["X-CSRF-Token"]}, timeout=10,
                         allow_redirects=False)
    assert changed.status_code == 302, changed.text

    assert_signed_out(server, operator_cookie, "the demoted user's operator session")
    again = server.login("demoted", PASSWORD)
    page = again.get(f"{server.url}/", timeout=10).text
    assert "demoted (viewer)" in page, "the next sign-in has the new role"
