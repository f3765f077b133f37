"""The czar: run an ADQL query end to end over the workers.

``parse -> resolve -> plan -> dispatch -> merge``. Each query gets its own
DuckDB connection at the czar (its gathered tables and registered streams
are private to it) and a query id the workers know it by, so it can be
cancelled everywhere at once. The result is a stream: the merge query reads
the chunk results as the workers produce them.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from partition.hats_writer import HEALPIX_COLUMN
from qcat.czar.adql import parse_adql
from qcat.czar.catalog import CatalogSnapshot, TableSnapshot
from qcat.czar.dispatch import Assignment, Dispatcher
from qcat.czar.errors import QueryError
from qcat.czar.plan import ChunkQuery, QueryPlan, plan
from qcat.czar.resolve import OutputColumn, ResolvedQuery, resolve
from qcat.geometry import SETUP_SQL
from qcat.metadata.store import MetadataStore
from qcat.worker.task import ChunkTask

#: Module the workers import for the SQL macros the czar's queries use.
WORKER_SETUP_MODULE = "qcat.geometry.sql"


@dataclass
class QueryResult:
    """A running query's output columns and its result stream."""

    query_id: str
    columns: tuple[OutputColumn, ...]
    reader: pa.RecordBatchReader
    plan: QueryPlan
    _cursor: duckdb.DuckDBPyConnection

    def read_all(self) -> pa.Table:
        """The whole result as one table (small results only)."""
        try:
            return self.reader.read_all()
        finally:
            self.close()

    def close(self) -> None:
        """Release the query's resources at the czar."""
        self._cursor.close()


class QueryEngine:
    """Answers ADQL over the tables of ``data_dir`` with the workers at ``locations``."""

    def __init__(
        self,
        data_dir: Path,
        locations: list[str],
        *,
        timeout_s: float = 600.0,
        memory_limit: str = "2GB",
        batch_rows: int = 65_536,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.timeout_s = timeout_s
        self.batch_rows = batch_rows
        self.dispatcher = Dispatcher(locations)
        self._temp = tempfile.TemporaryDirectory(prefix="qcat-czar-")
        self._db = duckdb.connect(
            config={
                "memory_limit": memory_limit,
                "temp_directory": self._temp.name,
                "autoload_known_extensions": False,
                "autoinstall_known_extensions": False,
            }
        )
        for statement in SETUP_SQL:
            self._db.execute(statement)
        self._lock = threading.Lock()
        self._store = MetadataStore.for_data_dir(self.data_dir)
        self._snapshot: tuple[tuple[tuple[str, int | None], ...], CatalogSnapshot] | None = None

    def close(self) -> None:
        """Close the worker connections and the czar's database."""
        self._store.close()
        self.dispatcher.close()
        self._db.close()
        self._temp.cleanup()

    # -- stages ---------------------------------------------------------------------

    def catalog(self) -> CatalogSnapshot:
        """The current catalog; re-read only when a table's current version changed."""
        with self._lock:
            versions = tuple((t.name, t.current_version) for t in self._store.tables())
            if self._snapshot is None or self._snapshot[0] != versions:
                self._snapshot = (versions, CatalogSnapshot.load(self._store))
            return self._snapshot[1]

    def resolve(self, adql: str) -> ResolvedQuery:
        """Parse and resolve ``adql`` against the current catalog."""
        return resolve(parse_adql(adql), self.catalog())

    def explain(self, adql: str) -> QueryPlan:
        """The plan of ``adql`` (nothing runs)."""
        return plan(self.resolve(adql), self.data_dir)

    def execute(self, adql: str, *, query_id: str | None = None) -> QueryResult:
        """Start ``adql``; the result streams as it is read."""
        resolved = self.resolve(adql)
        query_plan = plan(resolved, self.data_dir)
        query_id = query_id or uuid.uuid4().hex
        deadline = time.time() + self.timeout_s
        with self._lock:
            cursor = self._db.cursor()
        try:
            for chunk_query in query_plan.chunk_queries:
                try:
                    self._run_chunk_query(cursor, query_id, chunk_query, deadline)
                except (duckdb.Error, pa.ArrowException, OSError) as e:
                    failure = self.dispatcher.failure(query_id)
                    raise failure or QueryError(f"the query failed: {_first_line(e)}") from None
            try:
                reader = cursor.sql(query_plan.merge_sql).to_arrow_reader(self.batch_rows)
            except duckdb.Error as e:
                raise QueryError(f"cannot evaluate the query: {_first_line(e)}") from None
        except BaseException:
            self.dispatcher.cancel(query_id)
            cursor.close()
            raise
        guarded = pa.RecordBatchReader.from_batches(reader.schema, self._guarded(query_id, reader))
        return QueryResult(query_id, resolved.columns, guarded, query_plan, cursor)

    def _guarded(self, query_id: str, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        """The merge's batches; a failed chunk task surfaces as its own clear error."""
        try:
            yield from reader
        except (duckdb.Error, pa.ArrowException, OSError) as e:
            failure = self.dispatcher.failure(query_id)
            if failure is not None:
                raise failure from None
            raise QueryError(f"the query failed: {_first_line(e)}") from None

    def cancel(self, query_id: str) -> None:
        """Stop a running query on every worker."""
        self.dispatcher.cancel(query_id)

    def _run_chunk_query(
        self,
        cursor: duckdb.DuckDBPyConnection,
        query_id: str,
        chunk_query: ChunkQuery,
        deadline: float,
    ) -> None:
        schema = self._result_schema(cursor, chunk_query)
        assignments = [
            Assignment(
                self.dispatcher.worker_for(*task.key),
                ChunkTask(
                    query_id,
                    f"{chunk_query.name}-{i}",
                    chunk_query.sql,
                    task.relations,
                    deadline,
                ),
            )
            for i, task in enumerate(chunk_query.tasks)
        ]
        reader = self.dispatcher.run(query_id, assignments, schema)
        if chunk_query.materialize:
            cursor.register(f"{chunk_query.name}_stream", reader)
            cursor.execute(
                f"CREATE TEMP TABLE {chunk_query.name} AS SELECT * FROM {chunk_query.name}_stream"
            )
            cursor.unregister(f"{chunk_query.name}_stream")
        else:
            cursor.register(chunk_query.name, reader)

    def _result_schema(
        self, cursor: duckdb.DuckDBPyConnection, chunk_query: ChunkQuery
    ) -> pa.Schema:
        """The chunk query's result schema, from running it on empty inputs."""
        for name, table in chunk_query.inputs.items():
            cursor.register(name, _empty(table))
        try:
            return cursor.sql(f"SELECT * FROM ({chunk_query.sql}) LIMIT 0").to_arrow_table().schema
        except duckdb.Error as e:
            raise QueryError(f"cannot evaluate the query: {_first_line(e)}") from None
        finally:
            for name in chunk_query.inputs:
                cursor.unregister(name)


def _empty(table: TableSnapshot) -> pa.Table:
    schema = table.spec.arrow_schema()
    if table.partitioned:
        schema = schema.append(pa.field(HEALPIX_COLUMN, pa.int64()))
    return schema.empty_table()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
