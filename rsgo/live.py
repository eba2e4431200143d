"""The websocket hub: every open page is a client with its own bounded queue.

``publish`` never blocks: it drops a message into each client's queue, and each
client's own websocket thread sends it. A client whose queue overflows (a hung
browser, a dead connection) is dropped, so it can never delay the others.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

log = logging.getLogger(__name__)


class LiveClient:
    def __init__(self, topics: set[str], max_pending: int):
        self.topics = topics  # "dashboard", "deployment:<id>", "history": the regions its page has
        self.messages: queue.Queue[str] = queue.Queue(maxsize=max_pending)
        self.alive = True
        # Ends the client's connection when the hub drops it: its thread may be blocked in a send to a
        # peer that stopped reading, and would stay blocked (holding a request thread) for as long as
        # the peer keeps the connection open.
        self.on_drop: Callable[[], None] | None = None


class Hub:
    def __init__(self, max_pending: int = 500):
        self._clients: set[LiveClient] = set()
        self._lock = threading.Lock()
        self._max_pending = max_pending

    def register(self, topics: set[str]) -> LiveClient:
        client = LiveClient(topics, self._max_pending)
        with self._lock:
            self._clients.add(client)
        return client

    def unregister(self, client: LiveClient) -> None:
        client.alive = False
        with self._lock:
            self._clients.discard(client)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, topic: str, html: str) -> None:
        with self._lock:
            clients = [c for c in self._clients if topic in c.topics]
        for client in clients:
            try:
                client.messages.put_nowait(html)
            except queue.Full:
                log.warning("dropping a live client that stopped reading (%d messages pending)", self._max_pending)
                self.unregister(client)
                if client.on_drop is not None:
                    try:
                        client.on_drop()
                    except Exception:
                        log.exception("closing a dropped live client failed")
