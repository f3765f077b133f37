"""``/tap/sync``: run one ADQL query and stream its result (TAP 1.1 section 2.3)."""

from __future__ import annotations

import time

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from services.limits import Overloaded
from services.service import Service
from services.tap.errors import error_message, error_response, error_status
from services.tap.params import ParameterError, Params, read_request, sync_query, uploads_of
from services.tap.query_run import QueryRun, rejected_entry
from services.tap.response import QueryResponse
from services.tap.upload import UploadError
from services.urls import base_url


def client_address(request: Request) -> str:
    """Who sent the request (the proxy's client when uvicorn trusts the proxy headers)."""
    return request.client.host if request.client is not None else "unknown"


async def sync_endpoint(request: Request) -> Response:
    """GET or POST ``/tap/sync``: check the parameters, admit the query, stream the result."""
    service: Service = request.app.state.service
    started = time.time()
    client = client_address(request)
    params: Params = {}
    try:
        params, parts = await read_request(
            request,
            max_chars=service.settings.tap_max_query_chars,
            max_upload_bytes=service.settings.tap_upload_max_bytes,
        )
        query = sync_query(params, service.settings)
        uploads = await anyio.to_thread.run_sync(uploads_of, query, parts, service.settings)
        slot = service.limiter.acquire(client)
    except (ParameterError, UploadError, Overloaded) as e:
        status, message = error_status(e), error_message(e)
        service.query_log.record(rejected_entry(client, params, status, message, started))
        return error_response(message, status)
    except ClientDisconnect:  # gone while sending its parameters: nobody to answer
        message = "the client disconnected while sending the request"
        service.query_log.record(rejected_entry(client, params, 400, message, started))
        return Response(status_code=400)
    return QueryResponse(QueryRun(service, query, client, slot, uploads, base_url(request)))
