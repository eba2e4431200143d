"""Sessions and live websockets under attack, end to end: a real ``rsgo serve``, the real Docker
engine, real websockets (websocket-client, and raw sockets that upgrade and then never read).

- A session names its user by a random key that is never reused: a deleted user's cookie does not
  sign in as the next user created (who gets the same id), and signing out, deleting or demoting a
  user ends every session of that user, copied cookies and other browsers included.
- Ending a user's sessions closes their open websockets at once; a session ended behind the
  server's back (another process) is noticed by the connection's own periodic check.
- Websockets cannot starve HTTP: with 200 upgrades open and unread, /healthz and the API answer at
  once; the ones over the caps are refused before the upgrade (429 per user, 503 overall,
  problem+json), and connections that never answer pings are closed within about 20 s.
- /healthz and /readyz answer whatever Authorization header comes with them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import sqlite3
import time
import uuid

import pytest
import requests

from rsgo import db
from rsgo.settings import load_settings
from support import LiveSocket, cookie_header, database_rows, put_mode, wait_until

PASSWORD = "a-long-password-1"


# -- helpers ----------------------------------------------------------------------------------

def id_of(server, username: str) -> int:
    rows = database_rows(server, "SELECT id FROM users WHERE username = ?", username)
    assert rows, f"no user {username}"
    return rows[0][0]


def add_user(server, admin: requests.Session, role: str, name: str | None = None) -> str:
    """A user made the way an admin makes one: the Users form."""
    name = name or f"{role}-{uuid.uuid4().hex[:6]}"
    answer = admin.post(f"{server.url}/admin/users", data={"username": name, "password": PASSWORD, "role": role},
                        timeout=30, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:300]
    return name


def copy_of(session: requests.Session) -> requests.Session:
    """Another client holding a copy of the session's cookie (a stolen or copied cookie)."""
    copy = requests.Session()
    for cookie in session.cookies:
        copy.cookies.set(cookie.name, cookie.value)
    return copy


def signed_in(server, session: requests.Session) -> bool:
    """The session works for pages and the API; or it is dead for both (pages 302 to the sign-in
    page, the API 401). Anything in between fails the test."""
    page = session.get(f"{server.url}/", timeout=10, allow_redirects=False)
    api = session.get(f"{server.url}/api/deployments", timeout=10, allow_redirects=False)
    if page.status_code == 200 and api.status_code == 200:
        return True
    assert page.status_code == 302 and page.headers["Location"].startswith("/login"), (page.status_code,
                                                                                       page.text[:200])
    assert api.status_code == 401 and api.json()["code"] == "unauthorized", (api.status_code, api.text[:200])
    return False


@pytest.fixture
def live_pages():
    """Websockets opened by a test, closed before its server stops."""
    opened = []

    def open_(server, session: requests.Session, topics: str) -> LiveSocket:
        page = LiveSocket(server, topics, session=session)
        opened.append(page)
        return page

    yield open_
    for page in opened:
        page.close()


def upgrade(server, cookie: str, topics: str = "dashboard") -> socket.socket:
    """A raw TCP connection that sends a browser's websocket upgrade (cookie, same Origin) and reads nothing."""
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET /ws?topics={topics} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"Origin: {server.url}\r\nCookie: {cookie}\r\n\r\n").encode())
    return raw


def answer_of(raw: socket.socket, timeout: float = 30) -> tuple[int, dict | None]:
    """The handshake's status and, for a refusal, its problem+json body (nothing past it is read)."""
    raw.settimeout(timeout)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = raw.recv(1)
        assert byte, f"connection closed during the handshake: {head!r}"
        head += byte
    status = int(head.split(b" ", 2)[1])
    if status == 101:
        return status, None
    assert re.search(rb"(?im)^content-type: application/problem\+json", head), head
    length = int(re.search(rb"(?im)^content-length: (\d+)", head).group(1))
    body = b""
    while len(body) < length:
        body += raw.recv(length - len(body))
    return status, json.loads(body)


def closed_by_server(raw: socket.socket) -> bool:
    """Reads (and discards) what arrived; True once the server has ended the connection."""
    raw.settimeout(0.2)
    try:
        while True:
            data = raw.recv(1 << 16)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def quick(server, path: str, headers: dict | None = None) -> tuple[int, float]:
    started = time.monotonic()
    response = requests.get(f"{server.url}{path}", headers=headers or {}, timeout=2)
    return response.status_code, time.monotonic() - started


def change_mode(server, deployment: str, mode: str, reason: str) -> None:
    answer = put_mode(server, deployment, mode, reason=reason)
    assert answer.status_code == 200, answer.text


def deployment_id(server, stack_name: str) -> int:
    def seen():
        answer = requests.get(f"{server.url}/api/deployments/{stack_name}", headers=server.headers, timeout=10)
        return answer.json()["id"] if answer.status_code == 200 else None

    return wait_until(seen, 20, interval=0.1, message=f"discovery of {stack_name}")


# -- 1. sessions name users by a key that is never reused ------------------------------------

def test_a_deleted_users_cookie_never_signs_in_as_the_next_user_created(make_server):
    server = make_server().start()
    admin = server.login()
    mallory = add_user(server, admin, "viewer", "mallory")
    session = server.login(mallory, PASSWORD)
    assert session.get(f"{server.url}/admin/users", timeout=10).status_code == 403
    kept = copy_of(session)  # what mallory keeps after being deleted
    mallory_id = id_of(server, mallory)

    deleted = admin.post(f"{server.url}/admin/users/{mallory_id}/delete", timeout=10, allow_redirects=False)
    assert deleted.status_code == 302
    assert not signed_in(server, kept)
    carol = add_user(server, admin, "admin", "carol")
    assert id_of(server, carol) == mallory_id  # SQLite hands the deleted id out again: the dangerous case

    assert not signed_in(server, kept)
    users_page = kept.get(f"{server.url}/admin/users", timeout=10, allow_redirects=False)
    assert users_page.status_code == 302 and users_page.headers["Location"].startswith("/login")
    # Carol herself signs in as usual, and mallory's old session stays nothing.
    assert signed_in(server, server.login(carol, PASSWORD))
    assert not signed_in(server, kept)


def test_signing_out_ends_copied_cookies_and_every_other_session_of_the_user(make_server):
    server = make_server().start()
    name = add_user(server, server.login(), "operator")
    here, elsewhere = server.login(name, PASSWORD), server.login(name, PASSWORD)  # two browsers
    copied = copy_of(here)
    other_user = server.login()  # the admin's session must survive the operator's sign-out
    assert signed_in(server, copied) and signed_in(server, elsewhere)

    out = here.post(f"{server.url}/logout", timeout=10, allow_redirects=False)
    assert out.status_code == 302 and out.headers["Location"].startswith("/login")
    assert not signed_in(server, copied), "a copied cookie outlived the sign-out"
    assert not signed_in(server, elsewhere), "the user's other session outlived the sign-out"
    assert signed_in(server, other_user)
    assert signed_in(server, server.login(name, PASSWORD))  # signing in again works


def test_demoting_or_deleting_a_user_ends_every_session_of_that_user(make_server):
    server = make_server().start()
    admin = server.login()
    demoted, deleted = add_user(server, admin, "operator"), add_user(server, admin, "operator")
    sessions = {name: (server.login(name, PASSWORD), server.login(name, PASSWORD)) for name in (demoted, deleted)}
    for pair in sessions.values():
        assert all(signed_in(server, s) for s in pair)

    changed = admin.post(f"{server.url}/admin/users/{id_of(server, demoted)}/role", data={"role": "viewer"},
                         timeout=10, allow_redirects=False)
    assert changed.status_code == 302
    assert database_rows(server, "SELECT role FROM users WHERE username = ?", demoted) == [("viewer",)]
    assert not any(signed_in(server, s) for s in sessions[demoted]), "a session outlived the role change"
    removed = admin.post(f"{server.url}/admin/users/{id_of(server, deleted)}/delete", timeout=10,
                         allow_redirects=False)
    assert removed.status_code == 302
    assert not any(signed_in(server, s) for s in sessions[deleted])
    # The demoted user signs in again, as a viewer now; the admin's own session was untouched.
    again = server.login(demoted, PASSWORD)
    assert signed_in(server, again) and signed_in(server, admin)
    refused = again.put(f"{server.url}/api/deployments/x/operation-mode", json={"newMode": "Normal"}, timeout=10)
    assert refused.status_code in (403, 404)
    # Every user has a key of its own, of at least 32 random bytes (43 URL-safe characters).
    keys = [row[0] for row in database_rows(server, "SELECT session_key FROM users")]
    assert len(set(keys)) == len(keys) and all(len(key) >= 43 for key in keys)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_old_database_gets_a_fresh_random_session_key_for_every_user(tmp_path, request, backend):
    """The migration on a database as version 5 left it (users with a session version, no key)."""
    environ = {"RSGO_DATA_DIR": str(tmp_path / "data")}
    if backend == "postgresql":
        environ["DATABASE_URL"] = request.getfixturevalue("postgres").create_database(f"keys_{uuid.uuid4().hex[:8]}")
    db.open_database(load_settings(environ))
    try:
        db.migrate()
        database = db.database
        param = database.param
        serial, timestamp = ("SERIAL", "TIMESTAMP") if backend == "postgresql" else ("INTEGER", "DATETIME")
        database.execute_sql('DROP TABLE "users"')
        database.execute_sql(f'CREATE TABLE "users" ("id" {serial} NOT NULL PRIMARY KEY, "username" VARCHAR(255) '
                             'NOT NULL, "password_hash" VARCHAR(255) NOT NULL, "role" VARCHAR(255) NOT NULL, '
                             f'"session_version" INTEGER NOT NULL, "created_at" {timestamp} NOT NULL)')
        database.execute_sql('CREATE UNIQUE INDEX "users_username" ON "users" ("username")')
        for number in range(3):
            database.execute_sql("INSERT INTO users (username, password_hash, role, session_version, created_at) "
                                 f"VALUES ({param}, 'x', 'viewer', 1, '2024-01-01 00:00:00')", (f"old{number}",))
        database.execute_sql("DELETE FROM schema_migrations WHERE version >= 6")

        assert 6 in db.migrate()
        columns = {column.name for column in database.get_columns("users")}
        assert "session_key" in columns and "session_version" not in columns
        keys = [row[0] for row in database.execute_sql("SELECT session_key FROM users ORDER BY id").fetchall()]
        assert len(keys) == 3 and len(set(keys)) == 3 and all(len(key) >= 43 for key in keys)
        with pytest.raises(Exception, match="(?i)unique"):  # the key stays unique
            database.execute_sql(f"UPDATE users SET session_key = {param} WHERE username = 'old1'", (keys[0],))
        with pytest.raises(Exception, match="(?i)not.null"):
            database.execute_sql("INSERT INTO users (username, password_hash, role, created_at) "
                                 "VALUES ('new', 'x', 'viewer', '2024-01-01 00:00:00')")
        assert db.migrate() == []
    finally:
        db.database.close()


# -- 2. websockets end with their sessions ---------------------------------------------------

@pytest.fixture
def live_estate(make_server, make_stack):
    stack = make_stack("sess")
    stack.add("api")
    server = make_server().start()
    return server, stack.name, deployment_id(server, stack.name)


@pytest.mark.parametrize("ending", ["sign-out elsewhere", "deletion", "demotion"])
def test_a_users_open_websockets_close_at_once_when_their_sessions_end(live_estate, live_pages, ending):
    server, stack_name, stack_id = live_estate
    admin = server.login()
    name = add_user(server, admin, "operator")
    browser, other_browser = server.login(name, PASSWORD), server.login(name, PASSWORD)
    topics = f"dashboard,deployment:{stack_id},history"
    pages = [live_pages(server, browser, topics), live_pages(server, other_browser, topics)]
    witness = live_pages(server, admin, topics)  # still signed in: shows the later push did happen
    tag = uuid.uuid4().hex[:8]

    change_mode(server, stack_name, "Migrating", f"before-{tag}")
    for page in (*pages, witness):
        wait_until(lambda page=page: page.got(f"before-{tag}"), 15, message="the push before the session ended")
    wait_until(lambda: pages[0].got("mode-actions"), 15, message="an operator's push with mode buttons")

    if ending == "sign-out elsewhere":
        answer = other_browser.post(f"{server.url}/logout", timeout=10, allow_redirects=False)
    elif ending == "deletion":
        answer = admin.post(f"{server.url}/admin/users/{id_of(server, name)}/delete", timeout=10,
                            allow_redirects=False)
    else:
        answer = admin.post(f"{server.url}/admin/users/{id_of(server, name)}/role", data={"role": "viewer"},
                            timeout=10, allow_redirects=False)
    assert answer.status_code == 302
    # At once: well before the connections' own session check (every 10 s) would find it.
    for page in pages:
        wait_until(page.closed.is_set, 3, message=f"the websocket to close after the {ending}")
    change_mode(server, stack_name, "Normal", f"after-{tag}-secret-reason")
    wait_until(lambda: witness.got(f"after-{tag}-secret-reason"), 15, message="the push after the session ended")
    for page in pages:
        assert not page.got(f"after-{tag}"), f"a push reached a websocket after the {ending}"
    assert not witness.closed.is_set()


def test_a_websocket_whose_session_ended_behind_the_servers_back_closes_by_its_own_check(live_estate, live_pages):
    """The backstop: a session ended by another process (here: the key replaced in the database
    directly) is noticed by the connection itself within its check interval (10 s)."""
    server, stack_name, stack_id = live_estate
    name = add_user(server, server.login(), "viewer")
    page = live_pages(server, server.login(name, PASSWORD), f"deployment:{stack_id}")
    change_mode(server, stack_name, "Migrating", "first")
    wait_until(lambda: page.got("first"), 15, message="a first push")

    connection = sqlite3.connect(f"{server.env['RSGO_DATA_DIR']}/rsgo.sqlite3", timeout=10)
    with connection:
        connection.execute("UPDATE users SET session_key = ? WHERE username = ?", (uuid.uuid4().hex * 2, name))
    connection.close()
    wait_until(page.closed.is_set, 15, interval=0.1, message="the connection's own session check to close it")


# -- 3. websockets cannot starve HTTP --------------------------------------------------------

def test_200_unread_websockets_leave_http_answering_and_those_over_the_caps_are_refused(make_server):
    server = make_server().start()  # the defaults: 100 websockets in all, 10 per user
    admin = server.login()
    cookies = [cookie_header(server.login(add_user(server, admin, "viewer"), PASSWORD)) for _ in range(12)]
    opened: list[socket.socket] = []
    try:
        # 200 upgrades from twelve viewers, sent all at once; nothing they get back is read yet.
        for index in range(200):
            opened.append(upgrade(server, cookies[index % 12]))
        # HTTP answers at once, again and again, while they are all open.
        for _ in range(5):
            health, health_seconds = quick(server, "/healthz")
            api, api_seconds = quick(server, "/api/deployments", server.headers)
            assert (health, api) == (200, 200) and max(health_seconds, api_seconds) < 2, (health_seconds, api_seconds)

        answers = [answer_of(raw) for raw in opened]
        upgraded = [index for index, (status, _) in enumerate(answers) if status == 101]
        refused = [(status, problem) for status, problem in answers if status != 101]
        assert len(upgraded) == 100, f"{len(upgraded)} of 200 upgraded, expected 100 (the cap)"
        for viewer in range(12):
            assert sum(1 for index in upgraded if index % 12 == viewer) <= 10  # the cap per user
        # Twelve viewers could hold 120: the overall cap refused some (503); all refusals are problems.
        assert {status for status, _ in refused} <= {429, 503} and 503 in {status for status, _ in refused}
        for status, problem in refused:
            assert problem["code"] == "too_many_live_connections" and problem["status"] == status, problem
        assert quick(server, "/healthz")[0] == 200

        # None of them answers pings: the server closes every one within about 20 s, freeing its slot.
        wait_until(lambda: all(closed_by_server(opened[index]) for index in upgraded), 35, interval=0.5,
                   message="the server to close the websockets that never answer pings")

        # A slot is freed as its connection's thread ends (it notices within 2 s): then a new viewer
        # opens ten pages, and an eleventh is refused before the upgrade (429).
        newcomer = cookie_header(server.login(add_user(server, admin, "viewer"), PASSWORD))

        def admitted() -> bool:
            opened.append(upgrade(server, newcomer))
            status, _ = answer_of(opened[-1])
            assert status in (101, 503), status  # 503 while the server still frees slots
            return status == 101

        for _ in range(10):
            wait_until(admitted, 10, interval=0.2, message="a slot freed by a closed websocket")
        opened.append(upgrade(server, newcomer))
        status, problem = answer_of(opened[-1])
        assert status == 429 and problem["code"] == "too_many_live_connections", (status, problem)
        assert "10" in problem["detail"]
        opened.append(upgrade(server, cookies[0]))  # another user still gets in
        assert answer_of(opened[-1])[0] == 101
    finally:
        for raw in opened:
            raw.close()


# -- 4. probes ignore credentials ------------------------------------------------------------

def test_the_probes_answer_whatever_authorization_header_comes_with_them(make_server):
    server = make_server().start()
    wait_until(lambda: requests.get(f"{server.url}/readyz", timeout=5).status_code == 200, 20,
               message="readiness")
    for header in ("Bearer garbage", "Basic YWRtaW46YWRtaW4=", "Bearer ", "nonsense", f"Bearer {server.token}x"):
        for path in ("/healthz", "/readyz"):
            answer = requests.get(f"{server.url}{path}", headers={"Authorization": header}, timeout=5)
            assert answer.status_code == 200, (path, header, answer.status_code, answer.text[:200])
    # The API still refuses the same headers.
    assert requests.get(f"{server.url}/api/deployments", headers={"Authorization": "Bearer garbage"},
                        timeout=5).status_code == 401
