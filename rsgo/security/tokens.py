"""API tokens: random, ``rsgo_``-prefixed, stored only as a SHA-256 hash, shown once
(README "Users, tokens and security").

A token has a scope (read, operate, admin: ``rsgo.security.permissions``), optionally a list
of stacks it may touch, optionally an expiry, and records when it was last used. Revoked
tokens stay listed. ``digest`` is how every token rsgo hands out (these, and the one-time
setup token) is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import peewee

from rsgo.db import STORAGE_ERRORS, utcnow
from rsgo.models import ApiToken
from rsgo.security.permissions import SCOPE_PERMISSIONS as SCOPE_PERMISSIONS  # re-exported for callers
from rsgo.security.permissions import SCOPES
from rsgo.settings import parse_duration

PREFIX = "rsgo_"
# Writing "last used" on every request would make every read a write; a minute is precise enough.
_LAST_USED_PRECISION = dt.timedelta(minutes=1)


class TokenError(ValueError):
    """A token cannot be created as asked; the message says why."""


class TokenRejected(Exception):
    """The presented token is unknown, expired or revoked; the message says which."""


def digest(token: str) -> str:
    """The stored form of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def expiry(expires_in: str | None) -> dt.datetime | None:
    """When a token created now for ``expires_in`` (``30d``, ``12h``, ``1h30m``) expires; None for
    an empty text (never). ``TokenError`` for a text that is not a duration. The CLI's
    ``--expires-in`` and the admin page's field both go through here."""
    text = (expires_in or "").strip()
    if not text:
        return None
    try:
        return utcnow() + dt.timedelta(seconds=parse_duration(text))
    except ValueError as error:
        raise TokenError(str(error)) from None


def create_token(name: str, scope: str, *, created_by: str, stacks: list[str] | None = None,
                 expires_at: dt.datetime | None = None) -> tuple[ApiToken, str]:
    """Returns the row and the token in clear, which is never available again."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise TokenError("a token needs a name of 1-64 characters")
    if scope not in SCOPES:
        raise TokenError(f"scope must be one of {', '.join(SCOPES)}")
    stacks = sorted({s.strip() for s in (stacks or []) if s.strip()})
    clear = PREFIX + secrets.token_urlsafe(32)
    try:
        row = ApiToken.create(name=name, token_hash=digest(clear), hint=clear[len(PREFIX):len(PREFIX) + 4],
                              scope=scope, stacks=",".join(stacks) or None, expires_at=expires_at,
                              created_by=created_by)
    except peewee.IntegrityError:
        raise TokenError(f"a token named {name!r} already exists") from None
    return row, clear


def authenticate(clear: str) -> ApiToken:
    row = ApiToken.get_or_none(ApiToken.token_hash == digest(clear or ""))
    if row is None or not (clear or "").startswith(PREFIX):
        raise TokenRejected("unknown API token")
    if row.revoked_at is not None:
        raise TokenRejected(f"API token {row.name!r} was revoked")
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        raise TokenRejected(f"API token {row.name!r} expired")
    if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_PRECISION:
        try:
            ApiToken.update(last_used_at=now).where(ApiToken.id == row.id).execute()
        except STORAGE_ERRORS:
            pass  # best effort: reads must keep working while the database cannot be written
    return row


def revoke(row: ApiToken) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        row.save()


def stacks_of(row: ApiToken) -> set[str] | None:
    """The stacks a token is limited to; None: all of them."""
    return set(row.stacks.split(",")) if row.stacks else None
