"""Signed webhooks (README "Webhooks"): mode changes, failed transitions, observer failures and
overdue maintenance POSTed as JSON.

The bus handler runs in the publisher's thread (a transition's), so it only writes the
delivery row, with the exact body, and queues it; a small pool of threads of its own
sends it. A delivery is tried once and retried 3 times with backoff (1 s, 2 s, 4 s by
default); each attempt's status code or error is kept on the row. A slow or hanging
endpoint holds one sender thread for at most the timeout and never a transition.
Deliveries a crash left pending are sent at the next start.

The body carries its own timestamp and, when the webhook has a secret, the header
``X-RSGO-Signature: sha256=<hex HMAC-SHA256 of the raw body>``: a receiver checks the
signature and refuses old timestamps, so a replayed request is detectable. Secrets are
never logged (SQL parameters never reach the log: ``rsgo.log_safety``) and never rendered.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import hmac
import json
import logging
import queue
import threading
import time
import uuid

import requests

from rsgo.db import database, release_thread_connection, timestamp, utcnow
from rsgo.events import (
    MAINTENANCE_OVERDUE,
    MODE_CHANGED,
    OBSERVER_FAILING,
    OBSERVER_RECOVERED,
    TRANSITION_FINISHED,
    UPGRADE_FINISHED,
    WEBHOOK_DELIVERY_FINISHED,
    EventBus,
)
from rsgo.http_errors import describe
from rsgo.models import Deployment, ObserverStatus, Transition, Upgrade, Webhook, WebhookDelivery
from rsgo.outbound import NO_POLICY, OutboundDenied, OutboundPolicy, guard
from rsgo.stack_config import WEBHOOK_EVENTS, WebhookConfig

log = logging.getLogger(__name__)

USER_AGENT = "rsgo-webhooks/1"
SECRET_MASK = "••••••••"


class WebhookError(ValueError):
    """A webhook that cannot be added or removed; the message says why."""


def sign(secret: str, body: bytes) -> str:
    """The ``X-RSGO-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def attempts_of(delivery: WebhookDelivery) -> list[dict]:
    try:
        return json.loads(delivery.attempt_log or "[]")
    except ValueError:
        return []


class WebhookDispatcher:
    def __init__(self, bus: EventBus, environment: str, *, workers: int = 4, base_delay: float = 1.0,
                 retries: int = 3, timeout: float = 10.0, outbound: OutboundPolicy = NO_POLICY):
        self._bus = bus
        self.outbound = outbound
        self._environment = environment
        self._workers = workers
        self.base_delay = base_delay
        self.retries = retries
        self.timeout = timeout
        self._queue: queue.Queue = queue.Queue()  # webhook ids with deliveries waiting in their line
        self._lines: dict[int, collections.deque] = {}  # webhook id → delivery row ids ready to send
        self._served: set[int] = set()  # webhooks queued or being served by a sender
        self._known: set[int] = set()  # delivery rows in a line, waiting for a retry, or being sent
        self._due: list[tuple[float, int, int]] = []  # (monotonic instant, delivery, webhook) of waiting retries
        self._due_changed = threading.Condition()
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsubscribe = bus.subscribe(self._on_event)

    # -- configuration ---------------------------------------------------------------------

    def sync_config(self, webhooks: list[WebhookConfig], keep: set[str] = frozenset()) -> None:
        """Make the config-file webhooks exactly the file's (matched by name); UI webhooks stay.

        ``keep``: names of broken entries in the file; what is stored under them stays as it is
        (a webhook is never deleted, with its delivery log, because its entry had a typo)."""
        existing = {hook.name: hook for hook in Webhook.select().where(Webhook.origin == "config")}
        # The loader refuses a name used twice (a config problem), so each name comes once.
        wanted = {hook.name: hook for hook in webhooks}
        with database.atomic():
            for name, row in existing.items():
                if name not in wanted and name not in keep:
                    row.delete_instance()
            for name, hook in wanted.items():
                events = ",".join(hook.events)
                row = existing.get(name)
                if row is None:
                    Webhook.create(name=name, url=hook.url, secret=hook.secret, events=events, origin="config",
                                   created_by="config")
                elif (row.url, row.secret, row.events) != (hook.url, hook.secret, events):
                    row.url, row.secret, row.events = hook.url, hook.secret, events
                    row.save()

    def add(self, name: str, url: str, secret: str | None, events: list[str], *, created_by: str) -> Webhook:
        """A webhook added in the admin UI (origin ``ui``)."""
        name, url, secret = (name or "").strip(), (url or "").strip(), (secret or "").strip() or None
        if not name or len(name) > 100:
            raise WebhookError("a name of 1 to 100 characters is required")
        if Webhook.select().where(Webhook.name == name).exists():
            raise WebhookError(f"a webhook named {name!r} already exists")
        if not url.startswith(("http://", "https://")) or len(url) > 2000:
            raise WebhookError("the URL must start with http:// or https://")
        refusal = self.outbound.url_refusal(url)
        if refusal:
            raise WebhookError(refusal)
        if not events or any(event not in WEBHOOK_EVENTS for event in events):
            raise WebhookError(f"choose one or more of {', '.join(WEBHOOK_EVENTS)}")
        ordered = [event for event in WEBHOOK_EVENTS if event in events]
        return Webhook.create(name=name, url=url, secret=secret, events=",".join(ordered), origin="ui",
                              created_by=created_by)

    @staticmethod
    def remove(webhook: Webhook) -> None:
        if webhook.origin != "ui":
            raise WebhookError(f"{webhook.name} comes from the config file: remove it there and reload")
        webhook.delete_instance()  # its delivery log goes with it

    # -- events ----------------------------------------------------------------------------

    def _on_event(self, kind: str, payload: dict) -> None:
        """In the publisher's thread: write the deliveries and queue them; nothing is sent here."""
        if kind == MODE_CHANGED:
            if payload["previous_mode"] == payload["new_mode"]:
                return
            event = "mode.changed"
        elif kind == TRANSITION_FINISHED and payload.get("outcome") == "failed":
            event = "transition.failed"
        elif kind in (OBSERVER_FAILING, OBSERVER_RECOVERED, MAINTENANCE_OVERDUE, UPGRADE_FINISHED):
            event = kind
        else:
            return
        hooks = [hook for hook in Webhook.select() if event in hook.event_list]
        if not hooks:
            return
        deployment = Deployment.get_or_none(Deployment.id == payload["deployment_id"])
        if deployment is None:
            return
        fields = self._fields(event, payload, deployment)
        at = timestamp(utcnow())
        for hook in hooks:
            delivery_id = str(uuid.uuid4())
            body = {"event": event, "deliveryId": delivery_id, "timestamp": at,
                    "deployment": {"id": deployment.id, "name": deployment.name,
                                   "environment": deployment.environment},
                    **fields}
            row = WebhookDelivery.create(webhook=hook, delivery_id=delivery_id, event=event,
                                         body=json.dumps(body, separators=(",", ":")))
            self._enqueue(row.id, hook.id)

    @staticmethod
    def _fields(event: str, payload: dict, deployment: Deployment) -> dict:
        if event in ("mode.changed", "transition.failed"):
            transition = Transition.get_or_none(Transition.id == payload["transition_id"])
            previous = payload.get("previous_mode") or (transition.previous_mode if transition else None)
            return {
                "previousMode": previous,
                "newMode": payload.get("new_mode", deployment.mode),
                "requestedMode": transition.target_mode if transition else None,
                "outcome": payload.get("outcome"),
                "trigger": transition.source if transition else deployment.trigger_source,
                "actor": transition.actor if transition else deployment.trigger_actor,
                "reason": transition.reason if transition else deployment.trigger_reason,
                "observedValue": transition.observed_value if transition else deployment.trigger_observed_value,
                "transitionId": payload["transition_id"],
                "error": transition.error if transition else None,
            }
        if event == "upgrade.finished":
            upgrade = Upgrade.get_by_id(payload["upgrade_id"])
            return {"upgradeId": upgrade.id, "kind": upgrade.kind, "outcome": payload["outcome"],
                    "mode": deployment.mode, "actor": upgrade.actor, "reason": upgrade.reason,
                    "error": upgrade.error, "images": json.loads(upgrade.request).get("images")}
        if event == "maintenance.overdue":
            return {"mode": payload["mode"], "since": timestamp(payload["since"]), "for": payload["seconds"],
                    "by": payload["by"], "trigger": deployment.trigger_source, "reason": deployment.trigger_reason,
                    "reminder": payload["reminder"]}
        status = ObserverStatus.get_or_none(ObserverStatus.deployment == deployment.id)
        return {
            "mode": deployment.mode,
            "observer": {
                "name": payload.get("observer"),
                "failures": payload.get("failures", status.failures if status else 0),
                "error": payload.get("error"),
                "lastValue": status.last_value if status else None,
                # observer.recovered only: "read" (its source reads again), "removed" or "changed" (a reload)
                **({"recoveredBy": payload["cause"]} if "cause" in payload else {}),
            },
        }

    # -- sending ---------------------------------------------------------------------------
    #
    # The work queue holds webhooks, not deliveries: each webhook's deliveries wait in a line of
    # their own and one sender at a time serves it, in order. A dead endpoint therefore holds
    # one sender (for at most the timeout per attempt), never the deliveries of other webhooks.

    def start(self) -> None:
        """Start the sender threads and send what a previous process left pending."""
        if self._threads:
            return
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"rsgo-webhook-{index + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)
        timer = threading.Thread(target=self._release_due, name="rsgo-webhook-retries", daemon=True)
        timer.start()
        self._threads.append(timer)
        pending = list(WebhookDelivery.select(WebhookDelivery.id, WebhookDelivery.webhook)
                       .where(WebhookDelivery.status == "pending").order_by(WebhookDelivery.id))
        if pending:
            log.info("webhooks: %d deliveries left pending are sent again", len(pending))
        for row in pending:
            self._enqueue(row.id, row.webhook_id)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sending; an attempt in flight is abandoned (the row stays pending for the next start)."""
        self._unsubscribe()
        self._stopping.set()
        with self._due_changed:
            self._due_changed.notify_all()
        for _ in range(self._workers):
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _enqueue(self, delivery: int, webhook: int) -> None:
        with self._guard:
            if delivery in self._known:
                return
            self._known.add(delivery)
            self._line_up(delivery, webhook)

    def _line_up(self, delivery: int, webhook: int) -> None:
        """With ``_guard`` held: the delivery waits in its webhook's line, the webhook for a sender."""
        self._lines.setdefault(webhook, collections.deque()).append(delivery)
        if webhook not in self._served:
            self._served.add(webhook)
            self._queue.put(webhook)

    def _retry_later(self, delivery: int, webhook: int, delay: float) -> None:
        with self._due_changed:
            heapq.heappush(self._due, (time.monotonic() + delay, delivery, webhook))
            self._due_changed.notify_all()

    def _release_due(self) -> None:
        with self._due_changed:
            while not self._stopping.is_set():
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, delivery, webhook = heapq.heappop(self._due)
                    with self._guard:
                        self._line_up(delivery, webhook)
                wait = self._due[0][0] - now if self._due else None
                self._due_changed.wait(wait)

    def _work(self) -> None:
        while True:
            webhook = self._queue.get()
            if webhook is None or self._stopping.is_set():
                return
            with self._guard:
                line = self._lines.get(webhook)
                delivery = line.popleft() if line else None
            try:
                if delivery is not None:
                    self._attempt(delivery)
            except Exception:
                log.exception("webhook delivery %s failed unexpectedly", delivery)
                self._done(delivery)
            finally:
                release_thread_connection()
                with self._guard:
                    if self._lines.get(webhook):
                        self._queue.put(webhook)  # more are waiting: back in the queue, behind other webhooks
                    else:
                        self._lines.pop(webhook, None)
                        self._served.discard(webhook)

    def _done(self, delivery: int) -> None:
        with self._guard:
            self._known.discard(delivery)

    def _attempt(self, delivery_pk: int) -> None:
        row = WebhookDelivery.get_or_none(WebhookDelivery.id == delivery_pk)
        if row is None or row.status != "pending":
            self._done(delivery_pk)
            return
        hook = row.webhook
        body = row.body.encode("utf-8")
        sent_at = json.loads(row.body).get("timestamp", "")
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-RSGO-Event": row.event,
                   "X-RSGO-Delivery": row.delivery_id, "X-RSGO-Timestamp": sent_at}
        if hook.secret:
            headers["X-RSGO-Signature"] = sign(hook.secret, body)
        began = time.monotonic()
        code, error, denied = None, None, False
        try:
            with guard(requests.Session(), self.outbound) as session:
                response = session.post(hook.url, data=body, headers=headers,
                                        timeout=(self.timeout, self.timeout), allow_redirects=False)
            code = response.status_code
            response.close()
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except OutboundDenied as refusal:
            error, denied = str(refusal), True  # trying again would be refused again: failed at once
        except requests.RequestException as failure:
            error = describe(failure, self.timeout)
        if self._stopping.is_set():
            return  # stopped meanwhile: the row stays pending and is sent at the next start
        duration_ms = int((time.monotonic() - began) * 1000)
        attempts = row.attempts + 1
        log_entries = attempts_of(row) + [{"at": timestamp(utcnow()), "statusCode": code, "error": error,
                                           "durationMs": duration_ms}]
        if error is None:
            status, result = "delivered", "delivered"
        elif attempts > self.retries or denied:
            status, result = "failed", "failed"
        else:
            status, result = "pending", None
        (WebhookDelivery.update(status=status, attempts=attempts, attempt_log=json.dumps(log_entries),
                                last_status_code=code, last_error=error,
                                delivered_at=utcnow() if status == "delivered" else None)
         .where(WebhookDelivery.id == row.id).execute())
        if result is None:
            delay = self.base_delay * 2 ** (attempts - 1)
            log.info("webhook %s: %s delivery %s attempt %d failed (%s); retrying in %gs", hook.name, row.event,
                     row.delivery_id, attempts, error, delay)
            self._retry_later(row.id, row.webhook_id, delay)
            return
        self._done(row.id)
        if result == "delivered":
            log.info("webhook %s: %s delivery %s delivered (HTTP %s, attempt %d)", hook.name, row.event,
                     row.delivery_id, code, attempts)
        else:
            log.warning("webhook %s: %s delivery %s failed after %d attempts: %s", hook.name, row.event,
                        row.delivery_id, attempts, error)
        self._bus.publish(WEBHOOK_DELIVERY_FINISHED, delivery_id=row.id, webhook=hook.name, event=row.event,
                          result=result)
