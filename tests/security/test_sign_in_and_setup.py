"""Sign-in throttling and the security log, the one-time setup link, and redirects after a sign-in."""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, urlsplit

import requests

from support import ADMIN_PASSWORD, ADMIN_USER, wait_until

from .conftest import PASSWORD, cookie_flags, create_user, csrf_in, database_rows, security_events, sign_in


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


def test_a_burst_of_concurrent_wrong_passwords_gets_no_more_checks_than_the_limit(make_server):
    """Counted before the password is checked: ten at once from ten addresses, five are checked."""
    server = make_server(RSGO_TRUSTED_PROXIES="1").start()
    alice = create_user(server, "viewer")
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def guess(n: int) -> None:
        barrier.wait()
        statuses.append(sign_in(server, alice, "wrong password", headers={"X-Forwarded-For": f"10.3.0.{n}"})[1]
                        .status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(statuses) == [401] * 5 + [429] * 5, statuses


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
