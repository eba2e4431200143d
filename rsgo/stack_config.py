"""The stack config file (docs/design.md#stack-config, README "Observers" and "Webhooks"): which
stacks exist, their observer and windows, and the config-file webhooks.

Validation is strict and every problem names the file, the key path and what is wrong.
A problem inside one observer disables only that observer (it stays visible, with its
error); rsgo keeps serving whatever else is valid. ``rsgo check-config`` prints every
problem and fails if there is one. The file is read within bounds (``rsgo.bounded_yaml``);
its values are checked by ``rsgo.config_values``, an observer entry by ``rsgo.observers.config``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rsgo.alertmanager_config import AlertmanagerConfig, load_alertmanager
from rsgo.bounded_yaml import UnusableFile, read_yaml
from rsgo.config_values import ConfigProblem, InvalidValue, substitute, unknown_key_message
from rsgo.environment_config import EnvironmentSpec, load_environments
from rsgo.notification_config import NotificationConfig, load_notifications
from rsgo.observers.base import Boundaries
from rsgo.observers.config import ObserverConfig, load_observer
from rsgo.settings import SETTINGS, parse_duration
from rsgo.windows import WindowError, WindowSpec, parse_window

WEBHOOK_EVENTS = ("mode.changed", "transition.failed", "observer.failing", "observer.recovered", "maintenance.overdue",
                  "upgrade.finished")
_WEBHOOK_KEYS = ("name", "url", "secret", "events")
_STACK_KEYS = ("name", "environment", "maintenanceObserver", "windows", "maintenanceReminder", "alertmanager")
_TOP_LEVEL_KEYS = ("environments", "stacks", "webhooks", "alertmanager", "notifications")


@dataclass
class StackConfig:
    name: str
    environment: str = ""
    observer: ObserverConfig | None = None
    windows: list[WindowSpec] = field(default_factory=list)
    # maintenanceReminder: seconds (0: off for this stack); None: RSGO_MAINTENANCE_REMINDER.
    maintenance_reminder: float | None = None
    # alertmanager: its own entry, False (off for this stack), or None: the top level's entry.
    alertmanager: AlertmanagerConfig | bool | None = None


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    url: str
    secret: str | None
    events: tuple[str, ...]


@dataclass
class Config:
    path: str
    # Keyed by the entry's key in the file (the stack's name unless the entry says ``name:``).
    stacks: dict[str, StackConfig] = field(default_factory=dict)
    # None: the file declares none, and rsgo manages one engine named RSGO_ENVIRONMENT (DOCKER_HOST).
    environments: dict[str, EnvironmentSpec] | None = None
    webhooks: list[WebhookConfig] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)
    # Config webhooks named by a broken entry: what is stored under the name stays as it is.
    kept_webhooks: set[str] = field(default_factory=set)
    alertmanager: AlertmanagerConfig | None = None  # the top level's: every stack's unless it says otherwise
    notifications: list[NotificationConfig] = field(default_factory=list)

    def stack(self, environment: str, name: str) -> StackConfig | None:
        return next((s for s in self.stacks.values() if s.environment == environment and s.name == name), None)

    def alertmanager_for(self, environment: str, name: str) -> AlertmanagerConfig | None:
        """Where the stack's silences go: its own entry, else the top level's; None when off or unset."""
        stack = self.stack(environment, name)
        own = None if stack is None else stack.alertmanager
        if own is False:
            return None
        return own or self.alertmanager

    @property
    def fatal(self) -> bool:
        return any(problem.fatal for problem in self.problems)


class ConfigRejected(Exception):
    """A config that cannot be applied; ``config.problems`` says why, each naming file and key path."""

    def __init__(self, config: Config):
        self.config = config
        problems = config.problems
        super().__init__(f"{len(problems)} problem(s) in {config.path}: " + "; ".join(map(str, problems[:3]))
                         + (" …" if len(problems) > 3 else ""))


def boundaries_for(settings, path: str, environ: Mapping[str, str]) -> Boundaries:
    """What observers may not reach: the data dir, the config file, the files of ``*_FILE`` secrets,
    and ``RSGO_OUTBOUND_DENY``."""
    protected = {os.path.realpath(settings.data_dir), os.path.realpath(path),
                 *(os.path.realpath(file) for file in getattr(settings, "secret_files", ()))}
    for setting in SETTINGS:
        if setting.secret and environ.get(f"{setting.name}_FILE"):
            protected.add(os.path.realpath(environ[f"{setting.name}_FILE"]))
    return Boundaries(tuple(sorted(protected)), settings.outbound_deny)


def load_config(path: str, environ: Mapping[str, str] | None = None, required: bool = False,
                settings=None) -> Config:
    """Read and validate the config file; never raises for a bad file (see ``problems``).

    ``settings`` (rsgo's) adds the boundaries: observers may not read rsgo's data dir, config or
    secret files, nor reach what ``RSGO_OUTBOUND_DENY`` denies; and names the one environment
    (``RSGO_ENVIRONMENT``) that stacks are on when the file declares no ``environments:``.
    """
    environ = os.environ if environ is None else environ
    boundaries = boundaries_for(settings, path, environ) if settings is not None else Boundaries()
    config = Config(path=path)
    try:
        document = read_yaml(path)
    except FileNotFoundError:
        if required:
            config.problems.append(ConfigProblem(path, "", "file not found", fatal=True))
        return config
    except UnusableFile as unusable:
        config.problems.append(ConfigProblem(path, "", str(unusable), fatal=True))
        return config
    if document is None:
        return config
    if not isinstance(document, dict):
        config.problems.append(ConfigProblem(path, "", "the top level must be a mapping with a 'stacks' key",
                                             fatal=True))
        return config
    for key in document:
        if key not in _TOP_LEVEL_KEYS:
            config.problems.append(ConfigProblem(path, str(key), unknown_key_message(key, _TOP_LEVEL_KEYS)))
    config.environments, problems = load_environments(path, document.get("environments"), environ)
    config.problems.extend(problems)
    if config.fatal:
        return config
    environments = sorted(config.environments) if config.environments is not None else [
        settings.environment if settings is not None else "local"]
    _load_webhooks(config, document.get("webhooks"), environ, boundaries)
    config.notifications, problems = load_notifications(path, document.get("notifications"), environ)
    config.problems.extend(problems)
    if document.get("alertmanager") is not None:
        config.alertmanager, problems = load_alertmanager(path, "alertmanager", document["alertmanager"], environ,
                                                          boundaries.outbound, allow_false=False)
        config.problems.extend(problems)
    stacks = document.get("stacks") or {}
    if not isinstance(stacks, dict):
        config.problems.append(ConfigProblem(path, "stacks", "must be a mapping of stack name to settings",
                                             fatal=True))
        return config
    for key, stack_document in stacks.items():
        _load_stack(config, str(key), stack_document, environ, boundaries, environments)
    return config


def _load_webhooks(config: Config, document, environ, boundaries: Boundaries) -> None:
    if document is None:
        return
    if not isinstance(document, list):
        config.problems.append(ConfigProblem(config.path, "webhooks", "must be a list", fatal=True))
        return
    names: set[str] = set()  # of every earlier entry, broken ones too
    for index, hook in enumerate(document):
        base = f"webhooks[{index}]"
        if not isinstance(hook, dict):
            config.problems.append(ConfigProblem(config.path, base, "must be a mapping with url and events"))
            continue
        name = str(hook.get("name") or f"webhook-{index + 1}")
        if name in names:
            # Webhooks are matched by name: a second entry would silently replace the first one's URL.
            config.problems.append(ConfigProblem(config.path, f"{base}.name",
                                                 f"{name!r} is used by an earlier entry; that one is used"))
            continue
        names.add(name)
        problems = [ConfigProblem(config.path, f"{base}.{key}", unknown_key_message(key, _WEBHOOK_KEYS))
                    for key in hook if key not in _WEBHOOK_KEYS]
        try:
            url = substitute(hook.get("url"), environ)
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise InvalidValue("required: an http:// or https:// URL")
            refusal = boundaries.outbound.url_refusal(url) if boundaries.outbound else None
            if refusal:
                raise InvalidValue(refusal)
        except InvalidValue as invalid:
            problems.append(ConfigProblem(config.path, f"{base}.url", str(invalid)))
        try:
            secret = substitute(hook.get("secret"), environ)
            if secret is not None and (not isinstance(secret, str) or not secret):
                raise InvalidValue("must be a non-empty string")
        except InvalidValue as invalid:
            problems.append(ConfigProblem(config.path, f"{base}.secret", str(invalid)))
        events = hook.get("events", list(WEBHOOK_EVENTS))
        if not isinstance(events, list) or not events or any(e not in WEBHOOK_EVENTS for e in events):
            problems.append(ConfigProblem(config.path, f"{base}.events",
                                          f"must be a list of {', '.join(WEBHOOK_EVENTS)}"))
        if problems:
            config.problems.extend(problems)
            config.kept_webhooks.add(name)
            continue
        config.webhooks.append(WebhookConfig(name=name, url=url, secret=secret, events=tuple(events)))


def _stack_place(config: Config, base: str, key: str, document: dict, environments: list[str]) -> tuple[str, str]:
    """The stack's name and environment; ("", "") with a problem when the entry does not say which
    environment it means and more than one could be meant: rsgo never guesses."""
    name = document.get("name", key)
    if not isinstance(name, str) or not name.strip():
        config.problems.append(ConfigProblem(config.path, f"{base}.name", "must be the stack's name (rsgo.stack)"))
        return "", ""
    environment = document.get("environment")
    if environment is None and len(environments) != 1:
        config.problems.append(ConfigProblem(
            config.path, f"{base}.environment",
            f"required: {len(environments)} environments are declared ({', '.join(environments)}); "
            "say which one this stack is on"))
        return "", ""
    environment = environments[0] if environment is None else environment
    if not isinstance(environment, str) or environment not in environments:
        config.problems.append(ConfigProblem(config.path, f"{base}.environment",
                                             f"unknown environment {environment!r} (declared: "
                                             f"{', '.join(environments)})"))
        return "", ""
    environment = str(environment)
    if config.stack(environment, name) is not None:
        config.problems.append(ConfigProblem(config.path, base, f"stack {name!r} on environment {environment!r} "
                                                                "is configured twice"))
        return "", ""
    return name, environment


def _reminder(raw) -> float:
    """``maintenanceReminder``: a duration, or 0 / false to turn the reminder off for the stack."""
    if raw is False:
        return 0.0
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        try:
            return parse_duration(str(raw))
        except ValueError:
            pass
    shown = str(raw).lower() if isinstance(raw, bool) else repr(raw)
    raise InvalidValue(f"{shown} is not a duration (like 30m or 4h), nor 0 or false to turn the reminder off")


def _load_stack(config: Config, key: str, document, environ, boundaries: Boundaries,
                environments: list[str]) -> None:
    base = f"stacks.{key}"
    if document is None:
        document = {}
    if not isinstance(document, dict):
        config.problems.append(ConfigProblem(config.path, base, "must be a mapping"))
        return
    for field_name in document:
        if field_name not in _STACK_KEYS:
            config.problems.append(ConfigProblem(config.path, f"{base}.{field_name}",
                                                 unknown_key_message(field_name, _STACK_KEYS)))
    stack_name, environment = _stack_place(config, base, key, document, environments)
    if not stack_name:
        return
    stack = config.stacks.setdefault(key, StackConfig(stack_name, environment))
    if "maintenanceReminder" in document:
        try:
            stack.maintenance_reminder = _reminder(substitute(document["maintenanceReminder"], environ))
        except InvalidValue as invalid:
            config.problems.append(ConfigProblem(config.path, f"{base}.maintenanceReminder", str(invalid)))
    if document.get("alertmanager") is not None:
        own, problems = load_alertmanager(config.path, f"{base}.alertmanager", document["alertmanager"], environ,
                                          boundaries.outbound)
        stack.alertmanager = False if own is None else own  # a broken entry silences nothing, not the default's
        config.problems.extend(problems)
    if "maintenanceObserver" in document:
        stack.observer, problems = load_observer(config.path, key, document["maintenanceObserver"], environ,
                                                 boundaries)
        config.problems.extend(problems)
    windows = document.get("windows") or []
    if not isinstance(windows, list):
        config.problems.append(ConfigProblem(config.path, f"{base}.windows", "must be a list"))
        return
    for index, window in enumerate(windows):
        path = f"{base}.windows[{index}]"
        if not isinstance(window, dict):
            config.problems.append(ConfigProblem(config.path, path, "must be a mapping"))
            continue
        try:
            spec = parse_window(substitute(window, environ), default_name=f"window-{index + 1}")
        except (WindowError, InvalidValue) as error:
            key, _, message = str(error).partition(": ")
            config.problems.append(ConfigProblem(config.path, f"{path}.{key}" if message else path,
                                                 message or str(error)))
            continue
        if spec.cron is None and spec.starts_at is None:
            config.problems.append(ConfigProblem(config.path, path, "give start and end, or cron with duration"))
            continue
        stack.windows.append(spec)
