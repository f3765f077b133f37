"""The routes under ``/tap``: one per TAP/VOSI resource, DALI errors for anything else."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route

from services.resources import ANY_METHOD, landing_endpoint, not_found_endpoint
from services.tap.async_routes import async_routes
from services.tap.availability import availability_endpoint
from services.tap.capabilities import DALI_EXAMPLES, VOSI_TABLES, capabilities_endpoint
from services.tap.examples_route import examples_endpoint
from services.tap.sync import sync_endpoint
from services.tap.tables import table_endpoint, tables_endpoint

RESOURCES = (
    ("sync", "synchronous ADQL queries (QUERY, LANG, RESPONSEFORMAT, MAXREC)"),
    ("async", "asynchronous ADQL queries: UWS 1.1 jobs that outlive a restart"),
    ("capabilities", "VOSI capabilities: languages, features, formats, limits"),
    ("availability", "VOSI availability"),
    ("tables", "VOSI tables: schemas, tables and columns (detail=min|max)"),
    ("examples", "DALI examples: queries to start from, made from the loaded tables"),
)


def tap_mount() -> Mount:
    """``/tap`` and everything below it."""
    routes: list[BaseRoute] = [
        Route("/", landing_endpoint("qcat TAP 1.1 service", RESOURCES), methods=["GET", "HEAD"]),
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
        Route(
            "/{path:path}",
            not_found_endpoint("TAP", RESOURCES, frozenset({"sync"})),
            methods=ANY_METHOD,
        ),
    ]
    return Mount("/tap", routes=routes)
