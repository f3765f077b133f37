"""One synchronous TAP query, from admission to its query-log entry.

The blocking steps (:meth:`QueryRun.start`, :meth:`QueryRun.next_chunk`,
:meth:`QueryRun.finish`) run in worker threads one after the other, never at
the same time; :meth:`QueryRun.client_gone` may come from another thread at
any moment and stops the query on the workers, which makes a blocked step
return.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pyarrow as pa

from qcat.czar.dispatch import QueryFailed
from qcat.czar.engine import QueryResult
from qcat.czar.uploads import UploadTable
from qcat.errors import QcatError
from services.limits import QuerySlot
from services.querylog import QueryLogEntry
from services.service import Service
from services.tap.errors import ServiceUnavailable, error_message, error_status
from services.tap.formats import ResultInfo, write_result
from services.tap.params import SyncQuery

ENDPOINT = "tap/sync"

logger = logging.getLogger("qcat.service")

#: Pieces of the encoded result are joined up to this many bytes (see QueryRun.next_chunk).
CHUNK_BYTES = 256 * 1024


class QueryRun:
    """Runs ``request`` for ``client`` holding ``slot``; streams the encoded result."""

    def __init__(
        self,
        service: Service,
        request: SyncQuery,
        client: str,
        slot: QuerySlot,
        uploads: Sequence[UploadTable] = (),
        base_url: str | None = None,
    ) -> None:
        self.service = service
        #: The service's base URL, for the relative URLs of the result.
        self.base_url = base_url
        self.request = request
        self.uploads = uploads
        self.client = client
        self.slot = slot
        self.query_id = uuid.uuid4().hex
        self.info = ResultInfo(query=request.query, query_id=self.query_id)
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._result: QueryResult | None = None
        self._chunks: Iterator[bytes] | None = None
        self._failed: Exception | None = None  # see next_chunk
        self._rows_read = 0
        self._exhausted = False
        self._gone = False
        self._cancel_sent = False
        self._status = 200
        self._error: str | None = None
        self._finished = False

    @property
    def gone(self) -> bool:
        """Whether the client went away."""
        return self._gone

    # -- the steps, each in a worker thread ------------------------------------------

    def start(self) -> None:
        """Plan and start the query and read its first batch.

        Reading one batch before anything is sent means the failures that come
        early (a bad chunk task, a dead worker, the time limit of an aggregate)
        still get an error document with the right HTTP status.
        """
        self._result = self.service.engine.execute(
            self.request.query, query_id=self.query_id, uploads=self.uploads
        )
        reader = self._result.reader
        first: pa.RecordBatch | None = None
        if self.request.maxrec > 0:
            try:
                first = reader.read_next_batch()
            except StopIteration:
                self._exhausted = True
        counted = pa.RecordBatchReader.from_batches(reader.schema, self._counted(first, reader))
        self._chunks = write_result(
            self.request.format,
            counted,
            self._result.columns,
            maxrec=self.request.maxrec,
            info=self.info,
            base_url=self.base_url,
        )

    def next_chunk(self) -> bytes | None:
        """The next piece of the encoded result; ``None`` at its end.

        The writers' small pieces (document head, element tags, a small
        batch, the trailer) are joined up to :data:`CHUNK_BYTES`: each piece
        costs the event loop a thread hop and an HTTP write, so a small
        result goes out as one piece. A piece waits for the next only while
        the joined bytes stay under that size.
        """
        assert self._chunks is not None
        if self._failed is not None:  # raised on the call after its pieces went out
            failed, self._failed = self._failed, None
            raise failed
        pieces: list[bytes] = []
        size = 0
        while size < CHUNK_BYTES:
            try:
                piece = next(self._chunks, None)
            except Exception as e:
                if not pieces:
                    raise
                # What came before the failure (a VOTable's error trailer) goes out first.
                self._failed = e
                break
            if piece is None:
                break
            pieces.append(piece)
            size += len(piece)
        if not pieces:
            return None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def start_and_first_chunk(self) -> bytes | None:
        """:meth:`start`, then :meth:`next_chunk` (one thread hop instead of two)."""
        self.start()
        return self.next_chunk()

    def failure(self, error: BaseException) -> tuple[int, str]:
        """The status and message for ``error`` (which ended the query); records them.

        Errors that are not qcat's own are bugs: their traceback goes to the
        server's log (the client gets the message only).
        """
        if not isinstance(error, QcatError):
            logger.error("query %s failed", self.query_id, exc_info=error)
        if isinstance(error, QueryFailed):
            down = [h for h in self.service.worker_health() if not h.alive]
            if down:
                names = ", ".join(h.location for h in down)
                error = ServiceUnavailable(f"{len(down)} worker(s) do not answer ({names})")
        self._status = error_status(error)
        self._error = error_message(error, self.request.query)
        return self._status, self._error

    def failed_midstream(self, error: BaseException) -> None:
        """Record an error after the result started (the status sent stays 200)."""
        self.failure(error)
        self._status = 200

    def note_gone(self) -> None:
        """The client disconnected: say so at once (no waiting; the event loop's thread).

        The response stops at its next step, and the query is logged as
        disconnected: after a disconnect the server drops what is sent without
        an error, so the response would otherwise run the query to its end.
        """
        if not self._finished:
            self._gone = True

    def client_gone(self) -> None:
        """The client disconnected: stop the query on every worker (from any thread)."""
        if self._finished or self._cancel_sent:
            return
        self._gone = self._cancel_sent = True
        self.service.engine.cancel(self.query_id)

    def finish(self) -> None:
        """Release everything the query holds and write its log entry (once)."""
        if self._finished:
            return
        self._finished = True
        try:
            if self._chunks is not None:
                close = getattr(self._chunks, "close", None)
                if close is not None:
                    close()
            if self._result is not None:
                if not self._exhausted:
                    # cut short (MAXREC, error, client gone): stop what still runs on the workers
                    self.service.engine.cancel(self.query_id)
                self._result.close()
        finally:
            self.slot.release()
            self.service.query_log.record(self._entry())

    # -- helpers ---------------------------------------------------------------------

    def _counted(
        self, first: pa.RecordBatch | None, rest: pa.RecordBatchReader
    ) -> Iterator[pa.RecordBatch]:
        if first is not None:
            self._rows_read += first.num_rows
            yield first
        if self._exhausted:
            return
        for batch in rest:
            self._rows_read += batch.num_rows
            yield batch
        self._exhausted = True

    def _entry(self) -> QueryLogEntry:
        maxrec = self.request.maxrec
        if self._gone:
            outcome = "disconnected"
        elif self._error is not None:
            outcome = "failed"
        elif self._rows_read > maxrec or maxrec == 0:  # MAXREC=0 always overflows (DALI)
            outcome = "overflow"
        else:
            outcome = "completed"
        rows = (
            None
            if self._error is not None and self._result is None
            else min(self._rows_read, maxrec)
        )
        return QueryLogEntry(
            time=self.started_at.isoformat(timespec="milliseconds"),
            query_id=self.query_id,
            client=self.client,
            endpoint=ENDPOINT,
            lang=self.request.lang,
            format=self.request.format.name,
            maxrec=maxrec,
            query=self.request.query,
            status=self._status,
            outcome=outcome,
            rows=rows,
            duration_s=round(time.monotonic() - self._t0, 6),
            error=self._error,
        )


def rejected_entry(
    client: str, params: dict[str, str], status: int, error: str, started: float
) -> QueryLogEntry:
    """The log entry of a request refused before its query ran (bad parameters, overload)."""
    maxrec = params.get("MAXREC")
    return QueryLogEntry(
        time=datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
        query_id=None,
        client=client,
        endpoint=ENDPOINT,
        lang=params.get("LANG"),
        format=params.get("RESPONSEFORMAT", params.get("FORMAT")),
        maxrec=int(maxrec) if maxrec is not None and maxrec.strip().isdigit() else None,
        query=params.get("QUERY"),
        status=status,
        outcome="rejected",
        rows=None,
        duration_s=round(time.time() - started, 6),
        error=error,
    )
