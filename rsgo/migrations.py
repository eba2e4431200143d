"""Versioned schema changes, applied in order by ``db.migrate`` at start (docs/design.md#composition).

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


def _accounts(database) -> None:
    from playhouse.migrate import SchemaMigrator, migrate

    from rsgo import models

    database.create_tables([models.User, models.ApiToken, models.SetupToken, models.SecurityEvent], safe=True)
    migrator = SchemaMigrator.from_database(database)
    for model in (models.AuditEntry, models.Transition):
        table = model._meta.table_name
        if "address" not in {column.name for column in database.get_columns(table)}:
            migrate(migrator.add_column(table, "address", model.address))


def _windows(database) -> None:
    from rsgo import models

    database.create_tables([models.MaintenanceWindow, models.ScheduleSuppression], safe=True)


def _webhooks(database) -> None:
    from rsgo import models

    database.create_tables([models.Webhook, models.WebhookDelivery], safe=True)


def _session_keys(database) -> None:
    """Sessions name a user by a random key instead of id + version (ids are reused after a deletion).
    Every existing user gets a fresh key, so every cookie issued before this version stops working."""
    from playhouse.migrate import SchemaMigrator, migrate

    from rsgo import models

    migrator = SchemaMigrator.from_database(database)
    columns = {column.name for column in database.get_columns("users")}
    if "session_key" not in columns:
        nullable = models.User.session_key.clone()
        nullable.null, nullable.unique, nullable.default = True, False, None
        migrate(migrator.add_column("users", "session_key", nullable))
        for (user_id,) in database.execute_sql('SELECT id FROM "users"').fetchall():
            database.execute_sql(f'UPDATE "users" SET session_key = {database.param} WHERE id = {database.param}',
                                 (models.new_session_key(), user_id))
        migrate(migrator.add_not_null("users", "session_key"),
                migrator.add_index("users", ("session_key",), unique=True))
    if "session_version" in columns:
        migrate(migrator.drop_column("users", "session_version"))


def _unit_kinds(database) -> None:
    """Swarm services beside containers: an action and a stopped-set entry say which kind they are
    and what Normal must restore (a service's replica count or placement constraints)."""
    from playhouse.migrate import SchemaMigrator, migrate

    from rsgo import models

    migrator = SchemaMigrator.from_database(database)
    for model in (models.TransitionAction, models.StoppedSetEntry):
        table = model._meta.table_name
        columns = {column.name for column in database.get_columns(table)}
        for name in ("kind", "memo"):
            if name not in columns:
                migrate(migrator.add_column(table, name, model._meta.fields[name]))


def _maintenance_reminders(database) -> None:
    from rsgo import models

    database.create_tables([models.MaintenanceReminder], safe=True)


def _upgrades(database) -> None:
    from rsgo import models

    database.create_tables([models.Upgrade, models.UpgradeContainer], safe=True)


def _forgotten_deployments(database) -> None:
    """A stack whose containers are gone can be forgotten: its row stays (with its history), hidden."""
    from playhouse.migrate import SchemaMigrator, migrate

    from rsgo import models

    if "forgotten_at" not in {column.name for column in database.get_columns("deployments")}:
        migrate(SchemaMigrator.from_database(database).add_column("deployments", "forgotten_at",
                                                                  models.Deployment.forgotten_at))


def _alert_silences(database) -> None:
    from rsgo import models

    database.create_tables([models.AlertSilence], safe=True)


def _notification_deliveries(database) -> None:
    from rsgo import models

    database.create_tables([models.NotificationDelivery], safe=True)


MIGRATIONS = [
    (1, "initial schema", _initial_schema),
    (2, "observer status", _observer_status),
    (3, "users, API tokens, security events", _accounts),
    (4, "maintenance windows", _windows),
    (5, "webhooks and their deliveries", _webhooks),
    (6, "random session keys instead of session versions", _session_keys),
    (7, "kinds of stopped units (containers, Swarm services) and what restores them", _unit_kinds),
    (8, "reminders of overdue Maintenance and Stopped stays", _maintenance_reminders),
    (9, "upgrades and the containers they recreate (their journal)", _upgrades),
    (10, "forgotten stacks: hidden, their history kept", _forgotten_deployments),
    (11, "Alertmanager silences of stacks in Maintenance, Stopped or Migrating", _alert_silences),
    (12, "notifications through Apprise and their deliveries", _notification_deliveries),
]
