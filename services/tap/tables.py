"""``/tap/tables`` and ``/tap/tables/{name}``: VOSI 1.1 table metadata of the current catalog."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from qcat.czar.errors import ResolveError
from services.service import Service
from services.tap.errors import error_response
from services.tap.vosi_tables import InvalidDetail, table_xml, tableset_xml
from services.tap.xml import XML_MEDIA_TYPE


def _param(request: Request, name: str) -> str | None:
    """A query parameter by case-insensitive name (DALI)."""
    for key, value in request.query_params.multi_items():
        if key.lower() == name:
            return value
    return None


async def tables_endpoint(request: Request) -> Response:
    """GET ``/tap/tables[?detail=min|max]``: every schema and table."""
    service: Service = request.app.state.service
    catalog = await anyio.to_thread.run_sync(service.engine.catalog)
    try:
        document = tableset_xml(catalog, _param(request, "detail"))
    except InvalidDetail as e:
        return error_response(str(e), 400)
    return Response(document, media_type=XML_MEDIA_TYPE)


async def table_endpoint(request: Request) -> Response:
    """GET ``/tap/tables/{schema.table}``: one table with its columns and foreign keys."""
    service: Service = request.app.state.service
    catalog = await anyio.to_thread.run_sync(service.engine.catalog)
    try:
        document = table_xml(catalog, request.path_params["name"])
    except ResolveError as e:
        return error_response(str(e), 404)
    return Response(document, media_type=XML_MEDIA_TYPE)
