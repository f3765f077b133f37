"""Absolute URLs of the service's own resources."""

from __future__ import annotations

from starlette.requests import Request

from services.service import Service


def base_url(request: Request) -> str:
    """The service's base URL without a trailing slash: the ``public_url`` setting when
    set (a service behind a proxy), else where this request was sent."""
    service: Service = request.app.state.service
    base = service.settings.public_url or str(request.base_url)
    return base.rstrip("/")


def absolute_url(request: Request, path: str) -> str:
    """``path`` (starting with '/') made absolute against :func:`base_url`."""
    return base_url(request) + path
