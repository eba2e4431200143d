"""Versioned schema changes, applied in order by ``db.migrate``.

Version 1 creates the tables from the models. A later version that adds a
column must use ``playhouse.migrate`` and skip a column that already exists,
because a fresh database gets that column from version 1's ``create_tables``.
"""

from __future__ import annotations


def _initial_schema(database) -> None:
    from rsgo import models

    database.create_tables(models.ALL_MODELS, safe=True)


def _observer_status(database) -> None:
    from rsgo import models

    database.create_tables([models.ObserverStatus], safe=True)


MIGRATIONS = [
    (1, "initial schema", _initial_schema),
    (2, "observer status", _observer_status),
]
