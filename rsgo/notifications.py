"""Notifications through Apprise (README "Notifications"): short human messages about mode changes,
failed transitions, failing observers, overdue maintenance and upgrades, to any service Apprise
speaks (Slack, Teams, Discord, e-mail, ntfy, JSON …).

The same guarantees as webhooks (``rsgo.webhooks``): the bus handler, in the publisher's (a
transition's) thread, only writes the delivery row with its finished message and queues it; a
thread of its own sends it, tries again after 1 s, 2 s and 4 s, and keeps every attempt on the row.
Rows a crash left pending are sent at the next start. The URL carries the secrets, so it lives only
in the loaded config: rows name the entry and keep its masked form, and an error Apprise logged is
scrubbed of every part of the URL before it is kept or logged. One sender thread: Apprise's errors
are read from its log, which is one per process; each attempt is bounded by the service's timeout.
"""

from __future__ import annotations

import heapq
import json
import logging
import queue
import threading
import time

from rsgo.db import release_thread_connection, timestamp, utcnow
from rsgo.events import (
    MAINTENANCE_OVERDUE,
    MODE_CHANGED,
    OBSERVER_FAILING,
    OBSERVER_RECOVERED,
    TRANSITION_FINISHED,
    UPGRADE_FINISHED,
    EventBus,
)
from rsgo.models import Deployment, NotificationDelivery
from rsgo.notification_config import NotificationConfig, scrub
from rsgo.notification_messages import message

log = logging.getLogger(__name__)
# Apprise's own log lines may quote parts of a URL (a host that is a token, at DEBUG the whole address
# it posts to): they stay out of rsgo's log, which gets them only scrubbed, as an attempt's error.
logging.getLogger("apprise").propagate = False

TEST_EVENT = "notification.test"


def attempts_of(row: NotificationDelivery) -> list[dict]:
    try:
        return json.loads(row.attempt_log or "[]")
    except ValueError:
        return []


def send_once(entry: NotificationConfig, title: str, body: str) -> str | None:
    """Send through Apprise once; None when delivered, else the error (scrubbed of the URL's secrets)."""
    import apprise  # on first use, as in rsgo.notification_config

    sender = apprise.Apprise()
    if not sender.add(entry.url):
        return "the URL is not one Apprise can use"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        try:
            delivered = sender.notify(body=body, title=title)
        except Exception as error:  # noqa: BLE001 - a plugin's own bug must not end the sender thread
            return scrub(f"{type(error).__name__}: {error}", entry.url)
        output = captured.getvalue()
    if delivered:
        return None
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return scrub("; ".join(lines[-3:]) or "not delivered (Apprise gave no reason)", entry.url)


class NotificationDispatcher:
    def __init__(self, bus: EventBus, *, public_url: str = "", base_delay: float = 1.0, retries: int = 3):
        self.public_url = public_url.rstrip("/")
        self.base_delay = base_delay
        self.retries = retries
        self.entries: dict[str, NotificationConfig] = {}
        self._queue: queue.Queue = queue.Queue()
        self._due: list[tuple[float, int]] = []
        self._due_changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsubscribe = bus.subscribe(self._on_event)

    def apply(self, config) -> None:
        self.entries = {entry.name: entry for entry in config.notifications}

    # -- events ----------------------------------------------------------------------------

    def _on_event(self, kind: str, payload: dict) -> None:
        """In the publisher's thread: write each message and queue it; nothing is sent here."""
        if kind == MODE_CHANGED:
            # A transition that ended Failed is told once, by transition.failed.
            if payload["previous_mode"] == payload["new_mode"] or payload["new_mode"] == "Failed":
                return
            event = "mode.changed"
        elif kind == TRANSITION_FINISHED and payload.get("outcome") == "failed":
            event = "transition.failed"
        elif kind in (OBSERVER_FAILING, OBSERVER_RECOVERED, MAINTENANCE_OVERDUE, UPGRADE_FINISHED):
            event = kind
        else:
            return
        if not self.entries:
            return  # nothing configured: no read in the mode change's own request thread
        deployment = Deployment.get_or_none(Deployment.id == payload["deployment_id"])
        if deployment is None:
            return
        entries = [entry for entry in self.entries.values() if entry.wants(event, deployment.name)]
        if not entries:
            return
        title, body = message(event, payload, deployment, self.public_url)
        for entry in entries:
            row = NotificationDelivery.create(notification=entry.name, target=entry.shown_url, event=event,
                                              deployment=deployment.id, title=title, message=body)
            self._queue.put(row.id)

    # -- sending ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        for target, name in ((self._work, "rsgo-notifications"), (self._release_due, "rsgo-notification-retries")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        pending = NotificationDelivery.select(NotificationDelivery.id).where(NotificationDelivery.status == "pending")
        for row in pending.order_by(NotificationDelivery.id):
            self._queue.put(row.id)

    def stop(self, timeout: float = 2.0) -> None:
        self._unsubscribe()
        self._stopping.set()
        with self._due_changed:
            self._due_changed.notify_all()
        self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _release_due(self) -> None:
        with self._due_changed:
            while not self._stopping.is_set():
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    self._queue.put(heapq.heappop(self._due)[1])
                self._due_changed.wait(self._due[0][0] - now if self._due else None)

    def _work(self) -> None:
        while (row_id := self._queue.get()) is not None and not self._stopping.is_set():
            try:
                self._attempt(row_id)
            except Exception:
                log.exception("notification %s failed unexpectedly", row_id)
            finally:
                release_thread_connection()

    def _attempt(self, row_id: int) -> None:
        row = NotificationDelivery.get_or_none(NotificationDelivery.id == row_id)
        if row is None or row.status != "pending":
            return
        entry = self.entries.get(row.notification)
        began = time.monotonic()
        if entry is None:
            error = "its notifications: entry was removed from the config"
        else:
            error = send_once(entry, row.title, row.message)
        if self._stopping.is_set():
            return  # the row stays pending and is sent at the next start
        attempts = row.attempts + 1
        entries = attempts_of(row) + [{"at": timestamp(utcnow()), "error": error,
                                       "durationMs": int((time.monotonic() - began) * 1000)}]
        status = "delivered" if error is None else "failed" if attempts > self.retries or entry is None else "pending"
        (NotificationDelivery.update(status=status, attempts=attempts, attempt_log=json.dumps(entries),
                                     last_error=error, delivered_at=utcnow() if status == "delivered" else None)
         .where(NotificationDelivery.id == row.id).execute())
        if status == "pending":
            delay = self.base_delay * 2 ** (attempts - 1)
            log.info("notification %s: %s attempt %d failed (%s); retrying in %gs", row.notification, row.event,
                     attempts, error, delay)
            with self._due_changed:
                heapq.heappush(self._due, (time.monotonic() + delay, row.id))
                self._due_changed.notify_all()
        elif status == "failed":
            log.warning("notification %s: %s failed after %d attempts: %s", row.notification, row.event, attempts,
                        error)
        else:
            log.info("notification %s: %s delivered (attempt %d)", row.notification, row.event, attempts)

    def send_test(self, entry: NotificationConfig, actor: str) -> NotificationDelivery:
        """"Send test" on the admin page: once, now, while the admin waits; logged, never retried."""
        title = "rsgo: test"
        body = f"🧪 A test from rsgo's admin page, sent by {actor}; no stack changed." + (
            f"\n{self.public_url}/" if self.public_url else "")
        began = time.monotonic()
        error = send_once(entry, title, body)
        attempt = {"at": timestamp(utcnow()), "error": error, "durationMs": int((time.monotonic() - began) * 1000)}
        return NotificationDelivery.create(
            notification=entry.name, target=entry.shown_url, event=TEST_EVENT, title=title, message=body,
            status="delivered" if error is None else "failed", attempts=1, attempt_log=json.dumps([attempt]),
            last_error=error, delivered_at=utcnow() if error is None else None)
