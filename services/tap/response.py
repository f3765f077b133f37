"""The ASGI response of a synchronous query: run it, stream it, stop it when the client leaves.

Unlike a plain ``StreamingResponse`` this response watches the connection for
the whole life of the query, including the time before the first byte, and
stops the query on the workers as soon as the client disconnects.

The status line goes out only once the query has started and the first
piece of the encoded result exists, so early failures get an error document
with the right status. A failure after that cannot change the status: a
VOTable then ends with ``<INFO name="QUERY_STATUS" value="ERROR">`` after the
rows (the formats' writer adds it; DALI clients such as pyvo raise the
message), and any other format is cut off: the chunked transfer never gets
its last chunk, so no HTTP client can take the cut result for a complete one.
"""

from __future__ import annotations

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.tap.errors import error_response
from services.tap.query_run import QueryRun


class QueryResponse(Response):
    """Runs ``run`` and streams its result (see the module docstring)."""

    def __init__(self, run: QueryRun) -> None:
        self.run = run
        self.status_code = 200
        self.background = None
        fmt = run.request.format
        self.init_headers(
            {
                "Content-Disposition": f'inline; filename="qcat-{run.query_id}{fmt.extension}"',
                "X-Qcat-Query-Id": run.query_id,
            }
        )
        self.media_type = fmt.mime_type
        self.raw_headers.append((b"content-type", fmt.mime_type.encode("latin-1")))
        self._complete = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, receive)
                await self._respond(scope, receive, send)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.run.finish)

    async def _watch(self, receive: Receive) -> None:
        """Wait for the client to disconnect, then stop the query."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
        if not self._complete:
            self.run.note_gone()  # before the thread hop: the response checks it each step
            await anyio.to_thread.run_sync(self.run.client_gone)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = self.run
        try:
            chunk = await anyio.to_thread.run_sync(run.start_and_first_chunk)
        except Exception as e:
            status, message = await anyio.to_thread.run_sync(run.failure, e)
            # Finish (free the client's slot, log) before the client can see the end.
            await anyio.to_thread.run_sync(run.finish)
            if not run.gone:
                await error_response(message, status, info=run.info)(scope, receive, send)
            self._complete = True
            return
        if run.gone:
            return
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        while chunk is not None:
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:  # the client went away (ASGI spec 2.4 servers)
                await anyio.to_thread.run_sync(run.client_gone)
                return
            try:
                chunk = await anyio.to_thread.run_sync(run.next_chunk)
            except Exception as e:
                await anyio.to_thread.run_sync(run.failed_midstream, e)
                if not run.request.format.is_votable:
                    return  # cut: the transfer stays incomplete
                break  # the VOTable already ends with QUERY_STATUS=ERROR
            if run.gone:
                return
        await anyio.to_thread.run_sync(run.finish)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self._complete = True
