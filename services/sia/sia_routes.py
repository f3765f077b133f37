"""Routes under ``/sia``: the SIA 2.0 query, VOSI capabilities and availability.

``/sia`` is the base URL a client is given (``pyvo.dal.SIA2Service(base + "/sia")``
reads ``/sia/capabilities`` and finds ``/sia/query`` there). Every failure is a
DALI error VOTable with the right HTTP status; every search (refused ones too)
gets a query-log line, like a TAP query.
"""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import urlencode

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from qcat.errors import QcatError
from services.limits import Overloaded
from services.resources import ANY_METHOD, landing_endpoint, not_found_endpoint
from services.service import Service
from services.sia.sia_adql import sia_adql
from services.sia.sia_capabilities import capabilities_endpoint
from services.sia.sia_params import MultiParams, SiaQuery, parse_query, read_sia_params
from services.sia.sia_search import log_entry, run_search
from services.tap.availability import availability_endpoint
from services.tap.errors import error_message, error_response, error_status
from services.tap.params import ParameterError
from services.tap.sync import client_address
from services.urls import base_url

logger = logging.getLogger("qcat.service")


RESOURCES = (
    ("query", "SIA 2.0 image search (POS, BAND, TIME, POL, FOV, ..., MAXREC)"),
    ("capabilities", "VOSI capabilities"),
    ("availability", "VOSI availability"),
)


def _params_text(params: MultiParams) -> str:
    return urlencode([(k, v) for k, values in params.items() for v in values])


async def query_endpoint(request: Request) -> Response:
    """GET or POST ``/sia/query``: check the parameters, search, answer with a VOTable."""
    service: Service = request.app.state.service
    started = time.time()
    client = client_address(request)
    params: MultiParams = {}
    query: SiaQuery | None = None
    try:
        params = await read_sia_params(request)
        query = parse_query(params, service.settings)
        slot = service.limiter.acquire(client)
    except (ParameterError, Overloaded) as e:
        status, message = error_status(e), error_message(e)
        entry = log_entry(
            started=started,
            client=client,
            query=query,
            text=_params_text(params),
            status=status,
            outcome="rejected",
            error=message,
        )
        service.query_log.record(entry)
        return error_response(message, status)
    except ClientDisconnect:  # gone while sending its parameters: nobody to answer
        return Response(status_code=400)
    query_id = uuid.uuid4().hex
    try:
        result = await anyio.to_thread.run_sync(
            run_search, service, query, query_id, base_url(request)
        )
    except Exception as e:
        if not isinstance(e, QcatError):
            logger.error("SIA query %s failed", query_id, exc_info=e)
        status, message = error_status(e), error_message(e)
        entry = log_entry(
            started=started,
            client=client,
            query=query,
            text=sia_adql(query),
            status=status,
            outcome="failed",
            query_id=query_id,
            error=message,
        )
        service.query_log.record(entry)
        return error_response(message, status)
    finally:
        slot.release()
    entry = log_entry(
        started=started,
        client=client,
        query=query,
        text=result.adql,
        status=200,
        outcome="overflow" if result.overflow or query.maxrec == 0 else "completed",
        query_id=query_id,
        rows=result.rows,
    )
    service.query_log.record(entry)
    fmt = query.response_format
    return Response(
        result.body,
        media_type=fmt.mime_type,
        headers={
            "X-Qcat-Query-Id": query_id,
            "Content-Disposition": f'inline; filename="qcat-sia-{query_id}{fmt.extension}"',
        },
    )


def sia_mount() -> Mount:
    """``/sia`` and everything below it."""
    routes: list[BaseRoute] = [
        Route("/", landing_endpoint("qcat SIA 2.0 service", RESOURCES), methods=["GET", "HEAD"]),
        Route("/query", query_endpoint, methods=["GET", "POST"]),
        Route("/capabilities", capabilities_endpoint, methods=["GET", "HEAD"]),
        Route("/availability", availability_endpoint, methods=["GET", "HEAD"]),
        Route(
            "/{path:path}",
            not_found_endpoint("SIA", RESOURCES, frozenset({"query"})),
            methods=ANY_METHOD,
        ),
    ]
    return Mount("/sia", routes=routes)
