"""In-process publish/subscribe, and the catalogue of every event rsgo publishes
(docs/design.md#events).

Publishers never know who listens. A failing subscriber is logged and never breaks the
publisher (a transition must not fail because a push did). ``publish`` refuses a kind that
is not in ``CATALOGUE`` or fields other than the ones declared for it, so the list below is
always the whole truth about what flows on the bus.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# -- the catalogue: kind -> its fields ------------------------------------------------------

TRANSITION_STARTED = "transition.started"  # written, before the first Docker call
TRANSITION_PROGRESS = "transition.progress"  # one container's result
TRANSITION_FINISHED = "transition.finished"  # outcome: succeeded or failed (also a failure held in memory)
MODE_CHANGED = "mode.changed"  # after the commit of a finished transition
AUDIT_RECORDED = "audit.recorded"  # after the commit of the entry
DEPLOYMENT_DISCOVERED = "deployment.discovered"  # a stack seen for the first time, or again after it was forgotten
DEPLOYMENT_FORGOTTEN = "deployment.forgotten"  # a person forgot a stack without containers
DEPLOYMENT_ENFORCED = "deployment.enforced"  # a stopped-set container stopped again
CONTAINER_CHANGED = "container.changed"  # the in-memory view of one container changed
OBSERVER_CHECKED = "observer.checked"  # an observer's shown status changed
OBSERVER_CHECK_FINISHED = "observer.check.finished"  # every check, changed or not (metrics)
OBSERVER_FAILING = "observer.failing"  # reached failureThreshold
OBSERVER_RECOVERED = "observer.recovered"  # read again after failing, or a reload removed or changed it
WINDOWS_CHANGED = "windows.changed"  # a window added, removed or reloaded (deployment_id None: all)
WEBHOOK_DELIVERY_FINISHED = "webhook.delivery.finished"  # delivered, or failed for good
ENVIRONMENT_CHANGED = "environment.changed"  # an engine became reachable or unreachable, or changed its role
MAINTENANCE_OVERDUE = "maintenance.overdue"  # a stay in Maintenance/Stopped outlasted its reminder (each reminder)
MAINTENANCE_OVERDUE_ENDED = "maintenance.overdue.ended"  # no longer overdue without leaving (held again, turned off)
UPGRADE_PROGRESS = "upgrade.progress"  # an upgrade's status or one of its steps changed
UPGRADE_FINISHED = "upgrade.finished"  # outcome: succeeded, rolled-back, failed
SILENCE_CHANGED = "alertmanager.silence.changed"  # a stack's silence: created, renewed, pending, expired

CATALOGUE: dict[str, frozenset[str]] = {
    TRANSITION_STARTED: frozenset({"deployment_id", "transition_id"}),
    TRANSITION_PROGRESS: frozenset({"deployment_id", "transition_id", "container", "result", "error", "duration_ms",
                                    "done", "total"}),
    TRANSITION_FINISHED: frozenset({"deployment_id", "transition_id", "outcome"}),
    MODE_CHANGED: frozenset({"deployment_id", "previous_mode", "new_mode", "transition_id", "outcome"}),
    AUDIT_RECORDED: frozenset({"entry_id", "deployment_id"}),
    DEPLOYMENT_DISCOVERED: frozenset({"deployment_id"}),
    DEPLOYMENT_FORGOTTEN: frozenset({"deployment_id"}),
    DEPLOYMENT_ENFORCED: frozenset({"deployment_id", "container", "error"}),
    CONTAINER_CHANGED: frozenset({"environment", "old", "new"}),  # ContainerInfo or None each
    OBSERVER_CHECKED: frozenset({"deployment_id"}),
    OBSERVER_CHECK_FINISHED: frozenset({"deployment_id", "stack", "ok"}),  # stack: its name, for the metric
    OBSERVER_FAILING: frozenset({"deployment_id", "observer", "failures", "error"}),
    # cause: "read" (a check read the source again), "removed" or "changed" (a config reload did)
    OBSERVER_RECOVERED: frozenset({"deployment_id", "observer", "cause"}),
    WINDOWS_CHANGED: frozenset({"deployment_id"}),
    WEBHOOK_DELIVERY_FINISHED: frozenset({"delivery_id", "webhook", "event", "result"}),
    ENVIRONMENT_CHANGED: frozenset({"environment"}),
    # since: when the stay began (naive UTC); seconds: how long it has lasted; by: who began it; reminder: 1, 2, ...
    MAINTENANCE_OVERDUE: frozenset({"deployment_id", "mode", "since", "seconds", "by", "reminder"}),
    MAINTENANCE_OVERDUE_ENDED: frozenset({"deployment_id"}),
    UPGRADE_PROGRESS: frozenset({"deployment_id", "upgrade_id", "status"}),
    UPGRADE_FINISHED: frozenset({"deployment_id", "upgrade_id", "outcome"}),
    SILENCE_CHANGED: frozenset({"deployment_id", "state"}),
}

# The events whose deployment's page regions change (the live push renders them again).
DEPLOYMENT_PAGE_EVENTS = frozenset({TRANSITION_STARTED, TRANSITION_PROGRESS, TRANSITION_FINISHED, MODE_CHANGED,
                                    DEPLOYMENT_ENFORCED, OBSERVER_CHECKED, OBSERVER_FAILING, OBSERVER_RECOVERED,
                                    WINDOWS_CHANGED, MAINTENANCE_OVERDUE, MAINTENANCE_OVERDUE_ENDED,
                                    SILENCE_CHANGED})

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
        fields = CATALOGUE.get(kind)
        if fields is None or set(payload) != fields:
            raise ValueError(f"event {kind!r} with fields {sorted(payload)} is not in the catalogue")
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(kind, payload)
            except Exception:
                log.exception("subscriber %r failed on %s", subscriber, kind)
