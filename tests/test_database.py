"""The database: migrations on SQLite and on a real PostgreSQL server, and the same mode change on both."""

from __future__ import annotations

import sqlite3

from conftest import wait_for_deployment
from rsgo import db
from rsgo.migrations import MIGRATIONS
from support import put_mode


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_records_migrations(make_app, tmp_path):
    make_app(background=False, data_dir=tmp_path / "data")
    assert db.database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.database.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000
    connection = sqlite3.connect(tmp_path / "data" / "rsgo.sqlite3")
    versions = [row[0] for row in connection.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [version for version, _, _ in MIGRATIONS]


def test_migrations_run_once(make_app, tmp_path):
    make_app(background=False, data_dir=tmp_path / "data")
    assert db.migrate() == []


def test_a_mode_change_works_on_postgresql(make_app, make_stack, postgres):
    url = postgres.create_database("rsgo_mode_change")
    client = make_app(DATABASE_URL=url).test_client()
    assert type(db.database.obj).__name__ == "PostgresqlDatabase"
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api")
    wait_for_deployment(client, stack.name, 2)

    response = put_mode(client, stack.name, "Maintenance", reason="on postgres")

    assert response.status_code == 200, response.json
    assert not stack.is_running("api") and stack.is_running("db")
    history = client.get(f"/api/deployments/{stack.name}/history").json["items"]
    assert history[0]["reason"] == "on postgres" and history[0]["outcome"] == "succeeded"
    versions = [row[0] for row in db.database.execute_sql("SELECT version FROM schema_migrations")]
    assert versions == [version for version, _, _ in MIGRATIONS]
    assert put_mode(client, stack.name, "Normal").status_code == 200
    assert stack.is_running("api")
