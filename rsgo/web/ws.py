"""``/ws``: one websocket per open page; it only ever receives HTML fragments."""

from __future__ import annotations

import queue
import socket
import threading
import time

from flask import g, request
from flask_sock import ConnectionClosed, Sock
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError

from rsgo.db import database, release_thread_connection
from rsgo.problems import Problem
from rsgo.security import accounts
from rsgo.security.principal import current, session_key
from rsgo.web import current_runtime
from rsgo.web.hub import LiveLimitReached

sock = Sock()

# How often an idle connection checks whether the browser is still there.
IDLE_CHECK_SECONDS = 2
# simple-websocket pings every PING_SECONDS and closes a connection whose last ping went unanswered:
# a browser that vanished (or a client that never answers) is gone 10-20 s later, its thread freed.
PING_SECONDS = 10
# A send blocked this long (the peer stopped reading and its window is full) ends the connection.
SEND_TIMEOUT_SECONDS = 30
# Ending a user's sessions closes their websockets at once (``end_sessions``); as a backstop (a
# change made by another process, a race with the handshake) each connection re-reads its session.
SESSION_CHECK_SECONDS = 10
# Fragments waiting for a page go out together in one write up to about this many characters.
BATCH_BYTES = 64 * 1024


@sock.route("/ws")
def live_updates(ws):
    hub = current_runtime().hub
    client = g.live_client  # admitted and subscribed before the handshake (``_admit``)
    role = current().role
    client.on_drop = lambda: _abort(ws)
    ws.sock = _WholeWrites(ws.sock)  # before the first ping simple-websocket's thread sends (PING_SECONDS)
    release_thread_connection()  # not held for the connection's lifetime (PostgreSQL has few to give)
    next_check = time.monotonic()  # at once: the session may have ended during the handshake
    try:
        # Inside the try: a page gone right after the handshake has had its socket closed already (by
        # simple-websocket's thread, on the end of the stream); that is a page gone, not an error.
        ws.sock.settimeout(SEND_TIMEOUT_SECONDS)
        while client.alive and ws.connected:
            if time.monotonic() >= next_check:
                if not _session_still_valid(client.session_key, role):
                    break
                next_check = time.monotonic() + SESSION_CHECK_SECONDS
            try:
                messages = [client.messages.get(timeout=IDLE_CHECK_SECONDS)]
            except queue.Empty:
                continue
            # The rest of the batch that woke it (rsgo/web/live_push.py sends a batch at once), up to a
            # bound: a page that reads slowly gets its backlog in pieces, as it gets through them.
            while sum(map(len, messages)) < BATCH_BYTES:
                try:
                    messages.append(client.messages.get_nowait())
                except queue.Empty:
                    break
            _send(ws, messages)
    except (ConnectionClosed, LocalProtocolError, OSError):
        # Gone, dropped by the hub (which shut the socket under a blocked send), or closed by the
        # browser while fragments were being framed (wsproto then refuses to frame more).
        pass
    finally:
        hub.unregister(client)


def _send(ws, messages: list[str]) -> None:
    """Each fragment a websocket message of its own, all in one write. Every write lets go of the GIL, and
    with a few hundred pages woken by one change, getting it back costs more than the write itself."""
    if not ws.connected:
        raise ConnectionClosed(ws.close_reason, ws.close_message)
    ws.sock.send(b"".join(ws.ws.send(TextMessage(data=message)) for message in messages))


class _WholeWrites:
    """The connection's socket, written by two threads: this view's (the fragments) and simple-websocket's
    own (its pings and the close). simple-websocket writes with ``socket.send``, which to a page that reads
    slowly may write only the start of a frame, and the rest is lost: the page sees a broken stream. Here
    every write is whole (``sendall``) and one at a time, so frames are never cut or interleaved."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)  # recv, settimeout, shutdown, fileno, close: the socket's own


def _session_still_valid(key: str | None, role: str | None) -> bool:
    """The user is still signed in with the role the connection was opened with. A database that
    cannot answer counts as no: the page reconnects, and its new handshake checks the session."""
    try:
        with database.connection_context():
            user = accounts.user_of_session(key)
    except Exception:  # noqa: BLE001 - any failure: close (fail closed)
        return False
    return user is not None and user.role == role


def end_sessions(ended_key: str | None) -> None:
    """Close now every open websocket of the sessions that just ended (a sign-out, a role change,
    a deleted user): called by the views that end sessions, with the key ``accounts`` returned."""
    if ended_key:
        current_runtime().hub.end_sessions(ended_key)


@sock.bp.before_request
def _admit():
    """Runs after the app's auth hook (session and Origin checked) and before the handshake: over the
    caps the answer is an HTTP problem, never an upgrade, so websockets cannot starve HTTP."""
    hub = current_runtime().hub
    try:
        g.live_client = hub.admit(session_key())
    except LiveLimitReached as full:
        raise Problem(full.status, "too_many_live_connections", str(full), headers={"Retry-After": "30"}) from None
    # The page says which regions it shows (?topics=dashboard or deployment:5); it gets only those,
    # rendered for what its user may do (operators see mode buttons, viewers do not). Subscribed before
    # the handshake is answered: the live push renders only what some page watches, and a page that
    # has its connection (and then re-fetches its regions) must already count, or a push made right
    # after would be rendered for nobody. What comes before the connection is served waits in its queue.
    audience = "operate" if current().can("operate") else "read"
    hub.subscribe(g.live_client, {f"{t}|{audience}" for t in request.args.get("topics", "").split(",") if t})


@sock.bp.teardown_request
def _release(_error):
    client = g.pop("live_client", None)
    if client is not None:
        current_runtime().hub.release(client)


def _abort(ws) -> None:
    """Shut the connection of a client the hub dropped: a send blocked on it fails at once, and the
    browser, seeing the connection close, reconnects and re-fetches its regions."""
    try:
        ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
