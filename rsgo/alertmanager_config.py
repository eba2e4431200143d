"""The ``alertmanager:`` entries of the stack config (README "Alertmanager"): where silences go and
which labels they match.

The top level's entry is every stack's default; a stack's own entry replaces it, and
``alertmanager: false`` turns silences off for that stack. Header values and the basic-auth
password are secrets: they are never part of a problem's message nor of what is shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rsgo.config_values import ConfigProblem, InvalidValue, substitute, unknown_key_message

_KEYS = ("url", "matchers", "headers", "basicAuth", "tls", "insecureSkipVerify", "timeout")
_TLS_KEYS = ("ca", "cert", "key")
_AUTH_KEYS = ("username", "password")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
PLACEHOLDERS = ("stack", "environment")
DEFAULT_MATCHERS = (("deployment", "{stack}"),)


@dataclass(frozen=True)
class AlertmanagerConfig:
    url: str
    matchers: tuple[tuple[str, str], ...] = DEFAULT_MATCHERS
    headers: tuple[tuple[str, str], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure_skip_verify: bool = False
    timeout: float = 10.0

    def matchers_for(self, stack: str, environment: str) -> list[dict]:
        """Alertmanager's matcher objects, with {stack} and {environment} filled in."""
        values = {"stack": stack, "environment": environment}
        return [{"name": name, "value": _PLACEHOLDER.sub(lambda m: values[m.group(1)], value),
                 "isRegex": False, "isEqual": True} for name, value in self.matchers]

    @property
    def shown_url(self) -> str:
        """The URL without a userinfo part (which would be a secret)."""
        parts = urlsplit(self.url)
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def _mapping(raw, what: str) -> dict:
    if not isinstance(raw, dict):
        raise InvalidValue(f"must be a mapping of {what}")
    return raw


def load_alertmanager(path: str, base: str, raw, environ, outbound=None, *, allow_false: bool = True):
    """``(AlertmanagerConfig | False | None, problems)``: None with problems when the entry is unusable,
    False for ``alertmanager: false`` (a stack's way to turn silences off)."""
    if raw is False and allow_false:
        return False, []
    problems: list[ConfigProblem] = []

    def problem(key: str, message: str) -> None:
        problems.append(ConfigProblem(path, f"{base}.{key}" if key else base, message))

    if not isinstance(raw, dict):
        problem("", "must be a mapping with url (and matchers)" + (", or false" if allow_false else ""))
        return None, problems
    for key in raw:
        if key not in _KEYS:
            problem(str(key), unknown_key_message(key, _KEYS))
    values = {}
    for key in _KEYS:
        try:
            values[key] = substitute(raw.get(key), environ)
        except InvalidValue as invalid:
            problem(key, str(invalid))
    url = values.get("url")
    if isinstance(url, str) and url.strip():
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            problem("url", "expected http://host:port or https://host:port (Alertmanager's address)")
        elif outbound is not None and (refusal := outbound.url_refusal(url)):
            problem("url", refusal)
        url = url.strip().rstrip("/")
    elif "url" in values:
        problem("url", "required: Alertmanager's address, like http://alertmanager:9093")
    matchers = values.get("matchers")
    matcher_pairs: list[tuple[str, str]] = list(DEFAULT_MATCHERS)
    if matchers is not None:
        try:
            matcher_pairs = []
            for name, value in _mapping(matchers, "label to value").items():
                if not _LABEL.fullmatch(str(name)):
                    raise InvalidValue(f"{name!r} is not a label name")
                if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value):
                    raise InvalidValue(f"{name}: the value must be a non-empty string")
                unknown = [p for p in _PLACEHOLDER.findall(str(value)) if p not in PLACEHOLDERS]
                if unknown:
                    raise InvalidValue(f"{name}: unknown placeholder {{{unknown[0]}}} (known: {{stack}}, "
                                       "{environment})")
                matcher_pairs.append((str(name), str(value)))
            if not matcher_pairs:
                raise InvalidValue("at least one matcher is required (a silence without one matches nothing)")
        except InvalidValue as invalid:
            problem("matchers", str(invalid))
    headers: list[tuple[str, str]] = []
    if values.get("headers") is not None:
        try:
            for name, value in _mapping(values["headers"], "header name to value").items():
                if not _HEADER_NAME.fullmatch(str(name)):
                    raise InvalidValue(f"{name!r} is not a valid header name")
                if not isinstance(value, str) or re.search(r"[\r\n\0]", value):
                    raise InvalidValue(f"{name}: the value must be text without line breaks")
                headers.append((str(name), value))
        except InvalidValue as invalid:
            problem("headers", str(invalid))
    auth = values.get("basicAuth")
    username = password = None
    if auth is not None:
        if not isinstance(auth, dict) or set(auth) - set(_AUTH_KEYS) or not isinstance(auth.get("username"), str) \
                or not isinstance(auth.get("password"), str):
            problem("basicAuth", "must be a mapping with username and password (text)")
        else:
            username, password = auth["username"], auth["password"]
    tls = values.get("tls") or {}
    if not isinstance(tls, dict):
        problem("tls", "must be a mapping of ca, cert, key (file paths)")
        tls = {}
    for key, file_path in tls.items():
        if key not in _TLS_KEYS:
            problem(f"tls.{key}", unknown_key_message(key, _TLS_KEYS))
        elif not isinstance(file_path, str) or not os.access(file_path, os.R_OK):
            problem(f"tls.{key}", "cannot read the file")
    if bool(tls.get("cert")) != bool(tls.get("key")):
        problem("tls", "cert and key go together")
    insecure = values.get("insecureSkipVerify", False) or False
    if not isinstance(insecure, bool):
        problem("insecureSkipVerify", "must be true or false")
    timeout = 10.0
    if values.get("timeout") is not None:
        from rsgo.settings import parse_duration

        try:
            timeout = parse_duration(str(values["timeout"]))
            if timeout <= 0:
                raise ValueError
        except ValueError:
            problem("timeout", "must be a duration longer than 0s (like 10s)")
    if problems:
        return None, problems
    return AlertmanagerConfig(url=url, matchers=tuple(matcher_pairs), headers=tuple(headers), username=username,
                              password=password, ca=tls.get("ca"), cert=tls.get("cert"), key=tls.get("key"),
                              insecure_skip_verify=insecure, timeout=timeout), []
