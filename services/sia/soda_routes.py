"""Routes under ``/soda``: SODA 1.0 cutouts, synchronous and as UWS 1.1 jobs.

| resource | what |
| --- | --- |
| ``/soda/sync`` (GET, POST) | one cutout: ``image/fits`` with a file name |
| ``/soda/async`` and below | UWS jobs (as ``/tap/async``); each cutout is a result |

Errors are DALI error documents whose message starts with the SODA error
code (``UsageError``, ``NotFoundFault``, ``NoOverlap``,
``MultiValuedParamNotSupported``).
"""

from __future__ import annotations

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from qcat.errors import QcatError
from services.form import request_pairs
from services.resources import ANY_METHOD
from services.service import Service
from services.settings import ServiceSettings
from services.sia.soda import FITS_MEDIA_TYPE, ByteStream, cutout_file_name, open_image_cutout
from services.sia.soda_errors import SodaError, UsageError
from services.sia.soda_jobs import SODA_JOBS
from services.sia.soda_params import Cutout, parse_request, values_by_name
from services.tap.async_routes import AsyncKind, async_routes
from services.tap.errors import error_message, error_response
from services.tap.params import ParameterError, Params
from services.tap.uws.documents import VALUE_SEPARATOR
from services.turns import in_turns

#: Most parameters one request may carry.
MAX_FIELDS = 1000
#: Largest form value (Starlette's own default).
MAX_PART_BYTES = 1024 * 1024
#: Longest parameter value (a POLYGON with many vertices fits).
MAX_VALUE_CHARS = 100_000
#: Answers up to this size are produced at once, in the planning thread; larger ones stream.
INLINE_BYTES = 4 * 1024 * 1024


async def read_pairs(request: Request) -> list[tuple[str, str]]:
    """Every (name, value) of the URL and, for a POST, of the form body, in order."""
    pairs = await request_pairs(
        request, max_fields=MAX_FIELDS, max_files=0, max_part_bytes=MAX_PART_BYTES, error=UsageError
    )
    if len(pairs) > MAX_FIELDS:
        raise UsageError(f"the request has {len(pairs)} parameters; at most {MAX_FIELDS}")
    for name, value in pairs:
        if len(value) > MAX_VALUE_CHARS:
            raise UsageError(f"{name.upper()} is longer than {MAX_VALUE_CHARS:,} characters")
    return pairs


async def sync_endpoint(request: Request) -> Response:
    """``/soda/sync``: one cutout as a FITS file.

    The cutout is planned (and a small one produced) in a worker thread;
    a large one streams block by block, each block read in a worker thread,
    so the event loop keeps serving other requests, and large answers take
    turns in the order they were asked (``services/turns.py``).
    """
    service: Service = request.app.state.service
    ticket = service.large_answers.ticket()
    head = request.method == "HEAD"
    try:
        request_values = values_by_name(await read_pairs(request))
        cutout = parse_request(request_values, single=True).cutouts()[0]
        name, stream, body = await anyio.to_thread.run_sync(_cut, service, cutout, head)
    except SodaError as e:
        return error_response(str(e), e.status)
    except ClientDisconnect:
        return Response(status_code=400)
    except QcatError as e:
        return error_response(f"UsageError: {error_message(e)}", 400)
    headers = {
        "Content-Length": str(stream.size),
        "Content-Disposition": f'attachment; filename="{name}"',
    }
    if head:
        return Response(status_code=200, media_type=FITS_MEDIA_TYPE, headers=headers)
    if body is not None:
        return Response(body, media_type=FITS_MEDIA_TYPE, headers=headers)
    return StreamingResponse(
        in_turns(stream, service.large_answers, ticket),
        media_type=FITS_MEDIA_TYPE,
        headers=headers,
    )


def _cut(service: Service, cutout: Cutout, head: bool) -> tuple[str, ByteStream, bytes | None]:
    """The file name, the planned answer and, when it is small, its bytes already read."""
    record, stream = open_image_cutout(service.images, cutout)
    name = cutout_file_name(record, cutout.region is not None)
    if head:
        stream.close()
        return name, stream, None
    return name, stream, stream.read() if stream.size <= INLINE_BYTES else None


async def _read_job_request(
    request: Request, settings: ServiceSettings
) -> tuple[Params, dict[str, bytes]]:
    """A SODA job's parameters: repeated values joined (``VALUE_SEPARATOR``)."""
    try:
        pairs = await read_pairs(request)
    except SodaError as e:
        raise ParameterError(str(e)) from None
    params: Params = {}
    for name, values in values_by_name(pairs).items():
        if any(VALUE_SEPARATOR in v for v in values):
            raise ParameterError(f"UsageError: {name} has a value with a line break")
        params[name] = VALUE_SEPARATOR.join(values)
    return params, {}


SODA_ASYNC = AsyncKind(SODA_JOBS, _read_job_request, _read_job_request)


async def not_found_endpoint(request: Request) -> Response:
    """Anything else under ``/soda``: a DALI error naming the resources."""
    return error_response(
        f"no such SODA resource: {request.url.path}; available: /soda/sync, /soda/async", 404
    )


def soda_mount() -> Mount:
    """``/soda`` and everything below it."""
    routes: list[BaseRoute] = [
        Route("/sync", sync_endpoint, methods=["GET", "HEAD", "POST"]),
        *async_routes(SODA_ASYNC),
        Route("/{path:path}", not_found_endpoint, methods=ANY_METHOD),
    ]
    return Mount("/soda", routes=routes)
