"""The ``environments:`` section of the stack config (README "Environments"): which Docker engines
rsgo manages, how to reach each, and which one a stack entry means.

Every problem names the file and the key path. Certificate files are checked for readability here,
so ``rsgo check-config`` finds a wrong path before rsgo tries to connect with it.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

from rsgo.config_values import ConfigProblem, InvalidValue, substitute, unknown_key_message
from rsgo.settings import parse_duration

ENVIRONMENT_KEYS = ("url", "tls", "timeout")
TLS_KEYS = ("ca", "cert", "key")
URL_SCHEMES = ("unix", "tcp", "ssh", "http", "https")
DEFAULT_TIMEOUT = 30.0
# A call that may take longer than an hour is a hung engine; one under a second fails on a busy one.
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 3600.0
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]+")
# Like a compose project name, plus dots and capitals: it shows in URLs (?environment=) and metrics labels.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class TlsFiles:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class EnvironmentSpec:
    """One engine as the config declares it. Equal specs are the same connection (kept on reload)."""

    name: str
    url: str
    tls: TlsFiles | None = None
    timeout: float = DEFAULT_TIMEOUT
    error: str | None = None  # a broken entry: the environment is shown disabled with this

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)


def mask_url(url: str) -> str:
    """The URL with any password replaced, fit to show and log (such a URL is refused, but its
    refusal must not print the password either)."""
    scheme, separator, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{separator}{userinfo.split(':', 1)[0]}:***@{hostport}{slash}{path}"


def load_environments(path: str, document, environ) -> tuple[dict[str, EnvironmentSpec] | None, list[ConfigProblem]]:
    """The declared environments (None when the file declares none), and the problems found.

    A broken entry is kept with its ``error`` (shown disabled, the others run); a section of the
    wrong shape is a problem of the whole file.
    """
    if document is None:
        return None, []
    if not isinstance(document, dict) or not document:
        return None, [ConfigProblem(path, "environments", "must be a mapping of environment name to "
                                    "{url, tls, timeout}", fatal=True)]
    specs: dict[str, EnvironmentSpec] = {}
    problems: list[ConfigProblem] = []
    for raw_name, entry in document.items():
        name = str(raw_name)
        base = f"environments.{name}"
        if not isinstance(raw_name, str) or not _NAME.fullmatch(name):
            # Shown disabled under the name it was given, like any other broken entry.
            message = ("an environment name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or "
                       "digit" + ("" if isinstance(raw_name, str) else " (YAML read this key as "
                                  f"{type(raw_name).__name__}: quote it)"))
            problems.append(ConfigProblem(path, base, message))
            specs[name] = EnvironmentSpec(name=name, url="", error=f"{base}: {message}")
            continue
        spec, found = _load_one(path, base, name, entry, environ)
        problems.extend(found)
        if found:
            spec = EnvironmentSpec(name=name, url=spec.url if spec else "", error="; ".join(
                f"{problem.path}: {problem.message}" for problem in found))
        specs[name] = spec
    return specs, problems


def _load_one(path: str, base: str, name: str, entry, environ) -> tuple[EnvironmentSpec | None, list[ConfigProblem]]:
    if not isinstance(entry, dict):
        return None, [ConfigProblem(path, base, "must be a mapping with url (and tls, timeout)")]
    problems = [ConfigProblem(path, f"{base}.{key}", unknown_key_message(key, ENVIRONMENT_KEYS))
                for key in entry if key not in ENVIRONMENT_KEYS]
    url = ""
    try:
        url = _url(substitute(entry.get("url"), environ))
    except InvalidValue as invalid:
        problems.append(ConfigProblem(path, f"{base}.url", str(invalid)))
    timeout = DEFAULT_TIMEOUT
    if "timeout" in entry:
        try:
            timeout = parse_duration(str(entry["timeout"]))
            if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
                raise ValueError(f"must be from {MIN_TIMEOUT:g}s to {MAX_TIMEOUT / 3600:g}h")
        except ValueError as error:
            problems.append(ConfigProblem(path, f"{base}.timeout", str(error)))
    tls = None
    if entry.get("tls") is not None:
        tls, tls_problems = _tls(path, f"{base}.tls", entry["tls"], environ)
        problems.extend(tls_problems)
        if tls is not None and url and not url.startswith(("tcp://", "https://")):
            problems.append(ConfigProblem(path, f"{base}.tls", "TLS applies to tcp:// and https:// URLs only"))
    return EnvironmentSpec(name=name, url=url, tls=tls, timeout=timeout), problems


def _url(raw) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidValue("required: the engine's URL (unix:///var/run/docker.sock, tcp://host:2376, "
                           "ssh://user@host)")
    url = raw.strip()
    shown = repr(mask_url(url))  # a refused URL is still never printed with its password
    scheme, _, rest = url.partition("://")
    if scheme not in URL_SCHEMES:
        raise InvalidValue(f"{shown} is not an engine URL: use unix://, tcp://, ssh:// (or http://, https://)")
    parts = urllib.parse.urlsplit(url)
    if scheme == "unix":
        if not parts.path.startswith("/"):
            raise InvalidValue(f"{shown}: a unix:// URL names an absolute socket path (unix:///var/run/docker.sock)")
        return url
    if parts.password is not None:
        raise InvalidValue(f"{shown}: a password in the URL is not supported (Docker engines authenticate with "
                           "TLS client certificates, see tls:, or SSH keys)")
    if parts.username is not None and scheme != "ssh":
        raise InvalidValue(f"{shown}: a user name in the URL works with ssh:// only")
    try:
        port = parts.port
    except ValueError:
        raise InvalidValue(f"{shown}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise InvalidValue(f"{shown} names no host")
    if not _HOST.fullmatch(parts.hostname):
        raise InvalidValue(f"{shown}: {parts.hostname!r} is not a host name or address")
    if port == 0 or (scheme in ("tcp", "http", "https") and port is None):
        raise InvalidValue(f"{shown} names no port (Docker listens on 2375, or 2376 with TLS)")
    return url


def _tls(path: str, base: str, raw, environ) -> tuple[TlsFiles | None, list[ConfigProblem]]:
    if not isinstance(raw, dict):
        return None, [ConfigProblem(path, base, "must be a mapping of ca, cert and key file paths")]
    problems = [ConfigProblem(path, f"{base}.{key}", unknown_key_message(key, TLS_KEYS))
                for key in raw if key not in TLS_KEYS]
    files: dict[str, str | None] = {}
    for key in TLS_KEYS:
        value = raw.get(key)
        if value is None:
            files[key] = None
            continue
        try:
            value = substitute(value, environ)
            if not isinstance(value, str) or not value:
                raise InvalidValue("must be a file path")
            with open(value, "rb") as certificate:
                certificate.read(1)
        except InvalidValue as invalid:
            problems.append(ConfigProblem(path, f"{base}.{key}", str(invalid)))
            continue
        except OSError as error:
            problems.append(ConfigProblem(path, f"{base}.{key}", f"cannot read {value}: "
                                                                 f"{error.strerror or error}"))
            continue
        files[key] = os.path.abspath(value)
    if (files.get("cert") is None) != (files.get("key") is None) and not problems:
        problems.append(ConfigProblem(path, base, "cert and key go together: give both or neither"))
    return TlsFiles(**files), problems
