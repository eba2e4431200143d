"""Observers: one module per type, registered by the type names the config file uses
(README "Observers", docs/design.md#observers)."""

from __future__ import annotations

from rsgo.observers.base import Field, Observer, ObserverError, Reading
from rsgo.observers.file import FileObserver
from rsgo.observers.http import HttpObserver
from rsgo.observers.sql_extended_property import SqlExtendedPropertyObserver
from rsgo.observers.sql_query import SqlQueryObserver

REGISTRY: dict[str, type[Observer]] = {
    observer.type_name: observer
    for observer in (SqlExtendedPropertyObserver, SqlQueryObserver, HttpObserver, FileObserver)
}

__all__ = ["REGISTRY", "Field", "Observer", "ObserverError", "Reading"]
