"""From an observed value to a decision, the same for every observer type (README "Observers",
docs/design.md#observers)."""

from __future__ import annotations

MAINTENANCE = "maintenance"
NORMAL = "normal"


class UnexpectedValue(ValueError):
    pass


def decide(value: str | None, maintenance_value: str, normal_value: str | None) -> str:
    """Trimmed and case-insensitive. Nothing to read (None) is normal; with ``normalValue`` set,
    a value that is neither is an error rather than a guess."""
    if value is None:
        return NORMAL
    observed = value.strip().lower()
    if observed == maintenance_value.strip().lower():
        return MAINTENANCE
    if normal_value is None or observed == normal_value.strip().lower():
        return NORMAL
    raise UnexpectedValue(f"unexpected value {_shorten(value)!r} (maintenance is {maintenance_value!r}, "
                          f"normal is {normal_value!r})")


def _shorten(value: str, limit: int = 80) -> str:
    value = value.strip()
    return value if len(value) <= limit else value[:limit] + "…"
