"""The HTTP service: one Starlette app, one base URL (DESIGN.md section 5).

``create_app(service)`` mounts the protocols on the paths the design fixes
(``/tap``, ``/sia``, ``/soda``, ``/datalink``, ``/images``, ``/healthz``); the
:class:`~services.service.Service` it is given owns the query engine and is
started and closed by its creator (``qcat serve``, a test fixture). Errors
never show a stack trace: under the IVOA protocols' paths they are DALI error
documents, elsewhere plain text.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from services.health import healthz_endpoint
from services.service import Service
from services.sia.routes import image_routes
from services.tap.errors import error_message, error_response
from services.tap.routes import tap_mount

logger = logging.getLogger("qcat.service")


#: Paths whose errors are DALI error documents (VOTable), not plain text.
DALI_PREFIXES = ("/tap", "/sia", "/soda", "/datalink")


def _is_tap(request: Request) -> bool:
    path = request.url.path
    return any(path == p or path.startswith(p + "/") for p in DALI_PREFIXES)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_tap(request):
        return error_response(exc.detail, exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the server's log, never to the client.
    logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    message = error_message(exc)
    if _is_tap(request):
        return error_response(message, 500)
    return PlainTextResponse(message, status_code=500)


def create_app(service: Service) -> Starlette:
    """The ASGI app serving ``service`` (which stays open when the app stops)."""
    app = Starlette(
        routes=[
            tap_mount(),
            *image_routes(),
            Route("/healthz", healthz_endpoint, methods=["GET", "HEAD"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.service = service
    return app
