"""The locked-down DuckDB database of a worker, and the checks around task SQL.

A worker runs SQL that arrives over the network. DuckDB's own settings keep
it from touching files outside ``DATA/tables/`` (and the directories of
attached HATS catalogs), the network and extensions; they cannot stop a
statement that *writes* inside an allowed directory
(``COPY ... TO``, ``EXPORT DATABASE``, ``ATTACH``), so a task may only be one
SELECT statement, and the temporary views it reads are created by the worker.
See ``docs/workers.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from qcat.worker.errors import TaskError


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


#: How the worker reads Parquet (see "Reading Parquet" in docs/workers.md).
#: Partition files never change once written (a new version is a new
#: directory), so their footers are cached; and DuckDB reads only the pages a
#: scan needs instead of prefetching whole column chunks, which a lookup
#: touching one row group of a wide table would otherwise pay for in full.
READ_SETTINGS = (
    "SET GLOBAL parquet_metadata_cache=true",
    "SET GLOBAL disable_parquet_prefetching=true",
)


def open_locked_database(
    tables_dir: Path,
    *,
    memory_limit: str,
    threads: int,
    temp_dir: Path,
    temp_limit: str,
    setup_sql: Sequence[str] = (),
    attached: Sequence[Path] = (),
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB database that can only read files under ``tables_dir``
    and the ``attached`` catalog directories.

    ``setup_sql`` (trusted: macro definitions from the operator's setup module)
    runs before the lockdown; afterwards no setting can change.
    """
    con = duckdb.connect(
        config={
            # no extension is ever fetched or loaded behind our back
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "allow_community_extensions": False,
            # one limit for the whole process: every task shares it
            "memory_limit": memory_limit,
            "threads": threads,
            # spill files go to a private directory, not the current one
            "temp_directory": str(temp_dir),
            "max_temp_directory_size": temp_limit,
        }
    )
    try:
        for statement in setup_sql:
            con.execute(statement)
        for statement in READ_SETTINGS:
            con.execute(statement)
        roots = [str(d).rstrip("/") + "/" for d in (tables_dir, *attached)]
        con.execute(f"SET allowed_directories=[{', '.join(sql_string(r) for r in roots)}]")
        con.execute("SET enable_external_access=false")
        con.execute("SET lock_configuration=true")
    except BaseException:
        con.close()
        raise
    return con


def check_single_select(con: duckdb.DuckDBPyConnection, sql: str, where: str) -> duckdb.Statement:
    """The one SELECT statement ``sql`` holds; :class:`TaskError` if it holds anything else.

    Parsing only: nothing is bound or run. ``where`` names the task in errors.
    The statement is what the task runs, so its SQL is parsed once.
    """
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise TaskError(f"{where}: {e}") from None
    if len(statements) != 1:
        raise TaskError(
            f"{where}: the SQL must be exactly one SELECT statement, got {len(statements)}"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise TaskError(
            f"{where}: only SELECT statements may run on a worker, got a {kind.name} statement"
        )
    return statements[0]


def bind_relations(cursor: duckdb.DuckDBPyConnection, relations: dict[str, list[Path]]) -> None:
    """Create one temporary view per relation on the task's own cursor."""
    for name, files in relations.items():
        listed = ", ".join(sql_string(str(f)) for f in files)
        cursor.execute(
            f"CREATE TEMP VIEW {sql_identifier(name)} AS "
            f"SELECT * FROM read_parquet([{listed}], union_by_name=false)"
        )
