"""Engines and transactions for the metadata database (SQLite or PostgreSQL).

SQLite needs three things the driver does not do by default:

- WAL journaling, so readers never block the writer and the writer never
  blocks readers (queries keep running while an ingest commits);
- a busy timeout, so a second writer waits for the lock instead of failing;
- foreign keys, which SQLite leaves off per connection.

Python's ``sqlite3`` also starts transactions lazily (not before SELECT or
DDL), which breaks repeatable reads and transactional migrations. Here
SQLAlchemy emits ``BEGIN`` itself, and write transactions use
``BEGIN IMMEDIATE``: they take the write lock up front, so two writers queue
on the busy timeout instead of one failing when it upgrades a read lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from sqlalchemy import URL, Connection, Engine, RootTransaction, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from qcat.errors import ConfigError

#: Seconds a SQLite connection waits for another process's write lock.
SQLITE_BUSY_TIMEOUT_S = 60.0

#: Execution option that makes the next transaction of a connection a write.
_WRITE_OPTION = "qcat_write"


def create_metadata_engine(url: str | URL) -> Engine:
    """Create an engine for ``url``, configured for concurrent use by many processes.

    Raises :class:`ConfigError` naming the URL when it cannot be parsed or
    names a database driver that is not installed.
    """
    try:
        parsed = make_url(url)
        # NaN and infinities are not JSON, and PostgreSQL rejects them.
        serializer = partial(json.dumps, allow_nan=False)
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(
                parsed,
                json_serializer=serializer,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            )
            _configure_sqlite(engine, in_memory=parsed.database in (None, "", ":memory:"))
        else:
            engine = create_engine(parsed, json_serializer=serializer, pool_pre_ping=True)
    except (ArgumentError, ImportError) as e:
        raise ConfigError(f"metadata URL {_redacted(url)}: {e}") from e
    return engine


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def begin_write(conn: Connection) -> RootTransaction:
    """Begin a write transaction on ``conn`` (``BEGIN IMMEDIATE`` on SQLite)."""
    conn.execution_options(**{_WRITE_OPTION: True})
    return conn.begin()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one write transaction: committed on success, else rolled back."""
    with engine.connect() as conn, begin_write(conn):
        yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read transaction: one consistent snapshot."""
    with engine.connect() as conn, conn.begin():
        yield conn


def _redacted(url: str | URL) -> str:
    """``url`` with any password hidden, for error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)
