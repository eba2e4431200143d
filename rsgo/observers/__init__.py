"""Observers: one module per type, registered by the type names of the spec (§6)."""

from __future__ import annotations

import importlib

from rsgo.observers.base import Field, Observer, ObserverError, Reading

_TYPES = {  # TEMPORARY while the type modules are being written: tolerate a missing one
    "sqlExtendedProperty": ("rsgo.observers.sql_extended_property", "SqlExtendedPropertyObserver"),
    "sqlQuery": ("rsgo.observers.sql_query", "SqlQueryObserver"),
    "http": ("rsgo.observers.http", "HttpObserver"),
    "file": ("rsgo.observers.file", "FileObserver"),
}
REGISTRY: dict[str, type[Observer]] = {}
for _name, (_module, _class) in _TYPES.items():
    try:
        REGISTRY[_name] = getattr(importlib.import_module(_module), _class)
    except ImportError:
        pass

__all__ = ["REGISTRY", "Field", "Observer", "ObserverError", "Reading"]
