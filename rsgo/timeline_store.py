"""The mode changes timelines are built from (``rsgo.timeline``), read from the audit trail.

A mode change is an entry that succeeded or failed and either changed the mode or ended a transition
(a failed change out of Failed stays Failed, with a new reason). Refusals, no-ops, enforcement and a
Docker error before any transition change nothing and are not read.

``read_changes`` reads any number of deployments in two queries (the changes since an instant, and
the last change before it of each deployment). The dashboard (300 stacks and more) must not read even
those on every request: ``RecentModeChanges`` keeps every deployment's recent changes in memory and
reads a deployment again only after an audit entry of it was committed (the bus says so), and all of
them once an hour, so what it keeps stays bounded.
"""

from __future__ import annotations

import datetime as dt
import threading

import peewee

from rsgo import events
from rsgo.db import utcnow
from rsgo.models import AuditEntry
from rsgo.timeline import DAY, Change

RELOAD_AFTER = dt.timedelta(hours=1)

_FIELDS = (AuditEntry.id, AuditEntry.deployment, AuditEntry.finished_at, AuditEntry.previous_mode,
           AuditEntry.new_mode, AuditEntry.source, AuditEntry.actor, AuditEntry.reason)


def _mode_changing():
    return (AuditEntry.outcome.in_(("succeeded", "failed"))
            & ((AuditEntry.new_mode != AuditEntry.previous_mode) | AuditEntry.transition.is_null(False)))


def _change(row: AuditEntry) -> Change:
    return Change(deployment_id=row.deployment_id, at=row.finished_at, previous_mode=row.previous_mode,
                  mode=row.new_mode, source=row.source, actor=row.actor, reason=row.reason or "")


def read_changes(since: dt.datetime, deployment_ids: list[int] | None = None) -> dict[int, list[Change]]:
    """Each deployment's changes after ``since`` and its last one at or before it, oldest first (None:
    every deployment). Deployments without any change are absent."""
    recent = AuditEntry.select(*_FIELDS).where(_mode_changing() & (AuditEntry.finished_at > since))
    last_ids = (AuditEntry.select(peewee.fn.MAX(AuditEntry.id))
                .where(_mode_changing() & (AuditEntry.finished_at <= since)).group_by(AuditEntry.deployment))
    if deployment_ids is not None:
        recent = recent.where(AuditEntry.deployment.in_(deployment_ids))
        last_ids = last_ids.where(AuditEntry.deployment.in_(deployment_ids))
    rows = list(AuditEntry.select(*_FIELDS).where(AuditEntry.id.in_(last_ids))) + list(recent)
    found: dict[int, list[Change]] = {}
    for row in sorted(rows, key=lambda row: row.id):
        found.setdefault(row.deployment_id, []).append(_change(row))
    return found


class RecentModeChanges:
    """Every deployment's mode changes of the last day and more (plus the last one before), in memory."""

    def __init__(self, bus, clock=utcnow, reach: dt.timedelta = DAY):
        self._clock = clock
        self._reach = reach
        self._lock = threading.Lock()
        self._since: dt.datetime | None = None  # what is kept covers every window that starts after this
        self._loaded_at: dt.datetime | None = None
        self._changes: dict[int, list[Change]] = {}
        self._read_number = 0  # each read's number: an older read never replaces a newer one's result
        self._read_by: dict[int, int] = {}  # deployment id -> the number of the read its changes come from
        self._stale: set[int] = set()
        self.reads = 0  # how many times the database was read (tests, and to see the cache at work)
        bus.subscribe(self._on_event)

    def _on_event(self, kind: str, payload: dict) -> None:
        # Published after the entry's commit, so a read that starts after this mark sees it.
        if kind == events.AUDIT_RECORDED and payload.get("deployment_id") is not None:
            with self._lock:
                self._stale.add(payload["deployment_id"])

    def changes(self) -> dict[int, list[Change]]:
        """Every deployment's changes since at least a day ago, and the last one before that."""
        now = self._clock()
        with self._lock:
            everything = self._since is None or now - self._loaded_at > RELOAD_AFTER
            stale = sorted(self._stale)
            self._stale.clear()  # before reading: a mark that arrives during the read stays for the next one
            self._read_number += 1
            number = self._read_number
            since = now - self._reach if everything else self._since
        if everything or stale:
            self.reads += 1
            found = read_changes(since, None if everything else stale)
            with self._lock:
                if everything and (self._since is None or since >= self._since):
                    self._since, self._loaded_at = since, now
                for deployment_id in (set(found) | set(self._changes)) if everything else stale:
                    if self._read_by.get(deployment_id, 0) < number:
                        self._read_by[deployment_id] = number
                        self._changes[deployment_id] = found.get(deployment_id, [])
        with self._lock:
            return dict(self._changes)
