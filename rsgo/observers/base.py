"""The observer contract: a type declares its config fields and turns a check into a Reading.

``check()`` returns what the source says (``Reading.value``; ``None`` when there is
nothing to read: a missing row, NULL, a missing file, no regex match) or raises
``ObserverError`` with a message for people. Deciding and acting on the value is
not the observer's job (see ``rsgo.observer_decisions``), so every type behaves the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar


class ObserverError(Exception):
    """The source could not be read; the message says why (never containing a secret)."""


@dataclass(frozen=True)
class Reading:
    value: str | None


@dataclass(frozen=True)
class Field:
    """One config field: ``kind`` is string, scalar, duration, int, bool, map or status."""

    kind: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None


class Observer:
    type_name: ClassVar[str]
    fields: ClassVar[dict[str, Field]]

    def __init__(self, settings: dict):
        """``settings``: this type's fields, validated and with defaults applied."""
        self.settings = settings

    def check(self) -> Reading:
        raise NotImplementedError

    def target(self) -> str:
        """Where it looks, for the UI and API, with secrets masked."""
        raise NotImplementedError


# A secret's key may be part of a longer name (ClientSecret, AccessToken); its value may be a
# braced ODBC value that contains semicolons ({a;b}, with }} for a literal brace).
_SECRET_KEYS = re.compile(
    r"(?i)([A-Za-z_]*(?:pwd|password|pass|secret|token|key)[A-Za-z_]*)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)")


def mask_connection_string(text: str) -> str:
    """``Server=x;UID=sa;PWD=hunter2`` → ``Server=x;UID=sa;PWD=***``."""
    return _SECRET_KEYS.sub(lambda m: f"{m.group(1)}=***", text)
