"""Every setting rsgo reads from the environment, declared once (README "Settings").

Each setting has a name, a default, a help line and a parser. Parsing is strict:
a bad value stops start-up with a message naming the variable. Secrets can also
be given as ``<NAME>_FILE`` (a path whose content is the value), which is how
Docker and Kubernetes secrets are mounted. The README's settings table is
checked against ``SETTINGS`` by a test, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A setting has a value rsgo cannot use; the message names the variable."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``30s``, ``5m``, ``1h``, ``1m30s`` or a plain number of seconds."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    if not value or _DURATION_PART.sub("", value):
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 1m30s)")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def _positive_int(text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"{number} must be at least 1")
    return number


def _concurrency(text: str) -> int:
    """``0``: no bound (a whole dependency level at once); else at most this many."""
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number (0: no bound)") from None
    if number < 0:
        raise ValueError(f"{number} must be 0 (no bound) or more")
    return number


def _port(text: str) -> int:
    number = _positive_int(text)
    if number > 65535:
        raise ValueError(f"{number} is not a TCP port (1-65535)")
    return number


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def _tri_state(text: str) -> str:
    value = text.strip().lower()
    if value == "auto":
        return value
    return "true" if parse_bool(value) else "false"


def _non_negative_int(text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if number < 0:
        raise ValueError(f"{number} must not be negative")
    return number


def _repeat(text: str) -> float | None:
    """Empty: the reminder period itself; ``0``: once; else a duration."""
    return parse_duration(text) if text.strip() else None


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"{text!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _text(text: str) -> str:
    return text.strip()


def _public_url(text: str) -> str:
    value = text.strip().rstrip("/")
    if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError(f"{text!r} is not an http:// or https:// address")
    return value


def _outbound_deny(text: str):
    from rsgo.outbound import parse_deny

    return parse_deny(text)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any] = _text
    secret: bool = False

    @property
    def key(self) -> str:
        """The attribute name on ``Settings``: ``RSGO_DATA_DIR`` → ``data_dir``."""
        return self.name.removeprefix("RSGO_").lower()


SETTINGS: tuple[Setting, ...] = (
    Setting("RSGO_DATA_DIR", "./data", "Directory for the SQLite database and the generated secret key."),
    Setting("RSGO_CONFIG", "", "Stack config file (observers). Empty: `<data dir>/rsgo.yml`, if it exists."),
    Setting("RSGO_HOST", "0.0.0.0",
            "Address `rsgo serve` binds to (all interfaces; every route but /healthz and /readyz needs a sign-in or "
            "a token)."),
    Setting("RSGO_PORT", "8080", "TCP port `rsgo serve` listens on.", _port),
    Setting("RSGO_THREADS", "32",
            "Worker threads of `rsgo serve` for HTTP requests (websockets get threads of their own, see below).",
            _positive_int),
    Setting("RSGO_MAX_LIVE_CONNECTIONS", "100",
            "Open live websockets allowed in all; more are refused (503). `rsgo serve` adds a thread for each to "
            "`RSGO_THREADS`.", _positive_int),
    Setting("RSGO_MAX_LIVE_CONNECTIONS_PER_USER", "10",
            "Open live websockets allowed per signed-in user (one per open page); more are refused (429).",
            _positive_int),
    Setting("RSGO_REQUEST_TIMEOUT", "10s",
            "How long `rsgo serve` waits for each read of a request's headers and body; a client that sends "
            "nothing for this long is disconnected (408 during a body). Open websockets are exempt.",
            _positive_duration),
    Setting("RSGO_ENVIRONMENT", "local",
            "Name of the Docker engine rsgo manages (from `DOCKER_HOST` or the local socket) when the stack "
            "config declares no `environments:`."),
    Setting("RSGO_ENFORCE_MODES", "true",
            "Stop stopped-set containers again if they start while in Maintenance or Stopped.", parse_bool),
    Setting("RSGO_RESYNC_INTERVAL", "30s",
            "How often the full container list is re-read besides the Docker events stream.", _positive_duration),
    Setting("RSGO_ACTION_CONCURRENCY", "0",
            "How many containers of one dependency level are stopped or started at once. `0`: all of them, as "
            "`docker stop` with their names does; a number bounds it (an engine that struggles with many at once).",
            _concurrency),
    Setting("RSGO_DEFAULT_STOP_TIMEOUT", "10s",
            "Grace period for containers with neither `rsgo.stop_timeout` nor their own stop timeout.",
            _positive_duration),
    Setting("RSGO_DEFAULT_START_TIMEOUT", "60s",
            "How long a started dependency may take to run (and be healthy) when `rsgo.start_timeout` is not set.",
            _positive_duration),
    Setting("RSGO_OBSERVER_THREADS", "32",
            "Threads for observer checks; a hung source holds one until its timeout.", _positive_int),
    Setting("RSGO_WINDOW_CHECK_INTERVAL", "5s",
            "How often maintenance windows are checked for their start and end.", _positive_duration),
    Setting("RSGO_MAINTENANCE_REMINDER", "4h",
            "A stack in Maintenance or Stopped for longer than this is overdue: marked on the dashboard, "
            "announced by the `maintenance.overdue` webhook, `rsgo_maintenance_overdue` 1. `0`: off. A stack's "
            "`maintenanceReminder:` overrides it.", parse_duration),
    Setting("RSGO_MAINTENANCE_REMINDER_REPEAT", "",
            "How often an overdue stack is announced again. Empty: every reminder period; `0`: once per stay.",
            _repeat),
    Setting("RSGO_OVERDUE_CHECK_INTERVAL", "30s",
            "How often rsgo looks for overdue Maintenance and Stopped stacks.", _positive_duration),
    Setting("RSGO_METRICS_PUBLIC", "false",
            "`true`: `GET /metrics` answers without a token (for a Prometheus on a trusted network).", parse_bool),
    Setting("RSGO_SECRET_KEY", "",
            "Key that signs browser sessions. Empty: generated once and kept in the data dir (mode 0600).",
            secret=True),
    Setting("RSGO_ADMIN_USER", "admin", "Name of the admin `RSGO_ADMIN_PASSWORD` creates."),
    Setting("RSGO_ADMIN_PASSWORD", "",
            "With no users yet: create the admin with this password instead of printing a setup link.", secret=True),
    Setting("RSGO_SETUP_LINK_INTERVAL", "1m",
            "With no users yet: how often the one-time setup link is printed to the log again, until it is used.",
            _positive_duration),
    Setting("RSGO_SECURE_COOKIES", "auto",
            "`auto`: session cookies are Secure when the request came over HTTPS; `true` or `false` to force.",
            _tri_state),
    Setting("RSGO_SESSION_LIFETIME", "12h", "How long a browser session lasts.", _positive_duration),
    Setting("RSGO_PUBLIC_URL", "",
            "The address people open rsgo at (`https://rsgo.example.com`): notifications and Alertmanager silences "
            "link to the stack's page with it. Empty: no link.", _public_url),
    Setting("RSGO_OUTBOUND_DENY", "",
            "Comma-separated networks (CIDRs) and host names http observers and webhooks may not reach (checked at "
            "request time, every resolved address). Empty: no limit.", _outbound_deny),
    Setting("RSGO_TRUSTED_PROXIES", "0",
            "How many reverse proxies in front of rsgo to trust for X-Forwarded-For/-Proto. Leave it 0 behind a "
            "proxy and the per-address sign-in throttle locks everyone out at once.", _non_negative_int),
    Setting("RSGO_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR.", _log_level),
    Setting("DATABASE_URL", "",
            "Empty: SQLite in the data dir. `postgresql://user:pass@host:5432/db` for PostgreSQL.", secret=True),
)


class Settings:
    """Parsed settings, one attribute per declared setting (``settings.data_dir``)."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def replace(self, **changes: Any) -> Settings:
        unknown = set(changes) - set(self._values)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
        return Settings({**self._values, **changes})

    @property
    def config_path(self) -> str:
        return self.config or os.path.join(self.data_dir, "rsgo.yml")

    @property
    def database_path(self) -> str:
        return os.path.join(self.data_dir, "rsgo.sqlite3")


def is_own_variable(name: str) -> bool:
    """rsgo's own settings (``RSGO_*``, ``DATABASE_URL`` and their ``_FILE`` forms): never read by a config."""
    return name.startswith("RSGO_") or name in {f"{s.name}{tail}" for s in SETTINGS for tail in ("", "_FILE")}


def _raw_value(setting: Setting, environ: Mapping[str, str]) -> str:
    file_name = f"{setting.name}_FILE"
    if setting.secret and environ.get(file_name):
        if environ.get(setting.name):
            raise SettingsError(f"{setting.name} and {file_name} are both set; set only one")
        path = environ[file_name]
        try:
            with open(path, encoding="utf-8") as secret_file:
                return secret_file.read().strip()
        except OSError as error:
            raise SettingsError(f"{file_name}: cannot read {path}: {error.strerror}") from None
    return environ.get(setting.name, setting.default)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every declared setting from ``environ`` (default: ``os.environ``)."""
    environ = os.environ if environ is None else environ
    values = {}
    for setting in SETTINGS:
        raw = _raw_value(setting, environ)
        try:
            values[setting.key] = setting.parse(raw)
        except ValueError as error:
            raise SettingsError(f"{setting.name}: {error}") from None
    # The files secrets were read from: observers may not read them (see the stack config).
    values["secret_files"] = tuple(environ[f"{s.name}_FILE"] for s in SETTINGS
                                   if s.secret and environ.get(f"{s.name}_FILE"))
    return Settings(values)
