"""Each observer's status in memory, written through to ``ObserverStatus`` on change
(docs/design.md#observers).

While rsgo runs, the observer service is the only writer of these rows, so the copy in memory is
the truth: a check reads it instead of the database (hundreds of observers at 1 s would otherwise
run hundreds of SELECTs a second), and the ownership hooks and the status pages read it too. Every
change is written first and only then becomes the copy, so a failed write changes nothing and a
restart or a config reload starts from what was last written.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rsgo.models import ObserverStatus

# The columns a record mirrors (all but the key and the deployment).
_FIELDS = ("fingerprint", "last_value", "last_decision", "last_error", "last_check_at", "failures", "failing",
           "suppressed", "streak_decision", "streak_count")


@dataclass(frozen=True)
class StatusRecord:
    """One ``ObserverStatus`` row as last written. Never changed in place: a change replaces it, so a
    reader always sees one whole record."""

    id: int
    deployment_id: int
    fingerprint: str = ""
    last_value: str | None = None
    last_decision: str | None = None
    last_error: str | None = None
    last_check_at: object = None  # datetime or None; the newest check time is the service's
    failures: int = 0
    failing: bool = False
    suppressed: bool = False
    streak_decision: str | None = None
    streak_count: int = 0

    @classmethod
    def of(cls, row: ObserverStatus) -> StatusRecord:
        return cls(id=row.id, deployment_id=row.deployment_id, **{name: getattr(row, name) for name in _FIELDS})


class StatusStore:
    def __init__(self):
        self._records: dict[int, StatusRecord] = {}  # deployment id -> its observer's status
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, deployment_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(deployment_id, threading.Lock())

    def get(self, deployment_id: int) -> StatusRecord | None:
        return self._records.get(deployment_id)

    def load(self, deployment_ids) -> None:
        """Read the rows of these deployments not in memory yet (one query), creating missing ones."""
        missing = [deployment_id for deployment_id in deployment_ids if deployment_id not in self._records]
        if not missing:
            return
        rows = {row.deployment_id: row for row in ObserverStatus.select().where(ObserverStatus.deployment << missing)}
        for deployment_id in missing:
            with self._lock(deployment_id):
                row = rows.get(deployment_id) or ObserverStatus.get_or_none(ObserverStatus.deployment == deployment_id)
                if row is None:
                    row = ObserverStatus.create(deployment=deployment_id, fingerprint="")
                self._records[deployment_id] = StatusRecord.of(row)

    def reset(self, deployment_id: int, fingerprint: str) -> None:
        """A changed observer is a different one: a fresh row for it."""
        with self._lock(deployment_id):
            ObserverStatus.delete().where(ObserverStatus.deployment == deployment_id).execute()
            self._records[deployment_id] = StatusRecord.of(
                ObserverStatus.create(deployment=deployment_id, fingerprint=fingerprint))

    def drop(self, deployment_id: int) -> StatusRecord | None:
        """The observer is gone (removed from the config): its row too. Returns what it was."""
        with self._lock(deployment_id):
            ObserverStatus.delete().where(ObserverStatus.deployment == deployment_id).execute()
            return self._records.pop(deployment_id, None)

    def change(self, deployment_id: int,
               compute: Callable[[StatusRecord], dict | None]) -> tuple[StatusRecord, StatusRecord] | None:
        """``compute(current)`` gives the fields to change (None or {}: nothing); they are written, then
        become the copy. Returns (before, after), or None when nothing was stored (no record, no change).

        Under the deployment's lock, so a check and a suppression never lose each other's change; the
        lock is this store's, never the check's own, which may wait for a transition that suppresses.
        """
        with self._lock(deployment_id):
            before = self._records.get(deployment_id)
            if before is None:
                return None
            changes = compute(before)
            if not changes:
                return None
            ObserverStatus.update(**changes).where(ObserverStatus.id == before.id).execute()
            after = dataclasses.replace(before, **changes)
            self._records[deployment_id] = after
            return before, after
