"""People: users with a role, passwords hashed with Argon2id (memory-hard), the one-time setup token
(README "Users, tokens and security").
"""

from __future__ import annotations

import functools
import hmac
import secrets
import threading

import peewee
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from rsgo.db import utcnow, write_transaction
from rsgo.models import SetupToken, User, new_session_key
from rsgo.security.permissions import ROLES
from rsgo.security.tokens import digest

_hasher = PasswordHasher()  # Argon2id with the library's current recommended memory and time costs


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps a login for an unknown user as slow as one for a known user.
    Made at the first such login, not at import (an Argon2 hash takes real time and memory)."""
    return _hasher.hash("rsgo-no-such-user")

MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    """A user cannot be created or changed as asked; the message says why."""


# Each Argon2id check takes about 64 MiB for a moment: a burst of sign-ins waits its turn here
# instead of taking a gigabyte or two.
_verifying = threading.BoundedSemaphore(4)

def validate_username(username: str) -> str:
    name = (username or "").strip()
    if not name or len(name) > 64 or not all(ch.isalnum() or ch in "._-@" for ch in name):
        raise AccountError("user names are 1-64 letters, digits, '.', '_', '-' or '@'")
    return name


def validate_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AccountError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return password


def create_user(username: str, password: str, role: str) -> User:
    name = validate_username(username)
    validate_password(password)
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    try:
        return User.create(username=name, password_hash=_hasher.hash(password), role=role)
    except peewee.IntegrityError:
        raise AccountError(f"a user named {name!r} already exists") from None


# Sessions: a browser's signed cookie names its user by the user's session key (random, never
# reused, unlike ids). Replacing the key ends every session of the user at once. Each function below
# that ends sessions returns the key it ended, so the caller can also close the live websockets
# opened with it (``Hub.end_sessions`` in rsgo.web.hub).

def user_of_session(session_key: str | None) -> User | None:
    """The user a session cookie's key names, or None. The key comes only from a cookie whose
    signature was checked first, and the match is confirmed in constant time."""
    if not session_key or not isinstance(session_key, str):
        return None
    user = User.get_or_none(User.session_key == session_key)
    if user is None or not hmac.compare_digest(user.session_key.encode(), session_key.encode()):
        return None
    return user


def end_sessions(user: User) -> str:
    """Sign the user out everywhere (a sign-out, a password change): returns the key that ended."""
    ended = user.session_key
    user.session_key = new_session_key()
    User.update(session_key=user.session_key).where(User.id == user.id).execute()
    return ended


def set_role(user: User, role: str) -> str | None:
    """Change the role; a change ends the user's sessions (returns the ended key, None if unchanged)."""
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if role == user.role:
        return None
    if user.role == "admin" and role != "admin" and _admins() <= 1:
        raise AccountError("the last admin cannot be demoted")
    ended = user.session_key
    user.role, user.session_key = role, new_session_key()
    user.save()
    return ended


def delete_user(user: User) -> str:
    """Delete the user; its key dies with it (returned, so its websockets can be closed)."""
    if user.role == "admin" and _admins() <= 1:
        raise AccountError("the last admin cannot be deleted")
    user.delete_instance()
    return user.session_key


def _admins() -> int:
    return User.select().where(User.role == "admin").count()


def authenticate(username: str, password: str) -> User | None:
    user = User.get_or_none(User.username == (username or "").strip())
    if user is None:
        try:
            with _verifying:
                _hasher.verify(_dummy_hash(), password or "")
        except VerificationError:
            pass
        return None
    try:
        with _verifying:
            _hasher.verify(user.password_hash, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        user.save()
    return user


def has_users() -> bool:
    return User.select().exists()


# -- first start --------------------------------------------------------------------------

def new_setup_token() -> str:
    """A fresh one-time token for creating the first admin; earlier unused ones stop working."""
    token = secrets.token_urlsafe(32)
    with write_transaction():
        SetupToken.delete().where(SetupToken.used_at.is_null()).execute()
        SetupToken.create(token_hash=digest(token))
    return token


def setup_token_valid(token: str) -> bool:
    return bool(token) and SetupToken.select().where(
        (SetupToken.token_hash == digest(token)) & SetupToken.used_at.is_null()).exists() and not has_users()


def complete_setup(token: str, username: str, password: str) -> User:
    """Create the first admin with the setup token, which then never works again."""
    with write_transaction():
        if not setup_token_valid(token):
            raise AccountError("this setup link is invalid or was already used")
        user = create_user(username, password, "admin")
        SetupToken.update(used_at=utcnow()).where(SetupToken.token_hash == digest(token)).execute()
    return user
