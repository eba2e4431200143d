"""The database: SQLite in the data dir by default, PostgreSQL from DATABASE_URL.

Models bind to ``database``, a proxy initialised once per app. Versioned
migrations run at start (and build every test database), recorded in
``schema_migrations``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import threading

import peewee
from playhouse.db_url import connect as connect_url

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()


MIN_FREE_BYTES = 1024 * 1024  # /readyz fails below this: the next transition could not be recorded
MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: a bigger id names no row (and would not even fit a query)

# What a failing database raises: read-only files, a full disk, a lost connection, a lock held too long.
# (IntegrityError and programming errors are not storage failures and are not caught with these.)
STORAGE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


def storage_error_text(error: BaseException) -> str:
    """The database's own words ("attempt to write a readonly database", "database or disk is full").

    SQLite rolls a transaction back by itself when the disk is full; the rollback peewee then tries
    fails with "no transaction is active" and hides the cause, which is the error it happened during.
    """
    while "no transaction is active" in str(error) and error.__context__ is not None:
        error = error.__context__
    return str(error) or type(error).__name__


def timestamp(value: dt.datetime | None) -> str | None:
    """The one wire format of every instant rsgo answers with: UTC, milliseconds, `Z`."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_writable() -> None:
    """Write (and commit) one row, so a read-only file or a full disk shows here and not only in the
    middle of a transition. Raises one of ``STORAGE_ERRORS``."""
    with write_transaction():
        database.execute_sql("UPDATE schema_migrations SET applied_at = applied_at "
                             "WHERE version = (SELECT MAX(version) FROM schema_migrations)")
    if isinstance(database.obj, peewee.SqliteDatabase):
        # That update may fit in pages the write-ahead log already has: a full disk shows only here.
        disk = os.statvfs(os.path.dirname(os.path.abspath(database.obj.database)))
        free = disk.f_bavail * disk.f_frsize
        if free < MIN_FREE_BYTES:
            raise peewee.OperationalError(f"database or disk is full ({free} bytes free on the data dir's disk)")


def utcnow() -> dt.datetime:
    """Naive UTC timestamps are what both SQLite and PostgreSQL columns store here."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_database(settings) -> peewee.Database:
    if settings.database_url:
        db = connect_url(settings.database_url)
    else:
        os.makedirs(settings.data_dir, exist_ok=True)
        _owner_only(settings.database_path)
        # WAL lets the dashboard read while a transition writes; the busy timeout
        # makes concurrent writers (parallel container results) wait, not fail.
        db = peewee.SqliteDatabase(
            settings.database_path,
            pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10000, "synchronous": "normal"},
            check_same_thread=False,
        )
    database.initialize(db)
    return db


def _owner_only(path: str) -> None:
    """The database holds password and token hashes and webhook secrets: mode 0600 whatever the umask.
    Created empty here (SQLite takes an empty file as a new database), so SQLite never creates it with
    its default 0644; SQLite gives the -wal and -shm files the main file's mode. Files an older
    version left readable are tightened at every start."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass  # it exists (tightened below), or cannot be created: SQLite then reports that itself
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass
        except OSError as error:  # a read-only mount, someone else's file: start anyway, and say so
            log.warning("cannot make %s readable by its owner only: %s", name, error)


# Bumped whenever a storage failure is seen. A connection SQLite opened while the file was read-only
# stays read-only, and keeps the shared memory read-only for every other connection too, after the
# disk is writable again: threads that keep their connection (observer checks) drop it when this moves.
_failures_seen = 0
_thread = threading.local()


def note_storage_failure() -> None:
    global _failures_seen
    _failures_seen += 1


_keeper: sqlite3.Connection | None = None  # see keep_log_files_open
_keeper_for: tuple[str, int] | None = None
_keeper_lock = threading.Lock()  # the start-up thread and the scheduler's upkeep job both call it


def keep_log_files_open() -> None:
    """Hold one SQLite connection for the process's life. The last connection to close removes the
    -wal and -shm files, and on a full disk no new connection could create them again, not even to
    read. Reopened after a storage failure was seen, so one opened while the file was read-only does
    not keep the database read-only once it is writable again. (Called at start and every few seconds.)"""
    global _keeper, _keeper_for
    if not isinstance(database.obj, peewee.SqliteDatabase):
        return
    with _keeper_lock:
        wanted = (database.obj.database, _failures_seen)
        if _keeper is not None and _keeper_for == wanted:
            return
        if _keeper is not None:
            _keeper.close()
            _keeper = None
        try:
            _keeper = sqlite3.connect(database.obj.database, check_same_thread=False)
            _keeper.execute("SELECT 1 FROM schema_migrations LIMIT 1").fetchall()
            _keeper_for = wanted
        except sqlite3.Error as error:
            log.warning("cannot hold the database open (%s); trying again in a few seconds", error)
            if _keeper is not None:
                _keeper.close()
            _keeper = None


def release_if_stale() -> None:
    """For threads that keep their connection: drop it if a storage failure was seen since it opened."""
    if getattr(_thread, "failures_seen", 0) != _failures_seen:
        release_thread_connection()
        _thread.failures_seen = _failures_seen


def release_thread_connection() -> None:
    """Close this thread's database connection, if it has one open.

    Threads are pooled (request threads, scheduler jobs, background workers): a connection kept per
    thread would pin a SQLite file handle (or a PostgreSQL session) for as long as the pool lives, and
    see a stale snapshot. Each unit of work opens one on first use and gives it back here at its end.
    """
    _thread.failures_seen = _failures_seen
    if not database.is_closed():
        database.close()


def read_snapshot():
    """Reads that must agree with each other (a deployment and its running transition): one
    transaction, so SQLite (WAL) and PostgreSQL show them as of one moment."""
    return database.atomic()


def write_transaction():
    """A transaction that will write. On SQLite it takes the write lock at once (IMMEDIATE): a
    transaction that read first and wanted to write later would fail with "database is locked"
    whenever another thread committed in between, busy timeout or not."""
    if isinstance(database.obj, peewee.SqliteDatabase):
        return database.atomic(lock_type="IMMEDIATE")
    return database.atomic()


class SchemaMigration(peewee.Model):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField()
    applied_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        database = database
        table_name = "schema_migrations"


def migrate() -> list[int]:
    """Apply every migration newer than the database; returns the versions applied."""
    from rsgo.migrations import MIGRATIONS

    database.create_tables([SchemaMigration], safe=True)
    done = {row.version for row in SchemaMigration.select(SchemaMigration.version)}
    applied = []
    for version, name, step in MIGRATIONS:
        if version in done:
            continue
        with write_transaction():
            step(database)
            SchemaMigration.create(version=version, name=name)
        log.info("database migration %s (%s) applied", version, name)
        applied.append(version)
    return applied
