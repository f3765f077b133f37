"""The routes under ``/tap``: one per TAP/VOSI resource, DALI errors for anything else."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from services.tap.async_routes import async_routes
from services.tap.availability import availability_endpoint
from services.tap.capabilities import DALI_EXAMPLES, VOSI_TABLES, capabilities_endpoint
from services.tap.errors import error_response
from services.tap.examples_route import examples_endpoint
from services.tap.sync import sync_endpoint
from services.tap.tables import table_endpoint, tables_endpoint

ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

RESOURCES = (
    ("sync", "synchronous ADQL queries (QUERY, LANG, RESPONSEFORMAT, MAXREC)"),
    ("async", "asynchronous ADQL queries: UWS 1.1 jobs that outlive a restart"),
    ("capabilities", "VOSI capabilities: languages, features, formats, limits"),
    ("availability", "VOSI availability"),
    ("tables", "VOSI tables: schemas, tables and columns (detail=min|max)"),
    ("examples", "DALI examples: queries to start from, made from the loaded tables"),
)


async def landing_endpoint(request: Request) -> Response:
    """GET ``/tap/``: a short page linking the TAP resources, for people with browsers."""
    items = "".join(
        f'<li><a href="{escape(path)}">{escape(path)}</a>: {escape(what)}</li>'
        for path, what in RESOURCES
    )
    return HTMLResponse(
        "<!DOCTYPE html><html><head><title>qcat TAP service</title></head><body>"
        f"<h1>qcat TAP service</h1><p>TAP 1.1 base URL: <code>{escape(str(request.url))}"
        f"</code></p><ul>{items}</ul></body></html>"
    )


async def not_found_endpoint(request: Request) -> Response:
    """Anything else under ``/tap``: a DALI error naming the path (405 for a known one)."""
    path = request.path_params.get("path", "").strip("/")
    if path in {name for name, _ in RESOURCES}:
        allowed = "GET or POST" if path == "sync" else "GET"
        return error_response(
            f"method {request.method} is not allowed on {request.url.path}; use {allowed}", 405
        )
    return error_response(
        f"no such TAP resource: {request.url.path}; "
        f"available: {', '.join(path for path, _ in RESOURCES)}",
        404,
    )


def tap_mount() -> Mount:
    """``/tap`` and everything below it."""
    routes: list[BaseRoute] = [
        Route("/", landing_endpoint, methods=["GET", "HEAD"]),
        Route("/sync", sync_endpoint, methods=["GET", "POST"]),
        *async_routes(),
        Route(
            "/capabilities",
            capabilities_endpoint([(VOSI_TABLES, "tables"), (DALI_EXAMPLES, "examples")]),
            methods=["GET", "HEAD"],
        ),
        Route("/availability", availability_endpoint, methods=["GET", "HEAD"]),
        Route("/tables", tables_endpoint, methods=["GET", "HEAD"]),
        Route("/tables/{name}", table_endpoint, methods=["GET", "HEAD"]),
        Route("/examples", examples_endpoint, methods=["GET", "HEAD"]),
        Route("/{path:path}", not_found_endpoint, methods=ANY_METHOD),
    ]
    return Mount("/tap", routes=routes)
