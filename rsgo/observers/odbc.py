"""ODBC access shared by the SQL observers (``sqlQuery``, ``sqlExtendedProperty``; README "Observers").

Where the connection string comes from (``connectionString`` or ``connectionName``, the
name of an environment variable holding it), one scalar query through pyodbc with a
timeout, and error messages that never carry the connection string or a password.

Timeouts, as found with the drivers of this project (psqlODBC 13.02, sqliteodbc 0.9998,
unixODBC 2.3.11, pyodbc 5.5):

* pyodbc's ``connection.timeout`` is set with ``SQL_ATTR_CONNECTION_TIMEOUT`` and then
  applied to each cursor as ``SQL_ATTR_QUERY_TIMEOUT``. psqlODBC rejects that connection
  attribute ("Couldn't set unsupported connect attribute 113", HY000), so the setter
  fails there. psqlODBC does honour ``SQL_ATTR_QUERY_TIMEOUT`` set on the connection as
  the default for its statements (``connection.set_attr(0, n)``): ``SELECT pg_sleep(5)``
  with a 1 s timeout fails after 1.0 s with SQLSTATE 57014 "canceling statement due to
  statement timeout" (the driver uses the server's statement timeout). So we set
  ``connection.timeout`` and fall back to ``set_attr`` when the driver refuses it.
* The SQLite3 driver accepts the timeout but takes it as SQLite's busy (lock wait)
  timeout; a long-running statement is not stopped by it.
* Hence the hard deadline: the connect and the query run in a worker thread, and after
  ``timeout + 1`` s we give up with "timed out after Ns" and cancel the statement
  (``SQLCancel``, which stops both psqlODBC and SQLite statements). A connect that hangs
  cannot be cancelled; its thread is left to finish on its own (the login timeout, also
  the observer's timeout, bounds it for drivers that honour it) and closes what it opened.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import pyodbc

from rsgo.observers.base import (
    Boundaries,
    Field,
    Observer,
    ObserverError,
    mask_connection_string,
)
from rsgo.settings import is_own_variable

SQL_ATTR_QUERY_TIMEOUT = 0  # ODBC statement attribute; set on a connection it is the statements' default
GRACE_SECONDS = 1.0  # the hard deadline is timeout + this
TIMEOUT_SQLSTATES = {"HYT00", "HYT01", "57014"}  # ODBC timeouts; PostgreSQL's query_canceled

CONNECTION_FIELDS: dict[str, Field] = {
    "connectionString": Field("string"),
    "connectionName": Field("string"),
}
TIMEOUT_FIELD = Field("duration", default=10.0, minimum=1.0)

# Keys of an ODBC connection string whose values are secrets (compared lowercased).
_SECRET_KEYS = {"pwd", "password", "pass", "secret", "token", "key", "apikey", "api_key", "access_token"}
_SECRET_KEY_PARTS = ("pwd", "password", "secret", "token", "auth", "credential", "key")
# Keys shown in clear. Masking is by allow-list: a driver's own key for a secret (Credentials=,
# Auth=, Signature=...) cannot be foreseen, so every other key's value is shown as ***.
_SHOWN_KEYS = {
    "driver", "dsn", "server", "servername", "host", "hostname", "hostaddr", "address", "addr", "port",
    "database", "db", "dbname", "initial catalog", "uid", "user", "user id", "username", "instance",
    "trusted_connection", "integrated security", "encrypt", "trustservercertificate", "sslmode",
    "tds_version", "app", "application name", "applicationintent", "multisubnetfailover", "failover_partner",
    "readonly", "charset", "clientcharset", "client_charset", "timeout", "connection timeout", "login timeout",
    "logintimeout", "querytimeout", "stepapi", "syncpragma", "notxn", "longnames", "nowchar", "fksupport",
    "bigint", "jdconv", "oemcp", "sslrootcert", "protocol", "mars_connection", "autotranslate", "language",
}


def validate_connection(settings: dict) -> list[str]:
    """Exactly one of ``connectionString`` and ``connectionName``."""
    given = [key for key in CONNECTION_FIELDS if settings.get(key)]
    if not given:
        return ["one of connectionString or connectionName is required"]
    if len(given) > 1:
        return ["connectionString and connectionName are mutually exclusive: give one of them"]
    return []


def resolve_connection_string(settings: dict, environ=None) -> str:
    """The connection string itself; ``ObserverError`` (naming the variable, never a value) if missing."""
    problems = validate_connection(settings)
    if problems:
        raise ObserverError(problems[0])
    if settings.get("connectionString"):
        return settings["connectionString"]
    name = settings["connectionName"]
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        raise ObserverError(f"connectionName: the environment variable {name} is not set")
    if not value.strip():
        raise ObserverError(f"connectionName: the environment variable {name} is empty")
    return value


def _attributes(connection_string: str) -> list[tuple[str, str, str]]:
    """``(key, value, raw segment)`` per attribute; values may be braced: ``PWD={a;b}}c}``."""
    attributes = []
    position, length = 0, len(connection_string)
    while position < length:
        start = position
        equals = connection_string.find("=", position)
        if equals < 0:
            attributes.append(("", "", connection_string[start:]))
            break
        key = connection_string[position:equals].strip()
        position = equals + 1
        while position < length and connection_string[position] == " ":
            position += 1
        if position < length and connection_string[position] == "{":
            value_chars = []
            position += 1
            while position < length:
                char = connection_string[position]
                if char == "}":
                    if connection_string[position + 1:position + 2] == "}":
                        value_chars.append("}")
                        position += 2
                        continue
                    position += 1
                    break
                value_chars.append(char)
                position += 1
            value = "".join(value_chars)
            end = connection_string.find(";", position)
            end = length if end < 0 else end
        else:
            end = connection_string.find(";", position)
            end = length if end < 0 else end
            value = connection_string[position:end].strip()
        attributes.append((key, value, connection_string[start:end]))
        position = end + 1
    return attributes


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(part in lowered for part in _SECRET_KEY_PARTS)


def _is_masked_key(key: str) -> bool:
    return _is_secret_key(key) or " ".join(key.lower().split()) not in _SHOWN_KEYS


def secret_values(connection_string: str) -> list[str]:
    """The values of the secret attributes (passwords, tokens, unknown keys), longest first.

    Values of unknown keys count from 4 characters: shorter ones (``yes``, ``1``) are settings,
    and replacing them in a driver's message would garble it."""
    values = {value for key, value, _ in _attributes(connection_string)
              if value and (_is_secret_key(key) or (_is_masked_key(key) and len(value) >= 4))}
    return sorted(values, key=len, reverse=True)


def database_file(connection_string: str) -> str | None:
    """The file a SQLite driver opens (``Database=``), else None: other drivers name a database, not a file."""
    attributes = {key.lower(): value for key, value, _ in _attributes(connection_string) if key}
    if "sqlite" not in attributes.get("driver", "").lower():
        return None
    database = attributes.get("database", "").strip()
    if not database or database == ":memory:":
        return None
    return database.removeprefix("file:").split("?", 1)[0] or None


def mask_odbc(connection_string: str) -> str:
    """The connection string with every secret attribute shown as ``***`` (braced values included)."""
    segments = []
    for key, _value, raw in _attributes(connection_string):
        segments.append(f"{raw[:raw.index('=')].rstrip()}=***" if key and _is_masked_key(key) else raw)
    return mask_connection_string(";".join(segments))


def scrub(message: str, connection_string: str) -> str:
    """A driver message without the connection string or any secret value in it."""
    text = message
    if connection_string:
        text = text.replace(connection_string, "<connection string>")
    for secret in secret_values(connection_string):
        text = text.replace(secret, "***")
    return mask_connection_string(text)


def _driver_message(error: BaseException) -> tuple[str | None, str]:
    """SQLSTATE and a one-line message from a pyodbc error (``('08001', '[08001] text (101) (SQLDriverConnect)')``)."""
    args = getattr(error, "args", ())
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        state, text = args[0], args[1]
    else:
        state, text = None, str(error)
    text = re.sub(r"^\[[0-9A-Z]{5}\]\s*", "", text.strip())
    text = re.sub(r"(\s*\(-?\d+\))*\s*\((SQL\w+)\)\s*$", "", text)  # the native code and the ODBC function
    text = " ".join(text.split()).rstrip(";").strip()
    return state, text or type(error).__name__


def _seconds(timeout: float) -> str:
    return f"{timeout:g}s"


class _Query:
    """State shared by the worker that runs the query and the caller that may give up on it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.cursor = None
        self.phase = "connect"
        self.closed = False
        self.abandoned = False
        self.value: Any = None
        self.error: BaseException | None = None

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            if self.cursor is not None and not self.closed:
                with contextlib.suppress(Exception):  # best effort; the worker closes the connection anyway
                    self.cursor.cancel()


def _set_query_timeout(connection, seconds: int) -> None:
    try:
        connection.timeout = seconds
    except pyodbc.Error:
        # psqlODBC refuses SQL_ATTR_CONNECTION_TIMEOUT but honours the statements' default query timeout.
        try:
            connection.set_attr(SQL_ATTR_QUERY_TIMEOUT, seconds)
        except pyodbc.Error:
            pass  # the hard deadline still applies


def _run(query: _Query, connection_string: str, statement: str, params: Sequence, seconds: int) -> None:
    connection = cursor = None
    try:
        connection = pyodbc.connect(connection_string, timeout=seconds, autocommit=True)
        if query.abandoned:
            return
        query.phase = "query"
        _set_query_timeout(connection, seconds)
        cursor = connection.cursor()
        with query.lock:
            if query.abandoned:
                return
            query.cursor = cursor
        if params:
            cursor.execute(statement, *params)
        else:
            cursor.execute(statement)
        row = cursor.fetchone()
        query.value = None if row is None else row[0]
    except BaseException as error:  # noqa: BLE001 - handed to the caller
        query.error = error
    finally:
        with query.lock:
            query.closed = True
            for handle in (cursor, connection):
                if handle is not None:
                    with contextlib.suppress(Exception):  # best effort: it may be broken already
                        handle.close()
        query.done.set()


def fetch_scalar(connection_string: str, statement: str, params: Sequence = (), timeout: float = 10.0) -> Any:
    """First column of the first row (``None`` for no row or NULL), in at most about ``timeout`` + 1 s.

    Opens an autocommit connection with ``timeout`` as login and query timeout, runs the
    statement with ``params`` bound, and always closes the connection. Any failure is an
    ``ObserverError`` whose message contains neither the connection string nor a secret.
    """
    seconds = max(1, math.ceil(timeout))
    query = _Query()
    worker = threading.Thread(target=_run, args=(query, connection_string, statement, tuple(params), seconds),
                              name="rsgo-odbc-query", daemon=True)
    worker.start()
    if not query.done.wait(timeout + GRACE_SECONDS):
        query.abandon()
        raise ObserverError(f"timed out after {_seconds(timeout)}: the database did not answer "
                            "(the statement was cancelled)")
    if query.error is None:
        return query.value
    error = query.error
    if not isinstance(error, Exception):  # KeyboardInterrupt and the like in the worker
        raise error
    state, text = _driver_message(error)
    text = scrub(text, connection_string)
    if state in TIMEOUT_SQLSTATES:
        raise ObserverError(f"timed out after {_seconds(timeout)}: {text}")
    if query.phase == "connect":
        raise ObserverError(f"cannot connect: {text}")
    raise ObserverError(f"query failed: {text}" + (f" (SQLSTATE {state})" if state else ""))


def to_text(value: Any) -> str | None:
    """The raw value as text: ``None`` stays ``None``, bytes are UTF-8, booleans ``true``/``false``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise ObserverError("the value is binary data, not UTF-8 text") from None
    return str(value)


def _protected_database(connection_string: str, boundaries: Boundaries) -> str | None:
    database = database_file(connection_string)
    protected = boundaries.protected(database) if database else None
    if protected is None:
        return None
    return f"Database={database} is rsgo's own ({protected}): observers may not read rsgo's data dir, config or secrets"


class OdbcObserver(Observer):
    """Base of the SQL observers: the connection and the timeout; subclasses say what to run."""

    fields: ClassVar[dict[str, Field]] = {**CONNECTION_FIELDS, "timeout": TIMEOUT_FIELD}

    def __init__(self, settings: dict):
        super().__init__(settings)
        self.connection_string = resolve_connection_string(settings)
        self.connection_name = settings.get("connectionName") if not settings.get("connectionString") else None
        self.timeout = float(settings.get("timeout") or TIMEOUT_FIELD.default)

    @classmethod
    def validate(cls, settings: dict) -> list[str]:
        return validate_connection(settings)

    @classmethod
    def boundary_problems(cls, settings: dict, boundaries: Boundaries) -> list[tuple[str, str]]:
        name = settings.get("connectionName")
        if name and not settings.get("connectionString") and is_own_variable(name):
            return [("connectionName", f"{name} is refused: it is rsgo's own setting and may hold its secrets")]
        try:
            connection_string = resolve_connection_string(settings)
        except ObserverError:
            return []  # construction reports it
        refusal = _protected_database(connection_string, boundaries)
        return [("connectionName" if name else "connectionString", refusal)] if refusal else []

    def fetch(self, statement: str, params: Sequence = ()) -> str | None:
        refusal = _protected_database(self.connection_string, self.boundaries)
        if refusal:
            raise ObserverError(refusal)
        return to_text(fetch_scalar(self.connection_string, statement, params, self.timeout))

    def connection_target(self) -> str:
        masked = mask_odbc(self.connection_string)
        return f"{masked} (from ${self.connection_name})" if self.connection_name else masked
