"""The audit trail: every mode change, refusal, no-op, enforcement and resumption
(docs/design.md#audit). ``record`` writes an entry; ``announce`` tells the bus, and callers call it
after the transaction that wrote the entry has committed, so listeners always find it."""

from __future__ import annotations

import datetime as dt

import peewee

from rsgo import events
from rsgo.db import utcnow
from rsgo.models import AuditEntry, Deployment, Transition

# forgotten: a person forgot a stack without containers; rediscovered: it came back (rsgo/forgetting.py)
OUTCOMES = ("succeeded", "failed", "noop", "rejected", "enforced", "resumed", "forgotten", "rediscovered")

# The most each text field of an entry keeps, whoever writes it: the API checks what it reads, but
# observers, windows, Docker errors and future callers must not be able to fill the history either.
FIELD_LIMITS = {"requested_mode": 64, "reason": 1000, "actor": 200, "observed_value": 1000, "error": 2000,
                "address": 100}
_CUT = "…"


def bounded(text: str | None, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` characters (ending in "…" when cut), and storable: a lone
    surrogate, which SQLite cannot encode, becomes its escape."""
    if text is None:
        return None
    text = str(text)
    if len(text) > limit:
        text = text[:limit - len(_CUT)] + _CUT
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(text) > limit:
            text = text[:limit - len(_CUT)] + _CUT
    return text


def record(deployment: Deployment, *, previous_mode: str, new_mode: str, outcome: str, source: str, actor: str,
           reason: str = "", requested_mode: str | None = None, observed_value: str | None = None,
           error: str | None = None, requested_at: dt.datetime | None = None, transition=None,
           address: str | None = None) -> AuditEntry:
    """Write one entry (announce it with ``announce`` once it is committed)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    limit = FIELD_LIMITS
    entry = AuditEntry.create(
        deployment=deployment,
        previous_mode=previous_mode,
        new_mode=new_mode,
        requested_mode=bounded(requested_mode, limit["requested_mode"]),
        outcome=outcome,
        source=source,
        actor=bounded(actor, limit["actor"]),
        reason=bounded(reason or "", limit["reason"]),
        observed_value=bounded(observed_value, limit["observed_value"]),
        error=bounded(error, limit["error"]),
        requested_at=requested_at or utcnow(),
        finished_at=utcnow(),
        transition=transition,
        address=bounded(address, limit["address"]),
    )
    return entry


def announce(bus, entry: AuditEntry) -> None:
    """Tell the live history (and any listener) about a committed entry."""
    bus.publish(events.AUDIT_RECORDED, entry_id=entry.id, deployment_id=entry.deployment_id)


def record_refusal(deployment: Deployment, *, requested_mode: str | None, source: str, actor: str, reason: str,
                   error: str, address: str | None) -> AuditEntry:
    """A mode change refused before it reached the transition service (not allowed for this caller)."""
    return record(deployment, previous_mode=deployment.mode, new_mode=deployment.mode, outcome="rejected",
                  source=source, actor=actor, reason=reason, requested_mode=requested_mode, error=error,
                  address=address)


def entries(*, deployment_id: int | None = None, source: str | None = None, actor: str | None = None,
            outcome: str | None = None, before: int | None = None, limit: int = 50,
            stacks: set[str] | None = None) -> list[AuditEntry]:
    """Newest first; ``before`` is the id of the last entry of the previous page (a cursor)."""
    # The transition comes along (one query): an entry says whether its change was forced.
    query = (AuditEntry.select(AuditEntry, Deployment, Transition).join(Deployment).switch(AuditEntry)
             .join(Transition, peewee.JOIN.LEFT_OUTER).order_by(AuditEntry.id.desc()))
    if deployment_id is not None:
        query = query.where(AuditEntry.deployment == deployment_id)
    if source:
        query = query.where(AuditEntry.source == source)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if outcome:
        query = query.where(AuditEntry.outcome == outcome)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if stacks is not None:  # a token limited to some stacks sees only their entries
        query = query.where(Deployment.name.in_(sorted(stacks)))
    return list(query.limit(limit))
