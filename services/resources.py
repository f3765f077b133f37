"""What a protocol's mount answers besides its resources: a landing page for people with
browsers, and a DALI error naming the path for anything else (405 for a known resource
asked with a wrong method)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from services.tap.errors import error_response

#: Every method, so a wrong one on a known path is answered by :func:`not_found_endpoint`.
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def landing_endpoint(title: str, resources: Sequence[tuple[str, str]]) -> Endpoint:
    """GET ``/<protocol>/``: a page titled ``title`` linking ``(path, what)`` resources."""

    async def endpoint(request: Request) -> Response:
        items = "".join(
            f'<li><a href="{escape(path)}">{escape(path)}</a>: {escape(what)}</li>'
            for path, what in resources
        )
        return HTMLResponse(
            f"<!DOCTYPE html><html><head><title>{escape(title)}</title></head><body>"
            f"<h1>{escape(title)}</h1><p>Base URL: <code>{escape(str(request.url))}</code></p>"
            f"<ul>{items}</ul></body></html>"
        )

    return endpoint


def not_found_endpoint(
    protocol: str, resources: Sequence[tuple[str, str]], post_paths: frozenset[str]
) -> Endpoint:
    """Anything else under the mount: 404 naming the path and the resources there, or 405
    for a known resource (``post_paths`` also take POST)."""

    async def endpoint(request: Request) -> Response:
        path = request.path_params.get("path", "").strip("/")
        if path in {name for name, _ in resources}:
            allowed = "GET or POST" if path in post_paths else "GET"
            return error_response(
                f"method {request.method} is not allowed on {request.url.path}; use {allowed}",
                405,
            )
        return error_response(
            f"no such {protocol} resource: {request.url.path}; "
            f"available: {', '.join(name for name, _ in resources)}",
            404,
        )

    return endpoint
