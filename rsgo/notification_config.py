"""The ``notifications:`` entries of the stack config (README "Notifications"): an Apprise URL, the
events it gets and the stacks it is about; and how such a URL is shown.

An Apprise URL carries its secrets anywhere: a password, a token in the host or in the path
(``slack://T000/B000/XXXX``, ``json://host/hook/<token>``). It is shown only through ``mask``:
Apprise's own privacy form, without the query, each path step cut to its first character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rsgo.config_values import ConfigProblem, InvalidValue, substitute, unknown_key_message

NOTIFICATION_EVENTS = ("mode.changed", "transition.failed", "observer.failing", "observer.recovered",
                       "maintenance.overdue", "upgrade.finished")
_KEYS = ("name", "url", "events", "stacks")


def _apprise():
    """Imported on first use: a quarter of a second (and its plugins on the first URL) that every rsgo
    command would pay otherwise, with or without notifications."""
    import apprise

    return apprise


@dataclass(frozen=True)
class NotificationConfig:
    name: str
    url: str = field(repr=False)
    events: tuple[str, ...] = NOTIFICATION_EVENTS
    stacks: tuple[str, ...] | None = None  # None: every stack

    @property
    def shown_url(self) -> str:
        return mask(self.url)

    def wants(self, event: str, stack: str) -> bool:
        return event in self.events and (self.stacks is None or stack in self.stacks)


def mask(url: str) -> str:
    """The URL as rsgo shows it anywhere: scheme, host (as Apprise masks it) and path steps cut short."""
    plugin = _apprise().Apprise.instantiate(url)
    shown = plugin.url(privacy=True) if plugin is not None else url
    parts = urlsplit(shown.split("?", 1)[0])
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    steps = [step if "..." in step or not step else step[:1] + "***" for step in parts.path.split("/")]
    return f"{parts.scheme}://{netloc}{'/'.join(steps)}"


def scrub(text: str, url: str) -> str:
    """``text`` (an error Apprise logged) with every part of ``url`` that may be a secret replaced."""
    parts = urlsplit(url)
    secrets = {url, parts.password or "", parts.username or "",
               *(step for step in re.split(r"[/?&=]", f"{parts.path}?{parts.query}") if len(step) >= 6)}
    if parts.scheme not in ("json", "jsons", "xml", "xmls", "form", "forms"):
        # The host of slack:// and friends is a token, not a host (as written: hostname is lower-cased).
        secrets.add(parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0])
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def load_notifications(path: str, document, environ) -> tuple[list[NotificationConfig], list[ConfigProblem]]:
    if document is None:
        return [], []
    if not isinstance(document, list):
        return [], [ConfigProblem(path, "notifications", "must be a list", fatal=True)]
    entries, problems = [], []
    for index, raw in enumerate(document):
        base = f"notifications[{index}]"
        if not isinstance(raw, dict):
            problems.append(ConfigProblem(path, base, "must be a mapping with url (and events, stacks)"))
            continue
        own = [ConfigProblem(path, f"{base}.{key}", unknown_key_message(key, _KEYS)) for key in raw if key not in _KEYS]
        name = str(raw.get("name") or f"notification-{index + 1}")
        url = None
        try:
            url = substitute(raw.get("url"), environ)
            # Never quoted in the problem: the URL is the secret.
            if not isinstance(url, str) or not url.strip():
                raise InvalidValue("required: an Apprise URL like slack://…, ntfys://…, mailto://… or json://…")
            if _apprise().Apprise.instantiate(url.strip()) is None:
                raise InvalidValue(f"not an Apprise URL that can be used (scheme {urlsplit(url).scheme or 'none'!r}: "
                                   "unknown, or a part it needs is missing)")
            url = url.strip()
        except InvalidValue as invalid:
            own.append(ConfigProblem(path, f"{base}.url", str(invalid)))
        events = raw.get("events", list(NOTIFICATION_EVENTS))
        if not isinstance(events, list) or not events or any(e not in NOTIFICATION_EVENTS for e in events):
            own.append(ConfigProblem(path, f"{base}.events", f"must be a list of {', '.join(NOTIFICATION_EVENTS)}"))
        stacks = raw.get("stacks")
        if stacks is not None and (not isinstance(stacks, list) or not stacks
                                   or any(not isinstance(s, str) or not s for s in stacks)):
            own.append(ConfigProblem(path, f"{base}.stacks", "must be a list of stack names"))
        if any(entry.name == name for entry in entries):
            own.append(ConfigProblem(path, f"{base}.name", f"{name!r} is used by an earlier entry"))
        if own:
            problems.extend(own)
            continue
        ordered = tuple(event for event in NOTIFICATION_EVENTS if event in events)
        entries.append(NotificationConfig(name=name, url=url, events=ordered,
                                          stacks=None if stacks is None else tuple(stacks)))
    return entries, problems
