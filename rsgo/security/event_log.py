"""Security events that belong to no deployment: logins, setup, users, tokens and webhooks
(README "Users, tokens and security").

Refused mode changes are ordinary audit entries of their deployment (with the address).
"""

from __future__ import annotations

from rsgo.models import SecurityEvent

KINDS = ("login.succeeded", "login.failed", "login.throttled", "logout", "setup.completed", "user.created",
         "user.changed", "user.deleted", "token.created", "token.revoked", "webhook.created", "webhook.deleted")


def record(kind: str, *, actor: str, address: str | None, detail: str = "") -> SecurityEvent:
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a security event kind (one of {', '.join(KINDS)})")
    return SecurityEvent.create(kind=kind, actor=actor, address=address, detail=detail)


def recent(limit: int = 200) -> list[SecurityEvent]:
    return list(SecurityEvent.select().order_by(SecurityEvent.id.desc()).limit(limit))
