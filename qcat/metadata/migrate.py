"""Schema migrations, run programmatically with Alembic (no ``alembic.ini``).

Opening a store upgrades its database to the newest migration. The upgrade
runs in one transaction holding a database-wide lock (SQLite's write lock,
a PostgreSQL advisory lock), so when several processes open a new store at
once, one migrates and the others wait and then find nothing to do.

Alembic is imported only when a database needs migrating (or for the
operator commands): a store already at :data:`HEAD_REVISION`, every open
after the first, is recognised with one plain read, and importing Alembic
would add about half a second to every qcat process.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from qcat.errors import ConfigError
from qcat.metadata.database import begin_write, read_transaction, write_transaction

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: The newest migration's revision (a test checks it against the migration scripts).
HEAD_REVISION = "0003"

#: Key of the PostgreSQL advisory lock that serialises migrations ("qcat").
POSTGRES_MIGRATION_LOCK = 0x71636174


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for qcat's migrations, optionally bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    # Config values are interpolated: a literal % must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration's revision, read from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _stored_revision(connection: Connection) -> str | None:
    """The database's revision read without Alembic (``None``: not migrated, or not
    one plain revision; Alembic then looks closer)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def upgrade_to_head(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to the newest migration.

    A no-op (one read) when it is already there. Raises :class:`ConfigError`
    when the database was migrated by a newer qcat than this one.
    """
    with read_transaction(engine) as conn:
        if _stored_revision(conn) == HEAD_REVISION:
            return
        revision = current_revision(conn)
    if revision == head_revision():
        return
    _check_known(revision, engine)
    if engine.dialect.name == "sqlite":
        _upgrade_sqlite(engine)
    else:
        with write_transaction(engine) as conn:
            _lock_for_migration(conn)
            _upgrade(conn)


def _upgrade_sqlite(engine: Engine) -> None:
    # SQLite changes a table by copying it (Alembic batch mode); with foreign
    # keys on, dropping the old copy would cascade. The SQLite manual's
    # procedure: keys off outside the transaction, migrate, check, keys on.
    with engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.execute("PRAGMA foreign_keys = OFF")
        try:
            with begin_write(conn):
                _upgrade(conn)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ConfigError(
                        f"migration left rows without their parent rows: {broken[:5]}"
                    )
        finally:
            dbapi.execute("PRAGMA foreign_keys = ON")


def _upgrade(conn: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(conn), "head")


def _lock_for_migration(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK})


def _check_known(revision: str | None, engine: Engine) -> None:
    if revision is None:
        return
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    known = {s.revision for s in script.walk_revisions()}
    if revision not in known:
        url = engine.url.render_as_string(hide_password=True)
        raise ConfigError(
            f"metadata store {url} is at schema revision {revision!r}, which this qcat "
            f"does not know (its newest is {head_revision()!r}); upgrade qcat to use it"
        )


def upgrade_sql(url: str) -> str:
    """The SQL that creates the newest schema on the database ``url`` names.

    Nothing is connected to: this is for operators who apply schema changes
    to a production PostgreSQL themselves.
    """
    from alembic import command

    buffer = io.StringIO()
    config = alembic_config()
    config.output_buffer = buffer
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head", sql=True)
    return buffer.getvalue()
