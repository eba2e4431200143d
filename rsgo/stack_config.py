"""The stack config file (§8): which stacks exist and how each one's observer reads its source.

Validation is strict and every problem names the file, the key path and what is wrong.
A problem inside one observer disables only that observer (it stays visible, with its
error); rsgo keeps serving whatever else is valid. ``rsgo check-config`` prints every
problem and fails if there is one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from rsgo.observers import REGISTRY, Field, Observer, ObserverError
from rsgo.observers.base import Boundaries
from rsgo.settings import SETTINGS, is_own_variable, parse_duration
from rsgo.windows import WindowError, WindowSpec, parse_window

WEBHOOK_EVENTS = ("mode.changed", "transition.failed", "observer.failing", "observer.recovered")

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# A config is a few kilobytes. The limits keep a wrong file, or a hostile one (a "billion laughs"
# of nested aliases: PyYAML shares the aliased nodes, but walking the result expands them), from
# taking the process's memory and time: the size is checked before parsing, and the expanded
# size is counted on the composed nodes, each node once, before anything is built from them.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_EXPANDED_TEXT = 4 * 1024 * 1024  # characters of all scalars, aliases expanded
MAX_DEPTH = 64

COMMON_FIELDS: dict[str, Field] = {
    "type": Field("string", required=True),
    "name": Field("string"),
    "maintenanceValue": Field("scalar", required=True),
    "normalValue": Field("scalar"),
    "pollingInterval": Field("duration", default=30.0, minimum=1.0),
    "confirmations": Field("int", default=1, minimum=1),
    "failureThreshold": Field("int", default=3, minimum=1),
}


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    path: str
    message: str
    fatal: bool = False  # the file as a whole cannot be used (unreadable, not YAML, too large, wrong shape)

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"


@dataclass
class ObserverConfig:
    stack: str
    type: str
    name: str
    maintenance_value: str
    normal_value: str | None
    interval: float
    confirmations: int
    failure_threshold: int
    fingerprint: str
    observer: Observer | None = None
    error: str | None = None  # set: the observer is disabled and shows this

    @property
    def disabled(self) -> bool:
        return self.observer is None

    def target(self) -> str:
        return self.observer.target() if self.observer else ""


@dataclass
class StackConfig:
    name: str
    observer: ObserverConfig | None = None
    windows: list[WindowSpec] = field(default_factory=list)


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    url: str
    secret: str | None
    events: tuple[str, ...]


@dataclass
class Config:
    path: str
    stacks: dict[str, StackConfig] = field(default_factory=dict)
    webhooks: list[WebhookConfig] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)
    # Config webhooks named by a broken entry: what is stored under the name stays as it is.
    kept_webhooks: set[str] = field(default_factory=set)

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


class _Invalid(ValueError):
    """A value that does not fit its field; the message is the problem without the key path."""


class _Unusable(ValueError):
    """The file as a whole cannot be used; the message says why (with the line, for YAML errors)."""


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
    secret files, nor reach what ``RSGO_OUTBOUND_DENY`` denies.
    """
    environ = os.environ if environ is None else environ
    boundaries = boundaries_for(settings, path, environ) if settings is not None else Boundaries()
    config = Config(path=path)
    try:
        document = _read_document(path)
    except FileNotFoundError:
        if required:
            config.problems.append(ConfigProblem(path, "", "file not found", fatal=True))
        return config
    except _Unusable as unusable:
        config.problems.append(ConfigProblem(path, "", str(unusable), fatal=True))
        return config
    if document is None:
        return config
    if not isinstance(document, dict):
        config.problems.append(ConfigProblem(path, "", "the top level must be a mapping with a 'stacks' key",
                                             fatal=True))
        return config
    for key in document:
        if key not in ("stacks", "webhooks"):
            config.problems.append(ConfigProblem(path, str(key), _unknown_key_message(key, ["stacks", "webhooks"])))
    _load_webhooks(config, document.get("webhooks"), environ, boundaries)
    stacks = document.get("stacks") or {}
    if not isinstance(stacks, dict):
        config.problems.append(ConfigProblem(path, "stacks", "must be a mapping of stack name to settings",
                                             fatal=True))
        return config
    for stack_name, stack_document in stacks.items():
        _load_stack(config, str(stack_name), stack_document, environ, boundaries)
    return config


def _read_document(path: str):
    """The parsed YAML document, within the size, node and depth limits (``_Unusable`` otherwise)."""
    try:
        with open(path, "rb") as config_file:
            data = config_file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise _Unusable(f"cannot read: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _Unusable(f"larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB: refused")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise _Unusable(f"not UTF-8 text (line {line}, byte {error.start})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_expanded(node)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise _Unusable(f"not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    except RecursionError:
        raise _Unusable(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def _count_expanded(root: yaml.Node) -> None:
    """Refuse a document whose expanded size (every alias replaced by what it names) is over the limits.

    Each distinct node is counted once and its total remembered, so a bomb of nested aliases
    costs what its text costs; the walk stops as soon as a limit is passed.
    """
    totals: dict[int, tuple[int, int]] = {}
    walking: set[int] = set()

    def where(node) -> str:
        mark = node.start_mark
        return f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""

    def total(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in totals:
            return totals[key]
        if key in walking:
            raise _Unusable(f"an alias refers to a node that contains it{where(node)}: recursive aliases are refused")
        if depth > MAX_DEPTH:
            raise _Unusable(f"nested too deeply (more than {MAX_DEPTH} levels){where(node)}")
        walking.add(key)
        nodes, text = 1, 0
        if isinstance(node, yaml.ScalarNode):
            text = len(node.value)
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                child_nodes, child_text = total(child, depth + 1)
                nodes, text = nodes + child_nodes, text + child_text
                if nodes > MAX_EXPANDED_NODES:
                    raise _Unusable(f"more than {MAX_EXPANDED_NODES:,} values once aliases are expanded"
                                    f"{where(node)}: refused (an alias bomb, or far too large a config)")
                if text > MAX_EXPANDED_TEXT:
                    raise _Unusable(f"more than {MAX_EXPANDED_TEXT // 1024 // 1024} MiB of text once aliases "
                                    f"are expanded{where(node)}: refused")
        walking.discard(key)
        totals[key] = (nodes, text)
        return nodes, text

    total(root, 0)


def _unknown_key_message(key, allowed) -> str:
    return f"unknown key (allowed: {', '.join(allowed)})"


def _load_webhooks(config: Config, document, environ, boundaries: Boundaries) -> None:
    if document is None:
        return
    if not isinstance(document, list):
        config.problems.append(ConfigProblem(config.path, "webhooks", "must be a list", fatal=True))
        return
    for index, hook in enumerate(document):
        base = f"webhooks[{index}]"
        if not isinstance(hook, dict):
            config.problems.append(ConfigProblem(config.path, base, "must be a mapping with url and events"))
            continue
        name = str(hook.get("name") or f"webhook-{index + 1}")
        problems = [ConfigProblem(config.path, f"{base}.{key}", _unknown_key_message(key, ["name", "url", "secret",
                                                                                          "events"]))
                    for key in hook if key not in ("name", "url", "secret", "events")]
        try:
            url = _substitute(hook.get("url"), environ)
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise _Invalid("required: an http:// or https:// URL")
            refusal = boundaries.outbound.url_refusal(url) if boundaries.outbound else None
            if refusal:
                raise _Invalid(refusal)
        except _Invalid as invalid:
            problems.append(ConfigProblem(config.path, f"{base}.url", str(invalid)))
        try:
            secret = _substitute(hook.get("secret"), environ)
            if secret is not None and (not isinstance(secret, str) or not secret):
                raise _Invalid("must be a non-empty string")
        except _Invalid as invalid:
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


def _load_stack(config: Config, stack_name: str, document, environ, boundaries: Boundaries) -> None:
    base = f"stacks.{stack_name}"
    stack = config.stacks.setdefault(stack_name, StackConfig(stack_name))
    if document is None:
        return
    if not isinstance(document, dict):
        config.problems.append(ConfigProblem(config.path, base, "must be a mapping"))
        return
    for key in document:
        if key not in ("maintenanceObserver", "windows"):
            config.problems.append(ConfigProblem(config.path, f"{base}.{key}",
                                                 _unknown_key_message(key, ["maintenanceObserver", "windows"])))
    if "maintenanceObserver" in document:
        stack.observer = _load_observer(config, stack_name, document["maintenanceObserver"], environ, boundaries)
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
            spec = parse_window(_substitute(window, environ), default_name=f"window-{index + 1}")
        except (WindowError, _Invalid) as error:
            key, _, message = str(error).partition(": ")
            config.problems.append(ConfigProblem(config.path, f"{path}.{key}" if message else path,
                                                 message or str(error)))
            continue
        if spec.cron is None and spec.starts_at is None:
            config.problems.append(ConfigProblem(config.path, path, "give start and end, or cron with duration"))
            continue
        stack.windows.append(spec)


def _load_observer(config: Config, stack_name: str, document, environ, boundaries: Boundaries) -> ObserverConfig:
    base = f"stacks.{stack_name}.maintenanceObserver"
    problems: list[ConfigProblem] = []

    def problem(key: str, message: str) -> None:
        problems.append(ConfigProblem(config.path, f"{base}.{key}" if key else base, message))

    fingerprint = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]
    if not isinstance(document, dict):
        problem("", "must be a mapping with at least 'type' and 'maintenanceValue'")
        document = {}
    type_name = document.get("type")
    observer_class = REGISTRY.get(type_name) if isinstance(type_name, str) else None
    if "type" in document and observer_class is None:
        problem("type", f"unknown observer type {type_name!r} (known: {', '.join(REGISTRY)})")
    fields = {**COMMON_FIELDS, **(observer_class.fields if observer_class else {})}
    values: dict[str, Any] = {}
    for key, raw in document.items():
        spec = fields.get(key)
        if spec is None:
            if observer_class is not None or key not in COMMON_FIELDS:
                problem(key, f"unknown key (allowed for {type_name or 'this observer'}: {', '.join(fields)})")
            continue
        try:
            values[key] = _convert(_substitute(raw, environ), spec)
        except _Invalid as invalid:
            problem(key, str(invalid))
    for key, spec in fields.items():
        if key not in values and key not in document:
            if spec.required:
                problem(key, "required")
            elif spec.default is not None:
                values[key] = spec.default
    observer = None
    if observer_class is not None and not problems:
        settings = {key: value for key, value in values.items() if key in observer_class.fields}
        for message in getattr(observer_class, "validate", lambda s: [])(settings):
            problem("", message)
        if not problems:
            for key, message in observer_class.boundary_problems(settings, boundaries):
                problem(key, message)
        if not problems:
            try:
                observer = observer_class(settings)
            except ObserverError as error:
                problem("", str(error))
            else:
                observer.restrict(boundaries)
    config.problems.extend(problems)
    return ObserverConfig(
        stack=stack_name,
        type=type_name if isinstance(type_name, str) else "?",
        name=values.get("name") or f"{type_name if isinstance(type_name, str) else 'broken'}-observer",
        maintenance_value=values.get("maintenanceValue", ""),
        normal_value=values.get("normalValue"),
        interval=values.get("pollingInterval", 30.0),
        confirmations=values.get("confirmations", 1),
        failure_threshold=values.get("failureThreshold", 3),
        fingerprint=fingerprint,
        observer=observer,
        error="; ".join(f"{p.path}: {p.message}" for p in problems) or None,
    )


def _substitute(raw, environ):
    """``${VAR}`` from the environment, in strings at any depth; an unset variable is a problem."""
    if isinstance(raw, str):
        own = [name for name in _VARIABLE.findall(raw) if is_own_variable(name)]
        if own:
            raise _Invalid(f"${{{own[0]}}} is refused: {own[0]} is rsgo's own setting (RSGO_*, DATABASE_URL) "
                           "and may hold its secrets; give the value another variable name")
        missing = [name for name in _VARIABLE.findall(raw) if name not in environ]
        if missing:
            raise _Invalid(f"unresolved ${{{missing[0]}}}: the environment variable {missing[0]} is not set")
        return _VARIABLE.sub(lambda m: environ[m.group(1)], raw)
    if isinstance(raw, dict):
        return {key: _substitute(value, environ) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_substitute(value, environ) for value in raw]
    return raw


def _scalar_text(raw) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, (str, int, float)):
        return str(raw)
    raise _Invalid(f"must be a string or number, not {type(raw).__name__}")


def _convert(raw, spec: Field):
    kind = spec.kind
    if kind == "string":
        if not isinstance(raw, str) or not raw.strip():
            raise _Invalid("must be a non-empty string")
        value = raw
    elif kind == "scalar":
        value = _scalar_text(raw)
    elif kind == "duration":
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise _Invalid("must be a duration like 30s, 5m, 1h or 1m30s")
        try:
            value = parse_duration(str(raw))
        except ValueError as error:
            raise _Invalid(str(error)) from None
    elif kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _Invalid("must be a whole number")
        value = raw
    elif kind == "bool":
        if not isinstance(raw, bool):
            raise _Invalid("must be true or false")
        value = raw
    elif kind == "map":
        if not isinstance(raw, dict):
            raise _Invalid("must be a mapping of names to values")
        value = {str(k): _scalar_text(v) for k, v in raw.items()}
    elif kind == "status":
        if isinstance(raw, bool) or not isinstance(raw, (int, str, list)):
            raise _Invalid("must be a status code, a range like 2xx or 200-299, or a list of them")
        value = raw
    else:  # pragma: no cover - a type module declared a kind the loader does not know
        raise _Invalid(f"unsupported field kind {kind}")
    if spec.choices is not None and value not in spec.choices:
        raise _Invalid(f"{value!r} is not one of {', '.join(spec.choices)}")
    if spec.minimum is not None and value < spec.minimum:
        raise _Invalid(f"must be at least {spec.minimum:g}" + ("s" if kind == "duration" else ""))
    return value
