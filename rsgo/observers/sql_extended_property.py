"""``sqlExtendedProperty``: a database-level extended property of SQL Server, through ODBC (pyodbc)
(README "Observers")."""

from __future__ import annotations

from typing import ClassVar

from rsgo.observers.base import Field, Reading
from rsgo.observers.odbc import CONNECTION_FIELDS, TIMEOUT_FIELD, OdbcObserver


class SqlExtendedPropertyObserver(OdbcObserver):
    type_name: ClassVar[str] = "sqlExtendedProperty"
    fields: ClassVar[dict[str, Field]] = {
        **CONNECTION_FIELDS,
        "propertyName": Field("string", required=True),
        "timeout": TIMEOUT_FIELD,
    }
    # The statement the README's Observers section shows; the property name is its one bound parameter.
    STATEMENT: ClassVar[str] = (
        "SELECT CAST(value AS NVARCHAR(MAX)) FROM sys.extended_properties WHERE class = 0 AND name = ?"
    )

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.property_name = settings["propertyName"]

    def check(self) -> Reading:
        return Reading(self.fetch(self.STATEMENT, (self.property_name,)))

    def target(self) -> str:
        return f"{self.connection_target()} · extended property {self.property_name}"
