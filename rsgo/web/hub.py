"""The websocket hub: every open page is a client with its own bounded queue.

``publish`` never blocks: it drops a message into each client's queue, and each
client's own websocket thread sends it. A client whose queue overflows (a hung
browser, a dead connection) is dropped, so it can never delay the others.

Each open websocket holds a request thread for as long as it is open, so the hub
also admits them: at most ``max_connections`` in all and ``max_per_user`` per
signed-in user (``rsgo serve`` adds that many threads to the pool HTTP requests
use, so websockets never take HTTP's threads). A client is named by its user's
session key; ending the user's sessions (``end_sessions``) closes its clients.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class LiveLimitReached(Exception):
    """No more live connections for this user (429) or for this server (503)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


class LiveClient:
    def __init__(self, topics: set[str], max_pending: int, session_key: str | None = None):
        self.topics = topics  # "dashboard", "deployment:<id>", "history": the regions its page has
        self.session_key = session_key  # its user's (a secret: never logged)
        self.messages: queue.Queue[str] = queue.Queue(maxsize=max_pending)
        self.alive = True
        # Ends the client's connection when the hub drops it: its thread may be blocked in a send to a
        # peer that stopped reading, and would stay blocked (holding a request thread) for as long as
        # the peer keeps the connection open.
        self.on_drop: Callable[[], None] | None = None


class Hub:
    def __init__(self, max_pending: int = 500, max_connections: int | None = None, max_per_user: int | None = None):
        self._clients: set[LiveClient] = set()  # receiving pushes
        self._connections: set[LiveClient] = set()  # admitted and not released: each holds a thread
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self._max_connections = max_connections
        self._max_per_user = max_per_user

    def admit(self, session_key: str | None = None) -> LiveClient:
        """A slot for one more websocket (before its handshake), or ``LiveLimitReached``.
        The slot is held until ``release``, which the connection's thread calls when it ends."""
        with self._lock:
            if self._max_connections is not None and len(self._connections) >= self._max_connections:
                raise LiveLimitReached(503, f"this server already has {self._max_connections} live connections "
                                            "open, the most it allows; try again later")
            if self._max_per_user is not None and session_key is not None and sum(
                    1 for c in self._connections if c.session_key == session_key) >= self._max_per_user:
                raise LiveLimitReached(429, f"this user already has {self._max_per_user} live connections open, "
                                            "the most allowed; close some pages")
            client = LiveClient(set(), self._max_pending, session_key)
            self._connections.add(client)
        return client

    def subscribe(self, client: LiveClient, topics: set[str]) -> None:
        """From now on ``client`` receives what is published to ``topics`` (unless already dropped)."""
        client.topics = set(topics)
        with self._lock:
            if client.alive:
                self._clients.add(client)

    def register(self, topics: set[str], session_key: str | None = None) -> LiveClient:
        client = self.admit(session_key)
        self.subscribe(client, topics)
        return client

    def unregister(self, client: LiveClient) -> None:
        """No more pushes for ``client``; its slot stays taken until ``release``."""
        client.alive = False
        with self._lock:
            self._clients.discard(client)

    def release(self, client: LiveClient) -> None:
        """The client's connection has ended and its thread is free again."""
        self.unregister(client)
        with self._lock:
            self._connections.discard(client)

    def end_sessions(self, session_key: str) -> int:
        """Close every connection opened with this session key at once (its user signed out, was
        deleted or got another role): nothing more is queued for them, and their sockets are shut."""
        with self._lock:
            ended = [c for c in self._connections if c.session_key == session_key]
        for client in ended:
            self._drop(client)
        return len(ended)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _drop(self, client: LiveClient) -> None:
        self.unregister(client)
        if client.on_drop is not None:
            try:
                client.on_drop()
            except Exception:
                log.exception("closing a dropped live client failed")

    def has_clients(self, topic: str) -> bool:
        """Whether some open page receives ``topic``: what no page shows need not be rendered."""
        with self._lock:
            return any(topic in c.topics for c in self._clients)

    def publish(self, topic: str, html: str) -> None:
        with self._lock:
            clients = [c for c in self._clients if topic in c.topics]
        for client in clients:
            try:
                client.messages.put_nowait(html)
            except queue.Full:
                log.warning("dropping a live client that stopped reading (%d messages pending)", self._max_pending)
                self._drop(client)
