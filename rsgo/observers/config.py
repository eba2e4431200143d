"""The ``maintenanceObserver`` entry of a stack in the config file (README "Observers",
docs/design.md#stack-config): its fields checked against the type's, and the observer built.

A problem inside the entry disables only this observer: it stays visible, with its error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rsgo.config_values import ConfigProblem, InvalidValue, convert, substitute
from rsgo.observers import REGISTRY, Field, Observer, ObserverError
from rsgo.observers.base import Boundaries

COMMON_FIELDS: dict[str, Field] = {
    "type": Field("string", required=True),
    "name": Field("string"),
    "maintenanceValue": Field("scalar", required=True),
    "normalValue": Field("scalar"),
    "pollingInterval": Field("duration", default=30.0, minimum=1.0),
    "confirmations": Field("int", default=1, minimum=1),
    "failureThreshold": Field("int", default=3, minimum=1),
}


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


def load_observer(file: str, stack_name: str, document, environ,
                  boundaries: Boundaries) -> tuple[ObserverConfig, list[ConfigProblem]]:
    """The stack's observer (disabled, with its error, if the entry has a problem) and the problems."""
    base = f"stacks.{stack_name}.maintenanceObserver"
    problems: list[ConfigProblem] = []

    def problem(key: str, message: str) -> None:
        problems.append(ConfigProblem(file, f"{base}.{key}" if key else base, message))

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
            values[key] = convert(substitute(raw, environ), spec)
        except InvalidValue as invalid:
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
        for message in observer_class.validate(settings):
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
    ), problems
