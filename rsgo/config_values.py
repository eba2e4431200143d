"""One value of the stack config (docs/design.md#stack-config): ``${VAR}`` substitution, the field
kinds a value is checked against, and the problem a wrong value or key becomes.

Every problem names the file, the key path and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rsgo.observers.base import Field
from rsgo.settings import is_own_variable, parse_duration

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    path: str
    message: str
    fatal: bool = False  # the file as a whole cannot be used (unreadable, not YAML, too large, wrong shape)

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"


class InvalidValue(ValueError):
    """A value that does not fit its field; the message is the problem without the key path."""


def unknown_key_message(key, allowed) -> str:
    return f"unknown key (allowed: {', '.join(allowed)})"


def substitute(raw, environ):
    """``${VAR}`` from the environment, in strings at any depth; an unset variable is a problem."""
    if isinstance(raw, str):
        own = [name for name in _VARIABLE.findall(raw) if is_own_variable(name)]
        if own:
            raise InvalidValue(f"${{{own[0]}}} is refused: {own[0]} is rsgo's own setting (RSGO_*, DATABASE_URL) "
                               "and may hold its secrets; give the value another variable name")
        missing = [name for name in _VARIABLE.findall(raw) if name not in environ]
        if missing:
            raise InvalidValue(f"unresolved ${{{missing[0]}}}: the environment variable {missing[0]} is not set")
        return _VARIABLE.sub(lambda m: environ[m.group(1)], raw)
    if isinstance(raw, dict):
        return {key: substitute(value, environ) for key, value in raw.items()}
    if isinstance(raw, list):
        return [substitute(value, environ) for value in raw]
    return raw


def _scalar_text(raw) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, (str, int, float)):
        return str(raw)
    raise InvalidValue(f"must be a string or number, not {type(raw).__name__}")


def convert(raw, spec: Field):
    """``raw`` as ``spec`` wants it (a duration in seconds, a map of texts…); ``InvalidValue`` if it does not fit."""
    kind = spec.kind
    if kind == "string":
        if not isinstance(raw, str) or not raw.strip():
            raise InvalidValue("must be a non-empty string")
        value = raw
    elif kind == "scalar":
        value = _scalar_text(raw)
    elif kind == "duration":
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise InvalidValue("must be a duration like 30s, 5m, 1h or 1m30s")
        try:
            value = parse_duration(str(raw))
        except ValueError as error:
            raise InvalidValue(str(error)) from None
    elif kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidValue("must be a whole number")
        value = raw
    elif kind == "bool":
        if not isinstance(raw, bool):
            raise InvalidValue("must be true or false")
        value = raw
    elif kind == "map":
        if not isinstance(raw, dict):
            raise InvalidValue("must be a mapping of names to values")
        value = {str(k): _scalar_text(v) for k, v in raw.items()}
    elif kind == "status":
        if isinstance(raw, bool) or not isinstance(raw, (int, str, list)):
            raise InvalidValue("must be a status code, a range like 2xx or 200-299, or a list of them")
        value = raw
    else:  # pragma: no cover - a type module declared a kind the loader does not know
        raise InvalidValue(f"unsupported field kind {kind}")
    if spec.choices is not None and value not in spec.choices:
        raise InvalidValue(f"{value!r} is not one of {', '.join(spec.choices)}")
    if spec.minimum is not None and value < spec.minimum:
        raise InvalidValue(f"must be at least {spec.minimum:g}" + ("s" if kind == "duration" else ""))
    return value
