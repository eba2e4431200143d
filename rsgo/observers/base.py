"""The observer contract (docs/design.md#observers): a type declares its config fields and turns
a check into a Reading.

``check()`` returns what the source says (``Reading.value``; ``None`` when there is
nothing to read: a missing row, NULL, a missing file, no regex match) or raises
``ObserverError`` with a message for people. Deciding and acting on the value is
not the observer's job (see ``rsgo.observers.decision``), so every type behaves the same.
"""

from __future__ import annotations

import os
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


@dataclass(frozen=True)
class Boundaries:
    """What an observer may not reach: rsgo's own files (the data dir, the config file, secrets given
    as ``*_FILE``; resolved paths) and the networks and hosts of ``RSGO_OUTBOUND_DENY``."""

    protected_paths: tuple[str, ...] = ()
    outbound: Any = None  # an rsgo.outbound.OutboundPolicy

    def protected(self, path: str) -> str | None:
        """The protected path that ``path`` (symlinks resolved) is or lies in, else None."""
        real = os.path.realpath(path)
        for protected in self.protected_paths:
            if real == protected or real.startswith(protected.rstrip(os.sep) + os.sep):
                return protected
        return None


class Observer:
    type_name: ClassVar[str]
    fields: ClassVar[dict[str, Field]]
    boundaries: Boundaries = Boundaries()

    def __init__(self, settings: dict):
        """``settings``: this type's fields, validated and with defaults applied."""
        self.settings = settings

    @classmethod
    def validate(cls, settings: dict) -> list[str]:
        """Problems with ``settings`` beyond what their field kinds check (at load), one message each."""
        return []

    @classmethod
    def boundary_problems(cls, settings: dict, boundaries: Boundaries) -> list[tuple[str, str]]:
        """``(key, message)`` for each setting that reaches past ``boundaries`` (checked at load)."""
        return []

    def restrict(self, boundaries: Boundaries) -> None:
        """Apply ``boundaries`` to every check from now on (the loader calls it)."""
        self.boundaries = boundaries

    def check(self) -> Reading:
        raise NotImplementedError

    def target(self) -> str:
        """Where it looks, for the UI and API, with secrets masked."""
        raise NotImplementedError


# A secret's key may be part of a longer name (ClientSecret, AccessToken); its value may be a
# braced ODBC value that contains semicolons ({a;b}, with }} for a literal brace).
_SECRET_KEYS = re.compile(
    r"(?i)([A-Za-z_]*(?:pwd|password|pass|secret|token|key|auth|credential)[A-Za-z_]*)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)")


def mask_connection_string(text: str) -> str:
    """``Server=x;UID=sa;PWD=hunter2`` → ``Server=x;UID=sa;PWD=***``."""
    return _SECRET_KEYS.sub(lambda m: f"{m.group(1)}=***", text)
