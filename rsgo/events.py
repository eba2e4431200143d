"""In-process publish/subscribe for things that happened (mode changed, a container stopped).

The live websocket hub, enforcement and, later, webhooks and metrics subscribe
here; publishers never know who listens. A failing subscriber is logged and
never breaks the publisher (a transition must not fail because a push did).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

Subscriber = Callable[[str, dict], Any]


class EventBus:
    def __init__(self):
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe():
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, kind: str, **payload) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(kind, payload)
            except Exception:
                log.exception("subscriber %r failed on %s", subscriber, kind)
