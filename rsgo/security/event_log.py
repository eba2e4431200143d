"""Security events that belong to no deployment: logins, setup, users, tokens and webhooks (§11).

Refused mode changes are ordinary audit entries of their deployment (with the address).
"""

from __future__ import annotations

from rsgo.models import SecurityEvent

KINDS = ("login.succeeded", "login.failed", "login.throttled", "logout", "setup.completed", "user.created",
         "user.changed", "user.deleted", "token.created", "token.revoked", "webhook.created", "webhook.deleted")


def record(kind: str, *, actor: str, address: str | None, detail: str = "") -> SecurityEvent:
    assert kind in KINDS, kind
    return SecurityEvent.create(kind=kind, actor=actor, address=address, detail=detail)


def recent(limit: int = 200) -> list[SecurityEvent]:
    return list(SecurityEvent.select().order_by(SecurityEvent.id.desc()).limit(limit))
