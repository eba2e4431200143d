"""Slow and malformed clients against a real ``rsgo serve`` (raw sockets).

- Requests that never finish arriving (headers without the blank line, a body short of its
  Content-Length) release their threads after ``RSGO_REQUEST_TIMEOUT``: 150 of each leave /healthz
  answering, while they stay open; an idle websocket stays open past that timeout and still gets pushes.
- The access log never carries the Basic-auth user name (nor a control character a client sent).
- A websocket handshake wsproto refuses answers 400 problem+json, without a traceback in the log.
- A page that resets its websocket right after the handshake is a page gone: no 500, no traceback.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import time

import pytest
import requests
import websocket

from support import LiveSocket, cookie_header, put_mode, wait_until

PASSWORD = "a-long-password-1"
TIMEOUT = 3  # RSGO_REQUEST_TIMEOUT of these servers (the default is 10 s)


def add_viewer(server, admin: requests.Session) -> str:
    """A viewer made the way an admin makes one: the Users form."""
    name = f"viewer-{os.urandom(3).hex()}"
    answer = admin.post(f"{server.url}/admin/users", data={"username": name, "password": PASSWORD, "role": "viewer"},
                        timeout=30, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:300]
    return name


def open_partial(server, payload: bytes) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    raw.sendall(payload)
    return raw


def healthz_seconds(server, timeout: float) -> float:
    started = time.monotonic()
    assert requests.get(f"{server.url}/healthz", timeout=timeout).status_code == 200
    return time.monotonic() - started


def read_answer(raw: socket.socket, timeout: float = 30) -> tuple[int, bytes, bytes]:
    """Status, head and body of one answer with a Content-Length."""
    raw.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = raw.recv(4096)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = raw.recv(4096)
        assert chunk
        body += chunk
    return int(head.split(b" ", 2)[1]), head, body


@pytest.mark.parametrize("kind", ["headers", "body"])
def test_unfinished_requests_release_their_threads(make_server, kind):
    # The default threads: 32 for requests + 100 for websockets, all 132 taken by the first connections.
    server = make_server(RSGO_REQUEST_TIMEOUT=f"{TIMEOUT}s").start()
    if kind == "headers":
        payload = b"GET / HTTP/1.1\r\nHost: x\r\n"  # never the blank line
    else:
        payload = (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                   b"Content-Length: 100\r\n\r\nu")  # 1 of 100 body bytes
    opened = [open_partial(server, payload) for _ in range(150)]
    try:
        # Every thread is taken at first; each one is freed after the request timeout.
        assert healthz_seconds(server, TIMEOUT + 5) < TIMEOUT + 5
        for _ in range(3):  # and it keeps answering while the connections stay open
            time.sleep(1)
            assert healthz_seconds(server, 3) < 3
        if kind == "body":  # the timed-out body read answered 408 or closed, never 500
            for raw in opened[:20]:
                raw.settimeout(5)
                try:
                    answer = raw.recv(200)
                except (TimeoutError, ConnectionResetError):
                    continue
                assert not answer.startswith(b"HTTP/1.1 500"), answer
        log = server.log()
        assert "Traceback" not in log, log[-3000:]
    finally:
        for raw in opened:
            raw.close()


def test_an_idle_websocket_outlives_the_request_timeout(make_server, make_stack):
    stack = make_stack("slow")
    stack.add("app")
    server = make_server(RSGO_REQUEST_TIMEOUT=f"{TIMEOUT}s").start()
    admin = server.login()
    viewer = server.login(add_viewer(server, admin), PASSWORD)

    def seen():
        answer = requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers, timeout=10)
        return answer.json()["id"] if answer.status_code == 200 else None

    deployment = wait_until(seen, 20, interval=0.1, message="discovery")
    page = LiveSocket(server, f"deployment:{deployment}", session=viewer)
    try:
        time.sleep(TIMEOUT + 3)  # idle for longer than the request timeout
        assert not page.closed.is_set()
        answer = put_mode(server, stack.name, "Migrating", reason="after-idle-push")
        assert answer.status_code == 200, answer.text
        wait_until(lambda: page.got("after-idle-push"), 15, message="a push after the idle time")
    finally:
        page.close()


def test_the_access_log_never_carries_the_basic_auth_user_or_control_characters(make_server):
    server = make_server().start()
    forged = base64.b64encode(b'x\n127.0.0.1 - admin "GET /forged HTTP/1.1" 200 \x1b[2K:pw').decode()
    answer = requests.get(f"{server.url}/api/deployments", headers={"Authorization": f"Basic {forged}"}, timeout=10)
    assert answer.status_code == 401
    # Control characters in the request line or headers are refused by gunicorn before the app.
    for request_line in (b"GET /a\x1bb HTTP/1.1\r\nHost: x\r\n\r\n",
                         b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x1b[2Kb\r\n\r\n",
                         b"GET / HTTP/1.1\r\nHost: x\r\nReferer: a\x1b[2Kb\r\n\r\n"):
        raw = open_partial(server, request_line)
        raw.settimeout(10)
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
        raw.close()
    # C1 controls (the CSI U+009B) get through in header values; the log escapes them.
    raw = open_partial(server, b"GET /c1 HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x9b2Kb\r\nReferer: \x85z\r\n\r\n")
    raw.settimeout(10)
    assert raw.recv(100).startswith(b"HTTP/1.1 ")
    raw.close()
    # gunicorn writes a request's line after its answer is sent, from that request's thread: wait for it.
    wait_until(lambda: '"GET /c1 HTTP/1.1"' in server.log(), 15, message="the /c1 request's access log line")
    log = server.log()
    assert "/forged" not in log and "\x1b" not in log and "\x9b" not in log, log[-2000:]
    assert "/api/deployments" in log
    assert '"GET /c1 HTTP/1.1" 302' in log and '"\\x85z" "a\\x9b2Kb"' in log, log[-2000:]


@pytest.mark.parametrize("broken", ["no key", "version 99"])
def test_a_malformed_websocket_handshake_answers_400(make_server, broken):
    server = make_server().start()
    viewer = server.login(add_viewer(server, server.login()), PASSWORD)
    key = "" if broken == "no key" else f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
    version = "99" if broken == "version 99" else "13"
    raw = open_partial(server, (f"GET /ws?topics=dashboard HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                                f"Upgrade: websocket\r\nConnection: Upgrade\r\n{key}"
                                f"Sec-WebSocket-Version: {version}\r\nOrigin: {server.url}\r\n"
                                f"Cookie: {cookie_header(viewer)}\r\n\r\n").encode())
    try:
        status, head, body = read_answer(raw)
    finally:
        raw.close()
    assert status == 400, (head, body)
    assert re.search(rb"(?im)^content-type: application/problem\+json", head)
    problem = json.loads(body)
    assert problem["code"] == "invalid_request"
    assert problem["detail"].startswith("not a valid websocket handshake: ")
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert "Traceback" not in server.log() and "RemoteProtocolError" not in server.log()


def test_a_page_gone_right_after_the_handshake_is_no_error(make_server):
    """A page that resets its websocket right after the 101: simple-websocket's own thread may have closed
    the socket (end of stream) before the view starts with it. That is a page gone: no 500, no traceback,
    and its slot is free again."""
    from test_live_push import HungPage, browser_session

    attempts = 40
    server = make_server(RSGO_MAX_LIVE_CONNECTIONS=str(attempts),
                         RSGO_MAX_LIVE_CONNECTIONS_PER_USER=str(attempts)).start()
    for _ in range(attempts):
        page = HungPage(server, "dashboard")  # the handshake as the signed-in browser's
        page.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        page.sock.close()  # a reset, at once

    # Every slot free again means every one of those connections' views has ended.
    opened: list[LiveSocket] = []

    def all_slots_free() -> bool:
        try:
            opened.append(LiveSocket(server, "dashboard", session=browser_session(server)))
        except websocket.WebSocketBadStatusException:  # 503: a gone page's view still holds its slot
            return False
        return len(opened) == attempts

    try:
        wait_until(all_slots_free, 30, interval=0.2, message="every gone page's slot to be free again")
    finally:
        for page in opened:
            page.close()
    log = server.log()
    assert '" 500 ' not in log and "Traceback" not in log and "unhandled error" not in log, log[-3000:]
