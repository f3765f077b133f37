"""``/tap/examples``: the DALI 1.1 examples document for the tables being served."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from services.service import Service
from services.tap.examples import catalog_examples, examples_document

#: DALI 1.1 examples are XHTML with RDFa.
XHTML_MEDIA_TYPE = "application/xhtml+xml"


def _document(service: Service) -> bytes:
    return examples_document(catalog_examples(service.metadata, service.data_dir))


async def examples_endpoint(request: Request) -> Response:
    """GET ``/tap/examples``: example queries made from the current catalog (each one runs)."""
    service: Service = request.app.state.service
    document = await anyio.to_thread.run_sync(_document, service)
    return Response(document, media_type=XHTML_MEDIA_TYPE)
