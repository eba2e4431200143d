"""SQL observers through real pyodbc against real databases.

``sqlQuery`` runs end to end against a private PostgreSQL server (psqlODBC, driver
"PostgreSQL Unicode") and against SQLite (driver "SQLite3"). ``sqlExtendedProperty`` is
split as TESTING.md asks, because no SQL Server can run here and its statement parses
neither in PostgreSQL nor in SQLite:

* PINNED (one seam, a recording stand-in for ``pyodbc.connect``): the exact SQL Server
  statement text and the property name as its single bound parameter.
* REAL: everything else of its path (connect, parameter binding, scalar, NULL, missing
  property, timeout, errors) through real pyodbc and psqlODBC, with a subclass whose
  ``STATEMENT`` is the PostgreSQL equivalent.

Nothing is skipped: a missing ODBC driver fails with a message (scripts/test installs them).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import pyodbc
import pytest

from conftest import PostgresServer
from rsgo.observers import REGISTRY
from rsgo.observers.base import ObserverError, Reading
from rsgo.observers.odbc import mask_odbc
from rsgo.observers.sql_extended_property import SqlExtendedPropertyObserver
from rsgo.observers.sql_query import SqlQueryObserver
from support import free_port, wait_until

PG_DRIVER = "PostgreSQL Unicode"
SQLITE_DRIVER = "SQLite3"
PASSWORD = "hunter2"
SQL_SERVER_STATEMENT = "SELECT CAST(value AS NVARCHAR(MAX)) FROM sys.extended_properties WHERE class = 0 AND name = ?"


@pytest.fixture(scope="module", autouse=True)
def odbc_drivers():
    installed = pyodbc.drivers()
    missing = [driver for driver in (PG_DRIVER, SQLITE_DRIVER, "FreeTDS") if driver not in installed]
    if missing:
        pytest.fail(f"ODBC drivers {missing} are not registered (have {installed}): install unixodbc "
                    "odbc-postgresql libsqliteodbc tdsodbc (scripts/test does)", pytrace=False)


def pg_connection_string(port: int, database: str, user: str = "rsgo", password: str | None = None) -> str:
    text = f"Driver={{{PG_DRIVER}}};Server=127.0.0.1;Port={port};Database={database};UID={user}"
    return text + (f";PWD={password}" if password is not None else "")


def execute(connection_string: str, *statements: str) -> None:
    with pyodbc.connect(connection_string, autocommit=True) as connection:
        for statement in statements:
            connection.cursor().execute(statement)


@pytest.fixture(scope="module")
def pg(postgres):
    """A database on the session's PostgreSQL server with the tables these tests read."""
    name = f"sqlobs_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    connection_string = pg_connection_string(postgres.port, name)
    execute(
        connection_string,
        "CREATE TABLE flags (name text PRIMARY KEY, flag text, counter integer, note text, "
        "amount numeric(5,2), enabled boolean)",
        "INSERT INTO flags VALUES ('maintenance', '1', 42, 'Down for the upgrade', 1.50, true), "
        "('normal', '0', 0, 'all good', 0, false), ('unset', NULL, NULL, NULL, NULL, NULL)",
        "CREATE TABLE extended_properties (name text PRIMARY KEY, value text)",
        "INSERT INTO extended_properties VALUES ('maintenance_flag', '1'), ('cleared_flag', NULL), "
        "('it''s; a name', 'quoted')",
    )
    return connection_string


@pytest.fixture(scope="module")
def own_postgres():
    """A PostgreSQL server of this module alone, to stop and start, with a password-checked role."""
    server = PostgresServer(Path(f"/tmp/rsgo-pg-sql-{uuid.uuid4().hex[:8]}")).start()
    try:
        server.create_database("flags")
        admin = pg_connection_string(server.port, "flags")
        execute(admin, "CREATE TABLE flags (flag text)", "INSERT INTO flags VALUES ('1')",
                "CREATE ROLE pwuser LOGIN PASSWORD 'right-one'", "GRANT SELECT ON flags TO pwuser")
        hba = server.data / "pg_hba.conf"
        hba.write_text("host all pwuser 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        server._run("pg_ctl", "-D", str(server.data), "reload")

        def password_checked():
            try:
                pyodbc.connect(pg_connection_string(server.port, "flags", "pwuser", "wrong"), timeout=2).close()
                return False
            except pyodbc.Error:
                return True

        wait_until(password_checked, 10, interval=0.1, message="pg_hba.conf reload")
        yield server
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(server.root)], check=False)


def start_again(server: PostgresServer) -> None:
    """The ``pg_ctl start`` of PostgresServer.start, without its initdb."""
    server._run("pg_ctl", "-D", str(server.data), "-l", str(server.root / "log"), "-w", "-o",
                f"-p {server.port} -k {server.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")


def sql_query(connection_string: str, query: str, timeout: float = 10.0) -> SqlQueryObserver:
    settings = {"connectionString": connection_string, "query": query, "timeout": timeout}
    assert SqlQueryObserver.validate(settings) == []
    return SqlQueryObserver(settings)


def check_error(observer) -> str:
    with pytest.raises(ObserverError) as caught:
        observer.check()
    return str(caught.value)


def assert_no_secret(message: str, connection_string: str) -> None:
    assert PASSWORD not in message
    assert connection_string not in message
    assert "PWD=" not in message.upper()


# --- sqlQuery -------------------------------------------------------------------------------

def test_registry_has_both_sql_types():
    assert REGISTRY["sqlQuery"] is SqlQueryObserver
    assert REGISTRY["sqlExtendedProperty"] is SqlExtendedPropertyObserver


def test_sql_query_reads_postgresql_values_through_psqlodbc(pg):
    def read(query):
        return sql_query(pg, query).check()

    assert read("SELECT flag FROM flags WHERE name = 'maintenance'") == Reading("1")
    assert read("SELECT flag FROM flags WHERE name = 'normal'") == Reading("0")
    assert read("SELECT flag FROM flags WHERE name = 'unset'") == Reading(None)  # NULL
    assert read("SELECT flag FROM flags WHERE name = 'absent'") == Reading(None)  # no row
    assert read("SELECT counter FROM flags WHERE name = 'maintenance'") == Reading("42")
    assert read("SELECT note FROM flags WHERE name = 'maintenance'") == Reading("Down for the upgrade")
    assert read("SELECT amount FROM flags WHERE name = 'maintenance'") == Reading("1.50")
    # psqlODBC hands booleans over as '1'/'0' (its BoolsAsChar default), not as True/False.
    assert read("SELECT enabled FROM flags WHERE name = 'maintenance'") == Reading("1")
    # First column of the first row, the rest ignored.
    assert read("SELECT name, flag FROM flags ORDER BY name") == Reading("maintenance")


def test_sql_query_reads_sqlite_values_through_the_sqlite3_driver(tmp_path):
    connection_string = f"Driver={SQLITE_DRIVER};Database={tmp_path / 'flags.db'}"
    execute(connection_string,
            "CREATE TABLE flags (name TEXT PRIMARY KEY, flag TEXT, counter INTEGER, ratio REAL, raw BLOB)",
            "INSERT INTO flags VALUES ('maintenance', '1', 42, 1.5, x'6f6e'), ('normal', '0', 0, 0, NULL), "
            "('unset', NULL, NULL, NULL, NULL)")

    def read(query):
        return sql_query(connection_string, query).check()

    assert read("SELECT flag FROM flags WHERE name = 'maintenance'") == Reading("1")
    assert read("SELECT flag FROM flags WHERE name = 'normal'") == Reading("0")
    assert read("SELECT flag FROM flags WHERE name = 'unset'") == Reading(None)
    assert read("SELECT flag FROM flags WHERE name = 'absent'") == Reading(None)
    assert read("SELECT counter FROM flags WHERE name = 'maintenance'") == Reading("42")
    assert read("SELECT ratio FROM flags WHERE name = 'maintenance'") == Reading("1.5")
    assert read("SELECT raw FROM flags WHERE name = 'maintenance'") == Reading("on")  # bytes as UTF-8
    assert read("SELECT name FROM flags ORDER BY name DESC") == Reading("unset")


def test_sql_query_errors_from_the_database_are_observer_errors(pg):
    message = check_error(sql_query(pg, "SELECT no_such_column FROM flags"))
    assert "query failed" in message and "no_such_column" in message
    message = check_error(sql_query(f"Driver={SQLITE_DRIVER};Database=:memory:", "SELECT * FROM nowhere"))
    assert "query failed" in message and "nowhere" in message


def test_database_down_is_an_error_and_the_observer_recovers_when_it_is_back(own_postgres):
    connection_string = pg_connection_string(own_postgres.port, "flags", "pwuser", "right-one")
    observer = sql_query(connection_string, "SELECT flag FROM flags", timeout=2)
    assert observer.check() == Reading("1")

    own_postgres.stop()
    try:
        started = time.monotonic()
        message = check_error(observer)
        assert time.monotonic() - started < 3.5
        assert message.startswith("cannot connect:") and "Connection refused" in message, message
        assert "right-one" not in message and connection_string not in message
    finally:
        start_again(own_postgres)

    assert observer.check() == Reading("1")


def test_nothing_listening_is_an_error_quickly():
    connection_string = pg_connection_string(free_port(), "flags", password=PASSWORD)
    started = time.monotonic()
    message = check_error(sql_query(connection_string, "SELECT 1", timeout=2))
    assert time.monotonic() - started < 3.5
    assert "cannot connect" in message and "Connection refused" in message
    assert_no_secret(message, connection_string)


def test_the_sql_server_driver_fails_cleanly_when_no_server_answers():
    """FreeTDS (the SQL Server driver installed here) with nothing listening: an error, no secret."""
    connection_string = f"Driver=FreeTDS;Server=127.0.0.1;Port={free_port()};UID=sa;PWD={PASSWORD};TDS_Version=7.4"
    message = check_error(sql_query(connection_string, "SELECT 1", timeout=2))
    assert message.startswith("cannot connect:")
    assert_no_secret(message, connection_string)


def test_psqlodbc_honours_the_query_timeout(pg):
    observer = sql_query(pg, "SELECT pg_sleep(5)", timeout=1)
    started = time.monotonic()
    message = check_error(observer)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert message.startswith("timed out after 1s"), message
    # The server stopped it (psqlODBC turns the query timeout into PostgreSQL's statement timeout),
    # not the hard deadline of fetch_scalar.
    assert "statement timeout" in message, message


def test_the_hard_deadline_stops_a_query_the_driver_lets_run(tmp_path):
    """SQLite3's ODBC query timeout is only a lock wait: the deadline gives up and cancels the statement."""
    connection_string = f"Driver={SQLITE_DRIVER};Database={tmp_path / 'slow.db'}"
    slow = ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300000000) "
            "SELECT count(*) FROM n")
    started = time.monotonic()
    message = check_error(sql_query(connection_string, slow, timeout=1))
    assert time.monotonic() - started < 2.5
    assert message.startswith("timed out after 1s"), message
    # The cancelled statement ends and its worker closes the connection (no thread left spinning).
    wait_until(lambda: not any(t.name == "rsgo-odbc-query" for t in threading.enumerate()), 5,
               message="the query worker to end after the cancel")


def test_wrong_password_error_has_no_secret(own_postgres):
    connection_string = pg_connection_string(own_postgres.port, "flags", "pwuser", PASSWORD)
    message = check_error(sql_query(connection_string, "SELECT flag FROM flags", timeout=2))
    assert message.startswith("cannot connect:") and "password authentication failed" in message, message
    assert_no_secret(message, connection_string)


def test_unknown_database_error_has_no_secret(postgres):
    # The database is named like the password, so the server's message echoes the secret: it is scrubbed.
    connection_string = pg_connection_string(postgres.port, PASSWORD, password=PASSWORD)
    message = check_error(sql_query(connection_string, "SELECT 1", timeout=2))
    assert message.startswith("cannot connect:") and "does not exist" in message, message
    assert_no_secret(message, connection_string)


def test_target_masks_the_password():
    observer = sql_query(f"Driver=SQLite3;Database=/tmp/x.db;UID=me;PWD={{{PASSWORD};x}}}}y}}", "SELECT 1")
    target = observer.target()
    assert "PWD=***" in target and "Database=/tmp/x.db" in target and "SELECT 1" in target
    assert PASSWORD not in target and "x}y" not in target
    assert mask_odbc("Server=s;Password=abc;ClientSecret=def;UID=u") == "Server=s;Password=***;ClientSecret=***;UID=u"


def test_connection_name_reads_the_connection_string_from_the_environment(pg, monkeypatch):
    monkeypatch.setenv("RSGO_TEST_SQL_CONNECTION", f"{pg};PWD={PASSWORD}")
    settings = {"connectionName": "RSGO_TEST_SQL_CONNECTION",
                "query": "SELECT flag FROM flags WHERE name = 'maintenance'", "timeout": 5.0}
    assert SqlQueryObserver.validate(settings) == []
    observer = SqlQueryObserver(settings)
    assert observer.check() == Reading("1")
    assert "RSGO_TEST_SQL_CONNECTION" in observer.target() and PASSWORD not in observer.target()


def test_connection_name_unset_or_empty_fails_at_construction(monkeypatch):
    monkeypatch.delenv("RSGO_TEST_SQL_MISSING", raising=False)
    settings = {"connectionName": "RSGO_TEST_SQL_MISSING", "query": "SELECT 1", "timeout": 10.0}
    with pytest.raises(ObserverError, match="RSGO_TEST_SQL_MISSING is not set"):
        SqlQueryObserver(settings)
    monkeypatch.setenv("RSGO_TEST_SQL_MISSING", "  ")
    with pytest.raises(ObserverError, match="RSGO_TEST_SQL_MISSING is empty"):
        SqlExtendedPropertyObserver({"connectionName": "RSGO_TEST_SQL_MISSING", "propertyName": "p", "timeout": 10.0})


def test_exactly_one_of_connection_string_and_connection_name():
    for observer_class, extra in ((SqlQueryObserver, {"query": "SELECT 1"}),
                                  (SqlExtendedPropertyObserver, {"propertyName": "p"})):
        assert observer_class.validate({**extra, "connectionString": "Driver=SQLite3"}) == []
        assert observer_class.validate({**extra, "connectionName": "X"}) == []
        assert observer_class.validate(extra) == ["one of connectionString or connectionName is required"]
        both = observer_class.validate({**extra, "connectionString": "Driver=SQLite3", "connectionName": "X"})
        assert both and "mutually exclusive" in both[0]
        with pytest.raises(ObserverError, match="required"):
            observer_class({**extra, "timeout": 10.0})


def test_fields_and_defaults():
    assert SqlQueryObserver.fields["query"].required and SqlQueryObserver.fields["timeout"].default == 10.0
    assert SqlExtendedPropertyObserver.fields["propertyName"].required
    assert SqlExtendedPropertyObserver.fields["timeout"].default == 10.0
    for observer_class in (SqlQueryObserver, SqlExtendedPropertyObserver):
        assert {"connectionString", "connectionName", "timeout"} <= set(observer_class.fields)


# --- sqlExtendedProperty --------------------------------------------------------------------

class RecordingConnection:
    """Stands in for a pyodbc connection to SQL Server: records what the observer sends."""

    def __init__(self, calls: list, connection_string: str, kwargs: dict):
        self.calls = calls
        calls.append(("connect", connection_string, kwargs))
        self.timeout = 0

    def set_attr(self, attribute, value):
        self.calls.append(("set_attr", attribute, value))

    def cursor(self):
        return RecordingCursor(self.calls)

    def close(self):
        self.calls.append(("close",))


class RecordingCursor:
    def __init__(self, calls: list):
        self.calls = calls

    def execute(self, statement, *params):
        self.calls.append(("execute", statement, params))
        return self

    def fetchone(self):
        return ("1",)

    def cancel(self):
        pass

    def close(self):
        pass


def test_extended_property_sends_exactly_the_sql_server_statement_with_one_bound_parameter(monkeypatch):
    """PINNED part: the SQL Server text and its parameter, at the pyodbc.connect seam.

    No SQL Server can run here, so this one test replaces ``pyodbc.connect`` with a recording
    stand-in; everything else of the path runs against real PostgreSQL in the tests below.
    """
    calls: list = []
    monkeypatch.setattr(pyodbc, "connect", lambda cs, **kwargs: RecordingConnection(calls, cs, kwargs))
    connection_string = f"Driver={{ODBC Driver 18 for SQL Server}};Server=db;Database=app;UID=sa;PWD={PASSWORD}"
    observer = SqlExtendedPropertyObserver({"connectionString": connection_string,
                                            "propertyName": "MaintenanceMode", "timeout": 10.0})

    assert SqlExtendedPropertyObserver.STATEMENT == SQL_SERVER_STATEMENT
    assert observer.check() == Reading("1")
    executed = [call for call in calls if call[0] == "execute"]
    assert executed == [("execute", SQL_SERVER_STATEMENT, ("MaintenanceMode",))]
    assert calls[0] == ("connect", connection_string, {"timeout": 10, "autocommit": True})
    assert calls[-1] == ("close",)
    assert observer.target().endswith("extended property MaintenanceMode")
    assert PASSWORD not in observer.target()


class PostgresExtendedProperty(SqlExtendedPropertyObserver):
    """The sqlExtendedProperty path with a PostgreSQL stand-in for sys.extended_properties."""

    STATEMENT = "SELECT CAST(value AS TEXT) FROM extended_properties WHERE name = ?"


class SlowPostgresExtendedProperty(SqlExtendedPropertyObserver):
    STATEMENT = "SELECT CAST(value AS TEXT) FROM extended_properties WHERE name = ? AND pg_sleep(5) IS NOT NULL"


def extended_property(observer_class, connection_string: str, name: str, timeout: float = 10.0):
    settings = {"connectionString": connection_string, "propertyName": name, "timeout": timeout}
    assert observer_class.validate(settings) == []
    return observer_class(settings)


def test_extended_property_path_reads_through_real_pyodbc(pg):
    """REAL part: connect, bind the name, scalar, NULL and missing property, against PostgreSQL."""
    assert extended_property(PostgresExtendedProperty, pg, "maintenance_flag").check() == Reading("1")
    assert extended_property(PostgresExtendedProperty, pg, "cleared_flag").check() == Reading(None)  # NULL
    assert extended_property(PostgresExtendedProperty, pg, "no_such_flag").check() == Reading(None)  # no row
    # The name is bound, not spliced into the SQL: quotes and semicolons are just characters.
    assert extended_property(PostgresExtendedProperty, pg, "it's; a name").check() == Reading("quoted")


def test_extended_property_path_times_out_through_real_pyodbc(pg):
    """REAL part: the query timeout on the sqlExtendedProperty path (PostgreSQL stand-in statement)."""
    started = time.monotonic()
    message = check_error(extended_property(SlowPostgresExtendedProperty, pg, "maintenance_flag", timeout=1))
    assert time.monotonic() - started < 2.5
    assert message.startswith("timed out after 1s"), message


def test_extended_property_path_errors_through_real_pyodbc(postgres):
    """REAL part: a database that is not there and one that is not listening, without leaking the password."""
    for connection_string in (pg_connection_string(postgres.port, "no_such_db", password=PASSWORD),
                              pg_connection_string(free_port(), "flags", password=PASSWORD)):
        message = check_error(extended_property(PostgresExtendedProperty, connection_string, "maintenance_flag", 2))
        assert message.startswith("cannot connect:"), message
        assert_no_secret(message, connection_string)
