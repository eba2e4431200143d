"""API tokens: scopes, tokens limited to some stacks, expiry, revocation, and no token in clear."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import requests

from support import ADMIN_USER, bearer, put_mode, wait_until

from .conftest import (
    assert_problem,
    assert_refused_page,
    create_token,
    csrf_in,
    database_rows,
    mode_of,
    security_events,
    token_id,
    token_row,
)


def test_each_token_scope_allows_exactly_its_routes(estate):
    server = estate.server
    read_name, read = create_token(server, "read")
    operate_name, operate = create_token(server, "operate")
    _, admin = create_token(server, "admin")
    reload_url = f"{server.url}/api/config/reload"
    check_url = f"{server.url}/api/deployments/{estate.o_id}/observer/check"

    assert requests.get(f"{server.url}/api/deployments/{estate.a_id}", headers=bearer(read), timeout=10).ok
    assert_problem(put_mode(server, estate.a_id, "Maintenance", bearer(read), reason="read token"), 403, "forbidden")
    assert_problem(requests.post(check_url, headers=bearer(read), timeout=10), 403, "forbidden")
    assert_problem(requests.post(reload_url, headers=bearer(read), timeout=10), 403, "forbidden")
    assert estate.a.is_running("api")
    entry = requests.get(f"{server.url}/api/deployments/{estate.a_id}/history", headers=bearer(read),
                         timeout=10).json()["items"][0]
    assert (entry["outcome"], entry["actor"], entry["reason"]) == ("rejected", f"token:{read_name}", "read token")

    changed = put_mode(server, estate.a_id, "Maintenance", bearer(operate), reason="operate token")
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
    b_change = put_mode(server, estate.o_id, "Migrating", server.headers, reason="b history")
    assert b_change.status_code == 200
    b_transition = b_change.json()["transition"]["id"]
    assert put_mode(server, estate.o_id, "Normal", server.headers, reason="b history").status_code == 200
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
        assert_problem(put_mode(server, ref, "Maintenance", headers, reason="limited token on b"), 404, "not_found")
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
    changed = put_mode(server, a.name, "Maintenance", headers, reason="limited token on a")
    assert changed.status_code == 200 and not a.is_running("api")
    listed = get("/api/deployments").json()["items"]
    assert [d["name"] for d in listed] == [a.name]
    history = get("/api/history").json()["items"]
    assert history and {e["deployment"] for e in history} == {a.name}


def test_expired_and_revoked_tokens_are_refused_and_the_database_keeps_no_token_in_clear(estate):
    server = estate.server
    expiring_name, expiring = create_token(server, "read", "--expires-in", "5s")
    revoked_name, revoked = create_token(server, "operate")
    fresh_name, fresh = create_token(server, "read", "--stacks", estate.a.name, "--expires-in", "1h")

    def status(token):
        return requests.get(f"{server.url}/api/deployments", headers=bearer(token), timeout=10).status_code

    # It works until it expires (the positive control: a token refused from the start would pass the rest),
    # then is refused once its 5 s have passed (the deadline only bounds the wait).
    assert status(expiring) == 200
    wait_until(lambda: status(expiring) == 401, 15, interval=0.2, message="the token to expire")
    body = assert_problem(requests.get(f"{server.url}/api/deployments", headers=bearer(expiring), timeout=10),
                          401, "unauthorized")
    assert "expired" in body["detail"]
    # Stored 5 s after its creation, and shown as that minute on the admin page.
    [(created, expires)] = database_rows(server, "SELECT created_at, expires_at FROM api_tokens WHERE name = ?",
                                         expiring_name)
    created, expires = (dt.datetime.fromisoformat(str(value)) for value in (created, expires))
    assert dt.timedelta(seconds=4) <= expires - created <= dt.timedelta(seconds=6), (created, expires)
    assert token_row(server, expiring_name)[3] == expires.strftime("%Y-%m-%d %H:%M UTC")

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
    body = assert_problem(put_mode(server, estate.a_id, "Maintenance", bearer(revoked), reason="revoked"),
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
                hits = database_rows(
                    server, f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0', needle)
                assert hits == [(0,)], f"{table}.{column} holds a token in clear"
    stored = database_rows(server, "SELECT token_hash FROM api_tokens")
    assert len(stored) >= 4 and all(re.fullmatch(r"[0-9a-f]{64}", h) for (h,) in stored)
    files = [p for p in data_dir.iterdir() if p.name.startswith("rsgo.sqlite3")]
    assert files
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, f"{path.name} holds a token in clear"
