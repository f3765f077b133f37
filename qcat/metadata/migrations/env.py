"""Alembic environment of the metadata store.

qcat runs its migrations itself (:mod:`qcat.metadata.migrate`) on the
connection it passes in ``config.attributes["connection"]``. Without one,
the database is the ``sqlalchemy.url`` option: offline, Alembic prints the
SQL for that database; online, it connects as the store does.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from qcat.metadata.database import create_metadata_engine
from qcat.metadata.tables import metadata


def _run(**options: Any) -> None:
    # SQLite alters a table by copying it; batch mode makes Alembic do that.
    context.configure(target_metadata=metadata, render_as_batch=True, **options)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or set the sqlalchemy.url option")
    return url


if context.is_offline_mode():
    _run(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
elif (connection := context.config.attributes.get("connection")) is not None:
    _run(connection=connection)
else:
    engine = create_metadata_engine(_url())
    try:
        with engine.connect() as own_connection:
            _run(connection=own_connection)
    finally:
        engine.dispose()
