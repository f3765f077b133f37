"""The czar: run an ADQL query end to end over the workers.

``parse -> resolve -> plan -> dispatch -> merge``. Each query that needs a
merge gets its own DuckDB cursor at the czar (its gathered tables and
registered streams are private to it); a query whose merge only renames
columns skips it and streams the workers' batches straight out. Every query
has an id the workers know it by, so it can be cancelled everywhere at once.
The result is a stream: rows are passed on as the workers produce them. See
"Fast paths" in ``docs/query-engine.md``.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
from sqlglot import exp

from partition.hats_writer import HEALPIX_COLUMN
from qcat.czar.adql import parse_adql
from qcat.czar.catalog import INTEGER_TYPES, CatalogSnapshot, TableSnapshot
from qcat.czar.dispatch import Assignment, Dispatcher, QueryFailed
from qcat.czar.errors import QueryError
from qcat.czar.nearest import MAX_RADIUS_DEG, NearestQuery, nearest_query
from qcat.czar.plan import ChunkQuery, QueryPlan, Task, plan
from qcat.czar.resolve import OutputColumn, ResolvedQuery, qualified_name, resolve
from qcat.czar.semijoin import (
    add_key_list,
    broadcast_key_joins,
    inlinable,
    run_first_note,
    run_first_subqueries,
    write_answer,
)
from qcat.czar.uploads import UploadTable, stage_uploads
from qcat.errors import QcatError
from qcat.geometry import SETUP_SQL
from qcat.metadata.store import MetadataStore
from qcat.worker.task import ChunkTask

log = logging.getLogger("qcat.czar")

#: Module the workers import for the SQL macros the czar's queries use.
WORKER_SETUP_MODULE = "qcat.geometry.sql"


@dataclass
class QueryResult:
    """A running query's output columns and its result stream."""

    query_id: str
    columns: tuple[OutputColumn, ...]
    reader: pa.RecordBatchReader
    plan: QueryPlan
    _release: Callable[[], None]

    def read_all(self) -> pa.Table:
        """The whole result as one table (small results only)."""
        try:
            return self.reader.read_all()
        finally:
            self.close()

    def close(self) -> None:
        """Release the query's resources at the czar (tasks still running are stopped)."""
        self._release()


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
        fast_paths: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.timeout_s = timeout_s
        self.batch_rows = batch_rows
        #: False: every query is split and merged at the czar, one task per chunk
        #: (the plain path, kept to check the fast ones against it).
        self.fast_paths = fast_paths
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
        self._seen_count: int | None = None  # the store's change count at the last check
        self._merges: dict[str, _Merge] = {}  # by query id, while the czar merges
        self._subqueries: dict[str, str] = {}  # query id -> the IN subquery it runs first

    def close(self) -> None:
        """Close the worker connections and the czar's database."""
        self._store.close()
        self.dispatcher.close()
        self._db.close()
        self._temp.cleanup()

    # -- stages ---------------------------------------------------------------------

    def catalog(self) -> CatalogSnapshot:
        """The current catalog; re-read only when a table's current version changed.

        The versions are only compared when the store says something was
        committed since the last look (``MetadataStore.change_count``).
        """
        count = self._store.change_count()  # before reading: a later commit changes it
        with self._lock:
            if count is not None and count == self._seen_count and self._snapshot is not None:
                return self._snapshot[1]
        versions = tuple(sorted(self._store.current_versions().items()))
        with self._lock:
            if self._snapshot is None or self._snapshot[0] != versions:
                self._snapshot = (versions, CatalogSnapshot.load(self._store))
            self._seen_count = count
            return self._snapshot[1]

    def resolve(self, adql: str) -> ResolvedQuery:
        """Parse and resolve ``adql`` against the current catalog."""
        return resolve(parse_adql(adql), self.catalog())

    def warm_up(self) -> list[str]:
        """Plan a key lookup in a cone on every director table, as a service starts.

        The first query of a process otherwise pays for one-time work: pyarrow
        imports pandas at its first ``to_numpy`` (about 0.2 s, 1 s where no
        bytecode is cached), sqlglot builds its optimizer, healpy loads, and
        each director index's footer is read. Nothing runs on the workers.
        Returns the tables planned; a table that cannot be planned so is skipped.
        """
        warmed = []
        for table in self.catalog().tables():
            spec = table.spec
            key, ra, dec = spec.director_key, spec.ra_column, spec.dec_column
            if spec.kind != "director" or not (key and ra and dec):
                continue
            value = "0" if table.column_types.get(key.lower()) in INTEGER_TYPES else "''"
            adql = (
                f'SELECT "{key}" FROM {spec.schema_name}."{spec.name}" WHERE "{key}" = {value} '
                f'AND CONTAINS(POINT("{ra}", "{dec}"), CIRCLE(0, 0, 0.01)) = 1'
            )
            try:
                self.explain(adql)
            except QcatError as e:  # a name ADQL cannot write: the first query warms it
                log.info("warm-up skipped %s: %s", table.name, e)
                continue
            warmed.append(table.name)
        return warmed

    def explain(self, adql: str) -> QueryPlan:
        """The plan of ``adql`` (nothing runs).

        An uncorrelated WHERE subquery is run first when the query runs, and its
        answer replaces it (:mod:`qcat.czar.semijoin`); here it is not run, so
        the plan shown is the one the query gets should it stay, with a note.
        """
        resolved = self.resolve(adql)
        note = run_first_note(run_first_subqueries(resolved))
        if nearest_query(resolved) is not None:
            note = (
                "nearest rows first: when the query runs, cones around its point are counted "
                "until one holds enough rows, and the query gets that cone (plan below: the "
                "query as written)"
            )
        query_plan = plan(resolved, self.data_dir, whole_query=self.fast_paths)
        return query_plan if note is None else replace(query_plan, notes=(note, *query_plan.notes))

    def execute(
        self, adql: str, *, query_id: str | None = None, uploads: Sequence[UploadTable] = ()
    ) -> QueryResult:
        """Start ``adql``; the result streams as it is read.

        ``uploads`` are tables sent with the query (``TAP_UPLOAD.name``): they
        exist for this query only and are removed when its result is closed.
        """
        query_id = query_id or uuid.uuid4().hex
        if not uploads:
            return self._execute(adql, query_id, self.catalog())
        staged = stage_uploads(self.data_dir, query_id, list(uploads))
        try:
            result = self._execute(adql, query_id, self.catalog().with_tables(staged.tables))
        except BaseException:
            staged.remove()
            raise
        release = result._release

        def release_and_remove() -> None:
            try:
                release()
            finally:
                staged.remove()

        result._release = release_and_remove
        return result

    def _execute(self, adql: str, query_id: str, catalog: CatalogSnapshot) -> QueryResult:
        # One deadline for the whole query: what runs first counts against it too.
        deadline = time.time() + self.timeout_s
        resolved = resolve(parse_adql(adql), catalog)
        notes = self._answer_key_joins(resolved, query_id, deadline)
        notes += self._answer_subqueries(resolved, query_id, deadline)
        nearest = nearest_query(resolved)
        if nearest is not None:
            resolved, note = self._nearest_first(nearest, query_id, deadline)
            notes.append(note)
        query_plan = plan(resolved, self.data_dir, whole_query=self.fast_paths)
        if notes:
            query_plan = replace(query_plan, notes=(*notes, *query_plan.notes))
        return self._execute_plan(resolved, query_plan, query_id, deadline)

    def _answer_subqueries(
        self, resolved: ResolvedQuery, query_id: str, deadline: float
    ) -> list[str]:
        """Run the query's uncorrelated WHERE subqueries and write their answers into it
        (:mod:`qcat.czar.semijoin`); a plan note for each."""
        notes = []
        for n, sub in enumerate(run_first_subqueries(resolved), start=1):
            sub_id = f"{query_id}-sub{n}"
            with self._running_first(sub.query, sub_id, query_id, deadline) as values:
                notes.append(write_answer(sub, n, values))
        return notes

    def _answer_key_joins(
        self, resolved: ResolvedQuery, query_id: str, deadline: float
    ) -> list[str]:
        """Add ``key IN (...)`` for the query's key joins with small unpartitioned tables
        (:func:`qcat.czar.semijoin.broadcast_key_joins`); a plan note for each."""
        notes = []
        for n, join in enumerate(broadcast_key_joins(resolved), start=1):
            sub_id = f"{query_id}-keys{n}"
            with self._running_first(join.query, sub_id, query_id, deadline) as values:
                keys = inlinable(values)
            table = join.query.tree.find(exp.Table)
            source = qualified_name(table) if table is not None else "the joined table"
            if keys is None:  # not all integers or all strings, or very many
                notes.append(
                    f"key join {n}: the values of {source} are not listed: joined as written"
                )
                continue
            add_key_list(resolved.tree, join.key, keys)
            notes.append(f"key join {n}: {len(keys)} key(s) of {source} written in")
        return notes

    def _nearest_first(
        self, nearest: NearestQuery, query_id: str, deadline: float
    ) -> tuple[ResolvedQuery, str]:
        """The query limited to the smallest tried cone holding the rows it asks for
        (:mod:`qcat.czar.nearest`), or as written when none within the largest does;
        the plan note saying which."""
        radius, counted = nearest.first_radius(), 0
        while radius <= MAX_RADIUS_DEG:
            counted += 1
            counting = nearest.counting(radius)
            sub_id = f"{query_id}-near{counted}"
            with self._running_first(counting, sub_id, query_id, deadline) as values:
                first = next(iter(values), 0)
                found = first if isinstance(first, int) else 0
            if found >= nearest.rows:
                note = (
                    f"nearest rows first: {found} row(s) within {radius * 3600:.4g} arcsec "
                    f"({counted} cone(s) counted): the query reads that cone only"
                )
                return nearest.within(radius), note
            radius = nearest.next_radius(radius, found)
        note = (
            f"nearest rows first: fewer than {nearest.rows} row(s) within "
            f"{MAX_RADIUS_DEG:g} degrees: the query runs as written"
        )
        return nearest.resolved, note

    @contextmanager
    def _running_first(
        self, query: ResolvedQuery, sub_id: str, query_id: str, deadline: float
    ) -> Iterator[Iterator[object]]:
        """Run ``query`` (part of query ``query_id``, under its own id ``sub_id``, which a
        cancel of the query reaches, by the query's ``deadline``) and give the values of
        its first column."""
        with self._lock:
            self._subqueries[query_id] = sub_id
        try:
            sub_plan = plan(query, self.data_dir, whole_query=self.fast_paths)
            result = self._execute_plan(query, sub_plan, sub_id, deadline)
            try:
                yield _first_column(result.reader)
            finally:
                result.close()
        finally:
            with self._lock:
                self._subqueries.pop(query_id, None)

    def _execute_plan(
        self, resolved: ResolvedQuery, query_plan: QueryPlan, query_id: str, deadline: float
    ) -> QueryResult:
        names = [c.name for c in resolved.columns]
        if self.fast_paths and query_plan.passthrough and query_plan.chunk_queries[0].tasks:
            return self._stream_through(query_id, resolved, query_plan, names, deadline)
        with self._lock:
            cursor = self._db.cursor()
            merge = self._merges[query_id] = _Merge(cursor)
        try:
            for chunk_query in query_plan.chunk_queries:
                try:
                    self._run_chunk_query(cursor, query_id, chunk_query, deadline)
                except (duckdb.Error, pa.ArrowException, OSError) as e:
                    if merge.cancelled:
                        raise _cancelled(query_id) from None
                    failure = self.dispatcher.failure(query_id)
                    raise failure or QueryError(f"the query failed: {_first_line(e)}") from None
            try:
                reader = cursor.sql(query_plan.merge_sql).to_arrow_reader(self.batch_rows)
            except duckdb.Error as e:
                raise QueryError(f"cannot evaluate the query: {_first_line(e)}") from None
        except BaseException:
            self.dispatcher.cancel(query_id)
            self._end_merge(query_id, merge)
            raise
        guarded = pa.RecordBatchReader.from_batches(
            reader.schema, self._guarded(query_id, merge, reader)
        )
        return QueryResult(
            query_id,
            resolved.columns,
            guarded,
            query_plan,
            lambda: self._end_merge(query_id, merge),
        )

    def _end_merge(self, query_id: str, merge: _Merge) -> None:
        with self._lock:
            if self._merges.get(query_id) is merge:
                del self._merges[query_id]
        merge.cursor.close()

    def _stream_through(
        self,
        query_id: str,
        resolved: ResolvedQuery,
        query_plan: QueryPlan,
        names: list[str],
        deadline: float,
    ) -> QueryResult:
        """A plan whose merge only renames columns: the workers' batches go straight out.

        The schema comes from the first task stream (Flight sends it before
        any row), renamed to the output names; the czar's DuckDB is not used.
        """
        (chunk_query,) = query_plan.chunk_queries
        assignments = self._assignments(query_id, chunk_query, deadline)
        gathering = self.dispatcher.start(query_id, assignments)
        try:
            schema = _renamed(gathering.first_schema(), names)
        except BaseException:
            gathering.close()
            raise
        reader = pa.RecordBatchReader.from_batches(schema, gathering.batches(schema))
        return QueryResult(query_id, resolved.columns, reader, query_plan, gathering.close)

    def _guarded(
        self, query_id: str, merge: _Merge, reader: pa.RecordBatchReader
    ) -> Iterator[pa.RecordBatch]:
        """The merge's batches; a failed chunk task or a cancel surfaces as its own clear error."""
        try:
            for batch in reader:
                if merge.cancelled:
                    break
                yield batch
        except (duckdb.Error, pa.ArrowException, OSError) as e:
            if merge.cancelled:
                raise _cancelled(query_id) from None
            failure = self.dispatcher.failure(query_id)
            if failure is not None:
                raise failure from None
            raise QueryError(f"the query failed: {_first_line(e)}") from None
        if merge.cancelled:
            raise _cancelled(query_id)

    def cancel(self, query_id: str) -> None:
        """Stop a running query: its tasks on every worker and its merge at the czar."""
        with self._lock:
            merge = self._merges.get(query_id)
            if merge is not None:
                merge.cancelled = True
            subquery = self._subqueries.get(query_id)
        if subquery is not None:  # an IN subquery it runs first (then the query stops too)
            self.cancel(subquery)
        if merge is not None:
            merge.cursor.interrupt()
        self.dispatcher.cancel(query_id)

    def _run_chunk_query(
        self,
        cursor: duckdb.DuckDBPyConnection,
        query_id: str,
        chunk_query: ChunkQuery,
        deadline: float,
    ) -> None:
        assignments = self._assignments(query_id, chunk_query, deadline)
        # With tasks, the schema comes from the first worker stream; without, from DuckDB.
        schema = None if assignments else self._result_schema(cursor, chunk_query)
        reader = self.dispatcher.run(query_id, assignments, schema)
        if chunk_query.materialize:
            cursor.register(f"{chunk_query.name}_stream", reader)
            cursor.execute(
                f"CREATE TEMP TABLE {chunk_query.name} AS SELECT * FROM {chunk_query.name}_stream"
            )
            cursor.unregister(f"{chunk_query.name}_stream")
        else:
            cursor.register(chunk_query.name, reader)

    def _assignments(
        self, query_id: str, chunk_query: ChunkQuery, deadline: float
    ) -> list[Assignment]:
        """The tasks of ``chunk_query``: one per worker when its SQL allows, else one per chunk.

        A worker's chunks bound together are one Flight call and one DuckDB
        query over all its files, which DuckDB spreads over its threads. A
        query over unpartitioned tables only goes to the worker its id picks.
        """
        groups: dict[tuple[int, int], list[Task]] = {}
        together = chunk_query.batchable and self.fast_paths
        for i, task in enumerate(chunk_query.tasks):
            if chunk_query.anywhere:  # unpartitioned tables only: every worker reads them
                worker = self.dispatcher.worker_for_query(query_id)
            else:
                worker = self.dispatcher.worker_for(*task.key)
            groups.setdefault((worker, -1 if together else i), []).append(task)
        return [
            Assignment(
                worker,
                ChunkTask(
                    query_id,
                    f"{chunk_query.name}-{n}",
                    # Tasks with their own SQL are never bound together (ChunkQuery).
                    tasks[0].sql or chunk_query.sql,
                    _bound_together(tasks),
                    deadline,
                ),
            )
            for n, ((worker, _), tasks) in enumerate(groups.items())
        ]

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


@dataclass
class _Merge:
    """The czar's cursor running one query's merge, and whether the query was cancelled."""

    cursor: duckdb.DuckDBPyConnection
    cancelled: bool = False


def _cancelled(query_id: str) -> QueryFailed:
    return QueryFailed(f"query {query_id} was cancelled; no result returned")


def _bound_together(tasks: list[Task]) -> dict[str, list[str]]:
    """The relations of ``tasks`` with their files joined (each file once, in order)."""
    files: dict[str, dict[str, None]] = {}
    for task in tasks:
        for name, paths in task.relations.items():
            files.setdefault(name, {}).update(dict.fromkeys(paths))
    return {name: list(paths) for name, paths in files.items()}


def _renamed(schema: pa.Schema, names: list[str]) -> pa.Schema:
    """``schema`` with its fields renamed, in order, to ``names``."""
    if len(schema) != len(names):
        raise QueryError(f"a chunk result has {len(schema)} columns, the query {len(names)}")
    if schema.names == names:  # the usual case: the chunk SQL names its outputs already
        return schema
    return pa.schema([f.with_name(n) for f, n in zip(schema, names, strict=True)])


def _empty(table: TableSnapshot) -> pa.Table:
    schema = table.spec.arrow_schema()
    if table.partitioned:
        schema = schema.append(pa.field(HEALPIX_COLUMN, pa.int64()))
    # Not schema.empty_table(): building a table from arrays imports pandas (1.5 s).
    return pa.Table.from_batches([], schema=schema)


def _first_column(reader: pa.RecordBatchReader) -> Iterator[object]:
    """The values of the first column of ``reader``'s batches, as they arrive."""
    for batch in reader:
        yield from batch.column(0).to_pylist()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
