"""Send chunk tasks to workers and gather their Arrow streams into one.

A query's tasks run concurrently, a bounded number at a time, and their
record batches are handed to the merge stage through a bounded queue, so
the czar holds a few batches per running task, never a whole result. The
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

from qcat.errors import QcatError
from qcat.worker.client import WorkerClient
from qcat.worker.errors import WorkerError
from qcat.worker.task import ChunkTask


class QueryFailed(QcatError):
    """A query stopped because one of its chunk tasks failed."""


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
        self, query_id: str, assignments: Sequence[Assignment], schema: pa.Schema
    ) -> pa.RecordBatchReader:
        """Run ``assignments`` and stream all their batches as one reader of ``schema``.

        Batches arrive in no particular order. Reading the returned reader to
        its end (or closing it) finishes the query; an error in any task
        cancels the others and is raised from the reader.
        """
        return pa.RecordBatchReader.from_batches(
            schema, self._gather(query_id, list(assignments), schema)
        )

    def _gather(
        self, query_id: str, assignments: list[Assignment], schema: pa.Schema
    ) -> Iterator[pa.RecordBatch]:
        if not assignments:
            return
        limit = max(1, self.tasks_per_worker * len(self._clients))
        out: queue.Queue[object] = queue.Queue(maxsize=2 * limit)
        pending: queue.Queue[Assignment] = queue.Queue()
        for a in assignments:
            pending.put(a)
        stop = threading.Event()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def runner() -> None:
            while not stop.is_set():
                try:
                    a = pending.get_nowait()
                except queue.Empty:
                    break
                try:
                    reader = self._clients[a.worker].run(a.task)
                    for batch in reader:
                        if not put(_conform(batch, schema)):
                            return
                except BaseException as e:  # handed to the consumer thread
                    put(e)
                    return
            put(_DONE)

        threads = [
            threading.Thread(target=runner, name=f"qcat-dispatch-{i}", daemon=True)
            for i in range(min(limit, len(assignments)))
        ]
        for t in threads:
            t.start()
        running = len(threads)
        finished = False
        try:
            while running:
                item = out.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    failure = _failure(item)
                    self._failures[query_id] = failure
                    raise failure from item
                else:
                    assert isinstance(item, pa.RecordBatch)
                    yield item
            finished = True
        finally:
            stop.set()
            if not finished:
                self.cancel(query_id)
            for t in threads:
                t.join(timeout=5)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Give a chunk's batch the query's schema (chunks may differ in nullability only)."""
    if batch.schema.equals(schema):
        return batch
    return pa.RecordBatch.from_arrays(
        [c.cast(f.type) for c, f in zip(batch.columns, schema, strict=True)], schema=schema
    )


def _failure(error: BaseException) -> QueryFailed:
    if isinstance(error, QcatError):
        return QueryFailed(f"query stopped, no result returned: {error}")
    return QueryFailed(f"query stopped, no result returned: {type(error).__name__}: {error}")
