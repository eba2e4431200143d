"""The mode of each observed deployment and who set it, as the observer service last read them
(docs/design.md#observers).

An observer acts only when its decision and the deployment's mode call for it, and almost every check
finds that nothing can happen; reading the deployment for each of hundreds of checks a second cost
more than the checks. Every mode change is announced on the bus after its commit (``mode.changed``,
and a transition's start and end), and each such event drops what is known of its deployment, so the
next check reads it again. A read that began before such an event is not kept (a generation count per
deployment), and nothing is kept longer than ``LIFETIME``: a change announced by no event would only
delay an observer's action, never cause a wrong one (the transition service decides on the database's
state, not on this).
"""

from __future__ import annotations

import threading
import time

from rsgo import events
from rsgo.models import Deployment

LIFETIME = 30.0  # seconds

# The events after which a deployment's mode or trigger may differ from what was read.
_CHANGING = frozenset({events.MODE_CHANGED, events.TRANSITION_STARTED, events.TRANSITION_FINISHED,
                       events.DEPLOYMENT_DISCOVERED, events.DEPLOYMENT_FORGOTTEN, events.UPGRADE_FINISHED})


class DeploymentModes:
    def __init__(self, bus, lifetime: float = LIFETIME, clock=time.monotonic):
        self._known: dict[int, tuple[str, str, float]] = {}  # id -> (mode, trigger source, read at)
        self._generation: dict[int, int] = {}  # id -> how many changing events it has had
        self._epoch = 0  # how many times everything was dropped
        self._lock = threading.Lock()
        self._lifetime = lifetime
        self._clock = clock
        self._unsubscribe = bus.subscribe(self._on_event)

    def close(self) -> None:
        self._unsubscribe()

    def _on_event(self, kind: str, payload: dict) -> None:
        if kind not in _CHANGING:
            return
        deployment_id = payload.get("deployment_id")
        with self._lock:
            self._generation[deployment_id] = self._generation.get(deployment_id, 0) + 1
            self._known.pop(deployment_id, None)

    def forget_all(self) -> None:
        with self._lock:
            self._epoch += 1
            self._known.clear()

    def get(self, deployment_id: int) -> tuple[str, str] | None:
        """(mode, trigger source) of the deployment; None if it does not exist."""
        now = self._clock()
        with self._lock:
            known = self._known.get(deployment_id)
            if known is not None and now - known[2] < self._lifetime:
                return known[0], known[1]
            stamp = (self._epoch, self._generation.get(deployment_id, 0))
        row = (Deployment.select(Deployment.mode, Deployment.trigger_source)
               .where(Deployment.id == deployment_id).tuples().first())
        if row is None:
            return None
        with self._lock:
            if stamp == (self._epoch, self._generation.get(deployment_id, 0)):
                self._known[deployment_id] = (row[0], row[1], now)
        return row[0], row[1]
