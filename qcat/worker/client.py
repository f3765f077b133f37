"""Client of one worker: run tasks, cancel queries, ask for health and inventory.

Flight errors never escape: they become :mod:`qcat.worker.errors` exceptions
whose message names the worker. One client may be shared by many threads
(the underlying gRPC channel is thread-safe).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from qcat.worker.errors import (
    TaskCancelled,
    TaskDataError,
    TaskError,
    TaskTimeout,
    WorkerError,
    WorkerUnavailable,
)
from qcat.worker.protocol import decode_error, error_reason, to_json
from qcat.worker.task import ChunkTask

_BY_KIND: dict[str, type[WorkerError]] = {
    "task": TaskError,
    "data": TaskDataError,
    "denied": TaskError,
    "cancelled": TaskCancelled,
    "timeout": TaskTimeout,
    "unavailable": WorkerUnavailable,
    "internal": WorkerError,
}


class WorkerClient:
    """Talks to the worker at ``location`` (``grpc://host:port``).

    ``timeout`` bounds each action call (health, cancel, inventory). A task's
    call is bounded by its deadline plus ``grace`` seconds, so a hung worker
    cannot hold a caller longer than the task was allowed to run.
    """

    def __init__(self, location: str, *, timeout: float = 30.0, grace: float = 5.0) -> None:
        self.location = location
        self.timeout = timeout
        self.grace = grace
        try:
            self._client = flight.FlightClient(location)
        except (pa.ArrowException, ValueError) as e:
            raise WorkerUnavailable(f"worker {location}: bad location: {e}") from None

    def run(self, task: ChunkTask) -> pa.RecordBatchReader:
        """Start ``task``; return its result as a stream, once the stream has started.

        Errors before the first batch (bad SQL, refused files, cancelled query)
        raise here; errors later (deadline, cancel, worker death) raise from
        the reader, never a silently truncated result.
        """
        left = max(task.deadline - time.time(), 0.0)
        options = flight.FlightCallOptions(timeout=left + self.grace)
        try:
            stream = self._client.do_get(flight.Ticket(task.to_ticket()), options=options)
            schema = stream.schema
        except (flight.FlightError, pa.ArrowException) as e:
            raise self._error(e) from None
        return pa.RecordBatchReader.from_batches(schema, self._batches(stream))

    def _batches(self, stream: flight.FlightStreamReader) -> Iterator[pa.RecordBatch]:
        try:
            while True:
                try:
                    chunk = stream.read_chunk()
                except StopIteration:
                    return
                except (flight.FlightError, pa.ArrowException) as e:
                    raise self._error(e) from None
                if chunk.data is not None:
                    yield chunk.data
        finally:
            stream.cancel()  # no-op after a complete stream; frees the call otherwise

    def cancel(self, query_id: str) -> int:
        """Stop every task of ``query_id`` on this worker; how many were running."""
        stopped: int = self._action("cancel", to_json({"query_id": query_id}))["stopped"]
        return stopped

    def health(self) -> dict[str, Any]:
        """The worker's health report (status, pid, running_tasks, rss_bytes, uptime_s)."""
        report: dict[str, Any] = self._action("health")
        return report

    def inventory(self) -> list[dict[str, Any]]:
        """Tables and chunks the worker can serve (see ``WorkerServer.inventory``)."""
        tables: list[dict[str, Any]] = self._action("inventory")
        return tables

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _action(self, name: str, body: bytes = b"") -> Any:
        options = flight.FlightCallOptions(timeout=self.timeout)
        try:
            results = list(self._client.do_action(flight.Action(name, body), options=options))
        except (flight.FlightError, pa.ArrowException) as e:
            raise self._error(e) from None
        if len(results) != 1:
            raise WorkerError(f"worker {self.location}: action {name}: expected one result")
        return json.loads(results[0].body.to_pybytes())

    def _error(self, e: Exception) -> WorkerError:
        """The qcat exception for Flight error ``e``, naming this worker."""
        if isinstance(e, flight.FlightError):
            kind, message = decode_error(e)
        else:
            kind, message = None, str(e).split(". Detail:", 1)[0]
        if kind is None:
            if isinstance(e, flight.FlightUnavailableError):
                kind, message = "unavailable", f"cannot reach the worker: {message}"
            elif isinstance(e, flight.FlightTimedOutError):
                kind, message = "timeout", f"no answer before the task deadline: {message}"
            elif isinstance(e, flight.FlightCancelledError):
                kind = "cancelled"
            else:
                kind = "internal"
        text = f"worker {self.location}: {message}"
        if kind == "data":
            return TaskDataError(
                text, error_reason(e) if isinstance(e, flight.FlightError) else None
            )
        return _BY_KIND.get(kind, WorkerError)(text)
