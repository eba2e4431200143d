"""What an upgrade is asked to do, read strictly from the API body (README "Upgrades").

Only the shape is checked here; whether the named services exist is known once the stack is read.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from rsgo.settings import parse_duration

DEFAULT_MIGRATION_TIMEOUT = 15 * 60.0
DEFAULT_HEALTH_TIMEOUT = 120.0
DEFAULT_STABLE_FOR = 10.0
MAX_IMAGES = 200
MAX_REF_LENGTH = 512
MAX_COMMAND_LENGTH = 4096
PULL_POLICIES = ("missing", "always")
# A reference as docker understands it: [host[:port]/]path[:tag][@digest]; no spaces, no control characters.
_REFERENCE = re.compile(r"[a-z0-9][a-z0-9._\-/:@]*", re.IGNORECASE)
_FIELDS = ("images", "migration", "pull", "healthTimeout", "stableFor", "reason", "wait", "source")
_MIGRATION_FIELDS = ("service", "image", "command", "timeout")


class UpgradeRequestInvalid(ValueError):
    """The body is not an upgrade rsgo can carry out; ``field`` names the offending part."""

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


@dataclass(frozen=True)
class MigrationRequest:
    command: list[str]
    service: str | None = None  # run from the new image of this service, with its environment and volumes
    image: str | None = None  # or from this image (still with the service's environment, when one is named)
    timeout: float = DEFAULT_MIGRATION_TIMEOUT


@dataclass(frozen=True)
class UpgradeRequest:
    images: dict[str, str]  # compose service or container name -> new image reference
    migration: MigrationRequest | None = None
    pull: str = "missing"
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    stable_for: float = DEFAULT_STABLE_FOR
    reason: str = ""
    wait: bool = True

    def stored(self) -> dict:
        """What the upgrade row keeps of the request (and the API shows back)."""
        migration = None
        if self.migration is not None:
            migration = {"service": self.migration.service, "image": self.migration.image,
                         "command": self.migration.command, "timeout": self.migration.timeout}
        return {"images": self.images, "migration": migration, "pull": self.pull,
                "healthTimeout": self.health_timeout, "stableFor": self.stable_for}


def _duration(body: dict, name: str, default: float, minimum: float, maximum: float, path: str = "") -> float:
    raw = body.get(name)
    where = f"{path}{name}"
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise UpgradeRequestInvalid(f"{where} must be a duration such as \"30s\" or \"2m\"", where)
    try:
        seconds = parse_duration(str(raw))
    except ValueError as error:
        raise UpgradeRequestInvalid(f"{where}: {error}", where) from None
    if not minimum <= seconds <= maximum:
        raise UpgradeRequestInvalid(f"{where} must be between {minimum:g}s and {maximum:g}s (got {raw!r})", where)
    return seconds


def _reference(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UpgradeRequestInvalid(f"{where} must be an image reference such as \"shop/api:2.1\"", where)
    value = value.strip()
    if len(value) > MAX_REF_LENGTH or not _REFERENCE.fullmatch(value):
        raise UpgradeRequestInvalid(f"{where}: {value[:80]!r} is not an image reference", where)
    return value


def _command(value) -> list[str]:
    if isinstance(value, str):
        if len(value) > MAX_COMMAND_LENGTH:
            raise UpgradeRequestInvalid(f"migration.command is longer than {MAX_COMMAND_LENGTH} characters",
                                        "migration.command")
        try:
            words = shlex.split(value)  # as a shell would split it, without running one
        except ValueError as error:
            raise UpgradeRequestInvalid(f"migration.command: {error}", "migration.command") from None
    elif isinstance(value, list) and all(isinstance(word, str) for word in value):
        words = list(value)
        if sum(len(word) for word in words) > MAX_COMMAND_LENGTH:
            raise UpgradeRequestInvalid(f"migration.command is longer than {MAX_COMMAND_LENGTH} characters",
                                        "migration.command")
    else:
        raise UpgradeRequestInvalid("migration.command must be a list of strings or a string", "migration.command")
    if not words:
        raise UpgradeRequestInvalid("migration.command is empty", "migration.command")
    return words


def _migration(value, images: dict[str, str]) -> MigrationRequest | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UpgradeRequestInvalid("migration must be an object with service (or image) and command", "migration")
    unknown = sorted(set(value) - set(_MIGRATION_FIELDS))
    if unknown:
        raise UpgradeRequestInvalid(f"unknown field(s) in migration: {', '.join(unknown)}; "
                                    f"allowed: {', '.join(_MIGRATION_FIELDS)}", f"migration.{unknown[0]}")
    service = value.get("service")
    if service is not None and (not isinstance(service, str) or not service.strip()):
        raise UpgradeRequestInvalid("migration.service must be a service or container name", "migration.service")
    image = _reference(value["image"], "migration.image") if value.get("image") is not None else None
    if service is None and image is None:
        raise UpgradeRequestInvalid("migration needs a service (run from its new image) or an image",
                                    "migration.service")
    if service is not None and image is None and service.strip() not in images:
        raise UpgradeRequestInvalid(f"migration.service {service!r} gets no new image in images; name one of "
                                    f"{', '.join(sorted(images))} or give migration.image", "migration.service")
    timeout = _duration(value, "timeout", DEFAULT_MIGRATION_TIMEOUT, 1, 24 * 3600, "migration.")
    return MigrationRequest(_command(value.get("command")), service.strip() if service else None, image, timeout)


def parse_upgrade_request(body: dict, reason: str = "") -> UpgradeRequest:
    """``body`` is the decoded JSON object; ``reason`` comes cleaned by the caller."""
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise UpgradeRequestInvalid(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}",
                                    unknown[0])
    images = body.get("images")
    if not isinstance(images, dict) or not images:
        raise UpgradeRequestInvalid("images must be an object naming at least one service or container and its "
                                    "new image, e.g. {\"api\": \"shop/api:2.1\"}", "images")
    if len(images) > MAX_IMAGES:
        raise UpgradeRequestInvalid(f"images names {len(images)} services; at most {MAX_IMAGES}", "images")
    cleaned: dict[str, str] = {}
    for name, ref in images.items():
        if not name.strip():
            raise UpgradeRequestInvalid("images: a service name is empty", "images")
        cleaned[name.strip()] = _reference(ref, f"images.{name.strip()}")
    pull = body.get("pull", "missing")
    if pull not in PULL_POLICIES:
        raise UpgradeRequestInvalid(f"pull must be one of {', '.join(PULL_POLICIES)}", "pull")
    wait = body.get("wait", True)
    if not isinstance(wait, bool):
        raise UpgradeRequestInvalid("wait must be true or false", "wait")
    return UpgradeRequest(
        images=cleaned, migration=_migration(body.get("migration"), cleaned), pull=pull,
        health_timeout=_duration(body, "healthTimeout", DEFAULT_HEALTH_TIMEOUT, 1, 3600),
        stable_for=_duration(body, "stableFor", DEFAULT_STABLE_FOR, 0, 600), reason=reason, wait=wait)
