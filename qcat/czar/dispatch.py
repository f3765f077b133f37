"""Send chunk tasks to workers and gather their Arrow streams into one.

A query's tasks run concurrently, a bounded number at a time, and their
record batches are handed to the merge stage (or straight to the result)
through a bounded queue, so the czar holds a few batches per running task,
never a whole result. The
first failure of any task stops the query on every worker and is raised to
the caller: a result is complete or it is an error, never silently partial.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from qcat.czar.errors import QueryError
from qcat.errors import QcatError
from qcat.worker.client import WorkerClient
from qcat.worker.errors import TaskDataError, WorkerError
from qcat.worker.task import ChunkTask


class QueryFailed(QcatError):
    """A query stopped because one of its chunk tasks failed."""


class QueryDataFailed(QueryFailed, QueryError):
    """A chunk task failed on a value of the data (a CAST that cannot convert): the
    query, not the service, is at fault (a TAP client gets 400)."""


@dataclass(frozen=True)
class Assignment:
    """A task and the worker (index into the dispatcher's workers) that runs it."""

    worker: int
    task: ChunkTask


_DONE = object()


class Dispatcher:
    """Runs chunk tasks on a fixed set of workers.

    Chunk ``(order, pixel)`` always goes to the same worker (a stable hash),
    so a worker's file cache keeps serving the chunks it read before.
    """

    def __init__(self, locations: Sequence[str], *, tasks_per_worker: int = 2) -> None:
        if not locations:
            raise QcatError("no workers to run queries on")
        self.locations = list(locations)
        self._clients = [WorkerClient(loc) for loc in self.locations]
        self.tasks_per_worker = tasks_per_worker
        self._failures: dict[str, QueryFailed] = {}

    def worker_for(self, order: int, pixel: int) -> int:
        """The worker that runs tasks of chunk ``(order, pixel)``."""
        return zlib.crc32(f"{order}/{pixel}".encode()) % len(self._clients)

    def worker_for_query(self, query_id: str) -> int:
        """The worker that runs a task any worker could run (query ids spread over workers)."""
        return zlib.crc32(query_id.encode()) % len(self._clients)

    def cancel(self, query_id: str) -> None:
        """Stop every task of ``query_id`` on every worker (best effort)."""
        for client in self._clients:
            with contextlib.suppress(WorkerError):  # a dead worker runs nothing any more
                client.cancel(query_id)

    def failure(self, query_id: str) -> QueryFailed | None:
        """Why ``query_id`` stopped, if one of its tasks failed (forgotten once asked)."""
        return self._failures.pop(query_id, None)

    def close(self) -> None:
        """Close the connections to the workers."""
        for client in self._clients:
            client.close()

    def run(
        self, query_id: str, assignments: Sequence[Assignment], schema: pa.Schema | None = None
    ) -> pa.RecordBatchReader:
        """Run ``assignments`` and stream all their batches as one reader.

        The reader's schema is ``schema``, or else the schema of the first
        task stream to start (a worker sends it ahead of the rows);
        ``schema`` is required when there are no assignments.
        Batches arrive in no particular order. Reading the returned reader to
        its end (or closing it) finishes the query; an error in any task
        cancels the others and is raised from the reader (or from here, when
        it happens before the first stream starts).
        """
        gathering = Gathering(self, query_id, list(assignments))
        try:
            if schema is None:
                schema = gathering.first_schema()
        except BaseException:
            gathering.close()
            raise
        return pa.RecordBatchReader.from_batches(schema, gathering.batches(schema))

    def start(self, query_id: str, assignments: Sequence[Assignment]) -> Gathering | OneStream:
        """Start ``assignments`` now; the caller reads (and closes) what this returns.

        One assignment is read in the caller's own thread (:class:`OneStream`):
        a key lookup or a small cone needs no dispatch thread and no queue.
        """
        if len(assignments) == 1:
            return OneStream(self, query_id, assignments[0])
        return Gathering(self, query_id, list(assignments))

    def _record(self, query_id: str, error: BaseException) -> QueryFailed:
        failure = _failure(error)
        self._failures[query_id] = failure
        return failure


class _Schema:
    """A task stream started with this schema (queued ahead of its batches)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema


class _TaskStreams:
    """What :class:`Gathering` and :class:`OneStream` share: closing once, and
    cancelling the query on the workers unless every task stream ended."""

    _dispatcher: Dispatcher
    _query_id: str
    _finished: bool
    _closed: bool

    def close(self) -> None:
        """Stop the tasks; cancel the query on the workers unless all tasks finished."""
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if not self._finished:
            self._dispatcher.cancel(self._query_id)
        self._wait()

    def _stop_reading(self) -> None:
        """Let go of the task streams (before the cancel)."""

    def _wait(self) -> None:
        """Wait for what reads them to end (after the cancel, which unblocks it)."""


class Gathering(_TaskStreams):
    """The running tasks of one chunk query and the queue their batches arrive on.

    Tasks start at construction, a bounded number at a time. Read the
    batches with :meth:`batches`; :meth:`close` (also called when the
    batches end, fail or are abandoned) stops the tasks still running and,
    unless every task finished, cancels the query on every worker.
    """

    def __init__(
        self, dispatcher: Dispatcher, query_id: str, assignments: list[Assignment]
    ) -> None:
        self._dispatcher = dispatcher
        self._query_id = query_id
        limit = max(1, dispatcher.tasks_per_worker * len(dispatcher.locations))
        self._out: queue.Queue[object] = queue.Queue(maxsize=2 * limit + 1)
        self._pending: queue.Queue[Assignment] = queue.Queue()
        for a in assignments:
            self._pending.put(a)
        self._stop = threading.Event()
        self._finished = False
        self._closed = False
        self._threads = [
            threading.Thread(target=self._runner, name=f"qcat-dispatch-{i}", daemon=True)
            for i in range(min(limit, len(assignments)))
        ]
        self._running = len(self._threads)
        for t in self._threads:
            t.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _runner(self) -> None:
        clients = self._dispatcher._clients
        while not self._stop.is_set():
            try:
                a = self._pending.get_nowait()
            except queue.Empty:
                break
            try:
                reader = clients[a.worker].run(a.task)
                if not self._put(_Schema(reader.schema)):
                    return
                for batch in reader:
                    if not self._put(batch):
                        return
            except BaseException as e:  # handed to the consumer thread
                self._put(e)
                return
        self._put(_DONE)

    def _next(self) -> object:
        """The next queued item; a task failure is recorded and raised as :class:`QueryFailed`."""
        item = self._out.get()
        if isinstance(item, BaseException):
            raise self._dispatcher._record(self._query_id, item) from item
        return item

    def first_schema(self) -> pa.Schema:
        """The schema of the first task stream to start.

        Every task queues its schema ahead of its batches, so no batch is
        passed over while waiting for it.
        """
        while self._running:
            item = self._next()
            if item is _DONE:
                self._running -= 1
            elif isinstance(item, _Schema):
                return item.schema
        raise QcatError("no task stream started, so its schema is unknown")

    def batches(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Every batch of every task, given ``schema``; ends when all tasks ended."""
        try:
            while self._running:
                item = self._next()
                if item is _DONE:
                    self._running -= 1
                elif isinstance(item, pa.RecordBatch):
                    yield _conform(item, schema)
            self._finished = True
        finally:
            self.close()

    def _stop_reading(self) -> None:
        self._stop.set()

    def _wait(self) -> None:
        for t in self._threads:
            t.join(timeout=5)


class OneStream(_TaskStreams):
    """One task's stream, read in the caller's thread (see :meth:`Dispatcher.start`).

    The same contract as :class:`Gathering`: :meth:`first_schema`,
    :meth:`batches`, :meth:`close`; a failure is recorded and raised as
    :class:`QueryFailed`, and closing before the end cancels the query.
    """

    def __init__(self, dispatcher: Dispatcher, query_id: str, assignment: Assignment) -> None:
        self._dispatcher = dispatcher
        self._query_id = query_id
        self._finished = False
        self._closed = False
        self._reader: pa.RecordBatchReader | None = None
        try:
            self._reader = dispatcher._clients[assignment.worker].run(assignment.task)
        except BaseException as e:
            self._closed = True
            dispatcher.cancel(query_id)
            raise dispatcher._record(query_id, e) from e

    def first_schema(self) -> pa.Schema:
        """The task stream's schema (sent before any row)."""
        assert self._reader is not None, "closed"
        return self._reader.schema

    def batches(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """The task's batches, given ``schema``."""
        reader = self._reader
        assert reader is not None, "closed"
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except BaseException as e:
                    raise self._dispatcher._record(self._query_id, e) from e
                yield _conform(batch, schema)
            self._finished = True
        finally:
            self.close()

    def _stop_reading(self) -> None:
        # Dropping the reader ends the worker client's generator, which frees the
        # Flight call (RecordBatchReader.close() leaves a Python source running).
        self._reader = None


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Give a task's batch the query's schema (names, nullability; types cast if they differ)."""
    if batch.schema.equals(schema):
        return batch
    if batch.schema.types == schema.types:
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    return pa.RecordBatch.from_arrays(
        [c.cast(f.type) for c, f in zip(batch.columns, schema, strict=True)], schema=schema
    )


def _failure(error: BaseException) -> QueryFailed:
    if isinstance(error, TaskDataError):
        # The user's query met a value it cannot handle: say what, not where it ran.
        return QueryDataFailed(f"query stopped, no result returned: {error.reason}")
    if isinstance(error, QcatError):
        return QueryFailed(f"query stopped, no result returned: {error}")
    return QueryFailed(f"query stopped, no result returned: {type(error).__name__}: {error}")
