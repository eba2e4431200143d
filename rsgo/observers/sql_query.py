"""``sqlQuery``: the first column of the first row of a query, through ODBC (pyodbc) (README "Observers")."""

from __future__ import annotations

from typing import ClassVar

from rsgo.observers.base import Field, Reading
from rsgo.observers.odbc import CONNECTION_FIELDS, TIMEOUT_FIELD, OdbcObserver

_TARGET_QUERY_CHARS = 120


class SqlQueryObserver(OdbcObserver):
    type_name: ClassVar[str] = "sqlQuery"
    fields: ClassVar[dict[str, Field]] = {
        **CONNECTION_FIELDS,
        "query": Field("string", required=True),
        "timeout": TIMEOUT_FIELD,
    }

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.query = settings["query"]

    def check(self) -> Reading:
        return Reading(self.fetch(self.query))

    def target(self) -> str:
        query = " ".join(self.query.split())
        if len(query) > _TARGET_QUERY_CHARS:
            query = query[:_TARGET_QUERY_CHARS - 1] + "…"
        return f"{self.connection_target()} · {query}"
