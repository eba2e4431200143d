"""Operation modes and the table of allowed changes between them (README "Modes",
docs/design.md#modes-and-ownership)."""

from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    NORMAL = "Normal"
    MAINTENANCE = "Maintenance"
    MIGRATING = "Migrating"
    FAILED = "Failed"
    STOPPED = "Stopped"


MODE_NAMES = [mode.value for mode in Mode]

# Which targets each mode may move to (the current mode itself is a no-op, not listed).
ALLOWED_TARGETS: dict[Mode, tuple[Mode, ...]] = {
    Mode.NORMAL: (Mode.MAINTENANCE, Mode.MIGRATING, Mode.STOPPED),
    Mode.MAINTENANCE: (Mode.NORMAL, Mode.STOPPED),
    Mode.MIGRATING: (Mode.NORMAL, Mode.FAILED),
    Mode.FAILED: (Mode.NORMAL, Mode.MAINTENANCE, Mode.MIGRATING, Mode.STOPPED),
    Mode.STOPPED: (Mode.NORMAL,),
}

TRIGGER_SOURCES = ("ui", "api", "cli", "observer", "schedule", "system")


class InvalidMode(ValueError):
    def __init__(self, text):
        shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:59] + "…"  # never echo a huge value
        super().__init__(f"{shown} is not an operation mode; valid modes: {', '.join(MODE_NAMES)}")
        self.text = text


def parse_mode(text) -> Mode:
    """Mode names are case-insensitive for callers: ``maintenance`` is ``Maintenance``."""
    if isinstance(text, str):
        wanted = text.strip().lower()
        for mode in Mode:
            if mode.value.lower() == wanted:
                return mode
    raise InvalidMode(text)


def allowed_targets(current: Mode) -> tuple[Mode, ...]:
    return ALLOWED_TARGETS[current]


def is_allowed(current: Mode, target: Mode) -> bool:
    return target in ALLOWED_TARGETS[current]


def stops_containers(target: Mode) -> bool:
    return target in (Mode.MAINTENANCE, Mode.STOPPED)


def needs_docker(target: Mode) -> bool:
    """Migrating and Failed are bookkeeping only; every other target acts on containers."""
    return target in (Mode.NORMAL, Mode.MAINTENANCE, Mode.STOPPED)
