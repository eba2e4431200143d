"""Hostile input against the real app (Flask test client on the real engine) and real ``rsgo serve``
processes (raw sockets for what only gunicorn sees): stacks outside a token's list, refs that are
names and ids at once, Unicode digits, lone surrogates, malformed chunked bodies, control characters
and secrets in the log, and the database files' modes.

Refusals for size or shape that never reach Docker (a mode that is no mode, bodies over 1 MiB,
nesting, huge integers, bounded audit fields) are in test_input_limits.py, with the helpers here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import uuid
from http import HTTPStatus
from urllib.parse import quote

import pytest
import requests
import yaml

from conftest import wait_for_deployment
from rsgo.models import AuditEntry, Deployment, Transition
from rsgo.security import tokens
from support import ROOT, wait_until

PROBLEM = "application/problem+json"
ONE_MIB = 1024 * 1024


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == PROBLEM, response.mimetype
    body = response.get_json(force=True)
    assert (body["status"], body["code"], body["title"]) == (status, code, HTTPStatus(status).phrase), body
    assert body["type"] == f"urn:rsgo:problem:{code}"
    return body


def assert_page(response, status: int):
    """A browser route answers with an HTML page, not a problem document and not a 500."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == "text/html", response.mimetype


def bearer(scope: str, stacks: list[str] | None = None) -> dict:
    _, token = tokens.create_token(f"t-{uuid.uuid4().hex[:8]}", scope, created_by="tests", stacks=stacks)
    return {"Authorization": f"Bearer {token}"}


def audit_rows(deployment_id: int) -> list[AuditEntry]:
    return list(AuditEntry.select().where(AuditEntry.deployment == deployment_id).order_by(AuditEntry.id))


@pytest.fixture
def two_stacks(client, make_stack):
    """Two discovered stacks, a and b, one running container each; returns (a, a's id, b, b's id)."""
    a, b = make_stack("a"), make_stack("b")
    a.add("api")
    b.add("api")
    a_id = wait_for_deployment(client, a.name, 1)["id"]
    b_id = wait_for_deployment(client, b.name, 1)["id"]
    return a, a_id, b, b_id


# -- stacks outside a token's list ---------------------------------------------------------------

def test_a_token_limited_to_a_gets_the_unknown_stack_404_for_b_and_leaves_nothing_in_bs_history(client,
                                                                                                two_stacks):
    a, a_id, b, b_id = two_stacks
    b_change = client.put(f"/api/deployments/{b_id}/operation-mode", json={"newMode": "Migrating"})
    assert b_change.status_code == 200, b_change.json
    b_transition = b_change.json["transition"]["id"]
    before = len(audit_rows(b_id))
    ghost = f"ghost{uuid.uuid4().hex[:6]}"

    for scope in ("read", "operate", "admin"):
        limited = bearer(scope, stacks=[a.name])

        def same_as_unknown(method: str, template: str, needs: str = "read", limited=limited, scope=scope,
                            **kwargs):
            """``template`` with {} for the ref: b (by name and by id) answers exactly like an unknown stack:
            404, or the same 403 when the scope does not allow the route at all."""
            status, code = (404, "not_found") if needs in tokens.SCOPE_PERMISSIONS[scope] else (403, "forbidden")
            unknown = client.open(template.format(ghost), method=method, headers=limited, **kwargs)
            expected = assert_problem(unknown, status, code)
            for ref in (b.name, str(b_id)):
                hidden = client.open(template.format(ref), method=method, headers=limited, **kwargs)
                got = assert_problem(hidden, status, code)
                assert got == {**expected, "detail": expected["detail"].replace(ghost, ref)}, (method, template)

        for suffix in ("", "/operation-mode", "/history", "/observer", "/windows"):
            same_as_unknown("GET", "/api/deployments/{}" + suffix)
        same_as_unknown("PUT", "/api/deployments/{}/operation-mode",
                        json={"newMode": "Maintenance", "reason": "limited token on b"})
        same_as_unknown("PUT", "/api/deployments/{}/operation-mode", json={"newMode": "X" * 10_000})
        same_as_unknown("POST", "/api/deployments/{}/observer/check", needs="operate")
        same_as_unknown("POST", "/api/deployments/{}/windows", needs="operate",
                        json={"duration": "1h", "reason": "limited"})
        same_as_unknown("DELETE", "/api/deployments/{}/windows/1", needs="operate")
        same_as_unknown("GET", "/api/history?deployment={}")
        unknown_transition = assert_problem(client.get(f"/api/transitions/{b_transition + 1000}", headers=limited),
                                            404, "not_found")
        hidden_transition = assert_problem(client.get(f"/api/transitions/{b_transition}", headers=limited),
                                           404, "not_found")
        assert hidden_transition == {**unknown_transition, "detail": unknown_transition["detail"].replace(
            str(b_transition + 1000), str(b_transition))}
        # Its own stack works.
        assert client.get(f"/api/deployments/{a.name}", headers=limited).json["id"] == a_id

    assert len(audit_rows(b_id)) == before, "a limited token's requests left entries in b's history"
    assert b.is_running("api") and Deployment.get_by_id(b_id).mode == "Migrating"


# -- refs: names, ids, and which wins --------------------------------------------------------------

def test_a_stack_named_like_another_deployments_id_is_never_shadowed(client, make_stack):
    alpha = make_stack("alpha")
    alpha.add("api")
    alpha_id = wait_for_deployment(client, alpha.name, 1)["id"]
    number = str(alpha_id)
    named = make_stack("named")
    container = named.add("api", stack_label=number)  # a stack literally named like alpha's id
    try:
        def listed():
            items = client.get("/api/deployments").json["items"]
            return next((d for d in items if d["name"] == number and d["containers"]["total"] == 1), None)

        named_id = wait_until(listed, 15, message=f"discovery of the stack named {number}")["id"]
        assert named_id != alpha_id

        for response in (client.get(f"/api/deployments/{number}"),
                         client.get(f"/api/deployments/{number}/history"),
                         client.put(f"/api/deployments/{number}/operation-mode",
                                    json={"newMode": "Maintenance", "reason": "which one?"})):
            body = assert_problem(response, 409, "ambiguous_deployment")
            assert f"the stack named {number} (id {named_id})" in body["detail"], body["detail"]
            assert f"the deployment with id {number} ({alpha.name})" in body["detail"], body["detail"]
            assert "?environment=" in body["detail"]
            assert sorted((c["id"], c["name"]) for c in body["candidates"]) == sorted(
                [(alpha_id, alpha.name), (named_id, number)])
        assert alpha.is_running("api") and named.is_running("api")
        assert audit_rows(alpha_id) == [] and audit_rows(named_id) == []
        # Each is reachable without ambiguity: the stack named like a number by its id, the other by name.
        assert client.get(f"/api/deployments/{named_id}").json["name"] == number
        assert client.get(f"/api/deployments/{alpha.name}").json["id"] == alpha_id
        # The page uses the same lookup.
        page = client.get(f"/deployments/{number}")
        assert_page(page, 409)
        assert f"the stack named {number}" in page.get_data(as_text=True)

        # A token limited to the stack named like a number reaches it by that name: the other one does
        # not exist for it. And a token limited to alpha reaches alpha by its id.
        only_named = bearer("operate", stacks=[number])
        assert client.get(f"/api/deployments/{number}", headers=only_named).json["id"] == named_id
        changed = client.put(f"/api/deployments/{number}/operation-mode", headers=only_named,
                             json={"newMode": "Maintenance", "reason": "the stack named like a number"})
        assert changed.status_code == 200, changed.json
        assert changed.json["deploymentId"] == named_id
        assert not named.is_running("api") and alpha.is_running("api")
        only_alpha = bearer("read", stacks=[alpha.name])
        assert client.get(f"/api/deployments/{number}", headers=only_alpha).json["id"] == alpha_id
    finally:
        container.remove(force=True)


def test_only_ascii_digits_in_their_plain_form_are_ids(client, two_stacks):
    a, a_id, _, _ = two_stacks
    number = str(a_id)
    fullwidth = "".join(chr(0xFF10 + int(d)) for d in number)
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in number)
    change = client.put(f"/api/deployments/{a_id}/operation-mode", json={"newMode": "Migrating"})
    transition_id = change.json["transition"]["id"]

    for ref in (fullwidth, arabic_indic, "0" + number, "²", "¹", "\u0b67", f"{number}\u0301", " " + number):
        quoted = quote(ref, safe="")
        body = assert_problem(client.get(f"/api/deployments/{quoted}"), 404, "not_found")
        assert a.name not in body["detail"]
        assert_problem(client.get(f"/api/deployments/{quoted}/history"), 404, "not_found")
        assert_page(client.get(f"/deployments/{quoted}"), 404)
    for ref in ("".join(chr(0xFF10 + int(d)) for d in str(transition_id)), "²"):
        assert_problem(client.get(f"/api/transitions/{quote(ref)}"), 404, "not_found")
    assert client.get(f"/api/transitions/{transition_id}").status_code == 200
    for param in ("before", "limit"):
        for value in (fullwidth, "²", "1_0", " 5"):
            assert_problem(client.get("/api/history", query_string={param: value}), 400, "invalid_request")


# -- malformed input is a 400/404, never a 500 -------------------------------------------------------

def test_a_lone_surrogate_in_any_string_is_400_and_nothing_is_half_done(client, two_stacks):
    _, _, b, b_id = two_stacks
    mode_url = f"/api/deployments/{b.name}/operation-mode"
    for raw in ('{"newMode": "Maintenance", "reason": "\\ud800"}',
                '{"newMode": "Maintenance", "reason": "ok \\udfff then"}',
                '{"newMode": "Maintain\\ud800"}',
                '{"newMode": "Maintenance", "\\ud800": 1}'):
        body = assert_problem(client.put(mode_url, data=raw, content_type="application/json"), 400, "invalid_json")
        assert "surrogate" in body["detail"]
    for raw in ('{"duration": "1h", "reason": "\\ud800"}', '{"duration": "1h", "name": "x\\udc00"}'):
        assert_problem(client.post(f"/api/deployments/{b.name}/windows", data=raw,
                                   content_type="application/json"), 400, "invalid_json")
    assert b.is_running("api") and audit_rows(b_id) == []
    assert not Transition.select().where(Transition.deployment == b_id).exists()
    assert client.get(f"/api/deployments/{b.name}/windows").json["items"] == []
    # A proper surrogate pair is a character like any other.
    done = client.put(mode_url, data='{"newMode": "Maintenance", "reason": "\\ud83d\\ude00 backup"}',
                      content_type="application/json")
    assert done.status_code == 200, done.json
    assert audit_rows(b_id)[-1].reason == "\U0001F600 backup"


# -- what only a real gunicorn sees: chunked bodies --------------------------------------------------

def raw_exchange(server, request_head: str, body: bytes = b"", *, close_write: bool = False,
                 timeout: float = 20) -> tuple[int, dict, bytes]:
    """Send bytes as they are over a socket; return the first response's status, headers and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        def send():
            try:
                sock.sendall(request_head.encode("latin-1") + body)
                if close_write:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer and stop reading before the whole body is sent

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed without an answer: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(lines[0].split()[1]), headers, rest[:length]


def chunked_head(method: str, path: str, token: str | None, content_type: str) -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")


def test_malformed_and_oversized_chunked_bodies_are_400_and_413_from_a_real_server(make_server, make_stack):
    stack = make_stack()
    stack.add("api")
    server = make_server().start()
    wait_until(lambda: requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers,
                                    timeout=10).status_code == 200, 15, message="discovery")
    put = chunked_head("PUT", f"/api/deployments/{stack.name}/operation-mode", server.token, "application/json")

    for body, close_write in ((b"ZZZ\r\nabc\r\n0\r\n\r\n", False),  # not a chunk size
                              (b"5\r\nabcdeXX\r\n0\r\n\r\n", False),  # a chunk without its CRLF
                              (b"3;\x01=\r\nabc\r\n0\r\n\r\n", False),  # a bad chunk extension
                              (b'40\r\n{"newMode": "Maint', True)):  # the client stops sending mid-chunk
        status, headers, answer = raw_exchange(server, put, body, close_write=close_write)
        assert status == 400, (body, status, answer[:300])
        assert headers["content-type"].startswith(PROBLEM), headers
        problem = json.loads(answer)
        assert problem["code"] == "invalid_request" and "body" in problem["detail"], problem

    big = json.dumps({"newMode": "Maintenance", "reason": "x" * (2 * ONE_MIB)}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
                      for i in range(0, len(big), 65536)) + b"0\r\n\r\n"
    status, headers, answer = raw_exchange(server, put, chunks)
    assert status == 413 and headers["content-type"].startswith(PROBLEM), (status, answer[:300])
    assert json.loads(answer)["code"] == "request_too_large"

    # A browser route (the sign-in form, whose CSRF check reads the form) answers with a page.
    status, headers, answer = raw_exchange(
        server, chunked_head("POST", "/login", None, "application/x-www-form-urlencoded"), b"ZZZ\r\nabc\r\n0\r\n\r\n")
    assert status == 400 and headers["content-type"].startswith("text/html"), (status, headers, answer[:300])

    assert stack.is_running("api")
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    log = server.log()
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]


# -- the log ---------------------------------------------------------------------------------------

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def test_names_from_outside_are_logged_escaped_so_no_line_can_be_forged(make_server, make_stack, tmp_path):
    stack = make_stack()
    forged = "2026-12-02 00:00:00,000 CRITICAL rsgo.auth: FORGED LOG LINE admin password reset"
    label = f"{stack.name}\n{forged}\r\x1b[31mred\u2028sep"
    container = stack.add("api", stack_label=label)
    # The same name in the config, with an observer that fails on every check (nothing listens on port 9):
    # its failures are logged with the stack's name.
    config = tmp_path / "rsgo.yml"
    config.write_text(yaml.safe_dump({"stacks": {label: {"maintenanceObserver": {
        "type": "http", "url": "http://127.0.0.1:9/flag", "maintenanceValue": "on", "pollingInterval": "1s"}}}}))
    try:
        server = make_server(RSGO_CONFIG=str(config)).start()

        def found():
            items = requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10).json()["items"]
            return next((d for d in items if d["name"] == label and d["containers"]["total"] == 1), None)

        deployment_id = wait_until(found, 15, message="discovery of the stack with a newline in its name")["id"]
        changed = requests.put(f"{server.url}/api/deployments/{deployment_id}/operation-mode", headers=server.headers,
                               json={"newMode": "Maintenance", "reason": "log me"}, timeout=60)
        assert changed.status_code == 200, changed.text
        wait_until(lambda: server.log().count("FORGED LOG LINE") >= 3, 15,
                   message="the transition and the observer's failures in the log")
        server.stop()
        log = server.log()
        assert not re.search(r"^2026-12-02 00:00:00,000 CRITICAL", log, re.MULTILINE), "a forged line got in"
        mentions = [line for line in log.split("\n") if "FORGED LOG LINE" in line]
        assert all(LOG_LINE.match(line) for line in mentions), mentions
        assert any("failed" in line for line in mentions), mentions  # the observer's lines are among them
        assert "\x1b" not in log and "\u2028" not in log and "\r" not in log
        assert all("\\x1b[31mred" in line for line in mentions), mentions
    finally:
        container.remove(force=True)


def test_the_debug_log_holds_no_password_hash_token_hash_or_session_key(make_server, tmp_path):
    server = make_server(RSGO_LOG_LEVEL="DEBUG").start()
    name = f"dbg{uuid.uuid4().hex[:6]}"
    created = requests.post(f"{server.url}/admin/users", headers=server.headers, timeout=30, allow_redirects=False,
                            data={"username": name, "password": "a debug log password", "role": "operator"})
    assert created.status_code in (302, 303), created.text[:300]
    for _ in range(3):
        assert requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10).status_code == 200
    browser = server.login()
    assert browser.get(f"{server.url}/", timeout=10).status_code == 200
    # The command line at DEBUG too (it logs to stderr).
    cli = subprocess.run([sys.executable, "-m", "rsgo.cli", "user", "create", f"cli{name}", "--password-stdin"],
                         env=server.env | {"RSGO_LOG_LEVEL": "DEBUG"}, input="another debug password\n",
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert cli.returncode == 0, cli.stderr
    server.stop()

    log = server.log() + cli.stderr
    assert "SELECT" in log and "INSERT" in log, "the log is not at DEBUG (no peewee statements)"
    database = sqlite3.connect(f"file:{server.env['RSGO_DATA_DIR']}/rsgo.sqlite3?mode=ro", uri=True)
    try:
        secrets = [row[0] for row in database.execute("SELECT password_hash FROM users")]
        secrets += [row[0] for row in database.execute("SELECT token_hash FROM api_tokens")]
        columns = [row[1] for row in database.execute("PRAGMA table_info(users)")]
        if "session_key" in columns:
            secrets += [row[0] for row in database.execute("SELECT session_key FROM users") if row[0]]
    finally:
        database.close()
    assert "$argon2id" not in log
    assert hashlib.sha256(server.token.encode()).hexdigest() in secrets
    for secret in secrets:
        assert secret not in log, f"{secret[:16]}… is in the DEBUG log"


# -- the database files ----------------------------------------------------------------------------

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_database_and_its_wal_and_shm_are_created_0600_and_tightened_at_start(make_app, tmp_path):
    previous = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh"
        make_app(background=False, data_dir=fresh)  # writes (a token), so the WAL and its index exist
        files = [fresh / "rsgo.sqlite3", fresh / "rsgo.sqlite3-wal", fresh / "rsgo.sqlite3-shm"]
        for path in files:
            assert path.exists() and _mode(path) == 0o600, (path.name, oct(_mode(path)))

        for path in files:
            os.chmod(path, 0o644)  # as an older rsgo left them
        make_app(background=False, data_dir=fresh)
        for path in files:
            assert _mode(path) == 0o600, (path.name, oct(_mode(path)))
    finally:
        os.umask(previous)
